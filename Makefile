# mcwatch: mcwatchd, mcctl, libmcshim. Plain GNU make; see README.md.
#   make            build into build/ (installs missing Debian packages first)
#   make test       build, then run every test (tests/run)
#   make bench      benchmarks, ratios measured side by side
#   make demo       a small local fleet, the shim at work, cleaned up after
#   make SAN=address,undefined test   the same under sanitizers, in build-san-*/

# One compiler per core unless the caller chose (`make -j1` for a serial
# build): on a fresh machine the build is most of `make test`'s first run.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif

SAN ?=
comma := ,
BUILD ?= $(if $(SAN),build-san-$(subst $(comma),-,$(SAN)),build)
PREFIX ?= /usr/local
DESTDIR ?=

CXX ?= g++
CC ?= gcc
SANFLAGS := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer,)$(if $(findstring thread,$(SAN)), -Wno-tsan,)
WARN := -Wall -Wextra -Werror
# Lazily evaluated: pkg-config must run after the deps step installed the .pc files.
PKG_CFLAGS = $(shell pkg-config --cflags inih fmt libmemcached nlohmann_json)
PKG_LIBS = $(shell pkg-config --libs inih fmt)
# What a program linked with our archives needs besides them (the router
# hashes keys with libhashkit).
LINK_LIBS = $(PKG_LIBS) -lhashkit
# mcwatchd and mcctl talk to etcd (the fleet view); never the shim.
FLEET_LIBS = $(shell pkg-config --libs libcurl) -lpthread
# Includes name their folder ("daemon/health.hpp"); only the public C header
# is found by its installed name.
CPPFLAGS = -I. -Ilibshim/include $(PKG_CFLAGS)
CXXFLAGS := -std=c++20 -O2 -g $(WARN) -fPIC -fvisibility=hidden -MMD -MP $(SANFLAGS)
CFLAGS := -std=c11 -O2 -g $(WARN) -MMD -MP $(SANFLAGS)
LDFLAGS := $(SANFLAGS)

# libshim/*.cpp: state reader, router, C API: in libmcshim.so and, for the
# daemon and mcctl, in a static archive. libshim/preload/: the interposers,
# only in the shared library.
SHIM_CORE_SRC := $(wildcard libshim/*.cpp)
SHIM_PRELOAD_SRC := $(wildcard libshim/preload/*.cpp)
# common/: what mcwatchd and mcctl both use (the configuration, durations, times).
COMMON_SRC := $(wildcard common/*.cpp)
# The etcd client and the fleet view's pure part: in an archive of their own,
# which mcwatchd and mcctl (`mcctl fleet`) both link.
FLEET_SRC := daemon/etcd_client.cpp daemon/fleet_verdict.cpp
DAEMON_SRC := $(filter-out daemon/main.cpp $(FLEET_SRC),$(wildcard daemon/*.cpp))
MCCTL_SRC := $(wildcard tools/mcctl/*.cpp)
UNIT_SRC := $(wildcard tests/unit/*.cpp)
EXAMPLE_SRC := $(wildcard tests/examples/*.c)

obj = $(patsubst %.cpp,$(BUILD)/obj/%.o,$(1))
SHIM_CORE_OBJ := $(call obj,$(SHIM_CORE_SRC))
SHIM_PRELOAD_OBJ := $(call obj,$(SHIM_PRELOAD_SRC))
COMMON_OBJ := $(call obj,$(COMMON_SRC))
DAEMON_OBJ := $(call obj,$(DAEMON_SRC))
FLEET_OBJ := $(call obj,$(FLEET_SRC))
MCCTL_OBJ := $(call obj,$(MCCTL_SRC))
# mcctl's commands without its main, for the unit tests.
MCCTL_LIB_OBJ := $(filter-out %/main.o,$(MCCTL_OBJ))
# The shim's thread-locals through TLS descriptors: in a preloaded library
# (static TLS) each access is a load, not a __tls_get_addr call, and a
# dlopen()ed libmcshim.so still works (initial-exec would need static TLS
# that dlopen may not have). x86-64's default is the older dialect.
ifeq ($(firstword $(subst -, ,$(shell $(CXX) -dumpmachine))),x86_64)
$(SHIM_CORE_OBJ) $(SHIM_PRELOAD_OBJ): CXXFLAGS += -mtls-dialect=gnu2
endif
UNIT_OBJ := $(call obj,$(UNIT_SRC))
EXAMPLES := $(patsubst tests/examples/%.c,$(BUILD)/examples/%,$(EXAMPLE_SRC))

SONAME := libmcshim.so.1
PROGRAMS := $(BUILD)/mcwatchd $(BUILD)/mcctl $(BUILD)/libmcshim.so

.PHONY: all deps test test-build unit bench demo install uninstall clean format format-check fuzz
all: $(PROGRAMS)

# Installs missing Debian packages (or says the apt-get line and stops).
deps:
	@tools/install-deps.sh

$(BUILD)/obj/%.o: %.cpp | deps
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/libmcshim.a: $(SHIM_CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmccommon.a: $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmcwatchd.a: $(DAEMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmcfleet.a: $(FLEET_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmcshim.so: $(SHIM_CORE_OBJ) $(SHIM_PRELOAD_OBJ) libshim/libmcshim.map
	$(CXX) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=libshim/libmcshim.map \
	    -Wl,-z,now -Wl,-z,relro $(LDFLAGS) -o $@ $(SHIM_CORE_OBJ) $(SHIM_PRELOAD_OBJ) -lhashkit -ldl -lpthread
	ln -sf libmcshim.so $(BUILD)/$(SONAME)

$(BUILD)/mcwatchd: $(BUILD)/obj/daemon/main.o $(BUILD)/libmcwatchd.a $(BUILD)/libmcfleet.a $(BUILD)/libmccommon.a $(BUILD)/libmcshim.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LINK_LIBS) $(FLEET_LIBS)

$(BUILD)/mcctl: $(MCCTL_OBJ) $(BUILD)/libmcfleet.a $(BUILD)/libmccommon.a $(BUILD)/libmcshim.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(LINK_LIBS) $(FLEET_LIBS)

$(BUILD)/unit_tests: $(UNIT_OBJ) $(MCCTL_LIB_OBJ) $(BUILD)/libmcwatchd.a $(BUILD)/libmcfleet.a $(BUILD)/libmccommon.a $(BUILD)/libmcshim.a
	$(CXX) $(LDFLAGS) -o $@ $^ -lmemcached $(LINK_LIBS) $(FLEET_LIBS) -lpthread

# Example programs in C that use only the public header, linked to the .so.
$(BUILD)/examples/%: tests/examples/%.c libshim/include/mcshim.h $(BUILD)/libmcshim.so
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< -L$(BUILD) -lmcshim -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS)

# Benchmark tools (tests/bench/*.c), driven by tests/bench/run.py: clients
# linked with libmemcached alone, run as they are or with the shim preloaded.
BENCH_TOOLS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))

$(BUILD)/bench/%: tests/bench/%.c | deps
	@mkdir -p $(@D)
	$(CC) -I. -Ilibshim/include $(CFLAGS) -o $@ $< -lmemcached -lpthread -lm -ldl $(LDFLAGS)

# All seven sections; prints the tables, writes $(BUILD)/bench/results.json and
# the miss-storm chart. Never fails on a missed target, only on a broken run.
bench: all $(BENCH_TOOLS)
		/usr/bin/python3 tests/bench/run.py --build $(BUILD) --out $(BUILD)/bench

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests


clean:
	rm -rf build build-san-*

# Every C and C++ file of the tree, in the style of .clang-format.
FORMAT_SRC ?= $(wildcard common/*.[ch]pp daemon/*.[ch]pp libshim/*.[ch]pp libshim/*/*.[ch]pp libshim/include/*.h \
    tools/*/*.[ch]pp tests/*/*.[ch]pp tests/*/*.[ch])
format:
	clang-format -i $(FORMAT_SRC)

format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

# Larger features keep their rules in fragments of their own.
include $(wildcard mk/*.mk)

# Everything tests/run needs, in one list: the fragments above define
# CLIENTS, FUZZ_BINS and TESTTOOLS.
TEST_BUILDS = all $(BUILD)/unit_tests $(EXAMPLES) $(BENCH_TOOLS) $(CLIENTS) $(FUZZ_BINS) $(TESTTOOLS)
# `make test-build` builds them without running anything.
test-build: $(TEST_BUILDS)
# Under sanitizers every process is several times slower and the parallel
# integration run is proven on the plain build only: one worker there.
test: test-build
	MCWATCH_BUILD=$(abspath $(BUILD)) $(if $(SAN),MCWATCH_TEST_WORKERS=1 )tests/run

# The compiler's dependency files (-MMD), one beside each object or program
# it compiled: the fragments add theirs to DEP_FILES.
DEP_FILES += $(patsubst %.o,%.d,$(BUILD)/obj/daemon/main.o $(SHIM_CORE_OBJ) $(SHIM_PRELOAD_OBJ) $(COMMON_OBJ) \
    $(DAEMON_OBJ) $(FLEET_OBJ) $(MCCTL_OBJ) $(UNIT_OBJ)) $(addsuffix .d,$(EXAMPLES) $(BENCH_TOOLS))
-include $(DEP_FILES)

demo: all
	MCWATCH_BUILD=$(abspath $(BUILD)) tools/demo.sh
