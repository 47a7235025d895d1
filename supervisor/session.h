/*
 * Internal to the session module (session.c, session-ops.c,
 * session-worker.c, relay.c); the rest of hotplexd uses hotplexd.h.
 */
#ifndef SUPERVISOR_SESSION_H
#define SUPERVISOR_SESSION_H

/* session.c: the table, the object, the state machine, the waiters */
void		 session_set_state(struct session *, enum session_state);
void		 session_waiter_set(struct waiter *, struct client *,
		    const char *req);
void		 session_waiter_clear(struct waiter *);
int		 session_waiting(const struct waiter *);
void		 session_waiter_ok(struct waiter *);
void		 session_waiter_error(const struct session *, struct waiter *,
		    const char *code, const char *message);
void		 session_dequeue(struct session *);
void		 session_trim_ended(void);
void		 session_forget(struct session *);
int		 session_owner(struct client *, const char *req, const cJSON *,
		    uid_t *);
uid_t		 session_dynamic_uid(void);
int		 session_run_ident(struct session *, const struct client *,
		    char *err, size_t errlen);
int		 session_approval_remove(struct session *,
		    const char *request_id);
void		 session_approvals_clear(struct session *);
void		 session_tasks_seen(struct session *, const char *tail,
		    size_t len);
void		 session_rate_limit_seen(struct session *, const char *tail,
		    size_t len);
void		 session_rate_limit_json(const struct session *, cJSON *);
cJSON		*session_stats_json(const struct session *);
void		 session_freeze_arm(struct session *);
void		 session_thaw(struct session *);
void		 session_send(struct session *, uint16_t type, const cJSON *);
#define SESSION_STOP_MSG	0x1	/* MSG_STOP to the worker */
#define SESSION_STOP_DORMANT	0x2	/* dormant after, not ended */
#define SESSION_STOP_IDLE	0x4	/* idle_timeout: paced, not thawed */
void		 session_stopping(struct session *, int how);
int		 session_assign(struct session *);
void		 session_rescreen(struct session *);
void		 session_turn_begin(struct session *);
void		 session_turn_close(struct session *);
void		 session_turn_count(struct session *, int failed);
void		 session_turn_fail(struct session *, const char *code,
		    const char *message);
void		 session_idle_arm(struct session *);

/* session-ops.c: the client ops, the queued turns */
struct session	*session_lookup(struct client *, const char *req,
		    const cJSON *);
struct session	*session_lookup_served(struct client *, const char *req,
		    const cJSON *);
void		 session_configure_done(struct session *, int live,
		    const char *why);
void		 session_turnq_cancel(struct session *, const char *code,
		    const char *why);
void		 session_turnq_run(evutil_socket_t, short, void *);

/* session-worker.c: what the worker is sent and what it sends back */
cJSON		*session_open_msg(struct session *, int probe);

/* relay.c: seq, prefix, ring, followers */
void		 session_emit_own(struct session *, const char *tail, size_t len);
void		 session_emit_tail(struct session *, const char *tail,
		    size_t len);
void		 session_emit(struct session *, const char *type, cJSON *data);
void		 session_prefix(struct session *, const char *req);
int		 session_follower_remove(struct session *, struct client *);

#endif /* SUPERVISOR_SESSION_H */
