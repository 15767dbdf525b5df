// `mcctl drain --wait`: after the drain, watch the state file (never the
// control socket) until the draining server holds at most a threshold of
// items, or the drain, its move or the wait ends otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace mcwatch {

// Exit status of `drain --wait` when the timeout passed first.
inline constexpr int kExitWaitTimedOut = 3;

struct DrainWait {
    std::string server;      // as the operator named it
    bool move = false;       // wait for the move to be done first
    uint64_t threshold = 0;  // at most this many items left
    // With `move` and no --threshold the move's end is the outcome: the keys
    // it skipped (a client's value won) and expired items memcached still
    // counts stay behind, so no count of items would ever be reached.
    bool threshold_given = false;
    std::optional<std::chrono::milliseconds> timeout;  // none: until an outcome
};

// Polls `state_path` every 100 ms. 0 when the server's curr_items, read by a
// stats probe after the wait began (with `move`: after the move was seen
// done), is at most the threshold, or with `move` and no threshold given
// when the move is done; 1 when the drain ended (undrain, up,
// down, a reload removing the server), the server stopped answering, or the
// move failed or was stopped; 2 when the state file is unusable or stale;
// kExitWaitTimedOut when the timeout passed. Says why on `err`.
int mcctl_drain_wait(const std::string& state_path, const DrainWait& wait, std::FILE* out, std::FILE* err);

}  // namespace mcwatch
