# tests/unit: supervisor/session.c's state machine without sockets; the
# rest of hotplexd is stubbed in the test.  The suite word holds a space,
# so it is quoted for the shell that runs tests/run-suites.
$(B)/test_session: $(B)/tests/unit/test_session.o \
    $(B)/supervisor/session.o $(B)/supervisor/ring.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_session
SUITES		+= 'session=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_session'
