// The control socket in-process: an EventLoop, a ControlServer in a scratch
// directory, and a client socket of the test's own.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <string>

#include "daemon/control_server.hpp"
#include "tools/mcctl/control.hpp"
#include "libshim/server_address.hpp"
#include "scratch_dir.hpp"

using namespace mcwatch;

namespace {

int connect_to(const std::string& path) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SocketAddress address;
    REQUIRE(ServerAddress::unix_socket_address(path, address));
    REQUIRE(connect(fd, address.get(), address.length) == 0);
    return fd;
}

// Serves until the server closed the connection (bounded), returns what came back.
std::string exchange(EventLoop& loop, const std::string& path, const std::string& sent) {
    const int fd = connect_to(path);
    REQUIRE(send(fd, sent.data(), sent.size(), MSG_NOSIGNAL) == ssize_t(sent.size()));
    shutdown(fd, SHUT_WR);  // as `nc -N`: the end of input ends a request without a newline
    std::string reply;
    for (int turn = 0; turn < 200; ++turn) {
        loop.run_once(10);
        char chunk[1024];
        const ssize_t n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n > 0) reply.append(chunk, size_t(n));
        if (n == 0) break;
    }
    close(fd);
    return reply;
}

struct Fixture {
    test::ScratchDir dir;
    EventLoop loop;
    std::string path = dir.file("control");
    std::vector<std::string> seen;
    std::unique_ptr<ControlServer> server;
    Fixture() {
        auto opened = ControlServer::open(
            loop,
            [this](const ControlRequest& request, ControlServer::Ticket) -> std::optional<ControlReply> {
                seen.push_back(fmt::format("{} {}", control_command_name(request.command), request.server));
                return ControlReply::ok("done");
            },
            path, current_user(), getegid(), {uint32_t(geteuid()), std::nullopt, ""});
        REQUIRE(opened.has_value());
        server = std::move(*opened);
    }
};

}  // namespace

TEST_CASE("control server: root, the daemon's user and admin_group members may command") {
    const ControlAccess access{1000, 50u, "mcadmin"};
    CHECK(peer_allowed({1, 0, 0, {}}, access));
    CHECK(peer_allowed({1, 1000, 1000, {}}, access));
    CHECK(peer_allowed({1, 2000, 50, {}}, access));
    CHECK(peer_allowed({1, 2000, 2000, {7, 50}}, access));
    CHECK_FALSE(peer_allowed({1, 2000, 2000, {7}}, access));
    CHECK_FALSE(peer_allowed({1, 2000, 50, {}}, ControlAccess{1000, std::nullopt, ""}));
}

TEST_CASE("control server: one request, one reply line, socket mode 0660") {
    Fixture f;
    struct stat st {};
    REQUIRE(lstat(f.path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0660);
    CHECK(exchange(f.loop, f.path, "drain 127.0.0.1:11211\n") == "ok done\n");
    CHECK(exchange(f.loop, f.path, "ping") == "ok done\n");
    CHECK(f.seen == std::vector<std::string>{"drain 127.0.0.1:11211", "ping "});
}

TEST_CASE("control server: bad and oversized requests are answered with an error line") {
    Fixture f;
    CHECK(exchange(f.loop, f.path, "format c:\n") ==
          "error unknown command 'format' (expected ping, reload, drain, "
          "undrain, down, up or flush)\n");
    CHECK(exchange(f.loop, f.path, std::string(4000, 'x')) == "error request longer than 512 bytes\n");
    CHECK(f.seen.empty());
}

TEST_CASE("control server: a second server on a socket in use is refused, a stale one replaced") {
    Fixture f;
    EventLoop loop;
    const auto no_reply = [](const ControlRequest&, ControlServer::Ticket) { return std::optional<ControlReply>(); };
    const auto second = ControlServer::open(loop, no_reply, f.path, current_user(), getegid(), {});
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().message ==
          fmt::format("control_socket {} is in use by another process (another mcwatchd?)", f.path));
    // A socket nobody listens on, as a killed daemon leaves it.
    const std::string stale = f.dir.file("stale");
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    SocketAddress address;
    REQUIRE(ServerAddress::unix_socket_address(stale, address));
    REQUIRE(bind(fd, address.get(), address.length) == 0);
    close(fd);
    CHECK(ControlServer::open(loop, no_reply, stale, current_user(), getegid(), {}).has_value());
}

TEST_CASE("control reply: one line on the wire, its status read back without looking into its text") {
    CHECK(control_reply_line(ControlReply::ok("127.0.0.1:11211 draining (was live)")) ==
          "ok 127.0.0.1:11211 draining (was live)");
    CHECK(control_reply_line(ControlReply::error("unknown server 'x'")) == "error unknown server 'x'");
    const auto ok = parse_control_reply("ok 127.0.0.1:11211 flushed");
    REQUIRE(ok.has_value());
    CHECK(ok->status == ControlStatus::ok);
    CHECK(ok->text == "127.0.0.1:11211 flushed");
    const auto refused = parse_control_reply("error ok, but refused");
    REQUIRE(refused.has_value());
    CHECK(refused->status == ControlStatus::error);
    CHECK(refused->text == "ok, but refused");
    CHECK(parse_control_reply("ok").value().text.empty());
    CHECK(parse_control_reply("okay").error().message == "unexpected answer 'okay'");
    CHECK_FALSE(parse_control_reply("").has_value());
}

TEST_CASE("control socket path longer than a sockaddr_un holds: the daemon and mcctl say so, with the limit") {
    const std::string too_long = "/tmp/" + std::string(kMaxUnixPathLength, 'c');
    EventLoop loop;
    const auto opened = ControlServer::open(
        loop, [](const ControlRequest&, ControlServer::Ticket) { return std::optional<ControlReply>(); }, too_long,
        current_user(), getegid(), {});
    REQUIRE_FALSE(opened);
    CHECK(opened.error().message == fmt::format("control_socket {}: path too long (over 107 bytes)", too_long));
    char* printed = nullptr;
    size_t printed_size = 0;
    std::FILE* err = open_memstream(&printed, &printed_size);
    REQUIRE(err);
    CHECK(mcctl_control(too_long, "ping", std::chrono::milliseconds(100), stdout, err) == 2);
    std::fclose(err);
    CHECK(std::string(printed) == fmt::format("mcctl: control socket path too long (over 107 bytes): {}\n", too_long));
    std::free(printed);
}
