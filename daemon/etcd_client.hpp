// A small client of etcd v3's JSON gateway (http://host:port/v3/...) over
// libcurl, for the fleet view (docs/DESIGN.md, "The fleet view"): mcwatchd's
// fleet thread and `mcctl fleet` each hold one. Keys and values are bytes,
// base64 in the JSON; int64 fields arrive as JSON strings; fields at their
// zero value are left out (a failed txn has no "succeeded", an expired
// lease's keepalive no "TTL").
//
// Not thread-safe: one client per thread. Nothing here is global except
// curl_global_init, done once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace mcwatch {

struct EtcdKeyValue {
    std::string key;
    std::string value;
    int64_t create_revision = 0;
    int64_t mod_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
};

// A range's keys, all read at one revision of the store.
struct EtcdRange {
    int64_t revision = 0;
    std::vector<EtcdKeyValue> kvs;
};

// What changes whenever anything under a prefix does: how many keys it
// holds and the newest key's mod_revision (a put raises the latter, a
// delete lowers the count, and a delete plus a put raises the latter too).
struct EtcdPrefixVersion {
    int64_t count = 0;
    int64_t latest_mod_revision = 0;
    bool operator==(const EtcdPrefixVersion&) const = default;
};
EtcdPrefixVersion prefix_version_of(const EtcdRange& range);

struct EtcdLease {
    int64_t id = 0;
    int64_t ttl_s = 0;  // 0 from a keepalive: the lease has expired (or never was)
};

// One condition of a transaction: the key's mod_revision (0: the key does
// not exist) or its value equals the one given.
struct EtcdCompare {
    enum class Target : uint8_t { mod_revision, value };
    std::string key;
    Target target = Target::mod_revision;
    int64_t mod_revision = 0;
    std::string value;
};

// One operation of a transaction's success branch: put key = value (with
// `lease`, 0 for none) or delete the key.
struct EtcdOp {
    enum class Kind : uint8_t { put, del };
    Kind kind = Kind::put;
    std::string key;
    std::string value;
    int64_t lease = 0;
};

struct EtcdTxnResult {
    int64_t revision = 0;
    bool succeeded = false;
};

// The JSON of each request and the reading of each answer, as pure
// functions (tests/unit/test_etcd_client.cpp).
namespace etcd_json {

std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);
// The range_end that makes a range cover every key starting with `prefix`.
std::string prefix_end(std::string_view prefix);

std::string range_request(std::string_view key, std::string_view range_end, int64_t revision);
std::string put_request(std::string_view key, std::string_view value, int64_t lease);
// If every compare holds, puts key = value (with `lease`, 0 for none).
std::string txn_request(const std::vector<EtcdCompare>& compares, std::string_view key, std::string_view value,
                        int64_t lease);
// If every compare holds, does each of `success` in order.
std::string txn_request(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success);
// The prefix's key count and its newest key (keys only, one key): a few
// hundred bytes however many keys the prefix holds.
std::string prefix_version_request(std::string_view prefix);
// A count of the one key `key` (no value sent): its answer's header carries
// the store's revision, which any write anywhere in etcd raises. An index
// lookup for etcd, where prefix_version_request sorts the whole prefix.
std::string store_revision_request(std::string_view key);
std::string lease_grant_request(int64_t ttl_s);
std::string lease_id_request(int64_t id);

// The error etcd answered ({"error": ...}) as a failure, else the header's revision.
Result<int64_t> parse_revision(std::string_view body);
Result<EtcdRange> parse_range(std::string_view body);
// The answer to prefix_version_request, and the header's revision.
Result<std::pair<EtcdPrefixVersion, int64_t>> parse_prefix_version(std::string_view body);
Result<EtcdTxnResult> parse_txn(std::string_view body);
Result<EtcdLease> parse_lease_grant(std::string_view body);
// The keepalive answer is one message of a stream: {"result": {...}}.
Result<EtcdLease> parse_keepalive(std::string_view body);

}  // namespace etcd_json

class EtcdClient {
public:
    // `endpoints`: "http://host:port", tried in order from the last one that
    // answered; the next is tried when one cannot be reached. Every request
    // gives up after `timeout`.
    static Result<std::unique_ptr<EtcdClient>> create(std::vector<std::string> endpoints,
                                                      std::chrono::milliseconds timeout);
    ~EtcdClient();
    EtcdClient(const EtcdClient&) = delete;
    EtcdClient& operator=(const EtcdClient&) = delete;

    // Every key starting with `prefix`, at `revision` (0: the latest), within
    // `timeout` (0: the client's).
    Result<EtcdRange> range_prefix(std::string_view prefix, int64_t revision = 0,
                                   std::chrono::milliseconds timeout = {});
    // The store's revision (etcd_json::store_revision_request), cheaply.
    Result<int64_t> store_revision(std::string_view key);
    // The prefix's EtcdPrefixVersion and the header's revision, cheaply.
    Result<std::pair<EtcdPrefixVersion, int64_t>> prefix_version(std::string_view prefix);
    // The header's revision after the write.
    Result<int64_t> put(std::string_view key, std::string_view value, int64_t lease = 0);
    Result<EtcdTxnResult> txn_put(const std::vector<EtcdCompare>& compares, std::string_view key,
                                  std::string_view value, int64_t lease = 0);
    Result<EtcdTxnResult> txn(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success);
    Result<EtcdLease> lease_grant(int64_t ttl_s);
    Result<EtcdLease> lease_keepalive(int64_t id);
    Result<> lease_revoke(int64_t id);

    // The endpoint that answered last (or will be tried first).
    const std::string& endpoint() const { return endpoints_[current_]; }

private:
    EtcdClient(std::vector<std::string> endpoints, std::chrono::milliseconds timeout, void* curl);
    // POSTs `body` to `path` ("/v3/kv/range") and returns the answer's body;
    // a failure when no endpoint could be reached, naming each one's error.
    // Each endpoint gets `timeout` (0: the client's).
    Result<std::string> post(std::string_view path, const std::string& body, std::chrono::milliseconds timeout = {});

    std::vector<std::string> endpoints_;
    size_t current_ = 0;
    std::chrono::milliseconds timeout_;
    void* curl_;  // CURL*, reused: keeps the connection open between requests
};

}  // namespace mcwatch
