# tests/unit: the session table's counts (supervisor/census.c) against a
# recount after every change.
$(B)/test_census: $(B)/tests/unit/test_census.o $(B)/supervisor/census.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

TEST_BINS	+= $(B)/test_census
SUITES		+= 'census=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_census'
