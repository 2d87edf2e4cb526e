# verdict - a policy engine daemon for telecom complaint decisions.
#
# One hand-written Makefile.  Dependencies come from Debian's packages and are
# found with pkg-config; when one is missing, scripts/install-deps installs
# them (idempotent, needs root on a fresh Debian 12 machine).
#
# Targets: all (default), run, test, bench, asan, install, clean.

PKGS      := lua5.4 libuv sqlite3 yajl nettle
TEST_PKGS := cmocka

# Install what is missing before anything else is evaluated.
DEPS_OK := $(shell ./scripts/install-deps --check && \
             pkg-config --exists $(PKGS) $(TEST_PKGS) 2>/dev/null && echo yes)
ifneq ($(DEPS_OK),yes)
  $(info verdict: installing missing build dependencies (scripts/install-deps))
  DEPS_RC := $(shell ./scripts/install-deps >&2; echo $$?)
  ifneq ($(DEPS_RC),0)
    $(error scripts/install-deps failed; see the messages above)
  endif
endif

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wundef -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -MMD -MP $(WARN) $(CFLAGS) -Iinclude -Icore \
              $(shell pkg-config --cflags $(PKGS))
LDLIBS  := $(shell pkg-config --libs $(PKGS)) -lpthread -lm
TEST_LDLIBS := $(shell pkg-config --libs $(TEST_PKGS))

# The library every program links: one subsystem per file.
LIB_SRCS := core/error.c core/buf.c core/json.c core/timefmt.c core/uuid.c \
            core/watchdog.c core/slab.c core/bundle.c core/sandbox.c \
            core/engine.c core/protocol.c core/client.c core/policytest.c \
            core/history.c core/textdiff.c
DAEMON_SRCS := core/daemon.c core/worker.c core/admin.c core/verdictd.c
CLI_SRCS    := core/verdict.c core/cli_history.c core/replay.c core/bench.c

TESTS := test_json test_engine test_sandbox test_protocol test_history

LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS    := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_BINS   := $(TESTS:%=$(BUILD)/tests/%)

.PHONY: all run test bench asan install clean
# Keep the test objects make builds on the way (and keep its last line ours).
.SECONDARY:
all: $(BUILD)/verdictd $(BUILD)/verdict

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libverdict.a: $(LIB_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/verdictd: $(DAEMON_OBJS) $(BUILD)/libverdict.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/verdict: $(CLI_OBJS) $(BUILD)/libverdict.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libverdict.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LDLIBS)

# Start the daemon in the foreground on the bundled policies.
run: all
	@mkdir -p var
	./$(BUILD)/verdictd --policies policies --socket var/verdictd.sock \
	    --admin-socket var/verdictd-admin.sock --db var/verdict.db \
	    $(VERDICTD_FLAGS)

# Every test: cmocka unit tests, the policies' own tests, black-box tests.
test: all $(TEST_BINS)
	./scripts/run-tests $(BUILD)

bench: all
	./scripts/bench $(BUILD)

# Address and undefined-behaviour sanitizers, in a build tree of their own.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" test

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/verdictd $(BUILD)/verdict $(DESTDIR)$(PREFIX)/bin/

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
