/* SPDX-License-Identifier: MIT */
/* The control socket's request line: every input parses or says why not. */
#include <errno.h>

#include "config.h"
#include "request.h"
#include "test.h"

static void good(const char *line, RequestCommand cmd, int64_t arg) {
        char error[256] = "";
        Request r = { .command = _REQUEST_MAX, .arg = -99 };

        CHECK_INT(request_parse(line, strlen(line), &r, error, sizeof(error)), 0);
        if (error[0])
                fprintf(stderr, "  %s: %s\n", line, error);
        CHECK_INT(r.command, cmd);
        CHECK_INT(r.arg, arg);
}

static void bad(const char *line, size_t len, const char *message) {
        char error[256] = "";
        Request r;

        CHECK_INT(request_parse(line, len, &r, error, sizeof(error)), -EINVAL);
        CHECK_STR(error, message);
}

int main(void) {
        char big[4096];

        good("health\n", REQUEST_HEALTH, 0);
        good("health", REQUEST_HEALTH, 0);
        good("health\r\n", REQUEST_HEALTH, 0);
        good("  stats  \n", REQUEST_STATS, 0);
        good("status\n", REQUEST_STATUS, 0);
        good("config\n", REQUEST_CONFIG, 0);
        good("checkpoint\n", REQUEST_CHECKPOINT, CHECKPOINT_PASSIVE);
        good("checkpoint truncate\n", REQUEST_CHECKPOINT, CHECKPOINT_TRUNCATE);
        good("checkpoint\tfull\n", REQUEST_CHECKPOINT, CHECKPOINT_FULL);
        good("checkpoint restart\n", REQUEST_CHECKPOINT, CHECKPOINT_RESTART);
        good("vacuum\n", REQUEST_VACUUM, 0);
        good("vacuum 1000\n", REQUEST_VACUUM, 1000);
        good("vacuum 4294967295\n", REQUEST_VACUUM, 4294967295LL);
        good("analyze\n", REQUEST_ANALYZE, 0);
        good("optimize\n", REQUEST_OPTIMIZE, 0);
        good("check\n", REQUEST_CHECK, 0);
        good("check quick\n", REQUEST_CHECK, 0);
        good("check integrity\n", REQUEST_CHECK, 1);
        good("reload\n", REQUEST_RELOAD, 0);

        bad("", 0, "empty request");
        bad("\n", 1, "empty request");
        bad(" \t \n", 4, "empty request");
        bad("bogus\n", 6, "unknown command 'bogus'");
        bad("stast\n", 6, "unknown command 'stast'; did you mean 'stats'?");
        bad("Health\n", 7, "unknown command 'Health'; did you mean 'health'?");
        bad("health now\n", 11, "health takes no argument");
        bad("reload please\n", 14, "reload takes no argument");
        bad("vacuum 1 2\n", 11, "too many words in the request");
        bad("checkpoint truncate now\n", 24, "too many words in the request");
        bad("vacuum x\n", 9, "vacuum takes a number of pages between 1 and 4294967295");
        bad("vacuum 0\n", 9, "vacuum takes a number of pages between 1 and 4294967295");
        bad("vacuum -1\n", 10, "vacuum takes a number of pages between 1 and 4294967295");
        bad("vacuum 4294967296\n", 18, "vacuum takes a number of pages between 1 and 4294967295");
        bad("checkpoint hard\n", 16, "checkpoint mode must be passive, full, restart or truncate");
        bad("check fast\n", 11, "check takes quick or integrity");
        bad("health\x01\n", 8, "request contains a non-printable byte 0x01 at offset 6");
        bad("he\x00lth\n", 7, "request contains a non-printable byte 0x00 at offset 2");
        bad("\xff\n", 2, "request contains a non-printable byte 0xff at offset 0");
        bad("health\n\n", 8, "request contains a non-printable byte 0x0a at offset 6");
        memset(big, 'a', sizeof(big));
        bad(big, 1024, "request too long (the limit is 1024 bytes)");
        bad(big, sizeof(big), "request too long (the limit is 1024 bytes)");
        big[40] = '\n';
        bad(big, 41, "unknown command");

        CHECK(!request_is_admin(REQUEST_HEALTH) && !request_is_admin(REQUEST_STATS) &&
              !request_is_admin(REQUEST_STATUS) && !request_is_admin(REQUEST_CONFIG));
        for (int c = REQUEST_CHECKPOINT; c < _REQUEST_MAX; c++)
                CHECK(request_is_admin((RequestCommand)c));
        return test_result("test-request");
}
