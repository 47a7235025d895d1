# common/: logging, allocation, config, framing, protocol names, stats.
COMMON_SRCS	= common/log.c common/xmalloc.c common/proto.c common/msg.c common/peer.c \
		  common/mcp.c \
		  common/json.c common/line.c common/config.c common/util.c common/procfs.c \
		  common/ident.c common/sha256.c $(wildcard common/stats.c)
COMMON_OBJS	= $(COMMON_SRCS:%.c=$(B)/%.o)
$(B)/libcommon.a: $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

# The sample configuration, generated from the table of keys.
$(B)/genconf: $(B)/common/genconf.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_CJSON)
$(B)/hotplexd.conf: $(B)/genconf
	$(B)/genconf >$@.tmp && mv $@.tmp $@
BINS	+= $(B)/hotplexd.conf
