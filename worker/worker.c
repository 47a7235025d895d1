/*
 * hotplex-worker main: waits for a session on WORKER_FD, spawns the CLI,
 * runs one turn at a time through the bridge and reports to the master.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mcp.h"
#include "common/procfs.h"
#include "common/msg.h"
#include "common/proto.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/sandbox/sandbox.h"
#include "worker/bridge.h"
#include "worker/worker.h"

#define WORKER_ARGV_MAX		256
#define WORKER_ENV_MAX		128
#define WORKER_ERR_MAX		512

#define WORKER_FLUSH_TIMEOUT_S	5	/* to flush the channel when exiting */
#define WORKER_MASTER_HIWAT	(4U * 1024 * 1024)	/* pause the CLI above */
#define WORKER_MASTER_LOWAT	(1U * 1024 * 1024)	/* and resume below */
#define WORKER_EVENT_MAX	(MSG_MAX_PAYLOAD - 4096)	/* one event's JSON */
#define WORKER_RESULT_HEAD	"{\"type\":\"result\""	/* a result line starts so */
#define WORKER_ORPHANS_MAX	256	/* left-over processes killed per round */
#define WORKER_ORPHAN_ROUNDS	16
#define WORKER_STOP_NICE	19	/* a stopping session runs last */

#define WORKER_PRIVATE_MODE	0700	/* the CLI's config dir */
#define WORKER_CONFIG_DIR	".claude"	/* in the session's HOME */

/*
 * With the sandbox on, the CLI's own bubblewrap sandbox (Bash tool) must
 * stay off: it needs user and mount namespaces, which our seccomp profile
 * and Landlock refuse.  The flag wins over a .claude/settings.json in the
 * (user-controlled) workdir; IS_SANDBOX=1 tells it truthfully that it runs
 * in a sandbox, which turns off the gate that could force its own on.
 */
#define WORKER_CLI_SETTINGS	"{\"sandbox\":{\"enabled\":false}}"

/* The sandbox of one CLI, from the open message. */
struct worker_sandbox {
	struct sandbox_conf	 sc;
	int			 on;	/* Landlock, seccomp or worker_user */
	int			 apply;	/* on, or rlimits only */
	char			 tmpdir[PATH_MAX];
	char			 config_dir[PATH_MAX];
	char			 clidir[PATH_MAX];
	const char		*rx[2];
};

enum wstate { W_IDLE, W_OPEN, W_CLOSING };

#define WORKER_APPROVALS_MAX	16	/* questions waiting for the app */
#define WORKER_APPROVAL_TIMEOUT_MS (5 * 60 * 1000)	/* if none is given */
#define WORKER_CFG_ID		"hp-cfg-"	/* our set_model & co. */

/* A can_use_tool question put to the app (approvals "client"). */
struct approval {
	char		*request_id;	/* the CLI's; NULL: a free slot */
	char		*tool_id;
	char		*tool;
	cJSON		*input;
	struct event	*timer;		/* approval_timeout_ms */
};

static struct {
	struct event_base	*base;
	struct evbuffer		*sink;		/* worker_out() without master */
	struct bufferevent	*master;
	enum wstate		 state;
	pid_t			 parent;

	/* The session. */
	char			*session;
	char			 workdir[PATH_MAX];
	char			 config_dir[PATH_MAX];	/* the CLI's */
	char			 cli_session_id[UUID_STR_LEN + 1];
	struct cli		*cli;
	struct bridge		*bridge;
	struct gate		*gate;
	uint64_t		 kill_grace_ms;
	int			 probe_pending;	/* open: answer when the CLI does */
	int			 resume;	/* --resume, else --session-id */
	uint64_t		 ctl_seq;
	int			 approvals_client;	/* the app decides */
	int			 cfg_pending;	/* set_model & co. unanswered */
	char			 cfg_error[WORKER_ERR_MAX];
	uint64_t		 approval_timeout_ms;
	struct approval		 approvals[WORKER_APPROVALS_MAX];

	/* The turn in flight. */
	uint32_t		 turn;
	int			 busy;
	int			 interrupting;
	int			 timed_out;
	struct event		*turn_timer;
	struct event		*grace_timer;
	int			 stopping;
	int			 exiting;
	int			 init_seen;
	int			 cli_gone;	/* the CLI exited; we exit next */
	int			 cli_paused;	/* the master is behind */
	int			 turn_output;	/* the CLI wrote during this turn */
	/*
	 * Turns the CLI begins by itself (a background task ended): its
	 * system/init came with no line of ours waiting for one.  A client's
	 * turn waits for it (held), and its lines reach no client's turn.
	 */
	int			 awaiting_init;	/* our user line not begun yet */
	int			 cli_own;	/* the CLI's own turn runs */
	char			*held;		/* our user line, waiting */
	int			 exit_code;
} w;

static void
worker_exit_flushed_timeout(evutil_socket_t fd, short what, void *arg)
{
	exit(w.exit_code);
}

static void	worker_exit_flushed_timeout(evutil_socket_t, short, void *);
static void	worker_turn_finish_error(const char *, const char *);
static void	worker_held_write(void);

/*
 * Where a message to the master is composed (msg_*_compose): its channel,
 * or, once the master is gone and nobody is there to tell, a sink.
 */
static struct evbuffer *
worker_out(void)
{
	if (w.master == NULL) {
		evbuffer_drain(w.sink, evbuffer_get_length(w.sink));
		return w.sink;
	}
	return bufferevent_get_output(w.master);
}

/* After a message: the master stopped reading us?  Stop reading the CLI. */
static void
worker_sent(void)
{
	struct evbuffer	*out;

	if (w.master == NULL)
		return;
	out = bufferevent_get_output(w.master);
	if (!w.cli_paused && w.cli != NULL &&
	    evbuffer_get_length(out) > WORKER_MASTER_HIWAT) {
		w.cli_paused = 1;
		cli_pause(w.cli, 1);
		bufferevent_setwatermark(w.master, EV_WRITE, WORKER_MASTER_LOWAT,
		    0);
	}
}

/* The channel drained below the low mark: read the CLI again. */
static void
worker_master_drained(struct bufferevent *bev, void *arg)
{
	if (!w.cli_paused)
		return;
	w.cli_paused = 0;
	bufferevent_setwatermark(w.master, EV_WRITE, 0, 0);
	if (w.cli != NULL)
		cli_pause(w.cli, 0);
}

/*
 * Once confined (sandbox_worker_confine) kill() reaches only the CLI's
 * group and ourselves; a left-over child of ours is signalled through a
 * pidfd, which also cannot hit a recycled pid.
 */
static void
worker_kill_pid(pid_t pid, int sig)
{
	int	fd;

	if (kill(pid, sig) == 0 || (errno != ENOSYS && errno != EPERM))
		return;
	if ((fd = (int)syscall(SYS_pidfd_open, pid, 0)) == -1) {
		log_warn("pidfd_open %ld", (long)pid);
		return;
	}
	if (syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == -1)
		log_warn("pidfd_send_signal %ld", (long)pid);
	close(fd);
}

/*
 * Tools the CLI started in sessions of their own are not in its process
 * group; as we are a subreaper they re-parent to us when the CLI dies.
 * Kill and reap them (and what they re-parent to us in turn).  Our own
 * children file is read, not every /proc/PID/stat: a worker's exit costs
 * the same beside 2,000 sessions as beside none.
 */
static void
worker_kill_orphans(void)
{
	pid_t	kids[WORKER_ORPHANS_MAX];
	size_t	n, i;
	int	round;

	for (round = 0; round < WORKER_ORPHAN_ROUNDS; round++) {
		n = proc_children_any(getpid(), kids, WORKER_ORPHANS_MAX);
		if (n == 0)
			break;
		for (i = 0; i < n; i++) {
			log_warnx("killing left-over process %ld", (long)kids[i]);
			worker_kill_pid(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	}
}

static void
worker_exit_flushed(struct bufferevent *bev, void *arg)
{
	exit(w.exit_code);
}

static void
worker_exit_now(evutil_socket_t fd, short what, void *arg)
{
	if (w.cli != NULL) {
		cli_free(w.cli);
		w.cli = NULL;
	}
	worker_kill_orphans();
	if (w.master == NULL ||
	    evbuffer_get_length(bufferevent_get_output(w.master)) == 0)
		exit(w.exit_code);
	/* What the master has not read yet goes out before we do. */
	bufferevent_setcb(w.master, NULL, worker_exit_flushed, NULL, NULL);
	bufferevent_disable(w.master, EV_READ);
	bufferevent_enable(w.master, EV_WRITE);
}

/*
 * Leaves from the loop, never from under a caller (the CLI's callbacks
 * call this): free the CLI, flush the channel to the master, exit.
 */
static void
worker_exit(int code)
{
	struct timeval	tv = { WORKER_FLUSH_TIMEOUT_S, 0 };

	if (w.exiting)
		return;
	w.exiting = 1;
	w.exit_code = code;
	event_base_once(w.base, -1, EV_TIMEOUT, worker_exit_now, NULL, NULL);
	/* A master that does not read cannot keep us. */
	event_base_once(w.base, -1, EV_TIMEOUT, worker_exit_flushed_timeout,
	    NULL, &tv);
}

/* --- events from the bridge ------------------------------------------- */

static void
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
	msg_compose(worker_out(), MSG_EVENT, w.cli_own ? 0 : w.turn, s + 1,
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
	if (w.awaiting_init)
		w.awaiting_init = 0;
	else if (!w.busy || w.held != NULL) {
		w.cli_own = 1;
		log_debug("the CLI began a turn of its own");
	}
	/* Once per CLI: it tells the master the conversation exists. */
	if ((w.init_seen && strcmp(id, w.cli_session_id) == 0) ||
	    strlen(id) > UUID_STR_LEN)
		return;
	w.init_seen = 1;
	if (strcmp(id, w.cli_session_id) != 0)
		transcript_follow(w.config_dir, w.workdir, id);
	snprintf(w.cli_session_id, sizeof w.cli_session_id, "%s", id);
	cs.cli_session_id = id;
	msg_cli_session_compose(worker_out(), w.turn, &cs);
	worker_sent();
}

static void	worker_approvals_settle(int);

static void
worker_turn_clear(void)
{
	/* A turn's questions and watches do not outlive it. */
	worker_approvals_settle(0);
	fswatch_clear();
	free(w.held);
	w.held = NULL;
	w.awaiting_init = 0;
	w.busy = 0;
	w.interrupting = 0;
	w.timed_out = 0;
	evtimer_del(w.turn_timer);
	evtimer_del(w.grace_timer);
}

/* Sends the turn's end; te->stats are the caller's. */
static void
worker_turn_end_send(struct msg_turn_end *te)
{
	/* The turn's transcript reaches the store before its end. */
	transcript_save(worker_out(), w.turn);
	msg_turn_end_compose(worker_out(), w.turn, te);
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
	if (t->origin != NULL || (w.cli_own && w.held != NULL)) {
		/* Its end, with its stats, to the followers (turn 0). */
		d = cJSON_CreateObject();
		if (t->origin != NULL)
			cJSON_AddItemToObject(d, "origin",
			    cJSON_Duplicate(t->origin, 1));
		if (t->result != NULL)
			cJSON_AddStringToObject(d, "result", t->result);
		cJSON_AddBoolToObject(d, "is_error", t->is_error);
		cJSON_AddItemToObject(d, "stats", stats_to_json(t->stats));
		w.cli_own = 1;
		worker_bridge_event(NULL, "cli_turn", d);
		w.cli_own = 0;
		log_debug("the CLI's own turn ended");
		if (w.held != NULL)
			worker_held_write();
		return;
	}
	w.cli_own = 0;
	if (!w.busy) {
		log_debug("result outside a turn ignored");
		return;
	}
	if (t->interrupted && !w.timed_out)
		t->stats->errors = 0;	/* asked for; not a failure */
	memset(&te, 0, sizeof te);
	if (w.timed_out) {
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

/*
 * Answers a control request of the CLI: success with response (consumed),
 * or, when response is NULL, an error saying why.
 */
static void
worker_control_answer(const char *request_id, cJSON *response,
    const char *why)
{
	cJSON	*o = cJSON_CreateObject(), *r;
	char	*s;

	cJSON_AddStringToObject(o, "type", "control_response");
	r = cJSON_AddObjectToObject(o, "response");
	cJSON_AddStringToObject(r, "subtype", response != NULL ? "success" :
	    "error");
	cJSON_AddStringToObject(r, "request_id", request_id);
	if (response != NULL)
		cJSON_AddItemToObject(r, "response", response);
	else
		cJSON_AddStringToObject(r, "error", why);
	s = json_print(o);
	cli_write(w.cli, s, strlen(s));
	cJSON_free(s);
	cJSON_Delete(o);
}

/* --- approvals by the app ---------------------------------------------- */

static void	worker_approval_timeout(evutil_socket_t, short, void *);

static struct approval *
worker_approval_find(const char *request_id)
{
	size_t	i;

	for (i = 0; i < WORKER_APPROVALS_MAX; i++)
		if (w.approvals[i].request_id != NULL &&
		    strcmp(w.approvals[i].request_id, request_id) == 0)
			return &w.approvals[i];
	return NULL;
}

/* The question is settled: the master stops offering it to clients. */
static void
worker_approval_end(struct approval *a)
{
	struct msg_approval	ap;

	memset(&ap, 0, sizeof ap);
	ap.request_id = a->request_id;
	ap.pending = 0;
	msg_approval_compose(worker_out(), w.turn, &ap);
	worker_sent();
	event_free(a->timer);
	free(a->request_id);
	free(a->tool_id);
	free(a->tool);
	cJSON_Delete(a->input);
	memset(a, 0, sizeof *a);
}

/* Denies a tool call: permission_denied {by, reason}, and the CLI told. */
/* A denial: the permission_denied event, and the CLI's answer in resp. */
static void
worker_deny_into(cJSON *resp, const char *tool, const char *tool_id,
    const char *by, const char *reason)
{
	cJSON	*ev = cJSON_CreateObject();

	cJSON_AddStringToObject(ev, "tool_id", tool_id != NULL ? tool_id : "");
	cJSON_AddStringToObject(ev, "name", tool != NULL ? tool : "");
	cJSON_AddStringToObject(ev, "by", by);
	cJSON_AddStringToObject(ev, "reason", reason);
	worker_bridge_event(NULL, "permission_denied", ev);
	if (tool_id != NULL)
		bridge_permission_denied(w.bridge, tool_id);
	cJSON_AddStringToObject(resp, "behavior", "deny");
	cJSON_AddStringToObject(resp, "message", reason);
}

static void
worker_deny(const char *request_id, const char *tool, const char *tool_id,
    const char *by, const char *reason)
{
	cJSON	*resp = cJSON_CreateObject();

	worker_deny_into(resp, tool, tool_id, by, reason);
	worker_control_answer(request_id, resp, NULL);
}

static void
worker_allow(const char *request_id, const cJSON *input)
{
	cJSON	*resp = cJSON_CreateObject();

	/* Allowing means echoing the input back (or the app's version). */
	cJSON_AddStringToObject(resp, "behavior", "allow");
	cJSON_AddItemToObject(resp, "updatedInput", cJSON_Duplicate(input, 1));
	worker_control_answer(request_id, resp, NULL);
}

/* Puts a question the gate let through to the app; 0, or -1 if full. */
static int
worker_approval_ask(const char *request_id, const char *tool,
    const char *tool_id, const cJSON *input)
{
	struct approval		*a = NULL;
	struct msg_approval	 ap;
	struct timeval		 tv;
	cJSON			*ev;
	size_t			 i;

	for (i = 0; i < WORKER_APPROVALS_MAX && a == NULL; i++)
		if (w.approvals[i].request_id == NULL)
			a = &w.approvals[i];
	if (a == NULL)
		return -1;
	a->request_id = xstrdup(request_id);
	a->tool_id = tool_id != NULL ? xstrdup(tool_id) : NULL;
	a->tool = xstrdup(tool);
	a->input = cJSON_Duplicate(input, 1);
	a->timer = evtimer_new(w.base, worker_approval_timeout, a);
	tv = util_ms_tv(w.approval_timeout_ms);
	evtimer_add(a->timer, &tv);
	/* The master first, so that an answer to the event finds it. */
	memset(&ap, 0, sizeof ap);
	ap.request_id = request_id;
	ap.pending = 1;
	msg_approval_compose(worker_out(), w.turn, &ap);
	worker_sent();
	ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "request_id", request_id);
	cJSON_AddStringToObject(ev, "tool_id", tool_id != NULL ? tool_id : "");
	cJSON_AddStringToObject(ev, "name", tool);
	cJSON_AddItemToObject(ev, "input", cJSON_Duplicate(input, 1));
	worker_bridge_event(NULL, "permission_request", ev);
	log_debug("permission request %s (%s) put to the app", request_id,
	    tool);
	return 0;
}

static void
worker_approval_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct approval	*a = arg;
	char		 reason[WORKER_ERR_MAX];

	snprintf(reason, sizeof reason, "no answer to the permission request "
	    "within %llu ms", (unsigned long long)w.approval_timeout_ms);
	worker_deny(a->request_id, a->tool, a->tool_id, "timeout", reason);
	worker_approval_end(a);
}

/* The app's answer (the master checked the first one wins). */
static void
worker_permission(const struct msg_permission *p)
{
	const cJSON	*upd = p->updated_input;
	struct approval	*a;
	const char	*by;
	char		 reason[WORKER_ERR_MAX];

	if ((a = worker_approval_find(p->request_id)) == NULL)
		return;		/* settled meanwhile (timeout, cancel) */
	if (!p->allow)
		worker_deny(a->request_id, a->tool, a->tool_id, "client",
		    p->message != NULL ? p->message : "denied by the client");
	else if (cJSON_IsObject(upd) && w.gate != NULL && gate_check(w.gate,
	    a->tool, upd, &by, reason, sizeof reason) == -1)
		/* The daemon's rules hold for what the app rewrote too. */
		worker_deny(a->request_id, a->tool, a->tool_id, by, reason);
	else
		worker_allow(a->request_id, cJSON_IsObject(upd) ? upd :
		    a->input);
	worker_approval_end(a);
}

/* The CLI withdrew a question (its turn was interrupted, say). */
static void
worker_bridge_control_cancel(void *arg, const char *request_id)
{
	struct approval	*a;
	cJSON		*ev;

	if ((a = worker_approval_find(request_id)) == NULL)
		return;
	ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "request_id", a->request_id);
	cJSON_AddStringToObject(ev, "tool_id", a->tool_id != NULL ?
	    a->tool_id : "");
	cJSON_AddStringToObject(ev, "name", a->tool);
	worker_bridge_event(NULL, "permission_cancelled", ev);
	worker_approval_end(a);
}

/* Every open question denied (an interrupt), or dropped (the CLI left). */
static void
worker_approvals_settle(int deny)
{
	size_t	i;

	for (i = 0; i < WORKER_APPROVALS_MAX; i++) {
		if (w.approvals[i].request_id == NULL)
			continue;
		if (deny && w.cli != NULL)
			worker_deny(w.approvals[i].request_id,
			    w.approvals[i].tool, w.approvals[i].tool_id,
			    "interrupt", "the turn was interrupted");
		worker_approval_end(&w.approvals[i]);
	}
}

/* The CLI asks us: can_use_tool is answered here (the sandbox is the line). */
static void
worker_bridge_control_request(void *arg, const char *request_id,
    const cJSON *request)
{
	const cJSON	*sub = cJSON_GetObjectItemCaseSensitive(request, "subtype");
	const cJSON	*input;
	const char	*tool, *tool_id, *by;
	char		 reason[WORKER_ERR_MAX];
	cJSON		*resp;

	if (!cJSON_IsString(sub)) {
		worker_control_answer(request_id, NULL, "malformed control request");
		return;
	}
	if (strcmp(sub->valuestring, "can_use_tool") == 0) {
		input = cJSON_GetObjectItemCaseSensitive(request, "input");
		tool = json_str(request, "tool_name");
		tool_id = json_str(request, "tool_use_id");
		/* Asked before it runs: its changes are all seen. */
		fswatch_begin(tool, tool_id);
		resp = cJSON_CreateObject();
		if (w.gate != NULL && gate_check(w.gate, tool, input, &by, reason,
		    sizeof reason) == -1)
			worker_deny_into(resp, tool, tool_id, by, reason);
		else if (!cJSON_IsObject(input)) {
			cJSON_AddStringToObject(resp, "behavior", "deny");
			cJSON_AddStringToObject(resp, "message",
			    "malformed tool input");
		} else if (w.approvals_client) {
			/* The daemon's rules passed it: the app decides. */
			cJSON_Delete(resp);
			if (worker_approval_ask(request_id, tool, tool_id,
			    input) == -1)
				worker_deny(request_id, tool, tool_id, "policy",
				    "too many permission requests waiting");
			return;
		} else {
			/* Allowing means echoing the input back unchanged. */
			cJSON_AddStringToObject(resp, "behavior", "allow");
			cJSON_AddItemToObject(resp, "updatedInput",
			    cJSON_Duplicate(input, 1));
		}
		worker_control_answer(request_id, resp, NULL);
		return;
	}
	worker_control_answer(request_id, NULL, "unsupported control request");
}

static void
worker_bridge_control_response(void *arg, const char *request_id, int ok,
    const cJSON *response)
{
	struct msg_configured	cd;
	const char		*e;

	if (w.probe_pending && strcmp(request_id, "hp-probe") == 0) {
		w.probe_pending = 0;
		msg_empty_compose(worker_out(), MSG_PROBED, w.turn);
		worker_sent();
	}
	if (w.cfg_pending > 0 && strncmp(request_id, WORKER_CFG_ID,
	    sizeof WORKER_CFG_ID - 1) == 0) {
		if (!ok && w.cfg_error[0] == '\0') {
			e = json_str(response, "error");
			snprintf(w.cfg_error, sizeof w.cfg_error, "%s",
			    e != NULL ? e : "the CLI refused the setting");
		}
		if (--w.cfg_pending > 0)
			return;
		/* Every setting answered: the master replies to configure. */
		cd.ok = w.cfg_error[0] == '\0';
		cd.message = w.cfg_error;
		cd.json = NULL;
		msg_configured_compose(worker_out(), w.turn, &cd);
		worker_sent();
	}
}

static const struct bridge_cb worker_bridge_cb = {
	worker_bridge_event, worker_bridge_init, worker_bridge_turn_end,
	worker_bridge_control_request, worker_bridge_control_response, NULL,
	worker_bridge_control_cancel
};

/* --- the CLI ----------------------------------------------------------- */

static void
worker_cli_line(void *arg, const char *line, size_t len)
{
	if (w.busy)
		w.turn_output = 1;
	bridge_line(w.bridge, line, len, util_now_ms());
}

static void
worker_cli_line_dropped(void *arg, size_t len, const char *head)
{
	struct msg_turn_end	te;

	log_warnx("dropped a CLI line of %zu bytes: %.40s...", len, head);
	bridge_line_dropped(w.bridge, len);
	/*
	 * Dropped, the result line would leave the turn open forever: the
	 * turn is over, its result too big to relay.
	 */
	if (!w.busy || strncmp(head, WORKER_RESULT_HEAD,
	    strlen(WORKER_RESULT_HEAD)) != 0)
		return;
	memset(&te, 0, sizeof te);
	te.outcome = MSG_TURN_DONE;
	te.done.is_error = 1;
	te.done.interrupted = w.interrupting;
	te.done.terminal_reason = "result_too_large";
	te.stats = *bridge_turn_stats(w.bridge, util_now_ms());
	worker_turn_end_send(&te);
}

static void
worker_cli_exited(void *arg, int status)
{
	struct msg_open_failed	 of;
	struct msg_cli_exit	 ce;
	char			 msg[WORKER_ERR_MAX];
	const char *tail = cli_stderr_tail(w.cli);

	if (WIFEXITED(status))
		snprintf(msg, sizeof msg, "CLI exited with status %d",
		    WEXITSTATUS(status));
	else
		snprintf(msg, sizeof msg, "CLI killed by signal %d",
		    WTERMSIG(status));
	log_info("%s", msg);
	w.cli_gone = 1;
	if (w.busy) {
		if (w.timed_out)
			worker_turn_finish_error(ERR_TURN_TIMEOUT,
			    "turn timed out; the CLI was killed");
		else {
			char full[WORKER_ERR_MAX * 2];

			snprintf(full, sizeof full, "%s%s%s%.400s", msg,
			    w.interrupting ? " (it ignored the interrupt)" : "",
			    *tail != '\0' ? ": " : "", tail);
			worker_turn_finish_error(ERR_CLI_EXITED, full);
		}
	}
	if (w.probe_pending) {
		of.code = ERR_SPAWN_FAILED;
		of.message = *tail != '\0' ? tail : msg;
		of.exiting = 1;		/* not a spare again */
		msg_open_failed_compose(worker_out(), w.turn, &of);
	}
	/* What the CLI wrote on its way out (a stop, a move). */
	transcript_save(worker_out(), w.turn);
	ce.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	ce.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	ce.stderr_tail = tail;
	msg_cli_exit_compose(worker_out(), w.turn, &ce);
	worker_sent();
	/* One worker serves one CLI lifetime. */
	worker_exit(0);
}

static const struct cli_cb worker_cli_cb = {
	worker_cli_line, worker_cli_line_dropped, worker_cli_exited, NULL
};

/* Ends the turn in flight with an error line, with the stats so far. */
static void
worker_turn_finish_error(const char *code, const char *message)
{
	struct msg_turn_end	te;

	if (!w.busy)
		return;
	memset(&te, 0, sizeof te);
	te.outcome = MSG_TURN_ERROR;
	te.code = code;
	te.message = message;
	te.stats = *bridge_turn_stats(w.bridge, util_now_ms());
	/* The master must not send another turn to a worker on its way out. */
	te.exiting = w.cli_gone;
	/*
	 * The CLI died before it said a word of this turn (killed just after
	 * the last one): nothing of the turn happened, a new CLI may run it.
	 */
	te.retry = w.cli_gone && !w.turn_output && !w.timed_out &&
	    !w.interrupting;
	worker_turn_end_send(&te);
}

static void
worker_ctl(const char *subtype, const char *id)
{
	char	buf[256];

	snprintf(buf, sizeof buf, "{\"type\":\"control_request\","
	    "\"request_id\":\"%s\",\"request\":{\"subtype\":\"%s\"}}", id,
	    subtype);
	cli_write(w.cli, buf, strlen(buf));
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
	cli_write(w.cli, s, strlen(s));
	cJSON_free(s);
	cJSON_Delete(o);
}

/* configure: the CLI's own control requests change it live. */
static void
worker_configure(const struct msg_configure *c)
{
	struct msg_configured	cd;
	char			id[32];

	w.cfg_pending = 0;
	w.cfg_error[0] = '\0';
	if (c->model != NULL) {
		snprintf(id, sizeof id, WORKER_CFG_ID "%llu",
		    (unsigned long long)++w.ctl_seq);
		worker_ctl_str("set_model", id, "model", c->model);
		w.cfg_pending++;
	}
	if (c->permission_mode != NULL) {
		snprintf(id, sizeof id, WORKER_CFG_ID "%llu",
		    (unsigned long long)++w.ctl_seq);
		worker_ctl_str("set_permission_mode", id, "mode",
		    c->permission_mode);
		w.cfg_pending++;
	}
	if (w.cfg_pending == 0) {
		memset(&cd, 0, sizeof cd);
		cd.ok = 1;
		cd.message = "";
		msg_configured_compose(worker_out(), w.turn, &cd);
		worker_sent();
	}
}

static void
worker_interrupt(void)
{
	struct timeval	tv;
	char		id[32];

	struct msg_turn_end	te;

	if (!w.busy || w.interrupting)
		return;
	/* Held behind the CLI's own turn: it ends before it began. */
	if (w.held != NULL) {
		memset(&te, 0, sizeof te);
		if (w.timed_out) {
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
	w.interrupting = 1;
	/* Open questions are denied first: the CLI may then stop. */
	worker_approvals_settle(1);
	bridge_interrupting(w.bridge);
	snprintf(id, sizeof id, "hp-int-%llu",
	    (unsigned long long)++w.ctl_seq);
	worker_ctl("interrupt", id);
	/* A CLI that ignores it is killed after kill_grace. */
	tv = util_ms_tv(w.kill_grace_ms);
	evtimer_add(w.grace_timer, &tv);
}

static void
worker_grace_timer(evutil_socket_t fd, short what, void *arg)
{
	/* The CLI ignored the interrupt: kill it; its exit ends the turn. */
	log_warnx("CLI ignored the interrupt for %llu ms: killing it",
	    (unsigned long long)w.kill_grace_ms);
	cli_kill(w.cli, w.kill_grace_ms);
}

static void
worker_turn_timer(evutil_socket_t fd, short what, void *arg)
{
	log_warnx("turn %u timed out", w.turn);
	w.timed_out = 1;
	worker_interrupt();
}

/* --- messages from the master ------------------------------------------ */

static double
worker_jnum(const cJSON *o, const char *k, double def)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int
worker_jbool(const cJSON *o, const char *k)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* Joins a JSON array of strings with commas into "--flag=a,b". */
static char *
worker_flag_list(const char *flag, const cJSON *arr)
{
	const cJSON	*e;
	size_t		 len = strlen(flag) + 2;
	char		*s;

	cJSON_ArrayForEach(e, arr)
		if (cJSON_IsString(e))
			len += strlen(e->valuestring) + 1;
	s = xmalloc(len);
	snprintf(s, len, "%s=", flag);
	cJSON_ArrayForEach(e, arr) {
		if (!cJSON_IsString(e))
			continue;
		if (s[strlen(s) - 1] != '=')
			strcat(s, ",");
		strcat(s, e->valuestring);
	}
	return s;
}

struct worker_argv {
	const char	*v[WORKER_ARGV_MAX + 1];
	char		*owned[WORKER_ARGV_MAX];
	size_t		 n, nowned;
};

static int
worker_argv_add(struct worker_argv *a, const char *s, int owned)
{
	if (a->n == WORKER_ARGV_MAX) {
		if (owned)
			free((char *)s);
		return -1;
	}
	a->v[a->n++] = s;
	if (owned)
		a->owned[a->nowned++] = (char *)s;
	a->v[a->n] = NULL;
	return 0;
}

static void
worker_argv_free(struct worker_argv *a)
{
	size_t	i;

	for (i = 0; i < a->nowned; i++)
		free(a->owned[i]);
}

static int
worker_build_argv(struct worker_argv *a, const cJSON *o, const char *cli)
{
	const cJSON	*opt = cJSON_GetObjectItemCaseSensitive(o, "options");
	const cJSON	*args = cJSON_GetObjectItemCaseSensitive(o, "cli_args");
	const cJSON	*e;
	const char	*s;
	int		 rc = 0;
	char		*num;

	rc |= worker_argv_add(a, cli, 0);
	cJSON_ArrayForEach(e, args)
		if (cJSON_IsString(e))
			rc |= worker_argv_add(a, e->valuestring, 0);
	rc |= worker_argv_add(a, "--input-format", 0);
	rc |= worker_argv_add(a, "stream-json", 0);
	rc |= worker_argv_add(a, "--output-format", 0);
	rc |= worker_argv_add(a, "stream-json", 0);
	rc |= worker_argv_add(a, "--verbose", 0);
	rc |= worker_argv_add(a, "--include-partial-messages", 0);
	/*
	 * The CLI asks us before a tool runs (the gate: tool lists, firewall,
	 * writes kept in the workdir).  Measured: ~4 ms per warm turn of the
	 * CLI's own; tool_gate = off trades the gate for it.
	 */
	if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "tool_gate"))) {
		rc |= worker_argv_add(a, "--permission-prompt-tool", 0);
		rc |= worker_argv_add(a, "stdio", 0);
	}
	rc |= worker_argv_add(a, w.resume ? "--resume" : "--session-id", 0);
	rc |= worker_argv_add(a, w.cli_session_id, 0);
	if (!cJSON_IsObject(opt))
		return rc;
	if ((s = json_str(opt, "model")) != NULL) {
		rc |= worker_argv_add(a, "--model", 0);
		rc |= worker_argv_add(a, s, 0);
	}
	if ((s = json_str(opt, "permission_mode")) != NULL) {
		rc |= worker_argv_add(a, "--permission-mode", 0);
		rc |= worker_argv_add(a, s, 0);
	}
	/* --flag=value: the variadic flags would swallow what follows. */
	/*
	 * The CLI runs --allowedTools without asking: with the firewall on,
	 * the gate enforces the list instead, so every call is screened.
	 */
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(opt,
	    "allowed_tools")) > 0 && cJSON_GetArraySize(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o,
	    "firewall"), "rules")) == 0)
		rc |= worker_argv_add(a, worker_flag_list("--allowedTools",
		    cJSON_GetObjectItemCaseSensitive(opt, "allowed_tools")), 1);
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(opt,
	    "disallowed_tools")) > 0)
		rc |= worker_argv_add(a, worker_flag_list("--disallowedTools",
		    cJSON_GetObjectItemCaseSensitive(opt, "disallowed_tools")), 1);
	if ((s = json_str(opt, "append_system_prompt")) != NULL) {
		rc |= worker_argv_add(a, "--append-system-prompt", 0);
		rc |= worker_argv_add(a, s, 0);
	}
	if (worker_jnum(opt, "max_turns", 0) > 0) {
		xasprintf(&num, "%d", (int)worker_jnum(opt, "max_turns", 0));
		rc |= worker_argv_add(a, "--max-turns", 0);
		rc |= worker_argv_add(a, num, 1);
	}
	return rc;
}

static int	worker_env_set(const char **, char **, size_t *, const char *,
		    const char *);

/*
 * The gateway's URL and this CLI's token in place of the API's; with an
 * egress proxy, HTTPS_PROXY for the tools (the API itself is plain http
 * on loopback, so the CLI's own requests never take the proxy).
 */
static int
worker_gateway_env(const char **envp, char **owned, size_t *n,
    const cJSON *g)
{
	const char	*url, *tok, *proxy;

	if (!cJSON_IsObject(g))
		return 0;
	if ((url = json_str(g, "url")) == NULL ||
	    (tok = json_str(g, "token")) == NULL)
		return -1;
	if (worker_env_set(envp, owned, n, "ANTHROPIC_BASE_URL", url) == -1 ||
	    worker_env_set(envp, owned, n, "ANTHROPIC_API_KEY", tok) == -1 ||
	    worker_env_set(envp, owned, n, "NO_PROXY",
	    "127.0.0.1,localhost,::1") == -1)
		return -1;
	if ((proxy = json_str(g, "proxy")) != NULL &&
	    (worker_env_set(envp, owned, n, "HTTPS_PROXY", proxy) == -1 ||
	    worker_env_set(envp, owned, n, "https_proxy", proxy) == -1))
		return -1;
	return 0;
}

/* The CLI sees only the allowlisted names of our environment. */
static size_t
worker_build_env(const char **envp, char **owned, const cJSON *names)
{
	const cJSON	*e;
	const char	*v;
	size_t		 n = 0;

	cJSON_ArrayForEach(e, names) {
		if (!cJSON_IsString(e) || n == WORKER_ENV_MAX)
			continue;
		if (strcmp(e->valuestring, "CLAUDECODE") == 0 ||
		    strchr(e->valuestring, '=') != NULL)
			continue;
		if ((v = getenv(e->valuestring)) == NULL)
			continue;
		xasprintf(&owned[n], "%s=%s", e->valuestring, v);
		envp[n] = owned[n];
		n++;
	}
	envp[n] = NULL;
	return n;
}

/* Sets name=value in the CLI's environment, replacing what was there. */
static int
worker_env_set(const char **envp, char **owned, size_t *n, const char *name,
    const char *value)
{
	size_t	 i, len = strlen(name);
	char	*s;

	xasprintf(&s, "%s=%s", name, value);
	for (i = 0; i < *n; i++) {
		if (strncmp(owned[i], name, len) == 0 && owned[i][len] == '=') {
			free(owned[i]);
			owned[i] = s;
			envp[i] = s;
			return 0;
		}
	}
	if (*n == WORKER_ENV_MAX) {
		free(s);
		return -1;
	}
	owned[*n] = s;
	envp[(*n)++] = s;
	envp[*n] = NULL;
	return 0;
}

/*
 * Whether the CLI keeps a transcript of session id for this workdir in
 * its config dir (PROTOCOL.md 18, 20): <config>/projects/<cwd-key>/<id>.jsonl,
 * the key being the workdir with every byte but [A-Za-z0-9] made '-'.
 * The CLI's own record is the truth on "has a conversation": the master's
 * may lag it (killed between the CLI's first write and its commit).
 */
static int
worker_transcript_exists(const char *config_dir, const char *workdir,
    const char *id)
{
	char		 path[PATH_MAX];
	const char	*p;
	struct stat	 st;
	int		 n;

	if (config_dir == NULL || config_dir[0] != '/')
		return 0;
	n = snprintf(path, sizeof path, "%s/projects/", config_dir);
	if (n < 0 || (size_t)n >= sizeof path)
		return 0;
	for (p = workdir; *p != '\0' && (size_t)n < sizeof path - 1; p++)
		path[n++] = isalnum((unsigned char)*p) ? *p : '-';
	if (*p != '\0' || (size_t)snprintf(path + n, sizeof path - (size_t)n,
	    "/%s.jsonl", id) >= sizeof path - (size_t)n)
		return 0;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* "what path: errno text"; a long path is cut, not the point. */
static void
worker_path_err(char *err, size_t errlen, const char *what,
    const char *path)
{
	if (snprintf(err, errlen, "%s%s%s: %s", what, *what != '\0' ? " " : "",
	    path, strerror(errno)) < 0 && errlen > 0)
		err[0] = '\0';
}

/* The real directory of the CLI binary, found as execvpe finds it. */
static int
worker_cli_dir(const char *cli, char *out, size_t outlen, char *err,
    size_t errlen)
{
	char		 path[PATH_MAX], real[PATH_MAX];
	const char	*p, *end, *search = getenv("PATH");
	int		 found = 0;

	if (strchr(cli, '/') != NULL)
		found = realpath(cli, real) != NULL;
	else {
		if (search == NULL)
			search = "/bin:/usr/bin";
		for (p = search; !found && *p != '\0'; p = *end ? end + 1 : end) {
			if ((end = strchr(p, ':')) == NULL)
				end = p + strlen(p);
			snprintf(path, sizeof path, "%.*s%s%s", (int)(end - p),
			    p, end == p ? "." : "", "/");
			if (strlen(path) + strlen(cli) >= sizeof path)
				continue;
			strcat(path, cli);
			found = access(path, X_OK) == 0 &&
			    realpath(path, real) != NULL;
		}
	}
	if (!found) {
		snprintf(err, errlen, "cli_path %s: not found", cli);
		return -1;
	}
	snprintf(out, outlen, "%s", dirname(real));
	return 0;
}

static int
worker_landlock_mode(const char *s, enum sandbox_landlock *mode)
{
	if (s == NULL || strcmp(s, "off") == 0)
		*mode = SANDBOX_LANDLOCK_OFF;
	else if (strcmp(s, "best_effort") == 0)
		*mode = SANDBOX_LANDLOCK_BEST_EFFORT;
	else if (strcmp(s, "required") == 0)
		*mode = SANDBOX_LANDLOCK_REQUIRED;
	else
		return -1;
	return 0;
}

/*
 * The session's identity and private directories from the open message:
 * "identity" {uid, gid, groups, unprivileged}, "dirs" {parents[], home,
 * tmpdir}, all absolute paths the master made (DESIGN.md section 6.3).
 */
static int
worker_become_parse(const cJSON *o, struct become *b, char *err,
    size_t errlen)
{
	const cJSON	*id = cJSON_GetObjectItemCaseSensitive(o, "identity");
	const cJSON	*d = cJSON_GetObjectItemCaseSensitive(o, "dirs");
	const cJSON	*g, *e;
	const char	*p;

	memset(b, 0, sizeof *b);
	if (!cJSON_IsObject(id) || !cJSON_IsObject(d)) {
		snprintf(err, errlen, "open message without identity");
		return -1;
	}
	b->id.uid = (uid_t)worker_jnum(id, "uid", 0);
	b->id.gid = (gid_t)worker_jnum(id, "gid", 0);
	b->id.unprivileged_daemon = worker_jbool(id, "unprivileged");
	g = cJSON_GetObjectItemCaseSensitive(id, "groups");
	cJSON_ArrayForEach(e, g)
		if (cJSON_IsNumber(e) && b->id.ngroups < IDENT_GROUPS_MAX)
			b->id.groups[b->id.ngroups++] = (gid_t)e->valuedouble;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "parents")) {
		if (!cJSON_IsString(e) || e->valuestring[0] != '/' ||
		    b->nparents == BECOME_DIRS_MAX) {
			snprintf(err, errlen, "bad dirs in the open message");
			return -1;
		}
		b->parents[b->nparents++] = e->valuestring;
	}
	if ((p = json_str(d, "home")) == NULL || p[0] != '/')
		goto bad;
	b->private[b->nprivate++] = p;
	if ((p = json_str(d, "tmpdir")) == NULL || p[0] != '/')
		goto bad;
	b->private[b->nprivate++] = p;
	return 0;
bad:
	snprintf(err, errlen, "bad dirs in the open message");
	return -1;
}

/*
 * Fills the CLI's sandbox from the open message's "sandbox" object.  We
 * already are the session's identity: the CLI keeps it (no drop in the
 * child); its HOME holds its config dir, HOME/.claude.
 */
/* The gateway's ports are the only ones the CLI may connect to. */
static int
worker_egress(struct worker_sandbox *sb, const cJSON *g, char *err,
    size_t errlen)
{
	const char	*mode;

	if (!cJSON_IsObject(g))
		return 0;
	mode = json_str(g, "egress");
	if (mode == NULL || strcmp(mode, "on") == 0)
		sb->sc.egress = SANDBOX_EGRESS_ON;
	else if (strcmp(mode, "required") == 0)
		sb->sc.egress = SANDBOX_EGRESS_REQUIRED;
	else if (strcmp(mode, "off") == 0)
		sb->sc.egress = SANDBOX_EGRESS_OFF;
	else {
		snprintf(err, errlen, "unknown egress mode");
		return -1;
	}
	sb->sc.egress_ports[0] = (unsigned short)worker_jnum(g, "port", 0);
	sb->sc.egress_ports[1] = (unsigned short)worker_jnum(g, "proxy_port",
	    0);
	return 0;
}

static int
worker_sandbox_setup(struct worker_sandbox *sb, const cJSON *o,
    const char *home, const char *tmpdir, const char *cli, char *err,
    size_t errlen)
{
	const cJSON	*j = cJSON_GetObjectItemCaseSensitive(o, "sandbox");
	struct sandbox_conf *sc = &sb->sc;

	memset(sb, 0, sizeof *sb);
	sc->workdir = w.workdir;
	if (worker_egress(sb, cJSON_GetObjectItemCaseSensitive(o, "gateway"),
	    err, errlen) == -1)
		return -1;
	sc->uid = geteuid();
	sc->gid = getegid();
	if ((size_t)snprintf(sb->tmpdir, sizeof sb->tmpdir, "%s", tmpdir) >=
	    sizeof sb->tmpdir || (size_t)snprintf(sb->config_dir,
	    sizeof sb->config_dir, "%s/%s", home, WORKER_CONFIG_DIR) >=
	    sizeof sb->config_dir) {
		snprintf(err, errlen, "private dir path too long");
		return -1;
	}
	if (mkdir(sb->config_dir, WORKER_PRIVATE_MODE) == -1 &&
	    errno != EEXIST) {
		worker_path_err(err, errlen, "mkdir", sb->config_dir);
		return -1;
	}
	sc->tmpdir = sb->tmpdir;
	sc->config_dir = home;		/* HOME, and the config dir in it */
	if (!cJSON_IsObject(j))
		return 0;
	if (worker_landlock_mode(json_str(j, "landlock"), &sc->landlock) ==
	    -1) {
		snprintf(err, errlen, "unknown landlock mode");
		return -1;
	}
	sc->seccomp_profile = json_str(j, "seccomp");
	sc->nofile = (rlim_t)worker_jnum(j, "rlimit_nofile", 0);
	sc->nproc = (rlim_t)worker_jnum(j, "rlimit_nproc", 0);
	sc->cpu = (rlim_t)worker_jnum(j, "rlimit_cpu", 0);
	sc->fsize = (rlim_t)worker_jnum(j, "rlimit_fsize", 0);
	sb->on = sc->landlock != SANDBOX_LANDLOCK_OFF ||
	    sc->seccomp_profile != NULL;
	sb->apply = sb->on || sc->nofile != 0 || sc->nproc != 0 ||
	    sc->cpu != 0 || sc->fsize != 0 || sc->egress != SANDBOX_EGRESS_OFF;
	if (!sb->on)
		return 0;
	if (worker_cli_dir(cli, sb->clidir, sizeof sb->clidir, err,
	    errlen) == -1)
		return -1;
	sb->rx[0] = sb->clidir;
	sb->rx[1] = NULL;
	sc->rx_paths = sb->rx;
	return 0;
}

static void
worker_open_failed_send(const char *code, const char *message, int exiting)
{
	struct msg_open_failed	of;

	log_warnx("open failed: %s", message);
	of.code = code;
	of.message = message;
	of.exiting = exiting;	/* not a spare again */
	msg_open_failed_compose(worker_out(), w.turn, &of);
	worker_sent();
}

static void
worker_open_failed_exiting(const char *code, const char *message)
{
	worker_open_failed_send(code, message, 1);
	worker_exit(WORKER_EXIT_FATAL);
}

/* This session's failure, as its identity: no spare for anyone else. */
static void
worker_open_failed_session(const char *code, const char *message)
{
	worker_open_failed_send(code, message, 1);
	worker_exit(0);
}

static void
worker_open_failed(const char *code, const char *message)
{
	worker_open_failed_send(code, message, 0);
}

static void
worker_open(const cJSON *o)
{
	struct worker_argv	 a;
	struct cli_spec		 spec;
	const char		*session, *workdir, *id, *cli;
	const char		*roots[CONFIG_LIST_MAX];
	size_t			 nroots = 0;
	const cJSON		*e;
	struct become		 b;
	struct passwd		*pw;
	char			 home[PATH_MAX];
	const char		*envp[WORKER_ENV_MAX + 1];
	char			*envown[WORKER_ENV_MAX];
	int			 spawn_errno;
	char			 err[WORKER_ERR_MAX];
	size_t			 nenv, i;
	struct msg_opened	 op;
	struct bridge_cb	 bcb = worker_bridge_cb;
	struct cli_cb		 ccb = worker_cli_cb;
	struct worker_sandbox	 sb;
	const cJSON		*opt, *mcp;
	char			 mcp_path[PATH_MAX], *num;
	int			 rc = 0;

	session = json_str(o, "session");
	workdir = json_str(o, "workdir");
	id = json_str(o, "cli_session_id");
	cli = json_str(o, "cli_path");
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o,
	    "workdir_roots"))
		if (cJSON_IsString(e) && nroots < CONFIG_LIST_MAX)
			roots[nroots++] = e->valuestring;
	if (session == NULL || workdir == NULL || nroots == 0 || id == NULL ||
	    cli == NULL || strlen(id) > UUID_STR_LEN ||
	    worker_become_parse(o, &b, err, sizeof err) == -1) {
		worker_open_failed(ERR_INTERNAL, "malformed open message");
		return;
	}
	log_setrole("worker[%.64s]", session);
	/*
	 * The privileged part: the session's private dirs, then its identity
	 * for good.  From here on a failure ends this worker: it is no
	 * longer anybody's spare.
	 */
	if (become_dirs(&b, err, sizeof err) == -1 ||
	    become_identity(&b, w.parent, err, sizeof err) == -1) {
		worker_open_failed_session(ERR_SPAWN_FAILED, err);
		return;
	}
	/* "~" in workdir_root is this identity's home, if it has one. */
	home[0] = '\0';
	if ((pw = getpwuid(geteuid())) != NULL && pw->pw_dir != NULL)
		snprintf(home, sizeof home, "%s", pw->pw_dir);
	if (workdir_enter_roots(roots, nroots, home[0] ? home : NULL, workdir,
	    w.workdir, sizeof w.workdir, err, sizeof err) == -1) {
		worker_open_failed_session(ERR_WORKDIR_DENIED, err);
		return;
	}
	snprintf(w.cli_session_id, sizeof w.cli_session_id, "%s", id);
	w.kill_grace_ms = (uint64_t)worker_jnum(o, "kill_grace_ms", 5000);
	opt = cJSON_GetObjectItemCaseSensitive(o, "options");
	w.approvals_client = json_str(opt, "approvals") != NULL &&
	    strcmp(json_str(opt, "approvals"), "client") == 0;
	w.approval_timeout_ms = (uint64_t)worker_jnum(opt,
	    "approval_timeout_ms", worker_jnum(o, "approval_timeout_ms",
	    WORKER_APPROVAL_TIMEOUT_MS));

	if (worker_sandbox_setup(&sb, o, b.private[0], b.private[1], cli, err,
	    sizeof err) == -1) {
		worker_open_failed_session(ERR_SPAWN_FAILED, err);
		return;
	}

	/* The stored transcript, where a wiped dir or another host lacks it. */
	snprintf(w.config_dir, sizeof w.config_dir, "%s", sb.config_dir);
	transcript_restore(w.config_dir, w.workdir, id);
	w.resume = worker_jbool(o, "resume");
	/* The session's own config dir holds its transcripts. */
	if (!w.resume && worker_transcript_exists(sb.config_dir, w.workdir,
	    id)) {
		log_info("the CLI has a transcript of %s: resuming it", id);
		w.resume = 1;
	}
	/* The session's MCP servers: a file in its private config dir. */
	mcp = cJSON_GetObjectItemCaseSensitive(opt, "mcp_config");
	if (mcp != NULL && (mcp_config_check(mcp, err, sizeof err) == -1 ||
	    mcp_config_write(sb.config_dir, mcp, mcp_path, sizeof mcp_path,
	    err, sizeof err) == -1)) {
		worker_open_failed_session(ERR_SPAWN_FAILED, err);
		return;
	}
	memset(&a, 0, sizeof a);
	rc = worker_build_argv(&a, o, cli);
	if (mcp != NULL) {
		/* Its servers only, none from elsewhere; --flag=value. */
		xasprintf(&num, "--mcp-config=%s", mcp_path);
		rc |= worker_argv_add(&a, num, 1);
		rc |= worker_argv_add(&a, "--strict-mcp-config", 0);
	}
	if (sb.on) {
		/* Last, so that it wins over cli_args. */
		rc |= worker_argv_add(&a, "--settings", 0);
		rc |= worker_argv_add(&a, WORKER_CLI_SETTINGS, 0);
	}
	if (rc == -1) {
		worker_argv_free(&a);
		worker_open_failed_session(ERR_BAD_REQUEST,
		    "too many CLI arguments");
		return;
	}
	nenv = worker_build_env(envp, envown,
	    cJSON_GetObjectItemCaseSensitive(o, "cli_env"));
	/* The session's own: HOME (dotfiles), config dir, TMPDIR. */
	if (worker_env_set(envp, envown, &nenv, "TMPDIR", sb.tmpdir) == -1 ||
	    worker_env_set(envp, envown, &nenv, "HOME", b.private[0]) == -1 ||
	    worker_env_set(envp, envown, &nenv, "CLAUDE_CONFIG_DIR",
	    sb.config_dir) == -1 || (sb.on && worker_env_set(envp, envown,
	    &nenv, "IS_SANDBOX", "1") == -1)) {
		for (i = 0; i < nenv; i++)
			free(envown[i]);
		worker_argv_free(&a);
		worker_open_failed_session(ERR_BAD_REQUEST,
		    "too many CLI variables");
		return;
	}
	/* The model API through the gateway, with a token, never the key. */
	if (worker_gateway_env(envp, envown, &nenv,
	    cJSON_GetObjectItemCaseSensitive(o, "gateway")) == -1) {
		for (i = 0; i < nenv; i++)
			free(envown[i]);
		worker_argv_free(&a);
		worker_open_failed_session(ERR_BAD_REQUEST,
		    "too many CLI variables");
		return;
	}
	spec.path = cli;
	spec.argv = a.v;
	spec.envp = envp;
	spec.workdir = w.workdir;
	spec.sandbox = sb.apply ? &sb.sc : NULL;
	w.bridge = bridge_new(&bcb);
	w.cli = cli_spawn(w.base, &spec,
	    (size_t)worker_jnum(o, "cli_line_max", 16 << 20),
	    (size_t)worker_jnum(o, "stderr_tail_bytes", 4096), &ccb, err,
	    sizeof err);
	spawn_errno = errno;
	for (i = 0; i < nenv; i++)
		free(envown[i]);
	worker_argv_free(&a);
	if (w.cli == NULL) {
		bridge_free(w.bridge);
		w.bridge = NULL;
		/* Out of descriptors or memory: the client may try later. */
		worker_open_failed_session(util_errno_capacity(spawn_errno) ?
		    ERR_CAPACITY : ERR_SPAWN_FAILED, err);
		return;
	}
	/*
	 * The worker reads what the CLI writes: from now on it needs only its
	 * pipes, the channel, signals to the CLI's group, waitpid and /proc.
	 */
	if (sb.on && sandbox_worker_confine(cli_pid(w.cli), err,
	    sizeof err) == -1) {
		cli_free(w.cli);
		w.cli = NULL;
		bridge_free(w.bridge);
		w.bridge = NULL;
		worker_open_failed_exiting(ERR_SPAWN_FAILED, err);
		return;
	}
	/* Loaded while the CLI boots: it costs the first turn nothing. */
	if ((w.gate = gate_new(o, w.workdir, err, sizeof err)) == NULL) {
		cli_free(w.cli);
		w.cli = NULL;
		bridge_free(w.bridge);
		w.bridge = NULL;
		worker_open_failed_exiting(ERR_SPAWN_FAILED, err);
		return;
	}
	fswatch_init(w.base, w.workdir);
	w.session = xstrdup(session);
	w.state = W_OPEN;
	log_info("CLI %ld started in %s (%s %s)%s", (long)cli_pid(w.cli),
	    w.workdir, w.resume ? "resume" : "new", id,
	    sb.on ? ", sandboxed" : "");

	op.cli_pid = cli_pid(w.cli);
	op.cli_session_id = w.cli_session_id;
	op.workdir = w.workdir;
	op.resume = w.resume;
	msg_opened_compose(worker_out(), w.turn, &op);
	worker_sent();
	/* open: tell the master again once the CLI answers. */
	if (worker_jbool(o, "probe")) {
		w.probe_pending = 1;
		worker_ctl("get_binary_version", "hp-probe");
	}
}

/* Writes our held user line to the CLI: our turn begins. */
static void
worker_held_write(void)
{
	char	*s = w.held;

	w.held = NULL;
	w.awaiting_init = 1;
	bridge_turn_start(w.bridge, util_now_ms());
	if (cli_write(w.cli, s, strlen(s)) == -1)
		worker_turn_finish_error(ERR_CLI_EXITED, "the CLI is gone");
	free(s);
}

static void
worker_turn(uint32_t turn, const struct msg_turn *t)
{
	const char	*prompt = t->prompt;
	uint64_t	 timeout = t->timeout_ms;
	cJSON		*line, *msg;
	char		*s, *esc;
	struct timeval	 tv;

	w.turn = turn;
	if (w.busy) {
		w.busy = 1;
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
	w.busy = 1;
	w.turn_output = 0;
	w.held = xstrdup(s);
	cJSON_free(s);
	/* Like a queued one, it waits for the CLI's own turn to end. */
	if (w.cli_own)
		log_info("turn %u waits for the CLI's own turn", turn);
	else
		worker_held_write();
	if (timeout > 0) {
		tv = util_ms_tv(timeout);
		evtimer_add(w.turn_timer, &tv);
	}
}

static void
worker_stop(void)
{
	if (w.stopping)
		return;
	w.stopping = 1;
	if (w.cli == NULL) {
		worker_exit(0);
		return;
	}
	/*
	 * What is left to do (the CLI's exit, ours) yields the CPU to live
	 * sessions' turns: a wave of stops does not hold them up.
	 */
	if (setpriority(PRIO_PROCESS, 0, WORKER_STOP_NICE) == -1 ||
	    setpriority(PRIO_PGRP, cli_pid(w.cli), WORKER_STOP_NICE) == -1)
		log_debug("setpriority: %s", strerror(errno));
	/* An interrupt stops running tools; SIGTERM to the CLI would not. */
	worker_interrupt();
	cli_kill(w.cli, w.kill_grace_ms);
}

static void
worker_dispatch(struct msg *m)
{
	cJSON			*o = NULL;
	struct msg_turn		 t;
	struct msg_permission	 pm;
	struct msg_configure	 cf;
	struct msg_transcript	 tr;

	switch (m->hdr.type) {
	case MSG_OPEN:
		if (w.state != W_IDLE || (o = msg_open_decode(m)) == NULL)
			fatalx("bad open message from master");
		worker_open(o);
		break;
	case MSG_TURN:
		if (w.state != W_OPEN || msg_turn_decode(m, &t) == -1)
			fatalx("bad turn message from master");
		worker_turn(m->hdr.turn, &t);
		msg_turn_clear(&t);
		break;
	case MSG_INTERRUPT:
		if (msg_empty_decode(m) == -1)
			fatalx("bad interrupt message from master");
		if (w.state == W_OPEN)
			worker_interrupt();
		break;
	case MSG_CONFIGURE:
		if (msg_configure_decode(m, &cf) == -1)
			fatalx("bad configure message from master");
		if (w.state == W_OPEN)
			worker_configure(&cf);
		msg_configure_clear(&cf);
		break;
	case MSG_PERMISSION:
		if (msg_permission_decode(m, &pm) == -1)
			fatalx("bad permission message from master");
		if (w.state == W_OPEN)
			worker_permission(&pm);
		msg_permission_clear(&pm);
		break;
	case MSG_STOP:
		if (msg_empty_decode(m) == -1)
			fatalx("bad stop message from master");
		worker_stop();
		break;
	case MSG_TRANSCRIPT:
		if (w.state != W_IDLE || msg_transcript_decode(m, &tr) == -1)
			fatalx("bad transcript message from master");
		transcript_restore_add(&tr);
		msg_transcript_clear(&tr);
		break;
	default:
		fatalx("unexpected %s message from master",
		    msg_type_name(m->hdr.type));
	}
	cJSON_Delete(o);
}

static void
worker_master_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct msg	 m;
	int		 r;

	while ((r = msg_get(in, &m)) == MSG_GET_OK) {
		worker_dispatch(&m);
		msg_clear(&m);
	}
	if (r == MSG_GET_VERSION) {
		/* Said, and with its own exit status: the master won't loop. */
		log_warnx("hotplexd speaks message version %u, this worker %u: "
		    "hotplexd and hotplex-worker are from different builds",
		    m.hdr.version, MSG_VERSION);
		worker_exit(WORKER_EXIT_VERSION);
		return;
	}
	if (r == MSG_GET_BAD)
		fatalx("malformed message from master");
}

static void
worker_master_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* The master is gone: nothing of ours may outlive it. */
		log_debug("master closed the channel");
		bufferevent_free(w.master);
		w.master = NULL;
		/*
		 * Stop the CLI gracefully (interrupt, EOF, TERM; KILL after
		 * kill_grace): killed outright it loses the transcript lines it
		 * has not written yet, and --resume would miss the last turns.
		 */
		worker_stop();
	}
}

static void
worker_signal(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGCHLD:
		if (w.cli != NULL)
			cli_reap(w.cli);
		/* Orphaned tools re-parented to us; the CLI is reaped above. */
		while (w.cli == NULL && waitpid(-1, NULL, WNOHANG) > 0)
			;
		break;
	case SIGTERM:		/* also our parent-death signal */
	case SIGINT:
		worker_stop();
		break;
	}
}

static void
worker_usage(void)
{
	fprintf(stderr, "usage: hotplex-worker [-fj] [-d level]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct event	*sigs[4];
	int		 ch, fg = 0, level = LOG_LVL_INFO, i;
	int		 signos[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };

	json_init();
	while ((ch = getopt(argc, argv, "fd:j")) != -1) {
		switch (ch) {
		case 'f':
			fg = 1;
			break;
		case 'j':
			log_setjson(1);
			break;
		case 'd':
			if ((level = log_level_parse(optarg)) == -1)
				worker_usage();
			break;
		default:
			worker_usage();
		}
	}
	log_init("worker", fg, level);
	w.parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		fatal("prctl");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		fatal("prctl");
	if (getppid() != w.parent || w.parent == 1)
		exit(0);
	if (fcntl(WORKER_FD, F_GETFD) == -1)
		fatalx("no master channel on fd %d", WORKER_FD);
	util_set_cloexec(WORKER_FD, 1);
	util_set_nonblock(WORKER_FD);
	signal(SIGPIPE, SIG_IGN);

	if ((w.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	w.master = bufferevent_socket_new(w.base, WORKER_FD,
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(w.master, worker_master_read, worker_master_drained,
	    worker_master_event, NULL);
	bufferevent_enable(w.master, EV_READ | EV_WRITE);
	for (i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(w.base, signos[i], worker_signal, NULL);
		evsignal_add(sigs[i], NULL);
	}
	w.turn_timer = evtimer_new(w.base, worker_turn_timer, NULL);
	w.grace_timer = evtimer_new(w.base, worker_grace_timer, NULL);

	if ((w.sink = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	/* The header says who we are and which version we speak. */
	msg_empty_compose(worker_out(), MSG_HELLO, 0);

	event_base_dispatch(w.base);
	return 0;
}
