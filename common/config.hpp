// mcwatchd's configuration: the INI file of mcwatchd.conf(5), read with inih.
// Errors are returned as "file:line: message", never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "libshim/defaults.hpp"
#include "libshim/server_address.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch {

using Millis = std::chrono::milliseconds;

// How the fleet view ([fleet] verdict =) turns the hosts' observations of a
// server into the fleet's: dead when a majority, any or all of the hosts
// that report on it see it dead.
enum class FleetRule : uint8_t { majority, any, all };
const char* fleet_rule_name(FleetRule rule);

// [fleet]: the hosts' shared view of the servers, in etcd (docs/DESIGN.md,
// "The fleet view"). Without `etcd =`, mcwatchd decides alone.
struct FleetConfig {
    std::vector<std::string> etcd;  // "http://host:port" endpoints; empty = no fleet view
    std::string name = "default";   // the fleet's key prefix: /mcwatch/<name>/
    std::string host;               // this host's id; "" until read: the hostname
    Millis lease{std::chrono::seconds(10)};
    FleetRule verdict = FleetRule::majority;
    // How long etcd may be unreachable before local observations are used again.
    Millis fallback_after{std::chrono::seconds(30)};

    bool enabled() const { return !etcd.empty(); }
};

struct Config {
    std::string path;  // the file it was read from
    std::string state_file = kDefaultStatePath;
    // "" until the file is read: then `control` beside the state file.
    std::string control_socket;
    Millis probe_interval{500};
    Millis probe_timeout{250};
    // `stats` (the facts mcctl status shows) at most this often per server;
    // the other probes send `version`. Never shorter than probe_interval.
    Millis stats_interval{std::chrono::seconds(5)};
    // The datagram socket `hints` beside the state file (INTERFACES: hint datagram).
    bool hint_socket = true;
    uint32_t fail_after = 2;
    uint32_t recover_after = 3;
    // mcctl drain/down refuse to leave fewer live servers than this (0 = no floor).
    uint32_t min_live_servers = 1;
    Millis recently_down_window{std::chrono::seconds(kDefaultRecentlyDownWindowS)};
    Millis writeback_ttl{std::chrono::seconds(kDefaultWritebackTtlS)};
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
    uint32_t replicas = 1;               // copies of each key
    Millis replica_max_ttl{0};           // bound on every copy's expiration; 0 = none
    std::vector<ServerAddress> servers;  // `server =` lines, each with its line
    FleetConfig fleet;
};

// The error is "file:line: message" (or "file: message").
Result<Config> load_config(const std::string& path);
// The same from text already in memory; `name` stands for the file in messages.
Result<Config> parse_config(const std::string& text, const std::string& name);

// The control socket when the configuration sets none: kControlSocketName in
// the state file's directory ("control" for a bare file name).
std::string control_socket_beside(const std::string& state_file);

// metrics_listen's value: numeric "host:port", "[v6]:port", or "localhost:port".
struct ListenAddress {
    std::string host;  // numeric, brackets stripped
    uint16_t port = 0;
};
// The error names the problem, without file:line.
Result<ListenAddress> parse_listen_address(const std::string& text);

// One key of mcwatchd.conf(5), as the table in config.cpp holds it.
struct ConfigKeyDoc {
    std::string_view section;  // "mcwatchd", "routing", "fleet", "servers"
    std::string_view name;
    std::string_view documentation;  // one line
};
// Every key the configuration accepts, in the table's order.
std::vector<ConfigKeyDoc> config_keys();

}  // namespace mcwatch
