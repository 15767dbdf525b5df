// The daemon's one thread serves the control socket and the metrics endpoint
// from this epoll set: between probe rounds it waits here, and during a round
// the prober watches this set's descriptor (epoll sets nest) and calls
// run_once(0) when something is ready. No service ever waits for a probe
// round, and no round waits for a slow client.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "common/result.hpp"
#include "libshim/unique_fd.hpp"

namespace mcwatch {

class EventLoop {
public:
    using Handler = std::function<void(uint32_t events)>;

    // Never throws: without an epoll descriptor the loop is not ready(), and
    // every add() fails.
    EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Why the loop cannot run (the kernel refused the epoll descriptor), if so.
    Result<> ready() const;

    // Readable whenever some registered descriptor is ready.
    int fd() const { return epoll_fd_.get(); }

    // Level-triggered: a handler must consume what made it ready, or stop
    // watching. Returns false (errno set) if epoll refuses the descriptor.
    bool add(int fd, uint32_t events, Handler handler);
    void modify(int fd, uint32_t events);
    // Before closing fd. Events already collected for it are dropped.
    void remove(int fd);

    // Waits up to timeout_ms (0: does not wait) and runs the handlers of the
    // descriptors that are ready. Handlers may add and remove descriptors.
    void run_once(int timeout_ms);

private:
    struct Entry {
        uint32_t serial;
        Handler handler;
    };
    UniqueFd epoll_fd_;
    int create_errno_ = 0;  // epoll_create1's, when it failed
    uint32_t next_serial_ = 0;
    // Serial in the event, so that an event for a descriptor closed and
    // reused (accept returns the lowest free number) is never misapplied.
    std::map<int, Entry> entries_;
    bool running_ = false;  // run_once is not reentrant
};

}  // namespace mcwatch
