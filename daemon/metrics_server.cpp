#include "daemon/metrics_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <vector>

#include "common/errno_text.hpp"
#include "daemon/http_request.hpp"
#include "daemon/metrics.hpp"
#include "daemon/metrics_peer.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch {

namespace {

// A listening socket on host:port (numeric).
Result<UniqueFd> listen_on(const std::string& host, uint16_t port) {
    SocketAddress address;
    if (!ServerAddress::numeric_socket_address(host, port, address))
        return failure(fmt::format("metrics_listen: bad address {}", host));
    UniqueFd fd(socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return failure(fmt::format("metrics_listen: socket: {}", errno_text()));
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart while old connections linger
    const std::string where =
        address.storage.ss_family == AF_INET6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
    if (::bind(fd.get(), address.get(), address.length) != 0 || ::listen(fd.get(), 16) != 0)
        return failure(fmt::format("metrics_listen: cannot listen on {}: {}", where, errno_text()));
    return fd;
}

}  // namespace

MetricsServer::MetricsServer(EventLoop& loop, Render render)
    : SocketServer(loop, kTimeout), render_(std::move(render)) {}

Result<std::unique_ptr<MetricsServer>> MetricsServer::open(EventLoop& loop, Render render, const std::string& host,
                                                           uint16_t port) {
    Result<UniqueFd> listening = listen_on(host, port);
    if (!listening) return tl::unexpected(listening.error());
    std::unique_ptr<MetricsServer> server(new MetricsServer(loop, std::move(render)));
    if (Result<> served = server->serve(std::move(*listening)); !served) return tl::unexpected(served.error());
    return server;
}

std::optional<MetricsSession> MetricsServer::admit(int fd) {
    std::string peer = metrics_peer_of(fd);
    std::map<std::string, size_t> held;
    for (const auto& [id, connection] : connections_) ++held[connection.session.peer];
    const size_t newcomer_holds = held[peer];
    if (newcomer_holds >= kMaxConnectionsPerPeer) return std::nullopt;
    if (connections_.size() < kMaxConnections) return MetricsSession{std::move(peer)};
    const auto biggest =
        std::max_element(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    if (biggest->second <= newcomer_holds + 1) return std::nullopt;  // already a fair share each
    for (const auto& [id, connection] : connections_) {              // ids grow: the first found is the oldest
        if (connection.session.peer == biggest->first) {
            close_connection(id);
            return MetricsSession{std::move(peer)};
        }
    }
    return std::nullopt;
}

void MetricsServer::on_input(Id id, bool ended) {
    if (ended) return close_connection(id);  // no complete head: nothing to answer
    const std::string& in = connections_.at(id).in;
    if (const size_t end = http_head_end(in); end > 0) {
        const HttpAnswer answer = route_http_request(std::string_view(in).substr(0, end));
        return respond(id, answer.status, answer.reason, answer.head_only);
    }
    if (in.size() > kMaxHttpHeadBytes) respond(id, 431, "Request Header Fields Too Large", false);
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
    std::vector<std::pair<Id, bool>> waiting;
    for (const auto& [id, connection] : connections_)
        if (connection.held) waiting.emplace_back(id, connection.session.head_only);
    for (const auto& [id, head_only] : waiting) respond(id, 200, "OK", head_only);
}

void MetricsServer::respond(Id id, int status, const std::string& reason, bool head_only) {
    if (status == 200 && !body_fresh_ && rendering_paused_) {
        connections_.at(id).session.head_only = head_only;
        return hold(id);  // answered when rendering resumes
    }
    const std::string error_body =
        status == 200 ? "" : fmt::format("{} {}{}\n", status, reason, status == 404 ? ": metrics are at /metrics" : "");
    const std::string& body = status == 200 ? this->body() : error_body;
    std::string out =
        fmt::format("HTTP/1.0 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", status,
                    reason, status == 200 ? kMetricsContentType : "text/plain; charset=utf-8", body.size());
    if (!head_only) out += body;
    answer(id, std::move(out));
}

}  // namespace mcwatch
