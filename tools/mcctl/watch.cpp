#include "tools/mcctl/watch.hpp"

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <ctime>
#include <deque>
#include <thread>

#include "common/duration.hpp"
#include "libshim/clock.hpp"
#include "tools/mcctl/drain_move.hpp"
#include "tools/mcctl/status.hpp"

namespace mcwatch {

using state::ServerDynamic;
using state::ServerState;

namespace {

volatile std::sig_atomic_t interrupted = 0;
volatile std::sig_atomic_t resized = 0;
volatile std::sig_atomic_t suspended = 0;

constexpr size_t kChangesKept = 200;
constexpr const char* kEnterScreen = "\x1b[?1049h\x1b[?25l";  // alternate screen, cursor hidden
constexpr const char* kLeaveScreen = "\x1b[?25h\x1b[?1049l";

void on_signal(int signal) {
    if (signal == SIGWINCH)
        resized = 1;
    else if (signal == SIGTSTP)
        suspended = 1;
    else
        interrupted = 1;
}

void install(int signal) {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, nullptr);
}

std::string clock_now() {
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char text[16];
    std::strftime(text, sizeof text, "%H:%M:%S", &local);
    return text;
}

void split_lines(const std::string& text, std::vector<std::string>& out) {
    size_t start = 0;
    while (start < text.size()) {
        const size_t end = text.find('\n', start);
        out.push_back(text.substr(start, end - start));
        if (end == std::string::npos) break;
        start = end + 1;
    }
}

struct Terminal {
    size_t rows = 24;
    size_t columns = 80;
    void measure() {
        winsize size{};
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_row > 0 && size.ws_col > 0) {
            rows = size.ws_row;
            columns = size.ws_col;
        }
    }
};

void write_all(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

}  // namespace

std::string fit_to_width(const std::string& line, size_t columns) {
    std::string out;
    size_t visible = 0;
    bool coloured = false;
    for (size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\x1b') {
            size_t end = i + 1;
            while (end < line.size() && !std::isalpha(static_cast<unsigned char>(line[end]))) ++end;
            out.append(line, i, end - i + 1);
            coloured = line.compare(i, end - i + 1, "\x1b[0m") != 0;
            i = end;
            continue;
        }
        if (visible == columns) break;
        out += line[i];
        ++visible;
    }
    if (coloured) out += "\x1b[0m";
    return out;
}

std::vector<std::string> watch_changes(const Snapshot& snapshot,
                                       std::vector<std::pair<std::string, WatchedServer>>& seen, bool first) {
    std::vector<std::string> changes;
    std::vector<std::pair<std::string, WatchedServer>> now;
    for (uint32_t i = 0; i < snapshot.servers.size(); ++i) {
        const ServerDynamic& s = snapshot.servers[i];
        const std::string address = slot_address(snapshot, i);
        const WatchedServer current{s.state,       s.flags,   s.pid,        s.restarts,
                                    s.transitions, s.flushes, s.drain_move, s.drain_move_started_unix_ms};
        now.emplace_back(address, current);
        if (first) continue;
        const auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& e) { return e.first == address; });
        if (it == seen.end()) {
            changes.push_back(fmt::format("{} added to the configuration ({})", address, state::state_name(s.state)));
            continue;
        }
        const WatchedServer& before = it->second;
        // A restarted daemon counts from zero again: compare counters only when they did not go back.
        const bool same_daemon = current.transitions >= before.transitions;
        if (current.state != before.state) {
            std::string line =
                fmt::format("{} {} -> {}", address, state::state_name(before.state), state::state_name(s.state));
            if (s.state == uint32_t(ServerState::dead) && s.last_error[0]) line += fmt::format(": {}", s.last_error);
            if (const char* kind = override_name(s)) line += fmt::format(" (operator {})", kind);
            if (same_daemon && current.transitions > before.transitions + 1)
                line +=
                    fmt::format(" ({} transitions since the last refresh)", current.transitions - before.transitions);
            changes.push_back(line);
        } else if (same_daemon && current.transitions > before.transitions) {
            changes.push_back(fmt::format("{} changed state {} times between refreshes, now {}", address,
                                          current.transitions - before.transitions, state::state_name(s.state)));
        }
        const bool override_before = before.flags & state::kFlagOperatorOverride;
        const bool override_now = current.flags & state::kFlagOperatorOverride;
        if (override_now && !override_before && current.state == before.state)
            changes.push_back(
                fmt::format("{} operator {} ({})", address, override_name(s), state::state_name(s.state)));
        if (!override_now && override_before && current.state == before.state)
            changes.push_back(fmt::format("{} operator override cleared", address));
        if (current.restarts > before.restarts && same_daemon)
            changes.push_back(fmt::format("{} memcached restarted (pid {} -> {})", address, before.pid, current.pid));
        if (current.flushes > before.flushes && same_daemon)
            changes.push_back(fmt::format("{} flushed (flush_all)", address));
        // A move starting (a new start time) and a move ending; listing -> moving is no news.
        const bool move_running = state::drain_move_running(current.drain_move);
        if (move_running && current.drain_move_started_unix_ms != before.drain_move_started_unix_ms)
            changes.push_back(fmt::format("{} drain --move started: moving every key", address));
        else if (!move_running && current.drain_move != uint32_t(state::DrainMove::none) &&
                 (current.drain_move != before.drain_move ||
                  current.drain_move_started_unix_ms != before.drain_move_started_unix_ms))
            changes.push_back(fmt::format("{} {}", address, drain_move_line(drain_move_figures(s, unix_ms()))));
        const bool unreachable_before = before.flags & state::kFlagUnreachableHere;
        const bool unreachable_now = current.flags & state::kFlagUnreachableHere;
        if (unreachable_now && !unreachable_before)
            changes.push_back(fmt::format("{} UNREACHABLE FROM THIS HOST (the fleet holds it live){}{}", address,
                                          s.last_error[0] ? ": " : "", s.last_error));
        if (!unreachable_now && unreachable_before)
            changes.push_back(fmt::format("{} reachable from this host again, or no longer live", address));
        if ((before.flags & state::kFlagRecentlyDown) && !(current.flags & state::kFlagRecentlyDown) &&
            current.state == before.state)
            changes.push_back(fmt::format("{} recently-down window over", address));
    }
    if (!first)
        for (const auto& old : seen)
            if (std::none_of(now.begin(), now.end(), [&](const auto& e) { return e.first == old.first; }))
                changes.push_back(fmt::format("{} removed from the configuration", old.first));
    seen = std::move(now);
    return changes;
}

int mcctl_watch(const std::string& path, std::chrono::milliseconds interval, long count) {
    install(SIGINT);
    install(SIGTERM);
    const bool terminal = isatty(STDOUT_FILENO);
    if (terminal) {
        install(SIGWINCH);
        install(SIGTSTP);
    }
    Terminal size;
    size.measure();

    std::vector<std::pair<std::string, WatchedServer>> seen;
    bool first = true;
    std::deque<std::string> changes;
    std::string screen;  // the last table (or error), redrawn on resize
    std::string last_problem;
    uint32_t last_pid = 0;
    bool was_stale = false;
    uint32_t last_fleet = 0;  // the header's kFleet* bits
    int status = 0;

    const auto note = [&](const std::string& change) {
        const std::string line = fmt::format("{}  {}", clock_now(), change);
        if (!terminal) fmt::print("{}\n", line);
        changes.push_back(line);
        if (changes.size() > kChangesKept) changes.pop_front();
    };
    const auto draw = [&](bool clear_all) {
        std::vector<std::string> lines;
        lines.push_back(
            fmt::format("mcctl watch: every {}, Ctrl-C to quit   {}", format_duration(interval), clock_now()));
        split_lines(screen, lines);
        const size_t room = size.rows > lines.size() + 2 ? size.rows - lines.size() - 2 : 0;
        if (room > 0 && !changes.empty()) {
            lines.push_back("");
            lines.push_back("CHANGES");
            const size_t shown = std::min(room, changes.size());
            for (size_t i = changes.size() - shown; i < changes.size(); ++i) lines.push_back(changes[i]);
        }
        if (lines.size() > size.rows) {
            lines.resize(size.rows);
            lines.back() = fmt::format("... enlarge the terminal to see more");
        }
        std::string frame = clear_all ? "\x1b[2J\x1b[H" : "\x1b[H";
        for (const std::string& line : lines) frame += fit_to_width(line, size.columns) + "\x1b[K\r\n";
        frame.resize(frame.size() - 2);  // no newline after the last line: it would scroll a full screen
        write_all(frame + "\x1b[J");
    };

    if (terminal) write_all(kEnterScreen);
    for (long shown = 0; !interrupted && (count <= 0 || shown < count); ++shown) {
        if (shown) {
            const auto until = std::chrono::steady_clock::now() + interval;
            while (!interrupted && std::chrono::steady_clock::now() < until) {
                if (resized) {
                    resized = 0;
                    size.measure();
                    draw(true);
                }
                if (suspended) {
                    // Ctrl-Z: give the terminal back as it was, stop, and
                    // take it again on `fg`.
                    suspended = 0;
                    write_all(kLeaveScreen);
                    signal(SIGTSTP, SIG_DFL);
                    raise(SIGTSTP);
                    install(SIGTSTP);
                    write_all(kEnterScreen);
                    size.measure();
                    draw(true);
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            if (interrupted) break;
        }
        Snapshot snapshot;
        if (const Result<> loaded = load_snapshot(path, snapshot)) {
            if (!last_problem.empty()) note("state file usable again");
            last_problem.clear();
            const uint32_t pid = snapshot.map.header().daemon_pid;
            if (!first && last_pid != 0 && pid != last_pid) note(fmt::format("mcwatchd pid {} -> {}", last_pid, pid));
            last_pid = pid;
            if (snapshot.stale != was_stale && !first)
                note(snapshot.stale ? "state file stale: no heartbeat" : "heartbeat back");
            was_stale = snapshot.stale;
            const uint32_t fleet = snapshot.fleet.flags;
            if (!first && (fleet & state::kFleetConfigured)) {
                const uint32_t changed = fleet ^ last_fleet;
                if (changed & state::kFleetEtcdAnswers)
                    note(fleet & state::kFleetEtcdAnswers
                             ? std::string("fleet: etcd answering again")
                             : fmt::format("FLEET: etcd not answering: {}", snapshot.fleet.error));
                if (changed & state::kFleetFallback)
                    note(fleet & state::kFleetFallback
                             ? "FLEET FALLBACK: past fallback_after, this host's probes decide"
                             : "fleet: fallback over, the fleet decides again");
            }
            last_fleet = fleet;
            for (const std::string& change : watch_changes(snapshot, seen, first)) note(change);
            first = false;
            screen = status_table(snapshot, path, terminal && use_colour());
            status = exit_status(snapshot);
        } else {
            const std::string& error = loaded.error().message;
            if (error != last_problem) note(error);
            last_problem = error;
            screen = fmt::format("mcctl: {}\n", error);
            status = kExitUnusable;
        }
        if (terminal)
            draw(shown == 0);
        else
            fmt::print("{}\n", screen);
        std::fflush(stdout);
    }
    if (terminal) write_all(kLeaveScreen);
    return interrupted ? 0 : status;
}

}  // namespace mcwatch
