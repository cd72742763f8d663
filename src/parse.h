/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Value syntax shared by the configuration file, the command line and the
 * control socket. Every parser accepts the whole string or nothing: trailing
 * garbage is -EINVAL, a value that does not fit is -ERANGE.
 */

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* systemd-style durations: "250ms", "30s", "5min", "2h", "1d", "1h 30min";
 * a bare number is seconds. Units: us, ms, s/sec, m/min, h/hr, d, w. */
int parse_duration(const char *s, usec_t *ret);

/* Sizes in base 1024: "4096", "64K", "16M", "1G", "2T" (suffix case-insensitive). */
int parse_size(const char *s, uint64_t *ret);

/* yes/no, true/false, on/off, 1/0 (case-insensitive): 1 or 0, or -EINVAL. */
int parse_boolean(const char *s);

int parse_int64(const char *s, int64_t *ret);
int parse_uint64(const char *s, uint64_t *ret);

/* A plain decimal number such as "0.05" or "1"; no exponent, no hex, no inf/nan. */
int parse_double(const char *s, double *ret);

/* Returns the index of the candidate closest to word by edit distance when it
 * is close enough to be a plausible typo (distance <= 2, and less than half
 * of the word's length), or -1. Comparison is case-insensitive. */
int nearest_word(const char *word, const char *const *candidates, size_t n_candidates);
