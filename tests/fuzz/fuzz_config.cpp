// The configuration parser on arbitrary text. It must answer with a config
// or a "file:line: message" error, and every config it accepts must keep the
// promises later code relies on without checking again: values that fit the
// state file's fields, addresses that parse the same way again, timings that
// make sense together.
#include <cstdint>
#include <string>

#include "common/config.hpp"
#include "fuzz_check.hpp"
#include "libshim/state_format.hpp"

using namespace mcwatch;

namespace {

// memcached reads an expiration above 30 days as an absolute unix time.
constexpr int64_t kMemcachedRelativeMaxMs = int64_t{30} * 86'400'000;

void check_accepted(const Config& c) {
    FUZZ_CHECK(!c.servers.empty());
    FUZZ_CHECK(c.servers.size() <= state::kMaxServers);
    FUZZ_CHECK(c.probe_timeout < c.probe_interval);
    FUZZ_CHECK(c.stale_after > c.probe_interval);
    FUZZ_CHECK(c.probe_timeout.count() > 0);
    FUZZ_CHECK(c.fail_after >= 1 && c.recover_after >= 1);
    FUZZ_CHECK(!c.state_file.empty() && c.state_file[0] == '/');
    FUZZ_CHECK(!c.control_socket.empty() && c.control_socket[0] == '/');
    FUZZ_CHECK(uint32_t(c.distribution) <= uint32_t(state::Distribution::ketama_weighted));
    FUZZ_CHECK(uint32_t(c.hash) < state::kHashCount);
    // The state file keeps these as uint32 milliseconds (StateWriter::publish):
    // a longer value would be cut, and readers would judge staleness wrongly.
    FUZZ_CHECK(c.probe_interval.count() <= int64_t{UINT32_MAX});
    FUZZ_CHECK(c.stale_after.count() <= int64_t{UINT32_MAX});
    // writeback_ttl is sent to memcached as a relative expiration.
    FUZZ_CHECK(c.writeback_ttl.count() <= kMemcachedRelativeMaxMs);
    // The fleet view's ids are parts of etcd keys, split at their last '/'.
    if (c.fleet.enabled()) {
        FUZZ_CHECK(!c.fleet.host.empty() && c.fleet.host.find('/') == std::string::npos);
        FUZZ_CHECK(!c.fleet.name.empty() && c.fleet.name.find('/') == std::string::npos);
        FUZZ_CHECK(c.fleet.lease <= c.fleet.fallback_after);
        for (const std::string& endpoint : c.fleet.etcd) FUZZ_CHECK(endpoint.rfind("http://", 0) == 0);
    }
    for (const ServerAddress& s : c.servers) {
        FUZZ_CHECK(!s.text.empty() && s.text.size() < state::kAddressSize);
        FUZZ_CHECK(s.weight >= 1);
        FUZZ_CHECK(s.line >= 1);
        if (s.is_unix) {
            FUZZ_CHECK(!s.host.empty() && s.host[0] == '/');
        } else {
            FUZZ_CHECK(s.port > 0);
            FUZZ_CHECK(!s.host.empty());
        }
        // What the state file records is parsed again by readers.
        ServerAddress again;
        std::string why;
        FUZZ_CHECK(ServerAddress::parse_strict(s.text, again, why));
        FUZZ_CHECK(again.text == s.text && again.host == s.host && again.port == s.port && again.is_unix == s.is_unix);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto result = parse_config(text, "fuzz.conf");
    if (result) {
        check_accepted(*result);
    } else {
        FUZZ_CHECK(result.error().message.rfind("fuzz.conf:", 0) == 0);
        FUZZ_CHECK(result.error().message.find('\n') == std::string::npos);
    }
    // The server-line parser alone, on the same bytes as one address.
    ServerAddress address;
    std::string why;
    if (ServerAddress::parse_strict(text, address, why))
        FUZZ_CHECK(address.text == text && text.size() < state::kAddressSize);
    return 0;
}
