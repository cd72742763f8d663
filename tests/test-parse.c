/* SPDX-License-Identifier: MIT */
/* Value syntax: durations, sizes, booleans, numbers, typo suggestions. */
#include <errno.h>

#include "parse.h"
#include "test.h"
#include "util.h"

static void test_durations(void) {
        static const struct {
                const char *text;
                usec_t usec;
        } good[] = {
                { "250ms", 250 * USEC_PER_MSEC },
                { "30s", 30 * USEC_PER_SEC },
                { "5min", 5 * USEC_PER_MINUTE },
                { "2h", 2 * USEC_PER_HOUR },
                { "1d", USEC_PER_DAY },
                { "1w", 7 * USEC_PER_DAY },
                { "42", 42 * USEC_PER_SEC },     /* a bare number is seconds */
                { "0", 0 },
                { "500us", 500 },
                { "3sec", 3 * USEC_PER_SEC },
                { "2m", 2 * USEC_PER_MINUTE },   /* systemd: m is minutes */
                { "1hr", USEC_PER_HOUR },
                { "1h 30min", 90 * USEC_PER_MINUTE },
                { "1h30min", 90 * USEC_PER_MINUTE },
                { " 10s ", 10 * USEC_PER_SEC },
                { "10 s", 10 * USEC_PER_SEC },
                { "2msec", 2 * USEC_PER_MSEC },
        };
        static const char *const bad[] = {
                "", " ", "s", "ms", "-5s", "5 minutes", "1.5s", "10x", "5S", "1h 30", "30s5", "abc",
                "5min!", "0x10", "+5s",
        };
        usec_t t;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                t = 12345;
                CHECK_INT(parse_duration(good[i].text, &t), 0);
                CHECK_INT(t, good[i].usec);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                t = 12345;
                CHECK_INT(parse_duration(bad[i], &t), -EINVAL);
                CHECK_INT(t, 12345); /* untouched on failure */
        }
        CHECK_INT(parse_duration("99999999999999999999s", &t), -ERANGE);
        CHECK_INT(parse_duration("999999999999d", &t), -ERANGE);
        CHECK_INT(parse_duration(NULL, &t), -EINVAL);
}

static void test_sizes(void) {
        static const struct {
                const char *text;
                uint64_t bytes;
        } good[] = {
                { "4096", 4096 },
                { "64K", 64 << 10 },
                { "64k", 64 << 10 },
                { "16M", 16ULL << 20 },
                { "1G", 1ULL << 30 },
                { "2T", 2ULL << 40 },
                { "0", 0 },
                { "1 G", 1ULL << 30 },
        };
        static const char *const bad[] = { "", "M", "-1", "1.5G", "16MB", "16MiB", "1P", "10 M B", "x", "0x10" };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 7;
                CHECK_INT(parse_size(good[i].text, &v), 0);
                CHECK_INT(v, good[i].bytes);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK_INT(parse_size(bad[i], &v), -EINVAL);
        CHECK_INT(parse_size("99999999999T", &v), -ERANGE);
        CHECK_INT(parse_size("18446744073709551616", &v), -ERANGE);
}

static void test_booleans(void) {
        static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True" };
        static const char *const no[] = { "no", "false", "off", "0", "No", "OFF" };
        static const char *const bad[] = { "", "y", "n", "2", "enabled", "yess", " yes" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                CHECK_INT(parse_boolean(yes[i]), 1);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                CHECK_INT(parse_boolean(no[i]), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK_INT(parse_boolean(bad[i]), -EINVAL);
}

static void test_numbers(void) {
        int64_t i;
        uint64_t u;
        double d;

        CHECK_INT(parse_int64("-10000", &i), 0);
        CHECK_INT(i, -10000);
        CHECK_INT(parse_int64("9223372036854775807", &i), 0);
        CHECK_INT(i, INT64_MAX);
        CHECK_INT(parse_int64("-9223372036854775808", &i), 0);
        CHECK(i == INT64_MIN);
        CHECK_INT(parse_int64("9223372036854775808", &i), -ERANGE);
        CHECK_INT(parse_int64("12a", &i), -EINVAL);
        CHECK_INT(parse_int64("", &i), -EINVAL);
        CHECK_INT(parse_int64("-", &i), -EINVAL);
        CHECK_INT(parse_uint64("256", &u), 0);
        CHECK_INT(u, 256);
        CHECK_INT(parse_uint64("-1", &u), -EINVAL);

        CHECK_INT(parse_double("0.05", &d), 0);
        CHECK(d > 0.0499999 && d < 0.0500001);
        CHECK_INT(parse_double("1", &d), 0);
        CHECK(d == 1.0);
        CHECK_INT(parse_double(".5", &d), 0);
        CHECK(d == 0.5);
        CHECK_INT(parse_double("5.", &d), 0);
        CHECK(d == 5.0);
        CHECK_INT(parse_double("1e-3", &d), -EINVAL);
        CHECK_INT(parse_double("nan", &d), -EINVAL);
        CHECK_INT(parse_double("inf", &d), -EINVAL);
        CHECK_INT(parse_double("-0.1", &d), -EINVAL);
        CHECK_INT(parse_double(".", &d), -EINVAL);
        CHECK_INT(parse_double("0,05", &d), -EINVAL);
}

static void test_nearest(void) {
        static const char *const keys[] = { "interval", "min_wal_pages", "truncate_wal_size", "stop_mode",
                                            "stop_timeout" };

        CHECK_INT(nearest_word("intervall", keys, ELEMENTSOF(keys)), 0);
        CHECK_INT(nearest_word("Interval", keys, ELEMENTSOF(keys)), 0);
        CHECK_INT(nearest_word("stop_mod", keys, ELEMENTSOF(keys)), 3);
        CHECK_INT(nearest_word("stop_timout", keys, ELEMENTSOF(keys)), 4);
        CHECK_INT(nearest_word("min_wal_page", keys, ELEMENTSOF(keys)), 1);
        CHECK_INT(nearest_word("colour", keys, ELEMENTSOF(keys)), -1);
        CHECK_INT(nearest_word("x", keys, ELEMENTSOF(keys)), -1);
        CHECK_INT(nearest_word("", keys, ELEMENTSOF(keys)), -1);
}

static void test_format(void) {
        char buf[32];
        usec_t back;

        CHECK_STR(format_duration(buf, sizeof(buf), 250 * USEC_PER_MSEC), "250ms");
        CHECK_STR(format_duration(buf, sizeof(buf), 60 * USEC_PER_SEC), "1min");
        CHECK_STR(format_duration(buf, sizeof(buf), 90 * USEC_PER_SEC), "90s");
        CHECK_STR(format_duration(buf, sizeof(buf), USEC_PER_DAY), "1d");
        CHECK_STR(format_duration(buf, sizeof(buf), 1500), "1500us");
        CHECK_STR(format_duration(buf, sizeof(buf), 0), "0");
        /* What we print, we read back. */
        for (usec_t t = 1; t < 400 * USEC_PER_DAY; t = t * 7 + 3) {
                format_duration(buf, sizeof(buf), t);
                CHECK_INT(parse_duration(buf, &back), 0);
                CHECK_INT(back, t);
        }
        CHECK_STR(format_bytes(buf, sizeof(buf), 0), "0B");
        CHECK_STR(format_bytes(buf, sizeof(buf), 1023), "1023B");
        CHECK_STR(format_bytes(buf, sizeof(buf), 4096), "4.0K");
        CHECK_STR(format_bytes(buf, sizeof(buf), 64ULL << 20), "64.0M");
        CHECK_STR(format_elapsed(buf, sizeof(buf), 3 * USEC_PER_MINUTE), "3min");
        CHECK_STR(format_elapsed(buf, sizeof(buf), 850 * USEC_PER_MSEC), "850ms");
}

int main(void) {
        test_durations();
        test_sizes();
        test_booleans();
        test_numbers();
        test_nearest();
        test_format();
        return test_result("test-parse");
}
