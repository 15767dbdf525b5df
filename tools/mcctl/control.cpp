#include "tools/mcctl/control.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "common/config.hpp"
#include "libshim/server_address.hpp"
#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

namespace {

constexpr int kExitRefused = 1;
constexpr size_t kMaxReplyBytes = 65536;

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string connect_advice(int err, const std::string& path) {
    switch (err) {
    case ENOENT:
        return fmt::format("no control socket at {}: is mcwatchd running? (its control_socket; -S SOCKET or -c CONFIG)",
                           path);
    case ECONNREFUSED: return fmt::format("nobody listens on {}: mcwatchd is not running", path);
    case EACCES:
        return fmt::format("permission denied on {}: run as root, as mcwatchd's user or as a member of its admin_group",
                           path);
    default: return fmt::format("cannot connect to {}: {}", path, std::strerror(err));
    }
}

}  // namespace

std::string control_socket_path(const char* explicit_socket, const char* config_path, const std::string& state_path,
                                std::string& error) {
    if (explicit_socket) return explicit_socket;
    if (config_path) {
        const ConfigResult loaded = load_config(config_path);
        if (!loaded.config) {
            error = loaded.error;
            return "";
        }
        return loaded.config->control_socket;
    }
    const size_t slash = state_path.rfind('/');
    if (slash == std::string::npos) return "control";
    return state_path.substr(0, slash == 0 ? 1 : slash) + (slash == 0 ? "" : "/") + "control";
}

int mcctl_control(const std::string& socket_path, const std::string& request, std::chrono::milliseconds timeout,
                  std::FILE* out, std::FILE* err) {
    SocketAddress address;
    if (!ServerAddress::unix_socket_address(socket_path, address)) {
        fmt::print(err, "mcctl: control socket path too long (over {} bytes): {}\n", kMaxUnixPathLength, socket_path);
        return kExitUnusable;
    }
    Fd sock{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    if (sock.fd < 0 || ::connect(sock.fd, address.get(), address.length) != 0) {
        fmt::print(err, "mcctl: {}\n", connect_advice(errno, socket_path));
        return kExitUnusable;
    }
    const std::string line = request + "\n";
    // A peer it refuses is answered (and left) at once, maybe before the
    // request is sent: the answer is still there to read.
    const bool sent = ::send(sock.fd, line.data(), line.size(), MSG_NOSIGNAL) == ssize_t(line.size());
    const int send_errno = errno;
    // The daemon answers a flush after its next probe round, a reload after
    // re-reading its file: wait that long, not forever.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string reply;
    while (reply.find('\n') == std::string::npos && reply.size() < kMaxReplyBytes) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{sock.fd, POLLIN, 0};
        const int ready = left.count() > 0 ? ::poll(&p, 1, int(left.count())) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            fmt::print(err, "mcctl: no answer from mcwatchd on {} within {}s\n", socket_path, timeout.count() / 1000);
            return kExitUnusable;
        }
        char chunk[4096];
        const ssize_t n = ::recv(sock.fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        reply.append(chunk, size_t(n));
    }
    if (reply.empty() && !sent) {
        fmt::print(err, "mcctl: cannot send to {}: {}\n", socket_path, std::strerror(send_errno));
        return kExitUnusable;
    }
    if (reply.empty()) {
        fmt::print(err, "mcctl: mcwatchd on {} closed the connection without answering\n", socket_path);
        return kExitUnusable;
    }
    reply = reply.substr(0, reply.find('\n'));
    if (reply.rfind("ok", 0) == 0) {
        fmt::print(out, "{}\n", reply.size() > 3 ? reply.substr(3) : "ok");
        return 0;
    }
    if (reply.rfind("error ", 0) == 0) {
        fmt::print(err, "mcctl: {}\n", reply.substr(6));
        return kExitRefused;
    }
    fmt::print(err, "mcctl: unexpected answer from mcwatchd on {}: '{}'\n", socket_path, reply.substr(0, 200));
    return kExitUnusable;
}

}  // namespace mcwatch
