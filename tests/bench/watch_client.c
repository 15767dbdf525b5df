/* The libmemcached client of the `detection` and `daemon` bench sections
 * (tests/bench/detection.py, daemon_cost.py): ketama + md5, as mcwatchd
 * routes by default, run plain or with libmcshim.so preloaded.
 *
 *   watch_client watch SERVERS KEY NATIVE_VALUE MAX_SECONDS TIMEOUT_MS
 *     get(KEY) in a loop. Each server holds KEY with its own address as the
 *     value, so a reply names the server that answered. Prints a line
 *     "at T value V" or "at T error TEXT" whenever the outcome changes, T
 *     the CLOCK_MONOTONIC second the request started (Python's
 *     time.monotonic() on Linux); "ready" after the first reply equal to
 *     NATIVE_VALUE; stops at the first other value (routed away) or after
 *     MAX_SECONDS; ends with "done requests=N errors=E" (E: failed
 *     requests after "ready"; " timeout" added when nothing moved).
 *     TIMEOUT_MS is the connect and poll timeout, so a request to a
 *     blackholed server fails in that time instead of seconds.
 *
 *   watch_client hold SERVERS KEYS
 *     Sets and gets KEYS keys, prints "ready ok=N", then waits for a line
 *     on stdin, so that its memory can be read from /proc meanwhile. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <libmemcached-1.0/memcached.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/lib/mc_handle.h"

/* A short pause between requests leaves the CPU to mcwatchd and memcached
 * on a small machine; it bounds the resolution of a timestamp to about
 * 0.3 ms, far below the delays measured. */
#define PAUSE_NS 200000L

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static memcached_st* open_handle(const char* servers) {
    memcached_st* memc = mc_handle_ketama_md5(servers);
    if (memc == NULL) {
        fprintf(stderr, "watch_client: bad server list %s\n", servers);
        exit(2);
    }
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    return memc;
}

static int watch(const char* servers, const char* key, const char* native, double max_s, long timeout_ms) {
    memcached_st* memc = open_handle(servers);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, (uint64_t)timeout_ms);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)timeout_ms);
    const struct timespec pause = {0, PAUSE_NS};
    const double deadline = now_s() + max_s;
    char last[256] = "";
    long requests = 0, errors = 0;
    int ready = 0, away = 0;
    while (!away) {
        const double start = now_s();
        if (start >= deadline) break;
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        char* value = memcached_get(memc, key, strlen(key), &length, &flags, &rc);
        ++requests;
        char outcome[256];
        if (value != NULL) {
            snprintf(outcome, sizeof outcome, "value %.*s", (int)length, value);
            away = ready && (length != strlen(native) || memcmp(value, native, length) != 0);
        } else {
            errors += ready; /* failures after the reading started */
            snprintf(outcome, sizeof outcome, "error %s", memcached_strerror(memc, rc));
        }
        if (strcmp(outcome, last) != 0) {
            printf("at %.6f %s\n", start, outcome);
            strcpy(last, outcome);
        }
        if (!ready && value != NULL && !away && length == strlen(native) && memcmp(value, native, length) == 0) {
            ready = 1;
            printf("ready\n");
            fflush(stdout);
        }
        free(value);
        if (!away) nanosleep(&pause, NULL);
    }
    printf("done requests=%ld errors=%ld%s\n", requests, errors, away ? "" : " timeout");
    memcached_free(memc);
    return 0;
}

static int hold(const char* servers, long keys) {
    memcached_st* memc = open_handle(servers);
    char value[100];
    memset(value, 'v', sizeof value);
    long ok = 0;
    for (long i = 0; i < keys; ++i) {
        char key[32];
        snprintf(key, sizeof key, "resident:%ld", i);
        if (memcached_set(memc, key, strlen(key), value, sizeof value, 0, 0) == MEMCACHED_SUCCESS) ++ok;
        size_t length;
        uint32_t flags;
        memcached_return_t rc;
        char* got = memcached_get(memc, key, strlen(key), &length, &flags, &rc);
        if (got != NULL) ++ok;
        free(got);
    }
    printf("ready ok=%ld\n", ok);
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) {
        /* stdin closed: the harness is gone; leave as well. */
    }
    memcached_free(memc);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 7 && strcmp(argv[1], "watch") == 0)
        return watch(argv[2], argv[3], argv[4], atof(argv[5]), atol(argv[6]));
    if (argc == 4 && strcmp(argv[1], "hold") == 0) return hold(argv[2], atol(argv[3]));
    fprintf(stderr,
            "usage: watch_client watch SERVERS KEY NATIVE_VALUE MAX_SECONDS TIMEOUT_MS\n"
            "       watch_client hold SERVERS KEYS\n");
    return 64;
}
