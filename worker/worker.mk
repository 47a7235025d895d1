# worker/: hotplex-worker
WORKER_SRCS	= worker/worker.c worker/turn.c worker/approval.c worker/spawn.c \
		  worker/cli.c worker/workdir.c worker/bridge.c \
		  worker/gate.c worker/become.c worker/fswatch.c \
		  worker/transcript.c
WORKER_OBJS	= $(WORKER_SRCS:%.c=$(B)/%.o)
BINS		+= $(B)/hotplex-worker

$(B)/hotplex-worker: $(WORKER_OBJS) $(B)/libfirewall.a $(B)/libsandbox.a \
		$(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_ONIG) $(LDLIBS_CJSON) \
		$(LDLIBS_SECCOMP)
