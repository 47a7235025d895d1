/*
 * common/msg.c: master <-> worker messages.  Every type round trips; a
 * partial header or payload asks for more; a bad type, flags or an
 * oversize length is malformed (-1) at once, without waiting for the
 * payload, and another version is told apart (MSG_GET_VERSION, with its
 * number); msg_json wants an object.  Each typed message's encoder and
 * decoder agree, and each decoder refuses a payload of the wrong shape.
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

/* Another version is not malformed: it is told apart, with its number. */
static void
assert_other_version(struct evbuffer *b, uint8_t version)
{
	struct msg	m;
	size_t		len = evbuffer_get_length(b);

	assert_int_equal(msg_get(b, &m), MSG_GET_VERSION);
	assert_int_equal(m.hdr.version, version);
	assert_null(m.data);
	assert_int_equal(evbuffer_get_length(b), len);
	evbuffer_drain(b, len);
}

static void
test_bad_version(void **state)
{
	struct evbuffer	*b = *state;

	hdr_add(b, 2, MSG_HELLO, MSG_VERSION + 1, 0);
	evbuffer_add(b, "{}", 2);
	assert_other_version(b, MSG_VERSION + 1);
	hdr_add(b, 2, MSG_HELLO, 0, 0);
	evbuffer_add(b, "{}", 2);
	assert_other_version(b, 0);
	/* Even with a type or size this version would refuse. */
	hdr_add(b, MSG_MAX_PAYLOAD + 1, 0, UINT8_MAX, 1);
	assert_other_version(b, UINT8_MAX);
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

/* Composes with enc, takes the message back off the buffer. */
static void
get_one(struct evbuffer *b, struct msg *m, uint16_t type, uint32_t turn)
{
	assert_int_equal(msg_get(b, m), MSG_GET_OK);
	assert_int_equal(evbuffer_get_length(b), 0);
	assert_int_equal(m->hdr.type, type);
	assert_int_equal(m->hdr.turn, turn);
}

/* A payload forged for a type, to check its decoder refuses it. */
static void
forge(struct evbuffer *b, struct msg *m, uint16_t type, const char *json)
{
	msg_compose(b, type, 1, json, strlen(json));
	get_one(b, m, type, 1);
}

/* The rules to a worker: texts as they are, in order, every byte a file's. */
static void
test_policy(void **state)
{
	struct evbuffer		*b = *state;
	struct msg		 m;
	struct msg_policy	 p, p2;
	char			 digest[MSG_POLICY_DIGEST_LEN + 1], buf[256];

	memset(digest, 'a', MSG_POLICY_DIGEST_LEN);
	digest[MSG_POLICY_DIGEST_LEN] = '\0';
	memset(&p, 0, sizeof p);
	p.generation = 7;
	p.digest = digest;
	p.threshold = 5;
	p.files[0].name = "a.rules";
	p.files[0].text = "rule a\n\"x\"\n";
	p.files[0].len = strlen(p.files[0].text);
	p.files[1].name = "b.rules";
	p.files[1].text = "";
	p.files[1].len = 0;
	p.nfiles = 2;
	msg_policy_compose(b, &p);
	get_one(b, &m, MSG_POLICY, 0);
	assert_int_equal(msg_policy_decode(&m, &p2), 0);
	assert_int_equal(p2.generation, 7);
	assert_int_equal(p2.threshold, 5);
	assert_string_equal(p2.digest, digest);
	assert_int_equal(p2.nfiles, 2);
	assert_string_equal(p2.files[0].name, "a.rules");
	assert_int_equal(p2.files[0].len, p.files[0].len);
	assert_memory_equal(p2.files[0].text, p.files[0].text,
	    p.files[0].len);
	assert_int_equal(p2.files[1].len, 0);
	msg_policy_clear(&p2);
	msg_clear(&m);

	/* Bytes no file claims, or a file past the end: refused. */
	snprintf(buf, sizeof buf, "{\"generation\":1,\"digest\":\"%s\","
	    "\"threshold\":5,\"files\":[{\"name\":\"a\",\"len\":1}]}\nab",
	    digest);
	forge(b, &m, MSG_POLICY, buf);
	assert_int_equal(msg_policy_decode(&m, &p2), -1);
	msg_clear(&m);
	snprintf(buf, sizeof buf, "{\"generation\":1,\"digest\":\"%s\","
	    "\"threshold\":5,\"files\":[{\"name\":\"a\",\"len\":3}]}\nab",
	    digest);
	forge(b, &m, MSG_POLICY, buf);
	assert_int_equal(msg_policy_decode(&m, &p2), -1);
	msg_clear(&m);
	/* A short digest: refused. */
	forge(b, &m, MSG_POLICY, "{\"generation\":1,\"digest\":\"ab\","
	    "\"threshold\":5,\"files\":[]}\n");
	assert_int_equal(msg_policy_decode(&m, &p2), -1);
	msg_clear(&m);
}

static void
test_typed_round_trips(void **state)
{
	struct evbuffer		*b = *state;
	struct msg		 m;
	struct msg_opened	 op = { 4242, "uuid-1", "/w", 1, "d1", NULL }, op2;
	struct msg_open_failed	 of = { ERR_SPAWN_FAILED, "no CLI", 1, NULL },
				 of2;
	struct msg_turn		 t = { "/help me", 1, 30000, NULL }, t2;
	struct msg_cli_session	 cs = { "uuid-2", NULL }, cs2;
	struct msg_cli_exit	 ce = { -1, 9, "killed\n", NULL }, ce2;
	cJSON			*o;

	msg_opened_compose(b, 3, &op);
	get_one(b, &m, MSG_OPENED, 3);
	assert_int_equal(msg_opened_decode(&m, &op2), 0);
	assert_int_equal(op2.cli_pid, 4242);
	assert_string_equal(op2.cli_session_id, "uuid-1");
	assert_string_equal(op2.workdir, "/w");
	assert_true(op2.resume);
	assert_string_equal(op2.policy, "d1");
	msg_opened_clear(&op2);
	/* A decoder refuses another type's message. */
	assert_int_equal(msg_open_failed_decode(&m, &of2), -1);
	assert_null(of2.json);
	msg_clear(&m);

	msg_open_failed_compose(b, 4, &of);
	get_one(b, &m, MSG_OPEN_FAILED, 4);
	assert_int_equal(msg_open_failed_decode(&m, &of2), 0);
	assert_string_equal(of2.code, ERR_SPAWN_FAILED);
	assert_string_equal(of2.message, "no CLI");
	assert_true(of2.exiting);
	msg_open_failed_clear(&of2);
	msg_clear(&m);

	msg_turn_compose(b, 5, &t);
	get_one(b, &m, MSG_TURN, 5);
	assert_int_equal(msg_turn_decode(&m, &t2), 0);
	assert_string_equal(t2.prompt, "/help me");
	assert_true(t2.slash_commands);
	assert_int_equal(t2.timeout_ms, 30000);
	msg_turn_clear(&t2);
	msg_clear(&m);

	msg_cli_session_compose(b, 6, &cs);
	get_one(b, &m, MSG_CLI_SESSION, 6);
	assert_int_equal(msg_cli_session_decode(&m, &cs2), 0);
	assert_string_equal(cs2.cli_session_id, "uuid-2");
	msg_cli_session_clear(&cs2);
	msg_clear(&m);

	msg_cli_exit_compose(b, 7, &ce);
	get_one(b, &m, MSG_CLI_EXIT, 7);
	assert_int_equal(msg_cli_exit_decode(&m, &ce2), 0);
	assert_int_equal(ce2.status, -1);
	assert_int_equal(ce2.signal, 9);
	assert_string_equal(ce2.stderr_tail, "killed\n");
	msg_cli_exit_clear(&ce2);
	msg_clear(&m);

	/* Empty messages are their own types: the probe's answer too. */
	msg_empty_compose(b, MSG_PROBED, 8);
	get_one(b, &m, MSG_PROBED, 8);
	assert_int_equal(msg_empty_decode(&m), 0);
	assert_string_equal(msg_type_name(MSG_PROBED), "probed");
	msg_clear(&m);
	forge(b, &m, MSG_STOP, "{}");
	assert_int_equal(msg_empty_decode(&m), -1);
	msg_clear(&m);

	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "session", "s1");
	msg_open_compose(b, 9, o);
	cJSON_Delete(o);
	get_one(b, &m, MSG_OPEN, 9);
	assert_non_null(o = msg_open_decode(&m));
	assert_string_equal(cJSON_GetObjectItem(o, "session")->valuestring,
	    "s1");
	cJSON_Delete(o);
	msg_clear(&m);
}

static void
test_turn_end(void **state)
{
	struct evbuffer		*b = *state;
	struct msg		 m;
	struct msg_turn_end	 te, te2;
	cJSON			*errs = cJSON_CreateArray(), *d;

	cJSON_AddItemToArray(errs, cJSON_CreateString("e1"));
	memset(&te, 0, sizeof te);
	stats_init(&te.stats);
	te.outcome = MSG_TURN_DONE;
	te.done.ok = 1;
	te.done.result = "fine";
	te.done.terminal_reason = "completed";
	te.done.errors = errs;
	te.stats.tokens.input = 12;
	msg_turn_end_compose(b, 2, &te);
	get_one(b, &m, MSG_TURN_END, 2);
	assert_int_equal(msg_turn_end_decode(&m, &te2), 0);
	assert_int_equal(te2.outcome, MSG_TURN_DONE);
	assert_true(te2.done.ok);
	assert_false(te2.done.is_error);
	assert_string_equal(te2.done.result, "fine");
	assert_string_equal(te2.done.terminal_reason, "completed");
	assert_null(te2.done.stop_reason);
	assert_int_equal(cJSON_GetArraySize(te2.done.errors), 1);
	assert_int_equal(te2.stats.tokens.input, 12);
	assert_false(te2.exiting);
	assert_false(te2.retry);
	/* The one builder of the wire done object. */
	d = proto_done_json(&te2.done);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(d, "stop_reason")));
	assert_string_equal(cJSON_GetObjectItem(d, "result")->valuestring,
	    "fine");
	cJSON_Delete(d);
	msg_turn_end_clear(&te2);
	msg_clear(&m);
	cJSON_Delete(errs);

	/* An error that ends the turn, with the retry and exiting fields. */
	memset(&te, 0, sizeof te);
	stats_init(&te.stats);
	te.outcome = MSG_TURN_ERROR;
	te.code = ERR_CLI_EXITED;
	te.message = "gone";
	te.exiting = 1;
	te.retry = 1;
	msg_turn_end_compose(b, 3, &te);
	get_one(b, &m, MSG_TURN_END, 3);
	assert_int_equal(msg_turn_end_decode(&m, &te2), 0);
	assert_int_equal(te2.outcome, MSG_TURN_ERROR);
	assert_string_equal(te2.code, ERR_CLI_EXITED);
	assert_string_equal(te2.message, "gone");
	assert_true(te2.exiting);
	assert_true(te2.retry);
	msg_turn_end_clear(&te2);
	msg_clear(&m);
}

static void
test_typed_malformed(void **state)
{
	static const struct { uint16_t type; const char *json; } bad[] = {
		{ MSG_OPENED, "{}" },
		{ MSG_OPENED, "{\"cli_pid\":0,\"cli_session_id\":\"x\","
		    "\"workdir\":\"/w\",\"resume\":false}" },
		{ MSG_OPENED, "{\"cli_pid\":1,\"cli_session_id\":\"x\","
		    "\"workdir\":\"/w\"}" },
		{ MSG_OPENED, "{\"cli_pid\":\"1\",\"cli_session_id\":\"x\","
		    "\"workdir\":\"/w\"}" },
		{ MSG_OPEN_FAILED, "{\"code\":\"x\",\"message\":\"m\"}" },
		{ MSG_TURN, "{\"prompt\":1,\"slash_commands\":false,"
		    "\"timeout_ms\":0}" },
		{ MSG_TURN, "{\"prompt\":\"p\",\"slash_commands\":false,"
		    "\"timeout_ms\":-1}" },
		{ MSG_TURN_END, "{\"stats\":{},\"exiting\":false,"
		    "\"retry\":false}" },
		{ MSG_TURN_END, "{\"done\":{},\"error\":{\"code\":\"c\","
		    "\"message\":\"m\"},\"stats\":{},\"exiting\":false,"
		    "\"retry\":false}" },
		{ MSG_TURN_END, "{\"error\":{\"code\":\"c\",\"message\":\"m\"},"
		    "\"stats\":{},\"exiting\":false}" },
		{ MSG_TURN_END, "{\"error\":{\"code\":\"c\",\"message\":\"m\"},"
		    "\"exiting\":false,\"retry\":false}" },
		{ MSG_CLI_SESSION, "{\"cli_session_id\":null}" },
		{ MSG_CLI_EXIT, "{\"status\":0,\"signal\":0}" },
		{ MSG_CLI_EXIT, "[]" },
	};
	struct evbuffer		*b = *state;
	struct msg		 m;
	struct msg_opened	 op;
	struct msg_open_failed	 of;
	struct msg_turn		 t;
	struct msg_turn_end	 te;
	struct msg_cli_session	 cs;
	struct msg_cli_exit	 ce;
	size_t			 i;
	int			 r = 0;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		forge(b, &m, bad[i].type, bad[i].json);
		switch (bad[i].type) {
		case MSG_OPENED:
			r = msg_opened_decode(&m, &op);
			break;
		case MSG_OPEN_FAILED:
			r = msg_open_failed_decode(&m, &of);
			break;
		case MSG_TURN:
			r = msg_turn_decode(&m, &t);
			break;
		case MSG_TURN_END:
			r = msg_turn_end_decode(&m, &te);
			break;
		case MSG_CLI_SESSION:
			r = msg_cli_session_decode(&m, &cs);
			break;
		case MSG_CLI_EXIT:
			r = msg_cli_exit_decode(&m, &ce);
			break;
		}
		if (r != -1)
			print_error("decoded: %s\n", bad[i].json);
		assert_int_equal(r, -1);
		msg_clear(&m);
	}
}

/*
 * A transcript piece: raw bytes (a NUL, no newline rule) after its JSON
 * header line; only projects/<key>/<id>.jsonl paths and bounded pieces.
 */
static void
test_transcript(void **state)
{
	static const char *const bad_paths[] = {
		"", "projects/", "projects/k/", "projects/k/.jsonl",
		"projects/../x.jsonl", "projects/k/../x.jsonl",
		"projects/k/x.json", "/projects/k/x.jsonl",
		"projects/k/sub/x.jsonl", "projects/k/x y.jsonl",
		"other/k/x.jsonl", "projects/k/x.jsonl/",
		"projects/k/id/subagents/agent-.jsonl",
		"projects/k/id/subagents/agent-a/b.jsonl",
		"projects/k/id/subagents/agent-..jsonl",
		"projects/k/id/subagents/x.jsonl",
		"projects/k/id/subagents/agent-a.json",
		"projects/k/id/subagents/agent-a.meta.jsonl",
		"projects/k/id/tool-results/agent-a.jsonl",
		"projects/k/../subagents/agent-a.jsonl",
		"projects/k/id/subagents/agent-a.jsonl/",
	};
	static const char bytes[] = "{\"a\":1}\n\0{\"b\":2}\n";
	struct evbuffer		*b = *state;
	struct msg_transcript	 t, d;
	struct msg		 m;
	char			 json[256];
	size_t			 i;

	assert_true(msg_transcript_path_ok("projects/-tmp-w-x/"
	    "a62373cd-540d-4194-9ed2-ae9cb4b8bd3c.jsonl"));
	/* A subagent's transcript and description (the real CLI's paths). */
	assert_true(msg_transcript_path_ok("projects/-tmp-w-x/"
	    "a62373cd-540d-4194-9ed2-ae9cb4b8bd3c/subagents/"
	    "agent-aa0f1eaaaf81e8943.jsonl"));
	assert_true(msg_transcript_path_ok("projects/-tmp-w-x/"
	    "a62373cd-540d-4194-9ed2-ae9cb4b8bd3c/subagents/"
	    "agent-aa0f1eaaaf81e8943.meta.json"));
	assert_true(msg_transcript_whole("projects/k/id/subagents/"
	    "agent-a.meta.json"));
	assert_false(msg_transcript_whole("projects/k/id/subagents/"
	    "agent-a.jsonl"));
	/* Which conversation a file belongs to. */
	assert_true(msg_transcript_of("projects/k/id1.jsonl", "id1"));
	assert_true(msg_transcript_of("projects/k/id1/subagents/agent-a.jsonl",
	    "id1"));
	assert_false(msg_transcript_of("projects/k/id12.jsonl", "id1"));
	assert_false(msg_transcript_of("projects/k/id12/subagents/"
	    "agent-a.jsonl", "id1"));
	assert_false(msg_transcript_of("projects/k/id1.jsonl", ""));
	for (i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
		if (msg_transcript_path_ok(bad_paths[i]))
			print_error("path ok: %s\n", bad_paths[i]);
		assert_false(msg_transcript_path_ok(bad_paths[i]));
	}
	memset(&t, 0, sizeof t);
	t.path = "projects/k/id.jsonl";
	t.offset = 12345;
	t.data = bytes;
	t.len = sizeof bytes - 1;
	msg_transcript_compose(b, 9, &t);
	assert_int_equal(msg_get(b, &m), MSG_GET_OK);
	assert_int_equal(m.hdr.type, MSG_TRANSCRIPT);
	assert_int_equal(m.hdr.turn, 9);
	assert_int_equal(msg_transcript_decode(&m, &d), 0);
	assert_string_equal(d.path, t.path);
	assert_int_equal(d.offset, 12345);
	assert_int_equal(d.len, sizeof bytes - 1);
	assert_memory_equal(d.data, bytes, sizeof bytes - 1);
	msg_transcript_clear(&d);
	msg_clear(&m);

	/* No header line, a bad path, a piece past the file bound. */
	forge(b, &m, MSG_TRANSCRIPT, "{\"path\":\"projects/k/i.jsonl\","
	    "\"offset\":0}");
	assert_int_equal(msg_transcript_decode(&m, &d), -1);
	msg_clear(&m);
	forge(b, &m, MSG_TRANSCRIPT, "{\"path\":\"projects/../i.jsonl\","
	    "\"offset\":0}\nx");
	assert_int_equal(msg_transcript_decode(&m, &d), -1);
	msg_clear(&m);
	snprintf(json, sizeof json, "{\"path\":\"projects/k/i.jsonl\","
	    "\"offset\":%u}\nx", TRANSCRIPT_FILE_MAX);
	forge(b, &m, MSG_TRANSCRIPT, json);
	assert_int_equal(msg_transcript_decode(&m, &d), -1);
	msg_clear(&m);
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
		T(test_typed_round_trips),
		T(test_turn_end),
		T(test_typed_malformed),
		T(test_transcript),
		T(test_policy),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
