/*
 * common/msg.c: master <-> worker framing.  Every type round trips; a
 * partial header or payload asks for more; a bad version, type, flags or
 * an oversize length is malformed (-1) at once, without waiting for the
 * payload; msg_json wants an object.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cJSON.h>
#include <event2/buffer.h>

#include "common/msg.h"
#include "common/xmalloc.h"

#define MANY_MSGS	1000
#define MANY_SIZE_STEP	37	/* payload sizes vary with the index */
#define TURN_STEP	7

static int
buf_setup(void **state)
{
	*state = evbuffer_new();
	return *state == NULL ? -1 : 0;
}

static int
buf_teardown(void **state)
{
	evbuffer_free(*state);
	return 0;
}

/* A raw header, to forge what msg_compose would never write. */
static void
hdr_add(struct evbuffer *b, uint32_t len, uint16_t type, uint8_t version,
    uint8_t flags)
{
	struct msg_hdr	h;

	memset(&h, 0, sizeof h);
	h.len = len;
	h.type = type;
	h.version = version;
	h.flags = flags;
	h.turn = 1;
	h.pid = 1;
	assert_int_equal(evbuffer_add(b, &h, sizeof h), 0);
}

static void
test_header_size(void **state)
{
	struct evbuffer	*b = *state;

	assert_int_equal(sizeof(struct msg_hdr), MSG_HDR_SIZE);
	msg_compose(b, MSG_STOP, 0, NULL, 0);
	assert_int_equal(evbuffer_get_length(b), MSG_HDR_SIZE);
}

static void
test_round_trip_every_type(void **state)
{
	struct evbuffer	*b = *state;
	struct msg	 m;
	cJSON		*j;
	char		 payload[64];
	uint16_t	 t;
	int		 n;

	for (t = MSG_HELLO; t < MSG_TYPE_MAX; t++) {
		assert_string_not_equal(msg_type_name(t), "invalid");
		n = snprintf(payload, sizeof payload, "{\"t\":%u,\"s\":\"%s\"}",
		    t, msg_type_name(t));
		msg_compose(b, t, t * TURN_STEP, payload, (size_t)n);
		assert_int_equal(msg_get(b, &m), 1);
		assert_int_equal(evbuffer_get_length(b), 0);
		assert_int_equal(m.hdr.type, t);
		assert_int_equal(m.hdr.version, MSG_VERSION);
		assert_int_equal(m.hdr.flags, 0);
		assert_int_equal(m.hdr.turn, t * TURN_STEP);
		assert_int_equal(m.hdr.pid, (uint32_t)getpid());
		assert_int_equal(m.hdr.len, n);
		assert_string_equal(m.data, payload);
		j = msg_json(&m);
		assert_non_null(j);
		assert_int_equal(cJSON_GetObjectItem(j, "t")->valueint, t);
		assert_string_equal(cJSON_GetObjectItem(j, "s")->valuestring,
		    msg_type_name(t));
		cJSON_Delete(j);
		msg_clear(&m);
		assert_null(m.data);
	}
	assert_string_equal(msg_type_name(0), "invalid");
	assert_string_equal(msg_type_name(MSG_TYPE_MAX), "invalid");
	assert_string_equal(msg_type_name(UINT16_MAX), "invalid");
}

static void
test_round_trip_json_and_empty(void **state)
{
	struct evbuffer	*b = *state;
	struct msg	 m;
	cJSON		*o, *j;
	char		*s1, *s2;

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "prompt", "line one\nline \"two\"\t\xc3\xa9");
	cJSON_AddNumberToObject(o, "timeout_ms", 1500);
	cJSON_AddBoolToObject(o, "slash_commands", 1);
	msg_compose_json(b, MSG_TURN, 3, o);
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.type, MSG_TURN);
	assert_int_equal(m.hdr.turn, 3);
	j = msg_json(&m);
	assert_non_null(j);
	s1 = cJSON_PrintUnformatted(o);
	s2 = cJSON_PrintUnformatted(j);
	assert_string_equal(s1, s2);
	cJSON_free(s1);
	cJSON_free(s2);
	cJSON_Delete(j);
	cJSON_Delete(o);
	msg_clear(&m);

	/* No payload: an empty, NUL-terminated string; not JSON. */
	msg_compose(b, MSG_INTERRUPT, 9, NULL, 0);
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.len, 0);
	assert_non_null(m.data);
	assert_string_equal(m.data, "");
	assert_null(msg_json(&m));
	msg_clear(&m);

	/* Binary payload, NULs included, arrives intact. */
	msg_compose(b, MSG_EVENT, 1, "a\0b\0", 4);
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.len, 4);
	assert_memory_equal(m.data, "a\0b\0", 5);
	msg_clear(&m);
}

/* Feeds a message one byte at a time: 0 until the last byte, then 1. */
static void
test_partial_header_and_payload(void **state)
{
	struct evbuffer	*b = *state, *whole;
	struct msg	 m;
	static const char payload[] = "{\"code\":\"x\",\"message\":\"y\"}";
	unsigned char	*p;
	size_t		 i, total;

	assert_non_null(whole = evbuffer_new());
	msg_compose(whole, MSG_OPEN_FAILED, 2, payload, sizeof payload - 1);
	total = evbuffer_get_length(whole);
	assert_int_equal(total, MSG_HDR_SIZE + sizeof payload - 1);
	p = evbuffer_pullup(whole, -1);
	assert_int_equal(msg_get(b, &m), 0);
	for (i = 0; i < total; i++) {
		evbuffer_add(b, p + i, 1);
		if (i + 1 < total) {
			assert_int_equal(msg_get(b, &m), 0);
			assert_null(m.data);
			/* Nothing taken while waiting. */
			assert_int_equal(evbuffer_get_length(b), i + 1);
		}
	}
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.type, MSG_OPEN_FAILED);
	assert_string_equal(m.data, payload);
	assert_int_equal(evbuffer_get_length(b), 0);
	msg_clear(&m);
	evbuffer_free(whole);
}

static void
assert_malformed(struct evbuffer *b)
{
	struct msg	m;
	size_t		len = evbuffer_get_length(b);

	assert_int_equal(msg_get(b, &m), -1);
	assert_null(m.data);
	/* Left in place: the caller drops the peer, not the bytes. */
	assert_int_equal(evbuffer_get_length(b), len);
	evbuffer_drain(b, len);
}

static void
test_bad_version(void **state)
{
	struct evbuffer	*b = *state;

	hdr_add(b, 2, MSG_HELLO, MSG_VERSION + 1, 0);
	evbuffer_add(b, "{}", 2);
	assert_malformed(b);
	hdr_add(b, 2, MSG_HELLO, 0, 0);
	evbuffer_add(b, "{}", 2);
	assert_malformed(b);
	hdr_add(b, 0, MSG_HELLO, UINT8_MAX, 0);
	assert_malformed(b);
}

static void
test_bad_type(void **state)
{
	struct evbuffer	*b = *state;
	static const uint16_t bad[] = { 0, MSG_TYPE_MAX, MSG_TYPE_MAX + 1,
	    UINT16_MAX };
	struct msg	 m;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		hdr_add(b, 0, bad[i], MSG_VERSION, 0);
		assert_malformed(b);
	}
	/* The last valid type is accepted. */
	hdr_add(b, 0, MSG_TYPE_MAX - 1, MSG_VERSION, 0);
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.type, MSG_TYPE_MAX - 1);
	msg_clear(&m);
}

static void
test_bad_flags(void **state)
{
	struct evbuffer	*b = *state;

	hdr_add(b, 0, MSG_STOP, MSG_VERSION, 1);
	assert_malformed(b);
	hdr_add(b, 0, MSG_STOP, MSG_VERSION, 0x80);
	assert_malformed(b);
}

static void
test_oversize_rejected_without_payload(void **state)
{
	struct evbuffer	*b = *state;
	struct msg	 m;
	char		*big;

	/* Only the header is there: -1, not "need more". */
	hdr_add(b, MSG_MAX_PAYLOAD + 1, MSG_EVENT, MSG_VERSION, 0);
	assert_malformed(b);
	hdr_add(b, UINT32_MAX, MSG_EVENT, MSG_VERSION, 0);
	assert_malformed(b);

	/* Exactly the limit is fine, once it is all there. */
	hdr_add(b, MSG_MAX_PAYLOAD, MSG_EVENT, MSG_VERSION, 0);
	assert_int_equal(msg_get(b, &m), 0);
	big = xmalloc(MSG_MAX_PAYLOAD);
	memset(big, 'e', MSG_MAX_PAYLOAD);
	evbuffer_add(b, big, MSG_MAX_PAYLOAD - 1);
	assert_int_equal(msg_get(b, &m), 0);
	evbuffer_add(b, big, 1);
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.len, MSG_MAX_PAYLOAD);
	assert_int_equal(m.data[MSG_MAX_PAYLOAD - 1], 'e');
	assert_int_equal(m.data[MSG_MAX_PAYLOAD], '\0');
	assert_int_equal(evbuffer_get_length(b), 0);
	msg_clear(&m);

	/* msg_compose at the limit too. */
	msg_compose(b, MSG_EVENT, 1, big, MSG_MAX_PAYLOAD);
	assert_int_equal(msg_get(b, &m), 1);
	assert_int_equal(m.hdr.len, MSG_MAX_PAYLOAD);
	msg_clear(&m);
	free(big);
}

static void
test_json_non_objects(void **state)
{
	static const char *bad[] = {
		"[1,2]", "[]", "\"s\"", "42", "-1.5e3", "null", "true", "false",
		"", " ", "{", "{\"a\":1", "{\"a\":}", "}", "nul", "\xff\xfe",
		"{\"a\":\"\\ud800\"",
	};
	struct evbuffer	*b = *state;
	struct msg	 m;
	cJSON		*j;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		msg_compose(b, MSG_OPENED, 0, bad[i], strlen(bad[i]));
		assert_int_equal(msg_get(b, &m), 1);
		if ((j = msg_json(&m)) != NULL) {
			cJSON_Delete(j);
			fail_msg("payload \"%s\" parsed as an object", bad[i]);
		}
		msg_clear(&m);
	}
	/* Objects, with white space around. */
	msg_compose(b, MSG_OPENED, 0, " {} \n", 5);
	assert_int_equal(msg_get(b, &m), 1);
	assert_non_null(j = msg_json(&m));
	cJSON_Delete(j);
	msg_clear(&m);

	/* The payload ends at hdr.len even if more bytes follow in memory. */
	msg_compose(b, MSG_OPENED, 0, "{\"a\":1}", 4);
	assert_int_equal(msg_get(b, &m), 1);
	assert_null(msg_json(&m));
	msg_clear(&m);

	/* A struct msg with no data (after msg_clear, or msg_get 0/-1). */
	memset(&m, 0, sizeof m);
	assert_null(msg_json(&m));
	msg_clear(&m);
}

static void
test_many_back_to_back(void **state)
{
	struct evbuffer	*b = *state;
	struct msg	 m;
	char		*payload = xmalloc(MANY_MSGS * MANY_SIZE_STEP + 1);
	size_t		 i, len;
	uint16_t	 type;

	memset(payload, 'z', MANY_MSGS * MANY_SIZE_STEP);
	for (i = 0; i < MANY_MSGS; i++) {
		len = (i * MANY_SIZE_STEP) % (MANY_MSGS * MANY_SIZE_STEP / 4);
		type = (uint16_t)(MSG_HELLO + i % (MSG_TYPE_MAX - MSG_HELLO));
		payload[0] = (char)('a' + i % 26);
		msg_compose(b, type, (uint32_t)i, payload, len);
	}
	for (i = 0; i < MANY_MSGS; i++) {
		len = (i * MANY_SIZE_STEP) % (MANY_MSGS * MANY_SIZE_STEP / 4);
		type = (uint16_t)(MSG_HELLO + i % (MSG_TYPE_MAX - MSG_HELLO));
		assert_int_equal(msg_get(b, &m), 1);
		assert_int_equal(m.hdr.type, type);
		assert_int_equal(m.hdr.turn, i);
		assert_int_equal(m.hdr.len, len);
		if (len > 0)
			assert_int_equal(m.data[0], 'a' + i % 26);
		assert_int_equal(m.data[len], '\0');
		msg_clear(&m);
	}
	assert_int_equal(msg_get(b, &m), 0);
	assert_int_equal(evbuffer_get_length(b), 0);

	/* A good message then a bad one: the good one first, then -1. */
	msg_compose(b, MSG_HELLO, 0, "{}", 2);
	hdr_add(b, 0, 0, MSG_VERSION, 0);
	assert_int_equal(msg_get(b, &m), 1);
	msg_clear(&m);
	assert_malformed(b);
	free(payload);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, buf_setup, buf_teardown)
		T(test_header_size),
		T(test_round_trip_every_type),
		T(test_round_trip_json_and_empty),
		T(test_partial_header_and_payload),
		T(test_bad_version),
		T(test_bad_type),
		T(test_bad_flags),
		T(test_oversize_rejected_without_payload),
		T(test_json_non_objects),
		T(test_many_back_to_back),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
