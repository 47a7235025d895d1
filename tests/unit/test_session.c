/*
 * The session module without sockets: the client ops (session-ops.c), the
 * table and state machine (session.c), the interpreter of the worker's
 * messages (session-worker.c) and the relay (relay.c), all the real
 * objects, linked with stubs that record the lines each client is written
 * and what the worker is sent.  The worker's messages are framed by msg.c
 * as a worker frames them.  The first cases drive one transition each; the
 * turn cases check that an execute gets exactly one terminal line (done or
 * error), whatever ends it.
 */
#include <sys/wait.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/json.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"
#include "supervisor/census.h"
#include "supervisor/gateway.h"
#include "supervisor/hotplexd.h"
#include "supervisor/screen.h"
#include "supervisor/session.h"
#include "supervisor/store.h"

#define LINES_MAX	32	/* lines recorded per case */
#define SENT_MAX	16	/* messages to the worker recorded per case */
#define UID		1000
#define WORKER_PID	4242

struct hotplexd		 hp;
static struct screen	 screen;	/* firewall off */

/* What the session module did, case by case. */
static struct {
	struct client	*to[LINES_MAX];		/* each line's client */
	cJSON		*line[LINES_MAX];	/* parsed; NULL: not JSON */
	size_t		 nlines;
	uint16_t	 sent[SENT_MAX];	/* to the worker */
	size_t		 nsent;
	int		 kills;			/* pool_worker_kill */
	const char	*kill_why;
	int		 stops;			/* pool_worker_stop */
	int		 idle_stops;		/* pool_worker_stop_idle */
	int		 thaws;			/* spawner_killpg SIGCONT */
	int		 saves;			/* state_session_save */
	int		 forgets;		/* state_session_forget */
	int		 takes;			/* pool_take */
	int		 take_err;		/* pool_take's errno */
	struct worker	*spare;			/* pool_take's answer */
} rec;

static void
record_line(struct client *c, const char *text, size_t len)
{
	char	*t;

	if (rec.nlines >= LINES_MAX)
		fail_msg("more than %d lines", LINES_MAX);
	/* One line each, never a raw newline inside. */
	assert_true(len > 0 && text[len - 1] == '\n');
	assert_null(memchr(text, '\n', len - 1));
	t = xmalloc(len);
	memcpy(t, text, len - 1);
	t[len - 1] = '\0';
	rec.to[rec.nlines] = c;
	rec.line[rec.nlines++] = cJSON_Parse(t);
	free(t);
}

static void
record_json(struct client *c, cJSON *o)
{
	char	*t = json_print(o);
	size_t	 n = strlen(t);
	char	*l = xmalloc(n + 1);

	memcpy(l, t, n);
	l[n] = '\n';
	record_line(c, l, n + 1);
	free(l);
	cJSON_free(t);
	cJSON_Delete(o);
}

static void
sent(uint16_t type)
{
	if (rec.nsent < SENT_MAX)
		rec.sent[rec.nsent++] = type;
}

/* --- stubs: the rest of hotplexd, as the session module sees it ------- */

void
server_client_write(struct client *c, const char *line, size_t len)
{
	record_line(c, line, len);
}

void
server_client_send(struct client *c, cJSON *o)
{
	record_json(c, o);
}

void
server_client_reply(struct client *c, const char *req, const char *type,
    cJSON *data)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", req);
	cJSON_AddStringToObject(o, "type", type);
	if (data != NULL)
		cJSON_AddItemToObject(o, "data", data);
	record_json(c, o);
}

void
server_client_ok(struct client *c, const char *req, cJSON *data)
{
	server_client_reply(c, req, "ok", data);
}

void
server_client_error(struct client *c, const char *req, const char *session,
    const char *code, const char *fmt, ...)
{
	char	 msg[512];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	record_json(c, proto_error(req, session, code, msg));
}

void
pool_send(struct worker *wk, uint16_t type, uint32_t turn, const cJSON *j)
{
	sent(type);
}

void
pool_send_turn(struct worker *wk, uint32_t turn, const struct msg_turn *t)
{
	sent(MSG_TURN);
}

void
pool_send_configure(struct worker *wk, uint32_t turn,
    const struct msg_configure *m)
{
	sent(MSG_CONFIGURE);
}

void
pool_send_permission(struct worker *wk, uint32_t turn,
    const struct msg_permission *m)
{
	sent(MSG_PERMISSION);
}

void
pool_worker_stop(struct worker *wk, uint32_t turn)
{
	rec.stops++;
	sent(MSG_STOP);
}

void
pool_worker_stop_idle(struct worker *wk, uint32_t turn)
{
	rec.idle_stops++;
}

void
pool_worker_kill(struct worker *wk, const char *why)
{
	rec.kills++;
	rec.kill_why = why;
	wk->killed = 1;
}

struct screen *
screen_ref(struct screen *sc)
{
	return sc;
}

void
screen_unref(struct screen *sc)
{
}

struct worker *
pool_take(int *err)
{
	struct worker	*wk = rec.spare;

	rec.takes++;
	*err = rec.take_err;
	rec.spare = NULL;
	return wk;
}

void	pool_release(struct worker *wk) { }
void	pool_worker_orphan(struct worker *wk, uid_t uid, const char *name,
	    uint32_t turn) { }
void	pool_refill(void) { }
void	pool_kill_all(void) { }
int	pool_count(void) { return 1; }
int	pool_spares(void) { return 0; }
void	spawner_kill(pid_t worker, int sig) { }
void	spawner_killpg(pid_t worker, pid_t pgid, int sig)
{
	if (sig == SIGCONT)
		rec.thaws++;
}
void	spawner_rmtmp_settle(uid_t uid, const char *name) { }
int	spawner_rmtmp(uid_t uid, const char *name) { return 0; }
int	state_session_save(struct session *s) { rec.saves++; return 0; }
void	state_session_forget(const struct session *s) { rec.forgets++; }
void	state_totals_save(void) { }
const char *state_host_id(void) { return "test"; }
int	store_shared(void) { return 0; }
int	store_sessions_all(store_session_cb cb, void *arg) { return 0; }
int	store_sessions_stats(store_session_cb cb, void *arg) { return 0; }
int	store_totals_all(store_totals_cb cb, void *arg) { return 0; }
void	transcript_send(struct session *s, struct worker *wk) { }
void	transcript_piece(struct session *s, const struct msg_transcript *t)
	{ }
void	transcript_forget(struct session *s) { }
void	audit_event(struct session *s, const char *tail, size_t len) { }
void	audit_turn_end(struct session *s) { }
void	audit_session_free(struct session *s) { }
void	audit_app_answer(struct session *s, const char *id, uid_t uid) { }
void	audit_firewall(struct session *s, const char *prompt,
	    const struct policy_verdict *v) { }
void	screen_audit(uid_t uid, pid_t pid, const char *session,
	    const struct policy_verdict *v) { }
int	budget_reached(const struct session *s, char *why, size_t len)
	{ return 0; }
void	budget_forget(const struct session *s) { }
int	ratelimit_admit(uint64_t *retry_after_ms) { return 0; }
size_t	census_live(void) { return 0; }
size_t	census_live_uid(uid_t uid) { return 0; }
void	census_move(uid_t uid, int from, int to) { }
void	census_run(uid_t run_uid, int held) { }
size_t	census_run_held(uid_t run_uid) { return 0; }
cJSON	*isolation_json(void) { return cJSON_CreateObject(); }
const char *lease_holder(void) { return NULL; }
int	lease_take(struct session *s, char *why, size_t len) { return 0; }
int	lease_adopt(uid_t uid, const char *name, struct session **sp,
	    char *why, size_t len) { *sp = NULL; return 0; }
int	move_ask(struct client *c, const char *req, const cJSON *r,
	    move_op_fn op, uid_t uid, const char *name, const char *holder)
	{ return 0; }
void	move_client_gone(struct client *c) { }
void	move_finish(struct session *s) { }
void	move_release(struct session *s) { }
uint64_t move_waited_us(void) { return 0; }
void	server_gateway_session_open(struct session *s, cJSON *open) { }
void	server_gateway_session_close(struct session *s) { }
void	server_gateway_session_free(struct session *s) { }
void	server_gateway_stats_json(const struct gateway_stats *g, cJSON *j) { }
void	server_gateway_stats_add(struct gateway_stats *to,
	    const struct gateway_stats *from) { }
const struct gateway_stats *server_gateway_account(void) { return NULL; }
int	policy_check(const struct policy *p, enum policy_target t,
	    const char *text, size_t len, int threshold,
	    struct policy_verdict *v) { return 0; }
int	policy_target_parse(const char *s, enum policy_target *t)
	{ return -1; }
cJSON	*policy_verdict_json(const struct policy_verdict *v)
	{ return cJSON_CreateObject(); }

int
isolation_ident(uid_t peer_uid, gid_t peer_gid, const gid_t *groups,
    size_t ngroups, uid_t dynamic_uid, struct ident *id, char *err,
    size_t errlen)
{
	memset(id, 0, sizeof *id);
	id->uid = peer_uid;
	id->gid = peer_gid;
	return 0;
}

/* --- the worker's side: its messages, framed as it frames them -------- */

static struct worker	 wk;
static struct client	 cl;

static void
from_worker(struct session *s, struct evbuffer *b)
{
	struct msg	m;

	assert_int_equal(msg_get(b, &m), MSG_GET_OK);
	assert_int_equal(evbuffer_get_length(b), 0);
	session_worker_msg(s, &wk, &m);
	msg_clear(&m);
	evbuffer_free(b);
}

static void
w_event(struct session *s, uint32_t turn, const char *tail)
{
	struct evbuffer	*b = evbuffer_new();

	msg_compose(b, MSG_EVENT, turn, tail, strlen(tail));
	from_worker(s, b);
}

static void
w_opened(struct session *s)
{
	struct evbuffer		*b = evbuffer_new();
	/* Its worker screens with the session's rules. */
	struct msg_opened	 op = { .cli_pid = WORKER_PID + 1,
				    .cli_session_id = s->cli_session_id,
				    .workdir = s->workdir,
				    .policy = screen.digest };

	msg_opened_compose(b, 0, &op);
	from_worker(s, b);
}

static void
w_done(struct session *s, uint32_t turn, int interrupted, int retry)
{
	struct evbuffer		*b = evbuffer_new();
	struct msg_turn_end	 te;

	memset(&te, 0, sizeof te);
	te.outcome = MSG_TURN_DONE;
	te.done.ok = !interrupted;
	te.done.result = "hello";
	te.done.interrupted = interrupted;
	te.done.terminal_reason = interrupted ? "interrupted" : "completed";
	te.retry = retry;
	stats_init(&te.stats);
	msg_turn_end_compose(b, turn, &te);
	stats_clear(&te.stats);
	from_worker(s, b);
}

static void
w_turn_error(struct session *s, uint32_t turn, const char *code)
{
	struct evbuffer		*b = evbuffer_new();
	struct msg_turn_end	 te;

	memset(&te, 0, sizeof te);
	te.outcome = MSG_TURN_ERROR;
	te.code = code;
	te.message = "it failed";
	stats_init(&te.stats);
	msg_turn_end_compose(b, turn, &te);
	stats_clear(&te.stats);
	from_worker(s, b);
}

static void
w_cli_exit(struct session *s, int sig)
{
	struct evbuffer		*b = evbuffer_new();
	struct msg_cli_exit	 ce = { .status = -1, .signal = sig,
				    .stderr_tail = "" };

	msg_cli_exit_compose(b, 0, &ce);
	from_worker(s, b);
}

static void
w_open_failed(struct session *s, const char *code)
{
	struct evbuffer		*b = evbuffer_new();
	struct msg_open_failed	 of = { .code = code,
				    .message = "the CLI did not start" };

	msg_open_failed_compose(b, 0, &of);
	from_worker(s, b);
}

static void
w_probed(struct session *s)
{
	struct evbuffer	*b = evbuffer_new();

	msg_empty_compose(b, MSG_PROBED, 0);
	from_worker(s, b);
}

static void
w_approval(struct session *s, const char *id, int pending)
{
	struct evbuffer		*b = evbuffer_new();
	struct msg_approval	 ap = { .request_id = id, .pending = pending };

	msg_approval_compose(b, s->turn, &ap);
	from_worker(s, b);
}

static void
w_configured(struct session *s, int ok)
{
	struct evbuffer		*b = evbuffer_new();
	struct msg_configured	 cd = { .ok = ok,
				    .message = ok ? NULL : "no such model" };

	msg_configured_compose(b, s->turn, &cd);
	from_worker(s, b);
}

/* The worker is reaped: its exit as waitpid() would give it. */
static void
w_gone(struct session *s, int sig)
{
	session_worker_gone(s, &wk, sig);
}

/* --- what the client saw ---------------------------------------------- */

static const char *
line_type(size_t i)
{
	return json_str(rec.line[i], "type");
}

static const char *
line_code(size_t i)
{
	return json_str(cJSON_GetObjectItemCaseSensitive(rec.line[i], "data"),
	    "code");
}

/* The one terminal line (done or error) for request req: its index. */
static size_t
terminal(const char *req)
{
	size_t		i, n = 0, at = 0;
	const char	*t, *id;

	for (i = 0; i < rec.nlines; i++) {
		assert_non_null(rec.line[i]);
		id = json_str(rec.line[i], "id");
		t = line_type(i);
		if (id == NULL || strcmp(id, req) != 0 || t == NULL)
			continue;
		if (strcmp(t, "done") == 0 || strcmp(t, "error") == 0) {
			n++;
			at = i;
		}
	}
	assert_int_equal(n, 1);
	return at;
}

/* Each event line of the turn carries the next seq. */
static void
seqs_in_order(const char *req)
{
	size_t		 i;
	double		 last = 0;
	const cJSON	*v;

	for (i = 0; i < rec.nlines; i++) {
		if ((v = cJSON_GetObjectItemCaseSensitive(rec.line[i],
		    "seq")) == NULL)
			continue;
		assert_true(cJSON_IsNumber(v));
		assert_true(v->valuedouble == last + 1);
		last = v->valuedouble;
	}
}

static int
was_sent(uint16_t type)
{
	size_t	i;

	for (i = 0; i < rec.nsent; i++)
		if (rec.sent[i] == type)
			return 1;
	return 0;
}

/* --- fixture ---------------------------------------------------------- */

static int
setup(void **state)
{
	size_t	i;

	for (i = 0; i < rec.nlines; i++)
		cJSON_Delete(rec.line[i]);
	memset(&rec, 0, sizeof rec);
	memset(&screen, 0, sizeof screen);
	memset(&hp, 0, sizeof hp);
	/* The defaults, as with an empty config file. */
	hp.conf = config_new();
	hp.screen = &screen;
	if ((hp.base = event_base_new()) == NULL)
		return -1;
	TAILQ_INIT(&hp.sessions);
	memset(&wk, 0, sizeof wk);
	wk.pid = WORKER_PID;
	wk.screen = &screen;
	memset(&cl, 0, sizeof cl);
	cl.uid = UID;
	cl.gid = UID;
	return 0;
}

static int
teardown(void **state)
{
	size_t	i;

	session_free_all();
	event_base_free(hp.base);
	config_free(hp.conf);
	for (i = 0; i < rec.nlines; i++)
		cJSON_Delete(rec.line[i]);
	memset(&rec, 0, sizeof rec);
	return 0;
}

static void
op(void (*fn)(struct client *, const char *, const cJSON *),
    const char *req, const char *json)
{
	cJSON	*r = cJSON_Parse(json);

	assert_non_null(r);
	fn(&cl, req, r);
	cJSON_Delete(r);
}

/* An execute on a new session, up to its turn running in a new CLI. */
static struct session *
running_turn(const char *req)
{
	struct session	*s;

	rec.spare = &wk;
	op(session_op_execute, req,
	    "{\"session\":\"s\",\"workdir\":\"/w\",\"prompt\":\"hi\"}");
	assert_non_null(s = session_find("s", UID));
	assert_int_equal(s->state, SESSION_STARTING);
	assert_true(was_sent(MSG_OPEN));
	w_opened(s);
	assert_int_equal(s->state, SESSION_BUSY);
	assert_true(was_sent(MSG_TURN));
	assert_int_equal(rec.nlines, 1);
	assert_string_equal(line_type(0), "session_start");
	return s;
}

/* --- cases: one transition each --------------------------------------- */

/* A session with a worker that runs its CLI: READY. */
static struct session *
ready_session(const char *name, struct worker *w)
{
	struct session	*s = session_new(name, UID, "/w", NULL);

	memset(w, 0, sizeof *w);
	w->pid = 4242;
	w->session = s;
	s->worker = w;
	session_set_state(s, SESSION_READY);
	return s;
}

static void
test_new_is_dormant_and_found(void **state)
{
	struct session	*s = session_new("a", UID, "/w", NULL);

	assert_int_equal(s->state, SESSION_DORMANT);
	assert_ptr_equal(session_find("a", UID), s);
	/* Names are per uid. */
	assert_null(session_find("a", UID + 1));
	assert_int_equal(session_queued(), 0);
}

/* An idle stop: MSG_STOP, and the session comes back dormant. */
static void
test_stopping_dormant(void **state)
{
	struct worker	 w;
	struct session	*s = ready_session("b", &w);

	s->stop_final = 1;
	session_stopping(s, SESSION_STOP_MSG | SESSION_STOP_DORMANT);
	assert_int_equal(s->state, SESSION_STOPPING);
	assert_int_equal(s->stop_final, 0);
	assert_int_equal(rec.stops, 1);
	assert_int_equal(rec.nsent, 1);
	assert_int_equal(rec.sent[0], MSG_STOP);
	assert_false(evtimer_pending(s->idle_timer, NULL));
	s->worker = NULL;
}

/*
 * idle_timeout's stop: paced by the pool (pool_worker_stop_idle), and a
 * frozen CLI is not thawed by the master (its worker continues the group
 * when it stops it): no SIGCONT asked, the freeze timer disarmed.
 */
#define FREEZE_PENDING_MS	60000	/* a timer armed, not run */

static void
test_stopping_idle_frozen(void **state)
{
	struct worker	 w;
	struct session	*s = ready_session("i", &w);
	struct timeval	 tv = util_ms_tv(FREEZE_PENDING_MS);

	s->cli_pid = 4242;
	s->frozen = 1;
	evtimer_add(s->freeze_timer, &tv);	/* never fires: no loop runs */
	session_stopping(s, SESSION_STOP_MSG | SESSION_STOP_DORMANT |
	    SESSION_STOP_IDLE);
	assert_int_equal(s->state, SESSION_STOPPING);
	assert_int_equal(s->stop_final, 0);
	assert_int_equal(rec.idle_stops, 1);
	assert_int_equal(rec.stops, 0);
	assert_int_equal(rec.thaws, 0);
	assert_int_equal(s->frozen, 0);
	assert_false(evtimer_pending(s->freeze_timer, NULL));
	/* A stop op then: the pool is told it is waited for. */
	session_stopping(s, SESSION_STOP_MSG);
	assert_int_equal(rec.stops, 1);
	assert_int_equal(rec.thaws, 0);
	s->worker = NULL;
}

/* A stop op on a frozen session: no thaw asked either. */
static void
test_stopping_frozen(void **state)
{
	struct worker	 w;
	struct session	*s = ready_session("z", &w);

	s->cli_pid = 4243;
	s->frozen = 1;
	session_stopping(s, SESSION_STOP_MSG);
	assert_int_equal(rec.stops, 1);
	assert_int_equal(rec.thaws, 0);
	assert_int_equal(s->frozen, 0);
	s->worker = NULL;
}

/* A stop op's choice (the session ends) is kept. */
static void
test_stopping_keeps_final(void **state)
{
	struct worker	 w;
	struct session	*s = ready_session("c", &w);

	s->stop_final = 1;
	session_stopping(s, SESSION_STOP_MSG);
	assert_int_equal(s->state, SESSION_STOPPING);
	assert_int_equal(s->stop_final, 1);
	assert_int_equal(rec.stops, 1);
	s->worker = NULL;
}

/* The worker exits by itself (its CLI died): nothing is sent. */
static void
test_stopping_quiet(void **state)
{
	struct worker	 w;
	struct session	*s = ready_session("d", &w);

	session_stopping(s, SESSION_STOP_DORMANT);
	assert_int_equal(s->state, SESSION_STOPPING);
	assert_int_equal(s->stop_final, 0);
	assert_int_equal(rec.nsent, 0);
	s->worker = NULL;
}

/* No spare now: the session waits in the queue, STARTING. */
static void
test_assign_waits_for_a_spare(void **state)
{
	struct session	*s = session_new("e", UID, "/w", NULL);

	assert_int_equal(session_assign(s), 0);
	assert_int_equal(s->state, SESSION_STARTING);
	assert_null(s->worker);
	assert_int_equal(session_queued(), 1);
	/* No worker will come: it never ran, so it is forgotten. */
	session_spawn_failed(ERR_SPAWN_FAILED, "no worker");
	assert_int_equal(session_queued(), 0);
	assert_null(session_find("e", UID));
	assert_int_equal(rec.forgets, 1);
}

/* A spare: it gets the open message, and the session leaves the queue. */
static void
test_assign_takes_a_spare(void **state)
{
	struct worker	 w;
	struct session	*s = session_new("f", UID, "/w", NULL);

	memset(&w, 0, sizeof w);
	rec.spare = &w;
	assert_int_equal(session_assign(s), 0);
	assert_int_equal(s->state, SESSION_STARTING);
	assert_ptr_equal(s->worker, &w);
	assert_ptr_equal(w.session, s);
	assert_int_equal(rec.nsent, 1);
	assert_int_equal(rec.sent[0], MSG_OPEN);
	assert_int_equal(session_queued(), 0);
	s->worker = NULL;
}

/* Out of descriptors: the session that never ran goes at once. */
static void
test_assign_capacity(void **state)
{
	struct session	*s = session_new("g", UID, "/w", NULL);

	rec.take_err = EMFILE;
	assert_int_equal(session_assign(s), -1);
	assert_null(session_find("g", UID));
	assert_int_equal(session_queued(), 0);
}

/* Ended sessions are kept up to max_ended_sessions, oldest out first. */
static void
test_end_and_trim(void **state)
{
	struct session	*a = session_new("h1", UID, "/w", NULL);
	struct session	*b = session_new("h2", UID, "/w", NULL);

	hp.conf->max_ended_sessions = 1;
	session_end(a);
	session_end(b);
	assert_int_equal(a->state, SESSION_ENDED);
	assert_int_equal(b->state, SESSION_ENDED);
	session_trim_ended();
	assert_null(session_find("h1", UID));
	assert_ptr_equal(session_find("h2", UID), b);
}

/* --- cases: a turn, from the execute to its one end ------------------ */

/* Events, then done: every line to the client, one done, seq in order. */
static void
test_turn_done(void **state)
{
	struct session	*s = running_turn("e1");
	size_t		 at;

	w_event(s, s->turn, "\"type\":\"text\",\"data\":{\"text\":\"a\"}}");
	w_event(s, s->turn, "\"type\":\"text\",\"data\":{\"text\":\"b\"}}");
	w_done(s, s->turn, 0, 0);
	at = terminal("e1");
	assert_string_equal(line_type(at), "done");
	assert_int_equal(at, rec.nlines - 1);
	assert_string_equal(line_type(1), "text");
	assert_string_equal(line_type(2), "text");
	assert_string_equal(line_type(3), "session_stats");
	seqs_in_order("e1");
	assert_int_equal(s->state, SESSION_READY);
	assert_int_equal(s->total.turns, 1);
	assert_int_equal(rec.kills, 0);
	/* A late word on the same turn writes nothing more. */
	w_done(s, s->turn, 0, 0);
	terminal("e1");
	s->worker = NULL;
}

/* An error outcome: one error line with the worker's code. */
static void
test_turn_error(void **state)
{
	struct session	*s = running_turn("e2");
	size_t		 at;

	w_turn_error(s, s->turn, ERR_TURN_TIMEOUT);
	at = terminal("e2");
	assert_string_equal(line_type(at), "error");
	assert_string_equal(line_code(at), ERR_TURN_TIMEOUT);
	assert_int_equal(s->total.errors, 1);
	s->worker = NULL;
}

/* A word on another turn (an older one) is not this turn's end. */
static void
test_other_turn_ignored(void **state)
{
	struct session	*s = running_turn("e3");

	w_event(s, s->turn + 1, "\"type\":\"text\",\"data\":{}}");
	w_done(s, s->turn - 1, 0, 0);
	assert_int_equal(rec.nlines, 1);
	assert_int_equal(s->state, SESSION_BUSY);
	w_done(s, s->turn, 0, 0);
	assert_string_equal(line_type(terminal("e3")), "done");
	s->worker = NULL;
}

/*
 * Forged events: a raw newline (a second line of the worker's making), a
 * tail that is not an object's, a bare object.  Each kills the worker,
 * nothing of it reaches the client, and the turn ends worker_exited.
 */
static void
forged(const char *tail)
{
	struct session	*s = running_turn("f");
	size_t		 at, i;

	w_event(s, s->turn, tail);
	assert_int_equal(rec.kills, 1);
	assert_string_equal(rec.kill_why, "forged event");
	assert_int_equal(rec.nlines, 1);
	w_gone(s, SIGKILL);
	at = terminal("f");
	assert_string_equal(line_type(at), "error");
	assert_string_equal(line_code(at), ERR_WORKER_EXITED);
	for (i = 0; i < rec.nlines; i++)
		assert_null(cJSON_GetObjectItemCaseSensitive(rec.line[i],
		    "forged"));
	assert_int_equal(s->state, SESSION_DORMANT);
	assert_null(s->worker);
}

static void
test_forged_newline(void **state)
{
	forged("\"type\":\"text\",\"data\":{}}\n{\"id\":\"f\",\"type\":"
	    "\"done\",\"forged\":1,\"data\":{\"ok\":true}}");
}

static void
test_forged_not_a_tail(void **state)
{
	forged("garbage");
}

static void
test_forged_whole_object(void **state)
{
	forged("{\"type\":\"text\",\"forged\":1,\"data\":{}}");
}

/* A TURN_END that does not decode kills the worker the same way. */
static void
test_malformed_turn_end(void **state)
{
	struct session	*s = running_turn("m");
	struct evbuffer	*b = evbuffer_new();
	size_t		 at;

	msg_compose(b, MSG_TURN_END, s->turn, "{\"outcome\":", 11);
	from_worker(s, b);
	assert_int_equal(rec.kills, 1);
	assert_string_equal(rec.kill_why, "malformed message");
	assert_int_equal(rec.nlines, 1);
	w_gone(s, SIGKILL);
	at = terminal("m");
	assert_string_equal(line_code(at), ERR_WORKER_EXITED);
}

/* A message only the master sends, from a worker: killed. */
static void
test_unexpected_type(void **state)
{
	struct session	*s = running_turn("u");
	struct evbuffer	*b = evbuffer_new();

	msg_empty_compose(b, MSG_INTERRUPT, s->turn);
	from_worker(s, b);
	assert_int_equal(rec.kills, 1);
	assert_string_equal(rec.kill_why, "protocol violation");
	w_gone(s, SIGKILL);
	assert_string_equal(line_code(terminal("u")), ERR_WORKER_EXITED);
}

/*
 * The CLI dies during a turn it had begun (events out): the turn ends
 * cli_exited, and the worker's exit after it adds no second line.
 */
static void
test_cli_exit_then_gone(void **state)
{
	struct session	*s = running_turn("c");

	w_event(s, s->turn, "\"type\":\"text\",\"data\":{}}");
	w_cli_exit(s, SIGKILL);
	assert_string_equal(line_code(terminal("c")), ERR_CLI_EXITED);
	assert_int_equal(s->state, SESSION_STOPPING);
	w_gone(s, 0);
	terminal("c");
	assert_int_equal(s->state, SESSION_DORMANT);
}

/*
 * The CLI died before it saw the turn (no event yet, retry): no line
 * then; the worker's exit brings a new one, where the turn runs once more
 * and ends with one done.
 */
static void
test_retry_in_new_cli(void **state)
{
	struct session	*s = running_turn("r");
	uint32_t	 turn = s->turn;

	w_done(s, turn, 0, 1);
	assert_int_equal(rec.nlines, 1);
	assert_int_equal(s->state, SESSION_STOPPING);
	rec.spare = &wk;
	rec.nsent = 0;
	w_gone(s, 0);
	assert_int_equal(rec.takes, 2);
	assert_true(was_sent(MSG_OPEN));
	assert_int_equal(s->state, SESSION_STARTING);
	w_opened(s);
	assert_int_equal(s->state, SESSION_BUSY);
	assert_int_equal(s->turn, turn);
	/* Retried once only: this end is the turn's, whatever it says. */
	w_done(s, turn, 0, 1);
	assert_string_equal(line_type(terminal("r")), "done");
	s->worker = NULL;
}

/* An interrupt goes to the worker; the turn ends once, interrupted. */
static void
test_interrupt(void **state)
{
	struct session	*s = running_turn("i");
	const cJSON	*d;
	size_t		 at;

	op(session_op_interrupt, "i2", "{\"session\":\"s\"}");
	assert_true(was_sent(MSG_INTERRUPT));
	assert_string_equal(line_type(rec.nlines - 1), "ok");
	w_done(s, s->turn, 1, 0);
	at = terminal("i");
	d = cJSON_GetObjectItemCaseSensitive(rec.line[at], "data");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d,
	    "interrupted")));
	s->worker = NULL;
}

/*
 * A stop during a turn: done (stopped) at once; what the worker says of
 * the turn after it, and its exit, add no line; the stop is answered and
 * the session ends.
 */
static void
test_stop_during_turn(void **state)
{
	struct session	*s = running_turn("t");
	size_t		 at, i, oks = 0;

	op(session_op_stop, "t2", "{\"session\":\"s\"}");
	at = terminal("t");
	assert_string_equal(line_type(at), "done");
	assert_true(was_sent(MSG_STOP));
	assert_int_equal(s->state, SESSION_STOPPING);
	w_done(s, s->turn, 1, 0);
	w_gone(s, 0);
	terminal("t");
	assert_int_equal(s->state, SESSION_ENDED);
	for (i = 0; i < rec.nlines; i++) {
		const char *id = json_str(rec.line[i], "id");

		if (id != NULL && strcmp(id, "t2") == 0 &&
		    strcmp(line_type(i), "ok") == 0)
			oks++;
	}
	assert_int_equal(oks, 1);
}

/* A second execute while one runs: session_busy, the first unharmed. */
static void
test_busy(void **state)
{
	struct session	*s = running_turn("b");

	op(session_op_execute, "b2", "{\"session\":\"s\",\"prompt\":\"x\"}");
	assert_string_equal(line_code(terminal("b2")), ERR_SESSION_BUSY);
	w_done(s, s->turn, 0, 0);
	assert_string_equal(line_type(terminal("b")), "done");
	s->worker = NULL;
}

/*
 * A turn queued behind the running one: "queued" at position 1, then it
 * runs when the first ends (from the loop), and each gets one end.
 */
static void
test_queued_turn(void **state)
{
	struct session	*s = running_turn("q1");
	size_t		 i;

	op(session_op_execute, "q2",
	    "{\"session\":\"s\",\"prompt\":\"x\",\"queue\":true}");
	i = rec.nlines - 1;
	assert_string_equal(line_type(i), "queued");
	assert_string_equal(json_str(rec.line[i], "session"), "s");
	assert_true(json_num(cJSON_GetObjectItemCaseSensitive(rec.line[i],
	    "data"), "position", 0) == 1);
	rec.nsent = 0;
	w_done(s, s->turn, 0, 0);
	assert_string_equal(line_type(terminal("q1")), "done");
	assert_false(was_sent(MSG_TURN));
	event_base_loop(hp.base, EVLOOP_NONBLOCK);
	assert_true(was_sent(MSG_TURN));
	assert_int_equal(s->state, SESSION_BUSY);
	w_done(s, s->turn, 0, 0);
	assert_string_equal(line_type(terminal("q2")), "done");
	terminal("q1");
	s->worker = NULL;
}

/* The number of lines for request req of type type. */
static size_t
count(const char *req, const char *type)
{
	size_t		i, n = 0;
	const char	*id, *t;

	for (i = 0; i < rec.nlines; i++) {
		id = json_str(rec.line[i], "id");
		t = line_type(i);
		if (id != NULL && t != NULL && strcmp(id, req) == 0 &&
		    strcmp(t, type) == 0)
			n++;
	}
	return n;
}

/* An open is answered once its CLI has answered the probe, not before. */
static void
test_open_probed(void **state)
{
	struct session	*s;

	rec.spare = &wk;
	op(session_op_open, "o1", "{\"session\":\"s\",\"workdir\":\"/w\"}");
	assert_non_null(s = session_find("s", UID));
	assert_true(was_sent(MSG_OPEN));
	w_opened(s);
	assert_int_equal(s->state, SESSION_READY);
	assert_int_equal(rec.nlines, 0);
	w_probed(s);
	assert_int_equal(rec.nlines, 1);
	assert_int_equal(count("o1", "ok"), 1);
	/* Open again while it runs: ok at once, nothing sent. */
	rec.nsent = 0;
	op(session_op_open, "o2", "{\"session\":\"s\"}");
	assert_int_equal(count("o2", "ok"), 1);
	assert_int_equal(rec.nsent, 0);
	s->worker = NULL;
}

/*
 * The CLI of a new session does not start: the open gets one error with
 * the worker's code, and the session, which never ran, is forgotten.
 */
static void
test_open_failed(void **state)
{
	struct session	*s;

	rec.spare = &wk;
	op(session_op_open, "o3", "{\"session\":\"s\",\"workdir\":\"/w\"}");
	assert_non_null(s = session_find("s", UID));
	w_open_failed(s, ERR_SPAWN_FAILED);
	assert_int_equal(count("o3", "error"), 1);
	assert_int_equal(count("o3", "ok"), 0);
	assert_string_equal(line_code(rec.nlines - 1), ERR_SPAWN_FAILED);
	assert_null(session_find("s", UID));
	assert_int_equal(rec.forgets, 1);
}

/* ... and an execute waiting on that CLI ends once, with the same code. */
static void
test_execute_open_failed(void **state)
{
	struct session	*s;

	rec.spare = &wk;
	op(session_op_execute, "x1",
	    "{\"session\":\"s\",\"workdir\":\"/w\",\"prompt\":\"hi\"}");
	assert_non_null(s = session_find("s", UID));
	w_open_failed(s, ERR_CLI_EXITED);
	assert_string_equal(line_code(terminal("x1")), ERR_CLI_EXITED);
	assert_null(session_find("s", UID));
}

/*
 * A question the worker put to the app: answered once (the answer goes to
 * the worker); a second answer, or one to a question settled, not_found.
 */
static void
test_permission(void **state)
{
	struct session	*s = running_turn("p");

	w_approval(s, "q1", 1);
	w_approval(s, "q2", 1);
	w_approval(s, "q2", 0);		/* settled by the CLI itself */
	op(session_op_permission, "p1", "{\"session\":\"s\","
	    "\"request_id\":\"q1\",\"decision\":\"allow\"}");
	assert_int_equal(count("p1", "ok"), 1);
	assert_true(was_sent(MSG_PERMISSION));
	rec.nsent = 0;
	op(session_op_permission, "p2", "{\"session\":\"s\","
	    "\"request_id\":\"q1\",\"decision\":\"deny\"}");
	assert_string_equal(line_code(rec.nlines - 1), ERR_NOT_FOUND);
	op(session_op_permission, "p3", "{\"session\":\"s\","
	    "\"request_id\":\"q2\",\"decision\":\"allow\"}");
	assert_string_equal(line_code(rec.nlines - 1), ERR_NOT_FOUND);
	op(session_op_permission, "p4", "{\"session\":\"s\","
	    "\"request_id\":\"q1\",\"decision\":\"maybe\"}");
	assert_string_equal(line_code(rec.nlines - 1), ERR_BAD_REQUEST);
	assert_false(was_sent(MSG_PERMISSION));
	w_done(s, s->turn, 0, 0);
	terminal("p");
	s->worker = NULL;
}

/*
 * configure on a running CLI waits for its answer: ok (live) when it took
 * the settings, the CLI's refusal as bad_request; one reply each.
 */
static void
test_configure(void **state)
{
	struct session	*s = running_turn("k");

	op(session_op_configure, "k1",
	    "{\"session\":\"s\",\"model\":\"m2\"}");
	assert_true(was_sent(MSG_CONFIGURE));
	assert_int_equal(count("k1", "ok"), 0);
	op(session_op_configure, "k2",
	    "{\"session\":\"s\",\"model\":\"m3\"}");
	assert_string_equal(line_code(rec.nlines - 1), ERR_SESSION_BUSY);
	w_configured(s, 1);
	assert_int_equal(count("k1", "ok"), 1);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(rec.line[rec.nlines - 1],
	    "data"), "live")));
	assert_string_equal(json_str(s->options, "model"), "m2");
	op(session_op_configure, "k3",
	    "{\"session\":\"s\",\"model\":\"nope\"}");
	w_configured(s, 0);
	assert_int_equal(count("k3", "error"), 1);
	assert_string_equal(line_code(rec.nlines - 1), ERR_BAD_REQUEST);
	assert_string_equal(json_str(s->options, "model"), "m2");
	op(session_op_configure, "k4", "{\"session\":\"s\"}");
	assert_string_equal(line_code(rec.nlines - 1), ERR_BAD_REQUEST);
	w_done(s, s->turn, 0, 0);
	terminal("k");
	s->worker = NULL;
}

/*
 * The client leaves mid-turn: nothing more is written to it, and the
 * turn still ends (the session is ready for the next one).
 */
static void
test_client_gone(void **state)
{
	struct session	*s = running_turn("g");
	size_t		 n;

	session_client_gone(&cl);
	n = rec.nlines;
	w_event(s, s->turn, "\"type\":\"text\",\"data\":{}}");
	w_done(s, s->turn, 0, 0);
	assert_int_equal(rec.nlines, n);
	assert_int_equal(s->state, SESSION_READY);
	assert_int_equal(cl.refs, 0);
	s->worker = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_new_is_dormant_and_found),
		T(test_stopping_dormant),
		T(test_stopping_idle_frozen),
		T(test_stopping_frozen),
		T(test_stopping_keeps_final),
		T(test_stopping_quiet),
		T(test_assign_waits_for_a_spare),
		T(test_assign_takes_a_spare),
		T(test_assign_capacity),
		T(test_end_and_trim),
		T(test_turn_done),
		T(test_turn_error),
		T(test_other_turn_ignored),
		T(test_forged_newline),
		T(test_forged_not_a_tail),
		T(test_forged_whole_object),
		T(test_malformed_turn_end),
		T(test_unexpected_type),
		T(test_cli_exit_then_gone),
		T(test_retry_in_new_cli),
		T(test_interrupt),
		T(test_stop_during_turn),
		T(test_busy),
		T(test_queued_turn),
		T(test_open_probed),
		T(test_open_failed),
		T(test_execute_open_failed),
		T(test_permission),
		T(test_configure),
		T(test_client_gone),
#undef T
	};

	json_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
