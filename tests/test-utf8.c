/* SPDX-License-Identifier: MIT */
/*
 * The UTF-8 rule every output follows (src/utf8.h): what is valid, what a
 * log line shows for bytes that are not, and which characters count as
 * invisible in the configuration.
 */
#include <stdlib.h>

#include "test.h"
#include "utf8.h"
#include "util.h"

static void test_decode(void) {
        static const struct {
                const char *s;
                int32_t c;
                size_t len;
        } cases[] = {
                { "a", 'a', 1 },
                { "\xc3\xa9", 0xe9, 2 },
                { "\xe2\x80\x8b", 0x200b, 3 },
                { "\xf0\x9f\x98\x80", 0x1f600, 4 },
                { "\xf4\x8f\xbf\xbf", 0x10ffff, 4 },
                { "\xff", -1, 1 },
                { "\xc0\xaf", -1, 1 },          /* overlong */
                { "\xe0\x80\xaf", -1, 1 },      /* overlong */
                { "\xed\xa0\x80", -1, 1 },      /* surrogate */
                { "\xf4\x90\x80\x80", -1, 1 },  /* above U+10FFFF */
                { "\xe2\x82", -1, 1 },          /* cut short */
                { "\xe2\x28\xa1", -1, 1 },      /* bad continuation */
                { "\x80", -1, 1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t len = 99;

                CHECK_INT(utf8_decode(cases[i].s, strlen(cases[i].s), &len), cases[i].c);
                CHECK_INT(len, cases[i].len);
        }
        CHECK(utf8_is_valid("/var/lib/caf\xc3\xa9/x.db"));
        CHECK(!utf8_is_valid("/var/lib/caf\xe9/x.db"));
        CHECK(utf8_is_valid(""));
}

static void test_escape_log(void) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "plain /srv/caf\xc3\xa9.db", "plain /srv/caf\xc3\xa9.db" },
                { "a\nb\rc\td", "a\\nb\\rc\\td" },
                { "\x1b[2J", "\\x1b[2J" },
                { "x\xff" "y", "x\\xffy" },
                { "\xc2\x85", "\\xc2\\x85" },   /* C1 control: each byte */
                { "\x7f", "\\x7f" },
                { "back\\slash", "back\\slash" }, /* unchanged */
                { "\xe2\x82", "\\xe2\\x82" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = utf8_escape_log(cases[i].in);

                CHECK_STR(s, cases[i].out);
                CHECK(s && utf8_is_valid(s) && !strchr(s, '\n'));
                free(s);
        }
}

static void test_invisible(void) {
        static const int32_t invisible[] = { 0xa0, 0xad, 0x2000, 0x2009, 0x200b, 0x200d, 0x200e, 0x202e,
                                             0x202f, 0x2060, 0x2066, 0x3000, 0xfeff, 0xe0041 };
        static const int32_t visible[] = { ' ', 'a', '#', 0xe9, 0x4e2d, 0x1f600, 0x2010 };
        char buf[96];

        for (size_t i = 0; i < ELEMENTSOF(invisible); i++)
                CHECK(unicode_describe_invisible(invisible[i], buf, sizeof(buf)));
        for (size_t i = 0; i < ELEMENTSOF(visible); i++)
                CHECK(!unicode_describe_invisible(visible[i], buf, sizeof(buf)));
        CHECK(unicode_describe_invisible(0xa0, buf, sizeof(buf)));
        CHECK_STR(buf, "a no-break space (U+00A0)");
        CHECK(unicode_describe_invisible(0xe0041, buf, sizeof(buf)));
        CHECK_STR(buf, "an invisible tag character (U+E0041)");
        CHECK(unicode_is_control(0) && unicode_is_control(0x1f) && unicode_is_control(0x7f) &&
              unicode_is_control(0x9f));
        CHECK(!unicode_is_control(' ') && !unicode_is_control(0xa0));
}

int main(void) {
        test_decode();
        test_escape_log();
        test_invisible();
        return test_result("test-utf8");
}
