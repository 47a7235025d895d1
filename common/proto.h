/*
 * Client protocol v1 (DESIGN.md section 3): names shared by the daemon,
 * the worker and the client tools.  Bump PROTO_VERSION when the set of
 * ops or the meaning of a field changes.
 */
#ifndef HP_PROTO_H
#define HP_PROTO_H

#define PROTO_VERSION		1
#define PROTO_SERVER		"hotplexd/" HOTPLEX_VERSION

#define PROTO_SESSION_MAX	128	/* bytes of [A-Za-z0-9._:@-] */
#define PROTO_ID_MAX		128	/* request id, bytes */
#define PROTO_DEFAULT_SOCKET	"/run/hotplex/hotplexd.sock"
#define PROTO_SOCKET_ENV	"HOTPLEX_SOCKET"

/* Error codes (the "code" of an error line). */
#define ERR_BAD_REQUEST		"bad_request"
#define ERR_TOO_LARGE		"too_large"
#define ERR_UNKNOWN_OP		"unknown_op"
#define ERR_FORBIDDEN		"forbidden"
#define ERR_NOT_FOUND		"not_found"
#define ERR_SESSION_BUSY	"session_busy"
#define ERR_DANGER_BLOCKED	"danger_blocked"
#define ERR_CAPACITY		"capacity"
#define ERR_WORKDIR_DENIED	"workdir_denied"
#define ERR_SPAWN_FAILED	"spawn_failed"
#define ERR_TURN_TIMEOUT	"turn_timeout"
#define ERR_CLI_EXITED		"cli_exited"
#define ERR_WORKER_EXITED	"worker_exited"
#define ERR_SHUTTING_DOWN	"shutting_down"
#define ERR_DRAINING		"draining"	/* hotplexctl drain */
#define ERR_INTERNAL		"internal"
#define ERR_CANCELLED		"cancelled"	/* a queued turn */
#define ERR_BUDGET_EXCEEDED	"budget_exceeded"
#define ERR_RATE_LIMITED	"rate_limited"	/* rate_limit_admission */
#define ERR_SESSION_ELSEWHERE	"session_elsewhere"	/* another host's */
#define ERR_LEASE_LOST		"lease_lost"	/* another host took it */
#define ERR_STORE_UNAVAILABLE	"store_unavailable"	/* shared store */
#define ERR_SESSION_MOVED	"session_moved"	/* another host serves it now */

/* Session states (DESIGN.md section 4). */
enum session_state {
	SESSION_STARTING,	/* worker assigned, CLI starting */
	SESSION_READY,		/* CLI alive, no turn */
	SESSION_BUSY,		/* a turn runs */
	SESSION_STOPPING,	/* being stopped */
	SESSION_ENDED,		/* stopped for good; stats kept */
	SESSION_DORMANT		/* no CLI; the next turn resumes */
};

#include <cJSON.h>

const char	*proto_state_name(enum session_state);
/*
 * An error line: {"id":req|null[,"session":s],"type":"error",
 * "data":{"code":code,"message":message}}.
 */
cJSON		*proto_error(const char *req, const char *session,
		    const char *code, const char *message);
/* 1 if s (NUL-terminated) is a valid session id. */
int		 proto_valid_session(const char *s);

/* 1 if the CLI's tool writes the file its input names (Write, Edit...). */
int		 proto_tool_writes(const char *tool);
/* The file such a tool call writes (file_path, notebook_path), or NULL. */
const char	*proto_tool_file(const char *tool, const cJSON *input);

/* A turn's `done` data (hotplex-protocol(7)), built in one place. */
struct proto_done {
	int		 ok;
	const char	*result;		/* NULL: "" */
	int		 is_error;
	int		 interrupted;
	const char	*terminal_reason;	/* NULL: null */
	const char	*stop_reason;		/* NULL: null */
	const cJSON	*errors;		/* array or NULL (left out) */
};
/* The done object (without stats); errors are copied. */
cJSON		*proto_done_json(const struct proto_done *);
/* Reads it back: 0, or -1 if o is not a done object. */
int		 proto_done_from_json(struct proto_done *, const cJSON *o);

#endif
