// Probes every configured memcached, all at once, from one thread:
// non-blocking sockets on one epoll set, one deadline per round. A connection
// is kept from one round to the next and dropped after any failure, so a late
// answer can never pass for the next round's. Most probes send `version` (is
// it alive); `stats` (its facts) goes at most every stats_interval, and on
// every new connection, so a restart (which breaks the kept connection) is
// seen by the next probe. Between rounds a single server can be probed out of
// its round (a client's hint), on the same descriptors and epoll set.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/stats_parser.hpp"

namespace mcwatch {

struct ProbeResult {
    bool ok = false;
    // The connection was refused, or the unix socket does not exist: known at
    // once, without waiting for the deadline.
    bool refused = false;
    // From this server's request's send to the arrival of its reply's end (the
    // kernel's receive timestamp where it gives one, so that the time the
    // daemon spends on the other servers of the round is not counted). Set
    // when ok.
    std::chrono::microseconds rtt{};
    // Set when ok: read now (stats_fetched) or kept from the last `stats`
    // (with the version just read).
    StatsReply stats;
    bool stats_fetched = false;
    // Probed out of its round after a client's hint (or one that followed it).
    bool hint_triggered = false;
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
    // stats_interval 0: `stats` every probe. Fails without an epoll or eventfd descriptor.
    static Result<std::unique_ptr<Prober>> create(std::vector<ServerAddress> servers, Millis timeout,
                                                  Millis stats_interval = Millis(0));
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

    // Starts a probe of one server now, out of any round, unless one is
    // already in flight for it (then that one is marked hint_triggered).
    // Its result comes from wait(); a round that starts meanwhile takes the
    // probe over and returns its result with the others.
    void probe_now(size_t index);

    // Between rounds: waits up to max_wait for the side channel, out-of-round
    // probes and kept connections' events, and returns the out-of-round
    // probes that ended (index, result). Never longer than max_wait.
    std::vector<std::pair<size_t, ProbeResult>> wait(Millis max_wait);

    // Another descriptor to serve while a round waits (the daemon's
    // EventLoop): when it is readable, on_ready runs. It must not block; the
    // round's deadline is unchanged.
    void set_side_channel(int fd, std::function<void()> on_ready);

private:
    struct Server;  // prober.cpp

    Prober(Millis timeout, Millis stats_interval);
    void add_servers(std::vector<ServerAddress> servers);
    // Reads what already arrived, then fails with a timeout whatever is still unanswered.
    void expire(Server& server);
    void begin_probe(Server& server, bool flush);
    void dispatch(const epoll_event& event);
    void finish(Server& server);
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
    void complete(Server& server, size_t reply_length);
    void succeed(Server& server);
    void fail(Server& server, std::string error, bool refused = false);
    void fail_answered(Server& server, std::string error);
    void close_connection(Server& server);

    std::vector<Server> servers_;
    Millis timeout_;
    Millis stats_interval_;
    bool in_round_ = false;
    std::vector<ProbeResult> round_results_;
    std::vector<std::pair<size_t, ProbeResult>> finished_out_of_round_;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;   // eventfd, written when a name lookup finishes
    size_t active_ = 0;  // servers of the current round not done yet
    int side_fd_ = -1;
    std::function<void()> side_ready_;
};

}  // namespace mcwatch
