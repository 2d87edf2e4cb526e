# verdict - a policy engine daemon for telecom complaint decisions.
#
# One hand-written Makefile.  Dependencies come from Debian's packages and are
# found with pkg-config.  `make deps` installs what is missing
# (scripts/install-deps: idempotent, needs root on a fresh Debian 12
# machine); `run`, `test`, `bench`, `asan` and `tsan` do that first, so the
# README's two commands do all the set-up.  A plain `make` only builds.
#
# Targets: all (default), deps, run, test, bench, asan, tsan, fuzz,
# reference, install, deb, clean.
# Honoured: CC, CFLAGS, LDFLAGS, BUILD, PREFIX, DESTDIR; SECONDS (fuzz);
# CONFIG (the file verdictd reads when no --config is given; none if empty).

# The one home of the version number: core/version.c gets it, `verdict
# --version` and `verdictd --version` print it, and debian/changelog's top
# entry must match it (tests/blackbox/test_package.py).
VERSION   := 0.4.0

PKGS      := lua5.4 libuv sqlite3 yajl nettle libpq
TEST_PKGS := cmocka
# verdictd alone: sd_notify() and the journal (core/daemon/log.c), and
# OpenSSL (TLS on its listeners); it also links http-parser
# (libhttp-parser-dev, which ships no pkg-config file: its one library).
DAEMON_PKGS := libsystemd openssl

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wundef -Wno-unused-parameter
CFLAGS  ?= -O2 -g

# pkg-config is asked once, when the first recipe needs it: by then `deps`
# has run for the goals that depend on it.  (`X = $(eval X := ...)$(X)` is
# make's evaluate-once idiom.)
PKG_CFLAGS = $(eval PKG_CFLAGS := $(call pkg,--cflags,$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(call lua_static,$(call pkg,--libs,$(PKGS))))$(PKG_LIBS)
# Lua is linked from the static archive liblua5.4-dev ships beside the
# shared library (its libdir, as pkg-config gives it), where there is one:
# in the shared library every call between Lua's own functions goes
# through the PLT, and the interpreter is most of a decision (replay of
# 313,029 rows, 6 runs in turn: 4.5% less time; README, "Dependencies").
lua_static = $(if $(LUA_ARCHIVE),$(patsubst -llua5.4,$(LUA_ARCHIVE) -lm -ldl,$(1)),$(1))
LUA_ARCHIVE = $(eval LUA_ARCHIVE := $(wildcard $(shell pkg-config --variable=libdir lua5.4 2>/dev/null)/liblua5.4.a))$(LUA_ARCHIVE)
TEST_LIBS  = $(eval TEST_LIBS := $(call pkg,--libs,$(TEST_PKGS)))$(TEST_LIBS)
DAEMON_CFLAGS = $(eval DAEMON_CFLAGS := $(call pkg,--cflags,$(DAEMON_PKGS)) \
  -DVD_LIBSYSTEMD_VERSION='"$(shell pkg-config --modversion libsystemd)"')$(DAEMON_CFLAGS)
DAEMON_LIBS   = $(eval DAEMON_LIBS := $(call pkg,--libs,$(DAEMON_PKGS)) -lhttp_parser)$(DAEMON_LIBS)
pkg = $(or $(shell pkg-config $(1) $(2) 2>/dev/null),$(if $(shell pkg-config --exists $(2) && echo y),,$(error missing build dependencies ($(2)): run `make deps` as root)))

ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -MMD -MP $(WARN) $(CPPFLAGS) $(CFLAGS) -Iinclude -Icore \
             $(PKG_CFLAGS)
LDLIBS     = $(PKG_LIBS) -lpthread -lm

# core/: the library every program links, on its caller's thread; it prints
# nothing.  core/daemon/: verdictd, the only code with event loops.
# core/cmd/: verdict, the only code that prints.
LIB_SRCS := core/error.c core/buf.c core/json.c core/timefmt.c core/uuid.c \
            core/watchdog.c core/slab.c core/bundle.c core/sandbox.c \
            core/engine.c core/wire.c core/client.c core/policytest.c \
            core/lint.c core/grid.c core/history_db.c core/history_chain.c \
            core/history_writer.c core/history_revs.c core/history_facts.c \
            core/history_query.c core/history_backup.c core/history_erase.c \
            core/history_archive.c core/history_pseudonym.c \
            core/personal.c core/replay.c core/textdiff.c \
            core/metrics.c core/openapi.c core/report.c core/version.c \
            core/history_pg.c core/history_import.c
LIB_SRCS += core/history_idem.c core/history_find.c core/history_walbuf.c
DAEMON_SRCS := core/daemon/daemon.c core/daemon/worker.c core/daemon/admin.c \
               core/daemon/validate.c core/daemon/verdictd.c \
               core/daemon/log.c core/daemon/http.c core/daemon/auth.c \
               core/daemon/tls.c core/daemon/idem.c core/daemon/console.c \
               core/daemon/fleet.c
# The console's stylesheet and script, compiled into verdictd as strings.
CONSOLE_ASSETS := console/console.css console/console.js
CLI_SRCS    := core/cmd/verdict.c core/cmd/decide.c core/cmd/admin.c \
               core/cmd/policy.c core/cmd/audit.c core/cmd/replay.c \
               core/cmd/bench.c core/cmd/reference.c core/cmd/schema.c \
               core/cmd/eval.c core/cmd/revisions.c core/cmd/fleet.c

TESTS := test_error test_buf test_json test_timefmt test_uuid test_slab \
         test_textdiff test_engine test_sandbox test_wire test_history \
         test_history_faults test_policytest test_replay \
         test_metrics test_openapi

LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o)
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS    := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_BINS   := $(TESTS:%=$(BUILD)/tests/%)

# Goals that install what is missing before anything is compiled.
DEPS_GOALS  := run test bench asan tsan fuzz
NEED_DEPS   := $(if $(filter $(DEPS_GOALS),$(MAKECMDGOALS)),deps)

.PHONY: all deps run test bench ldlibs asan tsan reference install clean
# Keep the test objects make builds on the way (and keep its last line ours).
.SECONDARY:
all: $(BUILD)/verdictd $(BUILD)/verdict

deps:
	@./scripts/install-deps

$(BUILD)/%.o: %.c | $(NEED_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The version is compiled into one file, made again when the Makefile
# changes; the daemon's files see libsystemd's headers.
$(BUILD)/core/version.o: Makefile
$(BUILD)/core/version.o: ALL_CFLAGS += -DVD_VERSION='"$(VERSION)"'
$(DAEMON_OBJS): ALL_CFLAGS += $(DAEMON_CFLAGS)
$(BUILD)/core/daemon/verdictd.o: ALL_CFLAGS += \
    $(if $(CONFIG),-DVD_DEFAULT_CONFIG='"$(CONFIG)"')

# Written afresh: `ar r` keeps members whose source is gone (a renamed file).
$(BUILD)/libverdict.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/console_assets.c: $(CONSOLE_ASSETS) scripts/embed-assets
	@mkdir -p $(dir $@)
	./scripts/embed-assets $(CONSOLE_ASSETS) > $@.tmp && mv $@.tmp $@

$(BUILD)/console_assets.o: $(BUILD)/console_assets.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/verdictd: $(DAEMON_OBJS) $(BUILD)/console_assets.o $(BUILD)/libverdict.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS) $(LDLIBS)

$(BUILD)/verdict: $(CLI_OBJS) $(BUILD)/libverdict.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libverdict.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

# Test-only helpers linked into the tests that use them.
$(BUILD)/tests/test_history_faults: $(BUILD)/tests/fault_vfs.o

# Start the daemon in the foreground on the bundled policies.
run: deps all
	@mkdir -p var
	./$(BUILD)/verdictd --policies policies --socket var/verdictd.sock \
	    --admin-socket var/verdictd-admin.sock --db var/verdict.db \
	    --http 127.0.0.1:8181 \
	    $(VERDICTD_FLAGS)

# Every test: cmocka unit tests, the policies' own tests, black-box tests.
test: deps all $(TEST_BINS) fuzz-build
	./scripts/run-tests $(BUILD) $(TESTS)

bench: deps all
	./scripts/bench $(BUILD)
	./scripts/bench-fleet $(BUILD)

# The libraries a program of ours links, as the link lines here give them
# (scripts/bench --profile links its decision loop with them).
ldlibs:
	@echo $(LDLIBS)

# The sanitizers, each in a build tree of its own.
asan: deps
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	    VERDICT_ASAN=1 test

tsan: deps
	$(MAKE) BUILD=build-tsan CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
	    VERDICT_TSAN=1 test

# libFuzzer targets (tests/fuzz/, docs/fuzzing.md): Debian's clang-14 with
# ASan and UBSan, over the library built again with the same
# instrumentation in $(FUZZ_BUILD).  `make fuzz SECONDS=N` runs each target
# for N seconds in turn on a scratch copy of its committed corpus; `make
# test` runs each for a few seconds.
FUZZ_CC      := clang-14
FUZZ_BUILD   := build-fuzz
FUZZ_TARGETS := framer json request time schema admin http
SECONDS       = 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -MMD -MP $(WARN) -Wno-format-nonliteral \
                -g -O1 $(FUZZ_SAN) \
                -Iinclude -Icore $(PKG_CFLAGS)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BINS     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-build
$(FUZZ_BUILD)/core/%.o: core/%.c | $(NEED_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) \
	    $(LDLIBS)

$(FUZZ_BUILD)/core/version.o: Makefile
$(FUZZ_BUILD)/core/version.o: FUZZ_CFLAGS += -DVD_VERSION='"$(VERSION)"'
# fuzz_http takes verdictd's HTTP framing too, and http-parser.
$(FUZZ_BUILD)/fuzz_http: tests/fuzz/fuzz_http.c tests/fuzz/fuzz_util.h \
    $(FUZZ_LIB_OBJS) $(FUZZ_BUILD)/core/daemon/http.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) \
	    $(FUZZ_BUILD)/core/daemon/http.o $(LDLIBS) -lhttp_parser

fuzz-build: $(FUZZ_BINS)

fuzz: deps fuzz-build
	./scripts/fuzz-run $(FUZZ_BUILD) $(SECONDS) $(FUZZ_TARGETS)

# docs/policy-reference.md is generated from the policies' schemas;
# `make test` fails when the committed file is not current.
reference: all
	./$(BUILD)/verdict reference policies >docs/policy-reference.md.tmp
	mv docs/policy-reference.md.tmp docs/policy-reference.md

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 $(BUILD)/verdictd $(BUILD)/verdict $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 docs/man/verdict.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 docs/man/verdict-policies.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 0644 docs/man/verdictd.8 $(DESTDIR)$(PREFIX)/share/man/man8/

# The Debian package (debian/), built by dpkg-buildpackage in a copy of
# the tree under build-deb/ (its clean step must not touch this one; the
# copy is what git sees, committed or not, a file deleted but not yet
# committed left out):
# build-deb/verdict_$(VERSION)_ARCH.deb.  debian/changelog's version is
# VERSION (tests/blackbox/test_package.py checks it).
DEB_TREE := build-deb/verdict-$(VERSION)
.PHONY: deb
deb:
	rm -rf build-deb
	mkdir -p $(DEB_TREE)
	git ls-files -co --exclude-standard -x '/build*' -z | \
	    tar --null -T - --ignore-failed-read -cf - | tar -xf - -C $(DEB_TREE)
	cd $(DEB_TREE) && dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning build-deb/verdict_$(VERSION)_*.changes

clean:
	rm -rf build build-asan build-tsan build-fuzz build-deb

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
-include $(wildcard $(FUZZ_BUILD)/core/*.d $(FUZZ_BUILD)/core/daemon/*.d $(FUZZ_BUILD)/*.d)
