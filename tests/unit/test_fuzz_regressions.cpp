// Inputs the fuzz targets (tests/fuzz/) found, each pinned as a test of what
// a user would see; the comment above each names the input in
// tests/fuzz/crashes/ and the fix.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "common/config.hpp"
#include "tools/mcctl/json.hpp"
#include "scratch_dir.hpp"
#include "state_fixture.hpp"
#include "tools/mcctl/status.hpp"
#include "tests/lib/valid_utf8.hpp"

using namespace mcwatch;
using mcwatch::test::valid_utf8;

namespace {

// What `fn` printed on stdout (mcctl's commands print with fmt::print).
template <typename Fn>
std::string stdout_of(Fn fn, int& status) {
    std::fflush(stdout);
    char name[] = "/tmp/mcwatch-stdout-XXXXXX";
    const int capture = mkstemp(name);
    REQUIRE(capture >= 0);
    unlink(name);
    const int saved = dup(STDOUT_FILENO);
    dup2(capture, STDOUT_FILENO);
    status = fn();
    std::fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    std::string text(size_t(lseek(capture, 0, SEEK_END)), '\0');
    REQUIRE(pread(capture, text.data(), text.size(), 0) == ssize_t(text.size()));
    close(capture);
    return text;
}

std::string config_error(const std::string& mcwatchd_section) {
    const auto result =
        parse_config("[mcwatchd]\n" + mcwatchd_section + "\n[servers]\nserver = 127.0.0.1:11211\n", "t.conf");
    return result ? "" : result.error().message;
}

}  // namespace

// fuzz_config, tests/fuzz/crashes/config/writeback-ttl-31d. Fix: common/config.cpp,
// an upper bound of 30d on writeback_ttl.
TEST_CASE("fuzz regression: writeback_ttl past 30 days is refused, memcached would read it as a date") {
    // The shim writes a value back with this expiration; memcached takes a
    // relative expiration above 30 days as an absolute unix time (1970 + 31
    // days): every write-back would be expired on arrival.
    CHECK(config_error("writeback_ttl = 30d") == "");
    CHECK(config_error("writeback_ttl = 31d") == "t.conf:2: writeback_ttl = 31d is too long (maximum 30d)");
}

// fuzz_config, tests/fuzz/crashes/config/stale-after-past-uint32 (values
// must fit the state file's uint32 millisecond fields). Fix: common/config.cpp,
// an upper bound of 49d on stale_after and probe_interval.
TEST_CASE("fuzz regression: stale_after and probe_interval must fit the state file") {
    // 2^32 ms + 100 ms would be published as stale_after_ms = 100: every
    // client would call a healthy daemon's file stale between two rounds.
    CHECK(config_error("stale_after = 4294967396ms") ==
          "t.conf:2: stale_after = 4294967396ms is too long (maximum 49d)");
    CHECK(config_error("probe_interval = 50d\nstale_after = 51d\nprobe_timeout = 1s").find("too long") !=
          std::string::npos);
    CHECK(config_error("stale_after = 49d") == "");
}

// fuzz_state_file, tests/fuzz/crashes/state_file/uptime-overflow. UBSan:
// "signed integer overflow" in tools/mcctl/status.cpp (uptime_s * 1000, and
// now - since_unix_ms). Fix: tools/mcctl/status.cpp, show "-" for values
// out of range.
TEST_CASE("fuzz regression: mcctl status shows absurd uptimes and times as unknown") {
    test::ScratchDir dir;
    const std::string path = dir.file("state");
    test::StateFixture file(path, {{"127.0.0.1:11211", "127.0.0.1:11211", 1}});
    file.slots()[0].uptime_s.store(7308900669950263296ull);
    file.slots()[0].since_unix_ms.store(INT64_MIN + 1);
    int status = -1;
    const std::string table = stdout_of([&] { return mcctl_status(path, false); }, status);
    CHECK(status == 0);
    const std::string row = table.substr(table.find("127.0.0.1:11211"));
    // SERVER STATE FOR RTT UPTIME ...: for and uptime unknown.
    char address[64], state[16], since[16], rtt[16], uptime[32];
    REQUIRE(std::sscanf(row.c_str(), "%63s %15s %15s %15s %31s", address, state, since, rtt, uptime) == 5);
    CHECK(std::string(since) == "-");
    CHECK(std::string(uptime) == "-");
}

// fuzz_state_file, tests/fuzz/crashes/state_file/json-not-utf8: a
// version string that is not UTF-8 (a server that answers garbage in its
// `STAT version`, or a corrupt file) made `status --json` print invalid
// JSON. Fix: tools/mcctl/json.cpp, escape bytes past ASCII.
TEST_CASE("fuzz regression: mcctl status --json stays valid UTF-8 whatever the strings hold") {
    CHECK(json::quote("1.6.\xff") == "\"1.6.\\u00ff\"");
    CHECK(valid_utf8(json::quote("1.6.\xff\xfe")));
    CHECK(valid_utf8(json::quote("\xe2\x82")));  // a cut sequence
}
