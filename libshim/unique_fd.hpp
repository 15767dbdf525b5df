// The one owner of a file descriptor, for every layer: the shim (noexcept,
// allocates nothing), the daemon's sockets and files, mcctl. Closes it on
// every return path; moves, never copies.
#pragma once

#include <unistd.h>

#include <utility>

namespace mcwatch {

class UniqueFd {
public:
    UniqueFd() noexcept = default;
    // Takes `fd` (-1, or what a failed open/socket/accept returned, holds nothing).
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    ~UniqueFd() { reset(); }

    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }

    // Closes what it held, then holds `fd`.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }
    // Gives the descriptor up without closing it.
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
};

}  // namespace mcwatch
