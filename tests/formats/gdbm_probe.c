/* Test helper: keyed access to a GDBM file through the real libgdbm.
 *
 *   gdbm_probe fetch  DB LIST   prints how many keys of LIST are missing or differ
 *   gdbm_probe store  DB LIST   stores every pair of LIST (GDBM_REPLACE), prints 0
 *   gdbm_probe delete DB LIST   deletes every key of LIST, prints 0
 *
 * LIST has one pair per line: hex(key) SPACE hex(value) (the value may be empty).
 * Exit status 2 when the database cannot be opened (message on stderr), 3 when a
 * store or delete fails. Compiled by tests/formats/gdbm.rs with `cc ... -lgdbm`. */
#include <gdbm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

static size_t unhex(const char *h, size_t n, char *out)
{
    size_t i;
    for (i = 0; i + 1 < n; i += 2)
        out[i / 2] = (char)(nibble(h[i]) << 4 | nibble(h[i + 1]));
    return n / 2;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: gdbm_probe fetch|store|delete DB LIST\n");
        return 1;
    }
    const char *mode = argv[1];
    int reader = strcmp(mode, "fetch") == 0;
    GDBM_FILE db = gdbm_open(argv[2], 0, reader ? GDBM_READER : GDBM_WRITER, 0600, NULL);
    if (!db) {
        fprintf(stderr, "gdbm_open %s: %s\n", argv[2], gdbm_strerror(gdbm_errno));
        return 2;
    }
    FILE *list = fopen(argv[3], "r");
    if (!list) {
        perror(argv[3]);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long misses = 0;
    while ((len = getline(&line, &cap, list)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        char *sp = strchr(line, ' ');
        size_t klen_hex = sp ? (size_t)(sp - line) : (size_t)len;
        const char *vhex = sp ? sp + 1 : "";
        char *buf = malloc((size_t)len / 2 + 2);
        datum key, val;
        key.dptr = buf;
        key.dsize = (int)unhex(line, klen_hex, buf);
        val.dptr = buf + key.dsize;
        val.dsize = (int)unhex(vhex, strlen(vhex), buf + key.dsize);
        if (reader) {
            datum got = gdbm_fetch(db, key);
            if (!got.dptr || got.dsize != val.dsize || memcmp(got.dptr, val.dptr, val.dsize) != 0)
                misses++;
            free(got.dptr);
        } else if (strcmp(mode, "store") == 0) {
            if (gdbm_store(db, key, val, GDBM_REPLACE) != 0) {
                fprintf(stderr, "gdbm_store: %s\n", gdbm_strerror(gdbm_errno));
                return 3;
            }
        } else {
            if (gdbm_delete(db, key) != 0) {
                fprintf(stderr, "gdbm_delete: %s\n", gdbm_strerror(gdbm_errno));
                return 3;
            }
        }
        free(buf);
    }
    free(line);
    fclose(list);
    if (gdbm_close(db) != 0) {
        fprintf(stderr, "gdbm_close: %s\n", gdbm_strerror(gdbm_errno));
        return 3;
    }
    printf("%ld\n", misses);
    return 0;
}
