#include "daemon/event_loop.hpp"

#include <sys/epoll.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>

#include "common/errno_text.hpp"

namespace mcwatch {

EventLoop::EventLoop() : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_fd_) create_errno_ = errno;
}

Result<> EventLoop::ready() const {
    if (!epoll_fd_) return failure(fmt::format("epoll_create1: {}", errno_text(create_errno_)));
    return {};
}

bool EventLoop::add(int fd, uint32_t events, Handler handler) {
    const uint32_t serial = ++next_serial_;
    epoll_event event{};
    event.events = events;
    event.data.u64 = (uint64_t(serial) << 32) | uint32_t(fd);
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &event) != 0) return false;
    entries_[fd] = Entry{serial, std::move(handler)};
    return true;
}

void EventLoop::modify(int fd, uint32_t events) {
    const auto it = entries_.find(fd);
    if (it == entries_.end()) return;
    epoll_event event{};
    event.events = events;
    event.data.u64 = (uint64_t(it->second.serial) << 32) | uint32_t(fd);
    epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &event);
}

void EventLoop::remove(int fd) {
    if (entries_.erase(fd)) epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void EventLoop::run_once(int timeout_ms) {
    if (running_) return;
    running_ = true;
    std::array<epoll_event, 32> events;
    const int count = epoll_wait(epoll_fd_.get(), events.data(), int(events.size()), timeout_ms);
    for (int i = 0; i < count; ++i) {
        const int fd = int(uint32_t(events[i].data.u64));
        const uint32_t serial = uint32_t(events[i].data.u64 >> 32);
        const auto it = entries_.find(fd);
        if (it == entries_.end() || it->second.serial != serial) continue;  // removed meanwhile
        // A copy: the handler may remove (and so destroy) its own entry.
        const Handler handler = it->second.handler;
        handler(events[i].events);
    }
    running_ = false;
}

}  // namespace mcwatch
