/*
 * worker/turn.c's state machine without a CLI or a master: turn.c is
 * linked with stubs that record what it writes to the CLI, and its
 * messages to the master are read back from the buffer worker_out()
 * gives it.  Each case drives the transitions of a client's turn.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "common/json.h"
#include "common/msg.h"
#include "common/stats.h"
#include "worker/bridge.h"
#include "worker/worker.h"

#define WRITES_MAX	8	/* CLI lines recorded per case */
#define LINE_MAX_REC	256

struct worker_state	 ws;

static struct {
	char		 lines[WRITES_MAX][LINE_MAX_REC];	/* to the CLI */
	size_t		 nlines;
	int		 kills;
	struct evbuffer	*out;		/* to the master */
	struct stats	 stats;
} rec;

/* --- stubs: the CLI, the bridge, the channel --------------------------- */

int
cli_write(struct cli *c, const char *line, size_t len)
{
	if (rec.nlines < WRITES_MAX)
		snprintf(rec.lines[rec.nlines++], LINE_MAX_REC, "%.*s",
		    (int)len, line);
	return 0;
}

void		 cli_kill(struct cli *c, uint64_t grace_ms) { rec.kills++; }
const char	*cli_stderr_tail(struct cli *c) { return ""; }
void		 bridge_interrupting(struct bridge *b) { }
void		 bridge_line(struct bridge *b, const char *l, size_t n,
		    uint64_t ms) { }
void		 bridge_line_dropped(struct bridge *b, size_t n) { }
void		 bridge_turn_start(struct bridge *b, uint64_t ms) { }
struct stats	*bridge_turn_stats(struct bridge *b, uint64_t ms)
		    { return &rec.stats; }
void		 fswatch_begin(const char *tool, const char *id) { }
void		 fswatch_end(const char *id, cJSON *data) { }
void		 fswatch_clear(void) { }
void		 fswatch_idle(void) { }
void		 transcript_follow(const char *c, const char *w,
		    const char *id) { }
void		 transcript_save(struct evbuffer *b, uint32_t turn) { }
void		 worker_approvals_settle(int deny) { }
void		 worker_bridge_control_request(void *arg, const char *id,
		    const cJSON *r) { }
void		 worker_bridge_control_cancel(void *arg, const char *id) { }
void		 worker_exit(int code) { }
void		 worker_sent(void) { }

struct evbuffer *
worker_out(void)
{
	return rec.out;
}

/* --- helpers ------------------------------------------------------------ */

/* The types of the messages sent to the master so far, drained. */
static size_t
sent_types(uint16_t *types, size_t max)
{
	struct msg	m;
	size_t		n = 0;

	while (msg_get(rec.out, &m) == MSG_GET_OK) {
		if (n < max)
			types[n++] = m.hdr.type;
		msg_clear(&m);
	}
	return n;
}

/* How many of the sent messages were of type t, drained. */
static size_t
sent_count(uint16_t t)
{
	uint16_t	types[32];
	size_t		n = sent_types(types, 32), i, c = 0;

	for (i = 0; i < n; i++)
		c += types[i] == t;
	return c;
}

static void
turn(uint32_t n, const char *prompt)
{
	struct msg_turn	t;

	memset(&t, 0, sizeof t);
	t.prompt = prompt;
	worker_turn(n, &t);
}

static void
cli_init(void)
{
	worker_bridge_cb.init(NULL, "0b3f2c1e-6a55-4c6e-9d2b-0c1d2e3f4a5b");
}

static void
cli_result(const cJSON *origin)
{
	struct bridge_turn	t;

	memset(&t, 0, sizeof t);
	t.subtype = "success";
	t.result = "ok";
	t.origin = origin;
	t.stats = &rec.stats;
	worker_bridge_cb.turn_end(NULL, &t);
}

static int
setup(void **state)
{
	memset(&rec, 0, sizeof rec);
	memset(&ws, 0, sizeof ws);
	stats_init(&rec.stats);
	if ((rec.out = evbuffer_new()) == NULL ||
	    (ws.base = event_base_new()) == NULL)
		return -1;
	ws.turn_timer = evtimer_new(ws.base, worker_turn_timer, NULL);
	ws.grace_timer = evtimer_new(ws.base, worker_grace_timer, NULL);
	ws.state = W_OPEN;
	ws.kill_grace_ms = 1000;
	return 0;
}

static int
teardown(void **state)
{
	free(ws.held);
	event_free(ws.turn_timer);
	event_free(ws.grace_timer);
	event_base_free(ws.base);
	evbuffer_free(rec.out);
	stats_clear(&rec.stats);
	return 0;
}

/* --- cases ------------------------------------------------------------ */

/* written, begun by the CLI's init, ended by its result: one TURN_END. */
static void
test_turn_runs_and_ends(void **state)
{
	turn(1, "hello");
	assert_int_equal(ws.turn_state, TURN_WRITTEN);
	assert_int_equal(rec.nlines, 1);
	assert_non_null(strstr(rec.lines[0], "\"hello\""));
	cli_init();
	assert_int_equal(ws.turn_state, TURN_RUNNING);
	assert_false(ws.cli_own);
	cli_result(NULL);
	assert_int_equal(ws.turn_state, TURN_IDLE);
	assert_int_equal(sent_count(MSG_TURN_END), 1);
}

/* A second turn while one runs changes nothing. */
static void
test_turn_while_busy(void **state)
{
	turn(1, "first");
	cli_init();
	turn(2, "second");
	assert_int_equal(ws.turn_state, TURN_RUNNING);
	assert_int_equal(rec.nlines, 1);
}

/* The CLI began a turn itself: ours is held until that one ends. */
static void
test_turn_held_behind_cli_own(void **state)
{
	cJSON	*origin = cJSON_CreateObject();

	cli_init();			/* no line of ours: the CLI's own */
	assert_true(ws.cli_own);
	assert_int_equal(ws.turn_state, TURN_IDLE);
	turn(1, "later");
	assert_int_equal(ws.turn_state, TURN_HELD);
	assert_int_equal(rec.nlines, 0);
	cli_result(origin);		/* its end: ours goes to the CLI */
	assert_false(ws.cli_own);
	assert_int_equal(ws.turn_state, TURN_WRITTEN);
	assert_int_equal(rec.nlines, 1);
	assert_non_null(strstr(rec.lines[0], "\"later\""));
	assert_int_equal(sent_count(MSG_TURN_END), 0);
	cli_init();
	assert_int_equal(ws.turn_state, TURN_RUNNING);
	cJSON_Delete(origin);
}

/* Interrupted while held: it ends at once, nothing reached the CLI. */
static void
test_interrupt_held(void **state)
{
	cli_init();
	turn(1, "never");
	assert_int_equal(ws.turn_state, TURN_HELD);
	worker_interrupt();
	assert_int_equal(ws.turn_state, TURN_IDLE);
	assert_null(ws.held);
	assert_int_equal(rec.nlines, 0);
	assert_int_equal(sent_count(MSG_TURN_END), 1);
}

/* Interrupted while running: the CLI is asked once; its end closes it. */
static void
test_interrupt_running(void **state)
{
	turn(1, "long");
	cli_init();
	worker_interrupt();
	assert_int_equal(ws.turn_state, TURN_INTERRUPTING);
	assert_int_equal(rec.nlines, 2);
	assert_non_null(strstr(rec.lines[1], "\"interrupt\""));
	worker_interrupt();		/* asked already */
	assert_int_equal(rec.nlines, 2);
	assert_true(evtimer_pending(ws.grace_timer, NULL));
	cli_result(NULL);
	assert_int_equal(ws.turn_state, TURN_IDLE);
	assert_false(evtimer_pending(ws.grace_timer, NULL));
	assert_int_equal(sent_count(MSG_TURN_END), 1);
}

/* The CLI died mid-turn: the turn ends (an error), once. */
static void
test_cli_exit_mid_turn(void **state)
{
	turn(1, "crash");
	cli_init();
	worker_cli_cb.exited(NULL, 9);	/* killed by SIGKILL */
	assert_int_equal(ws.turn_state, TURN_IDLE);
	assert_true(ws.cli_gone);
	assert_int_equal(sent_count(MSG_TURN_END), 1);
}

/* Idle, an interrupt does nothing. */
static void
test_interrupt_idle(void **state)
{
	worker_interrupt();
	assert_int_equal(ws.turn_state, TURN_IDLE);
	assert_int_equal(rec.nlines, 0);
	assert_int_equal(sent_count(MSG_TURN_END), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_turn_runs_and_ends),
		T(test_turn_while_busy),
		T(test_turn_held_behind_cli_own),
		T(test_interrupt_held),
		T(test_interrupt_running),
		T(test_cli_exit_mid_turn),
		T(test_interrupt_idle),
#undef T
	};

	json_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
