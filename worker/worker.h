/*
 * hotplex-worker: one session, one CLI lifetime.  Exec'd by hotplexd with
 * its end of a socketpair on WORKER_FD; idle until the master assigns a
 * session (MSG_OPEN), then owns the CLI child and bridges its stream.
 */
#ifndef HP_WORKER_H
#define HP_WORKER_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <event2/util.h>

#include "common/ident.h"
#include "common/util.h"
#include "policy/sandbox/sandbox.h"

/*
 * The spawner's compiled seccomp filters (sandbox_bpf_make), read and
 * closed at start; a worker without them compiles its own.
 */
#define WORKER_BPF_FD	(WORKER_FD + 1)

struct peer;
struct evbuffer;
struct event;
struct event_base;
struct msg_configure;
struct msg_permission;
struct msg_transcript;
struct msg_turn;

/* Exit codes that tell the master: don't respawn. */
#define WORKER_EXIT_FATAL	78	/* fatal set-up error */
#define WORKER_EXIT_VERSION	77	/* the master speaks another version */

#define WORKER_ERR_MAX		512	/* an error message, bytes */
#define WORKER_APPROVALS_MAX	16	/* questions waiting for the app */

enum wstate { W_IDLE, W_OPEN };

/*
 * A client's turn in the worker (turn.c's one state machine): its user
 * line held behind a turn the CLI began itself, written, begun by the
 * CLI (system/init), interrupted; IDLE again once its end is sent.
 */
enum worker_turn_state {
	TURN_IDLE,
	TURN_HELD,		/* ws.held waits for the CLI's own turn */
	TURN_WRITTEN,		/* written; the CLI's init not seen yet */
	TURN_RUNNING,
	TURN_INTERRUPTING,	/* interrupt sent; its end awaited */
};

/* A can_use_tool question put to the app (approvals "client"). */
struct approval {
	char		*request_id;	/* the CLI's; NULL: a free slot */
	char		*tool_id;
	char		*tool;
	cJSON		*input;
	struct event	*timer;		/* approval_timeout_ms */
};

/* The worker's one session, shared by worker.c, turn.c and approval.c. */
struct worker_state {
	struct event_base	*base;
	struct evbuffer		*sink;		/* worker_out() without master */
	struct peer		*master;	/* its channel (peer.c) */
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
	enum worker_turn_state	 turn_state;
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
	int			 cli_own;	/* the CLI's own turn runs */
	char			*held;		/* our user line, waiting */
	int			 exit_code;
};
extern struct worker_state	 ws;

/* worker.c: the channel to the master */
struct evbuffer	*worker_out(void);
void		 worker_sent(void);
void		 worker_exit(int code);

/* turn.c: the turn and the CLI's control protocol */
extern const struct bridge_cb	 worker_bridge_cb;
extern const struct cli_cb	 worker_cli_cb;
void		 worker_turn(uint32_t turn, const struct msg_turn *);
void		 worker_interrupt(void);
void		 worker_configure(const struct msg_configure *);
void		 worker_ctl(const char *subtype, const char *id);
void		 worker_bridge_event(void *arg, const char *type, cJSON *data);
void		 worker_turn_timer(evutil_socket_t, short, void *);
void		 worker_grace_timer(evutil_socket_t, short, void *);

/* approval.c: the CLI's can_use_tool questions */
void		 worker_permission(const struct msg_permission *);
void		 worker_approvals_settle(int deny);
void		 worker_bridge_control_request(void *arg,
		    const char *request_id, const cJSON *request);
void		 worker_bridge_control_cancel(void *arg,
		    const char *request_id);

/* cli.c: the Claude CLI child process. */
#define CLI_REPORT_MAX		512	/* a child's error message, bytes */

struct cli_spec {
	const char		 *path;		/* cli_path; PATH-searched */
	const char *const	 *argv;		/* full argv, NULL-terminated */
	const char *const	 *envp;		/* scrubbed environment */
	const char		 *workdir;
	/* Applied in the child before exec (it does the chdir); or NULL. */
	const struct sandbox_conf *sandbox;
};

struct cli;
struct cli_cb {
	void	(*line)(void *arg, const char *line, size_t len);
	void	(*line_dropped)(void *arg, size_t len, const char *head);
	void	(*exited)(void *arg, int status);	/* wait status */
	void	*arg;
};

struct cli	*cli_spawn(struct event_base *, const struct cli_spec *,
		    size_t line_max, size_t stderr_max, const struct cli_cb *,
		    char *err, size_t errlen);
void		 cli_free(struct cli *);
pid_t		 cli_pid(const struct cli *);
/* Queues one NDJSON line (a '\n' is appended). */
int		 cli_write(struct cli *, const char *line, size_t len);
/* Stops (or resumes) reading the CLI's stdout: it blocks on its pipe. */
void		 cli_pause(struct cli *, int paused);
/* TERM the process group now, KILL it after grace_ms. */
void		 cli_kill(struct cli *, uint64_t grace_ms);
/* The last bytes the CLI wrote on stderr, NUL-terminated. */
const char	*cli_stderr_tail(struct cli *);
/* Reaps the child if it exited; called on SIGCHLD. */
void		 cli_reap(struct cli *);

/* gate.c: the answers to the CLI's can_use_tool questions */
struct gate;
struct msg_policy;
/* The rules from the master (MSG_POLICY), once; -1 with err if bad. */
int		 gate_rules_load(const struct msg_policy *, char *err,
		    size_t errlen);
/* At open, once the session's user: compiles what load left (a site's). */
int		 gate_rules_ready(char *err, size_t errlen);
int		 gate_rules_loaded(void);
const char	*gate_rules_digest(void);
struct gate	*gate_new(const cJSON *open_msg, const char *workdir,
		    char *err, size_t errlen);
void		 gate_free(struct gate *);
/* 0: allowed; -1: denied, by "policy" or "firewall", with a reason. */
int		 gate_check(struct gate *, const char *tool,
		    const cJSON *input, const char **by, char *reason,
		    size_t len);

/*
 * fswatch.c: the files a Bash call changed in the workdir (inotify while
 * it is in flight), for the audit.
 */
void		 fswatch_init(struct event_base *, const char *workdir);
/* A tool call is about to run (only Bash calls are watched). */
void		 fswatch_begin(const char *tool, const char *tool_id);
/*
 * Its tool_result: adds files_written, files_deleted, files_truncated and
 * overlapped (another Bash call was in flight beside it).
 */
void		 fswatch_end(const char *tool_id, cJSON *data);
/* The CLI's own turn is over: the watch set goes unless a call is on. */
void		 fswatch_idle(void);
/* The turn is over: nothing is watched. */
void		 fswatch_clear(void);

/* become.c: the worker's privileged part (root until a session comes) */
#define BECOME_DIRS_MAX		8
struct become {
	struct ident	 id;		/* the session's identity */
	const char	*parents[BECOME_DIRS_MAX];	/* root's, 0711 */
	size_t		 nparents;
	const char	*private[BECOME_DIRS_MAX];	/* the identity's, 0700 */
	size_t		 nprivate;
};
/* As root: makes the parents, then the private dirs; 0 or -1. */
int		 become_dirs(const struct become *, char *err, size_t errlen);
/* Becomes b->id for good (no way back, not dumpable); 0 or -1. */
int		 become_identity(const struct become *, pid_t parent,
		    char *err, size_t errlen);

/* spawn.c: the CLI's spec from the open message */
#define WORKER_ARGV_MAX		256
#define WORKER_ENV_MAX		128

struct spawn_argv {
	const char	*v[WORKER_ARGV_MAX + 1];	/* NULL-terminated */
	char		*owned[WORKER_ARGV_MAX];
	size_t		 n, nowned;
};

struct spawn_env {
	const char	*v[WORKER_ENV_MAX + 1];		/* NULL-terminated */
	char		*owned[WORKER_ENV_MAX];		/* v[i], all owned */
	size_t		 n;
};

/* The sandbox of one CLI, from the open message. */
struct spawn_sandbox {
	struct sandbox_conf	 sc;
	int			 on;	/* Landlock, seccomp or worker_user */
	int			 apply;	/* on, or rlimits only */
	char			 tmpdir[PATH_MAX];
	char			 config_dir[PATH_MAX];
	char			 clidir[PATH_MAX];
	const char		*rx[2];
};

/* The session's identity and private dirs; 0 or -1. */
int		 spawn_become_parse(const cJSON *open, struct become *,
		    char *err, size_t errlen);
/* The CLI's sandbox; makes the config dir in home; 0 or -1. */
int		 spawn_sandbox_setup(struct spawn_sandbox *, const cJSON *open,
		    const char *workdir, const char *home, const char *tmpdir,
		    const char *cli, char *err, size_t errlen);
/* 1 if the CLI keeps a transcript of id for workdir in config_dir. */
int		 spawn_transcript_exists(const char *config_dir,
		    const char *workdir, const char *id);
/* Pure: argv (strings borrowed from open and the arguments); 0 or -1. */
int		 spawn_argv_build(struct spawn_argv *, const cJSON *open,
		    const char *cli, const char *cli_session_id, int resume,
		    const char *mcp_path, int sandboxed);
void		 spawn_argv_free(struct spawn_argv *);
/* The scrubbed environment (our values of the allowlist); 0 or -1. */
int		 spawn_env_build(struct spawn_env *, const cJSON *open,
		    const char *home, const struct spawn_sandbox *);
void		 spawn_env_free(struct spawn_env *);

/* workdir.c */
/*
 * The identity's home for a "~" root, or NULL if it has none: called only
 * when a "~" root is reached (a lookup costs ~1 ms of CPU in a new process).
 */
typedef const char	*(*workdir_home_fn)(void);
/* dir under one of roots ("~": home), created if missing; resolved. */
int		 workdir_enter_roots(const char *const *roots, size_t nroots,
		    workdir_home_fn home, const char *dir, char *resolved,
		    size_t len, char *err, size_t errlen);
/* The same with one root, created if missing. */
int		 workdir_enter_check(const char *root, const char *dir,
		    char *resolved, size_t len, char *err, size_t errlen);

/* transcript.c: the CLI's transcript, saved to and restored from the store */
/* A piece of the stored transcript the master sent before MSG_OPEN. */
void		 transcript_restore_add(const struct msg_transcript *);
/* Writes it into config_dir if that lacks it; follows id's file. */
void		 transcript_restore(const char *config_dir,
		    const char *workdir, const char *id);
/* From now on the transcript of id (its CLI session id changed). */
void		 transcript_follow(const char *config_dir,
		    const char *workdir, const char *id);
/* Sends the master what the CLI added to it (MSG_TRANSCRIPT pieces). */
void		 transcript_save(struct evbuffer *, uint32_t turn);
/* The store has offset bytes of path: the next save sends from there. */
void		 transcript_rewind(const char *path, uint64_t offset);

#endif
