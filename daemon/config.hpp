// mcwatchd's configuration: the INI file of DESIGN.md, read with inih.
// Errors are returned as "file:line: message", never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "state_format.hpp"

namespace mcwatch {

using Millis = std::chrono::milliseconds;

// One `server =` line.
struct ServerAddress {
    std::string text;  // as configured, without the weight: "host:port" or "unix:/path"
    bool is_unix = false;
    std::string host;  // hostname or numeric address (brackets stripped for IPv6)
    uint16_t port = 0;
    std::string path;  // unix socket path
    uint32_t weight = 1;
    int line = 0;  // in the config file, for messages
};

struct Config {
    std::string path;  // the file it was read from
    std::string state_file = "/run/mcwatchd/state";
    std::string control_socket = "/run/mcwatchd/control";
    Millis probe_interval{500};
    Millis probe_timeout{250};
    uint32_t fail_after = 2;
    uint32_t recover_after = 3;
    Millis recently_down_window{std::chrono::hours(1)};
    Millis writeback_ttl{std::chrono::minutes(10)};
    bool flush_on_rejoin = true;
    Millis stale_after{std::chrono::seconds(5)};
    state::Distribution distribution = state::Distribution::ketama;
    state::Hash hash = state::Hash::md5;
    std::vector<ServerAddress> servers;
};

struct ConfigResult {
    std::optional<Config> config;
    std::string error;  // "file:line: message" when config is empty
};

ConfigResult load_config(const std::string& path);
// The same from text already in memory; `name` stands for the file in messages.
ConfigResult parse_config(const std::string& text, const std::string& name);

// "host:port", "[v6]:port", "unix:/path": the part of a server line before
// its options. Returns an error message (without file:line) or "".
std::string parse_server_address(const std::string& text, ServerAddress& out);

}  // namespace mcwatch
