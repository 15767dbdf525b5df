#include "daemon/hint_server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "common/errno_text.hpp"
#include "daemon/log.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch {

namespace {

using Clock = std::chrono::steady_clock;

// Datagrams read per wake-up: a flood cannot hold the daemon's thread; the
// rest wait in the socket (level-triggered) and the kernel drops what does
// not fit, which is what a flood deserves.
constexpr int kMaxDatagramsPerWake = 256;
constexpr auto kLogGap = std::chrono::seconds(1);

}  // namespace

std::string_view hint_address(std::string_view datagram) {
    constexpr std::string_view prefix = "hint ";
    if (datagram.size() > kMaxHintBytes || !datagram.starts_with(prefix) || !datagram.ends_with('\n')) return {};
    const std::string_view address = datagram.substr(prefix.size(), datagram.size() - prefix.size() - 1);
    for (const char c : address)
        if (c <= ' ' || c > '~') return {};
    return address;
}

Result<std::unique_ptr<HintServer>> HintServer::open(EventLoop& loop, const std::string& path, OnHint on_hint) {
    std::unique_ptr<HintServer> server(new HintServer(loop, std::move(on_hint)));
    SocketAddress address;
    if (!ServerAddress::unix_socket_address(path, address))
        return failure(fmt::format("hint socket {}: path too long (over {} bytes)", path, kMaxUnixPathLength));
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        // The lock file makes this daemon the only one for this directory:
        // a socket left here is a predecessor's.
        if (!S_ISSOCK(st.st_mode)) return failure(fmt::format("hint socket {}: exists and is not a socket", path));
        if (::unlink(path.c_str()) != 0)
            return failure(fmt::format("cannot remove the stale hint socket {}: {}", path, errno_text()));
    }
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return failure(fmt::format("socket: {}", errno_text()));
    server->fd_ = fd;
    const int on = 1;
    // The sender's uid comes with each datagram, for the log.
    ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    if (::bind(fd, address.get(), address.length) != 0)
        return failure(fmt::format("cannot bind hint socket {}: {}", path, errno_text()));
    server->path_ = path;
    // Any local user may send: a hint can do nothing but trigger a probe.
    if (::chmod(path.c_str(), 0666) != 0)
        return failure(fmt::format("cannot chmod hint socket {}: {}", path, errno_text()));
    HintServer* self = server.get();
    if (!loop.add(fd, EPOLLIN, [self](uint32_t) { self->receive_all(); }))
        return failure(fmt::format("epoll_ctl: {}", errno_text()));
    return server;
}

HintServer::~HintServer() {
    if (fd_ < 0) return;
    loop_.remove(fd_);
    ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
}

void HintServer::set_servers(const std::vector<std::string>& addresses) {
    index_.clear();
    for (size_t i = 0; i < addresses.size(); ++i) {
        index_.emplace(addresses[i], i);
        servers_.try_emplace(addresses[i]);
    }
}

uint64_t HintServer::hints(const std::string& address) const {
    const auto it = servers_.find(address);
    return it == servers_.end() ? 0 : it->second.hints;
}

void HintServer::receive_all() {
    // One byte more than a hint may be, so that a longer datagram is seen as such.
    std::array<char, kMaxHintBytes + 1> buffer;
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred))> control;
    for (int i = 0; i < kMaxDatagramsPerWake; ++i) {
        iovec vector{buffer.data(), buffer.size()};
        msghdr message{};
        message.msg_iov = &vector;
        message.msg_iovlen = 1;
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        const ssize_t n = ::recvmsg(fd_, &message, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // EAGAIN: all read
        }
        int64_t uid = -1;
        for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS) continue;
            ucred credentials{};
            std::memcpy(&credentials, CMSG_DATA(c), sizeof credentials);
            uid = credentials.uid;
        }
        const bool truncated = (message.msg_flags & MSG_TRUNC) != 0;
        on_datagram(truncated ? std::string_view() : std::string_view(buffer.data(), size_t(n)), uid);
    }
}

void HintServer::on_datagram(std::string_view datagram, int64_t uid) {
    const std::string_view address = hint_address(datagram);
    const auto found = index_.find(address);
    if (address.empty() || found == index_.end()) {
        ++invalid_;
        return;
    }
    PerServer& server = servers_[found->first];
    ++server.hints;
    const auto now = Clock::now();
    if (now - server.last_log >= kLogGap) {
        server.last_log = now;
        log_event("info", "hint", {{"server", found->first}, {"uid", fmt::format("{}", uid)}});
    }
    if (now - server.last_probe < kHintProbeGap) return;
    server.last_probe = now;
    on_hint_(found->second);
}

}  // namespace mcwatch
