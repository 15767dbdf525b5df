// A server of a caller's list, in the terms libmemcached uses to place keys
// (its hostname and port name the ketama points) and in the terms used to
// find it in the state file (its address as configured, its numeric forms).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mcwatch::route {

inline constexpr uint16_t kDefaultPort = 11211;  // MEMCACHED_DEFAULT_PORT

struct ServerSpec {
    std::string address;  // as given, for messages: "host:port", "[v6]:port", "unix:/path"
    std::string host;     // libmemcached's hostname: name, numeric address without brackets, or socket path
    uint16_t port = 0;    // 0 for a unix socket, as libmemcached stores it
    bool is_unix = false;
    uint32_t weight = 1;  // libmemcached stores 0 as 1
};

// Accepts "host", "host:port", "[v6]", "[v6]:port", a bare IPv6 address
// ("::1", default port), "unix:/path" and "/path". The port defaults to 11211.
// On failure returns false and sets `error` to a sentence without a prefix.
bool parse_server_spec(std::string_view text, uint32_t weight, ServerSpec& out, std::string& error);

// The form two spellings of one address share: a numeric address as
// "1.2.3.4:11211" or "[::1]:11211" (inet_ntop's spelling), a name as
// "lowercase-name:port", a socket as "unix:/path". Empty if unparsable.
std::string canonical_address(std::string_view text);
std::string canonical_address(const ServerSpec& server);

// Numeric canonical forms of `server` now: itself if numeric, otherwise every
// address getaddrinfo returns for its name (this may block on DNS).
std::vector<std::string> numeric_addresses(const ServerSpec& server, bool resolve);

}  // namespace mcwatch::route
