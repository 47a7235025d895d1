/*
 * The tool audit: every tool call a session's CLI makes (from its tool_use
 * to its tool_result), every permission denial and every prompt the
 * firewall refused is a row of the store (store.h), with the session, its
 * owner, the turn, the tool, a digest and a bounded excerpt of the input,
 * the decision and who made it, the duration, whether it failed, the
 * files it wrote and whether it overlapped another Bash call (whose files
 * it may list too).  The rows come from the events the workers relay: only
 * the event types concerned are parsed (permission_request too: a call
 * the app answered is audited as decided by "app", with the uid).  The audit op reads them
 * back, an owner's own rows only unless an administrator asks; rows older
 * than audit_retention are removed hourly.
 */
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "common/json.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"

#define AUDIT_EXCERPT_MAX	512	/* bytes of a tool's input kept */
#define AUDIT_DETAIL_MAX	512	/* bytes of a reason or an error */
#define AUDIT_PENDING_MAX	64	/* tool calls in flight per session */
#define AUDIT_EXPIRE_S		3600	/* how often old rows are removed */
#define AUDIT_QUERY_DEFAULT	200	/* rows per audit reply */
#define AUDIT_QUERY_MAX		1000
#define AUDIT_DIGEST_HEX	(2 * 32 + 1)	/* SHA-256 */

/* A tool call between its tool_use and its tool_result. */
struct audit_call {
	char		*id;
	char		*tool;
	char		*digest;
	char		*excerpt;
	char		*files;		/* JSON array, or NULL */
	int		 observed;	/* files as the worker saw them */
	int		 overlapped;	/* ... beside another Bash call */
	char		*by;		/* who denied it, or NULL */
	char		*reason;
	char		*request_id;	/* put to the app (approvals "client") */
	int		 app;		/* the app answered it */
	long		 app_uid;	/* the client that answered */
	int64_t		 start_ms;
	uint32_t	 turn;
};

struct audit_pending {
	struct audit_call	 calls[AUDIT_PENDING_MAX];
	size_t			 n;
};

static struct event	*audit_timer;

/* At most max bytes of s, cut on a UTF-8 character boundary. */
static char *
audit_cut(const char *s, size_t max)
{
	size_t	n = strlen(s);

	if (n <= max)
		return xstrdup(s);
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return xstrndup(s, n);
}

static void
audit_digest(const char *s, char out[AUDIT_DIGEST_HEX])
{
	unsigned char	md[EVP_MAX_MD_SIZE];
	unsigned int	len = 0, i;

	out[0] = '\0';
	if (EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL) != 1 ||
	    len != 32)
		return;
	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
audit_call_clear(struct audit_call *a)
{
	free(a->id);
	free(a->tool);
	free(a->digest);
	free(a->excerpt);
	free(a->files);
	free(a->by);
	free(a->reason);
	free(a->request_id);
	memset(a, 0, sizeof *a);
}

static void
audit_write(const struct session *s, const struct store_audit *r)
{
	if (store_audit_add(r) == -1)
		log_warnx("session %s: audit row not saved", s->name);
}

/* The row of a call; removes it from the pending ones. */
static void
audit_call_end(struct session *s, size_t i, int64_t duration_ms, int error,
    const char *why)
{
	struct audit_pending	*p = s->audit;
	struct audit_call	*a = &p->calls[i];
	struct store_audit	 r;
	char			 detail[AUDIT_DETAIL_MAX + 64];

	memset(&r, 0, sizeof r);
	r.time_ms = a->start_ms;
	r.uid = s->uid;
	r.session = s->name;
	r.turn = a->turn;
	r.kind = a->by != NULL ? STORE_AUDIT_DENIAL : STORE_AUDIT_TOOL;
	r.tool = a->tool;
	r.digest = a->digest;
	r.excerpt = a->excerpt;
	r.decision = a->by != NULL ? "deny" : "allow";
	/*
	 * An allowed call passed the gate, or the CLI's own rules, or the
	 * app (approvals "client") allowed it: then the row says which uid.
	 */
	r.decided_by = a->app ? "app" : a->by != NULL ? a->by :
	    hp.conf->tool_gate ? "gate" : "cli";
	r.duration_ms = duration_ms;
	r.error = error;
	/* A failed Write wrote nothing; a failed command may have. */
	r.files = a->observed || (a->by == NULL && !error) ? a->files : NULL;
	r.overlapped = a->overlapped;
	r.detail = a->reason != NULL ? a->reason : why;
	if (a->app) {
		snprintf(detail, sizeof detail, "%s by uid %ld%s%s",
		    a->by != NULL ? "denied" : "allowed", a->app_uid,
		    r.detail != NULL && *r.detail != '\0' ? ": " : "",
		    r.detail != NULL ? r.detail : "");
		r.detail = detail;
	}
	audit_write(s, &r);
	audit_call_clear(a);
	p->calls[i] = p->calls[--p->n];
	memset(&p->calls[p->n], 0, sizeof p->calls[p->n]);
}

static ssize_t
audit_find(const struct session *s, const char *id)
{
	const struct audit_pending	*p = s->audit;
	size_t				 i;

	if (p == NULL || id == NULL)
		return -1;
	for (i = 0; i < p->n; i++)
		if (strcmp(p->calls[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

/* A new pending call; the oldest is written out when there are too many. */
static struct audit_call *
audit_call_new(struct session *s, const char *id, const char *tool)
{
	struct audit_pending	*p;
	struct audit_call	*a;

	if (s->audit == NULL)
		s->audit = xcalloc(1, sizeof *p);
	p = s->audit;
	if (p->n == AUDIT_PENDING_MAX)
		audit_call_end(s, 0, -1, 1, "no result seen");
	a = &p->calls[p->n++];
	a->id = xstrdup(id);
	a->tool = xstrdup(tool != NULL ? tool : "");
	a->start_ms = util_wall_ms();
	a->turn = s->turn;
	return a;
}

static void
audit_tool_use(struct session *s, const cJSON *d)
{
	const char		*id = json_str(d, "tool_id");
	const char		*tool = json_str(d, "name");
	const cJSON		*in = cJSON_GetObjectItemCaseSensitive(d, "input");
	const char		*path;
	struct audit_call	*a;
	char			*text, dg[AUDIT_DIGEST_HEX];
	cJSON			*files;

	ssize_t			 i;

	if (id == NULL)
		return;
	if ((i = audit_find(s, id)) == -1)
		a = audit_call_new(s, id, tool);
	else if ((a = &((struct audit_pending *)s->audit)->calls[i])->digest
	    != NULL)
		return;
	if ((text = cJSON_PrintUnformatted(in)) != NULL) {
		audit_digest(text, dg);
		a->digest = xstrdup(dg);
		a->excerpt = audit_cut(text, AUDIT_EXCERPT_MAX);
		cJSON_free(text);
	}
	if ((path = proto_tool_file(tool, in)) != NULL) {
		files = cJSON_CreateArray();
		cJSON_AddItemToArray(files, cJSON_CreateString(path));
		a->files = json_print(files);
		cJSON_Delete(files);
	}
}

static void
audit_denied(struct session *s, const cJSON *d)
{
	const char		*id = json_str(d, "tool_id");
	const char		*by = json_str(d, "by");
	const char		*reason = json_str(d, "reason");
	struct audit_call	*a;
	ssize_t			 i;

	if (id == NULL || *id == '\0')
		id = "(unknown)";
	if ((i = audit_find(s, id)) == -1)
		a = audit_call_new(s, id, json_str(d, "name"));
	else
		a = &((struct audit_pending *)s->audit)->calls[i];
	free(a->by);
	free(a->reason);
	a->by = xstrdup(by != NULL ? by : "cli");
	a->reason = audit_cut(reason != NULL ? reason : "", AUDIT_DETAIL_MAX);
}

/* A question put to the app: its request_id, for the app's answer. */
static void
audit_asked(struct session *s, const cJSON *d)
{
	const char		*id = json_str(d, "tool_id");
	const char		*rid = json_str(d, "request_id");
	struct audit_call	*a;
	ssize_t			 i;

	if (id == NULL || *id == '\0' || rid == NULL)
		return;
	if ((i = audit_find(s, id)) == -1)
		a = audit_call_new(s, id, json_str(d, "name"));
	else
		a = &((struct audit_pending *)s->audit)->calls[i];
	free(a->request_id);
	a->request_id = xstrdup(rid);
}

/* The app answered a question (session_op_permission): its row says so. */
void
audit_app_answer(struct session *s, const char *request_id, uid_t uid)
{
	struct audit_pending	*p = s->audit;
	size_t			 i;

	for (i = 0; p != NULL && i < p->n; i++) {
		if (p->calls[i].request_id != NULL &&
		    strcmp(p->calls[i].request_id, request_id) == 0) {
			p->calls[i].app = 1;
			p->calls[i].app_uid = (long)uid;
			return;
		}
	}
}

/*
 * The files the worker saw a Bash call change in the workdir: stored as
 * {"written":[..],"deleted":[..],"truncated":bool}, written after any path
 * the tool's input named.
 */
static void
audit_observed(struct audit_call *a, const cJSON *d)
{
	const cJSON	*wr = cJSON_GetObjectItemCaseSensitive(d,
			    "files_written");
	const cJSON	*del = cJSON_GetObjectItemCaseSensitive(d,
			    "files_deleted");
	const cJSON	*e;
	cJSON		*o, *w, *named;

	if (!cJSON_IsArray(wr) || !cJSON_IsArray(del))
		return;
	o = cJSON_CreateObject();
	w = cJSON_AddArrayToObject(o, "written");
	named = a->files != NULL ? cJSON_Parse(a->files) : NULL;
	cJSON_ArrayForEach(e, named)
		if (cJSON_IsString(e))
			cJSON_AddItemToArray(w, cJSON_CreateString(
			    e->valuestring));
	cJSON_Delete(named);
	cJSON_ArrayForEach(e, wr)
		if (cJSON_IsString(e))
			cJSON_AddItemToArray(w, cJSON_CreateString(
			    e->valuestring));
	cJSON_AddItemToObject(o, "deleted", cJSON_Duplicate(del, 1));
	cJSON_AddBoolToObject(o, "truncated", cJSON_IsTrue(
	    cJSON_GetObjectItemCaseSensitive(d, "files_truncated")));
	free(a->files);
	a->files = json_print(o);
	a->observed = 1;
	a->overlapped = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d,
	    "overlapped"));
	cJSON_Delete(o);
}

static void
audit_tool_result(struct session *s, const cJSON *d)
{
	const cJSON	*ms = cJSON_GetObjectItemCaseSensitive(d, "duration_ms");
	const char	*out = json_str(d, "output");
	int		 err = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d,
			    "is_error"));
	char		*why = NULL;
	ssize_t		 i;

	if ((i = audit_find(s, json_str(d, "tool_id"))) == -1)
		return;
	audit_observed(&((struct audit_pending *)s->audit)->calls[i], d);
	if (err && out != NULL)
		why = audit_cut(out, AUDIT_DETAIL_MAX);
	audit_call_end(s, (size_t)i, cJSON_IsNumber(ms) ?
	    (int64_t)ms->valuedouble : -1, err, why);
	free(why);
}

/*
 * An event relayed to the session's client: `"type":..,"data":{..}}` (the
 * object's text after its '{').  Only tool events are parsed.
 */
void
audit_event(struct session *s, const char *tail, size_t len)
{
	static const char tu[] = "\"type\":\"tool_use\"";
	static const char tr[] = "\"type\":\"tool_result\"";
	static const char pd[] = "\"type\":\"permission_denied\"";
	static const char pr[] = "\"type\":\"permission_request\"";
	const cJSON	*d;
	cJSON		*o;

	if (!json_tail_is(tail, len, tu) && !json_tail_is(tail, len, tr) &&
	    !json_tail_is(tail, len, pd) && !json_tail_is(tail, len, pr))
		return;
	o = json_tail_parse(tail, len);
	d = cJSON_GetObjectItemCaseSensitive(o, "data");
	if (cJSON_IsObject(d)) {
		if (json_tail_is(tail, len, tu))
			audit_tool_use(s, d);
		else if (json_tail_is(tail, len, tr))
			audit_tool_result(s, d);
		else if (json_tail_is(tail, len, pr))
			audit_asked(s, d);
		else
			audit_denied(s, d);
	}
	cJSON_Delete(o);
}

/* The turn is over: calls without a result are written as such. */
void
audit_turn_end(struct session *s)
{
	struct audit_pending	*p = s->audit;

	while (p != NULL && p->n > 0)
		audit_call_end(s, 0, -1, p->calls[0].by == NULL,
		    "no result before the turn ended");
}

void
audit_session_free(struct session *s)
{
	struct audit_pending	*p = s->audit;
	size_t			 i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++)
		audit_call_clear(&p->calls[i]);
	free(p);
	s->audit = NULL;
}

/* A prompt the firewall refused. */
void
audit_firewall(struct session *s, const char *prompt,
    const struct policy_verdict *v)
{
	struct store_audit	 r;
	char			 dg[AUDIT_DIGEST_HEX], *ex, detail[256];

	audit_digest(prompt, dg);
	ex = audit_cut(prompt, AUDIT_EXCERPT_MAX);
	snprintf(detail, sizeof detail, "rule %s (%s), score %d",
	    v->nmatches > 0 ? v->matches[0].rule : "?",
	    v->nmatches > 0 ? v->matches[0].category : "?", v->score);
	memset(&r, 0, sizeof r);
	r.time_ms = util_wall_ms();
	r.uid = s->uid;
	r.session = s->name;
	r.turn = s->turn;
	r.kind = STORE_AUDIT_FIREWALL;
	r.digest = dg;
	r.excerpt = ex;
	r.decision = "block";
	r.decided_by = "firewall";
	r.duration_ms = -1;
	r.detail = detail;
	audit_write(s, &r);
	free(ex);
}

/* --- retention ---------------------------------------------------------- */

static void
audit_expire(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	tv = { AUDIT_EXPIRE_S, 0 };
	long		n;

	if (hp.conf->audit_retention_ms > 0) {
		n = store_audit_expire(util_wall_ms() -
		    (int64_t)hp.conf->audit_retention_ms);
		if (n > 0)
			log_info("audit: %ld rows older than %llu ms removed", n,
			    (unsigned long long)hp.conf->audit_retention_ms);
	}
	evtimer_add(audit_timer, &tv);
}

void
audit_init(void)
{
	if ((audit_timer = evtimer_new(hp.base, audit_expire, NULL)) == NULL)
		fatalx("audit: evtimer_new");
	event_priority_set(audit_timer, HP_PRIO_BULK);
	audit_expire(-1, 0, NULL);
}

void
audit_stop(void)
{
	if (audit_timer != NULL)
		event_free(audit_timer);
	audit_timer = NULL;
}

/* --- the audit op ------------------------------------------------------- */

static int
audit_row_json(void *arg, int64_t id, const struct store_audit *r)
{
	cJSON	*a = arg, *o = cJSON_CreateObject(), *f, *w, *del;

	cJSON_AddNumberToObject(o, "id", (double)id);
	cJSON_AddNumberToObject(o, "time_ms", (double)r->time_ms);
	cJSON_AddNumberToObject(o, "uid", (double)r->uid);
	cJSON_AddStringToObject(o, "session", r->session);
	cJSON_AddNumberToObject(o, "turn", r->turn);
	cJSON_AddStringToObject(o, "kind", r->kind);
#define AUDIT_STR(k, v)	do {						\
	if ((v) != NULL)						\
		cJSON_AddStringToObject(o, k, v);			\
	else								\
		cJSON_AddNullToObject(o, k);				\
} while (0)
	AUDIT_STR("tool", r->tool);
	AUDIT_STR("digest", r->digest);
	AUDIT_STR("excerpt", r->excerpt);
	AUDIT_STR("decision", r->decision);
	AUDIT_STR("decided_by", r->decided_by);
#undef AUDIT_STR
	/* A shared store: the host whose session wrote it. */
	if (r->host_id != NULL)
		cJSON_AddStringToObject(o, "host_id", r->host_id);
	if (r->duration_ms >= 0)
		cJSON_AddNumberToObject(o, "duration_ms",
		    (double)r->duration_ms);
	else
		cJSON_AddNullToObject(o, "duration_ms");
	cJSON_AddBoolToObject(o, "error", r->error);
	/* A JSON array of the paths named, or what audit_observed keeps. */
	f = r->files != NULL ? cJSON_Parse(r->files) : NULL;
	w = cJSON_IsObject(f) ? cJSON_DetachItemFromObjectCaseSensitive(f,
	    "written") : NULL;
	del = cJSON_IsObject(f) ? cJSON_DetachItemFromObjectCaseSensitive(f,
	    "deleted") : NULL;
	cJSON_AddItemToObject(o, "files", cJSON_IsArray(f) ? f :
	    cJSON_IsArray(w) ? w : cJSON_CreateArray());
	cJSON_AddItemToObject(o, "files_deleted", cJSON_IsArray(del) ? del :
	    cJSON_CreateArray());
	cJSON_AddBoolToObject(o, "files_truncated", cJSON_IsObject(f) &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "truncated")));
	cJSON_AddBoolToObject(o, "overlapped", r->overlapped);
	if (!cJSON_IsArray(f))
		cJSON_Delete(f);
	if (!cJSON_IsArray(w))
		cJSON_Delete(w);
	if (!cJSON_IsArray(del))
		cJSON_Delete(del);
	if (r->detail != NULL)
		cJSON_AddStringToObject(o, "detail", r->detail);
	else
		cJSON_AddNullToObject(o, "detail");
	cJSON_AddItemToArray(a, o);
	return 0;
}

/*
 * {"op":"audit", "session"?, "since_ms"?, "after_id"?, "limit"?}: rows in
 * id order.  A client sees its own sessions' rows; an administrator all.
 */
void
audit_op(struct client *c, const char *req, const cJSON *r)
{
	const cJSON			*v;
	struct store_audit_query	 q;
	cJSON				*d, *rows;
	int				 n;

	memset(&q, 0, sizeof q);
	q.limit = AUDIT_QUERY_DEFAULT;
	q.any_uid = c->admin;
	q.uid = c->uid;
	if ((v = cJSON_GetObjectItemCaseSensitive(r, "session")) != NULL) {
		if (!cJSON_IsString(v) || !proto_valid_session(v->valuestring)) {
			server_client_error(c, req, NULL, ERR_BAD_REQUEST,
			    "\"session\" must be a session name");
			return;
		}
		q.session = v->valuestring;
	}
#define AUDIT_NUM(k, dst, lo, hi) do {					\
	if ((v = cJSON_GetObjectItemCaseSensitive(r, k)) != NULL) {	\
		if (!cJSON_IsNumber(v) || v->valuedouble < (lo) ||	\
		    v->valuedouble > (hi)) {				\
			server_client_error(c, req, NULL,		\
			    ERR_BAD_REQUEST, "\"%s\" must be a number "	\
			    "in %.0f..%.0f", k, (double)(lo), (double)(hi)); \
			return;						\
		}							\
		dst = v->valuedouble;					\
	}								\
} while (0)
	AUDIT_NUM("since_ms", q.since_ms, 0, 9007199254740991.0);
	AUDIT_NUM("after_id", q.after_id, 0, 9007199254740991.0);
	AUDIT_NUM("limit", q.limit, 1, AUDIT_QUERY_MAX);
#undef AUDIT_NUM
	if (!store_is_open()) {
		server_client_error(c, req, NULL, ERR_INTERNAL,
		    "the store is not available");
		return;
	}
	rows = cJSON_CreateArray();
	if ((n = store_audit_query(&q, audit_row_json, rows)) == -1) {
		cJSON_Delete(rows);
		server_client_error(c, req, NULL, ERR_INTERNAL,
		    "the audit could not be read");
		return;
	}
	d = cJSON_CreateObject();
	cJSON_AddItemToObject(d, "rows", rows);
	cJSON_AddBoolToObject(d, "more", n == q.limit);
	server_client_reply(c, req, "audit", d);
}
