/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the JSON parser sqlvigilctl reads replies with.
 * Invariants: no crash or leak on any input; what parses, written back with
 * the JSON writer, parses again.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void emit(Json *j, const JsonValue *v) {
        switch (v->type) {
        case JSON_NULL:
                json_null(j);
                break;
        case JSON_BOOL:
                json_bool(j, v->boolean);
                break;
        case JSON_NUMBER:
                json_double(j, v->number);
                break;
        case JSON_STRING:
                json_string(j, v->string);
                break;
        case JSON_ARRAY:
        case JSON_OBJECT:
                if (v->type == JSON_ARRAY)
                        json_array_begin(j);
                else
                        json_object_begin(j);
                for (const JsonValue *c = v->child; c; c = c->next) {
                        if (v->type == JSON_OBJECT)
                                json_key(j, c->key);
                        emit(j, c);
                }
                if (v->type == JSON_ARRAY)
                        json_array_end(j);
                else
                        json_object_end(j);
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        JsonValue *v = NULL, *w = NULL;
        Json j;

        if (json_parse((const char *)data, size, &v, NULL) != 0)
                return 0;
        json_init(&j);
        emit(&j, v);
        /* The writer refuses nesting deeper than JSON_MAX_DEPTH; that is its
         * limit, not a parser bug. */
        if (json_text(&j) && json_parse(json_text(&j), strlen(json_text(&j)), &w, NULL) != 0)
                abort();
        json_value_free(w);
        json_free(&j);
        json_value_free(v);
        return 0;
}
