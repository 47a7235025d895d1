/*
 * supervisor/store.c with its SQLite backend, in a temporary state_dir:
 * the transcript pieces' order check (store_transcript_follows) that both
 * backends run inside a piece's transaction.
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

#include "common/util.h"
#include "supervisor/store.h"

#define UID	1000
#define NAME	"s1"
#define PATH	"projects/-w/0b6c3f6e-0000-4000-8000-000000000001.jsonl"
#define FENCE	1	/* one host: every lease is this one */

static char	dir[] = "/tmp/hp-test-store.XXXXXX";

static int
setup(void **state)
{
	struct store_params	p = { .dir = dir, .host_id = "test" };

	if (mkdtemp(dir) == NULL)
		return -1;
	return store_open(&p);
}

static int
teardown(void **state)
{
	store_close();
	return util_rmtree(dir);
}

struct loaded {
	char	 buf[64];
	size_t	 len;
};

static int
load_piece(void *arg, const char *path, uint64_t offset, const void *data,
    size_t len)
{
	struct loaded	*l = arg;

	assert_string_equal(path, PATH);
	assert_int_equal(offset, l->len);
	assert_true(l->len + len <= sizeof l->buf);
	memcpy(l->buf + l->len, data, len);
	l->len += len;
	return 0;
}

/* Pieces in step are kept; one out of step is refused, nothing written. */
static void
test_transcript_in_step(void **state)
{
	struct loaded	l = { .len = 0 };

	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 0, "abc",
	    3), 0);
	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 3, "de",
	    2), 0);
	assert_int_equal(store_transcript_size(UID, NAME, PATH), 5);
	/* A gap, and a piece already stored: both out of step. */
	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 9, "x",
	    1), 1);
	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 3, "de",
	    2), 1);
	assert_int_equal(store_transcript_size(UID, NAME, PATH), 5);
	assert_int_equal(store_transcript_load(UID, NAME, load_piece, &l), 0);
	assert_int_equal(l.len, 5);
	assert_memory_equal(l.buf, "abcde", 5);
}

/* Offset 0 starts the file anew, whatever was stored. */
static void
test_transcript_restart(void **state)
{
	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 0, "abc",
	    3), 0);
	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 0, "z", 1),
	    0);
	assert_int_equal(store_transcript_size(UID, NAME, PATH), 1);
	/* An empty piece in step changes nothing. */
	assert_int_equal(store_transcript_append(UID, NAME, FENCE, PATH, 1, "", 0),
	    0);
	assert_int_equal(store_transcript_size(UID, NAME, PATH), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transcript_in_step),
		cmocka_unit_test(test_transcript_restart),
	};

	/* One store for the group: the cases use the file in turn. */
	return cmocka_run_group_tests(tests, setup, teardown);
}
