// The reply parsers of the prober on arbitrary bytes from a peer. Whatever a
// server sends, the parsers answer complete, need_more or error; they never
// read past the buffer, never claim more than they were given, stay within
// their size bounds, and give the same answer whether the bytes arrive at
// once or in pieces (the prober feeds them whatever recv returned).
//
// Input: one byte choosing the piece size for the incremental pass, then the
// reply bytes.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "daemon/stats_parser.hpp"

using namespace mcwatch;

namespace {

bool same_facts(const StatsReply& a, const StatsReply& b) {
    return a.uptime_s == b.uptime_s && a.pid == b.pid && a.curr_items == b.curr_items &&
           a.curr_connections == b.curr_connections && a.get_hits == b.get_hits && a.get_misses == b.get_misses &&
           a.evictions == b.evictions && a.version == b.version;
}

// An error message quotes at most kMaxQuotedChars of the peer's bytes.
void check_error(const std::string& error) {
    FUZZ_CHECK(!error.empty());
    FUZZ_CHECK(error.size() < 200);
    for (const char c : error) FUZZ_CHECK(c >= 0x20 && c < 0x7f);
}

struct Outcome {
    ParseStatus status;
    size_t consumed = 0;
    StatsReply stats;
    std::string error;
};

Outcome stats_at_once(std::string_view reply) {
    Outcome o;
    o.status = parse_stats(reply, o.stats, o.consumed, o.error);
    return o;
}

// As the prober does: the buffer grows by `piece` bytes, parsing resumes.
Outcome stats_in_pieces(std::string_view reply, size_t piece) {
    Outcome o;
    size_t end = 0;
    do {
        end = std::min(reply.size(), end + piece);
        const size_t before = o.consumed;
        o.status = parse_stats(reply.substr(0, end), o.stats, o.consumed, o.error);
        if (o.status == ParseStatus::need_more) FUZZ_CHECK(o.consumed >= before && o.consumed <= end);
    } while (o.status == ParseStatus::need_more && end < reply.size());
    return o;
}

void fuzz_stats(std::string_view reply, size_t piece) {
    const Outcome whole = stats_at_once(reply);
    switch (whole.status) {
    case ParseStatus::complete:
        FUZZ_CHECK(whole.consumed >= 5 && whole.consumed <= reply.size());
        FUZZ_CHECK(whole.consumed <= kMaxStatsReplyBytes);
        FUZZ_CHECK(reply.substr(0, whole.consumed).ends_with("END\r\n"));
        break;
    case ParseStatus::need_more:
        FUZZ_CHECK(reply.size() < kMaxStatsReplyBytes);
        FUZZ_CHECK(whole.consumed <= reply.size());
        break;
    case ParseStatus::error:
    case ParseStatus::answered_error: check_error(whole.error); break;
    }
    const Outcome pieces = stats_in_pieces(reply, piece);
    FUZZ_CHECK(pieces.status == whole.status);
    if (whole.status == ParseStatus::complete) {
        FUZZ_CHECK(pieces.consumed == whole.consumed);
        FUZZ_CHECK(same_facts(pieces.stats, whole.stats));
    }
    // Not the same message: in pieces, garbage is caught at its first bytes.
    if (whole.status == ParseStatus::error || whole.status == ParseStatus::answered_error) check_error(pieces.error);
}

void fuzz_flush(std::string_view reply, size_t piece) {
    size_t consumed = 0;
    std::string error;
    const ParseStatus whole = parse_flush_reply(reply, consumed, error);
    if (whole == ParseStatus::complete) FUZZ_CHECK(consumed == 4 && reply.starts_with("OK\r\n"));
    if (whole == ParseStatus::need_more) FUZZ_CHECK(reply.size() < kMaxFlushReplyBytes);
    if (whole == ParseStatus::error) check_error(error);
    if (whole == ParseStatus::answered_error) {
        check_error(error);
        FUZZ_CHECK(consumed > 0 && consumed <= reply.size() && reply.substr(0, consumed).ends_with("\r\n"));
    }
    ParseStatus status = ParseStatus::need_more;
    for (size_t end = 0; status == ParseStatus::need_more && end < reply.size();) {
        end = std::min(reply.size(), end + piece);
        size_t c = 0;
        std::string e;
        status = parse_flush_reply(reply.substr(0, end), c, e);
    }
    if (!reply.empty()) FUZZ_CHECK(status == whole);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const size_t piece = 1 + data[0] % 64;
    const std::string_view reply(reinterpret_cast<const char*>(data) + 1, size - 1);
    fuzz_stats(reply, piece);
    fuzz_flush(reply, piece);

    const std::string quoted = quote_bytes(reply);
    FUZZ_CHECK(quoted.size() <= kMaxQuotedChars + 2 + 3);
    FUZZ_CHECK(quoted.front() == '"');
    for (const char c : quoted) FUZZ_CHECK(c >= 0x20 && c < 0x7f);
    return 0;
}
