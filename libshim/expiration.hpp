// The expiration of a copy written away from its key's native server (a
// substitute's, while the native one is down or recently back): memcached's
// semantics, and the cap that keeps such a copy from outliving the outage.
#pragma once

#include <cstdint>

namespace mcwatch::route {

// memcached's expiration semantics: 0 never expires, 1..30 days are seconds
// from now, anything larger an absolute unix time, negative already expired.
inline constexpr int64_t kRelativeExpirationLimit = 60 * 60 * 24 * 30;

// `seconds` from `now_unix_s` as memcached reads an expiration: relative up
// to 30 days, else the absolute unix time.
int64_t encode_from_now(int64_t seconds, int64_t now_unix_s) noexcept;

// The expiration for a write to a substitute: no later than `window_s` from
// `now_unix_s`, and never later than what the caller asked. Returned in the
// form memcached reads right: relative when it fits in 30 days, else absolute.
// A window of 0 still caps at 1 second: a copy must not outlive the outage.
int64_t clamp_expiration(int64_t expiration, uint32_t window_s, int64_t now_unix_s) noexcept;

// Every copy's expiration under [routing] replica_max_ttl (`max_s`, 0 =
// none): clamp_expiration to `max_s` when there is a bound, else unchanged.
int64_t bound_expiration(int64_t expiration, uint32_t max_s, int64_t now_unix_s) noexcept;

}  // namespace mcwatch::route
