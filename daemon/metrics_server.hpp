// The metrics endpoint: a minimal HTTP/1.0 responder for GET /metrics on
// metrics_listen. Non-blocking, bounded (request head size, connections,
// time), served from the daemon's EventLoop; every answer closes the
// connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "daemon/event_loop.hpp"

namespace mcwatch {

class MetricsServer {
public:
    using Render = std::function<std::string()>;

    MetricsServer(EventLoop& loop, Render render);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // Listens on host:port (numeric). "" or why not.
    std::string open(const std::string& host, uint16_t port);

    void expire(std::chrono::steady_clock::time_point now);

    // The metrics text is rendered at most once per change of what it
    // shows, and never while a probe round waits for replies (one render of
    // a thousand servers takes tens of milliseconds: scrapes in a loop would
    // starve the round and get healthy servers published dead). The daemon
    // says when the text changed (a round's end, a command), and pauses
    // rendering for a round: a scrape that needs a new text meanwhile is
    // answered when the round ends, every other one from the cached text.
    void content_changed() { body_fresh_ = false; }
    void pause_rendering() { rendering_paused_ = true; }
    void resume_rendering();

    // At most this many connections at once, and per peer (a local user,
    // or a remote address: see metrics_peer.hpp). When all are taken, a
    // newcomer takes the oldest connection of the peer holding the most, so
    // that no one peer can keep the others out.
    static constexpr size_t kMaxConnections = 16;
    static constexpr size_t kMaxConnectionsPerPeer = 4;
    static constexpr std::chrono::seconds kTimeout{5};

private:
    struct Connection {
        int fd = -1;
        std::string peer;
        std::string in;
        std::string out;
        size_t sent = 0;
        std::chrono::steady_clock::time_point deadline;
        bool awaiting_body = false;  // answered 200 when rendering resumes
        bool head_only = false;
    };

    void accept_all();
    // Whether a new connection from `peer` may be served, after making room for it if fair.
    bool admit(const std::string& peer);
    void on_event(uint64_t id, uint32_t events);
    void respond(uint64_t id, int status, const std::string& reason, bool head_only);
    const std::string& body();
    void flush_out(uint64_t id);
    void close_connection(uint64_t id);

    EventLoop& loop_;
    Render render_;
    int listen_fd_ = -1;
    uint64_t next_id_ = 0;
    std::map<uint64_t, Connection> connections_;
    std::string body_;  // the last text rendered
    bool body_fresh_ = false;
    bool rendering_paused_ = false;
};

}  // namespace mcwatch
