#include "libshim/preload/real.hpp"

#include <dlfcn.h>

#include <atomic>

#include "libshim/seqlock.hpp"

namespace mcwatch::shim {

namespace {

void* find(void* library, const char* name) noexcept {
    void* symbol = library ? dlsym(library, name) : nullptr;
    return symbol ? symbol : dlsym(RTLD_NEXT, name);
}

bool resolve(Real& r) noexcept {
    // RTLD_NOLOAD: never load a library the program did not load itself.
    void* memcached = dlopen("libmemcached.so.11", RTLD_LAZY | RTLD_NOLOAD);
    void* hashkit = dlopen("libhashkit.so.2", RTLD_LAZY | RTLD_NOLOAD);
    bool complete = true;
    auto set = [&](auto& slot, void* library, const char* name) {
        slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(find(library, name));
        complete = complete && slot;
    };
    set(r.hashkit_digest, hashkit ? hashkit : memcached, "hashkit_digest");
    set(r.get_by_key, memcached, "memcached_get_by_key");
    set(r.mget_by_key, memcached, "memcached_mget_by_key");
    set(r.fetch_result, memcached, "memcached_fetch_result");
    set(r.set_by_key, memcached, "memcached_set_by_key");
    set(r.add_by_key, memcached, "memcached_add_by_key");
    set(r.replace_by_key, memcached, "memcached_replace_by_key");
    set(r.append_by_key, memcached, "memcached_append_by_key");
    set(r.prepend_by_key, memcached, "memcached_prepend_by_key");
    set(r.cas_by_key, memcached, "memcached_cas_by_key");
    set(r.delete_by_key, memcached, "memcached_delete_by_key");
    set(r.increment_by_key, memcached, "memcached_increment_by_key");
    set(r.decrement_by_key, memcached, "memcached_decrement_by_key");
    set(r.increment_with_initial_by_key, memcached, "memcached_increment_with_initial_by_key");
    set(r.decrement_with_initial_by_key, memcached, "memcached_decrement_with_initial_by_key");
    set(r.touch_by_key, memcached, "memcached_touch_by_key");
    set(r.exist_by_key, memcached, "memcached_exist_by_key");
    set(r.generate_hash, memcached, "memcached_generate_hash");
    set(r.server_add, memcached, "memcached_server_add");
    set(r.server_add_with_weight, memcached, "memcached_server_add_with_weight");
    set(r.server_add_udp, memcached, "memcached_server_add_udp");
    set(r.server_add_udp_with_weight, memcached, "memcached_server_add_udp_with_weight");
    set(r.server_add_unix_socket, memcached, "memcached_server_add_unix_socket");
    set(r.server_add_unix_socket_with_weight, memcached, "memcached_server_add_unix_socket_with_weight");
    set(r.server_push, memcached, "memcached_server_push");
    set(r.servers_reset, memcached, "memcached_servers_reset");
    set(r.behavior_set, memcached, "memcached_behavior_set");
    set(r.free, memcached, "memcached_free");
    set(r.server_count, memcached, "memcached_server_count");
    set(r.instance_by_position, memcached, "memcached_server_instance_by_position");
    set(r.server_name, memcached, "memcached_server_name");
    set(r.server_port, memcached, "memcached_server_port");
    set(r.server_type, memcached, "memcached_server_type");
    set(r.callback_get, memcached, "memcached_callback_get");
    set(r.result_key_value, memcached, "memcached_result_key_value");
    set(r.result_key_length, memcached, "memcached_result_key_length");
    set(r.result_value, memcached, "memcached_result_value");
    set(r.result_length, memcached, "memcached_result_length");
    set(r.result_flags, memcached, "memcached_result_flags");
    set(r.result_free, memcached, "memcached_result_free");
    set(r.last_error_errno, memcached, "memcached_last_error_errno");
    set(r.strerror, memcached, "memcached_strerror");
    set(r.server_response_count, memcached, "memcached_server_response_count");
    set(r.server_error_return, memcached, "memcached_server_error_return");
    r.lib_version = reinterpret_cast<decltype(r.lib_version)>(find(memcached, "memcached_lib_version"));
    // The handles are not closed: NOLOAD handles only pin libraries the
    // program already has, and the pointers must stay valid.
    return complete;
}

Real table;
// 0 unresolved, 1 resolving, 2 done, 3 failed. Concurrent first calls
// resolve at most once; a loser spins briefly (resolution takes microseconds).
std::atomic<int> status{0};

}  // namespace

const Real* real() noexcept {
    int s = status.load(std::memory_order_acquire);
    if (s == 2) return &table;
    if (s == 0 && status.compare_exchange_strong(s, 1, std::memory_order_acq_rel)) {
        const bool ok = resolve(table);
        status.store(ok ? 2 : 3, std::memory_order_release);
        return ok ? &table : nullptr;
    }
    for (int spin = 0; spin < 1'000'000 && status.load(std::memory_order_acquire) == 1; ++spin) state::cpu_relax();
    return status.load(std::memory_order_acquire) == 2 ? &table : nullptr;
}

}  // namespace mcwatch::shim
