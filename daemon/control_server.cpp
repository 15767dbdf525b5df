#include "daemon/control_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/errno_text.hpp"
#include "daemon/log.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch {

namespace {

using Clock = std::chrono::steady_clock;

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
Result<> remove_stale_socket(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return {};
        return failure(fmt::format("cannot stat {}: {}", path, errno_text()));
    }
    if (!S_ISSOCK(st.st_mode)) return failure(fmt::format("control_socket {} exists and is not a socket", path));
    SocketAddress address;
    ServerAddress::unix_socket_address(path, address);  // open() checked its length
    const UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) return failure(fmt::format("socket: {}", errno_text()));
    const bool in_use = connect(probe.get(), address.get(), address.length) == 0;
    const int err = errno;
    if (in_use) return failure(fmt::format("control_socket {} is in use by another process (another mcwatchd?)", path));
    if (err != ECONNREFUSED) return failure(fmt::format("control_socket {}: {}", path, errno_text(err)));
    if (::unlink(path.c_str()) != 0)
        return failure(fmt::format("cannot remove stale control socket {}: {}", path, errno_text()));
    return {};
}

struct BoundSocket {
    UniqueFd fd;
    struct stat file;  // the socket file, to remove only our own
};

// A listening socket at `path`, owner:group, mode 0660.
Result<BoundSocket> bind_control_socket(const std::string& path, const RunAs& owner, uint32_t group) {
    SocketAddress address;
    if (!ServerAddress::unix_socket_address(path, address))
        return failure(fmt::format("control_socket {}: path too long (over {} bytes)", path, kMaxUnixPathLength));
    if (Result<> removed = remove_stale_socket(path); !removed) return tl::unexpected(removed.error());
    BoundSocket bound{UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)), {}};
    if (!bound.fd) return failure(fmt::format("socket: {}", errno_text()));
    // Created 0600 and only then opened to the group: nobody else can slip
    // in between bind and chmod.
    const mode_t old_mask = ::umask(0177);
    const int bind_result = ::bind(bound.fd.get(), address.get(), address.length);
    const int bind_errno = errno;
    ::umask(old_mask);
    if (bind_result != 0)
        return failure(fmt::format("cannot bind control_socket {}: {}", path, errno_text(bind_errno)));
    std::string why;
    // No chown when nothing changes: a unit may forbid the system call.
    if ((owner.uid != geteuid() || group != getegid()) && ::lchown(path.c_str(), owner.uid, group) != 0)
        why = fmt::format("cannot give control_socket {} to uid {} gid {}: {}", path, owner.uid, group, errno_text());
    else if (::chmod(path.c_str(), 0660) != 0)
        why = fmt::format("cannot chmod control_socket {}: {}", path, errno_text());
    else if (::lstat(path.c_str(), &bound.file) != 0)
        why = fmt::format("cannot stat control_socket {}: {}", path, errno_text());
    else if (::listen(bound.fd.get(), 16) != 0)
        why = fmt::format("cannot listen on control_socket {}: {}", path, errno_text());
    if (!why.empty()) {
        ::unlink(path.c_str());
        return failure(std::move(why));
    }
    return bound;
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

ControlServer::ControlServer(EventLoop& loop, Handler handler, ControlAccess access)
    : SocketServer(loop, kRequestTimeout), handler_(std::move(handler)), access_(std::move(access)) {}

Result<std::unique_ptr<ControlServer>> ControlServer::open(EventLoop& loop, Handler handler, const std::string& path,
                                                           const RunAs& owner, uint32_t group, ControlAccess access) {
    Result<BoundSocket> bound = bind_control_socket(path, owner, group);
    if (!bound) return tl::unexpected(bound.error());
    std::unique_ptr<ControlServer> server(new ControlServer(loop, std::move(handler), std::move(access)));
    if (Result<> served = server->serve(std::move(bound->fd)); !served) {
        ::unlink(path.c_str());
        return tl::unexpected(served.error());
    }
    server->path_ = path;
    server->device_ = bound->file.st_dev;
    server->inode_ = bound->file.st_ino;
    return server;
}

ControlServer::~ControlServer() {
    // Only our own socket: a successor may already have put its own there.
    struct stat st {};
    if (!path_.empty() && ::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_)
        ::unlink(path_.c_str());
}

std::optional<ControlSession> ControlServer::admit(int fd) { return ControlSession{credentials_of(fd), {}}; }

void ControlServer::on_accepted(Ticket ticket) {
    const PeerCredentials& peer = connections_.at(ticket).session.peer;
    if (!peer_allowed(peer, access_)) {
        answer_with(
            ticket,
            ControlReply::error(fmt::format(
                "permission denied: uid {} is not root, mcwatchd's user (uid {}){}", peer.uid, access_.daemon_uid,
                access_.admin_gid ? fmt::format(" or in admin_group {}", access_.admin_group)
                                  : " (admin_group is not set)")),
            "denied");
    } else if (connections_.size() > kMaxConnections) {
        answer_with(ticket, ControlReply::error(fmt::format("busy: more than {} control connections", kMaxConnections)),
                    "busy");
    }
}

void ControlServer::on_input(Ticket ticket, bool ended) {
    const std::string& in = connections_.at(ticket).in;
    // The end of input ends a request without a newline (`nc -N`).
    if (ended) return handle_line(ticket, in);
    const size_t newline = in.find('\n');
    if (newline != std::string::npos) return handle_line(ticket, std::string_view(in).substr(0, newline));
    if (in.size() > kMaxControlRequestBytes + 1)
        answer_with(ticket, ControlReply::error(fmt::format("request longer than {} bytes", kMaxControlRequestBytes)),
                    "bad_request");
}

void ControlServer::handle_line(Ticket ticket, std::string_view line) {
    ControlParse parsed = parse_control_request(line);
    if (!parsed.request) return answer_with(ticket, ControlReply::error(parsed.error), "bad_request");
    Connection& connection = connections_.at(ticket);
    connection.session.request = std::move(parsed.request);
    connection.in.clear();
    connection.deadline = Clock::now() + kReplyTimeout;
    hold(ticket);
    const std::optional<ControlReply> now = handler_(*connection.session.request, ticket);
    if (now) reply(ticket, *now);
}

// The daemon still answers (and logs) a command whose peer hung up.
void ControlServer::on_peer_left(Ticket ticket) { drop_socket(ticket); }

void ControlServer::on_expired(const Connection& connection) {
    if (connection.session.request || !connection.out.empty()) return;
    log_event("warning", "control",
              {{"uid", fmt::format("{}", connection.session.peer.uid)},
               {"pid", fmt::format("{}", connection.session.peer.pid)},
               {"status", "timeout"},
               {"detail", fmt::format("no complete request within {}s", kRequestTimeout.count())}});
}

void ControlServer::reply(Ticket ticket, const ControlReply& reply) {
    answer_with(ticket, reply, control_status_name(reply.status));
}

void ControlServer::answer_with(Ticket ticket, const ControlReply& reply, const char* log_status) {
    const Connection* connection = find(ticket);
    if (!connection) return;
    const ControlSession& session = connection->session;
    log_event(reply.status == ControlStatus::ok ? "info" : "warning", "control",
              {{"command", request_word(session.request)},
               {"server", session.request && !session.request->server.empty() ? session.request->server : "-"},
               {"uid", fmt::format("{}", session.peer.uid)},
               {"pid", fmt::format("{}", session.peer.pid)},
               {"status", log_status},
               {"detail", reply.text}});
    answer(ticket, control_reply_line(reply) + "\n");
}

}  // namespace mcwatch
