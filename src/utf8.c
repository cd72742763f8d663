/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "util.h"

int32_t utf8_decode(const char *s, size_t n, size_t *ret_len) {
        const unsigned char *p = (const unsigned char *)s;
        uint32_t c, min;
        size_t len;

        *ret_len = 1;
        if (p[0] < 0x80)
                return p[0];
        if (p[0] >= 0xc2 && p[0] <= 0xdf) {
                len = 2;
                c = p[0] & 0x1f;
                min = 0x80;
        } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                len = 3;
                c = p[0] & 0x0f;
                min = 0x800;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                len = 4;
                c = p[0] & 0x07;
                min = 0x10000;
        } else
                return -1; /* a continuation byte, an overlong lead (c0, c1) or above U+10FFFF */
        if (n < len)
                return -1;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return -1;
                c = (c << 6) | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return -1;
        *ret_len = len;
        return (int32_t)c;
}

bool utf8_is_valid(const char *s) {
        size_t n = strlen(s), len;

        for (size_t i = 0; i < n; i += len)
                if (utf8_decode(s + i, n - i, &len) < 0)
                        return false;
        return true;
}

bool unicode_is_control(int32_t c) {
        return (c >= 0 && c < 0x20) || (c >= 0x7f && c <= 0x9f);
}

bool unicode_describe_invisible(int32_t c, char *buf, size_t size) {
        static const struct {
                int32_t first, last;
                const char *name;
        } table[] = {
                { 0x00a0, 0x00a0, "a no-break space" },
                { 0x00ad, 0x00ad, "a soft hyphen" },
                { 0x034f, 0x034f, "a combining grapheme joiner" },
                { 0x061c, 0x061c, "an Arabic letter mark" },
                { 0x115f, 0x1160, "a Hangul filler" },
                { 0x1680, 0x1680, "an Ogham space mark" },
                { 0x180e, 0x180e, "a Mongolian vowel separator" },
                { 0x2000, 0x200a, "a Unicode space" },
                { 0x200b, 0x200b, "a zero-width space" },
                { 0x200c, 0x200c, "a zero-width non-joiner" },
                { 0x200d, 0x200d, "a zero-width joiner" },
                { 0x200e, 0x200f, "a direction mark" },
                { 0x2028, 0x2028, "a line separator" },
                { 0x2029, 0x2029, "a paragraph separator" },
                { 0x202a, 0x202e, "a bidirectional control" },
                { 0x202f, 0x202f, "a narrow no-break space" },
                { 0x205f, 0x205f, "a medium mathematical space" },
                { 0x2060, 0x2060, "a word joiner" },
                { 0x2061, 0x2064, "an invisible operator" },
                { 0x2066, 0x2069, "a bidirectional control" },
                { 0x206a, 0x206f, "an invisible format character" },
                { 0x3000, 0x3000, "an ideographic space" },
                { 0x3164, 0x3164, "a Hangul filler" },
                { 0xfeff, 0xfeff, "a byte order mark" },
                { 0xffa0, 0xffa0, "a Hangul filler" },
                { 0xfff9, 0xfffb, "an interlinear annotation character" },
                { 0xe0000, 0xe007f, "an invisible tag character" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (c >= table[i].first && c <= table[i].last) {
                        bufprintf(buf, size, "%s (U+%04X)", table[i].name, (unsigned)c);
                        return true;
                }
        return false;
}

char *utf8_escape_log(const char *s) {
        size_t n = strlen(s), len, o = 0;
        char *out;

        /* Each byte becomes at most four characters. */
        out = malloc(4 * n + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += len) {
                int32_t c = utf8_decode(s + i, n - i, &len);

                if (c >= 0 && !unicode_is_control(c)) {
                        memcpy(out + o, s + i, len);
                        o += len;
                } else if (c == '\n' || c == '\r' || c == '\t') {
                        out[o++] = '\\';
                        out[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
                } else
                        for (size_t k = 0; k < len; k++) {
                                (void)snprintf(out + o, 5, "\\x%02x", (unsigned char)s[i + k]);
                                o += 4;
                        }
        }
        out[o] = '\0';
        return out;
}
