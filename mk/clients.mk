# Test clients: a libmemcached program of ours, built plain (for LD_PRELOAD)
# and linked with libmcshim ahead of libmemcached (linked mode).
CLIENTS := $(BUILD)/clients/mc_client $(BUILD)/clients/mc_client_linked $(BUILD)/clients/mc_race \
	$(BUILD)/clients/slow_dns.so

$(BUILD)/clients/mc_client: tests/clients/mc_client.c | deps
	@mkdir -p $(@D)
	$(CC) -I. $(CFLAGS) -o $@ $< -lmemcached -lpthread $(LDFLAGS)

$(BUILD)/clients/mc_client_linked: tests/clients/mc_client.c $(BUILD)/libmcshim.so | deps
	@mkdir -p $(@D)
	$(CC) -I. $(CFLAGS) -o $@ $< -L$(BUILD) -lmcshim -lmemcached -lpthread -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS)

# Races writes and deletes against reads (tests/integration/test_shim_writeback.py).
$(BUILD)/clients/mc_race: tests/clients/mc_race.c | deps
	@mkdir -p $(@D)
	$(CC) -I. $(CFLAGS) -o $@ $< -lmemcached -lpthread $(LDFLAGS)

# A resolver that hangs on demand, preloaded after the shim (tests/integration/test_replicas.py).
$(BUILD)/clients/slow_dns.so: tests/clients/slow_dns.c | deps
	@mkdir -p $(@D)
	$(CC) -I. $(CFLAGS) -MF $@.d -shared -fPIC -o $@ $< -ldl $(LDFLAGS)

DEP_FILES += $(addsuffix .d,$(CLIENTS))
