#include "daemon/control_server.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "daemon/log.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch {

namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int err) { return std::strerror(err); }

PeerCredentials credentials_of(int fd) {
    PeerCredentials peer;
    ucred cred{};
    socklen_t length = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0) {
        peer.pid = cred.pid;
        peer.uid = cred.uid;
        peer.gid = cred.gid;
    } else {
        // Unknown peer: nobody, so that the access check refuses it.
        peer.uid = peer.gid = uint32_t(-1);
    }
    gid_t groups[64];
    socklen_t size = sizeof groups;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &size) == 0)
        peer.groups.assign(groups, groups + size / sizeof(gid_t));
    return peer;
}

// Another process accepting on `path` (a running mcwatchd) must keep it; a
// socket nobody listens on is what a crashed daemon leaves behind.
std::string remove_stale_socket(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return errno == ENOENT ? "" : fmt::format("cannot stat {}: {}", path, errno_text(errno));
    if (!S_ISSOCK(st.st_mode)) return fmt::format("control_socket {} exists and is not a socket", path);
    SocketAddress address;
    ServerAddress::unix_socket_address(path, address);  // open() checked its length
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return fmt::format("socket: {}", errno_text(errno));
    const bool in_use = connect(probe, address.get(), address.length) == 0;
    const int err = errno;
    ::close(probe);
    if (in_use) return fmt::format("control_socket {} is in use by another process (another mcwatchd?)", path);
    if (err != ECONNREFUSED) return fmt::format("control_socket {}: {}", path, errno_text(err));
    if (::unlink(path.c_str()) != 0)
        return fmt::format("cannot remove stale control socket {}: {}", path, errno_text(errno));
    return "";
}

std::string request_word(const std::optional<ControlRequest>& request) {
    return request ? control_command_name(request->command) : "-";
}

}  // namespace

bool peer_allowed(const PeerCredentials& peer, const ControlAccess& access) {
    if (peer.uid == 0 || peer.uid == access.daemon_uid) return true;
    if (!access.admin_gid) return false;
    if (peer.gid == *access.admin_gid) return true;
    return std::find(peer.groups.begin(), peer.groups.end(), *access.admin_gid) != peer.groups.end();
}

ControlServer::ControlServer(EventLoop& loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
    while (!connections_.empty()) close_connection(connections_.begin()->first);
    if (listen_fd_ < 0) return;
    loop_.remove(listen_fd_);
    ::close(listen_fd_);
    // Only our own socket: a successor may already have put its own there.
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_) ::unlink(path_.c_str());
}

std::string ControlServer::open(const std::string& path, const RunAs& owner, uint32_t group, ControlAccess access) {
    access_ = std::move(access);
    SocketAddress address;
    if (!ServerAddress::unix_socket_address(path, address))
        return fmt::format("control_socket {}: path too long (over {} bytes)", path, kMaxUnixPathLength);
    if (std::string why = remove_stale_socket(path); !why.empty()) return why;
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fmt::format("socket: {}", errno_text(errno));
    // Created 0600 and only then opened to the group: nobody else can slip
    // in between bind and chmod.
    const mode_t old_mask = ::umask(0177);
    const int bound = ::bind(fd, address.get(), address.length);
    const int bind_errno = errno;
    ::umask(old_mask);
    std::string why;
    struct stat st {};
    if (bound != 0) why = fmt::format("cannot bind control_socket {}: {}", path, errno_text(bind_errno));
    // No chown when nothing changes: a unit may forbid the system call.
    else if ((owner.uid != geteuid() || group != getegid()) && ::lchown(path.c_str(), owner.uid, group) != 0)
        why = fmt::format("cannot give control_socket {} to uid {} gid {}: {}", path, owner.uid, group,
                          errno_text(errno));
    else if (::chmod(path.c_str(), 0660) != 0)
        why = fmt::format("cannot chmod control_socket {}: {}", path, errno_text(errno));
    else if (::lstat(path.c_str(), &st) != 0)
        why = fmt::format("cannot stat control_socket {}: {}", path, errno_text(errno));
    else if (::listen(fd, 16) != 0)
        why = fmt::format("cannot listen on control_socket {}: {}", path, errno_text(errno));
    else if (!loop_.add(fd, EPOLLIN, [this](uint32_t) { accept_all(); }))
        why = fmt::format("epoll_ctl: {}", errno_text(errno));
    if (!why.empty()) {
        ::close(fd);
        if (bound == 0) ::unlink(path.c_str());
        return why;
    }
    listen_fd_ = fd;
    path_ = path;
    device_ = st.st_dev;
    inode_ = st.st_ino;
    return "";
}

void ControlServer::accept_all() {
    for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;  // EAGAIN, or out of descriptors: the rest wait in the backlog
        }
        const Ticket ticket = ++next_ticket_;
        Connection& connection = connections_[ticket];
        connection.fd = fd;
        connection.peer = credentials_of(fd);
        connection.deadline = Clock::now() + kRequestTimeout;
        if (!loop_.add(fd, EPOLLIN, [this, ticket](uint32_t events) { on_event(ticket, events); })) {
            ::close(fd);
            connections_.erase(ticket);
            continue;
        }
        if (!peer_allowed(connection.peer, access_)) {
            answer(ticket,
                   fmt::format("error permission denied: uid {} is not root, mcwatchd's user (uid {}){}",
                               connection.peer.uid, access_.daemon_uid,
                               access_.admin_gid ? fmt::format(" or in admin_group {}", access_.admin_group)
                                                 : " (admin_group is not set)"),
                   "denied");
        } else if (connections_.size() > kMaxConnections) {
            answer(ticket, fmt::format("error busy: more than {} control connections", kMaxConnections), "busy");
        }
    }
}

void ControlServer::on_event(Ticket ticket, uint32_t events) {
    const auto it = connections_.find(ticket);
    if (it == connections_.end()) return;
    Connection& connection = it->second;
    if (!connection.out.empty()) {
        if (events & (EPOLLERR | EPOLLHUP)) return close_connection(ticket);
        return flush_out(ticket);
    }
    if (connection.request) {
        // Waiting for a deferred reply: only a hang-up can happen here.
        if (events & (EPOLLERR | EPOLLHUP)) {
            loop_.remove(connection.fd);
            ::close(connection.fd);
            connection.fd = -1;
        }
        return;
    }
    receive(ticket);
}

void ControlServer::receive(Ticket ticket) {
    Connection& connection = connections_[ticket];
    char chunk[1024];
    for (;;) {
        const ssize_t n = recv(connection.fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            // End of the request without a newline: take what came, if anything.
            if (n == 0 && !connection.in.empty()) return handle_line(ticket, connection.in);
            return close_connection(ticket);
        }
        connection.in.append(chunk, size_t(n));
        const size_t newline = connection.in.find('\n');
        if (newline != std::string::npos)
            return handle_line(ticket, std::string_view(connection.in).substr(0, newline));
        if (connection.in.size() > kMaxControlRequestBytes + 1)
            return answer(ticket, fmt::format("error request longer than {} bytes", kMaxControlRequestBytes),
                          "bad_request");
    }
}

void ControlServer::handle_line(Ticket ticket, std::string_view line) {
    ControlParse parsed = parse_control_request(line);
    if (!parsed.request) return answer(ticket, "error " + parsed.error, "bad_request");
    Connection& connection = connections_[ticket];
    connection.request = std::move(parsed.request);
    connection.in.clear();
    connection.deadline = Clock::now() + kReplyTimeout;
    loop_.modify(connection.fd, 0);  // no more input; a hang-up is still reported
    const std::optional<std::string> now = handler_(*connection.request, ticket);
    if (now) reply(ticket, *now);
}

void ControlServer::reply(Ticket ticket, const std::string& line) {
    answer(ticket, line, line.rfind("ok", 0) == 0 ? "ok" : "error");
}

void ControlServer::answer(Ticket ticket, const std::string& line, const char* status) {
    const auto it = connections_.find(ticket);
    if (it == connections_.end()) return;
    Connection& connection = it->second;
    const bool ok = std::strcmp(status, "ok") == 0;
    const std::string uid = fmt::format("{}", connection.peer.uid);
    const std::string pid = fmt::format("{}", connection.peer.pid);
    const std::string command = request_word(connection.request);
    const std::string server =
        connection.request && !connection.request->server.empty() ? connection.request->server : "-";
    const std::string_view message = std::string_view(line).substr(std::min(line.find(' '), line.size() - 1) + 1);
    log_event(ok ? "info" : "warning", "control",
              {{"command", command},
               {"server", server},
               {"uid", uid},
               {"pid", pid},
               {"status", status},
               {"detail", message}});
    if (connection.fd < 0) {
        connections_.erase(it);
        return;
    }
    connection.out = line + "\n";
    connection.sent = 0;
    connection.deadline = Clock::now() + kRequestTimeout;
    flush_out(ticket);
}

void ControlServer::flush_out(Ticket ticket) {
    Connection& connection = connections_[ticket];
    if (!send_pending(connection.fd, connection.out, connection.sent)) {
        loop_.modify(connection.fd, EPOLLOUT);
        return;
    }
    // A flood cut short leaves unread input.
    discard_unread_input(connection.fd);
    close_connection(ticket);
}

void ControlServer::close_connection(Ticket ticket) {
    const auto it = connections_.find(ticket);
    if (it == connections_.end()) return;
    if (it->second.fd >= 0) {
        loop_.remove(it->second.fd);
        ::close(it->second.fd);
    }
    connections_.erase(it);
}

void ControlServer::expire(Clock::time_point now) {
    std::vector<Ticket> late;
    for (const auto& [ticket, connection] : connections_)
        if (now >= connection.deadline) late.push_back(ticket);
    for (const Ticket ticket : late) {
        const Connection& connection = connections_[ticket];
        if (!connection.request && connection.out.empty())
            log_event("warning", "control",
                      {{"uid", fmt::format("{}", connection.peer.uid)},
                       {"pid", fmt::format("{}", connection.peer.pid)},
                       {"status", "timeout"},
                       {"detail", fmt::format("no complete request within {}s", kRequestTimeout.count())}});
        close_connection(ticket);
    }
}

}  // namespace mcwatch
