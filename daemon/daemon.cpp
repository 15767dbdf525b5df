#include "daemon/daemon.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "libshim/clock.hpp"
#include "daemon/log.hpp"
#include "daemon/privileges.hpp"

namespace mcwatch {

volatile std::sig_atomic_t Daemon::stop_requested = 0;
volatile std::sig_atomic_t Daemon::reload_requested = 0;

namespace {

using Clock = std::chrono::steady_clock;

bool same_servers(const Config& a, const Config& b) {
    if (a.servers.size() != b.servers.size()) return false;
    for (size_t i = 0; i < a.servers.size(); ++i)
        if (a.servers[i].text != b.servers[i].text || a.servers[i].weight != b.servers[i].weight) return false;
    return true;
}

// Whether the static part of the state file (what readers copy once per
// mapping) would differ: then a new file must be published.
bool same_file_settings(const Config& a, const Config& b) {
    return same_servers(a, b) && a.distribution == b.distribution && a.hash == b.hash &&
           a.probe_interval == b.probe_interval && a.stale_after == b.stale_after &&
           a.recently_down_window == b.recently_down_window && a.writeback_ttl == b.writeback_ttl &&
           a.flush_on_rejoin == b.flush_on_rejoin;
}

std::vector<std::string> numeric_addresses(const Config& config) {
    std::vector<std::string> resolved;
    for (const ServerAddress& server : config.servers) resolved.push_back(server.numeric());
    return resolved;
}

}  // namespace

Daemon::Daemon(Config config)
    : config_(std::move(config)), start_unix_ms_(unix_ms()), start_monotonic_ns_(monotonic_ns()) {}

int64_t Daemon::now_ms() const { return start_unix_ms_ + int64_t((monotonic_ns() - start_monotonic_ns_) / 1'000'000); }

void Daemon::carry_over(const PublishedFile& previous) {
    const int64_t now = now_ms();
    size_t carried = 0;
    for (size_t i = 0; i < health_.size(); ++i) {
        std::optional<size_t> slot;
        for (size_t s = 0; s < previous.addresses.size() && !slot; ++s)
            if (previous.addresses[s] == config_.servers[i].text) slot = s;
        // "localhost:11211" then, "127.0.0.1:11211" now: the same server.
        for (size_t s = 0; s < previous.addresses.size() && !slot && !resolved_[i].empty(); ++s)
            if (previous.resolved[s] == resolved_[i] || previous.addresses[s] == resolved_[i]) slot = s;
        if (!slot) continue;
        const state::ServerDynamic& published = previous.servers[*slot];
        // Both times are the predecessor's, so its clock's steps cancel out.
        const int64_t window_left = published.recently_down_until_unix_ms - previous.heartbeat_unix_ms;
        health_[i].carry_over(published, window_left, now);
        ++carried;
    }
    log_event("info", "carry_over",
              {{"servers", fmt::format("{}", carried)},
               {"of", fmt::format("{}", health_.size())},
               {"previous_servers", fmt::format("{}", previous.addresses.size())},
               {"previous_generation", fmt::format("{}", previous.generation)}});
}

Daemon::~Daemon() = default;

std::vector<state::ServerDynamic> Daemon::views() const {
    std::vector<state::ServerDynamic> out;
    out.reserve(health_.size());
    for (const ServerHealth& h : health_) out.push_back(h.view());
    return out;
}

std::unique_ptr<Prober> Daemon::make_prober(const Config& config) {
    auto prober = std::make_unique<Prober>(config.servers, config.probe_timeout);
    // Control requests and scrapes are served while a round waits for slow servers.
    prober->set_side_channel(loop_.fd(), [this] { serve(0); });
    return prober;
}

std::unique_ptr<MetricsServer> Daemon::open_metrics(const Config& config, std::string& error) {
    if (config.metrics_listen.empty()) return nullptr;
    auto metrics = std::make_unique<MetricsServer>(loop_, [this] { return render_metrics_now(); });
    error = metrics->open(config.metrics_host, config.metrics_port);
    return error.empty() ? std::move(metrics) : nullptr;
}

std::string Daemon::start() {
    if (std::string why = check_can_switch(config_); !why.empty()) return why;
    // As root (when started so): the directory, lock, socket and port are
    // prepared for the user the daemon becomes below.
    const RunAs owner = run_as(config_);
    if (std::string why = writer_.lock(config_.state_file, owner); !why.empty()) return why;
    const std::string control_directory = parent_directory(config_.control_socket);
    if (control_directory != parent_directory(config_.state_file))
        if (std::string why = prepare_runtime_directory(control_directory, owner); !why.empty()) return why;
    control_ = std::make_unique<ControlServer>(
        loop_,
        [this](const ControlRequest& request, ControlServer::Ticket ticket) { return on_control(request, ticket); });
    ControlAccess access{owner.uid, std::nullopt, config_.admin_group};
    if (!config_.admin_group.empty()) access.admin_gid = config_.admin_gid;
    const uint32_t socket_group = config_.admin_group.empty() ? owner.gid : config_.admin_gid;
    if (std::string why = control_->open(config_.control_socket, owner, socket_group, access); !why.empty()) return why;
    std::string why;
    metrics_ = open_metrics(config_, why);
    if (!why.empty()) return why;
    if (why = drop_privileges(config_); !why.empty()) return why;

    try {
        prober_ = make_prober(config_);
    } catch (const std::exception& e) {
        return fmt::format("cannot start probing: {}", e.what());
    }
    health_.assign(config_.servers.size(), ServerHealth(HealthPolicy::from(config_)));
    resolved_ = numeric_addresses(config_);
    // A restart (an upgrade, a crash) must change nothing for clients: what
    // the file being replaced says about each server carries over.
    std::string unreadable;
    if (const std::optional<PublishedFile> previous = writer_.read_predecessor(unreadable))
        carry_over(*previous);
    else if (!unreadable.empty())
        log_event("warning", "carry_over", {{"status", "skipped"}, {"reason", unreadable}});
    if (why = writer_.publish(config_, resolved_, views()); !why.empty()) return why;
    log_event("info", "start",
              {{"pid", fmt::format("{}", getpid())},
               {"uid", fmt::format("{}", geteuid())},
               {"config", config_.path},
               {"state_file", config_.state_file},
               {"control_socket", config_.control_socket},
               {"metrics", config_.metrics_listen.empty() ? "off" : config_.metrics_listen},
               {"servers", fmt::format("{}", config_.servers.size())}});
    return "";
}

Daemon::ReloadOutcome Daemon::reload() {
    const auto refuse = [this](const std::string& why) {
        ++reloads_refused_;
        log_event("error", "reload", {{"status", "refused"}, {"error", why}});
        return ReloadOutcome{false, why};
    };
    ConfigResult loaded = load_config(config_.path);
    if (!loaded.config) return refuse(loaded.error);
    Config next = std::move(*loaded.config);
    // What was set up as root, or what readers and mcctl find by path,
    // stays as the daemon started with.
    const std::pair<const char*, std::pair<std::string, std::string>> fixed[] = {
        {"state_file", {config_.state_file, next.state_file}},
        {"control_socket", {config_.control_socket, next.control_socket}},
        {"user", {config_.user, next.user}},
        {"admin_group", {config_.admin_group, next.admin_group}},
    };
    for (const auto& [key, values] : fixed)
        if (values.first != values.second)
            return refuse(fmt::format("{}: {} cannot change on reload ('{}' -> '{}'); restart mcwatchd", config_.path,
                                      key, values.first, values.second));

    if (std::string why = ensure_descriptor_limit(next.servers.size()); !why.empty())
        return refuse(fmt::format("{}: {}", config_.path, why));

    std::unique_ptr<MetricsServer> metrics;
    const bool metrics_changed = next.metrics_listen != config_.metrics_listen;
    if (metrics_changed) {
        std::string why;
        metrics = open_metrics(next, why);
        if (!why.empty()) return refuse(fmt::format("{}: {}", config_.path, why));
    }

    // Servers still configured keep their state and history (and any
    // operator override); one a reload removed earlier comes back as it
    // left; new ones start unknown.
    const HealthPolicy policy = HealthPolicy::from(next);
    std::map<std::string, size_t> old_index;
    for (size_t i = 0; i < config_.servers.size(); ++i) old_index.emplace(config_.servers[i].text, i);
    std::vector<ServerHealth> kept;
    size_t added = 0;
    for (const ServerAddress& server : next.servers) {
        const auto it = old_index.find(server.text);
        const auto gone = departed_.find(server.text);
        if (it == old_index.end()) ++added;
        kept.push_back(it != old_index.end()     ? health_[it->second]
                       : gone != departed_.end() ? gone->second
                                                 : ServerHealth(policy));
        kept.back().set_policy(policy);
    }
    const size_t removed = config_.servers.size() - (next.servers.size() - added);

    std::unique_ptr<Prober> prober;
    if (!same_servers(config_, next) || next.probe_timeout != config_.probe_timeout) {
        try {
            prober = make_prober(next);
        } catch (const std::exception& e) {
            return refuse(fmt::format("cannot start probing: {}", e.what()));
        }
    }
    std::vector<std::string> resolved = numeric_addresses(next);
    const bool republish = !same_file_settings(config_, next);
    if (republish) {
        std::vector<state::ServerDynamic> kept_views;
        for (const ServerHealth& h : kept) kept_views.push_back(h.view());
        // On failure the writer keeps publishing the old file, for the old config.
        if (std::string why = writer_.publish(next, resolved, kept_views); !why.empty())
            return refuse(fmt::format("cannot publish a new state file: {}", why));
    }

    for (const ServerAddress& server : next.servers) departed_.erase(server.text);
    for (size_t i = 0; i < config_.servers.size(); ++i)
        if (std::none_of(next.servers.begin(), next.servers.end(),
                         [&](const ServerAddress& s) { return s.text == config_.servers[i].text; }))
            departed_.insert_or_assign(config_.servers[i].text, health_[i]);
    while (departed_.size() > state::kMaxServers) departed_.erase(departed_.begin());
    config_ = std::move(next);
    health_ = std::move(kept);
    resolved_ = std::move(resolved);
    if (prober) prober_ = std::move(prober);
    if (metrics_changed) metrics_ = std::move(metrics);
    ++reloads_ok_;
    if (metrics_) metrics_->content_changed();
    // A flush asked for a server that is gone cannot happen.
    std::erase_if(pending_flushes_, [this](const Deferred& d) {
        if (find_server(d.server)) return false;
        control_->reply(d.ticket, fmt::format("error {}: removed from the configuration by a reload", d.server));
        return true;
    });
    log_event("info", "reload",
              {{"status", "ok"},
               {"servers", fmt::format("{}", config_.servers.size())},
               {"added", fmt::format("{}", added)},
               {"removed", fmt::format("{}", removed)},
               {"republished", republish ? "yes" : "no"}});
    return {true, fmt::format("reloaded {}: {} servers ({} added, {} removed){}", config_.path, config_.servers.size(),
                              added, removed, republish ? ", new state file published" : "")};
}

void Daemon::log_health_events(const std::string& server, const std::vector<HealthEvent>& events) const {
    for (const HealthEvent& e : events) {
        const bool bad = e.what == "down" || e.what == "rejoin_blocked";
        const char* level = bad ? "error" : e.what == "probe_error_reply" ? "warning" : "info";
        const char* key = e.what == "down" || e.what == "probe_error_reply" ? "reason" : "detail";
        log_event(level, e.what, {{"server", server}, {key, e.detail}});
    }
}

void Daemon::round() {
    std::vector<bool> flush_first;
    std::vector<bool> operator_flush;
    for (ServerHealth& h : health_) {
        operator_flush.push_back(h.take_operator_flush());
        flush_first.push_back(h.wants_flush() || operator_flush.back());
    }
    // Those who asked for these flushes hear after this round; requests that
    // arrive during it wait for the next one.
    std::vector<std::pair<Deferred, size_t>> flush_waiters;
    std::erase_if(pending_flushes_, [&](const Deferred& d) {
        const auto index = find_server(d.server);
        if (!index || !operator_flush[*index]) return false;
        flush_waiters.emplace_back(d, *index);
        return true;
    });

    if (metrics_) metrics_->pause_rendering();
    const std::vector<ProbeResult> results = prober_->run_round(flush_first);
    const int64_t now = now_ms();
    bool routing_changed = false;
    for (size_t i = 0; i < health_.size(); ++i) {
        const std::string& server = config_.servers[i].text;
        const ProbeResult& result = results[i];
        const uint32_t failures_before = health_[i].view().consecutive_failures;
        auto events = health_[i].on_probe(result, now, routing_changed);
        for (auto& e : health_[i].tick(now, routing_changed)) events.push_back(std::move(e));
        // Every failure is worth a line (what the server answered); repeats of
        // the same failure only when the state changes, to keep logs calm.
        if (!result.ok && !result.answered_error && failures_before == 0)
            log_event("warning", "probe_failed", {{"server", server}, {"reason", result.error}});
        log_health_events(server, events);
    }
    writer_.update(views(), routing_changed);
    if (metrics_) {
        metrics_->content_changed();
        metrics_->resume_rendering();
    }

    for (const auto& [waiter, index] : flush_waiters) {
        const ProbeResult& result = results[index];
        control_->reply(waiter.ticket, result.flushed ? fmt::format("ok {} flushed", waiter.server)
                                                      : fmt::format("error {}: flush_all failed: {}", waiter.server,
                                                                    !result.flush_refused.empty() ? result.flush_refused
                                                                    : result.error.empty()        ? "no answer"
                                                                                                  : result.error));
    }
}

void Daemon::serve(int timeout_ms) {
    loop_.run_once(timeout_ms);
    const auto now = Clock::now();
    if (control_) control_->expire(now);
    if (metrics_) metrics_->expire(now);
}

int Daemon::run() {
    while (!stop_requested) {
        const auto started = Clock::now();
        if (reload_requested) {
            reload_requested = 0;
            const ReloadOutcome outcome = reload();
            for (const Deferred& d : pending_reloads_)
                control_->reply(d.ticket, (outcome.ok ? "ok " : "error ") + outcome.message);
            pending_reloads_.clear();
        }
        round();
        const auto next = started + config_.probe_interval;
        // Bounded waits: a signal that lands just before epoll_wait is acted
        // on within 100ms.
        for (auto now = Clock::now(); !stop_requested && !reload_requested && now < next; now = Clock::now())
            serve(int(std::min<int64_t>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count(), 100)));
    }
    log_event("info", "stop", {{"pid", fmt::format("{}", getpid())}});
    return 0;
}

}  // namespace mcwatch
