# tests/unit: worker/turn.c's state machine without a CLI or a master; the
# CLI, the bridge and the channel are stubbed in the test.  The suite word
# holds a space, so it is quoted for the shell that runs tests/run-suites.
$(B)/test_turn: $(B)/tests/unit/test_turn.o $(B)/worker/turn.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_turn
SUITES		+= 'turn=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_turn'
