/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * JSON for the control socket: a writer that builds one reply line, and a
 * small parser for sqlvigilctl (and tests) to read replies back. Only what
 * the protocol needs: objects, arrays, strings, numbers, booleans, null.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Writer ----------------------------------------------------------- */

#define JSON_MAX_DEPTH 16

typedef struct Json {
        char *buf;
        size_t len, cap;
        bool oom;
        int depth;
        bool first[JSON_MAX_DEPTH]; /* nothing written yet at this level */
        bool after_key;
} Json;

void json_init(Json *j);
void json_free(Json *j);
/* The text (NUL-terminated); NULL if memory ran out. */
const char *json_text(const Json *j);

void json_object_begin(Json *j);
void json_object_end(Json *j);
void json_array_begin(Json *j);
void json_array_end(Json *j);
void json_key(Json *j, const char *key);
void json_string(Json *j, const char *s); /* NULL writes null */
void json_int(Json *j, int64_t v);
void json_uint(Json *j, uint64_t v);
void json_double(Json *j, double v);
void json_bool(Json *j, bool v);
void json_null(Json *j);

/* key + value in one call */
void json_kv_string(Json *j, const char *key, const char *s);
void json_kv_int(Json *j, const char *key, int64_t v);
void json_kv_uint(Json *j, const char *key, uint64_t v);
void json_kv_double(Json *j, const char *key, double v);
void json_kv_bool(Json *j, const char *key, bool v);
void json_kv_null(Json *j, const char *key);

/* Ends the text with a newline: the protocol's one-line replies. */
void json_newline(Json *j);

/* ---- Parser ----------------------------------------------------------- */

typedef enum JsonType {
        JSON_NULL,
        JSON_BOOL,
        JSON_NUMBER,
        JSON_STRING,
        JSON_ARRAY,
        JSON_OBJECT,
} JsonType;

typedef struct JsonValue JsonValue;
struct JsonValue {
        JsonType type;
        bool boolean;
        double number;
        char *string;       /* JSON_STRING */
        char *key;          /* when a member of an object */
        JsonValue *child;   /* first element or member */
        JsonValue *next;    /* next sibling */
};

/* Parses one JSON text (surrounding whitespace allowed). Returns 0 or
 * -EINVAL (with the position in *ret_error_offset) or -ENOMEM. */
int json_parse(const char *text, size_t len, JsonValue **ret, size_t *ret_error_offset);
JsonValue *json_value_free(JsonValue *v);

/* Member of an object by a dotted path ("health.state"); NULL if absent. */
const JsonValue *json_get(const JsonValue *v, const char *path);
const char *json_get_string(const JsonValue *v, const char *path);  /* NULL if absent or not a string */
bool json_get_number(const JsonValue *v, const char *path, double *ret);
bool json_get_bool(const JsonValue *v, const char *path, bool *ret);
