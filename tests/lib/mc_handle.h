/* The libmemcached handle of the C test clients (tests/clients/) and
 * benchmark clients (tests/bench/): a server list in libmemcached's own
 * syntax ("host:port,host:port"), then the distribution and its hash. */
#ifndef MCWATCH_TESTS_MC_HANDLE_H
#define MCWATCH_TESTS_MC_HANDLE_H

#include <libmemcached-1.0/memcached.h>

/* Adds the servers of `servers`; MEMCACHED_INVALID_ARGUMENTS when the list
 * does not parse (the handle is left as it was). */
static inline memcached_return_t mc_handle_add_servers(memcached_st* memc, const char* servers) {
    memcached_server_st* list = memcached_servers_parse(servers);
    if (list == NULL) return MEMCACHED_INVALID_ARGUMENTS;
    const memcached_return_t rc = memcached_server_push(memc, list);
    memcached_server_list_free(list);
    return rc;
}

/* Sets the distribution and its hash. The hash goes first: libmemcached 1.1.4
 * builds the ketama ring when the distribution is set, with the hash in place
 * at that time, and does not rebuild it when the hash changes later. */
static inline memcached_return_t mc_handle_place(memcached_st* memc, memcached_server_distribution_t distribution,
                                                 memcached_hash_t hash) {
    const memcached_return_t rc = memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, (uint64_t)hash);
    if (rc != MEMCACHED_SUCCESS) return rc;
    return memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_DISTRIBUTION, (uint64_t)distribution);
}

/* A new handle on `servers`, placed by `distribution` over `hash`; NULL when
 * the list does not parse or libmemcached refuses a setting. */
static inline memcached_st* mc_handle_create(const char* servers, memcached_server_distribution_t distribution,
                                             memcached_hash_t hash) {
    memcached_st* memc = memcached_create(NULL);
    if (memc == NULL) return NULL;
    if (mc_handle_add_servers(memc, servers) != MEMCACHED_SUCCESS ||
        mc_handle_place(memc, distribution, hash) != MEMCACHED_SUCCESS) {
        memcached_free(memc);
        return NULL;
    }
    return memc;
}

/* ketama over md5: the placement the tests and benchmarks use unless told
 * otherwise. */
static inline memcached_st* mc_handle_ketama_md5(const char* servers) {
    return mc_handle_create(servers, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA, MEMCACHED_HASH_MD5);
}

#endif
