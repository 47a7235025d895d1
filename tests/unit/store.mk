# tests/unit: supervisor/store.c and its SQLite backend in a temporary
# directory (no daemon).  The suite word holds a space, so it is quoted for
# the shell that runs tests/run-suites.
$(B)/test_store: $(B)/tests/unit/test_store.o $(B)/supervisor/store.o \
    $(B)/supervisor/store-sqlite.o $(B)/supervisor/store-pg.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_SQLITE) $(LDLIBS_PQ) \
	    $(LDLIBS_EV) $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

TEST_BINS	+= $(B)/test_store
SUITES		+= 'store=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_store'
