/*
 * supervisor/request.c: the request parser the daemon and the fuzzer share.
 * A good line gives its id and op; a line that is not valid UTF-8, holds a
 * raw control character (NUL included) or an escaped NUL in a string, is
 * not an object, or lacks a good id or op is bad_request, and the error
 * echoes the id only when it is good; the unknown_op error stays valid
 * UTF-8 even when the op is cut in a character.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <cJSON.h>

#include "common/json.h"
#include "common/proto.h"
#include "supervisor/request.h"

static int
parse(const char *line, size_t len, struct request *rq,
    struct request_error *err)
{
	return request_parse(line, len, rq, err);
}

static void
assert_bad(const char *line, size_t len, const char *id)
{
	struct request		rq;
	struct request_error	err;
	int			rc = parse(line, len, &rq, &err);

	if (rc != -1)
		print_error("parsed: %.*s\n", (int)len, line);
	assert_int_equal(rc, -1);
	assert_string_equal(err.code, ERR_BAD_REQUEST);
	if (id == NULL)
		assert_null(err.id);
	else
		assert_string_equal(err.id, id);
	assert_true(json_utf8_valid(err.message, strlen(err.message)));
	request_clear(&rq);
}

#define BAD(s, id)	assert_bad(s, sizeof(s) - 1, id)

static void
test_good(void **state)
{
	static const char line[] = "{\"id\":\"r\\u00e9 1\",\"op\":\"hello\","
	    "\"x\":\"caf\xc3\xa9\\n\\t\"}\r";
	static const char ws[] = " {\t\"id\" : \"a\",\r\"op\":\"x\"} ";
	struct request		rq;
	struct request_error	err;

	(void)state;
	assert_int_equal(parse(line, sizeof line - 1, &rq, &err), 0);
	assert_string_equal(rq.id, "r\xc3\xa9 1");
	assert_string_equal(rq.op, "hello");
	assert_non_null(rq.json);
	request_clear(&rq);
	assert_null(rq.json);
	/* White space between tokens is JSON's. */
	assert_int_equal(parse(ws, sizeof ws - 1, &rq, &err), 0);
	request_clear(&rq);
}

static void
test_invalid_utf8(void **state)
{
	(void)state;
	/* Today's bug: such an id came back verbatim. */
	BAD("{\"id\":\"\xff\xfe\",\"op\":\"hello\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"hello\",\"p\":\"\xc0\xaf\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"hello\",\"p\":\"\xed\xa0\x80\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"he\xe2\x82\"}", NULL);
}

static void
test_control_bytes(void **state)
{
	(void)state;
	/* A raw NUL in a string: cJSON would cut "a" there. */
	BAD("{\"id\":\"a\",\"op\":\"x\",\"p\":\"a\0b\"}", NULL);
	BAD("{\"id\":\"a\0\",\"op\":\"x\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"x\",\"p\":\"a\tb\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"x\",\"p\":\"a\rb\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"x\",\"p\":\"\x1b[2J\"}", NULL);
	BAD("{\"id\":\"a\",\"op\":\"x\"}\0", NULL);
	BAD("{\"id\":\"a\",\x01\"op\":\"x\"}", NULL);
	/* An escaped NUL would cut it too. */
	BAD("{\"id\":\"a\",\"op\":\"x\",\"p\":\"a\\u0000b\"}", NULL);
	BAD("{\"id\":\"a\\u0000b\",\"op\":\"x\"}", NULL);
}

static void
test_escapes_kept(void **state)
{
	struct request		rq;
	struct request_error	err;
	static const char line[] = "{\"id\":\"a\",\"op\":\"x\",\"p\":"
	    "\"\\\\u0000 \\\"\\\\\"}";

	(void)state;
	/* An escaped backslash before u0000 is text, not a NUL. */
	assert_int_equal(parse(line, sizeof line - 1, &rq, &err), 0);
	assert_string_equal(cJSON_GetObjectItem(rq.json, "p")->valuestring,
	    "\\u0000 \"\\");
	request_clear(&rq);
}

static void
test_shape(void **state)
{
	char	long_id[PROTO_ID_MAX + 32];
	int	n;

	(void)state;
	BAD("[1,2]", NULL);
	BAD("\"id\"", NULL);
	BAD("{\"id\":\"a\"", NULL);
	BAD("{\"op\":\"hello\"}", NULL);
	BAD("{\"id\":7,\"op\":\"hello\"}", NULL);
	BAD("{\"id\":\"a\"}", "a");
	BAD("{\"id\":\"a\",\"op\":1}", "a");
	n = snprintf(long_id, sizeof long_id, "{\"id\":\"%0*d\",\"op\":\"x\"}",
	    PROTO_ID_MAX + 1, 0);
	assert_bad(long_id, (size_t)n, NULL);
}

static void
test_unknown_op(void **state)
{
	struct request		rq;
	struct request_error	err;
	char			line[256];
	int			n;

	(void)state;
	/* An op of 63 bytes then a 2-byte character: the cut splits it. */
	n = snprintf(line, sizeof line, "{\"id\":\"r\",\"op\":\"%0*d\xc3\xa9\"}",
	    63, 0);
	assert_int_equal(parse(line, (size_t)n, &rq, &err), 0);
	request_unknown_op(&rq, &err);
	assert_string_equal(err.code, ERR_UNKNOWN_OP);
	assert_string_equal(err.id, "r");
	assert_true(json_utf8_valid(err.message, strlen(err.message)));
	request_clear(&rq);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_control_bytes),
		cmocka_unit_test(test_escapes_kept),
		cmocka_unit_test(test_shape),
		cmocka_unit_test(test_unknown_op),
	};

	json_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
