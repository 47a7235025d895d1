# worker/: hotplex-worker
WORKER_SRCS	= worker/worker.c worker/turn.c worker/approval.c worker/spawn.c \
		  worker/cli.c worker/workdir.c worker/bridge.c \
		  worker/gate.c worker/become.c worker/fswatch.c \
		  worker/transcript.c
WORKER_OBJS	= $(WORKER_SRCS:%.c=$(B)/%.o)
BINS		+= $(B)/hotplex-worker

# One process per session, started in every burst: libevent's core and
# libseccomp are linked in (Debian ships both archives), so the dynamic
# loader maps and relocates two libraries fewer (exec and exit: about 0.5
# ms of CPU less here).  Oniguruma and cJSON ship no archive; they stay
# shared, so the worker is not static-pie.
LDLIBS_WORKER_STATIC = -Wl,-Bstatic -levent_core -lseccomp -Wl,-Bdynamic

$(B)/hotplex-worker: $(WORKER_OBJS) $(B)/libfirewall.a $(B)/libsandbox.a \
		$(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_WORKER_STATIC) $(LDLIBS_ONIG) \
		$(LDLIBS_CJSON)
