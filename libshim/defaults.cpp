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

const state::Header* current_header(const route::StateSource* source) noexcept {
    const route::StateSource::Mapped* mapped = source ? source->current() : nullptr;
    return mapped ? &mapped->map.header() : nullptr;
}

}  // namespace

uint32_t recently_down_window_s_or_default(const route::StateSource* source) noexcept {
    const state::Header* header = current_header(source);
    return header ? header->recently_down_window_s : kDefaultRecentlyDownWindowS;
}

uint32_t writeback_ttl_s_or_default(const route::StateSource* source) noexcept {
    const state::Header* header = current_header(source);
    return header ? header->writeback_ttl_s : kDefaultWritebackTtlS;
}

uint32_t replicas_or_default(const route::StateSource* source) noexcept {
    const state::Header* header = current_header(source);
    if (!header || header->replicas < 1) return 1;
    return header->replicas < kMaxReplicas ? header->replicas : kMaxReplicas;
}

uint32_t replica_max_ttl_s_or_default(const route::StateSource* source) noexcept {
    const state::Header* header = current_header(source);
    return header ? header->replica_max_ttl_s : 0;
}

}  // namespace mcwatch
