// The move after a membership change (docs/DESIGN.md, "Membership
// changes"): the daemon's side of it. The movers are DrainMovers with the
// membership purpose; this file decides their sources, shares drain_rate
// among them, stops them, and publishes their sum in the state file's header.
#include <fmt/format.h>

#include <algorithm>

#include "daemon/daemon.hpp"
#include "daemon/log.hpp"

namespace mcwatch {

void Daemon::start_membership_move(const ServerList& previous) {
    stop_membership_move("a later membership change");
    for (const auto& mover : membership_movers_) mover->wait();
    watch_membership_move();  // logs the end of the move it replaces
    membership_movers_.clear();
    membership_move_carried_ = {};
    membership_move_ended_unix_ms_ = 0;
    membership_move_late_logged_ = false;
    std::vector<size_t> sources;
    const std::vector<state::ServerDynamic> published = views();
    for (size_t i = 0; i < servers_.size(); ++i) {
        const bool listed_before = lists(previous, ListedServer{servers_[i].address.text, servers_[i].resolved});
        // A draining server's keys are its drain's; a dead one's are gone.
        // One never probed yet is routed as live: it may hold keys.
        const auto state = state::ServerState(published[i].state);
        if (listed_before && (state == state::ServerState::live || state == state::ServerState::unknown))
            sources.push_back(i);
    }
    membership_move_started_unix_ms_ = now_ms();
    if (sources.empty()) {
        membership_move_ended_unix_ms_ = membership_move_started_unix_ms_;
        membership_move_carried_ = {uint32_t(state::DrainMove::done), 0, 0, 0, 0, membership_move_started_unix_ms_,
                                    membership_move_ended_unix_ms_};
    }
    // The sources share drain_rate: the servers they write to are shared too.
    const auto rate = uint32_t(std::max<size_t>(config_.drain_rate / std::max<size_t>(sources.size(), 1), 1));
    log_event("info", "membership_move_start",
              {{"sources", fmt::format("{}", sources.size())}, {"rate_per_source", fmt::format("{}", rate)}});
    for (size_t source : sources)
        membership_movers_.push_back(DrainMover::start(config_, source, MovePurpose::membership, rate));
    writer_.set_membership_move(membership_move());
}

void Daemon::stop_membership_move(const std::string& why) {
    for (const auto& mover : membership_movers_) mover->stop(why);
}

state::MembershipMove Daemon::membership_move() const {
    if (membership_movers_.empty()) return membership_move_carried_;
    state::MembershipMove move;
    move.sources = uint32_t(membership_movers_.size());
    move.started_unix_ms = membership_move_started_unix_ms_;
    move.ended_unix_ms = membership_move_ended_unix_ms_;
    bool any_running = false, any_listing = false, any_failed = false, any_stopped = false;
    for (const auto& mover : membership_movers_) {
        const DrainMoveProgress p = mover->progress();
        move.moved += p.moved;
        move.skipped += p.skipped;
        move.remaining += p.remaining();
        any_running |= p.running();
        any_listing |= p.phase == state::DrainMove::listing;
        any_failed |= p.phase == state::DrainMove::failed;
        any_stopped |= p.phase == state::DrainMove::stopped;
    }
    move.state = uint32_t(any_listing   ? state::DrainMove::listing
                          : any_running ? state::DrainMove::moving
                          : any_failed  ? state::DrainMove::failed
                          : any_stopped ? state::DrainMove::stopped
                                        : state::DrainMove::done);
    return move;
}

bool Daemon::membership_move_done() const { return membership_move().state == uint32_t(state::DrainMove::done); }

bool Daemon::watch_membership_move() {
    for (const auto& mover : membership_movers_) {
        const ServerRecord* server = find_server(mover->server());
        if (!server)
            mover->stop("a reload removed the server");
        else if (server->health.view().state == uint32_t(state::ServerState::dead))
            mover->stop("the server is dead");
        else if (server->health.override_kind() != Override::none)
            mover->stop("an operator took the server out (a drain moves its keys)");
    }
    state::MembershipMove move = membership_move();
    bool ended = false;
    if (!membership_movers_.empty() && !state::drain_move_running(move.state) && membership_move_ended_unix_ms_ == 0) {
        membership_move_ended_unix_ms_ = move.ended_unix_ms = now_ms();
        ended = true;
        log_event(move.state == uint32_t(state::DrainMove::done) ? "info" : "warning", "membership_move_end",
                  {{"outcome", state::drain_move_name(move.state)},
                   {"sources", fmt::format("{}", move.sources)},
                   {"moved", fmt::format("{}", move.moved)},
                   {"skipped", fmt::format("{}", move.skipped)},
                   {"remaining", fmt::format("{}", move.remaining)},
                   {"seconds", fmt::format("{:.1f}", double(move.ended_unix_ms - move.started_unix_ms) / 1000)}});
    }
    // The fallback covers unmoved keys only while the window lasts.
    if (state::drain_move_running(move.state) && !membership_move_late_logged_ && !membership_.empty() &&
        now_ms() >= membership_.changed_unix_ms + config_.recently_down_window.count()) {
        membership_move_late_logged_ = true;
        log_event("warning", "membership_move_late",
                  {{"moved", fmt::format("{}", move.moved)},
                   {"remaining", fmt::format("{}", move.remaining)},
                   {"reason",
                    "the move after the membership change outlasts recently_down_window: keys it has not "
                    "moved yet are misses until it does (raise drain_rate or the window)"}});
    }
    writer_.set_membership_move(move);
    return ended;
}

}  // namespace mcwatch
