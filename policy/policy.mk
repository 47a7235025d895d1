# policy/ fragment: the prompt and tool-call firewall in $(B)/libpolicy.a
# (link with $(LDLIBS_ONIG) $(LDLIBS_CJSON) and $(B)/libcommon.a).
POLICY_SRCS	= policy/rules.c policy/normalize.c policy/prefilter.c \
		  policy/firewall.c
POLICY_OBJS	= $(POLICY_SRCS:%.c=$(B)/%.o)
POLICY_RULES	= $(sort $(wildcard policy/rules/*.rules))

# The default rules, built in: hotplexd screens with them whatever the config.
$(B)/policy/rules-builtin.c: $(POLICY_RULES) policy/rules-gen.sh
	@mkdir -p $(dir $@)
	sh policy/rules-gen.sh $(POLICY_RULES) > $@.tmp && mv $@.tmp $@

$(B)/policy/rules-builtin.o: $(B)/policy/rules-builtin.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libpolicy.a: $(POLICY_OBJS) $(B)/policy/rules-builtin.o
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
