/* Master <-> worker message framing. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"

static const char *msg_names[MSG_TYPE_MAX] = {
	[MSG_HELLO] = "hello", [MSG_OPEN] = "open", [MSG_OPENED] = "opened",
	[MSG_OPEN_FAILED] = "open_failed", [MSG_TURN] = "turn",
	[MSG_EVENT] = "event", [MSG_TURN_END] = "turn_end",
	[MSG_INTERRUPT] = "interrupt", [MSG_STOP] = "stop",
	[MSG_CLI_SESSION] = "cli_session", [MSG_CLI_EXIT] = "cli_exit",
};

const char *
msg_type_name(uint16_t type)
{
	if (type == 0 || type >= MSG_TYPE_MAX)
		return "invalid";
	return msg_names[type];
}

void
msg_compose(struct evbuffer *out, uint16_t type, uint32_t turn,
    const void *data, size_t len)
{
	struct msg_hdr	h;

	if (len > MSG_MAX_PAYLOAD)
		fatalx("msg_compose: %s payload of %zu bytes", msg_type_name(type),
		    len);
	memset(&h, 0, sizeof h);
	h.len = (uint32_t)len;
	h.type = type;
	h.version = MSG_VERSION;
	h.turn = turn;
	h.pid = (uint32_t)getpid();
	evbuffer_add(out, &h, sizeof h);
	if (len > 0)
		evbuffer_add(out, data, len);
}

void
msg_compose_json(struct evbuffer *out, uint16_t type, uint32_t turn,
    const cJSON *json)
{
	char	*s;

	if ((s = cJSON_PrintUnformatted(json)) == NULL)
		fatalx("msg_compose_json: out of memory");
	msg_compose(out, type, turn, s, strlen(s));
	cJSON_free(s);
}

int
msg_get(struct evbuffer *in, struct msg *m)
{
	struct msg_hdr	h;

	_Static_assert(sizeof h == MSG_HDR_SIZE, "msg header size");
	memset(m, 0, sizeof *m);
	if (evbuffer_get_length(in) < sizeof h)
		return 0;
	evbuffer_copyout(in, &h, sizeof h);
	if (h.version != MSG_VERSION || h.type == 0 || h.type >= MSG_TYPE_MAX ||
	    h.len > MSG_MAX_PAYLOAD || h.flags != 0)
		return -1;
	if (evbuffer_get_length(in) < sizeof h + h.len)
		return 0;
	evbuffer_drain(in, sizeof h);
	m->hdr = h;
	m->data = xmalloc((size_t)h.len + 1);
	evbuffer_remove(in, m->data, h.len);
	m->data[h.len] = '\0';
	return 1;
}

void
msg_clear(struct msg *m)
{
	free(m->data);
	m->data = NULL;
}

cJSON *
msg_json(const struct msg *m)
{
	cJSON	*j;

	if (m->data == NULL ||
	    (j = cJSON_ParseWithLength(m->data, m->hdr.len)) == NULL)
		return NULL;
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return NULL;
	}
	return j;
}
