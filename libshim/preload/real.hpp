// The real libmemcached and libhashkit functions behind the interposed ones.
// Resolved lazily on first use through dlopen(RTLD_NOLOAD) of the loaded
// library, not RTLD_NEXT alone: pylibmc loads libmemcached RTLD_LOCAL, out
// of RTLD_NEXT's reach. Nothing here runs in programs that never call
// libmemcached.
#pragma once

#include <libmemcached-1.0/memcached.h>

namespace mcwatch::shim {

struct Real {
    decltype(&::hashkit_digest) hashkit_digest;
    decltype(&::memcached_get_by_key) get_by_key;
    decltype(&::memcached_mget_by_key) mget_by_key;
    decltype(&::memcached_fetch_result) fetch_result;
    decltype(&::memcached_set_by_key) set_by_key;
    decltype(&::memcached_add_by_key) add_by_key;
    decltype(&::memcached_replace_by_key) replace_by_key;
    decltype(&::memcached_append_by_key) append_by_key;
    decltype(&::memcached_prepend_by_key) prepend_by_key;
    decltype(&::memcached_cas_by_key) cas_by_key;
    decltype(&::memcached_delete_by_key) delete_by_key;
    decltype(&::memcached_increment_by_key) increment_by_key;
    decltype(&::memcached_decrement_by_key) decrement_by_key;
    decltype(&::memcached_increment_with_initial_by_key) increment_with_initial_by_key;
    decltype(&::memcached_decrement_with_initial_by_key) decrement_with_initial_by_key;
    decltype(&::memcached_touch_by_key) touch_by_key;
    decltype(&::memcached_exist_by_key) exist_by_key;
    decltype(&::memcached_generate_hash) generate_hash;
    // Configuration changes: passed through, after which cached routing of
    // every handle is rebuilt.
    decltype(&::memcached_server_add) server_add;
    decltype(&::memcached_server_add_with_weight) server_add_with_weight;
    decltype(&::memcached_server_add_udp) server_add_udp;
    decltype(&::memcached_server_add_udp_with_weight) server_add_udp_with_weight;
    decltype(&::memcached_server_add_unix_socket) server_add_unix_socket;
    decltype(&::memcached_server_add_unix_socket_with_weight) server_add_unix_socket_with_weight;
    decltype(&::memcached_server_push) server_push;
    decltype(&::memcached_servers_reset) servers_reset;
    decltype(&::memcached_behavior_set) behavior_set;
    decltype(&::memcached_free) free;
    // Read-only helpers the shim calls (not interposed).
    decltype(&::memcached_server_count) server_count;
    decltype(&::memcached_server_instance_by_position) instance_by_position;
    decltype(&::memcached_server_name) server_name;
    decltype(&::memcached_server_port) server_port;
    decltype(&::memcached_server_type) server_type;
    decltype(&::memcached_callback_get) callback_get;
    decltype(&::memcached_result_key_value) result_key_value;
    decltype(&::memcached_result_key_length) result_key_length;
    decltype(&::memcached_result_value) result_value;
    decltype(&::memcached_result_length) result_length;
    decltype(&::memcached_result_flags) result_flags;
    decltype(&::memcached_result_free) result_free;
    decltype(&::memcached_last_error_errno) last_error_errno;
    decltype(&::memcached_strerror) strerror;
    decltype(&::memcached_server_response_count) server_response_count;
    decltype(&::memcached_server_error_return) server_error_return;
    // Optional (may be null): which libmemcached's private layouts to expect.
    decltype(&::memcached_lib_version) lib_version;
};

// Every pointer non-null, or null if libmemcached cannot be found (then the
// caller cannot have called us through it; wrappers fail with
// MEMCACHED_FAILURE rather than crash).
const Real* real() noexcept;

}  // namespace mcwatch::shim
