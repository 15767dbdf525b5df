#include "daemon/stats_parser.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <span>

namespace mcwatch {

namespace {

// The start of a line memcached may send. A complete-only line (END, OK) is
// known in full; an open-ended one (STAT, errors) is followed by anything.
struct LineStart {
    std::string_view text;
    bool open_ended;
};

constexpr std::array<LineStart, 5> kStatsLines{{
    {"STAT ", true},
    {"END\r", false},
    {"ERROR", true},
    {"CLIENT_ERROR", true},
    {"SERVER_ERROR", true},
}};

constexpr std::array<LineStart, 4> kFlushLines{{
    {"OK\r", false},
    {"ERROR", true},
    {"CLIENT_ERROR", true},
    {"SERVER_ERROR", true},
}};

constexpr std::array<LineStart, 4> kVersionLines{{
    {"VERSION ", true},
    {"ERROR", true},
    {"CLIENT_ERROR", true},
    {"SERVER_ERROR", true},
}};

// Whether the start of a line, with no '\n' yet, can still become one of
// `allowed`. Lets garbage fail at once instead of at the deadline or the
// size bound when the peer never sends a newline.
bool may_become(std::string_view partial, std::span<const LineStart> allowed) {
    for (const LineStart& start : allowed) {
        if (partial.size() <= start.text.size()) {
            if (start.text.starts_with(partial)) return true;
        } else if (start.open_ended && partial.starts_with(start.text)) {
            return true;
        }
    }
    return false;
}

ParseStatus fail(std::string& error, std::string message) {
    error = std::move(message);
    return ParseStatus::error;
}

// memcached's error replies: "ERROR" (unknown command), "CLIENT_ERROR ...",
// "SERVER_ERROR ...". Returns false for any other line.
bool is_error_line(std::string_view line, std::string& error) {
    if (line == "ERROR" || line.starts_with("ERROR ")) {
        error = fmt::format("error reply: {}", quote_bytes(line));
    } else if (line.starts_with("CLIENT_ERROR")) {
        error = fmt::format("client error: {}", quote_bytes(line));
    } else if (line.starts_with("SERVER_ERROR")) {
        error = fmt::format("server error: {}", quote_bytes(line));
    } else {
        return false;
    }
    return true;
}

// Where a number-valued stat lands.
struct NumericStat {
    std::string_view name;
    uint64_t StatsReply::*field;
};

constexpr std::array<NumericStat, 7> kNumericStats{{
    {"uptime", &StatsReply::uptime_s},
    {"pid", &StatsReply::pid},
    {"curr_items", &StatsReply::curr_items},
    {"curr_connections", &StatsReply::curr_connections},
    {"get_hits", &StatsReply::get_hits},
    {"get_misses", &StatsReply::get_misses},
    {"evictions", &StatsReply::evictions},
}};

bool parse_u64(std::string_view text, uint64_t& value) {
    if (text.empty()) return false;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    return ec == std::errc() && ptr == end;
}

// One "STAT name value" line, without its "\r\n".
bool parse_stat_line(std::string_view line, StatsReply& out, std::string& error) {
    std::string_view rest = line.substr(5);  // after "STAT "
    const size_t space = rest.find(' ');
    const std::string_view name = rest.substr(0, space);
    const std::string_view value = space == std::string_view::npos ? "" : rest.substr(space + 1);
    if (name.empty()) {
        error = fmt::format("garbage reply: {}", quote_bytes(line));
        return false;
    }
    if (name == "version") {
        out.version.assign(value);
        return true;
    }
    for (const NumericStat& stat : kNumericStats) {
        if (name != stat.name) continue;
        if (!parse_u64(value, out.*stat.field)) {
            error = fmt::format("garbage reply: non-numeric {}: {}", name, quote_bytes(line));
            return false;
        }
        return true;
    }
    return true;  // a stat we do not keep
}

// The complete line starting at `pos` (without "\r\n") in `line`, and the
// position after it in `next`. Returns need_more when no '\n' follows yet,
// error when the '\n' has no '\r' before it.
ParseStatus next_line(std::string_view buf, size_t pos, std::string_view& line, size_t& next, std::string& error) {
    const size_t newline = buf.find('\n', pos);
    if (newline == std::string_view::npos) return ParseStatus::need_more;
    if (newline == pos || buf[newline - 1] != '\r') {
        return fail(error, fmt::format("garbage reply: line ends in \\n without \\r: {}",
                                       quote_bytes(buf.substr(pos, newline + 1 - pos))));
    }
    line = buf.substr(pos, newline - 1 - pos);
    next = newline + 1;
    return ParseStatus::complete;
}

}  // namespace

std::string quote_bytes(std::string_view bytes, size_t max_chars) {
    std::string quoted = "\"";
    size_t shown = 0;
    for (; shown < bytes.size(); ++shown) {
        const auto c = static_cast<unsigned char>(bytes[shown]);
        std::string piece;
        switch (c) {
        case '\r': piece = "\\r"; break;
        case '\n': piece = "\\n"; break;
        case '\t': piece = "\\t"; break;
        case '"': piece = "\\\""; break;
        case '\\': piece = "\\\\"; break;
        default: piece = (c >= 0x20 && c < 0x7f) ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
        }
        if (quoted.size() - 1 + piece.size() > max_chars) break;
        quoted += piece;
    }
    quoted += '"';
    if (shown < bytes.size()) quoted += "...";
    return quoted;
}

ParseStatus parse_stats(std::string_view buf, StatsReply& out, size_t& consumed, std::string& error) {
    size_t pos = consumed;
    while (true) {
        std::string_view line;
        size_t next = 0;
        const ParseStatus status = next_line(buf, pos, line, next, error);
        if (status == ParseStatus::error) return status;
        if (status == ParseStatus::need_more) {
            const std::string_view partial = buf.substr(pos);
            if (!may_become(partial, kStatsLines)) {
                return fail(error, fmt::format("garbage reply: {}", quote_bytes(partial)));
            }
            if (buf.size() >= kMaxStatsReplyBytes) {
                return fail(error, fmt::format("oversized reply: no END in {} bytes", kMaxStatsReplyBytes));
            }
            consumed = pos;
            return ParseStatus::need_more;
        }
        if (next > kMaxStatsReplyBytes) {
            return fail(error, fmt::format("oversized reply: no END in {} bytes", kMaxStatsReplyBytes));
        }
        pos = next;
        if (line == "END") {
            consumed = pos;
            return ParseStatus::complete;
        }
        if (is_error_line(line, error)) return ParseStatus::answered_error;
        if (!line.starts_with("STAT ")) {
            return fail(error, fmt::format("garbage reply: {}", quote_bytes(line)));
        }
        if (!parse_stat_line(line, out, error)) return ParseStatus::error;
    }
}

namespace {

// A reply of one line (flush_all's OK, version's VERSION x): `accept` says
// whether the line is the expected answer; an error line is
// answered_error; anything else, or a line that cannot become one of
// `starts` within `max_bytes`, is garbage.
template <class Accept>
ParseStatus parse_one_line_reply(std::string_view buf, std::span<const LineStart> starts, size_t max_bytes,
                                 size_t& consumed, std::string& error, Accept accept) {
    std::string_view line;
    size_t next = 0;
    const ParseStatus status = next_line(buf, 0, line, next, error);
    if (status == ParseStatus::error) return status;
    if (status == ParseStatus::need_more) {
        if (!may_become(buf, starts)) return fail(error, fmt::format("garbage reply: {}", quote_bytes(buf)));
        if (buf.size() >= max_bytes)
            return fail(error, fmt::format("oversized reply: no end of line in {} bytes", max_bytes));
        return ParseStatus::need_more;
    }
    if (next > max_bytes) return fail(error, fmt::format("oversized reply: no end of line in {} bytes", max_bytes));
    if (accept(line)) {
        consumed = next;
        return ParseStatus::complete;
    }
    if (is_error_line(line, error)) {
        consumed = next;
        return ParseStatus::answered_error;
    }
    return fail(error, fmt::format("garbage reply: {}", quote_bytes(line)));
}

}  // namespace

ParseStatus parse_flush_reply(std::string_view buf, size_t& consumed, std::string& error) {
    return parse_one_line_reply(buf, kFlushLines, kMaxFlushReplyBytes, consumed, error,
                                [](std::string_view line) { return line == "OK"; });
}

ParseStatus parse_version_reply(std::string_view buf, std::string& version, size_t& consumed, std::string& error) {
    return parse_one_line_reply(buf, kVersionLines, kMaxVersionReplyBytes, consumed, error, [&](std::string_view line) {
        if (!line.starts_with("VERSION ") || line.size() <= 8) return false;
        version.assign(line.substr(8));
        return true;
    });
}

}  // namespace mcwatch
