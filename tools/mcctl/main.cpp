// mcctl: the operator's view of mcwatchd's state file, and its commands.
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/control_commands.hpp"
#include "libshim/defaults.hpp"
#include "tools/mcctl/control.hpp"
#include "tools/mcctl/fleet.hpp"
#include "common/duration.hpp"
#include "tools/mcctl/drain_wait.hpp"
#include "tools/mcctl/route.hpp"
#include "tools/mcctl/snapshot.hpp"
#include "tools/mcctl/status.hpp"
#include "common/version.hpp"
#include "tools/mcctl/watch.hpp"

namespace {

constexpr const char* kUsage =
    "usage: mcctl [-s STATE_FILE] [-c CONFIG] [-S SOCKET] COMMAND [ARGS]\n"
    "  status [--json]        servers, their state and facts; exit 0 all live, 1 some not, 2 stale/unusable\n"
    "  watch [-n INTERVAL] [--count N]   redraw the status and list changes until Ctrl-C\n"
    "  dump                   every raw header and slot field\n"
    "  route [--json] KEY...  where each key goes now and why (- reads keys from stdin);\n"
    "                         servers and routing from the state file, or from -c CONFIG\n"
    "  drain [--force] [--move] [--wait [--threshold N] [--timeout D]] SERVER\n"
    "                         route its keys elsewhere; clients move its values on a miss;\n"
    "                         --move: mcwatchd moves every key too (drain_rate per second);\n"
    "                         --wait: then return once it holds at most N items (default 0),\n"
    "                         with --move once the move is done; exit 1 if the drain or the\n"
    "                         move ends otherwise, 3 after D (default: no limit);\n"
    "                         refused if fewer than min_live_servers would stay live\n"
    "  undrain SERVER         end a drain: flush_all, then live and recently down\n"
    "  down [--force] SERVER  mark it dead whatever probes say (min_live_servers as drain)\n"
    "  up SERVER              clear drain or down: probes decide again (a rejoin)\n"
    "  flush SERVER           send it flush_all now (with the next probe)\n"
    "  reload [--force]       re-read mcwatchd's configuration (as SIGHUP); refused if it removes\n"
    "                         a server that holds items, not drained: --force removes it anyway\n"
    "  ping                   check that mcwatchd answers on its control socket\n"
    "  fleet [--json]         the fleet view in etcd ([fleet] of CONFIG): hosts, their\n"
    "                         observations, each server's verdict and why\n"
    "  --version\n"
    "-s, -c and -S may come before or after the command. STATE_FILE defaults to CONFIG's\n"
    "state_file with -c, else $MCSHIM_STATE, else /run/mcwatchd/state. SOCKET defaults to\n"
    "CONFIG's control_socket with -c, else `control` beside STATE_FILE.\n"
    "Commands exit 0 when done, 1 when mcwatchd refused, 2 when it cannot be reached.\n";

// Only what is wrong: the whole usage would bury it.
int usage_error(const std::string& message) {
    fmt::print(stderr, "mcctl: {} (mcctl --help lists commands and options)\n", message);
    return mcwatch::kExitUsage;
}

// -s, -c and -S, wherever they are on the command line (before `--`).
struct GlobalOptions {
    const char* state = nullptr;   // -s
    const char* config = nullptr;  // -c
    const char* socket = nullptr;  // -S
};

// The state file every command reads: -s, else -c's state_file, else
// $MCSHIM_STATE, else the default. An error when -c is unusable.
mcwatch::Result<std::string> state_file_path(const GlobalOptions& options) {
    if (options.state) return options.state;
    if (options.config) {
        const auto loaded = mcwatch::load_config(options.config);
        if (!loaded) return mcwatch::failure(loaded.error().message);
        return loaded->state_file;
    }
    return mcwatch::state_path_from_environment();
}

}  // namespace

int main(int argc, char** argv) {
    using namespace mcwatch;
    GlobalOptions options;
    std::vector<char*> words;  // the command and its own arguments
    bool options_done = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (options_done) {
            words.push_back(argv[i]);
            continue;
        }
        if (words.empty() && arg == "--version") {
            fmt::print("mcctl {}\n", kVersion);
            return 0;
        }
        if (words.empty() && (arg == "-h" || arg == "--help")) {
            fmt::print("{}", kUsage);
            return 0;
        }
        const char** global = arg == "-s"   ? &options.state
                              : arg == "-c" ? &options.config
                              : arg == "-S" ? &options.socket
                                            : nullptr;
        if (global) {
            if (i + 1 >= argc) return usage_error(fmt::format("option {} needs a value", arg));
            *global = argv[++i];
            continue;
        }
        if (arg == "--") {
            options_done = true;
            if (words.empty()) continue;  // kept after the command: route reads keys that start with '-' after it
        }
        if (words.empty() && arg.size() > 1 && arg[0] == '-')
            return usage_error(fmt::format("unknown option '{}'", arg));
        words.push_back(argv[i]);
    }
    if (words.empty()) return usage_error("missing command");
    const std::string command = words[0];
    words.push_back(nullptr);
    argv = words.data();
    argc = int(words.size()) - 1;
    int i = 1;
    // Only the commands that read the state file need it now.
    const auto state_path = [&](std::string& path) {
        const auto found = state_file_path(options);
        path = found ? *found : "";
        if (path.empty()) fmt::print(stderr, "mcctl: {}\n", found ? "" : found.error().message);
        return !path.empty();
    };

    if (command == "status") {
        bool as_json = false;
        for (; i < argc; ++i) {
            if (std::strcmp(argv[i], "--json") == 0)
                as_json = true;
            else
                return usage_error(fmt::format("status: unknown argument '{}'", argv[i]));
        }
        std::string path;
        if (!state_path(path)) return kExitUnusable;
        return mcctl_status(path, as_json);
    }
    if (command == "watch") {
        std::chrono::milliseconds interval{1000};
        long count = 0;
        for (; i < argc; ++i) {
            const std::string arg = argv[i];
            if (arg == "-n" && i + 1 < argc) {
                const auto parsed = parse_duration(argv[++i]);
                if (!parsed) return usage_error("watch -n: " + parsed.error().message);
                if (parsed->count() == 0) return usage_error("watch -n: must be > 0");
                interval = *parsed;
            } else if (arg == "--count" && i + 1 < argc) {
                char* end = nullptr;
                count = std::strtol(argv[++i], &end, 10);
                if (*argv[i] == '\0' || *end != '\0' || count <= 0)
                    return usage_error(fmt::format("watch --count '{}': expected a whole number above 0", argv[i]));
            } else {
                return usage_error(fmt::format("watch: unknown argument '{}'", arg));
            }
        }
        std::string path;
        if (!state_path(path)) return kExitUnusable;
        return mcctl_watch(path, interval, count);
    }
    if (command == "dump") {
        if (i < argc) return usage_error("dump takes no arguments");
        std::string path;
        if (!state_path(path)) return kExitUnusable;
        return mcctl_dump(path);
    }
    if (command == "fleet") {
        bool as_json = false;
        for (; i < argc; ++i) {
            if (std::strcmp(argv[i], "--json") == 0)
                as_json = true;
            else
                return usage_error(fmt::format("fleet: unknown argument '{}'", argv[i]));
        }
        return mcctl_fleet(options.config ? options.config : "/etc/mcwatchd.conf", as_json);
    }
    if (command == "route") return mcctl_route(options.state, options.config, argc - i, argv + i);

    if (const ControlCommandSpec* spec = find_control_command(command)) {
        const bool takes_server = spec->takes_server;
        // drain and down: `--force` goes past min_live_servers; reload: past
        // the refusal to remove a server that holds items.
        const bool may_force = spec->takes_force;
        bool force = false;
        bool move = false;  // drain: mcwatchd moves every key
        bool wait = false;  // drain: then wait for it to be empty enough
        DrainWait waiting;
        bool wait_options = false;  // --threshold or --timeout given
        std::vector<const char*> words;
        for (; i < argc; ++i) {
            const std::string arg = argv[i];
            const bool drain = command == "drain";
            if (may_force && arg == "--force") {
                force = true;
            } else if (drain && arg == "--move") {
                move = true;
            } else if (drain && arg == "--wait") {
                wait = true;
            } else if (drain && arg == "--threshold") {
                if (i + 1 >= argc) return usage_error("drain --threshold needs a number of items");
                char* end = nullptr;
                const char* text = argv[++i];
                waiting.threshold = std::strtoull(text, &end, 10);
                if (*text < '0' || *text > '9' || *end != '\0')
                    return usage_error(fmt::format("drain --threshold '{}': expected a whole number of items", text));
                waiting.threshold_given = true;
                wait_options = true;
            } else if (drain && arg == "--timeout") {
                if (i + 1 >= argc) return usage_error("drain --timeout needs a duration");
                const auto parsed = parse_duration(argv[++i]);
                if (!parsed) return usage_error("drain --timeout: " + parsed.error().message);
                waiting.timeout = *parsed;
                wait_options = true;
            } else {
                words.push_back(argv[i]);
            }
        }
        if (wait_options && !wait) return usage_error("drain: --threshold and --timeout go with --wait");
        if (takes_server && words.size() != 1)
            return usage_error(
                fmt::format("{} needs one SERVER (host:port){}", command, may_force ? " and maybe --force" : ""));
        if (!takes_server && !words.empty()) return usage_error(fmt::format("{} takes no arguments", command));
        std::string path;
        // The socket beside the state file: -c names both, -S needs neither.
        if (!options.socket && !options.config && !state_path(path)) return kExitUnusable;
        const Result<std::string> socket = control_socket_path(options.socket, options.config, path);
        if (!socket) {
            fmt::print(stderr, "mcctl: {}\n", socket.error().message);
            return kExitUnusable;
        }
        const std::string request =
            takes_server ? fmt::format("{} {}{}{}", command, words[0], force ? " force" : "", move ? " move" : "")
                         : fmt::format("{}{}", command, force ? " force" : "");
        // A flush is answered after the daemon's next probe round: allow for
        // a long probe_interval (the daemon keeps such a request 120s).
        const auto timeout = command == "flush" ? std::chrono::seconds(120) : std::chrono::seconds(30);
        const int done = mcctl_control(*socket, request, timeout, stdout, stderr);
        if (!wait || done != 0) return done;
        // The wait reads the state file, even when -S named the socket.
        if (path.empty() && !state_path(path)) return kExitUnusable;
        waiting.server = words[0];
        waiting.move = move;
        return mcctl_drain_wait(path, waiting, stdout, stderr);
    }
    return usage_error(fmt::format("unknown command '{}'", command));
}
