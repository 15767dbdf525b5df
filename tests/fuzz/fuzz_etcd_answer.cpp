// etcd's answers and the fleet's records, as the fleet thread and `mcctl
// fleet` read them: whatever etcd (or a proxy, or another fleet's writer)
// sends, the reader answers with a value or an error, never throws, and what
// it accepts round-trips.
#include <cstdint>
#include <string>

#include "daemon/etcd_client.hpp"
#include "daemon/fleet_verdict.hpp"
#include "fuzz_check.hpp"

using namespace mcwatch;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    if (const auto range = etcd_json::parse_range(text)) {
        // The snapshot reads any key and value: unknown ones are counted, never fatal.
        const FleetSnapshot snapshot = read_snapshot("f", *range);
        FUZZ_CHECK(snapshot.unreadable.size() <= range->kvs.size());
        for (const auto& [server, by_host] : snapshot.observations)
            for (const auto& [host, observation] : by_host) {
                FUZZ_CHECK(host.find('/') == std::string::npos);
                FUZZ_CHECK(parse_observation(observation_json(observation)).value() == observation);
            }
    } else {
        FUZZ_CHECK(!range.error().message.empty());
    }
    (void)etcd_json::parse_txn(text);
    (void)etcd_json::parse_keepalive(text);
    (void)etcd_json::parse_lease_grant(text);
    if (const auto decoded = etcd_json::base64_decode(text)) FUZZ_CHECK(etcd_json::base64_encode(*decoded) == text);
    if (const auto record = parse_host_record(text))
        FUZZ_CHECK(parse_host_record(host_record_json(*record)).value() == *record);
    if (const auto record = parse_rejoin(text)) {
        const auto again = parse_rejoin(rejoin_json(*record));
        FUZZ_CHECK(again && again->epoch == record->epoch && again->phase == record->phase);
    }
    return 0;
}
