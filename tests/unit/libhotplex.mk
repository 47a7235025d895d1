# tests/unit: libhotplex against a scripted in-process server.
# The suite word holds a space, so it is quoted for the shell that runs
# tests/run-suites; $$B reaches the runner as $B and expands there.
$(B)/test_libhotplex: $(B)/tests/unit/test_libhotplex.o $(B)/libhotplex.a
	$(CC) $(LDFLAGS) -pthread -o $@ $^ $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_libhotplex
SUITES		+= 'libhotplex=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_libhotplex'
