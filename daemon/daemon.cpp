#include "daemon/daemon.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "libshim/clock.hpp"
#include "common/errno_text.hpp"
#include "common/rfc3339.hpp"
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
           a.flush_on_rejoin == b.flush_on_rejoin && a.managed_list == b.managed_list && a.replicas == b.replicas &&
           a.replica_max_ttl == b.replica_max_ttl;
}

}  // namespace

ServerRecord::ServerRecord(ServerAddress address, ServerHealth health)
    : address(std::move(address)), resolved(this->address.numeric()), health(std::move(health)) {}

Daemon::Daemon(Config config)
    : config_(std::move(config)), start_unix_ms_(unix_ms()), start_monotonic_ns_(monotonic_ns()) {}

int64_t Daemon::now_ms() const { return start_unix_ms_ + int64_t((monotonic_ns() - start_monotonic_ns_) / 1'000'000); }

void Daemon::carry_over(const PublishedFile& previous) {
    const int64_t now = now_ms();
    size_t carried = 0;
    for (ServerRecord& server : servers_) {
        std::optional<size_t> slot;
        for (size_t s = 0; s < previous.addresses.size() && !slot; ++s)
            if (previous.addresses[s] == server.address.text) slot = s;
        // "localhost:11211" then, "127.0.0.1:11211" now: the same server.
        for (size_t s = 0; s < previous.addresses.size() && !slot && !server.resolved.empty(); ++s)
            if (previous.resolved[s] == server.resolved || previous.addresses[s] == server.resolved) slot = s;
        if (!slot) continue;
        const state::ServerDynamic& published = previous.servers[*slot];
        // Both times are the predecessor's, so its clock's steps cancel out.
        const int64_t window_left = published.recently_down_until_unix_ms - previous.heartbeat_unix_ms;
        server.health.carry_over(published, window_left, now);
        ++carried;
    }
    log_event("info", "carry_over",
              {{"servers", fmt::format("{}", carried)},
               {"of", fmt::format("{}", servers_.size())},
               {"previous_servers", fmt::format("{}", previous.addresses.size())},
               {"previous_generation", fmt::format("{}", previous.generation)}});
}

Daemon::~Daemon() = default;

std::vector<state::ServerDynamic> Daemon::views() const {
    std::vector<state::ServerDynamic> out;
    out.reserve(servers_.size());
    for (const ServerRecord& server : servers_) {
        out.push_back(server.health.view());
        const auto mover = movers_.find(server.address.text);
        publish_drain_move(mover != movers_.end() ? mover->second.get() : nullptr, out.back());
    }
    if (fleet_) apply_fleet_verdicts(out);
    return out;
}

std::vector<std::string> Daemon::resolved_addresses() const {
    std::vector<std::string> out;
    out.reserve(servers_.size());
    for (const ServerRecord& server : servers_) out.push_back(server.resolved);
    return out;
}

Result<std::unique_ptr<Prober>> Daemon::make_prober(const Config& config) {
    auto prober = Prober::create(config.servers, config.probe_timeout, config.stats_interval);
    if (!prober) return failure(fmt::format("cannot start probing: {}", prober.error().message));
    // Control requests and scrapes are served while a round waits for slow servers.
    (*prober)->set_side_channel(loop_.fd(), [this] { serve(0); });
    return prober;
}

Result<std::unique_ptr<MetricsServer>> Daemon::open_metrics(const Config& config) {
    if (config.metrics_listen.empty()) return nullptr;
    return MetricsServer::open(
        loop_, [this] { return render_metrics_now(); }, config.metrics_host, config.metrics_port);
}

Result<> Daemon::start() {
    if (Result<> ready = loop_.ready(); !ready) return ready;
    if (Result<> can = check_can_switch(config_); !can) return can;
    // As root (when started so): the directory, lock, socket and port are
    // prepared for the user the daemon becomes below.
    const RunAs owner = run_as(config_);
    if (Result<> locked = writer_.lock(config_.state_file, owner); !locked) return locked;
    const std::string control_directory = parent_directory(config_.control_socket);
    if (control_directory != parent_directory(config_.state_file))
        if (Result<> ready = prepare_runtime_directory(control_directory, owner); !ready) return ready;
    ControlAccess access{owner.uid, std::nullopt, config_.admin_group};
    if (!config_.admin_group.empty()) access.admin_gid = config_.admin_gid;
    const uint32_t socket_group = config_.admin_group.empty() ? owner.gid : config_.admin_gid;
    Result<std::unique_ptr<ControlServer>> control = ControlServer::open(
        loop_,
        [this](const ControlRequest& request, ControlServer::Ticket ticket) { return on_control(request, ticket); },
        config_.control_socket, owner, socket_group, access);
    if (!control) return tl::unexpected(control.error());
    control_ = std::move(*control);
    Result<std::unique_ptr<MetricsServer>> metrics = open_metrics(config_);
    if (!metrics) return tl::unexpected(metrics.error());
    metrics_ = std::move(*metrics);
    if (config_.hint_socket) {
        auto hints = HintServer::open(loop_, parent_directory(config_.state_file) + "/hints",
                                      [this](size_t index) { prober_->probe_now(index); });
        if (!hints) return tl::unexpected(hints.error());
        hints_ = std::move(*hints);
    }
    if (Result<> dropped = drop_privileges(config_); !dropped) return dropped;

    Result<std::unique_ptr<Prober>> prober = make_prober(config_);
    if (!prober) return tl::unexpected(prober.error());
    prober_ = std::move(*prober);
    for (const ServerAddress& address : config_.servers)
        servers_.emplace_back(address, ServerHealth(HealthPolicy::from(config_)));
    if (hints_) hints_->set_servers(server_addresses());
    if (config_.fleet.enabled()) {
        const auto poll = std::clamp<Millis>(std::min<Millis>(config_.probe_interval, config_.fleet.lease / 4),
                                             Millis(50), Millis(1000));
        auto fleet = Fleet::start(config_.fleet, config_.flush_on_rejoin, poll);
        if (!fleet) return tl::unexpected(fleet.error());
        fleet_ = std::move(*fleet);
        fleet_started_ = Clock::now();
        fleet_etcd_since_unix_ms_ = unix_ms();  // not answering yet: since the start
        if (!loop_.add(fleet_->wakeup_fd(), EPOLLIN, [this](uint32_t) { on_fleet_view(); }))
            return failure(fmt::format("fleet: epoll: {}", errno_text(errno)));
        log_event("info", "fleet",
                  {{"name", config_.fleet.name},
                   {"host", config_.fleet.host},
                   {"etcd", config_.fleet.etcd.front()},
                   {"verdict", fleet_rule_name(config_.fleet.verdict)}});
    }
    // A restart (an upgrade, a crash) must change nothing for clients: what
    // the file being replaced says about each server carries over.
    const Result<std::optional<PublishedFile>> previous = writer_.read_predecessor();
    if (!previous)
        log_event("warning", "carry_over", {{"status", "skipped"}, {"reason", previous.error().message}});
    else if (*previous)
        carry_over(**previous);
    // The file is the daemon's memory: a list edited while it was stopped is
    // a membership change like a reload's; else a change within its window
    // goes on counting.
    bool resume_move = false;
    if (previous && *previous) {
        const PublishedFile& before = **previous;
        const ServerList mine = server_list(config_);
        if (placement_changes(before.server_list(), mine)) {
            // Too late to refuse a second change within the first's window
            // (clients wait for a fresh file): say what it loses, unless the
            // first's move had moved every key.
            if (const std::string pending =
                    change_in_effect(before.membership, before.server_list(), config_.recently_down_window, now_ms());
                !pending.empty() && before.membership_move.state != uint32_t(state::DrainMove::done))
                log_event("warning", "start", {{"status", "change_within_window"}, {"reason", pending}});
            membership_ = {before.server_list(), now_ms()};
            log_membership_change(mine, "start");
            // Too late to refuse: the daemon must publish. Say what is lost.
            std::vector<RemovedServer> removed;
            for (const std::string& address : servers_missing_from(before.server_list(), mine)) {
                const size_t slot = size_t(std::find(before.addresses.begin(), before.addresses.end(), address) -
                                           before.addresses.begin());
                const state::ServerDynamic& last = before.servers[slot];
                removed.push_back(
                    {address, last.state, last.curr_items,
                     (last.flags & state::kFlagOperatorDrain) && last.drain_move == uint32_t(state::DrainMove::done)});
            }
            if (const std::string undrained = undrained_removal(removed); !undrained.empty())
                log_event("warning", "start", {{"status", "removed_undrained"}, {"reason", undrained}});
        } else {
            // The same list: the change goes on counting, and a move its
            // predecessor was running is run again (below, once the file is
            // published), window or not: the keys it had not reached are
            // where no client looks.
            resume_move = state::drain_move_running(before.membership_move.state) && !before.membership.empty();
            if (resume_move || membership_counts(before.membership, config_.recently_down_window, now_ms())) {
                membership_ = before.membership;
                membership_move_carried_ = before.membership_move;
                writer_.set_membership_move(membership_move_carried_);
            }
        }
    }
    // The fleet's overrides before the first file: no fresh host shows a drained server live.
    if (fleet_ && fleet_->wait_first_view()) on_fleet_view();
    if (Result<> published = writer_.publish(config_, resolved_addresses(), views(), membership_); !published)
        return published;
    // Keys the change moved are moved by the daemon too, from the new file's placement.
    if (previous && *previous && placement_changes((*previous)->server_list(), server_list(config_))) {
        start_membership_move(membership_.previous);
    } else if (resume_move) {
        const state::MembershipMove& cut = membership_move_carried_;
        log_event("info", "membership_move_resume",
                  {{"change", rfc3339_utc(membership_.changed_unix_ms)},
                   {"moved_before", fmt::format("{}", cut.moved)},
                   {"remaining_before", fmt::format("{}", cut.remaining)},
                   {"reason", "the previous mcwatchd stopped while the move after this change ran"}});
        start_membership_move(membership_.previous);
    }
    log_event("info", "start",
              {{"pid", fmt::format("{}", getpid())},
               {"uid", fmt::format("{}", geteuid())},
               {"config", config_.path},
               {"state_file", config_.state_file},
               {"control_socket", config_.control_socket},
               {"metrics", config_.metrics_listen.empty() ? "off" : config_.metrics_listen},
               {"servers", fmt::format("{}", servers_.size())}});
    return {};
}

Result<std::string> Daemon::reload(bool force) {
    const auto refuse = [this](const std::string& why) {
        ++reloads_refused_;
        log_event("error", "reload", {{"status", "refused"}, {"error", why}});
        return failure(why);
    };
    auto loaded = load_config(config_.path);
    if (!loaded) return refuse(loaded.error().message);
    Config next = std::move(*loaded);
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

    const std::string undrained = undrained_removal(removed_servers(next));
    if (!undrained.empty() && !force)
        return refuse(
            fmt::format("refused: {}; `mcctl reload --force` removes it anyway (its keys become misses)", undrained));

    // One membership change at a time: while the latest counts, its previous
    // list is the only place clients look for the keys it moved, and after
    // its window the keys its move has not reached yet are where none look.
    std::string pending_change;
    if (placement_changes(server_list(config_), server_list(next)) && !membership_move_done()) {
        pending_change = change_in_effect(membership_, server_list(config_), config_.recently_down_window, now_ms());
        if (pending_change.empty()) pending_change = move_in_progress(membership_, membership_move());
    }
    if (!pending_change.empty() && !force)
        return refuse(
            fmt::format("refused: {}; `mcctl reload --force` changes it anyway (keys the first change "
                        "moved that were not read since become misses)",
                        pending_change));

    const FleetConfig &was = config_.fleet, &will = next.fleet;
    if (was.etcd != will.etcd || was.name != will.name || was.host != will.host || was.lease != will.lease ||
        was.verdict != will.verdict || was.fallback_after != will.fallback_after)
        return refuse(fmt::format("{}: [fleet] cannot change on reload; restart mcwatchd", config_.path));

    if (Result<> enough = ensure_descriptor_limit(next.servers.size()); !enough)
        return refuse(fmt::format("{}: {}", config_.path, enough.error().message));

    std::unique_ptr<MetricsServer> metrics;
    const bool metrics_changed = next.metrics_listen != config_.metrics_listen;
    if (metrics_changed) {
        Result<std::unique_ptr<MetricsServer>> opened = open_metrics(next);
        if (!opened) return refuse(fmt::format("{}: {}", config_.path, opened.error().message));
        metrics = std::move(*opened);
    }

    // Servers still configured keep their state and history (and any
    // operator override); one a reload removed earlier comes back as it
    // left; new ones start unknown.
    const HealthPolicy policy = HealthPolicy::from(next);
    std::map<std::string, const ServerRecord*> current;
    for (const ServerRecord& server : servers_) current.emplace(server.address.text, &server);
    std::vector<ServerRecord> kept;
    size_t added = 0;
    for (const ServerAddress& address : next.servers) {
        const auto it = current.find(address.text);
        const auto gone = departed_.find(address.text);
        if (it == current.end()) ++added;
        kept.emplace_back(address, it != current.end()       ? it->second->health
                                   : gone != departed_.end() ? gone->second
                                                             : ServerHealth(policy));
        kept.back().health.set_policy(policy);
    }
    const size_t removed = servers_.size() - (next.servers.size() - added);

    std::unique_ptr<Prober> prober;
    if (!same_servers(config_, next) || next.probe_timeout != config_.probe_timeout ||
        next.stats_interval != config_.stats_interval) {
        auto made = make_prober(next);
        if (!made) return refuse(made.error().message);
        prober = std::move(*made);
    }
    const bool republish = !same_file_settings(config_, next);
    std::vector<std::string> resolved;
    for (const ServerRecord& server : kept) resolved.push_back(server.resolved);
    ServerList current_list = server_list(config_);
    mark_avoided(current_list, views());
    const ServerList next_list = server_list(next);
    const bool membership_changed = placement_changes(current_list, next_list);
    MembershipChange membership =
        membership_counts(membership_, next.recently_down_window, now_ms()) ? membership_ : MembershipChange{};
    if (membership_changed) membership = {current_list, now_ms()};
    if (republish) {
        std::vector<state::ServerDynamic> kept_views;
        for (const ServerRecord& server : kept) kept_views.push_back(server.health.view());
        // On failure the writer keeps publishing the old file, for the old config.
        if (Result<> published = writer_.publish(next, resolved, kept_views, membership); !published)
            return refuse(fmt::format("cannot publish a new state file: {}", published.error().message));
        membership_ = std::move(membership);
    }

    for (const ServerAddress& address : next.servers) departed_.erase(address.text);
    for (const ServerRecord& server : servers_)
        if (std::none_of(next.servers.begin(), next.servers.end(),
                         [&](const ServerAddress& a) { return a.text == server.address.text; }))
            departed_.insert_or_assign(server.address.text, server.health);
    while (departed_.size() > state::kMaxServers) departed_.erase(departed_.begin());
    // A move places keys as the old list did: it ends with a changed list.
    const bool placement_changed =
        !same_servers(config_, next) || next.distribution != config_.distribution || next.hash != config_.hash;
    std::erase_if(movers_, [&](const auto& entry) {
        const bool kept_server = std::any_of(next.servers.begin(), next.servers.end(),
                                             [&](const ServerAddress& a) { return a.text == entry.first; });
        if (placement_changed) entry.second->stop("a reload changed the server list or routing: drain --move again");
        return !kept_server;
    });
    config_ = std::move(next);
    servers_ = std::move(kept);
    if (!undrained.empty()) log_event("warning", "reload", {{"status", "forced"}, {"reason", undrained}});
    if (!pending_change.empty()) log_event("warning", "reload", {{"status", "forced"}, {"reason", pending_change}});
    if (membership_changed) {
        log_membership_change(next_list, "reload");
        start_membership_move(current_list);
    }
    if (prober) prober_ = std::move(prober);
    if (hints_) hints_->set_servers(server_addresses());
    if (metrics_changed) metrics_ = std::move(metrics);
    ++reloads_ok_;
    if (metrics_) metrics_->content_changed();
    // A flush asked for a server that is gone cannot happen.
    std::erase_if(pending_flushes_, [this](const Deferred& d) {
        if (find_server(d.server)) return false;
        control_->reply(d.ticket,
                        ControlReply::error(fmt::format("{}: removed from the configuration by a reload", d.server)));
        return true;
    });
    log_event("info", "reload",
              {{"status", "ok"},
               {"servers", fmt::format("{}", servers_.size())},
               {"added", fmt::format("{}", added)},
               {"removed", fmt::format("{}", removed)},
               {"republished", republish ? "yes" : "no"}});
    return fmt::format("reloaded {}: {} servers ({} added, {} removed){}", config_.path, servers_.size(), added,
                       removed, republish ? ", new state file published" : "");
}

std::vector<RemovedServer> Daemon::removed_servers(const Config& next) const {
    const std::vector<std::string> gone = servers_missing_from(server_list(config_), server_list(next));
    std::vector<RemovedServer> out;
    for (const ServerRecord& server : servers_) {
        if (std::find(gone.begin(), gone.end(), server.address.text) == gone.end()) continue;
        const state::ServerDynamic& view = server.health.view();
        const auto mover = movers_.find(server.address.text);
        const bool moved_all = server.health.override_kind() == Override::drain && mover != movers_.end() &&
                               mover->second->progress().phase == state::DrainMove::done;
        out.push_back({server.address.text, view.state, view.curr_items, moved_all});
    }
    return out;
}

void Daemon::log_membership_change(const ServerList& after, const char* by) const {
    const auto joined = [](const std::vector<std::string>& addresses) {
        return addresses.empty() ? std::string("-") : fmt::format("{}", fmt::join(addresses, ","));
    };
    log_event("info", "membership_change",
              {{"by", by},
               {"added", joined(servers_missing_from(after, membership_.previous))},
               {"removed", joined(servers_missing_from(membership_.previous, after))},
               {"previous_servers", fmt::format("{}", membership_.previous.servers.size())},
               {"previous_until_unix_ms",
                fmt::format("{}", membership_.changed_unix_ms + config_.recently_down_window.count())}});
}

void Daemon::log_health_events(const std::string& server, const std::vector<HealthEvent>& events) const {
    for (const HealthEvent& e : events) {
        const char* level = "info";
        const char* key = "detail";
        switch (e.kind) {
        case HealthEventKind::down:
            level = "error";
            key = "reason";
            break;
        case HealthEventKind::rejoin_blocked: level = "error"; break;
        case HealthEventKind::probe_error_reply:
            level = "warning";
            key = "reason";
            break;
        default: break;
        }
        log_event(level, health_event_name(e.kind), {{"server", server}, {key, e.detail}});
    }
}

void Daemon::round() {
    std::vector<bool> flush_first;
    for (ServerRecord& server : servers_) {
        server.operator_flush = server.health.take_operator_flush();
        flush_first.push_back(server.health.wants_flush() || server.operator_flush);
    }
    // Those who asked for these flushes hear after this round; requests that
    // arrive during it wait for the next one.
    std::vector<std::pair<Deferred, const ServerRecord*>> flush_waiters;
    std::erase_if(pending_flushes_, [&](const Deferred& d) {
        const ServerRecord* server = find_server(d.server);
        if (!server || !server->operator_flush) return false;
        flush_waiters.emplace_back(d, server);
        return true;
    });

    if (metrics_) metrics_->pause_rendering();
    std::vector<ProbeResult> results = prober_->run_round(flush_first);
    // One result per server, in the configuration's order, as the prober was given them.
    for (size_t i = 0; i < servers_.size(); ++i) servers_[i].last_result = std::move(results[i]);
    const int64_t now = now_ms();
    bool routing_changed = false;
    for (ServerRecord& server : servers_) {
        const ProbeResult& result = server.last_result;
        const uint32_t failures_before = server.health.view().consecutive_failures;
        HealthChange change = server.health.on_probe(result, now);
        change.add(server.health.tick(now));
        routing_changed |= change.routing_changed;
        // Every failure is worth a line (what the server answered); repeats of
        // the same failure only when the state changes, to keep logs calm.
        if (!result.ok && !result.answered_error && failures_before == 0)
            log_event("warning", "probe_failed", {{"server", server.address.text}, {"reason", result.error}});
        log_health_events(server.address.text, change.events);
        if (server.health.view().state == uint32_t(state::ServerState::dead))
            stop_mover(server.address.text, "the server is dead");
        else if (server.health.override_kind() != Override::drain)
            stop_mover(server.address.text, "the server is no longer draining");
    }
    if (fleet_) fleet_->observe(fleet_observations());
    watch_membership_move();
    const std::vector<state::ServerDynamic> published = views();
    routing_changed |= states_moved(published);
    writer_.set_fleet(fleet_status());  // after views(): it may have started the fallback
    writer_.update(published, routing_changed);
    if (metrics_) {
        metrics_->content_changed();
        metrics_->resume_rendering();
    }

    for (const auto& [waiter, server] : flush_waiters) {
        const ProbeResult& result = server->last_result;
        control_->reply(waiter.ticket, result.flushed ? ControlReply::ok(fmt::format("{} flushed", waiter.server))
                                                      : ControlReply::error(fmt::format(
                                                            "{}: flush_all failed: {}", waiter.server,
                                                            !result.flush_refused.empty() ? result.flush_refused
                                                            : result.error.empty()        ? "no answer"
                                                                                          : result.error)));
    }
}

void Daemon::serve(int timeout_ms) {
    loop_.run_once(timeout_ms);
    const auto now = Clock::now();
    if (control_) control_->expire(now);
    if (metrics_) metrics_->expire(now);
}

std::vector<std::string> Daemon::server_addresses() const {
    std::vector<std::string> addresses;
    for (const ServerRecord& server : servers_) addresses.push_back(server.address.text);
    return addresses;
}

void Daemon::wait_between_rounds(int timeout_ms) {
    // The prober waits on its own descriptors and on the loop's (the side
    // channel), so that a hint's probe is read as soon as it is answered.
    for (const auto& [index, result] : prober_->wait(Millis(timeout_ms))) apply_hinted_probe(index, result);
    // A move's end is published at once (not routing: no generation bump).
    bool move_ended = false;
    for (const auto& [address, mover] : movers_)
        if (mover->take_end()) {
            move_ended = true;
            end_fleet_move(address, *mover);
        }
    move_ended |= watch_membership_move();
    if (move_ended) {
        writer_.write_servers(views(), false);
        if (metrics_) metrics_->content_changed();
    }
    const auto now = Clock::now();
    if (control_) control_->expire(now);
    if (metrics_) metrics_->expire(now);
}

// A probe out of the round, asked for by a hint: applied and published at
// once. A timeout is probed again at once, back to back, until fail_after
// failures decide (a refused connection has decided already).
void Daemon::apply_hinted_probe(size_t index, const ProbeResult& result) {
    if (index >= servers_.size()) return;
    ServerRecord& server = servers_[index];
    const uint32_t failures_before = server.health.view().consecutive_failures;
    const int64_t now = now_ms();
    HealthChange change = server.health.on_probe(result, now);
    change.add(server.health.tick(now));
    if (!result.ok && !result.answered_error && failures_before == 0)
        log_event("warning", "probe_failed",
                  {{"server", server.address.text}, {"reason", result.error}, {"after", "hint"}});
    log_health_events(server.address.text, change.events);
    const std::vector<state::ServerDynamic> published = views();
    const bool moved = states_moved(published);
    writer_.write_servers(published, change.routing_changed || moved);  // between rounds: no heartbeat
    if (metrics_) metrics_->content_changed();
    const state::ServerDynamic& view = server.health.view();
    if (!result.ok && !result.answered_error && view.state != uint32_t(state::ServerState::dead) &&
        view.consecutive_failures < config_.fail_after)
        prober_->probe_now(index);
}

std::vector<Fleet::LocalServer> Daemon::fleet_observations() const {
    std::vector<Fleet::LocalServer> out;
    out.reserve(servers_.size());
    for (const ServerRecord& server : servers_) {
        FleetObservation observation;
        switch (server.health.probed_state()) {
        case state::ServerState::live:
        case state::ServerState::draining: observation.state = FleetObservation::State::live; break;
        case state::ServerState::dead: observation.state = FleetObservation::State::dead; break;
        default: break;
        }
        const state::ServerDynamic& view = server.health.view();
        observation.since_unix_ms = view.since_unix_ms;
        observation.restarts = view.restarts == state::kUnknown ? 0 : view.restarts;
        if (observation.state == FleetObservation::State::dead) observation.error = server.last_result.error;
        const auto alone = fleet_dead_alone_.find(server.address.text);
        out.push_back({server.address, std::move(observation), alone == fleet_dead_alone_.end() ? 0 : alone->second});
    }
    return out;
}

bool Daemon::fleet_decides() const {
    return fleet_ && fleet_last_answer_ != Clock::time_point{} &&
           Clock::now() - fleet_last_answer_ <= config_.fleet.fallback_after;
}

// The fleet's verdict replaces this host's probes in what clients read; an
// operator's override on this host still wins here (operator commands are
// not fleet-wide yet: docs/DESIGN.md, Known gaps).
void Daemon::apply_fleet_verdicts(std::vector<state::ServerDynamic>& out) const {
    if (!fleet_decides()) {
        // Said before anything this host's probes decide is published.
        const Clock::time_point since = std::max(fleet_last_answer_, fleet_started_);
        if (!fleet_fell_back_ && Clock::now() - since > config_.fleet.fallback_after) {
            fleet_fell_back_ = true;
            log_event("error", "fleet_fallback",
                      {{"status", "started"},
                       {"reason", fleet_view_.error.empty() ? "etcd has not answered" : fleet_view_.error},
                       {"detail", "etcd unreachable longer than fallback_after: this host's probes decide"}});
        }
        // This host's probes decide, but never a rejoin: what they publish
        // dead, and what the fleet's last view held dead, stays dead until
        // the fleet has recorded and flushed its return.
        for (size_t i = 0; i < servers_.size() && i < out.size(); ++i) {
            if (servers_[i].health.override_kind() != Override::none) continue;
            const std::string& address = servers_[i].address.text;
            const auto last = fleet_view_.published.find(address);
            if (out[i].state == uint32_t(state::ServerState::dead) ||
                (last != fleet_view_.published.end() && last->second == FleetVerdict::Kind::dead))
                fleet_dead_alone_.emplace(address, std::max<int64_t>(out[i].since_unix_ms, 1));  // 0 means none
            if (fleet_dead_alone_.count(address)) out[i].state = uint32_t(state::ServerState::dead);
        }
        return;
    }
    for (size_t i = 0; i < servers_.size() && i < out.size(); ++i) {
        if (servers_[i].health.override_kind() != Override::none) continue;
        const std::string& address = servers_[i].address.text;
        if (const auto alone = fleet_dead_alone_.find(address); alone != fleet_dead_alone_.end()) {
            const auto taken = fleet_view_.dead_alone_taken.find(address);
            if (taken == fleet_view_.dead_alone_taken.end() || taken->second != alone->second) {
                out[i].state = uint32_t(state::ServerState::dead);  // until the fleet thread holds it
                continue;
            }
            fleet_dead_alone_.erase(alone);
        }
        const auto it = fleet_view_.published.find(address);
        if (it == fleet_view_.published.end()) continue;
        if (it->second == FleetVerdict::Kind::dead) {
            out[i].state = uint32_t(state::ServerState::dead);
        } else if (it->second == FleetVerdict::Kind::live && out[i].state == uint32_t(state::ServerState::dead)) {
            // A host cut off alone: its clients get errors, and mcctl says why.
            out[i].state = uint32_t(state::ServerState::live);
            out[i].flags |= state::kFlagUnreachableHere;
        }
    }
}

state::FleetStatus Daemon::fleet_status() const {
    state::FleetStatus status;
    if (!fleet_) return status;
    status.flags = state::kFleetConfigured | (fleet_etcd_answers_ ? state::kFleetEtcdAnswers : 0) |
                   (fleet_fell_back_ ? state::kFleetFallback : 0);
    status.etcd_since_unix_ms = fleet_etcd_since_unix_ms_;
    status.last_answer_unix_ms = fleet_view_.last_answer_unix_ms;
    std::snprintf(status.error, sizeof status.error, "%s", fleet_last_error_.c_str());
    return status;
}

bool Daemon::states_moved(const std::vector<state::ServerDynamic>& published) {
    std::vector<uint32_t> states;
    states.reserve(published.size());
    for (const state::ServerDynamic& view : published) states.push_back(view.state);
    const bool moved = states != published_states_;
    published_states_ = std::move(states);
    return moved;
}

void Daemon::on_fleet_view() {
    std::optional<FleetView> view = fleet_->take_view();
    if (!view) return;
    if (view->etcd_answers != fleet_etcd_answers_) fleet_etcd_since_unix_ms_ = unix_ms();
    fleet_etcd_answers_ = view->etcd_answers;
    if (!view->error.empty()) fleet_last_error_ = view->error;
    const bool overridden = apply_fleet_operators(*view);
    if (view->etcd_answers) {
        fleet_last_answer_ = Clock::now();
        if (fleet_fell_back_)
            log_event("warning", "fleet_fallback",
                      {{"status", "ended"}, {"detail", "etcd answers: the fleet decides"}});
        fleet_fell_back_ = false;
        fleet_view_ = std::move(*view);
    } else {
        // The last view stays until fallback_after has passed (views() says when it ends).
        fleet_view_.etcd_answers = false;
        fleet_view_.error = view->error;
    }
    const std::vector<state::ServerDynamic> published = views();
    writer_.set_fleet(fleet_status());
    if (states_moved(published) || overridden) {
        writer_.write_servers(published, true);
        if (metrics_) metrics_->content_changed();
    }
    answer_fleet_operators();
}

int Daemon::run() {
    while (!stop_requested) {
        const auto started = Clock::now();
        if (reload_requested) {
            reload_requested = 0;
            const bool force = std::any_of(pending_reloads_.begin(), pending_reloads_.end(),
                                           [](const Deferred& d) { return d.force; });
            const Result<std::string> reloaded = reload(force);
            for (const Deferred& d : pending_reloads_)
                control_->reply(d.ticket,
                                reloaded ? ControlReply::ok(*reloaded) : ControlReply::error(reloaded.error().message));
            pending_reloads_.clear();
        }
        round();
        const auto next = started + config_.probe_interval;
        // Bounded waits: a signal that lands just before epoll_wait is acted
        // on within 100ms.
        for (auto now = Clock::now(); !stop_requested && !reload_requested && now < next; now = Clock::now())
            wait_between_rounds(
                int(std::min<int64_t>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count(), 100)));
    }
    log_event("info", "stop", {{"pid", fmt::format("{}", getpid())}});
    return 0;
}

}  // namespace mcwatch
