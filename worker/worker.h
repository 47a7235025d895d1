/*
 * hotplex-worker: one session, one CLI lifetime.  Exec'd by hotplexd with
 * its end of a socketpair on WORKER_FD; idle until the master assigns a
 * session (MSG_OPEN), then owns the CLI child and bridges its stream.
 */
#ifndef HP_WORKER_H
#define HP_WORKER_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/ident.h"

struct event_base;
struct evbuffer;
struct msg_transcript;
struct sandbox_conf;

/* Exit codes that tell the master: don't respawn. */
#define WORKER_EXIT_FATAL	78	/* fatal set-up error */
#define WORKER_EXIT_VERSION	77	/* the master speaks another version */

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
/* Its tool_result: adds files_written, files_deleted, files_truncated. */
void		 fswatch_end(const char *tool_id, cJSON *data);
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

/* workdir.c */
/* dir under one of roots ("~": home), created if missing; resolved. */
int		 workdir_enter_roots(const char *const *roots, size_t nroots,
		    const char *home, const char *dir, char *resolved,
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

#endif
