/* SPDX-License-Identifier: MIT */
/* The WAL index header and /proc/locks, from bytes we write ourselves. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "test.h"
#include "walindex.h"

static void put32(unsigned char *p, uint32_t v) {
        memcpy(p, &v, 4);
}

static void test_header(void) {
        char path[] = "/tmp/sqlvigil-test-shm-XXXXXX";
        unsigned char buf[32768] = { 0 };
        WalIndex w;
        int fd = mkstemp(path);

        CHECK(fd >= 0);
        if (fd < 0)
                return;
        put32(buf, 3007000);
        buf[12] = 1;
        buf[14] = 0x00;
        buf[15] = 0x10; /* 4096 in little-endian u16 */
        put32(buf + 16, 480);
        put32(buf + 32, 0xabcdef);
        memcpy(buf + 48, buf, 48);
        put32(buf + 96, 470);
        put32(buf + 100, 0);
        put32(buf + 104, 470);
        put32(buf + 108, 480);
        put32(buf + 112, 0xffffffff);
        put32(buf + 116, 0xffffffff);
        CHECK_INT(write(fd, buf, sizeof(buf)), (long long)sizeof(buf));

        CHECK_INT(walindex_read(fd, &w), 0);
        CHECK_INT(w.mx_frame, 480);
        CHECK_INT(w.n_backfill, 470);
        CHECK_INT(w.salt, 0xabcdef);
        CHECK_INT(walindex_pending(&w), 10);
        CHECK_INT(w.read_mark[1], 470);
        CHECK_INT(w.read_mark[2], 480);

        /* Copies that disagree (a writer mid-update): not trusted. */
        put32(buf + 48 + 16, 481);
        CHECK_INT(pwrite(fd, buf, 128, 0), 128);
        CHECK_INT(walindex_read(fd, &w), WALINDEX_E_UNINITIALIZED);
        /* Not initialised. */
        memset(buf, 0, 128);
        CHECK_INT(pwrite(fd, buf, 128, 0), 128);
        CHECK_INT(walindex_read(fd, &w), WALINDEX_E_UNINITIALIZED);
        /* Too short. */
        CHECK_INT(ftruncate(fd, 40), 0);
        CHECK_INT(walindex_read(fd, &w), WALINDEX_E_UNINITIALIZED);
        close(fd);
        unlink(path);
        CHECK_INT(walindex_read(-1, &w), WALINDEX_E_UNINITIALIZED); /* no file */
}

static void test_readers(void) {
        /* A real /proc/locks excerpt (pids and inodes changed). The -shm is
         * fe:00:777: pid 200 holds read mark 1 (an old snapshot), pid 300
         * read mark 0 (the database only), pid 100 is ourselves, 400 holds a
         * lock on another file, 500 only waits for one. */
        static const char locks[] =
                "1: POSIX  ADVISORY  READ 200 fe:00:777 128 128\n"
                "2: POSIX  ADVISORY  READ 200 fe:00:777 124 124\n"
                "3: POSIX  ADVISORY  READ 300 fe:00:777 123 123\n"
                "4: POSIX  ADVISORY  READ 100 fe:00:777 125 125\n"
                "5: POSIX  ADVISORY  READ 400 fe:00:778 124 124\n"
                "5: -> POSIX  ADVISORY  WRITE 500 fe:00:777 120 120\n"
                "6: FLOCK  ADVISORY  WRITE 600 fe:00:777 0 EOF\n"
                "7: POSIX  ADVISORY  READ 200 fe:00:555 1073741826 1073742335\n";
        WalIndex w = { .mx_frame = 480, .n_backfill = 100, .read_mark = { 0, 100, 480, 0, 0 } };
        WalReader r[8];
        char text[512];
        size_t n = 0;

        CHECK_INT(walindex_readers(locks, makedev(0xfe, 0), 777, &w, 100, r, 8, &n), 0);
        CHECK_INT(n, 2);
        if (n == 2) {
                /* The one holding back the checkpoint comes first. */
                CHECK_INT(r[0].pid, 200);
                CHECK_INT(r[0].slot, 1);
                CHECK_INT(r[0].mark, 100);
                CHECK(r[0].blocks_backfill);
                CHECK_INT(r[1].pid, 300);
                CHECK_INT(r[1].slot, 0);
                CHECK(!r[1].blocks_backfill);
                strcpy(r[0].comm, "python3");
                strcpy(r[1].comm, "?");
                walindex_format_readers(r, n, 480, text, sizeof(text));
                CHECK_STR(text, "pid 200 (python3), reading frame 100 of 480; pid 300 (?), reading the database file");
        }
        /* A range lock covering several read marks counts for each. */
        CHECK_INT(walindex_readers("1: POSIX  ADVISORY  WRITE 42 fe:00:777 123 127\n", makedev(0xfe, 0), 777, &w, 1,
                                   r, 8, &n),
                  0);
        CHECK_INT(n, 5);
        /* Garbage is ignored. */
        CHECK_INT(walindex_readers("nonsense\n\n1: POSIX\n", makedev(0xfe, 0), 777, &w, 1, r, 8, &n), 0);
        CHECK_INT(n, 0);
        /* The live file parses (whatever is in it). */
        CHECK_INT(walindex_readers(NULL, makedev(0xfe, 0), 777, &w, getpid(), r, 8, &n), 0);
}

int main(void) {
        test_header();
        test_readers();
        return test_result("test-walindex");
}
