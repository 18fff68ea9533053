/* Test helper: a libgdbm writer that stores sasldb users one by one, the way Cyrus's
 * GDBM backend changes a file: gdbm_open(GDBM_WRITER) (libgdbm takes
 * flock(LOCK_EX | LOCK_NB) on the file and holds it until gdbm_close), one store,
 * gdbm_close.
 *
 *   gdbm_writer DB PREFIX REALM N PAUSE
 *
 * stores N keys `PREFIX<i> NUL REALM NUL userPassword` with the value `pw-PREFIX<i>`,
 * pausing a random 0 to PAUSE microseconds after each (as between two runs of a tool).
 * libgdbm does not wait for its lock; this program does, as a patient Cyrus writer
 * would: an open refused because another process holds the lock (GDBM_CANT_BE_WRITER)
 * or because the file was replaced and retired under it (GDBM_BAD_MAGIC_NUMBER) is
 * retried after a millisecond. Any other failure ends it with status 2 (open) or 3
 * (store), the message on stderr. On success it prints `retries R` and exits 0.
 * Compiled by tests/formats/gdbm.rs with `cc ... -lgdbm`. */
#include <gdbm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: gdbm_writer DB PREFIX REALM N PAUSE\n");
        return 1;
    }
    const char *path = argv[1], *prefix = argv[2], *realm = argv[3];
    int n = atoi(argv[4]), pause = atoi(argv[5]);
    long retries = 0;
    srand((unsigned)getpid());
    for (int i = 0; i < n; i++) {
        GDBM_FILE db;
        for (;;) {
            db = gdbm_open(path, 0, GDBM_WRITER, 0600, NULL);
            if (db)
                break;
            if (gdbm_errno != GDBM_CANT_BE_WRITER && gdbm_errno != GDBM_BAD_MAGIC_NUMBER) {
                fprintf(stderr, "gdbm_open %s: %s\n", path, gdbm_strerror(gdbm_errno));
                return 2;
            }
            retries++;
            usleep(1000);
        }
        char user[256], key[512], value[256];
        snprintf(user, sizeof user, "%s%d", prefix, i);
        int klen = snprintf(key, sizeof key, "%s%c%s%cuserPassword", user, 0, realm, 0);
        int vlen = snprintf(value, sizeof value, "pw-%s", user);
        datum k = {key, klen}, v = {value, vlen};
        if (gdbm_store(db, k, v, GDBM_REPLACE) != 0) {
            fprintf(stderr, "gdbm_store %s: %s\n", user, gdbm_strerror(gdbm_errno));
            gdbm_close(db);
            return 3;
        }
        if (gdbm_close(db) != 0) {
            fprintf(stderr, "gdbm_close: %s\n", gdbm_strerror(gdbm_errno));
            return 3;
        }
        if (pause > 0)
            usleep(rand() % pause);
    }
    printf("retries %ld\n", retries);
    return 0;
}
