// mcwatchd's configuration: the INI file of mcwatchd.conf(5), read with inih.
// Errors are returned as "file:line: message", never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "libshim/state_format.hpp"

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
    // "" until the file is read: then `control` beside the state file.
    std::string control_socket;
    Millis probe_interval{500};
    Millis probe_timeout{250};
    uint32_t fail_after = 2;
    uint32_t recover_after = 3;
    // mcctl drain/down refuse to leave fewer live servers than this (0 = no floor).
    uint32_t min_live_servers = 1;
    Millis recently_down_window{std::chrono::hours(1)};
    Millis writeback_ttl{std::chrono::minutes(10)};
    bool flush_on_rejoin = true;
    // mcctl drain moves every key of the server (as `drain --move`), not only those read.
    bool drain_move = false;
    // Keys per second a drain's move copies at most.
    uint32_t drain_rate = 1000;
    Millis stale_after{std::chrono::seconds(5)};
    // Who may use the control socket besides root and the daemon's user.
    std::string admin_group;  // "" = nobody else
    uint32_t admin_gid = 0;
    // Started as root, the daemon switches to this user ("" = stays as is).
    std::string user;
    uint32_t user_uid = 0;
    uint32_t user_gid = 0;
    // Prometheus endpoint, "" = off; numeric "host:port" or "[v6]:port".
    std::string metrics_listen;
    std::string metrics_host;  // numeric, brackets stripped
    uint16_t metrics_port = 0;
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

// metrics_listen's value: numeric "host:port", "[v6]:port", or "localhost:port".
// Returns an error message (without file:line) or "", setting host and port.
std::string parse_listen_address(const std::string& text, std::string& host, uint16_t& port);

// "host:port", "[v6]:port", "unix:/path": the part of a server line before
// its options. Returns an error message (without file:line) or "".
std::string parse_server_address(const std::string& text, ServerAddress& out);

// The numeric form of a server's address ("1.2.3.4:11211", "[::1]:11211",
// "unix:/path"), so that "localhost:11211" and "127.0.0.1:11211" are known to
// be one server. Only numeric addresses and localhost: no DNS query. "" if
// the host is a name.
std::string numeric_server_address(const ServerAddress& server);

}  // namespace mcwatch
