#include "libshim/preload/name_lookup.hpp"

#include <netdb.h>
#include <pthread.h>
#include <time.h>

#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "libshim/clock.hpp"

namespace mcwatch::shim {

namespace {

// A name looked up again at most this often (a server that refuses
// connections during an outage would otherwise start a lookup per attempt).
constexpr int64_t kLookupIntervalMs = 1000;
// How often a caller waiting for the first answer looks for it.
constexpr long kWaitStepNs = 1'000'000;

int64_t now_ms() noexcept { return int64_t(monotonic_ns() / 1'000'000); }

struct Name {
    std::vector<SocketAddress> addresses;  // port 0, set per connection
    bool answered = false;                 // some lookup has answered (perhaps with nothing)
    bool looking = false;                  // a lookup thread runs in this process
    int64_t started_ms = 0;                // the latest lookup's start
};

// Every name this process's shim connected to, under one lock that no one
// holds across a lookup or a system call. Taken around fork, so the child
// inherits a consistent map; its lookups in flight did not survive.
struct Names {
    std::mutex lock;
    std::unordered_map<std::string, Name> by_name;
};

Names& names() {
    static Names* all = new Names;  // never destroyed: lookup threads may outlive main
    return *all;
}

__attribute__((constructor)) void keep_names_across_fork() {
    names();
    pthread_atfork([] { names().lock.lock(); }, [] { names().lock.unlock(); },
                   [] {
                       for (auto& [host, name] : names().by_name) name.looking = false;
                       names().lock.unlock();
                   });
}

void look_up(const std::string& host) noexcept {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    std::vector<SocketAddress> addresses;
    try {
        if (getaddrinfo(host.c_str(), nullptr, &hints, &found) == 0)
            for (const addrinfo* a = found; a && addresses.size() < kMaxAddresses; a = a->ai_next) {
                if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
                SocketAddress address;
                std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
                address.length = a->ai_addrlen;
                addresses.push_back(address);
            }
    } catch (...) {
        addresses.clear();  // out of memory: looked up again when a connection needs it
    }
    if (found) freeaddrinfo(found);
    Names& all = names();
    std::lock_guard<std::mutex> guard(all.lock);
    Name& name = all.by_name[host];
    // An empty answer keeps what an earlier lookup found (DNS down for a while).
    if (!addresses.empty() || !name.answered) name.addresses = std::move(addresses);
    name.answered = true;
    name.looking = false;
}

// Under the lock. False if no thread could be started.
bool start_lookup(const std::string& host, Name& name) noexcept {
    if (name.looking) return true;
    try {
        std::thread([host] { look_up(host); }).detach();
    } catch (...) {
        return false;
    }
    name.looking = true;
    name.started_ms = now_ms();
    return true;
}

void set_port(SocketAddress& address, uint16_t port) noexcept {
    auto* family = reinterpret_cast<sockaddr*>(&address.storage);
    if (family->sa_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&address.storage)->sin_port = htons(port);
    else if (family->sa_family == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&address.storage)->sin6_port = htons(port);
}

}  // namespace

size_t addresses_of(const char* host, uint16_t port, int64_t deadline_ms, SocketAddress* out) noexcept {
    try {
        const std::string wanted(host);
        if (ServerAddress::numeric_socket_address(wanted, port, out[0])) return 1;
        Names& all = names();
        // Bounded by the deadline: one look a millisecond until the first answer.
        for (;;) {
            {
                std::lock_guard<std::mutex> guard(all.lock);
                Name& name = all.by_name[wanted];
                if (name.answered) {
                    size_t count = 0;
                    for (const SocketAddress& address : name.addresses) {
                        out[count] = address;
                        set_port(out[count++], port);
                    }
                    return count;
                }
                if (!start_lookup(wanted, name)) return 0;
            }
            if (now_ms() >= deadline_ms) return 0;
            const timespec step{0, kWaitStepNs};
            nanosleep(&step, nullptr);
        }
    } catch (...) {
        return 0;  // out of memory
    }
}

void look_up_again(const char* host) noexcept {
    try {
        const std::string wanted(host);
        SocketAddress numeric;
        if (ServerAddress::numeric_socket_address(wanted, 0, numeric)) return;
        Names& all = names();
        std::lock_guard<std::mutex> guard(all.lock);
        Name& name = all.by_name[wanted];
        if (!name.looking && now_ms() - name.started_ms >= kLookupIntervalMs) start_lookup(wanted, name);
    } catch (...) {
        // Out of memory: the known addresses stay.
    }
}

}  // namespace mcwatch::shim
