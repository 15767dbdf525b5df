// The control protocol's request parser: what mcctl sends, and what a
// careless or hostile peer might send instead.
#include <doctest/doctest.h>

#include <string>

#include "daemon/control_request.hpp"

using namespace mcwatch;

namespace {

std::string error_of(std::string_view line) {
    const ControlParse parsed = parse_control_request(line);
    return parsed.request ? "" : parsed.error;
}

}  // namespace

TEST_CASE("control request: every command mcctl sends") {
    const struct {
        const char* line;
        ControlCommand command;
        const char* server;
    } cases[] = {
        {"ping", ControlCommand::ping, ""},
        {"reload", ControlCommand::reload, ""},
        {"drain 127.0.0.1:11211", ControlCommand::drain, "127.0.0.1:11211"},
        {"undrain [::1]:11211", ControlCommand::undrain, "[::1]:11211"},
        {"down cache-1.example.com:11211", ControlCommand::down, "cache-1.example.com:11211"},
        {"up unix:/run/memcached/mc.sock", ControlCommand::up, "unix:/run/memcached/mc.sock"},
        {"flush 10.0.0.1:11211", ControlCommand::flush, "10.0.0.1:11211"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.line);
        const ControlParse parsed = parse_control_request(c.line);
        REQUIRE(parsed.request);
        CHECK(parsed.request->command == c.command);
        CHECK(parsed.request->server == c.server);
        CHECK(std::string(control_command_name(c.command)) ==
              std::string(c.line).substr(0, std::string(c.line).find(' ')));
    }
}

TEST_CASE("control request: drain and down take `force` after the server") {
    for (const char* line : {"drain 127.0.0.1:11211 force", "down 127.0.0.1:11211 force"}) {
        CAPTURE(line);
        const ControlParse parsed = parse_control_request(line);
        REQUIRE(parsed.request);
        CHECK(parsed.request->server == "127.0.0.1:11211");
        CHECK(parsed.request->force);
    }
    const ControlParse plain = parse_control_request("drain 127.0.0.1:11211");
    REQUIRE(plain.request);
    CHECK_FALSE(plain.request->force);
    CHECK_FALSE(plain.request->move);
}

TEST_CASE("control request: reload takes `force` and nothing else") {
    const ControlParse forced = parse_control_request("reload force");
    REQUIRE(forced.request);
    CHECK(forced.request->command == ControlCommand::reload);
    CHECK(forced.request->force);
    const ControlParse plain = parse_control_request("reload");
    REQUIRE(plain.request);
    CHECK_FALSE(plain.request->force);
    CHECK(error_of("reload now") == "reload takes only `force`");
    CHECK(error_of("reload force force") == "reload takes only `force`");
}

TEST_CASE("control request: drain takes `move`, with or without `force`") {
    for (const char* line : {"drain a:1 move", "drain a:1 move force", "drain a:1 force move"}) {
        CAPTURE(line);
        const ControlParse parsed = parse_control_request(line);
        REQUIRE(parsed.request);
        CHECK(parsed.request->move);
        CHECK(parsed.request->force == (std::string_view(line).find("force") != std::string_view::npos));
    }
}

TEST_CASE("control request: spacing and a trailing carriage return are tolerated") {
    const ControlParse parsed = parse_control_request("  drain \t 127.0.0.1:11211  \r");
    REQUIRE(parsed.request);
    CHECK(parsed.request->server == "127.0.0.1:11211");
}

TEST_CASE("control request: bad requests get a sentence, never a crash") {
    CHECK(error_of("") == "empty request: expected COMMAND [SERVER]");
    CHECK(error_of("   ") == "empty request: expected COMMAND [SERVER]");
    CHECK(error_of("drain") == "drain needs a server: drain HOST:PORT");
    CHECK(error_of("ping now") == "ping takes no argument");
    CHECK(error_of("drain a:1 b:2") == "drain HOST:PORT takes only `force` and `move` after the server");
    CHECK(error_of("down a:1 move") == "down HOST:PORT takes only `force` after the server");
    CHECK(error_of("drain a:1 move move") == "drain HOST:PORT takes only `force` and `move` after the server");
    CHECK(error_of("flush a:1 force") == "flush takes one server and nothing after it");
    CHECK(error_of("drain a:1 force now") == "drain HOST:PORT takes only `force` and `move` after the server");
    CHECK(error_of("drain a:1 force move now") == "too many words: expected COMMAND [SERVER [force] [move]]");
    CHECK(error_of("DRAIN a:1").rfind("unknown command 'DRAIN'", 0) == 0);
    CHECK(error_of("rm /").rfind("unknown command 'rm'", 0) == 0);
    CHECK(error_of("drain a:1\x01") == "request holds byte 0x01: printable ASCII only");
    CHECK(error_of("drain caf\xc3\xa9:1") == "request holds byte 0xc3: printable ASCII only");
    CHECK(error_of(std::string_view("drain \0:1", 9)) == "request holds byte 0x00: printable ASCII only");
    CHECK(error_of("drain " + std::string(128, 'a')) == "server address longer than 127 bytes");
    CHECK(error_of(std::string(kMaxControlRequestBytes + 1, 'a')) == "request longer than 512 bytes");
    // The echo of an unknown command is bounded.
    CHECK(error_of(std::string(500, 'x')).size() < 120);
}
