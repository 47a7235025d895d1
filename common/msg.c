/* Master <-> worker messages: framing, and one encoder and decoder a type. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"

static const char *msg_names[MSG_TYPE_MAX] = {
	[MSG_HELLO] = "hello", [MSG_OPEN] = "open", [MSG_OPENED] = "opened",
	[MSG_PROBED] = "probed", [MSG_OPEN_FAILED] = "open_failed", [MSG_TURN] = "turn",
	[MSG_EVENT] = "event", [MSG_TURN_END] = "turn_end",
	[MSG_INTERRUPT] = "interrupt", [MSG_STOP] = "stop",
	[MSG_CLI_SESSION] = "cli_session", [MSG_CLI_EXIT] = "cli_exit",
	[MSG_APPROVAL] = "approval", [MSG_PERMISSION] = "permission",
	[MSG_CONFIGURE] = "configure", [MSG_CONFIGURED] = "configured",
	[MSG_TRANSCRIPT] = "transcript", [MSG_POLICY] = "policy",
	[MSG_READY] = "ready",
};

/* The side each type comes from: a peer refuses the others (peer.c). */
static const int msg_from[MSG_TYPE_MAX] = {
	[MSG_HELLO] = MSG_FROM_MASTER | MSG_FROM_WORKER,
	[MSG_OPEN] = MSG_FROM_MASTER, [MSG_OPENED] = MSG_FROM_WORKER,
	[MSG_PROBED] = MSG_FROM_WORKER, [MSG_OPEN_FAILED] = MSG_FROM_WORKER,
	[MSG_TURN] = MSG_FROM_MASTER, [MSG_EVENT] = MSG_FROM_WORKER,
	[MSG_TURN_END] = MSG_FROM_WORKER, [MSG_INTERRUPT] = MSG_FROM_MASTER,
	[MSG_STOP] = MSG_FROM_MASTER, [MSG_CLI_SESSION] = MSG_FROM_WORKER,
	[MSG_CLI_EXIT] = MSG_FROM_WORKER, [MSG_APPROVAL] = MSG_FROM_WORKER,
	[MSG_PERMISSION] = MSG_FROM_MASTER, [MSG_CONFIGURE] = MSG_FROM_MASTER,
	[MSG_CONFIGURED] = MSG_FROM_WORKER,
	[MSG_TRANSCRIPT] = MSG_FROM_MASTER | MSG_FROM_WORKER,
	[MSG_POLICY] = MSG_FROM_MASTER, [MSG_READY] = MSG_FROM_WORKER,
};

int
msg_type_from(uint16_t type)
{
	if (type == 0 || type >= MSG_TYPE_MAX)
		return 0;
	return msg_from[type];
}

const char *
msg_type_name(uint16_t type)
{
	if (type == 0 || type >= MSG_TYPE_MAX)
		return "invalid";
	return msg_names[type];
}

void
msg_compose(struct evbuffer *out, uint16_t type, uint32_t turn,
    const void *data, size_t len)
{
	struct msg_hdr	h;

	if (len > MSG_MAX_PAYLOAD)
		fatalx("msg_compose: %s payload of %zu bytes", msg_type_name(type),
		    len);
	memset(&h, 0, sizeof h);
	h.len = (uint32_t)len;
	h.type = type;
	h.version = MSG_VERSION;
	h.turn = turn;
	h.pid = (uint32_t)getpid();
	evbuffer_add(out, &h, sizeof h);
	if (len > 0)
		evbuffer_add(out, data, len);
}

void
msg_compose_json(struct evbuffer *out, uint16_t type, uint32_t turn,
    const cJSON *json)
{
	char	*s;

	if ((s = cJSON_PrintUnformatted(json)) == NULL)
		fatalx("msg_compose_json: out of memory");
	msg_compose(out, type, turn, s, strlen(s));
	cJSON_free(s);
}

int
msg_get(struct evbuffer *in, struct msg *m)
{
	struct msg_hdr	h;

	_Static_assert(sizeof h == MSG_HDR_SIZE, "msg header size");
	memset(m, 0, sizeof *m);
	if (evbuffer_get_length(in) < sizeof h)
		return MSG_GET_MORE;
	evbuffer_copyout(in, &h, sizeof h);
	/* The header's layout never changes: its version can be told. */
	if (h.version != MSG_VERSION) {
		m->hdr = h;
		return MSG_GET_VERSION;
	}
	if (h.type == 0 || h.type >= MSG_TYPE_MAX || h.len > MSG_MAX_PAYLOAD ||
	    h.flags != 0)
		return MSG_GET_BAD;
	if (evbuffer_get_length(in) < sizeof h + h.len)
		return MSG_GET_MORE;
	evbuffer_drain(in, sizeof h);
	m->hdr = h;
	m->data = xmalloc((size_t)h.len + 1);
	evbuffer_remove(in, m->data, h.len);
	m->data[h.len] = '\0';
	return MSG_GET_OK;
}

void
msg_clear(struct msg *m)
{
	free(m->data);
	m->data = NULL;
}

cJSON *
msg_json(const struct msg *m)
{
	cJSON	*j;

	if (m->data == NULL ||
	    (j = cJSON_ParseWithLength(m->data, m->hdr.len)) == NULL)
		return NULL;
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}

/* --- typed messages ---------------------------------------------------- */

/* Field readers for decoders: a missing or mistyped field sets *bad. */
static const char *
msg_str(const cJSON *o, const char *k, int *bad)
{
	const char	*v = json_str(o, k);

	if (v == NULL)
		*bad = 1;
	return v;
}

static int
msg_bool(const cJSON *o, const char *k, int *bad)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (!cJSON_IsBool(v))
		*bad = 1;
	return cJSON_IsTrue(v);
}

static double
msg_num(const cJSON *o, const char *k, double min, double max, int *bad)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	if (!cJSON_IsNumber(v) || v->valuedouble < min ||
	    v->valuedouble > max) {
		*bad = 1;
		return 0;
	}
	return v->valuedouble;
}

/* Serializes and frees o. */
static void
msg_compose_obj(struct evbuffer *out, uint16_t type, uint32_t turn,
    cJSON *o)
{
	msg_compose_json(out, type, turn, o);
	cJSON_Delete(o);
}

/* The payload as an object of a message of this type, or NULL. */
static cJSON *
msg_decode_obj(const struct msg *m, uint16_t type)
{
	if (m->hdr.type != type)
		return NULL;
	return msg_json(m);
}

/* Ends a decoder: 0, or -1 after freeing what it parsed. */
static int
msg_decoded(cJSON **json, int bad)
{
	if (!bad)
		return 0;
	cJSON_Delete(*json);
	*json = NULL;
	return -1;
}

void
msg_empty_compose(struct evbuffer *out, uint16_t type, uint32_t turn)
{
	msg_compose(out, type, turn, NULL, 0);
}

int
msg_empty_decode(const struct msg *m)
{
	return m->hdr.len == 0 ? 0 : -1;
}

void
msg_open_compose(struct evbuffer *out, uint32_t turn, const cJSON *o)
{
	msg_compose_json(out, MSG_OPEN, turn, o);
}

cJSON *
msg_open_decode(const struct msg *m)
{
	return msg_decode_obj(m, MSG_OPEN);
}

void
msg_opened_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_opened *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "cli_pid", (double)p->cli_pid);
	cJSON_AddStringToObject(o, "cli_session_id", p->cli_session_id);
	cJSON_AddStringToObject(o, "workdir", p->workdir);
	cJSON_AddBoolToObject(o, "resume", p->resume);
	cJSON_AddStringToObject(o, "policy", p->policy);
	msg_compose_obj(out, MSG_OPENED, turn, o);
}

int
msg_opened_decode(const struct msg *m, struct msg_opened *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_OPENED)) == NULL)
		return -1;
	p->cli_pid = (pid_t)msg_num(p->json, "cli_pid", 1, INT32_MAX, &bad);
	p->cli_session_id = msg_str(p->json, "cli_session_id", &bad);
	p->workdir = msg_str(p->json, "workdir", &bad);
	p->resume = msg_bool(p->json, "resume", &bad);
	p->policy = msg_str(p->json, "policy", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_opened_clear(struct msg_opened *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_open_failed_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_open_failed *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "code", p->code);
	cJSON_AddStringToObject(o, "message", p->message);
	cJSON_AddBoolToObject(o, "exiting", p->exiting);
	msg_compose_obj(out, MSG_OPEN_FAILED, turn, o);
}

int
msg_open_failed_decode(const struct msg *m, struct msg_open_failed *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_OPEN_FAILED)) == NULL)
		return -1;
	p->code = msg_str(p->json, "code", &bad);
	p->message = msg_str(p->json, "message", &bad);
	p->exiting = msg_bool(p->json, "exiting", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_open_failed_clear(struct msg_open_failed *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_turn_compose(struct evbuffer *out, uint32_t turn, const struct msg_turn *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "prompt", p->prompt);
	cJSON_AddBoolToObject(o, "slash_commands", p->slash_commands);
	cJSON_AddNumberToObject(o, "timeout_ms", (double)p->timeout_ms);
	msg_compose_obj(out, MSG_TURN, turn, o);
}

int
msg_turn_decode(const struct msg *m, struct msg_turn *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_TURN)) == NULL)
		return -1;
	p->prompt = msg_str(p->json, "prompt", &bad);
	p->slash_commands = msg_bool(p->json, "slash_commands", &bad);
	/* Integers a double holds exactly. */
	p->timeout_ms = (uint64_t)msg_num(p->json, "timeout_ms", 0,
	    9007199254740992.0, &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_turn_clear(struct msg_turn *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_turn_end_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_turn_end *p)
{
	cJSON	*o = cJSON_CreateObject(), *e;

	if (p->outcome == MSG_TURN_DONE)
		cJSON_AddItemToObject(o, "done", proto_done_json(&p->done));
	else {
		e = cJSON_AddObjectToObject(o, "error");
		cJSON_AddStringToObject(e, "code", p->code);
		cJSON_AddStringToObject(e, "message", p->message);
	}
	cJSON_AddItemToObject(o, "stats", stats_to_json(&p->stats));
	cJSON_AddBoolToObject(o, "exiting", p->exiting);
	cJSON_AddBoolToObject(o, "retry", p->retry);
	msg_compose_obj(out, MSG_TURN_END, turn, o);
}

int
msg_turn_end_decode(const struct msg *m, struct msg_turn_end *p)
{
	const cJSON	*done, *err;
	int		 bad = 0;

	memset(p, 0, sizeof *p);
	stats_init(&p->stats);
	if ((p->json = msg_decode_obj(m, MSG_TURN_END)) == NULL)
		return -1;
	done = cJSON_GetObjectItemCaseSensitive(p->json, "done");
	err = cJSON_GetObjectItemCaseSensitive(p->json, "error");
	if (done != NULL && err == NULL) {
		p->outcome = MSG_TURN_DONE;
		if (proto_done_from_json(&p->done, done) == -1)
			bad = 1;
	} else if (done == NULL && cJSON_IsObject(err)) {
		p->outcome = MSG_TURN_ERROR;
		p->code = msg_str(err, "code", &bad);
		p->message = msg_str(err, "message", &bad);
	} else
		bad = 1;
	if (stats_from_json(&p->stats, cJSON_GetObjectItemCaseSensitive(
	    p->json, "stats")) == -1)
		bad = 1;
	p->exiting = msg_bool(p->json, "exiting", &bad);
	p->retry = msg_bool(p->json, "retry", &bad);
	if (bad)
		stats_clear(&p->stats);
	return msg_decoded(&p->json, bad);
}

void
msg_turn_end_clear(struct msg_turn_end *p)
{
	stats_clear(&p->stats);
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_cli_session_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_cli_session *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "cli_session_id", p->cli_session_id);
	msg_compose_obj(out, MSG_CLI_SESSION, turn, o);
}

int
msg_cli_session_decode(const struct msg *m, struct msg_cli_session *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_CLI_SESSION)) == NULL)
		return -1;
	p->cli_session_id = msg_str(p->json, "cli_session_id", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_cli_session_clear(struct msg_cli_session *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_cli_exit_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_cli_exit *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "status", p->status);
	cJSON_AddNumberToObject(o, "signal", p->signal);
	cJSON_AddStringToObject(o, "stderr", p->stderr_tail);
	msg_compose_obj(out, MSG_CLI_EXIT, turn, o);
}

int
msg_cli_exit_decode(const struct msg *m, struct msg_cli_exit *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_CLI_EXIT)) == NULL)
		return -1;
	p->status = (int)msg_num(p->json, "status", -1, 255, &bad);
	p->signal = (int)msg_num(p->json, "signal", 0, 255, &bad);
	p->stderr_tail = msg_str(p->json, "stderr", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_cli_exit_clear(struct msg_cli_exit *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_approval_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_approval *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "request_id", p->request_id);
	cJSON_AddBoolToObject(o, "pending", p->pending);
	msg_compose_obj(out, MSG_APPROVAL, turn, o);
}

int
msg_approval_decode(const struct msg *m, struct msg_approval *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_APPROVAL)) == NULL)
		return -1;
	p->request_id = msg_str(p->json, "request_id", &bad);
	p->pending = msg_bool(p->json, "pending", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_approval_clear(struct msg_approval *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_permission_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_permission *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "request_id", p->request_id);
	cJSON_AddBoolToObject(o, "allow", p->allow);
	if (p->message != NULL)
		cJSON_AddStringToObject(o, "message", p->message);
	if (p->updated_input != NULL)
		cJSON_AddItemToObject(o, "updated_input",
		    cJSON_Duplicate(p->updated_input, 1));
	msg_compose_obj(out, MSG_PERMISSION, turn, o);
}

int
msg_permission_decode(const struct msg *m, struct msg_permission *p)
{
	const cJSON	*v;
	int		 bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_PERMISSION)) == NULL)
		return -1;
	p->request_id = msg_str(p->json, "request_id", &bad);
	p->allow = msg_bool(p->json, "allow", &bad);
	if ((v = cJSON_GetObjectItemCaseSensitive(p->json, "message")) != NULL)
		p->message = msg_str(p->json, "message", &bad);
	v = cJSON_GetObjectItemCaseSensitive(p->json, "updated_input");
	if (v != NULL && !cJSON_IsObject(v))
		bad = 1;
	p->updated_input = v;
	return msg_decoded(&p->json, bad);
}

void
msg_permission_clear(struct msg_permission *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_configure_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_configure *p)
{
	cJSON	*o = cJSON_CreateObject();

	if (p->model != NULL)
		cJSON_AddStringToObject(o, "model", p->model);
	if (p->permission_mode != NULL)
		cJSON_AddStringToObject(o, "permission_mode",
		    p->permission_mode);
	msg_compose_obj(out, MSG_CONFIGURE, turn, o);
}

int
msg_configure_decode(const struct msg *m, struct msg_configure *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_CONFIGURE)) == NULL)
		return -1;
	if (cJSON_GetObjectItemCaseSensitive(p->json, "model") != NULL)
		p->model = msg_str(p->json, "model", &bad);
	if (cJSON_GetObjectItemCaseSensitive(p->json, "permission_mode") != NULL)
		p->permission_mode = msg_str(p->json, "permission_mode", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_configure_clear(struct msg_configure *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

void
msg_configured_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_configured *p)
{
	cJSON	*o = cJSON_CreateObject();

	cJSON_AddBoolToObject(o, "ok", p->ok);
	cJSON_AddStringToObject(o, "message", p->message != NULL ?
	    p->message : "");
	msg_compose_obj(out, MSG_CONFIGURED, turn, o);
}

int
msg_configured_decode(const struct msg *m, struct msg_configured *p)
{
	int	bad = 0;

	memset(p, 0, sizeof *p);
	if ((p->json = msg_decode_obj(m, MSG_CONFIGURED)) == NULL)
		return -1;
	p->ok = msg_bool(p->json, "ok", &bad);
	p->message = msg_str(p->json, "message", &bad);
	return msg_decoded(&p->json, bad);
}

void
msg_configured_clear(struct msg_configured *p)
{
	cJSON_Delete(p->json);
	memset(p, 0, sizeof *p);
}

/* --- transcripts ------------------------------------------------------- */

#define MSG_TRANSCRIPT_DIR	"projects/"
#define MSG_TRANSCRIPT_EXT	".jsonl"
#define MSG_TRANSCRIPT_META	".meta.json"	/* a subagent's, rewritten */
#define MSG_TRANSCRIPT_AGENT	"/subagents/agent-"
#define MSG_TRANSCRIPT_KEY_MAX	255	/* a file name's bound */
#define MSG_TRANSCRIPT_ID_MAX	64

/* n bytes of [A-Za-z0-9-] (the CLI's cwd keys and session ids), n > 0. */
static int
msg_transcript_word(const char *s, size_t n)
{
	size_t	i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return 0;
	return 1;
}

/* The length of s before ext when s ends with it (and more), else 0. */
static size_t
msg_transcript_stem(const char *s, const char *ext)
{
	size_t	n = strlen(s), e = strlen(ext);

	return n > e && strcmp(s + n - e, ext) == 0 ? n - e : 0;
}

/* "<id>.jsonl" or "<id>/subagents/agent-<agent>.(jsonl|meta.json)". */
static int
msg_transcript_name_ok(const char *id)
{
	const char	*slash, *agent;
	size_t		 n;

	if ((slash = strchr(id, '/')) == NULL) {
		n = msg_transcript_stem(id, MSG_TRANSCRIPT_EXT);
		return n <= MSG_TRANSCRIPT_ID_MAX && msg_transcript_word(id, n);
	}
	if ((size_t)(slash - id) > MSG_TRANSCRIPT_ID_MAX ||
	    !msg_transcript_word(id, (size_t)(slash - id)) ||
	    strncmp(slash, MSG_TRANSCRIPT_AGENT,
	    strlen(MSG_TRANSCRIPT_AGENT)) != 0)
		return 0;
	agent = slash + strlen(MSG_TRANSCRIPT_AGENT);
	if ((n = msg_transcript_stem(agent, MSG_TRANSCRIPT_META)) == 0)
		n = msg_transcript_stem(agent, MSG_TRANSCRIPT_EXT);
	return n <= MSG_TRANSCRIPT_ID_MAX && msg_transcript_word(agent, n);
}

int
msg_transcript_path_ok(const char *path)
{
	const char	*key, *slash;

	if (path == NULL || strncmp(path, MSG_TRANSCRIPT_DIR,
	    strlen(MSG_TRANSCRIPT_DIR)) != 0)
		return 0;
	key = path + strlen(MSG_TRANSCRIPT_DIR);
	if ((slash = strchr(key, '/')) == NULL ||
	    (size_t)(slash - key) > MSG_TRANSCRIPT_KEY_MAX ||
	    !msg_transcript_word(key, (size_t)(slash - key)))
		return 0;
	return msg_transcript_name_ok(slash + 1);
}

int
msg_transcript_of(const char *path, const char *id)
{
	const char	*rest;
	size_t		 n = strlen(id);

	if (!msg_transcript_path_ok(path))
		return 0;
	rest = strchr(path + strlen(MSG_TRANSCRIPT_DIR), '/') + 1;
	return n > 0 && strncmp(rest, id, n) == 0 &&
	    (strcmp(rest + n, MSG_TRANSCRIPT_EXT) == 0 || rest[n] == '/');
}

int
msg_transcript_whole(const char *path)
{
	return msg_transcript_stem(path, MSG_TRANSCRIPT_META) > 0;
}

void
msg_transcript_compose(struct evbuffer *out, uint32_t turn,
    const struct msg_transcript *t)
{
	cJSON		*o = cJSON_CreateObject();
	char		*s;
	size_t		 n;
	struct msg_hdr	 h;

	if (t->len > TRANSCRIPT_PIECE_MAX)
		fatalx("msg_transcript_compose: %zu bytes", t->len);
	cJSON_AddStringToObject(o, "path", t->path);
	cJSON_AddNumberToObject(o, "offset", (double)t->offset);
	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		fatalx("msg_transcript_compose: out of memory");
	cJSON_Delete(o);
	n = strlen(s);
	/* Header, JSON line, bytes: no copy of the bytes into one buffer. */
	memset(&h, 0, sizeof h);
	h.len = (uint32_t)(n + 1 + t->len);
	h.type = MSG_TRANSCRIPT;
	h.version = MSG_VERSION;
	h.turn = turn;
	h.pid = (uint32_t)getpid();
	evbuffer_add(out, &h, sizeof h);
	evbuffer_add(out, s, n);
	evbuffer_add(out, "\n", 1);
	if (t->len > 0)
		evbuffer_add(out, t->data, t->len);
	cJSON_free(s);
}

int
msg_transcript_decode(const struct msg *m, struct msg_transcript *t)
{
	const char	*nl;
	int		 bad = 0;

	memset(t, 0, sizeof *t);
	if (m->hdr.type != MSG_TRANSCRIPT || m->data == NULL ||
	    (nl = memchr(m->data, '\n', m->hdr.len)) == NULL)
		return -1;
	if ((t->json = cJSON_ParseWithLength(m->data,
	    (size_t)(nl - m->data))) == NULL || !cJSON_IsObject(t->json)) {
		cJSON_Delete(t->json);
		t->json = NULL;
		return -1;
	}
	t->path = msg_str(t->json, "path", &bad);
	t->offset = (uint64_t)msg_num(t->json, "offset", 0,
	    TRANSCRIPT_FILE_MAX, &bad);
	t->data = nl + 1;
	t->len = m->hdr.len - (size_t)(nl + 1 - m->data);
	if (!bad && (!msg_transcript_path_ok(t->path) ||
	    t->len > TRANSCRIPT_PIECE_MAX ||
	    t->offset + t->len > TRANSCRIPT_FILE_MAX))
		bad = 1;
	return msg_decoded(&t->json, bad);
}

void
msg_transcript_clear(struct msg_transcript *t)
{
	cJSON_Delete(t->json);
	t->json = NULL;
}

void
msg_policy_compose(struct evbuffer *out, const struct msg_policy *p)
{
	cJSON		*o = cJSON_CreateObject(), *a, *f;
	char		*s;
	size_t		 i, n, total = 0;
	struct msg_hdr	 h;

	cJSON_AddNumberToObject(o, "generation", (double)p->generation);
	cJSON_AddStringToObject(o, "digest", p->digest);
	cJSON_AddNumberToObject(o, "threshold", p->threshold);
	a = cJSON_AddArrayToObject(o, "files");
	for (i = 0; i < p->nfiles; i++) {
		f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "name", p->files[i].name);
		cJSON_AddNumberToObject(f, "len", (double)p->files[i].len);
		cJSON_AddItemToArray(a, f);
		total += p->files[i].len;
	}
	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		fatalx("msg_policy_compose: out of memory");
	cJSON_Delete(o);
	n = strlen(s);
	if (n + 1 + total > MSG_MAX_PAYLOAD)
		fatalx("msg_policy_compose: %zu bytes", n + 1 + total);
	/* Header, JSON line, texts: no copy of the texts into one buffer. */
	memset(&h, 0, sizeof h);
	h.len = (uint32_t)(n + 1 + total);
	h.type = MSG_POLICY;
	h.version = MSG_VERSION;
	h.pid = (uint32_t)getpid();
	evbuffer_add(out, &h, sizeof h);
	evbuffer_add(out, s, n);
	evbuffer_add(out, "\n", 1);
	for (i = 0; i < p->nfiles; i++)
		evbuffer_add(out, p->files[i].text, p->files[i].len);
	cJSON_free(s);
}

int
msg_policy_decode(const struct msg *m, struct msg_policy *p)
{
	const cJSON	*a, *f;
	const char	*nl, *at, *end;
	int		 bad = 0;

	memset(p, 0, sizeof *p);
	if (m->hdr.type != MSG_POLICY || m->data == NULL ||
	    (nl = memchr(m->data, '\n', m->hdr.len)) == NULL)
		return -1;
	if ((p->json = cJSON_ParseWithLength(m->data,
	    (size_t)(nl - m->data))) == NULL || !cJSON_IsObject(p->json)) {
		cJSON_Delete(p->json);
		p->json = NULL;
		return -1;
	}
	p->generation = (uint64_t)msg_num(p->json, "generation", 1,
	    (double)UINT32_MAX, &bad);
	p->digest = msg_str(p->json, "digest", &bad);
	p->threshold = (int)msg_num(p->json, "threshold", 0, INT32_MAX, &bad);
	if (p->digest != NULL && strlen(p->digest) != MSG_POLICY_DIGEST_LEN)
		bad = 1;
	a = cJSON_GetObjectItemCaseSensitive(p->json, "files");
	if (!cJSON_IsArray(a))
		bad = 1;
	at = nl + 1;
	end = m->data + m->hdr.len;
	cJSON_ArrayForEach(f, a) {
		if (bad || p->nfiles == MSG_POLICY_FILES_MAX) {
			bad = 1;
			break;
		}
		p->files[p->nfiles].name = msg_str(f, "name", &bad);
		p->files[p->nfiles].len = (size_t)msg_num(f, "len", 0,
		    MSG_MAX_PAYLOAD, &bad);
		if (bad || p->files[p->nfiles].len > (size_t)(end - at)) {
			bad = 1;
			break;
		}
		p->files[p->nfiles].text = at;
		at += p->files[p->nfiles].len;
		p->nfiles++;
	}
	/* Every byte is some file's. */
	if (at != end)
		bad = 1;
	return msg_decoded(&p->json, bad);
}

void
msg_policy_clear(struct msg_policy *p)
{
	cJSON_Delete(p->json);
	p->json = NULL;
}
