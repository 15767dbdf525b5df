#include "libshim/preload/meta_connection.hpp"

#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/uio.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#include "libshim/clock.hpp"
#include "libshim/preload/name_lookup.hpp"
#include "libshim/preload/real.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch::shim::meta {

namespace {

// libmemcached's defaults, for a handle that says "wait for ever" (-1):
// a write-back is an extra the program did not ask for, never worth a hang.
constexpr int kDefaultTimeoutMs = 5000;
// What the shim reads of a reply, whatever the peer sends (a misbehaving
// server's endless or huge reply must not grow the program's memory until
// the deadline): a value of memcached's default item size limit (-I 1m) at
// most, a larger one is not copied; a reply line (meta flags, an error) of
// kMaxLine bytes at most.
constexpr size_t kMaxValue = size_t(1) << 20;
constexpr size_t kMaxLine = 4096;
// Connections one thread keeps (one per server it wrote back to lately).
constexpr size_t kKept = 8;

int bounded(int32_t timeout_ms) noexcept { return timeout_ms < 0 ? kDefaultTimeoutMs : int(timeout_ms); }

int64_t now_ms() noexcept { return int64_t(monotonic_ns() / 1'000'000); }

// Which process this is, counted by forks: a connection opened in another
// process is not ours. Not getpid(): glibc no longer caches it, and every
// replica store would pay a system call for it.
std::atomic<uint64_t> fork_generation{0};

__attribute__((constructor)) void count_forks() {
    pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1, std::memory_order_relaxed); });
}

uint64_t this_process() noexcept { return fork_generation.load(std::memory_order_relaxed); }

}  // namespace

class Connection {
public:
    ~Connection() { close(); }

    void close() noexcept {
        // A forked child inherited the number, not the connection: the child
        // may have closed it and reused the number for a file of its own.
        if (fd_ >= 0 && process_ == this_process()) ::close(fd_);
        fd_ = -1;
        in_.clear();
        used_ = 0;
        quiet_ = 0;
    }

    // Why the last exchange failed on the peer's side, or null.
    const char* problem() const noexcept { return problem_; }

    // Quiet requests sent whose replies (failures only, then `mn`'s MN)
    // have not been read yet.
    uint32_t quiet() const noexcept { return quiet_; }
    void add_quiet() noexcept { ++quiet_; }
    void clear_quiet() noexcept { quiet_ = 0; }

    // Several pieces in one system call where the socket takes them all.
    bool send_parts(iovec* parts, int count) noexcept {
        while (count > 0) {
            msghdr message{};
            message.msg_iov = parts;
            message.msg_iovlen = size_t(count);
            const ssize_t n = ::sendmsg(fd_, &message, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!wait(POLLOUT)) return fail();
                continue;
            }
            if (n <= 0) return fail();
            size_t sent = size_t(n);
            while (count > 0 && sent >= parts->iov_len) {
                sent -= parts->iov_len;
                ++parts;
                --count;
            }
            if (count > 0) {
                parts->iov_base = static_cast<char*>(parts->iov_base) + sent;
                parts->iov_len -= sent;
            }
        }
        return true;
    }

    bool usable() const noexcept { return fd_ >= 0 && process_ == this_process(); }

    // Opens the connection to `name` (a unix socket path when `is_unix`).
    bool open(const char* name, in_port_t port, bool is_unix, int64_t connect_deadline_ms) noexcept {
        problem_ = nullptr;
        close();
        process_ = this_process();
        if (is_unix) {
            SocketAddress address;
            if (!ServerAddress::unix_socket_address(name, address)) return false;
            return connect_to(AF_UNIX, address.get(), address.length, connect_deadline_ms);
        }
        // Never getaddrinfo here: a name is looked up off the client's call (name_lookup.hpp).
        SocketAddress addresses[kMaxAddresses];
        const size_t count = addresses_of(name, port, connect_deadline_ms, addresses);
        bool connected = false;
        for (size_t i = 0; i < count && !connected; ++i)
            connected =
                connect_to(addresses[i].get()->sa_family, addresses[i].get(), addresses[i].length, connect_deadline_ms);
        if (!connected) look_up_again(name);  // the name may have moved
        return connected;
    }

    void end_by(int64_t deadline_ms) noexcept { deadline_ms_ = deadline_ms; }

    bool send_all(const char* data, size_t length) noexcept {
        while (length > 0) {
            const ssize_t n = ::send(fd_, data, length, MSG_NOSIGNAL);
            if (n > 0) {
                data += n;
                length -= size_t(n);
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!wait(POLLOUT)) return fail();
            } else {
                return fail();
            }
        }
        return true;
    }

    // The next reply line, without its "\r\n".
    bool read_line(std::string& line) noexcept {
        for (;;) {
            const size_t end = in_.find("\r\n", used_);
            if (end != std::string::npos) {
                line.assign(in_, used_, end - used_);
                used_ = end + 2;
                return true;
            }
            if (in_.size() - used_ > kMaxLine) return fail("reply too large (a line over 4096 bytes)");
            if (!fill()) return false;
        }
    }

    // `length` bytes of data followed by "\r\n".
    bool read_data(size_t length, std::string& out) noexcept {
        while (in_.size() - used_ < length + 2)
            if (!fill()) return false;
        if (in_.compare(used_ + length, 2, "\r\n") != 0) return fail();
        out.assign(in_, used_, length);
        used_ += length + 2;
        return true;
    }

    bool fail(const char* problem = nullptr) noexcept {
        if (problem) problem_ = problem;
        close();
        return false;
    }

private:
    bool connect_to(int family, const sockaddr* address, socklen_t length, int64_t deadline_ms) noexcept {
        fd_ = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd_ < 0) return false;
        // A store goes out in pieces (command, value, end): without this,
        // Nagle holds the later pieces for the server's delayed ACK, 40 ms
        // a write-back.
        const int one = 1;
        if (family != AF_UNIX) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(fd_, address, length) == 0) return true;
        if (errno != EINPROGRESS && errno != EAGAIN) return fail();
        deadline_ms_ = deadline_ms;
        if (!wait(POLLOUT)) return fail();
        int error = 0;
        socklen_t size = sizeof error;
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size) != 0 || error != 0) return fail();
        return true;
    }

    bool wait(short events) noexcept {
        for (;;) {
            const int64_t left = deadline_ms_ - now_ms();
            if (left <= 0) return false;
            pollfd p{fd_, events, 0};
            const int n = ::poll(&p, 1, int(left));
            if (n > 0) return true;
            if (n == 0 || errno != EINTR) return false;
        }
    }

    bool fill() noexcept {
        if (used_ > 0 && used_ == in_.size()) {
            in_.clear();
            used_ = 0;
        }
        char buffer[16384];
        for (;;) {
            const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
            if (n > 0) {
                try {
                    in_.append(buffer, size_t(n));
                } catch (...) {
                    return fail();
                }
                return true;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait(POLLIN)) continue;
            return fail();
        }
    }

    int fd_ = -1;
    uint64_t process_ = 0;
    uint32_t quiet_ = 0;
    const char* problem_ = nullptr;
    std::string in_;
    size_t used_ = 0;
    int64_t deadline_ms_ = 0;
};

namespace {

// A request or name appended into a fixed buffer; ok() false once it did not fit.
struct Text {
    Text(char* buffer, size_t size) noexcept : begin(buffer), at(buffer), end(buffer + size) {}

    char* begin;
    char* at;
    char* end;
    bool fits = true;

    void add(std::string_view s) noexcept {
        if (!fits || size_t(end - at) < s.size()) {
            fits = false;
            return;
        }
        std::memcpy(at, s.data(), s.size());
        at += s.size();
    }
    void add(const char* s) noexcept { add(std::string_view(s)); }
    void add(char c) noexcept { add(std::string_view(&c, 1)); }
    template <class Int>
    void add(Int n) noexcept {
        const auto [next, error] = std::to_chars(at, end, n);
        if (error != std::errc()) {
            fits = false;
            return;
        }
        at = next;
    }
    bool ok() const noexcept { return fits; }
    size_t size() const noexcept { return size_t(at - begin); }
    std::string_view view() const noexcept { return {begin, size()}; }
};

struct Kept {
    std::string address;
    Connection connection;
    uint64_t last_used = 0;
};

struct Cache {
    Kept kept[kKept];
    uint64_t uses = 0;
};

thread_local Cache cache;

// The value of a flag token such as "t42" in a reply line.
template <class Int>
bool flag_value(const std::string& line, char flag, Int& out) noexcept {
    for (size_t i = line.find(' '); i != std::string::npos; i = line.find(' ', i + 1)) {
        if (i + 1 < line.size() && line[i + 1] == flag) {
            const char* first = line.data() + i + 2;
            const char* last = line.data() + line.size();
            const char* end = static_cast<const char*>(std::memchr(first, ' ', size_t(last - first)));
            return std::from_chars(first, end ? end : last, out).ec == std::errc();
        }
    }
    return false;
}

bool starts(const std::string& line, const char* code) noexcept {
    return line.compare(0, 2, code) == 0 && (line.size() == 2 || line[2] == ' ');
}

}  // namespace

bool wire_key(memcached_st* memc, const char* key, size_t key_length, std::string& out) noexcept {
    memcached_return_t rc;
    const auto* name = static_cast<const char*>(real()->callback_get(memc, MEMCACHED_CALLBACK_NAMESPACE, &rc));
    const size_t name_length = name ? std::strlen(name) : 0;
    if (key_length == 0 || name_length + key_length > MEMCACHED_MAX_KEY - 1) return false;
    try {
        out.assign(name ? name : "", name_length);
        out.append(key, key_length);
    } catch (...) {
        return false;
    }
    for (const char c : out)
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return false;
    return true;
}

int64_t exchange_deadline_ms(const memcached_st* memc) noexcept { return now_ms() + bounded(memc->poll_timeout); }

bool past(int64_t deadline_ms) noexcept { return now_ms() >= deadline_ms; }

Connection* connection_to(memcached_st* memc, uint32_t position, int64_t deadline_ms) noexcept {
    const Real* r = real();
    const memcached_instance_st* instance = r ? r->instance_by_position(memc, position) : nullptr;
    const char* name = instance ? r->server_name(instance) : nullptr;
    if (!name) return nullptr;
    const bool is_unix = std::strcmp(r->server_type(instance), "SOCKET") == 0;
    const in_port_t port = in_port_t(r->server_port(instance));
    // "name|port", formatted by hand: this runs on every replica store.
    char address[1200];
    Text text(address, sizeof address);
    text.add(std::string_view(name));
    text.add('|');
    text.add(unsigned(port));
    if (!text.ok()) return nullptr;
    const std::string_view wanted = text.view();
    Kept* slot = nullptr;
    for (Kept& k : cache.kept)
        if (k.address == wanted) slot = &k;
    if (!slot) {
        slot = &cache.kept[0];
        for (Kept& k : cache.kept)
            if (k.last_used < slot->last_used) slot = &k;
        slot->connection.close();
        try {
            slot->address = wanted;
        } catch (...) {
            return nullptr;
        }
    }
    slot->last_used = ++cache.uses;
    if (!slot->connection.usable() &&
        !slot->connection.open(name, port, is_unix, std::min(deadline_ms, now_ms() + bounded(memc->connect_timeout)))) {
        slot->connection.close();
        return nullptr;
    }
    slot->connection.end_by(deadline_ms);
    return &slot->connection;
}

// The token after " <flag>" in a reply line ("k<key>"), empty if none.
static std::string_view token(const std::string& line, char flag) noexcept {
    for (size_t i = line.find(' '); i != std::string::npos; i = line.find(' ', i + 1))
        if (i + 1 < line.size() && line[i + 1] == flag) {
            const size_t end = line.find(' ', i + 1);
            return std::string_view(line).substr(i + 2, (end == std::string::npos ? line.size() : end) - i - 2);
        }
    return {};
}

// Keys whose quiet store failed, deleted once `mn` is answered (kept per
// thread: allocated only when a store fails).
static thread_local std::string failed_keys;

bool settle(Connection& c) noexcept {
    if (c.quiet() == 0) return true;
    c.clear_quiet();
    std::string line;
    if (!c.send_all("mn\r\n", 4)) return false;
    failed_keys.clear();
    for (;;) {
        if (!c.read_line(line)) return false;
        if (line == "MN") break;
        // An add that found a value gives way to it (O1 marks an add).
        if (starts(line, "NS") && token(line, 'O') == "1") continue;
        const std::string_view key = token(line, 'k');
        if (key.empty()) return c.fail();  // an error line without its key: what it refused is unknown
        try {
            failed_keys.append(key).push_back('\n');
        } catch (...) {
            return c.fail();
        }
    }
    for (size_t at = 0; at < failed_keys.size();) {
        const size_t end = failed_keys.find('\n', at);
        const std::string key = failed_keys.substr(at, end - at);
        at = end + 1;
        if (!remove(c, key, 0)) return false;
    }
    return true;
}

bool store_quiet(Connection& c, const std::string& key, const char* value, size_t value_length, uint32_t flags,
                 int64_t ttl_s, bool add_only) noexcept {
    // "ms <key> <length> F<flags> T<ttl>[ ME] q k O<0|1>\r\n", formatted by
    // hand: snprintf cost a third of a replicated set's own instructions.
    char request[MEMCACHED_MAX_KEY + 128];
    Text text(request, sizeof request);
    text.add("ms ");
    text.add(std::string_view(key));
    text.add(' ');
    text.add(value_length);
    text.add(" F");
    text.add(flags);
    text.add(" T");
    text.add(ttl_s);
    text.add(add_only ? " ME q k O1\r\n" : " q k O0\r\n");
    if (!text.ok()) return false;
    char end[] = "\r\n";
    iovec parts[3] = {{request, text.size()}, {const_cast<char*>(value), value_length}, {end, 2}};
    if (!c.send_parts(parts, 3)) return false;
    c.add_quiet();
    return c.quiet() < kMaxQuiet || settle(c);
}

const char* problem(const Connection& c) noexcept { return c.problem(); }

bool get(Connection& c, const std::string& key, Item& out) noexcept {
    out = Item{};
    if (!settle(c)) return false;
    char request[MEMCACHED_MAX_KEY + 32];
    const int n = snprintf(request, sizeof request, "mg %s v f t c\r\n", key.c_str());
    std::string line;
    if (n < 0 || size_t(n) >= sizeof request || !c.send_all(request, size_t(n)) || !c.read_line(line)) return false;
    if (line == "EN") return true;
    size_t length = 0;
    if (line.size() < 4 || !starts(line, "VA") ||
        std::from_chars(line.data() + 3, line.data() + line.size(), length).ec != std::errc() ||
        !flag_value(line, 'f', out.flags) || !flag_value(line, 't', out.ttl_s) || !flag_value(line, 'c', out.cas))
        return c.fail();
    if (length > kMaxValue) return c.fail("reply too large (a value over 1 MiB: the shim copies no larger item)");
    if (!c.read_data(length, out.value)) return false;
    out.found = true;
    return true;
}

Stored store(Connection& c, const std::string& key, const char* value, size_t value_length, uint32_t flags,
             int64_t ttl_s, bool add_only, uint64_t if_cas, uint64_t* cas_out) noexcept {
    if (!settle(c)) return Stored::failed;
    char request[MEMCACHED_MAX_KEY + 128];
    int n = snprintf(request, sizeof request, "ms %s %zu F%u T%lld%s", key.c_str(), value_length, unsigned(flags),
                     static_cast<long long>(ttl_s), add_only ? " ME" : "");
    if (n > 0 && if_cas && size_t(n) < sizeof request)
        n += snprintf(request + n, sizeof request - size_t(n), " C%llu", static_cast<unsigned long long>(if_cas));
    if (n > 0 && size_t(n) < sizeof request) n += snprintf(request + n, sizeof request - size_t(n), " c\r\n");
    std::string line;
    if (n < 0 || size_t(n) >= sizeof request || !c.send_all(request, size_t(n)) || !c.send_all(value, value_length) ||
        !c.send_all("\r\n", 2) || !c.read_line(line))
        return Stored::failed;
    if (starts(line, "HD")) {
        if (cas_out && !flag_value(line, 'c', *cas_out)) return c.fail(), Stored::failed;
        return Stored::stored;
    }
    if (starts(line, "NS")) return Stored::not_stored;
    if (starts(line, "EX")) return Stored::exists;
    if (starts(line, "NF")) return Stored::not_found;
    c.fail();  // an error line: what follows it is unknown
    return Stored::failed;
}

Touched touch(Connection& c, const std::string& key, int64_t ttl_s) noexcept {
    if (!settle(c)) return Touched::failed;
    char request[MEMCACHED_MAX_KEY + 48];
    const int n = snprintf(request, sizeof request, "mg %s T%lld\r\n", key.c_str(), static_cast<long long>(ttl_s));
    std::string line;
    if (n < 0 || size_t(n) >= sizeof request || !c.send_all(request, size_t(n)) || !c.read_line(line))
        return Touched::failed;
    if (starts(line, "HD")) return Touched::touched;
    if (starts(line, "EN")) return Touched::not_found;
    c.fail();
    return Touched::failed;
}

bool remove(Connection& c, const std::string& key, uint64_t if_cas) noexcept {
    if (!settle(c)) return false;
    char request[MEMCACHED_MAX_KEY + 48];
    const int n = if_cas ? snprintf(request, sizeof request, "md %s C%llu\r\n", key.c_str(),
                                    static_cast<unsigned long long>(if_cas))
                         : snprintf(request, sizeof request, "md %s\r\n", key.c_str());
    std::string line;
    if (n < 0 || size_t(n) >= sizeof request || !c.send_all(request, size_t(n)) || !c.read_line(line)) return false;
    if (starts(line, "HD") || starts(line, "NF") || starts(line, "EX")) return true;
    return c.fail();
}

}  // namespace mcwatch::shim::meta
