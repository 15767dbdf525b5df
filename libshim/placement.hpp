// Where a key goes: its native server, exactly as libmemcached 1.1.4 places
// it, and, when that server must not take it, the substitute every process
// with the same view picks. Pure functions of a server list and a liveness
// vector: no state file, no clock, no allocation, no lock, no exception, so
// that the preload shim can call them from inside libhashkit's hash hook with
// a handle's own continuum as well as with a Topology built here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "libshim/defaults.hpp"
#include "libshim/hashes.hpp"
#include "libshim/ketama.hpp"
#include "libshim/server_address.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch::route {

// Routing status of one server of a list, as the substitute search reads it.
inline constexpr uint8_t kStatusAvoid = 1u << 0;     // dead or draining: takes no keys
inline constexpr uint8_t kStatusDraining = 1u << 1;  // draining (kStatusAvoid is set too)
inline constexpr uint8_t kStatusRecent = 1u << 2;    // live, within recently_down_window
// Not in the state file (mcwatchd does not watch it): nothing says it is
// alive, so it never takes another server's keys; its own keys go to it, as
// libmemcached would send them.
inline constexpr uint8_t kStatusUnpublished = 1u << 3;
// May not take another server's keys (as a substitute or a fallback).
inline constexpr uint8_t kStatusNoStandIn = kStatusAvoid | kStatusUnpublished;

// Decision::flags; the C API's MCSHIM_ROUTE_* have the same values.
inline constexpr uint32_t kRouteSubstitute = 1u << 0;    // target != native: native dead or draining
inline constexpr uint32_t kRouteRecentlyDown = 1u << 1;  // native is recently down: see fallback
inline constexpr uint32_t kRouteAllDead = 1u << 2;       // no server may take the key: fail
inline constexpr uint32_t kRouteStale = 1u << 3;         // no usable state: native placement
inline constexpr uint32_t kRouteDraining = 1u << 4;      // native is draining (look a miss up there)
// The key's server changed with the latest membership change, within its
// window: on a miss at target, look at fallback (its server before the
// change); a write drops the copy there (docs/DESIGN.md, "Membership changes").
inline constexpr uint32_t kRouteJoined = 1u << 6;

struct Decision {
    int32_t native = -1;    // libmemcached's choice; -1 only with kRouteAllDead
    int32_t target = -1;    // where the key goes now; -1 with kRouteAllDead
    int32_t fallback = -1;  // with kRouteRecentlyDown: the substitute the key had while
                            // native was dead (-1 if there is none); with kRouteJoined:
                            // its server before the membership change
    uint32_t flags = 0;
    // With replicas > 1 and kRouteRecentlyDown: a draining server that may
    // still hold the key's copy (note_draining_copy), -1 if none.
    int32_t draining = -1;
};

// Everything placement needs about a server list, borrowed: a Topology's,
// or a libmemcached handle's (continuum, count, hashkit base function).
struct PlacementView {
    bool consistent = false;  // ketama ring lookup; else modula
    uint32_t server_count = 0;
    const RingPoint* ring = nullptr;  // sorted; consistent only
    uint32_t ring_size = 0;
    KeyHasher hasher;  // the key hash (MEMCACHED_BEHAVIOR_HASH)
};

// A key's native server, and its ring position for the clockwise walk.
struct NativePlace {
    uint32_t server = 0;
    uint32_t position = 0;  // consistent only
};

// libmemcached's placement given the key's hash. With one server,
// libmemcached never hashes: callers skip the hash and use {0, 0}.
inline NativePlace place_hash(const PlacementView& view, uint32_t hash) noexcept {
    if (view.consistent) {
        const uint32_t position = ring_position(view.ring, view.ring_size, hash);
        return {view.ring[position].index, position};
    }
    return {hash % view.server_count, 0};
}

inline NativePlace place_key(const PlacementView& view, const char* key, size_t length) noexcept {
    if (view.server_count <= 1 || (view.consistent && view.ring_size == 0)) return {0, 0};
    return place_hash(view, view.hasher(key, length));
}

// --- The substitute rules. Stable: other hosts and languages reproduce them.
//
// Modula: the salted key is the key's bytes followed by the decimal ASCII of
// the salt i, no separator, no terminator ("user:42" with i = 3 hashes
// "user:423"), hashed with the list's key hash; the candidate is
// hash % server_count, the configured count. i = 1..kModulaSaltRounds; the
// first candidate that may take keys wins. Past the last round, the servers
// after the last candidate, in list order and wrapping, are scanned for the
// first that may. Keys longer than kMaxSaltedKey skip the rounds and scan
// from native + 1.
//
// Ketama: the points after the key's native point, clockwise (wrapping),
// until one belongs to a server that may take keys.
//
// Either way, if nothing is found that way (a weighted ring can leave a light
// server without points) the lowest-numbered server that may take keys.
inline constexpr uint32_t kModulaSaltRounds = 32;
inline constexpr size_t kMaxSaltedKey = 1024;

template <class Avoided>
int32_t lowest_allowed(uint32_t count, Avoided avoided) noexcept {
    for (uint32_t i = 0; i < count; ++i)
        if (!avoided(i)) return int32_t(i);
    return -1;
}

template <class Avoided>
int32_t modula_substitute(const PlacementView& view, const char* key, size_t length, uint32_t native,
                          Avoided avoided) noexcept {
    const uint32_t count = view.server_count;
    uint32_t last = native;
    if (length <= kMaxSaltedKey) {
        char salted[kMaxSaltedKey + 12];
        if (length) __builtin_memcpy(salted, key, length);
        for (uint32_t salt = 1; salt <= kModulaSaltRounds; ++salt) {
            size_t n = length;
            if (salt >= 10) salted[n++] = char('0' + salt / 10);
            salted[n++] = char('0' + salt % 10);
            last = view.hasher(salted, n) % count;
            if (!avoided(last)) return int32_t(last);
        }
    }
    for (uint32_t step = 1; step < count; ++step) {
        const uint32_t candidate = (last + step) % count;
        if (!avoided(candidate)) return int32_t(candidate);
    }
    return lowest_allowed(count, avoided);
}
static_assert(kModulaSaltRounds < 100, "the salt is written with at most two digits");

template <class Avoided>
int32_t ketama_substitute(const PlacementView& view, uint32_t position, Avoided avoided) noexcept {
    for (uint32_t step = 1; step < view.ring_size; ++step) {
        uint32_t at = position + step;
        if (at >= view.ring_size) at -= view.ring_size;
        const uint32_t server = view.ring[at].index;
        if (server < view.server_count && !avoided(server)) return int32_t(server);
    }
    return lowest_allowed(view.server_count, avoided);
}

template <class Avoided>
int32_t substitute(const PlacementView& view, const char* key, size_t length, NativePlace place,
                   Avoided avoided) noexcept {
    if (view.server_count <= 1) return avoided(0) ? -1 : 0;
    if (view.consistent && view.ring_size > 0) return ketama_substitute(view, place.position, avoided);
    return modula_substitute(view, key, length, place.server, avoided);
}

// The whole decision for one key. `status(i)` gives server i's kStatus* bits
// (servers beyond the list are live); `allowed_count` is how many servers may
// take keys (unpublished ones included: they take their own). All dead fails
// at once, without hashing.
template <class Status>
Decision decide(const PlacementView& view, const char* key, size_t length, Status status,
                uint32_t allowed_count) noexcept {
    Decision d;
    if (allowed_count == 0 || view.server_count == 0) {
        d.flags = kRouteAllDead;
        return d;
    }
    const NativePlace place = place_key(view, key, length);
    d.native = d.target = int32_t(place.server);
    const uint8_t native_status = status(place.server);
    if ((native_status & (kStatusNoStandIn | kStatusRecent)) == 0 || (native_status & kStatusUnpublished)) return d;
    if (native_status & kStatusAvoid) {
        d.target =
            substitute(view, key, length, place, [&](uint32_t i) { return (status(i) & kStatusNoStandIn) != 0; });
        d.flags = d.target < 0 ? kRouteAllDead : kRouteSubstitute;
        if (native_status & kStatusDraining) d.flags |= kRouteDraining;
        return d;
    }
    d.flags = kRouteRecentlyDown;
    d.fallback = substitute(view, key, length, place,
                            [&](uint32_t i) { return i == place.server || (status(i) & kStatusNoStandIn) != 0; });
    return d;
}

// The most copies of a key ([routing] replicas, at most 8).
inline constexpr uint32_t kMaxCopies = kMaxReplicas;

// A key's copies (docs/DESIGN.md, "Replicas"): the first `n` servers of its
// order that may take keys, in order, into `out`; returns how many (fewer
// than `n` when fewer servers may). The order is the native server, then
// order[k] = substitute() with order[0..k-1] avoided: the second copy is
// where the key goes when its native server dies. Copy 0 is decide()'s
// target; an unpublished native server takes its own key as copy 0 but is
// never a further copy. substitute() with every dead server and every copy
// found so far avoided is the next live server of the order: the order's
// servers before it are all dead or copies already.
template <class Status>
uint32_t copies(const PlacementView& view, const char* key, size_t length, Status status, uint32_t n,
                int32_t* out) noexcept {
    if (n == 0 || view.server_count == 0) return 0;
    if (n > kMaxCopies) n = kMaxCopies;
    const NativePlace place = place_key(view, key, length);
    uint32_t found = 0;
    const uint8_t native_status = status(place.server);
    if (!(native_status & kStatusAvoid)) out[found++] = int32_t(place.server);
    while (found < n) {
        const int32_t next = substitute(view, key, length, place, [&](uint32_t i) {
            if (i == place.server || (status(i) & kStatusNoStandIn)) return true;
            for (uint32_t c = 0; c < found; ++c)
                if (out[c] == int32_t(i)) return true;
            return false;
        });
        if (next < 0) break;
        out[found++] = next;
    }
    return found;
}

// With replicas (docs/DESIGN.md, "Replicas"): a key whose native server is
// out and whose substitute is recently down has its next copy there, as a
// recently-down native server's key has: `d` gets kRouteRecentlyDown and that
// copy as its fallback. Only for more than one copy: with one, a
// substitute's miss stays a miss, as it always was.
template <class Status>
void fall_back_from_recent_substitute(const PlacementView& view, const char* key, size_t length, Status status,
                                      Decision& d) noexcept {
    if (!(d.flags & kRouteSubstitute) || (d.flags & kRouteRecentlyDown) || d.target < 0 ||
        !(status(uint32_t(d.target)) & kStatusRecent))
        return;
    const NativePlace place = place_key(view, key, length);
    const int32_t target = d.target;
    d.fallback = substitute(view, key, length, place, [&](uint32_t i) {
        return i == place.server || int32_t(i) == target || (status(i) & kStatusNoStandIn) != 0;
    });
    d.flags |= kRouteRecentlyDown;
}

// With replicas (docs/DESIGN.md, "Replicas"): the draining server that may
// still hold a copy of a key whose first copy is recently down, in
// `d.draining`: its native server when that is draining, or else the next
// server of its order after its recently-down native when that one is
// draining (it held the second copy and keeps it until it is moved). Reads
// look there last; writes delete the key there first.
template <class Status>
void note_draining_copy(const PlacementView& view, const char* key, size_t length, Status status,
                        Decision& d) noexcept {
    if (!(d.flags & kRouteRecentlyDown) || d.native < 0) return;
    if (d.flags & kRouteDraining) {
        d.draining = d.native;
        return;
    }
    if (d.flags & kRouteSubstitute) return;  // a dead native: copies were written elsewhere since
    const NativePlace place = place_key(view, key, length);
    const int32_t next = substitute(view, key, length, place, [&](uint32_t i) {
        const uint8_t s = status(i);
        return i == place.server || (s & kStatusUnpublished) || ((s & kStatusAvoid) && !(s & kStatusDraining));
    });
    if (next >= 0 && next != d.fallback && (status(uint32_t(next)) & kStatusDraining)) d.draining = next;
}

// A server list with its distribution and hash: owns the ring.
class Topology {
public:
    // False (and `error`, a sentence) for an empty list, more than
    // kMaxServers, or a hash this libhashkit lacks.
    static bool build(std::vector<ServerAddress> servers, state::Distribution distribution, state::Hash hash,
                      Topology& out, std::string& error);

    uint32_t size() const noexcept { return uint32_t(servers_.size()); }
    const ServerAddress& server(uint32_t index) const noexcept { return servers_[index]; }
    std::span<const ServerAddress> servers() const noexcept { return servers_; }
    state::Distribution distribution() const noexcept { return distribution_; }
    state::Hash hash() const noexcept { return hash_; }
    std::span<const RingPoint> ring() const noexcept { return ring_; }

    // Borrows this topology: valid while it lives and is not moved.
    PlacementView view() const noexcept;
    // libmemcached's choice for `key`: memcached_generate_hash.
    uint32_t native(const char* key, size_t length) const noexcept { return place_key(view(), key, length).server; }

private:
    std::vector<ServerAddress> servers_;
    state::Distribution distribution_ = state::Distribution::ketama;
    state::Hash hash_ = state::Hash::md5;
    KeyHasher hasher_;
    std::vector<RingPoint> ring_;
};

}  // namespace mcwatch::route
