/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "utf8.h"

/* ---- Writer ----------------------------------------------------------- */

void json_init(Json *j) {
        *j = (Json){ .first = { true } };
}

void json_free(Json *j) {
        free(j->buf);
        *j = (Json){ 0 };
}

const char *json_text(const Json *j) {
        return j->oom || !j->buf ? NULL : j->buf;
}

static void put(Json *j, const char *s, size_t n) {
        if (j->oom)
                return;
        if (j->len + n + 1 > j->cap) {
                size_t cap = j->cap ? j->cap : 1024;
                char *b;

                while (cap < j->len + n + 1)
                        cap *= 2;
                b = realloc(j->buf, cap);
                if (!b) {
                        j->oom = true;
                        return;
                }
                j->buf = b;
                j->cap = cap;
        }
        memcpy(j->buf + j->len, s, n);
        j->len += n;
        j->buf[j->len] = '\0';
}

static void puts_(Json *j, const char *s) {
        put(j, s, strlen(s));
}

/* Writes the separator a new value at the current level needs. */
static void value_start(Json *j) {
        if (j->after_key) {
                j->after_key = false;
                return;
        }
        if (!j->first[j->depth])
                put(j, ",", 1);
        j->first[j->depth] = false;
}

static void open_(Json *j, char c) {
        value_start(j);
        put(j, &c, 1);
        if (j->depth + 1 >= JSON_MAX_DEPTH) {
                j->oom = true; /* deeper than any reply we build: a bug */
                return;
        }
        j->depth++;
        j->first[j->depth] = true;
}

static void close_(Json *j, char c) {
        if (j->depth > 0)
                j->depth--;
        put(j, &c, 1);
}

void json_object_begin(Json *j) {
        open_(j, '{');
}

void json_object_end(Json *j) {
        close_(j, '}');
}

void json_array_begin(Json *j) {
        open_(j, '[');
}

void json_array_end(Json *j) {
        close_(j, ']');
}

/* RFC 8259 strings from any bytes (the rule is in utf8.h): valid UTF-8 as it
 * is, control characters escaped without loss, U+2028 and U+2029 escaped too
 * (JavaScript before ES2019 ends a line there), and a byte that is not UTF-8
 * as the text \xNN, so the reply is valid UTF-8 and says which byte it was. */
static void put_escaped(Json *j, const char *s) {
        size_t n = strlen(s), len;

        put(j, "\"", 1);
        for (size_t i = 0; i < n; i += len) {
                int32_t c = utf8_decode(s + i, n - i, &len);
                char esc[8];

                switch (c) {
                case '"':
                        puts_(j, "\\\"");
                        break;
                case '\\':
                        puts_(j, "\\\\");
                        break;
                case '\n':
                        puts_(j, "\\n");
                        break;
                case '\r':
                        puts_(j, "\\r");
                        break;
                case '\t':
                        puts_(j, "\\t");
                        break;
                case -1:
                        snprintf(esc, sizeof(esc), "\\\\x%02x", (unsigned char)s[i]);
                        puts_(j, esc);
                        break;
                default:
                        if (unicode_is_control(c) || c == 0x2028 || c == 0x2029) {
                                snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)c);
                                puts_(j, esc);
                        } else
                                put(j, s + i, len);
                }
        }
        put(j, "\"", 1);
}

void json_key(Json *j, const char *key) {
        value_start(j);
        put_escaped(j, key);
        put(j, ":", 1);
        j->after_key = true;
}

void json_string(Json *j, const char *s) {
        if (!s) {
                json_null(j);
                return;
        }
        value_start(j);
        put_escaped(j, s);
}

void json_int(Json *j, int64_t v) {
        char b[32];

        value_start(j);
        snprintf(b, sizeof(b), "%" PRIi64, v);
        puts_(j, b);
}

void json_uint(Json *j, uint64_t v) {
        char b[32];

        value_start(j);
        snprintf(b, sizeof(b), "%" PRIu64, v);
        puts_(j, b);
}

void json_double(Json *j, double v) {
        char b[64];

        if (!isfinite(v)) {
                json_null(j);
                return;
        }
        value_start(j);
        snprintf(b, sizeof(b), "%.6f", v);
        puts_(j, b);
}

void json_bool(Json *j, bool v) {
        value_start(j);
        puts_(j, v ? "true" : "false");
}

void json_null(Json *j) {
        value_start(j);
        puts_(j, "null");
}

void json_kv_string(Json *j, const char *key, const char *s) {
        json_key(j, key);
        json_string(j, s);
}

void json_kv_int(Json *j, const char *key, int64_t v) {
        json_key(j, key);
        json_int(j, v);
}

void json_kv_uint(Json *j, const char *key, uint64_t v) {
        json_key(j, key);
        json_uint(j, v);
}

void json_kv_double(Json *j, const char *key, double v) {
        json_key(j, key);
        json_double(j, v);
}

void json_kv_bool(Json *j, const char *key, bool v) {
        json_key(j, key);
        json_bool(j, v);
}

void json_kv_null(Json *j, const char *key) {
        json_key(j, key);
        json_null(j);
}

void json_newline(Json *j) {
        put(j, "\n", 1);
}

/* ---- Parser ----------------------------------------------------------- */

typedef struct Parser {
        const char *s;
        size_t len, pos;
        int depth;
        int error; /* 0, -EINVAL or -ENOMEM */
} Parser;

static void skip_ws(Parser *p) {
        while (p->pos < p->len &&
               (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
                p->pos++;
}

static bool fail(Parser *p, int error) {
        if (!p->error)
                p->error = error;
        return false;
}

static bool literal(Parser *p, const char *word) {
        size_t n = strlen(word);

        if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
                return fail(p, -EINVAL);
        p->pos += n;
        return true;
}

static int hex4(const char *s) {
        int v = 0;

        for (int i = 0; i < 4; i++) {
                char c = s[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

static void utf8_put(char *out, size_t *n, unsigned cp) {
        if (cp < 0x80)
                out[(*n)++] = (char)cp;
        else if (cp < 0x800) {
                out[(*n)++] = (char)(0xc0 | (cp >> 6));
                out[(*n)++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                out[(*n)++] = (char)(0xe0 | (cp >> 12));
                out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[(*n)++] = (char)(0x80 | (cp & 0x3f));
        } else {
                out[(*n)++] = (char)(0xf0 | (cp >> 18));
                out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[(*n)++] = (char)(0x80 | (cp & 0x3f));
        }
}

static char *parse_string(Parser *p) {
        char *out;
        size_t n = 0;

        if (p->pos >= p->len || p->s[p->pos] != '"') {
                fail(p, -EINVAL);
                return NULL;
        }
        p->pos++;
        /* The decoded string is never longer than the rest of the input. */
        out = malloc(p->len - p->pos + 1);
        if (!out) {
                fail(p, -ENOMEM);
                return NULL;
        }
        while (p->pos < p->len) {
                unsigned char c = (unsigned char)p->s[p->pos++];

                if (c == '"') {
                        out[n] = '\0';
                        return out;
                }
                if (c < 0x20)
                        break;
                if (c != '\\') {
                        out[n++] = (char)c;
                        continue;
                }
                if (p->pos >= p->len)
                        break;
                c = (unsigned char)p->s[p->pos++];
                switch (c) {
                case '"':
                case '\\':
                case '/':
                        out[n++] = (char)c;
                        break;
                case 'b':
                        out[n++] = '\b';
                        break;
                case 'f':
                        out[n++] = '\f';
                        break;
                case 'n':
                        out[n++] = '\n';
                        break;
                case 'r':
                        out[n++] = '\r';
                        break;
                case 't':
                        out[n++] = '\t';
                        break;
                case 'u': {
                        int cp;

                        if (p->len - p->pos < 4 || (cp = hex4(p->s + p->pos)) < 0)
                                goto bad;
                        p->pos += 4;
                        if (cp >= 0xd800 && cp < 0xdc00) {
                                int lo;

                                if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                                    (lo = hex4(p->s + p->pos + 2)) < 0xdc00 || lo > 0xdfff)
                                        goto bad;
                                p->pos += 6;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        } else if (cp >= 0xdc00 && cp < 0xe000)
                                goto bad;
                        if (cp == 0)
                                goto bad; /* would cut our C strings short */
                        utf8_put(out, &n, (unsigned)cp);
                        break;
                }
                default:
                        goto bad;
                }
        }
bad:
        free(out);
        fail(p, -EINVAL);
        return NULL;
}

static JsonValue *parse_value(Parser *p);

static JsonValue *new_value(Parser *p, JsonType type) {
        JsonValue *v = calloc(1, sizeof(*v));

        if (!v)
                fail(p, -ENOMEM);
        else
                v->type = type;
        return v;
}

static JsonValue *parse_container(Parser *p, bool object) {
        JsonValue *v, **tail;
        char close = object ? '}' : ']';

        if (++p->depth > 64) {
                fail(p, -EINVAL);
                return NULL;
        }
        v = new_value(p, object ? JSON_OBJECT : JSON_ARRAY);
        if (!v)
                return NULL;
        tail = &v->child;
        p->pos++; /* the opening bracket */
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
                p->depth--;
                return v;
        }
        for (;;) {
                char *key = NULL;
                JsonValue *item;

                skip_ws(p);
                if (object) {
                        key = parse_string(p);
                        if (!key)
                                goto bad;
                        skip_ws(p);
                        if (p->pos >= p->len || p->s[p->pos] != ':') {
                                free(key);
                                fail(p, -EINVAL);
                                goto bad;
                        }
                        p->pos++;
                }
                item = parse_value(p);
                if (!item) {
                        free(key);
                        goto bad;
                }
                item->key = key;
                *tail = item;
                tail = &item->next;
                skip_ws(p);
                if (p->pos < p->len && p->s[p->pos] == ',') {
                        p->pos++;
                        continue;
                }
                if (p->pos < p->len && p->s[p->pos] == close) {
                        p->pos++;
                        p->depth--;
                        return v;
                }
                fail(p, -EINVAL);
                goto bad;
        }
bad:
        json_value_free(v);
        return NULL;
}

static JsonValue *parse_number(Parser *p) {
        size_t start = p->pos;
        char buf[64], *end;
        JsonValue *v;

        if (p->pos < p->len && p->s[p->pos] == '-')
                p->pos++;
        if (p->pos >= p->len || p->s[p->pos] < '0' || p->s[p->pos] > '9') {
                fail(p, -EINVAL);
                return NULL;
        }
        while (p->pos < p->len && strchr("0123456789.eE+-", p->s[p->pos]))
                p->pos++;
        if (p->pos - start >= sizeof(buf)) {
                fail(p, -EINVAL);
                return NULL;
        }
        memcpy(buf, p->s + start, p->pos - start);
        buf[p->pos - start] = '\0';
        v = new_value(p, JSON_NUMBER);
        if (!v)
                return NULL;
        v->number = strtod(buf, &end);
        if (*end) {
                free(v);
                fail(p, -EINVAL);
                return NULL;
        }
        return v;
}

static JsonValue *parse_value(Parser *p) {
        JsonValue *v;

        skip_ws(p);
        if (p->pos >= p->len) {
                fail(p, -EINVAL);
                return NULL;
        }
        switch (p->s[p->pos]) {
        case '{':
                return parse_container(p, true);
        case '[':
                return parse_container(p, false);
        case '"':
                v = new_value(p, JSON_STRING);
                if (!v)
                        return NULL;
                v->string = parse_string(p);
                if (!v->string) {
                        free(v);
                        return NULL;
                }
                return v;
        case 't':
        case 'f':
                v = new_value(p, JSON_BOOL);
                if (!v)
                        return NULL;
                v->boolean = p->s[p->pos] == 't';
                if (!literal(p, v->boolean ? "true" : "false")) {
                        free(v);
                        return NULL;
                }
                return v;
        case 'n':
                if (!literal(p, "null"))
                        return NULL;
                return new_value(p, JSON_NULL);
        default:
                return parse_number(p);
        }
}

int json_parse(const char *text, size_t len, JsonValue **ret, size_t *ret_error_offset) {
        Parser p = { .s = text, .len = len };
        JsonValue *v;

        v = parse_value(&p);
        if (v) {
                skip_ws(&p);
                if (p.pos != p.len) {
                        v = json_value_free(v);
                        fail(&p, -EINVAL);
                }
        }
        if (!v) {
                if (ret_error_offset)
                        *ret_error_offset = p.pos;
                return p.error ? p.error : -EINVAL;
        }
        *ret = v;
        return 0;
}

JsonValue *json_value_free(JsonValue *v) {
        while (v) {
                JsonValue *next = v->next;

                json_value_free(v->child);
                free(v->string);
                free(v->key);
                free(v);
                v = next;
        }
        return NULL;
}

const JsonValue *json_get(const JsonValue *v, const char *path) {
        while (v && *path) {
                const char *dot = strchr(path, '.');
                size_t n = dot ? (size_t)(dot - path) : strlen(path);
                const JsonValue *c;

                if (v->type != JSON_OBJECT)
                        return NULL;
                for (c = v->child; c; c = c->next)
                        if (strlen(c->key) == n && memcmp(c->key, path, n) == 0)
                                break;
                v = c;
                path += n + (dot ? 1 : 0);
        }
        return v;
}

const char *json_get_string(const JsonValue *v, const char *path) {
        v = json_get(v, path);
        return v && v->type == JSON_STRING ? v->string : NULL;
}

bool json_get_number(const JsonValue *v, const char *path, double *ret) {
        v = json_get(v, path);
        if (!v || v->type != JSON_NUMBER)
                return false;
        *ret = v->number;
        return true;
}

bool json_get_bool(const JsonValue *v, const char *path, bool *ret) {
        v = json_get(v, path);
        if (!v || v->type != JSON_BOOL)
                return false;
        *ret = v->boolean;
        return true;
}
