#include "daemon/etcd_client.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <charconv>
#include <mutex>
#include <nlohmann/json.hpp>

namespace mcwatch {

using json = nlohmann::json;

namespace etcd_json {

namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
    const size_t at = kAlphabet.find(c);
    return at == std::string_view::npos ? -1 : int(at);
}

// protobuf's JSON mapping writes int64 as a string; numbers are accepted too.
Result<int64_t> int64_field(const json& object, const char* name) {
    const auto it = object.find(name);
    if (it == object.end() || it->is_null()) return 0;
    if (it->is_number_integer()) return it->get<int64_t>();
    if (!it->is_string()) return failure(fmt::format("field {} is neither a number nor a string", name));
    const std::string& text = it->get_ref<const std::string&>();
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size())
        return failure(fmt::format("field {} = '{}' is not a whole number", name, text));
    return value;
}

Result<std::string> bytes_field(const json& object, const char* name) {
    const auto it = object.find(name);
    if (it == object.end() || it->is_null()) return std::string();
    if (!it->is_string()) return failure(fmt::format("field {} is not a base64 string", name));
    return base64_decode(it->get_ref<const std::string&>());
}

// The answer as an object; etcd's error ({"error": "...", "code": N}) as a failure.
Result<json> parse_answer(std::string_view body) {
    json answer = json::parse(body.begin(), body.end(), nullptr, false);
    if (answer.is_discarded() || !answer.is_object())
        return failure(fmt::format("not a JSON object: '{}'", body.substr(0, 200)));
    if (const auto error = answer.find("error"); error != answer.end()) {
        if (error->is_string()) return failure(fmt::format("etcd answered: {}", error->get<std::string>()));
        return failure(fmt::format("etcd answered: {}", error->dump()));
    }
    return answer;
}

Result<int64_t> header_revision(const json& answer) {
    const auto header = answer.find("header");
    if (header == answer.end() || !header->is_object()) return failure("the answer has no header");
    return int64_field(*header, "revision");
}

Result<EtcdLease> lease_of(const json& object) {
    EtcdLease lease;
    const Result<int64_t> id = int64_field(object, "ID");
    if (!id) return tl::unexpected(id.error());
    const Result<int64_t> ttl = int64_field(object, "TTL");
    if (!ttl) return tl::unexpected(ttl.error());
    lease.id = *id;
    lease.ttl_s = *ttl;
    return lease;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const uint32_t n =
            uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
        for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(n >> shift) & 63];
    }
    if (const size_t left = bytes.size() - i; left > 0) {
        uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
        if (left == 2) n |= uint32_t(uint8_t(bytes[i + 1])) << 8;
        out += kAlphabet[(n >> 18) & 63];
        out += kAlphabet[(n >> 12) & 63];
        out += left == 2 ? kAlphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

Result<std::string> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return failure(fmt::format("'{}' is not base64 (length {})", text, text.size()));
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int padding = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = text[i + k];
            const bool last_group = i + 4 == text.size();
            if (c == '=' && last_group && k >= 2 && (k == 3 || text[i + 3] == '=')) {
                v[k] = 0;
                ++padding;
                continue;
            }
            v[k] = base64_value(c);
            if (v[k] < 0 || padding > 0) return failure(fmt::format("'{}' is not base64", text));
        }
        const uint32_t n = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | uint32_t(v[3]);
        out += char((n >> 16) & 0xff);
        if (padding < 2) out += char((n >> 8) & 0xff);
        if (padding < 1) out += char(n & 0xff);
    }
    return out;
}

std::string prefix_end(std::string_view prefix) {
    std::string end(prefix);
    // The first key after every key that starts with prefix: its last byte
    // that can be incremented, incremented, and what follows dropped.
    while (!end.empty()) {
        if (uint8_t(end.back()) < 0xff) {
            end.back() = char(uint8_t(end.back()) + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');  // every key (etcd's convention)
}

std::string range_request(std::string_view key, std::string_view range_end, int64_t revision) {
    json request = {{"key", base64_encode(key)}};
    if (!range_end.empty()) request["range_end"] = base64_encode(range_end);
    if (revision > 0) request["revision"] = std::to_string(revision);
    return request.dump();
}

std::string prefix_version_request(std::string_view prefix) {
    return json{{"key", base64_encode(prefix)},
                {"range_end", base64_encode(prefix_end(prefix))},
                {"limit", "1"},
                {"sort_order", "DESCEND"},
                {"sort_target", "MOD"},
                {"keys_only", true}}
        .dump();
}

std::string store_revision_request(std::string_view key) {
    return json{{"key", base64_encode(key)}, {"count_only", true}}.dump();
}

std::string put_request(std::string_view key, std::string_view value, int64_t lease) {
    json request = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
    if (lease != 0) request["lease"] = std::to_string(lease);
    return request.dump();
}

std::string txn_request(const std::vector<EtcdCompare>& compares, std::string_view key, std::string_view value,
                        int64_t lease) {
    return txn_request(compares, {EtcdOp{EtcdOp::Kind::put, std::string(key), std::string(value), lease}});
}

std::string txn_request(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success) {
    json conditions = json::array();
    for (const EtcdCompare& compare : compares) {
        json condition = {{"result", "EQUAL"}, {"key", base64_encode(compare.key)}};
        if (compare.target == EtcdCompare::Target::mod_revision) {
            condition["target"] = "MOD";
            condition["mod_revision"] = std::to_string(compare.mod_revision);
        } else {
            condition["target"] = "VALUE";
            condition["value"] = base64_encode(compare.value);
        }
        conditions.push_back(std::move(condition));
    }
    json operations = json::array();
    for (const EtcdOp& op : success) {
        if (op.kind == EtcdOp::Kind::del) {
            operations.push_back(json{{"request_delete_range", {{"key", base64_encode(op.key)}}}});
            continue;
        }
        json put = {{"key", base64_encode(op.key)}, {"value", base64_encode(op.value)}};
        if (op.lease != 0) put["lease"] = std::to_string(op.lease);
        operations.push_back(json{{"request_put", std::move(put)}});
    }
    return json{{"compare", std::move(conditions)}, {"success", std::move(operations)}}.dump();
}

std::string lease_grant_request(int64_t ttl_s) { return json{{"TTL", std::to_string(ttl_s)}}.dump(); }

std::string lease_id_request(int64_t id) { return json{{"ID", std::to_string(id)}}.dump(); }

Result<int64_t> parse_revision(std::string_view body) {
    const Result<json> answer = parse_answer(body);
    if (!answer) return tl::unexpected(answer.error());
    return header_revision(*answer);
}

Result<std::pair<EtcdPrefixVersion, int64_t>> parse_prefix_version(std::string_view body) {
    const Result<json> answer = parse_answer(body);
    if (!answer) return tl::unexpected(answer.error());
    const Result<int64_t> revision = header_revision(*answer);
    if (!revision) return tl::unexpected(revision.error());
    EtcdPrefixVersion version;
    const Result<int64_t> count = int64_field(*answer, "count");  // absent when 0
    if (!count) return tl::unexpected(count.error());
    version.count = *count;
    if (const auto kvs = answer->find("kvs"); kvs != answer->end()) {
        if (!kvs->is_array()) return failure("kvs is not an array");
        if (!kvs->empty()) {
            if (!kvs->front().is_object()) return failure("an entry of kvs is not an object");
            const Result<int64_t> latest = int64_field(kvs->front(), "mod_revision");
            if (!latest) return tl::unexpected(latest.error());
            version.latest_mod_revision = *latest;
        }
    }
    return std::pair{version, *revision};
}

Result<EtcdRange> parse_range(std::string_view body) {
    const Result<json> answer = parse_answer(body);
    if (!answer) return tl::unexpected(answer.error());
    EtcdRange range;
    const Result<int64_t> revision = header_revision(*answer);
    if (!revision) return tl::unexpected(revision.error());
    range.revision = *revision;
    const auto kvs = answer->find("kvs");
    if (kvs == answer->end()) return range;
    if (!kvs->is_array()) return failure("kvs is not an array");
    for (const json& entry : *kvs) {
        if (!entry.is_object()) return failure("an entry of kvs is not an object");
        EtcdKeyValue kv;
        Result<std::string> key = bytes_field(entry, "key");
        if (!key) return tl::unexpected(key.error());
        Result<std::string> value = bytes_field(entry, "value");
        if (!value) return tl::unexpected(value.error());
        kv.key = std::move(*key);
        kv.value = std::move(*value);
        const std::pair<const char*, int64_t*> numbers[] = {{"create_revision", &kv.create_revision},
                                                            {"mod_revision", &kv.mod_revision},
                                                            {"version", &kv.version},
                                                            {"lease", &kv.lease}};
        for (const auto& [name, field] : numbers) {
            const Result<int64_t> number = int64_field(entry, name);
            if (!number) return tl::unexpected(number.error());
            *field = *number;
        }
        range.kvs.push_back(std::move(kv));
    }
    return range;
}

Result<EtcdTxnResult> parse_txn(std::string_view body) {
    const Result<json> answer = parse_answer(body);
    if (!answer) return tl::unexpected(answer.error());
    const Result<int64_t> revision = header_revision(*answer);
    if (!revision) return tl::unexpected(revision.error());
    const auto succeeded = answer->find("succeeded");
    return EtcdTxnResult{*revision, succeeded != answer->end() && succeeded->is_boolean() && succeeded->get<bool>()};
}

Result<EtcdLease> parse_lease_grant(std::string_view body) {
    const Result<json> answer = parse_answer(body);
    if (!answer) return tl::unexpected(answer.error());
    Result<EtcdLease> lease = lease_of(*answer);
    if (lease && (lease->id == 0 || lease->ttl_s <= 0)) return failure("etcd granted no lease");
    return lease;
}

Result<EtcdLease> parse_keepalive(std::string_view body) {
    // A stream of messages, one a line: the first is the answer.
    const size_t newline = body.find('\n');
    const Result<json> answer = parse_answer(body.substr(0, newline));
    if (!answer) return tl::unexpected(answer.error());
    const auto result = answer->find("result");
    if (result == answer->end() || !result->is_object()) return failure("the keepalive answer has no result");
    return lease_of(*result);
}

}  // namespace etcd_json

namespace {

size_t append_body(char* data, size_t size, size_t count, void* user) {
    static_cast<std::string*>(user)->append(data, size * count);
    return size * count;
}

// An error that another member may not have: try the next endpoint.
bool unreachable(CURLcode code) {
    return code == CURLE_COULDNT_CONNECT || code == CURLE_OPERATION_TIMEDOUT || code == CURLE_COULDNT_RESOLVE_HOST ||
           code == CURLE_GOT_NOTHING || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR;
}

}  // namespace

Result<std::unique_ptr<EtcdClient>> EtcdClient::create(std::vector<std::string> endpoints,
                                                       std::chrono::milliseconds timeout) {
    if (endpoints.empty()) return failure("no etcd endpoint given");
    static std::once_flag initialized;
    static CURLcode init_code = CURLE_OK;
    std::call_once(initialized, [] { init_code = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (init_code != CURLE_OK) return failure(fmt::format("libcurl: {}", curl_easy_strerror(init_code)));
    CURL* curl = curl_easy_init();
    if (!curl) return failure("libcurl: cannot create a handle");
    return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(endpoints), timeout, curl));
}

EtcdClient::EtcdClient(std::vector<std::string> endpoints, std::chrono::milliseconds timeout, void* curl)
    : endpoints_(std::move(endpoints)), timeout_(timeout), curl_(curl) {}

EtcdClient::~EtcdClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

Result<std::string> EtcdClient::post(std::string_view path, const std::string& body,
                                     std::chrono::milliseconds timeout) {
    CURL* curl = static_cast<CURL*>(curl_);
    if (timeout.count() <= 0) timeout = timeout_;
    std::string errors;
    for (size_t attempt = 0; attempt < endpoints_.size(); ++attempt) {
        const std::string& endpoint = endpoints_[current_];
        const std::string url = fmt::format("{}{}", endpoint, path);
        std::string answer;
        char error_text[CURL_ERROR_SIZE] = "";
        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, long(body.size()));
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_text);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, long(timeout.count()));
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, long(timeout.count()));
        // In a daemon's threads: no SIGALRM for timeouts.
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        // etcd is reached directly: an http_proxy in the environment is for
        // the host's other traffic.
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        const CURLcode code = curl_easy_perform(curl);
        if (code == CURLE_OK) return answer;
        errors += fmt::format("{}{}: {}", errors.empty() ? "" : "; ", endpoint,
                              error_text[0] ? error_text : curl_easy_strerror(code));
        if (!unreachable(code)) return failure(fmt::format("etcd {}", errors));
        current_ = (current_ + 1) % endpoints_.size();
    }
    return failure(fmt::format("etcd unreachable: {}", errors));
}

Result<EtcdRange> EtcdClient::range_prefix(std::string_view prefix, int64_t revision,
                                           std::chrono::milliseconds timeout) {
    const Result<std::string> body =
        post("/v3/kv/range", etcd_json::range_request(prefix, etcd_json::prefix_end(prefix), revision), timeout);
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_range(*body);
}

Result<int64_t> EtcdClient::store_revision(std::string_view key) {
    const Result<std::string> body = post("/v3/kv/range", etcd_json::store_revision_request(key));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_revision(*body);
}

Result<std::pair<EtcdPrefixVersion, int64_t>> EtcdClient::prefix_version(std::string_view prefix) {
    const Result<std::string> body = post("/v3/kv/range", etcd_json::prefix_version_request(prefix));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_prefix_version(*body);
}

Result<int64_t> EtcdClient::put(std::string_view key, std::string_view value, int64_t lease) {
    const Result<std::string> body = post("/v3/kv/put", etcd_json::put_request(key, value, lease));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_revision(*body);
}

Result<EtcdTxnResult> EtcdClient::txn_put(const std::vector<EtcdCompare>& compares, std::string_view key,
                                          std::string_view value, int64_t lease) {
    const Result<std::string> body = post("/v3/kv/txn", etcd_json::txn_request(compares, key, value, lease));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_txn(*body);
}

Result<EtcdTxnResult> EtcdClient::txn(const std::vector<EtcdCompare>& compares, const std::vector<EtcdOp>& success) {
    const Result<std::string> body = post("/v3/kv/txn", etcd_json::txn_request(compares, success));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_txn(*body);
}

Result<EtcdLease> EtcdClient::lease_grant(int64_t ttl_s) {
    const Result<std::string> body = post("/v3/lease/grant", etcd_json::lease_grant_request(ttl_s));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_lease_grant(*body);
}

Result<EtcdLease> EtcdClient::lease_keepalive(int64_t id) {
    const Result<std::string> body = post("/v3/lease/keepalive", etcd_json::lease_id_request(id));
    if (!body) return tl::unexpected(body.error());
    return etcd_json::parse_keepalive(*body);
}

Result<> EtcdClient::lease_revoke(int64_t id) {
    const Result<std::string> body = post("/v3/lease/revoke", etcd_json::lease_id_request(id));
    if (!body) return tl::unexpected(body.error());
    const Result<int64_t> revision = etcd_json::parse_revision(*body);
    if (!revision) return tl::unexpected(revision.error());
    return {};
}

EtcdPrefixVersion prefix_version_of(const EtcdRange& range) {
    EtcdPrefixVersion version;
    version.count = int64_t(range.kvs.size());
    for (const EtcdKeyValue& kv : range.kvs)
        version.latest_mod_revision = std::max(version.latest_mod_revision, kv.mod_revision);
    return version;
}

}  // namespace mcwatch
