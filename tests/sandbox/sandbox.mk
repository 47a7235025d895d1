# tests/sandbox: the CLI sandbox, probed from inside (try-escape under
# sandbox-run) and the worker's own confinement (confine-test).
SANDBOX_TEST_BINS = $(B)/tests/sandbox/sandbox-run \
		    $(B)/tests/sandbox/try-escape \
		    $(B)/tests/sandbox/confine-test
TEST_BINS	+= $(SANDBOX_TEST_BINS)
SUITES		+= 'sandbox=sh tests/sandbox/run.sh'

$(B)/tests/sandbox/%: $(B)/tests/sandbox/%.o $(B)/libsandbox.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_SECCOMP)

$(B)/tests/sandbox/confine-test: $(B)/tests/sandbox/confine-test.o \
	    $(B)/libsandbox.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_SECCOMP)
