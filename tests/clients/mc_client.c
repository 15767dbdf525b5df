/* A libmemcached program of ours for the preload tests: the same commands as
 * pylibmc_client.py and php_client.php, so one test drives all three.
 *
 *   mc_client [--binary] [--modula] [--namespace NS] SERVERS COMMAND ARGS
 *   SERVERS   host:port,host:port,...
 *   set-many PREFIX N TTL   set PREFIX0..PREFIX(N-1) to "v<i>": prints "stored K"
 *   get-many PREFIX N       memcached_get each: prints "hits K"
 *   mget-many PREFIX N      one memcached_mget + fetch_result: prints "found K"
 *   exec-many PREFIX N      memcached_mget_execute + fetch_execute (binary): "found K"
 *   set KEY VALUE TTL | get KEY | delete KEY
 * Exit 0 unless the command line is wrong. */
#define _POSIX_C_SOURCE 200809L  /* strdup */
#include <libmemcached-1.0/memcached.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static memcached_return_t count_hit(const memcached_st *memc, memcached_result_st *result, void *context) {
    (void)memc;
    (void)result;
    ++*(size_t *)context;
    return MEMCACHED_SUCCESS;
}

static int usage(void) {
    fprintf(stderr, "usage: mc_client [--binary] [--modula] [--namespace NS] SERVERS COMMAND ARGS\n");
    return 64;
}

int main(int argc, char **argv) {
    int binary = 0, modula = 0, i = 1;
    const char *name_space = NULL;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; ++i) {
        if (strcmp(argv[i], "--binary") == 0) binary = 1;
        else if (strcmp(argv[i], "--modula") == 0) modula = 1;
        else if (strcmp(argv[i], "--namespace") == 0 && i + 1 < argc) name_space = argv[++i];
        else return usage();
    }
    if (argc - i < 2) return usage();
    memcached_st *memc = memcached_create(NULL);
    memcached_server_st *list = memcached_servers_parse(argv[i]);
    memcached_server_push(memc, list);
    memcached_server_list_free(list);
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION,
                           modula ? MEMCACHED_DISTRIBUTION_MODULA : MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
    if (!modula) memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5);
    if (binary) memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    if (name_space) memcached_callback_set(memc, MEMCACHED_CALLBACK_NAMESPACE, name_space);
    const char *command = argv[i + 1];
    char **args = argv + i + 2;
    int nargs = argc - i - 2;
    char key[256], value[64];

    if (strcmp(command, "set-many") == 0 && nargs == 3) {
        long n = atol(args[1]), stored = 0;
        for (long k = 0; k < n; ++k) {
            snprintf(key, sizeof key, "%s%ld", args[0], k);
            snprintf(value, sizeof value, "v%ld", k);
            if (memcached_set(memc, key, strlen(key), value, strlen(value), (time_t)atol(args[2]), 0) ==
                MEMCACHED_SUCCESS)
                ++stored;
        }
        printf("stored %ld\n", stored);
    } else if (strcmp(command, "get-many") == 0 && nargs == 2) {
        long n = atol(args[1]), hits = 0;
        for (long k = 0; k < n; ++k) {
            snprintf(key, sizeof key, "%s%ld", args[0], k);
            snprintf(value, sizeof value, "v%ld", k);
            size_t length = 0;
            uint32_t flags = 0;
            memcached_return_t rc;
            char *got = memcached_get(memc, key, strlen(key), &length, &flags, &rc);
            if (got && length == strlen(value) && memcmp(got, value, length) == 0) ++hits;
            free(got);
        }
        printf("hits %ld\n", hits);
    } else if ((strcmp(command, "mget-many") == 0 || strcmp(command, "exec-many") == 0) && nargs == 2) {
        size_t n = (size_t)atol(args[1]), found = 0;
        char **keys = calloc(n, sizeof *keys);
        size_t *lengths = calloc(n, sizeof *lengths);
        for (size_t k = 0; k < n; ++k) {
            snprintf(key, sizeof key, "%s%zu", args[0], k);
            keys[k] = strdup(key);
            lengths[k] = strlen(key);
        }
        if (strcmp(command, "mget-many") == 0) {
            if (memcached_mget(memc, (const char *const *)keys, lengths, n) == MEMCACHED_SUCCESS) {
                memcached_return_t rc;
                memcached_result_st *result;
                while ((result = memcached_fetch_result(memc, NULL, &rc)) != NULL) {
                    ++found;
                    memcached_result_free(result);
                }
            }
        } else {
            memcached_execute_fn callbacks[] = {count_hit};
            if (memcached_mget_execute(memc, (const char *const *)keys, lengths, n, callbacks, &found, 1) ==
                MEMCACHED_SUCCESS)
                memcached_fetch_execute(memc, callbacks, &found, 1);
        }
        printf("found %zu\n", found);
        for (size_t k = 0; k < n; ++k) free(keys[k]);
        free(keys);
        free(lengths);
    } else if (strcmp(command, "set") == 0 && nargs == 3) {
        memcached_return_t rc = memcached_set(memc, args[0], strlen(args[0]), args[1], strlen(args[1]),
                                              (time_t)atol(args[2]), 0);
        printf("%s\n", memcached_strerror(memc, rc));
    } else if (strcmp(command, "get") == 0 && nargs == 1) {
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        char *got = memcached_get(memc, args[0], strlen(args[0]), &length, &flags, &rc);
        if (got) printf("VALUE %.*s\n", (int)length, got);
        else printf("%s\n", memcached_strerror(memc, rc));
        free(got);
    } else if (strcmp(command, "delete") == 0 && nargs == 1) {
        printf("%s\n", memcached_strerror(memc, memcached_delete(memc, args[0], strlen(args[0]), 0)));
    } else {
        memcached_free(memc);
        return usage();
    }
    memcached_free(memc);
    return 0;
}
