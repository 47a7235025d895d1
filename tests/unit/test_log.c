/*
 * common/log.c with a log_file: text lines dated, JSON lines that parse
 * whatever the message holds (quotes, newlines, control and invalid UTF-8
 * bytes), the worker's session split from its role, levels filtered, and
 * log_reopen() following a file moved away.  Files live in a mktemp dir.
 */
#include <errno.h>
#include <limits.h>
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

#include "common/log.h"

#define TEST_DIR_MAX	1024
#define LOG_READ_MAX	65536

static char	test_dir[TEST_DIR_MAX];
static char	test_log[PATH_MAX];
static char	test_old[PATH_MAX];

static int
setup(void **state)
{
	const char	*tmp = getenv("TMPDIR");

	if ((size_t)snprintf(test_dir, sizeof test_dir, "%s/hp-test-log.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp") >= sizeof test_dir ||
	    mkdtemp(test_dir) == NULL)
		return -1;
	snprintf(test_log, sizeof test_log, "%s/hotplexd.log", test_dir);
	snprintf(test_old, sizeof test_old, "%s/hotplexd.log.1", test_dir);
	return 0;
}

static int
teardown(void **state)
{
	char	err[256];

	/* Back to stderr: the file can go. */
	log_open(NULL, 1, 0, err, sizeof err);
	log_setjson(0);
	unlink(test_log);
	unlink(test_old);
	return rmdir(test_dir);
}

/* The file's lines, NUL-separated in a buffer the caller frees. */
static char *
slurp(const char *path, size_t *nlines)
{
	FILE	*f = fopen(path, "r");
	char	*buf = calloc(1, LOG_READ_MAX + 1), *p;
	size_t	 len;

	assert_non_null(f);
	assert_non_null(buf);
	len = fread(buf, 1, LOG_READ_MAX, f);
	fclose(f);
	*nlines = 0;
	for (p = buf; p < buf + len; p++)
		if (*p == '\n') {
			*p = '\0';
			(*nlines)++;
		}
	return buf;
}

static void
test_text_lines(void **state)
{
	char	 err[256], *buf;
	size_t	 n;

	log_init("master", 1, LOG_LVL_INFO);
	assert_int_equal(log_open(test_log, 1, 0, err, sizeof err), 0);
	log_info("hello %d", 42);
	log_debug("not at info");
	buf = slurp(test_log, &n);
	assert_int_equal(n, 1);
	/* "YYYY-MM-DD HH:MM:SS.mmm master: hello 42" */
	assert_true(buf[4] == '-' && buf[7] == '-' && buf[10] == ' ');
	assert_string_equal(buf + 24, "master: hello 42");
	free(buf);
	assert_int_equal(unlink(test_log), 0);
}

static void
test_json_lines(void **state)
{
	char		 err[256], *buf, *line;
	size_t		 n, i;
	cJSON		*o;
	const char	*msg = "quote \" backslash \\ newline \n tab \t "
			    "bad \xff\xfe utf-8 \xc3\xa9 end";

	log_init("worker", 1, LOG_LVL_DEBUG);
	log_setrole("worker[s1]");
	log_setjson(1);
	assert_int_equal(log_open(test_log, 1, 0, err, sizeof err), 0);
	log_warnx("%s", msg);
	log_setrole("master");
	log_debug("plain");
	buf = slurp(test_log, &n);
	assert_int_equal(n, 2);
	line = buf;
	for (i = 0; i < n; i++, line += strlen(line) + 1) {
		o = cJSON_Parse(line);
		if (o == NULL)
			fail_msg("not JSON: %s", line);
		assert_true(cJSON_IsString(cJSON_GetObjectItem(o, "time")));
		assert_true(cJSON_IsString(cJSON_GetObjectItem(o, "message")));
		if (i == 0) {
			assert_string_equal(cJSON_GetObjectItem(o,
			    "level")->valuestring, "warn");
			assert_string_equal(cJSON_GetObjectItem(o,
			    "process")->valuestring, "worker");
			assert_string_equal(cJSON_GetObjectItem(o,
			    "session")->valuestring, "s1");
			/* Kept but for the invalid bytes, each now a '?'. */
			assert_string_equal(cJSON_GetObjectItem(o,
			    "message")->valuestring, "quote \" backslash \\ "
			    "newline \n tab \t bad ?? utf-8 \xc3\xa9 end");
		} else {
			assert_string_equal(cJSON_GetObjectItem(o,
			    "process")->valuestring, "master");
			assert_null(cJSON_GetObjectItem(o, "session"));
			assert_string_equal(cJSON_GetObjectItem(o,
			    "level")->valuestring, "debug");
		}
		cJSON_Delete(o);
	}
	free(buf);
	log_setjson(0);
	assert_int_equal(unlink(test_log), 0);
}

static void
test_reopen(void **state)
{
	char	 err[256], *buf;
	size_t	 n;

	log_init("master", 1, LOG_LVL_INFO);
	assert_int_equal(log_open(test_log, 1, 0, err, sizeof err), 0);
	log_info("before");
	assert_int_equal(rename(test_log, test_old), 0);
	log_info("still the old file");
	assert_int_equal(log_reopen(), 0);
	log_info("after");
	buf = slurp(test_old, &n);
	assert_int_equal(n, 2);
	free(buf);
	buf = slurp(test_log, &n);
	assert_int_equal(n, 1);
	assert_non_null(strstr(buf, "master: after"));
	free(buf);
	/* A file that cannot be opened is refused, and said why. */
	assert_int_equal(log_open("/nonexistent/dir/x.log", 1, 0, err,
	    sizeof err), -1);
	assert_non_null(strstr(err, "/nonexistent/dir/x.log"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_lines),
		cmocka_unit_test(test_json_lines),
		cmocka_unit_test(test_reopen),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
