#include "libshim/preload/handle_debug.hpp"

#include <atomic>
#include <string>
#include <string_view>

#include "libshim/preload/debug_log.hpp"
#include "libshim/routing_names.hpp"
#include "libshim/seqlock.hpp"

namespace mcwatch::shim {

namespace {

static_assert(uint32_t(MEMCACHED_HASH_MURMUR3) == uint32_t(state::Hash::murmur3),
              "state::Hash is numbered as memcached_hash_t");

// The handles described last, and a digest of what was said: routing is
// rebuilt per thread and after every configuration change, and must not
// repeat the lines each time. A fixed table: an old handle forgotten is
// only described again.
struct Said {
    const memcached_st* memc = nullptr;
    uint64_t digest = 0;
};
constexpr unsigned kSaidEntries = 64;
Said said[kSaidEntries];
unsigned said_next = 0;
std::atomic_flag said_lock = ATOMIC_FLAG_INIT;

// True if `memc` was not yet described with `digest` (and records it).
// Never waits: a thread that finds the table busy says its lines anyway.
bool first_time(const memcached_st* memc, uint64_t digest) noexcept {
    if (said_lock.test_and_set(std::memory_order_acquire)) return true;
    bool first = true;
    for (Said& entry : said)
        if (entry.memc == memc) {
            first = entry.digest != digest;
            entry.digest = digest;
            said_lock.clear(std::memory_order_release);
            return first;
        }
    said[said_next++ % kSaidEntries] = Said{memc, digest};
    said_lock.clear(std::memory_order_release);
    return first;
}

}  // namespace

const char* handle_distribution(const memcached_st* memc) noexcept {
    switch (memc->distribution) {
    case MEMCACHED_DISTRIBUTION_MODULA: return "modula";
    case MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA_SPY: return "ketama_spy";
    default: return memc->ketama.weighted_ ? "ketama_weighted" : "ketama";
    }
}

const char* handle_hash(const memcached_st* memc) noexcept {
    const auto function = uint32_t(hashkit_get_function(&memc->hashkit));
    return function < state::kHashCount ? hash_name(state::Hash(function)) : "custom";
}

void describe_handle(const memcached_st* memc, const HandleRouting& routing) noexcept {
    try {
        route::StateSource* source = routing.router->source();
        const route::StateSource::Pin mapped = source ? source->pin() : route::StateSource::Pin();
        const bool usable = source && source->usable() && mapped;
        const char* distribution = handle_distribution(memc);
        const char* hash = handle_hash(memc);
        std::string file_routing = "no usable state file";
        if (usable) {
            const state::Header& header = mapped->map.header();
            const char* file_distribution = distribution_name(state::Distribution(header.distribution));
            const char* file_hash = hash_name(state::Hash(header.hash));
            const bool same =
                std::string_view(file_distribution) == distribution && std::string_view(file_hash) == hash;
            file_routing = std::string("state file [routing] distribution=") + file_distribution +
                           " hash=" + file_hash +
                           (same ? " (the same)" : " (differs: mcctl route does not answer for this handle)");
        }
        std::string unpublished;
        if (usable)
            for (uint32_t i : routing.router->unpublished())
                if (i < routing.addresses.size())
                    unpublished += (unpublished.empty() ? "" : ",") + routing.addresses[i];
        const std::string summary = std::string("distribution=") + distribution + " hash=" + hash +
                                    " servers=" + std::to_string(routing.addresses.size()) + "; " + file_routing;
        if (!first_time(memc, state::fnv1a64(summary.data(), summary.size(),
                                             state::fnv1a64(unpublished.data(), unpublished.size()))))
            return;
        debug_line("handle %p: %s", static_cast<const void*>(memc), summary.c_str());
        if (!unpublished.empty())
            debug_line(
                "handle %p: not published by mcwatchd (state file %s): %s: their own keys go to them as "
                "libmemcached places them; they never take another server's keys",
                static_cast<const void*>(memc), source->path().c_str(), unpublished.c_str());
    } catch (...) {
        // Out of memory: the account is not worth failing an operation for.
    }
}

}  // namespace mcwatch::shim
