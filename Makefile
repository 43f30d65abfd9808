# Tern: one non-recursive Makefile. Sources are discovered, so adding a module
# means adding files, not editing this. See docs/ARCHITECTURE.md.
#
#   make            build build/tern
#   make run        install missing Debian packages, build, run etc/tern.conf
#   make check      every test: unit, fuzz replay + short fuzz runs, integration,
#                   then the same suite again under ASan/UBSan (build/san)
#   make fuzz T=smtp_cmd SECS=60   run one libFuzzer target
#   make bench      benchmarks; figures go to docs/BENCHMARKS.md

CC      ?= gcc
PYTHON  ?= /usr/bin/python3
SAN     ?= 0
BUILD   ?= build
ifeq ($(SAN),1)
BUILD   := build/san
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wundef -Wimplicit-fallthrough
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(WARN) -fno-strict-aliasing -fstack-protector-strong \
           -MMD -MP -Isrc
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
CFLAGS  += -D_FORTIFY_SOURCE=2
endif
LDLIBS  := -lssl -lcrypto -lsqlite3 -lcrypt -lz -lcares -lpthread

MAIN_SRC := src/daemon/main.c
LIB_SRCS := $(filter-out $(MAIN_SRC),$(sort $(wildcard src/*/*.c src/proto/*/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TEST_HELPER_SRCS := $(wildcard tests/unit/helpers.c)
TEST_HELPER_OBJS := $(TEST_HELPER_SRCS:%.c=$(BUILD)/%.o)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
REPLAY_BINS := $(FUZZ_NAMES:%=$(BUILD)/tests/replay_%)

.PHONY: all build-all check-build deps deps-build run check check-unit check-e2e check-fuzz check-san fuzz bench clean
all: $(BUILD)/tern

deps:
	@tools/deps.sh test

deps-build:
	@tools/deps.sh build

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtern.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/tern: $(BUILD)/src/daemon/main.o $(BUILD)/libtern.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(TEST_HELPER_OBJS) $(BUILD)/libtern.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# Fuzz targets built with gcc and a plain main() that replays the corpus.
$(BUILD)/tests/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay_main.o $(BUILD)/libtern.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

run: deps-build
	@$(MAKE) --no-print-directory $(BUILD)/tern
	$(BUILD)/tern serve -c etc/tern.conf

# The whole suite; tests/run-all.sh prints the closing "N passed, N failed" line.
check: deps
	@$(MAKE) --no-print-directory check-build
	@tests/run-all.sh

build-all: $(BUILD)/tern $(UNIT_BINS) $(REPLAY_BINS)

check-build:
	@$(MAKE) --no-print-directory build-all
	@$(MAKE) --no-print-directory SAN=1 build-all
	@$(MAKE) --no-print-directory -f Makefile.fuzz fuzzers

fuzz:
	@$(MAKE) --no-print-directory -f Makefile.fuzz run T=$(T) SECS=$(SECS)

bench:
	@tools/deps.sh bench
	@$(MAKE) --no-print-directory $(BUILD)/tern
	@$(PYTHON) tools/bench.py --binary $(BUILD)/tern --out docs/BENCHMARKS.md

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(BUILD)/src/daemon/main.d $(UNIT_BINS:$(BUILD)/tests/%=$(BUILD)/tests/unit/%.d)
