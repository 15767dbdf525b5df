#include <doctest/doctest.h>

#include "common/config.hpp"

using mcwatch::FleetRule;
using mcwatch::parse_config;

namespace {

std::string error_of(const std::string& text) {
    const auto result = parse_config(text, "t.conf");
    return result ? "" : result.error().message;
}

const char* kServers = "[servers]\nserver = 127.0.0.1:11211\n";

}  // namespace

TEST_CASE("fleet config: without [fleet] the fleet view is off") {
    const auto config = parse_config(kServers, "t.conf");
    REQUIRE(config);
    CHECK_FALSE(config->fleet.enabled());
}

TEST_CASE("fleet config: every key, several endpoints") {
    const auto config = parse_config(std::string("[fleet]\netcd = http://10.0.0.1:2379, http://10.0.0.2:2379/\n"
                                                 "name = web\nhost = web-7\nlease = 5s\nverdict = all\n"
                                                 "fallback_after = 1m\n") +
                                         kServers,
                                     "t.conf");
    REQUIRE(config);
    CHECK(config->fleet.etcd == std::vector<std::string>{"http://10.0.0.1:2379", "http://10.0.0.2:2379"});
    CHECK(config->fleet.name == "web");
    CHECK(config->fleet.host == "web-7");
    CHECK(config->fleet.lease == std::chrono::seconds(5));
    CHECK(config->fleet.verdict == FleetRule::all);
    CHECK(config->fleet.fallback_after == std::chrono::minutes(1));
}

TEST_CASE("fleet config: defaults are the documented ones, host the hostname") {
    const auto config = parse_config(std::string("[fleet]\netcd = http://127.0.0.1:2379\n") + kServers, "t.conf");
    REQUIRE(config);
    CHECK(config->fleet.name == "default");
    CHECK_FALSE(config->fleet.host.empty());
    CHECK(config->fleet.lease == std::chrono::seconds(10));
    CHECK(config->fleet.verdict == FleetRule::majority);
    CHECK(config->fleet.fallback_after == std::chrono::seconds(30));
}

TEST_CASE("fleet config: bad values name the line and the problem") {
    CHECK(error_of(std::string("[fleet]\netcd = 127.0.0.1:2379\n") + kServers) ==
          "t.conf:2: etcd = '127.0.0.1:2379': endpoint '127.0.0.1:2379' must start with http:// (the v3 JSON "
          "gateway; https is not supported yet)");
    CHECK(error_of(std::string("[fleet]\netcd = http://a:1,\n") + kServers) ==
          "t.conf:2: etcd = 'http://a:1,': an empty endpoint in the list");
    CHECK(error_of(std::string("[fleet]\netcd = http://a\n") + kServers) ==
          "t.conf:2: etcd = 'http://a': endpoint 'http://a' is not http://host:port");
    CHECK(error_of(std::string("[fleet]\netcd = http://a:1\nname = a/b\n") + kServers) ==
          "t.conf:3: name = 'a/b': expected 1 to 64 letters, digits, '-', '_' or '.'");
    CHECK(error_of(std::string("[fleet]\netcd = http://a:1\nverdict = most\n") + kServers) ==
          "t.conf:3: verdict = 'most': expected majority, any or all");
    CHECK(error_of(std::string("[fleet]\netcd = http://a:1\nlease = 1s\n") + kServers) ==
          "t.conf:3: lease = 1s is too short (minimum 2s)");
    CHECK(error_of(std::string("[fleet]\netcd = http://a:1\nlease = 20s\nfallback_after = 10s\n") + kServers) ==
          "t.conf:4: fallback_after (10s) must be at least the lease (20s)");
}

TEST_CASE("fleet config: a [fleet] key without etcd is refused") {
    CHECK(error_of(std::string("[fleet]\nname = web\n") + kServers) ==
          "t.conf:2: fleet.name is set but [fleet] has no etcd = http://host:port: the fleet view needs etcd");
}
