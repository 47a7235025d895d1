/*
 * hotplex-worker main: waits for a session on WORKER_FD, spawns the CLI
 * (its spec built by spawn.c), and talks to the master on the channel.
 * The turns are turn.c's, the app's approvals approval.c's.
 */
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mcp.h"
#include "common/procfs.h"
#include "common/msg.h"
#include "common/peer.h"
#include "common/xmalloc.h"
#include "worker/bridge.h"
#include "worker/worker.h"

#define WORKER_FLUSH_TIMEOUT_S	5	/* to flush the channel when exiting */
#define WORKER_MASTER_HIWAT	(4U * 1024 * 1024)	/* pause the CLI above */
#define WORKER_MASTER_LOWAT	(1U * 1024 * 1024)	/* and resume below */
#define WORKER_ORPHANS_MAX	256	/* left-over processes killed per round */
#define WORKER_ORPHAN_ROUNDS	16
#define WORKER_STOP_NICE	19	/* a stopping session runs last */
#define WORKER_APPROVAL_TIMEOUT_MS (5 * 60 * 1000)	/* if none is given */

struct worker_state	 ws;

static void	worker_exit_flushed_timeout(evutil_socket_t, short, void *);

static void
worker_exit_flushed_timeout(evutil_socket_t fd, short what, void *arg)
{
	exit(ws.exit_code);
}

/*
 * Where a message to the master is composed (msg_*_compose): its channel,
 * or, once the master is gone and nobody is there to tell, a sink.
 */
struct evbuffer *
worker_out(void)
{
	if (ws.master == NULL) {
		evbuffer_drain(ws.sink, evbuffer_get_length(ws.sink));
		return ws.sink;
	}
	return peer_output(ws.master);
}

/* After a message: the master stopped reading us?  Stop reading the CLI. */
void
worker_sent(void)
{
	if (ws.master == NULL)
		return;
	if (!ws.cli_paused && ws.cli != NULL &&
	    peer_queued(ws.master) > WORKER_MASTER_HIWAT) {
		ws.cli_paused = 1;
		cli_pause(ws.cli, 1);
		peer_set_lowat(ws.master, WORKER_MASTER_LOWAT);
	}
}

/* The channel drained below the low mark: read the CLI again. */
static void
worker_master_drained(struct peer *p, void *arg)
{
	if (!ws.cli_paused)
		return;
	ws.cli_paused = 0;
	peer_set_lowat(ws.master, 0);
	if (ws.cli != NULL)
		cli_pause(ws.cli, 0);
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
worker_exit_flushed(struct peer *p, void *arg)
{
	exit(ws.exit_code);
}

static void
worker_exit_now(evutil_socket_t fd, short what, void *arg)
{
	if (ws.cli != NULL) {
		cli_free(ws.cli);
		ws.cli = NULL;
	}
	worker_kill_orphans();
	if (ws.master == NULL || peer_queued(ws.master) == 0)
		exit(ws.exit_code);
	/* What the master has not read yet goes out before we do. */
	peer_flush(ws.master, worker_exit_flushed);
}

/*
 * Leaves from the loop, never from under a caller (the CLI's callbacks
 * call this): free the CLI, flush the channel to the master, exit.
 */
void
worker_exit(int code)
{
	struct timeval	tv = { WORKER_FLUSH_TIMEOUT_S, 0 };

	if (ws.exiting)
		return;
	ws.exiting = 1;
	ws.exit_code = code;
	event_base_once(ws.base, -1, EV_TIMEOUT, worker_exit_now, NULL, NULL);
	/* A master that does not read cannot keep us. */
	event_base_once(ws.base, -1, EV_TIMEOUT, worker_exit_flushed_timeout,
	    NULL, &tv);
}

static void
worker_open_failed_send(const char *code, const char *message, int exiting)
{
	struct msg_open_failed	of;

	log_warnx("open failed: %s", message);
	of.code = code;
	of.message = message;
	of.exiting = exiting;	/* not a spare again */
	msg_open_failed_compose(worker_out(), ws.turn, &of);
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

/*
 * "~" in workdir_root: this identity's home, if it has one.  Looked up
 * only when a "~" root is reached, once we are the session's identity;
 * the default session workdir lies under the first root and needs none.
 */
static const char *
worker_home(void)
{
	static char	 home[PATH_MAX];
	static int	 done;
	struct passwd	*pw;

	if (!done) {
		done = 1;
		if ((pw = getpwuid(geteuid())) != NULL && pw->pw_dir != NULL)
			snprintf(home, sizeof home, "%s", pw->pw_dir);
	}
	return home[0] != '\0' ? home : NULL;
}

static void
worker_open(const cJSON *o)
{
	struct spawn_argv	 a;
	struct spawn_env	 env;
	struct cli_spec		 spec;
	const char		*session, *workdir, *id, *cli;
	const char		*roots[CONFIG_LIST_MAX];
	size_t			 nroots = 0;
	const cJSON		*e;
	struct become		 b;
	int			 spawn_errno;
	char			 err[WORKER_ERR_MAX];
	struct msg_opened	 op;
	struct bridge_cb	 bcb = worker_bridge_cb;
	struct cli_cb		 ccb = worker_cli_cb;
	struct spawn_sandbox	 sb;
	const cJSON		*opt, *mcp;
	char			 mcp_path[PATH_MAX];

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
	    spawn_become_parse(o, &b, err, sizeof err) == -1) {
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
	    become_identity(&b, ws.parent, err, sizeof err) == -1) {
		worker_open_failed_session(ERR_SPAWN_FAILED, err);
		return;
	}
	if (workdir_enter_roots(roots, nroots, worker_home, workdir,
	    ws.workdir, sizeof ws.workdir, err, sizeof err) == -1) {
		worker_open_failed_session(ERR_WORKDIR_DENIED, err);
		return;
	}
	snprintf(ws.cli_session_id, sizeof ws.cli_session_id, "%s", id);
	ws.kill_grace_ms = (uint64_t)json_num(o, "kill_grace_ms", 5000);
	opt = cJSON_GetObjectItemCaseSensitive(o, "options");
	ws.approvals_client = json_str(opt, "approvals") != NULL &&
	    strcmp(json_str(opt, "approvals"), "client") == 0;
	ws.approval_timeout_ms = (uint64_t)json_num(opt,
	    "approval_timeout_ms", json_num(o, "approval_timeout_ms",
	    WORKER_APPROVAL_TIMEOUT_MS));

	if (spawn_sandbox_setup(&sb, o, ws.workdir, b.private[0], b.private[1],
	    cli, err, sizeof err) == -1) {
		worker_open_failed_session(ERR_SPAWN_FAILED, err);
		return;
	}

	/* The stored transcript, where a wiped dir or another host lacks it. */
	snprintf(ws.config_dir, sizeof ws.config_dir, "%s", sb.config_dir);
	transcript_restore(ws.config_dir, ws.workdir, id);
	ws.resume = json_bool(o, "resume");
	/* The session's own config dir holds its transcripts. */
	if (!ws.resume && spawn_transcript_exists(sb.config_dir, ws.workdir,
	    id)) {
		log_info("the CLI has a transcript of %s: resuming it", id);
		ws.resume = 1;
	}
	/* The session's MCP servers: a file in its private config dir. */
	mcp = cJSON_GetObjectItemCaseSensitive(opt, "mcp_config");
	if (mcp != NULL && (mcp_config_check(mcp, err, sizeof err) == -1 ||
	    mcp_config_write(sb.config_dir, mcp, mcp_path, sizeof mcp_path,
	    err, sizeof err) == -1)) {
		worker_open_failed_session(ERR_SPAWN_FAILED, err);
		return;
	}
	if (spawn_argv_build(&a, o, cli, ws.cli_session_id, ws.resume,
	    mcp != NULL ? mcp_path : NULL, sb.on) == -1) {
		worker_open_failed_session(ERR_BAD_REQUEST,
		    "too many CLI arguments");
		return;
	}
	/* HOME (dotfiles), config dir, TMPDIR: the session's own. */
	if (spawn_env_build(&env, o, b.private[0], &sb) == -1) {
		spawn_argv_free(&a);
		worker_open_failed_session(ERR_BAD_REQUEST,
		    "too many CLI variables");
		return;
	}
	spec.path = cli;
	spec.argv = a.v;
	spec.envp = env.v;
	spec.workdir = ws.workdir;
	spec.sandbox = sb.apply ? &sb.sc : NULL;
	ws.bridge = bridge_new(&bcb);
	ws.cli = cli_spawn(ws.base, &spec,
	    (size_t)json_num(o, "cli_line_max", 16 << 20),
	    (size_t)json_num(o, "stderr_tail_bytes", 4096), &ccb, err,
	    sizeof err);
	spawn_errno = errno;
	spawn_env_free(&env);
	spawn_argv_free(&a);
	if (ws.cli == NULL) {
		bridge_free(ws.bridge);
		ws.bridge = NULL;
		/* Out of descriptors or memory: the client may try later. */
		worker_open_failed_session(util_errno_capacity(spawn_errno) ?
		    ERR_CAPACITY : ERR_SPAWN_FAILED, err);
		return;
	}
	/*
	 * The worker reads what the CLI writes: from now on it needs only its
	 * pipes, the channel, signals to the CLI's group, waitpid and /proc.
	 */
	if (sb.on && sandbox_worker_confine(cli_pid(ws.cli), err,
	    sizeof err) == -1) {
		cli_free(ws.cli);
		ws.cli = NULL;
		bridge_free(ws.bridge);
		ws.bridge = NULL;
		worker_open_failed_exiting(ERR_SPAWN_FAILED, err);
		return;
	}
	/*
	 * The rules were compiled while a spare; a site's rule files, as
	 * the session's user, now, while the CLI boots.
	 */
	if (gate_rules_ready(err, sizeof err) == -1 ||
	    (ws.gate = gate_new(o, ws.workdir, err, sizeof err)) == NULL) {
		cli_free(ws.cli);
		ws.cli = NULL;
		bridge_free(ws.bridge);
		ws.bridge = NULL;
		worker_open_failed_exiting(ERR_SPAWN_FAILED, err);
		return;
	}
	fswatch_init(ws.base, ws.workdir);
	ws.session = xstrdup(session);
	ws.state = W_OPEN;
	log_info("CLI %ld started in %s (%s %s)%s", (long)cli_pid(ws.cli),
	    ws.workdir, ws.resume ? "resume" : "new", id,
	    sb.on ? ", sandboxed" : "");

	op.cli_pid = cli_pid(ws.cli);
	op.cli_session_id = ws.cli_session_id;
	op.workdir = ws.workdir;
	op.resume = ws.resume;
	op.policy = gate_rules_digest();
	msg_opened_compose(worker_out(), ws.turn, &op);
	worker_sent();
	/* open: tell the master again once the CLI answers. */
	if (json_bool(o, "probe")) {
		ws.probe_pending = 1;
		worker_ctl("get_binary_version", "hp-probe");
	}
}

/*
 * The rules, the master's first message: compiled now, while a spare, and
 * then we are ready.  Rules we cannot take end us; the master does not
 * respawn in a loop on that exit.
 */
static void
worker_policy(const struct msg_policy *p)
{
	char	err[WORKER_ERR_MAX];

	if (gate_rules_load(p, err, sizeof err) == -1) {
		log_warnx("firewall rules from the master: %s", err);
		worker_exit(WORKER_EXIT_FATAL);
		return;
	}
	/* Our own seccomp filter too, for when we confine ourselves. */
	if (sandbox_worker_prepare(err, sizeof err) == -1)
		log_warnx("%s (made at open instead)", err);
	msg_empty_compose(worker_out(), MSG_READY, 0);
}

static void
worker_stop(void)
{
	if (ws.stopping)
		return;
	ws.stopping = 1;
	if (ws.cli == NULL) {
		worker_exit(0);
		return;
	}
	/*
	 * What is left to do (the CLI's exit, ours) yields the CPU to live
	 * sessions' turns: a wave of stops does not hold them up.
	 */
	if (setpriority(PRIO_PROCESS, 0, WORKER_STOP_NICE) == -1 ||
	    setpriority(PRIO_PGRP, cli_pid(ws.cli), WORKER_STOP_NICE) == -1)
		log_debug("setpriority: %s", strerror(errno));
	/* An interrupt stops running tools; SIGTERM to the CLI would not. */
	worker_interrupt();
	cli_kill(ws.cli, ws.kill_grace_ms);
}

static void
worker_dispatch(struct msg *m)
{
	cJSON			*o = NULL;
	struct msg_turn		 t;
	struct msg_permission	 pm;
	struct msg_configure	 cf;
	struct msg_transcript	 tr;
	struct msg_policy	 pol;

	switch (m->hdr.type) {
	case MSG_POLICY:
		if (ws.state != W_IDLE || msg_policy_decode(m, &pol) == -1)
			fatalx("bad policy message from master");
		worker_policy(&pol);
		msg_policy_clear(&pol);
		break;
	case MSG_OPEN:
		if (ws.state != W_IDLE || !gate_rules_loaded() ||
		    (o = msg_open_decode(m)) == NULL)
			fatalx("bad open message from master");
		worker_open(o);
		break;
	case MSG_TURN:
		if (ws.state != W_OPEN || msg_turn_decode(m, &t) == -1)
			fatalx("bad turn message from master");
		worker_turn(m->hdr.turn, &t);
		msg_turn_clear(&t);
		break;
	case MSG_INTERRUPT:
		if (msg_empty_decode(m) == -1)
			fatalx("bad interrupt message from master");
		if (ws.state == W_OPEN)
			worker_interrupt();
		break;
	case MSG_CONFIGURE:
		if (msg_configure_decode(m, &cf) == -1)
			fatalx("bad configure message from master");
		if (ws.state == W_OPEN)
			worker_configure(&cf);
		msg_configure_clear(&cf);
		break;
	case MSG_PERMISSION:
		if (msg_permission_decode(m, &pm) == -1)
			fatalx("bad permission message from master");
		if (ws.state == W_OPEN)
			worker_permission(&pm);
		msg_permission_clear(&pm);
		break;
	case MSG_STOP:
		if (msg_empty_decode(m) == -1)
			fatalx("bad stop message from master");
		worker_stop();
		break;
	case MSG_TRANSCRIPT:
		if (msg_transcript_decode(m, &tr) == -1 ||
		    (ws.state != W_IDLE && tr.len != 0))
			fatalx("bad transcript message from master");
		/* Before the open, the stored file; after, a rewind. */
		if (ws.state == W_IDLE)
			transcript_restore_add(&tr);
		else
			transcript_rewind(tr.path, tr.offset);
		msg_transcript_clear(&tr);
		break;
	default:
		fatalx("unexpected %s message from master",
		    msg_type_name(m->hdr.type));
	}
	cJSON_Delete(o);
}

static void
worker_master_msg(struct peer *p, struct msg *m, void *arg)
{
	worker_dispatch(m);
}

static void
worker_master_error(struct peer *p, enum peer_error e,
    const struct msg_hdr *h, void *arg)
{
	if (e == PEER_VERSION) {
		/* Said, and with its own exit status: the master won't loop. */
		log_warnx("hotplexd speaks message version %u, this worker %u: "
		    "hotplexd and hotplex-worker are from different builds",
		    h->version, MSG_VERSION);
		worker_exit(WORKER_EXIT_VERSION);
		return;
	}
	fatalx("malformed message from master");
}

static void
worker_master_closed(struct peer *p, int why, void *arg)
{
	/* The master is gone: nothing of ours may outlive it. */
	log_debug("master closed the channel");
	peer_free(ws.master);
	ws.master = NULL;
	/*
	 * Stop the CLI gracefully (interrupt, EOF, TERM; KILL after
	 * kill_grace): killed outright it loses the transcript lines it has
	 * not written yet, and --resume would miss the last turns.
	 */
	worker_stop();
}

static const struct peer_cb worker_peer_cb = {
	worker_master_msg, worker_master_error, worker_master_closed,
	worker_master_drained
};

static void
worker_signal(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGCHLD:
		if (ws.cli != NULL)
			cli_reap(ws.cli);
		/* Orphaned tools re-parented to us; the CLI is reaped above. */
		while (ws.cli == NULL && waitpid(-1, NULL, WNOHANG) > 0)
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
	char		 err[WORKER_ERR_MAX];
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
	ws.parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		fatal("prctl");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		fatal("prctl");
	if (getppid() != ws.parent || ws.parent == 1)
		exit(0);
	if (fcntl(WORKER_FD, F_GETFD) == -1)
		fatalx("no master channel on fd %d", WORKER_FD);
	if (fcntl(WORKER_BPF_FD, F_GETFD) != -1) {
		if (sandbox_bpf_take(WORKER_BPF_FD, err, sizeof err) == -1)
			log_warnx("%s: filters compiled here instead", err);
		close(WORKER_BPF_FD);
	}
	util_set_cloexec(WORKER_FD, 1);
	util_set_nonblock(WORKER_FD);
	signal(SIGPIPE, SIG_IGN);

	if ((ws.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	/* Any sender: the master is not our parent (the spawner is). */
	ws.master = peer_new(ws.base, WORKER_FD, MSG_FROM_MASTER, 0, "master",
	    &worker_peer_cb, NULL);
	for (i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(ws.base, signos[i], worker_signal, NULL);
		evsignal_add(sigs[i], NULL);
	}
	ws.turn_timer = evtimer_new(ws.base, worker_turn_timer, NULL);
	ws.grace_timer = evtimer_new(ws.base, worker_grace_timer, NULL);

	if ((ws.sink = evbuffer_new()) == NULL)
		fatalx("evbuffer_new");
	/*
	 * The header says who we are and which version we speak: a master
	 * of another build tells us so (its hello), never loops.  Ready
	 * once the rules (MSG_POLICY) are compiled.
	 */
	msg_empty_compose(worker_out(), MSG_HELLO, 0);

	event_base_dispatch(ws.base);
	return 0;
}
