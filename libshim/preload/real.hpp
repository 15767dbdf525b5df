// The real libmemcached and libhashkit functions behind the interposed ones.
// Resolved lazily on first use through dlopen(RTLD_NOLOAD) of the loaded
// library, not RTLD_NEXT alone: pylibmc loads libmemcached RTLD_LOCAL, out
// of RTLD_NEXT's reach. Nothing here runs in programs that never call
// libmemcached.
#pragma once

#include <libmemcached-1.0/memcached.h>

// Every libmemcached and libhashkit function the preload layer calls, once:
// Real's pointers, their resolution by name (real.cpp) and the names
// libmcshim.map must export (tests/unit/test_preload_real.cpp) all come from
// here. X(member, symbol, kind), kind one of
//   interposed  the shim defines `symbol` too, and calls the real one through `member`
//   helper      read-only, called but not interposed
//   optional    may be missing (then null): which private layouts to expect
#define MCSHIM_REAL_FUNCTIONS(X)                                                                    \
    X(hashkit_digest, hashkit_digest, interposed)                                                   \
    X(get_by_key, memcached_get_by_key, interposed)                                                 \
    X(mget_by_key, memcached_mget_by_key, interposed)                                               \
    X(fetch_result, memcached_fetch_result, interposed)                                             \
    X(set_by_key, memcached_set_by_key, interposed)                                                 \
    X(add_by_key, memcached_add_by_key, interposed)                                                 \
    X(replace_by_key, memcached_replace_by_key, interposed)                                         \
    X(append_by_key, memcached_append_by_key, interposed)                                           \
    X(prepend_by_key, memcached_prepend_by_key, interposed)                                         \
    X(cas_by_key, memcached_cas_by_key, interposed)                                                 \
    X(delete_by_key, memcached_delete_by_key, interposed)                                           \
    X(increment_by_key, memcached_increment_by_key, interposed)                                     \
    X(decrement_by_key, memcached_decrement_by_key, interposed)                                     \
    X(increment_with_initial_by_key, memcached_increment_with_initial_by_key, interposed)           \
    X(decrement_with_initial_by_key, memcached_decrement_with_initial_by_key, interposed)           \
    X(touch_by_key, memcached_touch_by_key, interposed)                                             \
    X(exist_by_key, memcached_exist_by_key, interposed)                                             \
    X(generate_hash, memcached_generate_hash, interposed)                                           \
    /* Configuration changes: passed through, after which cached routing of */                      \
    /* every handle is rebuilt. */                                                                  \
    X(server_add, memcached_server_add, interposed)                                                 \
    X(server_add_with_weight, memcached_server_add_with_weight, interposed)                         \
    X(server_add_udp, memcached_server_add_udp, interposed)                                         \
    X(server_add_udp_with_weight, memcached_server_add_udp_with_weight, interposed)                 \
    X(server_add_unix_socket, memcached_server_add_unix_socket, interposed)                         \
    X(server_add_unix_socket_with_weight, memcached_server_add_unix_socket_with_weight, interposed) \
    X(server_push, memcached_server_push, interposed)                                               \
    X(servers_reset, memcached_servers_reset, interposed)                                           \
    X(behavior_set, memcached_behavior_set, interposed)                                             \
    X(free, memcached_free, interposed)                                                             \
    /* The managed list: applied before the list is walked. */                                      \
    X(server_cursor, memcached_server_cursor, interposed)                                           \
    X(server_count, memcached_server_count, helper)                                                 \
    X(instance_by_position, memcached_server_instance_by_position, helper)                          \
    X(server_name, memcached_server_name, helper)                                                   \
    X(server_port, memcached_server_port, helper)                                                   \
    X(server_type, memcached_server_type, helper)                                                   \
    X(callback_get, memcached_callback_get, helper)                                                 \
    X(result_key_value, memcached_result_key_value, helper)                                         \
    X(result_key_length, memcached_result_key_length, helper)                                       \
    X(result_value, memcached_result_value, helper)                                                 \
    X(result_length, memcached_result_length, helper)                                               \
    X(result_flags, memcached_result_flags, helper)                                                 \
    X(result_free, memcached_result_free, helper)                                                   \
    X(last_error_errno, memcached_last_error_errno, helper)                                         \
    X(strerror, memcached_strerror, helper)                                                         \
    X(server_response_count, memcached_server_response_count, helper)                               \
    X(server_error_return, memcached_server_error_return, helper)                                   \
    X(lib_version, memcached_lib_version, optional)

// Interposed functions whose wrapper calls the *_by_key wrapper above (the
// key as its own group key) rather than a real function of their own.
#define MCSHIM_KEY_ONLY_WRAPPERS(X)     \
    X(memcached_get)                    \
    X(memcached_mget)                   \
    X(memcached_set)                    \
    X(memcached_add)                    \
    X(memcached_replace)                \
    X(memcached_append)                 \
    X(memcached_prepend)                \
    X(memcached_cas)                    \
    X(memcached_delete)                 \
    X(memcached_increment)              \
    X(memcached_increment_with_initial) \
    X(memcached_decrement)              \
    X(memcached_decrement_with_initial) \
    X(memcached_touch)                  \
    X(memcached_exist)

namespace mcwatch::shim {

struct Real {
#define MCSHIM_REAL_POINTER(member, symbol, kind) decltype(&::symbol) member;
    MCSHIM_REAL_FUNCTIONS(MCSHIM_REAL_POINTER)
#undef MCSHIM_REAL_POINTER
};

// Every pointer non-null (lib_version aside), or null if libmemcached cannot
// be found (then the caller cannot have called us through it; wrappers fail
// with MEMCACHED_FAILURE rather than crash).
const Real* real() noexcept;

}  // namespace mcwatch::shim
