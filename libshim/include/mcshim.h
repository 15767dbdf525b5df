/* libmcshim's C API: where a memcached key goes, given mcwatchd's view of
 * the servers. For programs and other languages' bindings that do their own
 * I/O; programs built on libmemcached get the same routing from the preload
 * shim without code changes.
 *
 *   mcshim_t *shim = mcshim_open(NULL);            // $MCSHIM_STATE or /run/mcwatchd/state
 *   mcshim_use_state_servers(shim);                // or mcshim_set_servers(...)
 *   mcshim_route_t r;
 *   if (mcshim_route(shim, key, strlen(key), &r) == MCSHIM_OK)
 *       send_to(r.target);                         // an index into the server list
 *   mcshim_close(shim);
 *
 * Placement is libmemcached 1.1.4's, exactly (same server list, order,
 * distribution and hash), as long as every server is live; only the keys of
 * dead or draining servers move; a stale, missing or invalid state file
 * means native placement, flagged MCSHIM_ROUTE_STALE. Namespaces are the
 * caller's business: route the bytes the client hashes (with libmemcached's
 * HASH_WITH_PREFIX_KEY, the namespace followed by the key).
 *
 * Thread safety: mcshim_route, mcshim_clamp_expiration and the accessors may
 * be called from any number of threads at once; mcshim_set_servers,
 * mcshim_use_state_servers and mcshim_close must not run concurrently with
 * any other call on the same handle. No function throws, aborts or blocks
 * on the daemon; mcshim_route neither allocates nor locks on its fast path.
 */
#ifndef MCSHIM_H
#define MCSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every function is exported with default visibility (the library builds
 * with -fvisibility=hidden) and, seen from C++, is noexcept. */
#if defined(__GNUC__)
#define MCSHIM_API __attribute__((visibility("default")))
#else
#define MCSHIM_API
#endif
#ifdef __cplusplus
#define MCSHIM_NOEXCEPT noexcept
#else
#define MCSHIM_NOEXCEPT
#endif

typedef struct mcshim mcshim_t;

/* Distributions, as in mcwatchd's [routing] distribution. */
#define MCSHIM_MODULA 0          /* hash % count (MEMCACHED_DISTRIBUTION_MODULA) */
#define MCSHIM_KETAMA 1          /* MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA: weights ignored */
#define MCSHIM_KETAMA_WEIGHTED 2 /* MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED */

/* Hashes: the values of libmemcached's memcached_hash_t. Whether one is
 * available depends on libhashkit's build (Debian 12's has no hsieh). */
#define MCSHIM_HASH_DEFAULT 0 /* one_at_a_time */
#define MCSHIM_HASH_MD5 1
#define MCSHIM_HASH_CRC 2
#define MCSHIM_HASH_FNV1_64 3
#define MCSHIM_HASH_FNV1A_64 4
#define MCSHIM_HASH_FNV1_32 5
#define MCSHIM_HASH_FNV1A_32 6
#define MCSHIM_HASH_HSIEH 7
#define MCSHIM_HASH_MURMUR 8
#define MCSHIM_HASH_JENKINS 9
#define MCSHIM_HASH_MURMUR3 10

/* Return codes: 0 or negative. */
#define MCSHIM_OK 0
#define MCSHIM_E_INVALID (-1)    /* a NULL handle, NULL output, bad address, unknown value */
#define MCSHIM_E_NO_SERVERS (-2) /* no server list declared yet */
#define MCSHIM_E_ALL_DEAD (-3)   /* every server is dead or draining: fail the operation */
#define MCSHIM_E_NO_STATE (-4)   /* no readable state file to take the servers from */
#define MCSHIM_E_HASH (-5)       /* this libhashkit lacks the hash */
#define MCSHIM_E_NOMEM (-6)

/* mcshim_route_t.flags */
#define MCSHIM_ROUTE_SUBSTITUTE 0x01u /* native is dead or draining: target is its substitute */
#define MCSHIM_ROUTE_RECENTLY_DOWN \
    0x02u                           /* native came back within recently_down_window:
                                            on a miss there, try fallback (mcshim(3)) */
#define MCSHIM_ROUTE_ALL_DEAD 0x04u /* no server may take the key (MCSHIM_E_ALL_DEAD) */
#define MCSHIM_ROUTE_STALE 0x08u    /* no usable state file: native placement */
#define MCSHIM_ROUTE_DRAINING 0x10u /* native is draining: on a miss at target, look there */
#define MCSHIM_ROUTE_JOINED \
    0x40u /* the key's server changed with the latest membership change, within its \
             window: on a miss at target, try fallback (its server before) */

typedef struct mcshim_route {
    int32_t native;   /* libmemcached's server for the key; -1 when all dead */
    int32_t target;   /* where the key goes now; -1 when all dead */
    int32_t fallback; /* with MCSHIM_ROUTE_RECENTLY_DOWN: where the key lived while native
                         was down (-1 if no other server may take it); with
                         MCSHIM_ROUTE_JOINED: its server before the change; else -1 */
    uint32_t flags;   /* MCSHIM_ROUTE_* */
} mcshim_route_t;

/* Opens the state file (NULL: $MCSHIM_STATE, read with secure_getenv, else
 * /run/mcwatchd/state). A missing or invalid file is not an error: routing is
 * then native and the file is looked at again about once a second. With
 * MCSHIM_DEBUG set, changes of usability are reported on stderr, prefixed
 * "mcshim:". Returns NULL only when out of memory. */
MCSHIM_API mcshim_t* mcshim_open(const char* state_path) MCSHIM_NOEXCEPT;

/* Declares the caller's server list, in the client's order: "host:port",
 * "host" (port 11211), "[v6]:port", "unix:/path" or "/path", spelled as the
 * client spells them (libmemcached names ketama points after the host as
 * given). `weights` may be NULL (all 1). Servers are found in the state file
 * by address, as configured or resolved: localhost:11211 and 127.0.0.1:11211
 * agree (host names are resolved here, with getaddrinfo, which may block on
 * DNS). A server the file does not list takes its own keys and never another
 * server's: nothing says it is alive. */
MCSHIM_API int mcshim_set_servers(mcshim_t* shim, const char* const* addresses, const uint32_t* weights, size_t count,
                                  int distribution, int hash) MCSHIM_NOEXCEPT;

/* Takes the server list, distribution and hash mcwatchd was configured with
 * ([servers], [routing]), as recorded in the state file. */
MCSHIM_API int mcshim_use_state_servers(mcshim_t* shim) MCSHIM_NOEXCEPT;

MCSHIM_API size_t mcshim_server_count(const mcshim_t* shim) MCSHIM_NOEXCEPT;
/* Server `index`'s address as declared; NULL if out of range. Valid until
 * the list is declared again or the handle closed. */
MCSHIM_API const char* mcshim_server_address(const mcshim_t* shim, size_t index) MCSHIM_NOEXCEPT;

/* Routes one key. MCSHIM_OK, or MCSHIM_E_ALL_DEAD (out->flags has
 * MCSHIM_ROUTE_ALL_DEAD, native and target are -1; nothing was hashed),
 * MCSHIM_E_NO_SERVERS, MCSHIM_E_INVALID. */
MCSHIM_API int mcshim_route(mcshim_t* shim, const void* key, size_t key_length, mcshim_route_t* out) MCSHIM_NOEXCEPT;

/* The most copies of a key: [routing] replicas is 1 to 8. */
#define MCSHIM_MAX_COPIES 8

/* A key's copies ([routing] replicas; mcshim(3), "Replicas"): the first
 * servers of its order (its native server, then where it goes if the ones
 * before are dead) that may take keys, in order, into `out` (at most
 * `capacity` of them; MCSHIM_MAX_COPIES is always enough). Copy 0 is
 * mcshim_route's target; a program doing its own I/O stores on every copy
 * and reads the first. Returns how many (at least 1; 1 without a usable
 * state file or with replicas = 1), or MCSHIM_E_ALL_DEAD, MCSHIM_E_NO_SERVERS,
 * MCSHIM_E_INVALID. */
MCSHIM_API int mcshim_copies(mcshim_t* shim, const void* key, size_t key_length, int32_t* out,
                             size_t capacity) MCSHIM_NOEXCEPT;

/* The expiration to use for a write sent to a substitute (flags SUBSTITUTE):
 * capped at recently_down_window from now, in memcached's terms (0 = never,
 * up to 30 days = relative seconds, more = absolute unix time, negative =
 * already expired). The window is the state file's, or one hour without one. */
MCSHIM_API int64_t mcshim_clamp_expiration(mcshim_t* shim, int64_t expiration) MCSHIM_NOEXCEPT;

/* Expiration for writing a value found at the fallback back to the native
 * server (with add): writeback_ttl from the state file, 600 without one. */
MCSHIM_API uint32_t mcshim_writeback_ttl(mcshim_t* shim) MCSHIM_NOEXCEPT;

/* 1 when the state file is mapped, valid and fresh; 0 otherwise. */
MCSHIM_API int mcshim_state_usable(mcshim_t* shim) MCSHIM_NOEXCEPT;

/* A sentence about the last failed declaration on this handle, or why the
 * state file is not usable; "" if nothing to say. Valid until the next call
 * on the handle. */
MCSHIM_API const char* mcshim_last_error(mcshim_t* shim) MCSHIM_NOEXCEPT;

MCSHIM_API const char* mcshim_strerror(int code) MCSHIM_NOEXCEPT;

/* Names as in mcwatchd's config: "modula", "ketama", "ketama_weighted";
 * "one_at_a_time" (or "default"), "md5", "crc", "fnv1_64", "fnv1a_64",
 * "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins", "murmur3".
 * -1 for an unknown name. */
MCSHIM_API int mcshim_distribution_from_name(const char* name) MCSHIM_NOEXCEPT;
MCSHIM_API int mcshim_hash_from_name(const char* name) MCSHIM_NOEXCEPT;

MCSHIM_API void mcshim_close(mcshim_t* shim) MCSHIM_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* MCSHIM_H */
