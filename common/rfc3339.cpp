#include "common/rfc3339.hpp"

#include <fmt/format.h>

#include <ctime>

namespace mcwatch {

std::string rfc3339_utc(int64_t unix_ms) {
    const time_t seconds = time_t(unix_ms / 1000);
    struct tm utc {};
    gmtime_r(&seconds, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                       utc.tm_hour, utc.tm_min, utc.tm_sec, int(unix_ms % 1000));
}

}  // namespace mcwatch
