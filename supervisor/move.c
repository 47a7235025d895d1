/*
 * Moving a session between hosts that share a PostgreSQL store.  A request
 * (execute, open, attach) on host B for a session whose lease host A holds
 * does not fail at once: B asks A, over the hosts' channel (notify.c), to
 * let the session go, and the request waits.  A lets a running turn end
 * (at most move_timeout; then the turn is ended with session_moved), gives
 * the lease back as soon as the last turn's transcript is in the store
 * (its CLI then stops in the background and writes nothing more), tells
 * its clients (a session_moved event) and B (released), and forgets the
 * session.  B's request runs again: it takes
 * the lease, reads the session's row and resumes the conversation from the
 * stored transcript.
 *
 * The lease decides, never a message: a lost message, or an A that died,
 * costs B a wait until the lease runs out (the holder's remaining time, at
 * most move_timeout), then the request runs again once; a lease still held
 * then is session_elsewhere.
 *
 * Draining (the drain op) lets every session go the same way with no host
 * asking (move_to ""): each goes dormant, its lease given back, and
 * resumes wherever its next turn arrives.
 */
#include <sys/queue.h>
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "supervisor/notify.h"
#include "supervisor/store.h"

#define MOVE_WAITS_MAX		256	/* requests waiting for another host */
#define MOVE_SLACK_MS		1000	/* past the holder's stop and expiry */
#define MOVE_HOLDER_FOR		" (for "	/* store's "host (for N ms more)" */
#define MOVE_OP_RELEASE		"release"
#define MOVE_OP_RELEASED	"released"
#define MOVE_DRAIN		""	/* move_to: no host asked (drain) */

/* A request that waits for another host to let its session go. */
struct move_wait {
	TAILQ_ENTRY(move_wait)	 entry;
	struct client		*c;	/* NULL once it left */
	char			*req;
	cJSON			*r;	/* the request */
	move_op_fn		 op;
	uid_t			 uid;
	char			*name;
	char			*holder;
	struct event		*timer;
	uint64_t		 started_us;
};
static TAILQ_HEAD(, move_wait) move_waits = TAILQ_HEAD_INITIALIZER(move_waits);
static size_t	 move_nwaits;
static int	 move_again;	/* a request running for the last time */
static uint64_t	 move_again_us;	/* a parked request after waiting this long */
static uint64_t	 move_parked_us;	/* ... since then: parked again */
static uint64_t	 move_count, move_total_us;	/* moves B waited for */

static void
move_wait_free(struct move_wait *mw)
{
	TAILQ_REMOVE(&move_waits, mw, entry);
	move_nwaits--;
	event_free(mw->timer);
	free(mw->req);
	cJSON_Delete(mw->r);
	free(mw->name);
	free(mw->holder);
	free(mw);
}

/* How long a request waits for the holder, in all: it may end a turn. */
static uint64_t
move_bound_ms(void)
{
	return hp.conf->move_timeout_ms + hp.conf->kill_grace_ms +
	    MOVE_SLACK_MS;
}

/*
 * The request runs again.  Within move_bound_ms() of its first ask it may
 * be parked again: a holder that renewed its lease meanwhile is alive and
 * may still be ending a turn (the wait was cut at the lease's expiry, for
 * a dead holder).  Past it, a lease still held is an error.
 */
static void
move_wait_run(struct move_wait *mw, const char *why)
{
	uint64_t	us = util_now_us() - mw->started_us;
	int		last = us / 1000 >= move_bound_ms();
	size_t		n;

	log_info("move: session %s of uid %ld: %s after %llu us; the request "
	    "runs again%s", mw->name, (long)mw->uid, why,
	    (unsigned long long)us, last ? "" : " (parked again while the "
	    "holder holds on)");
	n = move_nwaits;
	if (mw->c != NULL) {
		move_again = last;
		move_again_us = us;
		move_parked_us = last ? 0 : mw->started_us;
		mw->op(mw->c, mw->req, mw->r);
		move_again = 0;
		move_again_us = 0;
		move_parked_us = 0;
	}
	/* A move waited for, unless parked again (counted at its end). */
	if (move_nwaits == n) {
		move_count++;
		move_total_us += us;
	}
	move_wait_free(mw);
}

static void
move_wait_fire(evutil_socket_t fd, short what, void *arg)
{
	move_wait_run(arg, "no word from the holder");
}

/* "host (for N ms more)": the host and N, or -1 when not said. */
static int64_t
move_holder_parse(const char *holder, char *host, size_t len)
{
	const char	*p = strstr(holder, MOVE_HOLDER_FOR);
	size_t		 n = p != NULL ? (size_t)(p - holder) : strlen(holder);

	if (n >= len)
		n = len - 1;
	memcpy(host, holder, n);
	host[n] = '\0';
	if (p == NULL)
		return -1;
	return strtoll(p + strlen(MOVE_HOLDER_FOR), NULL, 10);
}

/*
 * The session's lease is host holder's (lease_take or lease_adopt said
 * so): asks it to let go and parks the request.  1 if parked (no reply
 * now), 0 if the caller should refuse it (session_elsewhere).
 */
int
move_ask(struct client *c, const char *req, const cJSON *r, move_op_fn op,
    uid_t uid, const char *name, const char *holder)
{
	struct move_wait	*mw;
	struct timeval		 tv;
	cJSON			*m;
	char			 host[STATE_HOST_ID_MAX + 1];
	int64_t			 left_ms;
	uint64_t		 wait_ms, started, waited_ms;
	int			 asked;

	if (move_again || op == NULL || hp.conf->move_timeout_ms == 0 ||
	    move_nwaits >= MOVE_WAITS_MAX)
		return 0;
	left_ms = move_holder_parse(holder, host, sizeof host);
	if (host[0] == '\0')
		return 0;
	/*
	 * Until the holder says released, or its lease runs out (a dead
	 * holder), or it had the time to end a turn and stop the CLI.
	 */
	started = move_parked_us != 0 ? move_parked_us : util_now_us();
	waited_ms = (util_now_us() - started) / 1000;
	wait_ms = move_bound_ms() > waited_ms ? move_bound_ms() - waited_ms : 0;
	if (left_ms >= 0 && (uint64_t)left_ms + MOVE_SLACK_MS < wait_ms)
		wait_ms = (uint64_t)left_ms + MOVE_SLACK_MS;
	/*
	 * Not sent (the hosts' channel down, its queue full): the wait is
	 * for the lease to run out, as for a message lost; a dead holder's
	 * session is taken then all the same.
	 */
	m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "op", MOVE_OP_RELEASE);
	cJSON_AddNumberToObject(m, "uid", (double)uid);
	cJSON_AddStringToObject(m, "name", name);
	asked = notify_send(host, m) == 0;
	cJSON_Delete(m);
	mw = xcalloc(1, sizeof *mw);
	mw->c = c;
	mw->req = req != NULL ? xstrdup(req) : NULL;
	mw->r = cJSON_Duplicate(r, 1);
	mw->op = op;
	mw->uid = uid;
	mw->name = xstrdup(name);
	mw->holder = xstrdup(host);
	mw->started_us = started;
	mw->timer = evtimer_new(hp.base, move_wait_fire, mw);
	tv = util_ms_tv(wait_ms);
	evtimer_add(mw->timer, &tv);
	TAILQ_INSERT_TAIL(&move_waits, mw, entry);
	move_nwaits++;
	log_info("move: session %s of uid %ld is host %s's: %s; waiting at "
	    "most %llu ms", name, (long)uid, host, asked ? "asked it to let go" :
	    "not asked (the hosts' channel is down)",
	    (unsigned long long)wait_ms);
	return 1;
}

uint64_t
move_waited_us(void)
{
	return move_again_us;
}

void
move_client_gone(struct client *c)
{
	struct move_wait	*mw;

	TAILQ_FOREACH(mw, &move_waits, entry)
		if (mw->c == c)
			mw->c = NULL;
}

/* --- the holder's side -------------------------------------------------- */

static void
move_tell(const char *to, uid_t uid, const char *name)
{
	cJSON	*m = cJSON_CreateObject();

	cJSON_AddStringToObject(m, "op", MOVE_OP_RELEASED);
	cJSON_AddNumberToObject(m, "uid", (double)uid);
	cJSON_AddStringToObject(m, "name", name);
	notify_send(to, m);
	cJSON_Delete(m);
}

/*
 * The session's CLI is gone (or never ran): the lease goes back, clients
 * are told, the requester too, and the session leaves this host's table
 * (its row stays: it is the next host's now).
 */
void
move_finish(struct session *s)
{
	cJSON	*d;
	char	*to = s->move_to;
	uid_t	 uid = s->uid;
	char	*name = xstrdup(s->name);

	s->move_to = NULL;
	if (s->move_timer != NULL)
		event_del(s->move_timer);
	d = cJSON_CreateObject();
	if (strcmp(to, MOVE_DRAIN) == 0)
		cJSON_AddBoolToObject(d, "drained", 1);
	else
		cJSON_AddStringToObject(d, "host", to);
	session_notice(s, "session_moved", d);
	lease_drop(s);
	log_info("move: session %s of uid %ld let go%s%s", name, (long)uid,
	    *to != '\0' ? " to host " : " (drained)", to);
	session_unload(s);
	if (strcmp(to, MOVE_DRAIN) != 0)
		move_tell(to, uid, name);
	free(to);
	free(name);
}

/*
 * No turn runs now.  The last turn's transcript is committed before its
 * end reached us (the worker sends it first): the lease goes back at once
 * and the CLI stops in the background, its exit-time lines (metadata
 * only) dropped.  A turn cut by move_timeout (a client's or the CLI's
 * own), or a CLI still starting, may have lines not yet saved: that CLI's
 * exit is waited for (the worker saves what it wrote on its way out).
 */
void
move_release(struct session *s)
{
	if (s->move_to == NULL || s->move_stopping)
		return;
	if (s->worker != NULL && (s->state != SESSION_READY ||
	    s->worker_turn || s->cli_own)) {
		s->move_stopping = 1;
		session_stop_cli(s);
		return;
	}
	session_worker_detach(s);
	move_finish(s);
}

static void
move_timer_fire(evutil_socket_t fd, short what, void *arg)
{
	struct session	*s = arg;

	log_info("move: session %s: its turn still runs after move_timeout; "
	    "ended", s->name);
	session_end_turn(s, ERR_SESSION_MOVED, "the session moved to another "
	    "host (move_timeout: its turn was ended)");
	move_release(s);
}

static void	move_let_go(struct session *, const char *);

static void
move_asked(uid_t uid, const char *name, const char *from)
{
	struct session	*s = session_find(name, uid);

	if (s == NULL || s->lease_fence == 0) {
		/* Not served here: the asker may take it now. */
		move_tell(from, uid, name);
		return;
	}
	log_info("move: host %s asks for session %s of uid %ld", from, name,
	    (long)uid);
	move_let_go(s, from);
}

/* Lets s go to host to (MOVE_DRAIN: to none) once no turn runs. */
static void
move_let_go(struct session *s, const char *to)
{
	struct timeval	 tv;

	if (s->move_to != NULL) {
		free(s->move_to);	/* the last asker is told */
		s->move_to = xstrdup(to);
		return;
	}
	s->move_to = xstrdup(to);
	session_turnq_cancel(s, ERR_SESSION_MOVED, "the session moved to "
	    "another host");
	if (!session_running(s) && !s->cli_own) {
		move_release(s);
		return;
	}
	/*
	 * A running turn, the client's or one the CLI began by itself, may
	 * end first (its transcript saved), within move_timeout.
	 */
	if (s->cli_own)
		log_info("move: session %s: the CLI's own turn runs; waiting "
		    "for its end", s->name);
	if (s->move_timer == NULL)
		s->move_timer = evtimer_new(hp.base, move_timer_fire, s);
	tv = util_ms_tv(hp.conf->move_timeout_ms);
	evtimer_add(s->move_timer, &tv);
}

/* The channel listens: asks can be sent and heard. */
static void
move_channel_up(void *arg)
{
	state_channel_up();
}

static void
move_message(void *arg, const char *from, const cJSON *m)
{
	const char		*op = json_str(m, "op"), *name = json_str(m, "name");
	const cJSON		*u = cJSON_GetObjectItemCaseSensitive(m, "uid");
	struct move_wait	*mw, *next;
	uid_t			 uid;

	if (op == NULL || name == NULL || !cJSON_IsNumber(u) ||
	    u->valuedouble < 0 || u->valuedouble >= (double)UINT32_MAX ||
	    !proto_valid_session(name)) {
		log_warnx("move: a malformed message from host %s", from);
		return;
	}
	uid = (uid_t)u->valuedouble;
	if (strcmp(op, MOVE_OP_RELEASE) == 0)
		move_asked(uid, name, from);
	else if (strcmp(op, MOVE_OP_RELEASED) == 0) {
		for (mw = TAILQ_FIRST(&move_waits); mw != NULL; mw = next) {
			next = TAILQ_NEXT(mw, entry);
			if (mw->uid == uid && strcmp(mw->name, name) == 0 &&
			    strcmp(mw->holder, from) == 0)
				move_wait_run(mw, "released");
		}
	}
}

/*
 * The drain op: this host takes no new session (hp.draining) and lets every
 * session it serves go: a running turn ends first (within move_timeout),
 * then its CLI stops and its lease goes back.  Returns how many.
 */
int
move_drain(void)
{
	struct session	*s, *next;
	int		 n = 0;

	hp.draining = 1;
	for (s = TAILQ_FIRST(&hp.sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (s->state == SESSION_ENDED || s->move_to != NULL ||
		    (s->worker == NULL && s->lease_fence == 0))
			continue;
		n++;
		move_let_go(s, MOVE_DRAIN);	/* may free s */
	}
	log_info("drain: no new session taken; %d session%s let go", n,
	    n == 1 ? "" : "s");
	return n;
}

/*
 * The undrain op: new sessions are taken again.  Sessions already let go
 * stay dormant until their next turn (here or elsewhere); one still
 * ending its turn is let go all the same.  1 if the host was drained.
 */
int
move_undrain(void)
{
	int	was = hp.draining;

	hp.draining = 0;
	log_info("undrain: new sessions taken again%s", was ? "" :
	    " (it was not drained)");
	return was;
}

void
move_init(void)
{
	if (!store_shared() || hp.conf->store == NULL)
		return;
	notify_open(hp.base, hp.conf->store, state_host_id(), move_message,
	    move_channel_up, NULL);
}

void
move_close(void)
{
	while (!TAILQ_EMPTY(&move_waits))
		move_wait_free(TAILQ_FIRST(&move_waits));
	notify_close();
}

/* For status: moves waited for here and their mean wait. */
void
move_stats(uint64_t *count, uint64_t *mean_us)
{
	*count = move_count;
	*mean_us = move_count > 0 ? move_total_us / move_count : 0;
}
