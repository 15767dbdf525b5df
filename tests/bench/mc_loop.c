/* A libmemcached get/set loop for the throughput benchmark: N rounds of one
 * set and one get over K keys, ketama + md5. Prints "ops_per_s X".
 *   mc_loop SERVERS N VALUE_SIZE */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime */
#include <libmemcached-1.0/memcached.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: mc_loop SERVERS N VALUE_SIZE\n");
        return 64;
    }
    memcached_st *memc = memcached_create(NULL);
    memcached_server_st *list = memcached_servers_parse(argv[1]);
    memcached_server_push(memc, list);
    memcached_server_list_free(list);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    const long n = atol(argv[2]);
    const size_t size = (size_t)atol(argv[3]);
    char *value = malloc(size);
    memset(value, 'x', size);
    char key[32];
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long ok = 0;
    for (long i = 0; i < n; ++i) {
        snprintf(key, sizeof key, "bench:%ld", i % 1000);
        if (memcached_set(memc, key, strlen(key), value, size, 0, 0) == MEMCACHED_SUCCESS) ++ok;
        size_t length;
        uint32_t flags;
        memcached_return_t rc;
        char *got = memcached_get(memc, key, strlen(key), &length, &flags, &rc);
        if (got) ++ok;
        free(got);
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    const double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    printf("ops_per_s %.0f ok %ld\n", (double)(2 * n) / seconds, ok);
    memcached_free(memc);
    free(value);
    return ok == 2 * n ? 0 : 1;
}
