/*
 * notify.c: the hosts' channel on a shared PostgreSQL store (LISTEN/NOTIFY).
 * Messages are JSON objects for one host; a callback gets those for us.
 */
#ifndef HP_NOTIFY_H
#define HP_NOTIFY_H

#include <stdint.h>

#include <cJSON.h>

struct event_base;

/* A message for this host from host from (msg is the callee's to read). */
typedef void (*notify_cb)(void *arg, const char *from, const cJSON *msg);

/* The channel listens (at start, and again after a lost connection). */
typedef void (*notify_up_cb)(void *arg);

/*
 * Starts connecting from the loop and keeps trying with back-off; up is
 * called each time the channel listens.
 */
void	 notify_open(struct event_base *, const char *conninfo,
	    const char *host_id, notify_cb, notify_up_cb, void *);
void	 notify_close(void);
int	 notify_is_open(void);
/* Sends msg to host to ("to" and "from" are set): 0, or -1. */
int	 notify_send(const char *to, cJSON *msg);
void	 notify_counts(uint64_t *sent, uint64_t *received);

#endif
