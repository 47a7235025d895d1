# tests/fuzz: libFuzzer targets for the shared framing (common/line.c,
# common/msg.c) and the client request path (supervisor/request.c).  libFuzzer needs clang, so
# these build with it whatever CC is, compiling the common sources straight
# into each target: no object of $(B) is shared with the normal build.
# `make fuzz-common` builds them; the fuzz-common suite runs each for
# FUZZ_COMMON_TIME seconds (default 10) on tests/fuzz/corpus/<name>/.
FUZZ_COMMON_CC		= clang
FUZZ_COMMON_CFLAGS	= -g -O1 -std=c11 -D_GNU_SOURCE $(WARN) -I. \
			  -I/usr/include/cjson -DHOTPLEX_VERSION=\"$(VERSION)\" \
			  -fsanitize=fuzzer,address,undefined \
			  -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_COMMON_SRCS	= common/log.c common/xmalloc.c common/line.c \
			  common/msg.c common/proto.c common/json.c \
			  common/stats.c
FUZZ_COMMON_DEPS	= $(FUZZ_COMMON_SRCS) $(wildcard common/*.h)
FUZZ_COMMON_BINS	= $(B)/fuzz/fuzz_request $(B)/fuzz/fuzz_msg

# The daemon's own request parser, not a copy.
$(B)/fuzz/fuzz_request: tests/fuzz/fuzz_request.c supervisor/request.c \
    supervisor/request.h $(FUZZ_COMMON_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_COMMON_CC) $(FUZZ_COMMON_CFLAGS) -o $@ $< supervisor/request.c \
	    $(FUZZ_COMMON_SRCS) $(LDLIBS_EV) $(LDLIBS_CJSON)

$(B)/fuzz/fuzz_msg: tests/fuzz/fuzz_msg.c $(FUZZ_COMMON_DEPS)
	@mkdir -p $(dir $@)
	$(FUZZ_COMMON_CC) $(FUZZ_COMMON_CFLAGS) -o $@ $< $(FUZZ_COMMON_SRCS) \
	    $(LDLIBS_EV) $(LDLIBS_CJSON)

fuzz-common: $(FUZZ_COMMON_BINS)

TEST_BINS	+= $(FUZZ_COMMON_BINS)
SUITES		+= 'fuzz-common=sh tests/fuzz/run-common.sh'

.PHONY: fuzz-common
