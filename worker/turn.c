/*
 * The worker's turn: the prompt written to the CLI, its events relayed
 * to the master, the CLI's own turns, the interrupt, the timeouts and the
 * turn's one end, and the CLI's control protocol (configure, the probe).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "worker/bridge.h"
#include "worker/worker.h"

#define WORKER_EVENT_MAX	(MSG_MAX_PAYLOAD - 4096)	/* one event's JSON */
#define WORKER_RESULT_HEAD	"{\"type\":\"result\""	/* a result line starts so */
#define WORKER_CFG_ID		"hp-cfg-"	/* our set_model & co. */

static void	worker_turn_finish_error(const char *, const char *);
static void	worker_held_write(void);
static void	worker_turn_set(enum worker_turn_state);

void
worker_bridge_event(void *arg, const char *type, cJSON *data)
{
	cJSON	*o = cJSON_CreateObject();
	char	*s;

	/* A Bash call's files, watched from before it runs to its result. */
	if (strcmp(type, "tool_use") == 0)
		fswatch_begin(json_str(data, "name"), json_str(data, "tool_id"));
	else if (strcmp(type, "tool_result") == 0)
		fswatch_end(json_str(data, "tool_id"), data);
	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddItemToObject(o, "data", data);
	s = json_print(o);
	if (strlen(s) > WORKER_EVENT_MAX) {
		/* Too big for one message (a huge Write input): keep the ids. */
		cJSON	*small = cJSON_CreateObject(), *v;
		size_t	 bytes = strlen(s);

		log_warnx("%s event of %zu bytes truncated", type, bytes);
		cJSON_free(s);
		if ((v = cJSON_GetObjectItemCaseSensitive(data, "tool_id")) != NULL)
			cJSON_AddItemToObject(small, "tool_id", cJSON_Duplicate(v, 1));
		if ((v = cJSON_GetObjectItemCaseSensitive(data, "name")) != NULL)
			cJSON_AddItemToObject(small, "name", cJSON_Duplicate(v, 1));
		cJSON_AddBoolToObject(small, "truncated", 1);
		cJSON_AddNumberToObject(small, "bytes", (double)bytes);
		cJSON_ReplaceItemInObject(o, "data", small);
		s = json_print(o);
	}
	/*
	 * The master prefixes {"id":..,"session":..,"seq":N, to the tail.
	 * The CLI's own turn goes as turn 0, no client's turn.
	 */
	msg_compose(worker_out(), MSG_EVENT, ws.cli_own ? 0 : ws.turn, s + 1,
	    strlen(s + 1));
	worker_sent();
	cJSON_free(s);
	cJSON_Delete(o);
}

static void
worker_bridge_init(void *arg, const char *id)
{
	struct msg_cli_session	cs;

	/*
	 * system/init begins every turn: ours, or, with none of ours begun
	 * or in flight, one of the CLI's own.
	 */
	if (ws.turn_state == TURN_WRITTEN)
		worker_turn_set(TURN_RUNNING);
	else if (ws.turn_state == TURN_IDLE || ws.turn_state == TURN_HELD) {
		ws.cli_own = 1;
		log_debug("the CLI began a turn of its own");
	}
	/* Once per CLI: it tells the master the conversation exists. */
	if ((ws.init_seen && strcmp(id, ws.cli_session_id) == 0) ||
	    strlen(id) > UUID_STR_LEN)
		return;
	ws.init_seen = 1;
	if (strcmp(id, ws.cli_session_id) != 0)
		transcript_follow(ws.config_dir, ws.workdir, id);
	snprintf(ws.cli_session_id, sizeof ws.cli_session_id, "%s", id);
	cs.cli_session_id = id;
	msg_cli_session_compose(worker_out(), ws.turn, &cs);
	worker_sent();
}

static const char *
worker_turn_state_name(enum worker_turn_state st)
{
	static const char *names[] = { "idle", "held", "written", "running",
	    "interrupting" };

	return (size_t)st < sizeof names / sizeof names[0] ? names[st] : "?";
}

/* The one place a client's turn changes state, logged at debug. */
static void
worker_turn_set(enum worker_turn_state st)
{
	if (ws.turn_state == st)
		return;
	log_debug("turn %u: %s -> %s", ws.turn,
	    worker_turn_state_name(ws.turn_state),
	    worker_turn_state_name(st));
	ws.turn_state = st;
}

static void
worker_turn_clear(void)
{
	/* A turn's questions and watches do not outlive it. */
	worker_approvals_settle(0);
	fswatch_clear();
	free(ws.held);
	ws.held = NULL;
	worker_turn_set(TURN_IDLE);
	ws.timed_out = 0;
	evtimer_del(ws.turn_timer);
	evtimer_del(ws.grace_timer);
}

/* Sends the turn's end; te->stats are the caller's. */
static void
worker_turn_end_send(struct msg_turn_end *te)
{
	/* The turn's transcript reaches the store before its end. */
	transcript_save(worker_out(), ws.turn);
	msg_turn_end_compose(worker_out(), ws.turn, te);
	worker_sent();
	worker_turn_clear();
}

static void
worker_bridge_turn_end(void *arg, const struct bridge_turn *t)
{
	struct msg_turn_end	te;
	cJSON			*d;

	/*
	 * The end of the CLI's own turn (result.origin): never a client's.
	 * A client's turn that waited for it goes to the CLI now.
	 */
	if (t->origin != NULL || (ws.cli_own && ws.turn_state == TURN_HELD)) {
		/* Its end, with its stats, to the followers (turn 0). */
		d = cJSON_CreateObject();
		if (t->origin != NULL)
			cJSON_AddItemToObject(d, "origin",
			    cJSON_Duplicate(t->origin, 1));
		if (t->result != NULL)
			cJSON_AddStringToObject(d, "result", t->result);
		cJSON_AddBoolToObject(d, "is_error", t->is_error);
		cJSON_AddItemToObject(d, "stats", stats_to_json(t->stats));
		/* Its lines reach the store before its end (a move waits). */
		transcript_save(worker_out(), 0);
		ws.cli_own = 1;
		worker_bridge_event(NULL, "cli_turn", d);
		ws.cli_own = 0;
		log_debug("the CLI's own turn ended");
		/* Its watch set, if it ran Bash, is not kept while idle. */
		fswatch_idle();
		if (ws.turn_state == TURN_HELD)
			worker_held_write();
		return;
	}
	ws.cli_own = 0;
	if (ws.turn_state == TURN_IDLE) {
		log_debug("result outside a turn ignored");
		return;
	}
	if (t->interrupted && !ws.timed_out)
		t->stats->errors = 0;	/* asked for; not a failure */
	memset(&te, 0, sizeof te);
	if (ws.timed_out) {
		te.outcome = MSG_TURN_ERROR;
		te.code = ERR_TURN_TIMEOUT;
		te.message = "turn timed out and was interrupted";
	} else {
		te.outcome = MSG_TURN_DONE;
		te.done.ok = !t->is_error || t->interrupted;
		te.done.result = t->result;
		te.done.is_error = t->is_error && !t->interrupted;
		te.done.interrupted = t->interrupted;
		te.done.terminal_reason = t->terminal_reason;
		te.done.stop_reason = t->stop_reason;
		te.done.errors = t->errors;
	}
	te.stats = *t->stats;
	worker_turn_end_send(&te);
}

static void
worker_bridge_control_response(void *arg, const char *request_id, int ok,
    const cJSON *response)
{
	struct msg_configured	cd;
	const char		*e;

	if (ws.probe_pending && strcmp(request_id, "hp-probe") == 0) {
		ws.probe_pending = 0;
		msg_empty_compose(worker_out(), MSG_PROBED, ws.turn);
		worker_sent();
	}
	if (ws.cfg_pending > 0 && strncmp(request_id, WORKER_CFG_ID,
	    sizeof WORKER_CFG_ID - 1) == 0) {
		if (!ok && ws.cfg_error[0] == '\0') {
			e = json_str(response, "error");
			snprintf(ws.cfg_error, sizeof ws.cfg_error, "%s",
			    e != NULL ? e : "the CLI refused the setting");
		}
		if (--ws.cfg_pending > 0)
			return;
		/* Every setting answered: the master replies to configure. */
		cd.ok = ws.cfg_error[0] == '\0';
		cd.message = ws.cfg_error;
		cd.json = NULL;
		msg_configured_compose(worker_out(), ws.turn, &cd);
		worker_sent();
	}
}

const struct bridge_cb worker_bridge_cb = {
	worker_bridge_event, worker_bridge_init, worker_bridge_turn_end,
	worker_bridge_control_request, worker_bridge_control_response, NULL,
	worker_bridge_control_cancel
};

static void
worker_cli_line(void *arg, const char *line, size_t len)
{
	if (ws.turn_state != TURN_IDLE)
		ws.turn_output = 1;
	bridge_line(ws.bridge, line, len, util_now_ms());
}

static void
worker_cli_line_dropped(void *arg, size_t len, const char *head)
{
	struct msg_turn_end	te;

	log_warnx("dropped a CLI line of %zu bytes: %.40s...", len, head);
	bridge_line_dropped(ws.bridge, len);
	/*
	 * Dropped, the result line would leave the turn open forever: the
	 * turn is over, its result too big to relay.
	 */
	if (ws.turn_state == TURN_IDLE || strncmp(head, WORKER_RESULT_HEAD,
	    strlen(WORKER_RESULT_HEAD)) != 0)
		return;
	memset(&te, 0, sizeof te);
	te.outcome = MSG_TURN_DONE;
	te.done.is_error = 1;
	te.done.interrupted = ws.turn_state == TURN_INTERRUPTING;
	te.done.terminal_reason = "result_too_large";
	te.stats = *bridge_turn_stats(ws.bridge, util_now_ms());
	worker_turn_end_send(&te);
}

static void
worker_cli_exited(void *arg, int status)
{
	struct msg_open_failed	 of;
	struct msg_cli_exit	 ce;
	char			 msg[WORKER_ERR_MAX];
	const char *tail = cli_stderr_tail(ws.cli);

	if (WIFEXITED(status))
		snprintf(msg, sizeof msg, "CLI exited with status %d",
		    WEXITSTATUS(status));
	else
		snprintf(msg, sizeof msg, "CLI killed by signal %d",
		    WTERMSIG(status));
	log_info("%s", msg);
	ws.cli_gone = 1;
	if (ws.turn_state != TURN_IDLE) {
		if (ws.timed_out)
			worker_turn_finish_error(ERR_TURN_TIMEOUT,
			    "turn timed out; the CLI was killed");
		else {
			char full[WORKER_ERR_MAX * 2];

			snprintf(full, sizeof full, "%s%s%s%.400s", msg,
			    ws.turn_state == TURN_INTERRUPTING ?
			    " (it ignored the interrupt)" :
			    "", *tail != '\0' ? ": " : "", tail);
			worker_turn_finish_error(ERR_CLI_EXITED, full);
		}
	}
	if (ws.probe_pending) {
		of.code = ERR_SPAWN_FAILED;
		of.message = *tail != '\0' ? tail : msg;
		of.exiting = 1;		/* not a spare again */
		msg_open_failed_compose(worker_out(), ws.turn, &of);
	}
	/* What the CLI wrote on its way out (a stop, a move). */
	transcript_save(worker_out(), ws.turn);
	ce.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	ce.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	ce.stderr_tail = tail;
	msg_cli_exit_compose(worker_out(), ws.turn, &ce);
	worker_sent();
	/* One worker serves one CLI lifetime. */
	worker_exit(0);
}

const struct cli_cb worker_cli_cb = {
	worker_cli_line, worker_cli_line_dropped, worker_cli_exited, NULL
};

/* Ends the turn in flight with an error line, with the stats so far. */
static void
worker_turn_finish_error(const char *code, const char *message)
{
	struct msg_turn_end	te;

	if (ws.turn_state == TURN_IDLE)
		return;
	memset(&te, 0, sizeof te);
	te.outcome = MSG_TURN_ERROR;
	te.code = code;
	te.message = message;
	te.stats = *bridge_turn_stats(ws.bridge, util_now_ms());
	/* The master must not send another turn to a worker on its way out. */
	te.exiting = ws.cli_gone;
	/*
	 * The CLI died before it said a word of this turn (killed just after
	 * the last one): nothing of the turn happened, a new CLI may run it.
	 */
	te.retry = ws.cli_gone && !ws.turn_output && !ws.timed_out &&
	    ws.turn_state != TURN_INTERRUPTING;
	worker_turn_end_send(&te);
}

void
worker_ctl(const char *subtype, const char *id)
{
	char	buf[256];

	snprintf(buf, sizeof buf, "{\"type\":\"control_request\","
	    "\"request_id\":\"%s\",\"request\":{\"subtype\":\"%s\"}}", id,
	    subtype);
	cli_write(ws.cli, buf, strlen(buf));
}

/* A control request with one string member: {"subtype":s,key:value}. */
static void
worker_ctl_str(const char *subtype, const char *id, const char *key,
    const char *value)
{
	cJSON	*o = cJSON_CreateObject(), *r;
	char	*s;

	cJSON_AddStringToObject(o, "type", "control_request");
	cJSON_AddStringToObject(o, "request_id", id);
	r = cJSON_AddObjectToObject(o, "request");
	cJSON_AddStringToObject(r, "subtype", subtype);
	cJSON_AddStringToObject(r, key, value);
	if ((s = cJSON_PrintUnformatted(o)) == NULL)
		fatalx("worker_ctl_str: out of memory");
	cli_write(ws.cli, s, strlen(s));
	cJSON_free(s);
	cJSON_Delete(o);
}

/* configure: the CLI's own control requests change it live. */
void
worker_configure(const struct msg_configure *c)
{
	struct msg_configured	cd;
	char			id[32];

	ws.cfg_pending = 0;
	ws.cfg_error[0] = '\0';
	if (c->model != NULL) {
		snprintf(id, sizeof id, WORKER_CFG_ID "%llu",
		    (unsigned long long)++ws.ctl_seq);
		worker_ctl_str("set_model", id, "model", c->model);
		ws.cfg_pending++;
	}
	if (c->permission_mode != NULL) {
		snprintf(id, sizeof id, WORKER_CFG_ID "%llu",
		    (unsigned long long)++ws.ctl_seq);
		worker_ctl_str("set_permission_mode", id, "mode",
		    c->permission_mode);
		ws.cfg_pending++;
	}
	if (ws.cfg_pending == 0) {
		memset(&cd, 0, sizeof cd);
		cd.ok = 1;
		cd.message = "";
		msg_configured_compose(worker_out(), ws.turn, &cd);
		worker_sent();
	}
}

void
worker_interrupt(void)
{
	struct timeval	tv;
	char		id[32];

	struct msg_turn_end	te;

	if (ws.turn_state == TURN_IDLE || ws.turn_state == TURN_INTERRUPTING)
		return;
	/* Held behind the CLI's own turn: it ends before it began. */
	if (ws.turn_state == TURN_HELD) {
		memset(&te, 0, sizeof te);
		if (ws.timed_out) {
			te.outcome = MSG_TURN_ERROR;
			te.code = ERR_TURN_TIMEOUT;
			te.message = "turn timed out waiting for the CLI's own "
			    "turn";
		} else {
			te.outcome = MSG_TURN_DONE;
			te.done.ok = 1;
			te.done.interrupted = 1;
			te.done.terminal_reason = "interrupted";
		}
		stats_init(&te.stats);	/* nothing of it ran */
		worker_turn_end_send(&te);
		return;
	}
	worker_turn_set(TURN_INTERRUPTING);
	/* Open questions are denied first: the CLI may then stop. */
	worker_approvals_settle(1);
	bridge_interrupting(ws.bridge);
	snprintf(id, sizeof id, "hp-int-%llu",
	    (unsigned long long)++ws.ctl_seq);
	worker_ctl("interrupt", id);
	/* A CLI that ignores it is killed after kill_grace. */
	tv = util_ms_tv(ws.kill_grace_ms);
	evtimer_add(ws.grace_timer, &tv);
}

void
worker_grace_timer(evutil_socket_t fd, short what, void *arg)
{
	/* The CLI ignored the interrupt: kill it; its exit ends the turn. */
	log_warnx("CLI ignored the interrupt for %llu ms: killing it",
	    (unsigned long long)ws.kill_grace_ms);
	cli_kill(ws.cli, ws.kill_grace_ms);
}

void
worker_turn_timer(evutil_socket_t fd, short what, void *arg)
{
	log_warnx("turn %u timed out", ws.turn);
	ws.timed_out = 1;
	worker_interrupt();
}

/* Writes our held user line to the CLI: our turn begins. */
static void
worker_held_write(void)
{
	char	*s = ws.held;

	ws.held = NULL;
	worker_turn_set(TURN_WRITTEN);
	bridge_turn_start(ws.bridge, util_now_ms());
	if (cli_write(ws.cli, s, strlen(s)) == -1)
		worker_turn_finish_error(ERR_CLI_EXITED, "the CLI is gone");
	free(s);
}

void
worker_turn(uint32_t turn, const struct msg_turn *t)
{
	const char	*prompt = t->prompt;
	uint64_t	 timeout = t->timeout_ms;
	cJSON		*line, *msg;
	char		*s, *esc;
	struct timeval	 tv;

	ws.turn = turn;
	if (ws.turn_state != TURN_IDLE) {
		log_warnx("turn %u while busy", turn);
		return;
	}
	/*
	 * The CLI runs text that starts with '/' as a slash command (/clear
	 * silently changes the session).  Unless the client asked for slash
	 * commands, a leading space makes it plain text: the model receives
	 * " /..." (tests/e2e/FINDINGS.md; a block array does not help).
	 */
	line = cJSON_CreateObject();
	cJSON_AddStringToObject(line, "type", "user");
	msg = cJSON_AddObjectToObject(line, "message");
	cJSON_AddStringToObject(msg, "role", "user");
	if (prompt[0] == '/' && !t->slash_commands) {
		xasprintf(&esc, " %s", prompt);
		cJSON_AddStringToObject(msg, "content", esc);
		free(esc);
	} else
		cJSON_AddStringToObject(msg, "content", prompt);
	s = json_print(line);
	cJSON_Delete(line);
	ws.turn_output = 0;
	ws.held = xstrdup(s);
	worker_turn_set(TURN_HELD);
	cJSON_free(s);
	/* Like a queued one, it waits for the CLI's own turn to end. */
	if (ws.cli_own)
		log_info("turn %u waits for the CLI's own turn", turn);
	else
		worker_held_write();
	if (timeout > 0) {
		tv = util_ms_tv(timeout);
		evtimer_add(ws.turn_timer, &tv);
	}
}
