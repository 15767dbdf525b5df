#include "test_support.hpp"

#include "libshim/server_address.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace mcwatch::test {

namespace {

using Clock = std::chrono::steady_clock;

constexpr Millis kScriptLimit{10000};
constexpr int kPollStepMs = 20;

// A connected socket to host:port or to a unix socket, or -1.
int connect_to(const std::string& host, uint16_t port, const std::string& unix_path) {
    if (!unix_path.empty()) {
        SocketAddress address;
        if (!ServerAddress::unix_socket_address(unix_path, address)) return -1;
        const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return -1;
        if (connect(fd, address.get(), address.length) == 0) return fd;
        close(fd);
        return -1;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    addrinfo* list = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list) != 0) return -1;
    int fd = socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, list->ai_addr, list->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(list);
    return fd;
}

bool time_left(Clock::time_point deadline) { return Clock::now() < deadline; }

}  // namespace

uint16_t free_loopback_port(bool ipv6) {
    const int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (ipv6) {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        length = sizeof *in6;
    } else {
        auto* in4 = reinterpret_cast<sockaddr_in*>(&storage);
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        length = sizeof *in4;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
        close(fd);
        throw std::runtime_error("cannot bind a loopback port");
    }
    close(fd);
    return ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
}

bool ipv6_loopback_available() {
    try {
        free_loopback_port(true);
        return true;
    } catch (const std::runtime_error&) {
        return false;
    }
}

int count_open_fds() {
    int count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        ++count;
    }
    return count;
}

int count_open_fds_settled() {
    int last = count_open_fds();
    for (int attempt = 0; attempt < 100; ++attempt) {
        usleep(50 * 1000);
        const int now = count_open_fds();
        if (now == last) break;
        last = now;
    }
    return last;
}

MemcachedProcess MemcachedProcess::on_port(uint16_t port, std::vector<std::string> extra_args,
                                           const std::string& host) {
    MemcachedProcess process;
    process.host_ = host;
    process.port_ = port;
    std::vector<std::string> args{"-l", host, "-p", std::to_string(port), "-U", "0", "-m", "8"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    process.start(std::move(args));
    return process;
}

MemcachedProcess MemcachedProcess::on_unix_socket(const std::string& path, std::vector<std::string> extra_args) {
    MemcachedProcess process;
    process.unix_path_ = path;
    std::vector<std::string> args{"-s", path, "-m", "8"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    process.start(std::move(args));
    return process;
}

MemcachedProcess::MemcachedProcess(MemcachedProcess&& other) noexcept
    : pid_(other.pid_), ready_(other.ready_), host_(std::move(other.host_)), port_(other.port_),
      unix_path_(std::move(other.unix_path_)) {
    other.pid_ = -1;
}

MemcachedProcess::~MemcachedProcess() { stop(); }

void MemcachedProcess::start(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/memcached");
    // memcached refuses to run as root unless told which user to be.
    if (geteuid() == 0) {
        args.push_back("-u");
        args.push_back("root");
    }
    // Everything the child needs is built before fork: only async-signal-safe
    // calls between fork and exec in a process that may have threads.
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();

    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        const int null_fd = open("/dev/null", O_RDWR);
        if (null_fd >= 0) {
            dup2(null_fd, 0);
            dup2(null_fd, 1);
        }
        execv(argv[0], argv.data());
        _exit(127);
    }

    const Clock::time_point deadline = Clock::now() + Millis(5000);
    for (int attempt = 0; attempt < 500 && time_left(deadline); ++attempt) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: port taken, bad option, ...
            pid_ = -1;
            return;
        }
        const int fd = connect_to(host_, port_, unix_path_);
        if (fd >= 0) {
            close(fd);
            ready_ = true;
            return;
        }
        usleep(10 * 1000);
    }
}

void MemcachedProcess::send_signal(int signal) const {
    if (pid_ > 0) kill(pid_, signal);
}

void MemcachedProcess::stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    ready_ = false;
}

bool wait_until_stopped(pid_t pid, Millis limit) {
    const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
    const Clock::time_point deadline = Clock::now() + limit;
    for (int attempt = 0; attempt < 1000 && time_left(deadline); ++attempt) {
        bool all_stopped = true;
        std::error_code error;
        for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
            std::ifstream stat(task.path() / "stat");
            std::string line;
            std::getline(stat, line);
            // "tid (comm) S ...": the state follows the last ')'.
            const size_t paren = line.rfind(')');
            if (paren == std::string::npos || paren + 2 >= line.size() ||
                (line[paren + 2] != 'T' && line[paren + 2] != 't')) {
                all_stopped = false;
            }
        }
        if (error) return false;
        if (all_stopped) return true;
        usleep(5 * 1000);
    }
    return false;
}

std::string exchange_tcp(uint16_t port, std::string_view request, std::string_view terminator, Millis limit) {
    const int fd = connect_to("127.0.0.1", port, "");
    if (fd < 0) return "";
    std::string reply;
    const Clock::time_point deadline = Clock::now() + limit;
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == ssize_t(request.size())) {
        for (int step = 0; step < 1000 && time_left(deadline); ++step) {
            pollfd ready{fd, POLLIN, 0};
            if (poll(&ready, 1, kPollStepMs) <= 0) continue;
            char chunk[4096];
            const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
            if (n <= 0) break;
            reply.append(chunk, size_t(n));
            if (reply.ends_with(terminator)) break;
        }
    }
    close(fd);
    return reply;
}

FakePeer::FakePeer(Script script) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        listen(listen_fd_, 16) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        if (listen_fd_ >= 0) close(listen_fd_);
        throw std::runtime_error("fake peer: cannot listen on loopback");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this, script = std::move(script)] {
        while (!stopping_) {
            pollfd ready{listen_fd_, POLLIN, 0};
            if (poll(&ready, 1, kPollStepMs) <= 0) continue;
            const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) continue;
            ++connections_;
            script(fd, stopping_);
            close(fd);
        }
    });
}

FakePeer::~FakePeer() {
    stopping_ = true;
    thread_.join();
    close(listen_fd_);
}

bool peer_read_request(int fd, const std::atomic<bool>& stopping, std::string_view until) {
    std::string received;
    const Clock::time_point deadline = Clock::now() + kScriptLimit;
    while (!stopping && time_left(deadline)) {
        pollfd ready{fd, POLLIN, 0};
        if (poll(&ready, 1, kPollStepMs) <= 0) continue;
        char chunk[1024];
        const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n == 0) return false;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return false;
        }
        received.append(chunk, size_t(n));
        if (received.ends_with(until)) return true;
    }
    return false;
}

bool peer_send(int fd, std::string_view data, const std::atomic<bool>& stopping) {
    const Clock::time_point deadline = Clock::now() + kScriptLimit;
    while (!data.empty()) {
        if (stopping || !time_left(deadline)) return false;
        const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(size_t(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd ready{fd, POLLOUT, 0};
            poll(&ready, 1, kPollStepMs);
            continue;
        }
        return false;
    }
    return true;
}

void peer_hold(int fd, const std::atomic<bool>& stopping) {
    const Clock::time_point deadline = Clock::now() + kScriptLimit;
    while (!stopping && time_left(deadline)) {
        pollfd ready{fd, POLLIN, 0};
        if (poll(&ready, 1, kPollStepMs) <= 0) continue;
        char chunk[1024];
        const ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
    }
}

}  // namespace mcwatch::test
