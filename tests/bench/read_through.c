/* The read-through workload of the miss-storm, membership and hit-ratio
 * benchmarks (tests/bench/miss_storm.py, membership.py, throughput.py): a
 * read-through cache in front of a "database" of versioned values, through
 * libmemcached.
 *
 *   read_through warm   SERVERS DB KEYS [OPTION...]
 *   read_through run    SERVERS DB KEYS RATE SECONDS WRITER WRITERS [OPTION...]
 *   read_through place  SERVERS KEYS [OPTION...]
 *
 * OPTIONs: `eject`: libmemcached's own failover (REMOVE_FAILED_SERVERS, its
 * defaults); `modula`: modula over one_at_a_time (libmemcached's defaults,
 * PHP's and pylibmc's) instead of ketama over md5; `shared`: see writers.
 *
 * DB is a file shared by every client process and the harness: a 64-bit
 * epoch, then for each of KEYS keys four words (database_bytes() in
 * miss_storm.py): its version (the database; 0 never written), the epoch in
 * which the cache last received it (a fill after a miss, or a write), and
 * the reads and database reads of it so far (the harness reads them between
 * phases: which keys missed). The harness bumps the epoch when it breaks
 * something; a database read of a key the cache received in the current
 * epoch is a refill: the value was in the cache since the failure and got
 * lost again, a miss a perfect failover would not have. `warm` writes every
 * key at version 1 through the cache. `run` issues RATE operations a second
 * for SECONDS, keys drawn Zipf-skewed (s = 0.99): 95% reads, 5% writes. A
 * read that misses is a database read followed by an add (never a set: a
 * newer value written meanwhile wins); a read that fails is a database read,
 * nothing cached. A read that returns a version older than the one the
 * database held when the read began is stale.
 *
 * Writers. By default each process writes only the keys k with k % WRITERS
 * == WRITER: a write bumps the key's version and sets it in the cache, and
 * writes of one key never race each other. With `shared`, every process
 * writes every key, so two writers race on the same key, and the check
 * stays exact thus:
 * - versions are per writer: writer w takes the smallest version above the
 *   database's that is w modulo WRITERS, so two racing writes never carry
 *   the same version and a larger version is always the later-started one;
 * - the cache only moves forward, as a correct application under
 *   concurrency would make it: the writer reads the key with its cas
 *   (gets), leaves it if it already holds a version at least its own, else
 *   stores its version with `cas` (`add` when absent) and retries on a
 *   conflict (at most kCasTries times; then a write error);
 * - the database's version is the largest completed write (an atomic max),
 *   stored once the cache answered, whatever it said.
 * So once a write of version V completed, a cache that keeps what it was
 * given holds V or later, or nothing: a read that began after it and
 * returns less is stale. A cache that keeps two copies of a key and lets
 * two racing writers store them in opposite orders (one copy with V, the
 * other still older) is caught as soon as a read is served by the older.
 *
 * `place` prints, for each key 0..KEYS-1 in order, the "host:port" that
 * libmemcached itself places it on with SERVERS (run without the shim: the
 * harness's record of native placement, e.g. which keys a membership change
 * moved).
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
static const int kCasTries = 10;

typedef struct {
    long reads, hits, db_reads, errors, stale, writes, write_errors, refills;
} Counts;

/* The shared file's layout. */
typedef struct {
    _Atomic uint64_t version;
    _Atomic uint64_t cached_epoch;
    _Atomic uint64_t reads;
    _Atomic uint64_t db_reads;
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

typedef struct {
    int eject, modula, shared;
} Options;

static int parse_options(int argc, char** argv, Options* options) {
    for (int i = 0; i < argc; ++i) {
        if (strcmp(argv[i], "eject") == 0)
            options->eject = 1;
        else if (strcmp(argv[i], "modula") == 0)
            options->modula = 1;
        else if (strcmp(argv[i], "shared") == 0)
            options->shared = 1;
        else
            return 0;
    }
    return 1;
}

static memcached_st* connect_cache(const char* servers, const Options* options) {
    memcached_st* memc = options->modula
                             ? mc_handle_create(servers, MEMCACHED_DISTRIBUTION_MODULA, MEMCACHED_HASH_DEFAULT)
                             : mc_handle_ketama_md5(servers);
    if (!memc) {
        fprintf(stderr, "read_through: bad server list %s\n", servers);
        exit(2);
    }
    memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    if (options->eject) memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 1);
    if (options->shared) memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
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
    atomic_fetch_add(&db->keys[k].reads, 1);
    if (got) {
        ++c->hits;
        if (length < 2 || got[0] != 'v' || strtoull(got + 1, NULL, 10) < committed) ++c->stale;
        free(got);
        return;
    }
    ++c->db_reads;
    atomic_fetch_add(&db->keys[k].db_reads, 1);
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

/* The version a read of the cache returned (0: not one of ours). */
static uint64_t version_in(const char* value, size_t length) {
    return length >= 2 && value[0] == 'v' ? strtoull(value + 1, NULL, 10) : 0;
}

static void commit_version(Database* db, long k, uint64_t version) {
    uint64_t held = atomic_load(&db->keys[k].version);
    while (held < version && !atomic_compare_exchange_weak(&db->keys[k].version, &held, version)) {
    }
}

/* One attempt of a `shared` write of `version`: 1 done (stored, or a newer
 * version already there), 0 lost a race (retry), -1 failed. */
static int store_forward(memcached_st* memc, const char* key, size_t key_length, uint64_t version) {
    char value[kValueSize];
    value_of(version, value);
    const char* keys[] = {key};
    memcached_return_t rc = memcached_mget(memc, keys, &key_length, 1);
    if (rc != MEMCACHED_SUCCESS) return -1;
    memcached_result_st* result = memcached_fetch_result(memc, NULL, &rc);
    if (result) {
        const uint64_t held = version_in(memcached_result_value(result), memcached_result_length(result));
        const uint64_t cas = memcached_result_cas(result);
        memcached_result_free(result);
        /* Drain the end of the reply (one key: nothing more comes). */
        while ((result = memcached_fetch_result(memc, NULL, &rc)) != NULL) memcached_result_free(result);
        if (held >= version) return 1;
        rc = memcached_cas(memc, key, key_length, value, kValueSize, 0, 0, cas);
        if (rc == MEMCACHED_SUCCESS) return 1;
        return rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND ? 0 : -1;
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND) return -1;
    rc = memcached_add(memc, key, key_length, value, kValueSize, 0, 0);
    if (rc == MEMCACHED_SUCCESS) return 1;
    return rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS ? 0 : -1;
}

/* `shared` mode's write (see the top): this writer's next version above the
 * database's, stored only forward, then committed as the database's if
 * larger. */
static void write_shared(memcached_st* memc, Database* db, long k, long writer, long writers, Counts* c) {
    char key[32];
    const size_t key_length = key_of(k, key);
    const uint64_t above = atomic_load(&db->keys[k].version) + 1;
    const uint64_t version = above + (uint64_t)((writer - (long)(above % (uint64_t)writers) + writers) % writers);
    ++c->writes;
    int outcome = 0;
    for (int i = 0; i < kCasTries && outcome == 0; ++i) outcome = store_forward(memc, key, key_length, version);
    if (outcome == 1)
        mark_cached(db, k);
    else
        ++c->write_errors;
    commit_version(db, k, version);
}

static int place(memcached_st* memc, long keys) {
    char key[32];
    for (long k = 0; k < keys; ++k) {
        const uint32_t index = memcached_generate_hash(memc, key, key_of(k, key));
        const memcached_instance_st* server = memcached_server_instance_by_position(memc, index);
        if (!server) return 1;
        printf("%s:%u\n", memcached_server_name(server), (unsigned)memcached_server_port(server));
    }
    return 0;
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

static int usage(void) {
    fprintf(stderr,
            "usage: read_through warm SERVERS DB KEYS [OPTION...]\n"
            "       read_through run SERVERS DB KEYS RATE SECONDS WRITER WRITERS [OPTION...]\n"
            "       read_through place SERVERS KEYS [OPTION...]\n"
            "OPTIONs: eject, modula, shared\n");
    return 64;
}

int main(int argc, char** argv) {
    const char* command = argc > 1 ? argv[1] : "";
    const int is_warm = argc >= 5 && strcmp(command, "warm") == 0;
    const int is_run = argc >= 9 && strcmp(command, "run") == 0;
    const int is_place = argc >= 4 && strcmp(command, "place") == 0;
    const int first_option = is_warm ? 5 : is_run ? 9 : 4;
    Options options = {0};
    if ((!is_warm && !is_run && !is_place) || !parse_options(argc - first_option, argv + first_option, &options))
        return usage();
    if (is_place) {
        const long keys = atol(argv[3]);
        if (keys <= 0) return usage();
        memcached_st* memc = connect_cache(argv[2], &options);
        const int status = place(memc, keys);
        memcached_free(memc);
        return status;
    }
    const long keys = atol(argv[4]);
    Database* db = keys > 0 ? open_db(argv[3], keys) : NULL;
    if (!db) {
        fprintf(stderr, "read_through: cannot map %ld versions from %s\n", keys, argv[3]);
        return 1;
    }
    memcached_st* memc = connect_cache(argv[2], &options);
    if (is_warm) {
        const int status = warm(memc, db, keys);
        memcached_free(memc);
        return status;
    }

    const double rate = atof(argv[5]), seconds = atof(argv[6]);
    const long writer = atol(argv[7]), writers = atol(argv[8]);
    if (rate <= 0 || seconds <= 0 || writers <= 0 || writer < 0 || writer >= writers) return usage();
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
            if (options.shared) {
                write_shared(memc, db, k, writer, writers, &c);
                continue;
            }
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
