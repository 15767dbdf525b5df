# libFuzzer targets (clang, Debian's libclang-rt-14-dev) and the test tools
# that the reliability tests drive. Included by the Makefile.
#
#   make fuzz                      each target for FUZZ_SECONDS (60) on its corpus
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=stats_parser
#   make test                      also runs every target once over its checked-in
#                                  corpus (tests/fuzz/run.sh --corpus-only)
#
# A target is tests/fuzz/fuzz_<name>.cpp with seeds in tests/fuzz/corpus/<name>/
# and, optionally, a dictionary tests/fuzz/<name>.dict. Every daemon, shim-core
# and mcctl source (but the mains) is compiled once more with clang and the
# fuzzer's coverage into one archive, so a new target only needs its own file.

FUZZ_SECONDS ?= 60
FUZZ_CXX ?= clang++
FUZZ_DIR := $(BUILD)/fuzz
# Whatever SAN says, fuzz targets always run under ASan and UBSan, and any
# undefined behaviour is a crash that leaves a reproducer.
FUZZ_SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Same warnings as the g++ build; -Werror too, since clang 14 is quiet on this code.
FUZZ_CXXFLAGS := -std=c++20 -O1 -g -Wall -Wextra -Werror -MMD -MP $(FUZZ_SANFLAGS)

FUZZ_LIB_SRC := $(SHIM_CORE_SRC) $(COMMON_SRC) $(DAEMON_SRC) $(FLEET_SRC) $(filter-out %/main.cpp,$(MCCTL_SRC))
FUZZ_LIB_OBJ := $(patsubst %.cpp,$(FUZZ_DIR)/obj/%.o,$(FUZZ_LIB_SRC))
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.cpp)
FUZZ_OBJ := $(patsubst %.cpp,$(FUZZ_DIR)/obj/%.o,$(FUZZ_SRC))
FUZZ_BINS := $(patsubst tests/fuzz/%.cpp,$(FUZZ_DIR)/%,$(FUZZ_SRC))
# Kept, not deleted as intermediates of the chained rules below.
.SECONDARY: $(FUZZ_OBJ)

$(FUZZ_DIR)/obj/%.o: %.cpp | deps
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(CPPFLAGS) -Itests/fuzz $(FUZZ_CXXFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/libfuzzed.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_DIR)/libfuzzed.a
	$(FUZZ_CXX) $(FUZZ_SANFLAGS) -fsanitize=fuzzer -o $@ $^ $(LINK_LIBS) $(FLEET_LIBS) -ldl

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	tests/fuzz/run.sh $(abspath $(BUILD)) --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Test tools: reader and writer processes for the stress tests, a C API
# client, and the same linked statically for the setuid test. Built with the
# build's own flags (and sanitizers) against its libraries.
TESTTOOL_DIR := $(BUILD)/testtools
TESTTOOLS := $(TESTTOOL_DIR)/state_reader_check $(TESTTOOL_DIR)/state_writer_drive \
             $(TESTTOOL_DIR)/capi_route

$(TESTTOOL_DIR)/%: tests/tools/%.cpp $(BUILD)/libmcwatchd.a $(BUILD)/libmccommon.a $(BUILD)/libmcshim.a | deps
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -o $@ $< $(BUILD)/libmcwatchd.a $(BUILD)/libmccommon.a $(BUILD)/libmcshim.a \
	    $(LINK_LIBS) $(LDFLAGS)

.PHONY: testtools
testtools: $(TESTTOOLS)

DEP_FILES += $(patsubst %.o,%.d,$(FUZZ_LIB_OBJ) $(FUZZ_OBJ)) $(addsuffix .d,$(TESTTOOLS))
