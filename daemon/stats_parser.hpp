// The two memcached replies the prober reads: `stats` (lines `STAT name value`
// up to `END`) and `flush_all` (`OK`). Both parsers are incremental: given a
// buffer that may hold only part of a reply they say need_more, and a caller
// that keeps reading calls again with the grown buffer. Anything that is not
// memcached's text protocol is an error whose message quotes the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "libshim/state_format.hpp"

namespace mcwatch {

// memcached 1.6 answers `stats` with about 2.2 KiB; a reply without END in
// this many bytes is not memcached, and bounds what one peer can make us hold.
inline constexpr size_t kMaxStatsReplyBytes = 64 * 1024;
// "OK\r\n", or one error line.
inline constexpr size_t kMaxFlushReplyBytes = 1024;
// "VERSION 1.6.21\r\n", or one error line.
inline constexpr size_t kMaxVersionReplyBytes = 1024;
// Quoted bytes in error messages are cut to about this many characters, so
// that a message fits the state file's last_error (state::kErrorWords * 8 =
// 128 bytes, the terminating NUL included).
inline constexpr size_t kMaxQuotedChars = 60;

// The facts mcwatch keeps from a `stats` reply; state::kUnknown or "" for a
// stat the reply did not carry. Other stats are ignored.
struct StatsReply {
    uint64_t uptime_s = state::kUnknown;
    uint64_t pid = state::kUnknown;
    uint64_t curr_items = state::kUnknown;
    uint64_t curr_connections = state::kUnknown;
    uint64_t get_hits = state::kUnknown;
    uint64_t get_misses = state::kUnknown;
    uint64_t evictions = state::kUnknown;
    std::string version;
};

// answered_error: the reply is one of memcached's own error lines (ERROR,
// CLIENT_ERROR, SERVER_ERROR): not a protocol failure, the server is up and
// said why it would not serve the request; `error` quotes the line.
enum class ParseStatus { complete, need_more, error, answered_error };

// Parses the reply to `stats` at the start of `buf`.
// `consumed` is in/out. In: how many bytes of `buf` an earlier call that
// returned need_more already parsed into `out` (0 and a fresh `out` to start).
// Out: on need_more, the same for the next call; on complete, the length of
// the whole reply, END line included (bytes after it are not looked at).
// On error, `error` says why, e.g. `garbage reply: "HTTP/1.1 400 Bad Request"`,
// `server error: "SERVER_ERROR out of memory"`, `oversized reply: ...`.
ParseStatus parse_stats(std::string_view buf, StatsReply& out, size_t& consumed, std::string& error);

// Parses the reply to `flush_all` at the start of `buf`: "OK\r\n". On complete,
// `consumed` is its length (4); on answered_error, the error line's (a reply
// pipelined after it may follow). Errors as for parse_stats.
ParseStatus parse_flush_reply(std::string_view buf, size_t& consumed, std::string& error);

// Parses the reply to `version` at the start of `buf`: "VERSION <text>\r\n",
// the liveness probe of most rounds. On complete, `version` is the text and
// `consumed` the line's length. Errors as for parse_stats.
ParseStatus parse_version_reply(std::string_view buf, std::string& version, size_t& consumed, std::string& error);

// `bytes` between double quotes, C-escaped (\r, \n, \", \\, \xNN), cut after
// about `max_chars` output characters with "..." after the closing quote.
std::string quote_bytes(std::string_view bytes, size_t max_chars = kMaxQuotedChars);

}  // namespace mcwatch
