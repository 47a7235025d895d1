# policy/ sandbox fragment: the CLI child's sandbox and the worker's own
# confinement, in $(B)/libsandbox.a (link with $(LDLIBS_SECCOMP)).
SANDBOX_SRCS	= policy/sandbox.c policy/landlock.c policy/seccomp.c \
		  policy/egress.c
SANDBOX_OBJS	= $(SANDBOX_SRCS:%.c=$(B)/%.o)

$(B)/libsandbox.a: $(SANDBOX_OBJS)
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
