// One consistent view of the state file for mcctl's commands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "libshim/state_reader.hpp"

namespace mcwatch {

struct Snapshot {
    state::StateMap map;
    std::vector<state::ServerDynamic> servers;
    uint64_t generation = 0;
    state::FleetStatus fleet;               // the header's [fleet] facts, of the same instant
    state::MembershipMove membership_move;  // the header's move after the latest membership change, likewise
    uint64_t heartbeat_age_ms = 0;
    bool stale = false;
    bool daemon_running = false;  // its pid exists (kill -0)
};

// Exit status of mcctl when the file cannot be used at all, and for a
// command line it does not understand.
inline constexpr int kExitUnusable = 2;
inline constexpr int kExitUsage = 64;  // EX_USAGE

// Opens `path` and copies one consistent view into `out` (filled in place:
// it holds the mapping). The error says why, naming the file, and the
// caller exits with kExitUnusable.
Result<> load_snapshot(const std::string& path, Snapshot& out);

// The address of slot i, as configured.
std::string slot_address(const Snapshot& snapshot, uint32_t i);

}  // namespace mcwatch
