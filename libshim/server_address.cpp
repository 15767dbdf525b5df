#include "libshim/server_address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>

#include "libshim/state_format.hpp"

namespace mcwatch {

namespace {

std::optional<uint32_t> parse_number(std::string_view text, uint32_t min, uint32_t max) {
    uint32_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) return std::nullopt;
    return value;
}

bool valid_hostname(std::string_view host) {
    if (host.empty() || host.size() > 253) return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
               c == '_';
    });
}

// inet_ntop's spelling of a numeric host, or "" if `host` is not numeric.
// inet_pton, not getaddrinfo: no lock, no netlink socket in a client process.
std::string numeric_host(const std::string& host, bool& is_v6) {
    unsigned char binary[sizeof(in6_addr)];
    char text[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, host.c_str(), binary) == 1) {
        is_v6 = false;
        return inet_ntop(AF_INET, binary, text, sizeof text) ? text : "";
    }
    if (inet_pton(AF_INET6, host.c_str(), binary) == 1) {
        is_v6 = true;
        return inet_ntop(AF_INET6, binary, text, sizeof text) ? text : "";
    }
    return "";
}

std::string join(const std::string& host, bool is_v6, uint16_t port) {
    std::string out = is_v6 ? "[" + host + "]" : host;
    return out + ":" + std::to_string(port);
}

}  // namespace

bool ServerAddress::parse(std::string_view text, uint32_t weight, ServerAddress& out, std::string& error) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    ServerAddress server;
    server.text = std::string(text);
    server.weight = weight ? weight : 1;
    if (text.empty()) {
        error = "empty server address";
        return false;
    }
    if (text.starts_with("unix:") || text.starts_with("/")) {
        if (text.starts_with("unix:")) text.remove_prefix(5);
        if (!text.starts_with("/")) {
            error = "unix socket path must be absolute: " + server.text;
            return false;
        }
        server.is_unix = true;
        server.host = std::string(text);
        server.port = 0;
        out = std::move(server);
        return true;
    }
    std::string_view host = text;
    std::string_view port;
    if (text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos) {
            error = "missing ']' in " + server.text;
            return false;
        }
        host = text.substr(1, close - 1);
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                error = "expected ':port' after ']' in " + server.text;
                return false;
            }
            port = rest.substr(1);
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        const size_t colon = text.find(':');
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }  // else a name without port, or a bare IPv6 address
    if (host.empty()) {
        error = "missing host in " + server.text;
        return false;
    }
    server.host = std::string(host);
    server.port = kDefaultPort;
    if (!port.empty() || text.back() == ':') {
        const auto number = parse_number(port, 1, 65535);
        if (!number) {
            error = "invalid port in " + server.text;
            return false;
        }
        server.port = uint16_t(*number);
    }
    out = std::move(server);
    return true;
}

bool ServerAddress::parse_strict(std::string_view view, ServerAddress& out, std::string& error) {
    const std::string text(view);
    const auto fail = [&](const std::string& why) {
        error = "server " + text + ": " + why;
        return false;
    };
    if (text.empty()) {
        error = "server: missing address";
        return false;
    }
    if (text.size() >= state::kAddressSize) {
        error = "server address longer than " + std::to_string(state::kAddressSize - 1) + " characters";
        return false;
    }
    ServerAddress server;
    server.text = text;
    if (text.starts_with("unix:")) {
        server.is_unix = true;
        server.host = text.substr(5);
        if (server.host.empty() || server.host[0] != '/') return fail("unix socket path must be absolute");
        if (server.host.size() > kMaxUnixPathLength) return fail("unix socket path too long");
        out = std::move(server);
        return true;
    }
    if (text.find(',') != std::string::npos)
        return fail("write one server per `server =` line, not a comma-separated list");
    std::string host, port;
    if (text[0] == '[') {
        const size_t close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail("expected [ipv6]:port");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
        if (host.empty() || host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
            return fail("bad IPv6 address");
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string::npos) return fail("missing port (expected host:port)");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string::npos) {
            // twemproxy's and libmemcached's --servers "host:port:weight".
            const size_t first = host.find(':');
            const std::string name = host.substr(0, first), middle = host.substr(first + 1);
            if (valid_hostname(name) && parse_number(middle, 1, 65535) && parse_number(port, 0, UINT32_MAX))
                return fail("the weight is written `weight=" + port + "` after the address: server = " + name + ":" +
                            middle + " weight=" + port);
            return fail("write IPv6 addresses as [addr]:port");
        }
        if (!valid_hostname(host)) return fail("bad host name '" + host + "'");
    }
    const auto number = parse_number(port, 1, 65535);
    if (!number) return fail("port '" + port + "' out of range (1-65535)");
    server.host = std::move(host);
    server.port = uint16_t(*number);
    out = std::move(server);
    return true;
}

std::string ServerAddress::canonical() const {
    if (is_unix) return "unix:" + host;
    bool is_v6 = false;
    const std::string numeric = numeric_host(host, is_v6);
    if (!numeric.empty()) return join(numeric, is_v6, port);
    std::string name = host;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return join(name, false, port);
}

std::string ServerAddress::canonical(std::string_view text) {
    ServerAddress server;
    std::string error;
    if (!parse(text, 1, server, error)) return "";
    return server.canonical();
}

std::string ServerAddress::numeric() const {
    if (is_unix) return "unix:" + host;
    bool is_v6 = false;
    const std::string numeric = numeric_host(host == "localhost" ? "127.0.0.1" : host, is_v6);
    return numeric.empty() ? "" : join(numeric, is_v6, port);
}

bool ServerAddress::is_name() const {
    bool is_v6 = false;
    return !is_unix && numeric_host(host, is_v6).empty();
}

std::vector<std::string> ServerAddress::resolve() const {
    std::vector<std::string> out;
    if (is_unix) return out;
    if (!is_name()) {
        out.push_back(canonical());
        return out;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* results = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &results) != 0) return out;
    for (const addrinfo* ai = results; ai; ai = ai->ai_next) {
        std::string form = numeric_text(ai->ai_addr);
        if (form.empty()) continue;
        // getaddrinfo was given no service: the port is the server's.
        form.resize(form.rfind(':') + 1);
        form += std::to_string(port);
        if (std::find(out.begin(), out.end(), form) == out.end()) out.push_back(std::move(form));
    }
    freeaddrinfo(results);
    return out;
}

std::string ServerAddress::numeric_text(const sockaddr* address) {
    char host[INET6_ADDRSTRLEN] = "";
    if (address->sa_family == AF_INET) {
        const auto* in4 = reinterpret_cast<const sockaddr_in*>(address);
        if (!inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host)) return "";
        return join(host, false, ntohs(in4->sin_port));
    }
    if (address->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host)) return "";
        return join(host, true, ntohs(in6->sin6_port));
    }
    return "";
}

bool ServerAddress::unix_socket_address(std::string_view path, SocketAddress& out) noexcept {
    if (path.size() > kMaxUnixPathLength) return false;
    out = SocketAddress{};
    auto* un = reinterpret_cast<sockaddr_un*>(&out.storage);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    un->sun_path[path.size()] = '\0';
    out.length = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return true;
}

namespace {

template <class Inet, class InAddr>
bool fill_inet(SocketAddress& out, int family, const char* host, uint16_t port, InAddr Inet::*addr,
               uint16_t Inet::*port_field) noexcept {
    auto* in = reinterpret_cast<Inet*>(&out.storage);
    reinterpret_cast<sockaddr*>(in)->sa_family = sa_family_t(family);
    in->*port_field = htons(port);
    out.length = sizeof(Inet);
    return inet_pton(family, host, &(in->*addr)) == 1;
}

}  // namespace

bool ServerAddress::numeric_socket_address(const std::string& host, uint16_t port, SocketAddress& out) noexcept {
    out = SocketAddress{};
    return host.find(':') != std::string::npos
               ? fill_inet(out, AF_INET6, host.c_str(), port, &sockaddr_in6::sin6_addr, &sockaddr_in6::sin6_port)
               : fill_inet(out, AF_INET, host.c_str(), port, &sockaddr_in::sin_addr, &sockaddr_in::sin_port);
}

}  // namespace mcwatch
