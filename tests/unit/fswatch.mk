# tests/unit: worker/fswatch.c (which Bash call is given which workdir
# change) against a real temporary tree and real inotify.  The suite word
# holds a space, so it is quoted for the shell that runs tests/run-suites.
$(B)/test_fswatch: $(B)/tests/unit/test_fswatch.o $(B)/worker/fswatch.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_fswatch
SUITES		+= 'fswatch=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_fswatch'
