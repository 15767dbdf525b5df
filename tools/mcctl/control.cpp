#include "tools/mcctl/control.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

#include "common/config.hpp"
#include "common/control_reply.hpp"
#include "common/errno_text.hpp"
#include "libshim/unique_fd.hpp"
#include "libshim/server_address.hpp"
#include "tools/mcctl/snapshot.hpp"

namespace mcwatch {

namespace {

constexpr int kExitRefused = 1;
constexpr size_t kMaxReplyBytes = 65536;

std::string connect_advice(int err, const std::string& path) {
    switch (err) {
    case ENOENT:
        return fmt::format("no control socket at {}: is mcwatchd running? (its control_socket; -S SOCKET or -c CONFIG)",
                           path);
    case ECONNREFUSED: return fmt::format("nobody listens on {}: mcwatchd is not running", path);
    case EACCES:
        return fmt::format("permission denied on {}: run as root, as mcwatchd's user or as a member of its admin_group",
                           path);
    default: return fmt::format("cannot connect to {}: {}", path, errno_text(err));
    }
}

}  // namespace

Result<std::string> control_socket_path(const char* explicit_socket, const char* config_path,
                                        const std::string& state_path) {
    if (explicit_socket) return explicit_socket;
    if (config_path) {
        const auto loaded = load_config(config_path);
        if (!loaded) return failure(loaded.error().message);
        return loaded->control_socket;
    }
    return control_socket_beside(state_path);
}

int mcctl_control(const std::string& socket_path, const std::string& request, std::chrono::milliseconds timeout,
                  std::FILE* out, std::FILE* err) {
    SocketAddress address;
    if (!ServerAddress::unix_socket_address(socket_path, address)) {
        fmt::print(err, "mcctl: control socket path too long (over {} bytes): {}\n", kMaxUnixPathLength, socket_path);
        return kExitUnusable;
    }
    const UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock || ::connect(sock.get(), address.get(), address.length) != 0) {
        fmt::print(err, "mcctl: {}\n", connect_advice(errno, socket_path));
        return kExitUnusable;
    }
    const std::string line = request + "\n";
    // A peer it refuses is answered (and left) at once, maybe before the
    // request is sent: the answer is still there to read.
    const bool sent = ::send(sock.get(), line.data(), line.size(), MSG_NOSIGNAL) == ssize_t(line.size());
    const int send_errno = errno;
    // The daemon answers a flush after its next probe round, a reload after
    // re-reading its file: wait that long, not forever.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string reply;
    while (reply.find('\n') == std::string::npos && reply.size() < kMaxReplyBytes) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{sock.get(), POLLIN, 0};
        const int ready = left.count() > 0 ? ::poll(&p, 1, int(left.count())) : 0;
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            fmt::print(err, "mcctl: no answer from mcwatchd on {} within {}s\n", socket_path, timeout.count() / 1000);
            return kExitUnusable;
        }
        char chunk[4096];
        const ssize_t n = ::recv(sock.get(), chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        reply.append(chunk, size_t(n));
    }
    if (reply.empty() && !sent) {
        fmt::print(err, "mcctl: cannot send to {}: {}\n", socket_path, errno_text(send_errno));
        return kExitUnusable;
    }
    if (reply.empty()) {
        fmt::print(err, "mcctl: mcwatchd on {} closed the connection without answering\n", socket_path);
        return kExitUnusable;
    }
    const std::string answer_line = reply.substr(0, reply.find('\n'));
    const Result<ControlReply> answer = parse_control_reply(answer_line);
    if (!answer) {
        fmt::print(err, "mcctl: unexpected answer from mcwatchd on {}: '{}'\n", socket_path,
                   answer_line.substr(0, 200));
        return kExitUnusable;
    }
    if (answer->status == ControlStatus::ok) {
        fmt::print(out, "{}\n", answer->text.empty() ? "ok" : answer->text);
        return 0;
    }
    fmt::print(err, "mcctl: {}\n", answer->text);
    return kExitRefused;
}

}  // namespace mcwatch
