#include "libshim/preload/hint.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "libshim/clock.hpp"
#include "libshim/server_address.hpp"
#include "libshim/state_format.hpp"

namespace mcwatch::shim {

namespace {

// Rate limits, lock-free: the last hint's time per state-file slot, and a
// cheaper gate before it per (router, server), so that a burst of failures
// looks its slot up at most once per interval.
std::atomic<uint64_t> last_by_slot[state::kMaxServers];
constexpr size_t kGateSize = 1024;
std::atomic<uint64_t> last_by_gate[kGateSize];

bool claim(std::atomic<uint64_t>& last, uint64_t now) noexcept {
    uint64_t seen = last.load(std::memory_order_relaxed);
    if (seen != 0 && now - seen < kHintIntervalNs) return false;
    return last.compare_exchange_strong(seen, now, std::memory_order_relaxed);
}

// One datagram socket per process, made on the first hint. A forked child
// makes its own rather than use the number it inherited: it may have closed
// that descriptor and reused it for something of its own.
std::atomic<int> hint_fd{-1};
std::atomic<pid_t> hint_fd_owner{0};

bool is_our_socket(int fd) noexcept {
    int type = 0, domain = 0;
    socklen_t length = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0 || type != SOCK_DGRAM) return false;
    length = sizeof domain;
    return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == AF_UNIX;
}

int hint_socket() noexcept {
    const pid_t self = getpid();
    int fd = hint_fd.load(std::memory_order_acquire);
    // The program may also have closed it and reused the number: then it is
    // not ours any more (a datagram never goes down a descriptor of theirs).
    if (fd >= 0 && hint_fd_owner.load(std::memory_order_acquire) == self && is_our_socket(fd)) return fd;
    const int fresh = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fresh < 0) return -1;
    // The owner first: a thread that then sees the new descriptor sees it ours.
    hint_fd_owner.store(self, std::memory_order_release);
    if (hint_fd.compare_exchange_strong(fd, fresh, std::memory_order_acq_rel)) return fresh;
    // Another thread won: use its socket.
    close(fresh);
    return fd;
}

// `dirname(state path) + "/hints"`.
bool hint_address(const std::string& state_path, SocketAddress& out) noexcept {
    const size_t slash = state_path.rfind('/');
    const size_t dir_length = slash == std::string::npos ? 0 : slash + 1;
    static constexpr char kName[] = "hints";
    char path[kMaxUnixPathLength + 1];
    if (dir_length + sizeof kName > sizeof path) return false;
    std::memcpy(path, state_path.data(), dir_length);
    std::memcpy(path + dir_length, kName, sizeof kName);
    return ServerAddress::unix_socket_address(std::string_view(path, dir_length + sizeof kName - 1), out);
}

}  // namespace

void send_hint(const HandleRouting& routing, int32_t server) noexcept {
    if (server < 0 || !routing.router) return;
    route::StateSource* source = routing.router->source();
    if (!source) return;
    const int saved_errno = errno;
    const uint64_t now = monotonic_ns();
    const size_t gate = (reinterpret_cast<uintptr_t>(routing.router.get()) / 64 + uint32_t(server)) % kGateSize;
    if (claim(last_by_gate[gate], now)) {
        const int32_t slot = routing.router->slot_of(uint32_t(server));
        const route::StateSource::Pin mapped = source->pin();
        SocketAddress to;
        int fd;
        if (slot >= 0 && mapped && uint32_t(slot) < mapped->map.header().slot_count &&
            uint32_t(slot) < state::kMaxServers && claim(last_by_slot[slot], now) && hint_address(source->path(), to) &&
            (fd = hint_socket()) >= 0) {
            const char* address = mapped->map.slots()[slot].address;
            char payload[300];
            const int n =
                snprintf(payload, sizeof payload, "hint %.*s\n", int(strnlen(address, state::kAddressSize)), address);
            if (n > 0 && size_t(n) < sizeof payload)
                (void)sendto(fd, payload, size_t(n), MSG_DONTWAIT | MSG_NOSIGNAL, to.get(), to.length);
        }
    }
    errno = saved_errno;
}

}  // namespace mcwatch::shim
