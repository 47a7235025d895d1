# tests/fake-claude: a fake Claude CLI (stream-json) for integration tests.
FAKE_CLAUDE_OBJS	= $(B)/tests/fake-claude/fake-claude.o

$(B)/fake-claude: $(FAKE_CLAUDE_OBJS)
	$(CC) $(LDFLAGS) -o $@ $(FAKE_CLAUDE_OBJS) $(LDLIBS_CJSON)

TEST_BINS	+= $(B)/fake-claude
SUITES		+= 'fake-claude=sh tests/fake-claude/selftest.sh'
