/*
 * Master <-> worker messages over a socketpair: an imsg-like fixed header
 * followed by a payload (JSON text for control messages, a pre-serialized
 * event for MSG_EVENT).  Versioned and size-checked: a malformed message
 * from a worker kills that worker, never the master.
 */
#ifndef HP_MSG_H
#define HP_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

struct evbuffer;

#define MSG_VERSION		1
#define MSG_HDR_SIZE		16
#define MSG_MAX_PAYLOAD		(4U * 1024 * 1024)
#define WORKER_FD		3	/* the worker's end of the socketpair */

enum msg_type {
	MSG_HELLO = 1,	/* w->m {pid,version}: a spare is ready */
	MSG_OPEN,	/* m->w session assignment (JSON, see worker/) */
	MSG_OPENED,	/* w->m {cli_pid,pgid,cold,resumed,cli_session_id} */
	MSG_OPEN_FAILED,/* w->m {code,message}; the worker stays a spare */
	MSG_TURN,	/* m->w {prompt,slash_commands,timeout_ms} */
	MSG_EVENT,	/* w->m `"type":T,"data":{...}}` (an object's tail) */
	MSG_TURN_END,	/* w->m {done:{...}|error:{code,message}, stats:{...}} */
	MSG_INTERRUPT,	/* m->w */
	MSG_STOP,	/* m->w: end the CLI (TERM, grace, KILL) and exit */
	MSG_CLI_SESSION,/* w->m {cli_session_id}: the CLI changed its id */
	MSG_CLI_EXIT,	/* w->m {status,signal,stderr}: the CLI is gone */
	MSG_TYPE_MAX
};

struct msg_hdr {
	uint32_t	len;	/* payload bytes */
	uint16_t	type;
	uint8_t		version;
	uint8_t		flags;
	uint32_t	turn;	/* turn number the message belongs to */
	uint32_t	pid;	/* sender */
};

struct msg {
	struct msg_hdr	 hdr;
	char		*data;	/* owned, NUL-terminated, hdr.len bytes */
};

void	 msg_compose(struct evbuffer *, uint16_t type, uint32_t turn,
	    const void *data, size_t len);
/* Serializes json (not consumed) as the payload. */
void	 msg_compose_json(struct evbuffer *, uint16_t type, uint32_t turn,
	    const cJSON *json);
/*
 * Takes one message off the buffer: 1 got one (free with msg_clear),
 * 0 need more bytes, -1 malformed (bad version, type or size).
 */
int	 msg_get(struct evbuffer *, struct msg *);
void	 msg_clear(struct msg *);
/* Parses the payload as a JSON object; NULL if it is not one. */
cJSON	*msg_json(const struct msg *);
const char *msg_type_name(uint16_t);

#endif
