# supervisor/: hotplexd
HOTPLEXD_SRCS	= supervisor/hotplexd.c supervisor/server.c \
		  supervisor/server-client.c supervisor/request.c \
		  supervisor/session.c supervisor/session-ops.c \
		  supervisor/session-worker.c supervisor/relay.c supervisor/pool.c \
		  supervisor/state.c supervisor/store-sqlite.c supervisor/audit.c \
		  supervisor/budget.c supervisor/ratelimit.c \
		  supervisor/screen.c supervisor/ring.c supervisor/metrics.c \
		  supervisor/check.c supervisor/health.c \
		  supervisor/gateway.c supervisor/gateway-proxy.c \
		  supervisor/server-gateway.c \
		  supervisor/isolation.c supervisor/census.c \
		  supervisor/spawner.c supervisor/privsep.c
# The CLI's transcripts in the store (issue 14).
HOTPLEXD_SRCS	+= supervisor/transcript.c
# Sessions moving between hosts over LISTEN/NOTIFY (issue 14).
HOTPLEXD_SRCS	+= supervisor/move.c supervisor/notify.c
# The store's dispatch, its PostgreSQL backend and the sessions' leases.
HOTPLEXD_SRCS	+= supervisor/store.c supervisor/store-pg.c supervisor/lease.c
HOTPLEXD_OBJS	= $(HOTPLEXD_SRCS:%.c=$(B)/%.o)
BINS		+= $(B)/hotplexd

$(B)/hotplexd: $(HOTPLEXD_OBJS) $(B)/libfirewall.a $(B)/libsandbox.a \
		$(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS_EV) $(LDLIBS_SSL) $(LDLIBS_ONIG) \
		$(LDLIBS_CJSON) $(LDLIBS_SECCOMP) $(LDLIBS_SQLITE) \
		$(LDLIBS_PQ)
