/*
 * libFuzzer target: arbitrary bytes as a worker's side of the socketpair.
 * msg_get takes messages off the whole input and, separately, off the
 * same bytes fed in small appends (sizes from the first byte): both must
 * see the same messages and the same end.  Each message's header must be
 * one msg_get accepts, its payload NUL-terminated, and msg_json must give
 * an object or NULL; an object re-composed must read back equal.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <event2/buffer.h>

#include "common/msg.h"

#define FUZZ_CHUNK_MOD	32	/* appends of 1..32 bytes */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define fuzz_assert(x)	do { if (!(x)) abort(); } while (0)

static void
fuzz_check_json(const struct msg *m)
{
	struct evbuffer	*b;
	struct msg	 m2;
	cJSON		*j, *j2;
	char		*s1, *s2;

	if ((j = msg_json(m)) == NULL)
		return;
	fuzz_assert(cJSON_IsObject(j));
	if ((b = evbuffer_new()) == NULL)
		abort();
	msg_compose_json(b, m->hdr.type, m->hdr.turn, j);
	fuzz_assert(msg_get(b, &m2) == 1);
	fuzz_assert(m2.hdr.type == m->hdr.type && m2.hdr.turn == m->hdr.turn);
	fuzz_assert(evbuffer_get_length(b) == 0);
	/* Printed, not cJSON_Compare: duplicate keys must survive too. */
	j2 = msg_json(&m2);
	fuzz_assert(j2 != NULL);
	s1 = cJSON_PrintUnformatted(j);
	s2 = cJSON_PrintUnformatted(j2);
	fuzz_assert(s1 != NULL && s2 != NULL && strcmp(s1, s2) == 0);
	cJSON_free(s1);
	cJSON_free(s2);
	cJSON_Delete(j2);
	msg_clear(&m2);
	evbuffer_free(b);
	cJSON_Delete(j);
}

static void
fuzz_check_msg(const struct msg *m)
{
	fuzz_assert(m->hdr.version == MSG_VERSION);
	fuzz_assert(m->hdr.type > 0 && m->hdr.type < MSG_TYPE_MAX);
	fuzz_assert(m->hdr.flags == 0);
	fuzz_assert(m->hdr.len <= MSG_MAX_PAYLOAD);
	fuzz_assert(m->data != NULL && m->data[m->hdr.len] == '\0');
	fuzz_assert(strcmp(msg_type_name(m->hdr.type), "invalid") != 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer	*whole, *part;
	struct msg	 m, p;
	size_t		 chunk, off = 0, n;
	int		 rw, rp = 0;

	if (size == 0)
		return 0;
	chunk = (size_t)(data[0] % FUZZ_CHUNK_MOD) + 1;
	data++;
	size--;
	if ((whole = evbuffer_new()) == NULL || (part = evbuffer_new()) == NULL)
		abort();
	evbuffer_add(whole, data, size);
	for (;;) {
		rw = msg_get(whole, &m);
		/* The same message from the appends, fed until decided. */
		while ((rp = msg_get(part, &p)) == 0 && off < size) {
			n = size - off < chunk ? size - off : chunk;
			evbuffer_add(part, data + off, n);
			off += n;
		}
		fuzz_assert(rw == rp);
		if (rw != 1)
			break;
		fuzz_check_msg(&m);
		fuzz_assert(memcmp(&m.hdr, &p.hdr, sizeof m.hdr) == 0);
		fuzz_assert(memcmp(m.data, p.data, m.hdr.len + 1) == 0);
		fuzz_check_json(&m);
		msg_clear(&m);
		msg_clear(&p);
	}
	/* Nothing consumed by a failed get; both hold the same rest. */
	fuzz_assert(evbuffer_get_length(whole) ==
	    evbuffer_get_length(part) + (size - off));
	fuzz_assert(m.data == NULL && p.data == NULL);
	evbuffer_free(whole);
	evbuffer_free(part);
	return 0;
}
