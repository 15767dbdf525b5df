#include "daemon/metrics_peer.hpp"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <fmt/format.h>

#include <cstring>
#include <optional>

#include "libshim/unique_fd.hpp"

namespace mcwatch {

namespace {

// The uid owning the TCP socket whose own address is `peer` and whose
// remote address is `local`: our peer's end, when it lives on this host.
std::optional<uint32_t> local_owner_uid(const sockaddr_storage& peer, const sockaddr_storage& local) {
    struct {
        nlmsghdr header;
        inet_diag_req_v2 request;
    } message{};
    message.header.nlmsg_len = sizeof message;
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST;  // one socket, found by its addresses
    message.request.sdiag_family = uint8_t(peer.ss_family);
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = ~0u;
    inet_diag_sockid& id = message.request.id;
    id.idiag_cookie[0] = id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (peer.ss_family == AF_INET && local.ss_family == AF_INET) {
        const auto& from = reinterpret_cast<const sockaddr_in&>(peer);
        const auto& to = reinterpret_cast<const sockaddr_in&>(local);
        id.idiag_sport = from.sin_port;
        id.idiag_dport = to.sin_port;
        std::memcpy(id.idiag_src, &from.sin_addr, sizeof from.sin_addr);
        std::memcpy(id.idiag_dst, &to.sin_addr, sizeof to.sin_addr);
    } else if (peer.ss_family == AF_INET6 && local.ss_family == AF_INET6) {
        const auto& from = reinterpret_cast<const sockaddr_in6&>(peer);
        const auto& to = reinterpret_cast<const sockaddr_in6&>(local);
        id.idiag_sport = from.sin6_port;
        id.idiag_dport = to.sin6_port;
        std::memcpy(id.idiag_src, &from.sin6_addr, sizeof from.sin6_addr);
        std::memcpy(id.idiag_dst, &to.sin6_addr, sizeof to.sin6_addr);
    } else {
        return std::nullopt;
    }

    const UniqueFd netlink(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
    if (!netlink) return std::nullopt;
    // The kernel answers at once; this only bounds the impossible.
    const timeval wait{0, 100'000};
    setsockopt(netlink.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    std::optional<uint32_t> uid;
    if (sendto(netlink.get(), &message, sizeof message, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) ==
        ssize_t(sizeof message)) {
        alignas(nlmsghdr) char reply[4096];
        const ssize_t n = recv(netlink.get(), reply, sizeof reply, 0);
        // One message: the socket's (NLMSG_ERROR if no local socket has these addresses).
        const auto* header = reinterpret_cast<const nlmsghdr*>(reply);
        const size_t wanted = NLMSG_LENGTH(sizeof(inet_diag_msg));
        if (n >= ssize_t(wanted) && header->nlmsg_type == SOCK_DIAG_BY_FAMILY && header->nlmsg_len >= wanted &&
            header->nlmsg_len <= size_t(n))
            uid = static_cast<const inet_diag_msg*>(NLMSG_DATA(header))->idiag_uid;
    }
    return uid;
}

std::string address_text(const sockaddr_storage& address) {
    char text[INET6_ADDRSTRLEN] = "";
    if (address.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(address).sin_addr, text, sizeof text);
    else if (address.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(address).sin6_addr, text, sizeof text);
    return text;
}

}  // namespace

std::string metrics_peer_of(int fd) {
    sockaddr_storage peer{};
    sockaddr_storage local{};
    socklen_t peer_length = sizeof peer;
    socklen_t local_length = sizeof local;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) return "";
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0) return "";
    if (const auto uid = local_owner_uid(peer, local)) return fmt::format("uid {}", *uid);
    return fmt::format("addr {}", address_text(peer));
}

}  // namespace mcwatch
