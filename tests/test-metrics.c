/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text: whatever bytes the database's path and the instance
 * name hold, every line is one sample or one comment of valid UTF-8, with
 * label values escaped as the exposition format requires. (promtool checks
 * the file the real daemon writes: tests/integration/test_control.py.)
 */
#include <stdlib.h>

#include "metrics.h"
#include "test.h"
#include "utf8.h"

static void test_labels(void) {
        Status s = { .instance = "in\"st\xff", .db_path = "/srv/a\"b\\c\nd\xff\x01\xc3\xa9.db" };
        const char *want = "sqlvigil_up{database=\"/srv/a\\\"b\\\\c\\nd\\\\xff\\\\x01\xc3\xa9.db\"} 1\n";
        char *text = metrics_render(&s), *line, *save = NULL;
        size_t lines = 0;

        CHECK(text != NULL);
        if (!text)
                return;
        CHECK(utf8_is_valid(text));
        CHECK(strstr(text, want) != NULL);
        if (!strstr(text, want))
                fprintf(stderr, "  want %s  in:\n%.600s\n", want, text);
        CHECK(strstr(text, ",name=\"in\\\"st\\\\xff\"} 1\n") != NULL);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                lines++;
                CHECK(strncmp(line, "# HELP sqlvigil_", 16) == 0 || strncmp(line, "# TYPE sqlvigil_", 16) == 0 ||
                      strncmp(line, "sqlvigil_", 9) == 0);
                for (const char *p = line; *p; p++)
                        CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
        }
        CHECK(lines > 50);
        free(text);
}

int main(void) {
        test_labels();
        return test_result("test-metrics");
}
