// The state file: the one definition of its layout, shared by mcwatchd (the
// only writer), libmcshim and mcctl (readers). STATE_FORMAT.md beside this file
// is the prose version. Any change to a field's meaning, offset or size bumps
// kFormatVersion: readers refuse versions they do not know and place natively.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mcwatch::state {

inline constexpr char kMagic[8] = {'M', 'C', 'W', 'A', 'T', 'C', 'H', '\0'};
inline constexpr uint32_t kFormatVersion = 3;

// Bounds that keep a lying header from making a reader allocate or walk far.
inline constexpr uint32_t kMaxServers = 4096;
inline constexpr size_t kAddressSize = 128;  // "host:port" or "unix:/path", NUL-terminated
inline constexpr size_t kResolvedSize = 64;  // "1.2.3.4:11211", "[::1]:11211"
inline constexpr size_t kVersionWords = 4;   // memcached's version string, 32 bytes
inline constexpr size_t kErrorWords = 16;    // last probe failure, 128 bytes

// Sentinel for a 64-bit fact that was never observed; JSON prints it as null.
inline constexpr uint64_t kUnknown = UINT64_MAX;

enum class ServerState : uint32_t { unknown = 0, live = 1, dead = 2, draining = 3 };

// Same numbering as libmemcached's memcached_server_distribution_t is NOT
// assumed: the router maps these explicitly.
enum class Distribution : uint32_t { modula = 0, ketama = 1, ketama_weighted = 2 };

// Numbered as libmemcached's memcached_hash_t (DEFAULT=0 ... MURMUR3=10); the
// router static_asserts the equality where it includes libmemcached.
enum class Hash : uint32_t {
    one_at_a_time = 0,
    md5 = 1,
    crc = 2,
    fnv1_64 = 3,
    fnv1a_64 = 4,
    fnv1_32 = 5,
    fnv1a_32 = 6,
    hsieh = 7,
    murmur = 8,
    jenkins = 9,
    murmur3 = 10,
};
inline constexpr uint32_t kHashCount = 11;

// Slot::flags bits.
inline constexpr uint32_t kFlagRecentlyDown = 1u << 0;      // live, within recently_down_window
inline constexpr uint32_t kFlagOperatorOverride = 1u << 1;  // state set by mcctl, not probes
// With kFlagOperatorOverride: the override is a drain (published draining, or
// dead while the drained server does not answer), not `mcctl down`. For
// people (mcctl); routing needs only the state.
inline constexpr uint32_t kFlagOperatorDrain = 1u << 2;
// With kFlagOperatorOverride: the operator cleared the override and the
// server rejoins with its next good probe (flush_all first). For the daemon
// that takes over this file after a restart; routing ignores it.
inline constexpr uint32_t kFlagRejoinPending = 1u << 3;
// The server's last transition followed a client's hint (an out-of-round
// probe the shim asked for). For people (mcctl); routing ignores it.
inline constexpr uint32_t kFlagHintTriggered = 1u << 4;

// Slot::drain_move: where `mcctl drain --move` of this server stands. The
// drain_* counters beside it belong to the latest move (kept after it ends,
// until the next one starts); for people and `mcctl drain --wait`, never
// for routing.
enum class DrainMove : uint32_t {
    none = 0,     // never moved since this daemon took the file over
    listing = 1,  // enumerating the server's keys
    moving = 2,   // moving them (drain_remaining counts down)
    done = 3,     // every listed key moved or skipped
    failed = 4,   // stopped by an error (the slot's last_error says which)
    stopped = 5,  // stopped by undrain, up, down, a reload or the daemon's stop
};

// A move still at work (listing or moving keys); a value read from a file
// may be anything, so it takes the number.
inline bool drain_move_running(uint32_t move) {
    return move == uint32_t(DrainMove::listing) || move == uint32_t(DrainMove::moving);
}

// "none", "listing", "moving", "done", "failed", "stopped": mcctl's JSON,
// the metrics and the log say these.
inline const char* drain_move_name(uint32_t move) {
    switch (static_cast<DrainMove>(move)) {
    case DrainMove::none: return "none";
    case DrainMove::listing: return "listing";
    case DrainMove::moving: return "moving";
    case DrainMove::done: return "done";
    case DrainMove::failed: return "failed";
    case DrainMove::stopped: return "stopped";
    }
    return "invalid";
}

// Slot::flags bit, [fleet]: the fleet holds the server live (so it is
// published live) but this host's own probes cannot reach it, a partial
// partition whose clients here get errors for the server's keys. The slot's
// since and last_error are this host's (when it lost the server, why). For
// people (mcctl, metrics); routing ignores it, so it came without a version
// bump.
inline constexpr uint32_t kFlagUnreachableHere = 1u << 6;

// Header::flags bits (static).
inline constexpr uint32_t kHeaderFlushOnRejoin = 1u << 0;
// [routing] managed_list = on: preloaded clients use this file's server list
// instead of the one each handle was given (docs/DESIGN.md, "Managed list").
inline constexpr uint32_t kHeaderManagedList = 1u << 1;

// Header::fleet bits (dynamic, under the seqlock): the daemon's link to the
// fleet view's etcd ([fleet]; docs/DESIGN.md, "The fleet view"). All zero
// without [fleet], and in files of daemons that predate them.
inline constexpr uint32_t kFleetConfigured = 1u << 0;
inline constexpr uint32_t kFleetEtcdAnswers = 1u << 1;  // its latest request got an answer
// etcd has not answered for longer than fallback_after: this host's own
// probes decide what is published.
inline constexpr uint32_t kFleetFallback = 1u << 2;
inline constexpr size_t kFleetErrorWords = 7;  // the latest etcd error, 56 bytes (the log has it whole)

// The header. The static part is written before the file is renamed into
// place and never changes afterwards, so readers may read it without the
// seqlock. The dynamic part is atomics only.
struct Header {
    // --- static
    char magic[8];
    uint32_t format_version;
    uint32_t header_size;     // sizeof(Header)
    uint32_t slot_size;       // sizeof(Slot)
    uint32_t slot_count;      // servers in this file, config order
    uint64_t file_size;       // header_size + slot_count * slot_size
    uint64_t servers_digest;  // fnv1a64 over distribution, hash, each slot's address and weight
    uint64_t static_digest;   // fnv1a64 over all static bytes, this field taken as 0
    uint32_t distribution;    // Distribution, from [routing]
    uint32_t hash;            // Hash, from [routing]
    uint32_t daemon_pid;
    uint32_t probe_interval_ms;
    uint32_t stale_after_ms;
    uint32_t recently_down_window_s;
    uint32_t writeback_ttl_s;
    uint32_t flags;  // kHeader* bits
    int64_t created_unix_ms;
    // Copies of each key ([routing] replicas): 1 = only the key's own server.
    uint32_t replicas;
    // Upper bound on every copy's expiration, seconds ([routing]
    // replica_max_ttl); 0 = no bound.
    uint32_t replica_max_ttl_s;
    // The server list before the latest membership change (a reload that
    // added or removed servers): previous_count PreviousServer entries after
    // the slots, placed with previous_distribution and previous_hash. 0 when
    // the list never changed under this daemon or the change is older than
    // recently_down_window (docs/DESIGN.md, "Membership changes").
    uint32_t previous_count;
    uint32_t previous_distribution;
    uint32_t previous_hash;
    uint32_t reserved_static32;
    int64_t membership_changed_unix_ms;  // when that change was published; 0 = never
    uint8_t reserved_static[8];

    // --- dynamic
    // Seqlock sequence over every slot's dynamic part: odd while the daemon
    // writes. Readers retry a bounded number of times (seqlock.hpp).
    std::atomic<uint64_t> seq;
    // Bumped (inside the seqlock) whenever a field that changes routing
    // changes: state, flags. Readers re-copy their snapshot only then.
    std::atomic<uint64_t> generation;
    // Written once per probe round, outside the seqlock: a single word is
    // never torn. heartbeat_mono_ns is the daemon's CLOCK_MONOTONIC, which
    // readers use only as a token that changes every round (another time
    // namespace or boot has another monotonic clock); the unix time dates a
    // heartbeat on first sight and for one-shot readers (state_reader.hpp).
    std::atomic<uint64_t> heartbeat_mono_ns;
    std::atomic<int64_t> heartbeat_unix_ms;
    std::atomic<uint64_t> rounds;
    // Set to 1 once a newer file has been renamed over this one's path.
    std::atomic<uint32_t> superseded;
    // [fleet], under the seqlock: kFleet* bits; since when etcd has answered
    // (or not: the bit's latest change); when it last answered (0: never);
    // the latest error etcd's requests met (kept after it answers again).
    std::atomic<uint32_t> fleet;
    std::atomic<int64_t> fleet_etcd_since_unix_ms;
    std::atomic<int64_t> fleet_last_answer_unix_ms;
    std::atomic<uint64_t> fleet_error_words[kFleetErrorWords];
    // The move after the latest membership change (docs/DESIGN.md,
    // "Membership changes"), under the seqlock, summed over its sources: a
    // DrainMove value (none: no move since this daemon took the file over),
    // how many source servers, keys moved, skipped and remaining (listed,
    // not looked at yet), when it started and ended (0: not yet). For
    // people (mcctl, metrics), never for routing.
    std::atomic<uint32_t> membership_move;
    std::atomic<uint32_t> membership_move_sources;
    std::atomic<uint64_t> membership_moved;
    std::atomic<uint64_t> membership_skipped;
    std::atomic<uint64_t> membership_remaining;
    std::atomic<int64_t> membership_move_started_unix_ms;
    std::atomic<int64_t> membership_move_ended_unix_ms;
    uint8_t reserved_dynamic[24];
};

// The dynamic facts of one server, in one list so that the shared-memory
// struct (atomics), the plain copy readers work on and the load/store code
// between them can never disagree. X(type, name).
#define MCWATCH_SLOT_DYNAMIC_FIELDS(X)      \
    X(uint32_t, state)                      \
    X(uint32_t, flags)                      \
    X(int64_t, since_unix_ms)               \
    X(int64_t, recently_down_until_unix_ms) \
    X(int64_t, last_probe_unix_ms)          \
    X(uint64_t, rtt_us)                     \
    X(uint64_t, uptime_s)                   \
    X(uint64_t, pid)                        \
    X(uint64_t, curr_items)                 \
    X(uint64_t, curr_connections)           \
    X(uint64_t, get_hits)                   \
    X(uint64_t, get_misses)                 \
    X(uint64_t, evictions)                  \
    X(uint64_t, restarts)                   \
    X(int64_t, last_restart_unix_ms)        \
    X(uint64_t, probes_ok)                  \
    X(uint64_t, probes_failed)              \
    X(uint64_t, transitions)                \
    X(uint64_t, flushes)                    \
    X(uint32_t, consecutive_failures)       \
    X(uint32_t, consecutive_successes)      \
    X(uint32_t, drain_move)                 \
    X(uint32_t, drain_move_reserved)        \
    X(uint64_t, drain_moved)                \
    X(uint64_t, drain_skipped)              \
    X(uint64_t, drain_remaining)            \
    X(int64_t, drain_move_started_unix_ms)

// Plain values, as a reader sees them after a consistent copy. Times are unix
// milliseconds, 0 where never; 64-bit facts are kUnknown where never seen.
struct ServerDynamic {
#define MCWATCH_PLAIN_FIELD(type, name) type name{};
    MCWATCH_SLOT_DYNAMIC_FIELDS(MCWATCH_PLAIN_FIELD)
#undef MCWATCH_PLAIN_FIELD
    char version[kVersionWords * 8 + 1]{};  // NUL-terminated
    char last_error[kErrorWords * 8 + 1]{};
};

// The header's membership move facts as a reader sees them after a
// consistent copy (Header::membership_move and the fields after it).
struct MembershipMove {
    uint32_t state = 0;  // DrainMove
    uint32_t sources = 0;
    uint64_t moved = 0;
    uint64_t skipped = 0;
    uint64_t remaining = 0;
    int64_t started_unix_ms = 0;
    int64_t ended_unix_ms = 0;
};

// The header's [fleet] facts as a reader sees them after a consistent copy.
struct FleetStatus {
    uint32_t flags = 0;  // kFleet* bits
    int64_t etcd_since_unix_ms = 0;
    int64_t last_answer_unix_ms = 0;
    char error[kFleetErrorWords * 8 + 1]{};  // NUL-terminated
};

struct Slot {
    // --- static
    char address[kAddressSize];    // as configured
    char resolved[kResolvedSize];  // numeric form at publication, "" if unresolved
    uint32_t weight;
    uint32_t index;  // position in [servers]
    uint8_t reserved_static[56];

    // --- dynamic, under Header::seq
#define MCWATCH_ATOMIC_FIELD(type, name) std::atomic<type> name;
    MCWATCH_SLOT_DYNAMIC_FIELDS(MCWATCH_ATOMIC_FIELD)
#undef MCWATCH_ATOMIC_FIELD
    // Strings as words so that every byte a reader touches is an atomic.
    std::atomic<uint64_t> version_words[kVersionWords];
    std::atomic<uint64_t> error_words[kErrorWords];
    uint8_t reserved_dynamic[32];
};

// PreviousServer::flags bits. Taken from bytes that were reserved (zero),
// without a version bump: a reader that ignores them places the previous
// list natively, as readers did before the bit.
// Published draining or dead when the change was published: its keys were
// on their substitutes (where drain --move put them), so readers place the
// previous list with this server avoided.
inline constexpr uint32_t kPreviousAvoided = 1u << 0;

// One server of the list before the latest membership change: static, after
// the slots, covered by the static digest.
struct PreviousServer {
    char address[kAddressSize];    // as configured then
    char resolved[kResolvedSize];  // numeric form then, "" if unresolved
    uint32_t weight;
    uint32_t flags;  // kPrevious* bits
    uint8_t reserved[56];
};

// --- pinned layout: a failing assert means kFormatVersion must be bumped.
static_assert(std::atomic<uint64_t>::is_always_lock_free, "seqlock needs lock-free 64-bit atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "seqlock needs lock-free 32-bit atomics");
static_assert(std::atomic<int64_t>::is_always_lock_free, "seqlock needs lock-free 64-bit atomics");
static_assert(sizeof(std::atomic<uint64_t>) == 8 && sizeof(std::atomic<uint32_t>) == 4,
              "atomics must be plain words in shared memory: bump kFormatVersion");
static_assert(sizeof(Header) == 320, "Header size changed: bump kFormatVersion");
static_assert(offsetof(Header, format_version) == 8, "bump kFormatVersion");
static_assert(offsetof(Header, slot_count) == 20, "bump kFormatVersion");
static_assert(offsetof(Header, file_size) == 24, "bump kFormatVersion");
static_assert(offsetof(Header, servers_digest) == 32, "bump kFormatVersion");
static_assert(offsetof(Header, static_digest) == 40, "bump kFormatVersion");
static_assert(offsetof(Header, distribution) == 48, "bump kFormatVersion");
static_assert(offsetof(Header, created_unix_ms) == 80, "bump kFormatVersion");
static_assert(offsetof(Header, replicas) == 88, "bump kFormatVersion");
static_assert(offsetof(Header, replica_max_ttl_s) == 92, "bump kFormatVersion");
static_assert(offsetof(Header, previous_count) == 96, "bump kFormatVersion");
static_assert(offsetof(Header, membership_changed_unix_ms) == 112, "bump kFormatVersion");
static_assert(sizeof(PreviousServer) == 256, "PreviousServer size changed: bump kFormatVersion");
static_assert(offsetof(PreviousServer, weight) == 192, "bump kFormatVersion");
static_assert(offsetof(PreviousServer, flags) == 196, "bump kFormatVersion");
static_assert(offsetof(Header, seq) == 128, "static part must end at 128: bump kFormatVersion");
static_assert(offsetof(Header, generation) == 136, "bump kFormatVersion");
static_assert(offsetof(Header, heartbeat_mono_ns) == 144, "bump kFormatVersion");
static_assert(offsetof(Header, heartbeat_unix_ms) == 152, "bump kFormatVersion");
static_assert(offsetof(Header, rounds) == 160, "bump kFormatVersion");
static_assert(offsetof(Header, superseded) == 168, "bump kFormatVersion");
static_assert(offsetof(Header, fleet) == 172, "bump kFormatVersion");
static_assert(offsetof(Header, fleet_etcd_since_unix_ms) == 176, "bump kFormatVersion");
static_assert(offsetof(Header, fleet_last_answer_unix_ms) == 184, "bump kFormatVersion");
static_assert(offsetof(Header, fleet_error_words) == 192, "bump kFormatVersion");
static_assert(offsetof(Header, membership_move) == 248, "bump kFormatVersion");
static_assert(offsetof(Header, membership_moved) == 256, "bump kFormatVersion");
static_assert(offsetof(Header, membership_move_ended_unix_ms) == 288, "bump kFormatVersion");

static_assert(sizeof(Slot) == 640, "Slot size changed: bump kFormatVersion");
static_assert(offsetof(Slot, resolved) == 128, "bump kFormatVersion");
static_assert(offsetof(Slot, weight) == 192, "bump kFormatVersion");
static_assert(offsetof(Slot, state) == 256, "static part must end at 256: bump kFormatVersion");
static_assert(offsetof(Slot, since_unix_ms) == 264, "bump kFormatVersion");
static_assert(offsetof(Slot, consecutive_failures) == 400, "bump kFormatVersion");
static_assert(offsetof(Slot, drain_move) == 408, "bump kFormatVersion");
static_assert(offsetof(Slot, drain_moved) == 416, "bump kFormatVersion");
static_assert(offsetof(Slot, drain_move_started_unix_ms) == 440, "bump kFormatVersion");
static_assert(offsetof(Slot, version_words) == 448, "bump kFormatVersion");
static_assert(offsetof(Slot, error_words) == 480, "bump kFormatVersion");

inline constexpr size_t kHeaderStaticSize = offsetof(Header, seq);
inline constexpr size_t kSlotStaticSize = offsetof(Slot, state);

constexpr uint64_t file_size_for(uint32_t slot_count, uint32_t previous_count = 0) {
    return sizeof(Header) + uint64_t{slot_count} * sizeof(Slot) + uint64_t{previous_count} * sizeof(PreviousServer);
}

// The previous list, right after the slots (header.previous_count entries).
inline const PreviousServer* previous_servers(const Slot* slots, uint32_t slot_count) noexcept {
    return reinterpret_cast<const PreviousServer*>(slots + slot_count);
}

// FNV-1a 64: the digests above. Not a security measure, a garbage detector.
inline constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t fnv1a64(const void* data, size_t size, uint64_t h = kFnvOffset) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

// Over every static byte: header up to `seq` (static_digest counted as 0),
// each slot up to `state`, and the previous list (header.previous_count
// entries after the slots: the caller has checked the file holds them).
// Computed by the writer last, checked by readers once per mapping, so random
// bytes with the right magic are still refused.
inline uint64_t compute_static_digest(const Header& header, const Slot* slots, uint32_t count) {
    unsigned char head[kHeaderStaticSize];
    std::memcpy(head, &header, kHeaderStaticSize);
    std::memset(head + offsetof(Header, static_digest), 0, sizeof(uint64_t));
    uint64_t h = fnv1a64(head, kHeaderStaticSize);
    for (uint32_t i = 0; i < count; ++i) h = fnv1a64(&slots[i], kSlotStaticSize, h);
    const PreviousServer* previous = previous_servers(slots, count);
    for (uint32_t i = 0; i < header.previous_count; ++i) h = fnv1a64(&previous[i], sizeof(PreviousServer), h);
    return h;
}

// Identifies a routing setup: distribution, hash, and each server's address
// and weight in order. Two files with the same digest route keys alike.
inline uint64_t compute_servers_digest(const Header& header, const Slot* slots, uint32_t count) {
    uint64_t h = fnv1a64(&header.distribution, sizeof header.distribution);
    h = fnv1a64(&header.hash, sizeof header.hash, h);
    for (uint32_t i = 0; i < count; ++i) {
        h = fnv1a64(slots[i].address, strnlen(slots[i].address, kAddressSize), h);
        h = fnv1a64(&slots[i].weight, sizeof slots[i].weight, h);
    }
    return h;
}

// What makes a header one of this format for `slot_count` slots (the
// fields a reader checks first): every writer of a state file starts with it.
inline void write_layout(Header& header, uint32_t slot_count, uint32_t previous_count = 0) {
    std::memcpy(header.magic, kMagic, sizeof kMagic);
    header.format_version = kFormatVersion;
    header.header_size = sizeof(Header);
    header.slot_size = sizeof(Slot);
    header.slot_count = slot_count;
    header.previous_count = previous_count;
    header.file_size = file_size_for(slot_count, previous_count);
}

// The two digests, once every static byte is written: the servers digest
// first, since the static digest covers it.
inline void seal_digests(Header& header, const Slot* slots, uint32_t count) {
    header.servers_digest = compute_servers_digest(header, slots, count);
    header.static_digest = compute_static_digest(header, slots, count);
}

inline const char* state_name(uint32_t s) {
    switch (static_cast<ServerState>(s)) {
    case ServerState::unknown: return "unknown";
    case ServerState::live: return "live";
    case ServerState::dead: return "dead";
    case ServerState::draining: return "draining";
    }
    return "invalid";
}

}  // namespace mcwatch::state
