// Read-only access to the state file for libmcshim and mcctl: open without
// following links, validate everything a lying or random file could get
// wrong, map read-only, and notice when the daemon replaced the file.
#pragma once

#include <sys/types.h>

#include <boost/interprocess/mapped_region.hpp>

#include "state_format.hpp"

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

// The heartbeat is fresh when the daemon wrote it within stale_after.
bool heartbeat_fresh(const Header& header, uint64_t now_monotonic_ns) noexcept;

// Age of the heartbeat in milliseconds (0 if written "in the future").
uint64_t heartbeat_age_ms(const Header& header, uint64_t now_monotonic_ns) noexcept;

}  // namespace mcwatch::state
