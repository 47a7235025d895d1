/*
 * libFuzzer target: client bytes through the daemon's own request path
 * without a daemon.  The input is cut into appends (sizes taken from its
 * first byte), framed by line_next over an evbuffer, and every line goes
 * through request_parse (supervisor/request.c, what hotplexd runs).  A
 * line it takes is valid UTF-8 with an id and an op; whatever the line,
 * the error reply built from what it returns (bad_request, or unknown_op
 * naming the op) is one line of valid UTF-8 JSON with no raw control byte.
 * Framing invariants abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <event2/buffer.h>

#include "common/json.h"
#include "common/line.h"
#include "common/proto.h"
#include "supervisor/request.h"

#define FUZZ_LINE_MAX	512	/* small cap, so overflows are reached */
#define FUZZ_CHUNK_MOD	64	/* appends of 1..64 bytes */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define fuzz_assert(x)	do { if (!(x)) abort(); } while (0)

/* The reply the daemon would write: one line a client can parse. */
static void
fuzz_reply(const struct request_error *err)
{
	cJSON	*o, *back;
	char	*s;
	size_t	 i, n;

	o = proto_error(err->id, NULL, err->code, err->message);
	s = cJSON_PrintUnformatted(o);
	fuzz_assert(s != NULL);
	n = strlen(s);
	for (i = 0; i < n; i++)
		fuzz_assert((unsigned char)s[i] >= 0x20);
	fuzz_assert(json_utf8_valid(s, n));
	back = cJSON_Parse(s);
	fuzz_assert(cJSON_IsObject(back));
	cJSON_Delete(back);
	cJSON_free(s);
	cJSON_Delete(o);
}

static void
fuzz_dispatch(const char *line, size_t len)
{
	struct request		rq;
	struct request_error	err;

	if (request_parse(line, len, &rq, &err) == 0) {
		fuzz_assert(json_utf8_valid(line, len));
		fuzz_assert(rq.id != NULL && rq.op != NULL);
		fuzz_assert(strlen(rq.id) <= PROTO_ID_MAX);
		/* The reply that echoes most of it. */
		request_unknown_op(&rq, &err);
		fuzz_assert(strcmp(err.code, ERR_UNKNOWN_OP) == 0);
	} else
		fuzz_assert(strcmp(err.code, ERR_BAD_REQUEST) == 0);
	fuzz_reply(&err);
	request_clear(&rq);
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
