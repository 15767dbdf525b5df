// What the shim knows about one libmemcached handle: the router for its
// server list (liveness from the state file) and how to make libmemcached
// dispatch a key to a chosen server. Built on a handle's first operation and
// cached per thread; rebuilt after any change of server list or behaviour.
#pragma once

#include <libmemcached-1.0/memcached.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "libshim/placement.hpp"
#include "libshim/router.hpp"

namespace mcwatch::shim {

struct HandleRouting {
    std::shared_ptr<route::Router> router;
    std::vector<std::string> addresses;  // as the handle names its servers, for debug lines
    bool consistent = false;             // ketama continuum; else modula
    // Per server, a continuum value that libmemcached's lookup (first point
    // >= hash) resolves to that server; checked again before each use.
    std::vector<uint32_t> representative;
    // The handle places keys as the file's list before its latest membership
    // change was placed (its distribution and hash): only then does that
    // list say where the handle's keys were (the join fallback).
    bool placed_as_before = false;
};

// What a handle's cached routing was built from: the handle, the epoch of
// configuration changes, and the fields of the handle that a change of its
// servers or distribution moves (also when made without the interposed
// functions, which bump the epoch). A routing is reused only while all match.
struct HandleShape {
    const memcached_st* memc = nullptr;
    uint64_t epoch = 0;
    uint32_t hosts = 0;
    const void* servers = nullptr;
    const void* continuum = nullptr;
    uint32_t points = 0;
    int distribution = -1;

    static HandleShape of(const memcached_st* m, uint64_t now_epoch) noexcept {
        return HandleShape{m,
                           now_epoch,
                           m->number_of_hosts,
                           m->servers,
                           m->ketama.continuum,
                           m->ketama.continuum_points_counter,
                           int(m->distribution)};
    }
    bool matches(const memcached_st* m, uint64_t now_epoch) const noexcept {
        return memc == m && epoch == now_epoch && hosts == m->number_of_hosts && servers == m->servers &&
               continuum == m->ketama.continuum && points == m->ketama.continuum_points_counter &&
               distribution == int(m->distribution);
    }
};

// Bumped by every configuration change of any handle, and by fork.
extern std::atomic<uint64_t> routing_epoch;

// The handle this thread routed last and its routing, borrowed from the
// per-thread cache that owns it (and replaced before that entry is): the
// whole lookup on the hot path is one compare. __thread: plain data, one
// load per access.
struct RecentRouting {
    HandleShape shape;
    const HandleRouting* routing = nullptr;
};
extern __thread RecentRouting recent_routing;

// routing_for past the most recent handle: the per-thread cache, else a build.
const HandleRouting* lookup_routing(const memcached_st* memc) noexcept;

// The routing of `memc`, or null when the shim stays out of the way: no
// servers, a distribution it does not handle (random, virtual buckets), or
// libmemcached not resolvable. Never blocks on another thread for long.
inline const HandleRouting* routing_for(const memcached_st* memc) noexcept {
    const RecentRouting& recent = recent_routing;
    if (recent.shape.matches(memc, routing_epoch.load(std::memory_order_acquire))) return recent.routing;
    return lookup_routing(memc);
}

// A share of `routing` (as routing_for just returned it), for a multi-get
// that uses it across the program's later fetch calls: meanwhile other
// handles may take its place in the per-thread cache. Null if it is gone.
std::shared_ptr<const HandleRouting> keep_routing(const HandleRouting* routing) noexcept;

// The handle's own placement: its continuum and its hash function, so that
// native placement is libmemcached's by construction.
route::PlacementView handle_view(const memcached_st* memc, const HandleRouting& routing) noexcept;

// The hash to give libmemcached so that it dispatches to `server`.
uint32_t dispatch_hash(const memcached_st* memc, const HandleRouting& routing, uint32_t server) noexcept;

// The last key hash computed through handle_view's hasher on this thread:
// the router hashes a key before libmemcached does, and the hook hands that
// same value back instead of computing md5 (say) a second time.
struct LastHash {
    const char* bytes = nullptr;
    size_t length = 0;
    const hashkit_st* hashkit = nullptr;
    uint32_t value = 0;
};
extern __thread LastHash last_hashed;
inline const LastHash& last_hash() noexcept { return last_hashed; }
inline void forget_last_hash() noexcept { last_hashed = LastHash{}; }

// Forgets every cached routing (server list or behaviour changed somewhere,
// or a new state file: its list may be a managed one).
void invalidate_routing() noexcept;

// The process's state source (created on first use), or null when it cannot
// be made (out of memory, or a forked child's registry lost).
route::StateSource* process_state_source() noexcept;

// The recently_down_window and writeback_ttl of the current state file
// (the defaults of mcwatchd.conf(5) when there is none).
uint32_t recently_down_window_s(const HandleRouting& routing) noexcept;
uint32_t writeback_ttl_s(const HandleRouting& routing) noexcept;
// [routing] replica_max_ttl of the current state file (0: none).
uint32_t replica_max_ttl_s(const HandleRouting& routing) noexcept;

}  // namespace mcwatch::shim
