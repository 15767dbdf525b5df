// mcctl's read-only views of the state file: status, dump, and the pieces
// `watch` redraws.
#pragma once

#include <chrono>
#include <string>

#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

// Exit: 0 all live, 1 some server not live (or, with [fleet], live for the
// fleet but unreachable from this host), 2 stale, missing or invalid.
int mcctl_status(const std::string& path, bool as_json);
// Every raw header and slot field.
int mcctl_dump(const std::string& path);

struct ServerCounts {
    uint32_t total = 0, live = 0, dead = 0, draining = 0, unknown = 0;
    // [fleet]: live (the fleet holds them so) yet unreachable from this host.
    uint32_t unreachable_here = 0;
};
ServerCounts count_servers(const Snapshot& snapshot);
// "3 of 4 live, 1 dead": the first line of status and watch; draining and
// unknown are named when there are any.
std::string summary_line(const ServerCounts& counts);

// The status table as `status` prints it: the summary line first.
std::string status_table(const Snapshot& snapshot, const std::string& path, bool colour);
std::string status_json(const Snapshot& snapshot);
// status's exit code for this snapshot.
int exit_status(const Snapshot& snapshot);
// Colour on a terminal, unless NO_COLOR is set or TERM is dumb.
bool use_colour();
// "45s", "3m12s", "2h05m", "3d04h".
std::string human_duration(int64_t ms);
// "drain", "down", or null without an operator override.
const char* override_name(const state::ServerDynamic& s);
// A line about the server's override for the table, "" without one.
std::string override_note(const state::ServerDynamic& s);

}  // namespace mcwatch
