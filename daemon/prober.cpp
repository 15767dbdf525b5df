#include "daemon/prober.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <system_error>
#include <thread>

#include "common/errno_text.hpp"

namespace mcwatch {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kWakeTag = UINT64_MAX;      // epoll data of the eventfd; never a server's tag
constexpr uint64_t kSideTag = UINT64_MAX - 1;  // the side channel's; index UINT32_MAX is no server
constexpr std::string_view kStatsRequest = "stats\r\n";
constexpr std::string_view kFlushThenStatsRequest = "flush_all\r\nstats\r\n";
// The liveness probe of most rounds: every memcached since 1.2 answers it with
// one short line (the meta no-op `mn` is cheaper still, but 1.4 and 1.5 answer
// it with ERROR), and it keeps the version mcctl status shows current.
constexpr std::string_view kVersionRequest = "version\r\n";

int64_t realtime_ns() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    return int64_t(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

struct Endpoint {
    sockaddr_storage address{};
    socklen_t length = 0;
    std::string text;  // "1.2.3.4:11211", "[::1]:11211"; "" for unix sockets
};

std::vector<Endpoint> endpoints_from(const addrinfo* list) {
    std::vector<Endpoint> endpoints;
    for (const addrinfo* info = list; info != nullptr; info = info->ai_next) {
        if (info->ai_family != AF_INET && info->ai_family != AF_INET6) continue;
        if (info->ai_addrlen > sizeof(sockaddr_storage)) continue;
        Endpoint endpoint;
        std::memcpy(&endpoint.address, info->ai_addr, info->ai_addrlen);
        endpoint.length = info->ai_addrlen;
        endpoint.text = ServerAddress::numeric_text(info->ai_addr);
        endpoints.push_back(std::move(endpoint));
    }
    return endpoints;
}

addrinfo stream_hints(int flags) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags | AI_NUMERICSERV;
    return hints;
}

// One name lookup, run by getaddrinfo on a thread of its own. (Not
// getaddrinfo_a: glibc starts its helper thread behind the sanitizers' back,
// and ThreadSanitizer crashes inside it.) The thread and the prober both hold
// the lookup and the last one to let go frees it: a Prober destroyed while a
// lookup still runs (it cannot be cancelled) leaves nothing dangling.
struct Resolution {
    std::string name;
    std::string service;
    addrinfo hints{};
    addrinfo* result = nullptr;
    std::atomic<int> status{EAI_INPROGRESS};  // getaddrinfo's answer once done
    int wake_fd = -1;                         // our own dup of the prober's eventfd: valid as long as we are
    std::atomic<int> holders{2};

    ~Resolution() {
        if (result != nullptr) freeaddrinfo(result);
        if (wake_fd >= 0) close(wake_fd);
    }
    void release() {
        if (holders.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
};

// The lookup's thread: resolves, then wakes epoll_wait.
void resolve(Resolution* resolution) {
    addrinfo* found = nullptr;
    const int rc = getaddrinfo(resolution->name.c_str(), resolution->service.c_str(), &resolution->hints, &found);
    resolution->result = found;
    resolution->status.store(rc, std::memory_order_release);
    const uint64_t one = 1;
    if (write(resolution->wake_fd, &one, sizeof one) < 0) {
        // Only a full counter (impossible) could fail; the prober also polls the status.
    }
    resolution->release();
}

// Why a connect failed, and whether that counts as refused (known at once,
// nobody listening) rather than as a failure of some other kind.
std::string connect_error_text(int err, bool is_unix, bool& refused) {
    refused = false;
    if (err == ECONNREFUSED) {
        refused = true;
        return "connection refused";
    }
    if (is_unix && err == ENOENT) {
        refused = true;
        return "no such unix socket";
    }
    // A non-blocking connect to a unix socket never waits: EAGAIN is a full backlog.
    if (is_unix && err == EAGAIN) return "connect: listen queue full";
    return fmt::format("connect: {}", errno_text(err));
}

enum class Phase { done, resolving, connecting, exchanging };

enum class Request { version, stats, flush_then_stats };

}  // namespace

struct Prober::Server {
    ServerAddress address;
    uint32_t index = 0;
    bool is_name = false;       // a hostname, looked up on a thread of its own
    std::string address_error;  // the address cannot be used: every probe fails with this
    // Cached; for names, cleared after a failure so that the next connect
    // looks the name up again (the server may have moved).
    std::vector<Endpoint> endpoints;
    Resolution* resolution = nullptr;  // lookup in flight, may outlive a round

    // Connection, kept across rounds while it behaves.
    int fd = -1;
    bool registered = false;  // fd is in the epoll set
    std::string peer;         // the endpoint's text, for ProbeResult::resolved
    // Bumped per socket and carried in epoll events, so that an event of a
    // closed socket is never applied to a newer one with the same fd number.
    uint32_t serial = 0;

    // The current round.
    Phase phase = Phase::done;
    size_t endpoint_index = 0;   // next endpoint to try
    bool all_refused = true;     // every endpoint tried this round refused
    std::string connect_error;   // of the last endpoint tried
    bool in_round = false;       // its result belongs to the current round
    bool hinted = false;         // a hint asked for this probe (or came while it ran)
    Clock::time_point deadline;  // of a probe out of any round
    bool flush = false;
    bool flush_answered = false;
    Request kind = Request::stats;
    std::string_view request;
    size_t request_sent = 0;
    std::string reply;
    size_t stats_start = 0;   // offset of the stats reply in `reply`, after "OK\r\n"
    size_t stats_parsed = 0;  // parse_stats progress
    Clock::time_point sent_at;
    int64_t sent_at_realtime_ns = 0;
    int64_t reply_arrival_ns = 0;  // the kernel's receive timestamp of the last bytes read, realtime
    ProbeResult result;

    // The last `stats` reply, which the `version` probes between carry on.
    StatsReply last_stats;
    bool have_stats = false;
    Clock::time_point last_stats_at;
};

Prober::Prober(Millis timeout, Millis stats_interval) : timeout_(timeout), stats_interval_(stats_interval) {}

Result<std::unique_ptr<Prober>> Prober::create(std::vector<ServerAddress> servers, Millis timeout,
                                               Millis stats_interval) {
    std::unique_ptr<Prober> prober(new Prober(timeout, stats_interval));
    prober->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (prober->epoll_fd_ < 0) return failure(fmt::format("epoll_create1: {}", errno_text(errno)));
    prober->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (prober->wake_fd_ < 0) return failure(fmt::format("eventfd: {}", errno_text(errno)));
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kWakeTag;
    if (epoll_ctl(prober->epoll_fd_, EPOLL_CTL_ADD, prober->wake_fd_, &event) != 0)
        return failure(fmt::format("epoll_ctl: {}", errno_text(errno)));
    prober->add_servers(std::move(servers));
    return prober;
}

void Prober::add_servers(std::vector<ServerAddress> servers) {
    servers_.resize(servers.size());
    for (size_t i = 0; i < servers.size(); ++i) {
        Server& server = servers_[i];
        server.address = std::move(servers[i]);
        server.index = uint32_t(i);
        const ServerAddress& address = server.address;
        if (address.is_unix) {
            SocketAddress socket;
            if (!ServerAddress::unix_socket_address(address.host, socket)) {
                server.address_error = fmt::format("unix socket path too long (over {} bytes)", kMaxUnixPathLength);
                continue;
            }
            Endpoint endpoint;
            endpoint.address = socket.storage;
            endpoint.length = socket.length;
            server.endpoints.push_back(std::move(endpoint));
            continue;
        }
        // A numeric address is converted here, once, without any lookup.
        const addrinfo hints = stream_hints(AI_NUMERICHOST);
        addrinfo* list = nullptr;
        const std::string service = std::to_string(address.port);
        const int rc = getaddrinfo(address.host.c_str(), service.c_str(), &hints, &list);
        if (rc == 0) {
            server.endpoints = endpoints_from(list);
            freeaddrinfo(list);
        } else if (rc == EAI_NONAME) {
            server.is_name = true;
        } else {
            server.address_error = fmt::format("bad address: {}", gai_strerror(rc));
        }
    }
}

Prober::~Prober() {
    for (Server& server : servers_) {
        close_connection(server);
        if (server.resolution != nullptr) server.resolution->release();
    }
    if (wake_fd_ >= 0) close(wake_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
}

void Prober::set_side_channel(int fd, std::function<void()> on_ready) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kSideTag;
    if (side_fd_ >= 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, side_fd_, nullptr);
    side_fd_ = -1;
    if (fd < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) return;
    side_fd_ = fd;
    side_ready_ = std::move(on_ready);
}

std::vector<ProbeResult> Prober::run_round(const std::vector<bool>& flush_first) {
    in_round_ = true;
    active_ = 0;
    round_results_.assign(servers_.size(), ProbeResult{});
    for (size_t i = 0; i < servers_.size(); ++i) {
        Server& server = servers_[i];
        const bool flush = i < flush_first.size() && flush_first[i];
        server.in_round = true;
        ++active_;
        // An out-of-round probe still running is this round's probe of that
        // server, unless the round must send flush_all: then it starts over.
        if (server.phase != Phase::done && !flush) continue;
        if (server.phase != Phase::done) close_connection(server);
        begin_probe(server, flush);
    }
    // Counted from the last probe's start, not the first's: starting a
    // thousand probes takes the daemon tens of milliseconds, on a busy host
    // more, and that time is not the servers' to answer in. From the round's
    // start, one slow round published hundreds of live servers dead at once.
    const Clock::time_point deadline = Clock::now() + timeout_;

    std::array<epoll_event, 64> events;
    while (active_ > 0) {
        const Clock::time_point now = Clock::now();
        if (now >= deadline) break;
        const auto left = std::chrono::ceil<Millis>(deadline - now).count();
        const int count =
            epoll_wait(epoll_fd_, events.data(), int(events.size()), int(std::min<decltype(left)>(left, INT_MAX)));
        if (count < 0) {
            if (errno == EINTR) continue;
            const std::string error = fmt::format("epoll_wait: {}", errno_text(errno));
            for (Server& server : servers_) {
                if (server.phase != Phase::done) fail(server, error);
            }
            break;
        }
        for (int k = 0; k < count; ++k) dispatch(events[k]);
        for (Server& server : servers_) {
            if (server.phase == Phase::resolving) collect_resolution(server);
        }
    }

    // A reply that arrived is never a timeout. The deadline may pass while
    // replies wait unread in socket buffers (the daemon was serving the side
    // channel, or was not scheduled): read what is there before judging.
    for (Server& server : servers_) {
        if (server.in_round && server.phase != Phase::done) expire(server);
    }
    in_round_ = false;
    for (Server& server : servers_) server.in_round = false;
    return std::move(round_results_);
}

void Prober::expire(Server& server) {
    if (server.phase == Phase::exchanging) handle_event(server, EPOLLIN | EPOLLOUT);
    if (server.phase == Phase::done) return;
    std::string what;
    switch (server.phase) {
    case Phase::resolving: what = "resolving name"; break;
    case Phase::connecting: what = "connecting"; break;
    default: what = server.reply.empty() ? "no reply" : fmt::format("partial reply: {} bytes", server.reply.size());
    }
    fail(server, fmt::format("timeout after {}ms ({})", timeout_.count(), what));
}

void Prober::dispatch(const epoll_event& event) {
    const uint64_t tag = event.data.u64;
    if (tag == kWakeTag) {
        uint64_t counter = 0;
        if (read(wake_fd_, &counter, sizeof counter) < 0) {
            // EAGAIN: drained already.
        }
        return;
    }
    if (tag == kSideTag) {
        if (side_ready_) side_ready_();
        return;
    }
    const size_t index = size_t(tag >> 32);
    if (index >= servers_.size()) return;
    Server& server = servers_[index];
    if (server.fd < 0 || server.serial != uint32_t(tag)) return;  // closed since
    handle_event(server, event.events);
}

void Prober::probe_now(size_t index) {
    if (index >= servers_.size()) return;
    Server& server = servers_[index];
    server.hinted = true;
    if (server.phase != Phase::done) return;  // its probe, in a round or not, is under way
    server.in_round = false;
    server.deadline = Clock::now() + timeout_;
    begin_probe(server, false);
}

std::vector<std::pair<size_t, ProbeResult>> Prober::wait(Millis max_wait) {
    Clock::time_point until = Clock::now() + max_wait;
    for (const Server& server : servers_)
        if (server.phase != Phase::done) until = std::min(until, server.deadline);
    const auto left = std::max<int64_t>(0, std::chrono::ceil<Millis>(until - Clock::now()).count());
    std::array<epoll_event, 64> events;
    const int count = epoll_wait(epoll_fd_, events.data(), int(events.size()), int(std::min<int64_t>(left, INT_MAX)));
    for (int k = 0; k < count; ++k) dispatch(events[k]);
    const Clock::time_point now = Clock::now();
    for (Server& server : servers_) {
        if (server.phase == Phase::resolving) collect_resolution(server);
        if (server.phase != Phase::done && now >= server.deadline) expire(server);
    }
    return std::move(finished_out_of_round_);
}

void Prober::begin_probe(Server& server, bool flush) {
    server.phase = Phase::connecting;  // until we know better; fail() ends it
    server.result = ProbeResult{};
    server.flush = flush;
    server.flush_answered = false;
    server.request_sent = 0;
    server.reply.clear();
    server.stats_start = 0;
    server.stats_parsed = 0;
    server.reply_arrival_ns = 0;

    if (!server.address_error.empty()) return fail(server, server.address_error);
    drop_stale_connection(server);
    // `stats` on a new connection: a restart breaks the kept one, so the
    // probe after it compares the new pid and uptime.
    const bool stats_due = flush || server.fd < 0 || !server.have_stats || stats_interval_.count() <= 0 ||
                           Clock::now() - server.last_stats_at >= stats_interval_;
    server.kind = flush ? Request::flush_then_stats : stats_due ? Request::stats : Request::version;
    server.request = flush ? kFlushThenStatsRequest : stats_due ? kStatsRequest : kVersionRequest;
    if (server.fd >= 0) {
        server.result.resolved = server.peer;
        return start_exchange(server);
    }
    if (server.is_name && server.endpoints.empty()) return start_resolution(server);
    start_connecting(server);
}

// A kept connection is reused only if nothing happened on it since the last
// reply: bytes nobody asked for, or the peer's close, mean it is out of step.
void Prober::drop_stale_connection(Server& server) {
    if (server.fd < 0) return;
    char byte;
    const ssize_t n = recv(server.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    close_connection(server);
}

void Prober::start_resolution(Server& server) {
    server.phase = Phase::resolving;
    if (server.resolution == nullptr) {
        auto* resolution = new Resolution;
        resolution->name = server.address.host;
        resolution->service = std::to_string(server.address.port);
        resolution->hints = stream_hints(0);
        resolution->wake_fd = fcntl(wake_fd_, F_DUPFD_CLOEXEC, 0);
        if (resolution->wake_fd < 0) {
            const int err = errno;
            delete resolution;
            return fail(server, fmt::format("cannot resolve name: {}", errno_text(err)));
        }
        try {
            std::thread(resolve, resolution).detach();
        } catch (const std::system_error& e) {  // no thread: nobody will notify
            delete resolution;
            return fail(server, fmt::format("cannot resolve name: {}", e.what()));
        }
        server.resolution = resolution;
    }
    collect_resolution(server);
}

void Prober::collect_resolution(Server& server) {
    Resolution* resolution = server.resolution;
    const int rc = resolution->status.load(std::memory_order_acquire);
    if (rc == EAI_INPROGRESS) return;
    server.resolution = nullptr;
    if (rc == 0) server.endpoints = endpoints_from(resolution->result);
    resolution->release();
    if (rc != 0) return fail(server, fmt::format("cannot resolve name: {}", gai_strerror(rc)));
    if (server.endpoints.empty()) {
        return fail(server, "cannot resolve name: no IPv4 or IPv6 address");
    }
    start_connecting(server);
}

void Prober::start_connecting(Server& server) {
    server.endpoint_index = 0;
    server.all_refused = true;
    server.connect_error = "no address to connect to";
    connect_next(server);
}

// Tries the endpoints in the resolver's order until one connects or is
// connecting; "localhost" may give ::1 first to a memcached bound to 127.0.0.1.
void Prober::connect_next(Server& server) {
    while (server.endpoint_index < server.endpoints.size()) {
        const Endpoint& endpoint = server.endpoints[server.endpoint_index++];
        server.result.resolved = endpoint.text;
        server.peer = endpoint.text;
        const int fd = socket(endpoint.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            server.connect_error = fmt::format("socket: {}", errno_text(errno));
            server.all_refused = false;
            continue;
        }
        server.fd = fd;
        ++server.serial;
        // The kernel stamps each reply's arrival: the rtt is then the
        // server's, not the time this thread took to come round to it.
        const int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        const auto* address = reinterpret_cast<const sockaddr*>(&endpoint.address);
        if (connect(fd, address, endpoint.length) == 0) return start_exchange(server);
        // EINTR: the connection goes on in the background, as with EINPROGRESS.
        if (errno == EINPROGRESS || errno == EINTR) {
            server.phase = Phase::connecting;
            watch(server, EPOLLOUT);
            return;
        }
        bool refused = false;
        server.connect_error = connect_error_text(errno, server.address.is_unix, refused);
        server.all_refused = server.all_refused && refused;
        close_connection(server);
    }
    fail(server, server.connect_error, server.all_refused && server.endpoint_index > 0);
}

void Prober::on_connect_ready(Server& server) {
    int err = 0;
    socklen_t length = sizeof err;
    if (getsockopt(server.fd, SOL_SOCKET, SO_ERROR, &err, &length) != 0) err = errno;
    if (err == 0) return start_exchange(server);
    bool refused = false;
    server.connect_error = connect_error_text(err, server.address.is_unix, refused);
    server.all_refused = server.all_refused && refused;
    close_connection(server);
    connect_next(server);
}

void Prober::start_exchange(Server& server) {
    server.phase = Phase::exchanging;
    server.request_sent = 0;
    server.sent_at = Clock::now();
    server.sent_at_realtime_ns = realtime_ns();
    send_request(server);
}

void Prober::send_request(Server& server) {
    while (server.request_sent < server.request.size()) {
        const ssize_t n = send(server.fd, server.request.data() + server.request_sent,
                               server.request.size() - server.request_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            server.request_sent += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return fail(server, "connection reset");
        }
        return fail(server, fmt::format("send: {}", n < 0 ? errno_text(errno) : "no progress"));
    }
    watch(server, server.request_sent < server.request.size() ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

void Prober::receive_reply(Server& server) {
    // Never hold more than a reply may be: past this the parser says oversized.
    const size_t cap = server.kind == Request::version ? kMaxVersionReplyBytes
                       : server.kind == Request::stats ? kMaxStatsReplyBytes
                                                       : kMaxFlushReplyBytes + kMaxStatsReplyBytes;
    std::array<char, 16384> chunk;
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(timespec))> control;
    bool eof = false;
    int err = 0;
    while (server.reply.size() < cap) {
        const size_t room = std::min(chunk.size(), cap - server.reply.size());
        iovec vector{chunk.data(), room};
        msghdr message{};
        message.msg_iov = &vector;
        message.msg_iovlen = 1;
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        const ssize_t n = recvmsg(server.fd, &message, MSG_DONTWAIT);
        if (n > 0) {
            server.reply.append(chunk.data(), size_t(n));
            for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
                timespec stamp{};
                std::memcpy(&stamp, CMSG_DATA(c), sizeof stamp);
                server.reply_arrival_ns = int64_t(stamp.tv_sec) * 1'000'000'000 + stamp.tv_nsec;
            }
            continue;
        }
        if (n == 0) {
            eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            err = errno;
        }
        break;
    }
    // A reply that arrived whole counts even if the peer closed right after it.
    parse_reply(server);
    if (server.phase != Phase::exchanging) return;
    // memcached at its connection limit answers with an error line and closes.
    if ((eof || err != 0) && !server.result.flush_refused.empty())
        return fail_answered(server, server.result.flush_refused);
    if (err == ECONNRESET || err == EPIPE) return fail(server, "connection reset");
    if (err != 0) return fail(server, fmt::format("recv: {}", errno_text(err)));
    if (eof && server.reply.empty()) return fail(server, "connection closed (no reply)");
    if (eof) return fail(server, fmt::format("closed mid-reply ({} bytes)", server.reply.size()));
}

void Prober::parse_reply(Server& server) {
    std::string error;
    if (server.kind == Request::version) {
        size_t consumed = 0;
        std::string version;
        switch (parse_version_reply(server.reply, version, consumed, error)) {
        case ParseStatus::need_more: return;
        case ParseStatus::error: return fail(server, std::move(error));
        case ParseStatus::answered_error: return fail_answered(server, std::move(error));
        case ParseStatus::complete: break;
        }
        // The facts of the last `stats`. Not even the uptime is advanced:
        // memcached's own clock ticks once a second, late, and an uptime
        // guessed a second ahead of its next answer would read as a restart.
        server.result.stats = server.last_stats;
        server.result.stats.version = std::move(version);
        return complete(server, consumed);
    }
    if (server.flush && !server.flush_answered) {
        size_t consumed = 0;
        switch (parse_flush_reply(server.reply, consumed, error)) {
        case ParseStatus::need_more: return;
        case ParseStatus::error: return fail(server, "flush_all: " + error);
        case ParseStatus::answered_error:
            server.flush_answered = true;
            server.result.flush_refused = std::move(error);
            server.stats_start = consumed;
            break;
        case ParseStatus::complete:
            server.flush_answered = true;
            server.result.flushed = true;
            server.stats_start = consumed;
        }
    }
    const std::string_view stats = std::string_view(server.reply).substr(server.stats_start);
    switch (parse_stats(stats, server.result.stats, server.stats_parsed, error)) {
    case ParseStatus::need_more: return;
    case ParseStatus::error: return fail(server, std::move(error));
    case ParseStatus::answered_error: return fail_answered(server, std::move(error));
    case ParseStatus::complete:
        server.last_stats = server.result.stats;
        server.last_stats_at = Clock::now();
        server.have_stats = true;
        server.result.stats_fetched = true;
        return complete(server, server.stats_start + server.stats_parsed);
    }
}

void Prober::complete(Server& server, size_t reply_length) {
    const int64_t kernel_rtt_ns = server.reply_arrival_ns - server.sent_at_realtime_ns;
    // Without the kernel's stamp (a unix socket), or if the wall clock
    // stepped in between: this thread's clock, an upper bound.
    server.result.rtt =
        server.reply_arrival_ns != 0 && kernel_rtt_ns >= 0 &&
                std::chrono::nanoseconds(kernel_rtt_ns) <= Clock::now() - server.sent_at
            ? std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::nanoseconds(kernel_rtt_ns))
            : std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - server.sent_at);
    const bool out_of_step = reply_length < server.reply.size();
    succeed(server);
    // Bytes after the reply that nobody asked for: the next reply could not be trusted.
    if (out_of_step) close_connection(server);
}

void Prober::handle_event(Server& server, uint32_t events) {
    switch (server.phase) {
    case Phase::connecting: return on_connect_ready(server);
    case Phase::exchanging:
        if ((events & EPOLLOUT) && server.request_sent < server.request.size()) {
            send_request(server);
            if (server.phase != Phase::exchanging) return;
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) receive_reply(server);
        return;
    case Phase::done:
    case Phase::resolving:
        // A kept connection between probes: the peer closed it or failed.
        return close_connection(server);
    }
}

void Prober::watch(Server& server, uint32_t events) {
    epoll_event event{};
    event.events = events;
    event.data.u64 = (uint64_t(server.index) << 32) | server.serial;
    const int op = server.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epoll_fd_, op, server.fd, &event) == 0) {
        server.registered = true;
        return;
    }
    const std::string error = fmt::format("epoll_ctl: {}", errno_text(errno));
    if (server.phase == Phase::done) return close_connection(server);
    fail(server, error);
}

void Prober::succeed(Server& server) {
    server.result.ok = true;
    server.result.error.clear();
    finish(server);
    // Kept for the next round, silent meanwhile: with no events asked for,
    // epoll still reports a hang-up or an error, and we close it then.
    watch(server, 0);
}

void Prober::fail(Server& server, std::string error, bool refused) {
    server.result.ok = false;
    server.result.refused = refused;
    server.result.error = std::move(error);
    server.result.rtt = {};
    server.result.stats = StatsReply{};
    close_connection(server);
    if (server.is_name) server.endpoints.clear();
    finish(server);
}

void Prober::finish(Server& server) {
    server.phase = Phase::done;
    server.result.hint_triggered = server.hinted;
    server.hinted = false;
    if (server.in_round) {
        --active_;
        round_results_[server.index] = std::move(server.result);
    } else {
        finished_out_of_round_.emplace_back(server.index, std::move(server.result));
    }
    server.result = ProbeResult{};
}

// The server answered: it is the right one, its name needs no new lookup.
void Prober::fail_answered(Server& server, std::string error) {
    std::vector<Endpoint> endpoints = std::move(server.endpoints);
    server.result.answered_error = true;
    fail(server, std::move(error));
    server.endpoints = std::move(endpoints);
}

void Prober::close_connection(Server& server) {
    if (server.fd < 0) return;
    if (server.registered) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, server.fd, nullptr);
    close(server.fd);
    server.fd = -1;
    server.registered = false;
}

}  // namespace mcwatch
