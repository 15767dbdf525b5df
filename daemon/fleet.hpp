// The fleet view's thread (docs/DESIGN.md, "The fleet view"): it publishes
// this host's observation of each server under the host's etcd lease,
// reads the fleet's prefix, computes every server's verdict
// (daemon/fleet_verdict.hpp), performs a rejoin's flush_all when it wins
// the rejoin record's transaction, and hands the verdicts to the daemon's
// loop through a mailbox and an eventfd. Every etcd call happens on this
// thread, so that none ever delays a probe, a control command or a client,
// except the lease's keepalives: a thread and a connection of their own, so
// that no slow read of the prefix ever delays them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/fleet_verdict.hpp"
#include "libshim/unique_fd.hpp"

namespace mcwatch {

// An operator's command for the whole fleet (docs/DESIGN.md, "The fleet
// view"), handed from the daemon's thread to be recorded in etcd.
struct FleetOperatorCommand {
    uint64_t ticket = 0;                   // the daemon's: the control request to answer
    std::string command;                   // as the operator typed it: "drain", "undrain", ...
    std::string server;                    // the configured address
    std::optional<OperatorRecord::Op> op;  // none: clear the override (undrain, up)
    bool move = false;
};

struct FleetOperatorOutcome {
    FleetOperatorCommand command;
    std::string error;  // why etcd did not record it; "" when it did
};

// What the fleet thread tells the daemon after each read of the prefix.
struct FleetView {
    bool etcd_answers = false;  // this read succeeded
    // When etcd last answered (the daemon's clock, unix ms): the daemon
    // falls back to its own observations fallback_after after it.
    int64_t last_answer_unix_ms = 0;
    int64_t revision = 0;
    std::string error;  // why etcd did not answer, when it did not
    // server address -> what to publish (the verdict held until its rejoin is done)
    std::map<std::string, FleetVerdict::Kind> published;
    // server address -> the latest LocalServer::dead_alone_since_unix_ms the
    // fleet thread has taken over (held dead until the fleet flushed it).
    std::map<std::string, int64_t> dead_alone_taken;
    // server address -> the operator's override etcd holds (when it answered)
    std::map<std::string, OperatorRecord> operators;
    // The commands recorded (or refused) since the last view: this view was
    // read after each of them was written.
    std::vector<FleetOperatorOutcome> operator_outcomes;
};

class Fleet {
public:
    struct LocalServer {
        ServerAddress address;
        FleetObservation observation;
        // Not 0: this host published the server dead on its own probes (etcd
        // out of reach past fallback_after), since then (the dead state's
        // since). The fleet thread holds it dead like an unrecorded outage,
        // so that its return goes through the fleet's flush.
        int64_t dead_alone_since_unix_ms = 0;
    };

    // Starts the thread. `flush_on_rejoin`: the winner of a rejoin sends flush_all.
    static Result<std::unique_ptr<Fleet>> start(const FleetConfig& config, bool flush_on_rejoin,
                                                std::chrono::milliseconds poll_interval);
    // Stops the thread and revokes the lease: the host's observations stop counting at once.
    ~Fleet();
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;

    // From the daemon's thread, after each round: the servers and what this
    // host sees of each. Written to etcd on changes only.
    void observe(std::vector<LocalServer> servers);

    // From the daemon's thread: records the command in etcd; its outcome
    // comes with the next view.
    void record_operator(FleetOperatorCommand command);
    // From the daemon's thread: the fleet's drain --move of `server` that this
    // host took at `mover_since_unix_ms` ended done or failed: the ops/
    // record stops naming it, so that no host takes the move over.
    void release_move(std::string server, int64_t mover_since_unix_ms);
    // Waits (bounded: one failed read of every endpoint) for the first view:
    // a starting daemon applies the fleet's overrides before it publishes.
    bool wait_first_view() const;

    // Readable when a new view waits in the mailbox (an eventfd).
    int wakeup_fd() const { return wakeup_.get(); }
    // The latest view (clears the eventfd), or nothing new.
    std::optional<FleetView> take_view();

private:
    Fleet(const FleetConfig& config, bool flush_on_rejoin, std::chrono::milliseconds poll_interval, UniqueFd wakeup,
          std::unique_ptr<class EtcdClient> client, std::unique_ptr<class EtcdClient> keepalive_client);
    void run();
    // The keepalive thread: the lease granted by the fleet thread, kept
    // alive a third of the lease apart on keepalive_client_.
    void keep_alive();
    void cycle(bool operators_written);
    // The lease is granted (again, when the keepalive thread found it
    // expired), or why not (etcd's error).
    Result<> keep_lease(int64_t now, const std::vector<LocalServer>& servers);
    // This host's record (hosts/<host>: its observations of every server),
    // written when one of them changed since the last write under this lease.
    Result<> write_observations(const std::vector<LocalServer>& servers);
    struct PrefixRead {
        const FleetSnapshot* snapshot = nullptr;  // valid until the next call
        // The snapshot holds at the store's latest revision; false: something
        // changed since, and the full read that shows it waits for its turn.
        bool current = false;
    };
    // The fleet's prefix, parsed: the last full read's snapshot again when
    // nothing under it changed, or while the next full read waits (the
    // bound on full reads, docs/DESIGN.md). `must_read`: read it whole now.
    Result<PrefixRead> read_prefix(bool must_read);
    // The rejoin protocol's step for one server; the record as it is after it.
    std::optional<RejoinRecord> step_rejoin(const ServerAddress& server, const FleetVerdict& verdict,
                                            const FleetSnapshot& snapshot);
    void post(FleetView view);
    // Writes the command to etcd: "" when etcd took it, else why not.
    std::string write_operator(const FleetOperatorCommand& command);
    // Each drain --move whose mover's lease is gone, for a server of this
    // host: claimed in a transaction on its record, `operators` updated.
    void take_over_moves(const std::vector<LocalServer>& servers, const FleetSnapshot& snapshot,
                         std::map<std::string, OperatorRecord>& operators);
    // Clears the record's mover if it is still this host's claim: true when
    // settled (done, or no longer ours), false to try again (etcd failed).
    bool write_move_release(const std::string& server, int64_t mover_since_unix_ms);
    // The key's current value and mod_revision, nothing when it is absent.
    Result<std::optional<EtcdKeyValue>> read_key(const std::string& key);

    const FleetConfig config_;
    const bool flush_on_rejoin_;
    const std::chrono::milliseconds poll_interval_;
    UniqueFd wakeup_;
    std::unique_ptr<EtcdClient> client_;
    std::unique_ptr<EtcdClient> keepalive_client_;  // the keepalive thread's

    // Between the two threads: the lease to keep alive (0: none yet), and
    // the lease the keepalive thread found expired.
    std::atomic<int64_t> lease_to_keep_{0};
    std::atomic<int64_t> lease_expired_{0};

    // Fleet thread only.
    int64_t lease_id_ = 0;
    int64_t last_answer_ms_ = 0;
    bool etcd_was_answering_ = true;
    int64_t lease_started_unix_ms_ = 0;  // when lease_id_ was granted: the host record's start
    // server -> what etcd holds of ours under lease_id_ (nothing: no record yet)
    std::optional<std::map<std::string, FleetObservation>> written_;
    std::optional<FleetSnapshot> last_snapshot_;  // the last full read of the prefix, parsed
    EtcdPrefixVersion last_version_;              // and what etcd said of the prefix then
    std::set<std::string> unreadable_logged_;     // the last full read's unreadable keys, logged
    // The store's revision at which the prefix was last known to hold
    // last_snapshot_'s keys: a poll that finds it unchanged looks no further.
    int64_t unchanged_at_revision_ = 0;
    // No full read (nor prefix check) before this: k times the last full
    // read's latency after its start, with jitter.
    std::chrono::steady_clock::time_point next_full_read_{};
    std::minstd_rand jitter_;
    // The view last posted from a current read: posted again, with its
    // revision, while a change waits for its full read.
    FleetView last_view_;
    // server -> this host's claim of its flush that may still stand
    std::map<std::string, OwnClaim> own_claims_;
    // server -> a flushing claim's mod_revision and when this host first saw it
    std::map<std::string, std::pair<int64_t, std::chrono::steady_clock::time_point>> claims_seen_;
    // Servers this host published dead on the fleet's verdict while etcd
    // never took the outage's record (its write failed), with the epoch of
    // the done record seen then: they stay dead here until a later epoch is
    // recorded, so that no return skips the rejoin and its flush.
    std::map<std::string, uint64_t> unrecorded_dead_;
    // server -> the LocalServer::dead_alone_since_unix_ms last put into
    // unrecorded_dead_: each outage this host published alone, once.
    std::map<std::string, int64_t> dead_alone_taken_;
    // Commands written since the last view was posted: they go with the next one.
    std::vector<FleetOperatorOutcome> outcomes_;

    std::mutex mutex_;  // guards what follows
    std::condition_variable wake_;
    bool stopping_ = false;
    std::vector<LocalServer> local_;
    std::optional<FleetView> mailbox_;
    std::vector<FleetOperatorCommand> commands_;                   // to record in etcd
    std::vector<std::pair<std::string, int64_t>> released_moves_;  // server, mover_since: to write

    std::thread thread_;
    std::thread keepalive_thread_;
};

// Sends flush_all to `server` and reads its OK: the rejoin's flush, from
// the fleet thread (the prober belongs to the daemon's thread).
Result<> send_flush_all(const ServerAddress& server, std::chrono::milliseconds timeout);

}  // namespace mcwatch
