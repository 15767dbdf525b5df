// `mcctl watch`: the status redrawn in place, with the changes seen between
// refreshes listed below it as they happen.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

// Redraws every `interval` until Ctrl-C (exit 0) or, with `count` > 0, that
// many times (exit as status). On a terminal: the alternate screen, no
// cursor, lines cut to the width, redrawn at once when the terminal is
// resized, restored on exit and on Ctrl-Z. Otherwise: one table per refresh
// and one line per change, for logs.
int mcctl_watch(const std::string& path, std::chrono::milliseconds interval, long count);

// What a server had when last seen, to tell what changed.
struct WatchedServer {
    uint32_t state = 0;
    uint32_t flags = 0;
    uint64_t pid = 0;
    uint64_t restarts = 0;
    uint64_t transitions = 0;
    uint64_t flushes = 0;
    uint32_t drain_move = 0;  // state::DrainMove
    int64_t drain_move_started_unix_ms = 0;
};

// The changes between two looks at the file, one sentence each, oldest
// first ("127.0.0.1:11212 live -> dead: connection refused"). Updates `seen`
// (keyed by address). `first` is true for the first look: nothing to compare.
std::vector<std::string> watch_changes(const Snapshot& snapshot,
                                       std::vector<std::pair<std::string, WatchedServer>>& seen, bool first);

// `line` cut to `columns` visible characters, colour escapes kept whole.
std::string fit_to_width(const std::string& line, size_t columns);

}  // namespace mcwatch
