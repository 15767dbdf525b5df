// mcctl's read-only views of the state file: status, watch, dump.
#pragma once

#include <chrono>
#include <string>

namespace mcwatch {

// Exit: 0 all live, 1 some server not live, 2 stale, missing or invalid.
int mcctl_status(const std::string& path, bool as_json);
// Redraws the status every `interval`; `count` > 0 stops after that many.
int mcctl_watch(const std::string& path, std::chrono::milliseconds interval, long count);
// Every raw header and slot field.
int mcctl_dump(const std::string& path);

}  // namespace mcwatch
