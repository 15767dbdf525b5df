/* Routing keys with libmcshim's C API, using nothing but mcshim.h.
 *
 *   route_example                  self-check, no daemon needed: routes five
 *                                  keys over 10.0.0.1..3:11211 (ketama, md5)
 *                                  without a state file and compares with
 *                                  libmemcached 1.1.4's placement. Exit 0 if
 *                                  all agree.
 *   route_example STATE KEY...     routes KEYs over the servers recorded in
 *                                  the state file STATE, as a client would.
 */
#include <stdio.h>
#include <string.h>

#include "mcshim.h"

static const char* describe(const mcshim_t* shim, int32_t index) {
    const char* address = index >= 0 ? mcshim_server_address(shim, (size_t)index) : NULL;
    return address ? address : "-";
}

static int route_keys(mcshim_t* shim, int count, char** keys) {
    int failures = 0;
    for (int i = 0; i < count; ++i) {
        mcshim_route_t r;
        const int rc = mcshim_route(shim, keys[i], strlen(keys[i]), &r);
        if (rc != MCSHIM_OK) {
            printf("%s: %s\n", keys[i], mcshim_strerror(rc));
            ++failures;
            continue;
        }
        printf("%s: native %s, target %s", keys[i], describe(shim, r.native), describe(shim, r.target));
        if (r.flags & MCSHIM_ROUTE_SUBSTITUTE) printf(", substitute");
        if (r.flags & MCSHIM_ROUTE_DRAINING) printf(", native draining");
        if (r.flags & MCSHIM_ROUTE_RECENTLY_DOWN) printf(", recently down, fallback %s", describe(shim, r.fallback));
        if (r.flags & MCSHIM_ROUTE_STALE) printf(", no usable state: native");
        if (r.flags & MCSHIM_ROUTE_SUBSTITUTE)
            printf(", write expiration 0 -> %lld", (long long)mcshim_clamp_expiration(shim, 0));
        printf("\n");
    }
    return failures;
}

static int self_check(void) {
    static const char* servers[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3"};
    /* memcached_generate_hash's answers for the same list and settings. */
    static const struct {
        const char* key;
        int32_t server;
    } golden[] = {{"foo", 1}, {"bar", 2}, {"mcwatch", 1}, {"user:42", 2}, {"session/9f3a", 1}};
    mcshim_t* shim = mcshim_open("/nonexistent/mcwatch-route-example/state");
    if (!shim) {
        fprintf(stderr, "route_example: mcshim_open failed\n");
        return 1;
    }
    int rc = mcshim_set_servers(shim, servers, NULL, 3, mcshim_distribution_from_name("ketama"),
                                mcshim_hash_from_name("md5"));
    if (rc != MCSHIM_OK) {
        fprintf(stderr, "route_example: %s: %s\n", mcshim_strerror(rc), mcshim_last_error(shim));
        mcshim_close(shim);
        return 1;
    }
    int failures = 0;
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; ++i) {
        mcshim_route_t r;
        rc = mcshim_route(shim, golden[i].key, strlen(golden[i].key), &r);
        const int ok = rc == MCSHIM_OK && r.native == golden[i].server && r.target == golden[i].server &&
                       r.flags == MCSHIM_ROUTE_STALE;
        printf("%s %s -> %s\n", ok ? "ok  " : "FAIL", golden[i].key, describe(shim, r.target));
        failures += !ok;
    }
    mcshim_close(shim);
    printf("route_example: %s\n", failures ? "FAILED" : "all keys placed as libmemcached does");
    return failures ? 1 : 0;
}

int main(int argc, char** argv) {
    if (argc == 1) return self_check();
    if (argc < 3) {
        fprintf(stderr, "usage: route_example [STATE KEY...]\n");
        return 64;
    }
    mcshim_t* shim = mcshim_open(argv[1]);
    if (!shim) return 1;
    const int rc = mcshim_use_state_servers(shim);
    if (rc != MCSHIM_OK) {
        fprintf(stderr, "route_example: %s: %s\n", mcshim_strerror(rc), mcshim_last_error(shim));
        mcshim_close(shim);
        return 2;
    }
    const int failures = route_keys(shim, argc - 2, argv + 2);
    mcshim_close(shim);
    return failures ? 1 : 0;
}
