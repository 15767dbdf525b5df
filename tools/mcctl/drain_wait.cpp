#include "tools/mcctl/drain_wait.hpp"

#include <fmt/format.h>

#include <thread>

#include "common/duration.hpp"
#include "libshim/clock.hpp"
#include "libshim/server_address.hpp"
#include "tools/mcctl/drain_move.hpp"
#include "tools/mcctl/snapshot.hpp"
#include "tools/mcctl/status.hpp"

namespace mcwatch {

using state::DrainMove;
using state::ServerDynamic;
using state::ServerState;

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(100);
constexpr int kExitEnded = 1;

// The slot of the server the operator named: its configured address, or
// another spelling of its numeric address (as the daemon's commands accept).
std::optional<uint32_t> find_slot(const Snapshot& snapshot, const std::string& server) {
    for (uint32_t i = 0; i < snapshot.servers.size(); ++i)
        if (slot_address(snapshot, i) == server) return i;
    ServerAddress parsed;
    if (std::string why; !ServerAddress::parse_strict(server, parsed, why)) return std::nullopt;
    const std::string numeric = parsed.numeric();
    if (numeric.empty()) return std::nullopt;
    for (uint32_t i = 0; i < snapshot.servers.size(); ++i) {
        const state::Slot& slot = snapshot.map.slots()[i];
        if (std::string(slot.resolved, strnlen(slot.resolved, state::kResolvedSize)) == numeric) return i;
    }
    return std::nullopt;
}

// memcached's facts change only when the daemon reads `stats` (every
// stats_interval), and the file does not say when that was. A sample is
// recognised by its uptime (memcached's clock ticks every second) or pid
// changing; the second change seen after a moment comes from a probe sent
// after that moment (the first may have been sent before it, in a round
// that was under way).
class StatsSamples {
public:
    void restart(const ServerDynamic& s) {
        last_ = {s.pid, s.uptime_s};
        changes_ = 0;
    }
    void see(const ServerDynamic& s) {
        const std::pair<uint64_t, uint64_t> now{s.pid, s.uptime_s};
        if (now != last_) ++changes_;
        last_ = now;
    }
    bool fresh() const { return changes_ >= 2; }

private:
    std::pair<uint64_t, uint64_t> last_{};
    int changes_ = 0;
};

std::string items_text(uint64_t items) {
    return items == state::kUnknown ? "an unknown number of" : with_thousands(items);
}

}  // namespace

int mcctl_drain_wait(const std::string& state_path, const DrainWait& wait, std::FILE* out, std::FILE* err) {
    const auto began = std::chrono::steady_clock::now();
    StatsSamples samples;
    bool counting = false;  // the moment after which curr_items is what the operator waits for has come
    std::string last_seen = "nothing read yet";
    for (;;) {
        Snapshot snapshot;
        if (const Result<> loaded = load_snapshot(state_path, snapshot); !loaded) {
            fmt::print(err, "mcctl: drain --wait: {}\n", loaded.error().message);
            return kExitUnusable;
        }
        if (snapshot.stale) {
            fmt::print(err, "mcctl: drain --wait: {} is stale (no heartbeat for {}): is mcwatchd running?\n",
                       state_path, human_duration(int64_t(snapshot.heartbeat_age_ms)));
            return kExitUnusable;
        }
        const std::optional<uint32_t> slot = find_slot(snapshot, wait.server);
        if (!slot) {
            fmt::print(err, "mcctl: drain --wait: {} is not in {} (a reload removed it?)\n", wait.server, state_path);
            return kExitEnded;
        }
        const ServerDynamic& s = snapshot.servers[*slot];
        const std::string address = slot_address(snapshot, *slot);
        const char* kind = override_name(s);
        if (!kind || std::string_view(kind) != "drain" || (s.flags & state::kFlagRejoinPending)) {
            fmt::print(err, "mcctl: drain --wait: the drain of {} ended: it is {}{}\n", address,
                       state::state_name(s.state),
                       kind && std::string_view(kind) == "down" ? ", down by operator" : " (undrained or up)");
            return kExitEnded;
        }
        if (s.state == uint32_t(ServerState::dead)) {
            fmt::print(err,
                       "mcctl: drain --wait: {} stopped answering while draining{}{}: its items cannot be counted\n",
                       address, s.last_error[0] ? ": " : "", s.last_error);
            return kExitEnded;
        }
        const DrainMoveFigures move = drain_move_figures(s, unix_ms());
        if (wait.move && move.state == DrainMove::failed) {
            fmt::print(err, "mcctl: drain --wait: the move of {}'s keys failed ({} moved, {} skipped, {} left){}{}\n",
                       address, with_thousands(move.moved), with_thousands(move.skipped),
                       with_thousands(move.remaining), s.last_error[0] ? ": " : "", s.last_error);
            return kExitEnded;
        }
        if (wait.move && move.state == DrainMove::stopped) {
            fmt::print(err,
                       "mcctl: drain --wait: the move of {}'s keys was stopped ({} moved, {} skipped, {} left): by "
                       "undrain, up, down, the server's death, a reload or mcwatchd's stop (its log says which)\n",
                       address, with_thousands(move.moved), with_thousands(move.skipped),
                       with_thousands(move.remaining));
            return kExitEnded;
        }
        if (wait.move && !wait.threshold_given && move.state == DrainMove::done) {
            fmt::print(out, "{}: {}; {} items held at the last stats read\n", address, drain_move_line(move),
                       items_text(s.curr_items));
            return 0;
        }
        if (!counting && (!wait.move || move.state == DrainMove::done)) {
            counting = true;
            samples.restart(s);
        } else if (counting) {
            samples.see(s);
        }
        const uint64_t items = s.curr_items;
        if (counting && samples.fresh() && items != state::kUnknown && items <= wait.threshold) {
            fmt::print(out, "{}: {} items left, at most {}{}\n", address, with_thousands(items),
                       with_thousands(wait.threshold),
                       wait.move ? fmt::format(" ({})", drain_move_line(move)) : std::string());
            return 0;
        }
        last_seen = wait.move && move.state != DrainMove::done
                        ? drain_move_line(move)
                        : fmt::format("{} items held{}", items_text(items),
                                      samples.fresh() ? "" : " (waiting for stats read since)");
        if (wait.timeout && std::chrono::steady_clock::now() - began >= *wait.timeout) {
            fmt::print(err, "mcctl: drain --wait: {} passed and {} is not drained to {} items: {}\n",
                       format_duration(*wait.timeout), address, with_thousands(wait.threshold), last_seen);
            return kExitWaitTimedOut;
        }
        std::this_thread::sleep_for(kPollInterval);
    }
}

}  // namespace mcwatch
