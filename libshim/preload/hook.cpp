// The interposed hashkit_digest, and dlopen (for PHP's RTLD_DEEPBIND).
#include "libshim/preload/hook.hpp"

#include <dlfcn.h>

#include <cstring>

#include "libshim/preload/real.hpp"

namespace mcwatch::shim {

namespace {

thread_local HookContext hook_context;

}  // namespace

__thread int call_depth = 0;

HookScope::HookScope(const memcached_st* memc, const ExpectedKey* keys, size_t count) noexcept : saved_(hook_context) {
    hook_context = HookContext{memc, keys, count, 0};
}

HookScope::~HookScope() { hook_context = saved_; }


}  // namespace mcwatch::shim

using namespace mcwatch::shim;

// libmemcached reaches this through the PLT both to route keys and to build
// its ketama ring: anything not listed by the running operation (ring point
// names included) gets the real hash.
extern "C" __attribute__((visibility("default"))) uint32_t hashkit_digest(const hashkit_st* self, const char* key,
                                                                          size_t key_length) {
    HookContext& context = hook_context;
    if (context.memc && self == &context.memc->hashkit) {
        for (size_t n = 0; n < context.count; ++n) {
            const size_t i = (context.cursor + n) % context.count;
            const ExpectedKey& expected = context.keys[i];
            if (expected.length == key_length && std::memcmp(expected.bytes, key, key_length) == 0) {
                context.cursor = i + 1;
                if (expected.forced) return expected.hash;
                break;
            }
        }
    }
    const Real* r = real();
    return r ? r->hashkit_digest(self, key, key_length) : 0;
}

namespace {

using DlopenFn = void* (*)(const char*, int);

DlopenFn real_dlopen() noexcept {
    static DlopenFn found = [] {
        void* symbol = dlvsym(RTLD_NEXT, "dlopen", "GLIBC_2.34");
        if (!symbol) symbol = dlsym(RTLD_NEXT, "dlopen");
        return reinterpret_cast<DlopenFn>(symbol);
    }();
    return found;
}

}  // namespace

// PHP loads extensions with RTLD_DEEPBIND, which puts an extension's own
// dependencies (libmemcached, libhashkit) ahead of the preloaded shim: the
// memcached extension would never reach the hook. Only that flag, only for
// a library whose file name says memcached, is dropped.
extern "C" __attribute__((visibility("default"))) void* dlopen(const char* filename, int flags) {
    if ((flags & RTLD_DEEPBIND) && filename) {
        const char* base = std::strrchr(filename, '/');
        if (std::strstr(base ? base + 1 : filename, "memcached")) flags &= ~RTLD_DEEPBIND;
    }
    DlopenFn original = real_dlopen();
    return original ? original(filename, flags) : nullptr;
}
