/* Bounded ring of event lines. */
#include <stdlib.h>

#include "common/xmalloc.h"
#include "supervisor/ring.h"

void
ring_init(struct ring *r, size_t max_bytes)
{
	TAILQ_INIT(&r->entries);
	r->n = r->bytes = 0;
	r->max_bytes = max_bytes;
	r->dropped_to = 0;
}

static void
ring_drop(struct ring *r)
{
	struct ring_entry	*e = TAILQ_FIRST(&r->entries);

	TAILQ_REMOVE(&r->entries, e, entry);
	r->dropped_to = e->seq;
	r->bytes -= e->len;
	r->n--;
	free(e);
}

void
ring_clear(struct ring *r)
{
	while (r->n > 0)
		ring_drop(r);
}

struct ring_entry *
ring_entry_new(size_t size)
{
	struct ring_entry	*e = xmalloc(sizeof *e + size);

	e->seq = 0;
	e->len = 0;
	return e;
}

void
ring_push(struct ring *r, struct ring_entry *e)
{
	if (e->len > r->max_bytes) {	/* too big to keep: counts as lost */
		ring_clear(r);
		r->dropped_to = e->seq;
		free(e);
		return;
	}
	while (r->n > 0 && (r->n == RING_ENTRIES_MAX ||
	    r->bytes + e->len > r->max_bytes))
		ring_drop(r);
	TAILQ_INSERT_TAIL(&r->entries, e, entry);
	r->n++;
	r->bytes += e->len;
}

size_t
ring_each(const struct ring *r, uint64_t since,
    void (*fn)(void *, const struct ring_entry *), void *arg)
{
	const struct ring_entry	*e;
	size_t			 k = 0;

	TAILQ_FOREACH(e, &r->entries, entry) {
		if (e->seq > since) {
			fn(arg, e);
			k++;
		}
	}
	return k;
}

uint64_t
ring_oldest(const struct ring *r)
{
	return r->n > 0 ? TAILQ_FIRST(&r->entries)->seq : 0;
}
