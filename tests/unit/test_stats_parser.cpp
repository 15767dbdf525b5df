// stats_parser: memcached's replies to `stats` and `flush_all`.
#include <doctest/doctest.h>

#include <string>

#include "daemon/stats_parser.hpp"

using namespace mcwatch;

namespace {

// A real reply of memcached 1.6.18 (captured with `stats` on a fresh server),
// with the counters mcwatch keeps changed so that each has its own value.
const std::string kRealReply =
    "STAT pid 8034\r\n"
    "STAT uptime 86\r\n"
    "STAT time 1795300926\r\n"
    "STAT version 1.6.18\r\n"
    "STAT libevent 2.1.12-stable\r\n"
    "STAT pointer_size 64\r\n"
    "STAT rusage_user 0.000000\r\n"
    "STAT rusage_system 0.008631\r\n"
    "STAT max_connections 1024\r\n"
    "STAT curr_connections 3\r\n"
    "STAT total_connections 2\r\n"
    "STAT rejected_connections 0\r\n"
    "STAT connection_structures 2\r\n"
    "STAT response_obj_oom 0\r\n"
    "STAT response_obj_count 1\r\n"
    "STAT response_obj_bytes 16384\r\n"
    "STAT read_buf_count 2\r\n"
    "STAT read_buf_bytes 32768\r\n"
    "STAT read_buf_bytes_free 0\r\n"
    "STAT read_buf_oom 0\r\n"
    "STAT reserved_fds 20\r\n"
    "STAT cmd_get 0\r\n"
    "STAT cmd_set 0\r\n"
    "STAT cmd_flush 0\r\n"
    "STAT cmd_touch 0\r\n"
    "STAT cmd_meta 0\r\n"
    "STAT get_hits 345\r\n"
    "STAT get_misses 67\r\n"
    "STAT get_expired 0\r\n"
    "STAT get_flushed 0\r\n"
    "STAT delete_misses 0\r\n"
    "STAT delete_hits 0\r\n"
    "STAT incr_misses 0\r\n"
    "STAT incr_hits 0\r\n"
    "STAT decr_misses 0\r\n"
    "STAT decr_hits 0\r\n"
    "STAT cas_misses 0\r\n"
    "STAT cas_hits 0\r\n"
    "STAT cas_badval 0\r\n"
    "STAT touch_hits 0\r\n"
    "STAT touch_misses 0\r\n"
    "STAT store_too_large 0\r\n"
    "STAT store_no_memory 0\r\n"
    "STAT auth_cmds 0\r\n"
    "STAT auth_errors 0\r\n"
    "STAT bytes_read 7\r\n"
    "STAT bytes_written 0\r\n"
    "STAT limit_maxbytes 8388608\r\n"
    "STAT accepting_conns 1\r\n"
    "STAT listen_disabled_num 0\r\n"
    "STAT time_in_listen_disabled_us 0\r\n"
    "STAT threads 4\r\n"
    "STAT conn_yields 0\r\n"
    "STAT hash_power_level 16\r\n"
    "STAT hash_bytes 524288\r\n"
    "STAT hash_is_expanding 0\r\n"
    "STAT slab_reassign_rescues 0\r\n"
    "STAT slab_reassign_chunk_rescues 0\r\n"
    "STAT slab_reassign_evictions_nomem 0\r\n"
    "STAT slab_reassign_inline_reclaim 0\r\n"
    "STAT slab_reassign_busy_items 0\r\n"
    "STAT slab_reassign_busy_deletes 0\r\n"
    "STAT slab_reassign_running 0\r\n"
    "STAT slabs_moved 0\r\n"
    "STAT lru_crawler_running 0\r\n"
    "STAT lru_crawler_starts 1\r\n"
    "STAT lru_maintainer_juggles 36\r\n"
    "STAT malloc_fails 0\r\n"
    "STAT log_worker_dropped 0\r\n"
    "STAT log_worker_written 0\r\n"
    "STAT log_watcher_skipped 0\r\n"
    "STAT log_watcher_sent 0\r\n"
    "STAT log_watchers 0\r\n"
    "STAT unexpected_napi_ids 0\r\n"
    "STAT round_robin_fallback 0\r\n"
    "STAT bytes 0\r\n"
    "STAT curr_items 12\r\n"
    "STAT total_items 0\r\n"
    "STAT slab_global_page_pool 0\r\n"
    "STAT expired_unfetched 0\r\n"
    "STAT evicted_unfetched 0\r\n"
    "STAT evicted_active 0\r\n"
    "STAT evictions 8\r\n"
    "STAT reclaimed 0\r\n"
    "STAT crawler_reclaimed 0\r\n"
    "STAT crawler_items_checked 0\r\n"
    "STAT lrutail_reflocked 0\r\n"
    "STAT moves_to_cold 0\r\n"
    "STAT moves_to_warm 0\r\n"
    "STAT moves_within_lru 0\r\n"
    "STAT direct_reclaims 0\r\n"
    "STAT lru_bumps_dropped 0\r\n"
    "END\r\n";

struct Parsed {
    ParseStatus status;
    StatsReply reply;
    size_t consumed = 0;
    std::string error;
};

Parsed parse(std::string_view buf) {
    Parsed parsed;
    parsed.status = parse_stats(buf, parsed.reply, parsed.consumed, parsed.error);
    return parsed;
}

void check_real_facts(const StatsReply& reply) {
    CHECK(reply.pid == 8034);
    CHECK(reply.uptime_s == 86);
    CHECK(reply.version == "1.6.18");
    CHECK(reply.curr_connections == 3);
    CHECK(reply.get_hits == 345);
    CHECK(reply.get_misses == 67);
    CHECK(reply.curr_items == 12);
    CHECK(reply.evictions == 8);
}

}  // namespace

TEST_CASE("stats parser: a real memcached 1.6 reply") {
    const Parsed parsed = parse(kRealReply);
    REQUIRE(parsed.status == ParseStatus::complete);
    CHECK(parsed.consumed == kRealReply.size());
    CHECK(parsed.error.empty());
    check_real_facts(parsed.reply);
}

TEST_CASE("stats parser: bytes after END are not part of the reply") {
    const Parsed parsed = parse(kRealReply + "STAT pid 1\r\n");
    REQUIRE(parsed.status == ParseStatus::complete);
    CHECK(parsed.consumed == kRealReply.size());
    CHECK(parsed.reply.pid == 8034);
}

TEST_CASE("stats parser: need_more at every cut point, from scratch and resumed") {
    for (size_t cut = 0; cut < kRealReply.size(); ++cut) {
        CAPTURE(cut);
        const Parsed parsed = parse(std::string_view(kRealReply).substr(0, cut));
        REQUIRE(parsed.status == ParseStatus::need_more);
        CHECK(parsed.error.empty());
    }

    // One byte more per call, resuming from where the last call stopped.
    StatsReply reply;
    size_t consumed = 0;
    std::string error;
    for (size_t length = 0; length < kRealReply.size(); ++length) {
        CAPTURE(length);
        REQUIRE(parse_stats(std::string_view(kRealReply).substr(0, length), reply, consumed, error) ==
                ParseStatus::need_more);
        CHECK(consumed <= length);
    }
    REQUIRE(parse_stats(kRealReply, reply, consumed, error) == ParseStatus::complete);
    CHECK(consumed == kRealReply.size());
    check_real_facts(reply);
}

TEST_CASE("stats parser: stats it does not keep are ignored, missing ones stay unknown") {
    const Parsed parsed = parse(
        "STAT some_future_stat anything at all\r\n"
        "STAT rusage_user 0.123456\r\n"
        "STAT pid 7\r\n"
        "STAT empty_value \r\n"
        "END\r\n");
    REQUIRE(parsed.status == ParseStatus::complete);
    CHECK(parsed.reply.pid == 7);
    CHECK(parsed.reply.uptime_s == state::kUnknown);
    CHECK(parsed.reply.curr_items == state::kUnknown);
    CHECK(parsed.reply.evictions == state::kUnknown);
    CHECK(parsed.reply.version.empty());

    const Parsed empty = parse("END\r\n");
    REQUIRE(empty.status == ParseStatus::complete);
    CHECK(empty.consumed == 5);
    CHECK(empty.reply.pid == state::kUnknown);
}

TEST_CASE("stats parser: garbage is an error that quotes it") {
    const Parsed http = parse("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    CHECK(http.status == ParseStatus::error);
    CHECK(http.error == "garbage reply: \"HTTP/1.1 400 Bad Request\"");

    // Known to be garbage before any newline: no waiting for more.
    const Parsed partial = parse("HTTP/1.1");
    CHECK(partial.status == ParseStatus::error);
    CHECK(partial.error == "garbage reply: \"HTTP/1.1\"");

    CHECK(parse("STAT pid 1\r\nVALUE k 0 1\r\n").status == ParseStatus::error);
    CHECK(parse("STAT pid 1\r\n\r\n").status == ParseStatus::error);  // empty line
    CHECK(parse("END \r\n").status == ParseStatus::error);
    CHECK(parse("ENDX").status == ParseStatus::error);
    CHECK(parse("END\rX").status == ParseStatus::error);
    CHECK(parse("STAT \r\nEND\r\n").status == ParseStatus::error);  // no name
    CHECK(parse("stat pid 1\r\nEND\r\n").status == ParseStatus::error);
    const std::string nul_bytes("STAT pid 1\r\n\0\0\0", 15);
    CHECK(parse(nul_bytes).error == "garbage reply: \"\\x00\\x00\\x00\"");
}

TEST_CASE("stats parser: ERROR, CLIENT_ERROR and SERVER_ERROR are answers, not garbage") {
    const Parsed server = parse("SERVER_ERROR out of memory\r\n");
    CHECK(server.status == ParseStatus::answered_error);
    CHECK(server.error == "server error: \"SERVER_ERROR out of memory\"");

    const Parsed client = parse("CLIENT_ERROR bad command line format\r\n");
    CHECK(client.status == ParseStatus::answered_error);
    CHECK(client.error == "client error: \"CLIENT_ERROR bad command line format\"");

    const Parsed unknown = parse("ERROR\r\n");
    CHECK(unknown.status == ParseStatus::answered_error);
    CHECK(unknown.error == "error reply: \"ERROR\"");

    // After some stats, too.
    const Parsed late = parse("STAT pid 1\r\nSERVER_ERROR busy\r\n");
    CHECK(late.status == ParseStatus::answered_error);
    CHECK(late.error == "server error: \"SERVER_ERROR busy\"");

    // memcached at its connection limit, to any first request.
    const Parsed full = parse("ERROR Too many open connections\r\n");
    CHECK(full.status == ParseStatus::answered_error);
    CHECK(full.error == "error reply: \"ERROR Too many open connections\"");

    // An error line still arriving is not garbage yet.
    CHECK(parse("SERVER_ERROR out of mem").status == ParseStatus::need_more);
}

TEST_CASE("stats parser: a kept stat with a non-numeric value is garbage") {
    const Parsed letters = parse("STAT pid abc\r\nEND\r\n");
    CHECK(letters.status == ParseStatus::error);
    CHECK(letters.error == "garbage reply: non-numeric pid: \"STAT pid abc\"");

    for (const char* reply : {
             "STAT uptime -1\r\nEND\r\n", "STAT uptime 12x\r\nEND\r\n", "STAT uptime 12 \r\nEND\r\n",
             "STAT uptime \r\nEND\r\n", "STAT uptime\r\nEND\r\n", "STAT curr_items 1.5\r\nEND\r\n",
             "STAT evictions 99999999999999999999999\r\nEND\r\n",  // over 64 bits
         }) {
        CAPTURE(reply);
        const Parsed parsed = parse(reply);
        CHECK(parsed.status == ParseStatus::error);
        CHECK(parsed.error.starts_with("garbage reply: non-numeric"));
    }
}

TEST_CASE("stats parser: lines must end in \\r\\n") {
    const Parsed bare = parse("STAT pid 1\nEND\r\n");
    CHECK(bare.status == ParseStatus::error);
    CHECK(bare.error == "garbage reply: line ends in \\n without \\r: \"STAT pid 1\\n\"");
    CHECK(parse("STAT pid 1\r\nEND\n").status == ParseStatus::error);
    CHECK(parse("\n").status == ParseStatus::error);
}

TEST_CASE("stats parser: a reply over the bound is oversized, one at the bound is fine") {
    // Filler lines up to exactly kMaxStatsReplyBytes with END.
    const std::string end = "END\r\n";
    std::string body;
    while (body.size() + end.size() < kMaxStatsReplyBytes) {
        const size_t room = kMaxStatsReplyBytes - end.size() - body.size();
        const std::string line = "STAT filler 1\r\n";
        if (room >= line.size() + 20 || room == line.size()) {
            body += line;
        } else {  // pad the last line so that the total is exact
            body += "STAT f " + std::string(room - 9, 'x') + "\r\n";
        }
    }
    const std::string at_bound = body + end;
    REQUIRE(at_bound.size() == kMaxStatsReplyBytes);
    const Parsed fits = parse(at_bound);
    CHECK(fits.status == ParseStatus::complete);
    CHECK(fits.consumed == kMaxStatsReplyBytes);

    const Parsed over = parse("STAT x 1\r\n" + at_bound);
    CHECK(over.status == ParseStatus::error);
    CHECK(over.error.starts_with("oversized reply"));

    // Endless stats without END: an error once the bound is reached, not need_more.
    std::string endless;
    while (endless.size() < kMaxStatsReplyBytes) endless += "STAT filler 1\r\n";
    const Parsed never_ends = parse(endless);
    CHECK(never_ends.status == ParseStatus::error);
    CHECK(never_ends.error.starts_with("oversized reply"));

    // One endless line.
    const Parsed long_line = parse("STAT version " + std::string(kMaxStatsReplyBytes, 'v'));
    CHECK(long_line.status == ParseStatus::error);
    CHECK(long_line.error.starts_with("oversized reply"));
}

TEST_CASE("stats parser: the flush_all reply") {
    size_t consumed = 0;
    std::string error;
    CHECK(parse_flush_reply("OK\r\n", consumed, error) == ParseStatus::complete);
    CHECK(consumed == 4);
    consumed = 0;
    CHECK(parse_flush_reply("OK\r\nSTAT pid 1\r\n", consumed, error) == ParseStatus::complete);
    CHECK(consumed == 4);
    for (const char* partial : {"", "O", "OK", "OK\r", "CLIENT_ERR", "SERVER_ERROR no"}) {
        CAPTURE(partial);
        CHECK(parse_flush_reply(partial, consumed, error) == ParseStatus::need_more);
    }

    // memcached -F: the stats pipelined after the refusal still come.
    CHECK(parse_flush_reply("CLIENT_ERROR flush_all not allowed\r\nSTAT pid 1\r\n", consumed, error) ==
          ParseStatus::answered_error);
    CHECK(error == "client error: \"CLIENT_ERROR flush_all not allowed\"");
    CHECK(consumed == 36);
    CHECK(parse_flush_reply("ERROR\r\n", consumed, error) == ParseStatus::answered_error);
    CHECK(error == "error reply: \"ERROR\"");
    CHECK(parse_flush_reply("OKAY\r\n", consumed, error) == ParseStatus::error);
    CHECK(error == "garbage reply: \"OKAY\"");
    CHECK(parse_flush_reply("OKA", consumed, error) == ParseStatus::error);
    CHECK(error == "garbage reply: \"OKA\"");
    CHECK(parse_flush_reply("OK\n", consumed, error) == ParseStatus::error);
    CHECK(parse_flush_reply("STAT pid 1\r\n", consumed, error) == ParseStatus::error);
    CHECK(parse_flush_reply("SERVER_ERROR " + std::string(kMaxFlushReplyBytes, 'x'), consumed, error) ==
          ParseStatus::error);
    CHECK(error.starts_with("oversized reply"));
}

TEST_CASE("stats parser: quoted bytes are escaped and cut short") {
    CHECK(quote_bytes("plain") == "\"plain\"");
    CHECK(quote_bytes("a\"b\\c\r\n\t\x01\xff") == "\"a\\\"b\\\\c\\r\\n\\t\\x01\\xff\"");
    const std::string quoted = quote_bytes(std::string(200, 'a'));
    CHECK(quoted == "\"" + std::string(kMaxQuotedChars, 'a') + "\"...");
    // An escape is never cut in half.
    std::string expected = "\"";
    for (size_t i = 0; i < kMaxQuotedChars / 4; ++i) expected += "\\x01";
    CHECK(quote_bytes(std::string(100, '\x01')) == expected + "\"...");
}
