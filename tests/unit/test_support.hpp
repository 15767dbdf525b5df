// Helpers for unit tests that talk to real memcached processes or to scripted
// misbehaving peers, on loopback only. Everything here is bounded in time and
// cleans up after itself (child processes, threads, descriptors) even when a
// check fails.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mcwatch::test {

using Millis = std::chrono::milliseconds;

// A loopback TCP port nobody listens on at the moment of the call (bound to
// port 0, then released): 127.0.0.1, or ::1 with ipv6.
uint16_t free_loopback_port(bool ipv6 = false);

// Whether ::1 can be bound here (containers may have no IPv6).
bool ipv6_loopback_available();

// Descriptors open in this process, counted in /proc/self/fd.
int count_open_fds();
// The same once it stopped changing (twice the same 50 ms apart, within 5 s):
// a name lookup of an earlier test may still hold a descriptor for a moment.
int count_open_fds_settled();

// A /usr/bin/memcached child process. Killed (SIGKILL, which also ends a
// stopped one) and reaped when this object goes away, and by the kernel if the
// test binary dies first (PR_SET_PDEATHSIG).
class MemcachedProcess {
public:
    // memcached -l HOST -p PORT -U 0 -m 8 EXTRA..., waited for until it
    // accepts connections (at most 5 s; check ready()).
    static MemcachedProcess on_port(uint16_t port, std::vector<std::string> extra_args = {},
                                    const std::string& host = "127.0.0.1");
    // memcached -s PATH -m 8 EXTRA..., likewise.
    static MemcachedProcess on_unix_socket(const std::string& path, std::vector<std::string> extra_args = {});

    MemcachedProcess(MemcachedProcess&& other) noexcept;
    MemcachedProcess& operator=(MemcachedProcess&&) = delete;
    MemcachedProcess(const MemcachedProcess&) = delete;
    ~MemcachedProcess();

    pid_t pid() const { return pid_; }
    bool ready() const { return ready_; }  // accepted a connection after starting
    void send_signal(int signal) const;
    void stop();  // SIGKILL and reap; does nothing the second time

private:
    MemcachedProcess() = default;
    void start(std::vector<std::string> args);

    pid_t pid_ = -1;
    bool ready_ = false;
    // Where it listens, to see when it accepts: host and port, or a unix socket.
    std::string host_;
    uint16_t port_ = 0;
    std::string unix_path_;
};

// Whether every thread of `pid` is stopped (SIGSTOP), polled for at most `limit`.
bool wait_until_stopped(pid_t pid, Millis limit = Millis(5000));

// Sends `request` to memcached on 127.0.0.1:port, bypassing the prober, and
// returns what came back once it ends with `terminator` (or whatever arrived
// when `limit` passed or the peer closed).
std::string exchange_tcp(uint16_t port, std::string_view request, std::string_view terminator,
                         Millis limit = Millis(5000));

// A scripted peer: a thread that accepts connections on 127.0.0.1:port() and
// runs the script on each, one at a time, then closes it. `stopping` turns
// true when the FakePeer is destroyed: scripts must return soon after.
class FakePeer {
public:
    using Script = std::function<void(int fd, const std::atomic<bool>& stopping)>;
    explicit FakePeer(Script script);
    ~FakePeer();
    FakePeer(const FakePeer&) = delete;
    FakePeer& operator=(const FakePeer&) = delete;
    uint16_t port() const { return port_; }
    int connections() const { return connections_.load(); }  // accepted so far

private:
    int listen_fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<int> connections_{0};
    std::thread thread_;
};

// Building blocks for scripts, each bounded by `stopping` and 10 s.
// Reads until the bytes received end with `until`; false if the peer closed first.
bool peer_read_request(int fd, const std::atomic<bool>& stopping, std::string_view until = "stats\r\n");
// Sends all of `data`; false if the connection failed.
bool peer_send(int fd, std::string_view data, const std::atomic<bool>& stopping);
// Keeps the connection open, reading and discarding, until the other side closes.
void peer_hold(int fd, const std::atomic<bool>& stopping);

}  // namespace mcwatch::test
