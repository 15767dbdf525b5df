#include "libshim/preload/real.hpp"

#include <dlfcn.h>

#include <atomic>
#include <cstring>

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
    auto set = [&](auto& slot, const char* name, bool optional) {
        // hashkit_digest lives in libhashkit (libmemcached reaches it there).
        void* library = std::strncmp(name, "hashkit_", 8) == 0 && hashkit ? hashkit : memcached;
        slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(find(library, name));
        complete = complete && (slot || optional);
    };
#define MCSHIM_RESOLVE(member, symbol, kind) set(r.member, #symbol, std::strcmp(#kind, "optional") == 0);
    MCSHIM_REAL_FUNCTIONS(MCSHIM_RESOLVE)
#undef MCSHIM_RESOLVE
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
