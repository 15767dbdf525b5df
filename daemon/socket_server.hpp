// What the control socket and the metrics endpoint share: a listening socket
// served from the daemon's EventLoop, and connections that each send one
// request and get one answer, after which the server closes them. Nothing
// blocks; every connection has a deadline. A protocol derives from
// SocketServer<Session> (Session: what it keeps of each connection) and says
// who may connect, when a request is complete and what to answer.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/errno_text.hpp"
#include "common/result.hpp"
#include "daemon/event_loop.hpp"
#include "libshim/unique_fd.hpp"

namespace mcwatch {

// Sends what is left of `out` after `sent` without blocking. True when there
// is nothing more to do (all sent, or the peer left); false when the socket
// is full: wait for EPOLLOUT and call again.
bool send_pending(int fd, const std::string& out, size_t& sent);

// Reads and drops what the peer sent that we did not read, before closing:
// unread input turns close() into a reset that can reach the peer before it
// has read our answer.
void discard_unread_input(int fd);

template <class Session>
class SocketServer {
public:
    using Id = uint64_t;
    using Clock = std::chrono::steady_clock;

    SocketServer(const SocketServer&) = delete;
    SocketServer& operator=(const SocketServer&) = delete;

    // Closes the connections whose deadline has passed.
    void expire(Clock::time_point now);

protected:
    struct Connection {
        UniqueFd fd;  // empty once the peer left while its answer was held (see on_peer_left)
        Session session;
        std::string in;
        std::string out;
        size_t sent = 0;
        bool held = false;  // the request is complete; its answer comes later
        Clock::time_point deadline;
    };

    // `timeout`: for a request to arrive, and for an answer to be taken.
    SocketServer(EventLoop& loop, Clock::duration timeout) : loop_(loop), timeout_(timeout) {}
    virtual ~SocketServer();  // closes every connection and the listening socket

    // Accepts on `listening` (bound and listening) from now on.
    Result<> serve(UniqueFd listening);

    // The session of a connection just accepted on `fd`, or nullopt to close
    // it at once, unanswered.
    virtual std::optional<Session> admit(int fd) = 0;
    // After `id` was admitted: it may be answered at once (refused, busy).
    virtual void on_accepted(Id) {}
    // New bytes in its `in`; `ended` when the peer will send no more. The
    // protocol answers, holds, closes, or waits for more (not when ended).
    virtual void on_input(Id id, bool ended) = 0;
    // The peer hung up while its answer was held.
    virtual void on_peer_left(Id id) { close_connection(id); }
    // Before a connection is closed for being late.
    virtual void on_expired(const Connection&) {}

    // Stops reading `id` until answer() (a hang-up is still reported).
    void hold(Id id);
    // Sends `bytes` (within the timeout), then closes. A connection whose
    // peer already left is only forgotten.
    void answer(Id id, std::string bytes);
    // Keeps the record of `id` (for a held answer's log line) but closes its socket.
    void drop_socket(Id id);
    void close_connection(Id id);
    Connection* find(Id id);

    EventLoop& loop_;
    const Clock::duration timeout_;
    std::map<Id, Connection> connections_;  // ids grow: the first is the oldest

private:
    void accept_all();
    void on_event(Id id, uint32_t events);
    void receive(Id id);
    void flush_out(Id id);

    UniqueFd listening_;
    Id next_id_ = 0;
};

template <class Session>
SocketServer<Session>::~SocketServer() {
    for (auto& [id, connection] : connections_)
        if (connection.fd) loop_.remove(connection.fd.get());
    connections_.clear();
    if (listening_) loop_.remove(listening_.get());
}

template <class Session>
Result<> SocketServer<Session>::serve(UniqueFd listening) {
    if (!loop_.add(listening.get(), EPOLLIN, [this](uint32_t) { accept_all(); }))
        return failure(fmt::format("epoll_ctl: {}", errno_text()));
    listening_ = std::move(listening);
    return {};
}

template <class Session>
void SocketServer<Session>::accept_all() {
    for (;;) {
        UniqueFd fd(accept4(listening_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;  // EAGAIN, or out of descriptors: the rest wait in the backlog
        }
        std::optional<Session> session = admit(fd.get());
        if (!session) continue;  // a scraper retries; a flood gets nothing
        const Id id = ++next_id_;
        if (!loop_.add(fd.get(), EPOLLIN, [this, id](uint32_t events) { on_event(id, events); })) continue;
        Connection& connection = connections_[id];
        connection.fd = std::move(fd);
        connection.session = std::move(*session);
        connection.deadline = Clock::now() + timeout_;
        on_accepted(id);
    }
}

template <class Session>
void SocketServer<Session>::on_event(Id id, uint32_t events) {
    Connection* connection = find(id);
    if (!connection) return;
    if (!connection->out.empty()) {
        if (events & (EPOLLERR | EPOLLHUP)) return close_connection(id);
        return flush_out(id);
    }
    if (connection->held) {
        // Waiting for its answer: only a hang-up can happen here.
        if (events & (EPOLLERR | EPOLLHUP)) on_peer_left(id);
        return;
    }
    receive(id);
}

template <class Session>
void SocketServer<Session>::receive(Id id) {
    char chunk[4096];
    for (;;) {
        Connection* connection = find(id);
        if (!connection || connection->held || !connection->out.empty()) return;  // answered, held or closed
        const ssize_t n = recv(connection->fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0 || (n == 0 && connection->in.empty())) return close_connection(id);
        if (n == 0) return on_input(id, true);
        connection->in.append(chunk, size_t(n));
        on_input(id, false);
    }
}

template <class Session>
void SocketServer<Session>::hold(Id id) {
    Connection* connection = find(id);
    if (!connection) return;
    connection->held = true;
    loop_.modify(connection->fd.get(), 0);  // no more input; a hang-up is still reported
}

template <class Session>
void SocketServer<Session>::answer(Id id, std::string bytes) {
    Connection* connection = find(id);
    if (!connection) return;
    if (!connection->fd) return close_connection(id);
    connection->held = false;
    connection->out = std::move(bytes);
    connection->sent = 0;
    connection->deadline = Clock::now() + timeout_;
    flush_out(id);
}

template <class Session>
void SocketServer<Session>::flush_out(Id id) {
    Connection& connection = connections_.at(id);
    if (!send_pending(connection.fd.get(), connection.out, connection.sent)) {
        loop_.modify(connection.fd.get(), EPOLLOUT);
        return;
    }
    ::shutdown(connection.fd.get(), SHUT_WR);
    // The request bytes we did not read (a flood cut short, headers).
    discard_unread_input(connection.fd.get());
    close_connection(id);
}

template <class Session>
void SocketServer<Session>::drop_socket(Id id) {
    Connection* connection = find(id);
    if (!connection || !connection->fd) return;
    loop_.remove(connection->fd.get());
    connection->fd.reset();
}

template <class Session>
void SocketServer<Session>::close_connection(Id id) {
    drop_socket(id);
    connections_.erase(id);
}

template <class Session>
typename SocketServer<Session>::Connection* SocketServer<Session>::find(Id id) {
    const auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : &it->second;
}

template <class Session>
void SocketServer<Session>::expire(Clock::time_point now) {
    std::vector<Id> late;
    for (const auto& [id, connection] : connections_)
        if (now >= connection.deadline) late.push_back(id);
    for (const Id id : late) {
        on_expired(connections_.at(id));
        close_connection(id);
    }
}

}  // namespace mcwatch
