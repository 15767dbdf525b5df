#include "libshim/server_spec.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>

namespace mcwatch::route {

namespace {

bool parse_port(std::string_view text, uint16_t& port) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) return false;
    port = static_cast<uint16_t>(value);
    return true;
}

// inet_ntop's spelling of a numeric host, or "" if `host` is not numeric.
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

bool parse_server_spec(std::string_view text, uint32_t weight, ServerSpec& out, std::string& error) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    ServerSpec server;
    server.address = std::string(text);
    server.weight = weight ? weight : 1;
    if (text.empty()) {
        error = "empty server address";
        return false;
    }
    if (text.starts_with("unix:") || text.starts_with("/")) {
        if (text.starts_with("unix:")) text.remove_prefix(5);
        if (!text.starts_with("/")) {
            error = "unix socket path must be absolute: " + server.address;
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
            error = "missing ']' in " + server.address;
            return false;
        }
        host = text.substr(1, close - 1);
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                error = "expected ':port' after ']' in " + server.address;
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
        error = "missing host in " + server.address;
        return false;
    }
    server.host = std::string(host);
    server.port = kDefaultPort;
    if (!port.empty() || text.back() == ':') {
        if (!parse_port(port, server.port)) {
            error = "invalid port in " + server.address;
            return false;
        }
    }
    out = std::move(server);
    return true;
}

std::string canonical_address(const ServerSpec& server) {
    if (server.is_unix) return "unix:" + server.host;
    bool is_v6 = false;
    const std::string numeric = numeric_host(server.host, is_v6);
    if (!numeric.empty()) return join(numeric, is_v6, server.port);
    std::string name = server.host;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return join(name, false, server.port);
}

std::string canonical_address(std::string_view text) {
    ServerSpec server;
    std::string error;
    if (!parse_server_spec(text, 1, server, error)) return "";
    return canonical_address(server);
}

std::vector<std::string> numeric_addresses(const ServerSpec& server, bool resolve) {
    std::vector<std::string> out;
    if (server.is_unix) return out;
    bool is_v6 = false;
    const std::string numeric = numeric_host(server.host, is_v6);
    if (!numeric.empty()) {
        out.push_back(join(numeric, is_v6, server.port));
        return out;
    }
    if (!resolve) return out;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* results = nullptr;
    if (getaddrinfo(server.host.c_str(), nullptr, &hints, &results) != 0) return out;
    for (const addrinfo* ai = results; ai; ai = ai->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void* address = nullptr;
        if (ai->ai_family == AF_INET)
            address = &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            address = &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
        if (!address || !inet_ntop(ai->ai_family, address, text, sizeof text)) continue;
        std::string form = join(text, ai->ai_family == AF_INET6, server.port);
        if (std::find(out.begin(), out.end(), form) == out.end()) out.push_back(std::move(form));
    }
    freeaddrinfo(results);
    return out;
}

}  // namespace mcwatch::route
