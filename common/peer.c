/*
 * One peer: the master's channel to a worker, or the worker's to the
 * master.  Reads, frames (msg.c), checks each header and hands messages
 * on; queues what is composed for the other side.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/peer.h"
#include "common/xmalloc.h"

/*
 * The input never holds more than one whole message: libevent stops
 * reading there, and each read hands on every whole message it has.
 */
#define PEER_INPUT_MAX		(MSG_HDR_SIZE + MSG_MAX_PAYLOAD)
#define PEER_NAME_MAX		32

#define PEER_STOPPED		0x1	/* nothing more is read */
#define PEER_EOF_SEEN		0x2
#define PEER_DISPATCHING	0x4	/* in its read callback */
#define PEER_FREED		0x8	/* freed from a callback: free at its end */

struct peer {
	struct bufferevent	*bev;
	int			 from;		/* MSG_FROM_* */
	pid_t			 pid;		/* 0: any */
	int			 flags;
	char			 name[PEER_NAME_MAX];
	struct peer_cb		 cb;
	void			*arg;
	void			(*flushed)(struct peer *, void *);
};

static void
peer_destroy(struct peer *p)
{
	bufferevent_free(p->bev);
	free(p);
}

/* A message whose header the checks refuse: nothing more is read. */
static void
peer_refuse(struct peer *p, enum peer_error e, const struct msg_hdr *h)
{
	p->flags |= PEER_STOPPED;
	bufferevent_disable(p->bev, EV_READ);
	p->cb.error(p, e, h, p->arg);
}

static void
peer_read(struct bufferevent *bev, void *arg)
{
	struct peer	*p = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	struct msg	 m;
	int		 r = MSG_GET_MORE;

	p->flags |= PEER_DISPATCHING;
	while ((p->flags & (PEER_STOPPED | PEER_FREED)) == 0 &&
	    (r = msg_get(in, &m)) == MSG_GET_OK) {
		if (m.hdr.type != MSG_EVENT)
			log_debug("%s: %s (turn %u, %u bytes)", p->name,
			    msg_type_name(m.hdr.type), m.hdr.turn, m.hdr.len);
		if ((msg_type_from(m.hdr.type) & p->from) == 0) {
			log_warnx("%s: %s message, which it does not send",
			    p->name, msg_type_name(m.hdr.type));
			peer_refuse(p, PEER_BAD, &m.hdr);
		} else if (p->pid != 0 && m.hdr.pid != (uint32_t)p->pid) {
			log_warnx("%s: %s message from pid %u", p->name,
			    msg_type_name(m.hdr.type), m.hdr.pid);
			peer_refuse(p, PEER_PID, &m.hdr);
		} else
			p->cb.dispatch(p, &m, p->arg);
		msg_clear(&m);
	}
	if ((p->flags & (PEER_STOPPED | PEER_FREED)) == 0) {
		if (r == MSG_GET_VERSION)
			peer_refuse(p, PEER_VERSION, &m.hdr);
		else if (r == MSG_GET_BAD)
			peer_refuse(p, PEER_BAD, &m.hdr);
	}
	p->flags &= ~PEER_DISPATCHING;
	if (p->flags & PEER_FREED)
		peer_destroy(p);
}

static void
peer_write(struct bufferevent *bev, void *arg)
{
	struct peer	*p = arg;

	if (p->flushed != NULL) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			p->flushed(p, p->arg);
		return;
	}
	if (p->cb.drained != NULL)
		p->cb.drained(p, p->arg);
}

static void
peer_event(struct bufferevent *bev, short what, void *arg)
{
	struct peer	*p = arg;
	struct evbuffer	*out = bufferevent_get_output(bev);

	if (p->flushed != NULL) {
		/* Nothing more can go out: done. */
		if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
			p->flushed(p, p->arg);
		return;
	}
	if ((what & BEV_EVENT_WRITING) && !(p->flags & PEER_EOF_SEEN)) {
		/*
		 * We cannot write (EPIPE: it has exited), but what it wrote
		 * before it went is still to be read: its last messages may
		 * decide what happens next.  libevent stopped the writing.
		 */
		log_debug("%s: cannot write to its channel: %s", p->name,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		evbuffer_drain(out, evbuffer_get_length(out));
		p->cb.closed(p, PEER_WRITE_FAILED, p->arg);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		p->flags |= PEER_EOF_SEEN | PEER_STOPPED;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		p->cb.closed(p, PEER_EOF, p->arg);
	}
}

struct peer *
peer_new(struct event_base *base, int fd, int from, pid_t pid,
    const char *name, const struct peer_cb *cb, void *arg)
{
	struct peer	*p;

	p = xcalloc(1, sizeof *p);
	if ((p->bev = bufferevent_socket_new(base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		fatalx("bufferevent_socket_new");
	p->from = from;
	p->pid = pid;
	p->cb = *cb;
	p->arg = arg;
	snprintf(p->name, sizeof p->name, "%s", name);
	bufferevent_setwatermark(p->bev, EV_READ, 0, PEER_INPUT_MAX);
	bufferevent_setcb(p->bev, peer_read, peer_write, peer_event, p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	return p;
}

void
peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	if (p->flags & PEER_DISPATCHING) {
		p->flags |= PEER_FREED | PEER_STOPPED;
		bufferevent_disable(p->bev, EV_READ | EV_WRITE);
		return;
	}
	peer_destroy(p);
}

struct evbuffer *
peer_output(struct peer *p)
{
	return bufferevent_get_output(p->bev);
}

size_t
peer_queued(struct peer *p)
{
	return evbuffer_get_length(bufferevent_get_output(p->bev));
}

void
peer_set_priority(struct peer *p, int prio)
{
	/* libevent refuses while its events are active: then at the old. */
	(void)bufferevent_priority_set(p->bev, prio);
}

void
peer_pause(struct peer *p, int pause)
{
	if (pause)
		bufferevent_disable(p->bev, EV_READ);
	else if ((p->flags & PEER_STOPPED) == 0)
		bufferevent_enable(p->bev, EV_READ);
}

void
peer_stop(struct peer *p)
{
	p->flags |= PEER_STOPPED;
	bufferevent_disable(p->bev, EV_READ | EV_WRITE);
}

void
peer_set_lowat(struct peer *p, size_t lowat)
{
	bufferevent_setwatermark(p->bev, EV_WRITE, lowat, 0);
}

void
peer_flush(struct peer *p, void (*done)(struct peer *, void *))
{
	p->flushed = done;
	p->flags |= PEER_STOPPED;
	bufferevent_setwatermark(p->bev, EV_WRITE, 0, 0);
	bufferevent_disable(p->bev, EV_READ);
	bufferevent_enable(p->bev, EV_WRITE);
	if (peer_queued(p) == 0)
		done(p, p->arg);
}
