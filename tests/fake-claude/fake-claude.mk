# tests/fake-claude: a fake Claude CLI (stream-json) for integration tests.
#
# It starts once per session, in every burst the benchmarks time, so it is
# linked static-pie (ASLR kept, no dynamic loader: exec and exit ~1.8 ms of
# CPU less here).  Debian ships no libcjson.a: cJSON 1.7.19 (upstream,
# unmodified, MIT; tests/fake-claude/cjson/) is compiled in; the daemon and
# the worker keep the system's shared cJSON.  AddressSanitizer links no
# static program, so SAN=1 builds it as before.
FAKE_CLAUDE_OBJS	= $(B)/tests/fake-claude/fake-claude.o

ifeq ($(SAN),1)
$(B)/fake-claude: $(FAKE_CLAUDE_OBJS)
	$(CC) $(LDFLAGS) -o $@ $(FAKE_CLAUDE_OBJS) $(LDLIBS_CJSON)
else
FAKE_CLAUDE_CJSON	= $(B)/tests/fake-claude/cjson/cJSON.o

# Its own header before the system's (CPPFLAGS comes first).
$(FAKE_CLAUDE_OBJS): CPPFLAGS += -Itests/fake-claude/cjson

# Third-party code: its own flags, not our warnings.
$(FAKE_CLAUDE_CJSON): tests/fake-claude/cjson/cJSON.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -fPIE -c -o $@ $<

$(B)/fake-claude: $(FAKE_CLAUDE_OBJS) $(FAKE_CLAUDE_CJSON)
	$(CC) $(LDFLAGS) -static-pie -o $@ $^ -lm

# The same objects linked dynamically, for the self-test's valgrind case
# (valgrind replaces malloc only in a dynamically linked program).
$(B)/tests/fake-claude/fake-claude-dyn: $(FAKE_CLAUDE_OBJS) $(FAKE_CLAUDE_CJSON)
	$(CC) $(LDFLAGS) -o $@ $^ -lm

TEST_BINS	+= $(B)/tests/fake-claude/fake-claude-dyn
endif

TEST_BINS	+= $(B)/fake-claude
SUITES		+= 'fake-claude=sh tests/fake-claude/selftest.sh'
