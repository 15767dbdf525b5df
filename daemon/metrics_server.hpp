// The metrics endpoint: a minimal HTTP/1.0 responder for GET /metrics on
// metrics_listen. Non-blocking, bounded (request head size, connections,
// time), served from the daemon's EventLoop; every answer closes the
// connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/socket_server.hpp"

namespace mcwatch {

// What the metrics endpoint keeps of each connection.
struct MetricsSession {
    std::string peer;        // see metrics_peer.hpp
    bool head_only = false;  // HEAD: its answer, held until rendering resumes, has no body
};

class MetricsServer final : private SocketServer<MetricsSession> {
public:
    using Render = std::function<std::string()>;

    // Listens on host:port (numeric) and serves it on `loop`.
    static Result<std::unique_ptr<MetricsServer>> open(EventLoop& loop, Render render, const std::string& host,
                                                       uint16_t port);

    using SocketServer::expire;

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
    MetricsServer(EventLoop& loop, Render render);

    // A new connection from its peer, served if fair, after making room for it.
    std::optional<MetricsSession> admit(int fd) override;
    void on_input(Id id, bool ended) override;

    void respond(Id id, int status, const std::string& reason, bool head_only);
    const std::string& body();

    Render render_;
    std::string body_;  // the last text rendered
    bool body_fresh_ = false;
    bool rendering_paused_ = false;
};

}  // namespace mcwatch
