// The fleet view's pure part (docs/DESIGN.md, "The fleet view"): the etcd key
// layout, the records stored under it, and the verdict that turns the
// hosts' observations of a server into the fleet's. mcwatchd's fleet thread
// and `mcctl fleet` both read a snapshot of the fleet's prefix with these,
// so every host computes the same verdict from the same revision.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/etcd_client.hpp"

namespace mcwatch {

// What one host sees of one server: what its own probes say (its local
// health machine's state, before any fleet verdict).
struct FleetObservation {
    enum class State : uint8_t { unknown, live, dead };
    State state = State::unknown;
    int64_t since_unix_ms = 0;  // of the last transition
    std::string error;          // why it is dead (the last probe error), "" when live
    uint64_t restarts = 0;      // memcached restarts this host has seen (uptime going back)

    bool operator==(const FleetObservation&) const = default;
};
const char* fleet_state_name(FleetObservation::State state);

// The fleet's memory of a server's outages: /mcwatch/<name>/rejoin/<server>.
// The first host that sees the fleet's verdict turn dead moves it to `dead`
// at epoch + 1; when the verdict is live again, one host wins `flushing`
// (a txn on the record's mod_revision), sends flush_all and writes `done`.
// No host publishes the server live while the record is dead or flushing.
struct RejoinRecord {
    enum class Phase : uint8_t { done, dead, flushing };
    uint64_t epoch = 0;
    Phase phase = Phase::done;
    std::string host;  // who marked it dead, claimed the flush or recorded it done
    int64_t at_unix_ms = 0;
    bool flushed = false;  // done: flush_all was sent (flush_on_rejoin)
};
const char* rejoin_phase_name(RejoinRecord::Phase phase);

// An operator's override given on some host for the whole fleet:
// /mcwatch/<name>/ops/<server>, present while it is in force. `undrain` and
// `up` delete it, in the transaction that records the rejoin that ends it.
struct OperatorRecord {
    enum class Op : uint8_t { drain, down };
    Op op = Op::drain;
    std::string host;  // where the command was given
    int64_t at_unix_ms = 0;
    bool move = false;  // drain --move: one host moves the keys
    // The host moving the keys now ("" when none does: no --move, or the
    // move ended done or failed), and when it took the move: the command's
    // host at first, another host once the mover's lease is gone (a
    // transaction on this record's mod_revision, so one host at a time).
    std::string mover;
    int64_t mover_since_unix_ms = 0;

    bool operator==(const OperatorRecord&) const = default;
};
const char* operator_op_name(OperatorRecord::Op op);

// A host's record: /mcwatch/<name>/hosts/<host>, under the host's lease, one
// key for the host and its observations of every server (docs/DESIGN.md,
// "The fleet view": one write when anything changed, H keys, not H x S).
struct HostRecord {
    int64_t pid = 0;
    int64_t started_unix_ms = 0;  // when the lease was granted
    // server -> what this host sees. Nothing: an older daemon's record,
    // whose observations are its obs/<server>/<host> keys (a rolling upgrade).
    std::optional<std::map<std::string, FleetObservation>> observations;

    bool operator==(const HostRecord&) const = default;
};

// The keys, under /mcwatch/<name>/:
//   hosts/<host>              HostRecord as JSON                  with the host's lease
//   rejoin/<server>           RejoinRecord as JSON                no lease (outlives hosts)
//   ops/<server>              OperatorRecord as JSON              no lease (outlives hosts)
// and, read but no longer written, an older daemon's obs/<server>/<host>
// (FleetObservation as JSON, with its lease). A server's text may hold '/'
// (unix:/path): a host id never does, so the host is what follows the last '/'.
namespace fleet_keys {
std::string prefix(std::string_view fleet);
std::string host(std::string_view fleet, std::string_view host);
std::string rejoin(std::string_view fleet, std::string_view server);
std::string operator_override(std::string_view fleet, std::string_view server);
}  // namespace fleet_keys

std::string observation_json(const FleetObservation& observation);
Result<FleetObservation> parse_observation(std::string_view text);
std::string host_record_json(const HostRecord& record);
Result<HostRecord> parse_host_record(std::string_view text);
std::string rejoin_json(const RejoinRecord& record);
Result<RejoinRecord> parse_rejoin(std::string_view text);
std::string operator_json(const OperatorRecord& record);
Result<OperatorRecord> parse_operator(std::string_view text);

// The fleet's prefix read at one revision, sorted by kind.
struct FleetSnapshot {
    int64_t revision = 0;
    std::set<std::string> hosts;  // whose lease is alive (their key exists)
    // server -> host -> observation: each host's record's, or an older
    // daemon's obs/ keys for a host whose record has none (hosts without a
    // live lease can only be there through those: the verdict skips them)
    std::map<std::string, std::map<std::string, FleetObservation>> observations;
    std::map<std::string, std::pair<RejoinRecord, int64_t>> rejoins;  // server -> record, its mod_revision
    std::map<std::string, OperatorRecord> operators;                  // server -> the override in force
    std::map<std::string, int64_t> operator_revisions;                // server -> its ops/ key's mod_revision
    // Keys under the prefix that none of the above reads (a newer version's,
    // a typo's, bad JSON), each as "<key>: why".
    std::vector<std::string> unreadable;
};
FleetSnapshot read_snapshot(std::string_view fleet, const EtcdRange& range);

struct FleetVerdict {
    enum class Kind : uint8_t { unknown, live, dead };
    Kind kind = Kind::unknown;
    std::string reason;  // one line: how many hosts said what
    uint32_t reporting = 0;
    uint32_t dead = 0;
    // Hosts with a live lease that have not said live or dead yet (a daemon
    // just started), counted as not seeing it dead when an outage begins.
    uint32_t silent = 0;
};
const char* fleet_verdict_name(FleetVerdict::Kind kind);

// The hosts' observations of one server (host -> observation), of which only
// those of `alive_hosts` and those that know (live or dead) count, under
// `rule`. No host reporting: unknown. Unless `outage_in_progress` (the server's
// rejoin record is dead or flushing), the silent hosts of `alive_hosts` count
// too, as seeing it live: so the first host to publish after a fleet's start
// cannot begin an outage (and its flush) alone, while an outage in progress
// is never ended by hosts that have not looked.
FleetVerdict fleet_verdict(const std::map<std::string, FleetObservation>& observations,
                           const std::set<std::string>& alive_hosts, FleetRule rule, bool outage_in_progress);

// Whether the server's rejoin record holds an outage (dead or flushing).
bool outage_recorded(const FleetSnapshot& snapshot, const std::string& server);

// What is published for the server: the verdict, except that a server the
// fleet held dead stays dead until its rejoin is recorded done.
FleetVerdict::Kind published_verdict(const FleetVerdict& verdict, const std::optional<RejoinRecord>& rejoin);

// Side effects once (docs/DESIGN.md, "The fleet view"): what a host does
// with a server's rejoin record (dead or flushing) once the fleet's verdict
// is live again.
enum class RejoinStep : uint8_t {
    wait,         // another host's claim stands (it may be flushing now)
    claim,        // claim the flush: a transaction to flushing on the record's mod_revision
    record_done,  // our claim, and our flush_all was answered: write done, never flush again
    retract,      // our claim, not flushed (too late, or the flush failed): put it back to dead
};

// This host's claim of a flush, as it made it.
struct OwnClaim {
    int64_t mod_revision = 0;  // the claim's, as etcd answered the transaction
    bool flushed = false;      // its flush_all was answered OK
};

// How long a `flushing` claim must be seen unchanged (the same mod_revision)
// before another host takes it over: longer than its claimer can take from
// sending the claim to recording done when etcd and the server answer (the
// send budget, the flush's answer and the done write, each one request
// time), plus a poll to read it. Never because the claimer's lease is gone:
// a lease can lapse while its host is alive and flushing.
std::chrono::milliseconds claim_takeover_after(std::chrono::milliseconds request_timeout,
                                               std::chrono::milliseconds poll_interval);

// `record` (dead or flushing) at `mod_revision`; `own`: this host's claim
// when it made one that may still stand; `seen_for`: how long this host has
// seen the record at this mod_revision (its own monotonic clock: no clock
// is compared across hosts).
RejoinStep rejoin_step(const RejoinRecord& record, int64_t mod_revision, const std::optional<OwnClaim>& own,
                       std::chrono::milliseconds seen_for, std::chrono::milliseconds takeover_after);

// Whether the claimer may send flush_all now: the claim re-read from etcd
// just before (`mod_revision_now`, nothing when the key is gone or the
// read failed) is still the one it made, and no more than `send_budget` has
// passed since it sent the claim (a takeover waits claim_takeover_after, which
// counts this budget, from a moment after that).
bool flush_may_be_sent(int64_t claimed_revision, std::optional<int64_t> mod_revision_now,
                       std::chrono::milliseconds since_claim_sent, std::chrono::milliseconds send_budget);

}  // namespace mcwatch
