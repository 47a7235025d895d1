/*
 * One peer: a channel to another process of ours over a stream socket
 * (tmux's proc.c is the model).  A peer is the socket, msg.c's framing,
 * a bounded input buffer, an output queue and callbacks.  This is the one
 * place that reads the master <-> worker channel: it takes messages off
 * the socket, checks each header (version, flags, size, the sender's pid,
 * a type that side may send) and hands the message to the dispatch
 * callback; anything else ends the reading with the error callback.
 */
#ifndef HP_PEER_H
#define HP_PEER_H

#include <sys/types.h>

#include <stddef.h>

struct event_base;
struct evbuffer;
struct msg;
struct msg_hdr;
struct peer;

enum peer_error {
	PEER_BAD = 1,		/* malformed header, or a type the other side
				   does not send */
	PEER_VERSION,		/* another MSG_VERSION (hdr->version) */
	PEER_PID		/* the header names another sender */
};

/* Why the closed callback is called. */
#define PEER_EOF		0	/* EOF or a read error */
#define PEER_WRITE_FAILED	1	/* the output was dropped; what the
					   other side wrote is still read */

struct peer_cb {
	/* One message (freed after the call). */
	void	(*dispatch)(struct peer *, struct msg *, void *);
	/* A message that cannot be taken: nothing more is read. */
	void	(*error)(struct peer *, enum peer_error,
		    const struct msg_hdr *, void *);
	/* PEER_EOF, PEER_WRITE_FAILED. */
	void	(*closed)(struct peer *, int, void *);
	/* The output queue fell to the low mark (peer_set_lowat); NULL. */
	void	(*drained)(struct peer *, void *);
};

/*
 * A peer on fd (non-blocking; closed by peer_free).  from: the
 * MSG_FROM_* side its messages come from; pid: the sender every header
 * must name, or 0 for any.  name is for logs.
 */
struct peer	*peer_new(struct event_base *, int fd, int from, pid_t pid,
		    const char *name, const struct peer_cb *, void *arg);
/* Safe from the peer's own callbacks. */
void		 peer_free(struct peer *);
/* Where a message to the peer is composed (msg_*_compose). */
struct evbuffer	*peer_output(struct peer *);
size_t		 peer_queued(struct peer *);
void		 peer_set_priority(struct peer *, int);
/* Reading paused (1) or resumed (0); what was read is still handed on. */
void		 peer_pause(struct peer *, int);
/* Nothing more is read or written (a peer being killed). */
void		 peer_stop(struct peer *);
/* The drained callback once the output is at most lowat bytes. */
void		 peer_set_lowat(struct peer *, size_t);
/* No more reading; done is called once the output went out (or cannot). */
void		 peer_flush(struct peer *, void (*done)(struct peer *, void *));

#endif
