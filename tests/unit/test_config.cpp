#include <doctest/doctest.h>

#include <fmt/format.h>

#include "common/config.hpp"

using mcwatch::parse_config;

namespace {

// The error for `text` read as "t.conf", or "" if it parsed.
std::string error_of(const std::string& text) {
    const auto result = parse_config(text, "t.conf");
    return result ? "" : result.error().message;
}

const char* kMinimal = "[servers]\nserver = 127.0.0.1:11211\n";

}  // namespace

TEST_CASE("config: an example with every key parses") {
    const std::string text = R"([mcwatchd]
state_file = /run/mcwatchd/state
control_socket = /run/mcwatchd/control
probe_interval = 500ms
probe_timeout = 250ms
fail_after = 2
recover_after = 3
recently_down_window = 1h
writeback_ttl = 10m
flush_on_rejoin = yes
stale_after = 5s

[routing]                  ; for linked clients and `mcctl route`
distribution = ketama      ; ketama | ketama_weighted | modula
hash = md5                 ; any hash libmemcached offers

[servers]                  ; order matters (modula), as in the clients' lists
server = 127.0.0.1:11211
server = 127.0.0.1:11212 weight=2
server = unix:/run/memcached/mc.sock
server = cache-1.example.com:11211
server = [::1]:11213
)";
    const auto result = parse_config(text, "t.conf");
    REQUIRE_MESSAGE(result.has_value(), (result ? "" : result.error().message));
    const mcwatch::Config& c = *result;
    CHECK(c.probe_interval.count() == 500);
    CHECK(c.probe_timeout.count() == 250);
    CHECK(c.fail_after == 2);
    CHECK(c.recover_after == 3);
    CHECK(c.recently_down_window.count() == 3'600'000);
    CHECK(c.writeback_ttl.count() == 600'000);
    CHECK(c.flush_on_rejoin);
    CHECK(c.stale_after.count() == 5000);
    CHECK(c.distribution == mcwatch::state::Distribution::ketama);
    CHECK(c.hash == mcwatch::state::Hash::md5);
    REQUIRE(c.servers.size() == 5);
    CHECK(c.servers[0].text == "127.0.0.1:11211");
    CHECK(c.servers[0].port == 11211);
    CHECK(c.servers[0].line == 18);
    CHECK(c.servers[1].weight == 2);
    CHECK(c.servers[1].text == "127.0.0.1:11212");
    CHECK(c.servers[2].is_unix);
    CHECK(c.servers[2].host == "/run/memcached/mc.sock");
    CHECK(c.servers[3].host == "cache-1.example.com");
    CHECK(c.servers[4].host == "::1");
    CHECK(c.servers[4].port == 11213);
}

TEST_CASE("config: defaults when only servers are given") {
    const auto result = parse_config(kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->state_file == "/run/mcwatchd/state");
    CHECK(result->probe_interval.count() == 500);
    CHECK(result->flush_on_rejoin);
    CHECK(result->distribution == mcwatch::state::Distribution::ketama);
    CHECK(!result->drain_move);
    CHECK(result->drain_rate == 1000);
}

TEST_CASE("config: drain_move and drain_rate") {
    const auto result =
        parse_config(std::string("[mcwatchd]\ndrain_move = on\ndrain_rate = 250\n") + kMinimal, "t.conf");
    REQUIRE_MESSAGE(result.has_value(), (result ? "" : result.error().message));
    CHECK(result->drain_move);
    CHECK(result->drain_rate == 250);
    CHECK(error_of("[mcwatchd]\ndrain_move = maybe\n") == "t.conf:2: drain_move = 'maybe': expected on or off");
}

TEST_CASE("config: every error names file:line and the problem") {
    CHECK(error_of("") == "t.conf: no servers configured: add `server = host:port` lines under [servers]");
    CHECK(error_of("[servers]\n") == "t.conf: no servers configured: add `server = host:port` lines under [servers]");
    CHECK(error_of("[mcwatchd]\nprobe_intervall = 1s\n") == "t.conf:2: unknown key 'probe_intervall' in [mcwatchd]");
    CHECK(error_of("[cache]\nx = 1\n") ==
          "t.conf:2: unknown section [cache] (expected [mcwatchd], [routing], [fleet], [servers])");
    CHECK(error_of("[mcwatchd]\nprobe_interval = 5 s\n") ==
          "t.conf:2: probe_interval: bad duration '5 s': unknown unit ' s' (use ms, s, m, h or d)");
    CHECK(error_of("[mcwatchd]\nprobe_interval = fast\n") ==
          "t.conf:2: probe_interval: bad duration 'fast': expected a number and a unit (ms, s, m, h, d)");
    CHECK(error_of("[mcwatchd]\nprobe_interval = 1ms\n") ==
          "t.conf:2: probe_interval = 1ms is too short (minimum 10ms)");
    CHECK(error_of("[mcwatchd]\nfail_after = 0\n") ==
          "t.conf:2: fail_after = '0': expected a whole number from 1 to 1000");
    CHECK(error_of("[mcwatchd]\nrecover_after = two\n") ==
          "t.conf:2: recover_after = 'two': expected a whole number from 1 to 1000");
    CHECK(error_of("[mcwatchd]\nflush_on_rejoin = maybe\n") ==
          "t.conf:2: flush_on_rejoin = 'maybe': expected yes or no");
    CHECK(error_of("[mcwatchd]\nstate_file = state\n") == "t.conf:2: state_file = 'state': expected an absolute path");
    CHECK(error_of("[mcwatchd]\nfail_after = 2\nfail_after = 3\n") ==
          "t.conf:3: duplicate key 'fail_after' (first set on line 2)");
    CHECK(error_of("[routing]\ndistribution = random\n") ==
          "t.conf:2: distribution = 'random': expected ketama (or consistent), ketama_weighted or modula");
    CHECK(error_of("[routing]\nhash = sha1\n") ==
          "t.conf:2: hash = 'sha1': unknown hash (expected one of one_at_a_time, md5, crc, fnv1_64, fnv1a_64, "
          "fnv1_32, fnv1a_32, murmur, jenkins, murmur3)");
    // Debian 12's libhashkit is built without hsieh.
    CHECK(error_of("[routing]\nhash = hsieh\n") ==
          "t.conf:2: hash = 'hsieh': not built into this libhashkit, so no client can use it");
    CHECK(error_of("[servers]\nserver = 127.0.0.1\n") ==
          "t.conf:2: server 127.0.0.1: missing port (expected host:port)");
    CHECK(error_of("[servers]\nserver = 127.0.0.1:0\n") ==
          "t.conf:2: server 127.0.0.1:0: port '0' out of range (1-65535)");
    CHECK(error_of("[servers]\nserver = 127.0.0.1:65536\n") ==
          "t.conf:2: server 127.0.0.1:65536: port '65536' out of range (1-65535)");
    CHECK(error_of("[servers]\nserver = host name:1\n") == "t.conf:2: server host: missing port (expected host:port)");
    CHECK(error_of("[servers]\nserver = ho$t:1\n") == "t.conf:2: server ho$t:1: bad host name 'ho$t'");
    CHECK(error_of("[servers]\nserver = ::1:11211\n") ==
          "t.conf:2: server ::1:11211: write IPv6 addresses as [addr]:port");
    CHECK(error_of("[servers]\nserver = unix:relative.sock\n") ==
          "t.conf:2: server unix:relative.sock: unix socket path must be absolute");
    CHECK(error_of("[servers]\nserver = a:1 weight=0\n") ==
          "t.conf:2: server a:1: bad weight '0': expected 1 to 1000000");
    CHECK(error_of("[servers]\nserver = a:1 colour=blue\n") ==
          "t.conf:2: server a:1: unknown option 'colour=blue' (expected weight=N)");
    CHECK(error_of("[servers]\nserver = a:1\n\nserver = a:1\n") == "t.conf:4: duplicate server a:1 (first on line 2)");
    CHECK(error_of("[servers]\nhost = a:1\n") ==
          "t.conf:2: unknown key 'host' in [servers] (expected `server = host:port`)");
    CHECK(error_of("[servers]\nserver = a:1\nthis line is wrong\n") ==
          "t.conf:3: syntax error: expected `[section]`, `key = value` or a comment");
    CHECK(error_of("[servers\nserver = a:1\n") ==
          "t.conf:1: syntax error: expected `[section]`, `key = value` or a comment");
    CHECK(error_of(std::string("[servers]\nserver = a:1\n; ") + std::string(300, 'x') + "\n") ==
          "t.conf:3: line longer than 198 characters");
}

TEST_CASE("config: cross-key checks point at the offending key") {
    CHECK(error_of(std::string("[mcwatchd]\nprobe_interval = 100ms\nprobe_timeout = 200ms\n") + kMinimal) ==
          "t.conf:3: probe_timeout (200ms) must be shorter than probe_interval (100ms)");
    CHECK(error_of(std::string("[mcwatchd]\nstale_after = 1s\nprobe_interval = 2s\n") + kMinimal) ==
          "t.conf:2: stale_after (1s) must be longer than probe_interval (2s)");
}

TEST_CASE("config: `consistent` (PHP's and pylibmc's word) is ketama") {
    const auto result = parse_config(std::string("[routing]\ndistribution = consistent\n") + kMinimal, "t.conf");
    REQUIRE_MESSAGE(result.has_value(), (result ? "" : result.error().message));
    CHECK(result->distribution == mcwatch::state::Distribution::ketama);
}

TEST_CASE("config: min_live_servers defaults to 1 and cannot exceed the servers") {
    CHECK(parse_config(kMinimal, "t.conf")->min_live_servers == 1);
    const auto zero = parse_config(std::string("[mcwatchd]\nmin_live_servers = 0\n") + kMinimal, "t.conf");
    REQUIRE(zero.has_value());
    CHECK(zero->min_live_servers == 0);
    CHECK(error_of(std::string("[mcwatchd]\nmin_live_servers = 2\n") + kMinimal) ==
          "t.conf:2: min_live_servers = 2 is more than the 1 servers configured: no server could ever be drained");
    CHECK(error_of(std::string("[mcwatchd]\nmin_live_servers = -1\n") + kMinimal) ==
          "t.conf:2: min_live_servers = '-1': expected a whole number from 0 to 4096");
}

TEST_CASE("config: errors that pointed the wrong way name the real problem") {
    // twemproxy's and libmemcached --servers' host:port:weight.
    CHECK(error_of("[servers]\nserver = 127.0.0.1:11212:1\n") ==
          "t.conf:2: server 127.0.0.1:11212:1: the weight is written `weight=1` after the address: "
          "server = 127.0.0.1:11212 weight=1");
    CHECK(error_of("[servers]\nserver = 127.0.0.1:11211,127.0.0.1:11212\n") ==
          "t.conf:2: server 127.0.0.1:11211,127.0.0.1:11212: write one server per `server =` line, "
          "not a comma-separated list");
    CHECK(error_of("[servers]\nserver = 127.0.0.1:11211, 127.0.0.1:11212\n") ==
          "t.conf:2: server 127.0.0.1:11211,: write one server per `server =` line, not a comma-separated list");
    CHECK(error_of("[servers]\nserver = 127.0.0.1:11211 127.0.0.1:11212\n") ==
          "t.conf:2: server 127.0.0.1:11211: '127.0.0.1:11212' is not an option: write one server per "
          "`server =` line (options are weight=N)");
    // IPv6 without brackets is still told so.
    CHECK(error_of("[servers]\nserver = fe80::1:11211\n") ==
          "t.conf:2: server fe80::1:11211: write IPv6 addresses as [addr]:port");
}

TEST_CASE("config: `#` after a value starts a comment, as `;` does") {
    const auto result = parse_config(
        "[mcwatchd]\nprobe_interval = 500ms # half a second\nfail_after = 3\t# x\n"
        "[servers] # the fleet\nserver = 127.0.0.1:11211 weight=2 # big one\n",
        "t.conf");
    REQUIRE_MESSAGE(result.has_value(), (result ? "" : result.error().message));
    CHECK(result->probe_interval.count() == 500);
    CHECK(result->fail_after == 3);
    CHECK(result->servers[0].weight == 2);
    // Only after a space or a tab: a value may hold one.
    CHECK(error_of("[mcwatchd]\nprobe_interval = 500ms#half\n") ==
          "t.conf:2: probe_interval: bad duration '500ms#half': unknown unit 'ms#half' (use ms, s, m, h or d)");
}

TEST_CASE("config: two entries for one server (localhost and 127.0.0.1) are refused, naming both lines") {
    CHECK(error_of("[servers]\nserver = 127.0.0.1:11211\nserver = localhost:11211\n") ==
          "t.conf:3: server localhost:11211 is 127.0.0.1:11211, the same server as 127.0.0.1:11211 on line 2");
    CHECK(error_of("[servers]\nserver = [::1]:11211\nserver = [0:0::1]:11211\n") ==
          "t.conf:3: server [0:0::1]:11211 is [::1]:11211, the same server as [::1]:11211 on line 2");
    // Another port is another server; names are not looked up.
    CHECK(error_of("[servers]\nserver = 127.0.0.1:11211\nserver = localhost:11212\nserver = cache:11211\n") == "");
}

TEST_CASE("config: a directory given as the file is called one") {
    const auto result = mcwatch::load_config("/tmp");
    CHECK_FALSE(result.has_value());
    CHECK(result.error().message == "/tmp: is a directory, not a configuration file");
}

TEST_CASE("config: a missing file is reported with its path") {
    const auto result = mcwatch::load_config("/nonexistent/mcwatchd.conf");
    CHECK_FALSE(result.has_value());
    CHECK(result.error().message == "/nonexistent/mcwatchd.conf: cannot open: No such file or directory");
}

TEST_CASE("config: the control socket sits beside the state file unless set") {
    auto result = parse_config(kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->control_socket == "/run/mcwatchd/control");
    result = parse_config(std::string("[mcwatchd]\nstate_file = /tmp/x/state\n") + kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->control_socket == "/tmp/x/control");
    result = parse_config(std::string("[mcwatchd]\ncontrol_socket = /run/ctl/sock\n") + kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->control_socket == "/run/ctl/sock");
    CHECK(error_of(std::string("[mcwatchd]\ncontrol_socket = ctl\n") + kMinimal) ==
          "t.conf:2: control_socket = 'ctl': expected an absolute path");
    CHECK(error_of(std::string("[mcwatchd]\nstate_file = /a/b\ncontrol_socket = /a/b\n") + kMinimal) ==
          "t.conf:3: control_socket and state_file must differ");
    CHECK(error_of("[mcwatchd]\nstate_file = /" + std::string(100, 'd') + "/s\n" + kMinimal)
              .find("t.conf:2: control_socket would be /ddd") == 0);
}

TEST_CASE("config: metrics_listen is off by default and takes a numeric address") {
    auto result = parse_config(kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->metrics_listen.empty());
    result = parse_config(std::string("[mcwatchd]\nmetrics_listen = 127.0.0.1:9150\n") + kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->metrics_host == "127.0.0.1");
    CHECK(result->metrics_port == 9150);
    result = parse_config(std::string("[mcwatchd]\nmetrics_listen = [::1]:9150\n") + kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->metrics_host == "::1");
    result = parse_config(std::string("[mcwatchd]\nmetrics_listen = off\n") + kMinimal, "t.conf");
    REQUIRE(result.has_value());
    CHECK(result->metrics_listen.empty());
    CHECK(error_of(std::string("[mcwatchd]\nmetrics_listen = 9150\n") + kMinimal) ==
          "t.conf:2: metrics_listen = '9150': expected host:port (for example 127.0.0.1:9150)");
    CHECK(error_of(std::string("[mcwatchd]\nmetrics_listen = metrics.example.com:9150\n") + kMinimal) ==
          "t.conf:2: metrics_listen = 'metrics.example.com:9150': expected a numeric address (no name lookups at "
          "start-up)");
    CHECK(error_of(std::string("[mcwatchd]\nmetrics_listen = 127.0.0.1:99999\n") + kMinimal) ==
          "t.conf:2: metrics_listen = '127.0.0.1:99999': port '99999' out of range (1-65535)");
}

TEST_CASE("config: user and admin_group must exist") {
    auto result = parse_config(std::string("[mcwatchd]\nuser = nobody\nadmin_group = root\n") + kMinimal, "t.conf");
    REQUIRE_MESSAGE(result.has_value(), (result ? "" : result.error().message));
    CHECK(result->user == "nobody");
    CHECK(result->user_uid != 0);
    CHECK(result->admin_gid == 0);
    CHECK(error_of(std::string("[mcwatchd]\nuser = no-such-user-here\n") + kMinimal) ==
          "t.conf:2: user = 'no-such-user-here': no such user");
    CHECK(error_of(std::string("[mcwatchd]\nadmin_group = no-such-group-here\n") + kMinimal) ==
          "t.conf:2: admin_group = 'no-such-group-here': no such group");
}

TEST_CASE("config: every key config_keys() lists is one the parser takes") {
    const auto keys = mcwatch::config_keys();
    CHECK(keys.size() >= 17);
    for (const mcwatch::ConfigKeyDoc& key : keys) {
        CAPTURE(key.name);
        CHECK_FALSE(key.documentation.empty());
        // A value no key accepts, so that the error names the key's own parser.
        const std::string line = fmt::format("[{}]\n{} = \x01\n", key.section, key.name);
        const std::string error = error_of(line + kMinimal);
        CHECK(error.rfind("t.conf:2: ", 0) == 0);
        CHECK(error.find("unknown key") == std::string::npos);
    }
}
