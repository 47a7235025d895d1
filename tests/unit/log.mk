# tests/unit: common/log.c with a log_file, text and JSON lines, reopen.
$(B)/test_log: $(B)/tests/unit/test_log.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_log
SUITES		+= 'log=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_log'
