/*
 * supervisor/session.c without sockets: the session object and its state
 * machine, linked with stubs that record what it asks of the pool, the
 * store and the clients.  Each case drives one transition and checks the
 * state, what the worker was sent and what the table holds.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/json.h"
#include "common/msg.h"
#include "supervisor/census.h"
#include "supervisor/gateway.h"
#include "supervisor/hotplexd.h"
#include "supervisor/session.h"

#define SENT_MAX	16	/* messages recorded per case */
#define UID		1000
#define RING_BYTES	4096

struct hotplexd		 hp;
static struct config	 conf;

/* What session.c asked for, case by case. */
static struct {
	uint16_t	 sent[SENT_MAX];	/* to the worker */
	size_t		 nsent;
	int		 stops;			/* pool_worker_stop */
	int		 saves;			/* state_session_save */
	int		 forgets;		/* state_session_forget */
	int		 take_err;		/* pool_take's errno */
	struct worker	*spare;			/* pool_take's answer */
} rec;

static void
sent(uint16_t type)
{
	if (rec.nsent < SENT_MAX)
		rec.sent[rec.nsent++] = type;
}

/* --- stubs: the rest of hotplexd, as seen from session.c --------------- */

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
pool_worker_stop(struct worker *wk, uint32_t turn)
{
	rec.stops++;
	sent(MSG_STOP);
}

struct worker *
pool_take(int *err)
{
	struct worker	*wk = rec.spare;

	*err = rec.take_err;
	rec.spare = NULL;
	return wk;
}

void	pool_refill(void) { }
void	pool_kill_all(void) { }
void	server_client_ok(struct client *c, const char *req, cJSON *d)
	{ cJSON_Delete(d); }
void	server_client_error(struct client *c, const char *req,
	    const char *session, const char *code, const char *fmt, ...) { }
void	server_gateway_session_free(struct session *s) { }
void	server_gateway_session_open(struct session *s, cJSON *open) { }
void	server_gateway_stats_json(const struct gateway_stats *g, cJSON *j) { }
int	state_session_save(struct session *s) { rec.saves++; return 0; }
void	state_session_forget(const struct session *s) { rec.forgets++; }
void	state_totals_save(void) { }
void	transcript_send(struct session *s, struct worker *wk) { }
void	move_client_gone(struct client *c) { }
uint64_t move_waited_us(void) { return 0; }
void	audit_turn_end(struct session *s) { }
void	audit_session_free(struct session *s) { }
void	budget_forget(const struct session *s) { }
void	census_move(uid_t uid, int from, int to) { }
void	spawner_killpg(pid_t worker, pid_t pgid, int sig) { }
void	session_turnq_cancel(struct session *s, const char *code,
	    const char *why) { }
void	session_turnq_run(evutil_socket_t fd, short what, void *arg) { }
int	session_follower_remove(struct session *s, struct client *c)
	{ return 0; }

void
session_emit(struct session *s, const char *type, cJSON *data)
{
	cJSON_Delete(data);
}

cJSON *
session_open_msg(struct session *s, int probe)
{
	return cJSON_CreateObject();
}

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

/* --- fixture ---------------------------------------------------------- */

static int
setup(void **state)
{
	memset(&rec, 0, sizeof rec);
	memset(&conf, 0, sizeof conf);
	conf.event_ring_bytes = RING_BYTES;
	conf.max_ended_sessions = 8;
	memset(&hp, 0, sizeof hp);
	hp.conf = &conf;
	if ((hp.base = event_base_new()) == NULL)
		return -1;
	TAILQ_INIT(&hp.sessions);
	return 0;
}

static int
teardown(void **state)
{
	session_free_all();
	event_base_free(hp.base);
	return 0;
}

/* A session with a worker that runs its CLI: READY. */
static struct session *
ready_session(const char *name, struct worker *wk)
{
	struct session	*s = session_new(name, UID, "/w", NULL);

	memset(wk, 0, sizeof *wk);
	wk->pid = 4242;
	wk->session = s;
	s->worker = wk;
	session_set_state(s, SESSION_READY);
	return s;
}

/* --- cases ------------------------------------------------------------ */

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
	struct worker	 wk;
	struct session	*s = ready_session("b", &wk);

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

/* A stop op's choice (the session ends) is kept. */
static void
test_stopping_keeps_final(void **state)
{
	struct worker	 wk;
	struct session	*s = ready_session("c", &wk);

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
	struct worker	 wk;
	struct session	*s = ready_session("d", &wk);

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
	struct worker	 wk;
	struct session	*s = session_new("f", UID, "/w", NULL);

	memset(&wk, 0, sizeof wk);
	rec.spare = &wk;
	assert_int_equal(session_assign(s), 0);
	assert_int_equal(s->state, SESSION_STARTING);
	assert_ptr_equal(s->worker, &wk);
	assert_ptr_equal(wk.session, s);
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

	conf.max_ended_sessions = 1;
	session_end(a);
	session_end(b);
	assert_int_equal(a->state, SESSION_ENDED);
	assert_int_equal(b->state, SESSION_ENDED);
	session_trim_ended();
	assert_null(session_find("h1", UID));
	assert_ptr_equal(session_find("h2", UID), b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_new_is_dormant_and_found),
		T(test_stopping_dormant),
		T(test_stopping_keeps_final),
		T(test_stopping_quiet),
		T(test_assign_waits_for_a_spare),
		T(test_assign_takes_a_spare),
		T(test_assign_capacity),
		T(test_end_and_trim),
#undef T
	};

	json_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
