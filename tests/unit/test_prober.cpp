// prober: real memcached processes on free loopback ports, and scripted peers
// that misbehave. No assertion depends on how fast the machine is: probes that
// must succeed get a generous timeout, and a timeout is asserted only against
// a peer that never answers.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <charconv>
#include <string>
#include <thread>

#include "daemon/prober.hpp"
#include "scratch_dir.hpp"
#include "test_support.hpp"

using namespace mcwatch;
using mcwatch::test::FakePeer;
using mcwatch::test::MemcachedProcess;

namespace {

constexpr Millis kGenerous{5000};  // for probes that must succeed, even on a loaded machine
constexpr Millis kShort{300};      // for probes that must time out
const std::string kShortTimeout = "timeout after 300ms";

ServerAddress tcp_server(const std::string& host, uint16_t port) {
    ServerAddress address;
    address.host = host;
    address.port = port;
    address.text =
        host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
    return address;
}

ServerAddress unix_server(const std::string& path) {
    ServerAddress address;
    address.is_unix = true;
    address.host = path;
    address.text = "unix:" + path;
    return address;
}

// A prober of the one memcached at 127.0.0.1:port, with a generous timeout.
std::unique_ptr<Prober> prober_on(uint16_t port) {
    auto made = Prober::create({tcp_server("127.0.0.1", port)}, kGenerous);
    REQUIRE(made);
    return std::move(*made);
}

ProbeResult probe_once(Prober& prober, bool flush = false) {
    std::vector<ProbeResult> results = prober.run_round({flush});
    REQUIRE(results.size() == 1);
    return results[0];
}

// Rounds until one is ok, at most `rounds`: for a server that was just
// (re)started or continued, where one slow round must not fail the test.
ProbeResult probe_until_ok(Prober& prober, int rounds = 10) {
    ProbeResult result;
    for (int i = 0; i < rounds; ++i) {
        result = probe_once(prober);
        if (result.ok) break;
    }
    return result;
}

// A number from a raw `stats` reply, or kUnknown.
uint64_t stat_in(const std::string& reply, const std::string& name) {
    const std::string key = "STAT " + name + " ";
    const size_t at = reply.find(key);
    if (at == std::string::npos) return state::kUnknown;
    uint64_t value = state::kUnknown;
    const char* first = reply.data() + at + key.size();
    std::from_chars(first, reply.data() + reply.size(), value);
    return value;
}

const std::string kFakeReply =
    "STAT pid 4242\r\n"
    "STAT uptime 77\r\n"
    "STAT version 1.6.99-fake\r\n"
    "STAT curr_items 5\r\n"
    "END\r\n";

}  // namespace

TEST_CASE("prober: a live memcached answers with its facts, on a kept connection") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port);
    REQUIRE(memcached.ready());
    const std::unique_ptr<Prober> owned = prober_on(port);
    Prober& prober = *owned;

    const ProbeResult result = probe_once(prober);
    CHECK(result.ok);
    CHECK(!result.refused);
    CHECK(result.error == "");
    CHECK(!result.flushed);
    CHECK(result.resolved == fmt::format("127.0.0.1:{}", port));
    CHECK(result.stats.pid == uint64_t(memcached.pid()));
    CHECK(result.stats.uptime_s != state::kUnknown);
    CHECK(result.stats.curr_items == 0);
    CHECK(result.stats.curr_connections != state::kUnknown);
    CHECK(result.stats.get_hits == 0);
    CHECK(result.stats.get_misses == 0);
    CHECK(result.stats.evictions == 0);
    CHECK(!result.stats.version.empty());
    CHECK(result.rtt.count() > 0);

    // More rounds reuse the connection: memcached sees no new one but ours.
    const uint64_t connections = stat_in(test::exchange_tcp(port, "stats\r\n", "END\r\n"), "total_connections");
    REQUIRE(connections != state::kUnknown);
    for (int i = 0; i < 5; ++i) {
        const ProbeResult again = probe_once(prober);
        CHECK(again.ok);
        CHECK(again.resolved == result.resolved);
    }
    CHECK(stat_in(test::exchange_tcp(port, "stats\r\n", "END\r\n"), "total_connections") == connections + 1);
}

TEST_CASE("prober: a port nobody listens on is refused") {
    const uint16_t port = test::free_loopback_port();
    const std::unique_ptr<Prober> owned = prober_on(port);
    Prober& prober = *owned;
    for (int round = 0; round < 3; ++round) {
        const ProbeResult result = probe_once(prober);
        CHECK(!result.ok);
        CHECK(result.refused);
        CHECK(result.error == "connection refused");
        CHECK(result.stats.pid == state::kUnknown);
    }
}

TEST_CASE("prober: a stopped memcached times out, and answers again once continued") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port);
    REQUIRE(memcached.ready());
    auto made = Prober::create({tcp_server("127.0.0.1", port)}, kShort);
    REQUIRE(made);
    Prober& prober = **made;
    REQUIRE(probe_until_ok(prober).ok);

    memcached.send_signal(SIGSTOP);
    REQUIRE(test::wait_until_stopped(memcached.pid()));
    // The kept connection, then a new one (the kernel still accepts it).
    for (int round = 0; round < 2; ++round) {
        const ProbeResult result = probe_once(prober);
        CHECK(!result.ok);
        CHECK(!result.refused);
        CHECK(result.error == kShortTimeout + " (no reply)");
    }

    memcached.send_signal(SIGCONT);
    const ProbeResult again = probe_until_ok(prober);
    CHECK(again.ok);
    CHECK(again.stats.pid == uint64_t(memcached.pid()));
}

TEST_CASE("prober: a memcached killed between rounds fails, and is found again once restarted") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess first = MemcachedProcess::on_port(port);
    REQUIRE(first.ready());
    const std::unique_ptr<Prober> owned = prober_on(port);
    Prober& prober = *owned;
    const ProbeResult before = probe_once(prober);
    REQUIRE(before.ok);

    first.stop();
    // The kept connection is dead: depending on when its close is seen, the
    // first round fails on it or on a refused reconnect; the next is refused.
    const ProbeResult dead = probe_once(prober);
    CHECK(!dead.ok);
    const ProbeResult still_dead = probe_once(prober);
    CHECK(!still_dead.ok);
    CHECK(still_dead.refused);

    MemcachedProcess second = MemcachedProcess::on_port(port);
    REQUIRE(second.ready());
    const ProbeResult after = probe_until_ok(prober);
    CHECK(after.ok);
    CHECK(after.stats.pid == uint64_t(second.pid()));
    CHECK(after.stats.pid != before.stats.pid);
}

TEST_CASE("prober: flush_first empties that server before its stats, and only that one") {
    const uint16_t kept_port = test::free_loopback_port();
    const uint16_t flushed_port = test::free_loopback_port();
    MemcachedProcess kept = MemcachedProcess::on_port(kept_port);
    MemcachedProcess flushed = MemcachedProcess::on_port(flushed_port);
    REQUIRE(kept.ready());
    REQUIRE(flushed.ready());
    for (uint16_t port : {kept_port, flushed_port}) {
        REQUIRE(test::exchange_tcp(port, "set k 0 0 1\r\nx\r\n", "\r\n") == "STORED\r\n");
        REQUIRE(test::exchange_tcp(port, "get k\r\n", "END\r\n") == "VALUE k 0 1\r\nx\r\nEND\r\n");
    }

    auto made = Prober::create({tcp_server("127.0.0.1", kept_port), tcp_server("127.0.0.1", flushed_port)}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const std::vector<ProbeResult> results = prober.run_round({false, true});
    REQUIRE(results.size() == 2);
    CHECK(results[0].ok);
    CHECK(!results[0].flushed);
    CHECK(results[0].stats.curr_items == 1);
    CHECK(results[1].ok);
    CHECK(results[1].flushed);
    CHECK(test::exchange_tcp(kept_port, "get k\r\n", "END\r\n") == "VALUE k 0 1\r\nx\r\nEND\r\n");
    CHECK(test::exchange_tcp(flushed_port, "get k\r\n", "END\r\n") == "END\r\n");

    // Flushing again on the kept connection works too.
    REQUIRE(test::exchange_tcp(flushed_port, "set k 0 0 1\r\ny\r\n", "\r\n") == "STORED\r\n");
    const std::vector<ProbeResult> again = prober.run_round({false, true});
    CHECK(again[1].ok);
    CHECK(again[1].flushed);
    CHECK(test::exchange_tcp(flushed_port, "get k\r\n", "END\r\n") == "END\r\n");
}

TEST_CASE("prober: a memcached that refuses flush_all (-F) still answers the stats after the refusal") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port, {"-F"});  // --disable-flush-all
    REQUIRE(memcached.ready());
    const std::unique_ptr<Prober> owned = prober_on(port);
    Prober& prober = *owned;
    const ProbeResult result = probe_once(prober, true);
    CHECK(result.ok);
    CHECK(!result.flushed);
    CHECK(result.flush_refused == "client error: \"CLIENT_ERROR flush_all not allowed\"");
    CHECK(result.stats.pid != state::kUnknown);
    // Without flush it is a healthy server.
    CHECK(probe_until_ok(prober).ok);
}

TEST_CASE("prober: a memcached answering with an error line and closing (at its connection limit) answered") {
    FakePeer peer([](int fd, const std::atomic<bool>& stopping) {
        test::peer_read_request(fd, stopping);
        test::peer_send(fd, "ERROR Too many open connections\r\n", stopping);
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(!result.ok);
    CHECK(result.answered_error);
    CHECK(result.error == "error reply: \"ERROR Too many open connections\"");
    // The same before a flush_all: the refusal of the first command is the answer.
    const ProbeResult flushed = probe_once(prober, true);
    CHECK(!flushed.ok);
    CHECK(flushed.answered_error);
    CHECK(!flushed.flushed);
}

TEST_CASE("prober: memcached on a unix socket; a missing socket is refused") {
    test::ScratchDir dir;
    const std::string path = dir.file("mc.sock");
    auto made = Prober::create({unix_server(path), unix_server(dir.file("missing.sock"))}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    {
        MemcachedProcess memcached = MemcachedProcess::on_unix_socket(path);
        REQUIRE(memcached.ready());
        const std::vector<ProbeResult> results = prober.run_round({});
        CHECK(results[0].ok);
        CHECK(results[0].stats.pid == uint64_t(memcached.pid()));
        CHECK(results[0].resolved == "");
        CHECK(!results[1].ok);
        CHECK(results[1].refused);
        CHECK(results[1].error == "no such unix socket");
    }
    // Killed, memcached leaves its socket file behind: nobody listens on it.
    prober.run_round({});  // may fail on the dead kept connection first
    const ProbeResult gone = prober.run_round({})[0];
    CHECK(!gone.ok);
    CHECK(gone.refused);
    CHECK((gone.error == "connection refused" || gone.error == "no such unix socket"));
}

TEST_CASE("prober: IPv6 loopback") {
    if (!test::ipv6_loopback_available()) {
        MESSAGE("skipped: no IPv6 loopback here");
        return;
    }
    const uint16_t port = test::free_loopback_port(true);
    MemcachedProcess memcached = MemcachedProcess::on_port(port, {}, "::1");
    REQUIRE(memcached.ready());
    auto made = Prober::create({tcp_server("::1", port)}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(result.ok);
    CHECK(result.resolved == fmt::format("[::1]:{}", port));
    CHECK(result.stats.pid == uint64_t(memcached.pid()));
}

TEST_CASE("prober: a hostname is looked up, and each address tried in turn") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port);  // 127.0.0.1 only
    REQUIRE(memcached.ready());
    // localhost may give ::1 first, where nobody listens: 127.0.0.1 is tried next.
    auto made = Prober::create({tcp_server("localhost", port)}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_until_ok(prober, 3);
    CHECK(result.ok);
    CHECK(result.resolved == fmt::format("127.0.0.1:{}", port));
    CHECK(result.stats.pid == uint64_t(memcached.pid()));
}

TEST_CASE("prober: a name that does not resolve fails while the other servers are probed") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port);
    REQUIRE(memcached.ready());
    // .invalid is reserved (RFC 6761): it never resolves.
    auto made = Prober::create({tcp_server("nonexistent.invalid", 11211), tcp_server("127.0.0.1", port)}, Millis(2000));
    REQUIRE(made);
    Prober& prober = **made;
    // A slow resolver makes a round end "resolving name"; the lookup carries on
    // into the next rounds and ends, at the latest, at glibc's resolver timeout.
    bool told = false;
    for (int round = 0; round < 20 && !told; ++round) {
        const std::vector<ProbeResult> results = prober.run_round({});
        REQUIRE(results.size() == 2);
        CHECK(results[1].ok);
        CHECK(!results[0].ok);
        CHECK(!results[0].refused);
        CHECK(results[0].error.find("resolv") != std::string::npos);
        told = results[0].error.starts_with("cannot resolve name: ");
    }
    CHECK(told);
}

TEST_CASE("prober: destroyed while name lookups still run, it leaves nothing behind") {
    const int before = test::count_open_fds_settled();
    for (int i = 0; i < 20; ++i) {
        // A round this short usually ends before the lookup does.
        auto made = Prober::create({tcp_server("localhost", 11211), tcp_server("nonexistent.invalid", 1)}, Millis(1));
        REQUIRE(made);
        Prober& prober = **made;
        const std::vector<ProbeResult> results = prober.run_round({});
        CHECK(!results[1].ok);
    }
    // A lookup that could not be cancelled holds a descriptor until it ends.
    int after = test::count_open_fds();
    for (int wait = 0; wait < 1000 && after != before; ++wait) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        after = test::count_open_fds();
    }
    CHECK(after == before);
}

TEST_CASE("prober: a peer answering garbage fails at once") {
    FakePeer peer([](int fd, const std::atomic<bool>& stopping) {
        if (!test::peer_read_request(fd, stopping)) return;
        test::peer_send(fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", stopping);
        test::peer_hold(fd, stopping);
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(!result.ok);
    CHECK(!result.refused);
    CHECK(result.error.starts_with("garbage reply: \"HTTP/1.1"));
}

TEST_CASE("prober: a reply sent one byte at a time is read whole") {
    FakePeer peer([](int fd, const std::atomic<bool>& stopping) {
        if (!test::peer_read_request(fd, stopping)) return;
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (char byte : kFakeReply) {
            if (!test::peer_send(fd, std::string_view(&byte, 1), stopping)) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        test::peer_hold(fd, stopping);
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, Millis(20000));
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(result.ok);
    CHECK(result.stats.pid == 4242);
    CHECK(result.stats.uptime_s == 77);
    CHECK(result.stats.version == "1.6.99-fake");
    CHECK(result.stats.curr_items == 5);
    CHECK(result.stats.evictions == state::kUnknown);
}

TEST_CASE("prober: a peer that closes mid-reply fails") {
    const std::string half = "STAT pid 1\r\nSTAT upt";
    FakePeer peer([&half](int fd, const std::atomic<bool>& stopping) {
        if (test::peer_read_request(fd, stopping)) test::peer_send(fd, half, stopping);
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(!result.ok);
    CHECK(!result.refused);
    CHECK(result.error == fmt::format("closed mid-reply ({} bytes)", half.size()));
    CHECK(result.stats.pid == state::kUnknown);  // nothing half-parsed leaks out
}

TEST_CASE("prober: a peer that resets the connection fails") {
    FakePeer peer([](int fd, const std::atomic<bool>& stopping) {
        if (!test::peer_read_request(fd, stopping)) return;
        const linger abort_on_close{1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(!result.ok);
    CHECK(result.error == "connection reset");
}

TEST_CASE("prober: an endless reply fails as oversized") {
    FakePeer peer([](int fd, const std::atomic<bool>& stopping) {
        if (!test::peer_read_request(fd, stopping)) return;
        std::string chunk;
        for (int i = 0; i < 100; ++i) chunk += "STAT filler 1\r\n";
        // Until the prober gives up and closes: far more than the bound.
        for (int i = 0; i < 100000 && test::peer_send(fd, chunk, stopping); ++i) {
        }
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(!result.ok);
    CHECK(result.error.starts_with("oversized reply"));
}

TEST_CASE("prober: a peer that never answers times out; its late answer is never read") {
    std::atomic<bool> round_over{false};
    std::atomic<bool> late_sent{false};
    int connection = 0;  // only the peer's thread touches it
    FakePeer peer([&](int fd, const std::atomic<bool>& stopping) {
        if (++connection == 1) {
            // Silent until the round gave up on it, then answers anyway.
            if (!test::peer_read_request(fd, stopping)) return;
            for (int i = 0; i < 1000 && !round_over && !stopping; ++i) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
            test::peer_send(fd, "STAT pid 1\r\nEND\r\n", stopping);
            late_sent = true;
            test::peer_hold(fd, stopping);
            return;
        }
        while (test::peer_read_request(fd, stopping)) {
            test::peer_send(fd, "STAT pid 2\r\nEND\r\n", stopping);
        }
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kShort);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult silent = probe_once(prober);
    CHECK(!silent.ok);
    CHECK(!silent.refused);
    CHECK(silent.error == kShortTimeout + " (no reply)");

    round_over = true;
    for (int i = 0; i < 1000 && !late_sent; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(late_sent);
    const ProbeResult next = probe_until_ok(prober);
    CHECK(next.ok);
    CHECK(next.stats.pid == 2);
}

TEST_CASE("prober: a peer that stops mid-reply times out with what it sent") {
    const std::string part = "STAT pid 1\r\n";
    FakePeer peer([&part](int fd, const std::atomic<bool>& stopping) {
        if (!test::peer_read_request(fd, stopping)) return;
        test::peer_send(fd, part, stopping);
        test::peer_hold(fd, stopping);
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kShort);
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult result = probe_once(prober);
    CHECK(!result.ok);
    CHECK(result.error == fmt::format("{} (partial reply: {} bytes)", kShortTimeout, part.size()));
}

TEST_CASE("prober: bytes after END make the prober reconnect before the next round") {
    FakePeer peer([](int fd, const std::atomic<bool>& stopping) {
        while (test::peer_read_request(fd, stopping)) {
            test::peer_send(fd, "STAT pid 9\r\nEND\r\nSTAT pid 666\r\nEND\r\n", stopping);
        }
    });
    auto made = Prober::create({tcp_server("127.0.0.1", peer.port())}, kGenerous);
    REQUIRE(made);
    Prober& prober = **made;
    for (int round = 1; round <= 3; ++round) {
        const ProbeResult result = probe_once(prober);
        CHECK(result.ok);
        CHECK(result.stats.pid == 9);
    }
    CHECK(peer.connections() == 3);
}

TEST_CASE("prober: one round, every kind of server, results in configuration order") {
    const uint16_t live_port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(live_port);
    REQUIRE(memcached.ready());
    FakePeer silent([](int fd, const std::atomic<bool>& stopping) { test::peer_hold(fd, stopping); });
    FakePeer garbage([](int fd, const std::atomic<bool>& stopping) {
        if (test::peer_read_request(fd, stopping)) test::peer_send(fd, "NOPE\r\n", stopping);
        test::peer_hold(fd, stopping);
    });
    auto made =
        Prober::create({tcp_server("127.0.0.1", silent.port()), tcp_server("127.0.0.1", test::free_loopback_port()),
                        tcp_server("127.0.0.1", live_port), tcp_server("127.0.0.1", garbage.port())},
                       Millis(1000));
    REQUIRE(made);
    Prober& prober = **made;
    const std::vector<ProbeResult> results = prober.run_round({});
    REQUIRE(results.size() == 4);
    CHECK(results[0].error == "timeout after 1000ms (no reply)");
    CHECK(results[1].refused);
    CHECK(results[2].ok);
    CHECK(results[3].error == "garbage reply: \"NOPE\"");
}

TEST_CASE("prober: no descriptor leaks over many rounds") {
    const uint16_t live_port = test::free_loopback_port();
    const uint16_t refused_port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(live_port);
    REQUIRE(memcached.ready());
    // Fails every probe after connecting: a new connection each round. Its
    // side is closed before the prober sees the end of file, so counting
    // after a round sees no descriptor of the peer but its listener.
    FakePeer hangs_up([](int fd, const std::atomic<bool>& stopping) { test::peer_read_request(fd, stopping); });

    const int before = test::count_open_fds_settled();
    {
        auto made = Prober::create({tcp_server("127.0.0.1", refused_port), tcp_server("127.0.0.1", live_port),
                                    tcp_server("127.0.0.1", hangs_up.port())},
                                   kGenerous);
        REQUIRE(made);
        Prober& prober = **made;
        const std::vector<ProbeResult> first = prober.run_round({});
        CHECK(first[0].refused);
        CHECK(first[1].ok);
        CHECK(first[2].error == "connection closed (no reply)");
        const int during = test::count_open_fds();
        int refused = 0;
        int ok = 0;
        int closed = 0;
        for (int round = 0; round < 100; ++round) {
            const std::vector<ProbeResult> results = prober.run_round({false, round % 10 == 0, false});
            refused += results[0].refused;
            ok += results[1].ok;
            closed += results[2].error == "connection closed (no reply)";
        }
        CHECK(refused == 100);
        CHECK(ok == 100);
        CHECK(closed == 100);
        CHECK(test::count_open_fds() == during);
    }
    CHECK(test::count_open_fds() == before);
    CHECK(hangs_up.connections() == 101);
}

TEST_CASE("prober: between stats_interval's stats, probes on the kept connection send version, a one-line reply") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port);
    REQUIRE(memcached.ready());
    auto made = Prober::create({tcp_server("127.0.0.1", port)}, kGenerous, std::chrono::hours(1));
    REQUIRE(made);
    Prober& prober = **made;
    const ProbeResult first = probe_once(prober);
    REQUIRE(first.ok);
    CHECK(first.stats_fetched);
    CHECK(first.stats.pid == uint64_t(memcached.pid()));

    const std::string stats_before = test::exchange_tcp(port, "stats\r\n", "END\r\n");
    const uint64_t written_before = stat_in(stats_before, "bytes_written");
    REQUIRE(written_before != state::kUnknown);
    constexpr int kRounds = 10;
    for (int i = 0; i < kRounds; ++i) {
        const ProbeResult again = probe_once(prober);
        CHECK(again.ok);
        CHECK(!again.stats_fetched);
        // The facts of the last stats carry on: same process, same version.
        CHECK(again.stats.pid == first.stats.pid);
        CHECK(again.stats.uptime_s >= first.stats.uptime_s);
        CHECK(again.stats.version == first.stats.version);
    }
    // What memcached wrote meanwhile: our own stats reply and ten lines of
    // "VERSION x.y.z"; ten stats probes would have been ten stats replies more.
    // (memcached adds a worker thread's bytes to its totals when that thread
    // is done with a reply, so the prober's first stats reply may be counted
    // only now: two stats replies, never eleven.)
    const uint64_t written =
        stat_in(test::exchange_tcp(port, "stats\r\n", "END\r\n"), "bytes_written") - written_before;
    MESSAGE("memcached wrote ", written, " bytes for ", kRounds, " probes (a stats reply is ", stats_before.size(),
            " bytes)");
    CHECK(written < 2 * stats_before.size() + kRounds * 64);
}

TEST_CASE("prober: at the new cadence, a memcached restarted on the same port is seen by the next good probe") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess first = MemcachedProcess::on_port(port);
    REQUIRE(first.ready());
    auto made = Prober::create({tcp_server("127.0.0.1", port)}, kGenerous, std::chrono::hours(1));
    REQUIRE(made);
    Prober& prober = **made;
    REQUIRE(probe_once(prober).ok);
    REQUIRE(!probe_once(prober).stats_fetched);  // version probes from now on

    first.stop();
    MemcachedProcess second = MemcachedProcess::on_port(port);
    REQUIRE(second.ready());
    // The restart broke the kept connection: the probe on the new one asks for stats.
    const ProbeResult after = probe_until_ok(prober);
    CHECK(after.ok);
    CHECK(after.stats_fetched);
    CHECK(after.stats.pid == uint64_t(second.pid()));
}

TEST_CASE("prober: rtt is the server's own, not the time the daemon spent elsewhere before reading the reply") {
    const uint16_t port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(port);
    REQUIRE(memcached.ready());
    const std::unique_ptr<Prober> owned = prober_on(port);
    Prober& prober = *owned;
    REQUIRE(probe_until_ok(prober).ok);
    // The kernel turns receive timestamps on in deferred work after the
    // first socket asks (net_enable_timestamp): a reply in between carries
    // none, and the prober falls back to its own clock, an upper bound.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    REQUIRE(probe_once(prober).ok);
    // A side channel that is ready as the round starts and keeps the daemon
    // busy for a second (a slow scrape, a loaded host) while the reply waits.
    const int busy = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
    REQUIRE(busy >= 0);
    constexpr auto kBusy = std::chrono::milliseconds(1000);
    prober.set_side_channel(busy, [busy, kBusy] {
        uint64_t value = 0;
        CHECK(read(busy, &value, sizeof value) == sizeof value);
        std::this_thread::sleep_for(kBusy);
    });
    const ProbeResult result = probe_once(prober);
    close(busy);
    REQUIRE(result.ok);
    MESSAGE("rtt ", result.rtt.count(), " us");
    CHECK(result.rtt < kBusy);
}

TEST_CASE("prober: probe_now probes one server out of any round; wait() returns its result, marked hint-triggered") {
    const uint16_t live_port = test::free_loopback_port();
    const uint16_t refused_port = test::free_loopback_port();
    MemcachedProcess memcached = MemcachedProcess::on_port(live_port);
    REQUIRE(memcached.ready());
    auto made = Prober::create({tcp_server("127.0.0.1", live_port), tcp_server("127.0.0.1", refused_port)}, kGenerous,
                               std::chrono::hours(1));
    REQUIRE(made);
    Prober& prober = **made;
    const std::vector<ProbeResult> round = prober.run_round({});
    REQUIRE(round[0].ok);
    CHECK(!round[0].hint_triggered);

    for (size_t index : {size_t(0), size_t(1)}) {
        prober.probe_now(index);
        std::vector<std::pair<size_t, ProbeResult>> done;
        for (int i = 0; i < 100 && done.empty(); ++i) done = prober.wait(Millis(100));
        REQUIRE(done.size() == 1);
        CHECK(done[0].first == index);
        CHECK(done[0].second.hint_triggered);
        CHECK(done[0].second.ok == (index == 0));
        CHECK(done[0].second.refused == (index == 1));
    }
    // The next round is an ordinary one, on the kept connection.
    const std::vector<ProbeResult> next = prober.run_round({});
    CHECK(next[0].ok);
    CHECK(!next[0].hint_triggered);
    CHECK(next[1].refused);
}
