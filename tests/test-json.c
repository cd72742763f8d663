/* SPDX-License-Identifier: MIT */
/* The JSON writer's escaping and the parser, against each other. */
#include <errno.h>

#include "json.h"
#include "test.h"
#include "utf8.h"
#include "util.h"

static void test_writer(void) {
        Json j;

        json_init(&j);
        json_object_begin(&j);
        json_kv_bool(&j, "ok", true);
        json_kv_string(&j, "s", "a\"b\\c\nd\te\x01");
        json_kv_null(&j, "n");
        json_kv_int(&j, "i", -42);
        json_kv_uint(&j, "u", 18446744073709551615ULL);
        json_kv_double(&j, "d", 0.5);
        json_key(&j, "a");
        json_array_begin(&j);
        json_int(&j, 1);
        json_string(&j, NULL);
        json_object_begin(&j);
        json_object_end(&j);
        json_array_end(&j);
        json_object_end(&j);
        json_newline(&j);
        CHECK_STR(json_text(&j), "{\"ok\":true,\"s\":\"a\\\"b\\\\c\\nd\\te\\u0001\",\"n\":null,\"i\":-42,"
                                 "\"u\":18446744073709551615,\"d\":0.500000,\"a\":[1,null,{}]}\n");

        /* And back. */
        {
                JsonValue *v = NULL;
                double d;
                bool b;

                CHECK_INT(json_parse(json_text(&j), strlen(json_text(&j)), &v, NULL), 0);
                CHECK(json_get_bool(v, "ok", &b) && b);
                CHECK_STR(json_get_string(v, "s"), "a\"b\\c\nd\te\x01");
                CHECK(json_get(v, "n") && json_get(v, "n")->type == JSON_NULL);
                CHECK(json_get_number(v, "i", &d) && d == -42);
                CHECK(json_get_number(v, "d", &d) && d == 0.5);
                CHECK(json_get(v, "a")->type == JSON_ARRAY);
                CHECK(json_get(v, "missing") == NULL);
                CHECK(json_get_string(v, "i") == NULL);
                json_value_free(v);
        }
        json_free(&j);
}

/* Whatever bytes a string holds, the reply is valid UTF-8 that a strict
 * parser takes (the rule is in src/utf8.h): bytes that are not UTF-8 become
 * the text \xNN, control characters are escaped without loss. */
static void test_writer_bytes(void) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "/srv/x\xff.db", "\"/srv/x\\\\xff.db\"" },
                { "caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"" },  /* valid: as is */
                { "\xe2\x82", "\"\\\\xe2\\\\x82\"" },                           /* cut short */
                { "\xc0\xaf", "\"\\\\xc0\\\\xaf\"" },                           /* overlong '/' */
                { "\xed\xa0\x80", "\"\\\\xed\\\\xa0\\\\x80\"" },             /* a surrogate */
                { "\xf4\x90\x80\x80", "\"\\\\xf4\\\\x90\\\\x80\\\\x80\"" }, /* above U+10FFFF */
                { "\x80" "a", "\"\\\\x80a\"" },                                      /* a lone continuation */
                { "a\x7f\xc2\x85" "b", "\"a\\u007f\\u0085b\"" },                     /* DEL, C1 control */
                { "\xe2\x80\xa8\xe2\x80\xa9", "\"\\u2028\\u2029\"" },
                { "\x1b[31m\r\n", "\"\\u001b[31m\\r\\n\"" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                JsonValue *v = NULL;
                Json j;

                json_init(&j);
                json_string(&j, cases[i].in);
                CHECK_STR(json_text(&j), cases[i].out);
                CHECK(json_text(&j) && utf8_is_valid(json_text(&j)));
                CHECK_INT(json_parse(json_text(&j), strlen(json_text(&j)), &v, NULL), 0);
                if (v && utf8_is_valid(cases[i].in))
                        CHECK_STR(v->string, cases[i].in); /* lossless for text */
                json_value_free(v);
                json_free(&j);
        }

        /* Keys too. */
        {
                Json j;

                json_init(&j);
                json_object_begin(&j);
                json_kv_int(&j, "k\xfe", 1);
                json_object_end(&j);
                CHECK_STR(json_text(&j), "{\"k\\\\xfe\":1}");
                json_free(&j);
        }
}

static void test_parser(void) {
        static const char *const good[] = {
                "{}", "[]", " {\"a\": {\"b\": [1, 2.5, -3e2, true, false, null]}} ", "\"\\u00e9\\ud83d\\ude00\"",
                "0", "-0.5", "\"\"",
        };
        static const char *const bad[] = {
                "", "{", "}", "[1,]", "{\"a\"}", "{\"a\":}", "{a:1}", "'x'", "\"\\x\"", "\"\\ud800\"", "\"\\u0000\"",
                "tru", "nul", "1 2", "{\"a\":1,}", "\"unterminated", "\"tab\there\"", "01x", "-", "[[[[",
        };
        JsonValue *v;
        size_t off;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = NULL;
                CHECK_INT(json_parse(good[i], strlen(good[i]), &v, &off), 0);
                json_value_free(v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = NULL;
                CHECK_INT(json_parse(bad[i], strlen(bad[i]), &v, &off), -EINVAL);
                CHECK(v == NULL);
        }
        {
                static const char t[] = "{\"a\": {\"b\": \"c\"}}";

                CHECK_INT(json_parse(t, strlen(t), &v, NULL), 0);
        }
        CHECK_STR(json_get_string(v, "a.b"), "c");
        json_value_free(v);
        {
                /* Deep nesting is refused, not a stack overflow. */
                char deep[400];

                memset(deep, '[', sizeof(deep));
                CHECK_INT(json_parse(deep, sizeof(deep), &v, NULL), -EINVAL);
        }
}

int main(void) {
        test_writer();
        test_writer_bytes();
        test_parser();
        return test_result("test-json");
}
