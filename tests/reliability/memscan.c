/* Preloaded (LD_PRELOAD) into one of our binaries by tests/reliability/secrets_leak.rs:
 * when the process exits, after main has returned and every Rust value is dropped,
 * scans the process's writable private memory (heap, anonymous mappings, stack,
 * .data/.bss) for any 8-byte piece of the passwords and appends one line per hit,
 * then "scanned N bytes", to the file SASLDB_MEMSCAN_OUT.
 *
 * The passwords come in SASLDB_MEMSCAN_SECRETS, comma-separated, each hex-encoded and
 * XORed with 0x5a, so the environment holds no copy of them; the decoded copies live
 * in this library's own buffer, which the scan skips. Link it with -z now: a lazy
 * symbol resolution during the scan would spill the vector registers (which may still
 * hold bytes the program last copied) onto the stack. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 8

static unsigned char secrets[4096];
static size_t starts[64], lens[64], nsecrets;

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void decode(const char *hex) {
    size_t used = 0;
    while (*hex && nsecrets < 64) {
        starts[nsecrets] = used;
        while (*hex && *hex != ',' && used < sizeof secrets) {
            int hi = hexval(hex[0]), lo = hex[1] ? hexval(hex[1]) : -1;
            if (hi < 0 || lo < 0) return;
            secrets[used++] = (unsigned char)((hi << 4 | lo) ^ 0x5a);
            hex += 2;
        }
        lens[nsecrets] = used - starts[nsecrets];
        nsecrets++;
        if (*hex == ',') hex++;
    }
}

__attribute__((destructor)) static void memscan(void) {
    const char *hex = getenv("SASLDB_MEMSCAN_SECRETS");
    const char *outpath = getenv("SASLDB_MEMSCAN_OUT");
    if (!hex || !outpath) return;
    decode(hex);
    FILE *out = fopen(outpath, "a");
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!out || !maps) return;
    unsigned char first[256] = {0};
    for (size_t s = 0; s < nsecrets; s++)
        for (size_t w = 0; w + WINDOW <= lens[s]; w++) first[secrets[starts[s] + w]] = 1;
    const unsigned char *own_lo = secrets, *own_hi = secrets + sizeof secrets;
    char line[4096];
    unsigned long long scanned = 0;
    while (fgets(line, sizeof line, maps)) {
        uintptr_t lo, hi;
        char perms[8] = {0}, path[4096] = {0};
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095[^\n]", &lo, &hi, perms, path) < 3) continue;
        if (perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p') continue;
        if (strstr(path, "[vvar") || strstr(path, "[vsyscall]")) continue;
        const unsigned char *p = (const unsigned char *)lo, *end = (const unsigned char *)hi;
        scanned += (unsigned long long)(hi - lo);
        for (; p + WINDOW <= end; p++) {
            if (!first[*p]) continue;
            if (p >= own_lo && p < own_hi) continue;
            for (size_t s = 0; s < nsecrets; s++)
                for (size_t w = 0; w + WINDOW <= lens[s]; w++)
                    if (memcmp(p, secrets + starts[s] + w, WINDOW) == 0) {
                        fprintf(out, "hit: secret %zu at %p in %s %s\n", s, (const void *)p,
                                perms, path[0] ? path : "[anon]");
                        goto next;
                    }
        next:;
        }
    }
    fprintf(out, "scanned %llu bytes\n", scanned);
    fclose(maps);
    fclose(out);
}
