// mcctl: the operator's view of mcwatchd's state file, and its commands.
#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "control.hpp"
#include "duration.hpp"
#include "route.hpp"
#include "snapshot.hpp"
#include "status.hpp"
#include "version.hpp"
#include "watch.hpp"

namespace {

constexpr const char* kUsage =
    "usage: mcctl [-s STATE_FILE] [-c CONFIG] [-S SOCKET] COMMAND [ARGS]\n"
    "  status [--json]        servers, their state and facts; exit 0 all live, 1 some not, 2 stale/unusable\n"
    "  watch [-n INTERVAL] [--count N]   redraw the status and list changes until Ctrl-C\n"
    "  dump                   every raw header and slot field\n"
    "  route [--json] KEY...  where each key goes now and why (- reads keys from stdin);\n"
    "                         servers and routing from the state file, or from -c CONFIG\n"
    "  drain SERVER           route its keys elsewhere; clients move its values on a miss\n"
    "  undrain SERVER         end a drain: flush_all, then live and recently down\n"
    "  down SERVER            mark it dead whatever probes say\n"
    "  up SERVER              clear drain or down: probes decide again (a rejoin)\n"
    "  flush SERVER           send it flush_all now (with the next probe)\n"
    "  reload                 re-read mcwatchd's configuration (as SIGHUP)\n"
    "  ping                   check that mcwatchd answers on its control socket\n"
    "  --version\n"
    "STATE_FILE defaults to $MCSHIM_STATE, else /run/mcwatchd/state. SOCKET defaults to\n"
    "CONFIG's control_socket with -c, else `control` beside STATE_FILE.\n"
    "Commands exit 0 when done, 1 when mcwatchd refused, 2 when it cannot be reached.\n";

int usage_error(const std::string& message) {
    fmt::print(stderr, "mcctl: {}\n{}", message, kUsage);
    return mcwatch::kExitUsage;
}

bool is_control_command(const std::string& command, bool& takes_server) {
    for (const char* name : {"drain", "undrain", "down", "up", "flush"})
        if (command == name) return takes_server = true;
    takes_server = false;
    return command == "reload" || command == "ping";
}

}  // namespace

int main(int argc, char** argv) {
    using namespace mcwatch;
    const char* from_env = secure_getenv("MCSHIM_STATE");
    std::string state_path = from_env && *from_env ? from_env : "/run/mcwatchd/state";
    const char* explicit_state = nullptr;   // -s
    const char* config_path = nullptr;      // -c
    const char* explicit_socket = nullptr;  // -S
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; ++i) {
        const std::string arg = argv[i];
        if (arg == "--version") {
            fmt::print("mcctl {}\n", kVersion);
            return 0;
        }
        if (arg == "-h" || arg == "--help") {
            fmt::print("{}", kUsage);
            return 0;
        }
        if (arg == "-s" && i + 1 < argc) state_path = explicit_state = argv[++i];
        else if (arg == "-c" && i + 1 < argc) config_path = argv[++i];
        else if (arg == "-S" && i + 1 < argc) explicit_socket = argv[++i];
        else return usage_error(fmt::format("unknown option '{}'", arg));
    }
    if (i >= argc) return usage_error("missing command");
    const std::string command = argv[i++];

    if (command == "status") {
        bool as_json = false;
        for (; i < argc; ++i) {
            if (std::strcmp(argv[i], "--json") == 0) as_json = true;
            else return usage_error(fmt::format("status: unknown argument '{}'", argv[i]));
        }
        return mcctl_status(state_path, as_json);
    }
    if (command == "watch") {
        std::chrono::milliseconds interval{1000};
        long count = 0;
        for (; i < argc; ++i) {
            const std::string arg = argv[i];
            if (arg == "-n" && i + 1 < argc) {
                std::string why;
                const auto parsed = parse_duration(argv[++i], why);
                if (!parsed || parsed->count() == 0) return usage_error("watch -n: " + (why.empty() ? "must be > 0" : why));
                interval = *parsed;
            } else if (arg == "--count" && i + 1 < argc) {
                count = std::strtol(argv[++i], nullptr, 10);
            } else {
                return usage_error(fmt::format("watch: unknown argument '{}'", arg));
            }
        }
        return mcctl_watch(state_path, interval, count);
    }
    if (command == "dump") {
        if (i < argc) return usage_error("dump takes no arguments");
        return mcctl_dump(state_path);
    }
    if (command == "route") return mcctl_route(explicit_state, config_path, argc - i, argv + i);

    bool takes_server = false;
    if (is_control_command(command, takes_server)) {
        // drain and down: `--force` goes past min_live_servers.
        const bool may_force = command == "drain" || command == "down";
        bool force = false;
        std::vector<const char*> words;
        for (; i < argc; ++i) {
            if (may_force && std::strcmp(argv[i], "--force") == 0) force = true;
            else words.push_back(argv[i]);
        }
        if (takes_server && words.size() != 1)
            return usage_error(fmt::format("{} needs one SERVER (host:port){}", command, may_force ? " and maybe --force" : ""));
        if (!takes_server && !words.empty()) return usage_error(fmt::format("{} takes no arguments", command));
        std::string error;
        const std::string socket = control_socket_path(explicit_socket, config_path, state_path, error);
        if (socket.empty()) {
            fmt::print(stderr, "mcctl: {}\n", error);
            return kExitUnusable;
        }
        const std::string request =
            takes_server ? fmt::format("{} {}{}", command, words[0], force ? " force" : "") : command;
        // A flush is answered after the daemon's next probe round: allow for
        // a long probe_interval (the daemon keeps such a request 120s).
        const auto timeout = command == "flush" ? std::chrono::seconds(120) : std::chrono::seconds(30);
        return mcctl_control(socket, request, timeout, stdout, stderr);
    }
    return usage_error(fmt::format("unknown command '{}'", command));
}
