# common/: logging, allocation, config, framing, protocol names, stats.
COMMON_SRCS	= common/log.c common/xmalloc.c
COMMON_OBJS	= $(COMMON_SRCS:%.c=$(B)/%.o)
$(B)/libcommon.a: $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
