#include "daemon/log.hpp"

#include <fmt/format.h>

#include <cstdio>

#include "libshim/clock.hpp"
#include "common/rfc3339.hpp"

namespace mcwatch {

std::string log_value(std::string_view value) {
    bool plain = !value.empty();
    for (char c : value)
        if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) plain = false;
    if (plain) return std::string(value);
    std::string quoted = "\"";
    for (char c : value) {
        if (c == '"' || c == '\\') quoted += '\\';
        if (static_cast<unsigned char>(c) < 0x20)
            quoted += fmt::format("\\x{:02x}", c);
        else
            quoted += c;
    }
    return quoted + '"';
}

void log_event(std::string_view level, std::string_view event, std::initializer_list<LogField> fields) {
    std::string line = fmt::format("ts={} level={} event={}", rfc3339_utc(unix_ms()), level, event);
    for (const auto& [key, value] : fields) line += fmt::format(" {}={}", key, log_value(value));
    line += '\n';
    // One write per line so that lines of concurrent writers never interleave.
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

}  // namespace mcwatch
