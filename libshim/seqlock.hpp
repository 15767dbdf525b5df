// The seqlock over the state file's dynamic fields: one writer (mcwatchd),
// any number of readers that never lock and never write. Every shared field is
// an atomic accessed relaxed, ordered by fences around the sequence number
// (Boehm, "Can seqlocks get along with programming language memory models?"),
// so a reader racing the writer is well-defined and merely retries.
#pragma once

#include <cstring>

#include "libshim/state_format.hpp"

namespace mcwatch::state {

inline void pack_words(const char* text, std::atomic<uint64_t>* words, size_t count) noexcept {
    char buffer[kErrorWords * 8] = {};
    static_assert(kErrorWords >= kVersionWords && kErrorWords >= kFleetErrorWords,
                  "buffer must fit the longest string");
    std::memcpy(buffer, text, strnlen(text, count * 8 - 1));  // keeps a NUL at the end
    for (size_t i = 0; i < count; ++i) {
        uint64_t w;
        std::memcpy(&w, buffer + i * 8, 8);
        words[i].store(w, std::memory_order_relaxed);
    }
}

inline void unpack_words(const std::atomic<uint64_t>* words, size_t count, char* out) noexcept {
    for (size_t i = 0; i < count; ++i) {
        const uint64_t w = words[i].load(std::memory_order_relaxed);
        std::memcpy(out + i * 8, &w, 8);
    }
    out[count * 8] = '\0';  // a garbage file may hold no NUL
}

inline void store_dynamic(Slot& slot, const ServerDynamic& v) noexcept {
#define MCWATCH_STORE_FIELD(type, name) slot.name.store(v.name, std::memory_order_relaxed);
    MCWATCH_SLOT_DYNAMIC_FIELDS(MCWATCH_STORE_FIELD)
#undef MCWATCH_STORE_FIELD
    pack_words(v.version, slot.version_words, kVersionWords);
    pack_words(v.last_error, slot.error_words, kErrorWords);
}

inline void load_dynamic(const Slot& slot, ServerDynamic& out) noexcept {
#define MCWATCH_LOAD_FIELD(type, name) out.name = slot.name.load(std::memory_order_relaxed);
    MCWATCH_SLOT_DYNAMIC_FIELDS(MCWATCH_LOAD_FIELD)
#undef MCWATCH_LOAD_FIELD
    unpack_words(slot.version_words, kVersionWords, out.version);
    unpack_words(slot.error_words, kErrorWords, out.last_error);
}

// The header's [fleet] facts: inside the writer's seqlock section, and
// inside a reader's copy, like the slots.
inline void store_fleet(Header& header, const FleetStatus& v) noexcept {
    header.fleet.store(v.flags, std::memory_order_relaxed);
    header.fleet_etcd_since_unix_ms.store(v.etcd_since_unix_ms, std::memory_order_relaxed);
    header.fleet_last_answer_unix_ms.store(v.last_answer_unix_ms, std::memory_order_relaxed);
    pack_words(v.error, header.fleet_error_words, kFleetErrorWords);
}

inline void load_fleet(const Header& header, FleetStatus& out) noexcept {
    out.flags = header.fleet.load(std::memory_order_relaxed);
    out.etcd_since_unix_ms = header.fleet_etcd_since_unix_ms.load(std::memory_order_relaxed);
    out.last_answer_unix_ms = header.fleet_last_answer_unix_ms.load(std::memory_order_relaxed);
    unpack_words(header.fleet_error_words, kFleetErrorWords, out.error);
}

// The header's membership move facts, like the fleet's.
inline void store_membership_move(Header& header, const MembershipMove& v) noexcept {
    header.membership_move.store(v.state, std::memory_order_relaxed);
    header.membership_move_sources.store(v.sources, std::memory_order_relaxed);
    header.membership_moved.store(v.moved, std::memory_order_relaxed);
    header.membership_skipped.store(v.skipped, std::memory_order_relaxed);
    header.membership_remaining.store(v.remaining, std::memory_order_relaxed);
    header.membership_move_started_unix_ms.store(v.started_unix_ms, std::memory_order_relaxed);
    header.membership_move_ended_unix_ms.store(v.ended_unix_ms, std::memory_order_relaxed);
}

inline void load_membership_move(const Header& header, MembershipMove& out) noexcept {
    out.state = header.membership_move.load(std::memory_order_relaxed);
    out.sources = header.membership_move_sources.load(std::memory_order_relaxed);
    out.moved = header.membership_moved.load(std::memory_order_relaxed);
    out.skipped = header.membership_skipped.load(std::memory_order_relaxed);
    out.remaining = header.membership_remaining.load(std::memory_order_relaxed);
    out.started_unix_ms = header.membership_move_started_unix_ms.load(std::memory_order_relaxed);
    out.ended_unix_ms = header.membership_move_ended_unix_ms.load(std::memory_order_relaxed);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Writer side: construct before changing any slot, destroy after. Only the
// single writer (holder of the flock) may use it.
class SeqlockWriteGuard {
public:
    explicit SeqlockWriteGuard(Header& header) noexcept
        : header_(header), start_(header.seq.load(std::memory_order_relaxed)) {
        header_.seq.store(start_ + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
    }
    ~SeqlockWriteGuard() { header_.seq.store(start_ + 2, std::memory_order_release); }
    SeqlockWriteGuard(const SeqlockWriteGuard&) = delete;
    SeqlockWriteGuard& operator=(const SeqlockWriteGuard&) = delete;

private:
    Header& header_;
    uint64_t start_;
};

// How often a reader retries a copy torn by a concurrent write before giving
// up for this call. The writer's critical section is a few microseconds, but
// it may be preempted or killed inside it (seq stays odd forever): callers
// treat `false` as "no fresh view now" and keep their previous one.
inline constexpr unsigned kReadTries = 64;

// The reader's side of the protocol, written once: `copy()` loads what the
// caller needs (relaxed atomic loads only, nothing acted on before this
// returns true) and runs again when a concurrent write tore it. False after
// `tries` torn or in-progress attempts.
template <class Copy>
inline bool seqlock_read(const Header& header, Copy&& copy, unsigned tries = kReadTries) noexcept {
    for (unsigned attempt = 0; attempt < tries; ++attempt) {
        const uint64_t before = header.seq.load(std::memory_order_acquire);
        if (before & 1) {
            cpu_relax();
            continue;
        }
        copy();
        std::atomic_thread_fence(std::memory_order_acquire);
        if (header.seq.load(std::memory_order_relaxed) == before) return true;
    }
    return false;
}

// Copies the dynamic part of `count` slots into `out` as of one instant.
// `generation_out` gets the generation of that instant.
// `fleet_out` and `move_out` (optional) get the header's [fleet] and
// membership move facts of that instant.
inline bool read_consistent(const Header& header, const Slot* slots, uint32_t count, ServerDynamic* out,
                            uint64_t* generation_out, unsigned tries = kReadTries, FleetStatus* fleet_out = nullptr,
                            MembershipMove* move_out = nullptr) noexcept {
    uint64_t generation = 0;
    FleetStatus fleet;
    MembershipMove move;
    const bool consistent = seqlock_read(
        header,
        [&]() noexcept {
            for (uint32_t i = 0; i < count; ++i) load_dynamic(slots[i], out[i]);
            generation = header.generation.load(std::memory_order_relaxed);
            if (fleet_out) load_fleet(header, fleet);
            if (move_out) load_membership_move(header, move);
        },
        tries);
    if (consistent && generation_out) *generation_out = generation;
    if (consistent && fleet_out) *fleet_out = fleet;
    if (consistent && move_out) *move_out = move;
    return consistent;
}

}  // namespace mcwatch::state
