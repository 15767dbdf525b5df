#include "libshim/defaults.hpp"

#include <cstdlib>
#include <cstring>

#include "libshim/state_source.hpp"

namespace mcwatch {

const char* state_path_from_environment() noexcept {
    const char* from_env = secure_getenv("MCSHIM_STATE");
    return from_env && *from_env ? from_env : kDefaultStatePath;
}

bool debug_from_environment() noexcept {
    const char* value = secure_getenv("MCSHIM_DEBUG");
    return value && *value && std::strcmp(value, "0") != 0;
}

namespace {

// `read` of the current mapping's header, or `fallback` without one; the
// mapping is held (pinned) while it is read.
template <class Read>
uint32_t from_header(const route::StateSource* source, uint32_t fallback, Read read) noexcept {
    const route::StateSource::Pin mapped = source ? source->pin() : route::StateSource::Pin();
    return mapped ? read(mapped->map.header()) : fallback;
}

}  // namespace

uint32_t recently_down_window_s_or_default(const route::StateSource* source) noexcept {
    return from_header(source, kDefaultRecentlyDownWindowS,
                       [](const state::Header& header) { return header.recently_down_window_s; });
}

uint32_t writeback_ttl_s_or_default(const route::StateSource* source) noexcept {
    return from_header(source, kDefaultWritebackTtlS,
                       [](const state::Header& header) { return header.writeback_ttl_s; });
}

uint32_t replicas_or_default(const route::StateSource* source) noexcept {
    return from_header(source, 1, [](const state::Header& header) {
        return header.replicas < 1 ? 1 : header.replicas < kMaxReplicas ? header.replicas : kMaxReplicas;
    });
}

uint32_t replica_max_ttl_s_or_default(const route::StateSource* source) noexcept {
    return from_header(source, 0, [](const state::Header& header) { return header.replica_max_ttl_s; });
}

}  // namespace mcwatch
