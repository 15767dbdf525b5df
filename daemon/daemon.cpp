#include "daemon.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <thread>

#include "clock.hpp"
#include "log.hpp"

namespace mcwatch {

volatile std::sig_atomic_t Daemon::stop_requested = 0;
volatile std::sig_atomic_t Daemon::reload_requested = 0;

namespace {

// The numeric form of a server's address, recorded in the state file so that
// a client that wrote "localhost:11211" finds the slot of "127.0.0.1:11211".
// Only numeric addresses and localhost: a DNS query here could stall start-up.
std::string numeric_address(const ServerAddress& server) {
    if (server.is_unix) return server.text;
    const std::string host = server.host == "localhost" ? "127.0.0.1" : server.host;
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return "";
    char text[INET6_ADDRSTRLEN] = {};
    const bool v6 = found->ai_family == AF_INET6;
    const void* raw = v6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr)
                         : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr);
    inet_ntop(found->ai_family, raw, text, sizeof text);
    freeaddrinfo(found);
    return v6 ? fmt::format("[{}]:{}", text, server.port) : fmt::format("{}:{}", text, server.port);
}

bool same_servers(const Config& a, const Config& b) {
    if (a.servers.size() != b.servers.size()) return false;
    for (size_t i = 0; i < a.servers.size(); ++i)
        if (a.servers[i].text != b.servers[i].text || a.servers[i].weight != b.servers[i].weight) return false;
    return true;
}

}  // namespace

Daemon::Daemon(Config config) : config_(std::move(config)) {}

std::vector<state::ServerDynamic> Daemon::views() const {
    std::vector<state::ServerDynamic> out;
    out.reserve(health_.size());
    for (const ServerHealth& h : health_) out.push_back(h.view());
    return out;
}

std::string Daemon::apply(std::vector<ServerHealth> kept) {
    health_ = std::move(kept);
    prober_ = std::make_unique<Prober>(config_.servers, config_.probe_timeout);
    std::vector<std::string> resolved;
    for (const ServerAddress& server : config_.servers) resolved.push_back(numeric_address(server));
    return writer_.publish(config_, resolved, views());
}

std::string Daemon::start() {
    if (std::string why = writer_.lock(config_.state_file); !why.empty()) return why;
    const HealthPolicy policy = HealthPolicy::from(config_);
    if (std::string why = apply(std::vector<ServerHealth>(config_.servers.size(), ServerHealth(policy)));
        !why.empty())
        return why;
    log_event("info", "start",
              {{"pid", fmt::format("{}", getpid())},
               {"config", config_.path},
               {"state_file", config_.state_file},
               {"servers", fmt::format("{}", config_.servers.size())}});
    return "";
}

void Daemon::reload() {
    ConfigResult loaded = load_config(config_.path);
    if (!loaded.config) {
        log_event("error", "reload", {{"status", "refused"}, {"error", loaded.error}});
        return;
    }
    Config next = std::move(*loaded.config);
    if (next.state_file != config_.state_file) {
        log_event("error", "reload",
                  {{"status", "refused"}, {"error", "state_file cannot change on reload; restart mcwatchd"}});
        return;
    }
    const HealthPolicy policy = HealthPolicy::from(next);
    const bool layout_changed = !same_servers(config_, next) || next.distribution != config_.distribution ||
                                next.hash != config_.hash || next.probe_timeout != config_.probe_timeout ||
                                next.stale_after != config_.stale_after ||
                                next.recently_down_window != config_.recently_down_window ||
                                next.writeback_ttl != config_.writeback_ttl ||
                                next.probe_interval != config_.probe_interval ||
                                next.flush_on_rejoin != config_.flush_on_rejoin;
    // Servers still configured keep their state and history; new ones start unknown.
    std::map<std::string, ServerHealth> by_address;
    for (size_t i = 0; i < health_.size(); ++i) by_address.emplace(config_.servers[i].text, health_[i]);
    std::vector<ServerHealth> kept;
    for (const ServerAddress& server : next.servers) {
        auto it = by_address.find(server.text);
        kept.push_back(it != by_address.end() ? it->second : ServerHealth(policy));
        kept.back().set_policy(policy);
    }
    config_ = std::move(next);
    if (!layout_changed) {
        health_ = std::move(kept);
        log_event("info", "reload", {{"status", "ok"}, {"servers", fmt::format("{}", config_.servers.size())}});
        return;
    }
    if (std::string why = apply(std::move(kept)); !why.empty()) {
        log_event("error", "reload", {{"status", "failed"}, {"error", why}});
        return;
    }
    log_event("info", "reload",
              {{"status", "ok"}, {"servers", fmt::format("{}", config_.servers.size())}, {"republished", "yes"}});
}

void Daemon::round() {
    std::vector<bool> flush_first;
    for (const ServerHealth& h : health_) flush_first.push_back(h.wants_flush());
    const std::vector<ProbeResult> results = prober_->run_round(flush_first);
    const int64_t now = unix_ms();
    bool routing_changed = false;
    for (size_t i = 0; i < health_.size(); ++i) {
        const std::string& server = config_.servers[i].text;
        const ProbeResult& result = results[i];
        const uint32_t failures_before = health_[i].view().consecutive_failures;
        auto events = health_[i].on_probe(result, now, routing_changed);
        for (auto& e : health_[i].tick(now, routing_changed)) events.push_back(std::move(e));
        // Every failure is worth a line (what the server answered); repeats of
        // the same failure only when the state changes, to keep logs calm.
        if (!result.ok && failures_before == 0)
            log_event("warning", "probe_failed", {{"server", server}, {"reason", result.error}});
        for (const HealthEvent& e : events) {
            const char* level = e.what == "down" ? "error" : "info";
            const char* key = e.what == "down" ? "reason" : "detail";
            log_event(level, e.what, {{"server", server}, {key, e.detail}});
        }
    }
    writer_.update(views(), routing_changed);
}

int Daemon::run() {
    using Clock = std::chrono::steady_clock;
    while (!stop_requested) {
        const auto started = Clock::now();
        if (reload_requested) {
            reload_requested = 0;
            reload();
        }
        round();
        const auto next = started + config_.probe_interval;
        // Short naps so that a signal is acted on promptly.
        while (!stop_requested && !reload_requested && Clock::now() < next)
            std::this_thread::sleep_for(std::min<Clock::duration>(next - Clock::now(), std::chrono::milliseconds(50)));
    }
    log_event("info", "stop", {{"pid", fmt::format("{}", getpid())}});
    return 0;
}

}  // namespace mcwatch
