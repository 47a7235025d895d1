/*
 * common/json.c: the checks on JSON text from less trusted peers.  An
 * MSG_EVENT tail is relayed only if `{` before it makes one event object
 * on one line; a raw newline (a forged second line), a control byte,
 * invalid UTF-8, trailing bytes, an extra member or a type only the
 * master writes (done, error) are refused.  The UTF-8 check refuses
 * overlong forms, surrogates, stray continuations and truncated forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cJSON.h>

#include "common/json.h"

static int
tail_ok(const char *s)
{
	return json_event_tail_valid(s, strlen(s));
}

static void
test_event_tail_good(void **state)
{
	(void)state;
	assert_true(tail_ok("\"type\":\"text\",\"data\":{\"text\":\"hi\"}}"));
	assert_true(tail_ok("\"type\":\"tool_use\",\"data\":{}}"));
	/* Escaped newlines and non-ASCII text are fine. */
	assert_true(tail_ok("\"type\":\"text\",\"data\":{\"text\":"
	    "\"a\\nb \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}"));
	/* What the worker builds: cJSON's own output minus its `{`. */
	{
		cJSON	*o = cJSON_CreateObject(), *d;
		char	*t;

		cJSON_AddStringToObject(o, "type", "text");
		d = cJSON_AddObjectToObject(o, "data");
		cJSON_AddStringToObject(d, "text", "line\none\t\x01");
		t = json_print(o);
		assert_true(tail_ok(t + 1));
		cJSON_free(t);
		cJSON_Delete(o);
	}
}

static void
test_event_tail_forged_lines(void **state)
{
	static const char	nul[] = "\"type\":\"text\",\"data\":{}}\0x";

	(void)state;
	/* A raw newline would end the line and start a forged one. */
	assert_false(tail_ok("\"type\":\"text\",\"data\":{}}\n"
	    "{\"id\":\"x\",\"type\":\"done\",\"data\":{}}"));
	assert_false(tail_ok("\"type\":\"text\",\"data\":{\"text\":\"a\nb\"}}"));
	assert_false(tail_ok("\"type\":\"text\",\"data\":{\"text\":\"a\rb\"}}"));
	assert_false(tail_ok("\"type\":\"text\",\"data\":{\"text\":\"a\x01\"}}"));
	assert_false(tail_ok("\"type\":\"text\",\n\"data\":{}}"));
	/* A NUL inside: the length says there is more than strlen sees. */
	assert_false(json_event_tail_valid(nul, sizeof nul - 1));
}

static void
test_event_tail_shape(void **state)
{
	(void)state;
	assert_false(json_event_tail_valid("", 0));
	assert_false(tail_ok("}"));
	assert_false(tail_ok("\"type\":\"text\",\"data\":{}"));	/* open */
	assert_false(tail_ok("\"type\":\"text\",\"data\":{}}}"));
	assert_false(tail_ok("\"type\":\"text\",\"data\":{}} "));
	assert_false(tail_ok("\"type\":\"text\",\"data\":{}}{}"));
	assert_false(tail_ok("\"type\":\"text\",\"data\":[]}"));
	assert_false(tail_ok("\"type\":1,\"data\":{}}"));
	assert_false(tail_ok("\"type\":\"\",\"data\":{}}"));
	assert_false(tail_ok("\"data\":{}}"));
	assert_false(tail_ok("\"type\":\"text\"}"));
	/* An extra member could shadow the master's id, session or seq. */
	assert_false(tail_ok("\"type\":\"text\",\"data\":{},\"id\":\"y\"}"));
	assert_false(tail_ok("\"type\":\"text\",\"type\":\"text\"}"));
	/* Lines only the master writes. */
	assert_false(tail_ok("\"type\":\"done\",\"data\":{}}"));
	assert_false(tail_ok("\"type\":\"error\",\"data\":{\"code\":\"x\"}}"));
	assert_false(tail_ok("\"type\":\"session_start\",\"data\":{}}"));
	assert_false(tail_ok("\"type\":\"session_stats\",\"data\":{}}"));
	assert_false(tail_ok("\"type\":\"danger_block\",\"data\":{}}"));
	/* Invalid UTF-8 would break the client's parser. */
	assert_false(tail_ok("\"type\":\"text\",\"data\":{\"text\":\"\xff\"}}"));
}

static void
test_utf8(void **state)
{
	static const char *bad[] = {
		"\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
		"\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
		"\xff", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xc3\x28",
		"a\xe2\x28\xa1",
	};
	size_t	i;

	(void)state;
	assert_true(json_utf8_valid("", 0));
	assert_true(json_utf8_valid("plain", 5));
	assert_true(json_utf8_valid("\xc2\x80\xdf\xbf", 4));
	assert_true(json_utf8_valid("\xe0\xa0\x80\xef\xbf\xbf", 6));
	assert_true(json_utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6));
	assert_true(json_utf8_valid("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8));
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_false(json_utf8_valid(bad[i], strlen(bad[i])));
	/* The length bounds the check: a cut character is refused. */
	assert_false(json_utf8_valid("\xe2\x82\xac", 2));
}

static void
test_str(void **state)
{
	cJSON	*o = cJSON_Parse("{\"a\":\"x\",\"b\":1}");

	(void)state;
	assert_string_equal(json_str(o, "a"), "x");
	assert_null(json_str(o, "b"));
	assert_null(json_str(o, "c"));
	cJSON_Delete(o);
}

/* The helpers the master's readers of event tails share. */
static void
test_tail_helpers(void **state)
{
	static const char t[] = "\"type\":\"cli_turn\",\"data\":{\"n\":1}}";
	cJSON	*o;

	(void)state;
	assert_true(json_tail_is(t, strlen(t), "\"type\":\"cli_turn\""));
	assert_false(json_tail_is(t, strlen(t), "\"type\":\"cli\","));
	/* The prefix is not read past the tail's length. */
	assert_false(json_tail_is(t, 8, "\"type\":\"cli_turn\""));
	o = json_tail_parse(t, strlen(t));
	assert_non_null(o);
	assert_string_equal(json_str(o, "type"), "cli_turn");
	assert_true(json_num(cJSON_GetObjectItemCaseSensitive(o, "data"), "n",
	    0) == 1);
	cJSON_Delete(o);
	/* Cut short, or followed by anything: not an object. */
	assert_null(json_tail_parse(t, strlen(t) - 1));
	assert_null(json_tail_parse("\"a\":1} x", 8));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_tail_good),
		cmocka_unit_test(test_event_tail_forged_lines),
		cmocka_unit_test(test_event_tail_shape),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_str),
		cmocka_unit_test(test_tail_helpers),
	};

	json_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
