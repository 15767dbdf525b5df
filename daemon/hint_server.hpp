// The hints socket: a unix datagram socket beside the state file (mode 0666:
// clients run as many users) where the shim says "hint <address>\n" when a
// connection to that server just failed (docs/DESIGN.md, "Hints"). A hint is
// evidence, never a verdict: all it can do is make the daemon probe that
// server at once, at most once per kHintProbeGap per server, so that no local
// user can mark a live server dead or make the daemon flood one. Served from
// the daemon's EventLoop; never blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "daemon/event_loop.hpp"

namespace mcwatch {

// A server's hints trigger at most one probe this often; the others are counted only.
inline constexpr std::chrono::milliseconds kHintProbeGap{100};
// A longer datagram is not a hint (INTERFACES: at most 300 bytes).
inline constexpr size_t kMaxHintBytes = 300;

// The address of a well-formed hint datagram ("hint <address>\n"), or "" if it is not one.
std::string_view hint_address(std::string_view datagram);

class HintServer {
public:
    // Called for a hint that may probe: the server's index in the configuration.
    using OnHint = std::function<void(size_t index)>;

    // Binds `path` (a stale socket file there is replaced), mode 0666.
    static Result<std::unique_ptr<HintServer>> open(EventLoop& loop, const std::string& path, OnHint on_hint);
    ~HintServer();  // closes the socket and removes its file
    HintServer(const HintServer&) = delete;
    HintServer& operator=(const HintServer&) = delete;

    // The published addresses, in configuration order (again after a reload:
    // counts stay with their address).
    void set_servers(const std::vector<std::string>& addresses);

    uint64_t hints(const std::string& address) const;  // well-formed, for a known server
    uint64_t invalid() const { return invalid_; }      // malformed or for no known server

private:
    struct PerServer {
        uint64_t hints = 0;
        std::chrono::steady_clock::time_point last_probe{};
        std::chrono::steady_clock::time_point last_log{};
    };

    HintServer(EventLoop& loop, OnHint on_hint) : loop_(loop), on_hint_(std::move(on_hint)) {}
    void receive_all();
    void on_datagram(std::string_view datagram, int64_t uid);

    EventLoop& loop_;
    OnHint on_hint_;
    int fd_ = -1;
    std::string path_;
    std::map<std::string, size_t, std::less<>> index_;  // address -> configuration index
    std::map<std::string, PerServer, std::less<>> servers_;
    uint64_t invalid_ = 0;
};

}  // namespace mcwatch
