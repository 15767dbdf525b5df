// Durations, written the same way in the config and on mcctl's command
// line: "500ms", "5s", "1.5s", "10m", "1h"; a bare number is seconds (as in
// systemd units), fractions included ("0.5"), down to whole milliseconds.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace mcwatch {

// On failure the error is a sentence about `text` ("bad duration '3w': ...").
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// The shortest exact spelling: 1500ms -> "1500ms", 3600000ms -> "1h".
std::string format_duration(std::chrono::milliseconds duration);

}  // namespace mcwatch
