# Firewall unit and corpus tests.  The corpus suite also reports the
# labelled corpus, tuning and held-out parts, and gates the held-out one.
FIREWALL_SPLIT		= -T tests/data/firewall/tune.tsv \
			  -H tests/data/firewall/heldout.tsv
FIREWALL_TEST_LIBS	= $(B)/libfirewall.a $(B)/libcommon.a $(LDLIBS_ONIG) \
			  $(LDLIBS_CJSON)

$(B)/test_firewall: $(B)/tests/unit/test_firewall.o $(B)/libfirewall.a \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $< $(FIREWALL_TEST_LIBS) $(LDLIBS_CMOCKA)

$(B)/test_firewall_corpus: $(B)/tests/unit/test_firewall_corpus.o \
    $(B)/libfirewall.a $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $< $(FIREWALL_TEST_LIBS)

TEST_BINS	+= $(B)/test_firewall $(B)/test_firewall_corpus
SUITES		+= 'firewall=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_firewall'
SUITES		+= 'firewall-corpus=$$B/test_firewall_corpus $(FIREWALL_SPLIT) tests/data/firewall/dangerous.txt tests/data/firewall/benign.txt policy/firewall/rules'
