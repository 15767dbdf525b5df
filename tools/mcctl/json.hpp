// Minimal JSON output for mcctl: strings escaped per RFC 8259, null for
// unknown values. mcctl only writes JSON, it never parses it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mcwatch::json {

std::string quote(std::string_view text);
// A 64-bit fact, or null when it is state::kUnknown.
std::string number_or_null(uint64_t value);
// An RFC 3339 time, or null when it is 0 (never).
std::string time_or_null(int64_t unix_ms);

}  // namespace mcwatch::json
