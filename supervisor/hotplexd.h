/*
 * hotplexd: the master.  One libevent loop; clients on a Unix socket
 * (server.c, server-client.c), sessions (session.c; their ops in
 * session-ops.c, their workers' messages in session-worker.c, their
 * fan-out in relay.c), the pre-forked worker pool (pool.c).
 */
#ifndef HP_HOTPLEXD_H
#define HP_HOTPLEXD_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <stdint.h>

#include <cJSON.h>

#include "common/config.h"
#include "common/ident.h"
#include "common/line.h"
#include "common/proto.h"
#include "common/stats.h"
#include "common/util.h"
#include "supervisor/gateway.h"
#include "supervisor/ring.h"

#ifndef TAILQ_FOREACH_SAFE	/* glibc's sys/queue.h lacks it */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

/*
 * Event priorities of the master's loop (libevent runs only the most
 * urgent non-empty level per pass): the I/O of clients and of live
 * sessions' workers first, then timers, then bulk work (reaps, idle
 * expiry and freezing, stopping workers, sweeps, store upkeep).  At most
 * HP_BULK_BATCH bulk callbacks run per pass before new I/O is polled, so
 * a wave of sessions ending together is spread over many passes.
 */
#define HP_PRIO_IO	0
#define HP_PRIO_TIMER	1	/* libevent's default for 3 levels */
#define HP_PRIO_BULK	2
#define HP_PRIO_LEVELS	3
#define HP_BULK_BATCH	8

struct event_base;
struct bufferevent;
struct screen;
struct msg;
struct peer;
struct audit_pending;
struct policy_verdict;

/* A connection on the control socket. */
struct client {
	TAILQ_ENTRY(client)	 entry;
	uint64_t		 id;
	struct bufferevent	*bev;
	uid_t			 uid;
	gid_t			 gid;
	pid_t			 pid;
	size_t			 ngroups;	/* SO_PEERGROUPS */
	gid_t			 groups[IDENT_GROUPS_MAX];
	int			 admin;
	int			 said_hello;
	int			 closing;	/* flush, then free */
	int			 lingering;	/* flushed, half-closed */
	int			 stalled;	/* above client_pause_bytes */
	struct event		*stall_timer;	/* ... for too long: cut off */
	struct line_reader	 reader;
	unsigned		 refs;	/* sessions' pointers to it (session.c) */
	/* Workers not read while it does not (relay.c): resumed with it. */
	TAILQ_HEAD(, worker)	 paused;
	/* What points at it (refs): cleared when it goes, no table walk. */
	LIST_HEAD(, waiter)	 waiters;
	LIST_HEAD(, session_follow) follows;
};
TAILQ_HEAD(clients, client);

/* A pre-forked worker process and our end of its socketpair. */
struct worker {
	TAILQ_ENTRY(worker)	 entry;
	TAILQ_ENTRY(worker)	 spare_entry;	/* pool.c's ready spares */
	LIST_ENTRY(worker)	 hash;		/* pool.c's pid hash */
	int			 spare;		/* on the spare list */
	int			 starting;	/* spawned, not ready yet */
	pid_t			 pid;
	struct peer		*peer;		/* its channel (peer.c) */
	int			 hello;		/* said hello: our version */
	int			 ready;		/* compiled its rules (MSG_READY) */
	int			 dead;
	int			 closed;	/* EOF seen: never reuse */
	int			 reaped;
	int			 killed;	/* nothing more is read */
	int			 other_version;	/* speaks another MSG_VERSION */
	int			 status;	/* wait status once reaped */
	int			 served;	/* was given a session */
	struct event		*hello_timer;
	struct session		*session;	/* NULL while spare */
	int			 paused;	/* not read: its client is slow */
	struct client		*paused_for;	/* ... that client, on its list */
	TAILQ_ENTRY(worker)	 paused_entry;
	uint64_t		 started_ms;
	TAILQ_ENTRY(worker)	 stop_entry;	/* pool.c's stop queue */
	int			 stop_queued;	/* to be told when a slot frees */
	int			 stop_sent;	/* told to stop, not yet gone */
	int			 stop_idle;	/* its session's idle_timeout */
	uint32_t		 stop_turn;
	/* Let go by its session on a move (pool_worker_orphan): stopping. */
	int			 orphan;
	uid_t			 orphan_uid;
	char			*orphan_name;	/* owned: whose TMPDIR to remove */
	struct screen		*screen;	/* the rules it was given (a ref) */
};
TAILQ_HEAD(workers, worker);

#define SESSION_FOLLOWERS_MAX	16	/* attached clients per session */
#define SESSION_APPROVALS_MAX	16	/* = the worker's WORKER_APPROVALS_MAX */

/* Who is waiting for a reply from a session: (client, request id). */
struct waiter {
	struct client		*c;		/* NULL once the client left */
	char			*req;		/* owned */
	LIST_ENTRY(waiter)	 cref;		/* on c's list while c is set */
};

/* A session a client follows (attach): on the client's list. */
struct session_follow {
	LIST_ENTRY(session_follow) entry;
	struct session		*s;
};

/* An execute with "queue": true, waiting for its session's turn to end. */
struct queued_turn {
	TAILQ_ENTRY(queued_turn) entry;
	struct waiter		 w;
	uid_t			 uid;		/* the requester, for the audit */
	pid_t			 pid;
	char			*prompt;	/* owned */
	int			 slash;
	uint64_t		 timeout_ms;
};
TAILQ_HEAD(queued_turns, queued_turn);

/* A session's turn in flight or waiting for a worker: session.c's. */
struct session_turn {
	char			*prefix;	/* {"id":..,"session":..,"seq": */
	size_t			 prefix_len;
	char			*pending_prompt;	/* before the CLI is up */
	char			*prompt;	/* sent; kept for one retry */
	int			 retried;
	int			 sent;		/* reached a worker: it counts */
	int			 counted;	/* in total.turns already */
	int			 retry_pending;	/* ignore the old worker's turn */
	uint64_t		 events;	/* from the worker, this turn */
	int			 pending_slash;
	uint64_t		 pending_timeout_ms;
	int			 cold;		/* this turn spawned the CLI */
	uint64_t		 request_us;	/* when the execute/open came */
	uint64_t		 move_us;	/* waited for another host (move.c) */
	uint64_t		 assign_us;	/* request to worker assigned */
	uint64_t		 screened;	/* the rules generation its
						   prompt passed (0: none) */
	double			 gw_cost_usd;	/* its API calls so far (budget.c) */
	int			 budget_stop;	/* interrupted: over budget */
};

struct session {
	TAILQ_ENTRY(session)	 entry;
	TAILQ_ENTRY(session)	 wait_entry;	/* waiting for a worker */
	int			 queued;	/* ... on session.c's queue */
	LIST_ENTRY(session)	 name_entry;	/* session.c's hash by name */
	TAILQ_ENTRY(session)	 ended_entry;	/* ended, oldest first */
	int			 on_ended;	/* ... on session.c's list */
	char			*name;
	uid_t			 uid;		/* owner: names are per uid */
	struct ident		 run;		/* who its CLI runs as */
	int			 run_known;	/* run decided */
	int			 run_held;	/* counted: census_run */
	char			*workdir;
	enum session_state	 state;
	char			 cli_session_id[UUID_STR_LEN + 1];
	int			 has_conversation; /* --resume works */
	cJSON			*options;	/* owned, from the first request */
	struct worker		*worker;
	struct screen		*screen;	/* its worker's rules (a ref):
						   its prompts' too */
	pid_t			 cli_pid;
	uint64_t		 seq;
	uint64_t		 created_ms, active_ms;
	struct event		*idle_timer;
	struct event		*freeze_timer;
	int			 frozen;	/* its CLI's group SIGSTOPped */
	int			 bg_tasks;	/* the CLI's background tasks
						   running: no freeze, no idle stop */

	/* Another host asked for it (move.c): the host, while it is let go. */
	char			*move_to;	/* owned; NULL: not moving */
	struct event		*move_timer;	/* move_timeout on its turn */
	int			 move_stopping;	/* its CLI is being stopped */
	int			 worker_turn;	/* sent, the worker's end not in:
						   its transcript may lag */
	int			 cli_own;	/* a turn the CLI began by itself
						   runs (its cli_turn not in) */

	/* The turn in flight or waiting for a worker. */
	uint32_t		 turn;
	struct waiter		 exec;
	struct session_turn	 cur;
	int			 resumed;

	/* Rate-limit events seen, and the last one's data (JSON text). */
	uint64_t		 rate_limits;
	char			*rate_limit_last;	/* owned */

	/* A configure waiting for the CLI, and the settings it brings. */
	struct waiter		 configure;
	cJSON			*configure_pending;	/* owned */

	/* Permission requests put to the app and not yet answered. */
	char			*approvals[SESSION_APPROVALS_MAX];
	size_t			 napprovals;

	/* Executes with "queue": true, first in first out. */
	struct queued_turns	 turnq;
	int			 nturnq;
	struct event		*turnq_ev;	/* starts the head, from the loop */

	struct waiter		 open;		/* an open waiting for the probe */
	struct waiter		 stop;		/* a stop waiting for the exit */
	int			 stop_final;	/* stop -> ended, else dormant */

	struct stats		 total;
	struct stats		 last;
	struct audit_pending	*audit;		/* tool calls in flight */

	/* The gateway: this CLI's token, and what its requests did. */
	uint64_t		 gw_sid;
	LIST_ENTRY(session)	 gw_entry;	/* by gw_sid, once it has one */
	char			 gw_token[GATEWAY_TOKEN_LEN + 1];
	struct gateway_stats	 gw;

	/* attach: recent lines, and the clients that follow the session. */
	struct ring		 ring;
	struct client		*followers[SESSION_FOLLOWERS_MAX];
	size_t			 nfollowers;

	/* The lease (lease.c): its fencing counter while this host has it. */
	int64_t			 lease_fence;	/* 0: not this host's */
	uint64_t		 lease_seen;	/* the renewal that last saw it */
};
TAILQ_HEAD(sessions, session);

struct hotplexd {
	struct event_base	*base;
	struct config		*conf;
	struct screen		*screen;	/* firewall, swapped with conf */
	char			*conf_path;
	char			*worker_path;
	int			 foreground;
	int			 conf_given;	/* -c: the file must exist */
	int			 level_override;	/* -d, or -1 */
	int			 shutting_down;
	int			 draining;	/* drain op: no new session */
	int			 spawner_lost;	/* it exited: we end */
	uid_t			 start_euid;	/* before any drop */
	gid_t			 start_egid;
	struct clients		 clients;
	size_t			 nclients;
	struct sessions		 sessions;
	struct workers		 workers;
	uint64_t		 next_client_id;
	struct stats		 ended_total;	/* stats of forgotten sessions */
	/* /metrics: kept as turns end, never summed over the table. */
	struct stats		 all_total;	/* forgotten sessions too */
	uint64_t		 rate_limits;	/* of the sessions in the table */
};
extern struct hotplexd hp;

/* hotplexd.c */
void	 hotplexd_check_exit(void);
void	 hotplexd_spawner_lost(void);
int	 hotplexd_reload(char *err, size_t errlen);

/* health.c: /healthz, /readyz and the status op. */
#define HEALTH_CHECKS_MAX	8
#define HEALTH_DETAIL_MAX	256
struct health_check {
	const char	*name;
	int		 ok;
	char		 detail[HEALTH_DETAIL_MAX];
};
void	 health_init(void);
size_t	 health_ready(struct health_check *, int *ready);
cJSON	*health_status(void);

/* check.c: hotplexd -n, what a turn needs: 0 all there, -1 not. */
int	 check_install(const struct config *, const char *worker_path);
void	 hotplexd_shutdown(void);

/*
 * Out of descriptors, a listening socket stays readable: its accepts stop
 * for this long (server.c, metrics.c) rather than spin.
 */
#define ACCEPT_PAUSE_S	1

/* metrics.c */
struct sockaddr_storage;
int	 metrics_parse(const char *, struct sockaddr_storage *, socklen_t *,
	    char *, size_t);
int	 metrics_listen(void);		/* bind before daemonizing */
void	 metrics_start(void);
void	 metrics_stop(void);

/* server.c */
int	 server_listen(void);		/* bind before daemonizing */
void	 server_start(void);		/* accept from the loop */
void	 server_close(void);

/* server-client.c */
void	 server_client_new(int fd);
void	 server_client_free(struct client *);
void	 server_client_write(struct client *, const char *, size_t);
void	 server_client_close(struct client *);
void	 server_client_reply(struct client *, const char *req, const char *type,
	    cJSON *data);
void	 server_client_send(struct client *, cJSON *);	/* consumed */
void	 server_client_error(struct client *, const char *req,
	    const char *session, const char *code, const char *fmt, ...)
	    __attribute__((format(printf, 5, 6)));
void	 server_client_ok(struct client *, const char *req, cJSON *data);

/* state.c: the session table in the store, across restarts */
#define STATE_HOST_ID_MAX	64	/* bytes of [A-Za-z0-9._:-] */
void	 state_load(void);		/* at start-up, before the pool */
/* 0 committed, STORE_FENCED (the lease is lost: lease_lost() ran), -1. */
int	 state_session_save(struct session *);
void	 state_session_forget(const struct session *);
void	 state_totals_save(void);	/* hp.ended_total */
void	 state_close(void);
int	 state_valid_host_id(const char *);
const char *state_host_id(void);
/*
 * 1 when session ops may run; 0 with why while a host just started waits
 * for its shared store to answer and the hosts' channel to listen.
 */
int	 state_serving(char *why, size_t len);
void	 state_channel_up(void);	/* move.c: the channel listens */
/* A shared store's row of another host into the table (NULL: none). */
struct session *state_session_adopt(uid_t, const char *name);
/* The table's copy of a session brought up to its row; -1 on failure. */
int	 state_session_refresh(struct session *);

/*
 * lease.c: a session is served by the host that holds its lease.  With one
 * host (SQLite) every lease is granted; with a shared store they are taken
 * in the store, renewed every lease_timeout/3 and given back on stop and
 * shutdown.
 */
#define LEASE_TIMEOUT_MIN_MS	1000
void	 lease_init(void);		/* after state_load() */
void	 lease_close(void);		/* gives every lease back */
/*
 * 0: this host's now (or already; the session brought up to its row);
 * 1: another host's (why names it); -1: the store failed (why says so).
 */
int	 lease_take(struct session *, char *why, size_t whylen);
/*
 * A session the table lacks, from a shared store's row, with its lease:
 * as lease_take(); *sp NULL when there is no such row.
 */
int	 lease_adopt(uid_t, const char *name, struct session **sp, char *why,
	    size_t whylen);
void	 lease_drop(struct session *);
/* "host (for N ms more)": who held the lease lease_take/adopt refused. */
const char *lease_holder(void);
/* A write was fenced or a renewal missed it: stop serving the session. */
void	 lease_lost(struct session *, const char *why);

/* transcript.c: the CLI's transcripts in the store */
struct msg_transcript;
void	 transcript_piece(struct session *, const struct msg_transcript *);
void	 transcript_send(struct session *, struct worker *);
void	 transcript_forget(struct session *);

/* audit.c: the tool audit in the store */
void	 audit_init(void);
void	 audit_stop(void);
void	 audit_event(struct session *, const char *tail, size_t len);
void	 audit_turn_end(struct session *);

/* budget.c */
double	 budget_price(const char *model, uint64_t in, uint64_t out,
	    uint64_t cache_read, uint64_t cache_write);
double	 budget_session(const struct session *);
double	 budget_spent(const struct session *);
double	 budget_uid_spent(uid_t);
int	 budget_reached(const struct session *, char *why, size_t len);
void	 budget_gateway(struct session *, const char *model, uint64_t in,
	    uint64_t out, uint64_t cache_read, uint64_t cache_write);
void	 budget_forget(const struct session *);
cJSON	*budget_totals_json(void);
void	 budget_totals_load(const cJSON *);
void	 budget_free(void);

/* ratelimit.c */
void	 ratelimit_record(struct session *, int status, const cJSON *headers);
int	 ratelimit_admit(uint64_t *retry_after_ms);
void	 ratelimit_json(cJSON *into);
void	 audit_app_answer(struct session *, const char *request_id, uid_t);
void	 audit_firewall(struct session *, const char *prompt,
	    const struct policy_verdict *);
void	 audit_session_free(struct session *);
void	 audit_op(struct client *, const char *req, const cJSON *);

/* session.c, session-ops.c (session_op_*), session-worker.c, relay.c */
struct session *session_new(const char *name, uid_t uid, const char *workdir,
	    const cJSON *options);
struct session *session_find(const char *name, uid_t uid);
int	 session_visible(const struct session *, const struct client *);
void	 session_op_execute(struct client *, const char *req, const cJSON *);
void	 session_op_open(struct client *, const char *req, const cJSON *);
void	 session_op_interrupt(struct client *, const char *req, const cJSON *);
void	 session_op_stop(struct client *, const char *req, const cJSON *);
void	 session_op_reset(struct client *, const char *req, const cJSON *);
void	 session_op_stats(struct client *, const char *req, const cJSON *);
void	 session_op_sessions(struct client *, const char *req, const cJSON *);
void	 session_op_policy_check(struct client *, const char *req,
	    const cJSON *);
void	 session_op_attach(struct client *, const char *req, const cJSON *);
void	 session_op_detach(struct client *, const char *req, const cJSON *);
void	 session_op_permission(struct client *, const char *req,
	    const cJSON *);
void	 session_op_configure(struct client *, const char *req,
	    const cJSON *);
void	 session_client_gone(struct client *);
void	 session_event(struct session *, const char *type, cJSON *data);
void	 session_client_reads(struct client *);
void	 session_worker_unpause(struct worker *);
void	 session_worker_msg(struct session *, struct worker *, struct msg *);
void	 session_worker_gone(struct session *, struct worker *, int status);
void	 session_worker_ready(void);
void	 session_shutdown(void);
void	 session_drain(void);
void	 session_spawn_failed(const char *code, const char *why);
int	 session_queued(void);
void	 session_run_count(struct session *);
int	 session_count_live(void);
void	 session_end(struct session *);
void	 session_lease_lost(struct session *, const char *why);
void	 session_unload(struct session *);
void	 session_free_all(void);
void	 session_tmpdirs_clear(void);

/*
 * move.c: a session moves to the host where a request for it arrived
 * (shared store); the hosts talk over LISTEN/NOTIFY (notify.c).
 */
typedef void (*move_op_fn)(struct client *, const char *req, const cJSON *);
void	 move_init(void);
void	 move_close(void);
/* 1: the request waits for the holder to let go; 0: refuse it now. */
int	 move_ask(struct client *, const char *req, const cJSON *, move_op_fn,
	    uid_t, const char *name, const char *holder);
void	 move_client_gone(struct client *);
void	 move_release(struct session *);	/* no turn runs now */
void	 move_finish(struct session *);		/* its CLI is gone */
int	 move_drain(void);	/* every session let go; how many */
int	 move_undrain(void);	/* sessions taken again; was it drained */
void	 move_stats(uint64_t *count, uint64_t *mean_us);
/* While a request waited for another host runs again: how long; else 0. */
uint64_t move_waited_us(void);
/* session.c's part of a move */
void	 session_stop_cli(struct session *);
void	 session_worker_detach(struct session *);	/* move.c's fast way */
void	 session_notice(struct session *, const char *type, cJSON *data);
void	 session_end_turn(struct session *, const char *code,
	    const char *message);
int	 session_running(const struct session *);
void	 session_turnq_cancel(struct session *, const char *code,
	    const char *why);

/* isolation.c: what confines the sessions, told at start and to clients */
void	 isolation_report(void (*)(const char *));
cJSON	*isolation_json(void);
int	 isolation_ident(uid_t peer_uid, gid_t peer_gid, const gid_t *groups,
	    size_t ngroups, uid_t dynamic_uid, struct ident *, char *err,
	    size_t errlen);

/* pool.c */
void	 pool_init(void);
void	 pool_free(void);
void	 pool_release(struct worker *);
void	 pool_refill(void);
struct worker *pool_take(int *err);
void	 pool_send(struct worker *, uint16_t type, uint32_t turn,
	    const cJSON *);
struct msg_turn;
struct msg_permission;
void	 pool_send_permission(struct worker *, uint32_t turn,
	    const struct msg_permission *);
struct msg_configure;
void	 pool_send_configure(struct worker *, uint32_t turn,
	    const struct msg_configure *);
void	 pool_send_turn(struct worker *, uint32_t turn,
	    const struct msg_turn *);
void	 pool_send_transcript(struct worker *, uint32_t turn,
	    const struct msg_transcript *);
void	 pool_kill_all(void);
void	 pool_kill_hard(void);
void	 pool_worker_kill(struct worker *, const char *why);
void	 pool_worker_bulk(struct worker *);
void	 pool_worker_stop(struct worker *, uint32_t turn);
void	 pool_worker_stop_idle(struct worker *, uint32_t turn);
void	 pool_worker_orphan(struct worker *, uid_t, const char *name,
	    uint32_t turn);
int	 pool_count(void);
int	 pool_spares(void);
int	 pool_ready_spares(void);
void	 pool_screen_changed(void);

/* privsep.c: the master drops root once the spawner has it */
void	 privsep_drop(void);
void	 privsep_report(char *, size_t);
int	 privsep_dropped(void);
int	 privsep_is_daemon_uid(uid_t);

/* spawner.c: the privileged part, asked by typed requests */
void	 spawner_start(const char *pidfile);
pid_t	 spawner_pid(void);
int	 spawner_exits_fd(void);
void	 spawner_loop_init(struct event_base *, void (*)(pid_t, int, int));
int	 spawner_spawn(int level, int json);
void	 spawner_kill(pid_t worker, int sig);
void	 spawner_killpg(pid_t worker, pid_t pgid, int sig);
int	 spawner_rmtmp(uid_t, const char *name);
void	 spawner_rmtmp_settle(uid_t, const char *name);
int	 spawner_log_reopen(void);
int	 spawner_read_exits(void (*)(pid_t, int), int max);
int	 spawner_reaped(pid_t, int status);
void	 spawner_stop(void);

#endif
