/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

/* Reads an unsigned decimal integer at *p, advancing *p. No sign, no spaces. */
static int read_digits(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        for (; isdigit((unsigned char)*s); s++) {
                unsigned d = (unsigned)(*s - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *p = s;
        *ret = v;
        return 0;
}

static const char *skip_space(const char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        return s;
}

int parse_duration(const char *s, usec_t *ret) {
        static const struct {
                const char *name;
                usec_t usec;
        } units[] = {
                /* Longer names first so that "min" wins over "m" and "ms" over "m". */
                { "usec", 1 },
                { "msec", USEC_PER_MSEC },
                { "sec", USEC_PER_SEC },
                { "min", USEC_PER_MINUTE },
                { "hr", USEC_PER_HOUR },
                { "us", 1 },
                { "ms", USEC_PER_MSEC },
                { "s", USEC_PER_SEC },
                { "m", USEC_PER_MINUTE },
                { "h", USEC_PER_HOUR },
                { "d", USEC_PER_DAY },
                { "w", 7 * USEC_PER_DAY },
        };
        usec_t total = 0;
        bool any = false;

        if (!s)
                return -EINVAL;
        s = skip_space(s);
        while (*s) {
                uint64_t n;
                usec_t mult = USEC_PER_SEC;
                size_t i;
                int r;

                r = read_digits(&s, &n);
                if (r < 0)
                        return r;
                s = skip_space(s);
                if (isalpha((unsigned char)*s)) {
                        size_t len = 0;

                        while (isalpha((unsigned char)s[len]))
                                len++;
                        for (i = 0; i < ELEMENTSOF(units); i++)
                                if (strlen(units[i].name) == len && strncmp(s, units[i].name, len) == 0)
                                        break;
                        if (i == ELEMENTSOF(units))
                                return -EINVAL;
                        mult = units[i].usec;
                        s += len;
                } else if (any) {
                        /* "1h 30" is ambiguous: only a lone number may omit the unit. */
                        return -EINVAL;
                } else if (*skip_space(s) != '\0') {
                        return -EINVAL;
                }
                if (n > (USEC_INFINITY - 1) / mult || total > USEC_INFINITY - 1 - n * mult)
                        return -ERANGE;
                total += n * mult;
                any = true;
                s = skip_space(s);
        }
        if (!any)
                return -EINVAL;
        *ret = total;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        uint64_t n, mult = 1;
        int r;

        if (!s)
                return -EINVAL;
        s = skip_space(s);
        r = read_digits(&s, &n);
        if (r < 0)
                return r;
        s = skip_space(s);
        switch (toupper((unsigned char)*s)) {
        case '\0':
                break;
        case 'K':
                mult = 1ULL << 10;
                break;
        case 'M':
                mult = 1ULL << 20;
                break;
        case 'G':
                mult = 1ULL << 30;
                break;
        case 'T':
                mult = 1ULL << 40;
                break;
        default:
                return -EINVAL;
        }
        if (*s)
                s++;
        if (*skip_space(s) != '\0')
                return -EINVAL;
        if (n > UINT64_MAX / mult)
                return -ERANGE;
        *ret = n * mult;
        return 0;
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        }
        return -EINVAL;
}

int parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        if (*s == '+')
                s++;
        r = read_digits(&s, &v);
        if (r < 0)
                return r;
        if (*s)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_int64(const char *s, int64_t *ret) {
        bool negative = false;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        if (*s == '-' || *s == '+') {
                negative = *s == '-';
                s++;
        }
        r = read_digits(&s, &v);
        if (r < 0)
                return r;
        if (*s)
                return -EINVAL;
        if (negative) {
                if (v > (uint64_t)INT64_MAX + 1)
                        return -ERANGE;
                *ret = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        } else {
                if (v > INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t)v;
        }
        return 0;
}

int parse_double(const char *s, double *ret) {
        uint64_t ip = 0, fp = 0;
        double scale = 1.0;
        bool digits = false;

        if (!s)
                return -EINVAL;
        /* Hand-rolled on purpose: strtod() accepts "inf", "nan", hex and
         * exponents, and depends on the locale's decimal point. */
        while (isdigit((unsigned char)*s)) {
                if (ip > 1000000000ULL)
                        return -ERANGE;
                ip = ip * 10 + (uint64_t)(*s++ - '0');
                digits = true;
        }
        if (*s == '.') {
                s++;
                while (isdigit((unsigned char)*s)) {
                        if (scale > 1e15) {
                                s++; /* further digits do not change a double */
                                continue;
                        }
                        fp = fp * 10 + (uint64_t)(*s++ - '0');
                        scale *= 10.0;
                        digits = true;
                }
        }
        if (!digits || *s)
                return -EINVAL;
        *ret = (double)ip + (double)fp / scale;
        return 0;
}

static size_t edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        size_t row[64];

        /* Names we compare are short identifiers; anything longer is no typo. */
        if (la >= ELEMENTSOF(row) || lb >= ELEMENTSOF(row))
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t diag = row[0];

                row[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        size_t up = row[j];
                        size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;

                        row[j] = MIN(MIN(row[j] + 1, row[j - 1] + 1), diag + cost);
                        diag = up;
                }
        }
        return row[lb];
}

int nearest_word(const char *word, const char *const *candidates, size_t n_candidates) {
        size_t best = SIZE_MAX, len = strlen(word);
        int best_index = -1;

        for (size_t i = 0; i < n_candidates; i++) {
                size_t d = edit_distance(word, candidates[i]);

                if (d < best) {
                        best = d;
                        best_index = (int)i;
                }
        }
        if (best_index < 0 || best > 2 || best * 2 >= MAX(len, (size_t)2))
                return -1;
        return best_index;
}
