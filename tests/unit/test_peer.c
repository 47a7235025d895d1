/*
 * common/peer.c: the one reader of a master <-> worker channel.  Messages
 * written whole or byte by byte are handed on in order; a type the other
 * side does not send, another sender's pid, another version and a
 * malformed header each end the reading with their error and hand on
 * nothing more; EOF is told; a peer freed from its own dispatch stops
 * there; a flush calls back once the output went out.  Each case runs the
 * real peer on one end of a socketpair and writes the other end.
 */
#include <sys/socket.h>

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
#include <event2/event.h>

#include "common/msg.h"
#include "common/peer.h"
#include "common/util.h"
#include "tests/time_scale.h"

#define SEEN_MAX	16
#define STUCK_S		30	/* a case that waits longer is stuck: killed */

struct rec {
	struct event_base	*base;
	struct peer		*p;
	int			 other;		/* the test's end */
	uint16_t		 types[SEEN_MAX];
	size_t			 ntypes;
	int			 error;		/* enum peer_error, 0: none */
	unsigned		 version;
	int			 closed;	/* 1 + PEER_EOF/WRITE_FAILED */
	int			 flushed;
	int			 free_at;	/* free in the nth dispatch */
};

static void
rec_dispatch(struct peer *p, struct msg *m, void *arg)
{
	struct rec	*r = arg;

	if (r->ntypes < SEEN_MAX)
		r->types[r->ntypes++] = m->hdr.type;
	if (r->free_at != 0 && (int)r->ntypes == r->free_at) {
		peer_free(p);
		r->p = NULL;
	}
}

static void
rec_error(struct peer *p, enum peer_error e, const struct msg_hdr *h,
    void *arg)
{
	struct rec	*r = arg;

	r->error = e;
	r->version = h->version;
}

static void
rec_closed(struct peer *p, int why, void *arg)
{
	struct rec	*r = arg;

	r->closed = 1 + why;
}

static const struct peer_cb rec_cb = { rec_dispatch, rec_error, rec_closed,
    NULL };

static int
setup(void **state)
{
	struct rec	*r = calloc(1, sizeof *r);
	int		 sv[2];

	if (r == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 ||
	    (r->base = event_base_new()) == NULL)
		return -1;
	util_set_nonblock(sv[0]);
	/* The master's side: messages from a worker, which is us. */
	r->p = peer_new(r->base, sv[0], MSG_FROM_WORKER, getpid(), "test",
	    &rec_cb, r);
	r->other = sv[1];
	*state = r;
	return 0;
}

static int
teardown(void **state)
{
	struct rec	*r = *state;

	peer_free(r->p);
	close(r->other);
	event_base_free(r->base);
	free(r);
	return 0;
}

/* Writes what b holds to the peer's other end. */
static void
put(struct rec *r, struct evbuffer *b)
{
	size_t	len = evbuffer_get_length(b);

	assert_int_equal(write(r->other, evbuffer_pullup(b, -1), len),
	    (ssize_t)len);
	evbuffer_drain(b, len);
}

/* One raw header and len payload bytes. */
static void
put_hdr(struct rec *r, uint16_t type, uint8_t version, uint32_t pid,
    const char *payload)
{
	struct msg_hdr	h;
	size_t		len = payload != NULL ? strlen(payload) : 0;

	memset(&h, 0, sizeof h);
	h.len = (uint32_t)len;
	h.type = type;
	h.version = version;
	h.pid = pid;
	assert_int_equal(write(r->other, &h, sizeof h), (ssize_t)sizeof h);
	if (len > 0)
		assert_int_equal(write(r->other, payload, len), (ssize_t)len);
}

/* Runs the loop until cond holds (each pass waits for an event). */
#define RUN_UNTIL(r, cond) do {						\
	while (!(cond))							\
		assert_int_equal(event_base_loop((r)->base,		\
		    EVLOOP_ONCE), 0);					\
} while (0)

static void
test_in_order(void **state)
{
	struct rec	*r = *state;
	struct evbuffer	*b = evbuffer_new();
	unsigned char	*bytes;
	size_t		 len, i;

	msg_empty_compose(b, MSG_HELLO, 0);
	msg_empty_compose(b, MSG_READY, 0);
	msg_compose(b, MSG_EVENT, 1, "\"type\":\"x\"}", 11);
	put(r, b);
	RUN_UNTIL(r, r->ntypes == 3);
	assert_int_equal(r->types[0], MSG_HELLO);
	assert_int_equal(r->types[1], MSG_READY);
	assert_int_equal(r->types[2], MSG_EVENT);
	/* Byte by byte: the same, once each message is whole. */
	msg_empty_compose(b, MSG_PROBED, 2);
	len = evbuffer_get_length(b);
	bytes = evbuffer_pullup(b, -1);
	for (i = 0; i < len; i++) {
		assert_int_equal(write(r->other, bytes + i, 1), 1);
		if (i + 1 < len)
			assert_int_equal(event_base_loop(r->base,
			    EVLOOP_ONCE), 0);
	}
	evbuffer_drain(b, len);
	RUN_UNTIL(r, r->ntypes == 4);
	assert_int_equal(r->types[3], MSG_PROBED);
	assert_int_equal(r->error, 0);
	evbuffer_free(b);
}

static void
test_wrong_direction(void **state)
{
	struct rec	*r = *state;
	struct evbuffer	*b = evbuffer_new();

	/* A TURN is the master's to send, never a worker's. */
	msg_empty_compose(b, MSG_HELLO, 0);
	msg_compose(b, MSG_TURN, 1, "{}", 2);
	msg_empty_compose(b, MSG_READY, 0);
	put(r, b);
	RUN_UNTIL(r, r->error != 0);
	assert_int_equal(r->error, PEER_BAD);
	assert_int_equal(r->ntypes, 1);		/* the hello only */
	evbuffer_free(b);
}

static void
test_other_pid(void **state)
{
	struct rec	*r = *state;

	put_hdr(r, MSG_HELLO, MSG_VERSION, (uint32_t)getpid() + 1, NULL);
	RUN_UNTIL(r, r->error != 0);
	assert_int_equal(r->error, PEER_PID);
	assert_int_equal(r->ntypes, 0);
}

static void
test_other_version(void **state)
{
	struct rec	*r = *state;

	put_hdr(r, MSG_HELLO, MSG_VERSION + 1, (uint32_t)getpid(), NULL);
	RUN_UNTIL(r, r->error != 0);
	assert_int_equal(r->error, PEER_VERSION);
	assert_int_equal(r->version, MSG_VERSION + 1);
	assert_int_equal(r->ntypes, 0);
}

static void
test_malformed(void **state)
{
	struct rec	*r = *state;

	put_hdr(r, MSG_TYPE_MAX, MSG_VERSION, (uint32_t)getpid(), "x");
	RUN_UNTIL(r, r->error != 0);
	assert_int_equal(r->error, PEER_BAD);
	assert_int_equal(r->ntypes, 0);
}

static void
test_eof(void **state)
{
	struct rec	*r = *state;
	struct evbuffer	*b = evbuffer_new();

	/* What was written before the close is handed on first. */
	msg_empty_compose(b, MSG_HELLO, 0);
	put(r, b);
	shutdown(r->other, SHUT_WR);
	RUN_UNTIL(r, r->closed != 0);
	assert_int_equal(r->closed, 1 + PEER_EOF);
	assert_int_equal(r->ntypes, 1);
	evbuffer_free(b);
}

static void
test_free_in_dispatch(void **state)
{
	struct rec	*r = *state;
	struct evbuffer	*b = evbuffer_new();

	r->free_at = 1;
	msg_empty_compose(b, MSG_HELLO, 0);
	msg_empty_compose(b, MSG_READY, 0);
	put(r, b);
	RUN_UNTIL(r, r->ntypes == 1);
	assert_null(r->p);
	/*
	 * Nothing after it: the peer is gone, its events with it (1: none
	 * left); ASan would see a use after free.
	 */
	assert_int_equal(event_base_loop(r->base, EVLOOP_NONBLOCK), 1);
	assert_int_equal(r->ntypes, 1);
	evbuffer_free(b);
}

static void
rec_flushed(struct peer *p, void *arg)
{
	((struct rec *)arg)->flushed++;
}

static void
test_flush(void **state)
{
	struct rec	*r = *state;
	struct evbuffer	*in = evbuffer_new();
	struct msg	 m;
	char		 buf[256];
	ssize_t		 n;

	msg_empty_compose(peer_output(r->p), MSG_STOP, 3);
	assert_true(peer_queued(r->p) > 0);
	peer_flush(r->p, rec_flushed);
	RUN_UNTIL(r, r->flushed > 0);
	assert_int_equal(r->flushed, 1);
	assert_int_equal(peer_queued(r->p), 0);
	/* It went out whole. */
	while ((n = read(r->other, buf, sizeof buf)) > 0) {
		evbuffer_add(in, buf, (size_t)n);
		if (evbuffer_get_length(in) >= MSG_HDR_SIZE)
			break;
	}
	assert_int_equal(msg_get(in, &m), MSG_GET_OK);
	assert_int_equal(m.hdr.type, MSG_STOP);
	assert_int_equal(m.hdr.turn, 3);
	msg_clear(&m);
	evbuffer_free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_direction, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_other_pid, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_other_version, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_dispatch, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
	};

	/* The loop waits for events only: a missing one would hang. */
	alarm((unsigned)(STUCK_S * time_scale()));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
