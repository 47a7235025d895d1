# tests/fuzz: libFuzzer targets of the firewall, built with clang whatever
# CC is, from the policy sources straight (no object of $(B) is shared with
# the normal build).
#   make fuzz               builds every fuzz target (with the others')
#   make fuzz-firewall      builds these two
# The fuzz-firewall suite runs each for FUZZ_FIREWALL_TIME seconds
# (default 10) on tests/fuzz/corpus/<target>/.
FUZZ_FIREWALL_CC	= clang
FUZZ_FIREWALL_CFLAGS	= -g -O1 -std=c11 -D_GNU_SOURCE $(WARN) -I. \
			  -I/usr/include/cjson \
			  -fsanitize=fuzzer,address,undefined \
			  -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_FIREWALL_SRCS	= policy/firewall/rules.c policy/firewall/normalize.c \
			  policy/firewall/prefilter.c policy/firewall/literals.c \
			  policy/firewall/firewall.c \
			  common/log.c common/xmalloc.c common/json.c
FUZZ_FIREWALL_DEPS	= $(FUZZ_FIREWALL_SRCS) policy/firewall/firewall.h \
			  policy/firewall/normalize.h policy/firewall/prefilter.h \
			  policy/firewall/literals.h
FUZZ_FIREWALL_BINS	= $(B)/fuzz/fuzz_rules $(B)/fuzz/fuzz_firewall

$(B)/fuzz/fuzz_rules: tests/fuzz/fuzz_rules.c $(FUZZ_FIREWALL_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_FIREWALL_CC) $(FUZZ_FIREWALL_CFLAGS) -o $@ $< \
	    $(FUZZ_FIREWALL_SRCS) $(LDLIBS_ONIG) $(LDLIBS_CJSON)

$(B)/fuzz/fuzz_firewall: tests/fuzz/fuzz_firewall.c $(FUZZ_FIREWALL_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_FIREWALL_CC) $(FUZZ_FIREWALL_CFLAGS) -o $@ $< \
	    $(FUZZ_FIREWALL_SRCS) $(LDLIBS_ONIG) $(LDLIBS_CJSON)

fuzz-firewall: $(FUZZ_FIREWALL_BINS)
fuzz: $(FUZZ_FIREWALL_BINS)

# The suite: TAP, one test per target, ok when libFuzzer found no crash,
# leak, timeout or sanitizer report.  New inputs go to a temp dir, never
# into the committed seeds; a failing input is kept in $(B)/fuzz/.
FUZZ_FIREWALL_TIME	?= 10
FUZZ_FIREWALL_TIMEOUT	= 10		# seconds for one input (times the load)
FUZZ_FIREWALL_RSS	= 2048		# MB

fuzz-firewall-check:
	@tmp=$$(mktemp -d) || exit 1; trap 'rm -rf "$$tmp"' EXIT; \
	echo "1..2"; i=0; status=0; \
	per=$$(($(strip $(FUZZ_FIREWALL_TIMEOUT)) * $$(sh tests/time-scale.sh))); \
	for t in rules firewall; do \
		i=$$((i + 1)); bin=$(B)/fuzz/fuzz_$$t; \
		if [ ! -x "$$bin" ]; then \
			echo "ok $$i - fuzz_$$t # SKIP $$bin not built"; \
			continue; \
		fi; \
		mkdir "$$tmp/$$t"; \
		if "$$bin" -max_total_time=$(FUZZ_FIREWALL_TIME) \
		    -timeout=$$per -max_len=8192 \
		    -rss_limit_mb=$(FUZZ_FIREWALL_RSS) -print_final_stats=1 \
		    -artifact_prefix="$(B)/fuzz/fuzz_$$t-" "$$tmp/$$t" \
		    tests/fuzz/corpus/fuzz_$$t >"$$tmp/$$t.log" 2>&1; then \
			runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' \
			    "$$tmp/$$t.log"); \
			echo "ok $$i - fuzz_$$t: $${runs:-?} runs in" \
			    "$(FUZZ_FIREWALL_TIME)s, no crash"; \
		else \
			echo "not ok $$i - fuzz_$$t: libFuzzer reported a failure"; \
			tail -n 40 "$$tmp/$$t.log" >&2; status=1; \
		fi; \
	done; exit $$status

TEST_BINS	+= $(FUZZ_FIREWALL_BINS)
SUITES		+= 'fuzz-firewall=make --no-print-directory -s fuzz-firewall-check'

.PHONY: fuzz fuzz-firewall fuzz-firewall-check
