#include "libshim/expiration.hpp"

namespace mcwatch::route {

int64_t encode_from_now(int64_t seconds, int64_t now_unix_s) noexcept {
    return seconds <= kRelativeExpirationLimit ? seconds : now_unix_s + seconds;
}

int64_t clamp_expiration(int64_t expiration, uint32_t window_s, int64_t now_unix_s) noexcept {
    const int64_t window = window_s ? int64_t(window_s) : 1;
    if (expiration < 0) return expiration;  // already expired: nothing to cap
    if (expiration == 0) return encode_from_now(window, now_unix_s);
    if (expiration <= kRelativeExpirationLimit)
        return expiration <= window ? expiration : encode_from_now(window, now_unix_s);
    const int64_t remaining = expiration - now_unix_s;
    if (remaining <= window) return expiration;  // already within (or past: expired)
    return encode_from_now(window, now_unix_s);
}

int64_t bound_expiration(int64_t expiration, uint32_t max_s, int64_t now_unix_s) noexcept {
    return max_s ? clamp_expiration(expiration, max_s, now_unix_s) : expiration;
}

}  // namespace mcwatch::route
