# tests/fuzz: libFuzzer target for the stream-json bridge.  Built with
# clang and its own instrumented objects, apart from the normal build:
#   make fuzz-bridge                 build $(B)/fuzz/fuzz_bridge
#   make fuzz-bridge-run FUZZ_TIME=60  fuzz for FUZZ_TIME seconds
# Seeds are the recorded transcripts in tests/fuzz/corpus/bridge/; new
# inputs go to $(B)/fuzz/corpus-bridge, so the seed directory stays as is.
FUZZ_CC		?= clang
FUZZ_BRIDGE_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined \
		  -fno-sanitize-recover=undefined
FUZZ_TIME	?= 60
FUZZ_BRIDGE_SRCS = tests/fuzz/fuzz_bridge.c worker/bridge.c common/stats.c \
		   common/log.c common/xmalloc.c common/json.c common/proto.c

$(B)/fuzz/fuzz_bridge: $(FUZZ_BRIDGE_SRCS) worker/bridge.h common/stats.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_BRIDGE_FLAGS) -std=c11 -D_GNU_SOURCE $(WARN) -I. \
	    -I/usr/include/cjson -o $@ $(FUZZ_BRIDGE_SRCS) $(LDLIBS_CJSON) -lm

fuzz-bridge: $(B)/fuzz/fuzz_bridge

fuzz-bridge-run: $(B)/fuzz/fuzz_bridge
	@mkdir -p $(B)/fuzz/corpus-bridge
	$(B)/fuzz/fuzz_bridge -max_total_time=$(FUZZ_TIME) -max_len=65536 \
	    -rss_limit_mb=1024 -artifact_prefix=$(B)/fuzz/ \
	    $(B)/fuzz/corpus-bridge tests/fuzz/corpus/bridge

.PHONY: fuzz-bridge fuzz-bridge-run

# A short run in make check: TAP, ok when no crash.
FUZZ_BRIDGE_CHECK_S ?= 10
SUITES	+= 'fuzz-bridge=make --no-print-directory -s fuzz-bridge-check'
fuzz-bridge-check: $(B)/fuzz/fuzz_bridge
	@d=$$(mktemp -d) && \
	if $(B)/fuzz/fuzz_bridge -max_total_time=$(FUZZ_BRIDGE_CHECK_S) \
	    -max_len=65536 -rss_limit_mb=1024 -artifact_prefix=$(B)/fuzz/ \
	    $$d tests/fuzz/corpus/bridge >$$d.log 2>&1; then \
		echo "ok 1 - fuzz_bridge: $(FUZZ_BRIDGE_CHECK_S) s, no crash"; \
	else echo "not ok 1 - fuzz_bridge crashed:"; tail -20 $$d.log; \
	fi; rm -rf $$d $$d.log; echo 1..1
.PHONY: fuzz-bridge-check
