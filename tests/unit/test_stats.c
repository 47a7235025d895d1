/* SessionStats: accounting, merging, bounds and the JSON of DESIGN.md 5. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cJSON.h>

#include "common/stats.h"
#include "common/xmalloc.h"

#define COST_EPSILON	1e-12

/* A turn with a bit of everything. */
static void
sample(struct stats *s)
{
	struct stats_tool	*t;

	stats_init(s);
	s->turns = 1;
	s->tokens.input = 324;
	s->tokens.output = 128;
	s->tokens.cache_read = 2600;
	s->tokens.cache_write = 40;
	s->cost_usd = 0.00637;
	s->duration_ms.total = 1000;
	s->duration_ms.thinking = 100;
	s->duration_ms.tool = 300;
	s->duration_ms.generation = 200;
	s->duration_ms.other = 400;
	s->duration_ms.ttft = 150;
	s->tool_calls = 3;
	t = stats_tool(s, "Bash");
	t->calls = 2;
	t->errors = 1;
	t->duration_ms = 250;
	t = stats_tool(s, "Write");
	t->calls = 1;
	t->duration_ms = 50;
	stats_file(s, "/w/a.c");
	s->permission_denials = 1;
	s->danger_blocks = 2;
	s->errors = 1;
}

static char *
json_of(const struct stats *s)
{
	cJSON	*o = stats_to_json(s);
	char	*str = cJSON_PrintUnformatted(o);

	cJSON_Delete(o);
	return str;
}

static void
test_to_json_shape(void **state)
{
	static const char *keys[] = {
		"turns", "tokens", "cost_usd", "duration_ms", "tool_calls",
		"tools", "files", "permission_denials", "danger_blocks",
		"errors"
	};
	static const char *tok_keys[] = {
		"input", "output", "cache_read", "cache_write", "total"
	};
	static const char *dur_keys[] = {
		"total", "thinking", "tool", "generation", "other", "ttft"
	};
	static const char *tool_keys[] = {
		"name", "calls", "errors", "duration_ms"
	};
	struct stats	 s;
	cJSON		*o, *v, *item;
	size_t		 i;

	sample(&s);
	o = stats_to_json(&s);
	/* Exactly these keys, in this order. */
	i = 0;
	cJSON_ArrayForEach(item, o) {
		assert_true(i < sizeof keys / sizeof keys[0]);
		assert_string_equal(item->string, keys[i++]);
	}
	assert_int_equal(i, sizeof keys / sizeof keys[0]);
	i = 0;
	cJSON_ArrayForEach(item, cJSON_GetObjectItem(o, "tokens"))
		assert_string_equal(item->string, tok_keys[i++]);
	assert_int_equal(i, sizeof tok_keys / sizeof tok_keys[0]);
	i = 0;
	cJSON_ArrayForEach(item, cJSON_GetObjectItem(o, "duration_ms"))
		assert_string_equal(item->string, dur_keys[i++]);
	assert_int_equal(i, sizeof dur_keys / sizeof dur_keys[0]);
	i = 0;
	cJSON_ArrayForEach(item, cJSON_GetArrayItem(cJSON_GetObjectItem(o,
	    "tools"), 0))
		assert_string_equal(item->string, tool_keys[i++]);
	assert_int_equal(i, sizeof tool_keys / sizeof tool_keys[0]);

	v = cJSON_GetObjectItem(o, "tokens");
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(v, "total")),
	    324 + 128 + 2600 + 40);
	assert_true(fabs(cJSON_GetNumberValue(cJSON_GetObjectItem(o,
	    "cost_usd")) - 0.00637) < COST_EPSILON);
	v = cJSON_GetObjectItem(o, "tools");
	assert_int_equal(cJSON_GetArraySize(v), 2);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(v, 0), "name")), "Bash");
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(
	    cJSON_GetArrayItem(v, 0), "errors")), 1);
	v = cJSON_GetObjectItem(o, "files");
	assert_int_equal(cJSON_GetArraySize(v), 1);
	assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(v, 0)),
	    "/w/a.c");
	cJSON_Delete(o);

	/* Empty stats: zeros and empty arrays, not missing keys. */
	stats_clear(&s);
	o = stats_to_json(&s);
	assert_true(cJSON_IsArray(cJSON_GetObjectItem(o, "tools")));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "files")),
	    0);
	assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "turns")),
	    0);
	cJSON_Delete(o);
}

static void
test_json_round_trip(void **state)
{
	struct stats	 s, back;
	cJSON		*o;
	char		*a, *b;

	sample(&s);
	stats_init(&back);
	o = stats_to_json(&s);
	assert_int_equal(stats_from_json(&back, o), 0);
	cJSON_Delete(o);
	a = json_of(&s);
	b = json_of(&back);
	assert_string_equal(a, b);
	assert_int_equal(back.tokens.cache_write, 40);
	assert_int_equal(back.duration_ms.ttft, 150);
	assert_int_equal(back.danger_blocks, 2);
	assert_string_equal(back.files[0], "/w/a.c");
	assert_ptr_not_equal(back.files[0], s.files[0]);
	free(a);
	free(b);

	/* Large counters survive (as far as a double carries them). */
	stats_clear(&s);
	s.tokens.input = (uint64_t)1 << 62;
	o = stats_to_json(&s);
	assert_int_equal(stats_from_json(&back, o), 0);
	cJSON_Delete(o);
	assert_int_equal(back.tokens.input, (uint64_t)1 << 62);

	/* Reading into used stats replaces them (and leaks nothing). */
	o = cJSON_Parse("{\"turns\":2,\"files\":[\"/x\"],\"extra\":{\"a\":1}}");
	assert_int_equal(stats_from_json(&back, o), 0);
	cJSON_Delete(o);
	assert_int_equal(back.turns, 2);
	assert_int_equal(back.nfiles, 1);
	assert_string_equal(back.files[0], "/x");
	assert_int_equal(back.ntools, 0);
	assert_int_equal(back.tokens.input, 0);	/* absent: zero */
	stats_clear(&back);
	stats_clear(&s);
}

static void
test_from_json_bad_shapes(void **state)
{
	static const char *bad[] = {
		"[]",
		"42",
		"{\"turns\":\"1\"}",
		"{\"turns\":-1}",
		"{\"turns\":1.5}",
		"{\"turns\":1e300}",
		"{\"turns\":18446744073709551616}",
		"{\"cost_usd\":\"0.1\"}",
		"{\"cost_usd\":-0.1}",
		"{\"tokens\":[]}",
		"{\"tokens\":{\"input\":true}}",
		"{\"duration_ms\":{\"ttft\":null}}",
		"{\"tools\":{}}",
		"{\"tools\":[1]}",
		"{\"tools\":[{\"calls\":1}]}",
		"{\"tools\":[{\"name\":\"\"}]}",
		"{\"tools\":[{\"name\":\"Bash\",\"errors\":-2}]}",
		"{\"files\":\"/x\"}",
		"{\"files\":[\"/x\",3]}",
		"{\"errors\":{}}",
	};
	struct stats	 s;
	cJSON		*o;
	size_t		 i;

	stats_init(&s);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		o = cJSON_Parse(bad[i]);
		assert_non_null(o);
		if (stats_from_json(&s, o) != -1)
			fail_msg("accepted %s", bad[i]);
		/* A failed read leaves nothing behind. */
		assert_int_equal(s.nfiles, 0);
		assert_int_equal(s.ntools, 0);
		cJSON_Delete(o);
	}
	assert_int_equal(stats_from_json(&s, NULL), -1);
}

static void
test_add(void **state)
{
	struct stats		 sess, turn;
	struct stats_tool	*t;

	stats_init(&sess);
	sample(&turn);
	stats_add(&sess, &turn);
	stats_clear(&turn);

	/* A second turn: other tools, a path seen before and a new one. */
	stats_init(&turn);
	turn.turns = 1;
	turn.tokens.input = 152;
	turn.cost_usd = 0.00226;
	turn.duration_ms.total = 500;
	turn.duration_ms.other = 500;
	turn.duration_ms.ttft = 40;
	turn.tool_calls = 2;
	stats_tool(&turn, "Bash")->calls = 1;
	stats_tool(&turn, "Read")->calls = 1;
	stats_file(&turn, "/w/a.c");
	stats_file(&turn, "/w/b.c");
	turn.errors = 0;
	stats_add(&sess, &turn);

	assert_int_equal(sess.turns, 2);
	assert_int_equal(sess.tokens.input, 324 + 152);
	assert_int_equal(stats_tokens_total(&sess),
	    324 + 128 + 2600 + 40 + 152);
	assert_true(fabs(sess.cost_usd - (0.00637 + 0.00226)) < COST_EPSILON);
	assert_int_equal(sess.duration_ms.total, 1500);
	assert_int_equal(sess.duration_ms.other, 900);
	assert_int_equal(sess.duration_ms.ttft, 40);	/* the last turn's */
	assert_int_equal(sess.tool_calls, 5);
	assert_int_equal(sess.ntools, 3);
	t = stats_tool(&sess, "Bash");
	assert_int_equal(t->calls, 3);
	assert_int_equal(t->errors, 1);
	assert_int_equal(t->duration_ms, 250);
	assert_int_equal(stats_tool(&sess, "Read")->calls, 1);
	assert_int_equal(sess.nfiles, 2);
	assert_string_equal(sess.files[1], "/w/b.c");
	assert_int_equal(sess.permission_denials, 1);
	assert_int_equal(sess.errors, 1);

	/* Adding no turn keeps the last ttft. */
	stats_clear(&turn);
	turn.duration_ms.ttft = 999;
	stats_add(&sess, &turn);
	assert_int_equal(sess.duration_ms.ttft, 40);

	/* Copy is deep and replaces what was there. */
	stats_copy(&turn, &sess);
	assert_int_equal(turn.nfiles, 2);
	assert_ptr_not_equal(turn.files[0], sess.files[0]);
	assert_string_equal(turn.files[0], sess.files[0]);
	stats_copy(&turn, &sess);
	stats_copy(&turn, &turn);
	assert_int_equal(turn.turns, 2);
	stats_clear(&turn);
	stats_clear(&sess);
}

static void
test_bounds(void **state)
{
	struct stats		 s, sess;
	struct stats_tool	*t;
	char			 name[STATS_TOOL_NAME_MAX * 2];
	char			*path;
	size_t			 i;

	stats_init(&s);
	/* Tool names: the last slot is "(other)". */
	for (i = 0; i < STATS_MAX_TOOLS + 10; i++) {
		snprintf(name, sizeof name, "mcp__tool_%zu", i);
		stats_tool(&s, name)->calls++;
	}
	assert_int_equal(s.ntools, STATS_MAX_TOOLS);
	t = stats_tool(&s, "(other)");
	assert_ptr_equal(t, &s.tools[STATS_MAX_TOOLS - 1]);
	assert_int_equal(t->calls, 11);
	assert_int_equal(stats_tool(&s, "mcp__tool_0")->calls, 1);

	/* No name: a named slot all the same (the JSON needs one). */
	stats_clear(&s);
	stats_tool(&s, "")->calls++;
	stats_tool(&s, NULL)->calls++;
	assert_int_equal(s.ntools, 1);
	assert_string_equal(s.tools[0].name, "(unknown)");
	assert_int_equal(s.tools[0].calls, 2);

	/* A name longer than the slot is cut and still found. */
	stats_clear(&s);
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	stats_tool(&s, name)->calls++;
	stats_tool(&s, name)->calls++;
	assert_int_equal(s.ntools, 1);
	assert_int_equal(strlen(s.tools[0].name), STATS_TOOL_NAME_MAX - 1);
	assert_int_equal(s.tools[0].calls, 2);

	/* Files: de-duplicated, bounded; a path too long is skipped. */
	for (i = 0; i < STATS_MAX_FILES + 5; i++) {
		xasprintf(&path, "/w/f%zu", i % (STATS_MAX_FILES + 5));
		stats_file(&s, path);
		stats_file(&s, path);
		free(path);
	}
	assert_int_equal(s.nfiles, STATS_MAX_FILES);
	assert_string_equal(s.files[0], "/w/f0");
	path = xmalloc(STATS_PATH_MAX + 1);
	memset(path, 'p', STATS_PATH_MAX);
	path[STATS_PATH_MAX] = '\0';
	stats_clear(&s);
	stats_file(&s, path);
	stats_file(&s, "");
	stats_file(&s, NULL);
	assert_int_equal(s.nfiles, 0);
	free(path);

	/* Sessions merge within the same bounds. */
	stats_init(&sess);
	for (i = 0; i < 3; i++) {
		size_t	j;

		stats_clear(&s);
		for (j = 0; j < STATS_MAX_FILES; j++) {
			xasprintf(&path, "/w/%zu/%zu", i, j);
			stats_file(&s, path);
			free(path);
		}
		stats_add(&sess, &s);
	}
	assert_int_equal(sess.nfiles, STATS_MAX_FILES);
	stats_clear(&s);
	stats_clear(&sess);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_to_json_shape),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_from_json_bad_shapes),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
