// Times as mcwatch prints them: RFC 3339, UTC, millisecond precision.
#pragma once

#include <cstdint>
#include <string>

namespace mcwatch {

// 1700000000123 -> "2023-11-14T22:13:20.123Z"
std::string rfc3339_utc(int64_t unix_ms);

}  // namespace mcwatch
