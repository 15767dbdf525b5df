// mcwatchd's control socket: a unix stream socket, mode 0660, where mcctl
// sends one request line per connection and reads one reply line. Peers are
// checked with SO_PEERCRED (root, the daemon's user, or admin_group); every
// request, refused or not, is logged with the peer's uid. Non-blocking and
// bounded: served from the daemon's EventLoop, never holding up a round.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/control_reply.hpp"
#include "common/result.hpp"
#include "daemon/control_request.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/privileges.hpp"
#include "daemon/socket_server.hpp"

namespace mcwatch {

struct PeerCredentials {
    int pid = 0;
    uint32_t uid = 0;
    uint32_t gid = 0;
    std::vector<uint32_t> groups;  // supplementary (SO_PEERGROUPS)
};

// Who may send commands besides root.
struct ControlAccess {
    uint32_t daemon_uid = 0;
    std::optional<uint32_t> admin_gid;
    std::string admin_group;  // for messages
};

// Root, the daemon's own user, or a member (primary or supplementary) of admin_group.
bool peer_allowed(const PeerCredentials& peer, const ControlAccess& access);

// What the control server keeps of each connection.
struct ControlSession {
    PeerCredentials peer;
    std::optional<ControlRequest> request;  // once its line is complete
};

class ControlServer final : private SocketServer<ControlSession> {
public:
    using Ticket = Id;
    // The reply now, or nullopt when the daemon answers later with
    // reply(ticket, ...).
    using Handler = std::function<std::optional<ControlReply>(const ControlRequest&, Ticket)>;

    // Binds `path` (a stale socket there is replaced; one some process
    // still accepts on is refused), gives it to owner:group with mode 0660,
    // and serves it on `loop`.
    static Result<std::unique_ptr<ControlServer>> open(EventLoop& loop, Handler handler, const std::string& path,
                                                       const RunAs& owner, uint32_t group, ControlAccess access);
    ~ControlServer() override;  // closes everything and removes the socket file

    // Answers a request the handler deferred. Logged even if the peer is gone.
    void reply(Ticket ticket, const ControlReply& reply);

    // Drops connections idle past their deadline.
    using SocketServer::expire;

    const std::string& path() const { return path_; }

    static constexpr size_t kMaxConnections = 16;
    static constexpr std::chrono::seconds kRequestTimeout{5};
    static constexpr std::chrono::seconds kReplyTimeout{120};

private:
    ControlServer(EventLoop& loop, Handler handler, ControlAccess access);

    std::optional<ControlSession> admit(int fd) override;
    void on_accepted(Id ticket) override;
    void on_input(Id ticket, bool ended) override;
    void on_peer_left(Id ticket) override;
    void on_expired(const Connection& connection) override;

    void handle_line(Ticket ticket, std::string_view line);
    // Logs `reply` with the request and peer (`log_status`: ok, error, or why
    // it was refused), then sends it.
    void answer_with(Ticket ticket, const ControlReply& reply, const char* log_status);

    Handler handler_;
    ControlAccess access_;
    std::string path_;
    dev_t device_ = 0;
    ino_t inode_ = 0;
};

}  // namespace mcwatch
