# Firewall benchmark: a report, not a suite.
$(B)/firewall-bench: $(B)/tests/bench/firewall-bench.o $(B)/libfirewall.a \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libfirewall.a $(B)/libcommon.a \
		$(LDLIBS_ONIG) $(LDLIBS_CJSON)

TEST_BINS	+= $(B)/firewall-bench
