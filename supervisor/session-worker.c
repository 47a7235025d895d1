/*
 * A session's worker: the open message it is given, and the interpreter
 * of what it sends back (OPENED, events, TURN_END, CLI exits, approvals),
 * to the end of the worker.
 */
#include <sys/wait.h>

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "policy/sandbox/sandbox.h"
#include "supervisor/hotplexd.h"
#include "supervisor/store.h"
#include "supervisor/screen.h"
#include "supervisor/session.h"

/* The worker put a question to the app (pending), or it is settled. */
static void
session_worker_approval(struct session *s, const struct msg_approval *ap)
{
	if (strlen(ap->request_id) > PROTO_ID_MAX)
		return;
	session_approval_remove(s, ap->request_id);
	if (ap->pending && s->napprovals < SESSION_APPROVALS_MAX)
		s->approvals[s->napprovals++] = xstrdup(ap->request_id);
}

cJSON *
session_open_msg(struct session *s, int probe)
{
	cJSON	*o = cJSON_CreateObject(), *a, *g;
	char	 path[PATH_MAX];
	size_t	 i;

	cJSON_AddStringToObject(o, "session", s->name);
	cJSON_AddStringToObject(o, "workdir", s->workdir);
	a = cJSON_AddArrayToObject(o, "workdir_roots");
	for (i = 0; i < hp.conf->workdir_root.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->workdir_root.v[i]));
	/* Who the worker becomes, and the private dirs it makes first. */
	a = cJSON_AddObjectToObject(o, "identity");
	cJSON_AddNumberToObject(a, "uid", s->run.uid);
	cJSON_AddNumberToObject(a, "gid", s->run.gid);
	cJSON_AddBoolToObject(a, "unprivileged", s->run.unprivileged_daemon);
	g = cJSON_AddArrayToObject(a, "groups");
	for (i = 0; i < s->run.ngroups; i++)
		cJSON_AddItemToArray(g, cJSON_CreateNumber(s->run.groups[i]));
	a = cJSON_AddObjectToObject(o, "dirs");
	g = cJSON_AddArrayToObject(a, "parents");
	cJSON_AddItemToArray(g, cJSON_CreateString(hp.conf->state_dir));
	snprintf(path, sizeof path, UTIL_HOME_PARENT, hp.conf->state_dir);
	cJSON_AddItemToArray(g, cJSON_CreateString(path));
	snprintf(path, sizeof path, UTIL_HOME_OWNER, hp.conf->state_dir,
	    (unsigned)s->uid);
	cJSON_AddItemToArray(g, cJSON_CreateString(path));
	snprintf(path, sizeof path, UTIL_TMPDIR_PARENT, hp.conf->state_dir);
	cJSON_AddItemToArray(g, cJSON_CreateString(path));
	snprintf(path, sizeof path, UTIL_HOME_FMT, hp.conf->state_dir,
	    (unsigned)s->uid, s->name);
	cJSON_AddStringToObject(a, "home", path);
	snprintf(path, sizeof path, UTIL_TMPDIR_FMT, hp.conf->state_dir,
	    (unsigned)s->uid, s->name);
	cJSON_AddStringToObject(a, "tmpdir", path);
	cJSON_AddStringToObject(o, "cli_session_id", s->cli_session_id);
	cJSON_AddBoolToObject(o, "resume", s->has_conversation);
	cJSON_AddStringToObject(o, "cli_path", hp.conf->cli_path);
	a = cJSON_AddArrayToObject(o, "cli_args");
	for (i = 0; i < hp.conf->cli_args.n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(hp.conf->cli_args.v[i]));
	a = cJSON_AddArrayToObject(o, "cli_env");
	for (i = 0; i < hp.conf->cli_env.n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(hp.conf->cli_env.v[i]));
	cJSON_AddItemToObject(o, "options", cJSON_Duplicate(s->options, 1));
	/* A reload that turned allow_session_mcp off: no servers start. */
	if (!hp.conf->allow_session_mcp)
		cJSON_DeleteItemFromObjectCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(o, "options"), "mcp_config");
	cJSON_AddNumberToObject(o, "kill_grace_ms", (double)hp.conf->kill_grace_ms);
	/* options.approval_timeout_ms wins over it. */
	cJSON_AddNumberToObject(o, "approval_timeout_ms",
	    (double)hp.conf->approval_timeout_ms);
	cJSON_AddNumberToObject(o, "cli_line_max", (double)hp.conf->cli_line_max);
	cJSON_AddNumberToObject(o, "stderr_tail_bytes",
	    (double)hp.conf->stderr_tail_bytes);
	cJSON_AddBoolToObject(o, "probe", probe);
	/* The CLI's sandbox (hotplex-worker applies it; absent keys: off). */
	cJSON_AddStringToObject(o, "state_dir", hp.conf->state_dir);
	a = cJSON_AddObjectToObject(o, "sandbox");
	if (strcmp(hp.conf->seccomp, "off") != 0)
		cJSON_AddStringToObject(a, "seccomp", strcmp(hp.conf->seccomp,
		    "on") == 0 ? SANDBOX_SECCOMP_BUILTIN : hp.conf->seccomp);
	cJSON_AddStringToObject(a, "landlock", hp.conf->landlock != NULL ?
	    hp.conf->landlock : "off");
	cJSON_AddNumberToObject(a, "rlimit_nofile",
	    (double)hp.conf->rlimit_nofile);
	cJSON_AddNumberToObject(a, "rlimit_nproc", (double)hp.conf->rlimit_nproc);
	cJSON_AddNumberToObject(a, "rlimit_cpu", (double)hp.conf->rlimit_cpu);
	cJSON_AddNumberToObject(a, "rlimit_fsize", (double)hp.conf->rlimit_fsize);
	cJSON_AddBoolToObject(o, "tool_gate", hp.conf->tool_gate);
	/*
	 * The gate's tool lists.  Its rules are those the worker compiled
	 * as a spare (MSG_POLICY): the session's screen from now on, for
	 * its prompts too.
	 */
	if (s->worker != NULL && s->screen != s->worker->screen) {
		screen_unref(s->screen);
		s->screen = screen_ref(s->worker->screen);
	}
	cJSON_AddBoolToObject(o, "firewall", s->screen != NULL &&
	    s->screen->policy != NULL);
	a = cJSON_AddArrayToObject(o, "allowed_tools");
	for (i = 0; i < hp.conf->allowed_tools.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->allowed_tools.v[i]));
	a = cJSON_AddArrayToObject(o, "disallowed_tools");
	for (i = 0; i < hp.conf->disallowed_tools.n; i++)
		cJSON_AddItemToArray(a,
		    cJSON_CreateString(hp.conf->disallowed_tools.v[i]));
	return o;
}

/*
 * The CLI died before it saw the turn (killed just after the last one):
 * nothing of the turn happened, so it runs once more in a new CLI, when
 * the dying worker is gone.  0 if it may not (already retried).
 */
static int
session_turn_retry(struct session *s)
{
	if (!session_waiting(&s->exec) || s->cur.retried ||
	    s->cur.prompt == NULL || s->worker == NULL || s->cur.events > 0)
		return 0;
	log_info("session %s: CLI gone before turn %u began; retrying it in a "
	    "new CLI", s->name, s->turn);
	session_stopping(s, SESSION_STOP_DORMANT);
	s->cur.retried = 1;
	s->cur.retry_pending = 1;
	s->cur.pending_prompt = s->cur.prompt;
	s->cur.prompt = NULL;
	return 1;
}

/* The CLI's refusal of --session-id for a conversation it has. */
static int
session_cli_in_use(const char *message)
{
	return message != NULL && strstr(message, "already in use") != NULL;
}

static void
session_turn_end(struct session *s, struct msg_turn_end *te)
{
	struct stats	 turn;
	cJSON		*d;

	/*
	 * Its CLI died before it saw the turn (killed just after the last
	 * one): nothing happened; run it once more in a new CLI.
	 */
	/*
	 * "Session ID ... is already in use": the CLI has the conversation
	 * our record lacked.  Not the turn's failure: it runs again in a CLI
	 * started with --resume (once: has_conversation is set now).
	 */
	if (te->retry && te->outcome == MSG_TURN_ERROR &&
	    !s->has_conversation && session_cli_in_use(te->message)) {
		log_info("session %s: the CLI has session %s already; resuming "
		    "it", s->name, s->cli_session_id);
		s->has_conversation = 1;
		state_session_save(s);
		s->cur.retried = 0;
	}
	if (te->retry && session_turn_retry(s))
		return;		/* the worker's exit brings a new one */
	stats_init(&turn);
	stats_copy(&turn, &te->stats);
	turn.turns = 1;
	if (te->outcome == MSG_TURN_ERROR && turn.errors == 0)
		turn.errors = 1;
	/*
	 * An interrupted CLI may report less than its API calls cost: the
	 * gateway's figure then stands.
	 */
	if (s->cur.gw_cost_usd > turn.cost_usd)
		turn.cost_usd = s->cur.gw_cost_usd;
	s->cur.gw_cost_usd = 0;
	if (s->cur.budget_stop && turn.errors == 0)
		turn.errors = 1;
	if (s->cur.counted) {	/* its error line went out already */
		turn.turns = 0;
		turn.errors = 0;
	}
	s->cur.counted = 1;
	stats_add(&s->total, &turn);
	stats_add(&hp.all_total, &turn);
	stats_clear(&s->last);
	stats_copy(&s->last, &turn);
	stats_clear(&turn);
	/*
	 * The turn's end (stats, conversation) is committed before the done
	 * line is written: whatever the client saw survives a crash.  Not
	 * committed (another host has the session now): no done either.
	 */
	if (state_session_save(s) == STORE_FENCED) {
		session_turn_fail(s, ERR_LEASE_LOST, "another host took the "
		    "session's lease; this turn's end was not saved");
		return;
	}
	/* Its CLI is gone and the worker follows: no turn goes there now. */
	if (te->exiting && s->worker != NULL && s->state != SESSION_STOPPING)
		session_stopping(s, SESSION_STOP_DORMANT);
	if (!session_waiting(&s->exec))
		return;
	session_emit(s, "session_stats", session_stats_json(s));
	if (s->cur.budget_stop) {
		/* Stopped by budget.c, however the CLI ended it. */
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "code", ERR_BUDGET_EXCEEDED);
		cJSON_AddStringToObject(d, "message", "the turn was stopped: "
		    "its cost reached the budget (max_budget_usd or "
		    "uid_budget_usd)");
		session_emit(s, "error", d);
	} else if (te->outcome == MSG_TURN_DONE) {
		d = proto_done_json(&te->done);
		cJSON_AddItemToObject(d, "stats", stats_to_json(&s->last));
		session_emit(s, "done", d);
	} else {
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "code", te->code);
		cJSON_AddStringToObject(d, "message", te->message);
		session_emit(s, "error", d);
	}
	session_turn_close(s);
}

/* OPENED: the CLI runs. */
static void
session_worker_opened(struct session *s, const struct msg_opened *op)
{
	s->cli_pid = op->cli_pid;
	s->bg_tasks = 0;	/* a new CLI runs none yet */
	/* The worker found the CLI's transcript: it resumes. */
	if (op->resume && !s->has_conversation) {
		log_info("session %s: the CLI has a transcript of %s; resumed",
		    s->name, s->cli_session_id);
		s->has_conversation = 1;
		s->resumed = 1;
		state_session_save(s);
	}
	if (s->state != SESSION_STARTING)
		return;
	session_set_state(s, SESSION_READY);
	if (s->cur.pending_prompt != NULL && session_waiting(&s->exec))
		session_turn_begin(s);
	else {
		/* Opened ahead of its first turn: that turn is warm. */
		s->cur.cold = 0;
		session_idle_arm(s);
	}
}

/* PROBED: the CLI answered; the open op is done. */
static void
session_worker_probed(struct session *s)
{
	session_waiter_ok(&s->open);
}

static void
session_worker_open_failed(struct session *s, struct worker *wk,
    const struct msg_open_failed *of)
{
	if (of->exiting)
		wk->closed = 1;
	pool_release(wk);	/* a spare again, unless it is going */
	s->worker = NULL;
	session_set_state(s, SESSION_DORMANT);
	session_waiter_error(s, &s->open, of->code, of->message);
	session_turn_fail(s, of->code, of->message);
	/* A session that never ran leaves no trace. */
	if (s->total.turns == 0 && !s->has_conversation)
		session_forget(s);
	session_worker_ready();
}

static void
session_worker_cli_session(struct session *s, const struct msg_cli_session *cs)
{
	const char	*v = cs->cli_session_id;

	if (strlen(v) > UUID_STR_LEN)
		return;
	if (strcmp(v, s->cli_session_id) != 0)
		log_info("session %s: CLI session id now %s", s->name, v);
	snprintf(s->cli_session_id, sizeof s->cli_session_id, "%s", v);
	s->has_conversation = 1;
	state_session_save(s);
}

static void
session_worker_cli_exit(struct session *s, const struct msg_cli_exit *ce)
{
	char	 why[512];
	const char *tail = ce->stderr_tail;

	log_info("session %s: CLI %ld exited (status %d, signal %d)",
	    s->name, (long)s->cli_pid, ce->status, ce->signal);
	s->cli_pid = 0;
	s->cli_own = 0;
	/* As in session_turn_end: refused before the worker saw the turn. */
	if (s->state == SESSION_BUSY && !s->has_conversation &&
	    session_cli_in_use(tail)) {
		log_info("session %s: the CLI has session %s already; resuming "
		    "it", s->name, s->cli_session_id);
		s->has_conversation = 1;
		state_session_save(s);
		s->cur.retried = 0;
	}
	s->frozen = 0;
	event_del(s->freeze_timer);
	if (s->state == SESSION_BUSY && session_turn_retry(s))
		;	/* the worker's exit brings a new one */
	else if (s->state == SESSION_BUSY) {
		/* The CLI died before the worker saw our turn. */
		if (ce->signal > 0)
			snprintf(why, sizeof why, "CLI killed by signal "
			    "%d%s%.400s", ce->signal, *tail != '\0' ? ": " : "",
			    tail);
		else
			snprintf(why, sizeof why, "CLI exited with status "
			    "%d%s%.400s", ce->status, *tail != '\0' ? ": " : "",
			    tail);
		session_stopping(s, SESSION_STOP_DORMANT);
		session_turn_fail(s, ERR_CLI_EXITED, why);
	}
	if (s->state == SESSION_READY)	/* the worker exits next */
		session_stopping(s, SESSION_STOP_DORMANT);
}

/*
 * A worker's message about its session, decoded by its type; anything
 * malformed kills the worker (its turn then ends worker_exited).
 */
void
session_worker_msg(struct session *s, struct worker *wk, struct msg *m)
{
	struct msg_opened	 op;
	struct msg_open_failed	 of;
	struct msg_turn_end	 te;
	struct msg_cli_session	 cs;
	struct msg_cli_exit	 ce;
	struct msg_approval	 ap;
	struct msg_configured	 cd;
	struct msg_transcript	 tr;
	int			 bad = 0;

	switch (m->hdr.type) {
	case MSG_EVENT:
		/*
		 * The less trusted side writes these bytes into clients' lines:
		 * anything but one event object's tail (a raw newline forging a
		 * line, a "done" of its own) kills it.
		 */
		if (!json_event_tail_valid(m->data, m->hdr.len)) {
			log_warnx("session %s: forged event from worker %ld",
			    s->name, (long)wk->pid);
			pool_worker_kill(wk, "forged event");
			return;
		}
		session_tasks_seen(s, m->data, m->hdr.len);
		if (m->hdr.turn == 0) {		/* the CLI's own turn */
			session_emit_own(s, m->data, m->hdr.len);
			return;
		}
		if (m->hdr.turn == s->turn && s->state == SESSION_BUSY) {
			s->cur.events++;
			session_emit_tail(s, m->data, m->hdr.len);
			audit_event(s, m->data, m->hdr.len);
			session_rate_limit_seen(s, m->data, m->hdr.len);
		}
		return;
	case MSG_OPENED:
		if ((bad = msg_opened_decode(m, &op)) == 0) {
			/* Its tool calls meet the rules its prompts meet. */
			if (s->screen == NULL ||
			    strcmp(op.policy, s->screen->digest) != 0) {
				log_warnx("session %s: worker %ld screens with "
				    "rules %.12s, not %.12s", s->name,
				    (long)wk->pid, op.policy, s->screen != NULL ?
				    s->screen->digest : "-");
				msg_opened_clear(&op);
				pool_worker_kill(wk, "other rules");
				return;
			}
			session_worker_opened(s, &op);
			msg_opened_clear(&op);
		}
		break;
	case MSG_PROBED:
		if ((bad = msg_empty_decode(m)) == 0)
			session_worker_probed(s);
		break;
	case MSG_OPEN_FAILED:
		if ((bad = msg_open_failed_decode(m, &of)) == 0) {
			session_worker_open_failed(s, wk, &of);
			msg_open_failed_clear(&of);
		}
		break;
	case MSG_TURN_END:
		if ((bad = msg_turn_end_decode(m, &te)) == 0) {
			/* A turn handed to a new CLI: the old worker's word
			 * on it is void. */
			if (m->hdr.turn == s->turn)
				s->worker_turn = 0;	/* transcript in */
			if (!s->cur.retry_pending && m->hdr.turn == s->turn)
				session_turn_end(s, &te);
			msg_turn_end_clear(&te);
		}
		break;
	case MSG_CONFIGURED:
		if ((bad = msg_configured_decode(m, &cd)) == 0) {
			session_configure_done(s, 1, cd.ok ? NULL :
			    cd.message);
			msg_configured_clear(&cd);
		}
		break;
	case MSG_APPROVAL:
		if ((bad = msg_approval_decode(m, &ap)) == 0) {
			session_worker_approval(s, &ap);
			msg_approval_clear(&ap);
		}
		break;
	case MSG_CLI_SESSION:
		if ((bad = msg_cli_session_decode(m, &cs)) == 0) {
			session_worker_cli_session(s, &cs);
			msg_cli_session_clear(&cs);
		}
		break;
	case MSG_TRANSCRIPT:
		if ((bad = msg_transcript_decode(m, &tr)) == 0) {
			transcript_piece(s, &tr);
			msg_transcript_clear(&tr);
		}
		break;
	case MSG_CLI_EXIT:
		if ((bad = msg_cli_exit_decode(m, &ce)) == 0) {
			session_worker_cli_exit(s, &ce);
			msg_cli_exit_clear(&ce);
		}
		break;
	default:
		log_warnx("session %s: unexpected %s from worker %ld", s->name,
		    msg_type_name(m->hdr.type), (long)wk->pid);
		pool_worker_kill(wk, "protocol violation");
		return;
	}
	if (bad) {
		log_warnx("session %s: malformed %s from worker %ld", s->name,
		    msg_type_name(m->hdr.type), (long)wk->pid);
		pool_worker_kill(wk, "malformed message");
	}
}

/*
 * A session's private TMPDIR goes with its worker: the next worker makes
 * a new one, as a new CLI expects nothing in it.
 */
static void
session_tmpdir_remove(const struct session *s)
{
	/* The spawner removes it: it is the session's, not ours. */
	if (spawner_rmtmp(s->uid, s->name) == -1)
		log_warn("session %s: removing its TMPDIR", s->name);
}

/*
 * At start-up no worker runs: the TMPDIRs left by the last run (a crash,
 * or workers that outlived their master) are removed.
 */
void
session_tmpdirs_clear(void)
{
	char		 dir[PATH_MAX], path[PATH_MAX];
	DIR		*d;
	struct dirent	*de;

	if ((size_t)snprintf(dir, sizeof dir, UTIL_TMPDIR_PARENT,
	    hp.conf->state_dir) >= sizeof dir || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, UTIL_TMPDIR_PREFIX,
		    sizeof UTIL_TMPDIR_PREFIX - 1) != 0 ||
		    (size_t)snprintf(path, sizeof path, "%s/%s", dir,
		    de->d_name) >= sizeof path)
			continue;
		if (util_rmtree(path) == -1)
			log_warn("removing %s", path);
	}
	closedir(d);
}

/*
 * A move whose last turn's transcript is in the store: the worker and its
 * CLI go on stopping without the session (pool_worker_orphan), which is
 * free to leave the table now.  Nothing they say later is written.
 */
void
session_worker_detach(struct session *s)
{
	struct worker	*wk = s->worker;

	if (wk == NULL)
		return;
	session_thaw(s);
	s->worker = NULL;
	s->cli_pid = 0;
	s->worker_turn = 0;
	s->cli_own = 0;
	pool_worker_orphan(wk, s->uid, s->name, s->turn);
	/* Its CLI is on its way out: so are the token and the approvals. */
	server_gateway_session_close(s);
	session_approvals_clear(s);
	session_configure_done(s, 0, NULL);
	session_set_state(s, SESSION_DORMANT);
}

/* The worker is gone (EOF on its socket, or reaped). */
void
session_worker_gone(struct session *s, struct worker *wk, int status)
{
	char	why[128];

	if (s->worker != wk)
		return;
	if (status == -1)
		snprintf(why, sizeof why, "worker %ld closed its channel",
		    (long)wk->pid);
	else if (WIFSIGNALED(status))
		snprintf(why, sizeof why, "worker %ld killed by signal %d",
		    (long)wk->pid, WTERMSIG(status));
	else
		snprintf(why, sizeof why, "worker %ld exited with status %d",
		    (long)wk->pid, WEXITSTATUS(status));
	/*
	 * A worker that closed its channel but lives is killed, and its CLI's
	 * group with it (reaped pids are never signalled: they may be reused).
	 */
	if (status == -1) {
		if (s->cli_pid > 0)
			spawner_killpg(wk->pid, s->cli_pid, SIGKILL);
		spawner_kill(wk->pid, SIGKILL);
	}
	s->cli_pid = 0;
	s->frozen = 0;
	s->worker_turn = 0;
	s->cli_own = 0;
	event_del(s->freeze_timer);
	s->worker = NULL;
	wk->session = NULL;
	/* Its CLI is gone: so is the token it held. */
	server_gateway_session_close(s);
	session_approvals_clear(s);
	session_tmpdir_remove(s);
	/* Its CLI never answered: the settings are the next CLI's. */
	session_configure_done(s, 0, NULL);
	session_waiter_error(s, &s->open, ERR_WORKER_EXITED, why);
	if (s->state == SESSION_BUSY || (s->state == SESSION_STARTING &&
	    session_waiting(&s->exec))) {
		session_set_state(s, SESSION_DORMANT);
		session_turn_fail(s, hp.shutting_down ? ERR_SHUTTING_DOWN :
		    ERR_WORKER_EXITED, why);
	}
	if (s->stop_final)
		session_end(s);
	else
		session_set_state(s, SESSION_DORMANT);
	session_waiter_ok(&s->stop);
	log_info("session %s %s: %s", s->name, proto_state_name(s->state), why);
	state_session_save(s);
	if (s->move_to != NULL && s->move_stopping) {
		move_finish(s);		/* frees s */
		return;
	}
	/* A turn queued behind a reset or an idle stop starts now. */
	if (s->state == SESSION_DORMANT && session_waiting(&s->exec) &&
	    s->cur.pending_prompt != NULL && !hp.shutting_down &&
	    session_assign(s) == -1)
		return;
	if (s->state == SESSION_ENDED)
		session_trim_ended();
}
