# policy/firewall/ fragment: the prompt and tool-call firewall in
# $(B)/libfirewall.a
# (link with $(LDLIBS_ONIG) $(LDLIBS_CJSON) and $(B)/libcommon.a; the
# digest is common/sha256.c's, no libcrypto).
POLICY_SRCS	= policy/firewall/rules.c policy/firewall/normalize.c \
		  policy/firewall/prefilter.c policy/firewall/literals.c \
		  policy/firewall/firewall.c \
		  policy/firewall/digest.c
POLICY_OBJS	= $(POLICY_SRCS:%.c=$(B)/%.o)
POLICY_RULES	= $(sort $(wildcard policy/firewall/rules/*.rules))

# The default rules, built in: hotplexd screens with them whatever the config.
$(B)/policy/firewall/rules-builtin.c: $(POLICY_RULES) \
    policy/firewall/rules-gen.sh
	@mkdir -p $(dir $@)
	sh policy/firewall/rules-gen.sh $(POLICY_RULES) > $@.tmp && mv $@.tmp $@

$(B)/policy/firewall/rules-builtin.o: $(B)/policy/firewall/rules-builtin.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libfirewall.a: $(POLICY_OBJS) $(B)/policy/firewall/rules-builtin.o
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
