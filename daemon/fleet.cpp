#include "daemon/fleet.hpp"

#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "common/errno_text.hpp"
#include "daemon/etcd_client.hpp"
#include "daemon/log.hpp"
#include "libshim/clock.hpp"

namespace mcwatch {

namespace {

using std::chrono::milliseconds;

// Each etcd request gives up after this: a member that does not answer
// costs one such wait, then the next endpoint is tried.
constexpr milliseconds kRequestTimeout{1000};
// After a full read of the prefix that took more than a poll interval / k,
// none before k times its latency has passed (times 1 to 2 at random),
// capped at the lease: a busy etcd answers slowly, and its hosts then read
// it whole less often, each at its own moment (docs/DESIGN.md, "The fleet
// view").
constexpr int kFullReadSpacing = 4;

// A full read is hosts x servers keys: under load it takes longer than a
// small request, and one given up is work etcd did for nothing.
milliseconds full_read_timeout(milliseconds lease) { return std::max(kRequestTimeout, lease / 2); }

void block_signals() {
    // Signals (SIGTERM, SIGHUP) are the daemon thread's to see.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

int64_t wall_ms() { return unix_ms(); }

}  // namespace

Result<std::unique_ptr<Fleet>> Fleet::start(const FleetConfig& config, bool flush_on_rejoin,
                                            milliseconds poll_interval) {
    UniqueFd wakeup(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wakeup) return failure(fmt::format("fleet: eventfd: {}", errno_text(errno)));
    Result<std::unique_ptr<EtcdClient>> client = EtcdClient::create(config.etcd, kRequestTimeout);
    if (!client) return failure(fmt::format("fleet: {}", client.error().message));
    Result<std::unique_ptr<EtcdClient>> keepalive_client = EtcdClient::create(config.etcd, kRequestTimeout);
    if (!keepalive_client) return failure(fmt::format("fleet: {}", keepalive_client.error().message));
    std::unique_ptr<Fleet> fleet(new Fleet(config, flush_on_rejoin, poll_interval, std::move(wakeup),
                                           std::move(*client), std::move(*keepalive_client)));
    fleet->thread_ = std::thread([raw = fleet.get()] { raw->run(); });
    fleet->keepalive_thread_ = std::thread([raw = fleet.get()] { raw->keep_alive(); });
    return fleet;
}

Fleet::Fleet(const FleetConfig& config, bool flush_on_rejoin, milliseconds poll_interval, UniqueFd wakeup,
             std::unique_ptr<EtcdClient> client, std::unique_ptr<EtcdClient> keepalive_client)
    : config_(config), flush_on_rejoin_(flush_on_rejoin), poll_interval_(poll_interval), wakeup_(std::move(wakeup)),
      client_(std::move(client)), keepalive_client_(std::move(keepalive_client)), jitter_(std::random_device{}()) {}

Fleet::~Fleet() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (keepalive_thread_.joinable()) keepalive_thread_.join();
    // A clean stop: the other hosts stop counting this one now, not a lease later.
    if (lease_id_ != 0) (void)client_->lease_revoke(lease_id_);
}

void Fleet::observe(std::vector<LocalServer> servers) {
    std::lock_guard<std::mutex> lock(mutex_);
    local_ = std::move(servers);
}

std::optional<FleetView> Fleet::take_view() {
    uint64_t count = 0;
    while (read(wakeup_.get(), &count, sizeof count) > 0) {
    }
    std::lock_guard<std::mutex> lock(mutex_);
    std::optional<FleetView> view = std::move(mailbox_);
    mailbox_.reset();
    return view;
}

void Fleet::record_operator(FleetOperatorCommand command) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        commands_.push_back(std::move(command));
    }
    wake_.notify_all();
}

void Fleet::release_move(std::string server, int64_t mover_since_unix_ms) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        released_moves_.emplace_back(std::move(server), mover_since_unix_ms);
    }
    wake_.notify_all();
}

bool Fleet::wait_first_view() const {
    // The first cycle gives up after one timeout per endpoint (the lease's
    // grant fails on each), then posts a view that says so.
    const auto deadline = std::chrono::steady_clock::now() + kRequestTimeout * int64_t(config_.etcd.size() + 1);
    for (int attempt = 0; attempt < 100; ++attempt) {
        const auto left = std::chrono::ceil<milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{wakeup_.get(), POLLIN, 0};
        if (poll(&p, 1, int(left.count())) > 0) return true;
    }
    return false;
}

void Fleet::post(FleetView view) {
    view.operator_outcomes = std::move(outcomes_);
    outcomes_.clear();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        // A view not taken yet is replaced, but the answers it carried are not lost.
        if (mailbox_)
            view.operator_outcomes.insert(view.operator_outcomes.begin(), mailbox_->operator_outcomes.begin(),
                                          mailbox_->operator_outcomes.end());
        mailbox_ = std::move(view);
    }
    const uint64_t one = 1;
    (void)!write(wakeup_.get(), &one, sizeof one);
}

void Fleet::run() {
    block_signals();
    std::unique_lock<std::mutex> lock(mutex_);
    // Releases etcd did not take yet: tried again with each cycle, not at once
    // (the wait below wakes for new ones only, so a failing etcd is not asked
    // in a loop).
    std::vector<std::pair<std::string, int64_t>> releases;
    while (!stopping_) {
        std::vector<FleetOperatorCommand> commands = std::move(commands_);
        commands_.clear();
        releases.insert(releases.end(), released_moves_.begin(), released_moves_.end());
        released_moves_.clear();
        lock.unlock();
        // Written before the cycle's read, so the view that answers them shows them.
        for (FleetOperatorCommand& command : commands) {
            std::string error = write_operator(command);
            outcomes_.push_back({std::move(command), std::move(error)});
        }
        std::erase_if(releases,
                      [this](const auto& release) { return write_move_release(release.first, release.second); });
        cycle(!commands.empty());
        lock.lock();
        wake_.wait_for(lock, poll_interval_,
                       [this] { return stopping_ || !commands_.empty() || !released_moves_.empty(); });
    }
}

void Fleet::keep_alive() {
    block_signals();
    const milliseconds every = std::max(milliseconds(1), config_.lease / 3);
    // A keepalive not answered is tried again sooner: the lease has two
    // thirds left, and each try costs at most one request time per endpoint.
    const milliseconds again = std::min(every, poll_interval_);
    milliseconds wait = every;
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, wait, [this] { return stopping_; })) {
        lock.unlock();
        wait = every;
        if (const int64_t lease = lease_to_keep_.load(); lease != 0) {
            const Result<EtcdLease> kept = keepalive_client_->lease_keepalive(lease);
            if (!kept)
                wait = again;
            else if (kept->ttl_s <= 0)
                lease_expired_.store(lease);  // the fleet thread grants another
        }
        lock.lock();
    }
}

Result<std::optional<EtcdKeyValue>> Fleet::read_key(const std::string& key) {
    Result<EtcdRange> range = client_->range_prefix(key);
    if (!range) return tl::unexpected(range.error());
    // A prefix range: "…:1121" also covers "…:11211".
    for (EtcdKeyValue& kv : range->kvs)
        if (kv.key == key) return std::optional<EtcdKeyValue>(std::move(kv));
    return std::optional<EtcdKeyValue>();
}

std::string Fleet::write_operator(const FleetOperatorCommand& command) {
    const std::string ops_key = fleet_keys::operator_override(config_.name, command.server);
    if (command.op) {
        const int64_t now = wall_ms();
        // This host moves the keys first; another takes the move over if its lease goes.
        const OperatorRecord record{
            *command.op, config_.host, now, command.move, command.move ? config_.host : "", command.move ? now : 0};
        if (const Result<int64_t> put = client_->put(ops_key, operator_json(record)); !put) return put.error().message;
        log_event(
            "info", "fleet_operator",
            {{"status", "recorded"}, {"op", command.command}, {"server", command.server}, {"host", config_.host}});
        return "";
    }
    // The override's end is the fleet's rejoin: in one transaction with the
    // key's removal, the rejoin record goes to dead at the next epoch (unless
    // an outage is recorded already), so that one host flushes, once, and no
    // host publishes the server live before. Retried when another host's
    // write came between the read and the transaction.
    const std::string rejoin_key = fleet_keys::rejoin(config_.name, command.server);
    for (int attempt = 0; attempt < 5; ++attempt) {
        const Result<std::optional<EtcdKeyValue>> ops = read_key(ops_key);
        if (!ops) return ops.error().message;
        const Result<std::optional<EtcdKeyValue>> rejoin = read_key(rejoin_key);
        if (!rejoin) return rejoin.error().message;
        std::optional<RejoinRecord> record;
        if (*rejoin)
            if (Result<RejoinRecord> parsed = parse_rejoin((*rejoin)->value); parsed) record = std::move(*parsed);
        std::vector<EtcdOp> success = {EtcdOp{EtcdOp::Kind::del, ops_key, "", 0}};
        const bool recorded_outage = record && record->phase != RejoinRecord::Phase::done;
        const uint64_t epoch = record ? record->epoch : 0;
        if (*ops && flush_on_rejoin_ && !recorded_outage)
            success.push_back({EtcdOp::Kind::put, rejoin_key,
                               rejoin_json({epoch + 1, RejoinRecord::Phase::dead, config_.host, wall_ms(), false}), 0});
        const Result<EtcdTxnResult> txn = client_->txn(
            {EtcdCompare{ops_key, EtcdCompare::Target::mod_revision, *ops ? (*ops)->mod_revision : 0, {}},
             EtcdCompare{rejoin_key, EtcdCompare::Target::mod_revision, *rejoin ? (*rejoin)->mod_revision : 0, {}}},
            success);
        if (!txn) return txn.error().message;
        if (!txn->succeeded) continue;
        log_event("info", "fleet_operator",
                  {{"status", "recorded"},
                   {"op", command.command},
                   {"server", command.server},
                   {"host", config_.host},
                   {"rejoin", success.size() > 1 ? fmt::format("epoch {}", epoch + 1) : "none"}});
        return "";
    }
    return fmt::format("its records of {} kept changing under other hosts' writes: try again", command.server);
}

void Fleet::take_over_moves(const std::vector<LocalServer>& servers, const FleetSnapshot& snapshot,
                            std::map<std::string, OperatorRecord>& operators) {
    for (const LocalServer& server : servers) {
        const auto found = snapshot.operators.find(server.address.text);
        if (found == snapshot.operators.end()) continue;
        const OperatorRecord& record = found->second;
        if (record.op != OperatorRecord::Op::drain || record.mover.empty() || snapshot.hosts.count(record.mover))
            continue;
        // Its mover's lease is gone (its daemon stopped or lost etcd): every
        // host races this transaction on the record's mod_revision; one wins
        // and moves the keys that are left.
        OperatorRecord next = record;
        next.mover = config_.host;
        next.mover_since_unix_ms = wall_ms();
        const std::string key = fleet_keys::operator_override(config_.name, server.address.text);
        const Result<EtcdTxnResult> txn = client_->txn_put(
            {EtcdCompare{
                key, EtcdCompare::Target::mod_revision, snapshot.operator_revisions.at(server.address.text), {}}},
            key, operator_json(next));
        if (!txn || !txn->succeeded) continue;  // another host won, or etcd failed: the next read says
        log_event("warning", "fleet_move",
                  {{"status", "taken_over"},
                   {"server", server.address.text},
                   {"from", record.mover},
                   {"host", config_.host}});
        operators[server.address.text] = std::move(next);
    }
}

bool Fleet::write_move_release(const std::string& server, int64_t mover_since_unix_ms) {
    const std::string key = fleet_keys::operator_override(config_.name, server);
    const Result<std::optional<EtcdKeyValue>> ops = read_key(key);
    if (!ops) return false;
    if (!*ops) return true;  // the override is over
    Result<OperatorRecord> record = parse_operator((*ops)->value);
    if (!record || record->mover != config_.host || record->mover_since_unix_ms != mover_since_unix_ms) return true;
    record->mover.clear();
    const Result<EtcdTxnResult> txn = client_->txn_put(
        {EtcdCompare{key, EtcdCompare::Target::mod_revision, (*ops)->mod_revision, {}}}, key, operator_json(*record));
    return txn && txn->succeeded;
}

Result<> Fleet::keep_lease(int64_t now, const std::vector<LocalServer>& servers) {
    const int64_t lease_ms = config_.lease.count();
    if (lease_id_ != 0 && lease_expired_.load() == lease_id_) {
        // Expired (keepalives went unanswered longer than the lease): our
        // key is gone with it, so it is written again under a new one.
        log_event("warning", "fleet_lease", {{"status", "expired"}, {"host", config_.host}});
        lease_id_ = 0;
        lease_to_keep_.store(0);
    }
    if (lease_id_ != 0) return {};
    const Result<EtcdLease> granted = client_->lease_grant(std::max<int64_t>(1, (lease_ms + 999) / 1000));
    if (!granted) return tl::unexpected(granted.error());
    lease_id_ = granted->id;
    lease_started_unix_ms_ = now;
    written_.reset();
    // The host's key says that its lease is alive: without it the lease is of no use.
    if (const Result<> put = write_observations(servers); !put) {
        (void)client_->lease_revoke(lease_id_);
        lease_id_ = 0;
        return put;
    }
    lease_to_keep_.store(lease_id_);
    log_event("info", "fleet_lease",
              {{"status", "granted"}, {"host", config_.host}, {"ttl_s", fmt::format("{}", granted->ttl_s)}});
    return {};
}

Result<> Fleet::write_observations(const std::vector<LocalServer>& servers) {
    std::map<std::string, FleetObservation> observations;
    for (const LocalServer& server : servers) observations[server.address.text] = server.observation;
    // On transitions only (a state, a restart, a server added or removed):
    // the error text and times of repeated failures are not news worth
    // rewriting every server's observation.
    const auto news = [](const FleetObservation& a, const FleetObservation& b) {
        return a.state != b.state || a.restarts != b.restarts;
    };
    if (written_ && std::ranges::equal(*written_, observations, [&](const auto& a, const auto& b) {
            return a.first == b.first && !news(a.second, b.second);
        }))
        return {};
    const HostRecord record{int64_t(getpid()), lease_started_unix_ms_, observations};
    if (const Result<int64_t> put =
            client_->put(fleet_keys::host(config_.name, config_.host), host_record_json(record), lease_id_);
        !put)
        return tl::unexpected(put.error());
    written_ = std::move(observations);
    return {};
}

std::optional<RejoinRecord> Fleet::step_rejoin(const ServerAddress& server, const FleetVerdict& verdict,
                                               const FleetSnapshot& snapshot) {
    const std::string key = fleet_keys::rejoin(config_.name, server.text);
    const auto found = snapshot.rejoins.find(server.text);
    std::optional<RejoinRecord> record;
    int64_t mod_revision = 0;  // 0: compares as "the key does not exist"
    if (found != snapshot.rejoins.end()) {
        record = found->second.first;
        mod_revision = found->second.second;
    }
    std::string etcd_error;  // why etcd failed the last write ("": it answered)
    const auto write = [&](RejoinRecord next, int64_t expected) -> std::optional<int64_t> {
        const Result<EtcdTxnResult> txn = client_->txn_put(
            {EtcdCompare{key, EtcdCompare::Target::mod_revision, expected, {}}}, key, rejoin_json(next));
        etcd_error = txn ? "" : txn.error().message;
        if (!txn || !txn->succeeded) return std::nullopt;
        return txn->revision;
    };
    const int64_t now = wall_ms();
    const bool done = !record || record->phase == RejoinRecord::Phase::done;
    const uint64_t epoch = record ? record->epoch : 0;
    if (done) {
        own_claims_.erase(server.text);
        claims_seen_.erase(server.text);
    }
    const auto unrecorded = unrecorded_dead_.find(server.text);
    if (unrecorded != unrecorded_dead_.end() && (!done || epoch > unrecorded->second))
        unrecorded_dead_.erase(unrecorded);  // the fleet has the outage's record now
    const bool held_dead = unrecorded_dead_.count(server.text) != 0;
    if ((verdict.kind == FleetVerdict::Kind::dead || held_dead) && done) {
        // The fleet's outage begins: whoever wins records it, at the next
        // epoch. A server this host already published dead is recorded too
        // when it is back, so that its return goes through the flush.
        RejoinRecord next{epoch + 1, RejoinRecord::Phase::dead, config_.host, now, false};
        if (write(next, mod_revision)) {
            unrecorded_dead_.erase(server.text);
            log_event("error", "fleet_dead",
                      {{"server", server.text}, {"epoch", fmt::format("{}", next.epoch)}, {"reason", verdict.reason}});
            return next;
        }
        // Lost the race (another host's record is newer: the next read shows
        // it), or etcd failed the write: either way, dead here until the
        // record is seen.
        if (unrecorded_dead_.emplace(server.text, epoch).second && !etcd_error.empty())
            log_event("warning", "fleet_dead",
                      {{"server", server.text},
                       {"status", "unrecorded"},
                       {"reason", etcd_error},
                       {"detail", "the outage's record was not written: held dead here until it is"}});
        return record;
    }
    if (verdict.kind != FleetVerdict::Kind::live || done) return record;
    // Held dead by the fleet and seen live again: one host flushes it, once
    // (docs/DESIGN.md, "Side effects once").
    const auto seen_now = std::chrono::steady_clock::now();
    auto seen = claims_seen_.find(server.text);
    if (seen == claims_seen_.end() || seen->second.first != mod_revision)
        seen = claims_seen_.insert_or_assign(server.text, std::pair{mod_revision, seen_now}).first;
    std::optional<OwnClaim> own;
    if (const auto it = own_claims_.find(server.text); it != own_claims_.end()) {
        if (it->second.mod_revision < mod_revision)
            own_claims_.erase(it);  // written over since: not ours any more
        else
            own = it->second;
    }
    // Our flushed claim recorded done: the end of this rejoin.
    const auto finish = [&](const RejoinRecord& claimed_record, int64_t claimed) {
        RejoinRecord finished{claimed_record.epoch, RejoinRecord::Phase::done, config_.host, wall_ms(),
                              flush_on_rejoin_};
        if (!write(finished, claimed)) return claimed_record;  // tried again next cycle, without a flush
        own_claims_.erase(server.text);
        log_event("info", "fleet_rejoin",
                  {{"server", server.text},
                   {"status", "done"},
                   {"epoch", fmt::format("{}", finished.epoch)},
                   {"flushed", flush_on_rejoin_ ? "yes" : "no"}});
        return finished;
    };
    // Our claim not flushed, back to dead: the next cycle (here or on another host) tries again.
    const auto retract = [&](const RejoinRecord& claimed_record, int64_t claimed) {
        RejoinRecord back = claimed_record;
        back.phase = RejoinRecord::Phase::dead;
        back.host = config_.host;
        back.at_unix_ms = wall_ms();
        if (!write(back, claimed)) return claimed_record;
        own_claims_.erase(server.text);
        return back;
    };
    switch (rejoin_step(*record, mod_revision, own,
                        std::chrono::duration_cast<milliseconds>(seen_now - seen->second.second),
                        claim_takeover_after(kRequestTimeout, poll_interval_))) {
    case RejoinStep::wait: return record;
    case RejoinStep::record_done: return finish(*record, mod_revision);
    case RejoinStep::retract: return retract(*record, mod_revision);
    case RejoinStep::claim: break;
    }
    const RejoinRecord claim{record->epoch, RejoinRecord::Phase::flushing, config_.host, now, false};
    const auto claim_sent = std::chrono::steady_clock::now();
    const std::optional<int64_t> claimed = write(claim, mod_revision);
    if (!claimed) return record;  // another host won
    own_claims_[server.text] = OwnClaim{*claimed, false};
    // Read again just before the flush: a claim taken over (or answered so
    // late that it may be) is not flushed by this host.
    const Result<std::optional<EtcdKeyValue>> again = read_key(key);
    const std::optional<int64_t> revision_now =
        again && *again ? std::optional<int64_t>((*again)->mod_revision) : std::nullopt;
    if (!flush_may_be_sent(*claimed, revision_now,
                           std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - claim_sent),
                           kRequestTimeout)) {
        log_event("warning", "fleet_rejoin",
                  {{"server", server.text},
                   {"status", "not_flushed"},
                   {"reason", !again                     ? again.error().message
                              : revision_now != *claimed ? std::string("another host took the claim over")
                                                         : std::string("the claim was answered too late to flush: "
                                                                       "another host may take it over")}});
        return claim;
    }
    const Result<> flushed = flush_on_rejoin_ ? send_flush_all(server, kRequestTimeout) : Result<>{};
    if (!flushed) {
        log_event("error", "fleet_rejoin",
                  {{"server", server.text}, {"status", "flush_failed"}, {"reason", flushed.error().message}});
        return retract(claim, *claimed);
    }
    own_claims_[server.text].flushed = true;
    return finish(claim, *claimed);
}

// The whole prefix costs etcd hosts x servers keys per poll, and at rest
// nothing under it changes (observations are written on transitions; lease
// keepalives are not writes). So a poll asks first for the store's revision
// (an index lookup), then, when any write happened, for the prefix's count
// and newest key (a sorted scan, a few hundred bytes), and only when that
// moved too for the whole prefix; the last two wait for the bound on full
// reads (kFullReadSpacing).
Result<Fleet::PrefixRead> Fleet::read_prefix(bool must_read) {
    const std::string prefix = fleet_keys::prefix(config_.name);
    if (last_snapshot_ && !must_read) {
        const Result<int64_t> store = client_->store_revision(prefix);
        if (!store) return tl::unexpected(store.error());
        if (*store == unchanged_at_revision_) return PrefixRead{&*last_snapshot_, true};
        if (std::chrono::steady_clock::now() < next_full_read_) return PrefixRead{&*last_snapshot_, false};
        const Result<std::pair<EtcdPrefixVersion, int64_t>> version = client_->prefix_version(prefix);
        if (!version) return tl::unexpected(version.error());
        if (version->first == last_version_) {
            unchanged_at_revision_ = version->second;
            last_snapshot_->revision = version->second;  // the same keys, judged at this revision
            return PrefixRead{&*last_snapshot_, true};
        }
    }
    const auto started = std::chrono::steady_clock::now();
    const Result<EtcdRange> range = client_->range_prefix(prefix, 0, full_read_timeout(config_.lease));
    const auto latency = std::chrono::steady_clock::now() - started;
    const double spread = std::uniform_real_distribution<double>(1.0, 2.0)(jitter_);
    using Duration = std::chrono::steady_clock::duration;
    // A read that k times over still fits in a poll costs a small fleet
    // nothing to repeat at the next poll: the bound is for reads that do not.
    const Duration spacing = latency * kFullReadSpacing < poll_interval_
                                 ? Duration::zero()
                                 : std::chrono::duration_cast<Duration>(latency * (kFullReadSpacing * spread));
    next_full_read_ = started + std::min<Duration>(spacing, config_.lease);
    if (!range) return tl::unexpected(range.error());
    last_version_ = prefix_version_of(*range);
    last_snapshot_ = read_snapshot(config_.name, *range);
    // Each key no host can read, once while it stays so: it counts for
    // nobody (a host whose record is bad is silent), which the log says.
    std::set<std::string> unreadable(last_snapshot_->unreadable.begin(), last_snapshot_->unreadable.end());
    for (const std::string& key : unreadable)
        if (!unreadable_logged_.count(key))
            log_event("warning", "fleet_key", {{"status", "unreadable"}, {"reason", key}});
    unreadable_logged_ = std::move(unreadable);
    unchanged_at_revision_ = range->revision;
    return PrefixRead{&*last_snapshot_, true};
}

void Fleet::cycle(bool operators_written) {
    std::vector<LocalServer> servers;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        servers = local_;
    }
    const int64_t now = wall_ms();
    FleetView view;
    view.last_answer_unix_ms = last_answer_ms_;
    Result<PrefixRead> read = tl::unexpected(Error{});
    if (const Result<> lease = keep_lease(now, servers); !lease) {
        read = tl::unexpected(lease.error());
    } else {
        // A failed write is tried again next cycle (written_ still differs).
        (void)write_observations(servers);
        // A command's answer comes with a view read after it was written.
        read = read_prefix(operators_written);
    }
    if (!read) {
        view.error = read.error().message;
        if (etcd_was_answering_)
            log_event("error", "fleet_etcd",
                      {{"status", "unreachable"}, {"endpoint", client_->endpoint()}, {"reason", view.error}});
        etcd_was_answering_ = false;
        post(std::move(view));
        return;
    }
    if (!etcd_was_answering_)
        log_event("info", "fleet_etcd", {{"status", "answering"}, {"endpoint", client_->endpoint()}});
    etcd_was_answering_ = true;
    last_answer_ms_ = now;
    if (!read->current) {
        // A change waits for its full read: the verdicts last read stand, with
        // the revision they were read at (never shown as the latest).
        FleetView stale = last_view_;
        stale.last_answer_unix_ms = now;
        post(std::move(stale));
        return;
    }
    view.etcd_answers = true;
    view.last_answer_unix_ms = now;
    const FleetSnapshot& snapshot = *read->snapshot;
    view.revision = snapshot.revision;
    view.operators = snapshot.operators;
    take_over_moves(servers, snapshot, view.operators);
    for (const LocalServer& server : servers) {
        if (server.dead_alone_since_unix_ms != 0 &&
            dead_alone_taken_[server.address.text] != server.dead_alone_since_unix_ms) {
            // Published dead here on local evidence alone: held dead like an
            // outage whose record was never written, at the epoch etcd holds now.
            const auto found = snapshot.rejoins.find(server.address.text);
            unrecorded_dead_.emplace(server.address.text,
                                     found == snapshot.rejoins.end() ? 0 : found->second.first.epoch);
            dead_alone_taken_[server.address.text] = server.dead_alone_since_unix_ms;
            log_event("warning", "fleet_dead",
                      {{"server", server.address.text},
                       {"status", "fallback"},
                       {"detail",
                        "published dead here while etcd was out of reach: held dead until the fleet "
                        "records and flushes its return"}});
        }
        const auto observed = snapshot.observations.find(server.address.text);
        const FleetVerdict verdict = fleet_verdict(
            observed == snapshot.observations.end() ? std::map<std::string, FleetObservation>{} : observed->second,
            snapshot.hosts, config_.verdict, outage_recorded(snapshot, server.address.text));
        const std::optional<RejoinRecord> record = step_rejoin(server.address, verdict, snapshot);
        view.published[server.address.text] =
            unrecorded_dead_.count(server.address.text) ? FleetVerdict::Kind::dead : published_verdict(verdict, record);
    }
    view.dead_alone_taken = dead_alone_taken_;
    last_view_ = view;
    post(std::move(view));
}

Result<> send_flush_all(const ServerAddress& server, milliseconds timeout) {
    SocketAddress address;
    if (server.is_unix) {
        if (!ServerAddress::unix_socket_address(server.host, address))
            return failure(fmt::format("{}: bad socket path", server.text));
    } else if (!ServerAddress::numeric_socket_address(server.host, server.port, address)) {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        const std::string port = fmt::format("{}", server.port);
        if (const int rc = getaddrinfo(server.host.c_str(), port.c_str(), &hints, &found); rc != 0)
            return failure(fmt::format("{}: {}", server.text, gai_strerror(rc)));
        std::memcpy(&address.storage, found->ai_addr, found->ai_addrlen);
        address.length = found->ai_addrlen;
        freeaddrinfo(found);
    }
    UniqueFd fd(socket(address.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return failure(fmt::format("{}: socket: {}", server.text, errno_text(errno)));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const auto wait_for = [&](short events) -> Result<> {
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd p{fd.get(), events, 0};
        const int rc = left.count() > 0 ? poll(&p, 1, int(left.count())) : 0;
        if (rc <= 0) return failure(fmt::format("{}: flush_all: no answer within {}ms", server.text, timeout.count()));
        return {};
    };
    if (connect(fd.get(), address.get(), address.length) != 0) {
        if (errno != EINPROGRESS) return failure(fmt::format("{}: connect: {}", server.text, errno_text(errno)));
        if (Result<> ready = wait_for(POLLOUT); !ready) return ready;
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
        if (error != 0) return failure(fmt::format("{}: connect: {}", server.text, errno_text(error)));
    }
    constexpr std::string_view request = "flush_all\r\n";
    if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size()))
        return failure(fmt::format("{}: flush_all: send: {}", server.text, errno_text(errno)));
    std::string answer;
    while (answer.find("\r\n") == std::string::npos && answer.size() < 1024) {
        if (Result<> ready = wait_for(POLLIN); !ready) return ready;
        char buffer[256];
        const ssize_t got = recv(fd.get(), buffer, sizeof buffer, 0);
        if (got <= 0) return failure(fmt::format("{}: flush_all: connection closed", server.text));
        answer.append(buffer, size_t(got));
    }
    if (answer.rfind("OK\r\n", 0) != 0)
        return failure(fmt::format("{}: flush_all answered '{}'", server.text, answer.substr(0, answer.find('\r'))));
    return {};
}

}  // namespace mcwatch
