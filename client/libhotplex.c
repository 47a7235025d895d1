/*
 * libhotplex: the client side of protocol v1 (DESIGN.md section 3).
 *
 * One handle is one connection.  Requests carry ids made here ("h1",
 * "h2", ...); every line read is parsed once and routed by its id: the
 * reply of a simple request is stored on it, event lines of an execute
 * go to a backlog from which they are handed to the request's callback in
 * arrival order, as soon as that cannot re-enter a running callback.
 * A lost connection ends every request in flight, so nothing waits for a
 * line that cannot come.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "client/hotplex.h"

#define HP_READ_CHUNK	(64 * 1024)	/* bytes asked of each read() */
#define HP_ID_MAX	24		/* "h" + a 64-bit counter */
#define HP_NUM_MAX	32		/* a number printed as text */

enum hp_req_kind {
	HP_REQ_SIMPLE,		/* one reply line */
	HP_REQ_EXECUTE		/* events, then one terminal line */
};

struct hp_req {
	TAILQ_ENTRY(hp_req) entry;
	uint64_t	 token;
	char		 id[HP_ID_MAX];
	enum hp_req_kind kind;
	hp_event_cb	 cb;
	void		*arg;
	int		 in_cb;		/* its callback is running */
	int		 waiting;	/* a blocking call waits for it */
	int		 ended;		/* terminal line routed */
	int		 done;		/* reply stored / terminal delivered */
	int		 failed;
	struct hp_error	 err;
	char		*reply;		/* simple: the reply line, owned */
	cJSON		*json;		/* simple: reply parsed, owned */
};

struct hp_line {
	TAILQ_ENTRY(hp_line) entry;
	struct hp_req	*req;		/* NULL: orphan */
	char		*text;		/* owned, NUL-terminated */
	size_t		 len;
	cJSON		*json;		/* owned */
	int		 local;
};

struct hp_client {
	int		 fd;
	int		 dead;
	struct hp_error	 dead_err;

	char		*rbuf;		/* bytes read, not yet split */
	size_t		 rlen;
	size_t		 rsize;
	size_t		 max_line;
	int		 timeout_ms;

	uint64_t	 next_token;
	TAILQ_HEAD(, hp_req) reqs;
	TAILQ_HEAD(, hp_line) backlog;
	int		 cb_depth;	/* callbacks running */
	struct hp_req	*target;	/* what the innermost blocking call waits for */

	hp_event_cb	 orphan_cb;
	void		*orphan_arg;
	int		 has_orphan_err;	/* an id-less error line */
	struct hp_error	 orphan_err;

	struct hp_stats	 evstats;	/* hp_event.stats points here */
};

static void
hp_seterr(struct hp_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
hp_seterr(struct hp_error *err, const char *code, const char *fmt, ...)
{
	va_list	ap;

	if (err == NULL)
		return;
	snprintf(err->code, sizeof err->code, "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
}

static void
hp_copyerr(struct hp_error *dst, const struct hp_error *src)
{
	if (dst != NULL)
		*dst = *src;
}

/* ---- JSON helpers ---------------------------------------------------- */

static const char *
json_str(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
json_bool(const cJSON *o, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v);
	if (cJSON_IsNumber(v))
		return v->valuedouble != 0;
	return 0;
}

static double
json_num(const cJSON *o, const char *key, double dflt)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) && isfinite(v->valuedouble) ?
	    v->valuedouble : dflt;
}

static uint64_t
json_u64(const cJSON *o, const char *key)
{
	double	d = json_num(o, key, 0);

	return d > 0 && d < 18446744073709551615.0 ? (uint64_t)d : 0;
}

static int64_t
json_i64(const cJSON *o, const char *key, int64_t dflt)
{
	double	d = json_num(o, key, NAN);

	if (isnan(d) || d < -9.2e18 || d > 9.2e18)
		return dflt;
	return (int64_t)d;
}

/* A string or a number as text; buf holds the number. */
static const char *
json_text(const cJSON *o, const char *key, char *buf, size_t size)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsString(v))
		return v->valuestring;
	if (cJSON_IsNumber(v)) {
		snprintf(buf, size, "%g", v->valuedouble);
		return buf;
	}
	return NULL;
}

static void
json_copy(char *dst, size_t size, const cJSON *o, const char *key)
{
	const char	*s = json_str(o, key);

	snprintf(dst, size, "%s", s != NULL ? s : "");
}

/* Adds a string when s is set; counts failures in *bad. */
static void
json_add_str(cJSON *o, const char *key, const char *s, int *bad)
{
	if (s != NULL && cJSON_AddStringToObject(o, key, s) == NULL)
		(*bad)++;
}

static void
json_add_list(cJSON *o, const char *key, const char *const *list, int *bad)
{
	cJSON	*a, *s;

	if (list == NULL)
		return;
	if ((a = cJSON_AddArrayToObject(o, key)) == NULL) {
		(*bad)++;
		return;
	}
	for (; *list != NULL; list++) {
		if ((s = cJSON_CreateString(*list)) == NULL ||
		    !cJSON_AddItemToArray(a, s)) {
			cJSON_Delete(s);
			(*bad)++;
		}
	}
}

static void
json_add_options(cJSON *o, const struct hp_options *opt, int *bad)
{
	cJSON	*oo;

	if (opt == NULL)
		return;
	if ((oo = cJSON_AddObjectToObject(o, "options")) == NULL) {
		(*bad)++;
		return;
	}
	json_add_str(oo, "model", opt->model, bad);
	json_add_str(oo, "permission_mode", opt->permission_mode, bad);
	json_add_list(oo, "allowed_tools", opt->allowed_tools, bad);
	json_add_list(oo, "disallowed_tools", opt->disallowed_tools, bad);
	json_add_str(oo, "append_system_prompt", opt->append_system_prompt,
	    bad);
	if (opt->max_turns > 0 &&
	    cJSON_AddNumberToObject(oo, "max_turns", opt->max_turns) == NULL)
		(*bad)++;
	if (opt->timeout_ms > 0 &&
	    cJSON_AddNumberToObject(oo, "timeout_ms", opt->timeout_ms) == NULL)
		(*bad)++;
	if (opt->slash_commands &&
	    cJSON_AddBoolToObject(oo, "slash_commands", 1) == NULL)
		(*bad)++;
	json_add_str(oo, "approvals", opt->approvals, bad);
	if (opt->approval_timeout_ms > 0 && cJSON_AddNumberToObject(oo,
	    "approval_timeout_ms", opt->approval_timeout_ms) == NULL)
		(*bad)++;
	if (opt->max_budget_usd > 0 && cJSON_AddNumberToObject(oo,
	    "max_budget_usd", opt->max_budget_usd) == NULL)
		(*bad)++;
}

/* ---- stats, sessions, verdicts --------------------------------------- */

static void
stats_usage_parse(const cJSON *o, struct hp_usage *u)
{
	const cJSON	*t, *d, *tools, *tool, *files;

	memset(u, 0, sizeof *u);
	u->turns = json_u64(o, "turns");
	t = cJSON_GetObjectItemCaseSensitive(o, "tokens");
	u->tokens.input = json_u64(t, "input");
	u->tokens.output = json_u64(t, "output");
	u->tokens.cache_read = json_u64(t, "cache_read");
	u->tokens.cache_write = json_u64(t, "cache_write");
	u->tokens.total = json_u64(t, "total");
	if (u->tokens.total == 0)
		u->tokens.total = u->tokens.input + u->tokens.output +
		    u->tokens.cache_read + u->tokens.cache_write;
	u->cost_usd = json_num(o, "cost_usd", 0);
	d = cJSON_GetObjectItemCaseSensitive(o, "duration_ms");
	u->duration_ms.total = json_u64(d, "total");
	u->duration_ms.thinking = json_u64(d, "thinking");
	u->duration_ms.tool = json_u64(d, "tool");
	u->duration_ms.generation = json_u64(d, "generation");
	u->duration_ms.other = json_u64(d, "other");
	u->duration_ms.ttft = json_u64(d, "ttft");
	u->tool_calls = json_u64(o, "tool_calls");
	tools = cJSON_GetObjectItemCaseSensitive(o, "tools");
	cJSON_ArrayForEach(tool, tools) {
		struct hp_tool_usage	*tu;

		if (u->ntools == HP_STATS_MAX_TOOLS)
			break;
		if (!cJSON_IsObject(tool))
			continue;
		tu = &u->tools[u->ntools++];
		json_copy(tu->name, sizeof tu->name, tool, "name");
		tu->calls = json_u64(tool, "calls");
		tu->errors = json_u64(tool, "errors");
		tu->duration_ms = json_u64(tool, "duration_ms");
	}
	files = cJSON_GetObjectItemCaseSensitive(o, "files");
	if (cJSON_IsArray(files))
		u->nfiles = (size_t)cJSON_GetArraySize(files);
	u->permission_denials = json_u64(o, "permission_denials");
	u->danger_blocks = json_u64(o, "danger_blocks");
	u->errors = json_u64(o, "errors");
}

static void
stats_parse(const cJSON *o, struct hp_stats *st)
{
	const cJSON	*last;

	memset(st, 0, sizeof *st);
	json_copy(st->session, sizeof st->session, o, "session");
	json_copy(st->cli_session_id, sizeof st->cli_session_id, o,
	    "cli_session_id");
	json_copy(st->state, sizeof st->state, o, "state");
	stats_usage_parse(o, &st->total);
	last = cJSON_GetObjectItemCaseSensitive(o, "last_turn");
	if (cJSON_IsObject(last)) {
		st->has_last_turn = 1;
		stats_usage_parse(last, &st->last_turn);
	}
	st->sessions = json_i64(o, "sessions", -1);
	st->workers = json_i64(o, "workers", -1);
	st->spares = json_i64(o, "spares", -1);
}

void
hp_sessions_free(struct hp_session_info *list, size_t n)
{
	size_t	i;

	if (list == NULL)
		return;
	for (i = 0; i < n; i++)
		free(list[i].workdir);
	free(list);
}

static int
sessions_parse(const cJSON *data, struct hp_session_info **listp, size_t *np)
{
	struct hp_session_info	*list;
	const cJSON		*s;
	const char		*w;
	size_t			 n = 0, max;

	if (cJSON_IsObject(data))
		data = cJSON_GetObjectItemCaseSensitive(data, "sessions");
	if (!cJSON_IsArray(data))
		return -1;
	max = (size_t)cJSON_GetArraySize(data);
	if ((list = calloc(max + 1, sizeof *list)) == NULL)
		return -1;
	cJSON_ArrayForEach(s, data) {
		struct hp_session_info	*si;

		if (!cJSON_IsObject(s))
			continue;
		si = &list[n++];
		json_copy(si->session, sizeof si->session, s, "session");
		json_copy(si->state, sizeof si->state, s, "state");
		si->uid = (long)json_i64(s, "uid", -1);
		w = json_str(s, "workdir");
		if (w != NULL && (si->workdir = strdup(w)) == NULL) {
			hp_sessions_free(list, n);
			return -1;
		}
		si->worker_pid = (long)json_i64(s, "worker_pid", 0);
		si->cli_pid = (long)json_i64(s, "cli_pid", 0);
		si->turns = json_u64(s, "turns");
		si->idle_ms = json_i64(s, "idle_ms", -1);
		si->tokens = json_u64(s, "tokens");
		si->cost_usd = json_num(s, "cost_usd", 0);
	}
	*listp = list;
	*np = n;
	return 0;
}

void
hp_verdict_free(struct hp_verdict *v)
{
	size_t	i;

	if (v == NULL)
		return;
	for (i = 0; i < v->nmatches; i++) {
		free(v->matches[i].rule);
		free(v->matches[i].category);
		free(v->matches[i].severity);
		free(v->matches[i].form);
	}
	free(v->matches);
	memset(v, 0, sizeof *v);
}

/* A copy of a string-or-number field, "" when absent; NULL if out of memory. */
static char *
verdict_field(const cJSON *o, const char *key)
{
	char		 num[HP_NUM_MAX];
	const char	*s = json_text(o, key, num, sizeof num);

	return strdup(s != NULL ? s : "");
}

static int
verdict_parse(const cJSON *data, struct hp_verdict *v)
{
	const cJSON	*matches, *m;
	size_t		 max;

	memset(v, 0, sizeof *v);
	if (!cJSON_IsObject(data))
		return -1;
	v->blocked = json_bool(data, "blocked");
	v->score = json_num(data, "score", 0);
	matches = cJSON_GetObjectItemCaseSensitive(data, "matches");
	max = cJSON_IsArray(matches) ? (size_t)cJSON_GetArraySize(matches) : 0;
	if ((v->matches = calloc(max + 1, sizeof *v->matches)) == NULL)
		return -1;
	cJSON_ArrayForEach(m, matches) {
		struct hp_match	*hm;

		if (!cJSON_IsObject(m))
			continue;
		hm = &v->matches[v->nmatches++];
		hm->rule = verdict_field(m, "rule");
		hm->category = verdict_field(m, "category");
		hm->severity = verdict_field(m, "severity");
		hm->form = verdict_field(m, "form");
		if (hm->rule == NULL || hm->category == NULL ||
		    hm->severity == NULL || hm->form == NULL) {
			hp_verdict_free(v);
			return -1;
		}
	}
	return 0;
}

/* ---- events ---------------------------------------------------------- */

static const char *const hp_event_names[] = {
	[HP_EV_UNKNOWN] = "unknown",
	[HP_EV_SESSION_START] = "session_start",
	[HP_EV_THINKING] = "thinking",
	[HP_EV_ANSWER] = "answer",
	[HP_EV_TOOL_USE] = "tool_use",
	[HP_EV_TOOL_RESULT] = "tool_result",
	[HP_EV_PERMISSION_DENIED] = "permission_denied",
	[HP_EV_DANGER_BLOCK] = "danger_block",
	[HP_EV_SYSTEM] = "system",
	[HP_EV_SESSION_STATS] = "session_stats",
	[HP_EV_DONE] = "done",
	[HP_EV_ERROR] = "error",
	[HP_EV_PERMISSION_REQUEST] = "permission_request",
	[HP_EV_PERMISSION_CANCELLED] = "permission_cancelled",
	[HP_EV_QUEUED] = "queued",
	[HP_EV_CLI_TURN] = "cli_turn"
};
#define HP_EVENT_NTYPES	(sizeof hp_event_names / sizeof hp_event_names[0])

const char *
hp_event_type_name(enum hp_event_type t)
{
	if ((size_t)t >= HP_EVENT_NTYPES)
		return hp_event_names[HP_EV_UNKNOWN];
	return hp_event_names[t];
}

static enum hp_event_type
event_type(const char *name)
{
	size_t	i;

	if (name == NULL)
		return HP_EV_UNKNOWN;
	for (i = 1; i < HP_EVENT_NTYPES; i++) {
		if (strcmp(hp_event_names[i], name) == 0)
			return (enum hp_event_type)i;
	}
	return HP_EV_UNKNOWN;
}

static int
event_terminal(const cJSON *json)
{
	enum hp_event_type t = event_type(json_str(json, "type"));

	return t == HP_EV_DONE || t == HP_EV_ERROR;
}

/* Code and message of an error line; data first, then the top level. */
static void
event_error(const cJSON *json, struct hp_error *err)
{
	const cJSON	*data = cJSON_GetObjectItemCaseSensitive(json, "data");
	const char	*code, *msg;

	if ((code = json_str(data, "code")) == NULL)
		code = json_str(json, "code");
	if ((msg = json_str(data, "message")) == NULL)
		msg = json_str(json, "message");
	hp_seterr(err, code != NULL ? code : "internal", "%s",
	    msg != NULL ? msg : "");
}

/* Scratch storage for one event: numbers as text, the tool input. */
struct event_scratch {
	char	 severity[HP_NUM_MAX];
	char	 rule[HP_NUM_MAX];
	char	*input_json;	/* owned */
};

static void
event_fill(struct hp_client *h, const struct hp_line *l, struct hp_event *ev,
    struct event_scratch *sc)
{
	const cJSON	*json = l->json, *data, *v;

	memset(ev, 0, sizeof *ev);
	ev->type_name = json_str(json, "type");
	ev->type = event_type(ev->type_name);
	ev->id = json_str(json, "id");
	ev->session = json_str(json, "session");
	ev->seq = json_i64(json, "seq", -1);
	ev->line = l->text;
	ev->line_len = l->len;
	ev->local = l->local;
	ev->duration_ms = -1;
	ev->position = -1;
	ev->origin = json_str(json, "origin");
	data = cJSON_GetObjectItemCaseSensitive(json, "data");
	if (!cJSON_IsObject(data))
		data = NULL;

	switch (ev->type) {
	case HP_EV_THINKING:
	case HP_EV_ANSWER:
		ev->text = json_str(data, "text");
		break;
	case HP_EV_TOOL_USE:
	case HP_EV_TOOL_RESULT:
	case HP_EV_PERMISSION_DENIED:
		ev->tool_id = json_str(data, "tool_id");
		ev->tool_name = json_str(data, "name");
		ev->is_error = json_bool(data, "is_error");
		ev->output = json_str(data, "output");
		ev->truncated = json_bool(data, "truncated");
		ev->duration_ms = json_i64(data, "duration_ms", -1);
		ev->by = json_str(data, "by");
		ev->reason = json_str(data, "reason");
		v = cJSON_GetObjectItemCaseSensitive(data, "input");
		if (v != NULL) {
			sc->input_json = cJSON_PrintUnformatted(v);
			ev->input_json = sc->input_json;
		}
		break;
	case HP_EV_DANGER_BLOCK:
		ev->rule = json_text(data, "rule", sc->rule, sizeof sc->rule);
		ev->category = json_str(data, "category");
		ev->severity = json_text(data, "severity", sc->severity,
		    sizeof sc->severity);
		ev->score = json_num(data, "score", 0);
		ev->excerpt = json_str(data, "excerpt");
		ev->reason = json_str(data, "reason");
		break;
	case HP_EV_SYSTEM:
		ev->subtype = json_str(data, "subtype");
		break;
	case HP_EV_SESSION_START:
		ev->cold = json_bool(data, "cold");
		ev->resumed = json_bool(data, "resumed");
		ev->cli_session_id = json_str(data, "cli_session_id");
		ev->worker_pid = (long)json_i64(data, "worker_pid", 0);
		ev->pgid = (long)json_i64(data, "pgid", 0);
		break;
	case HP_EV_SESSION_STATS:
		if (data != NULL) {
			stats_parse(data, &h->evstats);
			ev->stats = &h->evstats;
		}
		break;
	case HP_EV_DONE:
		ev->ok = json_bool(data, "ok");
		ev->result = json_str(data, "result");
		ev->is_error = json_bool(data, "is_error");
		ev->interrupted = json_bool(data, "interrupted");
		ev->terminal_reason = json_str(data, "terminal_reason");
		ev->stop_reason = json_str(data, "stop_reason");
		v = cJSON_GetObjectItemCaseSensitive(data, "stats");
		if (cJSON_IsObject(v)) {
			stats_parse(v, &h->evstats);
			ev->stats = &h->evstats;
		}
		break;
	case HP_EV_ERROR:
		if ((ev->code = json_str(data, "code")) == NULL)
			ev->code = json_str(json, "code");
		if ((ev->message = json_str(data, "message")) == NULL)
			ev->message = json_str(json, "message");
		break;
	case HP_EV_PERMISSION_REQUEST:
	case HP_EV_PERMISSION_CANCELLED:
		ev->request_id = json_str(data, "request_id");
		ev->tool_id = json_str(data, "tool_id");
		ev->tool_name = json_str(data, "name");
		v = cJSON_GetObjectItemCaseSensitive(data, "input");
		if (v != NULL) {
			sc->input_json = cJSON_PrintUnformatted(v);
			ev->input_json = sc->input_json;
		}
		break;
	case HP_EV_QUEUED:
		ev->position = json_i64(data, "position", -1);
		break;
	case HP_EV_CLI_TURN:
		ev->result = json_str(data, "result");
		ev->is_error = json_bool(data, "is_error");
		v = cJSON_GetObjectItemCaseSensitive(data, "stats");
		if (cJSON_IsObject(v)) {
			stats_parse(v, &h->evstats);
			ev->stats = &h->evstats;
		}
		break;
	case HP_EV_UNKNOWN:
		break;
	}
}

/* ---- requests and lines ---------------------------------------------- */

static void
line_free(struct hp_line *l)
{
	cJSON_Delete(l->json);
	free(l->text);
	free(l);
}

static void
req_free(struct hp_client *h, struct hp_req *r)
{
	struct hp_line	*l;

	TAILQ_REMOVE(&h->reqs, r, entry);
	TAILQ_FOREACH(l, &h->backlog, entry) {
		if (l->req == r)
			l->req = NULL;
	}
	free(r->reply);
	cJSON_Delete(r->json);
	free(r);
}

static struct hp_req *
req_find(struct hp_client *h, const char *id)
{
	struct hp_req	*r;

	if (id == NULL)
		return NULL;
	TAILQ_FOREACH(r, &h->reqs, entry) {
		if (strcmp(r->id, id) == 0)
			return r;
	}
	return NULL;
}

static struct hp_req *
req_token(struct hp_client *h, uint64_t token)
{
	struct hp_req	*r;

	TAILQ_FOREACH(r, &h->reqs, entry) {
		if (r->token == token)
			return r;
	}
	return NULL;
}

/*
 * The connection is gone: every request in flight ends with err.  Simple
 * requests end at once; executes get a local error line at the end of
 * the backlog, so that their callbacks see it after what came before.
 */
static void
client_fail(struct hp_client *h, const struct hp_error *err)
{
	struct hp_req	*r;
	struct hp_line	*l;
	cJSON		*json, *data;

	if (h->dead)
		return;
	h->dead = 1;
	h->dead_err = *err;
	/* The server said why before it hung up: that is the better reason. */
	if (h->has_orphan_err && strcmp(err->code, HP_E_DISCONNECTED) == 0)
		h->dead_err = h->orphan_err;
	TAILQ_FOREACH(r, &h->reqs, entry) {
		if (r->kind == HP_REQ_SIMPLE) {
			if (!r->done) {
				r->done = r->failed = 1;
				r->err = h->dead_err;
			}
			continue;
		}
		if (r->ended)
			continue;	/* its terminal line is queued */
		r->ended = 1;
		l = calloc(1, sizeof *l);
		json = cJSON_CreateObject();
		data = cJSON_AddObjectToObject(json, "data");
		cJSON_AddStringToObject(json, "id", r->id);
		cJSON_AddStringToObject(json, "type", "error");
		cJSON_AddStringToObject(data, "code", h->dead_err.code);
		cJSON_AddStringToObject(data, "message", h->dead_err.message);
		if (l == NULL || data == NULL ||
		    (l->text = cJSON_PrintUnformatted(json)) == NULL) {
			/* No memory for the event: end it without one. */
			free(l);
			cJSON_Delete(json);
			r->done = r->failed = 1;
			r->err = h->dead_err;
			continue;
		}
		l->req = r;
		l->len = strlen(l->text);
		l->json = json;
		l->local = 1;
		TAILQ_INSERT_TAIL(&h->backlog, l, entry);
	}
}

/* Routes one line read from the server; takes text. */
static void
client_route(struct hp_client *h, char *text, size_t len)
{
	struct hp_line	*l;
	struct hp_req	*r;
	struct hp_error	 err;
	cJSON		*json;
	const cJSON	*id;

	if ((json = cJSON_ParseWithLength(text, len)) == NULL ||
	    !cJSON_IsObject(json)) {
		cJSON_Delete(json);
		free(text);
		hp_seterr(&err, HP_E_PROTOCOL, "server sent a line that is "
		    "not a JSON object");
		client_fail(h, &err);
		return;
	}
	id = cJSON_GetObjectItemCaseSensitive(json, "id");
	r = cJSON_IsString(id) ? req_find(h, id->valuestring) : NULL;
	if (r != NULL && r->ended)
		r = NULL;	/* after its terminal line: an orphan */

	if (r != NULL && r->kind == HP_REQ_SIMPLE) {
		r->reply = text;
		r->json = json;
		r->ended = r->done = 1;
		return;
	}
	if (r == NULL && !cJSON_IsString(id) && event_terminal(json)) {
		event_error(json, &h->orphan_err);
		h->has_orphan_err = 1;
	}
	if (r == NULL && h->orphan_cb == NULL) {
		cJSON_Delete(json);
		free(text);
		return;
	}
	if ((l = calloc(1, sizeof *l)) == NULL) {
		cJSON_Delete(json);
		free(text);
		hp_seterr(&err, HP_E_NOMEM, "out of memory");
		client_fail(h, &err);
		return;
	}
	l->req = r;
	l->text = text;
	l->len = len;
	l->json = json;
	if (r != NULL && event_terminal(json))
		r->ended = 1;
	TAILQ_INSERT_TAIL(&h->backlog, l, entry);
}

/* May the owner of a backlog line be called now without re-entering? */
static int
client_deliverable(const struct hp_client *h, const struct hp_req *r)
{
	if (r == NULL)
		return h->cb_depth == 0;
	return !r->in_cb && (h->cb_depth == 0 || r == h->target);
}

/* Hands the first deliverable backlog line to its owner; 0 if none. */
static int
client_deliver_one(struct hp_client *h)
{
	struct hp_line		*l;
	struct hp_req		*r;
	struct hp_event		 ev;
	struct event_scratch	 sc;
	hp_event_cb		 cb;
	void			*arg;

	TAILQ_FOREACH(l, &h->backlog, entry) {
		if (client_deliverable(h, l->req))
			break;
	}
	if (l == NULL)
		return 0;
	TAILQ_REMOVE(&h->backlog, l, entry);
	r = l->req;
	cb = r != NULL ? r->cb : h->orphan_cb;
	arg = r != NULL ? r->arg : h->orphan_arg;

	memset(&sc, 0, sizeof sc);
	event_fill(h, l, &ev, &sc);
	if (cb != NULL) {
		if (r != NULL)
			r->in_cb = 1;
		h->cb_depth++;
		cb(&ev, arg);
		h->cb_depth--;
	}
	/* The callback may not free r: requests end only here and in waits. */
	if (r != NULL) {
		r->in_cb = 0;
		if (ev.type == HP_EV_DONE || ev.type == HP_EV_ERROR) {
			r->done = 1;
			if (ev.type == HP_EV_ERROR) {
				r->failed = 1;
				event_error(l->json, &r->err);
			}
			if (!r->waiting)
				req_free(h, r);
		}
	}
	free(sc.input_json);
	line_free(l);
	return 1;
}

/* Splits whole lines off the read buffer and routes them. */
static void
client_split(struct hp_client *h)
{
	struct hp_error	 err;
	char		*start = h->rbuf, *nl, *text;
	size_t		 left = h->rlen, len;

	while (!h->dead && left > 0 &&
	    (nl = memchr(start, '\n', left)) != NULL) {
		len = (size_t)(nl - start);
		if (len > h->max_line) {
			hp_seterr(&err, HP_E_LINE_TOO_LONG, "server line of "
			    "%zu bytes exceeds the limit of %zu", len,
			    h->max_line);
			client_fail(h, &err);
			break;
		}
		if (len > 0) {
			if ((text = malloc(len + 1)) == NULL) {
				hp_seterr(&err, HP_E_NOMEM, "out of memory");
				client_fail(h, &err);
				break;
			}
			memcpy(text, start, len);
			text[len] = '\0';
			client_route(h, text, len);
		}
		start = nl + 1;
		left -= len + 1;
	}
	if (h->dead) {
		h->rlen = 0;
		return;
	}
	if (left > h->max_line) {
		hp_seterr(&err, HP_E_LINE_TOO_LONG, "server line exceeds the "
		    "limit of %zu bytes", h->max_line);
		client_fail(h, &err);
		h->rlen = 0;
		return;
	}
	memmove(h->rbuf, start, left);
	h->rlen = left;
}

/*
 * One read(); 1 if bytes came (and were split), 0 if none were ready,
 * -1 once the connection failed.
 */
static int
client_read(struct hp_client *h)
{
	struct hp_error	 err;
	char		*p;
	size_t		 want;
	ssize_t		 n;

	if (h->dead)
		return -1;
	if (h->rsize - h->rlen < HP_READ_CHUNK) {
		want = h->rlen + HP_READ_CHUNK;
		if ((p = realloc(h->rbuf, want)) == NULL) {
			hp_seterr(&err, HP_E_NOMEM, "out of memory");
			client_fail(h, &err);
			return -1;
		}
		h->rbuf = p;
		h->rsize = want;
	}
	n = read(h->fd, h->rbuf + h->rlen, h->rsize - h->rlen);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		hp_seterr(&err, HP_E_IO, "read: %s", strerror(errno));
		client_fail(h, &err);
		return -1;
	}
	if (n == 0) {
		hp_seterr(&err, HP_E_DISCONNECTED, "server closed the "
		    "connection%s", h->rlen > 0 ? " in the middle of a line" :
		    "");
		client_fail(h, &err);
		return -1;
	}
	h->rlen += (size_t)n;
	client_split(h);
	return h->dead ? -1 : 1;
}

/* Waits for input (bounded by timeout_ms) and reads it. */
static int
client_read_blocking(struct hp_client *h)
{
	struct pollfd	 pfd = { .fd = h->fd, .events = POLLIN };
	struct hp_error	 err;
	int		 n;

	if (h->dead)
		return -1;
	n = poll(&pfd, 1, h->timeout_ms > 0 ? h->timeout_ms : -1);
	if (n == -1) {
		if (errno == EINTR)
			return 0;
		hp_seterr(&err, HP_E_IO, "poll: %s", strerror(errno));
		client_fail(h, &err);
		return -1;
	}
	if (n == 0) {
		hp_seterr(&err, HP_E_TIMEOUT, "no answer from the server in "
		    "%d ms", h->timeout_ms);
		client_fail(h, &err);
		return -1;
	}
	return client_read(h);
}

/* Writes one request line whole; the connection fails if it cannot. */
static int
client_send(struct hp_client *h, cJSON *obj, struct hp_error *errp)
{
	struct pollfd	 pfd = { .fd = h->fd, .events = POLLOUT };
	struct hp_error	 err;
	char		*text;
	size_t		 len, off = 0;
	ssize_t		 n;

	if (h->dead) {
		hp_copyerr(errp, &h->dead_err);
		return -1;
	}
	if ((text = cJSON_PrintUnformatted(obj)) == NULL) {
		hp_seterr(errp, HP_E_NOMEM, "out of memory");
		return -1;
	}
	len = strlen(text);
	text[len++] = '\n';	/* replaces the NUL: text is written by length */
	while (off < len) {
		n = send(h->fd, text + off, len - off, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
		    (poll(&pfd, 1, h->timeout_ms > 0 ? h->timeout_ms : -1) > 0 ||
		    errno == EINTR))
			continue;
		if (errno == EPIPE || errno == ECONNRESET)
			hp_seterr(&err, HP_E_DISCONNECTED, "server closed the "
			    "connection");
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			hp_seterr(&err, HP_E_TIMEOUT, "server not reading");
		else
			hp_seterr(&err, HP_E_IO, "send: %s", strerror(errno));
		free(text);
		/* Pick up what the server said before it went (an error line). */
		while (client_read(h) == 1)
			;
		client_fail(h, &err);
		hp_copyerr(errp, &h->dead_err);
		return -1;
	}
	free(text);
	return 0;
}

/* Blocks until r is done, delivering what comes for others meanwhile. */
static int
client_wait(struct hp_client *h, struct hp_req *r, struct hp_error *err)
{
	struct hp_req	*saved;
	int		 rc;

	if (r->in_cb) {
		hp_seterr(err, HP_E_INVALID, "waiting for a request from its "
		    "own callback");
		return -1;
	}
	saved = h->target;
	h->target = r;
	r->waiting++;
	while (!r->done) {
		if (client_deliver_one(h))
			continue;
		if (h->dead) {
			/* Nothing more can come for r: never spin. */
			r->done = r->failed = 1;
			r->err = h->dead_err;
			break;
		}
		(void)client_read_blocking(h);
	}
	r->waiting--;
	h->target = saved;
	rc = r->failed ? -1 : 0;
	if (r->failed)
		hp_copyerr(err, &r->err);
	return rc;
}

/* A new request object {"op","id"} and its request, not yet linked. */
static cJSON *
client_request(struct hp_client *h, const char *op, struct hp_req **rp,
    struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj;
	int		 bad = 0;

	if (h->dead) {
		hp_copyerr(err, &h->dead_err);
		return NULL;
	}
	if ((r = calloc(1, sizeof *r)) == NULL ||
	    (obj = cJSON_CreateObject()) == NULL) {
		free(r);
		hp_seterr(err, HP_E_NOMEM, "out of memory");
		return NULL;
	}
	r->token = ++h->next_token;
	snprintf(r->id, sizeof r->id, "h%llu", (unsigned long long)r->token);
	json_add_str(obj, "op", op, &bad);
	json_add_str(obj, "id", r->id, &bad);
	if (bad) {
		free(r);
		cJSON_Delete(obj);
		hp_seterr(err, HP_E_NOMEM, "out of memory");
		return NULL;
	}
	*rp = r;
	return obj;
}

/* Sends obj for r (both consumed on failure) and links r. */
static int
client_submit(struct hp_client *h, cJSON *obj, struct hp_req *r, int bad,
    struct hp_error *err)
{
	int	rc;

	if (bad) {
		hp_seterr(err, HP_E_NOMEM, "out of memory");
		rc = -1;
	} else
		rc = client_send(h, obj, err);
	cJSON_Delete(obj);
	if (rc == -1) {
		free(r);
		return -1;
	}
	TAILQ_INSERT_TAIL(&h->reqs, r, entry);
	return 0;
}

/*
 * Sends a simple request and waits for its reply.  On success r->json is
 * the reply and the caller frees r with req_free; on failure r is gone.
 */
static int
client_call(struct hp_client *h, cJSON *obj, struct hp_req *r, int bad,
    struct hp_error *err)
{
	if (client_submit(h, obj, r, bad, err) == -1)
		return -1;
	if (client_wait(h, r, err) == -1) {
		req_free(h, r);
		return -1;
	}
	if (event_type(json_str(r->json, "type")) == HP_EV_ERROR) {
		event_error(r->json, err);
		req_free(h, r);
		return -1;
	}
	return 0;
}

static int
check_session(const char *session, struct hp_error *err)
{
	if (session == NULL || *session == '\0') {
		hp_seterr(err, HP_E_INVALID, "no session given");
		return -1;
	}
	return 0;
}

/* ---- public: connection ---------------------------------------------- */

struct hp_client *
hp_connect_fd(int fd, struct hp_error *err)
{
	struct hp_client	*h;
	int			 flags;

	if (fd < 0) {
		hp_seterr(err, HP_E_INVALID, "bad file descriptor");
		return NULL;
	}
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		hp_seterr(err, HP_E_IO, "fcntl: %s", strerror(errno));
		return NULL;
	}
	if ((h = calloc(1, sizeof *h)) == NULL) {
		hp_seterr(err, HP_E_NOMEM, "out of memory");
		return NULL;
	}
	h->fd = fd;
	h->max_line = HP_MAX_LINE;
	TAILQ_INIT(&h->reqs);
	TAILQ_INIT(&h->backlog);
	return h;
}

struct hp_client *
hp_connect(const char *path, struct hp_error *err)
{
	struct sockaddr_un	 sun;
	struct hp_client	*h;
	int			 fd;

	if (path == NULL || *path == '\0')
		path = getenv(HP_SOCKET_ENV);
	if (path == NULL || *path == '\0')
		path = HP_DEFAULT_SOCKET;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		hp_seterr(err, HP_E_CONNECT, "%s: socket path too long", path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		hp_seterr(err, HP_E_CONNECT, "socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		hp_seterr(err, HP_E_CONNECT, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if ((h = hp_connect_fd(fd, err)) == NULL)
		close(fd);
	return h;
}

void
hp_close(struct hp_client *h)
{
	struct hp_line	*l;

	if (h == NULL)
		return;
	while ((l = TAILQ_FIRST(&h->backlog)) != NULL) {
		TAILQ_REMOVE(&h->backlog, l, entry);
		line_free(l);
	}
	while (!TAILQ_EMPTY(&h->reqs))
		req_free(h, TAILQ_FIRST(&h->reqs));
	if (h->fd != -1)
		close(h->fd);
	free(h->rbuf);
	free(h);
}

void
hp_set_max_line(struct hp_client *h, size_t max)
{
	h->max_line = max > 0 ? max : HP_MAX_LINE;
}

void
hp_set_timeout(struct hp_client *h, int timeout_ms)
{
	h->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

void
hp_set_orphan_cb(struct hp_client *h, hp_event_cb cb, void *arg)
{
	h->orphan_cb = cb;
	h->orphan_arg = arg;
}

int
hp_fd(const struct hp_client *h)
{
	return h->fd;
}

size_t
hp_pending(const struct hp_client *h)
{
	const struct hp_req	*r;
	size_t			 n = 0;

	TAILQ_FOREACH(r, &h->reqs, entry) {
		if (!r->done)
			n++;
	}
	return n;
}

int
hp_pump(struct hp_client *h, struct hp_error *err)
{
	while (client_read(h) == 1)
		;
	while (client_deliver_one(h))
		;
	if (h->dead) {
		hp_copyerr(err, &h->dead_err);
		return -1;
	}
	return 0;
}

/* ---- public: requests ------------------------------------------------ */

int
hp_hello(struct hp_client *h, const char *client_name, struct hp_hello *out,
    struct hp_error *err)
{
	struct hp_req	*r;
	const cJSON	*src;
	cJSON		*obj;
	int		 bad = 0, rc;

	if ((obj = client_request(h, "hello", &r, err)) == NULL)
		return -1;
	if (cJSON_AddNumberToObject(obj, "proto", HP_PROTO_VERSION) == NULL)
		bad++;
	json_add_str(obj, "client", client_name != NULL ? client_name :
	    "libhotplex", &bad);
	if ((rc = client_call(h, obj, r, bad, err)) == 0 && out != NULL) {
		/* Fields at the top level; accept them under data too. */
		src = cJSON_GetObjectItemCaseSensitive(r->json, "data");
		if (!cJSON_IsObject(src))
			src = r->json;
		memset(out, 0, sizeof *out);
		out->proto = (int)json_i64(src, "proto", 0);
		json_copy(out->server, sizeof out->server, src, "server");
		out->uid = (long)json_i64(src, "uid", -1);
		out->admin = json_bool(src, "admin");
	}
	if (rc == 0)
		req_free(h, r);
	return rc;
}

/* Builds an execute or open request with its common fields. */
static cJSON *
client_session_request(struct hp_client *h, const char *op,
    const char *session, const char *workdir, const struct hp_options *opt,
    struct hp_req **rp, int *bad, struct hp_error *err)
{
	cJSON	*obj;

	if (check_session(session, err) == -1)
		return NULL;
	if ((obj = client_request(h, op, rp, err)) == NULL)
		return NULL;
	json_add_str(obj, "session", session, bad);
	json_add_str(obj, "workdir", workdir, bad);
	json_add_options(obj, opt, bad);
	return obj;
}

uint64_t
hp_execute_start(struct hp_client *h, const char *session, const char *prompt,
    const char *workdir, const struct hp_options *opt, hp_event_cb cb,
    void *arg, struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj;
	int		 bad = 0;

	if (prompt == NULL) {
		hp_seterr(err, HP_E_INVALID, "no prompt given");
		return 0;
	}
	obj = client_session_request(h, "execute", session, workdir, opt, &r,
	    &bad, err);
	if (obj == NULL)
		return 0;
	json_add_str(obj, "prompt", prompt, &bad);
	if (opt != NULL && opt->queue &&
	    cJSON_AddBoolToObject(obj, "queue", 1) == NULL)
		bad++;
	r->kind = HP_REQ_EXECUTE;
	r->cb = cb;
	r->arg = arg;
	if (client_submit(h, obj, r, bad, err) == -1)
		return 0;
	return r->token;
}

int
hp_wait(struct hp_client *h, uint64_t token, struct hp_error *err)
{
	struct hp_req	*r;
	int		 rc;

	if (token == 0 || token > h->next_token) {
		hp_seterr(err, HP_E_INVALID, "no such request");
		return -1;
	}
	if ((r = req_token(h, token)) == NULL)
		return 0;	/* ended already, its callback told */
	rc = client_wait(h, r, err);
	if (r->done && !r->waiting)
		req_free(h, r);
	return rc;
}

int
hp_execute(struct hp_client *h, const char *session, const char *prompt,
    const char *workdir, const struct hp_options *opt, hp_event_cb cb,
    void *arg, struct hp_error *err)
{
	uint64_t	token;

	token = hp_execute_start(h, session, prompt, workdir, opt, cb, arg,
	    err);
	if (token == 0)
		return -1;
	return hp_wait(h, token, err);
}

/* A simple session op: {"op","id","session"} plus an optional reason. */
static int
client_session_op(struct hp_client *h, const char *op, const char *session,
    const char *reason, struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj;
	int		 bad = 0, rc;

	if (check_session(session, err) == -1)
		return -1;
	if ((obj = client_request(h, op, &r, err)) == NULL)
		return -1;
	json_add_str(obj, "session", session, &bad);
	json_add_str(obj, "reason", reason, &bad);
	rc = client_call(h, obj, r, bad, err);
	if (rc == 0)
		req_free(h, r);
	return rc;
}

int
hp_open(struct hp_client *h, const char *session, const char *workdir,
    const struct hp_options *opt, struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj;
	int		 bad = 0, rc;

	obj = client_session_request(h, "open", session, workdir, opt, &r,
	    &bad, err);
	if (obj == NULL)
		return -1;
	rc = client_call(h, obj, r, bad, err);
	if (rc == 0)
		req_free(h, r);
	return rc;
}

int
hp_interrupt(struct hp_client *h, const char *session, struct hp_error *err)
{
	return client_session_op(h, "interrupt", session, NULL, err);
}

int
hp_stop(struct hp_client *h, const char *session, const char *reason,
    struct hp_error *err)
{
	return client_session_op(h, "stop", session, reason, err);
}

int
hp_reset(struct hp_client *h, const char *session, struct hp_error *err)
{
	return client_session_op(h, "reset", session, NULL, err);
}

int
hp_attach(struct hp_client *h, const char *session, int64_t since_seq,
    struct hp_attach *info, struct hp_error *err)
{
	struct hp_req	*r;
	const cJSON	*data, *lost;
	cJSON		*obj;
	int		 bad = 0;

	if (info != NULL) {
		memset(info, 0, sizeof *info);
		info->lost_first = info->lost_last = -1;
	}
	if (check_session(session, err) == -1)
		return -1;
	if (since_seq < 0) {
		hp_seterr(err, HP_E_INVALID, "since_seq below 0");
		return -1;
	}
	if ((obj = client_request(h, "attach", &r, err)) == NULL)
		return -1;
	json_add_str(obj, "session", session, &bad);
	if (cJSON_AddNumberToObject(obj, "since_seq", (double)since_seq) ==
	    NULL)
		bad++;
	if (client_call(h, obj, r, bad, err) == -1)
		return -1;
	data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
	if (info != NULL && cJSON_IsObject(data)) {
		info->seq = json_i64(data, "seq", 0);
		json_copy(info->state, sizeof info->state, data, "state");
		info->ended = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data,
		    "ended"));
		lost = cJSON_GetObjectItemCaseSensitive(data, "lost");
		if (cJSON_GetArraySize(lost) == 2 &&
		    cJSON_IsNumber(cJSON_GetArrayItem(lost, 0)) &&
		    cJSON_IsNumber(cJSON_GetArrayItem(lost, 1))) {
			info->lost_first = (int64_t)cJSON_GetArrayItem(lost,
			    0)->valuedouble;
			info->lost_last = (int64_t)cJSON_GetArrayItem(lost,
			    1)->valuedouble;
		}
	}
	req_free(h, r);
	return 0;
}

int
hp_detach(struct hp_client *h, const char *session, struct hp_error *err)
{
	return client_session_op(h, "detach", session, NULL, err);
}

/* A request of no field answered ok. */
/*
 * An op of no field; member (when out is not NULL) names the one number or
 * boolean of the reply's data that *out gets (drain, undrain).
 */
static int
client_count_op(struct hp_client *h, const char *op, const char *member,
    int *out, struct hp_error *err)
{
	struct hp_req	*r;
	const cJSON	*v;
	cJSON		*obj;

	if ((obj = client_request(h, op, &r, err)) == NULL)
		return -1;
	if (client_call(h, obj, r, 0, err) == -1)
		return -1;
	if (out != NULL) {
		v = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(r->json, "data"), member);
		*out = cJSON_IsNumber(v) ? v->valueint : cJSON_IsTrue(v);
	}
	req_free(h, r);
	return 0;
}

static int
client_plain_op(struct hp_client *h, const char *op, struct hp_error *err)
{
	return client_count_op(h, op, NULL, NULL, err);
}

int
hp_reload(struct hp_client *h, struct hp_error *err)
{
	return client_plain_op(h, "reload", err);
}

int
hp_shutdown(struct hp_client *h, struct hp_error *err)
{
	return client_plain_op(h, "shutdown", err);
}

int
hp_drain(struct hp_client *h, int *sessions, struct hp_error *err)
{
	return client_count_op(h, "drain", "sessions", sessions, err);
}

int
hp_undrain(struct hp_client *h, int *was_draining, struct hp_error *err)
{
	return client_count_op(h, "undrain", "was_draining", was_draining,
	    err);
}

/* Hands the reply line to *raw when asked; takes it from r. */
static void
client_take_raw(struct hp_req *r, char **raw)
{
	if (raw == NULL)
		return;
	*raw = r->reply;
	r->reply = NULL;
}

int
hp_stats(struct hp_client *h, const char *session, struct hp_stats *st,
    char **raw, struct hp_error *err)
{
	struct hp_req	*r;
	const cJSON	*data;
	cJSON		*obj;
	int		 bad = 0, rc;

	if (raw != NULL)
		*raw = NULL;
	if ((obj = client_request(h, "stats", &r, err)) == NULL)
		return -1;
	json_add_str(obj, "session", session, &bad);
	if (client_call(h, obj, r, bad, err) == -1)
		return -1;
	data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
	if (!cJSON_IsObject(data)) {
		hp_seterr(err, HP_E_PROTOCOL, "stats reply without data");
		rc = -1;
	} else {
		if (st != NULL)
			stats_parse(data, st);
		client_take_raw(r, raw);
		rc = 0;
	}
	req_free(h, r);
	return rc;
}

/*
 * Sends obj and waits for a reply whose "data" (or data's member, when
 * member is not NULL) passes is(); else a protocol error naming what.
 * On success the caller frees r with req_free; on failure r is gone.
 */
static const cJSON *
client_call_data(struct hp_client *h, cJSON *obj, struct hp_req *r, int bad,
    const char *member, cJSON_bool (*is)(const cJSON *), const char *what,
    struct hp_error *err)
{
	const cJSON	*data;

	if (client_call(h, obj, r, bad, err) == -1)
		return NULL;
	data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
	if (member != NULL)
		data = cJSON_GetObjectItemCaseSensitive(data, member);
	if (!is(data)) {
		hp_seterr(err, HP_E_PROTOCOL, "%s", what);
		req_free(h, r);
		return NULL;
	}
	return data;
}

/* A string or NULL (null, absent); -1 when out of memory. */
static int
audit_str(const cJSON *o, const char *key, char **out)
{
	const char	*s = json_str(o, key);

	*out = NULL;
	return s != NULL && (*out = strdup(s)) == NULL ? -1 : 0;
}

/* The strings of an array member. */
static int
audit_strv(const cJSON *o, const char *key, char ***out, size_t *n)
{
	const cJSON	*a = cJSON_GetObjectItemCaseSensitive(o, key), *e;
	size_t		 max = (size_t)cJSON_GetArraySize(a);

	*n = 0;
	if ((*out = calloc(max + 1, sizeof **out)) == NULL)
		return -1;
	cJSON_ArrayForEach(e, a)
		if (cJSON_IsString(e) &&
		    ((*out)[(*n)++] = strdup(e->valuestring)) == NULL)
			return -1;
	return 0;
}

static void
audit_row_free(struct hp_audit_row *a)
{
	size_t	i;

	free(a->tool);
	free(a->digest);
	free(a->excerpt);
	free(a->decision);
	free(a->decided_by);
	free(a->detail);
	free(a->host_id);
	for (i = 0; a->files != NULL && i < a->nfiles; i++)
		free(a->files[i]);
	free(a->files);
	for (i = 0; a->files_deleted != NULL && i < a->nfiles_deleted; i++)
		free(a->files_deleted[i]);
	free(a->files_deleted);
}

void
hp_audit_free(struct hp_audit *au)
{
	size_t	i;

	if (au == NULL)
		return;
	for (i = 0; i < au->nrows; i++)
		audit_row_free(&au->rows[i]);
	free(au->rows);
	memset(au, 0, sizeof *au);
}

static int
audit_row_parse(const cJSON *o, struct hp_audit_row *a)
{
	const cJSON	*ms = cJSON_GetObjectItemCaseSensitive(o,
			    "duration_ms");

	a->id = json_i64(o, "id", 0);
	a->time_ms = json_i64(o, "time_ms", 0);
	a->uid = (long)json_i64(o, "uid", -1);
	json_copy(a->session, sizeof a->session, o, "session");
	a->turn = (uint32_t)json_u64(o, "turn");
	json_copy(a->kind, sizeof a->kind, o, "kind");
	a->duration_ms = cJSON_IsNumber(ms) ? (int64_t)ms->valuedouble : -1;
	a->error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "error"));
	a->files_truncated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o,
	    "files_truncated"));
	a->overlapped = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o,
	    "overlapped"));
	if (audit_str(o, "tool", &a->tool) == -1 ||
	    audit_str(o, "digest", &a->digest) == -1 ||
	    audit_str(o, "excerpt", &a->excerpt) == -1 ||
	    audit_str(o, "decision", &a->decision) == -1 ||
	    audit_str(o, "decided_by", &a->decided_by) == -1 ||
	    audit_str(o, "detail", &a->detail) == -1 ||
	    audit_str(o, "host_id", &a->host_id) == -1 ||
	    audit_strv(o, "files", &a->files, &a->nfiles) == -1 ||
	    audit_strv(o, "files_deleted", &a->files_deleted,
	    &a->nfiles_deleted) == -1)
		return -1;
	return 0;
}

static int
audit_parse(const cJSON *data, const cJSON *rows, struct hp_audit *au)
{
	const cJSON	*o;
	size_t		 max = (size_t)cJSON_GetArraySize(rows);

	memset(au, 0, sizeof *au);
	au->more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(data,
	    "more"));
	if ((au->rows = calloc(max + 1, sizeof *au->rows)) == NULL)
		return -1;
	cJSON_ArrayForEach(o, rows) {
		if (!cJSON_IsObject(o))
			continue;
		if (audit_row_parse(o, &au->rows[au->nrows++]) == -1) {
			hp_audit_free(au);
			return -1;
		}
	}
	return 0;
}

int
hp_audit(struct hp_client *h, const struct hp_audit_query *q,
    struct hp_audit *out, char **raw, struct hp_error *err)
{
	struct hp_req	*r;
	const cJSON	*rows;
	cJSON		*obj;
	int		 bad = 0, rc = 0;

	if (raw != NULL)
		*raw = NULL;
	if (out != NULL)
		memset(out, 0, sizeof *out);
	if ((obj = client_request(h, "audit", &r, err)) == NULL)
		return -1;
	if (q != NULL) {
		json_add_str(obj, "session", q->session, &bad);
		if (q->since_ms > 0 && cJSON_AddNumberToObject(obj, "since_ms",
		    (double)q->since_ms) == NULL)
			bad++;
		if (q->after_id > 0 && cJSON_AddNumberToObject(obj, "after_id",
		    (double)q->after_id) == NULL)
			bad++;
		if (q->limit > 0 && cJSON_AddNumberToObject(obj, "limit",
		    q->limit) == NULL)
			bad++;
	}
	if ((rows = client_call_data(h, obj, r, bad, "rows", cJSON_IsArray,
	    "audit reply without rows", err)) == NULL)
		return -1;
	if (out != NULL && audit_parse(cJSON_GetObjectItemCaseSensitive(
	    r->json, "data"), rows, out) == -1) {
		hp_seterr(err, HP_E_NOMEM, "out of memory");
		rc = -1;
	} else
		client_take_raw(r, raw);
	req_free(h, r);
	return rc;
}

int
hp_status(struct hp_client *h, char **raw, struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj;

	*raw = NULL;
	if ((obj = client_request(h, "status", &r, err)) == NULL)
		return -1;
	if (client_call_data(h, obj, r, 0, NULL, cJSON_IsObject,
	    "status reply without data", err) == NULL)
		return -1;
	client_take_raw(r, raw);
	req_free(h, r);
	return 0;
}

int
hp_sessions(struct hp_client *h, struct hp_session_info **list, size_t *n,
    char **raw, struct hp_error *err)
{
	struct hp_session_info	*l = NULL;
	struct hp_req		*r;
	cJSON			*obj;
	size_t			 nl = 0;
	int			 rc;

	if (raw != NULL)
		*raw = NULL;
	if (list != NULL)
		*list = NULL;
	if (n != NULL)
		*n = 0;
	if ((obj = client_request(h, "sessions", &r, err)) == NULL)
		return -1;
	if (client_call(h, obj, r, 0, err) == -1)
		return -1;
	if (sessions_parse(cJSON_GetObjectItemCaseSensitive(r->json, "data"),
	    &l, &nl) == -1) {
		hp_seterr(err, HP_E_PROTOCOL, "sessions reply without a list");
		rc = -1;
	} else {
		if (list != NULL && n != NULL) {
			*list = l;
			*n = nl;
		} else
			hp_sessions_free(l, nl);
		client_take_raw(r, raw);
		rc = 0;
	}
	req_free(h, r);
	return rc;
}

int
hp_policy_check(struct hp_client *h, const char *text, const char *target,
    struct hp_verdict *v, char **raw, struct hp_error *err)
{
	struct hp_verdict	 tmp;
	struct hp_req		*r;
	cJSON			*obj;
	int			 bad = 0, rc;

	if (raw != NULL)
		*raw = NULL;
	if (v != NULL)
		memset(v, 0, sizeof *v);
	if (text == NULL) {
		hp_seterr(err, HP_E_INVALID, "no text given");
		return -1;
	}
	if ((obj = client_request(h, "policy_check", &r, err)) == NULL)
		return -1;
	json_add_str(obj, "text", text, &bad);
	json_add_str(obj, "target", target, &bad);
	if (client_call(h, obj, r, bad, err) == -1)
		return -1;
	if (verdict_parse(cJSON_GetObjectItemCaseSensitive(r->json, "data"),
	    &tmp) == -1) {
		hp_seterr(err, HP_E_PROTOCOL, "verdict reply without data");
		rc = -1;
	} else {
		if (v != NULL)
			*v = tmp;
		else
			hp_verdict_free(&tmp);
		client_take_raw(r, raw);
		rc = 0;
	}
	req_free(h, r);
	return rc;
}

int
hp_permission(struct hp_client *h, const char *session, const char *request_id,
    const char *decision, const char *message, const char *updated_input_json,
    struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj, *upd = NULL;
	int		 bad = 0, rc;

	if (check_session(session, err) == -1)
		return -1;
	if (request_id == NULL || decision == NULL ||
	    (strcmp(decision, "allow") != 0 && strcmp(decision, "deny") != 0)) {
		hp_seterr(err, HP_E_INVALID, "a request id and a decision "
		    "(allow or deny) are needed");
		return -1;
	}
	if (updated_input_json != NULL &&
	    ((upd = cJSON_Parse(updated_input_json)) == NULL ||
	    !cJSON_IsObject(upd))) {
		cJSON_Delete(upd);
		hp_seterr(err, HP_E_INVALID, "updated input is not a JSON "
		    "object");
		return -1;
	}
	if ((obj = client_request(h, "permission", &r, err)) == NULL) {
		cJSON_Delete(upd);
		return -1;
	}
	json_add_str(obj, "session", session, &bad);
	json_add_str(obj, "request_id", request_id, &bad);
	json_add_str(obj, "decision", decision, &bad);
	json_add_str(obj, "message", message, &bad);
	if (upd != NULL && !cJSON_AddItemToObject(obj, "updated_input", upd)) {
		cJSON_Delete(upd);
		bad++;
	}
	rc = client_call(h, obj, r, bad, err);
	if (rc == 0)
		req_free(h, r);
	return rc;
}

int
hp_configure(struct hp_client *h, const char *session, const char *model,
    const char *permission_mode, double max_budget_usd, int *live,
    struct hp_error *err)
{
	struct hp_req	*r;
	cJSON		*obj;
	int		 bad = 0, rc;

	if (check_session(session, err) == -1)
		return -1;
	if ((obj = client_request(h, "configure", &r, err)) == NULL)
		return -1;
	json_add_str(obj, "session", session, &bad);
	json_add_str(obj, "model", model, &bad);
	json_add_str(obj, "permission_mode", permission_mode, &bad);
	if (max_budget_usd >= 0 && cJSON_AddNumberToObject(obj,
	    "max_budget_usd", max_budget_usd) == NULL)
		bad++;
	rc = client_call(h, obj, r, bad, err);
	if (rc == 0) {
		if (live != NULL)
			*live = json_bool(cJSON_GetObjectItemCaseSensitive(
			    r->json, "data"), "live");
		req_free(h, r);
	}
	return rc;
}
