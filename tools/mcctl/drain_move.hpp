// A drain --move's progress as mcctl shows it (status, watch, --json, drain
// --wait), from the figures the state file publishes for the server: one
// definition of its rate and time left.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "libshim/state_format.hpp"

namespace mcwatch {

struct DrainMoveFigures {
    state::DrainMove state = state::DrainMove::none;
    uint64_t moved = 0, skipped = 0, remaining = 0;
    int64_t started_unix_ms = 0;  // 0: unknown
    // The move after a membership change only: its source servers and when
    // it ended (0: not yet).
    uint32_t sources = 0;
    int64_t ended_unix_ms = 0;
    // Keys handled (moved + skipped) per second since the move started,
    // while it lists or moves and has handled some; else unknown.
    std::optional<double> rate_per_s;
    // remaining / rate while it runs; 0 once done; else unknown.
    std::optional<double> eta_s;
};

DrainMoveFigures drain_move_figures(const state::ServerDynamic& s, int64_t now_unix_ms);
// The move after the latest membership change, from the file's header: the
// same figures, the same rate and time left.
DrainMoveFigures drain_move_figures(const state::MembershipMove& m, int64_t now_unix_ms);

// "moving keys: 12,345 moved, 12 skipped, 2,001 left, 1,000/s, about 2s left";
// "" for a server never moved.
std::string drain_move_line(const DrainMoveFigures& move);

// {"state": ..., "moved": N, "skipped": N, "remaining": N, "rate_per_s": X|null,
//  "eta_s": X|null, "started": "RFC 3339"|null}
std::string drain_move_json(const DrainMoveFigures& move);
// The membership move's: drain_move_json's fields plus "sources" and "ended".
std::string membership_move_json(const DrainMoveFigures& move);

// 12345 -> "12,345".
std::string with_thousands(uint64_t value);

}  // namespace mcwatch
