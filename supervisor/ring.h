/*
 * A session's recent event lines, for attach: bounded by count and bytes,
 * oldest dropped first.  Each entry owns its line (with its '\n').
 */
#ifndef HP_RING_H
#define HP_RING_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#define RING_ENTRIES_MAX	4096

struct ring_entry {
	TAILQ_ENTRY(ring_entry)	 entry;
	uint64_t		 seq;
	size_t			 len;
	char			 line[];	/* len bytes */
};

struct ring {
	TAILQ_HEAD(, ring_entry) entries;
	size_t			 n;
	size_t			 bytes;
	size_t			 max_bytes;
	uint64_t		 dropped_to;	/* highest seq dropped */
};

void	ring_init(struct ring *, size_t max_bytes);
void	ring_clear(struct ring *);
/* An entry with room for size bytes of line, to fill and then push. */
struct ring_entry *ring_entry_new(size_t size);
/* Takes the entry (its seq, line and len set); may free it at once. */
void	ring_push(struct ring *, struct ring_entry *);
/* Entries with seq > since, oldest first; returns how many. */
size_t	ring_each(const struct ring *, uint64_t since,
	    void (*)(void *, const struct ring_entry *), void *);
/* The lowest seq still held (0 when empty). */
uint64_t ring_oldest(const struct ring *);

#endif
