/*
 * libFuzzer target: client bytes through the request path of
 * supervisor/server-client.c without a daemon.  The input is cut into
 * appends (sizes taken from its first byte), framed by line_next over an
 * evbuffer, and every line is parsed and checked field by field as
 * server_client_dispatch and session_prepare do; the error reply built
 * from the fields must be valid JSON.  Framing invariants abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <event2/buffer.h>

#include "common/line.h"
#include "common/proto.h"

#define FUZZ_LINE_MAX	512	/* small cap, so overflows are reached */
#define FUZZ_MSG_MAX	512	/* an error reply's message */
#define FUZZ_CHUNK_MOD	64	/* appends of 1..64 bytes */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define fuzz_assert(x)	do { if (!(x)) abort(); } while (0)

static const char *
fuzz_jstr(const cJSON *o, const char *k)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The reply the daemon would write: it must always be one JSON line. */
static void
fuzz_reply(const char *req, const char *session, const char *fmt,
    const char *arg)
{
	cJSON	*o, *back;
	char	 msg[FUZZ_MSG_MAX], *s;

	snprintf(msg, sizeof msg, fmt, arg);
	o = proto_error(req, session, ERR_BAD_REQUEST, msg);	/* the daemon's */
	s = cJSON_PrintUnformatted(o);
	fuzz_assert(s != NULL);
	fuzz_assert(strchr(s, '\n') == NULL);
	back = cJSON_Parse(s);
	fuzz_assert(cJSON_IsObject(back));
	cJSON_Delete(back);
	cJSON_free(s);
	cJSON_Delete(o);
}

static void
fuzz_dispatch(const char *line, size_t len)
{
	cJSON		*r;
	const cJSON	*id, *op, *wd, *opt, *v;
	const char	*session, *prompt;

	if ((r = cJSON_ParseWithLength(line, len)) == NULL ||
	    !cJSON_IsObject(r)) {
		fuzz_reply(NULL, NULL, "%s", "request is not a JSON object");
		cJSON_Delete(r);
		return;
	}
	id = cJSON_GetObjectItemCaseSensitive(r, "id");
	if (!cJSON_IsString(id) || strlen(id->valuestring) > PROTO_ID_MAX) {
		fuzz_reply(NULL, NULL, "%s", "bad id");
		goto out;
	}
	op = cJSON_GetObjectItemCaseSensitive(r, "op");
	if (!cJSON_IsString(op)) {
		fuzz_reply(id->valuestring, NULL, "%s", "bad op");
		goto out;
	}
	/* session_prepare's checks, then execute's. */
	session = fuzz_jstr(r, "session");
	if (session == NULL || !proto_valid_session(session)) {
		fuzz_reply(id->valuestring, NULL, "unknown op \"%.64s\"",
		    op->valuestring);
		goto out;
	}
	fuzz_assert(strlen(session) <= PROTO_SESSION_MAX);
	wd = cJSON_GetObjectItemCaseSensitive(r, "workdir");
	opt = cJSON_GetObjectItemCaseSensitive(r, "options");
	if ((wd != NULL && !cJSON_IsString(wd)) ||
	    (opt != NULL && !cJSON_IsObject(opt))) {
		fuzz_reply(id->valuestring, session, "%s", "bad field");
		goto out;
	}
	prompt = fuzz_jstr(r, "prompt");
	if (cJSON_IsObject(opt)) {
		v = cJSON_GetObjectItemCaseSensitive(opt, "timeout_ms");
		if (cJSON_IsNumber(v) && v->valuedouble > 0 &&
		    v->valuedouble < (double)UINT64_MAX)
			(void)(uint64_t)v->valuedouble;
		(void)cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opt,
		    "slash_commands"));
	}
	fuzz_reply(id->valuestring, session, "runs in %s",
	    cJSON_IsString(wd) ? wd->valuestring : (prompt ? prompt : ""));
out:
	cJSON_Delete(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer		*in;
	struct line_reader	 r;
	enum line_status	 st;
	size_t			 chunk, off, n, len, newlines = 0, events = 0;
	char			*line;
	int			 overflowed = 0;

	if (size == 0)
		return 0;
	chunk = (size_t)(data[0] % FUZZ_CHUNK_MOD) + 1;
	data++;
	size--;
	for (off = 0; off < size; off++)
		newlines += data[off] == '\n';
	if ((in = evbuffer_new()) == NULL)
		abort();
	line_init(&r, FUZZ_LINE_MAX);
	for (off = 0; off < size; off += n) {
		n = size - off < chunk ? size - off : chunk;
		evbuffer_add(in, data + off, n);
		while ((st = line_next(&r, in, &line, &len)) != LINE_NONE) {
			switch (st) {
			case LINE_OK:
				fuzz_assert(!overflowed);
				fuzz_assert(line != NULL && line[len] == '\0');
				fuzz_assert(len <= FUZZ_LINE_MAX);
				fuzz_assert(memchr(line, '\n', len) == NULL);
				if (len > 0)
					fuzz_dispatch(line, len);
				free(line);
				events++;
				break;
			case LINE_OVERFLOW:
				fuzz_assert(line == NULL && !overflowed);
				overflowed = 1;
				break;
			case LINE_DROPPED:
				fuzz_assert(line == NULL);
				fuzz_assert(len > FUZZ_LINE_MAX);
				overflowed = 0;
				events++;
				break;
			default:
				abort();
			}
		}
		/* Bounded: a partial line never exceeds the cap. */
		fuzz_assert(evbuffer_get_length(in) <= FUZZ_LINE_MAX);
	}
	/* Every '\n' ended exactly one line. */
	fuzz_assert(events == newlines);
	evbuffer_free(in);
	return 0;
}
