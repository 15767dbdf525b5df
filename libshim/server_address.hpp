// A memcached server's address, the one type for it in every program: a
// `server =` line of mcwatchd.conf (strict), an entry of a libmemcached list
// or of the C API (lenient, as libmemcached accepts it), the state file's
// slots. It knows the terms libmemcached places keys in (its hostname and
// port name the ketama points), the forms two spellings of one server share
// (canonical, numeric) and how to connect to it.
//
// Usable from the shim: nothing here throws on purpose (only std::bad_alloc),
// the socket addresses are built without allocating, and the errors are
// sentences without a prefix for the caller to place.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mcwatch {

inline constexpr uint16_t kDefaultPort = 11211;  // MEMCACHED_DEFAULT_PORT
// The longest unix socket path a sockaddr_un holds (with its NUL).
inline constexpr size_t kMaxUnixPathLength = sizeof(sockaddr_un::sun_path) - 1;

// A socket address ready for connect or bind.
struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
};

struct ServerAddress {
    std::string text;   // as written, without the weight: "host:port", "[v6]:port", "unix:/path"
    std::string host;   // libmemcached's hostname: a name, a numeric address without brackets, or the socket path
    uint16_t port = 0;  // 0 for a unix socket, as libmemcached stores it
    bool is_unix = false;
    uint32_t weight = 1;  // libmemcached stores 0 as 1
    int line = 0;         // the configuration line it was read from, for messages (0 elsewhere)

    // Lenient, as libmemcached's lists: "host", "host:port", "[v6]",
    // "[v6]:port", a bare IPv6 address ("::1"), "unix:/path" and "/path";
    // the port defaults to 11211, surrounding blanks are ignored. On failure
    // returns false and sets `error`.
    static bool parse(std::string_view text, uint32_t weight, ServerAddress& out, std::string& error);

    // Strict, as a `server =` line of mcwatchd.conf (the part before its
    // options): "host:port", "[v6]:port" or "unix:/path", nothing implied,
    // with the advice an operator needs for the spellings it refuses (a
    // comma-separated list, "host:port:weight", an unbracketed IPv6 address).
    // `error` gets the message without file:line.
    static bool parse_strict(std::string_view text, ServerAddress& out, std::string& error);

    // The form two spellings of one address share: a numeric address as
    // "1.2.3.4:11211" or "[::1]:11211" (inet_ntop's spelling), a name as
    // "lowercase-name:port", a socket as "unix:/path". The shim matches a
    // list's servers to the state file's slots by it.
    std::string canonical() const;
    // Text of `text` (lenient) in canonical form; "" if it is no address.
    static std::string canonical(std::string_view text);

    // The numeric form known without a lookup: "1.2.3.4:11211",
    // "[::1]:11211", "unix:/path", with "localhost" taken as 127.0.0.1, so
    // that "localhost:11211" and "127.0.0.1:11211" are known to be one
    // server. "" for any other name. mcwatchd writes it as a slot's resolved
    // address, the shim reads it there.
    std::string numeric() const;

    // True for a hostname (not a numeric address, not a socket): its numeric
    // forms need a lookup.
    bool is_name() const;

    // Every numeric form of the server now: its canonical form if numeric,
    // otherwise every address getaddrinfo returns for its name (this may
    // block on DNS); none for a socket.
    std::vector<std::string> resolve() const;

    // The numeric form of a connected or resolved TCP address
    // ("1.2.3.4:11211", "[::1]:11211"); "" for any other family.
    static std::string numeric_text(const sockaddr* address);

    // The address of the unix socket at `path`. False when the path is
    // longer than kMaxUnixPathLength: the caller says so.
    static bool unix_socket_address(std::string_view path, SocketAddress& out) noexcept;
    // The address of numeric `host` ("1.2.3.4", "::1": no lookup) at
    // `port`. False when host is not a numeric address.
    static bool numeric_socket_address(const std::string& host, uint16_t port, SocketAddress& out) noexcept;
};

}  // namespace mcwatch
