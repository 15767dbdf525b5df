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
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/control_request.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/privileges.hpp"

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

class ControlServer {
public:
    using Ticket = uint64_t;
    // Returns the reply line now ("ok ..." or "error ..."), or nullopt when
    // the daemon answers later with reply(ticket, line).
    using Handler = std::function<std::optional<std::string>(const ControlRequest&, Ticket)>;

    ControlServer(EventLoop& loop, Handler handler);
    ~ControlServer();  // closes everything and removes the socket file
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Binds `path` (a stale socket there is replaced; one some process
    // still accepts on is refused), gives it to owner:group with mode 0660.
    // "" or why not.
    std::string open(const std::string& path, const RunAs& owner, uint32_t group, ControlAccess access);

    // Answers a request the handler deferred. Logged even if the peer is gone.
    void reply(Ticket ticket, const std::string& line);

    // Drops connections idle past their deadline.
    void expire(std::chrono::steady_clock::time_point now);

    const std::string& path() const { return path_; }

    static constexpr size_t kMaxConnections = 16;
    static constexpr std::chrono::seconds kRequestTimeout{5};
    static constexpr std::chrono::seconds kReplyTimeout{120};

private:
    struct Connection {
        int fd = -1;  // -1: the peer left before its deferred reply
        PeerCredentials peer;
        std::string in;
        std::string out;
        size_t sent = 0;
        std::optional<ControlRequest> request;
        std::chrono::steady_clock::time_point deadline;
    };

    void accept_all();
    void on_event(Ticket ticket, uint32_t events);
    void receive(Ticket ticket);
    void handle_line(Ticket ticket, std::string_view line);
    // Queues `line`, logs it with the request and peer, writes what it can.
    void answer(Ticket ticket, const std::string& line, const char* status);
    void flush_out(Ticket ticket);
    void close_connection(Ticket ticket);

    EventLoop& loop_;
    Handler handler_;
    ControlAccess access_;
    std::string path_;
    int listen_fd_ = -1;
    dev_t device_ = 0;
    ino_t inode_ = 0;
    Ticket next_ticket_ = 0;
    std::map<Ticket, Connection> connections_;
};

}  // namespace mcwatch
