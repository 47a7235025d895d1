/*
 * The stream-json bridge against recorded transcripts of the real CLI
 * (every tests/fixtures/NAME.stdout.jsonl, replayed with a synthetic clock) and
 * against synthetic lines built from them.
 */
#include <glob.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cJSON.h>

#include "common/stats.h"
#include "common/xmalloc.h"
#include "worker/bridge.h"

#define FIXTURE_DIR_DEFAULT	"tests/fixtures"
#define REC_MAX_EVENTS		4096
#define REC_MAX_TURNS		16
#define REC_MAX_CTL		16
#define CLOCK_START		1000	/* ms; the synthetic clock */
#define CLOCK_STEP		10	/* ms between two lines */
#define TEXT_MAX		(64 * 1024)
#define COST_EPSILON		1e-9

/* What the bridge reported. */
struct rec_event {
	char		*type;
	cJSON		*data;
	size_t		 turn;		/* turns ended before it */
};

struct rec_turn {
	int		 is_error;
	int		 interrupted;
	char		*subtype;
	char		*result;
	char		*terminal_reason;
	char		*stop_reason;
	int		 nerrors;
	struct stats	 stats;
};

struct rec {
	struct rec_event ev[REC_MAX_EVENTS];
	size_t		 nev;
	struct rec_turn	 turns[REC_MAX_TURNS];
	size_t		 nturns;
	char		*init_sid;
	size_t		 ninit;
	char		*req_id[REC_MAX_CTL];
	char		*req_subtype[REC_MAX_CTL];
	size_t		 nreq;
	char		*resp_id[REC_MAX_CTL];
	int		 resp_ok[REC_MAX_CTL];
	int		 resp_has_body[REC_MAX_CTL];
	size_t		 nresp;
	struct bridge	*restart;	/* turn_end starts the next turn */
	uint64_t	 restart_at;
};

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
rec_event(void *arg, const char *type, cJSON *data)
{
	struct rec	*r = arg;

	assert_non_null(data);
	assert_true(r->nev < REC_MAX_EVENTS);
	r->ev[r->nev].type = xstrdup(type);
	r->ev[r->nev].data = data;
	r->ev[r->nev].turn = r->nturns;
	r->nev++;
}

static void
rec_init(void *arg, const char *sid)
{
	struct rec	*r = arg;

	free(r->init_sid);
	r->init_sid = xstrdup(sid);
	r->ninit++;
}

static void
rec_turn_end(void *arg, const struct bridge_turn *t)
{
	struct rec	*r = arg;
	struct rec_turn	*rt;

	assert_true(r->nturns < REC_MAX_TURNS);
	rt = &r->turns[r->nturns++];
	rt->is_error = t->is_error;
	rt->interrupted = t->interrupted;
	rt->subtype = dup_or_null(t->subtype);
	rt->result = dup_or_null(t->result);
	rt->terminal_reason = dup_or_null(t->terminal_reason);
	rt->stop_reason = dup_or_null(t->stop_reason);
	rt->nerrors = t->errors != NULL ? cJSON_GetArraySize(t->errors) : -1;
	stats_init(&rt->stats);
	assert_non_null(t->stats);
	stats_copy(&rt->stats, t->stats);
	if (r->restart != NULL)
		bridge_turn_start(r->restart, r->restart_at);
}

static void
rec_control_request(void *arg, const char *id, const cJSON *req)
{
	struct rec	*r = arg;
	const cJSON	*sub = cJSON_GetObjectItem(req, "subtype");

	assert_true(r->nreq < REC_MAX_CTL);
	r->req_id[r->nreq] = xstrdup(id);
	r->req_subtype[r->nreq] = dup_or_null(cJSON_GetStringValue(sub));
	r->nreq++;
}

static void
rec_control_response(void *arg, const char *id, int ok, const cJSON *resp)
{
	struct rec	*r = arg;

	assert_true(r->nresp < REC_MAX_CTL);
	r->resp_id[r->nresp] = xstrdup(id);
	r->resp_ok[r->nresp] = ok;
	r->resp_has_body[r->nresp] = resp != NULL;
	r->nresp++;
}

static struct rec *
rec_new(void)
{
	return xcalloc(1, sizeof(struct rec));
}

static void
rec_free(struct rec *r)
{
	size_t	i;

	for (i = 0; i < r->nev; i++) {
		free(r->ev[i].type);
		cJSON_Delete(r->ev[i].data);
	}
	for (i = 0; i < r->nturns; i++) {
		free(r->turns[i].subtype);
		free(r->turns[i].result);
		free(r->turns[i].terminal_reason);
		free(r->turns[i].stop_reason);
		stats_clear(&r->turns[i].stats);
	}
	for (i = 0; i < r->nreq; i++) {
		free(r->req_id[i]);
		free(r->req_subtype[i]);
	}
	for (i = 0; i < r->nresp; i++)
		free(r->resp_id[i]);
	free(r->init_sid);
	free(r);
}

static struct bridge *
bridge_for(struct rec *r)
{
	struct bridge_cb	cb = {
		rec_event, rec_init, rec_turn_end, rec_control_request,
		rec_control_response, r, NULL
	};

	return bridge_new(&cb);
}

static const char *
ev_str(const struct rec_event *e, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItem(e->data, name));
}

/* Count events of a type (and, if given, a data.subtype). */
static size_t
rec_count(const struct rec *r, const char *type, const char *subtype)
{
	size_t	i, n = 0;

	for (i = 0; i < r->nev; i++) {
		if (strcmp(r->ev[i].type, type) != 0)
			continue;
		if (subtype != NULL && (ev_str(&r->ev[i], "subtype") == NULL ||
		    strcmp(ev_str(&r->ev[i], "subtype"), subtype) != 0))
			continue;
		n++;
	}
	return n;
}

static const struct rec_event *
rec_find(const struct rec *r, const char *type, size_t nth)
{
	size_t	i;

	for (i = 0; i < r->nev; i++)
		if (strcmp(r->ev[i].type, type) == 0 && nth-- == 0)
			return &r->ev[i];
	return NULL;
}

/* The text events of one type in one turn, concatenated. */
static void
rec_text(const struct rec *r, const char *type, size_t turn, char *buf,
    size_t size)
{
	size_t	i;

	buf[0] = '\0';
	for (i = 0; i < r->nev; i++)
		if (r->ev[i].turn == turn && strcmp(r->ev[i].type, type) == 0)
			strncat(buf, ev_str(&r->ev[i], "text"),
			    size - strlen(buf) - 1);
}

/* Fixtures. */

struct fixture {
	char	**line;
	size_t	  n;
};

static const char *
fixture_dir(void)
{
	const char	*d = getenv("FIXTURES");

	return d != NULL ? d : FIXTURE_DIR_DEFAULT;
}

static int
fixture_load_path(const char *path, struct fixture *f)
{
	FILE	*fp;
	char	*buf = NULL;
	size_t	 cap = 0;
	ssize_t	 len;

	memset(f, 0, sizeof *f);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while ((len = getline(&buf, &cap, fp)) != -1) {
		if (len > 0 && buf[len - 1] == '\n')
			buf[--len] = '\0';
		f->line = xreallocarray(f->line, f->n + 1, sizeof *f->line);
		f->line[f->n++] = xstrdup(buf);
	}
	free(buf);
	fclose(fp);
	return 0;
}

static void
fixture_load(const char *name, const char *what, struct fixture *f)
{
	char	*path;

	xasprintf(&path, "%s/%s.%s.jsonl", fixture_dir(), name, what);
	if (fixture_load_path(path, f) == -1 && strcmp(what, "stdout") == 0)
		fail_msg("fixture %s missing", path);
	free(path);
}

static void
fixture_free(struct fixture *f)
{
	size_t	i;

	for (i = 0; i < f->n; i++)
		free(f->line[i]);
	free(f->line);
	memset(f, 0, sizeof *f);
}

static const char *
json_type(const cJSON *o)
{
	return cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
}

static int
str_in_stdin(const struct fixture *in, const char *id, const char *what)
{
	size_t	 i;
	int	 found = 0;
	cJSON	*o;
	char	*s;

	for (i = 0; i < in->n && !found; i++) {
		if ((o = cJSON_Parse(in->line[i])) == NULL)
			continue;
		s = cJSON_PrintUnformatted(o);
		found = strstr(s, id) != NULL && strstr(s, what) != NULL;
		free(s);
		cJSON_Delete(o);
	}
	return found;
}

/*
 * Feeds a transcript as the worker would: a turn starts before the first
 * line after each result; an interrupt we sent (stdin) marks the bridge
 * before its answer; a can_use_tool we denied (stdin) is reported with
 * bridge_permission_denied when host_denials is set.
 */
static void
replay(struct bridge *b, const struct fixture *out, const struct fixture *in,
    int host_denials, uint64_t *clock)
{
	const cJSON	*req;
	const char	*type, *id;
	cJSON		*o;
	size_t		 i;
	int		 need_start = 1;

	for (i = 0; i < out->n; i++) {
		o = cJSON_Parse(out->line[i]);
		type = o != NULL ? json_type(o) : NULL;
		if (need_start && type != NULL &&
		    strncmp(type, "control_", strlen("control_")) != 0) {
			bridge_turn_start(b, *clock);
			*clock += CLOCK_STEP;
			need_start = 0;
		}
		if (type != NULL && strcmp(type, "control_response") == 0) {
			id = cJSON_GetStringValue(cJSON_GetObjectItem(
			    cJSON_GetObjectItem(o, "response"), "request_id"));
			if (in != NULL && id != NULL &&
			    str_in_stdin(in, id, "\"interrupt\""))
				bridge_interrupting(b);
		}
		bridge_line(b, out->line[i], strlen(out->line[i]), *clock);
		*clock += CLOCK_STEP;
		if (type != NULL && strcmp(type, "control_request") == 0 &&
		    host_denials && in != NULL) {
			id = cJSON_GetStringValue(cJSON_GetObjectItem(o,
			    "request_id"));
			req = cJSON_GetObjectItem(o, "request");
			if (id != NULL && str_in_stdin(in, id, "\"deny\""))
				bridge_permission_denied(b,
				    cJSON_GetStringValue(cJSON_GetObjectItem(
				    req, "tool_use_id")));
		}
		if (type != NULL && strcmp(type, "result") == 0)
			need_start = 1;
		cJSON_Delete(o);
	}
}

/* Runs a named fixture through a new bridge; returns the recording. */
static struct rec *
run_fixture(const char *name, int host_denials, struct bridge **bp)
{
	struct fixture	 out, in;
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	uint64_t	 clock = CLOCK_START;

	fixture_load(name, "stdout", &out);
	fixture_load(name, "stdin", &in);
	replay(b, &out, &in, host_denials, &clock);
	fixture_free(&out);
	fixture_free(&in);
	if (bp != NULL)
		*bp = b;
	else
		bridge_free(b);
	return r;
}

/* Checks every fixture must pass, from the transcript itself. */
static void
check_transcript(const char *path)
{
	struct fixture		 out, in;
	struct rec		*r = rec_new();
	struct bridge		*b = bridge_for(r);
	const struct bridge_counters *c;
	const struct rec_event	*e;
	const cJSON		*msg, *blk, *usage, *v;
	char			*want_answer, *want_think, *got, *stdin_path;
	const char		*type, *btype, *tname;
	cJSON			*o;
	uint64_t		 clock = CLOCK_START;
	size_t			 i, turn = 0, nresults = 0, ninit = 0, k;
	size_t			 ntool_use = 0, ntool_result = 0;
	double			 cost, last_cost = 0;
	const struct stats_durations *d;

	if (fixture_load_path(path, &out) == -1)
		fail_msg("%s unreadable", path);
	stdin_path = xstrdup(path);
	strcpy(strstr(stdin_path, ".stdout.jsonl"), ".stdin.jsonl");
	fixture_load_path(stdin_path, &in);
	free(stdin_path);
	replay(b, &out, &in, 0, &clock);

	c = bridge_counters(b);
	assert_int_equal(c->lines, out.n);
	assert_int_equal(c->bad_json, 0);
	assert_int_equal(c->unknown, 0);
	assert_int_equal(c->dropped, 0);

	want_answer = xcalloc(1, TEXT_MAX);
	want_think = xcalloc(1, TEXT_MAX);
	got = xcalloc(1, TEXT_MAX);
	for (i = 0; i < out.n; i++) {
		o = cJSON_Parse(out.line[i]);
		assert_non_null(o);
		type = json_type(o);
		if (strcmp(type, "system") == 0 && strcmp(cJSON_GetStringValue(
		    cJSON_GetObjectItem(o, "subtype")), "init") == 0)
			ninit++;
		if (strcmp(type, "assistant") == 0 &&
		    cJSON_IsNull(cJSON_GetObjectItem(o, "parent_tool_use_id"))) {
			msg = cJSON_GetObjectItem(o, "message");
			cJSON_ArrayForEach(blk, cJSON_GetObjectItem(msg,
			    "content")) {
				btype = json_type(blk);
				if (strcmp(btype, "text") == 0)
					strcat(want_answer, cJSON_GetStringValue(
					    cJSON_GetObjectItem(blk, "text")));
				else if (strcmp(btype, "thinking") == 0)
					strcat(want_think, cJSON_GetStringValue(
					    cJSON_GetObjectItem(blk,
					    "thinking")));
				else if (strcmp(btype, "tool_use") == 0) {
					/* Exactly one tool_use event each. */
					e = rec_find(r, "tool_use", ntool_use++);
					assert_non_null(e);
					assert_string_equal(ev_str(e, "tool_id"),
					    cJSON_GetStringValue(
					    cJSON_GetObjectItem(blk, "id")));
				}
			}
		}
		if (strcmp(type, "user") == 0) {
			msg = cJSON_GetObjectItem(o, "message");
			cJSON_ArrayForEach(blk, cJSON_GetObjectItem(msg,
			    "content")) {
				if (!cJSON_IsObject(blk) ||
				    strcmp(json_type(blk), "tool_result") != 0)
					continue;
				e = rec_find(r, "tool_result", ntool_result++);
				assert_non_null(e);
				assert_string_equal(ev_str(e, "tool_id"),
				    cJSON_GetStringValue(cJSON_GetObjectItem(
				    blk, "tool_use_id")));
				/* The name comes from the matching tool_use. */
				for (k = 0; k < r->nev; k++)
					if (strcmp(r->ev[k].type, "tool_use") ==
					    0 && strcmp(ev_str(&r->ev[k],
					    "tool_id"), ev_str(e, "tool_id")) ==
					    0)
						break;
				assert_true(k < r->nev);
				tname = ev_str(&r->ev[k], "name");
				assert_string_equal(ev_str(e, "name"), tname);
			}
		}
		if (strcmp(type, "result") == 0) {
			/* One turn_end per result, with its exact numbers. */
			assert_true(nresults < r->nturns);
			usage = cJSON_GetObjectItem(o, "usage");
			assert_int_equal(r->turns[turn].stats.turns, 1);
			assert_int_equal(r->turns[turn].stats.tokens.input,
			    (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(
			    usage, "input_tokens")));
			assert_int_equal(r->turns[turn].stats.tokens.output,
			    (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(
			    usage, "output_tokens")));
			assert_int_equal(r->turns[turn].stats.tokens.cache_read,
			    (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(
			    usage, "cache_read_input_tokens")));
			assert_int_equal(r->turns[turn].stats.tokens.cache_write,
			    (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(
			    usage, "cache_creation_input_tokens")));
			v = cJSON_GetObjectItem(o, "is_error");
			assert_int_equal(r->turns[turn].is_error,
			    cJSON_IsTrue(v));
			assert_int_equal(r->turns[turn].stats.errors,
			    cJSON_IsTrue(v) ? 1 : 0);
			cost = cJSON_GetNumberValue(cJSON_GetObjectItem(o,
			    "total_cost_usd"));
			assert_true(fabs(r->turns[turn].stats.cost_usd -
			    (cost > last_cost ? cost - last_cost : 0)) <
			    COST_EPSILON);
			if (cost > last_cost)
				last_cost = cost;
			v = cJSON_GetObjectItem(o, "result");
			if (cJSON_IsString(v))
				assert_string_equal(r->turns[turn].result,
				    v->valuestring);
			else
				assert_null(r->turns[turn].result);

			/* Streamed or not, each text exactly once. */
			rec_text(r, "answer", turn, got, TEXT_MAX);
			assert_string_equal(got, want_answer);
			rec_text(r, "thinking", turn, got, TEXT_MAX);
			assert_string_equal(got, want_think);

			d = &r->turns[turn].stats.duration_ms;
			assert_true(d->ttft <= d->total);
			if (d->other > 0)
				assert_int_equal(d->thinking + d->generation +
				    d->tool + d->other, d->total);
			else
				assert_true(d->thinking + d->generation +
				    d->tool >= d->total);
			want_answer[0] = want_think[0] = '\0';
			nresults++;
			turn++;
		}
		cJSON_Delete(o);
	}
	assert_int_equal(r->nturns, nresults);
	assert_int_equal(r->ninit, ninit);
	assert_int_equal(rec_count(r, "tool_use", NULL), ntool_use);
	assert_int_equal(rec_count(r, "tool_result", NULL), ntool_result);
	free(want_answer);
	free(want_think);
	free(got);
	fixture_free(&out);
	fixture_free(&in);
	bridge_free(b);
	rec_free(r);
}

static void
test_fixtures_all(void **state)
{
	glob_t	 g;
	char	*pattern;
	size_t	 i;

	xasprintf(&pattern, "%s/*.stdout.jsonl", fixture_dir());
	assert_int_equal(glob(pattern, 0, NULL, &g), 0);
	free(pattern);
	assert_true(g.gl_pathc >= 1);
	for (i = 0; i < g.gl_pathc; i++) {
		print_message("# replaying %s\n", g.gl_pathv[i]);
		check_transcript(g.gl_pathv[i]);
	}
	globfree(&g);
}

/* Line index of the first line at or after from containing all of a, b. */
static size_t
find_line(const struct fixture *f, size_t from, const char *a, const char *b)
{
	size_t	i;

	for (i = from; i < f->n; i++)
		if (strstr(f->line[i], a) != NULL &&
		    (b == NULL || strstr(f->line[i], b) != NULL))
			return i;
	fail_msg("no line with %s %s", a, b != NULL ? b : "");
	return 0;
}

/*
 * A string in the first line of a fixture containing a and b, at a path
 * of object keys and array indexes ("message.content.0.id"); a copy.
 */
static char *
fixture_str(const char *name, const char *what, const char *a, const char *b,
    const char *path)
{
	struct fixture	 f;
	const cJSON	*v;
	cJSON		*o;
	char		*p, *key, *save = NULL, *s;

	fixture_load(name, what, &f);
	o = cJSON_Parse(f.line[find_line(&f, 0, a, b)]);
	fixture_free(&f);
	assert_non_null(o);
	p = xstrdup(path);
	v = o;
	for (key = strtok_r(p, ".", &save); key != NULL && v != NULL;
	    key = strtok_r(NULL, ".", &save))
		v = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, atoi(key)) :
		    cJSON_GetObjectItem(v, key);
	assert_true(cJSON_IsString(v));
	s = xstrdup(v->valuestring);
	free(p);
	cJSON_Delete(o);
	return s;
}

/* Time at which line i of a replay is fed (one turn start before). */
static uint64_t
line_time(size_t i)
{
	return CLOCK_START + CLOCK_STEP * (i + 1);
}

static void
test_two_turns_events(void **state)
{
	/* The order the user sees; system events are checked apart. */
	static const char *want[][3] = {
		{ "thinking", "text", "The user wants a mock an" },
		{ "thinking", "text", "swer. I will reply brief" },
		{ "thinking", "text", "ly and deterministically" },
		{ "thinking", "text", "." },
		{ "answer", "text", "I will run a tool." },
		{ "tool_use", "name", "Bash" },
		{ "tool_result", "output", "alpha.txt\nbeta.c" },
		{ "answer", "text", "The tool finished. First" },
		{ "answer", "text", " line of its output: alp" },
		{ "answer", "text", "ha.txt" },
		{ "answer", "text", "Mock answer to: Say hell" },
		{ "answer", "text", "o." },
	};
	struct rec		*r = run_fixture("two_turns", 0, NULL);
	const struct rec_event	*e;
	const cJSON		*input;
	char			*tool_id, *sid;
	size_t			 i, n = 0;

	for (i = 0; i < r->nev; i++) {
		e = &r->ev[i];
		if (strcmp(e->type, "system") == 0)
			continue;
		assert_true(n < sizeof want / sizeof want[0]);
		assert_string_equal(e->type, want[n][0]);
		assert_string_equal(ev_str(e, want[n][1]), want[n][2]);
		assert_int_equal(e->turn, n < 10 ? 0 : 1);
		n++;
	}
	assert_int_equal(n, sizeof want / sizeof want[0]);

	tool_id = fixture_str("two_turns", "stdout", "\"type\":\"assistant\"",
	    "\"tool_use\"", "message.content.0.id");
	sid = fixture_str("two_turns", "stdout", "\"init\"", NULL,
	    "session_id");
	e = rec_find(r, "tool_use", 0);
	assert_string_equal(ev_str(e, "tool_id"), tool_id);
	input = cJSON_GetObjectItem(e->data, "input");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(input,
	    "command")), "ls");
	e = rec_find(r, "tool_result", 0);
	assert_string_equal(ev_str(e, "tool_id"), tool_id);
	assert_string_equal(ev_str(e, "name"), "Bash");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(e->data, "is_error")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(e->data, "truncated")));

	/* status "requesting" before each of the three API calls. */
	assert_int_equal(rec_count(r, "system", "status"), 3);
	e = rec_find(r, "system", 0);
	assert_string_equal(ev_str(e, "status"), "requesting");
	assert_null(cJSON_GetObjectItem(e->data, "uuid"));
	assert_null(cJSON_GetObjectItem(e->data, "session_id"));
	assert_null(cJSON_GetObjectItem(e->data, "type"));

	assert_int_equal(r->ninit, 2);
	assert_string_equal(r->init_sid, sid);
	free(tool_id);
	free(sid);
	rec_free(r);
}

static void
test_two_turns_stats(void **state)
{
	struct rec		*r = run_fixture("two_turns", 0, NULL);
	struct fixture		 out;
	const struct stats	*s;
	size_t			 think0, think1, text0, text1, tool0, tool1;
	size_t			 res, text2, text3, first_delta, end1;
	uint64_t		 tool_ms;

	fixture_load("two_turns", "stdout", &out);
	assert_int_equal(r->nturns, 2);

	/* Turn 1: the mock's logged usage of its two API calls, summed. */
	s = &r->turns[0].stats;
	assert_int_equal(s->turns, 1);
	assert_int_equal(s->tokens.input, 155 + 169);
	assert_int_equal(s->tokens.output, 98 + 30);
	assert_int_equal(s->tokens.cache_read, 1200 + 1400);
	assert_int_equal(s->tokens.cache_write, 20 + 20);
	assert_int_equal(stats_tokens_total(s), 324 + 128 + 2600 + 40);
	assert_true(fabs(s->cost_usd - 0.00637) < COST_EPSILON);
	assert_int_equal(s->tool_calls, 1);
	assert_int_equal(s->ntools, 1);
	assert_string_equal(s->tools[0].name, "Bash");
	assert_int_equal(s->tools[0].calls, 1);
	assert_int_equal(s->tools[0].errors, 0);
	assert_int_equal(s->nfiles, 0);
	assert_int_equal(s->errors, 0);
	assert_int_equal(s->permission_denials, 0);
	assert_string_equal(r->turns[0].subtype, "success");
	assert_string_equal(r->turns[0].terminal_reason, "completed");
	assert_string_equal(r->turns[0].stop_reason, "end_turn");
	assert_int_equal(r->turns[0].interrupted, 0);

	/* Durations from the synthetic clock, block by block. */
	think0 = find_line(&out, 0, "content_block_start", "\"thinking\"");
	think1 = find_line(&out, think0, "content_block_stop", NULL);
	text0 = find_line(&out, think1, "content_block_start", "\"text\"");
	text1 = find_line(&out, text0, "content_block_stop", NULL);
	tool0 = find_line(&out, text1, "content_block_start", "\"tool_use\"");
	tool1 = find_line(&out, tool0, "content_block_stop", NULL);
	res = find_line(&out, tool1, "\"tool_result\"", NULL);
	text2 = find_line(&out, res, "content_block_start", "\"text\"");
	text3 = find_line(&out, text2, "content_block_stop", NULL);
	first_delta = find_line(&out, 0, "content_block_delta", NULL);
	end1 = find_line(&out, 0, "\"type\":\"result\"", NULL);
	tool_ms = line_time(res) - line_time(tool1);
	assert_int_equal(s->duration_ms.thinking,
	    line_time(think1) - line_time(think0));
	assert_int_equal(s->duration_ms.generation,
	    line_time(text1) - line_time(text0) +
	    line_time(tool1) - line_time(tool0) +
	    line_time(text3) - line_time(text2));
	assert_int_equal(s->duration_ms.tool, tool_ms);
	assert_int_equal(s->tools[0].duration_ms, tool_ms);
	assert_int_equal(s->duration_ms.total, line_time(end1) - CLOCK_START);
	assert_int_equal(s->duration_ms.ttft,
	    line_time(first_delta) - CLOCK_START);
	assert_int_equal(s->duration_ms.other, s->duration_ms.total -
	    s->duration_ms.thinking - s->duration_ms.generation -
	    s->duration_ms.tool);
	assert_int_equal(rec_find(r, "tool_result", 0)->data ?
	    (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(
	    rec_find(r, "tool_result", 0)->data, "duration_ms")) : 0, tool_ms);

	/* Turn 2: its own usage, and the cost is the increase only. */
	s = &r->turns[1].stats;
	assert_int_equal(s->tokens.input, 152);
	assert_int_equal(s->tokens.output, 23);
	assert_int_equal(s->tokens.cache_read, 1600);
	assert_int_equal(s->tokens.cache_write, 20);
	assert_true(fabs(s->cost_usd - (0.00863 - 0.00637)) < COST_EPSILON);
	assert_int_equal(s->tool_calls, 0);
	assert_int_equal(s->ntools, 0);
	assert_true(s->duration_ms.thinking == 0);
	assert_true(s->duration_ms.generation > 0);
	fixture_free(&out);
	rec_free(r);
}

static void
test_interrupt(void **state)
{
	struct rec	*r = run_fixture("interrupt", 0, NULL);

	assert_int_equal(r->nturns, 2);
	assert_int_equal(r->turns[0].interrupted, 1);
	assert_int_equal(r->turns[0].is_error, 1);
	assert_string_equal(r->turns[0].subtype, "error_during_execution");
	assert_string_equal(r->turns[0].terminal_reason, "aborted_streaming");
	assert_null(r->turns[0].result);
	assert_null(r->turns[0].stop_reason);
	assert_int_equal(r->turns[0].nerrors, 1);
	assert_int_equal(r->turns[0].stats.errors, 1);
	assert_true(r->turns[0].stats.cost_usd == 0);
	/* The open text block was closed by the result. */
	assert_true(r->turns[0].stats.duration_ms.generation > 0);
	/* The turn after is a normal one. */
	assert_int_equal(r->turns[1].interrupted, 0);
	assert_int_equal(r->turns[1].is_error, 0);
	assert_true(fabs(r->turns[1].stats.cost_usd - 0.002015) <
	    COST_EPSILON);
	assert_int_equal(r->nresp, 1);
	assert_string_equal(r->resp_id[0], "int-1");
	assert_int_equal(r->resp_ok[0], 1);
	/* The "[Request interrupted by user]" user line is no event. */
	assert_int_equal(rec_count(r, "answer", NULL), 2);
	rec_free(r);
}

static void
test_api_error(void **state)
{
	struct rec	*r = run_fixture("api_error", 0, NULL);
	const char	*text;

	assert_int_equal(r->nturns, 1);
	/* is_error, not the subtype, says it failed. */
	assert_string_equal(r->turns[0].subtype, "success");
	assert_int_equal(r->turns[0].is_error, 1);
	assert_int_equal(r->turns[0].stats.errors, 1);
	/* The synthetic assistant line was never streamed: shown once. */
	assert_int_equal(rec_count(r, "answer", NULL), 1);
	text = ev_str(rec_find(r, "answer", 0), "text");
	assert_non_null(strstr(text, "API Error: 500"));
	assert_string_equal(text, r->turns[0].result);
	rec_free(r);
}

static void
test_api_retry(void **state)
{
	struct rec		*r = run_fixture("api_retry", 0, NULL);
	const struct rec_event	*e = NULL;
	size_t			 i;

	for (i = 0; i < r->nev; i++)
		if (strcmp(r->ev[i].type, "system") == 0 &&
		    strcmp(ev_str(&r->ev[i], "subtype"), "api_retry") == 0)
			e = &r->ev[i];
	assert_non_null(e);
	assert_int_equal(rec_count(r, "system", "api_retry"), 1);
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(e->data,
	    "attempt")), 1);
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(e->data,
	    "error_status")), 529);
	assert_string_equal(ev_str(e, "error"), "overloaded");
	assert_null(cJSON_GetObjectItem(e->data, "uuid"));
	assert_int_equal(r->nturns, 1);
	assert_int_equal(r->turns[0].is_error, 0);
	assert_int_equal(r->turns[0].stats.tokens.output, 24);
	rec_free(r);
}

static void
test_can_use_tool(void **state)
{
	struct rec		*r;
	const struct rec_event	*e;
	char			*allow_id, *deny_id, *denied_tool;

	allow_id = fixture_str("can_use_tool", "stdin", "\"allow\"", NULL,
	    "response.request_id");
	deny_id = fixture_str("can_use_tool", "stdin", "\"deny\"", NULL,
	    "response.request_id");
	denied_tool = fixture_str("can_use_tool", "stdout", "can_use_tool",
	    "denied.txt", "request.tool_use_id");

	/* The worker denied the second call itself: no second report. */
	r = run_fixture("can_use_tool", 1, NULL);
	assert_int_equal(r->nreq, 2);
	assert_string_equal(r->req_subtype[0], "can_use_tool");
	assert_string_equal(r->req_id[0], allow_id);
	assert_string_equal(r->req_id[1], deny_id);
	assert_int_equal(r->nturns, 2);
	assert_int_equal(rec_count(r, "permission_denied", NULL), 0);
	assert_int_equal(r->turns[0].stats.permission_denials, 0);
	assert_int_equal(r->turns[1].stats.permission_denials, 1);
	assert_int_equal(r->turns[1].stats.tools[0].errors, 1);
	e = rec_find(r, "tool_result", 1);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(e->data, "is_error")));
	assert_string_equal(ev_str(e, "output"), "Denied by supervisor policy");
	assert_true(fabs(r->turns[1].stats.cost_usd - (0.0117 - 0.00554)) <
	    COST_EPSILON);
	rec_free(r);

	/* Not told: the CLI's own list reports it, once, by "cli". */
	r = run_fixture("can_use_tool", 0, NULL);
	assert_int_equal(rec_count(r, "permission_denied", NULL), 1);
	e = rec_find(r, "permission_denied", 0);
	assert_string_equal(ev_str(e, "tool_id"), denied_tool);
	assert_string_equal(ev_str(e, "name"), "Bash");
	assert_string_equal(ev_str(e, "by"), "cli");
	assert_string_equal(ev_str(e, "reason"), "Denied by supervisor policy");
	assert_int_equal(e->turn, 1);
	assert_int_equal(r->turns[1].stats.permission_denials, 1);
	free(allow_id);
	free(deny_id);
	free(denied_tool);
	rec_free(r);
}

static void
test_slash(void **state)
{
	struct rec	*r = run_fixture("slash", 0, NULL);

	assert_int_equal(r->nturns, 3);
	/* /cost runs locally: its text shown once, and it costs nothing. */
	assert_non_null(strstr(ev_str(rec_find(r, "answer", 0), "text"),
	    "Total cost:"));
	assert_true(r->turns[0].stats.cost_usd == 0);
	assert_true(fabs(r->turns[1].stats.cost_usd - 0.001875) <
	    COST_EPSILON);
	assert_true(r->turns[2].stats.cost_usd == 0);
	assert_null(r->turns[2].terminal_reason);
	assert_int_equal(stats_tokens_total(&r->turns[2].stats), 0);
	rec_free(r);
}

static void
test_resume_and_initialize(void **state)
{
	struct rec	*r = run_fixture("resume", 0, NULL);
	char		*sid;

	sid = fixture_str("resume", "stdout", "\"init\"", NULL, "session_id");
	assert_int_equal(r->ninit, 1);
	assert_string_equal(r->init_sid, sid);
	free(sid);
	/* A new process: its first cumulative cost is all this turn's. */
	assert_true(fabs(r->turns[0].stats.cost_usd - 0.00301) <
	    COST_EPSILON);
	rec_free(r);

	r = run_fixture("initialize", 0, NULL);
	assert_int_equal(r->nresp, 2);
	assert_string_equal(r->resp_id[0], "init-1");
	assert_int_equal(r->resp_ok[0], 1);
	assert_int_equal(r->resp_has_body[0], 1);
	assert_string_equal(r->resp_id[1], "int-idle");
	assert_int_equal(r->resp_has_body[1], 0);
	/* An interrupt while idle leaves the next turn alone. */
	assert_int_equal(r->nturns, 1);
	assert_int_equal(r->turns[0].interrupted, 0);
	rec_free(r);
}

/* Synthetic lines. */

static void
feed(struct bridge *b, const char *line, uint64_t now)
{
	bridge_line(b, line, strlen(line), now);
}

static void
feed_json(struct bridge *b, cJSON *o, uint64_t now)
{
	char	*s = cJSON_PrintUnformatted(o);

	feed(b, s, now);
	free(s);
}

/* The first line of a fixture containing all of a, b, parsed. */
static cJSON *
fixture_line(const char *name, const char *a, const char *b)
{
	struct fixture	 f;
	cJSON		*o;

	fixture_load(name, "stdout", &f);
	o = cJSON_Parse(f.line[find_line(&f, 0, a, b)]);
	fixture_free(&f);
	assert_non_null(o);
	return o;
}

/*
 * A broken stream, then the non-streaming retry's assistant line: with a
 * new message.id (the real API), or the same one (our mock derives ids
 * from the request).  Its text never streamed whole, so it is shown.
 */
static void
fallback_case(const char *fallback_id)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	cJSON		*start, *blk, *delta, *fallback, *res;
	uint64_t	 t = CLOCK_START;

	start = fixture_line("two_turns", "message_start", NULL);
	blk = fixture_line("two_turns", "content_block_start", "\"text\"");
	delta = fixture_line("two_turns", "text_delta", "I will run a tool.");
	fallback = fixture_line("two_turns", "\"type\":\"assistant\"",
	    "I will run a tool.");
	res = fixture_line("two_turns", "\"type\":\"result\"", NULL);
	/* The stream breaks after a partial delta. */
	cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(
	    cJSON_GetObjectItem(delta, "event"), "delta"), "text"), "I will ");
	if (fallback_id != NULL)
		cJSON_SetValuestring(cJSON_GetObjectItem(cJSON_GetObjectItem(
		    fallback, "message"), "id"), fallback_id);

	bridge_turn_start(b, t);
	feed_json(b, start, t += CLOCK_STEP);
	feed_json(b, blk, t += CLOCK_STEP);
	feed_json(b, delta, t += CLOCK_STEP);
	feed_json(b, fallback, t += CLOCK_STEP);
	feed_json(b, res, t += CLOCK_STEP);

	assert_int_equal(rec_count(r, "answer", NULL), 2);
	assert_string_equal(ev_str(rec_find(r, "answer", 0), "text"),
	    "I will ");
	assert_string_equal(ev_str(rec_find(r, "answer", 1), "text"),
	    "I will run a tool.");
	assert_int_equal(r->nturns, 1);
	assert_int_equal(bridge_counters(b)->unknown, 0);

	cJSON_Delete(start);
	cJSON_Delete(blk);
	cJSON_Delete(delta);
	cJSON_Delete(fallback);
	cJSON_Delete(res);
	bridge_free(b);
	rec_free(r);
}

static void
test_fallback_carries_text(void **state)
{
	fallback_case("msg_fallback_1");
	fallback_case(NULL);
}

static void
test_broken_stream(void **state)
{
	struct rec	*r = run_fixture("broken_stream", 0, NULL);

	/* message_start, then the retry's whole message: shown once. */
	assert_int_equal(rec_count(r, "answer", NULL), 1);
	assert_string_equal(ev_str(rec_find(r, "answer", 0), "text"),
	    "Mock answer to: cut me off");
	assert_int_equal(r->nturns, 1);
	assert_string_equal(r->turns[0].result, "Mock answer to: cut me off");
	assert_true(fabs(r->turns[0].stats.cost_usd - 0.00197) < COST_EPSILON);
	rec_free(r);
}

static void
test_redacted_thinking(void **state)
{
	static const char *lines[] = {
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"message_start\",\"message\":{\"id\":\"m1\"}}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_start\",\"index\":0,\"content_block\":{"
		    "\"type\":\"redacted_thinking\",\"data\":\"x\"}}}",
		"{\"type\":\"assistant\",\"message\":{\"id\":\"m1\","
		    "\"content\":[{\"type\":\"redacted_thinking\",\"data\":"
		    "\"x\"}]}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_stop\",\"index\":0}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_start\",\"index\":1,\"content_block\":{"
		    "\"type\":\"thinking\",\"thinking\":\"\"}}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
		    "\"thinking_delta\",\"thinking\":\"hmm\"}}}",
		"{\"type\":\"assistant\",\"message\":{\"id\":\"m1\","
		    "\"content\":[{\"type\":\"thinking\",\"thinking\":"
		    "\"hmm\"}]}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_stop\",\"index\":1}}",
		"{\"type\":\"result\",\"is_error\":false}",
	};
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	size_t		 i;

	/* A redacted block is no stream of the thinking text after it. */
	bridge_turn_start(b, 0);
	for (i = 0; i < sizeof lines / sizeof lines[0]; i++)
		feed(b, lines[i], (i + 1) * CLOCK_STEP);
	assert_int_equal(rec_count(r, "thinking", NULL), 1);
	assert_string_equal(ev_str(rec_find(r, "thinking", 0), "text"), "hmm");
	/* Both blocks are thinking time. */
	assert_int_equal(r->turns[0].stats.duration_ms.thinking,
	    2 * CLOCK_STEP + 3 * CLOCK_STEP);
	assert_int_equal(bridge_counters(b)->unknown, 0);
	bridge_free(b);
	rec_free(r);
}

static void
test_no_partial_messages(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	struct fixture	 f;
	size_t		 i;
	uint64_t	 t = CLOCK_START;

	/* Without --include-partial-messages: complete blocks only. */
	fixture_load("two_turns", "stdout", &f);
	bridge_turn_start(b, t);
	for (i = 0; i < f.n; i++)
		if (strstr(f.line[i], "\"type\":\"stream_event\"") == NULL)
			feed(b, f.line[i], t += CLOCK_STEP);
	assert_int_equal(rec_count(r, "thinking", NULL), 1);
	assert_string_equal(ev_str(rec_find(r, "thinking", 0), "text"),
	    "The user wants a mock answer. I will reply briefly and "
	    "deterministically.");
	assert_int_equal(rec_count(r, "answer", NULL), 3);
	assert_string_equal(ev_str(rec_find(r, "answer", 0), "text"),
	    "I will run a tool.");
	assert_string_equal(ev_str(rec_find(r, "answer", 2), "text"),
	    "Mock answer to: Say hello.");
	assert_int_equal(rec_count(r, "tool_use", NULL), 1);
	assert_int_equal(rec_count(r, "tool_result", NULL), 1);
	assert_int_equal(r->nturns, 2);
	/* No block times without a stream: the rest is tool and other. */
	assert_int_equal(r->turns[0].stats.duration_ms.thinking, 0);
	assert_int_equal(r->turns[0].stats.duration_ms.generation, 0);
	assert_true(r->turns[0].stats.duration_ms.tool > 0);
	assert_true(r->turns[0].stats.duration_ms.ttft > 0);
	fixture_free(&f);
	bridge_free(b);
	rec_free(r);
}

static void
test_garbage_and_unknown(void **state)
{
	static const char *bad[] = {
		"not json", "{", "[1,2]", "\"str\"", "{\"type\":", "\x01\xff",
	};
	static const char *unknown[] = {
		"{}",
		"{\"type\":42}",
		"{\"type\":\"bogus\"}",
		"{\"type\":\"system\",\"subtype\":\"bogus\"}",
		"{\"type\":\"system\"}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":\"bogus\"}}",
		"{\"type\":\"stream_event\"}",
		"{\"type\":\"control_request\",\"request_id\":\"x\"}",
		"{\"type\":\"control_response\",\"response\":{}}",
	};
	static const char *odd[] = {
		/* Known types with wrong shapes: handled, never fatal. */
		"{\"type\":\"assistant\"}",
		"{\"type\":\"assistant\",\"message\":{\"content\":[1,null,"
		    "{\"type\":\"tool_use\"},{\"type\":\"text\",\"text\":5}]}}",
		"{\"type\":\"user\",\"message\":{\"content\":[{\"type\":"
		    "\"tool_result\",\"content\":[{\"type\":\"image\"},7]}]}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_delta\",\"index\":-3,\"delta\":{}}}",
		"{\"type\":\"stream_event\",\"event\":{\"type\":"
		    "\"content_block_stop\",\"index\":1e300}}",
		"{\"type\":\"system\",\"subtype\":\"init\"}",
		"{\"type\":\"system\",\"subtype\":\"permission_denied\"}",
		"{\"type\":\"result\",\"usage\":7,\"total_cost_usd\":-1,"
		    "\"permission_denials\":[1,{}]}",
	};
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	const struct bridge_counters *c;
	size_t		 i;
	uint64_t	 t = CLOCK_START;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		feed(b, bad[i], t += CLOCK_STEP);
	for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
		feed(b, unknown[i], t += CLOCK_STEP);
	for (i = 0; i < sizeof odd / sizeof odd[0]; i++)
		feed(b, odd[i], t += CLOCK_STEP);
	feed(b, "", t);
	feed(b, "  \t", t);
	bridge_line(b, "{\"type\":\"keep_alive\"}xyz", strlen(
	    "{\"type\":\"keep_alive\"}"), t);

	c = bridge_counters(b);
	assert_int_equal(c->lines, sizeof bad / sizeof bad[0] +
	    sizeof unknown / sizeof unknown[0] + sizeof odd / sizeof odd[0] +
	    3);
	assert_int_equal(c->bad_json, sizeof bad / sizeof bad[0]);
	assert_int_equal(c->unknown, sizeof unknown / sizeof unknown[0]);
	assert_int_equal(c->ignored, 3);
	/* The odd result still ended a turn, with no cost from -1. */
	assert_int_equal(r->nturns, 1);
	assert_true(r->turns[0].stats.cost_usd == 0);
	/* Absurd counts are clamped to what a JSON number holds exactly. */
	feed(b, "{\"type\":\"result\",\"usage\":{\"input_tokens\":1e30,"
	    "\"output_tokens\":-5,\"cache_read_input_tokens\":\"7\"}}", t);
	assert_int_equal(r->nturns, 2);
	assert_int_equal(r->turns[1].stats.tokens.input, (uint64_t)1 << 53);
	assert_int_equal(r->turns[1].stats.tokens.output, 0);
	assert_int_equal(r->turns[1].stats.tokens.cache_read, 0);

	/* A line over the cap: reported, the turn goes on. */
	bridge_line_dropped(b, 123456);
	assert_int_equal(c->dropped, 1);
	assert_string_equal(ev_str(rec_find(r, "system", 0), "subtype"),
	    "line_dropped");
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(
	    rec_find(r, "system", 0)->data, "bytes")), 123456);
	bridge_free(b);
	rec_free(r);

	/* Still works for a real transcript after all that. */
	r = run_fixture("two_turns", 0, NULL);
	assert_int_equal(r->nturns, 2);
	rec_free(r);
}

static char *
tool_line(const char *kind, const char *id, const char *name,
    const char *extra)
{
	char	*s;

	if (strcmp(kind, "use") == 0)
		xasprintf(&s, "{\"type\":\"assistant\",\"message\":{\"id\":"
		    "\"msg_syn\",\"content\":[{\"type\":\"tool_use\",\"id\":"
		    "\"%s\",\"name\":\"%s\",\"input\":%s}]},"
		    "\"parent_tool_use_id\":null}", id, name, extra);
	else
		xasprintf(&s, "{\"type\":\"user\",\"message\":{\"role\":"
		    "\"user\",\"content\":[{\"type\":\"tool_result\","
		    "\"tool_use_id\":\"%s\",%s}]}}", id, extra);
	return s;
}

static void
feed_tool(struct bridge *b, const char *kind, const char *id,
    const char *name, const char *extra, uint64_t now)
{
	char	*s = tool_line(kind, id, name, extra);

	feed(b, s, now);
	free(s);
}

static void
test_tool_output_cap(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	cJSON		*o, *content;
	char		*big, *s;
	const char	*out;
	size_t		 i;

	bridge_turn_start(b, CLOCK_START);
	feed_tool(b, "use", "t1", "Bash", "{\"command\":\"yes\"}",
	    CLOCK_START + 1);
	/* Room for the text, its NUL and the shift below. */
	big = xmalloc(BRIDGE_TOOL_OUTPUT_MAX + 102);
	memset(big, 'y', BRIDGE_TOOL_OUTPUT_MAX + 100);
	big[BRIDGE_TOOL_OUTPUT_MAX + 100] = '\0';
	o = cJSON_Parse("{\"type\":\"user\",\"message\":{\"content\":[{"
	    "\"type\":\"tool_result\",\"tool_use_id\":\"t1\"}]}}");
	content = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(o,
	    "message"), "content"), 0);
	cJSON_AddStringToObject(content, "content", big);
	feed_json(b, o, CLOCK_START + 2);
	out = ev_str(rec_find(r, "tool_result", 0), "output");
	assert_int_equal(strlen(out), BRIDGE_TOOL_OUTPUT_MAX);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(rec_find(r,
	    "tool_result", 0)->data, "truncated")));

	/* A two-byte character across the cap is not cut in half. */
	feed_tool(b, "use", "t2", "Bash", "{}", CLOCK_START + 3);
	for (i = 0; i + 1 < BRIDGE_TOOL_OUTPUT_MAX + 100; i += 2) {
		big[i] = (char)0xc3;	/* U+00E9 */
		big[i + 1] = (char)0xa9;
	}
	big[i] = '\0';
	memmove(big + 1, big, i + 1);	/* odd offset: the cap splits one */
	big[0] = 'x';
	cJSON_ReplaceItemInObject(content, "tool_use_id",
	    cJSON_CreateString("t2"));
	cJSON_ReplaceItemInObject(content, "content", cJSON_CreateString(big));
	feed_json(b, o, CLOCK_START + 4);
	out = ev_str(rec_find(r, "tool_result", 1), "output");
	assert_int_equal(strlen(out), BRIDGE_TOOL_OUTPUT_MAX - 1);
	assert_int_equal((unsigned char)out[strlen(out) - 1], 0xa9);

	/* Blocks: text joined by newlines, others named. */
	s = tool_line("result", "t3", NULL, "\"content\":[{\"type\":\"text\","
	    "\"text\":\"a\"},{\"type\":\"image\"},{\"type\":\"text\","
	    "\"text\":\"b\"}],\"is_error\":false");
	feed_tool(b, "use", "t3", "Read", "{}", CLOCK_START + 5);
	feed(b, s, CLOCK_START + 6);
	free(s);
	out = ev_str(rec_find(r, "tool_result", 2), "output");
	assert_string_equal(out, "a\n[image]\nb");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(rec_find(r,
	    "tool_result", 2)->data, "truncated")));

	/* A result for a call never seen: no name, no crash. */
	feed_tool(b, "result", "nope", NULL, "\"content\":\"x\"",
	    CLOCK_START + 7);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(rec_find(r,
	    "tool_result", 3)->data, "name")));

	free(big);
	cJSON_Delete(o);
	bridge_free(b);
	rec_free(r);
}

static void
test_other_never_negative(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	const struct stats *s;

	/* Two tools at once: tool time is the union, not the sum. */
	bridge_turn_start(b, 1000);
	feed_tool(b, "use", "a", "Bash", "{}", 1100);
	feed_tool(b, "use", "b", "Grep", "{}", 1100);
	feed_tool(b, "result", "a", NULL, "\"content\":\"1\"", 1900);
	feed_tool(b, "result", "b", NULL, "\"content\":\"2\"", 2000);
	feed(b, "{\"type\":\"result\",\"subtype\":\"success\","
	    "\"is_error\":false,\"usage\":{}}", 2000);
	s = &r->turns[0].stats;
	assert_int_equal(s->duration_ms.total, 1000);
	assert_int_equal(s->duration_ms.tool, 900);
	assert_int_equal(s->duration_ms.other, 100);
	assert_int_equal(s->tool_calls, 2);
	assert_int_equal(stats_tool((struct stats *)s, "Bash")->duration_ms,
	    800);
	assert_int_equal(stats_tool((struct stats *)s, "Grep")->duration_ms,
	    900);

	/* A clock that runs backwards: no wrap-around. */
	bridge_turn_start(b, 5000);
	feed_tool(b, "use", "c", "Bash", "{}", 4000);
	feed(b, "{\"type\":\"stream_event\",\"event\":{\"type\":"
	    "\"content_block_start\",\"index\":0,\"content_block\":{"
	    "\"type\":\"text\"}}}", 3000);
	feed(b, "{\"type\":\"stream_event\",\"event\":{\"type\":"
	    "\"content_block_stop\",\"index\":0}}", 9000);
	feed_tool(b, "result", "c", NULL, "\"content\":\"1\"", 3500);
	feed(b, "{\"type\":\"result\",\"is_error\":false}", 5500);
	s = &r->turns[1].stats;
	assert_int_equal(s->duration_ms.total, 500);
	assert_int_equal(s->duration_ms.generation, 6000);
	assert_int_equal(s->duration_ms.other, 0);
	assert_true(s->duration_ms.tool < 1000);
	bridge_free(b);
	rec_free(r);
}

static void
test_denials_and_files(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	const struct stats *s;

	bridge_turn_start(b, 1000);
	feed_tool(b, "use", "w1", "Write", "{\"file_path\":\"/w/a.c\","
	    "\"content\":\"x\"}", 1010);
	feed_tool(b, "result", "w1", NULL, "\"content\":\"ok\"", 1020);
	feed_tool(b, "use", "e1", "Edit", "{\"file_path\":\"/w/b.c\"}", 1030);
	feed_tool(b, "result", "e1", NULL, "\"content\":\"no such string\","
	    "\"is_error\":true", 1040);
	feed_tool(b, "use", "n1", "NotebookEdit", "{\"notebook_path\":"
	    "\"/w/n.ipynb\"}", 1050);
	feed_tool(b, "result", "n1", NULL, "\"content\":\"ok\"", 1060);
	feed_tool(b, "use", "w2", "Write", "{\"file_path\":\"/w/a.c\"}", 1070);
	feed_tool(b, "result", "w2", NULL, "\"content\":\"ok\"", 1080);
	/* Denied twice over: announced, then listed in the result. */
	feed_tool(b, "use", "d1", "Write", "{\"file_path\":\"/etc/x\"}", 1090);
	feed(b, "{\"type\":\"system\",\"subtype\":\"permission_denied\","
	    "\"tool_name\":\"Write\",\"tool_use_id\":\"d1\",\"message\":"
	    "\"not in this mode\"}", 1100);
	feed_tool(b, "result", "d1", NULL, "\"content\":\"denied\","
	    "\"is_error\":true", 1110);
	/* Denied by the host (the worker's policy) before. */
	feed_tool(b, "use", "d2", "Bash", "{\"command\":\"rm -rf /\"}", 1120);
	bridge_permission_denied(b, "d2");
	feed_tool(b, "result", "d2", NULL, "\"content\":\"Denied by policy\","
	    "\"is_error\":true", 1130);
	feed(b, "{\"type\":\"result\",\"is_error\":false,\"permission_denials\":"
	    "[{\"tool_name\":\"Write\",\"tool_use_id\":\"d1\"},{\"tool_name\":"
	    "\"Bash\",\"tool_use_id\":\"d2\"},{\"tool_name\":\"Write\","
	    "\"tool_use_id\":\"d3\"}]}", 1200);

	assert_int_equal(rec_count(r, "permission_denied", NULL), 2);
	assert_string_equal(ev_str(rec_find(r, "permission_denied", 0),
	    "tool_id"), "d1");
	assert_string_equal(ev_str(rec_find(r, "permission_denied", 0),
	    "reason"), "not in this mode");
	assert_string_equal(ev_str(rec_find(r, "permission_denied", 1),
	    "tool_id"), "d3");
	assert_non_null(ev_str(rec_find(r, "permission_denied", 1), "reason"));
	s = &r->turns[0].stats;
	assert_int_equal(s->permission_denials, 3);
	/* Written: successful write-like calls, each path once. */
	assert_int_equal(s->nfiles, 2);
	assert_string_equal(s->files[0], "/w/a.c");
	assert_string_equal(s->files[1], "/w/n.ipynb");
	assert_int_equal(s->tool_calls, 6);
	assert_int_equal(stats_tool((struct stats *)s, "Write")->calls, 3);
	assert_int_equal(stats_tool((struct stats *)s, "Write")->errors, 1);
	assert_int_equal(stats_tool((struct stats *)s, "Edit")->errors, 1);
	bridge_free(b);
	rec_free(r);
}

static void
test_turn_stats_without_result(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	struct fixture	 f;
	struct stats	*s;
	size_t		 i, res;
	uint64_t	 t = CLOCK_START;

	/* No turn: an empty answer. */
	s = bridge_turn_stats(b, t);
	assert_int_equal(s->turns, 0);

	/* The first turn up to its tool running, then ended by us. */
	fixture_load("two_turns", "stdout", &f);
	res = find_line(&f, 0, "\"tool_result\"", NULL);
	bridge_turn_start(b, t);
	for (i = 0; i < res; i++)
		feed(b, f.line[i], t += CLOCK_STEP);
	s = bridge_turn_stats(b, t + 500);
	assert_int_equal(s->turns, 1);
	assert_int_equal(s->duration_ms.total, t + 500 - CLOCK_START);
	assert_true(s->duration_ms.tool >= 500);
	assert_int_equal(s->tool_calls, 1);
	assert_true(stats_tool(s, "Bash")->duration_ms >= 500);
	/* Tokens from the stream's usage (message_delta of call one). */
	assert_int_equal(s->tokens.input, 155);
	assert_int_equal(s->tokens.output, 98);
	assert_int_equal(s->tokens.cache_read, 1200);
	assert_int_equal(s->tokens.cache_write, 20);
	assert_true(s->cost_usd == 0);
	assert_int_equal(s->duration_ms.other + s->duration_ms.thinking +
	    s->duration_ms.generation + s->duration_ms.tool,
	    s->duration_ms.total);
	assert_int_equal(r->nturns, 0);

	/* The process lives on: the next result's cost holds both turns. */
	bridge_turn_start(b, t += 1000);
	for (i = find_line(&f, res, "\"subtype\":\"init\"", NULL); i < f.n;
	    i++)
		feed(b, f.line[i], t += CLOCK_STEP);
	assert_int_equal(r->nturns, 1);
	assert_true(fabs(r->turns[0].stats.cost_usd - 0.00863) <
	    COST_EPSILON);
	assert_int_equal(r->turns[0].stats.tokens.input, 152);
	fixture_free(&f);
	bridge_free(b);
	rec_free(r);
}

static void
test_turn_start_from_turn_end(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	struct fixture	 f;
	size_t		 i, end1;
	uint64_t	 t = CLOCK_START;

	/* A worker that writes the next turn as soon as one ends. */
	fixture_load("two_turns", "stdout", &f);
	end1 = find_line(&f, 0, "\"type\":\"result\"", NULL);
	r->restart = b;
	r->restart_at = line_time(end1) + 5;
	bridge_turn_start(b, t);
	for (i = 0; i < f.n; i++)
		feed(b, f.line[i], line_time(i));
	assert_int_equal(r->nturns, 2);
	/* Turn 1's stats were whole when handed out... */
	assert_int_equal(r->turns[0].stats.tool_calls, 1);
	assert_int_equal(r->turns[0].stats.tokens.input, 324);
	/* ...and turn 2 runs from the restart, not from its first line. */
	assert_int_equal(r->turns[1].stats.duration_ms.total,
	    line_time(f.n - 1) - r->restart_at);
	assert_int_equal(r->turns[1].stats.tool_calls, 0);
	fixture_free(&f);
	bridge_free(b);
	rec_free(r);
}

static void
test_cost_never_negative(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);

	feed(b, "{\"type\":\"result\",\"total_cost_usd\":0.5}", 1);
	feed(b, "{\"type\":\"result\",\"total_cost_usd\":0}", 2);
	feed(b, "{\"type\":\"result\",\"total_cost_usd\":0.75}", 3);
	assert_int_equal(r->nturns, 3);
	assert_true(fabs(r->turns[0].stats.cost_usd - 0.5) < COST_EPSILON);
	assert_true(r->turns[1].stats.cost_usd == 0);
	assert_true(fabs(r->turns[2].stats.cost_usd - 0.25) < COST_EPSILON);
	bridge_free(b);
	rec_free(r);
}

static void
test_subagent_and_progress(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);
	const struct rec_event *e;

	bridge_turn_start(b, 0);
	feed_tool(b, "use", "task1", "Task", "{\"prompt\":\"look\"}", 10);
	/* The sub-agent's words stay inside; its tool calls show. */
	feed(b, "{\"type\":\"assistant\",\"message\":{\"id\":\"m_sub\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"inner\"},{\"type\":"
	    "\"tool_use\",\"id\":\"s1\",\"name\":\"Grep\",\"input\":{}}]},"
	    "\"parent_tool_use_id\":\"task1\"}", 20);
	feed(b, "{\"type\":\"stream_event\",\"event\":{\"type\":"
	    "\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
	    "\"text_delta\",\"text\":\"inner\"}},\"parent_tool_use_id\":"
	    "\"task1\"}", 25);
	feed(b, "{\"type\":\"tool_progress\",\"tool_use_id\":\"task1\","
	    "\"tool_name\":\"Task\",\"elapsed_time_seconds\":3,\"uuid\":\"u\","
	    "\"session_id\":\"s\"}", 30);
	feed(b, "{\"type\":\"system\",\"subtype\":\"task_started\",\"task_id\":"
	    "\"k\",\"description\":\"Slow loop\",\"uuid\":\"u\"}", 31);
	feed(b, "{\"type\":\"system\",\"subtype\":\"thinking_tokens\"}", 32);
	feed(b, "{\"type\":\"rate_limit_event\"}", 33);
	feed(b, "{\"type\":\"control_cancel_request\",\"request_id\":\"x\"}",
	    34);
	assert_int_equal(rec_count(r, "answer", NULL), 0);
	assert_int_equal(rec_count(r, "tool_use", NULL), 2);
	e = rec_find(r, "tool_use", 1);
	assert_string_equal(ev_str(e, "parent_tool_id"), "task1");
	assert_null(cJSON_GetObjectItem(rec_find(r, "tool_use", 0)->data,
	    "parent_tool_id"));
	assert_int_equal(rec_count(r, "system", "tool_progress"), 1);
	assert_int_equal(rec_count(r, "system", "task_started"), 1);
	e = rec_find(r, "system", 1);
	assert_string_equal(ev_str(e, "description"), "Slow loop");
	/* control_cancel_request goes to its callback (none here), and
	 * rate_limit_event becomes system/rate_limit. */
	assert_int_equal(bridge_counters(b)->ignored, 2);
	assert_int_equal(rec_count(r, "system", "rate_limit"), 1);
	assert_int_equal(bridge_counters(b)->unknown, 0);
	bridge_free(b);
	rec_free(r);
}

static void
test_control_plane(void **state)
{
	struct rec	*r = rec_new();
	struct bridge	*b = bridge_for(r);

	feed(b, "{\"type\":\"control_request\",\"request_id\":\"q1\","
	    "\"request\":{\"subtype\":\"can_use_tool\",\"tool_name\":\"Bash\"}}",
	    1);
	feed(b, "{\"type\":\"control_response\",\"response\":{\"subtype\":"
	    "\"error\",\"request_id\":\"r9\",\"error\":\"Unsupported\"}}", 2);
	feed(b, "{\"type\":\"control_response\",\"response\":{\"subtype\":"
	    "\"success\",\"request_id\":\"r10\",\"response\":{\"pid\":1}}}", 3);
	assert_int_equal(r->nreq, 1);
	assert_string_equal(r->req_id[0], "q1");
	assert_string_equal(r->req_subtype[0], "can_use_tool");
	assert_int_equal(r->nresp, 2);
	assert_int_equal(r->resp_ok[0], 0);
	assert_int_equal(r->resp_has_body[0], 1);
	assert_int_equal(r->resp_ok[1], 1);
	/* Control lines start no turn. */
	assert_int_equal(bridge_turn_stats(b, 10)->turns, 0);
	bridge_free(b);
	rec_free(r);
}

static void
test_null_callbacks(void **state)
{
	struct bridge_cb	 cb;
	struct bridge		*b;
	struct fixture		 f;
	size_t			 i;

	/* Callbacks left out: events are freed, nothing breaks. */
	memset(&cb, 0, sizeof cb);
	b = bridge_new(&cb);
	fixture_load("can_use_tool", "stdout", &f);
	for (i = 0; i < f.n; i++)
		feed(b, f.line[i], i);
	bridge_line_dropped(b, 1);
	assert_int_equal(bridge_counters(b)->unknown, 0);
	fixture_free(&f);
	bridge_free(b);
}

/*
 * Rate limits: the CLI's rate_limit_event (its fields as the CLI's own
 * schema names them) and an api_retry of a 429 each give one system
 * rate_limit event, subtype first; a 500 retry does not.
 */
static void
test_rate_limits(void **state)
{
	struct rec		*r = rec_new();
	struct bridge		*b = bridge_for(r);
	const struct rec_event	*e;
	char			*text;

	bridge_turn_start(b, 0);
	feed(b, "{\"type\":\"rate_limit_event\",\"rate_limit_info\":{"
	    "\"status\":\"allowed_warning\",\"resetsAt\":1765000000,"
	    "\"rateLimitType\":\"five_hour\",\"utilization\":0.91},"
	    "\"uuid\":\"u\",\"session_id\":\"s\"}", 1);
	feed(b, "{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":1,"
	    "\"max_retries\":2,\"retry_delay_ms\":600.5,\"error_status\":429,"
	    "\"error\":\"rate_limit\",\"session_id\":\"s\",\"uuid\":\"u\"}", 2);
	feed(b, "{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":1,"
	    "\"max_retries\":2,\"retry_delay_ms\":600.5,\"error_status\":500,"
	    "\"error\":\"server_error\",\"session_id\":\"s\",\"uuid\":\"u\"}", 3);
	assert_int_equal(rec_count(r, "system", "rate_limit"), 2);
	assert_int_equal(rec_count(r, "system", "api_retry"), 2);
	e = rec_find(r, "system", 0);
	assert_string_equal(ev_str(e, "source"), "cli");
	assert_string_equal(ev_str(e, "status"), "allowed_warning");
	assert_string_equal(ev_str(e, "rateLimitType"), "five_hour");
	text = cJSON_PrintUnformatted(e->data);
	assert_int_equal(strncmp(text, "{\"subtype\":\"rate_limit\"", 22), 0);
	cJSON_free(text);
	e = rec_find(r, "system", 2);
	assert_string_equal(ev_str(e, "subtype"), "rate_limit");
	assert_string_equal(ev_str(e, "source"), "api_retry");
	assert_string_equal(ev_str(e, "status"), "retrying");
	assert_int_equal(cJSON_GetObjectItem(e->data, "error_status")->valueint,
	    429);
	assert_int_equal(bridge_counters(b)->unknown, 0);
	bridge_free(b);
	rec_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_all),
		cmocka_unit_test(test_two_turns_events),
		cmocka_unit_test(test_two_turns_stats),
		cmocka_unit_test(test_interrupt),
		cmocka_unit_test(test_api_error),
		cmocka_unit_test(test_api_retry),
		cmocka_unit_test(test_can_use_tool),
		cmocka_unit_test(test_slash),
		cmocka_unit_test(test_resume_and_initialize),
		cmocka_unit_test(test_fallback_carries_text),
		cmocka_unit_test(test_broken_stream),
		cmocka_unit_test(test_redacted_thinking),
		cmocka_unit_test(test_no_partial_messages),
		cmocka_unit_test(test_garbage_and_unknown),
		cmocka_unit_test(test_tool_output_cap),
		cmocka_unit_test(test_other_never_negative),
		cmocka_unit_test(test_denials_and_files),
		cmocka_unit_test(test_turn_stats_without_result),
		cmocka_unit_test(test_turn_start_from_turn_end),
		cmocka_unit_test(test_cost_never_negative),
		cmocka_unit_test(test_subagent_and_progress),
		cmocka_unit_test(test_control_plane),
		cmocka_unit_test(test_rate_limits),
		cmocka_unit_test(test_null_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
