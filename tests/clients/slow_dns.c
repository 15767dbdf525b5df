/* Preloaded after libmcshim.so in tests: getaddrinfo held while the file
 * named by $SLOW_DNS_HOLD exists, as a program sees its resolver when DNS
 * hangs (tests/integration/test_replicas.py). With $SLOW_DNS_THREADS_ONLY,
 * only in threads other than the main one: the shim's lookups, not the
 * program's own connections (tests/integration/test_shim_resolver.py).
 * Bounded: 10 minutes at most. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
    int (*real)(const char*, const char*, const struct addrinfo*, struct addrinfo**) =
        (int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**))dlsym(RTLD_NEXT, "getaddrinfo");
    const char* hold = getenv("SLOW_DNS_HOLD");
    if (getenv("SLOW_DNS_THREADS_ONLY") && gettid() == getpid()) hold = NULL;
    const struct timespec step = {0, 10 * 1000 * 1000};
    for (int i = 0; hold && i < 60 * 1000 && access(hold, F_OK) == 0; ++i) nanosleep(&step, NULL);
    return real(node, service, hints, res);
}
