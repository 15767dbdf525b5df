/* Races a write or delete of a key against concurrent reads of it, one key
 * after another, to find a read that returns the older value after the write
 * returned. Keys come one per line on stdin.
 *
 *   mc_race SERVERS delete|set get|mget READERS
 *
 * Per key: the readers and the writer meet at a barrier; the writer waits a
 * random 0-400 us, deletes the key (or sets it to "new") and raises a flag;
 * each reader reads in a loop and, for a read that began after the flag
 * was raised, counts it stale if it returned a value that is gone (delete)
 * or is not "new" (set). A reader stops two reads after the flag, or after
 * 200 reads. Prints "keys K reads R after N stale S". */
#define _POSIX_C_SOURCE 200809L
#include <libmemcached/memcached.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/lib/mc_handle.h"

enum { kMaxReaders = 16, kMaxReads = 200 };

static memcached_st* base;
static int deleting, by_mget, readers;
static char key[256];
static atomic_int written;
static atomic_long reads, after, stale;
static pthread_barrier_t start, end;
static atomic_int done;

static void pause_us(unsigned us) {
    struct timespec t = {0, (long)us * 1000};
    nanosleep(&t, NULL);
}

/* One read; returns 1 if it found a value, with *fresh set when that value is "new". */
static int read_once(memcached_st* memc, int* fresh) {
    size_t length = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    *fresh = 0;
    if (!by_mget) {
        char* value = memcached_get(memc, key, strlen(key), &length, &flags, &rc);
        if (!value) return 0;
        *fresh = length == 3 && memcmp(value, "new", 3) == 0;
        free(value);
        return 1;
    }
    const char* keys[1] = {key};
    size_t lengths[1] = {strlen(key)};
    if (memcached_mget(memc, keys, lengths, 1) != MEMCACHED_SUCCESS) return 0;
    int found = 0;
    memcached_result_st* result;
    for (int i = 0; i < 4 && (result = memcached_fetch_result(memc, NULL, &rc)); ++i) {
        found = 1;
        *fresh = memcached_result_length(result) == 3 && memcmp(memcached_result_value(result), "new", 3) == 0;
        memcached_result_free(result);
    }
    return found;
}

static void* reader(void* unused) {
    (void)unused;
    memcached_st* memc = memcached_clone(NULL, base);
    for (;;) {
        pthread_barrier_wait(&start);
        if (atomic_load(&done)) break;
        int after_write = 0;
        for (int i = 0; i < kMaxReads && after_write < 2; ++i) {
            const int began_after = atomic_load(&written);
            int fresh;
            const int found = read_once(memc, &fresh);
            atomic_fetch_add(&reads, 1);
            if (began_after) {
                ++after_write;
                atomic_fetch_add(&after, 1);
                if (found && (deleting || !fresh)) atomic_fetch_add(&stale, 1);
            }
        }
        pthread_barrier_wait(&end);
    }
    memcached_free(memc);
    return NULL;
}

int main(int argc, char** argv) {
    if (argc != 5 || (strcmp(argv[2], "delete") && strcmp(argv[2], "set")) ||
        (strcmp(argv[3], "get") && strcmp(argv[3], "mget")) || atoi(argv[4]) < 1 || atoi(argv[4]) > kMaxReaders) {
        fprintf(stderr, "usage: mc_race SERVERS delete|set get|mget READERS < keys\n");
        return 64;
    }
    deleting = strcmp(argv[2], "delete") == 0;
    by_mget = strcmp(argv[3], "mget") == 0;
    readers = atoi(argv[4]);
    base = mc_handle_ketama_md5(argv[1]);
    if (!base) {
        fprintf(stderr, "mc_race: bad server list %s\n", argv[1]);
        return 2;
    }
    memcached_st* writer = memcached_clone(NULL, base);
    pthread_barrier_init(&start, NULL, (unsigned)readers + 1);
    pthread_barrier_init(&end, NULL, (unsigned)readers + 1);
    pthread_t threads[kMaxReaders];
    for (int i = 0; i < readers; ++i) pthread_create(&threads[i], NULL, reader, NULL);
    unsigned seed = (unsigned)time(NULL);
    long keys = 0;
    while (fgets(key, sizeof key, stdin)) {
        key[strcspn(key, "\r\n")] = '\0';
        if (!*key) continue;
        atomic_store(&written, 0);
        pthread_barrier_wait(&start);
        pause_us((unsigned)rand_r(&seed) % 400);
        if (deleting)
            memcached_delete(writer, key, strlen(key), 0);
        else
            memcached_set(writer, key, strlen(key), "new", 3, 0, 0);
        atomic_store(&written, 1);
        pthread_barrier_wait(&end);
        ++keys;
    }
    atomic_store(&done, 1);
    pthread_barrier_wait(&start);
    for (int i = 0; i < readers; ++i) pthread_join(threads[i], NULL);
    memcached_free(writer);
    memcached_free(base);
    printf("keys %ld reads %ld after %ld stale %ld\n", keys, atomic_load(&reads), atomic_load(&after),
           atomic_load(&stale));
    return 0;
}
