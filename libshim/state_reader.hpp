// Read-only access to the state file for libmcshim and mcctl: open without
// following links, validate everything a lying or random file could get
// wrong, map read-only, and notice when the daemon replaced the file.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/mapped_region.hpp>

#include "libshim/state_format.hpp"

namespace mcwatch::state {

enum class MapStatus {
    ok,
    missing,           // no file at the path
    not_regular_file,  // a symlink, directory, fifo...
    unsafe_owner,      // writable by group/others, or owned by a stranger
    too_small,         // shorter than a header, or than its header says
    bad_magic,
    bad_version,
    bad_layout,  // header or slot size, slot count or file size disagree
    bad_digest,  // static bytes do not match their digest: garbage
    io_error,
};

const char* map_status_name(MapStatus status) noexcept;

class StateMap {
public:
    StateMap() = default;
    StateMap(const StateMap&) = delete;
    StateMap& operator=(const StateMap&) = delete;
    StateMap(StateMap&&) noexcept = default;
    StateMap& operator=(StateMap&&) noexcept = default;

    // Opens, validates and maps `path`. On failure the map stays closed and
    // `why` (if given) holds a sentence naming the path and the problem.
    MapStatus open(const char* path, char* why, size_t why_size) noexcept;
    void close() noexcept;

    bool is_open() const noexcept { return header_ != nullptr; }
    const Header& header() const noexcept { return *header_; }
    const Slot* slots() const noexcept { return slots_; }
    uint32_t slot_count() const noexcept { return header_->slot_count; }

    // True when the daemon has put a newer file at `path`: the superseded
    // flag, or (one stat syscall; callers rate-limit) another inode there.
    bool replaced(const char* path) const noexcept;

private:
    boost::interprocess::mapped_region region_;
    const Header* header_ = nullptr;
    const Slot* slots_ = nullptr;
    dev_t device_ = 0;
    ino_t inode_ = 0;
};

// Staleness never compares the daemon's monotonic clock with a reader's:
// the two differ across time namespaces and reboots (a heartbeat "from the
// future" would be fresh for ever, one from the past never). Two rules:
//
// One look (mcctl): the heartbeat's wall-clock time against the reader's.
// CLOCK_REALTIME is the clock every process of a host shares (time
// namespaces offset only the monotonic clocks), and it still means something
// for a file kept across a reboot. Age in milliseconds, either direction.
uint64_t heartbeat_age_ms(const Header& header, int64_t now_unix_ms) noexcept;
// Written, and within stale_after of now either way.
bool heartbeat_fresh(const Header& header, int64_t now_unix_ms) noexcept;

// Long-lived readers (the shim): fresh while the heartbeat keeps changing,
// judged by this process's own monotonic clock: stale once it has not
// changed for stale_after. The writer's heartbeat_mono_ns is only a token
// that changes every round. On first sight of a mapping only the wall clock
// can date it (the one-look rule above). One watch per mapping.
class HeartbeatWatch {
public:
    // Whether the heartbeat is fresh at `now_ns` (CLOCK_MONOTONIC of this process).
    bool fresh(const Header& header, uint64_t now_ns, int64_t now_unix_ms) noexcept;
    // When it goes stale unless it changes again (valid after fresh() said true).
    uint64_t stale_at_ns(const Header& header) const noexcept {
        return changed_at_ns_ + uint64_t(header.stale_after_ms) * 1000000u + 1;
    }
    // How long it has not changed, in milliseconds, as of `now_ns`; for messages.
    uint64_t silent_ms(uint64_t now_ns) const noexcept {
        return changed_ ? (now_ns - changed_at_ns_) / 1000000 : UINT64_MAX;
    }

private:
    bool seen_ = false;     // a first look was taken
    bool changed_ = false;  // changed_at_ns_ is known
    uint64_t token_ = 0;
    uint64_t changed_at_ns_ = 0;
};

}  // namespace mcwatch::state
