#include "tools/mcctl/status.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <thread>

#include "libshim/clock.hpp"
#include "tools/mcctl/drain_move.hpp"
#include "tools/mcctl/json.hpp"
#include "common/rfc3339.hpp"
#include "libshim/routing_names.hpp"
#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

using state::kUnknown;
using state::ServerDynamic;
using state::ServerState;

namespace {

std::string rtt_text(uint64_t us) {
    if (us == kUnknown) return "-";
    if (us < 10'000) return fmt::format("{}us", us);
    return fmt::format("{}ms", us / 1000);
}

std::string hit_ratio(const ServerDynamic& s) {
    if (s.state == uint32_t(ServerState::dead)) return "-";
    if (s.get_hits == kUnknown || s.get_misses == kUnknown || s.get_hits + s.get_misses == 0) return "-";
    return fmt::format("{:.1f}%", 100.0 * double(s.get_hits) / double(s.get_hits + s.get_misses));
}

std::string fact(uint64_t value) { return value == kUnknown ? "-" : fmt::format("{}", value); }

const char* colour_of(uint32_t state) {
    switch (ServerState(state)) {
    case ServerState::live: return "\x1b[32m";
    case ServerState::dead: return "\x1b[1;31m";
    case ServerState::draining: return "\x1b[33m";
    default: return "\x1b[2m";
    }
}

// A dead server's last probe counts are not current: not shown as if they were.
uint64_t current(const ServerDynamic& s, uint64_t value) {
    return s.state == uint32_t(ServerState::dead) ? kUnknown : value;
}

// Live, and reachable from this host: one the fleet holds live that this
// host cannot reach fails here.
bool all_live(const Snapshot& snapshot) {
    for (const ServerDynamic& s : snapshot.servers)
        if (s.state != uint32_t(ServerState::live) || (s.flags & state::kFlagUnreachableHere)) return false;
    return true;
}

bool unreachable_here(const ServerDynamic& s) { return s.flags & state::kFlagUnreachableHere; }

std::string loud(const std::string& line, bool colour) {
    return colour ? fmt::format("\x1b[1;41;97m{}\x1b[0m", line) : line;
}

// [fleet]: etcd answering or not, since when, and whether this host's own
// probes decide; "" without [fleet].
std::string fleet_lines(const Snapshot& snapshot, int64_t now, bool colour) {
    const state::FleetStatus& fleet = snapshot.fleet;
    if (!(fleet.flags & state::kFleetConfigured)) return "";
    const auto ago = [&](int64_t at) {
        return at > 0 && at <= now ? fmt::format("{} ({} ago)", rfc3339_utc(at), human_duration(now - at))
                                   : std::string("never");
    };
    if (fleet.flags & state::kFleetEtcdAnswers)
        return fmt::format("fleet: etcd answering since {}\n", ago(fleet.etcd_since_unix_ms));
    std::string out = loud(fmt::format("FLEET: etcd not answering since {}; last answer {}\n",
                                       ago(fleet.etcd_since_unix_ms), ago(fleet.last_answer_unix_ms)),
                           colour);
    if (fleet.flags & state::kFleetFallback)
        out += loud(
            "FLEET FALLBACK: past fallback_after, this host's probes decide; a server they find dead stays "
            "dead until etcd is back and the fleet flushes it\n",
            colour);
    else
        out += "  the last fleet view is kept until fallback_after passes\n";
    if (fleet.error[0]) out += fmt::format("  etcd error: {}\n", fleet.error);
    return out;
}

std::string fleet_json(const Snapshot& snapshot, int64_t now) {
    using namespace json;
    const state::FleetStatus& fleet = snapshot.fleet;
    if (!(fleet.flags & state::kFleetConfigured)) return "null";
    return fmt::format(
        "{{\"etcd_answers\": {}, \"since\": {}, \"last_answer\": {}, \"last_answer_age_ms\": {}, "
        "\"fallback\": {}, \"last_error\": {}}}",
        (fleet.flags & state::kFleetEtcdAnswers) != 0, time_or_null(fleet.etcd_since_unix_ms),
        time_or_null(fleet.last_answer_unix_ms),
        fleet.last_answer_unix_ms > 0 ? fmt::format("{}", std::max<int64_t>(0, now - fleet.last_answer_unix_ms))
                                      : std::string("null"),
        (fleet.flags & state::kFleetFallback) != 0, fleet.error[0] ? quote(fleet.error) : "null");
}

// The latest membership change the file publishes (the list before it, in
// the file after the slots), as mcctl shows it.
struct MembershipView {
    std::vector<std::string> added, removed;
    std::vector<const state::PreviousServer*> previous;
    int64_t changed_unix_ms = 0;
    int64_t until_unix_ms = 0;  // readers use the previous list until then
};

std::string field_text(const char* field, size_t size) { return std::string(field, strnlen(field, size)); }

std::optional<MembershipView> membership_view(const Snapshot& snapshot) {
    const state::Header& header = snapshot.map.header();
    if (header.previous_count == 0) return std::nullopt;
    MembershipView view;
    view.changed_unix_ms = header.membership_changed_unix_ms;
    view.until_unix_ms = header.membership_changed_unix_ms + int64_t(header.recently_down_window_s) * 1000;
    const state::PreviousServer* previous = state::previous_servers(snapshot.map.slots(), header.slot_count);
    std::vector<std::string> before;
    for (uint32_t i = 0; i < header.previous_count; ++i) {
        view.previous.push_back(&previous[i]);
        before.push_back(field_text(previous[i].address, state::kAddressSize));
    }
    std::vector<std::string> now;
    for (uint32_t i = 0; i < header.slot_count; ++i) now.push_back(slot_address(snapshot, i));
    for (const std::string& address : now)
        if (std::find(before.begin(), before.end(), address) == before.end()) view.added.push_back(address);
    for (const std::string& address : before)
        if (std::find(now.begin(), now.end(), address) == now.end()) view.removed.push_back(address);
    return view;
}

std::string address_list(const std::vector<std::string>& addresses) {
    std::string out;
    for (const std::string& address : addresses) out += fmt::format("{}{}", out.empty() ? "" : ", ", address);
    return out.empty() ? "none" : out;
}

std::string membership_lines(const Snapshot& snapshot, int64_t now) {
    const std::optional<MembershipView> view = membership_view(snapshot);
    if (!view) return "";
    const state::Header& header = snapshot.map.header();
    std::string out = fmt::format("membership changed {} ({} ago): added {}; removed {}\n",
                                  rfc3339_utc(view->changed_unix_ms), human_duration(now - view->changed_unix_ms),
                                  address_list(view->added), address_list(view->removed));
    const std::string list = fmt::format("{} servers, {} {}", view->previous.size(),
                                         distribution_name(state::Distribution(header.previous_distribution)),
                                         hash_name(state::Hash(header.previous_hash)));
    if (now < view->until_unix_ms)
        out += fmt::format("  previous list ({}) counts until {} ({} more): a key it moved is read there on a miss\n",
                           list, rfc3339_utc(view->until_unix_ms), human_duration(view->until_unix_ms - now));
    else
        out += fmt::format("  previous list ({}) counted until {} (over)\n", list, rfc3339_utc(view->until_unix_ms));
    const DrainMoveFigures move = drain_move_figures(snapshot.membership_move, now);
    if (const std::string line = drain_move_line(move); !line.empty())
        out += fmt::format("  {} (from {} server{})\n", line, move.sources, move.sources == 1 ? "" : "s");
    return out;
}

std::string string_array(const std::vector<std::string>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", json::quote(items[i]));
    return out + "]";
}

std::string membership_json(const Snapshot& snapshot, int64_t now) {
    using namespace json;
    const std::optional<MembershipView> view = membership_view(snapshot);
    if (!view) return "null";
    const state::Header& header = snapshot.map.header();
    std::string previous;
    for (size_t i = 0; i < view->previous.size(); ++i) {
        const state::PreviousServer& server = *view->previous[i];
        const std::string resolved = field_text(server.resolved, state::kResolvedSize);
        previous += fmt::format("{}{{\"address\": {}, \"resolved\": {}, \"weight\": {}, \"took_keys\": {}}}",
                                i ? ", " : "", quote(field_text(server.address, state::kAddressSize)),
                                resolved.empty() ? "null" : quote(resolved), server.weight,
                                !(server.flags & state::kPreviousAvoided));
    }
    return fmt::format(
        "{{\"at\": {}, \"until\": {}, \"counts\": {}, \"added\": {}, \"removed\": {}, "
        "\"previous\": {{\"distribution\": {}, \"hash\": {}, \"servers\": [{}]}}, \"move\": {}}}",
        time_or_null(view->changed_unix_ms), time_or_null(view->until_unix_ms), now < view->until_unix_ms,
        string_array(view->added), string_array(view->removed),
        quote(distribution_name(state::Distribution(header.previous_distribution))),
        quote(hash_name(state::Hash(header.previous_hash))), previous,
        membership_move_json(drain_move_figures(snapshot.membership_move, now)));
}

}  // namespace

// "45s", "3m12s", "2h05m", "3d04h": two units at most, for a table.
std::string human_duration(int64_t ms) {
    if (ms < 0) ms = 0;
    const int64_t s = ms / 1000;
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

bool use_colour() {
    const char* term = std::getenv("TERM");
    return isatty(STDOUT_FILENO) && !std::getenv("NO_COLOR") && term && std::string(term) != "dumb";
}

int exit_status(const Snapshot& snapshot) {
    if (snapshot.stale) return kExitUnusable;
    return all_live(snapshot) ? 0 : 1;
}

const char* override_name(const ServerDynamic& s) {
    if (!(s.flags & state::kFlagOperatorOverride)) return nullptr;
    return s.flags & state::kFlagOperatorDrain ? "drain" : "down";
}

// What the operator set, and for a drain what is left to move: the operator
// stops a draining server when few items remain.
std::string override_note(const ServerDynamic& s) {
    const char* kind = override_name(s);
    if (!kind) return "";
    if (std::string_view(kind) == "down") return "down by operator: `mcctl up` lets probes decide again";
    if (s.state == uint32_t(ServerState::dead))
        return "drained by operator, not answering: `mcctl undrain` once it is back";
    return fmt::format("draining by operator: {} items still held{}",
                       s.curr_items == kUnknown ? "unknown" : fmt::format("{}", s.curr_items),
                       s.curr_items == 0 ? " (safe to stop it)" : "");
}

ServerCounts count_servers(const Snapshot& snapshot) {
    ServerCounts counts;
    for (const ServerDynamic& s : snapshot.servers) {
        ++counts.total;
        if (unreachable_here(s)) ++counts.unreachable_here;
        switch (ServerState(s.state)) {
        case ServerState::live: ++counts.live; break;
        case ServerState::dead: ++counts.dead; break;
        case ServerState::draining: ++counts.draining; break;
        default: ++counts.unknown; break;
        }
    }
    return counts;
}

std::string summary_line(const ServerCounts& c) {
    std::string out = fmt::format("{} of {} live", c.live, c.total);
    if (c.dead) out += fmt::format(", {} dead", c.dead);
    if (c.draining) out += fmt::format(", {} draining", c.draining);
    if (c.unknown) out += fmt::format(", {} unknown", c.unknown);
    if (c.unreachable_here) out += fmt::format(", {} unreachable from this host", c.unreachable_here);
    return out;
}

std::string status_table(const Snapshot& snapshot, const std::string& path, bool colour) {
    const state::Header& header = snapshot.map.header();
    const int64_t now = unix_ms();
    // What an operator reads first; a stale file's counts are the daemon's last word.
    std::string out = summary_line(count_servers(snapshot)) + (snapshot.stale ? " (stale)\n" : "\n");
    out += fmt::format("mcwatchd pid {}{}, state {} (generation {}), heartbeat {} ago\n", header.daemon_pid,
                       snapshot.daemon_running ? "" : " (not running)", path, snapshot.generation,
                       human_duration(int64_t(snapshot.heartbeat_age_ms)));
    if (snapshot.stale) {
        const std::string warning = fmt::format(
            "STALE: no heartbeat for {} (stale_after {}ms): clients ignore this file and place keys natively\n",
            human_duration(int64_t(snapshot.heartbeat_age_ms)), header.stale_after_ms);
        out += loud(warning, colour);
    }
    out += fleet_lines(snapshot, now, colour);
    std::string unreachable;
    for (uint32_t i = 0; i < header.slot_count; ++i)
        if (unreachable_here(snapshot.servers[i]))
            unreachable += fmt::format("{}{}", unreachable.empty() ? "" : ", ", slot_address(snapshot, i));
    if (!unreachable.empty())
        out += loud(
            fmt::format("UNREACHABLE FROM THIS HOST: {} (the fleet holds it live: its keys fail here)\n", unreachable),
            colour);
    out += membership_lines(snapshot, now);
    size_t width = 6;
    for (uint32_t i = 0; i < header.slot_count; ++i) width = std::max(width, slot_address(snapshot, i).size());
    out += fmt::format("{:<{}}  {:<8} {:>7} {:>7} {:>8} {:>9} {:>6} {:>8}  {}\n", "SERVER", width, "STATE", "FOR",
                       "RTT", "UPTIME", "ITEMS", "HIT%", "RESTARTS", "RECENTLY DOWN UNTIL");
    for (uint32_t i = 0; i < header.slot_count; ++i) {
        const ServerDynamic& s = snapshot.servers[i];
        const std::string state = state::state_name(s.state);
        const std::string padded = fmt::format("{:<8}", unreachable_here(s) ? state + "!" : state);
        const std::string shown = colour ? fmt::format("{}{}\x1b[0m", colour_of(s.state), padded) : padded;
        // A corrupt or future since would overflow the subtraction.
        const std::string since =
            s.since_unix_ms > 0 && s.since_unix_ms <= now ? human_duration(now - s.since_unix_ms) : "-";
        const uint64_t uptime_s = current(s, s.uptime_s);
        const std::string uptime = uptime_s == kUnknown || uptime_s > uint64_t(INT64_MAX / 1000)
                                       ? "-"
                                       : human_duration(int64_t(uptime_s) * 1000);
        const std::string until =
            (s.flags & state::kFlagRecentlyDown) ? rfc3339_utc(s.recently_down_until_unix_ms) : "-";
        out += fmt::format("{:<{}}  {} {:>7} {:>7} {:>8} {:>9} {:>6} {:>8}  {}\n", slot_address(snapshot, i), width,
                           shown, since, rtt_text(s.rtt_us), uptime, fact(current(s, s.curr_items)), hit_ratio(s),
                           s.restarts, until);
        if (const std::string note = override_note(s); !note.empty())
            out += fmt::format("{:<{}}  {}\n", "", width, note);
        // The latest move, while the operator's drain lasts (kept after it ends).
        if (const char* kind = override_name(s); kind && std::string_view(kind) == "drain")
            if (const std::string move = drain_move_line(drain_move_figures(s, now)); !move.empty())
                out += fmt::format("{:<{}}  {}\n", "", width, move);
        if (s.flags & state::kFlagHintTriggered)
            out += fmt::format("{:<{}}  {} (hint): after a client's hint\n", "", width, state);
        if (unreachable_here(s))
            out += fmt::format("{:<{}}  {}\n", "", width,
                               loud(fmt::format("UNREACHABLE HERE: the fleet holds it live, this host cannot reach it "
                                                "since {}{}{}",
                                                s.since_unix_ms > 0 ? rfc3339_utc(s.since_unix_ms) : "-",
                                                s.last_error[0] ? ", last error: " : "", s.last_error),
                                    colour));
        else if (s.state == uint32_t(ServerState::dead) && s.last_error[0])
            out += fmt::format("{:<{}}  last error: {}\n", "", width, s.last_error);
        // Not dead, but its last probe got no stats: an error line (at its
        // connection limit), or a failure not yet repeated fail_after times.
        else if (s.last_error[0])
            out += fmt::format("{:<{}}  warning: {}\n", "", width, s.last_error);
    }
    return out;
}

std::string status_json(const Snapshot& snapshot) {
    using namespace json;
    const state::Header& header = snapshot.map.header();
    const ServerCounts counts = count_servers(snapshot);
    const int64_t now = unix_ms();
    std::string out = fmt::format(
        "{{\"summary\": {{\"servers\": {}, \"live\": {}, \"dead\": {}, \"draining\": {}, \"unknown\": {}, "
        "\"unreachable_here\": {}, \"text\": {}}}, ",
        counts.total, counts.live, counts.dead, counts.draining, counts.unknown, counts.unreachable_here,
        quote(summary_line(counts)));
    out += fmt::format(
        "\"daemon\": {{\"pid\": {}, \"running\": {}, \"generation\": {}, \"heartbeat_age_ms\": {}, "
        "\"heartbeat\": {}, \"stale\": {}, \"rounds\": {}, \"distribution\": {}, \"hash\": {}, "
        "\"format_version\": {}, \"managed_list\": {}, \"replicas\": {}, \"replica_max_ttl_s\": {}}}, "
        "\"membership_change\": {}, \"fleet\": {}, \"servers\": [",
        header.daemon_pid, snapshot.daemon_running, snapshot.generation, snapshot.heartbeat_age_ms,
        time_or_null(header.heartbeat_unix_ms.load()), snapshot.stale, header.rounds.load(),
        quote(distribution_name(state::Distribution(header.distribution))), quote(hash_name(state::Hash(header.hash))),
        header.format_version, (header.flags & state::kHeaderManagedList) != 0, header.replicas,
        header.replica_max_ttl_s, membership_json(snapshot, unix_ms()), fleet_json(snapshot, now));
    for (uint32_t i = 0; i < header.slot_count; ++i) {
        const ServerDynamic& s = snapshot.servers[i];
        const state::Slot& slot = snapshot.map.slots()[i];
        const bool recently_down = s.flags & state::kFlagRecentlyDown;
        out += fmt::format(
            "{}{{\"address\": {}, \"resolved\": {}, \"weight\": {}, \"state\": {}, \"since\": {}, "
            "\"recently_down_until\": {}, \"rtt_us\": {}, \"uptime_s\": {}, \"pid\": {}, \"version\": {}, "
            "\"restarts\": {}, \"last_restart\": {}, \"curr_items\": {}, \"curr_connections\": {}, "
            "\"get_hits\": {}, \"get_misses\": {}, \"evictions\": {}, \"probes_ok\": {}, \"probes_failed\": {}, "
            "\"transitions\": {}, \"flushes\": {}, \"last_probe\": {}, \"last_error\": {}, \"override\": {}, "
            "\"hint_triggered\": {}, \"unreachable_here\": {}, \"drain_move\": {}}}",
            i ? ", " : "", quote(slot_address(snapshot, i)),
            slot.resolved[0] ? quote(std::string(slot.resolved, strnlen(slot.resolved, state::kResolvedSize))) : "null",
            slot.weight, quote(state::state_name(s.state)), time_or_null(s.since_unix_ms),
            recently_down ? time_or_null(s.recently_down_until_unix_ms) : "null", number_or_null(s.rtt_us),
            number_or_null(current(s, s.uptime_s)), number_or_null(s.pid), s.version[0] ? quote(s.version) : "null",
            s.restarts, time_or_null(s.last_restart_unix_ms), number_or_null(current(s, s.curr_items)),
            number_or_null(current(s, s.curr_connections)), number_or_null(current(s, s.get_hits)),
            number_or_null(current(s, s.get_misses)), number_or_null(current(s, s.evictions)), s.probes_ok,
            s.probes_failed, s.transitions, s.flushes, time_or_null(s.last_probe_unix_ms),
            s.last_error[0] ? quote(s.last_error) : "null", override_name(s) ? quote(override_name(s)) : "null",
            (s.flags & state::kFlagHintTriggered) ? "true" : "false", unreachable_here(s),
            drain_move_json(drain_move_figures(s, now)));
    }
    return out + "]}\n";
}


int mcctl_status(const std::string& path, bool as_json) {
    Snapshot snapshot;
    if (const Result<> loaded = load_snapshot(path, snapshot); !loaded) {
        fmt::print(stderr, "mcctl: {}\n", loaded.error().message);
        return kExitUnusable;
    }
    fmt::print("{}", as_json ? status_json(snapshot) : status_table(snapshot, path, use_colour()));
    return exit_status(snapshot);
}

int mcctl_dump(const std::string& path) {
    Snapshot snapshot;
    if (const Result<> loaded = load_snapshot(path, snapshot); !loaded) {
        fmt::print(stderr, "mcctl: {}\n", loaded.error().message);
        return kExitUnusable;
    }
    const state::Header& h = snapshot.map.header();
    fmt::print(
        "header:\n  magic: {}\n  format_version: {}\n  header_size: {}\n  slot_size: {}\n  slot_count: {}\n"
        "  file_size: {}\n  servers_digest: {:016x}\n  static_digest: {:016x}\n  distribution: {}\n"
        "  hash: {}\n  daemon_pid: {}\n  probe_interval_ms: {}\n  stale_after_ms: {}\n"
        "  recently_down_window_s: {}\n  writeback_ttl_s: {}\n  flags: {:#x}\n  created: {}\n"
        "  seq: {}\n  generation: {}\n  heartbeat_mono_ns: {}\n  heartbeat: {}\n  rounds: {}\n"
        "  superseded: {}\n  previous_count: {}\n  previous_distribution: {}\n  previous_hash: {}\n"
        "  membership_changed: {}\n  replicas: {}\n  replica_max_ttl_s: {}\n",
        std::string(h.magic, strnlen(h.magic, sizeof h.magic)), h.format_version, h.header_size, h.slot_size,
        h.slot_count, h.file_size, h.servers_digest, h.static_digest, h.distribution, h.hash, h.daemon_pid,
        h.probe_interval_ms, h.stale_after_ms, h.recently_down_window_s, h.writeback_ttl_s, h.flags,
        rfc3339_utc(h.created_unix_ms), h.seq.load(), snapshot.generation, h.heartbeat_mono_ns.load(),
        rfc3339_utc(h.heartbeat_unix_ms.load()), h.rounds.load(), h.superseded.load(), h.previous_count,
        h.previous_distribution, h.previous_hash,
        h.membership_changed_unix_ms ? rfc3339_utc(h.membership_changed_unix_ms) : std::string("-"), h.replicas,
        h.replica_max_ttl_s);
    const state::MembershipMove& m = snapshot.membership_move;
    fmt::print(
        "  membership_move: {}\n  membership_move_sources: {}\n  membership_moved: {}\n  membership_skipped: {}\n"
        "  membership_remaining: {}\n  membership_move_started_unix_ms: {}\n  membership_move_ended_unix_ms: {}\n",
        m.state, m.sources, m.moved, m.skipped, m.remaining, m.started_unix_ms, m.ended_unix_ms);
    for (uint32_t i = 0; i < h.slot_count; ++i) {
        const state::Slot& slot = snapshot.map.slots()[i];
        const ServerDynamic& s = snapshot.servers[i];
        fmt::print("slot {}:\n  address: {}\n  resolved: {}\n  weight: {}\n  index: {}\n", i, slot_address(snapshot, i),
                   std::string(slot.resolved, strnlen(slot.resolved, state::kResolvedSize)), slot.weight, slot.index);
#define MCWATCH_DUMP_FIELD(type, name) fmt::print("  " #name ": {}\n", s.name);
        MCWATCH_SLOT_DYNAMIC_FIELDS(MCWATCH_DUMP_FIELD)
#undef MCWATCH_DUMP_FIELD
        fmt::print("  version: {}\n  last_error: {}\n", s.version, s.last_error);
    }
    const state::PreviousServer* previous = state::previous_servers(snapshot.map.slots(), h.slot_count);
    for (uint32_t i = 0; i < h.previous_count; ++i)
        fmt::print("previous {}:\n  address: {}\n  resolved: {}\n  weight: {}\n  flags: {:#x}\n", i,
                   field_text(previous[i].address, state::kAddressSize),
                   field_text(previous[i].resolved, state::kResolvedSize), previous[i].weight, previous[i].flags);
    return 0;
}

}  // namespace mcwatch
