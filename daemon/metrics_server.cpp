#include "daemon/metrics_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/errno_text.hpp"
#include "daemon/http_request.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_peer.hpp"

namespace mcwatch {

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

MetricsServer::MetricsServer(EventLoop& loop, Render render) : loop_(loop), render_(std::move(render)) {}

MetricsServer::~MetricsServer() {
    while (!connections_.empty()) close_connection(connections_.begin()->first);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_);
        ::close(listen_fd_);
    }
}

std::string MetricsServer::open(const std::string& host, uint16_t port) {
    sockaddr_storage address{};
    socklen_t length = 0;
    if (host.find(':') != std::string::npos) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1)
            return fmt::format("metrics_listen: bad address {}", host);
        length = sizeof *in6;
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&address);
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) != 1)
            return fmt::format("metrics_listen: bad address {}", host);
        length = sizeof *in4;
    }
    const int fd = socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fmt::format("metrics_listen: socket: {}", errno_text(errno));
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart while old connections linger
    const std::string where =
        address.ss_family == AF_INET6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
    std::string why;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0)
        why = fmt::format("metrics_listen: cannot listen on {}: {}", where, errno_text(errno));
    else if (::listen(fd, 16) != 0)
        why = fmt::format("metrics_listen: cannot listen on {}: {}", where, errno_text(errno));
    else if (!loop_.add(fd, EPOLLIN, [this](uint32_t) { accept_all(); }))
        why = fmt::format("epoll_ctl: {}", errno_text(errno));
    if (!why.empty()) {
        ::close(fd);
        return why;
    }
    listen_fd_ = fd;
    return "";
}

void MetricsServer::accept_all() {
    for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        std::string peer = metrics_peer_of(fd);
        if (!admit(peer)) {
            ::close(fd);  // a scraper retries; a flood gets nothing
            continue;
        }
        const uint64_t id = ++next_id_;
        Connection& connection = connections_[id];
        connection.fd = fd;
        connection.peer = std::move(peer);
        connection.deadline = Clock::now() + kTimeout;
        if (!loop_.add(fd, EPOLLIN, [this, id](uint32_t events) { on_event(id, events); })) {
            ::close(fd);
            connections_.erase(id);
        }
    }
}

bool MetricsServer::admit(const std::string& peer) {
    std::map<std::string, size_t> held;
    for (const auto& [id, connection] : connections_) ++held[connection.peer];
    const size_t newcomer_holds = held[peer];
    if (newcomer_holds >= kMaxConnectionsPerPeer) return false;
    if (connections_.size() < kMaxConnections) return true;
    const auto biggest =
        std::max_element(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    if (biggest->second <= newcomer_holds + 1) return false;  // already a fair share each
    for (const auto& [id, connection] : connections_) {       // ids grow: the first found is the oldest
        if (connection.peer == biggest->first) {
            close_connection(id);
            return true;
        }
    }
    return false;
}

void MetricsServer::on_event(uint64_t id, uint32_t events) {
    const auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Connection& connection = it->second;
    if (!connection.out.empty() || connection.awaiting_body) {
        if (events & (EPOLLERR | EPOLLHUP)) return close_connection(id);
        if (connection.awaiting_body) return;
        return flush_out(id);
    }
    char chunk[4096];
    for (;;) {
        const ssize_t n = recv(connection.fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) return close_connection(id);
        connection.in.append(chunk, size_t(n));
        if (const size_t end = http_head_end(connection.in); end > 0) {
            const HttpAnswer answer = route_http_request(std::string_view(connection.in).substr(0, end));
            return respond(id, answer.status, answer.reason, answer.head_only);
        }
        if (connection.in.size() > kMaxHttpHeadBytes) return respond(id, 431, "Request Header Fields Too Large", false);
    }
}

const std::string& MetricsServer::body() {
    if (!body_fresh_) {
        body_ = render_();
        body_fresh_ = true;
    }
    return body_;
}

void MetricsServer::resume_rendering() {
    rendering_paused_ = false;
    std::vector<std::pair<uint64_t, bool>> waiting;
    for (const auto& [id, connection] : connections_)
        if (connection.awaiting_body) waiting.emplace_back(id, connection.head_only);
    for (const auto& [id, head_only] : waiting) respond(id, 200, "OK", head_only);
}

void MetricsServer::respond(uint64_t id, int status, const std::string& reason, bool head_only) {
    Connection& connection = connections_[id];
    if (status == 200 && !body_fresh_ && rendering_paused_) {
        connection.awaiting_body = true;
        connection.head_only = head_only;
        loop_.modify(connection.fd, 0);  // hang-ups and errors are still reported
        return;
    }
    connection.awaiting_body = false;
    const std::string error_body =
        status == 200 ? "" : fmt::format("{} {}{}\n", status, reason, status == 404 ? ": metrics are at /metrics" : "");
    const std::string& body = status == 200 ? this->body() : error_body;
    connection.out =
        fmt::format("HTTP/1.0 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", status,
                    reason, status == 200 ? kMetricsContentType : "text/plain; charset=utf-8", body.size());
    if (!head_only) connection.out += body;
    connection.sent = 0;
    connection.deadline = Clock::now() + kTimeout;
    flush_out(id);
}

void MetricsServer::flush_out(uint64_t id) {
    Connection& connection = connections_[id];
    if (!send_pending(connection.fd, connection.out, connection.sent)) {
        loop_.modify(connection.fd, EPOLLOUT);
        return;
    }
    ::shutdown(connection.fd, SHUT_WR);
    // Request bytes we did not read.
    discard_unread_input(connection.fd);
    close_connection(id);
}

void MetricsServer::close_connection(uint64_t id) {
    const auto it = connections_.find(id);
    if (it == connections_.end()) return;
    loop_.remove(it->second.fd);
    ::close(it->second.fd);
    connections_.erase(it);
}

void MetricsServer::expire(Clock::time_point now) {
    std::vector<uint64_t> late;
    for (const auto& [id, connection] : connections_)
        if (now >= connection.deadline) late.push_back(id);
    for (const uint64_t id : late) close_connection(id);
}

}  // namespace mcwatch
