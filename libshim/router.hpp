// The router: a caller's server list (Topology) plus the state file's view
// of it. route() is what the C API, mcctl and the preload shim ask: native
// server, where the key goes now, the fallback of a recently-down server.
//
// Hot path on an unchanged table: a coarse clock read, a handful of atomic
// loads, the key hash and the ring search, one status byte. No lock, no
// allocation, no syscall, no exception. When the file's generation moves
// (or a periodic check finds it stale, replaced or back), one thread copies
// the servers' states into the router's own snapshot, so that a decision
// never mixes two views. The snapshot is kept twice behind a latch (Linux's
// seqcount_latch): readers use the copy the writer is not writing, so a
// refresher preempted mid-publication never makes a reader wait or retry.
//
// Namespaces are the caller's business: route the key libmemcached hashes
// (with MEMCACHED_BEHAVIOR_HASH_WITH_PREFIX_KEY, the namespace followed by the
// key; libmemcached 1.1.4 hashes such a key longer than 250 bytes as 0).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "libshim/placement.hpp"
#include "libshim/state_source.hpp"

namespace mcwatch::route {

// How a router learns the numeric addresses of the names in its list, to
// match state-file slots configured by number.
enum class NameResolution {
    none,        // never: names match slots by name only
    now,         // getaddrinfo in the constructor, one name after another (tools)
    background,  // only names that match no slot by name, on a thread of the
                 // router's own, started at most once; until it has answered
                 // such a server is unpublished (a client's call never waits
                 // for a resolver)
};

class Router {
public:
    // `source` may be null: every decision is then native, flagged stale.
    Router(Topology topology, std::shared_ptr<StateSource> source, NameResolution resolution = NameResolution::now);
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    Decision route(const char* key, size_t length) noexcept { return route_with(view_, key, length); }

    // The same liveness snapshot, with another placement of the same server
    // list: a libmemcached handle's own continuum and hash function (the
    // preload shim), which stays right even where a rebuilt ring would not
    // (a handle's hash set after its distribution, clones). `view` must list
    // the servers of this router's topology, in the same order.
    Decision route_with(const PlacementView& view, const char* key, size_t length) noexcept;

    // The decision for `key` as if server `failed` were published dead: the
    // shim's in-band failover after a connection failure on `failed`. The
    // same snapshot as route_with, with `failed` taking no keys; native
    // placement (kRouteStale) without a usable file, as route_with; an
    // unpublished `failed` keeps its keys (nothing would publish it dead).
    Decision route_without(const PlacementView& view, const char* key, size_t length, uint32_t failed) noexcept;

    // The key's first `n` copies (placement.hpp copies()) from the same
    // snapshot as route_with, into `out` (kMaxCopies at most); returns how
    // many. Without a usable file: the native server only.
    uint32_t copies_with(const PlacementView& view, const char* key, size_t length, uint32_t n, int32_t* out) noexcept;

    const Topology& topology() const noexcept { return topology_; }
    StateSource* source() const noexcept { return source_.get(); }

    // For tools, not the hot path: the state-file slot server i was matched
    // to in the current mapping (-1: not listed, or no file), after a refresh.
    int32_t slot_of(uint32_t server) noexcept;
    // For debug lines: the servers the current mapping does not list, as of
    // the latest match (names still being resolved included).
    std::vector<uint32_t> unpublished();

private:
    void refresh(uint64_t now) noexcept;
    bool match_current(std::unique_lock<std::mutex>& lock);
    void retry_later(uint64_t epoch, uint64_t now) noexcept;
    static Decision native_only(const PlacementView& view, const char* key, size_t length) noexcept;

    const Topology topology_;
    const PlacementView view_;
    const std::shared_ptr<StateSource> source_;
    const NameResolution resolution_;

    // A background resolution: filled by its thread, read once `done`.
    struct Lookup {
        std::vector<uint32_t> servers;                  // indexes into the topology
        std::vector<ServerAddress> specs;               // their specs
        std::vector<std::vector<std::string>> numeric;  // their numeric forms
        std::atomic<bool> done{false};
    };
    void start_lookup() noexcept;
    bool merge_lookup() noexcept;

    std::mutex refresh_mutex_;  // refreshers only; guards the members below
    std::vector<std::vector<std::string>> names_;
    std::shared_ptr<Lookup> lookup_;  // started at most once
    bool lookup_merged_ = false;
    uint64_t map_serial_ = 0;  // the mapping slot_of_ belongs to
    std::vector<int32_t> slot_of_;
    std::vector<uint8_t> scratch_;

    // The placement before the file's latest membership change, while its
    // window lasts, when this router's list is the file's current one, spelled
    // alike (docs/DESIGN.md, "Membership changes"). Built off the hot path,
    // at a refresh that finds a new mapping; immutable once published.
    struct JoinPlan {
        Topology previous;
        // Per previous server: kStatusAvoid if it took no keys when the change
        // was published (state::kPreviousAvoided), else 0; and how many took keys.
        std::vector<uint8_t> previous_status;
        uint32_t previous_allowed = 0;
        std::vector<int32_t> to_current;  // previous index -> index in this topology, -1 if removed
        uint64_t until_ns = 0;            // coarse monotonic end of the window
    };
    // A new mapping's plan, or null; under refresh_mutex_.
    const JoinPlan* join_plan_for(const StateSource::Mapped& mapped, uint64_t now);
    // A reader may still hold a plan a newer mapping replaced: they are kept
    // for the router's life, at most kMaxJoinPlans of them (then no fallback).
    static constexpr size_t kMaxJoinPlans = 8;
    std::vector<std::unique_ptr<JoinPlan>> join_plans_;
    const JoinPlan* join_plan_ = nullptr;  // the current mapping's

    // Per-server routing status, twice; readers use copies_[latch_ & 1].
    struct StatusCopy {
        std::unique_ptr<std::atomic<uint8_t>[]> status;  // kStatus* bits per server
        std::atomic<uint32_t> allowed_count{0};
        std::atomic<bool> usable{false};
        std::atomic<const JoinPlan*> join{nullptr};
    };
    void write_status_copy(StatusCopy& copy, bool usable, uint32_t allowed) noexcept;
    void look_before_join(const StatusCopy& copy, const char* key, size_t length, uint64_t now, Decision& d) noexcept;
    std::atomic<uint64_t> latch_{0};
    StatusCopy copies_[2];
    std::atomic<uint64_t> seen_epoch_{0};
    std::atomic<uint64_t> retry_at_ns_{UINT64_MAX};  // after a torn read of the file
};

}  // namespace mcwatch::route
