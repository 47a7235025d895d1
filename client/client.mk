# client/: libhotplex (public header client/hotplex.h) and hotplexctl.
LIBHOTPLEX_OBJS	= $(B)/client/libhotplex.o
HOTPLEXCTL_OBJS	= $(B)/client/hotplexctl.o

$(B)/libhotplex.a: $(LIBHOTPLEX_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(B)/hotplexctl: $(HOTPLEXCTL_OBJS) $(B)/libhotplex.a $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_CJSON)

BINS	+= $(B)/libhotplex.a $(B)/hotplexctl
