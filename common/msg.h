/*
 * Master <-> worker messages over a socketpair: an imsg-like fixed header
 * followed by a payload.  Every message type has its own encoder
 * (msg_<type>_compose) and decoder (msg_<type>_decode) here, and no kind
 * of message hides behind a flag in its payload.  The payloads of control
 * messages are JSON objects whose shape only this file knows; MSG_EVENT
 * carries a pre-serialized event object's tail that the master checks
 * (json_event_tail_valid) before relaying it.  Versioned and size-checked:
 * a malformed message from a worker kills that worker, never the master;
 * a peer of another version is told so (msg_get says MSG_GET_VERSION).
 */
#ifndef HP_MSG_H
#define HP_MSG_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/proto.h"
#include "common/stats.h"

struct evbuffer;

#define MSG_VERSION		4	/* bump when a type or payload changes */
#define MSG_HDR_SIZE		16
#define MSG_MAX_PAYLOAD		(4U * 1024 * 1024)
#define WORKER_FD		3	/* the worker's end of the socketpair */

enum msg_type {
	MSG_HELLO = 1,	/* w->m (empty), first: the worker's version; also
			   m->w, the master's, to a worker of another one */
	MSG_OPEN,	/* m->w the session to open: a JSON object (worker/) */
	MSG_OPENED,	/* w->m struct msg_opened: its CLI runs */
	MSG_PROBED,	/* w->m (empty): the CLI answered (the open op) */
	MSG_OPEN_FAILED,/* w->m struct msg_open_failed */
	MSG_TURN,	/* m->w struct msg_turn */
	MSG_EVENT,	/* w->m `"type":T,"data":{...}}` (an object's tail) */
	MSG_TURN_END,	/* w->m struct msg_turn_end */
	MSG_INTERRUPT,	/* m->w (empty) */
	MSG_STOP,	/* m->w (empty): end the CLI (TERM, grace, KILL), exit */
	MSG_CLI_SESSION,/* w->m struct msg_cli_session: the CLI's new id */
	MSG_CLI_EXIT,	/* w->m struct msg_cli_exit: the CLI is gone */
	MSG_APPROVAL,	/* w->m struct msg_approval: a question put to the app */
	MSG_PERMISSION,	/* m->w struct msg_permission: the app's answer */
	MSG_CONFIGURE,	/* m->w struct msg_configure: live settings */
	MSG_CONFIGURED,	/* w->m struct msg_configured: the CLI's answer */
	MSG_TRANSCRIPT,	/* w->m struct msg_transcript: what the CLI added to
			   its transcript; m->w (before MSG_OPEN): the stored
			   transcript to restore; m->w after it, empty: the
			   store has offset bytes of path, the next pieces
			   start there (it missed or failed some) */
	MSG_POLICY,	/* m->w struct msg_policy, first, once: the firewall
			   rules a spare compiles before it is ready */
	MSG_READY,	/* w->m (empty), after its hello: the rules are
			   compiled, the spare may be given a session */
	MSG_TYPE_MAX
};

struct msg_hdr {
	uint32_t	len;	/* payload bytes */
	uint16_t	type;
	uint8_t		version;
	uint8_t		flags;
	uint32_t	turn;	/* turn number the message belongs to */
	uint32_t	pid;	/* sender: the master checks a worker's */
};

struct msg {
	struct msg_hdr	 hdr;
	char		*data;	/* owned, NUL-terminated, hdr.len bytes */
};

/* msg_get's answers. */
#define MSG_GET_OK		1	/* one message (free with msg_clear) */
#define MSG_GET_MORE		0	/* need more bytes */
#define MSG_GET_BAD		(-1)	/* malformed: bad type, flags or size */
#define MSG_GET_VERSION		(-2)	/* another version (in m->hdr) */

/* Framing. */
void	 msg_compose(struct evbuffer *, uint16_t type, uint32_t turn,
	    const void *data, size_t len);
/* Serializes json (not consumed) as the payload. */
void	 msg_compose_json(struct evbuffer *, uint16_t type, uint32_t turn,
	    const cJSON *json);
/* Which side sends a type: MSG_FROM_* (both for HELLO, TRANSCRIPT). */
#define MSG_FROM_MASTER		0x1
#define MSG_FROM_WORKER		0x2
int	 msg_type_from(uint16_t);
/* Takes one message off the buffer: MSG_GET_* above. */
int	 msg_get(struct evbuffer *, struct msg *);
void	 msg_clear(struct msg *);
/* Parses the payload as a JSON object; NULL if it is not one. */
cJSON	*msg_json(const struct msg *);
const char *msg_type_name(uint16_t);

/*
 * Typed messages.  A decoder returns 0, or -1 on a malformed payload (the
 * sender is then killed); the strings of what it fills point into its
 * json member, freed by the type's _clear.
 */
struct msg_opened {
	pid_t		 cli_pid;	/* also its process group */
	const char	*cli_session_id;
	const char	*workdir;
	int		 resume;	/* --resume: the CLI has its transcript */
	const char	*policy;	/* digest of the rules its tool calls
					   are screened with (msg_policy) */
	cJSON		*json;
};

struct msg_open_failed {
	const char	*code;		/* ERR_* */
	const char	*message;
	int		 exiting;	/* the worker exits: not a spare again */
	cJSON		*json;
};

struct msg_turn {
	const char	*prompt;
	int		 slash_commands;
	uint64_t	 timeout_ms;	/* 0: none */
	cJSON		*json;
};

enum msg_turn_outcome {
	MSG_TURN_DONE,		/* done: the CLI's result */
	MSG_TURN_ERROR		/* error: code and message */
};

struct msg_turn_end {
	enum msg_turn_outcome	 outcome;
	struct proto_done	 done;		/* MSG_TURN_DONE */
	const char		*code;		/* MSG_TURN_ERROR: ERR_* */
	const char		*message;
	struct stats		 stats;		/* the turn's */
	int			 exiting;	/* its CLI is gone: so is it */
	int			 retry;		/* the CLI died before the turn
						   began: a new one may run it */
	cJSON			*json;
};

struct msg_cli_session {
	const char	*cli_session_id;
	cJSON		*json;
};

struct msg_cli_exit {
	int		 status;	/* exit status, or -1 if killed */
	int		 signal;	/* 0 unless killed */
	const char	*stderr_tail;
	cJSON		*json;
};

struct msg_approval {
	const char	*request_id;	/* the CLI's can_use_tool id */
	int		 pending;	/* put to the app; 0: settled */
	cJSON		*json;
};

struct msg_configure {
	const char	*model;		/* NULL: unchanged */
	const char	*permission_mode;
	cJSON		*json;
};

struct msg_configured {
	int		 ok;
	const char	*message;	/* the CLI's error, when not ok */
	cJSON		*json;
};

struct msg_permission {
	const char	*request_id;
	int		 allow;		/* else deny */
	const char	*message;	/* may be NULL */
	const cJSON	*updated_input;	/* an object, or NULL */
	cJSON		*json;
};

/*
 * A piece of one of the CLI's transcript files: the bytes at offset of the
 * file at path, relative to the CLI's config dir (msg_transcript_path_ok).
 * Offset 0 starts the file anew.  The payload is a JSON header line, then
 * the bytes as they are.
 */
#define TRANSCRIPT_PIECE_MAX	(1U * 1024 * 1024)	/* bytes a message */
#define TRANSCRIPT_FILE_MAX	(64U * 1024 * 1024)	/* a file is kept up
							   to this size */
struct msg_transcript {
	const char	*path;
	uint64_t	 offset;
	const char	*data;		/* into the message */
	size_t		 len;
	cJSON		*json;
};

/*
 * projects/<cwd-key>/<session id>.jsonl, or a subagent's beside it:
 * projects/<cwd-key>/<session id>/subagents/agent-<agent id>.jsonl (its
 * transcript) or .meta.json (its description); nothing else (no "..").
 */
int	 msg_transcript_path_ok(const char *);
/* 1 if path is a file of conversation id: its transcript or a subagent's. */
int	 msg_transcript_of(const char *path, const char *id);
/* 1 if the CLI rewrites the file whole (a .meta.json), not appends. */
int	 msg_transcript_whole(const char *path);

/*
 * The firewall rules a worker screens tool calls with: the texts the
 * master loaded (and screens prompts with), in order, named for errors.
 * The payload is a JSON header line ({generation, digest, threshold,
 * files: [{name, len}]}), then the texts back to back, as they are.  No
 * files: no rules (firewall = off).
 */
#define MSG_POLICY_FILES_MAX	64	/* POLICY_MAX_FILES */
#define MSG_POLICY_DIGEST_LEN	64	/* hex SHA-256, without NUL */
struct msg_policy_file {
	const char	*name;
	const char	*text;		/* len bytes, not NUL-terminated */
	size_t		 len;
};
struct msg_policy {
	uint64_t		 generation;	/* the master's count of loads */
	const char		*digest;
	int			 threshold;
	struct msg_policy_file	 files[MSG_POLICY_FILES_MAX];
	size_t			 nfiles;
	cJSON			*json;
};

void	 msg_empty_compose(struct evbuffer *, uint16_t type, uint32_t turn);
/* 0 if an empty message (HELLO, READY, PROBED, INTERRUPT, STOP) is empty. */
int	 msg_empty_decode(const struct msg *);

void	 msg_open_compose(struct evbuffer *, uint32_t turn, const cJSON *);
/* The session object (free with cJSON_Delete), or NULL. */
cJSON	*msg_open_decode(const struct msg *);

void	 msg_opened_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_opened *);
int	 msg_opened_decode(const struct msg *, struct msg_opened *);
void	 msg_opened_clear(struct msg_opened *);

void	 msg_open_failed_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_open_failed *);
int	 msg_open_failed_decode(const struct msg *, struct msg_open_failed *);
void	 msg_open_failed_clear(struct msg_open_failed *);

void	 msg_turn_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_turn *);
int	 msg_turn_decode(const struct msg *, struct msg_turn *);
void	 msg_turn_clear(struct msg_turn *);

void	 msg_turn_end_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_turn_end *);
int	 msg_turn_end_decode(const struct msg *, struct msg_turn_end *);
void	 msg_turn_end_clear(struct msg_turn_end *);

void	 msg_cli_session_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_cli_session *);
int	 msg_cli_session_decode(const struct msg *, struct msg_cli_session *);
void	 msg_cli_session_clear(struct msg_cli_session *);

void	 msg_cli_exit_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_cli_exit *);
int	 msg_cli_exit_decode(const struct msg *, struct msg_cli_exit *);
void	 msg_cli_exit_clear(struct msg_cli_exit *);

void	 msg_approval_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_approval *);
int	 msg_approval_decode(const struct msg *, struct msg_approval *);
void	 msg_approval_clear(struct msg_approval *);

void	 msg_permission_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_permission *);
int	 msg_permission_decode(const struct msg *, struct msg_permission *);
void	 msg_permission_clear(struct msg_permission *);

void	 msg_configure_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_configure *);
int	 msg_configure_decode(const struct msg *, struct msg_configure *);
void	 msg_configure_clear(struct msg_configure *);

void	 msg_configured_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_configured *);
int	 msg_configured_decode(const struct msg *, struct msg_configured *);
void	 msg_configured_clear(struct msg_configured *);

void	 msg_transcript_compose(struct evbuffer *, uint32_t turn,
	    const struct msg_transcript *);
/* Decodes m, which must outlive t (t->data points into it). */
int	 msg_transcript_decode(const struct msg *, struct msg_transcript *);
void	 msg_transcript_clear(struct msg_transcript *);

void	 msg_policy_compose(struct evbuffer *, const struct msg_policy *);
/* Decodes m, which must outlive p (the texts point into it). */
int	 msg_policy_decode(const struct msg *, struct msg_policy *);
void	 msg_policy_clear(struct msg_policy *);

#endif
