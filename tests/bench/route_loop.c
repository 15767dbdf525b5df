/* ns per routing decision, for make bench's routing section
 * (tests/bench/routing.py): memcached_generate_hash over the same keys,
 * best of several passes. Run as it is, that is libmemcached's own choice;
 * with libmcshim.so preloaded, the same call is the shim's. Given the path
 * of libmcshim.so, it also times the C API's mcshim_route (state file from
 * $MCSHIM_STATE), loaded with dlopen so that it interposes nothing.
 *
 *   route_loop SERVERS ketama|modula HASH KEYS PASSES [LIBMCSHIM]
 *
 * Prints "generate_hash_ns X", "per_server N0 N1 ..." (how many keys each
 * server got: a dead server must get none under the shim) and, with
 * LIBMCSHIM, "capi_ns X" and "capi_per_server ...". */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <dlfcn.h>
#include <libmemcached-1.0/memcached.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcshim.h"
#include "tests/lib/mc_handle.h"

enum { kMaxServers = 64 };

typedef mcshim_t* (*OpenFn)(const char*);
typedef int (*UseStateFn)(mcshim_t*);
typedef int (*RouteFn)(mcshim_t*, const void*, size_t, mcshim_route_t*);

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void print_counts(const char* label, const long* counts, unsigned servers) {
    printf("%s", label);
    for (unsigned i = 0; i < servers; ++i) printf(" %ld", counts[i]);
    printf("\n");
}

int main(int argc, char** argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: route_loop SERVERS ketama|modula HASH KEYS PASSES [LIBMCSHIM]\n");
        return 64;
    }
    memcached_st* memc = memcached_create(NULL);
    mc_handle_add_servers(memc, argv[1]);
    const unsigned servers = memcached_server_count(memc);
    const int hash = strcmp(argv[3], "md5") == 0             ? MEMCACHED_HASH_MD5
                     : strcmp(argv[3], "one_at_a_time") == 0 ? MEMCACHED_HASH_DEFAULT
                     : strcmp(argv[3], "murmur") == 0        ? MEMCACHED_HASH_MURMUR
                                                             : -1;
    if (servers == 0 || servers > kMaxServers || hash < 0) {
        fprintf(stderr, "route_loop: bad server list or hash %s\n", argv[3]);
        return 64;
    }
    mc_handle_place(
        memc, strcmp(argv[2], "modula") == 0 ? MEMCACHED_DISTRIBUTION_MODULA : MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA,
        (memcached_hash_t)hash);
    const long nkeys = atol(argv[4]);
    const int passes = atoi(argv[5]);
    if (nkeys <= 0 || passes <= 0) return 64;
    char(*keys)[32] = malloc((size_t)nkeys * sizeof *keys);
    size_t* lengths = malloc((size_t)nkeys * sizeof *lengths);
    for (long i = 0; i < nkeys; ++i)
        lengths[i] = (size_t)snprintf(keys[i], sizeof keys[i], "user:%ld:session", i * 7919 % 1000003);

    long counts[kMaxServers] = {0};
    double best = 1e30;
    for (int pass = 0; pass < passes; ++pass) {
        const double start = now_ns();
        for (long i = 0; i < nkeys; ++i) ++counts[memcached_generate_hash(memc, keys[i], lengths[i]) % kMaxServers];
        const double ns = (now_ns() - start) / (double)nkeys;
        if (ns < best) best = ns;
    }
    for (unsigned i = 0; i < servers; ++i) counts[i] /= passes;
    printf("generate_hash_ns %.2f\n", best);
    print_counts("per_server", counts, servers);

    if (argc == 7) {
        void* lib = dlopen(argv[6], RTLD_NOW | RTLD_LOCAL);
        OpenFn open_fn = lib ? (OpenFn)(uintptr_t)dlsym(lib, "mcshim_open") : NULL;
        UseStateFn use_fn = lib ? (UseStateFn)(uintptr_t)dlsym(lib, "mcshim_use_state_servers") : NULL;
        RouteFn route_fn = lib ? (RouteFn)(uintptr_t)dlsym(lib, "mcshim_route") : NULL;
        mcshim_t* shim = open_fn ? open_fn(NULL) : NULL;
        if (!route_fn || !shim || use_fn(shim) != MCSHIM_OK) {
            fprintf(stderr, "route_loop: C API unavailable: %s\n", lib ? "no usable state file" : dlerror());
            return 1;
        }
        long capi_counts[kMaxServers] = {0};
        double capi_best = 1e30;
        for (int pass = 0; pass < passes; ++pass) {
            const double start = now_ns();
            for (long i = 0; i < nkeys; ++i) {
                mcshim_route_t r;
                if (route_fn(shim, keys[i], lengths[i], &r) == MCSHIM_OK && r.target >= 0)
                    ++capi_counts[r.target % kMaxServers];
            }
            const double ns = (now_ns() - start) / (double)nkeys;
            if (ns < capi_best) capi_best = ns;
        }
        for (unsigned i = 0; i < servers; ++i) capi_counts[i] /= passes;
        printf("capi_ns %.2f\n", capi_best);
        print_counts("capi_per_server", capi_counts, servers);
    }
    free(keys);
    free(lengths);
    memcached_free(memc);
    return 0;
}
