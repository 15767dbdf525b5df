#include "daemon/drain_mover.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "common/errno_text.hpp"
#include "daemon/log.hpp"
#include "libshim/defaults.hpp"
#include "libshim/expiration.hpp"
#include "libshim/router.hpp"
#include "libshim/server_address.hpp"

namespace mcwatch {

namespace {

using Clock = std::chrono::steady_clock;

// One exchange with a server (a connect, a command and its reply).
constexpr auto kExchangeTimeout = std::chrono::seconds(5);
// Polls wait at most this long before looking at the stop flag.
constexpr int kPollSliceMs = 50;
// memcached reads a relative expiration beyond 30 days as a unix time.
constexpr int64_t kMaxRelativeTtlS = 30 * 24 * 3600 - 1;

int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}


// One text-protocol connection with a deadline per exchange, abandoned at
// once when the move is stopped.
class Connection {
public:
    Connection(const ServerAddress& address, const std::atomic<bool>& stop) : address_(address), stop_(stop) {}
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() { close(); }

    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
        buffer_.clear();
    }

    // Sends `request` and reads the first reply line (without \r\n).
    Result<std::string> ask(std::string_view request) {
        deadline_ = Clock::now() + kExchangeTimeout;
        if (fd_ < 0)
            if (Result<> opened = open(); !opened) return failure(opened.error().message);
        if (Result<> sent = send(request); !sent) return fail(sent.error().message);
        return line();
    }
    // The first reply line of an exchange already under way, or the next one.
    Result<std::string> line() {
        for (;;) {
            if (const size_t end = buffer_.find('\n'); end != std::string::npos) {
                std::string out = buffer_.substr(0, end);
                buffer_.erase(0, end + 1);
                if (!out.empty() && out.back() == '\r') out.pop_back();
                return out;
            }
            if (Result<> more = receive(); !more) return fail(more.error().message);
        }
    }
    // `length` bytes of data followed by \r\n.
    Result<std::string> data(size_t length) {
        while (buffer_.size() < length + 2)
            if (Result<> more = receive(); !more) return fail(more.error().message);
        if (buffer_.compare(length, 2, "\r\n") != 0) return fail("data block not followed by \\r\\n");
        std::string out = buffer_.substr(0, length);
        buffer_.erase(0, length + 2);
        return out;
    }
    // A fresh deadline for a long reply (a metadump).
    void extend() { deadline_ = Clock::now() + kExchangeTimeout; }

private:
    Result<std::string> fail(const std::string& why) {
        close();
        return failure(why);
    }

    Result<> open() {
        int fd = -1;
        if (address_.is_unix) {
            SocketAddress sun;
            if (!ServerAddress::unix_socket_address(address_.host, sun))
                return failure(fmt::format("{}: path too long (over {} bytes)", address_.text, kMaxUnixPathLength));
            fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) return failure(fmt::format("socket: {}", errno_text(errno)));
            fd_ = fd;
            if (::connect(fd, sun.get(), sun.length) != 0 && errno != EINPROGRESS) return connect_failed(errno);
        } else {
            addrinfo hints{};
            hints.ai_socktype = SOCK_STREAM;
            addrinfo* found = nullptr;
            const std::string port = fmt::format("{}", address_.port);
            if (const int rc = ::getaddrinfo(address_.host.c_str(), port.c_str(), &hints, &found); rc != 0)
                return failure(fmt::format("cannot resolve {}: {}", address_.host, ::gai_strerror(rc)));
            fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                ::freeaddrinfo(found);
                return failure(fmt::format("socket: {}", errno_text(errno)));
            }
            fd_ = fd;
            const int rc = ::connect(fd, found->ai_addr, found->ai_addrlen);
            const int error = errno;
            ::freeaddrinfo(found);
            if (rc != 0 && error != EINPROGRESS) return connect_failed(error);
        }
        if (Result<> ready = wait(POLLOUT); !ready) return connect_failed(0, ready.error().message);
        int error = 0;
        socklen_t size = sizeof error;
        ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error != 0) return connect_failed(error);
        return {};
    }

    Result<> connect_failed(int error, const std::string& why = "") {
        close();
        return failure(fmt::format("cannot connect: {}", why.empty() ? errno_text(error) : why));
    }

    Result<> wait(short events) {
        for (;;) {
            if (stop_.load(std::memory_order_relaxed)) return failure("stopped");
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
            if (left <= 0) return failure(fmt::format("no answer within {}s", kExchangeTimeout.count()));
            pollfd p{fd_, events, 0};
            const int n = ::poll(&p, 1, int(std::min<int64_t>(left, kPollSliceMs)));
            if (n < 0 && errno != EINTR) return failure(fmt::format("poll: {}", errno_text(errno)));
            if (n > 0) return {};
        }
    }

    Result<> send(std::string_view bytes) {
        while (!bytes.empty()) {
            const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n > 0) {
                bytes.remove_prefix(size_t(n));
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR) return failure(fmt::format("send: {}", errno_text(errno)));
            if (Result<> ready = wait(POLLOUT); !ready) return ready;
        }
        return {};
    }

    Result<> receive() {
        char chunk[65536];
        for (;;) {
            const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
            if (n > 0) {
                buffer_.append(chunk, size_t(n));
                return {};
            }
            if (n == 0) return failure("connection closed by the server");
            if (errno != EAGAIN && errno != EINTR) return failure(fmt::format("recv: {}", errno_text(errno)));
            if (Result<> ready = wait(POLLIN); !ready) return ready;
        }
    }

    const ServerAddress& address_;
    const std::atomic<bool>& stop_;
    int fd_ = -1;
    std::string buffer_;
    Clock::time_point deadline_;
};

// metadump's keys are URI-encoded (%XX).
std::optional<std::string> uri_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        if (i + 2 >= text.size()) return std::nullopt;
        unsigned value = 0;
        for (size_t j = 1; j <= 2; ++j) {
            const char c = text[i + j];
            value <<= 4;
            if (c >= '0' && c <= '9')
                value |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f')
                value |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                value |= unsigned(c - 'A' + 10);
            else
                return std::nullopt;
        }
        out += char(value);
        i += 2;
    }
    return out;
}

std::string base64(std::string_view bytes) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < bytes.size(); i += 3) {
        const size_t n = std::min<size_t>(3, bytes.size() - i);
        uint32_t v = 0;
        for (size_t j = 0; j < 3; ++j) v = (v << 8) | (j < n ? uint8_t(bytes[i + j]) : 0);
        for (size_t j = 0; j < 4; ++j) out += j <= n ? kAlphabet[(v >> (18 - 6 * j)) & 63] : '=';
    }
    return out;
}

// A key as meta commands carry it: as is when the text protocol can, else
// base64 with the `b` flag.
struct WireKey {
    std::string text;
    const char* flag;  // " b" or ""
};
WireKey wire_key(const std::string& key) {
    const bool plain = key.size() <= 250 && std::all_of(key.begin(), key.end(),
                                                        [](char c) { return uint8_t(c) > 0x20 && uint8_t(c) < 0x7f; });
    return plain ? WireKey{key, ""} : WireKey{base64(key), " b"};
}

// The value of flag `name` in a meta reply's tokens ("c123" -> "123").
std::optional<std::string_view> meta_flag(std::string_view reply, char name) {
    size_t i = 0;
    while (i < reply.size()) {
        const size_t end = std::min(reply.find(' ', i), reply.size());
        if (end > i && reply[i] == name) return reply.substr(i + 1, end - i - 1);
        i = end + 1;
    }
    return std::nullopt;
}

std::optional<int64_t> to_int(std::optional<std::string_view> text) {
    if (!text || text->empty()) return std::nullopt;
    try {
        size_t used = 0;
        const int64_t value = std::stoll(std::string(*text), &used);
        if (used != text->size()) return std::nullopt;
        return value;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// After a membership change, the key superseded its copy on the source: its
// new server (`to`) holds a value a client wrote there (through the shim,
// which deleted the old copy first) or a read moved there (the same value),
// or a client deleted it there. The source's copy is then only a stale value
// for a later change that places the key there again, so it goes, if
// unchanged since `cas` (when not given, since it is read now). Not when
// the new server holds another reader's lease: that reader is moving the
// copy, and deletes it itself.
void drop_superseded(Connection& source, Connection& to, const WireKey& wire, std::optional<int64_t> cas) {
    const Result<std::string> there = to.ask(fmt::format("mg {} f s{}\r\n", wire.text, wire.flag));
    if (!there || !(there->starts_with("HD") || there->starts_with("EN"))) return;
    if (there->starts_with("HD") && to_int(meta_flag(*there, 'f')) == int64_t(kLeaseFlags) &&
        to_int(meta_flag(*there, 's')) == 0)
        return;
    if (!cas) {
        const Result<std::string> read = source.ask(fmt::format("mg {} c{}\r\n", wire.text, wire.flag));
        if (!read || !read->starts_with("HD")) return;
        cas = to_int(meta_flag(*read, 'c'));
        if (!cas) return;
    }
    (void)source.ask(fmt::format("md {} C{}{}\r\n", wire.text, *cas, wire.flag));
}

// After a membership change, whether a key of `source` moves: its server now
// is another, live and reached natively (a copy at a dead or draining
// server's substitute must not outlive the outage: the recently-down rules
// handle those), and with replicas the source is none of its copies.
bool leaves_source(route::Router& router, const route::Decision& d, const std::string& key, size_t source,
                   uint32_t replicas) {
    constexpr uint32_t kNotNative =
        route::kRouteSubstitute | route::kRouteAllDead | route::kRouteStale | route::kRouteDraining;
    if (d.flags & kNotNative || d.target < 0 || d.target != d.native || size_t(d.target) == source) return false;
    if (replicas <= 1) return true;
    int32_t copies[route::kMaxCopies];
    const uint32_t count = router.copies_with(router.topology().view(), key.data(), key.size(), replicas, copies);
    return std::none_of(copies, copies + count, [&](int32_t copy) { return copy >= 0 && size_t(copy) == source; });
}

}  // namespace

void publish_drain_move(const DrainMover* mover, state::ServerDynamic& view) {
    if (!mover) {
        if (state::drain_move_running(view.drain_move)) view.drain_move = uint32_t(state::DrainMove::stopped);
        return;
    }
    const DrainMoveProgress p = mover->progress();
    view.drain_move = uint32_t(p.phase);
    view.drain_moved = p.moved;
    view.drain_skipped = p.skipped;
    view.drain_remaining = p.remaining();
    view.drain_move_started_unix_ms = p.started_unix_ms;
    if (p.phase == state::DrainMove::failed && !view.last_error[0])
        *fmt::format_to_n(view.last_error, sizeof view.last_error - 1, "drain --move: {}", p.why).out = '\0';
}

DrainMover::DrainMover(const Config& config, size_t source, MovePurpose purpose, uint32_t rate)
    : config_(config), source_(source), server_(config.servers[source].text), purpose_(purpose),
      rate_(std::max<uint32_t>(rate ? rate : config.drain_rate, 1)) {}

std::unique_ptr<DrainMover> DrainMover::start(const Config& config, size_t source, MovePurpose purpose, uint32_t rate) {
    std::unique_ptr<DrainMover> mover(new DrainMover(config, source, purpose, rate));
    mover->started_unix_ms_ = unix_ms();
    mover->thread_ = std::thread([m = mover.get()] { m->run(); });
    return mover;
}

DrainMover::~DrainMover() {
    stop("mcwatchd stopped the move");
    if (thread_.joinable()) thread_.join();
}

void DrainMover::stop(const std::string& why) {
    {
        std::lock_guard lock(why_mutex_);
        if (why_.empty() && progress().running()) why_ = why;
    }
    stop_requested_ = true;
    std::lock_guard lock(pace_mutex_);
    pace_.notify_all();
}

DrainMoveProgress DrainMover::progress() const {
    DrainMoveProgress p;
    p.phase = state::DrainMove(phase_.load(std::memory_order_acquire));
    p.listed = listed_.load();
    p.moved = moved_.load();
    p.skipped = skipped_.load();
    p.kept = kept_.load();
    p.rate = rate_;
    p.started_unix_ms = started_unix_ms_.load();
    p.ended_unix_ms = ended_unix_ms_.load();
    if (!p.running()) {
        std::lock_guard lock(why_mutex_);
        p.why = why_;
    }
    return p;
}

bool DrainMover::take_end() { return !progress().running() && !end_taken_.exchange(true); }

void DrainMover::finish(state::DrainMove phase, std::string why) {
    {
        std::lock_guard lock(why_mutex_);
        if (phase == state::DrainMove::failed && stop_requested_) phase = state::DrainMove::stopped;
        if (phase != state::DrainMove::stopped || why_.empty()) why_ = std::move(why);
    }
    ended_unix_ms_ = unix_ms();
    phase_.store(uint32_t(phase), std::memory_order_release);
    const DrainMoveProgress p = progress();
    log_event(phase == state::DrainMove::failed ? "error" : "info", event("end"),
              {{"server", server_},
               {"outcome", state::drain_move_name(uint32_t(phase))},
               {"moved", fmt::format("{}", p.moved)},
               {"skipped", fmt::format("{}", p.skipped)},
               {"kept", fmt::format("{}", p.kept)},
               {"remaining", fmt::format("{}", p.remaining())},
               {"reason", p.why}});
}

void DrainMover::run() {
    log_event("info", event("start"), {{"server", server_}, {"rate", fmt::format("{}", rate_)}});
    Result<> moved = move_all();
    if (!moved)
        finish(state::DrainMove::failed, moved.error().message);
    else if (stop_requested_)
        finish(state::DrainMove::stopped, "");
    else
        finish(state::DrainMove::done, "every key listed was moved or skipped");
}

Result<> DrainMover::move_all() {
    // Clients' placement: the daemon's server list and routing, and the
    // states it publishes (this server draining) from its state file.
    route::Topology topology;
    std::string error;
    if (!route::Topology::build(config_.servers, config_.distribution, config_.hash, topology, error))
        return failure(error);
    route::Router router(std::move(topology), std::make_shared<route::StateSource>(config_.state_file));

    const ServerAddress& source_address = config_.servers[source_];
    Connection source(source_address, stop_requested_);
    std::vector<std::unique_ptr<Connection>> destinations;
    for (const ServerAddress& address : config_.servers)
        destinations.push_back(std::make_unique<Connection>(address, stop_requested_));

    // 1. The keys: metadump lists what the server holds as it walks its LRUs.
    std::vector<std::string> keys;
    for (int attempt = 0;; ++attempt) {
        Result<std::string> first = source.ask("lru_crawler metadump all\r\n");
        if (!first) return failure(fmt::format("{}: lru_crawler metadump: {}", server_, first.error().message));
        // Another crawl under way: memcached answers BUSY; try again shortly.
        if (first->starts_with("BUSY") && attempt < 50) {
            std::unique_lock lock(pace_mutex_);
            pace_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_requested_.load(); });
            if (stop_requested_) return {};
            continue;
        }
        if (first->starts_with("ERROR") || first->starts_with("CLIENT_ERROR") || first->starts_with("SERVER_ERROR") ||
            first->starts_with("BUSY"))
            return failure(
                fmt::format("{} answered `lru_crawler metadump all` with '{}' (memcached 1.4.31 or later, "
                            "with its LRU crawler enabled, is needed)",
                            server_, *first));
        std::string text = std::move(*first);
        for (;;) {
            if (text == "END") break;
            if (text.starts_with("key=")) {
                const std::string_view encoded = std::string_view(text).substr(4, text.find(' ') - 4);
                if (std::optional<std::string> key = uri_decode(encoded)) keys.push_back(std::move(*key));
                listed_.store(keys.size());
            }
            source.extend();
            Result<std::string> next = source.line();
            if (!next) return failure(fmt::format("{}: lru_crawler metadump: {}", server_, next.error().message));
            text = std::move(*next);
        }
        break;
    }
    phase_.store(uint32_t(state::DrainMove::moving), std::memory_order_release);
    log_event("info", event("listed"), {{"server", server_}, {"keys", fmt::format("{}", keys.size())}});

    // 2. Each key, paced: at most rate_ keys per second from the start,
    // counting the keys that cost an exchange (one that stays costs none).
    const bool membership = purpose_ == MovePurpose::membership;
    const int64_t cap_s = std::min<int64_t>(
        std::max<int64_t>(std::chrono::duration_cast<std::chrono::seconds>(config_.recently_down_window).count(), 1),
        kMaxRelativeTtlS);
    const auto began = Clock::now();
    uint64_t paced = 0;
    const auto skip = [this] { skipped_.fetch_add(1); };
    for (const std::string& key : keys) {
        if (stop_requested_) return {};
        const route::Decision d = router.route(key.data(), key.size());
        if (membership) {
            if (!leaves_source(router, d, key, source_, config_.replicas)) {
                kept_.fetch_add(1);  // its server did not change: it stays
                continue;
            }
        } else if (d.flags & (route::kRouteAllDead | route::kRouteStale) || d.target < 0 ||
                   size_t(d.target) == source_) {
            skip();  // no server clients would send it to but this one
            continue;
        }
        {
            const auto due = began + std::chrono::microseconds(int64_t(paced++) * 1'000'000 / rate_);
            std::unique_lock lock(pace_mutex_);
            pace_.wait_until(lock, due, [this] { return stop_requested_.load(); });
        }
        if (stop_requested_) return {};
        Connection& to = *destinations[size_t(d.target)];
        const WireKey wire = wire_key(key);

        // Lease: only where the key is absent (a client's value wins).
        Result<std::string> leased =
            to.ask(fmt::format("ms {} 0 T{} F{} ME c{}\r\n\r\n", wire.text, kLeaseTtlS, kLeaseFlags, wire.flag));
        if (!leased || !leased->starts_with("HD")) {
            if (membership && leased && leased->starts_with("NS")) drop_superseded(source, to, wire, std::nullopt);
            skip();
            continue;
        }
        const std::optional<int64_t> lease_cas = to_int(meta_flag(*leased, 'c'));
        const auto drop_lease = [&] {
            if (lease_cas) (void)to.ask(fmt::format("md {} C{}{}\r\n", wire.text, *lease_cas, wire.flag));
        };

        // Read the original afresh: value, flags, time left, cas.
        Result<std::string> header = source.ask(fmt::format("mg {} v f t c{}\r\n", wire.text, wire.flag));
        if (!header) {
            drop_lease();
            return failure(fmt::format("{}: mg: {}", server_, header.error().message));
        }
        if (header->starts_with("EN")) {
            drop_lease();
            skip();  // vanished meanwhile
            continue;
        }
        if (!header->starts_with("VA ")) {
            drop_lease();
            return failure(fmt::format("{} answered mg with '{}'", server_, *header));
        }
        const std::string_view tokens = std::string_view(*header).substr(3);
        const std::optional<int64_t> size = to_int(tokens.substr(0, tokens.find(' ')));
        const std::optional<int64_t> flags = to_int(meta_flag(tokens, 'f'));
        const std::optional<int64_t> left = to_int(meta_flag(tokens, 't'));
        const std::optional<int64_t> cas = to_int(meta_flag(tokens, 'c'));
        if (!size || *size < 0 || !flags || !left || !cas) {
            drop_lease();
            return failure(fmt::format("{} answered mg with '{}'", server_, *header));
        }
        Result<std::string> value = source.data(size_t(*size));
        if (!value) {
            drop_lease();
            return failure(fmt::format("{}: mg: {}", server_, value.error().message));
        }
        // A drain's copy lives at most the window (the server may come back);
        // after a membership change the key lives at its new server from now
        // on, with all the time it had (-1: it never expires, 0).
        const int64_t ttl = membership ? (*left < 0 ? 0 : *left) : *left < 0 ? cap_s : std::min(*left, cap_s);
        const int64_t expiration = membership ? route::encode_from_now(ttl, unix_ms() / 1000) : ttl;
        if ((membership ? *left == 0 : ttl <= 0) || (value->empty() && uint32_t(*flags) == kLeaseFlags) || !lease_cas) {
            drop_lease();
            skip();  // about to expire, or another reader's lease
            continue;
        }

        // Store under the lease: fails if a client wrote or deleted the key there since.
        Result<std::string> stored = to.ask(fmt::format("ms {} {} T{} F{} C{} c{}\r\n{}\r\n", wire.text, value->size(),
                                                        expiration, uint32_t(*flags), *lease_cas, wire.flag, *value));
        if (!stored || !stored->starts_with("HD")) {
            if (membership && stored) drop_superseded(source, to, wire, *cas);
            skip();  // a client's write won
            continue;
        }
        // With replicas, the key's further copies too, each only where it is
        // absent (a client's value there wins, as at the first copy).
        std::vector<std::pair<Connection*, int64_t>> further;  // each copy made, with its cas
        if (config_.replicas > 1) {
            int32_t copies[route::kMaxCopies];
            const uint32_t count =
                router.copies_with(router.topology().view(), key.data(), key.size(), config_.replicas, copies);
            for (uint32_t c = 1; c < count; ++c) {
                if (copies[c] < 0 || size_t(copies[c]) == source_ || copies[c] == d.target) continue;
                Connection& copy = *destinations[size_t(copies[c])];
                const Result<std::string> added =
                    copy.ask(fmt::format("ms {} {} T{} F{} ME c{}\r\n{}\r\n", wire.text, value->size(), expiration,
                                         uint32_t(*flags), wire.flag, *value));
                if (added && added->starts_with("HD"))
                    if (const std::optional<int64_t> copy_cas = to_int(meta_flag(*added, 'c')))
                        further.emplace_back(&copy, *copy_cas);
            }
        }
        // Off the source server, only if unchanged since it was read.
        Result<std::string> removed = source.ask(fmt::format("md {} C{}{}\r\n", wire.text, *cas, wire.flag));
        if (!removed) return failure(fmt::format("{}: md: {}", server_, removed.error().message));
        if (removed->starts_with("HD")) {
            moved_.fetch_add(1);
            continue;
        }
        skip();
        // Changed there by a writer that bypasses the shim (one through the
        // shim deletes it there before writing where the key goes, which
        // breaks the lease): the copy made is older, so it goes too, unless
        // replaced since.
        if (removed->starts_with("EX")) {
            if (const std::optional<int64_t> copy_cas = to_int(meta_flag(*stored, 'c')))
                (void)to.ask(fmt::format("md {} C{}{}\r\n", wire.text, *copy_cas, wire.flag));
            for (const auto& [copy, copy_cas] : further)
                (void)copy->ask(fmt::format("md {} C{}{}\r\n", wire.text, copy_cas, wire.flag));
        }
    }
    return {};
}

}  // namespace mcwatch
