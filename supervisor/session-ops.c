/*
 * The client ops on sessions: each request parsed, checked and answered
 * (execute, open, interrupt, stop, reset, stats, sessions, configure,
 * permission, policy_check), and the executes queued behind a turn.
 */

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/mcp.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"
#include "supervisor/census.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"
#include "supervisor/screen.h"
#include "supervisor/session.h"

#define SESSION_PROMPT_MAX	(16U * 1024 * 1024)
#define SESSION_TIMEOUT_MAX_MS	(7.0 * 24 * 3600 * 1000)	/* a week */
#define SESSION_MAX_TURNS_MAX	10000
#define SESSION_OPT_STR_MAX	(64 * 1024)	/* model, system prompt, ... */
#define SESSION_TOOLS_MAX	64
#define SESSION_BUDGET_MAX_USD	1000000	/* max_budget_usd, a sanity bound */

/* Looks a session up for an op; replies not_found itself. */
struct session *
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

/*
 * lease_take()'s or lease_adopt()'s refusal (rc 1 or -1) to the client;
 * or, another host holding the session, the request waits while that
 * host is asked to let it go (move.c), to run op again.
 */
static void
session_lease_refused(struct client *c, const char *req, const cJSON *r,
    move_op_fn op, uid_t uid, const char *name, int rc, const char *why)
{
	if (rc == 1 && move_ask(c, req, r, op, uid, name, lease_holder()))
		return;
	server_client_error(c, req, name, rc == 1 ? ERR_SESSION_ELSEWHERE :
	    ERR_STORE_UNAVAILABLE, "%s", why);
}

/*
 * One more live session here would pass max_sessions (or the client's
 * max_sessions_per_uid): refused with capacity, 1.  Asked before a
 * session is made, brought back from ended, or taken from another host.
 */
static int
session_full(struct client *c, const char *req, const char *name)
{
	if (census_live() >= (size_t)hp.conf->max_sessions) {
		server_client_error(c, req, name, ERR_CAPACITY,
		    "max_sessions (%d) reached", hp.conf->max_sessions);
		return 1;
	}
	if (hp.conf->max_sessions_per_uid > 0 && !c->admin &&
	    census_live_uid(c->uid) >=
	    (size_t)hp.conf->max_sessions_per_uid) {
		server_client_error(c, req, name, ERR_CAPACITY,
		    "max_sessions_per_uid (%d) reached for uid %ld",
		    hp.conf->max_sessions_per_uid, (long)c->uid);
		return 1;
	}
	return 0;
}

/* A session being let go to another host takes no new request here. */
static int
session_moving(struct client *c, const char *req, struct session *s)
{
	if (s->move_to == NULL)
		return 0;
	if (*s->move_to == '\0') {
		server_client_error(c, req, s->name, ERR_DRAINING,
		    "this host is draining: session \"%s\" goes dormant "
		    "(send its next turn to another host)", s->name);
		return 1;
	}
	server_client_error(c, req, s->name, ERR_SESSION_MOVED,
	    "session \"%s\" is moving to host %s", s->name, s->move_to);
	return 1;
}

/*
 * session_lookup() for an op that serves the session here (attach): with a
 * shared store, a session the table lacks is taken from the store if no
 * other host holds it, and one another host holds is refused.
 */
struct session *
session_lookup_served(struct client *c, const char *req, const cJSON *r)
{
	const char	*name = json_str(r, "session");
	struct session	*s = NULL;
	char		 why[256];
	uid_t		 owner;
	int		 rc;

	if (hp.draining) {
		server_client_error(c, req, name, ERR_DRAINING,
		    "this host is draining: it takes no session (send the "
		    "request to another host)");
		return NULL;
	}
	if (name != NULL && proto_valid_session(name) && store_shared()) {
		if (session_owner(c, req, r, &owner) == -1)
			return NULL;
		/* Not here: taken from the store, it counts here. */
		if ((s = session_find(name, owner)) == NULL &&
		    session_full(c, req, name))
			return NULL;
		if (s == NULL &&
		    (rc = lease_adopt(owner, name, &s, why, sizeof why)) != 0) {
			session_lease_refused(c, req, r, session_op_attach,
			    owner, name, rc, why);
			return NULL;
		}
	}
	if ((s = session_lookup(c, req, r)) == NULL)
		return NULL;
	if (session_moving(c, req, s))
		return NULL;
	if (s->state != SESSION_ENDED &&
	    (rc = lease_take(s, why, sizeof why)) != 0) {
		session_lease_refused(c, req, r, session_op_attach, s->uid,
		    s->name, rc, why);
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

/*
 * Validates options and workdir; creates the session if new.  op: the
 * request's, run again if it waits for another host (move.c).
 */
static struct session *
session_prepare(struct client *c, const char *req, const cJSON *r,
    move_op_fn op)
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
	if (hp.draining) {
		server_client_error(c, req, name, ERR_DRAINING,
		    "this host is draining: it takes no session (send the "
		    "request to another host)");
		return NULL;
	}
	if (session_owner(c, req, r, &owner) == -1)
		return NULL;
	/*
	 * A shared store: the session may be in another host's last rows.
	 * Taken from there, or made, it counts here: bounded first.
	 */
	if ((s = session_find(name, owner)) == NULL &&
	    store_shared() && session_full(c, req, name))
		return NULL;
	if (s == NULL &&
	    (rc = lease_adopt(owner, name, &s, why, sizeof why)) != 0) {
		session_lease_refused(c, req, r, op, owner, name, rc, why);
		return NULL;
	}
	if (s != NULL) {
		if (!session_visible(s, c)) {
			server_client_error(c, req, name, ERR_NOT_FOUND,
			    "no session \"%s\"", name);
			return NULL;
		}
		if (session_moving(c, req, s))
			return NULL;
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
			session_lease_refused(c, req, r, op, owner, name, rc,
			    why);
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
	if (session_full(c, req, name))
		return NULL;
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
		session_lease_refused(c, req, r, op, owner, name, rc, why);
		free(def);
		session_forget(s);
		return NULL;
	}
	s->run = run;
	s->run_known = 1;
	session_run_count(s);
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
	if (session_queued() < hp.conf->max_spawn_queue)
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
int
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

/* The audit line, the counts and the danger_block event of a refusal. */
static void
session_screen_refused(struct session *s, uid_t uid, pid_t pid,
    const char *prompt, const struct policy_verdict *v)
{
	cJSON	*d;

	screen_audit(uid, pid, s->name, v);
	audit_firewall(s, prompt, v);
	s->total.danger_blocks++;
	hp.all_total.danger_blocks++;
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "rule", v->nmatches ? v->matches[0].rule : "");
	cJSON_AddStringToObject(d, "category",
	    v->nmatches ? v->matches[0].category : "");
	cJSON_AddNumberToObject(d, "severity",
	    v->nmatches ? v->matches[0].severity : 0);
	cJSON_AddNumberToObject(d, "score", v->score);
	cJSON_AddStringToObject(d, "excerpt", v->excerpt);
	cJSON_AddStringToObject(d, "reason",
	    v->nmatches ? v->matches[0].message : "input refused");
	cJSON_AddItemToObject(d, "matches", policy_verdict_json(v));
	session_emit(s, "danger_block", d);
}

static const char *
session_screen_why(const struct policy_verdict *v)
{
	return v->nmatches ? v->matches[0].message :
	    "prompt refused by the firewall";
}

/* 1 if sc's rules refuse the prompt (v says why). */
static int
session_screen_check(const struct session *s, const struct screen *sc,
    const char *prompt, struct policy_verdict *v)
{
	if (sc->policy == NULL)
		return 0;
	policy_check(sc->policy, POLICY_PROMPT, prompt, strlen(prompt),
	    sc->threshold, v);
	if (!v->blocked && v->nmatches > 0)
		log_info("firewall: session %s prompt passed with score %d (%s)",
		    s->name, v->score, v->matches[0].rule);
	return v->blocked;
}

/*
 * The firewall on the prompt: blocked, it answers danger_block and
 * error danger_blocked (the execute's lines) and writes an audit line.
 * Passed, the turn remembers which rules passed it (session_rescreen).
 */
static int
session_screen(struct client *c, uid_t uid, pid_t pid, const char *req,
    struct session *s, const char *prompt)
{
	struct policy_verdict	 v;
	cJSON			*d;
	/* Its worker's rules; without one, those its next worker gets. */
	const struct screen	*sc = s->worker != NULL && s->screen != NULL ?
				    s->screen : hp.screen;

	if (!session_screen_check(s, sc, prompt, &v)) {
		s->cur.screened = sc->generation;
		return 0;
	}
	session_waiter_set(&s->exec, c, req);
	session_prefix(s, req);
	session_screen_refused(s, uid, pid, prompt, &v);
	d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "code", ERR_DANGER_BLOCKED);
	cJSON_AddStringToObject(d, "message", session_screen_why(&v));
	session_emit(s, "error", d);
	session_waiter_clear(&s->exec);
	free(s->cur.prefix);
	s->cur.prefix = NULL;
	state_session_save(s);
	return -1;
}

/*
 * A worker was assigned (session_assign): its rules are the session's
 * from now on.  A prompt waiting for it that other rules passed (a reload
 * came between the screening and the assignment, or a retry's new worker
 * got newer rules) is screened again with these, so that a session's
 * prompts always meet the rules its tool calls meet.  Refused, its turn
 * ends with danger_block and error danger_blocked; the open goes on.
 */
void
session_rescreen(struct session *s)
{
	struct policy_verdict	 v;
	struct client		*c = s->exec.c;

	if (s->cur.pending_prompt == NULL || s->screen == NULL ||
	    s->cur.screened == s->screen->generation)
		return;
	log_info("session %s: its prompt passed rules generation %llu, its "
	    "worker has %llu: screened again", s->name,
	    (unsigned long long)s->cur.screened,
	    (unsigned long long)s->screen->generation);
	s->cur.screened = s->screen->generation;
	if (!session_screen_check(s, s->screen, s->cur.pending_prompt, &v))
		return;
	session_screen_refused(s, c != NULL ? c->uid : s->uid,
	    c != NULL ? c->pid : 0, s->cur.pending_prompt, &v);
	session_turn_fail(s, ERR_DANGER_BLOCKED, session_screen_why(&v));
	/* Nobody waited for it: it does not run either. */
	free(s->cur.pending_prompt);
	s->cur.pending_prompt = NULL;
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
	/* A request that waited for another host counts from its arrival. */
	s->cur.request_us = util_now_us() - move_waited_us();
	s->cur.move_us = move_waited_us();
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
	case SESSION_STOPPING:
		/* An idle stop waiting its turn (pool.c) is waited for now. */
		if (s->worker != NULL)
			pool_worker_stop(s->worker, s->turn);
		break;		/* begins after the stop */
	case SESSION_STARTING:
		break;		/* begins when the CLI is up */
	default:
		session_assign(s);
		break;
	}
}

static void
session_turnq_free(struct queued_turn *q)
{
	session_waiter_clear(&q->w);
	free(q->prompt);
	free(q);
}

/* Ends every queued execute of s with an error line (no seq: none ran). */
void
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
	server_client_send(c, o);
}

/* The session's turn ended: the head of its queue starts. */
void
session_turnq_run(evutil_socket_t fd, short what, void *arg)
{
	struct session		*s = arg;
	struct queued_turn	*q;

	/* Another host asked for it: let go once no turn runs. */
	if (s->move_to != NULL && !session_running(s) && !s->cli_own) {
		move_release(s);	/* may free s */
		return;
	}
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
	if ((s = session_prepare(c, req, r, session_op_execute)) == NULL)
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

	if ((s = session_prepare(c, req, r, session_op_open)) == NULL)
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
	/* A request that waited for another host counts from its arrival. */
	s->cur.request_us = util_now_us() - move_waited_us();
	s->cur.move_us = move_waited_us();
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
	session_stopping(s, SESSION_STOP_MSG);	/* stop_final set above */
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
	if (s->worker != NULL && s->state != SESSION_STOPPING)
		session_stopping(s, SESSION_STOP_MSG | SESSION_STOP_DORMANT);
	server_client_ok(c, req, NULL);
}

/* Sums across hosts (a shared store): what this host does not serve. */
struct session_stats_sum {
	struct client	*c;
	struct stats	*sum;
	int		 n;
	int		 bad;		/* rows whose stats did not parse */
};

/*
 * A row of a session this host does not serve (those it serves come from
 * memory; one it lost or let go may be older here than its row).
 */
static void
session_stats_row(void *arg, const struct store_session *r)
{
	struct session_stats_sum	*ss = arg;
	struct session			*s = session_find(r->name, r->uid);
	struct stats			 st;
	cJSON				*j;

	if ((s != NULL && s->lease_fence != 0) ||
	    (!ss->c->admin && r->uid != ss->c->uid))
		return;
	stats_init(&st);
	if ((j = cJSON_Parse(r->stats)) == NULL ||
	    stats_from_json(&st, j) == -1)
		ss->bad++;
	else {
		stats_add(ss->sum, &st);
		ss->n++;
	}
	cJSON_Delete(j);
	stats_clear(&st);
}

/* Another host's forgotten sessions (this host's are in memory). */
static void
session_stats_totals(void *arg, const char *host_id, const char *json)
{
	struct session_stats_sum	*ss = arg;
	struct stats			 st;
	cJSON				*j;

	if (strcmp(host_id, state_host_id()) == 0)
		return;
	stats_init(&st);
	if ((j = cJSON_Parse(json)) == NULL || stats_from_json(&st, j) == -1)
		ss->bad++;
	else
		stats_add(ss->sum, &st);
	cJSON_Delete(j);
	stats_clear(&st);
}

void
session_op_stats(struct client *c, const char *req, const cJSON *r)
{
	struct session	*s;
	struct stats	 sum;
	struct gateway_stats gsum;
	struct session_stats_sum ss;
	cJSON		*d;
	int		 n = 0, partial = 0, rows = 0;
	int		 shared = store_shared();

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
	/*
	 * A shared store: every host's sessions, from their rows (written
	 * at every turn's end), and for an administrator every host's
	 * forgotten ones.  Without the store, this host's alone, said so.
	 */
	memset(&ss, 0, sizeof ss);
	ss.c = c;
	ss.sum = &sum;
	if (shared) {
		if ((rows = store_sessions_stats(session_stats_row, &ss)) == -1)
			partial = 1;
		if (rows == 1 || ss.bad > 0 || (c->admin &&
		    store_totals_all(session_stats_totals, &ss) == -1))
			partial = 1;
	}
	TAILQ_FOREACH(s, &hp.sessions, entry) {
		if (!session_visible(s, c) ||
		    (shared && rows != -1 && s->lease_fence == 0))
			continue;
		stats_add(&sum, &s->total);
		server_gateway_stats_add(&gsum, &s->gw);
		n++;
	}
	n += ss.n;
	d = stats_to_json(&sum);
	/* An administrator sees the account's: every request it paid for. */
	server_gateway_stats_json(c->admin ? server_gateway_account() : &gsum,
	    d);
	cJSON_AddNumberToObject(d, "sessions", n);
	cJSON_AddNumberToObject(d, "workers", pool_count());
	cJSON_AddNumberToObject(d, "spares", pool_spares());
	if (shared) {
		cJSON_AddStringToObject(d, "host_id", state_host_id());
		cJSON_AddBoolToObject(d, "partial", partial);
	}
	stats_clear(&sum);
	server_client_reply(c, req, "stats", d);
}

struct session_others {
	struct client	*c;
	cJSON		*a;
};

/*
 * A row of the shared store this host does not serve: elsewhere (another
 * host holds its lease; host_id is that host), dormant (no one does;
 * host_id wrote it last) or ended.
 */
static void
session_others_add(void *arg, const struct store_session *r)
{
	struct session_others	*so = arg;
	cJSON			*o;

	if (session_find(r->name, r->uid) != NULL ||
	    (!so->c->admin && r->uid != so->c->uid))
		return;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "session", r->name);
	cJSON_AddStringToObject(o, "state", r->ended ? "ended" :
	    r->holder != NULL ? "elsewhere" : "dormant");
	cJSON_AddNumberToObject(o, "uid", r->uid);
	cJSON_AddStringToObject(o, "host_id", r->holder != NULL ? r->holder :
	    r->host_id);
	cJSON_AddStringToObject(o, "workdir", r->workdir);
	cJSON_AddStringToObject(o, "cli_session_id", r->cli_session_id);
	cJSON_AddItemToArray(so->a, o);
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
		/* Several hosts: which one this list (and session) is on. */
		if (store_shared())
			cJSON_AddStringToObject(o, "host_id", state_host_id());
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
		/* The rules its worker and its prompts are screened with. */
		cJSON_AddNumberToObject(o, "policy_generation",
		    s->worker != NULL && s->screen != NULL ?
		    (double)s->screen->generation : 0);
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
	/* A shared store: the sessions other hosts serve or last served. */
	if (store_shared()) {
		struct session_others	so = { c, a };

		store_sessions_all(session_others_add, &so);
	}
	server_client_reply(c, req, "sessions", a);
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
void
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
