/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Text that goes out of sqlvigil. Paths and error messages are bytes: a file
 * name may hold any byte but '/' and NUL, and SQLite's messages quote them.
 * What sqlvigil writes (JSON replies, journal fields, stderr lines, the
 * Prometheus textfile) is UTF-8 text, escaped as its format requires. The
 * rule is the same for every output (docs/control.md, sqlvigil(8) LOGGING
 * and METRICS):
 *
 *   - a valid UTF-8 character is written as it is, unless the format must
 *     escape it;
 *   - a byte that is not part of a valid UTF-8 character is written as the
 *     four characters \xNN (NN its value in lower-case hex), so the output
 *     stays valid UTF-8 and still shows which byte it was;
 *   - control characters are escaped as the format escapes them: in JSON
 *     losslessly (\n, \u0001); in log lines and Prometheus text as \n, \r,
 *     \t or \xNN, so that a log entry and a sample are always one line.
 *
 * "Valid" is RFC 3629: shortest form, no surrogates, nothing above U+10FFFF.
 * Everything here is pure and may run on any thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The code point of the character at s, which has n > 0 bytes left, with
 * its length in *ret_len. When s[0] does not start a valid character:
 * -1, and *ret_len is 1 (the byte to skip). */
int32_t utf8_decode(const char *s, size_t n, size_t *ret_len);

/* Whether every byte of s (NUL-terminated) is part of a valid character. */
bool utf8_is_valid(const char *s);

/* C0 controls, DEL and the C1 controls: U+0000-001F and U+007F-009F. */
bool unicode_is_control(int32_t c);

/* Characters that cannot be seen, or that look like an ordinary space but
 * are not one (no-break and other Unicode spaces, zero-width characters,
 * bidirectional controls, the byte order mark), described for a message:
 * "a no-break space (U+00A0)", written into buf. Returns false, and leaves
 * buf alone, for any other character. */
bool unicode_describe_invisible(int32_t c, char *buf, size_t size);

/* The log-line form of s: control characters as \n, \r, \t or \xNN (each
 * byte of a C1 control too), bytes that are not UTF-8 as \xNN, everything
 * else unchanged (a backslash too). Allocated; NULL when memory ran out. */
char *utf8_escape_log(const char *s);
