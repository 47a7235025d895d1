/*
 * libhotplex against a scripted server: a thread on the other end of a
 * socketpair (or of a temporary Unix socket) reads the requests, checks
 * them, and answers with canned lines.  The thread records what it found
 * wrong; the test asserts on that after joining it.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cJSON.h>

#include "client/hotplex.h"
#include "tests/time_scale.h"

#define SRV_RECV_TIMEOUT_S	10	/* a stuck test fails instead of hanging
				   (times the load: time_scale.h) */
#define SRV_MAX_IDS		8
#define SRV_FAIL_MAX		512
#define REC_MAX_EVENTS		32
#define REC_TEXT_MAX		256

struct srv {
	int		 fd;
	int		 listen_fd;	/* -1 unless on a named socket */
	FILE		*in;
	pthread_t	 thread;
	void		(*script)(struct srv *);
	char		 ids[SRV_MAX_IDS][32];
	int		 nids;
	int		 go[2];		/* the test lets the script go on */
	char		 failure[SRV_FAIL_MAX];
};

/* ---- the server side (runs in the thread) ---------------------------- */

/* The bound of one wait for the other side, in ms for poll(2). */
static int
srv_poll_ms(void)
{
	return (int)time_scaled_s(SRV_RECV_TIMEOUT_S) * 1000;
}

static void
srv_fail(struct srv *s, const char *fmt, ...)
{
	va_list	ap;

	if (s->failure[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(s->failure, sizeof s->failure, fmt, ap);
	va_end(ap);
}

static void
srv_send(struct srv *s, const char *fmt, ...)
{
	va_list	 ap;
	char	*line;
	int	 len;
	size_t	 off = 0;
	ssize_t	 n;

	va_start(ap, fmt);
	len = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (len < 0) {
		srv_fail(s, "vasprintf failed");
		return;
	}
	line[len] = '\n';	/* replaces the NUL; written by length */
	while (off < (size_t)len + 1) {
		n = send(s->fd, line + off, (size_t)len + 1 - off,
		    MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
}

/* Reads one request; checks its op; keeps its id in s->ids. */
static cJSON *
srv_expect(struct srv *s, const char *op)
{
	char		*line = NULL;
	size_t		 size = 0;
	cJSON		*req;
	const cJSON	*v;

	if (getline(&line, &size, s->in) == -1) {
		free(line);
		srv_fail(s, "no request (expected %s)", op);
		return NULL;
	}
	req = cJSON_Parse(line);
	free(line);
	v = cJSON_GetObjectItemCaseSensitive(req, "op");
	if (!cJSON_IsString(v) || strcmp(v->valuestring, op) != 0) {
		srv_fail(s, "expected op %s", op);
		cJSON_Delete(req);
		return NULL;
	}
	v = cJSON_GetObjectItemCaseSensitive(req, "id");
	if (!cJSON_IsString(v) || s->nids == SRV_MAX_IDS) {
		srv_fail(s, "request %s without an id", op);
		cJSON_Delete(req);
		return NULL;
	}
	snprintf(s->ids[s->nids++], sizeof s->ids[0], "%s", v->valuestring);
	return req;
}

static const char *
srv_str(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : "";
}

static void
srv_check_str(struct srv *s, const cJSON *o, const char *key, const char *want)
{
	if (strcmp(srv_str(o, key), want) != 0)
		srv_fail(s, "%s is \"%s\", not \"%s\"", key, srv_str(o, key),
		    want);
}

/* Blocks until the test writes to s->go. */
static void
srv_wait_go(struct srv *s)
{
	char	c;

	if (read(s->go[0], &c, 1) != 1)
		srv_fail(s, "no go from the test");
}

static void *
srv_main(void *arg)
{
	struct srv	*s = arg;
	struct timeval	 tv = { .tv_sec = time_scaled_s(SRV_RECV_TIMEOUT_S) };

	if (s->listen_fd != -1 &&
	    (s->fd = accept(s->listen_fd, NULL, NULL)) == -1) {
		srv_fail(s, "accept: %s", strerror(errno));
		return NULL;
	}
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if ((s->in = fdopen(dup(s->fd), "r")) == NULL) {
		srv_fail(s, "fdopen failed");
		return NULL;
	}
	s->script(s);
	fclose(s->in);
	close(s->fd);
	return NULL;
}

static void
srv_init(struct srv *s, void (*script)(struct srv *))
{
	memset(s, 0, sizeof *s);
	s->fd = s->listen_fd = -1;
	s->script = script;
	assert_int_equal(pipe(s->go), 0);
}

/* A server on a socketpair and a client handle on the other end. */
static struct hp_client *
srv_start(struct srv *s, void (*script)(struct srv *))
{
	struct hp_client	*h;
	struct hp_error		 err;
	int			 sv[2];

	srv_init(s, script);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s->fd = sv[1];
	h = hp_connect_fd(sv[0], &err);
	assert_non_null(h);
	/* A library that waits for a line that never comes fails, not hangs. */
	hp_set_timeout(h, srv_poll_ms());
	assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
	return h;
}

/* Closes the client (the script sees EOF), joins, checks the script. */
static void
srv_finish(struct srv *s, struct hp_client *h)
{
	char	c = 'x';

	hp_close(h);
	assert_int_equal(write(s->go[1], &c, 1), 1);	/* never leave it blocked */
	assert_int_equal(pthread_join(s->thread, NULL), 0);
	close(s->go[0]);
	close(s->go[1]);
	if (s->listen_fd != -1)
		close(s->listen_fd);
	assert_string_equal(s->failure, "");
}

/* ---- the client side: an event recorder ------------------------------ */

struct rec {
	struct hp_client	*h;
	int			 n;
	enum hp_event_type	 type[REC_MAX_EVENTS];
	int64_t			 seq[REC_MAX_EVENTS];
	char			 session[REC_MAX_EVENTS][16];
	const char		*origin[REC_MAX_EVENTS];	/* static */
	int			 local[REC_MAX_EVENTS];
	char			 answer[REC_TEXT_MAX];
	char			 thinking[REC_TEXT_MAX];
	char			 tool_name[REC_TEXT_MAX];
	char			 tool_id[REC_TEXT_MAX];
	char			 input_json[REC_TEXT_MAX];
	char			 output[REC_TEXT_MAX];
	int64_t			 duration_ms;
	int			 tool_is_error;
	int			 done_ok, done_interrupted;
	char			 result[REC_TEXT_MAX];
	char			 code[REC_TEXT_MAX];
	char			 message[REC_TEXT_MAX];
	char			 raw_first[REC_TEXT_MAX];
	uint64_t		 tokens_in, tokens_out, cost_micro;
	uint64_t		 last_turn_out;
	int			 depth, max_depth;
	/* a blocking call from the callback on its first event */
	int			 interrupt_on_first;
	struct rec		*nested;	/* execute s2 into this */
	int			 nested_rc;
	int			 events_after_nested;
};

static void
rec_cat(char *dst, const char *s)
{
	if (s != NULL)
		strncat(dst, s, REC_TEXT_MAX - strlen(dst) - 1);
}

static void
rec_cb(const struct hp_event *ev, void *arg)
{
	struct rec	*r = arg;
	struct hp_error	 err;
	int		 i;

	if (++r->depth > r->max_depth)
		r->max_depth = r->depth;
	if (r->n < REC_MAX_EVENTS) {
		i = r->n++;
		r->type[i] = ev->type;
		r->seq[i] = ev->seq;
		r->local[i] = ev->local;
		/* Only "cli" is sent: keep a static copy, not the pointer. */
		r->origin[i] = ev->origin != NULL &&
		    strcmp(ev->origin, "cli") == 0 ? "cli" : NULL;
		snprintf(r->session[i], sizeof r->session[i], "%s",
		    ev->session != NULL ? ev->session : "");
		if (i == 0)
			snprintf(r->raw_first, sizeof r->raw_first, "%.*s",
			    (int)ev->line_len, ev->line);
	}
	switch (ev->type) {
	case HP_EV_ANSWER:
		rec_cat(r->answer, ev->text);
		break;
	case HP_EV_THINKING:
		rec_cat(r->thinking, ev->text);
		break;
	case HP_EV_TOOL_USE:
		rec_cat(r->tool_name, ev->tool_name);
		rec_cat(r->tool_id, ev->tool_id);
		rec_cat(r->input_json, ev->input_json);
		break;
	case HP_EV_TOOL_RESULT:
		rec_cat(r->output, ev->output);
		r->duration_ms = ev->duration_ms;
		r->tool_is_error = ev->is_error;
		break;
	case HP_EV_DONE:
		r->done_ok = ev->ok;
		r->done_interrupted = ev->interrupted;
		rec_cat(r->result, ev->result);
		if (ev->stats != NULL) {
			r->tokens_in = ev->stats->total.tokens.input;
			r->tokens_out = ev->stats->total.tokens.output;
			r->cost_micro = (uint64_t)(ev->stats->total.cost_usd *
			    1e6 + 0.5);
			if (ev->stats->has_last_turn)
				r->last_turn_out =
				    ev->stats->last_turn.tokens.output;
		}
		break;
	case HP_EV_CLI_TURN:
		rec_cat(r->result, ev->result);
		if (ev->stats != NULL)
			r->tokens_out = ev->stats->total.tokens.output;
		break;
	case HP_EV_ERROR:
		rec_cat(r->code, ev->code);
		rec_cat(r->message, ev->message);
		break;
	default:
		break;
	}
	if (r->n == 1 && r->interrupt_on_first) {
		r->nested_rc = hp_interrupt(r->h, "s1", &err);
		r->events_after_nested = r->n;
	}
	if (r->n == 1 && r->nested != NULL) {
		r->nested_rc = hp_execute(r->h, "s2", "inner", NULL, NULL,
		    rec_cb, r->nested, &err);
		r->events_after_nested = r->n;
	}
	r->depth--;
}

/* ---- scripts and tests ----------------------------------------------- */

static void
script_turn(struct srv *s)
{
	const char	*id;
	cJSON		*req, *opt;
	const cJSON	*tools;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	id = s->ids[0];
	srv_check_str(s, req, "session", "s1");
	srv_check_str(s, req, "prompt", "say hello");
	srv_check_str(s, req, "workdir", "/srv/w");
	opt = cJSON_GetObjectItemCaseSensitive(req, "options");
	srv_check_str(s, opt, "model", "m1");
	srv_check_str(s, opt, "permission_mode", "acceptEdits");
	tools = cJSON_GetObjectItemCaseSensitive(opt, "allowed_tools");
	if (cJSON_GetArraySize(tools) != 2 ||
	    strcmp(cJSON_GetArrayItem(tools, 1)->valuestring, "Read") != 0)
		srv_fail(s, "allowed_tools not sent");
	if (cJSON_GetObjectItemCaseSensitive(opt, "disallowed_tools") != NULL)
		srv_fail(s, "disallowed_tools sent though unset");
	if (cJSON_GetObjectItemCaseSensitive(opt, "max_turns")->valueint != 3)
		srv_fail(s, "max_turns not sent");
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opt,
	    "slash_commands")))
		srv_fail(s, "slash_commands not sent");
	cJSON_Delete(req);

	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":1,\"type\":"
	    "\"session_start\",\"data\":{\"cold\":true,\"resumed\":false,"
	    "\"cli_session_id\":\"u-1\",\"worker_pid\":42,\"pgid\":43}}", id);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":2,\"type\":"
	    "\"thinking\",\"data\":{\"text\":\"hmm\"}}", id);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":3,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"Hel\"}}", id);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":4,\"type\":"
	    "\"tool_use\",\"data\":{\"tool_id\":\"t1\",\"name\":\"Bash\","
	    "\"input\":{\"command\":\"ls\"}}}", id);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":5,\"type\":"
	    "\"tool_result\",\"data\":{\"tool_id\":\"t1\",\"name\":\"Bash\","
	    "\"is_error\":true,\"output\":\"a\\nb\",\"truncated\":false,"
	    "\"duration_ms\":12}}", id);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":6,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"lo\"}}", id);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":7,\"type\":"
	    "\"done\",\"data\":{\"ok\":true,\"result\":\"Hello\",\"is_error\":"
	    "false,\"interrupted\":false,\"stats\":{\"turns\":1,\"tokens\":"
	    "{\"input\":10,\"output\":20,\"cache_read\":0,\"cache_write\":5},"
	    "\"cost_usd\":0.0125,\"last_turn\":{\"tokens\":{\"output\":7}}}}}",
	    id);

	/* Still connected: the next request is answered on the same line. */
	if ((req = srv_expect(s, "stats")) == NULL)
		return;
	srv_check_str(s, req, "session", "s1");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"stats\",\"data\":{\"session\":"
	    "\"s1\",\"state\":\"ready\",\"turns\":1,\"tokens\":{\"input\":10,"
	    "\"output\":20},\"tools\":[{\"name\":\"Bash\",\"calls\":1,"
	    "\"errors\":1,\"duration_ms\":12}]}}", s->ids[1]);
}

static void
test_events_in_order(void **state)
{
	static const char *const allow[] = { "Bash", "Read", NULL };
	struct hp_options	 opt = {
		.model = "m1", .permission_mode = "acceptEdits",
		.allowed_tools = allow, .max_turns = 3, .slash_commands = 1
	};
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_stats		 st;
	struct hp_client	*h;
	int			 i;

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_turn);
	assert_int_equal(hp_execute(h, "s1", "say hello", "/srv/w", &opt,
	    rec_cb, &r, &err), 0);
	assert_int_equal(r.n, 7);
	for (i = 0; i < r.n; i++) {
		assert_int_equal(r.seq[i], i + 1);
		assert_string_equal(r.session[i], "s1");
	}
	assert_int_equal(r.type[0], HP_EV_SESSION_START);
	assert_int_equal(r.type[1], HP_EV_THINKING);
	assert_int_equal(r.type[3], HP_EV_TOOL_USE);
	assert_int_equal(r.type[4], HP_EV_TOOL_RESULT);
	assert_int_equal(r.type[6], HP_EV_DONE);
	assert_string_equal(r.answer, "Hello");
	assert_string_equal(r.thinking, "hmm");
	assert_string_equal(r.tool_name, "Bash");
	assert_string_equal(r.tool_id, "t1");
	assert_string_equal(r.input_json, "{\"command\":\"ls\"}");
	assert_string_equal(r.output, "a\nb");
	assert_int_equal(r.duration_ms, 12);
	assert_true(r.tool_is_error);
	assert_true(r.done_ok);
	assert_false(r.done_interrupted);
	assert_string_equal(r.result, "Hello");
	assert_int_equal(r.tokens_in, 10);
	assert_int_equal(r.tokens_out, 20);
	assert_int_equal(r.cost_micro, 12500);
	assert_int_equal(r.last_turn_out, 7);
	assert_non_null(strstr(r.raw_first, "\"session_start\""));
	assert_int_equal(hp_pending(h), 0);

	/* The terminal line ended execute: the handle takes a new request. */
	assert_int_equal(hp_stats(h, "s1", &st, NULL, &err), 0);
	assert_string_equal(st.session, "s1");
	assert_string_equal(st.state, "ready");
	assert_int_equal(st.total.tokens.total, 30);
	assert_int_equal(st.total.ntools, 1);
	assert_string_equal(st.total.tools[0].name, "Bash");
	assert_int_equal(st.total.tools[0].errors, 1);
	srv_finish(&s, h);
}

/* Two executes in flight, answered interleaved, plus a stray line. */
static void
script_two(struct srv *s)
{
	cJSON	*a, *b;

	a = srv_expect(s, "execute");
	b = srv_expect(s, "execute");
	if (a == NULL || b == NULL) {
		cJSON_Delete(a);
		cJSON_Delete(b);
		return;
	}
	srv_check_str(s, a, "session", "s1");
	srv_check_str(s, b, "session", "s2");
	cJSON_Delete(a);
	cJSON_Delete(b);
	if (strcmp(s->ids[0], s->ids[1]) == 0)
		srv_fail(s, "two requests share id %s", s->ids[0]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s2\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"B1\"}}", s->ids[1]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"A1\"}}", s->ids[0]);
	srv_send(s, "{\"id\":\"nobody\",\"type\":\"system\",\"data\":{}}");
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s2\",\"seq\":2,\"type\":"
	    "\"done\",\"data\":{\"ok\":true,\"result\":\"B\"}}", s->ids[1]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":2,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"A2\"}}", s->ids[0]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":3,\"type\":"
	    "\"done\",\"data\":{\"ok\":true,\"result\":\"A\"}}", s->ids[0]);
}

static void
orphan_cb(const struct hp_event *ev, void *arg)
{
	int	*n = arg;

	if (ev->id != NULL && strcmp(ev->id, "nobody") == 0)
		(*n)++;
}

static void
test_two_in_flight(void **state)
{
	struct srv		 s;
	struct rec		 ra, rb;
	struct hp_error		 err;
	struct hp_client	*h;
	uint64_t		 ta, tb;
	int			 orphans = 0;

	memset(&ra, 0, sizeof ra);
	memset(&rb, 0, sizeof rb);
	h = srv_start(&s, script_two);
	hp_set_orphan_cb(h, orphan_cb, &orphans);
	ta = hp_execute_start(h, "s1", "a", NULL, NULL, rec_cb, &ra, &err);
	tb = hp_execute_start(h, "s2", "b", NULL, NULL, rec_cb, &rb, &err);
	assert_true(ta != 0 && tb != 0 && ta != tb);
	assert_int_equal(hp_pending(h), 2);

	/* Waiting for s1 delivers s2's lines on the way, none lost. */
	assert_int_equal(hp_wait(h, ta, &err), 0);
	assert_int_equal(hp_wait(h, tb, &err), 0);
	assert_int_equal(hp_pending(h), 0);

	assert_int_equal(ra.n, 3);
	assert_string_equal(ra.answer, "A1A2");
	assert_string_equal(ra.result, "A");
	assert_int_equal(ra.seq[2], 3);
	assert_int_equal(ra.type[2], HP_EV_DONE);
	assert_string_equal(ra.session[0], "s1");
	assert_int_equal(rb.n, 2);
	assert_string_equal(rb.answer, "B1");
	assert_string_equal(rb.result, "B");
	assert_string_equal(rb.session[1], "s2");
	assert_int_equal(orphans, 1);
	srv_finish(&s, h);
}

/*
 * The callback interrupts on the same handle.  An execute event comes
 * before the interrupt's reply: it must wait until the callback returns.
 */
static void
script_interrupt(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"work\"}}", s->ids[0]);
	if ((req = srv_expect(s, "interrupt")) == NULL)
		return;
	srv_check_str(s, req, "session", "s1");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":2,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"ing\"}}", s->ids[0]);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"ok\"}", s->ids[1]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":3,\"type\":"
	    "\"done\",\"data\":{\"ok\":true,\"interrupted\":true}}", s->ids[0]);
}

static void
test_interrupt_from_callback(void **state)
{
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_client	*h;

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_interrupt);
	r.h = h;
	r.interrupt_on_first = 1;
	r.nested_rc = -2;
	assert_int_equal(hp_execute(h, "s1", "go", NULL, NULL, rec_cb, &r,
	    &err), 0);
	assert_int_equal(r.nested_rc, 0);
	assert_int_equal(r.events_after_nested, 1);
	assert_int_equal(r.max_depth, 1);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.seq[1], 2);
	assert_string_equal(r.answer, "working");
	assert_true(r.done_interrupted);
	srv_finish(&s, h);
}

/*
 * An execute of s2 from s1's callback: s1's next event arrives while the
 * nested call waits for s2, and must be held until the callback returns.
 */
static void
script_nested(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"out\"}}", s->ids[0]);
	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	srv_check_str(s, req, "session", "s2");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":2,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"er\"}}", s->ids[0]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s2\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"in\"}}", s->ids[1]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s2\",\"seq\":2,\"type\":"
	    "\"done\",\"data\":{\"ok\":true}}", s->ids[1]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":3,\"type\":"
	    "\"done\",\"data\":{\"ok\":true}}", s->ids[0]);
}

static void
test_nested_execute_no_reentry(void **state)
{
	struct srv		 s;
	struct rec		 outer, inner;
	struct hp_error		 err;
	struct hp_client	*h;

	memset(&outer, 0, sizeof outer);
	memset(&inner, 0, sizeof inner);
	h = srv_start(&s, script_nested);
	outer.h = h;
	outer.nested = &inner;
	outer.nested_rc = -2;
	assert_int_equal(hp_execute(h, "s1", "outer", NULL, NULL, rec_cb,
	    &outer, &err), 0);
	assert_int_equal(outer.nested_rc, 0);
	assert_int_equal(outer.events_after_nested, 1);
	assert_int_equal(outer.max_depth, 1);
	assert_int_equal(outer.n, 3);
	assert_string_equal(outer.answer, "outer");
	assert_int_equal(inner.n, 2);
	assert_string_equal(inner.answer, "in");
	assert_string_equal(inner.session[1], "s2");
	srv_finish(&s, h);
}

static void
script_errors(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"type\":\"error\","
	    "\"data\":{\"code\":\"session_busy\",\"message\":\"s1 is "
	    "running a turn\"}}", s->ids[0]);
	if ((req = srv_expect(s, "stop")) == NULL)
		return;
	srv_check_str(s, req, "reason", "done here");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"error\",\"data\":{\"code\":"
	    "\"not_found\",\"message\":\"no session zz\"}}", s->ids[1]);
	if ((req = srv_expect(s, "reset")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"ok\"}", s->ids[2]);
}

static void
test_error_replies(void **state)
{
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_client	*h;

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_errors);
	assert_int_equal(hp_execute(h, "s1", "x", NULL, NULL, rec_cb, &r,
	    &err), -1);
	assert_string_equal(err.code, "session_busy");
	assert_string_equal(err.message, "s1 is running a turn");
	assert_int_equal(r.n, 1);
	assert_int_equal(r.type[0], HP_EV_ERROR);
	assert_string_equal(r.code, "session_busy");

	assert_int_equal(hp_stop(h, "zz", "done here", &err), -1);
	assert_string_equal(err.code, "not_found");
	assert_string_equal(err.message, "no session zz");
	/* An error reply leaves the connection usable. */
	assert_int_equal(hp_reset(h, "s1", &err), 0);
	srv_finish(&s, h);
}

static void
script_hangup(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"par\"}}", s->ids[0]);
	shutdown(s->fd, SHUT_RDWR);
}

static void
test_hangup_mid_execute(void **state)
{
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_client	*h;

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_hangup);
	assert_int_equal(hp_execute(h, "s1", "x", NULL, NULL, rec_cb, &r,
	    &err), -1);
	assert_string_equal(err.code, HP_E_DISCONNECTED);
	/* The callback saw the event and then a terminal error of our own. */
	assert_int_equal(r.n, 2);
	assert_int_equal(r.type[0], HP_EV_ANSWER);
	assert_int_equal(r.type[1], HP_EV_ERROR);
	assert_true(r.local[1]);
	assert_string_equal(r.code, HP_E_DISCONNECTED);
	/* Later calls fail at once. */
	assert_int_equal(hp_interrupt(h, "s1", &err), -1);
	assert_string_equal(err.code, HP_E_DISCONNECTED);
	srv_finish(&s, h);
}

/* The server rejects the request without an id and hangs up. */
static void
script_idless_error(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"type\":\"error\",\"data\":{\"code\":\"too_large\","
	    "\"message\":\"request over 1048576 bytes\"}}");
	shutdown(s->fd, SHUT_RDWR);
}

static void
test_idless_error_then_close(void **state)
{
	struct srv		 s;
	struct hp_error		 err;
	struct hp_client	*h;

	h = srv_start(&s, script_idless_error);
	assert_int_equal(hp_execute(h, "s1", "x", NULL, NULL, NULL, NULL,
	    &err), -1);
	assert_string_equal(err.code, "too_large");
	srv_finish(&s, h);
}

/* A line one byte over the default bound, never ended. */
static void
script_huge(struct srv *s)
{
	cJSON	*req;
	char	*buf;
	size_t	 len = (size_t)HP_MAX_LINE + 1, off = 0;
	ssize_t	 n;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	if ((buf = malloc(len)) == NULL) {
		srv_fail(s, "malloc");
		return;
	}
	memset(buf, 'x', len);
	memcpy(buf, "{\"x\":\"", 6);
	while (off < len) {
		/* Fails with EPIPE once the client gave up and closed. */
		if ((n = send(s->fd, buf + off, len - off, MSG_NOSIGNAL)) <= 0)
			break;
		off += (size_t)n;
	}
	free(buf);
	srv_wait_go(s);
}

static void
test_line_too_long(void **state)
{
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_client	*h;

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_huge);
	assert_int_equal(hp_execute(h, "s1", "x", NULL, NULL, rec_cb, &r,
	    &err), -1);
	assert_string_equal(err.code, HP_E_LINE_TOO_LONG);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.code, HP_E_LINE_TOO_LONG);
	srv_finish(&s, h);
}

/* A whole line over a lowered bound, with its newline. */
static void
script_long_line(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "stats")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"stats\",\"data\":{\"session\":"
	    "\"%0200d\"}}", s->ids[0], 0);
	srv_wait_go(s);
}

static void
test_line_over_set_bound(void **state)
{
	struct srv		 s;
	struct hp_error		 err;
	struct hp_client	*h;

	h = srv_start(&s, script_long_line);
	hp_set_max_line(h, 100);
	assert_int_equal(hp_stats(h, NULL, NULL, NULL, &err), -1);
	assert_string_equal(err.code, HP_E_LINE_TOO_LONG);
	srv_finish(&s, h);
}

static void
script_garbage(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "sessions")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "this is not json");
	srv_wait_go(s);
}

static void
test_garbage_line(void **state)
{
	struct srv		 s;
	struct hp_error		 err;
	struct hp_client	*h;

	h = srv_start(&s, script_garbage);
	assert_int_equal(hp_sessions(h, NULL, NULL, NULL, &err), -1);
	assert_string_equal(err.code, HP_E_PROTOCOL);
	srv_finish(&s, h);
}

static void
script_queries(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "sessions")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"sessions\",\"data\":["
	    "{\"session\":\"a\",\"state\":\"ready\",\"uid\":1000,\"workdir\":"
	    "\"/w/a\",\"worker_pid\":11,\"cli_pid\":12,\"turns\":3,"
	    "\"idle_ms\":500},{\"session\":\"b\",\"state\":\"dormant\","
	    "\"uid\":1001,\"turns\":0}]}", s->ids[0]);
	if ((req = srv_expect(s, "policy_check")) == NULL)
		return;
	srv_check_str(s, req, "text", "rm -rf /");
	srv_check_str(s, req, "target", "bash");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"verdict\",\"data\":{\"blocked\":"
	    "true,\"score\":90,\"matches\":[{\"rule\":\"rm-root\",\"category\":"
	    "\"destructive\",\"severity\":\"critical\",\"form\":\"raw\"}]}}",
	    s->ids[1]);
	if ((req = srv_expect(s, "stats")) == NULL)
		return;
	if (cJSON_GetObjectItemCaseSensitive(req, "session") != NULL)
		srv_fail(s, "totals request carries a session");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"stats\",\"data\":{\"turns\":9,"
	    "\"cost_usd\":1.5}}", s->ids[2]);
}

static void
test_sessions_policy_stats(void **state)
{
	struct srv		 s;
	struct hp_error		 err;
	struct hp_client	*h;
	struct hp_session_info	*list;
	struct hp_verdict	 v;
	struct hp_stats		 st;
	char			*raw;
	size_t			 n;

	h = srv_start(&s, script_queries);
	assert_int_equal(hp_sessions(h, &list, &n, &raw, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].session, "a");
	assert_string_equal(list[0].workdir, "/w/a");
	assert_int_equal(list[0].worker_pid, 11);
	assert_int_equal(list[0].idle_ms, 500);
	assert_string_equal(list[1].state, "dormant");
	assert_null(list[1].workdir);
	assert_int_equal(list[1].idle_ms, -1);
	assert_non_null(strstr(raw, "\"type\":\"sessions\""));
	free(raw);
	hp_sessions_free(list, n);

	assert_int_equal(hp_policy_check(h, "rm -rf /", "bash", &v, NULL,
	    &err), 0);
	assert_true(v.blocked);
	assert_int_equal((int)v.score, 90);
	assert_int_equal(v.nmatches, 1);
	assert_string_equal(v.matches[0].rule, "rm-root");
	assert_string_equal(v.matches[0].severity, "critical");
	hp_verdict_free(&v);

	assert_int_equal(hp_stats(h, NULL, &st, NULL, &err), 0);
	assert_int_equal(st.total.turns, 9);
	assert_string_equal(st.session, "");
	srv_finish(&s, h);
}

/* audit and status: typed rows, and replies of the wrong shape. */
static void
script_audit_status(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "audit")) == NULL)
		return;
	srv_check_str(s, req, "session", "a");
	if (cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(req,
	    "after_id")) != 7)
		srv_fail(s, "audit without after_id 7");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"audit\",\"data\":{\"more\":"
	    "true,\"rows\":[{\"id\":8,\"time_ms\":1700000000000,\"uid\":1000,"
	    "\"session\":\"a\",\"turn\":2,\"kind\":\"tool\",\"tool\":\"Bash\","
	    "\"digest\":\"ab\",\"excerpt\":\"{}\",\"decision\":\"allow\","
	    "\"decided_by\":\"gate\",\"duration_ms\":12,\"error\":true,"
	    "\"files\":[\"/w/x\",\"/w/y\"],\"files_deleted\":[\"/w/z\"],"
	    "\"files_truncated\":true,\"detail\":\"Exit code 1\"},"
	    "{\"id\":9,\"time_ms\":1700000000001,\"uid\":1000,\"session\":"
	    "\"a\",\"turn\":3,\"kind\":\"firewall\",\"tool\":null,\"digest\":"
	    "\"cd\",\"excerpt\":\"rm\",\"decision\":\"block\",\"decided_by\":"
	    "\"firewall\",\"duration_ms\":null,\"error\":false,\"files\":[],"
	    "\"detail\":null}]}}", s->ids[0]);
	if ((req = srv_expect(s, "audit")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"audit\",\"data\":{\"rows\":"
	    "{}}}", s->ids[1]);
	if ((req = srv_expect(s, "status")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"status\",\"data\":{\"ready\":"
	    "true}}", s->ids[2]);
	if ((req = srv_expect(s, "status")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"status\",\"data\":[]}",
	    s->ids[3]);
}

static void
test_audit_status(void **state)
{
	struct srv		 s;
	struct hp_error		 err;
	struct hp_client	*h;
	struct hp_audit_query	 q;
	struct hp_audit		 au;
	const struct hp_audit_row *r;
	char			*raw;

	h = srv_start(&s, script_audit_status);
	memset(&q, 0, sizeof q);
	q.session = "a";
	q.after_id = 7;
	assert_int_equal(hp_audit(h, &q, &au, &raw, &err), 0);
	assert_true(au.more);
	assert_int_equal(au.nrows, 2);
	r = &au.rows[0];
	assert_int_equal(r->id, 8);
	assert_int_equal(r->time_ms, 1700000000000LL);
	assert_int_equal(r->uid, 1000);
	assert_string_equal(r->session, "a");
	assert_int_equal(r->turn, 2);
	assert_string_equal(r->kind, "tool");
	assert_string_equal(r->tool, "Bash");
	assert_string_equal(r->decided_by, "gate");
	assert_int_equal(r->duration_ms, 12);
	assert_true(r->error);
	assert_int_equal(r->nfiles, 2);
	assert_string_equal(r->files[1], "/w/y");
	assert_int_equal(r->nfiles_deleted, 1);
	assert_string_equal(r->files_deleted[0], "/w/z");
	assert_true(r->files_truncated);
	assert_string_equal(r->detail, "Exit code 1");
	r = &au.rows[1];
	assert_null(r->tool);
	assert_null(r->detail);
	assert_int_equal(r->duration_ms, -1);
	assert_int_equal(r->nfiles, 0);
	assert_int_equal(r->nfiles_deleted, 0);
	assert_false(r->files_truncated);
	assert_non_null(strstr(raw, "\"type\":\"audit\""));
	free(raw);
	hp_audit_free(&au);
	assert_int_equal(au.nrows, 0);

	assert_int_equal(hp_audit(h, NULL, &au, NULL, &err), -1);
	assert_string_equal(err.code, HP_E_PROTOCOL);
	assert_non_null(strstr(err.message, "without rows"));
	assert_int_equal(au.nrows, 0);
	assert_null(au.rows);

	assert_int_equal(hp_status(h, &raw, &err), 0);
	assert_non_null(strstr(raw, "\"ready\":true"));
	free(raw);
	assert_int_equal(hp_status(h, &raw, &err), -1);
	assert_string_equal(err.code, HP_E_PROTOCOL);
	assert_null(raw);
	srv_finish(&s, h);
}

/* Non-blocking use: nothing to read yet, then the whole turn. */
static void
script_pump(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "execute")) == NULL)
		return;
	cJSON_Delete(req);
	srv_wait_go(s);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":1,\"type\":"
	    "\"answer\",\"data\":{\"text\":\"hi\"}}", s->ids[0]);
	srv_send(s, "{\"id\":\"%s\",\"session\":\"s1\",\"seq\":2,\"type\":"
	    "\"done\",\"data\":{\"ok\":true,\"result\":\"hi\"}}", s->ids[0]);
	srv_wait_go(s);		/* stay connected: pump must not see EOF */
}

static void
test_pump(void **state)
{
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_client	*h;
	struct pollfd		 pfd;
	char			 c = 'g';

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_pump);
	assert_true(hp_execute_start(h, "s1", "x", NULL, NULL, rec_cb, &r,
	    &err) != 0);
	assert_int_equal(hp_pump(h, &err), 0);	/* returns with nothing */
	assert_int_equal(r.n, 0);
	assert_int_equal(write(s.go[1], &c, 1), 1);
	pfd.fd = hp_fd(h);
	pfd.events = POLLIN;
	while (hp_pending(h) > 0) {
		assert_int_equal(poll(&pfd, 1, srv_poll_ms()), 1);
		assert_int_equal(hp_pump(h, &err), 0);
	}
	assert_int_equal(r.n, 2);
	assert_int_equal(r.type[1], HP_EV_DONE);
	assert_string_equal(r.answer, "hi");
	srv_finish(&s, h);
}

/* attach, its replayed and live lines (another client's id), detach,
 * reload, and a shutdown refused. */
static void
script_attach(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "attach")) == NULL)
		return;
	srv_check_str(s, req, "session", "s1");
	if (cJSON_GetObjectItemCaseSensitive(req, "since_seq") == NULL ||
	    cJSON_GetObjectItemCaseSensitive(req, "since_seq")->valueint != 3)
		srv_fail(s, "attach without since_seq 3");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"ok\",\"data\":{\"session\":"
	    "\"s1\",\"seq\":5,\"state\":\"busy\",\"lost\":[4,4]}}", s->ids[0]);
	srv_send(s, "{\"id\":\"other-7\",\"session\":\"s1\",\"seq\":5,"
	    "\"type\":\"answer\",\"data\":{\"text\":\"hel\"}}");
	srv_send(s, "{\"id\":\"other-7\",\"session\":\"s1\",\"seq\":6,"
	    "\"type\":\"done\",\"data\":{\"ok\":true,\"result\":\"hel\"}}");
	/* A turn the CLI began by itself, as relay.c writes it. */
	srv_send(s, "{\"id\":null,\"session\":\"s1\",\"origin\":\"cli\","
	    "\"seq\":7,\"type\":\"answer\",\"data\":{\"text\":\"own\"}}");
	srv_send(s, "{\"id\":null,\"session\":\"s1\",\"origin\":\"cli\","
	    "\"seq\":8,\"type\":\"cli_turn\",\"data\":{\"origin\":{\"kind\":"
	    "\"task-notification\"},\"result\":\"own\",\"is_error\":false,"
	    "\"stats\":{\"turns\":1,\"tokens\":{\"input\":3,\"output\":9}}}}");
	if ((req = srv_expect(s, "detach")) == NULL)
		return;
	srv_check_str(s, req, "session", "s1");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"ok\"}", s->ids[1]);
	if ((req = srv_expect(s, "reload")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"ok\"}", s->ids[2]);
	if ((req = srv_expect(s, "shutdown")) == NULL)
		return;
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"error\",\"data\":{\"code\":"
	    "\"forbidden\",\"message\":\"this op needs uid 0\"}}", s->ids[3]);
}

static void
test_attach_detach_reload_shutdown(void **state)
{
	struct srv		 s;
	struct rec		 r;
	struct hp_error		 err;
	struct hp_client	*h;
	struct hp_attach	 info;
	struct pollfd		 pfd;

	memset(&r, 0, sizeof r);
	h = srv_start(&s, script_attach);
	/* The followed lines belong to no request of ours: the orphans'. */
	hp_set_orphan_cb(h, rec_cb, &r);
	assert_int_equal(hp_attach(h, "", 0, &info, &err), -1);
	assert_string_equal(err.code, HP_E_INVALID);
	assert_int_equal(hp_attach(h, "s1", 3, &info, &err), 0);
	assert_int_equal(info.seq, 5);
	assert_string_equal(info.state, "busy");
	assert_false(info.ended);
	assert_int_equal(info.lost_first, 4);
	assert_int_equal(info.lost_last, 4);
	pfd.fd = hp_fd(h);
	pfd.events = POLLIN;
	for (;;) {
		assert_int_equal(hp_pump(h, &err), 0);
		if (r.n >= 2)
			break;
		assert_int_equal(poll(&pfd, 1, srv_poll_ms()), 1);
	}
	assert_int_equal(r.type[0], HP_EV_ANSWER);
	assert_int_equal(r.seq[0], 5);
	assert_string_equal(r.session[0], "s1");
	assert_int_equal(r.type[1], HP_EV_DONE);
	assert_null(r.origin[1]);
	for (;;) {
		assert_int_equal(hp_pump(h, &err), 0);
		if (r.n >= 4)
			break;
		assert_int_equal(poll(&pfd, 1, srv_poll_ms()), 1);
	}
	assert_int_equal(r.type[2], HP_EV_ANSWER);
	assert_string_equal(r.origin[2], "cli");
	assert_int_equal(r.type[3], HP_EV_CLI_TURN);
	assert_string_equal(r.origin[3], "cli");
	assert_string_equal(hp_event_type_name(HP_EV_CLI_TURN), "cli_turn");
	assert_string_equal(r.result, "helown");
	assert_int_equal(r.tokens_out, 9);
	assert_string_equal(r.answer, "helown");
	assert_int_equal(hp_detach(h, "s1", &err), 0);
	assert_int_equal(hp_reload(h, &err), 0);
	assert_int_equal(hp_shutdown(h, &err), -1);
	assert_string_equal(err.code, "forbidden");
	srv_finish(&s, h);
}

static void
script_hello(struct srv *s)
{
	cJSON	*req;

	if ((req = srv_expect(s, "hello")) == NULL)
		return;
	if (cJSON_GetObjectItemCaseSensitive(req, "proto")->valueint != 1)
		srv_fail(s, "hello without proto 1");
	srv_check_str(s, req, "client", "unit");
	cJSON_Delete(req);
	srv_send(s, "{\"id\":\"%s\",\"type\":\"hello\",\"proto\":1,\"server\":"
	    "\"hotplexd/0.1.0\",\"uid\":1000,\"admin\":false}", s->ids[0]);
}

/* hp_connect(NULL) finds the socket through $HOTPLEX_SOCKET. */
static void
test_connect_env(void **state)
{
	struct sockaddr_un	 sun = { .sun_family = AF_UNIX };
	struct srv		 s;
	struct hp_error		 err;
	struct hp_hello		 hello;
	struct hp_client	*h;
	char			 dir[] = "/tmp/test_libhotplex.XXXXXX";
	char			 missing[sizeof dir + 16];

	assert_non_null(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sock", dir);
	snprintf(missing, sizeof missing, "%s/nothing", dir);
	srv_init(&s, script_hello);
	s.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(s.listen_fd != -1);
	assert_int_equal(bind(s.listen_fd, (struct sockaddr *)&sun,
	    sizeof sun), 0);
	assert_int_equal(listen(s.listen_fd, 1), 0);
	assert_int_equal(pthread_create(&s.thread, NULL, srv_main, &s), 0);

	assert_null(hp_connect(missing, &err));
	assert_string_equal(err.code, HP_E_CONNECT);
	assert_non_null(strstr(err.message, missing));

	assert_int_equal(setenv(HP_SOCKET_ENV, sun.sun_path, 1), 0);
	h = hp_connect(NULL, &err);
	unsetenv(HP_SOCKET_ENV);
	assert_non_null(h);
	assert_int_equal(hp_hello(h, "unit", &hello, &err), 0);
	assert_int_equal(hello.proto, 1);
	assert_string_equal(hello.server, "hotplexd/0.1.0");
	assert_int_equal(hello.uid, 1000);
	assert_false(hello.admin);
	srv_finish(&s, h);
	assert_int_equal(unlink(sun.sun_path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_events_in_order),
		cmocka_unit_test(test_two_in_flight),
		cmocka_unit_test(test_interrupt_from_callback),
		cmocka_unit_test(test_nested_execute_no_reentry),
		cmocka_unit_test(test_error_replies),
		cmocka_unit_test(test_hangup_mid_execute),
		cmocka_unit_test(test_idless_error_then_close),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_line_over_set_bound),
		cmocka_unit_test(test_garbage_line),
		cmocka_unit_test(test_sessions_policy_stats),
		cmocka_unit_test(test_audit_status),
		cmocka_unit_test(test_pump),
		cmocka_unit_test(test_attach_detach_reload_shutdown),
		cmocka_unit_test(test_connect_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
