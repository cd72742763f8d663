/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A minimal test harness: each check prints what failed, where, and with
 * which values, and the test continues so one run shows every failure.
 * main() returns test_result(): 0 when every check passed, 1 otherwise.
 */

#undef NDEBUG
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                test_checks++;                                                                     \
                if (!(cond)) {                                                                     \
                        test_failures++;                                                           \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                }                                                                                  \
        } while (0)

#define CHECK_INT(a, b)                                                                            \
        do {                                                                                       \
                long long _a = (long long)(a), _b = (long long)(b);                                \
                test_checks++;                                                                     \
                if (_a != _b) {                                                                    \
                        test_failures++;                                                           \
                        fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__,      \
                                __LINE__, #a, _a, #b, _b);                                         \
                }                                                                                  \
        } while (0)

#define CHECK_STR(a, b)                                                                            \
        do {                                                                                       \
                const char *_a = (a), *_b = (b);                                                   \
                test_checks++;                                                                     \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                           \
                        test_failures++;                                                           \
                        fprintf(stderr, "%s:%d: %s\n   got: %s\n  want: %s\n", __FILE__, __LINE__, \
                                #a, _a ? _a : "(null)", _b ? _b : "(null)");                      \
                }                                                                                  \
        } while (0)

static inline int test_result(const char *name) {
        if (test_checks == 0) {
                fprintf(stderr, "%s: no checks ran\n", name);
                return 1;
        }
        fprintf(stderr, "%s: %d checks, %d failed\n", name, test_checks, test_failures);
        return test_failures ? 1 : 0;
}
