/* A libmemcached program of ours for the preload tests: the same commands as
 * pylibmc_client.py and php_client.php, so one test drives all three.
 *
 *   mc_client [--binary] [--modula] [--namespace NS] SERVERS COMMAND ARGS
 *   SERVERS   host:port,host:port,...
 *   set-many PREFIX N TTL   set PREFIX0..PREFIX(N-1) to "v<i>": prints "stored K"
 *   get-many PREFIX N       memcached_get each: prints "hits K"
 *   mget-many PREFIX N      one memcached_mget + fetch_result: prints "found K"
 *   exec-many PREFIX N      memcached_mget_execute + fetch_execute (binary): "found K"
 *   set KEY VALUE TTL | add KEY VALUE TTL | get KEY | delete KEY
 *   load PREFIX N SECONDS   for SECONDS, set then get PREFIX0..PREFIX(N-1) in turn:
 *                           "ops O errors E", then "error CODE COUNT" per code seen
 *                           (a miss is not an error)
 *   mget KEY...             memcached_mget + memcached_fetch_result: "VALUE KEY DATA" per
 *                           result, then "END <the loop's ending code>"
 *   mget-by-key GROUP KEY...  the same with memcached_mget_by_key
 *   mget-heap KEY...        the same with one result from memcached_result_create(memc, NULL),
 *                           which libmemcached frees when the stream ends
 *   mget-churn KEY...       the same, getting a key through five other handles after each result
 *   exec KEY...             memcached_mget_execute + fetch_execute (binary): "VALUE KEY DATA"
 *                           per callback, then "END <fetch_execute's code>"
 *   get-by-key GROUP KEY | set-by-key GROUP KEY VALUE TTL
 *   incr KEY OFFSET         "VALUE N" or the error | touch KEY TTL: the code
 *   count KEY N [INITIAL]   N increments by 1 (with an initial value: increment_with_initial,
 *                           binary only): prints "acknowledged K"
 *   last-error KEY          memcached_get, then what memcached_last_error and
 *                           memcached_last_error_message say: "CODE: MESSAGE"
 *   threads PREFIX N T      T threads, each with a memcached_clone of the handle,
 *                           set and get their share of the keys: prints "hits K"
 *   fork PREFIX N           sets the keys, then a forked child gets them: "child hits K"
 *   behaviors               what memcached_behavior_get says of the handle
 *   where                   for each key on stdin, the server libmemcached picks
 *                           (memcached_server_by_key): "KEY host:port"
 *   servers                 the handle's list as memcached_server_cursor walks it:
 *                           "server host:port" each, then "count N" (memcached_server_count)
 *   errno PREFIX N          set, then get, PREFIX0..PREFIX(N-1), then one mget + fetch_result
 *                           of them all, errno set to EDOM before each call: prints "errno
 *                           changed K of C answered calls", then the first such call and its errno
 * --config STRING builds the handle with memcached(STRING) instead (SERVERS is
 * then ignored but must be given).
 * Exit 0 unless the command line is wrong. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <libmemcached-1.0/memcached.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/mc_handle.h"

/* errno after a call that ended with an answer (not memcached_fatal): it
 * was EDOM before the call. */
struct errno_check {
    long answered, changed;
    char first[128];
};

static void check_errno(struct errno_check* check, const char* call, memcached_return_t rc) {
    const int after = errno;
    if (memcached_fatal(rc)) return;
    ++check->answered;
    if (after != EDOM && check->changed++ == 0)
        snprintf(check->first, sizeof check->first, "%s: %s", call, strerror(after));
}

static void errno_kept(memcached_st* memc, const char* prefix, long n) {
    struct errno_check check = {0, 0, ""};
    char key[256];
    for (long i = 0; i < n; ++i) {
        snprintf(key, sizeof key, "%s%ld", prefix, i);
        errno = EDOM;
        check_errno(&check, "set", memcached_set(memc, key, strlen(key), "v", 1, 0, 0));
    }
    for (long i = 0; i < n; ++i) {
        snprintf(key, sizeof key, "%s%ld", prefix, i);
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        errno = EDOM;
        free(memcached_get(memc, key, strlen(key), &length, &flags, &rc));
        check_errno(&check, "get", rc);
    }
    char** keys = calloc((size_t)n, sizeof *keys);
    size_t* lengths = calloc((size_t)n, sizeof *lengths);
    for (long i = 0; i < n; ++i) {
        snprintf(key, sizeof key, "%s%ld", prefix, i);
        keys[i] = strdup(key);
        lengths[i] = strlen(key);
    }
    errno = EDOM;
    check_errno(&check, "mget", memcached_mget(memc, (const char* const*)keys, lengths, (size_t)n));
    memcached_return_t rc = MEMCACHED_SUCCESS;
    for (long i = 0; i <= n; ++i) { /* n results and the end, at most */
        errno = EDOM;
        memcached_result_st* got = memcached_fetch_result(memc, NULL, &rc);
        check_errno(&check, "fetch_result", rc);
        if (!got) break;
        memcached_result_free(got);
    }
    for (long i = 0; i < n; ++i) free(keys[i]);
    free(keys);
    free(lengths);
    printf("errno changed %ld of %ld answered calls\n", check.changed, check.answered);
    if (check.changed) printf("first %s\n", check.first);
}

static memcached_return_t count_hit(const memcached_st* memc, memcached_result_st* result, void* context) {
    (void)memc;
    (void)result;
    ++*(size_t*)context;
    return MEMCACHED_SUCCESS;
}

static memcached_return_t print_server(const memcached_st* memc, const memcached_instance_st* server, void* context) {
    (void)memc;
    (void)context;
    printf("server %s:%u\n", memcached_server_name(server), (unsigned)memcached_server_port(server));
    return MEMCACHED_SUCCESS;
}

static memcached_return_t print_result(const memcached_st* memc, memcached_result_st* result, void* context) {
    (void)memc;
    (void)context;
    printf("VALUE %.*s %.*s\n", (int)memcached_result_key_length(result), memcached_result_key_value(result),
           (int)memcached_result_length(result), memcached_result_value(result));
    return MEMCACHED_SUCCESS;
}

/* One multi-get of the keys as a program reads it: every result, then the
 * code that ended the stream (libmemcached's END unless something failed). */
/* Gets a key through five handles of their own, each freed after: each
 * takes a place in the shim's small per-thread cache of handle routings. */
static void use_other_handles(memcached_st* memc) {
    for (int i = 0; i < 5; ++i) {
        memcached_st* other = memcached_clone(NULL, memc);
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        free(memcached_get(other, "other-handle", strlen("other-handle"), &length, &flags, &rc));
        memcached_free(other);
    }
}

static void print_multi_get(memcached_st* memc, const char* group, char** keys, int count, int execute, int heap,
                            int churn) {
    size_t* lengths = calloc((size_t)count, sizeof *lengths);
    for (int k = 0; k < count; ++k) lengths[k] = strlen(keys[k]);
    memcached_return_t rc;
    if (execute) {
        memcached_execute_fn callbacks[] = {print_result};
        rc = memcached_mget_execute(memc, (const char* const*)keys, lengths, (size_t)count, callbacks, NULL, 1);
        if (rc == MEMCACHED_SUCCESS) rc = memcached_fetch_execute(memc, callbacks, NULL, 1);
    } else {
        rc = group ? memcached_mget_by_key(memc, group, strlen(group), (const char* const*)keys, lengths, (size_t)count)
                   : memcached_mget(memc, (const char* const*)keys, lengths, (size_t)count);
        if (rc == MEMCACHED_SUCCESS) {
            /* One result reused for the whole stream, as PHP and libmemcached's
             * documentation do: its count decides between END and NOT FOUND. */
            memcached_result_st buffer, *result = memcached_result_create(memc, heap ? NULL : &buffer);
            while (memcached_fetch_result(memc, result, &rc) != NULL) {
                print_result(memc, result, NULL);
                if (churn) use_other_handles(memc);
            }
            if (!heap) memcached_result_free(result);
        }
    }
    printf("END %s\n", memcached_strerror(memc, rc));
    free(lengths);
}

static long set_range(memcached_st* memc, const char* prefix, long from, long to, time_t ttl) {
    char key[256], value[64];
    long stored = 0;
    for (long k = from; k < to; ++k) {
        snprintf(key, sizeof key, "%s%ld", prefix, k);
        snprintf(value, sizeof value, "v%ld", k);
        if (memcached_set(memc, key, strlen(key), value, strlen(value), ttl, 0) == MEMCACHED_SUCCESS) ++stored;
    }
    return stored;
}

static long get_range(memcached_st* memc, const char* prefix, long from, long to) {
    char key[256], value[64];
    long hits = 0;
    for (long k = from; k < to; ++k) {
        snprintf(key, sizeof key, "%s%ld", prefix, k);
        snprintf(value, sizeof value, "v%ld", k);
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        char* got = memcached_get(memc, key, strlen(key), &length, &flags, &rc);
        if (got && length == strlen(value) && memcmp(got, value, length) == 0) ++hits;
        free(got);
    }
    return hits;
}

struct share {
    memcached_st* parent;
    const char* prefix;
    long from, to, hits;
};

static void* run_share(void* argument) {
    struct share* share = argument;
    memcached_st* clone = memcached_clone(NULL, share->parent);
    for (int round = 0; round < 3; ++round) {
        set_range(clone, share->prefix, share->from, share->to, 0);
        share->hits = get_range(clone, share->prefix, share->from, share->to);
    }
    memcached_free(clone);
    return NULL;
}

static int usage(void) {
    fprintf(stderr, "usage: mc_client [--binary] [--modula] [--namespace NS] SERVERS COMMAND ARGS\n");
    return 64;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A steady read/write load, as an application runs it: what it saw fail. */
static void load(memcached_st* memc, const char* prefix, long n, double seconds) {
    long ops = 0, errors = 0, by_code[MEMCACHED_MAXIMUM_RETURN] = {0};
    const double end = now_s() + seconds;
    for (long i = 0; now_s() < end; i = (i + 1) % n) {
        char key[200], value[32];
        snprintf(key, sizeof key, "%s%ld", prefix, i);
        snprintf(value, sizeof value, "v%ld", i);
        memcached_return_t rc = memcached_set(memc, key, strlen(key), value, strlen(value), 0, 0);
        ++ops;
        if (rc != MEMCACHED_SUCCESS) {
            ++errors;
            ++by_code[rc];
        }
        size_t length = 0;
        uint32_t flags = 0;
        free(memcached_get(memc, key, strlen(key), &length, &flags, &rc));
        ++ops;
        if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
            ++errors;
            ++by_code[rc];
        }
    }
    printf("ops %ld errors %ld\n", ops, errors);
    for (int code = 0; code < MEMCACHED_MAXIMUM_RETURN; ++code)
        if (by_code[code]) printf("error %s %ld\n", memcached_strerror(memc, (memcached_return_t)code), by_code[code]);
}

int main(int argc, char** argv) {
    int binary = 0, modula = 0, i = 1;
    const char *name_space = NULL, *config = NULL;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; ++i) {
        if (strcmp(argv[i], "--binary") == 0)
            binary = 1;
        else if (strcmp(argv[i], "--modula") == 0)
            modula = 1;
        else if (strcmp(argv[i], "--namespace") == 0 && i + 1 < argc)
            name_space = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else
            return usage();
    }
    if (argc - i < 2) return usage();
    memcached_st* memc;
    if (config) {
        memc = memcached(config, strlen(config));
        if (!memc) return usage();
    } else {
        memc = memcached_create(NULL);
        /* A list that does not parse leaves an empty handle, as a careless
         * application would have. */
        mc_handle_add_servers(memc, argv[i]);
        if (modula) /* and libmemcached's default hash, never set */
            memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_MODULA);
        else
            mc_handle_place(memc, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA, MEMCACHED_HASH_MD5);
    }
    if (binary) memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    if (name_space) memcached_callback_set(memc, MEMCACHED_CALLBACK_NAMESPACE, name_space);
    const char* command = argv[i + 1];
    char** args = argv + i + 2;
    int nargs = argc - i - 2;

    if (strcmp(command, "set-many") == 0 && nargs == 3) {
        printf("stored %ld\n", set_range(memc, args[0], 0, atol(args[1]), (time_t)atol(args[2])));
    } else if (strcmp(command, "get-many") == 0 && nargs == 2) {
        printf("hits %ld\n", get_range(memc, args[0], 0, atol(args[1])));
    } else if (strcmp(command, "threads") == 0 && nargs == 3) {
        long n = atol(args[1]), t = atol(args[2]), hits = 0;
        if (t < 1 || t > 64) return usage();
        pthread_t threads[64];
        struct share shares[64];
        for (long k = 0; k < t; ++k) {
            shares[k] = (struct share){memc, args[0], n * k / t, n * (k + 1) / t, 0};
            pthread_create(&threads[k], NULL, run_share, &shares[k]);
        }
        for (long k = 0; k < t; ++k) {
            pthread_join(threads[k], NULL);
            hits += shares[k].hits;
        }
        printf("hits %ld\n", hits);
    } else if (strcmp(command, "fork") == 0 && nargs == 2) {
        long n = atol(args[1]);
        set_range(memc, args[0], 0, n, 0);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            printf("child hits %ld\n", get_range(memc, args[0], 0, n));
            fflush(stdout);
            _exit(0);
        }
        int status = 0;
        waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) printf("child failed\n");
    } else if (strcmp(command, "where") == 0 && nargs == 0) {
        char line[300];
        while (fgets(line, sizeof line, stdin)) {
            line[strcspn(line, "\n")] = '\0';
            memcached_return_t rc;
            const memcached_instance_st* server = memcached_server_by_key(memc, line, strlen(line), &rc);
            if (server)
                printf("%s %s:%u\n", line, memcached_server_name(server), (unsigned)memcached_server_port(server));
            else
                printf("%s none\n", line);
            fflush(stdout); /* answered line by line: a test may wait for each */
        }
    } else if (strcmp(command, "behaviors") == 0 && nargs == 0) {
        printf("distribution %llu hash %llu ketama_weighted %llu binary %llu\n",
               (unsigned long long)memcached_behavior_get(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION),
               (unsigned long long)memcached_behavior_get(memc, MEMCACHED_BEHAVIOR_HASH),
               (unsigned long long)memcached_behavior_get(memc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED),
               (unsigned long long)memcached_behavior_get(memc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL));
    } else if ((strcmp(command, "mget-many") == 0 || strcmp(command, "exec-many") == 0) && nargs == 2) {
        size_t n = (size_t)atol(args[1]), found = 0;
        char** keys = calloc(n, sizeof *keys);
        size_t* lengths = calloc(n, sizeof *lengths);
        char key[256];
        for (size_t k = 0; k < n; ++k) {
            snprintf(key, sizeof key, "%s%zu", args[0], k);
            keys[k] = strdup(key);
            lengths[k] = strlen(key);
        }
        if (strcmp(command, "mget-many") == 0) {
            if (memcached_mget(memc, (const char* const*)keys, lengths, n) == MEMCACHED_SUCCESS) {
                memcached_return_t rc;
                memcached_result_st* result;
                while ((result = memcached_fetch_result(memc, NULL, &rc)) != NULL) {
                    ++found;
                    memcached_result_free(result);
                }
            }
        } else {
            memcached_execute_fn callbacks[] = {count_hit};
            if (memcached_mget_execute(memc, (const char* const*)keys, lengths, n, callbacks, &found, 1) ==
                MEMCACHED_SUCCESS)
                memcached_fetch_execute(memc, callbacks, &found, 1);
        }
        printf("found %zu\n", found);
        for (size_t k = 0; k < n; ++k) free(keys[k]);
        free(keys);
        free(lengths);
    } else if ((strcmp(command, "mget") == 0 || strcmp(command, "exec") == 0 || strcmp(command, "mget-heap") == 0 ||
                strcmp(command, "mget-churn") == 0) &&
               nargs >= 1) {
        print_multi_get(memc, NULL, args, nargs, strcmp(command, "exec") == 0, strcmp(command, "mget-heap") == 0,
                        strcmp(command, "mget-churn") == 0);
    } else if (strcmp(command, "mget-by-key") == 0 && nargs >= 2) {
        print_multi_get(memc, args[0], args + 1, nargs - 1, 0, 0, 0);
    } else if (strcmp(command, "get-by-key") == 0 && nargs == 2) {
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        char* got =
            memcached_get_by_key(memc, args[0], strlen(args[0]), args[1], strlen(args[1]), &length, &flags, &rc);
        if (got)
            printf("VALUE %.*s\n", (int)length, got);
        else
            printf("%s\n", memcached_strerror(memc, rc));
        free(got);
    } else if (strcmp(command, "set-by-key") == 0 && nargs == 4) {
        memcached_return_t rc = memcached_set_by_key(memc, args[0], strlen(args[0]), args[1], strlen(args[1]), args[2],
                                                     strlen(args[2]), (time_t)atol(args[3]), 0);
        printf("%s\n", memcached_strerror(memc, rc));
    } else if (strcmp(command, "incr") == 0 && nargs == 2) {
        uint64_t value = 0;
        memcached_return_t rc = memcached_increment(memc, args[0], strlen(args[0]), (uint32_t)atol(args[1]), &value);
        if (rc == MEMCACHED_SUCCESS)
            printf("VALUE %llu\n", (unsigned long long)value);
        else
            printf("%s\n", memcached_strerror(memc, rc));
    } else if (strcmp(command, "count") == 0 && (nargs == 2 || nargs == 3)) {
        long n = atol(args[1]), acknowledged = 0;
        for (long k = 0; k < n; ++k) {
            uint64_t value = 0;
            memcached_return_t rc = nargs == 3 ? memcached_increment_with_initial(memc, args[0], strlen(args[0]), 1,
                                                                                  (uint64_t)atoll(args[2]), 0, &value)
                                               : memcached_increment(memc, args[0], strlen(args[0]), 1, &value);
            if (rc == MEMCACHED_SUCCESS) ++acknowledged;
        }
        printf("acknowledged %ld\n", acknowledged);
    } else if (strcmp(command, "touch") == 0 && nargs == 2) {
        printf("%s\n",
               memcached_strerror(memc, memcached_touch(memc, args[0], strlen(args[0]), (time_t)atol(args[1]))));
    } else if (strcmp(command, "load") == 0 && nargs == 3) {
        load(memc, args[0], atol(args[1]), atof(args[2]));
    } else if (strcmp(command, "add") == 0 && nargs == 3) {
        memcached_return_t rc =
            memcached_add(memc, args[0], strlen(args[0]), args[1], strlen(args[1]), (time_t)atol(args[2]), 0);
        printf("%s\n", memcached_strerror(memc, rc));
    } else if (strcmp(command, "servers") == 0 && nargs == 0) {
        memcached_server_fn each[] = {print_server};
        memcached_server_cursor(memc, each, NULL, 1);
        printf("count %u\n", memcached_server_count(memc));
    } else if (strcmp(command, "set") == 0 && nargs == 3) {
        memcached_return_t rc =
            memcached_set(memc, args[0], strlen(args[0]), args[1], strlen(args[1]), (time_t)atol(args[2]), 0);
        printf("%s\n", memcached_strerror(memc, rc));
    } else if (strcmp(command, "get") == 0 && nargs == 1) {
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        char* got = memcached_get(memc, args[0], strlen(args[0]), &length, &flags, &rc);
        if (got)
            printf("VALUE %.*s\n", (int)length, got);
        else
            printf("%s\n", memcached_strerror(memc, rc));
        free(got);
    } else if (strcmp(command, "last-error") == 0 && nargs == 1) {
        size_t length = 0;
        uint32_t flags = 0;
        memcached_return_t rc;
        free(memcached_get(memc, args[0], strlen(args[0]), &length, &flags, &rc));
        printf("%s: %s\n", memcached_strerror(memc, memcached_last_error(memc)), memcached_last_error_message(memc));
    } else if (strcmp(command, "errno") == 0 && nargs == 2) {
        errno_kept(memc, args[0], atol(args[1]));
    } else if (strcmp(command, "delete") == 0 && nargs == 1) {
        printf("%s\n", memcached_strerror(memc, memcached_delete(memc, args[0], strlen(args[0]), 0)));
    } else {
        memcached_free(memc);
        return usage();
    }
    memcached_free(memc);
    return 0;
}
