// ServerAddress: the one type for a server's address in mcwatchd, mcctl and
// the shim, and the forms the daemon writes that the shim matches.
#include "libshim/server_address.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace mcwatch;

namespace {

ServerAddress strict(const std::string& text) {
    ServerAddress server;
    std::string error;
    REQUIRE_MESSAGE(ServerAddress::parse_strict(text, server, error), error);
    return server;
}

std::string strict_error(const std::string& text) {
    ServerAddress server;
    std::string error;
    CHECK_FALSE(ServerAddress::parse_strict(text, server, error));
    return error;
}

}  // namespace

TEST_CASE("server address: a configuration line and a libmemcached list read one spelling the same way") {
    for (const char* text : {"127.0.0.1:11211", "[::1]:11300", "cache-1.example.com:11211", "unix:/run/mc.sock"}) {
        const ServerAddress configured = strict(text);
        ServerAddress listed;
        std::string error;
        REQUIRE(ServerAddress::parse(text, 1, listed, error));
        CHECK(listed.text == configured.text);
        CHECK(listed.host == configured.host);
        CHECK(listed.port == configured.port);
        CHECK(listed.is_unix == configured.is_unix);
        CHECK(listed.canonical() == configured.canonical());
    }
}

TEST_CASE("server address: the configuration refuses what a libmemcached list would imply") {
    CHECK(strict_error("cache-1") == "server cache-1: missing port (expected host:port)");
    CHECK(strict_error("::1") == "server ::1: write IPv6 addresses as [addr]:port");
    CHECK(strict_error("/run/mc.sock") == "server /run/mc.sock: missing port (expected host:port)");
    CHECK(strict_error("a:1,b:2") ==
          "server a:1,b:2: write one server per `server =` line, not a comma-separated list");
    CHECK(strict_error("cache-1:11211:3") ==
          "server cache-1:11211:3: the weight is written `weight=3` after the address: "
          "server = cache-1:11211 weight=3");
    CHECK(strict_error("unix:/" + std::string(kMaxUnixPathLength, 'p')).ends_with("unix socket path too long"));
}

TEST_CASE("server address: the numeric form mcwatchd writes is the form the shim matches") {
    CHECK(strict("localhost:11300").numeric() == "127.0.0.1:11300");
    CHECK(strict("[0:0::1]:11211").numeric() == "[::1]:11211");
    CHECK(strict("unix:/run/mc.sock").numeric() == "unix:/run/mc.sock");
    CHECK(strict("cache-1.example.com:11211").numeric() == "");
    for (const char* text : {"localhost:11300", "[0:0::1]:11211", "10.0.0.7:11211", "unix:/run/mc.sock"}) {
        const std::string written = strict(text).numeric();
        CHECK(ServerAddress::canonical(written) == written);
    }
    // A name is resolved by the shim (on a thread of its own), not assumed.
    ServerAddress listed;
    std::string error;
    REQUIRE(ServerAddress::parse("localhost", 1, listed, error));
    CHECK(listed.is_name());
    CHECK_FALSE(strict("127.0.0.1:11211").is_name());
    CHECK_FALSE(strict("unix:/run/mc.sock").is_name());
    CHECK(strict("[::1]:11300").resolve() == std::vector<std::string>{"[::1]:11300"});
}

TEST_CASE("server address: a unix socket path longer than sun_path is refused, not cut") {
    SocketAddress address;
    const std::string longest = "/" + std::string(kMaxUnixPathLength - 1, 'p');
    REQUIRE(ServerAddress::unix_socket_address(longest, address));
    CHECK(address.get()->sa_family == AF_UNIX);
    CHECK(std::string(reinterpret_cast<const sockaddr_un*>(&address.storage)->sun_path) == longest);
    CHECK_FALSE(ServerAddress::unix_socket_address(longest + "p", address));
}
