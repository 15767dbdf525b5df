/* A libmemcached get/set loop for the throughput benchmark
 * (tests/bench/throughput.py), run as it is, with libmcshim.so preloaded, or
 * against a proxy.
 *
 *   mc_loop SERVERS ITERATIONS VALUE_SIZE [THREADS [KEYS]]
 *
 * THREADS threads (default 1), each with its own memcached_st configured
 * alike (ketama + md5, TCP_NODELAY), share ITERATIONS iterations of one set
 * and one get, each thread over its own KEYS keys (default 1000). Before the
 * clock starts, every thread connects and writes a few of its keys (untimed
 * warm-up: connections, the shim's first routing); then all start together
 * at a barrier. Every get must return the value just set: its
 * length, and its flags, which carry the iteration number.
 *
 * Prints one line of key=value figures:
 *   ops_per_s=X ops=N seconds=S threads=T cpu_s=C failed=F misses=M set_s=A get_s=B
 * (ops counts sets and gets; cpu_s is the process's user+system CPU time
 * over the timed part; set_s and get_s the time spent in the sets and in the
 * gets, summed over the threads: a store that also writes a second copy
 * shows in set_s alone). Exits 1 if any operation failed or missed, after
 * printing the line and a first error on stderr; 2 on a setup failure; 64 on
 * bad usage. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_barrier */
#include <libmemcached-1.0/memcached.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "tests/lib/mc_handle.h"

#define MAX_THREADS 256
#define WARM_KEYS 64

struct worker {
    unsigned id;
    const char* servers;
    long iterations;
    long keys;
    const char* value;
    size_t size;
    pthread_barrier_t* start;
    /* results */
    int setup_failed;
    long failed;
    long misses;
    double set_s, get_s;
    memcached_return_t first_error;
    const char* first_what;
};

static memcached_st* configure(const char* servers) {
    memcached_st* memc = mc_handle_ketama_md5(servers);
    if (memc && memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1) != MEMCACHED_SUCCESS) {
        memcached_free(memc);
        return NULL;
    }
    return memc;
}

static void note_error(struct worker* w, const char* what, memcached_return_t rc) {
    if (!w->first_what) {
        w->first_what = what;
        w->first_error = rc;
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void* work(void* arg) {
    struct worker* w = arg;
    memcached_st* memc = configure(w->servers);
    if (!memc) w->setup_failed = 1;
    char key[64];
    /* Warm-up, untimed: connects to every server (64 keys miss one of 4
     * ketama servers with odds ~1e-7) and lets the shim build its routing.
     * Not needed for hits: each get reads the key its set just wrote. */
    long warm = w->iterations < w->keys ? w->iterations : w->keys;
    if (warm > WARM_KEYS) warm = WARM_KEYS;
    if (w->setup_failed) warm = 0;
    for (long k = 0; k < warm; ++k) {
        const int length = snprintf(key, sizeof key, "bench:%u:%ld", w->id, k);
        memcached_return_t rc = memcached_set(memc, key, (size_t)length, w->value, w->size, 0, 0);
        if (rc != MEMCACHED_SUCCESS) {
            ++w->failed;
            note_error(w, "warm-up set", rc);
        }
    }
    pthread_barrier_wait(w->start);
    if (w->setup_failed) {
        if (memc) memcached_free(memc);
        return NULL;
    }
    for (long i = 0; i < w->iterations; ++i) {
        const int length = snprintf(key, sizeof key, "bench:%u:%ld", w->id, i % w->keys);
        const double set_start = now_s();
        memcached_return_t rc = memcached_set(memc, key, (size_t)length, w->value, w->size, 0, (uint32_t)i);
        const double get_start = now_s();
        w->set_s += get_start - set_start;
        if (rc != MEMCACHED_SUCCESS) {
            ++w->failed;
            note_error(w, "set", rc);
        }
        size_t got_length = 0;
        uint32_t flags = 0;
        char* got = memcached_get(memc, key, (size_t)length, &got_length, &flags, &rc);
        w->get_s += now_s() - get_start;
        if (got) {
            if (got_length != w->size || flags != (uint32_t)i) {
                ++w->failed;
                note_error(w, "get (wrong value)", MEMCACHED_SUCCESS);
            }
            free(got);
        } else if (rc == MEMCACHED_NOTFOUND) {
            ++w->misses;
            note_error(w, "get (miss)", rc);
        } else {
            ++w->failed;
            note_error(w, "get", rc);
        }
    }
    memcached_free(memc);
    return NULL;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 + (double)usage.ru_stime.tv_sec +
           (double)usage.ru_stime.tv_usec / 1e6;
}

static double since(const struct timespec* start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

int main(int argc, char** argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: mc_loop SERVERS ITERATIONS VALUE_SIZE [THREADS [KEYS]]\n");
        return 64;
    }
    const long iterations = atol(argv[2]);
    const long size = atol(argv[3]);
    const long threads = argc > 4 ? atol(argv[4]) : 1;
    const long keys = argc > 5 ? atol(argv[5]) : 1000;
    if (iterations < 1 || size < 1 || size > 64L * 1024 * 1024 || threads < 1 || threads > MAX_THREADS || keys < 1) {
        fprintf(stderr, "mc_loop: bad ITERATIONS, VALUE_SIZE, THREADS or KEYS\n");
        return 64;
    }
    char* value = malloc((size_t)size);
    struct worker* workers = calloc((size_t)threads, sizeof *workers);
    pthread_t* ids = calloc((size_t)threads, sizeof *ids);
    if (!value || !workers || !ids) {
        fprintf(stderr, "mc_loop: out of memory\n");
        return 2;
    }
    memset(value, 'x', (size_t)size);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (long t = 0; t < threads; ++t) {
        workers[t] = (struct worker){
            .id = (unsigned)t,
            .servers = argv[1],
            .iterations = iterations / threads + (t < iterations % threads ? 1 : 0),
            .keys = keys,
            .value = value,
            .size = (size_t)size,
            .start = &start,
        };
        if (pthread_create(&ids[t], NULL, work, &workers[t]) != 0) {
            fprintf(stderr, "mc_loop: cannot start thread %ld\n", t);
            return 2;
        }
    }
    pthread_barrier_wait(&start);
    struct timespec began;
    clock_gettime(CLOCK_MONOTONIC, &began);
    const double cpu_began = cpu_seconds();
    for (long t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
    const double seconds = since(&began);
    const double cpu = cpu_seconds() - cpu_began;

    long failed = 0, misses = 0, setup_failed = 0;
    double set_s = 0, get_s = 0;
    const struct worker* first = NULL;
    for (long t = 0; t < threads; ++t) {
        failed += workers[t].failed;
        misses += workers[t].misses;
        setup_failed += workers[t].setup_failed;
        set_s += workers[t].set_s;
        get_s += workers[t].get_s;
        if (!first && workers[t].first_what) first = &workers[t];
    }
    if (setup_failed) {
        fprintf(stderr, "mc_loop: %ld thread(s) could not set up a memcached_st for %s\n", setup_failed, argv[1]);
        return 2;
    }
    printf("ops_per_s=%.0f ops=%ld seconds=%.6f threads=%ld cpu_s=%.6f failed=%ld misses=%ld set_s=%.6f get_s=%.6f\n",
           (double)(2 * iterations) / seconds, 2 * iterations, seconds, threads, cpu, failed, misses, set_s, get_s);
    if (first)
        fprintf(stderr, "mc_loop: thread %u: first failure: %s: %s\n", first->id, first->first_what,
                memcached_strerror(NULL, first->first_error));
    pthread_barrier_destroy(&start);
    free(ids);
    free(workers);
    free(value);
    return failed || misses ? 1 : 0;
}
