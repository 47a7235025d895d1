/*
 * Sessions: the table, the ops on it, and the relay of a worker's events
 * to the client whose turn it is.  Every execute ends with exactly one
 * terminal line (done or error), whatever dies on the way.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/mcp.h"
#include "common/msg.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/policy.h"
#include "policy/sandbox.h"
#include "supervisor/census.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"
#include "supervisor/screen.h"

#define SESSION_SEQ_MAX		24	/* digits of a seq and its comma */
#define SESSION_PROMPT_MAX	(16U * 1024 * 1024)
#define SESSION_TIMEOUT_MAX_MS	(7.0 * 24 * 3600 * 1000)	/* a week */
#define SESSION_MAX_TURNS_MAX	10000
#define SESSION_OPT_STR_MAX	(64 * 1024)	/* model, system prompt, ... */
#define SESSION_UID_MAX		4294967294.0	/* (uid_t)-1 is no uid */
#define SESSION_TOOLS_MAX	64
#define SESSION_BUDGET_MAX_USD	1000000	/* max_budget_usd, a sanity bound */



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

static void	session_turn_begin(struct session *);
static void	session_freeze_fire(evutil_socket_t, short, void *);
static int	session_assign(struct session *);
static void	session_idle_arm(struct session *);
static void	session_configure_done(struct session *, int, const char *);
static void	session_turnq_run(evutil_socket_t, short, void *);
static void	session_turnq_cancel(struct session *, const char *code,
		    const char *why);

/* --- helpers ------------------------------------------------------------ */

static void
session_waiter_set(struct waiter *w, struct client *c, const char *req)
{
	free(w->req);
	if (w->c != NULL)
		w->c->refs--;
	w->c = c;
	if (c != NULL)
		c->refs++;
	w->req = xstrdup(req);
}

static void
session_waiter_clear(struct waiter *w)
{
	free(w->req);
	w->req = NULL;
	if (w->c != NULL)
		w->c->refs--;
	w->c = NULL;
}

static int
session_waiting(const struct waiter *w)
{
	return w->req != NULL;
}

/* Answers ok to whoever waits on w, if still connected, and clears it. */
static void
session_waiter_ok(struct waiter *w)
{
	if (!session_waiting(w))
		return;
	if (w->c != NULL)
		server_client_ok(w->c, w->req, NULL);
	session_waiter_clear(w);
}

/* The same with an error line of the session. */
static void
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
static void
session_set_state(struct session *s, enum session_state st)
{
	if (s->state == st)
		return;
	log_debug("session %s: %s -> %s", s->name, proto_state_name(s->state),
	    proto_state_name(st));
	census_move(s->uid, s->state, st);
	s->state = st;
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

static void
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
static int
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

static void
session_approvals_clear(struct session *s)
{
	while (s->napprovals > 0)
		free(s->approvals[--s->napprovals]);
}

/*
 * A system/rate_limit event (the bridge puts its subtype first): counted,
 * and the last one kept for sessions and stats.
 */
static void
session_rate_limit_seen(struct session *s, const char *tail, size_t len)
{
	static const char rl[] =
	    "\"type\":\"system\",\"data\":{\"subtype\":\"rate_limit\"";
	const char	*d, *end;

	if (len < sizeof rl - 1 || memcmp(tail, rl, sizeof rl - 1) != 0)
		return;
	s->rate_limits++;
	hp.rate_limits++;
	/* The data object: from its '{' to the tail's last '}' excluded. */
	d = tail + sizeof "\"type\":\"system\",\"data\":" - 1;
	end = tail + len - 1;
	free(s->rate_limit_last);
	s->rate_limit_last = xstrndup(d, (size_t)(end - d));
}

/* The worker put a question to the app (pending), or it is settled. */
static void
session_worker_approval(struct session *s, const struct msg_approval *ap)
{
	if (strlen(ap->request_id) > PROTO_ID_MAX)
		return;
	session_approval_remove(s, ap->request_id);
	if (ap->pending && s->napprovals < SESSION_APPROVALS_MAX)
		s->approvals[s->napprovals++] = xstrdup(ap->request_id);
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
static int
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

/* session_user = dynamic: the lowest uid of the range no session holds. */
static uid_t
session_dynamic_uid(void)
{
	struct session	*s;
	uid_t		 lo, hi, u;
	int		 used;

	if (ident_range_parse(hp.conf->dynamic_uids, &lo, &hi) == -1)
		return 0;
	for (u = lo; u <= hi; u++) {
		used = 0;
		TAILQ_FOREACH(s, &hp.sessions, entry)
			if (s->run_known && s->run.uid == u &&
			    s->state != SESSION_ENDED) {
				used = 1;
				break;
			}
		if (!used)
			return u;
	}
	return 0;
}

/*
 * Who the session runs as, decided once: from the creator's socket
 * credentials when it is the creator who asks, else (a session restored
 * from the state file, an administrator acting) from the user database.
 */
static int
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
	hp.rate_limits -= s->rate_limits;
	session_dequeue(s);
	session_unend(s);
	if (s->worker != NULL)
		s->worker->session = NULL;
	server_gateway_session_free(s);
	event_free(s->idle_timer);
	event_free(s->freeze_timer);
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
static void
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
static void
session_forget(struct session *s)
{
	state_session_forget(s);
	session_free(s);
}

/* rate_limits, and rate_limit (the last such event's data) if any. */
static void
session_rate_limit_json(const struct session *s, cJSON *j)
{
	cJSON	*last;

	cJSON_AddNumberToObject(j, "rate_limits", (double)s->rate_limits);
	if (s->rate_limit_last != NULL &&
	    (last = cJSON_Parse(s->rate_limit_last)) != NULL)
		cJSON_AddItemToObject(j, "rate_limit", last);
}

/* SessionStats of DESIGN.md section 5, with last_turn. */
static cJSON *
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

/* --- events to the turn's client ------------------------------------------ */

/* tail is an object's text after its '{': `"type":..,"data":{..}}`. */
static void
session_emit_tail(struct session *s, const char *tail, size_t len)
{
	struct ring_entry	*e;
	char			*line;
	size_t			 n, i;

	if (s->cur.prefix == NULL)
		return;
	s->seq++;
	/*
	 * One line, built once, in the ring entry that keeps it: for the
	 * turn's client, the followers and attach.
	 */
	e = ring_entry_new(s->cur.prefix_len + SESSION_SEQ_MAX + len + 1);
	line = e->line;
	memcpy(line, s->cur.prefix, s->cur.prefix_len);
	n = s->cur.prefix_len + (size_t)snprintf(line + s->cur.prefix_len,
	    SESSION_SEQ_MAX, "%llu,", (unsigned long long)s->seq);
	memcpy(line + n, tail, len);
	n += len;
	line[n++] = '\n';
	if (s->exec.c != NULL)
		server_client_write(s->exec.c, line, n);
	for (i = 0; i < s->nfollowers; i++)
		if (s->followers[i] != s->exec.c)
			server_client_write(s->followers[i], line, n);
	e->seq = s->seq;
	e->len = n;
	ring_push(&s->ring, e);
}

/* Emits {type, data}; data consumed. */
static void
session_emit(struct session *s, const char *type, cJSON *data)
{
	cJSON	*o = cJSON_CreateObject();
	char	*t;

	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddItemToObject(o, "data", data);
	t = json_print(o);
	session_emit_tail(s, t + 1, strlen(t + 1));
	cJSON_free(t);
	cJSON_Delete(o);
}

/*
 * An event of the daemon's own for the session's turn and followers
 * (ratelimit.c); data consumed.  A rate_limit one counts as the CLI's do.
 */
void
session_event(struct session *s, const char *type, cJSON *data)
{
	cJSON	*o = cJSON_CreateObject();
	char	*t;

	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddItemToObject(o, "data", data);
	t = json_print(o);
	session_rate_limit_seen(s, t + 1, strlen(t + 1));
	session_emit_tail(s, t + 1, strlen(t + 1));
	cJSON_free(t);
	cJSON_Delete(o);
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
	    s->cli_pid <= 0)
		return;
	/* The spawner signals it: the group runs as another uid. */
	spawner_killpg(s->worker->pid, s->cli_pid, SIGSTOP);
	s->frozen = 1;
	log_debug("session %s: CLI group %ld frozen", s->name,
	    (long)s->cli_pid);
}

static void
session_freeze_arm(struct session *s)
{
	struct timeval	tv;

	if (hp.conf->freeze_after_ms == 0 || s->state != SESSION_READY)
		return;
	tv.tv_sec = hp.conf->freeze_after_ms / 1000;
	tv.tv_usec = (hp.conf->freeze_after_ms % 1000) * 1000;
	evtimer_add(s->freeze_timer, &tv);
}

/* Before anything is asked of the CLI; its freeze is disarmed. */
static void
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
static void
session_send(struct session *s, uint16_t type, const cJSON *j)
{
	session_thaw(s);
	/* A stopping worker's last words are bulk work (hotplexd.h). */
	if (type == MSG_STOP && s->worker != NULL)
		pool_worker_bulk(s->worker);
	pool_send(s->worker, type, s->turn, j);
}

static void
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
	s->cur.retried = 0;
	s->cur.sent = 0;
	s->cur.gw_cost_usd = 0;
	s->cur.budget_stop = 0;
	if (s->state == SESSION_BUSY)
		session_set_state(s, s->worker != NULL ? SESSION_READY :
		    SESSION_DORMANT);
	s->active_ms = util_now_ms();
	if (hp.shutting_down && s->worker != NULL && s->state == SESSION_READY) {
		session_set_state(s, SESSION_STOPPING);
		session_send(s, MSG_STOP, NULL);
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
static void
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

static void
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
	    s->state == SESSION_BUSY)) {
		event_del(s->idle_timer);
		session_set_state(s, SESSION_STOPPING);
		s->stop_final = 0;
		session_send(s, MSG_STOP, NULL);
	}
}

/* --- workers ------------------------------------------------------------ */

static cJSON *
session_open_msg(struct session *s, int probe)
{
	cJSON	*o = cJSON_CreateObject(), *a, *fw, *g;
	char	 path[PATH_MAX];
	size_t	 i;

	cJSON_AddStringToObject(o, "session", s->name);
	cJSON_AddStringToObject(o, "workdir", s->workdir);
	a = cJSON_AddArrayToObject(o, "workdir_roots");
	for (i = 0; i < hp.conf->workdir_root.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->workdir_root.v[i]));
	/* Who the worker becomes, and the private dirs it makes first. */
	a = cJSON_AddObjectToObject(o, "identity");
	cJSON_AddNumberToObject(a, "uid", s->run.uid);
	cJSON_AddNumberToObject(a, "gid", s->run.gid);
	cJSON_AddBoolToObject(a, "unprivileged", s->run.unprivileged_daemon);
	g = cJSON_AddArrayToObject(a, "groups");
	for (i = 0; i < s->run.ngroups; i++)
		cJSON_AddItemToArray(g, cJSON_CreateNumber(s->run.groups[i]));
	a = cJSON_AddObjectToObject(o, "dirs");
	g = cJSON_AddArrayToObject(a, "parents");
	cJSON_AddItemToArray(g, cJSON_CreateString(hp.conf->state_dir));
	snprintf(path, sizeof path, UTIL_HOME_PARENT, hp.conf->state_dir);
	cJSON_AddItemToArray(g, cJSON_CreateString(path));
	snprintf(path, sizeof path, UTIL_HOME_OWNER, hp.conf->state_dir,
	    (unsigned)s->uid);
	cJSON_AddItemToArray(g, cJSON_CreateString(path));
	snprintf(path, sizeof path, UTIL_TMPDIR_PARENT, hp.conf->state_dir);
	cJSON_AddItemToArray(g, cJSON_CreateString(path));
	snprintf(path, sizeof path, UTIL_HOME_FMT, hp.conf->state_dir,
	    (unsigned)s->uid, s->name);
	cJSON_AddStringToObject(a, "home", path);
	snprintf(path, sizeof path, UTIL_TMPDIR_FMT, hp.conf->state_dir,
	    (unsigned)s->uid, s->name);
	cJSON_AddStringToObject(a, "tmpdir", path);
	cJSON_AddStringToObject(o, "cli_session_id", s->cli_session_id);
	cJSON_AddBoolToObject(o, "resume", s->has_conversation);
	cJSON_AddStringToObject(o, "cli_path", hp.conf->cli_path);
	a = cJSON_AddArrayToObject(o, "cli_args");
	for (i = 0; i < hp.conf->cli_args.n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(hp.conf->cli_args.v[i]));
	a = cJSON_AddArrayToObject(o, "cli_env");
	for (i = 0; i < hp.conf->cli_env.n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(hp.conf->cli_env.v[i]));
	cJSON_AddItemToObject(o, "options", cJSON_Duplicate(s->options, 1));
	/* A reload that turned allow_session_mcp off: no servers start. */
	if (!hp.conf->allow_session_mcp)
		cJSON_DeleteItemFromObjectCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(o, "options"), "mcp_config");
	cJSON_AddNumberToObject(o, "kill_grace_ms", (double)hp.conf->kill_grace_ms);
	/* options.approval_timeout_ms wins over it. */
	cJSON_AddNumberToObject(o, "approval_timeout_ms",
	    (double)hp.conf->approval_timeout_ms);
	cJSON_AddNumberToObject(o, "cli_line_max", (double)hp.conf->cli_line_max);
	cJSON_AddNumberToObject(o, "stderr_tail_bytes",
	    (double)hp.conf->stderr_tail_bytes);
	cJSON_AddBoolToObject(o, "probe", probe);
	/* The CLI's sandbox (hotplex-worker applies it; absent keys: off). */
	cJSON_AddStringToObject(o, "state_dir", hp.conf->state_dir);
	a = cJSON_AddObjectToObject(o, "sandbox");
	if (strcmp(hp.conf->seccomp, "off") != 0)
		cJSON_AddStringToObject(a, "seccomp", strcmp(hp.conf->seccomp,
		    "on") == 0 ? SANDBOX_SECCOMP_BUILTIN : hp.conf->seccomp);
	cJSON_AddStringToObject(a, "landlock", hp.conf->landlock != NULL ?
	    hp.conf->landlock : "off");
	cJSON_AddNumberToObject(a, "rlimit_nofile",
	    (double)hp.conf->rlimit_nofile);
	cJSON_AddNumberToObject(a, "rlimit_nproc", (double)hp.conf->rlimit_nproc);
	cJSON_AddNumberToObject(a, "rlimit_cpu", (double)hp.conf->rlimit_cpu);
	cJSON_AddNumberToObject(a, "rlimit_fsize", (double)hp.conf->rlimit_fsize);
	cJSON_AddBoolToObject(o, "tool_gate", hp.conf->tool_gate);
	/* The gate: rules for tool calls, the daemon's tool lists. */
	if (hp.screen->policy != NULL) {
		fw = cJSON_AddObjectToObject(o, "firewall");
		/* The texts the master compiled: never the files again. */
		cJSON_AddItemToObject(fw, "rules",
		    cJSON_Duplicate(hp.screen->rules, 1));
		cJSON_AddNumberToObject(fw, "threshold", hp.screen->threshold);
	}
	a = cJSON_AddArrayToObject(o, "allowed_tools");
	for (i = 0; i < hp.conf->allowed_tools.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->allowed_tools.v[i]));
	a = cJSON_AddArrayToObject(o, "disallowed_tools");
	for (i = 0; i < hp.conf->disallowed_tools.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->disallowed_tools.v[i]));
	return o;
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
static int
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
	o = session_open_msg(s, session_waiting(&s->open));
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

static void
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

/*
 * The CLI died before it saw the turn (killed just after the last one):
 * nothing of the turn happened, so it runs once more in a new CLI, when
 * the dying worker is gone.  0 if it may not (already retried).
 */
static int
session_turn_retry(struct session *s)
{
	if (!session_waiting(&s->exec) || s->cur.retried ||
	    s->cur.prompt == NULL || s->worker == NULL || s->cur.events > 0)
		return 0;
	log_info("session %s: CLI gone before turn %u began; retrying it in a "
	    "new CLI", s->name, s->turn);
	session_set_state(s, SESSION_STOPPING);
	s->stop_final = 0;
	s->cur.retried = 1;
	s->cur.retry_pending = 1;
	s->cur.pending_prompt = s->cur.prompt;
	s->cur.prompt = NULL;
	return 1;
}

/* The CLI's refusal of --session-id for a conversation it has. */
static int
session_cli_in_use(const char *message)
{
	return message != NULL && strstr(message, "already in use") != NULL;
}

static void
session_turn_end(struct session *s, struct msg_turn_end *te)
{
	struct stats	 turn;
	cJSON		*d;

	/*
	 * Its CLI died before it saw the turn (killed just after the last
	 * one): nothing happened; run it once more in a new CLI.
	 */
	/*
	 * "Session ID ... is already in use": the CLI has the conversation
	 * our record lacked.  Not the turn's failure: it runs again in a CLI
	 * started with --resume (once: has_conversation is set now).
	 */
	if (te->retry && te->outcome == MSG_TURN_ERROR &&
	    !s->has_conversation && session_cli_in_use(te->message)) {
		log_info("session %s: the CLI has session %s already; resuming "
		    "it", s->name, s->cli_session_id);
		s->has_conversation = 1;
		state_session_save(s);
		s->cur.retried = 0;
	}
	if (te->retry && session_turn_retry(s))
		return;		/* the worker's exit brings a new one */
	stats_init(&turn);
	stats_copy(&turn, &te->stats);
	turn.turns = 1;
	if (te->outcome == MSG_TURN_ERROR && turn.errors == 0)
		turn.errors = 1;
	/*
	 * An interrupted CLI may report less than its API calls cost: the
	 * gateway's figure then stands.
	 */
	if (s->cur.gw_cost_usd > turn.cost_usd)
		turn.cost_usd = s->cur.gw_cost_usd;
	s->cur.gw_cost_usd = 0;
	if (s->cur.budget_stop && turn.errors == 0)
		turn.errors = 1;
	if (s->cur.counted) {	/* its error line went out already */
		turn.turns = 0;
		turn.errors = 0;
	}
	s->cur.counted = 1;
	stats_add(&s->total, &turn);
	stats_add(&hp.all_total, &turn);
	stats_clear(&s->last);
	stats_copy(&s->last, &turn);
	stats_clear(&turn);
	/*
	 * The turn's end (stats, conversation) is committed before the done
	 * line is written: whatever the client saw survives a crash.  Not
	 * committed (another host has the session now): no done either.
	 */
	if (state_session_save(s) == STORE_FENCED) {
		session_turn_fail(s, ERR_LEASE_LOST, "another host took the "
		    "session's lease; this turn's end was not saved");
		return;
	}
	/* Its CLI is gone and the worker follows: no turn goes there now. */
	if (te->exiting && s->worker != NULL && s->state != SESSION_STOPPING) {
		session_set_state(s, SESSION_STOPPING);
		s->stop_final = 0;
	}
	if (!session_waiting(&s->exec))
		return;
	session_emit(s, "session_stats", session_stats_json(s));
	if (s->cur.budget_stop) {
		/* Stopped by budget.c, however the CLI ended it. */
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "code", ERR_BUDGET_EXCEEDED);
		cJSON_AddStringToObject(d, "message", "the turn was stopped: "
		    "its cost reached the budget (max_budget_usd or "
		    "uid_budget_usd)");
		session_emit(s, "error", d);
	} else if (te->outcome == MSG_TURN_DONE) {
		d = proto_done_json(&te->done);
		cJSON_AddItemToObject(d, "stats", stats_to_json(&s->last));
		session_emit(s, "done", d);
	} else {
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "code", te->code);
		cJSON_AddStringToObject(d, "message", te->message);
		session_emit(s, "error", d);
	}
	session_turn_close(s);
}

/* OPENED: the CLI runs. */
static void
session_worker_opened(struct session *s, const struct msg_opened *op)
{
	s->cli_pid = op->cli_pid;
	/* The worker found the CLI's transcript: it resumes. */
	if (op->resume && !s->has_conversation) {
		log_info("session %s: the CLI has a transcript of %s; resumed",
		    s->name, s->cli_session_id);
		s->has_conversation = 1;
		s->resumed = 1;
		state_session_save(s);
	}
	if (s->state != SESSION_STARTING)
		return;
	session_set_state(s, SESSION_READY);
	if (s->cur.pending_prompt != NULL && session_waiting(&s->exec))
		session_turn_begin(s);
	else {
		/* Opened ahead of its first turn: that turn is warm. */
		s->cur.cold = 0;
		session_idle_arm(s);
	}
}

/* PROBED: the CLI answered; the open op is done. */
static void
session_worker_probed(struct session *s)
{
	session_waiter_ok(&s->open);
}

static void
session_worker_open_failed(struct session *s, struct worker *wk,
    const struct msg_open_failed *of)
{
	if (of->exiting)
		wk->closed = 1;
	pool_release(wk);	/* a spare again, unless it is going */
	s->worker = NULL;
	session_set_state(s, SESSION_DORMANT);
	session_waiter_error(s, &s->open, of->code, of->message);
	session_turn_fail(s, of->code, of->message);
	/* A session that never ran leaves no trace. */
	if (s->total.turns == 0 && !s->has_conversation)
		session_forget(s);
	session_worker_ready();
}

static void
session_worker_cli_session(struct session *s, const struct msg_cli_session *cs)
{
	const char	*v = cs->cli_session_id;

	if (strlen(v) > UUID_STR_LEN)
		return;
	if (strcmp(v, s->cli_session_id) != 0)
		log_info("session %s: CLI session id now %s", s->name, v);
	snprintf(s->cli_session_id, sizeof s->cli_session_id, "%s", v);
	s->has_conversation = 1;
	state_session_save(s);
}

static void
session_worker_cli_exit(struct session *s, const struct msg_cli_exit *ce)
{
	char	 why[512];
	const char *tail = ce->stderr_tail;

	log_info("session %s: CLI %ld exited (status %d, signal %d)",
	    s->name, (long)s->cli_pid, ce->status, ce->signal);
	s->cli_pid = 0;
	/* As in session_turn_end: refused before the worker saw the turn. */
	if (s->state == SESSION_BUSY && !s->has_conversation &&
	    session_cli_in_use(tail)) {
		log_info("session %s: the CLI has session %s already; resuming "
		    "it", s->name, s->cli_session_id);
		s->has_conversation = 1;
		state_session_save(s);
		s->cur.retried = 0;
	}
	s->frozen = 0;
	event_del(s->freeze_timer);
	if (s->state == SESSION_BUSY && session_turn_retry(s))
		;	/* the worker's exit brings a new one */
	else if (s->state == SESSION_BUSY) {
		/* The CLI died before the worker saw our turn. */
		if (ce->signal > 0)
			snprintf(why, sizeof why, "CLI killed by signal "
			    "%d%s%.400s", ce->signal, *tail != '\0' ? ": " : "",
			    tail);
		else
			snprintf(why, sizeof why, "CLI exited with status "
			    "%d%s%.400s", ce->status, *tail != '\0' ? ": " : "",
			    tail);
		session_set_state(s, SESSION_STOPPING);
		s->stop_final = 0;
		session_turn_fail(s, ERR_CLI_EXITED, why);
	}
	if (s->state == SESSION_READY) {	/* the worker exits next */
		session_set_state(s, SESSION_STOPPING);
		s->stop_final = 0;
		event_del(s->idle_timer);
	}
}

/*
 * A worker's message about its session, decoded by its type; anything
 * malformed kills the worker (its turn then ends worker_exited).
 */
void
session_worker_msg(struct session *s, struct worker *wk, struct msg *m)
{
	struct msg_opened	 op;
	struct msg_open_failed	 of;
	struct msg_turn_end	 te;
	struct msg_cli_session	 cs;
	struct msg_cli_exit	 ce;
	struct msg_approval	 ap;
	struct msg_configured	 cd;
	struct msg_transcript	 tr;
	int			 bad = 0;

	switch (m->hdr.type) {
	case MSG_EVENT:
		/*
		 * The less trusted side writes these bytes into clients' lines:
		 * anything but one event object's tail (a raw newline forging a
		 * line, a "done" of its own) kills it.
		 */
		if (!json_event_tail_valid(m->data, m->hdr.len)) {
			log_warnx("session %s: forged event from worker %ld",
			    s->name, (long)wk->pid);
			pool_worker_kill(wk, "forged event");
			return;
		}
		if (m->hdr.turn == s->turn && s->state == SESSION_BUSY) {
			s->cur.events++;
			session_emit_tail(s, m->data, m->hdr.len);
			audit_event(s, m->data, m->hdr.len);
			session_rate_limit_seen(s, m->data, m->hdr.len);
		}
		return;
	case MSG_OPENED:
		if ((bad = msg_opened_decode(m, &op)) == 0) {
			session_worker_opened(s, &op);
			msg_opened_clear(&op);
		}
		break;
	case MSG_PROBED:
		if ((bad = msg_empty_decode(m)) == 0)
			session_worker_probed(s);
		break;
	case MSG_OPEN_FAILED:
		if ((bad = msg_open_failed_decode(m, &of)) == 0) {
			session_worker_open_failed(s, wk, &of);
			msg_open_failed_clear(&of);
		}
		break;
	case MSG_TURN_END:
		if ((bad = msg_turn_end_decode(m, &te)) == 0) {
			/* A turn handed to a new CLI: the old worker's word
			 * on it is void. */
			if (!s->cur.retry_pending && m->hdr.turn == s->turn)
				session_turn_end(s, &te);
			msg_turn_end_clear(&te);
		}
		break;
	case MSG_CONFIGURED:
		if ((bad = msg_configured_decode(m, &cd)) == 0) {
			session_configure_done(s, 1, cd.ok ? NULL :
			    cd.message);
			msg_configured_clear(&cd);
		}
		break;
	case MSG_APPROVAL:
		if ((bad = msg_approval_decode(m, &ap)) == 0) {
			session_worker_approval(s, &ap);
			msg_approval_clear(&ap);
		}
		break;
	case MSG_CLI_SESSION:
		if ((bad = msg_cli_session_decode(m, &cs)) == 0) {
			session_worker_cli_session(s, &cs);
			msg_cli_session_clear(&cs);
		}
		break;
	case MSG_TRANSCRIPT:
		if ((bad = msg_transcript_decode(m, &tr)) == 0) {
			transcript_piece(s, &tr);
			msg_transcript_clear(&tr);
		}
		break;
	case MSG_CLI_EXIT:
		if ((bad = msg_cli_exit_decode(m, &ce)) == 0) {
			session_worker_cli_exit(s, &ce);
			msg_cli_exit_clear(&ce);
		}
		break;
	default:
		log_warnx("session %s: unexpected %s from worker %ld", s->name,
		    msg_type_name(m->hdr.type), (long)wk->pid);
		pool_worker_kill(wk, "protocol violation");
		return;
	}
	if (bad) {
		log_warnx("session %s: malformed %s from worker %ld", s->name,
		    msg_type_name(m->hdr.type), (long)wk->pid);
		pool_worker_kill(wk, "malformed message");
	}
}

/*
 * A session's private TMPDIR goes with its worker: the next worker makes
 * a new one, as a new CLI expects nothing in it.
 */
static void
session_tmpdir_remove(const struct session *s)
{
	/* The spawner removes it: it is the session's, not ours. */
	if (spawner_rmtmp(s->uid, s->name) == -1)
		log_warn("session %s: removing its TMPDIR", s->name);
}

/*
 * At start-up no worker runs: the TMPDIRs left by the last run (a crash,
 * or workers that outlived their master) are removed.
 */
void
session_tmpdirs_clear(void)
{
	char		 dir[PATH_MAX], path[PATH_MAX];
	DIR		*d;
	struct dirent	*de;

	if ((size_t)snprintf(dir, sizeof dir, UTIL_TMPDIR_PARENT,
	    hp.conf->state_dir) >= sizeof dir || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, UTIL_TMPDIR_PREFIX,
		    sizeof UTIL_TMPDIR_PREFIX - 1) != 0 ||
		    (size_t)snprintf(path, sizeof path, "%s/%s", dir,
		    de->d_name) >= sizeof path)
			continue;
		if (util_rmtree(path) == -1)
			log_warn("removing %s", path);
	}
	closedir(d);
}

/* The worker is gone (EOF on its socket, or reaped). */
void
session_worker_gone(struct session *s, struct worker *wk, int status)
{
	char	why[128];

	if (s->worker != wk)
		return;
	if (status == -1)
		snprintf(why, sizeof why, "worker %ld closed its channel",
		    (long)wk->pid);
	else if (WIFSIGNALED(status))
		snprintf(why, sizeof why, "worker %ld killed by signal %d",
		    (long)wk->pid, WTERMSIG(status));
	else
		snprintf(why, sizeof why, "worker %ld exited with status %d",
		    (long)wk->pid, WEXITSTATUS(status));
	/*
	 * A worker that closed its channel but lives is killed, and its CLI's
	 * group with it (reaped pids are never signalled: they may be reused).
	 */
	if (status == -1) {
		if (s->cli_pid > 0)
			spawner_killpg(wk->pid, s->cli_pid, SIGKILL);
		spawner_kill(wk->pid, SIGKILL);
	}
	s->cli_pid = 0;
	s->frozen = 0;
	event_del(s->freeze_timer);
	s->worker = NULL;
	wk->session = NULL;
	/* Its CLI is gone: so is the token it held. */
	server_gateway_session_close(s);
	session_approvals_clear(s);
	session_tmpdir_remove(s);
	/* Its CLI never answered: the settings are the next CLI's. */
	session_configure_done(s, 0, NULL);
	session_waiter_error(s, &s->open, ERR_WORKER_EXITED, why);
	if (s->state == SESSION_BUSY || (s->state == SESSION_STARTING &&
	    session_waiting(&s->exec))) {
		session_set_state(s, SESSION_DORMANT);
		session_turn_fail(s, hp.shutting_down ? ERR_SHUTTING_DOWN :
		    ERR_WORKER_EXITED, why);
	}
	if (s->stop_final)
		session_end(s);
	else
		session_set_state(s, SESSION_DORMANT);
	session_waiter_ok(&s->stop);
	log_info("session %s %s: %s", s->name, proto_state_name(s->state), why);
	state_session_save(s);
	/* A turn queued behind a reset or an idle stop starts now. */
	if (s->state == SESSION_DORMANT && session_waiting(&s->exec) &&
	    s->cur.pending_prompt != NULL && !hp.shutting_down &&
	    session_assign(s) == -1)
		return;
	if (s->state == SESSION_ENDED)
		session_trim_ended();
}

static void
session_idle_fire(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	if (s->state != SESSION_READY || s->worker == NULL)
		return;
	log_info("session %s idle for %llu ms: stopping its CLI", s->name,
	    (unsigned long long)hp.conf->idle_timeout_ms);
	session_set_state(s, SESSION_STOPPING);
	s->stop_final = 0;
	session_send(s, MSG_STOP, NULL);
}

static void
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

/* --- ops ------------------------------------------------------------------ */

/* Looks a session up for an op; replies not_found itself. */
static struct session *
session_lookup(struct client *c, const char *req, const cJSON *r)
{
	const char	*name = json_str(r, "session");
	struct session	*s;
	uid_t		 owner;

	if (name == NULL || !proto_valid_session(name)) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "\"session\" must be 1 to %d bytes of [A-Za-z0-9._:@-]",
		    PROTO_SESSION_MAX);
		return NULL;
	}
	if (session_owner(c, req, r, &owner) == -1)
		return NULL;
	if ((s = session_find(name, owner)) == NULL || !session_visible(s, c)) {
		server_client_error(c, req, name, ERR_NOT_FOUND,
		    "no session \"%s\"", name);
		return NULL;
	}
	return s;
}

/* lease_take()'s or lease_adopt()'s refusal (rc 1 or -1) to the client. */
static void
session_lease_refused(struct client *c, const char *req, const char *name,
    int rc, const char *why)
{
	server_client_error(c, req, name, rc == 1 ? ERR_SESSION_ELSEWHERE :
	    ERR_STORE_UNAVAILABLE, "%s", why);
}

/*
 * session_lookup() for an op that serves the session here (attach): with a
 * shared store, a session the table lacks is taken from the store if no
 * other host holds it, and one another host holds is refused.
 */
static struct session *
session_lookup_served(struct client *c, const char *req, const cJSON *r)
{
	const char	*name = json_str(r, "session");
	struct session	*s = NULL;
	char		 why[256];
	uid_t		 owner;
	int		 rc;

	if (name != NULL && proto_valid_session(name) && store_shared()) {
		if (session_owner(c, req, r, &owner) == -1)
			return NULL;
		if ((s = session_find(name, owner)) == NULL &&
		    (rc = lease_adopt(owner, name, &s, why, sizeof why)) != 0) {
			session_lease_refused(c, req, name, rc, why);
			return NULL;
		}
	}
	if ((s = session_lookup(c, req, r)) == NULL)
		return NULL;
	if (s->state != SESSION_ENDED &&
	    (rc = lease_take(s, why, sizeof why)) != 0) {
		session_lease_refused(c, req, s->name, rc, why);
		return NULL;
	}
	return s;
}

/* Is a permission mode one of allowed_permission_modes? */
static int
session_mode_allowed(const char *mode)
{
	size_t	i;

	for (i = 0; i < hp.conf->allowed_permission_modes.n; i++)
		if (strcmp(hp.conf->allowed_permission_modes.v[i], mode) == 0)
			return 1;
	return 0;
}

/* Options are checked here, so workers only ever see sane values. */
static int
session_options_check(const cJSON *opt, char *why, size_t len)
{
	static const char *strs[] = { "model", "permission_mode",
	    "append_system_prompt" };
	static const char *lists[] = { "allowed_tools", "disallowed_tools" };
	const cJSON	*v, *e;
	size_t		 i;

	for (i = 0; i < sizeof strs / sizeof strs[0]; i++) {
		v = cJSON_GetObjectItemCaseSensitive(opt, strs[i]);
		if (v != NULL && (!cJSON_IsString(v) ||
		    strlen(v->valuestring) > SESSION_OPT_STR_MAX ||
		    (i < 2 && v->valuestring[0] == '-'))) {
			snprintf(why, len, "options.%s must be a string", strs[i]);
			return -1;
		}
	}
	for (i = 0; i < sizeof lists / sizeof lists[0]; i++) {
		v = cJSON_GetObjectItemCaseSensitive(opt, lists[i]);
		if (v == NULL)
			continue;
		if (!cJSON_IsArray(v) ||
		    cJSON_GetArraySize(v) > SESSION_TOOLS_MAX) {
			snprintf(why, len, "options.%s must be an array of at "
			    "most %d tool names", lists[i], SESSION_TOOLS_MAX);
			return -1;
		}
		cJSON_ArrayForEach(e, v)
			if (!cJSON_IsString(e) || e->valuestring[0] == '\0' ||
			    strlen(e->valuestring) > SESSION_OPT_STR_MAX) {
				snprintf(why, len, "options.%s: tool names are "
				    "non-empty strings", lists[i]);
				return -1;
			}
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "max_turns");
	if (v != NULL && (!cJSON_IsNumber(v) || v->valuedouble < 1 ||
	    v->valuedouble > SESSION_MAX_TURNS_MAX)) {
		snprintf(why, len, "options.max_turns must be 1..%d",
		    SESSION_MAX_TURNS_MAX);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "timeout_ms");
	if (v != NULL && (!cJSON_IsNumber(v) || v->valuedouble < 1 ||
	    v->valuedouble > SESSION_TIMEOUT_MAX_MS)) {
		snprintf(why, len, "options.timeout_ms must be 1..%.0f",
		    SESSION_TIMEOUT_MAX_MS);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "slash_commands");
	if (v != NULL && !cJSON_IsBool(v)) {
		snprintf(why, len, "options.slash_commands must be a boolean");
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "permission_mode");
	if (v != NULL && !session_mode_allowed(v->valuestring)) {
		snprintf(why, len, "options.permission_mode \"%.64s\" is not in "
		    "allowed_permission_modes", v->valuestring);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "max_budget_usd");
	if (v != NULL && (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
	    v->valuedouble > SESSION_BUDGET_MAX_USD)) {
		snprintf(why, len, "options.max_budget_usd must be 0..%d",
		    SESSION_BUDGET_MAX_USD);
		return -1;
	}
	/* The daemon's ceiling bounds what a client may grant itself. */
	if (v != NULL && hp.conf->max_budget_ceiling_usd > 0 &&
	    (v->valuedouble == 0 ||
	    v->valuedouble > hp.conf->max_budget_ceiling_usd)) {
		snprintf(why, len, "options.max_budget_usd must be more than 0 "
		    "and at most max_budget_ceiling_usd (%.2f)",
		    hp.conf->max_budget_ceiling_usd);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "approvals");
	if (v != NULL && (!cJSON_IsString(v) ||
	    (strcmp(v->valuestring, "daemon") != 0 &&
	    strcmp(v->valuestring, "client") != 0))) {
		snprintf(why, len, "options.approvals must be \"daemon\" or "
		    "\"client\"");
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(opt, "mcp_config");
	if (v != NULL && !hp.conf->allow_session_mcp) {
		snprintf(why, len, "options.mcp_config needs allow_session_mcp "
		    "= yes in the daemon's configuration");
		return -1;
	}
	if (v != NULL && mcp_config_check(v, why, len) == -1)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(opt, "approval_timeout_ms");
	if (v != NULL && (!cJSON_IsNumber(v) || v->valuedouble < 1 ||
	    v->valuedouble > SESSION_TIMEOUT_MAX_MS)) {
		snprintf(why, len, "options.approval_timeout_ms must be 1..%.0f",
		    SESSION_TIMEOUT_MAX_MS);
		return -1;
	}
	return 0;
}

/*
 * A stopped session used again: stop ended its conversation, so a new one
 * begins (resumed false); the session's statistics keep the old one's.
 */
static void
session_revive(struct session *s)
{
	s->stop_final = 0;
	util_uuid(s->cli_session_id);
	s->has_conversation = 0;
	log_info("session %s used after stop: new CLI session %s", s->name,
	    s->cli_session_id);
	state_session_save(s);
	transcript_forget(s);
}

/*
 * Without a workdir: <first root>/<owner uid>/<name>, "~" being the
 * identity's home; per uid, as the names are.
 */
static char *
session_default_workdir(const struct ident *run, uid_t owner,
    const char *name)
{
	const char	*root = hp.conf->workdir_root.v[0];
	struct passwd	*pw;
	char		*p;

	if (root[0] != '~') {
		xasprintf(&p, "%s/%u/%s", root, (unsigned)owner, name);
		return p;
	}
	if ((pw = getpwuid(run->uid)) == NULL || pw->pw_dir == NULL ||
	    pw->pw_dir[0] != '/')
		return NULL;
	xasprintf(&p, "%s%s/%s", pw->pw_dir, root + 1, name);
	return p;
}

/* Validates options and workdir; creates the session if new. */
static struct session *
session_prepare(struct client *c, const char *req, const cJSON *r)
{
	const char	*name = json_str(r, "session");
	const cJSON	*wd = cJSON_GetObjectItemCaseSensitive(r, "workdir");
	const cJSON	*opt = cJSON_GetObjectItemCaseSensitive(r, "options");
	struct session	*s;
	char		*def = NULL, why[256];
	const char	*workdir;
	uid_t		 owner;
	struct ident	 run;
	int		 rc;

	if (name == NULL || !proto_valid_session(name)) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "\"session\" must be 1 to %d bytes of [A-Za-z0-9._:@-]",
		    PROTO_SESSION_MAX);
		return NULL;
	}
	if (wd != NULL && !cJSON_IsString(wd)) {
		server_client_error(c, req, name, ERR_BAD_REQUEST,
		    "\"workdir\" must be a string");
		return NULL;
	}
	if (opt != NULL && !cJSON_IsObject(opt)) {
		server_client_error(c, req, name, ERR_BAD_REQUEST,
		    "\"options\" must be an object");
		return NULL;
	}
	if (opt != NULL && session_options_check(opt, why, sizeof why) == -1) {
		server_client_error(c, req, name, ERR_BAD_REQUEST, "%s", why);
		return NULL;
	}
	if (hp.shutting_down) {
		server_client_error(c, req, name, ERR_SHUTTING_DOWN,
		    "the server is shutting down");
		return NULL;
	}
	if (session_owner(c, req, r, &owner) == -1)
		return NULL;
	/* A shared store: the session may be in another host's last rows. */
	if ((s = session_find(name, owner)) == NULL &&
	    (rc = lease_adopt(owner, name, &s, why, sizeof why)) != 0) {
		session_lease_refused(c, req, name, rc, why);
		return NULL;
	}
	if (s != NULL) {
		if (!session_visible(s, c)) {
			server_client_error(c, req, name, ERR_NOT_FOUND,
			    "no session \"%s\"", name);
			return NULL;
		}
		if (cJSON_IsString(wd) && strcmp(wd->valuestring, s->workdir) != 0) {
			server_client_error(c, req, name, ERR_BAD_REQUEST,
			    "session \"%s\" runs in %s", name, s->workdir);
			return NULL;
		}
		if (session_run_ident(s, c, why, sizeof why) == -1) {
			log_warnx("session %s of uid %ld: %s", name,
			    (long)s->uid, why);
			server_client_error(c, req, name, ERR_FORBIDDEN, "%s",
			    why);
			return NULL;
		}
		/* Served here from now on, unless another host serves it. */
		if ((rc = lease_take(s, why, sizeof why)) != 0) {
			session_lease_refused(c, req, name, rc, why);
			return NULL;
		}
		if (s->state != SESSION_ENDED)
			return s;
	} else if (owner != c->uid) {
		/* Administrators act on sessions; users create their own. */
		server_client_error(c, req, name, ERR_NOT_FOUND,
		    "no session \"%s\" of uid %ld", name, (long)owner);
		return NULL;
	}
	if (census_live() >= (size_t)hp.conf->max_sessions) {
		server_client_error(c, req, name, ERR_CAPACITY,
		    "max_sessions (%d) reached", hp.conf->max_sessions);
		return NULL;
	}
	if (hp.conf->max_sessions_per_uid > 0 && !c->admin &&
	    census_live_uid(c->uid) >=
	    (size_t)hp.conf->max_sessions_per_uid) {
		server_client_error(c, req, name, ERR_CAPACITY,
		    "max_sessions_per_uid (%d) reached for uid %ld",
		    hp.conf->max_sessions_per_uid, (long)c->uid);
		return NULL;
	}
	if (s != NULL)		/* an ended session comes back */
		return s;
	/* Decided before anything exists: a refusal leaves no trace. */
	if (isolation_ident(c->uid, c->gid, c->groups, c->ngroups,
	    session_dynamic_uid(), &run, why, sizeof why) == -1) {
		log_warnx("session %s of uid %ld refused: %s", name,
		    (long)c->uid, why);
		server_client_error(c, req, name, util_errno_capacity(errno) ?
		    ERR_CAPACITY : ERR_FORBIDDEN, "%s", why);
		return NULL;
	}
	if (cJSON_IsString(wd))
		workdir = wd->valuestring;
	else if ((def = session_default_workdir(&run, c->uid, name)) == NULL) {
		server_client_error(c, req, name, ERR_WORKDIR_DENIED,
		    "no workdir given and no default (workdir_root)");
		return NULL;
	} else
		workdir = def;
	if (workdir[0] != '/') {
		server_client_error(c, req, name, ERR_WORKDIR_DENIED,
		    "workdir must be an absolute path");
		free(def);
		return NULL;
	}
	s = session_new(name, c->uid, workdir, opt);
	if ((rc = lease_take(s, why, sizeof why)) != 0) {
		session_lease_refused(c, req, name, rc, why);
		free(def);
		session_forget(s);
		return NULL;
	}
	s->run = run;
	s->run_known = 1;
	log_info("session %s of uid %ld runs as uid %ld gid %ld", name,
	    (long)c->uid, (long)run.uid, (long)run.gid);
	free(def);
	/* The daemon's permission_mode, for sessions that set none. */
	if (hp.conf->permission_mode != NULL && cJSON_GetObjectItemCaseSensitive(
	    s->options, "permission_mode") == NULL)
		cJSON_AddStringToObject(s->options, "permission_mode",
		    hp.conf->permission_mode);
	state_session_save(s);
	return s;
}

/* Turns that wait for a worker to be spawned are bounded too. */
static int
session_queue_full(struct client *c, const char *req, struct session *s)
{
	if (session_nqueued < hp.conf->max_spawn_queue)
		return 0;
	if (c != NULL)		/* NULL: a queued turn whose client left */
		server_client_error(c, req, s->name, ERR_CAPACITY,
	    "max_spawn_queue (%d) sessions already wait for a worker",
	    hp.conf->max_spawn_queue);
	/* A session created by this very request leaves no trace. */
	if (s->seq == 0 && s->total.turns == 0 && !s->has_conversation &&
	    !session_waiting(&s->exec) && !session_waiting(&s->open))
		session_forget(s);
	return 1;
}

/* A turn runs or waits to start, or the session is being ended. */
static int
session_running(const struct session *s)
{
	return session_waiting(&s->exec) || s->state == SESSION_BUSY ||
	    (s->state == SESSION_STOPPING && s->stop_final);
}

/* ... or turns are queued: they go first. */
static int
session_busy(const struct session *s)
{
	return session_running(s) || s->nturnq > 0;
}

/* The execute's prefix: {"id":..,"session":..,"seq": */
static void
session_prefix(struct session *s, const char *req)
{
	cJSON	*pre = cJSON_CreateObject();
	char	*ps;

	cJSON_AddStringToObject(pre, "id", req);
	cJSON_AddStringToObject(pre, "session", s->name);
	ps = json_print(pre);
	cJSON_Delete(pre);
	ps[strlen(ps) - 1] = '\0';
	free(s->cur.prefix);
	s->cur.prefix_len = (size_t)xasprintf(&s->cur.prefix, "%s,\"seq\":", ps);
	cJSON_free(ps);
}

/*
 * The firewall on the prompt: blocked, it answers danger_block and
 * error danger_blocked (the execute's lines) and writes an audit line.
 */
static int
session_screen(struct client *c, uid_t uid, pid_t pid, const char *req,
    struct session *s, const char *prompt)
{
	struct policy_verdict	 v;
	cJSON			*d;

	if (hp.screen->policy == NULL)
		return 0;
	policy_check(hp.screen->policy, POLICY_PROMPT, prompt, strlen(prompt),
	    hp.screen->threshold, &v);
	if (!v.blocked) {
		if (v.nmatches > 0)
			log_info("firewall: session %s prompt passed with score "
			    "%d (%s)", s->name, v.score, v.matches[0].rule);
		return 0;
	}
	screen_audit(uid, pid, s->name, &v);
	audit_firewall(s, prompt, &v);
	s->total.danger_blocks++;
	hp.all_total.danger_blocks++;
	session_waiter_set(&s->exec, c, req);
	session_prefix(s, req);
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "rule", v.nmatches ? v.matches[0].rule : "");
	cJSON_AddStringToObject(d, "category",
	    v.nmatches ? v.matches[0].category : "");
	cJSON_AddNumberToObject(d, "severity",
	    v.nmatches ? v.matches[0].severity : 0);
	cJSON_AddNumberToObject(d, "score", v.score);
	cJSON_AddStringToObject(d, "excerpt", v.excerpt);
	cJSON_AddStringToObject(d, "reason",
	    v.nmatches ? v.matches[0].message : "input refused");
	cJSON_AddItemToObject(d, "matches", policy_verdict_json(&v));
	session_emit(s, "danger_block", d);
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "code", ERR_DANGER_BLOCKED);
	cJSON_AddStringToObject(d, "message",
	    v.nmatches ? v.matches[0].message : "prompt refused by the firewall");
	session_emit(s, "error", d);
	session_waiter_clear(&s->exec);
	free(s->cur.prefix);
	s->cur.prefix = NULL;
	state_session_save(s);
	return -1;
}

void
session_op_policy_check(struct client *c, const char *req, const cJSON *r)
{
	const char		*text = json_str(r, "text");
	const char		*tname = json_str(r, "target");
	enum policy_target	 target = POLICY_PROMPT;
	struct policy_verdict	 v;

	if (text == NULL || (tname != NULL &&
	    policy_target_parse(tname, &target) == -1)) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "policy_check needs \"text\" and an optional \"target\" "
		    "(prompt, bash, path)");
		return;
	}
	if (hp.screen->policy == NULL) {
		memset(&v, 0, sizeof v);
		v.threshold = hp.screen->threshold;
		server_client_reply(c, req, "verdict", policy_verdict_json(&v));
		return;
	}
	policy_check(hp.screen->policy, target, text, strlen(text),
	    hp.screen->threshold, &v);
	server_client_reply(c, req, "verdict", policy_verdict_json(&v));
}

/*
 * Starts an execute's turn: the firewall on its prompt, then the running
 * CLI or a worker.  c is NULL for a queued turn whose client left (its
 * lines go to the followers and the ring).
 */
static void
session_exec_start(struct session *s, struct client *c, uid_t uid, pid_t pid,
    const char *req, const char *prompt, int slash, uint64_t timeout_ms)
{
	char		 why[256];
	uint64_t	 retry_ms;
	cJSON		*e;

	/* Spent: no turn until configure (or the config) raises the budget. */
	if (budget_reached(s, why, sizeof why)) {
		if (c != NULL)
			server_client_error(c, req, s->name,
			    ERR_BUDGET_EXCEEDED, "%s", why);
		return;
	}
	/* rate_limit_admission: the account is over; say when to retry. */
	if (ratelimit_admit(&retry_ms) == -1) {
		if (c != NULL) {
			snprintf(why, sizeof why, "the account is over "
			    "rate_limit_threshold (%d%%) for %llu ms more",
			    hp.conf->rate_limit_threshold,
			    (unsigned long long)retry_ms);
			e = proto_error(req, s->name, ERR_RATE_LIMITED, why);
			cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(
			    e, "data"), "retry_after_ms", (double)retry_ms);
			server_client_send(c, e);
		}
		return;
	}
	if ((s->state == SESSION_DORMANT || s->state == SESSION_ENDED) &&
	    session_queue_full(c, req, s))
		return;
	if (session_screen(c, uid, pid, req, s, prompt) == -1)
		return;
	s->turn++;
	s->cur.request_us = util_now_us();
	session_waiter_set(&s->exec, c, req);
	session_prefix(s, req);

	free(s->cur.pending_prompt);
	s->cur.pending_prompt = xstrdup(prompt);
	s->cur.pending_slash = slash;
	s->cur.pending_timeout_ms = timeout_ms;
	if (s->state == SESSION_ENDED)
		session_revive(s);

	switch (s->state) {
	case SESSION_READY:
		session_turn_begin(s);
		break;
	case SESSION_STARTING:
	case SESSION_STOPPING:
		break;		/* begins when the CLI is up, or after the stop */
	default:
		session_assign(s);
		break;
	}
}

/* --- queued turns ----------------------------------------------------------- */

static void
session_turnq_free(struct queued_turn *q)
{
	session_waiter_clear(&q->w);
	free(q->prompt);
	free(q);
}

/* Ends every queued execute of s with an error line (no seq: none ran). */
static void
session_turnq_cancel(struct session *s, const char *code, const char *why)
{
	struct queued_turn	*q;

	while ((q = TAILQ_FIRST(&s->turnq)) != NULL) {
		TAILQ_REMOVE(&s->turnq, q, entry);
		s->nturnq--;
		if (q->w.c != NULL)
			server_client_error(q->w.c, q->w.req, s->name, code,
			    "%s", why);
		session_turnq_free(q);
	}
}

/*
 * An execute with "queue": true on a busy session waits at the tail, up
 * to max_queued_turns; it is told its place with a "queued" line.
 */
static void
session_turnq_add(struct session *s, struct client *c, const char *req,
    const char *prompt, int slash, uint64_t timeout_ms)
{
	struct queued_turn	*q;
	cJSON			*o, *d;
	char			*t;

	if (s->nturnq >= hp.conf->max_queued_turns) {
		server_client_error(c, req, s->name, ERR_SESSION_BUSY,
		    "session \"%s\" is running a turn and has %d queued "
		    "(max_queued_turns)", s->name, s->nturnq);
		return;
	}
	q = xcalloc(1, sizeof *q);
	session_waiter_set(&q->w, c, req);
	q->uid = c->uid;
	q->pid = c->pid;
	q->prompt = xstrdup(prompt);
	q->slash = slash;
	q->timeout_ms = timeout_ms;
	TAILQ_INSERT_TAIL(&s->turnq, q, entry);
	s->nturnq++;
	log_debug("session %s: turn of request %s queued at %d", s->name, req,
	    s->nturnq);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", req);
	cJSON_AddStringToObject(o, "session", s->name);
	cJSON_AddStringToObject(o, "type", "queued");
	d = cJSON_AddObjectToObject(o, "data");
	cJSON_AddNumberToObject(d, "position", s->nturnq);
	t = json_print(o);
	server_client_write(c, t, strlen(t));
	server_client_write(c, "\n", 1);
	cJSON_free(t);
	cJSON_Delete(o);
}

/* The session's turn ended: the head of its queue starts. */
static void
session_turnq_run(evutil_socket_t fd, short what, void *arg)
{
	struct session		*s = arg;
	struct queued_turn	*q;

	if (TAILQ_EMPTY(&s->turnq) || session_running(s))
		return;		/* the running turn's end comes back here */
	if (hp.shutting_down) {
		session_turnq_cancel(s, ERR_SHUTTING_DOWN,
		    "the server is shutting down");
		return;
	}
	q = TAILQ_FIRST(&s->turnq);
	TAILQ_REMOVE(&s->turnq, q, entry);
	s->nturnq--;
	session_exec_start(s, q->w.c, q->uid, q->pid, q->w.req, q->prompt,
	    q->slash, q->timeout_ms);
	session_turnq_free(q);
	/* Refused (firewall, capacity) without running: the next one. */
	if (!TAILQ_EMPTY(&s->turnq) && !session_running(s))
		event_active(s->turnq_ev, EV_TIMEOUT, 1);
}

void
session_op_execute(struct client *c, const char *req, const cJSON *r)
{
	const char	*prompt = json_str(r, "prompt");
	const cJSON	*opt = cJSON_GetObjectItemCaseSensitive(r, "options");
	const cJSON	*queue = cJSON_GetObjectItemCaseSensitive(r, "queue");
	const cJSON	*v;
	struct session	*s;
	uint64_t	 timeout_ms;
	int		 slash;

	if (prompt == NULL || *prompt == '\0' ||
	    strlen(prompt) > SESSION_PROMPT_MAX) {
		server_client_error(c, req, json_str(r, "session"),
		    ERR_BAD_REQUEST, "\"prompt\" must be a non-empty string");
		return;
	}
	if (queue != NULL && !cJSON_IsBool(queue)) {
		server_client_error(c, req, json_str(r, "session"),
		    ERR_BAD_REQUEST, "\"queue\" must be a boolean");
		return;
	}
	if ((s = session_prepare(c, req, r)) == NULL)
		return;
	/* options.timeout_ms and slash_commands are the turn's own. */
	slash = cJSON_IsObject(opt) &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opt, "slash_commands"));
	v = cJSON_IsObject(opt) ?
	    cJSON_GetObjectItemCaseSensitive(opt, "timeout_ms") : NULL;
	timeout_ms = cJSON_IsNumber(v) && v->valuedouble > 0 ?
	    (uint64_t)v->valuedouble : 0;
	if (session_busy(s)) {
		if (cJSON_IsTrue(queue) &&
		    !(s->state == SESSION_STOPPING && s->stop_final)) {
			session_turnq_add(s, c, req, prompt, slash, timeout_ms);
			return;
		}
		server_client_error(c, req, s->name, ERR_SESSION_BUSY,
		    "session \"%s\" is running a turn", s->name);
		return;
	}
	session_exec_start(s, c, c->uid, c->pid, req, prompt, slash,
	    timeout_ms);
}

void
session_op_open(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;

	if ((s = session_prepare(c, req, r)) == NULL)
		return;
	if (s->state == SESSION_READY || s->state == SESSION_BUSY) {
		server_client_ok(c, req, NULL);
		return;
	}
	if (session_waiting(&s->open) || s->state == SESSION_STOPPING ||
	    s->state == SESSION_STARTING) {
		server_client_error(c, req, s->name, ERR_SESSION_BUSY,
		    "session \"%s\" is starting or stopping", s->name);
		return;
	}
	if (session_queue_full(c, req, s))
		return;
	if (s->state == SESSION_ENDED)
		session_revive(s);
	s->cur.request_us = util_now_us();
	session_waiter_set(&s->open, c, req);
	session_assign(s);
}

void
session_op_interrupt(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;
	cJSON		*d;

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	/* Queued turns go first, so that none starts after this one ends. */
	session_turnq_cancel(s, ERR_CANCELLED, "interrupted before it began");
	d = cJSON_CreateObject();
	if (s->state == SESSION_BUSY && s->worker != NULL) {
		session_send(s, MSG_INTERRUPT, NULL);
		cJSON_AddBoolToObject(d, "interrupting", 1);
	} else if (session_waiting(&s->exec)) {
		/* Not started yet: the turn ends here. */
		struct proto_done done = { .ok = 1, .interrupted = 1,
		    .terminal_reason = "interrupted" };

		session_emit(s, "done", proto_done_json(&done));
		session_turn_close(s);
		cJSON_AddBoolToObject(d, "interrupting", 1);
	} else
		cJSON_AddBoolToObject(d, "interrupting", 0);
	server_client_ok(c, req, d);
}

void
session_op_stop(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;
	struct proto_done done = { .interrupted = 1,
			    .terminal_reason = "stopped" };
	const char	*reason = json_str(r, "reason");

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	log_info("session %s: stop requested by uid %ld%s%s", s->name,
	    (long)c->uid, reason ? ": " : "", reason ? reason : "");
	session_turnq_cancel(s, ERR_CANCELLED, "the session was stopped");
	if (session_waiting(&s->exec)) {
		session_turn_count(s, 0);
		state_session_save(s);
		session_emit(s, "done", proto_done_json(&done));
		session_turn_close(s);
	}
	session_waiter_error(s, &s->open, ERR_CLI_EXITED, "session stopped");
	s->stop_final = 1;
	event_del(s->idle_timer);
	if (s->worker == NULL) {
		session_dequeue(s);
		session_end(s);
		state_session_save(s);
		server_client_ok(c, req, NULL);
		session_trim_ended();
		return;
	}
	if (session_waiting(&s->stop)) {
		server_client_error(c, req, s->name, ERR_SESSION_BUSY,
		    "session \"%s\" is already stopping", s->name);
		return;
	}
	session_waiter_set(&s->stop, c, req);
	session_set_state(s, SESSION_STOPPING);
	session_send(s, MSG_STOP, NULL);
}

void
session_op_reset(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	if (session_busy(s) || s->state == SESSION_STARTING) {
		server_client_error(c, req, s->name, ERR_SESSION_BUSY,
		    "session \"%s\" is busy", s->name);
		return;
	}
	util_uuid(s->cli_session_id);
	s->has_conversation = 0;
	log_info("session %s reset: next CLI session %s", s->name,
	    s->cli_session_id);
	state_session_save(s);
	transcript_forget(s);
	if (s->worker != NULL && s->state != SESSION_STOPPING) {
		session_set_state(s, SESSION_STOPPING);
		s->stop_final = 0;
		session_send(s, MSG_STOP, NULL);
	}
	server_client_ok(c, req, NULL);
}

void
session_op_stats(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;
	struct stats	 sum;
	struct gateway_stats gsum;
	cJSON		*d;
	int		 n = 0;

	if (cJSON_GetObjectItemCaseSensitive(r, "session") != NULL) {
		if ((s = session_lookup(c, req, r)) != NULL)
			server_client_reply(c, req, "stats",
			    session_stats_json(s));
		return;
	}
	stats_init(&sum);
	memset(&gsum, 0, sizeof gsum);
	if (c->admin)
		stats_add(&sum, &hp.ended_total);
	TAILQ_FOREACH(s, &hp.sessions, entry) {
		if (!session_visible(s, c))
			continue;
		stats_add(&sum, &s->total);
		server_gateway_stats_add(&gsum, &s->gw);
		n++;
	}
	d = stats_to_json(&sum);
	/* An administrator sees the account's: every request it paid for. */
	server_gateway_stats_json(c->admin ? server_gateway_account() : &gsum,
	    d);
	cJSON_AddNumberToObject(d, "sessions", n);
	cJSON_AddNumberToObject(d, "workers", pool_count());
	cJSON_AddNumberToObject(d, "spares", pool_spares());
	stats_clear(&sum);
	server_client_reply(c, req, "stats", d);
}

void
session_op_sessions(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;
	cJSON		*a = cJSON_CreateArray(), *o;
	uint64_t	 now = util_now_ms();

	TAILQ_FOREACH(s, &hp.sessions, entry) {
		if (!session_visible(s, c))
			continue;
		o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "session", s->name);
		/* A turn that waits for the app's answer says so. */
		cJSON_AddStringToObject(o, "state", s->napprovals > 0 ?
		    "waiting_approval" : proto_state_name(s->state));
		cJSON_AddNumberToObject(o, "uid", s->uid);
		if (s->run_known) {
			cJSON_AddNumberToObject(o, "run_uid", s->run.uid);
			cJSON_AddNumberToObject(o, "run_gid", s->run.gid);
		}
		cJSON_AddItemToObject(o, "isolation", isolation_json());
		cJSON_AddStringToObject(o, "workdir", s->workdir);
		cJSON_AddStringToObject(o, "cli_session_id", s->cli_session_id);
		cJSON_AddNumberToObject(o, "worker_pid",
		    s->worker != NULL ? s->worker->pid : 0);
		cJSON_AddNumberToObject(o, "cli_pid", s->cli_pid);
		cJSON_AddNumberToObject(o, "turns", (double)s->total.turns);
		cJSON_AddNumberToObject(o, "idle_ms", s->state == SESSION_BUSY ?
		    0 : (double)(now - s->active_ms));
		cJSON_AddNumberToObject(o, "cost_usd", s->total.cost_usd);
		cJSON_AddNumberToObject(o, "tokens",
		    (double)stats_tokens_total(&s->total));
		cJSON_AddNumberToObject(o, "queued", s->nturnq);
		session_rate_limit_json(s, o);
		cJSON_AddNumberToObject(o, "api_requests",
		    (double)s->gw.requests);
		cJSON_AddNumberToObject(o, "api_status", s->gw.last_status);
		if (s->gw.ratelimit != NULL)
			cJSON_AddItemToObject(o, "ratelimit",
			    cJSON_Duplicate(s->gw.ratelimit, 1));
		cJSON_AddItemToArray(a, o);
	}
	server_client_reply(c, req, "sessions", a);
}

static int
session_follower_remove(struct session *s, struct client *c)
{
	size_t	i;

	for (i = 0; i < s->nfollowers; i++) {
		if (s->followers[i] == c) {
			s->followers[i] = s->followers[--s->nfollowers];
			c->refs--;
			return 1;
		}
	}
	return 0;
}

static void
session_replay_one(void *arg, const struct ring_entry *e)
{
	server_client_write(arg, e->line, e->len);
}

/*
 * attach: the lines the ring still holds after since_seq (the reply says
 * which were lost), then every new line of the session, until detach.
 */
void
session_op_attach(struct client *c, const char *req, const cJSON *r)
{
	const cJSON	*since = cJSON_GetObjectItemCaseSensitive(r, "since_seq");
	struct session	*s;
	uint64_t	 from = 0;
	cJSON		*d;
	size_t		 i;

	if (since != NULL && (!cJSON_IsNumber(since) || since->valuedouble < 0)) {
		server_client_error(c, req, NULL, ERR_BAD_REQUEST,
		    "\"since_seq\" must be a number >= 0");
		return;
	}
	if (since != NULL)
		from = (uint64_t)since->valuedouble;
	if ((s = session_lookup_served(c, req, r)) == NULL)
		return;
	if (s->frozen) {	/* a follower finds it running */
		session_thaw(s);
		session_freeze_arm(s);
	}
	for (i = 0; i < s->nfollowers && s->followers[i] != c; i++)
		;
	if (i == s->nfollowers && s->nfollowers == SESSION_FOLLOWERS_MAX) {
		server_client_error(c, req, s->name, ERR_CAPACITY,
		    "session \"%s\" has %d clients attached", s->name,
		    SESSION_FOLLOWERS_MAX);
		return;
	}
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "session", s->name);
	cJSON_AddNumberToObject(d, "seq", (double)s->seq);
	cJSON_AddStringToObject(d, "state", proto_state_name(s->state));
	if (s->state == SESSION_ENDED) {
		/* Its lines went with its ring: the stats and the end. */
		cJSON_AddBoolToObject(d, "ended", 1);
		cJSON_AddItemToObject(d, "stats", session_stats_json(s));
		server_client_ok(c, req, d);
		return;
	}
	if (from < s->ring.dropped_to && from < s->seq) {
		/* Lines from+1 .. dropped_to are gone. */
		cJSON *lost = cJSON_AddArrayToObject(d, "lost");

		cJSON_AddItemToArray(lost, cJSON_CreateNumber((double)from + 1));
		cJSON_AddItemToArray(lost,
		    cJSON_CreateNumber((double)s->ring.dropped_to));
	}
	server_client_ok(c, req, d);
	ring_each(&s->ring, from, session_replay_one, c);
	if (i == s->nfollowers) {
		s->followers[s->nfollowers++] = c;
		c->refs++;
	}
}

void
session_op_detach(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	session_follower_remove(s, c);
	server_client_ok(c, req, NULL);
}

/* Keeps settings in the session's options (consumed), for every CLI. */
static void
session_configure_apply(struct session *s, cJSON *set)
{
	cJSON	*e, *next;

	for (e = set->child; e != NULL; e = next) {
		next = e->next;
		cJSON_DetachItemViaPointer(set, e);
		/* (Replacing would free the name it is given: e's own.) */
		cJSON_DeleteItemFromObjectCaseSensitive(s->options, e->string);
		cJSON_AddItemToObject(s->options, e->string, e);
	}
	cJSON_Delete(set);
	state_session_save(s);
}

/*
 * The CLI answered a configure (live: 1), or is gone (live: 0, and its
 * settings are the next CLI's); why is the CLI's refusal, else NULL.
 */
static void
session_configure_done(struct session *s, int live, const char *why)
{
	cJSON	*d;

	if (!session_waiting(&s->configure))
		return;
	if (why != NULL) {
		cJSON_Delete(s->configure_pending);
		if (s->configure.c != NULL)
			server_client_error(s->configure.c, s->configure.req,
			    s->name, ERR_BAD_REQUEST, "the CLI refused: %s", why);
	} else {
		session_configure_apply(s, s->configure_pending);
		if (s->configure.c != NULL) {
			d = cJSON_CreateObject();
			cJSON_AddBoolToObject(d, "live", live);
			server_client_ok(s->configure.c, s->configure.req, d);
		}
	}
	s->configure_pending = NULL;
	session_waiter_clear(&s->configure);
}

/*
 * configure: model and permission_mode change a running CLI through its
 * set_model / set_permission_mode; every setting is kept in the session's
 * options, for the CLIs started later.
 */
void
session_op_configure(struct client *c, const char *req, const cJSON *r)
{
	static const char *keys[] = { "model", "permission_mode",
	    "max_budget_usd" };
	const cJSON		*v;
	struct session		*s;
	struct msg_configure	 m;
	cJSON			*set;
	char			 why[256];
	size_t			 i;

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	set = cJSON_CreateObject();
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if ((v = cJSON_GetObjectItemCaseSensitive(r, keys[i])) != NULL)
			cJSON_AddItemToObject(set, keys[i],
			    cJSON_Duplicate(v, 1));
	if (set->child == NULL) {
		cJSON_Delete(set);
		server_client_error(c, req, s->name, ERR_BAD_REQUEST,
		    "configure needs model, permission_mode or "
		    "max_budget_usd");
		return;
	}
	if (session_options_check(set, why, sizeof why) == -1) {
		cJSON_Delete(set);
		server_client_error(c, req, s->name, ERR_BAD_REQUEST, "%s",
		    why + (strncmp(why, "options.", 8) == 0 ? 8 : 0));
		return;
	}
	if (session_waiting(&s->configure)) {
		cJSON_Delete(set);
		server_client_error(c, req, s->name, ERR_SESSION_BUSY,
		    "session \"%s\" is being configured", s->name);
		return;
	}
	log_info("session %s: configure by uid %ld", s->name, (long)c->uid);
	memset(&m, 0, sizeof m);
	m.model = json_str(set, "model");
	m.permission_mode = json_str(set, "permission_mode");
	if (s->worker == NULL || s->state == SESSION_STOPPING ||
	    (m.model == NULL && m.permission_mode == NULL)) {
		/* Nothing runs that the settings would change now. */
		session_configure_apply(s, set);
		v = cJSON_CreateObject();
		cJSON_AddBoolToObject((cJSON *)v, "live", 0);
		server_client_ok(c, req, (cJSON *)v);
		return;
	}
	session_waiter_set(&s->configure, c, req);
	s->configure_pending = set;
	session_thaw(s);	/* the CLI answers; it may freeze again later */
	pool_send_configure(s->worker, s->turn, &m);
	session_freeze_arm(s);
}

/*
 * The app's answer to a permission_request: the first one wins (the
 * request is then forgotten here); later ones, and answers to requests
 * that timed out or were withdrawn, get not_found.
 */
void
session_op_permission(struct client *c, const char *req, const cJSON *r)
{
	const char	*id = json_str(r, "request_id");
	const char	*decision = json_str(r, "decision");
	const cJSON	*msg = cJSON_GetObjectItemCaseSensitive(r, "message");
	const cJSON	*upd = cJSON_GetObjectItemCaseSensitive(r,
			    "updated_input");
	struct session		*s;
	struct msg_permission	 p;

	if ((s = session_lookup(c, req, r)) == NULL)
		return;
	if (id == NULL || decision == NULL || (strcmp(decision, "allow") != 0 &&
	    strcmp(decision, "deny") != 0) || (msg != NULL &&
	    (!cJSON_IsString(msg) ||
	    strlen(msg->valuestring) > SESSION_OPT_STR_MAX)) ||
	    (upd != NULL && !cJSON_IsObject(upd))) {
		server_client_error(c, req, s->name, ERR_BAD_REQUEST,
		    "permission needs \"request_id\", \"decision\" (allow or "
		    "deny), an optional \"message\" string and an optional "
		    "\"updated_input\" object");
		return;
	}
	if (s->worker == NULL || !session_approval_remove(s, id)) {
		server_client_error(c, req, s->name, ERR_NOT_FOUND,
		    "no permission request \"%.128s\" waits in session \"%s\"",
		    id, s->name);
		return;
	}
	log_info("session %s: permission request %s answered %s by uid %ld",
	    s->name, id, decision, (long)c->uid);
	audit_app_answer(s, id, c->uid);
	memset(&p, 0, sizeof p);
	p.request_id = id;
	p.allow = strcmp(decision, "allow") == 0;
	p.message = msg != NULL ? msg->valuestring : NULL;
	p.updated_input = upd;
	pool_send_permission(s->worker, s->turn, &p);
	server_client_ok(c, req, NULL);
}

/* Pauses (or resumes) reading the workers whose turn goes to c. */
void
session_client_stalled(struct client *c, int stalled)
{
	struct session	*s;

	/*
	 * Pausing touches only its own turns' workers: none, no walk.  A
	 * resume walks, as a turn may have ended while its worker was paused.
	 */
	if (stalled && c->refs == 0)
		return;
	TAILQ_FOREACH(s, &hp.sessions, entry) {
		if (s->worker == NULL || s->worker->bev == NULL ||
		    (stalled && s->exec.c != c))
			continue;
		if (stalled && !s->worker->paused) {
			s->worker->paused = 1;
			bufferevent_disable(s->worker->bev, EV_READ);
			log_info("session %s: client does not read; pausing its "
			    "worker", s->name);
		} else if (!stalled && s->worker->paused && !s->worker->closed &&
		    (s->exec.c == c || s->exec.c == NULL)) {
			s->worker->paused = 0;
			bufferevent_enable(s->worker->bev, EV_READ);
		}
	}
}

/* A client left: its turns go on; their lines go nowhere. */
void
session_client_gone(struct client *c)
{
	struct session		*s;
	struct queued_turn	*q;

	/*
	 * Only a client that some session points at (a turn, an open, a stop
	 * or a follow of its own) costs a walk of the table.
	 */
	if (c->refs == 0)
		return;
	TAILQ_FOREACH(s, &hp.sessions, entry) {
		session_follower_remove(s, c);
		TAILQ_FOREACH(q, &s->turnq, entry)
			if (q->w.c == c)
				q->w.c = NULL;
		if (s->exec.c == c)
			s->exec.c = NULL;
		if (s->open.c == c)
			s->open.c = NULL;
		if (s->configure.c == c)
			s->configure.c = NULL;
		if (s->stop.c == c)
			s->stop.c = NULL;
	}
	c->refs = 0;	/* every pointer to it is gone */
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
			session_set_state(s, SESSION_STOPPING);
			session_send(s, MSG_STOP, NULL);
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
			session_set_state(s, SESSION_STOPPING);
			session_send(s, MSG_STOP, NULL);
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
