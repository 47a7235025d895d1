# tests/unit: the session module without sockets: the real session.c,
# session-ops.c, session-worker.c and relay.c, the rest of hotplexd stubbed
# in the test.  The suite word holds a space, so it is quoted for the shell
# that runs tests/run-suites.
$(B)/test_session: $(B)/tests/unit/test_session.o \
    $(B)/supervisor/session.o $(B)/supervisor/session-ops.o \
    $(B)/supervisor/session-worker.o $(B)/supervisor/relay.o \
    $(B)/supervisor/ring.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_session
SUITES		+= 'session=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_session'
