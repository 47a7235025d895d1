/*
 * libhotplex: client library for hotplexd, protocol v1 (see
 * hotplex-protocol(7) and libhotplex(3)).
 *
 * Everything hangs off an opaque handle; the library keeps no global state
 * and never exits the process: every call returns 0 on success and -1 on
 * failure, filling a struct hp_error when the caller passes one.
 *
 * Several requests may be in flight on one handle.  Replies are matched to
 * their requests by id; lines that arrive for another request while a call
 * waits are kept and handed to their owner in order.  An event callback is
 * never re-entered: a blocking call made from inside a callback (say
 * hp_interrupt on the session being executed) queues the events that
 * arrive meanwhile and they are delivered after the callback returns.
 */
#ifndef HOTPLEX_H
#define HOTPLEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HP_PROTO_VERSION	1
#define HP_DEFAULT_SOCKET	"/run/hotplex/hotplexd.sock"
#define HP_SOCKET_ENV		"HOTPLEX_SOCKET"

/* Longest line accepted from the server, newline excluded (hp_set_max_line). */
#define HP_MAX_LINE		(4 * 1024 * 1024)

#define HP_ERROR_CODE_MAX	32
#define HP_ERROR_MESSAGE_MAX	512
#define HP_SESSION_MAX		128	/* bytes of [A-Za-z0-9._:@-] */
#define HP_NAME_MAX		64	/* tool names, states, server names */
#define HP_STATS_MAX_TOOLS	64

/*
 * Error codes made by the library itself.  Codes sent by the server
 * (bad_request, too_large, not_found, session_busy, danger_blocked, ...)
 * are passed through unchanged.
 */
#define HP_E_CONNECT		"connect_failed"	/* socket()/connect() failed */
#define HP_E_DISCONNECTED	"disconnected"		/* server closed the connection */
#define HP_E_IO			"io_error"		/* read/write failed */
#define HP_E_LINE_TOO_LONG	"line_too_long"		/* server line over the limit */
#define HP_E_PROTOCOL		"protocol_error"	/* server line not valid JSON */
#define HP_E_TIMEOUT		"timeout"		/* hp_set_timeout expired */
#define HP_E_INVALID		"invalid_argument"
#define HP_E_NOMEM		"no_memory"

struct hp_error {
	char	code[HP_ERROR_CODE_MAX];
	char	message[HP_ERROR_MESSAGE_MAX];
};

struct hp_client;	/* opaque: one connection */

/* Connect to path; NULL means $HOTPLEX_SOCKET, else HP_DEFAULT_SOCKET. */
struct hp_client *hp_connect(const char *path, struct hp_error *);
/* Adopt an already connected stream socket; closed by hp_close. */
struct hp_client *hp_connect_fd(int fd, struct hp_error *);
/* Closes the connection and frees everything; never from a callback. */
void		 hp_close(struct hp_client *);

/* Bound on a server line (default HP_MAX_LINE); a longer one is an error. */
void		 hp_set_max_line(struct hp_client *, size_t);
/*
 * Longest wait for the next line in a blocking call; 0 (default) = none.
 * When it expires the connection fails with HP_E_TIMEOUT and is unusable.
 */
void		 hp_set_timeout(struct hp_client *, int timeout_ms);

/* ---- events ---------------------------------------------------------- */

enum hp_event_type {
	HP_EV_UNKNOWN = 0,	/* a type this library does not know */
	HP_EV_SESSION_START,
	HP_EV_THINKING,
	HP_EV_ANSWER,
	HP_EV_TOOL_USE,
	HP_EV_TOOL_RESULT,
	HP_EV_PERMISSION_DENIED,
	HP_EV_DANGER_BLOCK,
	HP_EV_SYSTEM,
	HP_EV_SESSION_STATS,
	HP_EV_DONE,		/* terminal */
	HP_EV_ERROR,		/* terminal */
	HP_EV_PERMISSION_REQUEST,	/* approvals "client": answer it */
	HP_EV_PERMISSION_CANCELLED,	/* the CLI withdrew a request */
	HP_EV_QUEUED,		/* execute with queue: waits its turn */
	HP_EV_CLI_TURN		/* end of a turn the CLI began by itself */
};

struct hp_tool_usage {
	char		name[HP_NAME_MAX];
	uint64_t	calls;
	uint64_t	errors;
	uint64_t	duration_ms;
};

/* One set of SessionStats counters (DESIGN.md section 5). */
struct hp_usage {
	uint64_t	turns;
	struct {
		uint64_t input, output, cache_read, cache_write, total;
	}		tokens;
	double		cost_usd;
	struct {
		uint64_t total, thinking, tool, generation, other, ttft;
	}		duration_ms;
	uint64_t	tool_calls;
	size_t		ntools;		/* tools past HP_STATS_MAX_TOOLS dropped */
	struct hp_tool_usage tools[HP_STATS_MAX_TOOLS];
	size_t		nfiles;		/* paths written or edited */
	uint64_t	permission_denials;
	uint64_t	danger_blocks;
	uint64_t	errors;
};

struct hp_stats {
	char		session[HP_SESSION_MAX + 1];	/* "" for totals */
	char		cli_session_id[HP_NAME_MAX];
	char		state[HP_NAME_MAX];
	struct hp_usage	total;		/* cumulative, or the turn for done */
	int		has_last_turn;
	struct hp_usage	last_turn;
	int64_t		sessions;	/* totals only: -1 when absent */
	int64_t		workers;
	int64_t		spares;
};

/*
 * One event line.  Every pointer is owned by the library and valid only
 * during the callback; fields that do not apply to the type, or are absent
 * from the line, are NULL / 0 / -1.
 */
struct hp_event {
	enum hp_event_type type;
	const char	*type_name;	/* as sent */
	const char	*id;		/* request id */
	const char	*session;
	int64_t		 seq;		/* -1 when absent */
	const char	*line;		/* the raw JSON line, no newline */
	size_t		 line_len;
	int		 local;		/* made by the library (lost connection) */

	const char	*text;		/* thinking, answer */

	const char	*tool_id;	/* tool_use, tool_result, permission_denied */
	const char	*tool_name;
	const char	*input_json;	/* tool_use: input object as JSON text */
	int		 is_error;	/* tool_result, done */
	const char	*output;	/* tool_result */
	int		 truncated;
	int64_t		 duration_ms;

	const char	*by;		/* permission_denied: policy|firewall|cli|client */
	const char	*reason;	/* permission_denied, danger_block */

	const char	*rule;		/* danger_block */
	const char	*category;
	const char	*severity;
	double		 score;
	const char	*excerpt;

	const char	*subtype;	/* system */

	int		 cold;		/* session_start */
	int		 resumed;
	const char	*cli_session_id;
	long		 worker_pid;
	long		 pgid;

	int		 ok;		/* done */
	const char	*result;
	int		 interrupted;
	const char	*terminal_reason;
	const char	*stop_reason;
	const struct hp_stats *stats;	/* done.stats, session_stats data */

	const char	*code;		/* error */
	const char	*message;

	/* permission_request, permission_cancelled (tool_id, tool_name,
	   input_json too) */
	const char	*request_id;
	int64_t		 position;	/* queued: 1 runs next; else -1 */

	/* "cli" on every line of a turn the CLI began by itself (to
	   followers only; its end is HP_EV_CLI_TURN); NULL otherwise */
	const char	*origin;
};

typedef void	(*hp_event_cb)(const struct hp_event *, void *arg);

/* Lines whose id matches no request in flight (e.g. an id-less error). */
void	hp_set_orphan_cb(struct hp_client *, hp_event_cb, void *arg);

/* ---- requests -------------------------------------------------------- */

struct hp_hello {
	int	proto;
	char	server[HP_NAME_MAX];
	long	uid;
	int	admin;
};

/* Optional; when sent it must be the first request on the connection. */
int	hp_hello(struct hp_client *, const char *client_name, struct hp_hello *,
	    struct hp_error *);

/* Options of execute and open; zero / NULL fields are left to the server. */
struct hp_options {
	const char		*model;
	const char		*permission_mode;
	const char *const	*allowed_tools;		/* NULL-terminated */
	const char *const	*disallowed_tools;	/* NULL-terminated */
	const char		*append_system_prompt;
	int			 max_turns;
	long			 timeout_ms;
	int			 slash_commands;	/* sent when non-zero */
	const char		*approvals;	/* "daemon" or "client" */
	long			 approval_timeout_ms;
	double			 max_budget_usd;	/* sent when > 0 */
	int			 queue;	/* execute: wait behind a busy turn */
};

/*
 * Run one turn.  cb gets every event of the turn, the terminal one (done
 * or error) last; a lost connection is delivered as a local error event.
 * Returns 0 when the turn ended with done (look at ok / is_error /
 * interrupted), -1 with err filled for an error line or a failure.
 * workdir and opts may be NULL.
 */
int	hp_execute(struct hp_client *, const char *session, const char *prompt,
	    const char *workdir, const struct hp_options *, hp_event_cb, void *arg,
	    struct hp_error *);

/*
 * The same without waiting: sends the request and returns a token (> 0),
 * or 0 on failure.  Events reach cb from hp_pump, hp_wait or any other
 * blocking call on the handle.
 */
uint64_t hp_execute_start(struct hp_client *, const char *session,
	    const char *prompt, const char *workdir, const struct hp_options *,
	    hp_event_cb, void *arg, struct hp_error *);
/*
 * Blocks until the request of token has ended; as hp_execute.  A request
 * that already ended (its terminal event was delivered) gives 0.
 */
int	hp_wait(struct hp_client *, uint64_t token, struct hp_error *);

int	hp_open(struct hp_client *, const char *session, const char *workdir,
	    const struct hp_options *, struct hp_error *);
int	hp_interrupt(struct hp_client *, const char *session, struct hp_error *);
int	hp_stop(struct hp_client *, const char *session, const char *reason,
	    struct hp_error *);
int	hp_reset(struct hp_client *, const char *session, struct hp_error *);

/* What attach answered. */
struct hp_attach {
	int64_t		 seq;		/* the session's last line so far */
	char		 state[HP_NAME_MAX];
	int		 ended;		/* ended: nothing is replayed or follows */
	int64_t		 lost_first;	/* lines asked for but gone; -1: none */
	int64_t		 lost_last;
};

/*
 * Follows a session (hotplex-protocol(7), attach): its lines with a seq
 * above since_seq that the server still holds, then every new one, reach
 * the orphan callback (set it first: hp_set_orphan_cb) from hp_pump or any
 * blocking call, until hp_detach or the connection closes.  info may be
 * NULL.
 */
int	hp_attach(struct hp_client *, const char *session, int64_t since_seq,
	    struct hp_attach *info, struct hp_error *);
int	hp_detach(struct hp_client *, const char *session, struct hp_error *);
/* Administrators: re-read the configuration; shut the server down. */
int	hp_reload(struct hp_client *, struct hp_error *);
int	hp_shutdown(struct hp_client *, struct hp_error *);
/*
 * Administrators: every session off this host, no new one taken; *sessions
 * (may be NULL) is how many were let go.
 */
int	hp_drain(struct hp_client *, int *sessions, struct hp_error *);
/*
 * Administrators: a drain undone; the host takes sessions again;
 * *was_draining (may be NULL) says whether it was drained.
 */
int	hp_undrain(struct hp_client *, int *was_draining, struct hp_error *);

/*
 * Stats of one session, or totals when session is NULL.  st and raw may be
 * NULL; *raw gets the reply line (free it with free()).
 */
int	hp_stats(struct hp_client *, const char *session, struct hp_stats *st,
	    char **raw, struct hp_error *);

/*
 * The daemon's summary (hotplex-protocol(7), status): *raw gets the reply
 * line, a JSON object whose "data" holds version, uptime_s, sessions by
 * state, workers, spares, clients, isolation, rules, ready and checks.
 */
int	hp_status(struct hp_client *, char **raw, struct hp_error *);

/* Which rows of the tool audit (hotplex-protocol(7), audit). */
struct hp_audit_query {
	const char	*session;	/* NULL: every visible session */
	int64_t		 since_ms;	/* Unix time in ms; 0: from the start */
	int64_t		 after_id;	/* rows after this id (paging); 0 */
	int		 limit;		/* rows per reply; 0: the daemon's */
};

/* One row of the tool audit; strings are NULL where the reply has null. */
struct hp_audit_row {
	int64_t		 id;		/* the daemon's order: page with it */
	int64_t		 time_ms;	/* Unix time in ms */
	long		 uid;		/* the session's owner */
	char		 session[HP_SESSION_MAX + 1];
	uint32_t	 turn;
	char		 kind[HP_NAME_MAX];	/* tool, denial or firewall */
	char		*tool;		/* NULL for a firewall block */
	char		*digest;	/* SHA-256 of the input, hex */
	char		*excerpt;	/* the input's first 512 bytes */
	char		*decision;	/* allow, deny or block */
	char		*decided_by;	/* gate, cli, policy, firewall, app, ... */
	int64_t		 duration_ms;	/* -1: the call never ended */
	int		 error;
	char		**files;	/* paths written */
	size_t		 nfiles;
	char		**files_deleted; /* paths a Bash call removed */
	size_t		 nfiles_deleted;
	int		 files_truncated; /* the two lists may be incomplete */
	int		 overlapped;	/* a Bash call beside another: the
					   lists may hold the other's files */
	char		*detail;	/* a refusal's reason, a failure's head */
	char		*host_id;	/* shared store: the host it ran on */
};

struct hp_audit {
	struct hp_audit_row	*rows;	/* in id order */
	size_t			 nrows;
	int			 more;	/* ask again after the last id */
};

/*
 * Rows of the tool audit the caller may see (its own sessions', or all
 * for an administrator), into *out (free it with hp_audit_free).  out and
 * raw may be NULL; *raw gets the reply line.
 */
int	hp_audit(struct hp_client *, const struct hp_audit_query *,
	    struct hp_audit *out, char **raw, struct hp_error *);
void	hp_audit_free(struct hp_audit *);

struct hp_session_info {
	char		session[HP_SESSION_MAX + 1];
	char		state[HP_NAME_MAX];
	long		uid;
	char		*workdir;	/* owned by the list */
	long		worker_pid;	/* 0 when none */
	long		cli_pid;
	uint64_t	turns;
	int64_t		idle_ms;	/* -1 when absent */
	uint64_t	tokens;		/* total */
	double		cost_usd;
};

/* The sessions the caller may see; free *list with hp_sessions_free. */
int	hp_sessions(struct hp_client *, struct hp_session_info **list,
	    size_t *n, char **raw, struct hp_error *);
void	hp_sessions_free(struct hp_session_info *, size_t n);

struct hp_match {
	char	*rule;
	char	*category;
	char	*severity;
	char	*form;		/* which normalized form matched */
};

struct hp_verdict {
	int		 blocked;
	double		 score;
	size_t		 nmatches;
	struct hp_match	*matches;
};

/* Screens text (target "prompt", "bash" or "path"; NULL = prompt). */
int	hp_policy_check(struct hp_client *, const char *text, const char *target,
	    struct hp_verdict *, char **raw, struct hp_error *);
void	hp_verdict_free(struct hp_verdict *);

/*
 * Answers a permission_request: decision "allow" or "deny"; message (the
 * reason for a denial) and updated_input_json (an object replacing the
 * tool's input) may be NULL.  A request already answered, timed out or
 * withdrawn fails with not_found.
 */
int	hp_permission(struct hp_client *, const char *session,
	    const char *request_id, const char *decision, const char *message,
	    const char *updated_input_json, struct hp_error *);

/*
 * Changes a session's settings (NULL / a negative budget: unchanged);
 * *live (may be NULL) tells whether a running CLI took them at once.
 */
int	hp_configure(struct hp_client *, const char *session, const char *model,
	    const char *permission_mode, double max_budget_usd, int *live,
	    struct hp_error *);

/* ---- event-loop integration ------------------------------------------ */

/* The socket, for read interest in a caller's event loop. */
int	hp_fd(const struct hp_client *);
/*
 * Reads what is available without blocking and delivers whole lines.
 * Returns 0, or -1 once the connection is lost (requests in flight have
 * then been ended with local error events).
 */
int	hp_pump(struct hp_client *, struct hp_error *);
/* Requests in flight (sent, terminal line not yet delivered). */
size_t	hp_pending(const struct hp_client *);

const char *hp_event_type_name(enum hp_event_type);

#ifdef __cplusplus
}
#endif

#endif
