/* SPDX-License-Identifier: MIT */
/* Who gets a slot on the control socket: control_admit() and the admin rule. */
#include "commands.h"
#include "control.h"
#include "test.h"

static void test_unprivileged_share(void) {
        /* One unprivileged uid: up to its own share, then "busy". */
        for (unsigned n = 0; n < CONTROL_MAX_PER_UID; n++)
                CHECK_INT(control_admit(n, n, n, false), CONTROL_ADMIT);
        CHECK_INT(control_admit(CONTROL_MAX_PER_UID, CONTROL_MAX_PER_UID, CONTROL_MAX_PER_UID, false),
                  CONTROL_USER_FULL);
        /* Another unprivileged uid still gets in beside it. */
        CHECK_INT(control_admit(CONTROL_MAX_PER_UID, CONTROL_MAX_PER_UID, 0, false), CONTROL_ADMIT);
        /* Unprivileged callers together never take the slots kept for the
         * privileged... */
        CHECK_INT(control_admit(CONTROL_MAX_UNPRIVILEGED, CONTROL_MAX_UNPRIVILEGED, 0, false), CONTROL_FULL);
        CHECK(CONTROL_MAX_UNPRIVILEGED < CONTROL_MAX_CLIENTS);
        CHECK(CONTROL_MAX_PER_UID < CONTROL_MAX_UNPRIVILEGED);
}

static void test_privileged_room(void) {
        /* ...which stay free for root, sqlvigil's user and admin_group, however
         * many unprivileged connections there are. */
        CHECK_INT(control_admit(CONTROL_MAX_UNPRIVILEGED, CONTROL_MAX_UNPRIVILEGED, 0, true), CONTROL_ADMIT);
        CHECK_INT(control_admit(CONTROL_MAX_CLIENTS - 1, CONTROL_MAX_UNPRIVILEGED, 0, true), CONTROL_ADMIT);
        /* The privileged have no share of their own to exhaust. */
        CHECK_INT(control_admit(100, 0, 100, true), CONTROL_ADMIT);
        /* Every slot taken: busy for everyone. */
        CHECK_INT(control_admit(CONTROL_MAX_CLIENTS, CONTROL_MAX_UNPRIVILEGED, 0, true), CONTROL_FULL);
        CHECK_INT(control_admit(CONTROL_MAX_CLIENTS, 0, 0, false), CONTROL_FULL);
}

static void test_who_is_privileged(void) {
        ControlPeer root = { .uid = 0, .gid = 0 }, self = { .uid = 1000, .gid = 1000 },
                    member = { .uid = 2000, .gid = 2000, .groups = { 50, 60 }, .n_groups = 2 },
                    other = { .uid = 3000, .gid = 3000 };

        CHECK(commands_peer_is_admin(&root, 1000, false, 0));
        CHECK(commands_peer_is_admin(&self, 1000, false, 0));
        CHECK(!commands_peer_is_admin(&member, 1000, false, 0));
        CHECK(commands_peer_is_admin(&member, 1000, true, 60));
        CHECK(!commands_peer_is_admin(&other, 1000, true, 60));
}

int main(void) {
        test_unprivileged_share();
        test_privileged_room();
        test_who_is_privileged();
        return test_result("test-admit");
}
