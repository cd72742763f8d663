/* SPDX-License-Identifier: MIT */
/*
 * stderr lines outside journald: the local time first (ISO 8601, with
 * milliseconds and the UTC offset), then one line of valid UTF-8 whatever
 * the message holds. stderr goes to a file here; the time is checked
 * against the clock with strptime() and timegm(), not with log.c's code.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "test.h"
#include "utf8.h"

static char *read_all(FILE *f) {
        size_t n;
        char *buf;

        fflush(f);
        n = (size_t)ftell(f);
        buf = calloc(1, n + 1);
        if (!buf)
                return NULL;
        rewind(f);
        if (fread(buf, 1, n, f) != n) {
                free(buf);
                return NULL;
        }
        (void)ftruncate(fileno(f), 0);
        rewind(f);
        return buf;
}

static void test_stderr_line(void) {
        FILE *f = tmpfile();
        char *text, stamp[32];
        time_t before, after, at;
        regex_t rx;
        struct tm tm = { 0 };
        int saved, matched;

        CHECK(f != NULL);
        if (!f)
                return;
        /* 2 h 30 min east of UTC (POSIX TZ signs are the other way round). */
        setenv("TZ", "XXX-02:30", 1);
        tzset();
        unsetenv("JOURNAL_STREAM");
        saved = dup(STDERR_FILENO);
        CHECK(saved >= 0 && dup2(fileno(f), STDERR_FILENO) == STDERR_FILENO);
        log_setup();

        before = time(NULL);
        log_event(LOG_WARNING, NULL, NULL, NULL, "cannot open %s: %s", "/srv/x\xff\n\x1b[2J.db", "gone");
        after = time(NULL);
        log_set_stderr_time(false);
        log_info("no time on this one");
        log_set_stderr_time(true);
        fflush(stderr);
        text = read_all(f);
        CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
        close(saved);
        fclose(f);
        CHECK(text != NULL);
        if (!text)
                return;

        CHECK_INT(regcomp(&rx,
                          "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}\\+02:30 "
                          "sqlvigil: warning: cannot open /srv/x\\\\xff\\\\n\\\\x1b\\[2J\\.db: gone\n"
                          "sqlvigil: no time on this one\n$",
                          REG_EXTENDED),
                  0);
        matched = regexec(&rx, text, 0, NULL, 0) == 0;
        CHECK(matched);
        regfree(&rx);
        CHECK(utf8_is_valid(text));

        /* The stamp is the local time of the call. */
        memcpy(stamp, text, 19);
        stamp[19] = '\0';
        CHECK(strptime(stamp, "%Y-%m-%dT%H:%M:%S", &tm) != NULL);
        at = timegm(&tm) - (2 * 3600 + 30 * 60);
        CHECK(at >= before && at <= after);
        if (!matched || at < before || at > after)
                fprintf(stderr, "  got: %s", text);
        free(text);
}

int main(void) {
        test_stderr_line();
        return test_result("test-log");
}
