# Firewall benchmark: a report, not a suite.
$(B)/firewall-bench: $(B)/tests/bench/firewall-bench.o $(B)/libfirewall.a \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libfirewall.a $(B)/libcommon.a \
		$(LDLIBS_ONIG) $(LDLIBS_CJSON)

TEST_BINS	+= $(B)/firewall-bench

# Every verdict on the given texts, one line each: a speed change must
# print the same bytes before and after (a tool, not a suite).
$(B)/firewall-verdicts: $(B)/tests/bench/firewall-verdicts.o \
    $(B)/libfirewall.a $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libfirewall.a $(B)/libcommon.a \
		$(LDLIBS_ONIG) $(LDLIBS_CJSON)

TEST_BINS	+= $(B)/firewall-verdicts
