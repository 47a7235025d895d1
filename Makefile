# HotPlex: top-level, non-recursive Makefile.
# Each directory contributes a fragment (<dir>/<dir>.mk) that appends to the
# variables below; objects and binaries land under $(B) so that a sanitizer
# build (make check-asan) can live beside the normal one.

VERSION	= 0.1.0
PREFIX	?= /usr/local
DESTDIR	?=
B	?= build

CC	?= cc
PKGS	= libevent libcjson oniguruma libseccomp sqlite3
WARN	= -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	  -Wmissing-prototypes -Wno-unused-parameter
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE $(WARN) -I. -I/usr/include/cjson \
	   -DHOTPLEX_VERSION=\"$(VERSION)\"
LDLIBS_EV	= -levent
LDLIBS_CJSON	= -lcjson -lm
LDLIBS_ONIG	= -lonig
LDLIBS_SECCOMP	= -lseccomp
LDLIBS_SQLITE	= -lsqlite3
LDLIBS_CMOCKA	= -lcmocka

ifeq ($(SAN),1)
CFLAGS	+= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS	+= -fsanitize=address,undefined
endif

# Filled in by the fragments.
BINS		=	# installed programs: $(B)/hotplexd ...
TEST_BINS	=	# test programs, built by `make tests`
SUITES		=	# test suite commands run by tests/run-suites (name=command)
CLEAN_EXTRA	=

all: binaries

include common/common.mk
include policy/policy.mk
include policy/sandbox.mk
include worker/worker.mk
include supervisor/supervisor.mk
include client/client.mk
include man/man.mk
include tests/tests.mk

binaries: $(BINS)
tests: $(TEST_BINS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# Installs missing build and test dependencies (Debian packages when root,
# the pinned Claude CLI under $(B)/cli).
deps:
	@sh tests/deps.sh $(B)

check: deps
	@$(MAKE) --no-print-directory binaries tests
	@B=$(B) sh tests/run-suites $(SUITES)

check-asan:
	@HP_SAN=1 $(MAKE) --no-print-directory B=build-asan SAN=1 CC=clang check

demo: deps
	@$(MAKE) --no-print-directory binaries tests
	@B=$(B) sh tests/demo.sh

bench: deps
	@$(MAKE) --no-print-directory binaries tests
	@B=$(B) sh tests/bench/run.sh

install: binaries
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
		$(DESTDIR)$(PREFIX)/libexec/hotplex $(DESTDIR)$(PREFIX)/lib \
		$(DESTDIR)$(PREFIX)/include $(DESTDIR)/etc/hotplex
	install -m 755 $(B)/hotplexd $(DESTDIR)$(PREFIX)/sbin/hotplexd
	install -m 755 $(B)/hotplex-worker $(DESTDIR)$(PREFIX)/libexec/hotplex/hotplex-worker
	install -m 755 $(B)/hotplexctl $(DESTDIR)$(PREFIX)/bin/hotplexctl
	install -m 644 $(B)/libhotplex.a $(DESTDIR)$(PREFIX)/lib/libhotplex.a
	install -m 644 client/hotplex.h $(DESTDIR)$(PREFIX)/include/hotplex.h
	$(MAKE) --no-print-directory install-man install-policy
	test -e $(DESTDIR)/etc/hotplex/hotplexd.conf || \
		install -m 644 init/hotplexd.conf $(DESTDIR)/etc/hotplex/hotplexd.conf

clean:
	rm -rf build build-asan $(CLEAN_EXTRA)

.PHONY: all binaries tests deps check check-asan demo bench install clean

# libFuzzer targets (clang): each fragment adds its own fuzz-* target.
fuzz: fuzz-common fuzz-bridge $(FUZZ_TARGETS)
.PHONY: fuzz
