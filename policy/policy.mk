# policy/ fragment: the prompt and tool-call firewall in $(B)/libpolicy.a
# (link with $(LDLIBS_ONIG) $(LDLIBS_CJSON) and $(B)/libcommon.a).
POLICY_SRCS	= policy/rules.c policy/normalize.c policy/prefilter.c \
		  policy/firewall.c
POLICY_OBJS	= $(POLICY_SRCS:%.c=$(B)/%.o)
POLICY_RULES	= $(sort $(wildcard policy/rules/*.rules))

$(B)/libpolicy.a: $(POLICY_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
