// Probes every configured memcached with `stats`, all at once, from one
// thread: non-blocking sockets on one epoll set, one deadline per round. A
// connection is kept from one round to the next and dropped after any failure,
// so a late answer can never pass for the next round's.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "daemon/stats_parser.hpp"

namespace mcwatch {

struct ProbeResult {
    bool ok = false;
    // The connection was refused, or the unix socket does not exist: known at
    // once, without waiting for the deadline.
    bool refused = false;
    // From the request's send to the reply's END, on steady_clock. Set when ok.
    std::chrono::microseconds rtt{};
    StatsReply stats;  // set when ok
    // flush_all was asked for and memcached answered OK (the stats that
    // follow may still have failed: then ok is false).
    bool flushed = false;
    // flush_all was asked for and memcached refused it with an error line,
    // quoted here (`memcached -F`: "CLIENT_ERROR flush_all not allowed").
    // The stats that follow may still have succeeded.
    std::string flush_refused;
    // Not ok, but memcached answered with one of its error lines (in
    // `error`) instead of stats: it is up and serving, it only would not
    // serve this probe (at its connection limit it answers "ERROR Too many
    // open connections" and closes). Not a sign of death.
    bool answered_error = false;
    // Numeric address of the endpoint last tried, "1.2.3.4:11211" or
    // "[::1]:11211"; "" for unix sockets and names not resolved yet.
    std::string resolved;
    // Why the probe failed, for logs and the state file: "connection refused",
    // "timeout after 250ms (no reply)", "closed mid-reply (37 bytes)",
    // "cannot resolve name: ...", the parser's messages, ... "" when ok.
    std::string error;
};

class Prober {
public:
    // Throws std::system_error if it cannot get an epoll or eventfd descriptor.
    Prober(std::vector<ServerAddress> servers, Millis timeout);
    ~Prober();  // closes every descriptor; abandons name lookups still running
    Prober(const Prober&) = delete;
    Prober& operator=(const Prober&) = delete;

    // One round: sends `stats` to every server at once (preceded, pipelined,
    // by `flush_all` where flush_first[i] is true; missing entries are false),
    // waits until every server answered or failed or the timeout passed, and
    // returns one result per server, in configuration order. Returns within
    // about the timeout whatever the peers or the resolver do. A reply
    // already received when the timeout passes counts: only servers with
    // nothing (or part of a reply) to read have timed out.
    std::vector<ProbeResult> run_round(const std::vector<bool>& flush_first);

    // Another descriptor to serve while a round waits (the daemon's
    // EventLoop): when it is readable, on_ready runs. It must not block; the
    // round's deadline is unchanged.
    void set_side_channel(int fd, std::function<void()> on_ready);

private:
    struct Server;  // prober.cpp

    void begin_probe(Server& server, bool flush);
    void drop_stale_connection(Server& server);
    void start_resolution(Server& server);
    void collect_resolution(Server& server);
    void start_connecting(Server& server);
    void connect_next(Server& server);
    void on_connect_ready(Server& server);
    void start_exchange(Server& server);
    void send_request(Server& server);
    void receive_reply(Server& server);
    void parse_reply(Server& server);
    void handle_event(Server& server, uint32_t events);
    void watch(Server& server, uint32_t events);
    void succeed(Server& server);
    void fail(Server& server, std::string error, bool refused = false);
    void fail_answered(Server& server, std::string error);
    void close_connection(Server& server);

    std::vector<Server> servers_;
    Millis timeout_;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;   // eventfd, written when a name lookup finishes
    size_t active_ = 0;  // servers of the current round not done yet
    int side_fd_ = -1;
    std::function<void()> side_ready_;
};

}  // namespace mcwatch
