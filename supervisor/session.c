/*
 * Sessions: the table, the session object and its one state machine,
 * the waiters, and the turn's life from a worker's assignment to its
 * close.  Every execute ends with exactly one terminal line (done or
 * error), whatever dies on the way.  The ops are in session-ops.c, the
 * worker's messages in session-worker.c, the fan-out in relay.c.
 */
#include <sys/wait.h>

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "supervisor/census.h"
#include "supervisor/hotplexd.h"
#include "supervisor/screen.h"
#include "supervisor/session.h"

#define SESSION_UID_MAX		4294967294.0	/* (uid_t)-1 is no uid */

/* Sessions by name: a request finds its session without a walk. */
#define SESSION_HASH_SIZE	4096	/* a power of two */
LIST_HEAD(session_bucket, session);
static struct session_bucket	session_byname[SESSION_HASH_SIZE];

/* Sessions waiting for a worker, first come first served. */
static TAILQ_HEAD(, session) session_waitq =
    TAILQ_HEAD_INITIALIZER(session_waitq);
static int		session_nqueued;
/* Ended sessions, kept for their stats (max_ended_sessions). */
static TAILQ_HEAD(, session) session_endedq =
    TAILQ_HEAD_INITIALIZER(session_endedq);
static int		session_nended;

static void	session_freeze_fire(evutil_socket_t, short, void *);

void
session_waiter_set(struct waiter *w, struct client *c, const char *req)
{
	free(w->req);
	if (w->c != NULL) {
		LIST_REMOVE(w, cref);
		w->c->refs--;
	}
	w->c = c;
	if (c != NULL) {
		LIST_INSERT_HEAD(&c->waiters, w, cref);
		c->refs++;
	}
	w->req = xstrdup(req);
}

void
session_waiter_clear(struct waiter *w)
{
	free(w->req);
	w->req = NULL;
	if (w->c != NULL) {
		LIST_REMOVE(w, cref);
		w->c->refs--;
	}
	w->c = NULL;
}

int
session_waiting(const struct waiter *w)
{
	return w->req != NULL;
}

/* Answers ok to whoever waits on w, if still connected, and clears it. */
void
session_waiter_ok(struct waiter *w)
{
	if (!session_waiting(w))
		return;
	if (w->c != NULL)
		server_client_ok(w->c, w->req, NULL);
	session_waiter_clear(w);
}

/* The same with an error line of the session. */
void
session_waiter_error(const struct session *s, struct waiter *w,
    const char *code, const char *message)
{
	if (!session_waiting(w))
		return;
	if (w->c != NULL)
		server_client_error(w->c, w->req, s->name, code, "%s", message);
	session_waiter_clear(w);
}

/*
 * The one place a session changes state (DESIGN.md section 4), so that
 * every transition can be followed in the debug log.
 */
void
session_set_state(struct session *s, enum session_state st)
{
	if (s->state == st)
		return;
	log_debug("session %s: %s -> %s", s->name, proto_state_name(s->state),
	    proto_state_name(st));
	census_move(s->uid, s->state, st);
	s->state = st;
	session_run_count(s);
}

/*
 * A live session whose identity is decided holds its run uid (counted in
 * the census): session_dynamic_uid gives it to no other.  Called when
 * either changes.
 */
void
session_run_count(struct session *s)
{
	int	held = s->run_known && s->state != SESSION_ENDED;

	if (held == s->run_held)
		return;
	census_run(s->run.uid, held);
	s->run_held = held;
}

static void
session_enqueue(struct session *s)
{
	if (s->queued)
		return;
	s->queued = 1;
	TAILQ_INSERT_TAIL(&session_waitq, s, wait_entry);
	session_nqueued++;
}

void
session_dequeue(struct session *s)
{
	if (!s->queued)
		return;
	s->queued = 0;
	TAILQ_REMOVE(&session_waitq, s, wait_entry);
	session_nqueued--;
}

/*
 * The session ended: its event ring is freed (an attach gets its stats
 * and the end, not old lines), and it joins the ended, oldest first.
 */
void
session_end(struct session *s)
{
	session_set_state(s, SESSION_ENDED);
	ring_clear(&s->ring);
	s->ring.dropped_to = s->seq;
	if (s->on_ended)
		return;
	s->on_ended = 1;
	TAILQ_INSERT_TAIL(&session_endedq, s, ended_entry);
	session_nended++;
}

/* It runs again (or is freed). */
static void
session_unend(struct session *s)
{
	if (!s->on_ended)
		return;
	s->on_ended = 0;
	TAILQ_REMOVE(&session_endedq, s, ended_entry);
	session_nended--;
}

int
session_queued(void)
{
	return session_nqueued;
}

/* Forgets a permission request; 1 if it was waiting. */
int
session_approval_remove(struct session *s, const char *request_id)
{
	size_t	i;

	for (i = 0; i < s->napprovals; i++) {
		if (strcmp(s->approvals[i], request_id) == 0) {
			free(s->approvals[i]);
			s->approvals[i] = s->approvals[--s->napprovals];
			return 1;
		}
	}
	return 0;
}

void
session_approvals_clear(struct session *s)
{
	while (s->napprovals > 0)
		free(s->approvals[--s->napprovals]);
}

/*
 * A system/rate_limit event (the bridge puts its subtype first): counted,
 * and the last one kept for sessions and stats.
 */
void
session_rate_limit_seen(struct session *s, const char *tail, size_t len)
{
	static const char rl[] =
	    "\"type\":\"system\",\"data\":{\"subtype\":\"rate_limit\"";
	const char	*d, *end;

	if (!json_tail_is(tail, len, rl))
		return;
	s->rate_limits++;
	hp.rate_limits++;
	/* The data object: from its '{' to the tail's last '}' excluded. */
	d = tail + sizeof "\"type\":\"system\",\"data\":" - 1;
	end = tail + len - 1;
	free(s->rate_limit_last);
	s->rate_limit_last = xstrndup(d, (size_t)(end - d));
}

/*
 * The CLI's background tasks (system/background_tasks_changed lists the
 * running ones): while one runs, the session is not idle, whatever its
 * turns say, so it is neither frozen nor stopped for idleness with its
 * task.  When the list empties both timers start again.
 */
void
session_tasks_seen(struct session *s, const char *tail, size_t len)
{
	static const char bt[] = "\"type\":\"system\",\"data\":{\"subtype\":"
	    "\"background_tasks_changed\"";
	const char	*d;
	const cJSON	*tasks;
	cJSON		*o;
	int		 was = s->bg_tasks;

	if (!json_tail_is(tail, len, bt))
		return;
	/* The data object: from its '{' to the tail's last '}' excluded. */
	d = tail + sizeof "\"type\":\"system\",\"data\":" - 1;
	if ((o = cJSON_ParseWithLength(d, (size_t)(tail + len - 1 - d))) ==
	    NULL)
		return;
	tasks = cJSON_GetObjectItemCaseSensitive(o, "tasks");
	s->bg_tasks = cJSON_IsArray(tasks) ? cJSON_GetArraySize(tasks) : 0;
	cJSON_Delete(o);
	if (s->bg_tasks > 0 && was == 0) {
		log_debug("session %s: %d background tasks; not idle",
		    s->name, s->bg_tasks);
		session_thaw(s);
		event_del(s->idle_timer);
	} else if (s->bg_tasks == 0 && was > 0 && s->state == SESSION_READY) {
		event_del(s->idle_timer);	/* re-assigned by the arm */
		session_idle_arm(s);
	}
}

static struct session_bucket *
session_bucket(const char *name)
{
	uint32_t	h = 2166136261u;	/* FNV-1a */

	while (*name != '\0')
		h = (h ^ (unsigned char)*name++) * 16777619u;
	return &session_byname[h & (SESSION_HASH_SIZE - 1)];
}

/* Names are per uid: one user's "x" and another's are two sessions. */
struct session *
session_find(const char *name, uid_t uid)
{
	struct session	*s;

	LIST_FOREACH(s, session_bucket(name), name_entry)
		if (s->uid == uid && strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

/*
 * Whose session a request means: the client's own, or, for an
 * administrator, the one its "uid" field names.  -1 after replying.
 */
int
session_owner(struct client *c, const char *req, const cJSON *r,
    uid_t *uid)
{
	const cJSON	*u = cJSON_GetObjectItemCaseSensitive(r, "uid");

	*uid = c->uid;
	if (u == NULL)
		return 0;
	if (!cJSON_IsNumber(u) || u->valuedouble < 0 ||
	    u->valuedouble > SESSION_UID_MAX ||
	    u->valuedouble != (double)(uid_t)u->valuedouble) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "\"uid\" must be a uid");
		return -1;
	}
	if (!c->admin && (uid_t)u->valuedouble != c->uid) {
		server_client_error(c, req, NULL, ERR_FORBIDDEN,
		    "only administrators address another user's sessions");
		return -1;
	}
	*uid = (uid_t)u->valuedouble;
	return 0;
}

/*
 * session_user = dynamic: the lowest uid of the range no live session
 * runs as (0 if none is free, or another session_user).  A hash lookup per
 * uid held below it, never a walk of the table: it is on the open path.
 */
uid_t
session_dynamic_uid(void)
{
	uid_t	lo, hi, u;

	if (hp.conf->session_user == NULL ||
	    strcmp(hp.conf->session_user, "dynamic") != 0 ||
	    ident_range_parse(hp.conf->dynamic_uids, &lo, &hi) == -1)
		return 0;
	for (u = lo; u <= hi; u++)
		if (census_run_held(u) == 0)
			return u;
	return 0;
}

/*
 * Who the session runs as, decided once: from the creator's socket
 * credentials when it is the creator who asks, else (a session restored
 * from the state file, an administrator acting) from the user database.
 */
int
session_run_ident(struct session *s, const struct client *c, char *err,
    size_t errlen)
{
	struct passwd	*pw;
	gid_t		 groups[IDENT_GROUPS_MAX], gid = (gid_t)s->uid;
	int		 ngroups = IDENT_GROUPS_MAX;

	if (s->run_known)
		return 0;
	if (c != NULL && c->uid == s->uid) {
		if (isolation_ident(c->uid, c->gid, c->groups, c->ngroups,
		    session_dynamic_uid(), &s->run, err, errlen) == -1)
			return -1;
	} else {
		if ((pw = getpwuid(s->uid)) != NULL) {
			gid = pw->pw_gid;
			if (getgrouplist(pw->pw_name, gid, groups,
			    &ngroups) == -1)
				ngroups = 0;
		} else
			ngroups = 0;
		if (isolation_ident(s->uid, gid, groups, (size_t)ngroups,
		    session_dynamic_uid(), &s->run, err, errlen) == -1)
			return -1;
	}
	s->run_known = 1;
	session_run_count(s);
	return 0;
}

/* Others' sessions do not exist for a non-admin (no existence oracle). */
int
session_visible(const struct session *s, const struct client *c)
{
	return c->admin || s->uid == c->uid;
}

int
session_count_live(void)
{
	struct session	*s;
	int		 n = 0;

	TAILQ_FOREACH(s, &hp.sessions, entry)
		if (session_waiting(&s->exec))
			n++;
	return n;
}

struct session *
session_new(const char *name, uid_t uid, const char *workdir,
    const cJSON *options)
{
	struct session	*s = xcalloc(1, sizeof *s);

	s->name = xstrdup(name);
	s->uid = uid;
	s->workdir = xstrdup(workdir);
	census_move(uid, CENSUS_NONE, s->state);	/* zeroed: starting */
	session_set_state(s, SESSION_DORMANT);
	util_uuid(s->cli_session_id);
	s->options = options != NULL ? cJSON_Duplicate(options, 1) :
	    cJSON_CreateObject();
	s->created_ms = s->active_ms = util_now_ms();
	s->idle_timer = evtimer_new(hp.base, NULL, NULL);
	s->freeze_timer = evtimer_new(hp.base, session_freeze_fire, s);
	event_priority_set(s->freeze_timer, HP_PRIO_BULK);
	TAILQ_INIT(&s->turnq);
	s->turnq_ev = evtimer_new(hp.base, session_turnq_run, s);
	ring_init(&s->ring, hp.conf->event_ring_bytes);
	stats_init(&s->total);
	stats_init(&s->last);
	TAILQ_INSERT_TAIL(&hp.sessions, s, entry);
	LIST_INSERT_HEAD(session_bucket(s->name), s, name_entry);
	log_info("session %s created by uid %ld in %s (cli session %s)", name,
	    (long)uid, workdir, s->cli_session_id);
	return s;
}

static void
session_free(struct session *s)
{
	TAILQ_REMOVE(&hp.sessions, s, entry);
	LIST_REMOVE(s, name_entry);
	census_move(s->uid, s->state, CENSUS_NONE);
	if (s->run_held)
		census_run(s->run.uid, 0);
	hp.rate_limits -= s->rate_limits;
	session_dequeue(s);
	session_unend(s);
	if (s->worker != NULL)
		s->worker->session = NULL;
	screen_unref(s->screen);
	server_gateway_session_free(s);
	event_free(s->idle_timer);
	event_free(s->freeze_timer);
	if (s->move_timer != NULL)
		event_free(s->move_timer);
	free(s->move_to);
	/* Every queued execute gets its terminal line, whatever frees us. */
	session_turnq_cancel(s, ERR_CANCELLED, "the session is gone");
	event_free(s->turnq_ev);
	audit_session_free(s);
	session_approvals_clear(s);
	session_waiter_clear(&s->configure);
	cJSON_Delete(s->configure_pending);
	free(s->rate_limit_last);
	session_waiter_clear(&s->exec);
	session_waiter_clear(&s->open);
	session_waiter_clear(&s->stop);
	while (s->nfollowers > 0)	/* off their clients' lists */
		session_follower_remove(s, s->followers[0]);
	free(s->cur.prefix);
	free(s->cur.pending_prompt);
	free(s->cur.prompt);
	cJSON_Delete(s->options);
	ring_clear(&s->ring);
	stats_clear(&s->total);
	stats_clear(&s->last);
	free(s->name);
	free(s->workdir);
	free(s);
}

/* Out of the table, the store's row kept: another host has it. */
void
session_unload(struct session *s)
{
	session_free(s);
}

/* Keeps at most max_ended_sessions ended sessions; the oldest go first. */
void
session_trim_ended(void)
{
	struct session	*s;

	while (session_nended > hp.conf->max_ended_sessions &&
	    (s = TAILQ_FIRST(&session_endedq)) != NULL) {
		stats_add(&hp.ended_total, &s->total);
		budget_forget(s);
		state_totals_save();
		state_session_forget(s);
		session_free(s);
	}
}

/* A session that never ran leaves no trace, in the store neither. */
void
session_forget(struct session *s)
{
	state_session_forget(s);
	session_free(s);
}

/* rate_limits, and rate_limit (the last such event's data) if any. */
void
session_rate_limit_json(const struct session *s, cJSON *j)
{
	cJSON	*last;

	cJSON_AddNumberToObject(j, "rate_limits", (double)s->rate_limits);
	if (s->rate_limit_last != NULL &&
	    (last = cJSON_Parse(s->rate_limit_last)) != NULL)
		cJSON_AddItemToObject(j, "rate_limit", last);
}

/* SessionStats of DESIGN.md section 5, with last_turn. */
cJSON *
session_stats_json(const struct session *s)
{
	cJSON	*j = stats_to_json(&s->total);

	cJSON_AddStringToObject(j, "session", s->name);
	cJSON_AddStringToObject(j, "cli_session_id", s->cli_session_id);
	cJSON_AddStringToObject(j, "state", proto_state_name(s->state));
	cJSON_AddItemToObject(j, "last_turn", stats_to_json(&s->last));
	server_gateway_stats_json(&s->gw, j);
	session_rate_limit_json(s, j);
	return j;
}

/*
 * Idle sessions cost no CPU: after freeze_after without a turn the CLI's
 * process group (the CLI and its tools) is stopped, and continued before
 * anything is asked of it (a turn, a stop, an attach).  The client does
 * not see it.
 */
static void
session_freeze_fire(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	if (s->frozen || s->state != SESSION_READY || s->worker == NULL ||
	    s->cli_pid <= 0 || s->bg_tasks > 0)
		return;
	/*
	 * An open still waits for the CLI's answer (its clock started when
	 * the CLI came up): frozen, it would never come.  Later, then.
	 */
	if (session_waiting(&s->open)) {
		session_freeze_arm(s);
		return;
	}
	/* The spawner signals it: the group runs as another uid. */
	spawner_killpg(s->worker->pid, s->cli_pid, SIGSTOP);
	s->frozen = 1;
	log_debug("session %s: CLI group %ld frozen", s->name,
	    (long)s->cli_pid);
}

void
session_freeze_arm(struct session *s)
{
	struct timeval	tv;

	if (hp.conf->freeze_after_ms == 0 || s->state != SESSION_READY)
		return;
	tv = util_ms_tv(hp.conf->freeze_after_ms);
	evtimer_add(s->freeze_timer, &tv);
}

/* Before anything is asked of the CLI; its freeze is disarmed. */
void
session_thaw(struct session *s)
{
	event_del(s->freeze_timer);
	if (!s->frozen)
		return;
	s->frozen = 0;
	if (s->cli_pid > 0 && s->worker != NULL) {
		spawner_killpg(s->worker->pid, s->cli_pid, SIGCONT);
		log_debug("session %s: CLI group %ld thawed", s->name,
		    (long)s->cli_pid);
	}
}

/* What goes to a session's worker for its CLI finds the CLI running. */
void
session_send(struct session *s, uint16_t type, const cJSON *j)
{
	session_thaw(s);
	if (type == MSG_STOP && s->worker != NULL)
		pool_worker_stop(s->worker, s->turn);
	else
		pool_send(s->worker, type, s->turn, j);
}

/*
 * The one way into STOPPING: the idle timer goes, MSG_STOP goes to the
 * worker unless it exits by itself (SESSION_STOP_MSG), and the session
 * ends with its worker only if a stop op said so: SESSION_STOP_DORMANT
 * makes it dormant again, else what the stop op set is kept.
 */
void
session_stopping(struct session *s, int how)
{
	session_set_state(s, SESSION_STOPPING);
	if (how & SESSION_STOP_DORMANT)
		s->stop_final = 0;
	event_del(s->idle_timer);
	if (!(how & SESSION_STOP_MSG) || s->worker == NULL)
		return;
	/*
	 * Its worker continues a frozen CLI's group itself when it stops it
	 * (cli_kill): a wave of stops (idle sessions, a shutdown) asks the
	 * spawner for no thaw each, and idle ones queued in the pool stay
	 * frozen till their turn.
	 */
	event_del(s->freeze_timer);
	s->frozen = 0;
	if (how & SESSION_STOP_IDLE)
		pool_worker_stop_idle(s->worker, s->turn);
	else
		pool_worker_stop(s->worker, s->turn);
}

void
session_turn_close(struct session *s)
{
	audit_turn_end(s);
	session_approvals_clear(s);
	session_waiter_clear(&s->exec);
	free(s->cur.prefix);
	s->cur.prefix = NULL;
	free(s->cur.pending_prompt);
	s->cur.pending_prompt = NULL;
	free(s->cur.prompt);
	s->cur.prompt = NULL;
	s->cur.screened = 0;
	s->cur.retried = 0;
	s->cur.sent = 0;
	s->cur.gw_cost_usd = 0;
	s->cur.budget_stop = 0;
	if (s->state == SESSION_BUSY)
		session_set_state(s, s->worker != NULL ? SESSION_READY :
		    SESSION_DORMANT);
	s->active_ms = util_now_ms();
	if (hp.shutting_down && s->worker != NULL && s->state == SESSION_READY)
		session_stopping(s, SESSION_STOP_MSG);
	else if (s->move_to != NULL) {
		/* Another host waits for it: from the loop, not under us. */
		event_active(s->turnq_ev, EV_TIMEOUT, 1);
		return;
	} else
		session_idle_arm(s);
	/*
	 * The next queued turn starts from the loop, once whoever ended this
	 * one (a stop, a dying worker) has set the session's state.
	 */
	if (!TAILQ_EMPTY(&s->turnq))
		event_active(s->turnq_ev, EV_TIMEOUT, 1);
}

/* The one terminal error line of a turn. */
/*
 * A turn a worker was given counts, whatever ended it (failed: in errors
 * too), once: the worker's own turn end may still come.
 */
void
session_turn_count(struct session *s, int failed)
{
	if (!s->cur.sent || s->cur.counted)
		return;
	s->cur.counted = 1;
	s->total.turns++;
	hp.all_total.turns++;
	stats_clear(&s->last);
	s->last.turns = 1;
	s->last.errors = failed != 0;
}

void
session_turn_fail(struct session *s, const char *code, const char *message)
{
	cJSON	*d;

	if (!session_waiting(&s->exec))
		return;
	log_info("session %s turn %u: %s: %s", s->name, s->turn, code, message);
	s->total.errors++;
	hp.all_total.errors++;
	session_turn_count(s, 1);
	/* Committed before the client reads the error. */
	state_session_save(s);
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "code", code);
	cJSON_AddStringToObject(d, "message", message);
	session_emit(s, "error", d);
	session_turn_close(s);
}

/*
 * Another host took the session's lease (lease.c): its turns end with
 * lease_lost, its CLI stops, and it stays in the table unserved; its next
 * use here takes the lease again if it is free.
 */
void
session_lease_lost(struct session *s, const char *why)
{
	session_turnq_cancel(s, ERR_LEASE_LOST, why);
	session_waiter_error(s, &s->open, ERR_LEASE_LOST, why);
	session_turn_fail(s, ERR_LEASE_LOST, why);
	if (s->worker != NULL && (s->state == SESSION_READY ||
	    s->state == SESSION_BUSY))
		session_stopping(s, SESSION_STOP_MSG | SESSION_STOP_DORMANT);
}

/* A move (move.c): the running turn ends with code, now. */
void
session_end_turn(struct session *s, const char *code, const char *message)
{
	session_turn_fail(s, code, message);
}

/* A move: the CLI stops, the session stays (dormant when it is gone). */
void
session_stop_cli(struct session *s)
{
	if (s->worker == NULL || s->state == SESSION_STOPPING)
		return;
	session_stopping(s, SESSION_STOP_MSG | SESSION_STOP_DORMANT);
}

/*
 * No worker can be spawned for the session now: its open and its turn end
 * at once (capacity when descriptors, processes or memory ran out), never
 * a wait for a worker that will not come.  -1 if the session went with
 * them (it never ran).
 */
static int
session_assign_failed(struct session *s, int e)
{
	const char	*code = util_errno_capacity(e) ? ERR_CAPACITY :
			    ERR_SPAWN_FAILED;
	char		 why[128];

	snprintf(why, sizeof why, "cannot spawn a worker: %s", strerror(e));
	session_dequeue(s);
	session_set_state(s, SESSION_DORMANT);
	session_waiter_error(s, &s->open, code, why);
	session_turn_fail(s, code, why);
	if (s->total.turns == 0 && !s->has_conversation) {
		session_free(s);
		return -1;
	}
	return 0;
}

/*
 * Gives the session a spare worker, or leaves it waiting for one.
 * -1 if the session is gone (no worker could be had for it).
 */
int
session_assign(struct session *s)
{
	struct worker	*wk;
	cJSON		*o;
	int		 e;

	session_unend(s);
	session_set_state(s, SESSION_STARTING);
	if ((wk = pool_take(&e)) == NULL) {
		if (e != 0)
			return session_assign_failed(s, e);
		session_enqueue(s);	/* session_worker_ready() comes back */
		return 0;
	}
	session_dequeue(s);
	wk->session = s;
	s->worker = wk;
	s->cur.cold = 1;
	s->cur.assign_us = util_now_us() - s->cur.request_us;
	s->resumed = s->has_conversation;
	/* The worker makes the TMPDIR its last one's removal must not hit. */
	spawner_rmtmp_settle(s->uid, s->name);
	o = session_open_msg(s, session_waiting(&s->open));
	/* Its worker's rules are its prompts' (session_open_msg). */
	session_rescreen(s);
	server_gateway_session_open(s, o);
	transcript_send(s, wk);
	pool_send(wk, MSG_OPEN, s->turn, o);
	cJSON_Delete(o);
	pool_refill();
	return 0;
}

/* A spare became ready: hand it to the longest-waiting session. */
void
session_worker_ready(void)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&session_waitq)) != NULL) {
		if (s->state != SESSION_STARTING || s->worker != NULL) {
			session_dequeue(s);
			continue;
		}
		/* Still waiting: no spare is left, more are on their way. */
		if (session_assign(s) == 0 && s->worker == NULL)
			return;
	}
}

void
session_turn_begin(struct session *s)
{
	cJSON		*d;
	struct msg_turn	 t;
	uint64_t	 ms = s->cur.pending_timeout_ms;

	d = cJSON_CreateObject();
	cJSON_AddBoolToObject(d, "cold", s->cur.cold);
	cJSON_AddBoolToObject(d, "resumed", s->cur.cold && s->resumed);
	cJSON_AddStringToObject(d, "cli_session_id", s->cli_session_id);
	cJSON_AddNumberToObject(d, "worker_pid", s->worker->pid);
	cJSON_AddNumberToObject(d, "pgid", s->cli_pid);
	cJSON_AddNumberToObject(d, "cli_pid", s->cli_pid);
	/* Where the time before the turn went: getting a worker, and all. */
	cJSON_AddNumberToObject(d, "assign_us", s->cur.cold ?
	    (double)s->cur.assign_us : 0);
	cJSON_AddNumberToObject(d, "ready_us",
	    (double)(util_now_us() - s->cur.request_us));
	/* Of which waiting for another host to let the session go. */
	cJSON_AddNumberToObject(d, "move_us", s->cur.cold ?
	    (double)s->cur.move_us : 0);
	session_emit(s, "session_start", d);
	s->cur.cold = 0;

	/* options.timeout_ms is per turn; the rest of options per session. */
	if (ms == 0)
		ms = hp.conf->turn_timeout_ms;
	memset(&t, 0, sizeof t);
	t.prompt = s->cur.pending_prompt;
	t.slash_commands = s->cur.pending_slash;
	t.timeout_ms = ms;
	session_thaw(s);
	pool_send_turn(s->worker, s->turn, &t);
	s->worker_turn = 1;
	free(s->cur.prompt);
	s->cur.prompt = s->cur.pending_prompt;
	s->cur.pending_prompt = NULL;
	s->cur.events = 0;
	s->cur.retry_pending = 0;
	s->cur.sent = 1;
	s->cur.counted = 0;
	s->cur.gw_cost_usd = 0;
	s->cur.budget_stop = 0;
	session_set_state(s, SESSION_BUSY);
	event_del(s->idle_timer);
}

static void
session_idle_fire(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	if (s->state != SESSION_READY || s->worker == NULL || s->bg_tasks > 0)
		return;
	log_info("session %s idle for %llu ms: stopping its CLI", s->name,
	    (unsigned long long)hp.conf->idle_timeout_ms);
	session_stopping(s, SESSION_STOP_MSG | SESSION_STOP_DORMANT |
	    SESSION_STOP_IDLE);
}

void
session_idle_arm(struct session *s)
{
	struct timeval	tv;

	session_freeze_arm(s);
	if (hp.conf->idle_timeout_ms == 0 || s->state != SESSION_READY)
		return;
	tv = util_ms_tv(hp.conf->idle_timeout_ms);
	event_assign(s->idle_timer, hp.base, -1, 0, session_idle_fire, s);
	event_priority_set(s->idle_timer, HP_PRIO_BULK);
	evtimer_add(s->idle_timer, &tv);
}

/* A client left: its turns go on; their lines go nowhere. */
void
session_client_gone(struct client *c)
{
	struct waiter		*w;
	struct session_follow	*f;

	move_client_gone(c);
	/* What points at it is on its lists: no walk of the table. */
	while ((w = LIST_FIRST(&c->waiters)) != NULL) {
		LIST_REMOVE(w, cref);
		w->c = NULL;
		c->refs--;
	}
	while ((f = LIST_FIRST(&c->follows)) != NULL)
		session_follower_remove(f->s, c);
}

/* Sessions waiting for a worker that will not come. */
void
session_spawn_failed(const char *code, const char *why)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&session_waitq)) != NULL) {
		session_dequeue(s);
		if (s->state != SESSION_STARTING || s->worker != NULL)
			continue;
		session_set_state(s, SESSION_DORMANT);
		session_waiter_error(s, &s->open, code, why);
		session_turn_fail(s, code, why);
		if (s->total.turns == 0 && !s->has_conversation)
			session_forget(s);
	}
}

/*
 * SIGTERM: sessions without a running turn stop now, and so do turns that
 * wait for a worker; running turns finish (up to drain_timeout).
 */
void
session_drain(void)
{
	struct session	*s;

	TAILQ_FOREACH(s, &hp.sessions, entry) {
		/* Queued turns are new turns: refused. */
		session_turnq_cancel(s, ERR_SHUTTING_DOWN,
		    "the server is shutting down");
		if (s->state == SESSION_STARTING && s->worker == NULL) {
			session_dequeue(s);
			session_set_state(s, SESSION_DORMANT);
			session_turn_fail(s, ERR_SHUTTING_DOWN,
			    "the server is shutting down");
			session_waiter_error(s, &s->open, ERR_SHUTTING_DOWN,
			    "the server is shutting down");
		}
		if (s->worker != NULL && s->state == SESSION_READY) {
			session_stopping(s, SESSION_STOP_MSG);
		}
	}
}

/* Drain over: end every turn and stop every worker. */
void
session_shutdown(void)
{
	struct session	*s;

	TAILQ_FOREACH(s, &hp.sessions, entry) {
		session_turnq_cancel(s, ERR_SHUTTING_DOWN,
		    "the server is shutting down");
		session_turn_fail(s, ERR_SHUTTING_DOWN,
		    "the server is shutting down");
		if (s->worker != NULL) {
			session_stopping(s, SESSION_STOP_MSG);
		}
	}
	pool_kill_all();
}

void
session_free_all(void)
{
	struct session	*s;

	while ((s = TAILQ_FIRST(&hp.sessions)) != NULL)
		session_free(s);
}
