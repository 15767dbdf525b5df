/* The miss-storm workload (tests/bench/miss_storm.py): a read-through cache
 * in front of a "database" of versioned values, through libmemcached.
 *
 *   read_through warm   SERVERS DB KEYS
 *   read_through run    SERVERS DB KEYS RATE SECONDS WRITER WRITERS [eject]
 *
 * DB is a file shared by every client process and the harness: a 64-bit
 * epoch, then for each of KEYS keys its version (the database; 0 never
 * written) and the epoch in which the cache last received it (a fill after a
 * miss, or a write). The harness bumps the epoch when it breaks something; a
 * database read of a key the cache received in the current epoch is a
 * refill: the value was in the cache since the failure and got lost again,
 * a miss a perfect failover would not have. `warm` writes every key at version 1
 * through the cache. `run` issues RATE operations a second for SECONDS,
 * keys drawn Zipf-skewed (s = 0.99): 95% reads, 5% writes. A read that
 * misses is a database read followed by an add (never a set: a newer value
 * written meanwhile wins); a read that fails is a database read, nothing
 * cached. A write bumps the key's version in the database and sets it in
 * the cache; each process writes only the keys k with k % WRITERS == WRITER,
 * so writes of one key never race each other. A read that returns a version
 * older than the one the database held when the read began is stale.
 * `eject`: libmemcached's own failover (REMOVE_FAILED_SERVERS, its defaults).
 *
 * Every 100 ms `run` prints one line: "T reads hits db_reads errors stale
 * writes write_errors refills", T in CLOCK_MONOTONIC seconds (Python's
 * time.monotonic() on Linux) at the end of the interval. */
#define _POSIX_C_SOURCE 200809L /* clock_nanosleep */
#include <fcntl.h>
#include <libmemcached-1.0/memcached.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/mc_handle.h"

enum { kValueSize = 100 };
static const double kZipfS = 0.99;
static const double kWriteShare = 0.05;
static const double kBucketSeconds = 0.1;

typedef struct {
    long reads, hits, db_reads, errors, stale, writes, write_errors, refills;
} Counts;

/* The shared file's layout. */
typedef struct {
    _Atomic uint64_t version;
    _Atomic uint64_t cached_epoch;
} Record;
typedef struct {
    _Atomic uint64_t epoch;
    Record keys[];
} Database;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rng_state;
static uint64_t next_random(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static double uniform(void) { return (double)(next_random() >> 11) / 9007199254740992.0; }

/* Zipf over ranks 0..n-1 by inverse CDF; rank r is key (r * 7919) % n, so
 * the hot keys spread over every server (7919 is prime, n not a multiple). */
static double* zipf_cdf(long n) {
    double *cdf = malloc((size_t)n * sizeof *cdf), sum = 0;
    for (long i = 0; i < n; ++i) cdf[i] = sum += 1.0 / pow((double)(i + 1), kZipfS);
    for (long i = 0; i < n; ++i) cdf[i] /= sum;
    return cdf;
}
static long zipf_key(const double* cdf, long n) {
    const double u = uniform();
    long lo = 0, hi = n - 1;
    while (lo < hi) {
        const long mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (long)((uint64_t)lo * 7919u % (uint64_t)n);
}

static size_t key_of(long k, char* key) { return (size_t)sprintf(key, "storm:%ld", k); }
static void value_of(uint64_t version, char* value) {
    memset(value, '.', kValueSize);
    const int n = snprintf(value, kValueSize, "v%llu:", (unsigned long long)version);
    value[n] = '.'; /* snprintf's terminator: the value is kValueSize bytes, no NUL */
}

static memcached_st* connect_cache(const char* servers, int eject) {
    memcached_st* memc = mc_handle_ketama_md5(servers);
    if (!memc) {
        fprintf(stderr, "read_through: bad server list %s\n", servers);
        exit(2);
    }
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    if (eject) memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 1);
    return memc;
}

static Database* open_db(const char* path, long keys) {
    const int fd = open(path, O_RDWR);
    if (fd < 0) return NULL;
    void* map = mmap(NULL, sizeof(Database) + (size_t)keys * sizeof(Record), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return map == MAP_FAILED ? NULL : (Database*)map;
}

static void mark_cached(Database* db, long k) { atomic_store(&db->keys[k].cached_epoch, atomic_load(&db->epoch)); }

static void print_bucket(double t, const Counts* c) {
    printf("%.3f %ld %ld %ld %ld %ld %ld %ld %ld\n", t, c->reads, c->hits, c->db_reads, c->errors, c->stale, c->writes,
           c->write_errors, c->refills);
}

static void read_one(memcached_st* memc, Database* db, long k, Counts* c) {
    char key[32], value[kValueSize];
    const size_t key_length = key_of(k, key);
    const uint64_t committed = atomic_load(&db->keys[k].version);
    size_t length;
    uint32_t flags;
    memcached_return_t rc;
    char* got = memcached_get(memc, key, key_length, &length, &flags, &rc);
    ++c->reads;
    if (got) {
        ++c->hits;
        if (length < 2 || got[0] != 'v' || strtoull(got + 1, NULL, 10) < committed) ++c->stale;
        free(got);
        return;
    }
    ++c->db_reads;
    const uint64_t epoch = atomic_load(&db->epoch);
    if (epoch > 0 && atomic_load(&db->keys[k].cached_epoch) == epoch) ++c->refills;
    if (rc != MEMCACHED_NOTFOUND) {
        ++c->errors;
        return;
    }
    value_of(atomic_load(&db->keys[k].version), value);
    rc = memcached_add(memc, key, key_length, value, kValueSize, 0, 0);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTSTORED) mark_cached(db, k);
}

static void write_one(memcached_st* memc, Database* db, long k, Counts* c) {
    char key[32], value[kValueSize];
    const size_t key_length = key_of(k, key);
    const uint64_t version = atomic_load(&db->keys[k].version) + 1;
    value_of(version, value);
    ++c->writes;
    if (memcached_set(memc, key, key_length, value, kValueSize, 0, 0) == MEMCACHED_SUCCESS)
        mark_cached(db, k);
    else
        ++c->write_errors;
    /* The database write counts as done only now, whatever the cache said:
     * a read that began after it and finds an older value is stale. */
    atomic_store(&db->keys[k].version, version);
}

static int warm(memcached_st* memc, Database* db, long keys) {
    char key[32], value[kValueSize];
    long failed = 0;
    value_of(1, value);
    for (long k = 0; k < keys; ++k) {
        if (memcached_set(memc, key, key_of(k, key), value, kValueSize, 0, 0) != MEMCACHED_SUCCESS) ++failed;
        atomic_store(&db->keys[k].version, 1);
    }
    printf("warmed %ld failed %ld\n", keys - failed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char** argv) {
    const int is_warm = argc == 5 && strcmp(argv[1], "warm") == 0;
    const int is_run = (argc == 9 || argc == 10) && strcmp(argv[1], "run") == 0;
    if (!is_warm && !is_run) {
        fprintf(stderr,
                "usage: read_through warm SERVERS DB KEYS\n"
                "       read_through run SERVERS DB KEYS RATE SECONDS WRITER WRITERS [eject]\n");
        return 64;
    }
    const long keys = atol(argv[4]);
    Database* db = keys > 0 ? open_db(argv[3], keys) : NULL;
    if (!db) {
        fprintf(stderr, "read_through: cannot map %ld versions from %s\n", keys, argv[3]);
        return 1;
    }
    memcached_st* memc = connect_cache(argv[2], is_run && argc == 10 && strcmp(argv[9], "eject") == 0);
    if (is_warm) {
        const int status = warm(memc, db, keys);
        memcached_free(memc);
        return status;
    }

    const double rate = atof(argv[5]), seconds = atof(argv[6]);
    const long writer = atol(argv[7]), writers = atol(argv[8]);
    if (rate <= 0 || seconds <= 0 || writers <= 0 || writer < 0 || writer >= writers) return 64;
    rng_state = 0x9E3779B97F4A7C15ull * (uint64_t)(writer + 1);
    double* cdf = zipf_cdf(keys);
    const double start = now_s();
    double bucket_end = start + kBucketSeconds;
    Counts c = {0};
    for (long i = 0; i < (long)(rate * seconds); ++i) {
        /* Operation i is due at start + i / rate: a steady offered load. */
        const double due = start + (double)i / rate;
        double now = now_s();
        if (due > now) {
            const double wait = due - now;
            struct timespec t = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&t, NULL);
            now = now_s();
        }
        while (now >= bucket_end) {
            print_bucket(bucket_end, &c);
            memset(&c, 0, sizeof c);
            bucket_end += kBucketSeconds;
        }
        long k = zipf_key(cdf, keys);
        if (uniform() < kWriteShare) {
            k -= k % writers - writer; /* the nearest key this process writes */
            if (k >= keys) k -= writers;
            if (k >= 0) write_one(memc, db, k, &c);
            continue;
        }
        read_one(memc, db, k, &c);
    }
    print_bucket(now_s(), &c);
    free(cdf);
    memcached_free(memc);
    return 0;
}
