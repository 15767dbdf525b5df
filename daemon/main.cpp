// mcwatchd [-c FILE] [-f] [-t] [--version] [--list-config-keys]
#include <fcntl.h>
#include <netdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/config.hpp"
#include "daemon/daemon.hpp"
#include "common/duration.hpp"
#include "common/result.hpp"
#include "daemon/log.hpp"
#include "daemon/privileges.hpp"
#include "common/version.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/mcwatchd.conf";
constexpr const char* kUsage =
    "usage: mcwatchd [-c FILE] [-f] [-t]\n"
    "       mcwatchd --version\n"
    "       mcwatchd --list-config-keys\n"
    "  -c FILE  configuration (INI), default /etc/mcwatchd.conf; see mcwatchd.conf(5)\n"
    "  -f       stay in the foreground (as under systemd)\n"
    "  -t       check the configuration and exit: 0 if valid, 1 with file:line: message\n"
    "  --list-config-keys  print every key mcwatchd.conf(5) may set, one a line, and exit\n";

// `-t`: a server name that does not resolve now is worth a warning, not a
// refusal (DNS may be down while the file is right; the daemon keeps
// trying and publishes the server dead meanwhile). All names are looked up
// at once, for 5 seconds at most, so that a silent resolver cannot hold -t.
void warn_unresolved_names(const mcwatch::Config& config) {
    std::vector<const mcwatch::ServerAddress*> named;
    for (const mcwatch::ServerAddress& server : config.servers)
        if (server.numeric().empty()) named.push_back(&server);
    if (named.empty()) return;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    std::vector<gaicb> requests(named.size());
    std::vector<gaicb*> list(named.size());
    for (size_t i = 0; i < named.size(); ++i) {
        requests[i] = gaicb{};
        requests[i].ar_name = named[i]->host.c_str();
        requests[i].ar_request = &hints;
        list[i] = &requests[i];
    }
    if (getaddrinfo_a(GAI_NOWAIT, list.data(), int(list.size()), nullptr) != 0) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        bool waiting = false;
        for (gaicb* request : list) waiting |= gai_error(request) == EAI_INPROGRESS;
        if (!waiting || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (size_t i = 0; i < named.size(); ++i) {
        const int status = gai_error(&requests[i]);
        if (status == EAI_INPROGRESS)
            gai_cancel(&requests[i]);
        else if (status == 0)
            freeaddrinfo(requests[i].ar_result);
        if (status == 0) continue;
        fmt::print(stderr,
                   "mcwatchd: warning: {}:{}: server {}: name does not resolve now ({}); mcwatchd will "
                   "keep trying and publish it dead until it does\n",
                   config.path, named[i]->line, named[i]->text,
                   status == EAI_INPROGRESS ? "no answer within 5s" : gai_strerror(status));
    }
    // A lookup still under way writes into `requests`: wait for the cancel.
    for (gaicb& request : requests)
        for (int i = 0; i < 250 && gai_error(&request) == EAI_INPROGRESS; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void on_signal(int signal) {
    if (signal == SIGHUP)
        mcwatch::Daemon::reload_requested = 1;
    else
        mcwatch::Daemon::stop_requested = 1;
}

void install_signal_handlers() {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    for (int signal : {SIGTERM, SIGINT, SIGHUP}) sigaction(signal, &action, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

// Detaches into the background before start-up, so that the pid in the lock
// and state files is the daemon's. The parent waits on a pipe: one byte means
// the child started; end of file means it failed (it printed why on the
// inherited stderr) and the parent exits with the child's status.
// Returns the pipe's write end in the child.
mcwatch::Result<int> detach() {
    const auto failed = [] { return mcwatch::failure(fmt::format("cannot detach: {}", std::strerror(errno))); };
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) return failed();
    const pid_t child = fork();
    if (child < 0) return failed();
    if (child > 0) {
        close(ready[1]);
        char byte = 0;
        if (read(ready[0], &byte, 1) == 1) _exit(0);
        int status = 0;
        waitpid(child, &status, 0);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    }
    close(ready[0]);
    setsid();
    if (chdir("/") != 0) return failed();
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        close(null);
    }
    return ready[1];
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bool foreground = false;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--version") {
            fmt::print("mcwatchd {}\n", mcwatch::kVersion);
            return 0;
        }
        if (arg == "--list-config-keys") {
            for (const mcwatch::ConfigKeyDoc& key : mcwatch::config_keys())
                fmt::print("{:<11}{:<21}{}\n", fmt::format("[{}]", key.section), key.name, key.documentation);
            return 0;
        }
        if (arg == "-h" || arg == "--help") {
            fmt::print("{}", kUsage);
            return 0;
        }
        if (arg == "-f")
            foreground = true;
        else if (arg == "-t")
            check_only = true;
        else if (arg == "-c" && i + 1 < argc)
            config_path = argv[++i];
        else {
            fmt::print(stderr, "mcwatchd: unknown argument '{}'\n{}", arg, kUsage);
            return 2;
        }
    }
    if (config_path.empty()) config_path = kDefaultConfig;

    auto loaded = mcwatch::load_config(config_path);
    if (!loaded) {
        fmt::print(stderr, "mcwatchd: {}\n", loaded.error().message);
        return 1;
    }
    const mcwatch::Config& config = *loaded;
    if (check_only) {
        warn_unresolved_names(config);
        fmt::print("{}: ok: {} servers, probe every {} (timeout {}), state file {}\n", config_path,
                   config.servers.size(), mcwatch::format_duration(config.probe_interval),
                   mcwatch::format_duration(config.probe_timeout), config.state_file);
        return 0;
    }

    if (mcwatch::Result<> enough = mcwatch::ensure_descriptor_limit(config.servers.size()); !enough) {
        fmt::print(stderr, "mcwatchd: {}\n", enough.error().message);
        return 1;
    }
    // Reloads read the file again, after detach() moved to "/".
    if (loaded->path[0] != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd) == nullptr) {
            fmt::print(stderr, "mcwatchd: cannot tell the absolute path of {}: {}\n", config_path,
                       std::strerror(errno));
            return 1;
        }
        loaded->path = fmt::format("{}/{}", cwd, loaded->path);
    }
    // In the foreground nobody waits for the byte that says it started.
    const mcwatch::Result<int> ready = foreground ? mcwatch::Result<int>(-1) : detach();
    if (!ready) {
        fmt::print(stderr, "mcwatchd: {}\n", ready.error().message);
        return 1;
    }
    install_signal_handlers();
    mcwatch::Daemon daemon(std::move(*loaded));
    // A second daemon or a bad state directory is reported to the caller
    // with exit status 1, in the foreground or not.
    if (mcwatch::Result<> started = daemon.start(); !started) {
        fmt::print(stderr, "mcwatchd: {}\n", started.error().message);
        return 1;
    }
    if (*ready >= 0) {
        const char byte = 1;
        if (write(*ready, &byte, 1) != 1) return 1;
        close(*ready);
    }
    return daemon.run();
}
