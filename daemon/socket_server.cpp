#include "daemon/socket_server.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace mcwatch {

bool send_pending(int fd, const std::string& out, size_t& sent) {
    while (sent < out.size()) {
        const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
        break;  // the peer left: nothing more to tell it
    }
    return true;
}

void discard_unread_input(int fd) {
    char discard[4096];
    while (recv(fd, discard, sizeof discard, MSG_DONTWAIT) > 0) {
    }
}

}  // namespace mcwatch
