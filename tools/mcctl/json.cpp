#include "tools/mcctl/json.hpp"

#include <fmt/format.h>

#include "common/rfc3339.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch::json {

std::string quote(std::string_view text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            // Bytes past ASCII are escaped one by one (read as Latin-1): a
            // server's version string or a corrupt file is not always UTF-8,
            // and the output must stay valid JSON.
            if (c < 0x20 || c >= 0x80)
                out += fmt::format("\\u{:04x}", c);
            else
                out += char(c);
        }
    }
    return out + '"';
}

std::string number_or_null(uint64_t value) { return value == state::kUnknown ? "null" : fmt::format("{}", value); }

std::string time_or_null(int64_t unix_ms) { return unix_ms <= 0 ? "null" : quote(rfc3339_utc(unix_ms)); }

}  // namespace mcwatch::json
