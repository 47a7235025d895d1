/*
 * common/line.c: NDJSON framing over an evbuffer.  Lines split across
 * appends, several per append, CRLF, empty lines, the cap exactly, and an
 * over-long line that must be discarded as it arrives (memory bounded),
 * reported once as LINE_OVERFLOW then as LINE_DROPPED with its size,
 * with the next line intact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "common/line.h"
#include "common/xmalloc.h"

#define EV_MAX		64		/* events recorded per test */
#define SMALL_MAX	16		/* a cap small enough to hit */
#define HUGE_MAX	(1024 * 1024)	/* max_request_bytes default */
#define HUGE_CHUNK	(64 * 1024)
#define HUGE_SIZE	(100 * 1024 * 1024)
#define TRICKLE_SIZE	1000

struct ev {
	enum line_status st;
	char		*line;		/* owned; LINE_OK only */
	size_t		 len;
};

struct rec {
	struct line_reader r;
	struct evbuffer	*buf;
	struct ev	 ev[EV_MAX];
	size_t		 n;
	size_t		 peak;		/* most bytes the evbuffer held */
};

static int
rec_setup(void **state)
{
	struct rec	*rc = xcalloc(1, sizeof *rc);

	if ((rc->buf = evbuffer_new()) == NULL)
		return -1;
	line_init(&rc->r, SMALL_MAX);
	*state = rc;
	return 0;
}

static int
rec_teardown(void **state)
{
	struct rec	*rc = *state;
	size_t		 i;

	for (i = 0; i < rc->n; i++)
		free(rc->ev[i].line);
	evbuffer_free(rc->buf);
	free(rc);
	return 0;
}

/* Appends bytes, then takes every event the reader has, as a caller does. */
static size_t
rec_feed(struct rec *rc, const void *p, size_t len)
{
	enum line_status st;
	char		*line;
	size_t		 n, before = rc->n;

	assert_int_equal(evbuffer_add(rc->buf, p, len), 0);
	if (evbuffer_get_length(rc->buf) > rc->peak)
		rc->peak = evbuffer_get_length(rc->buf);
	while ((st = line_next(&rc->r, rc->buf, &line, &n)) != LINE_NONE) {
		assert_true(rc->n < EV_MAX);
		if (st == LINE_OK) {
			assert_non_null(line);
			assert_int_equal(line[n], '\0');
		} else
			assert_null(line);
		rc->ev[rc->n].st = st;
		rc->ev[rc->n].line = line;
		rc->ev[rc->n].len = n;
		rc->n++;
	}
	assert_null(line);
	return rc->n - before;
}

static size_t
rec_feed_str(struct rec *rc, const char *s)
{
	return rec_feed(rc, s, strlen(s));
}

static void
assert_ok(const struct rec *rc, size_t i, const char *want, size_t len)
{
	assert_true(i < rc->n);
	assert_int_equal(rc->ev[i].st, LINE_OK);
	assert_int_equal(rc->ev[i].len, len);
	assert_memory_equal(rc->ev[i].line, want, len);
}

static void
assert_ok_str(const struct rec *rc, size_t i, const char *want)
{
	assert_ok(rc, i, want, strlen(want));
}

static void
assert_st(const struct rec *rc, size_t i, enum line_status st, size_t len)
{
	assert_true(i < rc->n);
	assert_int_equal(rc->ev[i].st, st);
	assert_int_equal(rc->ev[i].len, len);
}

static void
test_empty_buffer(void **state)
{
	struct rec	*rc = *state;
	char		*line = (char *)rc;	/* must be reset */
	size_t		 len = 1;

	assert_int_equal(line_next(&rc->r, rc->buf, &line, &len), LINE_NONE);
	assert_null(line);
	assert_int_equal(len, 0);
}

static void
test_byte_by_byte(void **state)
{
	static const char in[] = "{\"a\":1}\n{\"b\":[2,3]}\n";
	struct rec	*rc = *state;
	size_t		 i;

	for (i = 0; i < sizeof in - 1; i++) {
		/* Nothing before each '\n', exactly one event at it. */
		assert_int_equal(rec_feed(rc, in + i, 1), in[i] == '\n');
	}
	assert_int_equal(rc->n, 2);
	assert_ok_str(rc, 0, "{\"a\":1}");
	assert_ok_str(rc, 1, "{\"b\":[2,3]}");
	assert_int_equal(evbuffer_get_length(rc->buf), 0);
}

static void
test_several_lines_in_one_append(void **state)
{
	struct rec	*rc = *state;

	assert_int_equal(rec_feed_str(rc, "a\nbb\n\nccc\ndd"), 4);
	assert_ok_str(rc, 0, "a");
	assert_ok_str(rc, 1, "bb");
	assert_ok_str(rc, 2, "");
	assert_ok_str(rc, 3, "ccc");
	assert_int_equal(evbuffer_get_length(rc->buf), 2);	/* "dd" */
	assert_int_equal(rec_feed_str(rc, "d\n"), 1);
	assert_ok_str(rc, 4, "ddd");
}

static void
test_crlf(void **state)
{
	struct rec	*rc = *state;

	assert_int_equal(rec_feed_str(rc, "x\r\n\r\na\rb\n\r\r\n"), 4);
	assert_ok_str(rc, 0, "x");
	assert_ok_str(rc, 1, "");
	assert_ok_str(rc, 2, "a\rb");		/* only a trailing CR goes */
	assert_ok_str(rc, 3, "\r");		/* and only one */
	/* CR and LF in separate appends. */
	assert_int_equal(rec_feed_str(rc, "yz\r"), 0);
	assert_int_equal(rec_feed_str(rc, "\n"), 1);
	assert_ok_str(rc, 4, "yz");
}

static void
test_empty_lines(void **state)
{
	struct rec	*rc = *state;

	assert_int_equal(rec_feed_str(rc, "\n\n\n"), 3);
	assert_ok_str(rc, 0, "");
	assert_ok_str(rc, 1, "");
	assert_ok_str(rc, 2, "");
}

static void
test_nul_bytes_kept(void **state)
{
	struct rec	*rc = *state;

	/* len, not strlen, is the length: a NUL inside stays. */
	assert_int_equal(rec_feed(rc, "a\0b\n", 4), 1);
	assert_ok(rc, 0, "a\0b", 3);
}

static void
test_exactly_max(void **state)
{
	struct rec	*rc = *state;
	char		 s[SMALL_MAX + 3];
	size_t		 i;

	memset(s, 'm', sizeof s);
	/* max bytes: one append with '\n'. */
	s[SMALL_MAX] = '\n';
	assert_int_equal(rec_feed(rc, s, SMALL_MAX + 1), 1);
	assert_ok(rc, 0, s, SMALL_MAX);
	/* max bytes with no '\n' yet: waiting, not overflowing. */
	assert_int_equal(rec_feed(rc, s, SMALL_MAX), 0);
	assert_int_equal(evbuffer_get_length(rc->buf), SMALL_MAX);
	assert_int_equal(rec_feed_str(rc, "\n"), 1);
	assert_ok(rc, 1, s, SMALL_MAX);
	/* Byte by byte. */
	for (i = 0; i < SMALL_MAX; i++)
		assert_int_equal(rec_feed(rc, "m", 1), 0);
	assert_int_equal(rec_feed_str(rc, "\n"), 1);
	assert_ok(rc, 2, s, SMALL_MAX);
	/* The cap counts a '\r' before the '\n'. */
	s[SMALL_MAX] = '\r';
	s[SMALL_MAX + 1] = '\n';
	assert_int_equal(rec_feed(rc, s, SMALL_MAX + 2), 1);
	assert_st(rc, 3, LINE_DROPPED, SMALL_MAX + 1);
	s[SMALL_MAX - 1] = '\r';
	s[SMALL_MAX] = '\n';
	assert_int_equal(rec_feed(rc, s, SMALL_MAX + 1), 1);
	assert_ok(rc, 4, s, SMALL_MAX - 1);
}

static void
test_max_plus_one(void **state)
{
	struct rec	*rc = *state;
	char		 s[SMALL_MAX + 2];
	size_t		 i;

	memset(s, 'p', sizeof s);
	/* Seen whole: dropped at once, no overflow first. */
	s[SMALL_MAX + 1] = '\n';
	assert_int_equal(rec_feed(rc, s, SMALL_MAX + 2), 1);
	assert_st(rc, 0, LINE_DROPPED, SMALL_MAX + 1);
	/* Seen without its '\n': overflow now, dropped at the '\n'. */
	assert_int_equal(rec_feed(rc, s, SMALL_MAX + 1), 1);
	assert_st(rc, 1, LINE_OVERFLOW, 0);
	assert_int_equal(evbuffer_get_length(rc->buf), 0);
	assert_int_equal(rec_feed_str(rc, "\n{\"next\":true}\n"), 2);
	assert_st(rc, 2, LINE_DROPPED, SMALL_MAX + 1);
	assert_ok_str(rc, 3, "{\"next\":true}");
	/* One byte at a time: overflow at the byte past the cap. */
	for (i = 0; i < SMALL_MAX; i++)
		assert_int_equal(rec_feed(rc, "p", 1), 0);
	assert_int_equal(rec_feed(rc, "p", 1), 1);
	assert_st(rc, 4, LINE_OVERFLOW, 0);
	assert_int_equal(rec_feed_str(rc, "\nok\n"), 2);
	assert_st(rc, 5, LINE_DROPPED, SMALL_MAX + 1);
	assert_ok_str(rc, 6, "ok");
}

static void
test_overflow_reported_once(void **state)
{
	struct rec	*rc = *state;
	size_t		 i, events = 0;

	for (i = 0; i < TRICKLE_SIZE; i++) {
		events += rec_feed(rc, "x", 1);
		assert_true(evbuffer_get_length(rc->buf) <= SMALL_MAX);
	}
	assert_int_equal(events, 1);
	assert_st(rc, 0, LINE_OVERFLOW, 0);
	/* Lines in the same append as the end of the long one. */
	assert_int_equal(rec_feed_str(rc, "tail\nnext\n\n"), 3);
	assert_st(rc, 1, LINE_DROPPED, TRICKLE_SIZE + 4);
	assert_ok_str(rc, 2, "next");
	assert_ok_str(rc, 3, "");
	assert_int_equal(rc->peak, SMALL_MAX + 1);
}

static void
test_line_before_long_one(void **state)
{
	struct rec	*rc = *state;
	char		 s[SMALL_MAX * 4];

	/* A short line, then a partial long one in the same append. */
	memset(s, 'q', sizeof s);
	memcpy(s, "hi\n", 3);
	assert_int_equal(rec_feed(rc, s, sizeof s), 2);
	assert_ok_str(rc, 0, "hi");
	assert_st(rc, 1, LINE_OVERFLOW, 0);
	assert_int_equal(rec_feed_str(rc, "\n"), 1);
	assert_st(rc, 2, LINE_DROPPED, sizeof s - 3);
}

/*
 * 100 MB in 64 KB chunks against a 1 MB cap: the evbuffer never holds more
 * than cap + chunk, one overflow, one drop with the exact size, and the
 * lines on either side come through.
 */
static void
test_huge_line(void **state)
{
	struct rec	*rc = *state;
	char		*chunk = xmalloc(HUGE_CHUNK);
	size_t		 sent = 0, n, i, overflows = 0;
	static const char after[] = "\n{\"after\":1}\n";

	line_init(&rc->r, HUGE_MAX);
	assert_int_equal(rec_feed_str(rc, "{\"before\":1}\n"), 1);
	memset(chunk, 'h', HUGE_CHUNK);
	while (sent < HUGE_SIZE) {
		n = HUGE_SIZE - sent < HUGE_CHUNK ? HUGE_SIZE - sent :
		    HUGE_CHUNK;
		i = rc->n;
		rec_feed(rc, chunk, n);
		for (; i < rc->n; i++) {
			assert_int_equal(rc->ev[i].st, LINE_OVERFLOW);
			overflows++;
		}
		assert_true(evbuffer_get_length(rc->buf) <= HUGE_MAX);
		sent += n;
	}
	assert_int_equal(overflows, 1);
	assert_true(rc->peak <= HUGE_MAX + HUGE_CHUNK);
	/* The end of the long line and the next one in one append. */
	assert_int_equal(rec_feed(rc, after, sizeof after - 1), 2);
	assert_ok_str(rc, 0, "{\"before\":1}");
	assert_st(rc, 1, LINE_OVERFLOW, 0);
	assert_st(rc, 2, LINE_DROPPED, HUGE_SIZE);
	assert_ok_str(rc, 3, "{\"after\":1}");
	assert_int_equal(evbuffer_get_length(rc->buf), 0);
	free(chunk);
}

/* A line exactly at a 1 MB cap, from 64 KB appends, comes through whole. */
static void
test_long_line_under_cap(void **state)
{
	struct rec	*rc = *state;
	char		*chunk = xmalloc(HUGE_CHUNK);
	size_t		 sent = 0;

	line_init(&rc->r, HUGE_MAX);
	memset(chunk, 'u', HUGE_CHUNK);
	while (sent < HUGE_MAX) {
		assert_int_equal(rec_feed(rc, chunk, HUGE_CHUNK), 0);
		sent += HUGE_CHUNK;
	}
	assert_int_equal(sent, HUGE_MAX);
	assert_int_equal(rec_feed_str(rc, "\n"), 1);
	assert_int_equal(rc->ev[0].st, LINE_OK);
	assert_int_equal(rc->ev[0].len, HUGE_MAX);
	assert_int_equal(rc->ev[0].line[0], 'u');
	assert_int_equal(rc->ev[0].line[HUGE_MAX - 1], 'u');
	free(chunk);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f)	cmocka_unit_test_setup_teardown(f, rec_setup, rec_teardown)
		T(test_empty_buffer),
		T(test_byte_by_byte),
		T(test_several_lines_in_one_append),
		T(test_crlf),
		T(test_empty_lines),
		T(test_nul_bytes_kept),
		T(test_exactly_max),
		T(test_max_plus_one),
		T(test_overflow_reported_once),
		T(test_line_before_long_one),
		T(test_huge_line),
		T(test_long_line_under_cap),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
