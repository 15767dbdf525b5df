#include <doctest/doctest.h>

#include "daemon/etcd_client.hpp"

namespace json = mcwatch::etcd_json;
using mcwatch::EtcdCompare;
using mcwatch::EtcdKeyValue;
using mcwatch::EtcdPrefixVersion;
using mcwatch::EtcdRange;
using mcwatch::prefix_version_of;

TEST_CASE("etcd json: base64 both ways, padding included") {
    CHECK(json::base64_encode("") == "");
    CHECK(json::base64_encode("f") == "Zg==");
    CHECK(json::base64_encode("fo") == "Zm8=");
    CHECK(json::base64_encode("foo") == "Zm9v");
    CHECK(json::base64_encode(std::string("\xff\x00\x01", 3)) == "/wAB");
    for (const std::string text : {"", "f", "fo", "foo", "/mcwatch/default/obs/127.0.0.1:11211/h1"})
        CHECK(json::base64_decode(json::base64_encode(text)).value() == text);
    CHECK_FALSE(json::base64_decode("Zm9"));
    CHECK_FALSE(json::base64_decode("Zm=v"));
    CHECK_FALSE(json::base64_decode("Z!9v"));
}

TEST_CASE("etcd json: a prefix's range end is its last byte plus one") {
    CHECK(json::prefix_end("/mcwatch/a/") == "/mcwatch/a0");
    CHECK(json::prefix_end("a\xff") == "b");
    CHECK(json::prefix_end("") == std::string(1, '\0'));
}

TEST_CASE("etcd json: requests as the v3 gateway reads them") {
    CHECK(json::range_request("foo", "fop", 0) == R"({"key":"Zm9v","range_end":"Zm9w"})");
    CHECK(json::range_request("foo", "", 7) == R"({"key":"Zm9v","revision":"7"})");
    CHECK(json::put_request("foo", "bar", 0) == R"({"key":"Zm9v","value":"YmFy"})");
    CHECK(json::put_request("foo", "bar", 42) == R"({"key":"Zm9v","lease":"42","value":"YmFy"})");
    CHECK(json::txn_request({EtcdCompare{"foo", EtcdCompare::Target::mod_revision, 0, ""}}, "foo", "bar", 0) ==
          R"({"compare":[{"key":"Zm9v","mod_revision":"0","result":"EQUAL","target":"MOD"}],)"
          R"("success":[{"request_put":{"key":"Zm9v","value":"YmFy"}}]})");
    CHECK(json::txn_request({EtcdCompare{"foo", EtcdCompare::Target::value, 0, "x"}}, "foo", "bar", 0) ==
          R"({"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"eA=="}],)"
          R"("success":[{"request_put":{"key":"Zm9v","value":"YmFy"}}]})");
    CHECK(json::txn_request({EtcdCompare{"foo", EtcdCompare::Target::mod_revision, 5, ""}},
                            {mcwatch::EtcdOp{mcwatch::EtcdOp::Kind::put, "foo", "bar", 0},
                             mcwatch::EtcdOp{mcwatch::EtcdOp::Kind::del, "baz", "", 0}}) ==
          R"({"compare":[{"key":"Zm9v","mod_revision":"5","result":"EQUAL","target":"MOD"}],)"
          R"("success":[{"request_put":{"key":"Zm9v","value":"YmFy"}},{"request_delete_range":{"key":"YmF6"}}]})");
    CHECK(
        json::prefix_version_request("/p/") ==
        R"({"key":"L3Av","keys_only":true,"limit":"1","range_end":"L3Aw","sort_order":"DESCEND","sort_target":"MOD"})");
    // One key, counted: etcd answers from its index, whatever the prefix holds.
    CHECK(json::store_revision_request("/p/") == R"({"count_only":true,"key":"L3Av"})");
    CHECK(json::lease_grant_request(10) == R"({"TTL":"10"})");
    CHECK(json::lease_id_request(7) == R"({"ID":"7"})");
}

// The answers below are etcd 3.4.23's, as curl showed them.
TEST_CASE("etcd json: a range's keys, with int64 fields as strings") {
    const auto range = json::parse_range(
        R"({"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},)"
        R"("kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmFy","lease":"99"}],"count":"1"})");
    REQUIRE(range);
    CHECK(range->revision == 4);
    REQUIRE(range->kvs.size() == 1);
    CHECK(range->kvs[0].key == "foo");
    CHECK(range->kvs[0].value == "bar");
    CHECK(range->kvs[0].mod_revision == 3);
    CHECK(range->kvs[0].lease == 99);
    const auto empty = json::parse_range(R"({"header":{"revision":"3"}})");
    REQUIRE(empty);
    CHECK(empty->kvs.empty());
}

TEST_CASE("etcd json: a failed txn leaves out succeeded") {
    CHECK(json::parse_txn(R"({"header":{"revision":"3"},"succeeded":true,"responses":[]})")->succeeded);
    CHECK_FALSE(json::parse_txn(R"({"header":{"revision":"3"}})")->succeeded);
}

TEST_CASE("etcd json: leases granted, kept alive, expired") {
    const auto granted = json::parse_lease_grant(R"({"header":{"revision":"1"},"ID":"4111120385839469830","TTL":"5"})");
    REQUIRE(granted);
    CHECK(granted->id == 4111120385839469830);
    CHECK(granted->ttl_s == 5);
    const auto kept =
        json::parse_keepalive("{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"42\",\"TTL\":\"5\"}}\n");
    REQUIRE(kept);
    CHECK(kept->ttl_s == 5);
    // An expired lease's keepalive has no TTL.
    const auto expired = json::parse_keepalive("{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"42\"}}\n");
    REQUIRE(expired);
    CHECK(expired->ttl_s == 0);
}

TEST_CASE("etcd json: etcd's errors and garbage become errors that say so") {
    const auto error = json::parse_revision(
        R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})");
    REQUIRE_FALSE(error);
    CHECK(error.error().message == "etcd answered: etcdserver: requested lease not found");
    CHECK_FALSE(json::parse_range("<html>"));
    CHECK_FALSE(json::parse_range(R"({"header":{"revision":"x"}})"));
    CHECK_FALSE(json::parse_range(R"({"header":{"revision":"1"},"kvs":[{"key":"!!"}]})"));
}

// etcd 3.4.23's answers to prefix_version_request: three keys under /p/, /p/a
// put again last; and a prefix with no keys.
TEST_CASE("etcd json: a prefix's version is its key count and its newest key's mod_revision") {
    const auto version = json::parse_prefix_version(
        R"({"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},)"
        R"("kvs":[{"key":"L3AvYQ==","create_revision":"2","mod_revision":"5","version":"2"}],"more":true,"count":"3"})");
    REQUIRE(version);
    CHECK(version->first == EtcdPrefixVersion{3, 5});
    CHECK(version->second == 5);
    const auto none = json::parse_prefix_version(R"({"header":{"revision":"5"}})");
    REQUIRE(none);
    CHECK(none->first == EtcdPrefixVersion{0, 0});
    // The same figures from a full read of the prefix, so the two compare.
    EtcdRange range;
    range.kvs = {EtcdKeyValue{"/p/a", "w", 2, 5, 2, 0}, EtcdKeyValue{"/p/b", "v", 3, 3, 1, 0},
                 EtcdKeyValue{"/p/c", "v", 4, 4, 1, 0}};
    CHECK(prefix_version_of(range) == EtcdPrefixVersion{3, 5});
    CHECK(prefix_version_of(EtcdRange{}) == EtcdPrefixVersion{0, 0});
}
