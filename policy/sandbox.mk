# policy/ sandbox fragment: the CLI child's sandbox and the worker's own
# confinement, in $(B)/libsandbox.a (link with $(LDLIBS_SECCOMP)).  The
# seccomp profile is compiled in: policy/seccomp.profile becomes the string
# seccomp_builtin_profile (hotplexd.conf "seccomp = on").
SANDBOX_SRCS	= policy/sandbox.c policy/landlock.c policy/seccomp.c \
		  policy/egress.c
SANDBOX_OBJS	= $(SANDBOX_SRCS:%.c=$(B)/%.o) $(B)/policy/seccomp-builtin.o

$(B)/policy/seccomp-builtin.c: policy/seccomp.profile policy/sandbox.mk
	@mkdir -p $(dir $@)
	{ echo '/* Generated from policy/seccomp.profile: do not edit. */'; \
	  echo 'extern const char seccomp_builtin_profile[];'; \
	  echo 'const char seccomp_builtin_profile[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' \
	    policy/seccomp.profile; \
	  echo ';'; } > $@.tmp && mv $@.tmp $@

$(B)/policy/seccomp-builtin.o: $(B)/policy/seccomp-builtin.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libsandbox.a: $(SANDBOX_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
