# policy/sandbox/ fragment: the CLI child's sandbox and the worker's own
# confinement, in $(B)/libsandbox.a (link with $(LDLIBS_SECCOMP)).  The
# seccomp profile is compiled in: policy/sandbox/seccomp.profile becomes the
# string sandbox_seccomp_builtin_profile (hotplexd.conf "seccomp = on").
SANDBOX_SRCS	= policy/sandbox/sandbox.c policy/sandbox/landlock.c \
		  policy/sandbox/seccomp.c policy/sandbox/egress.c
SANDBOX_OBJS	= $(SANDBOX_SRCS:%.c=$(B)/%.o) \
		  $(B)/policy/sandbox/seccomp-builtin.o

$(B)/policy/sandbox/seccomp-builtin.c: policy/sandbox/seccomp.profile \
    policy/sandbox/sandbox.mk
	@mkdir -p $(dir $@)
	{ echo '/* Generated from policy/sandbox/seccomp.profile: do not edit. */'; \
	  echo 'extern const char sandbox_seccomp_builtin_profile[];'; \
	  echo 'const char sandbox_seccomp_builtin_profile[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' \
	    policy/sandbox/seccomp.profile; \
	  echo ';'; } > $@.tmp && mv $@.tmp $@

$(B)/policy/sandbox/seccomp-builtin.o: $(B)/policy/sandbox/seccomp-builtin.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libsandbox.a: $(SANDBOX_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
