#include "libshim/preload/operation.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "libshim/defaults.hpp"
#include "libshim/preload/real.hpp"

namespace mcwatch::shim {

void HashedKey::set(memcached_st* memc, const char* key, size_t key_length) noexcept {
    bytes = key;
    length = key_length;
    hashable = true;
    if (!memc->flags.hash_with_namespace) return;
    memcached_return_t rc;
    const auto* name = static_cast<const char*>(real()->callback_get(memc, MEMCACHED_CALLBACK_NAMESPACE, &rc));
    const size_t name_length = name ? std::strlen(name) : 0;
    if (name_length == 0) return;
    if (name_length + key_length > MEMCACHED_MAX_KEY - 1) {
        hashable = false;
        return;
    }
    std::memcpy(buffer, name, name_length);
    std::memcpy(buffer + name_length, key, key_length);
    bytes = buffer;
    length = name_length + key_length;
}

bool route_key(memcached_st* memc, const char* key, size_t key_length, Routed& out) noexcept {
    if (!memc || !key) return false;
    out.routing = routing_for(memc);
    if (!out.routing) return false;
    out.key.set(memc, key, key_length);
    if (!out.key.hashable) return false;
    out.view = handle_view(memc, *out.routing);
    out.decision =
        decide(memc, *out.routing, out.view, out.key.bytes, out.key.length, out.has_native_hash, out.native_hash);
    if (debug_enabled()) debug_decision("route", out, key, key_length);
    return true;
}

route::Decision decide(const memcached_st* memc, const HandleRouting& routing, const route::PlacementView& view,
                       const char* bytes, size_t length, bool& has_native_hash, uint32_t& native_hash) noexcept {
    forget_last_hash();  // a decision made without hashing must not pick up an older hash
    const route::Decision decision = routing.router->route_with(view, bytes, length);
    // The router hashes the key first; a substitute search may then hash
    // salted copies, which live elsewhere and do not match these bytes.
    const LastHash& hashed = last_hash();
    has_native_hash = hashed.bytes == bytes && hashed.length == length && hashed.hashkit == &memc->hashkit;
    native_hash = hashed.value;
    return decision;
}

ExpectedKey expected_for(const memcached_st* memc, const HandleRouting& routing, const char* bytes, size_t length,
                         int32_t native, int32_t server, const uint32_t* native_hash) noexcept {
    ExpectedKey expected{bytes, length, false, 0};
    if (server < 0 || server == native) {
        if (native_hash) {
            expected.forced = true;
            expected.hash = *native_hash;
        }
    } else {
        expected.forced = true;
        expected.hash = dispatch_hash(memc, routing, uint32_t(server));
    }
    return expected;
}

int64_t now_unix_s() noexcept { return int64_t(time(nullptr)); }

namespace {

// -1 unknown, 0 off, 1 on: read once, with secure_getenv (ignored in setuid programs).
std::atomic<int> debug_state{-1};

const char* address(const Routed& routed, int32_t server) noexcept {
    if (server < 0 || size_t(server) >= routed.routing->addresses.size()) return "none";
    return routed.routing->addresses[size_t(server)].c_str();
}

}  // namespace

bool debug_enabled() noexcept {
    int state = debug_state.load(std::memory_order_relaxed);
    if (state < 0) {
        state = debug_from_environment() ? 1 : 0;
        debug_state.store(state, std::memory_order_relaxed);
    }
    return state == 1;
}

void debug_line(const char* format, ...) noexcept {
    char line[512] = "mcshim: ";
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line + 8, sizeof line - 9, format, args);
    va_end(args);
    size_t length = 8 + (n < 0 ? 0 : std::min<size_t>(size_t(n), sizeof line - 10));
    line[length++] = '\n';
    // One write per line: lines of concurrent threads never interleave.
    ssize_t ignored = write(STDERR_FILENO, line, length);
    (void)ignored;
}

void debug_decision(const char* operation, const Routed& routed, const char* key, size_t key_length) noexcept {
    const route::Decision& d = routed.decision;
    const int shown = int(std::min<size_t>(key_length, 120));
    if (d.flags & route::kRouteAllDead)
        debug_line("%s key=%.*s: all servers dead, failing", operation, shown, key);
    else if (d.flags & route::kRouteSubstitute)
        debug_line("%s key=%.*s native=%s target=%s: %s", operation, shown, key, address(routed, d.native),
                   address(routed, d.target),
                   (d.flags & route::kRouteDraining) ? "native draining" : "substitute for dead native");
    else if (d.flags & route::kRouteRecentlyDown)
        debug_line("%s key=%.*s native=%s fallback=%s: native recently down", operation, shown, key,
                   address(routed, d.native), address(routed, d.fallback));
}

}  // namespace mcwatch::shim
