# tests/unit: the stream-json bridge (replays tests/fixtures/*.stdout.jsonl)
# and the stats module.  Suite words hold a space, so they are quoted for
# the shell that runs tests/run-suites; $$B reaches it as $B.
BRIDGE_TEST_OBJS = $(B)/worker/bridge.o $(B)/common/stats.o $(B)/libcommon.a

$(B)/test_bridge: $(B)/tests/unit/test_bridge.o $(BRIDGE_TEST_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_CJSON) $(LDLIBS_CMOCKA) -lm

$(B)/test_stats: $(B)/tests/unit/test_stats.o $(B)/common/stats.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_CJSON) $(LDLIBS_CMOCKA) -lm

TEST_BINS	+= $(B)/test_bridge $(B)/test_stats
SUITES		+= 'bridge=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_bridge' \
		   'stats=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_stats'
