/* Bounded NDJSON line reader. */
#include <stdlib.h>

#include <event2/buffer.h>

#include "common/line.h"
#include "common/xmalloc.h"

/* Keeps the first bytes of a line about to be dropped (what was it?). */
static void
line_keep_head(struct line_reader *r, struct evbuffer *in)
{
	ssize_t	n = evbuffer_copyout(in, r->head, LINE_HEAD_MAX);

	r->headlen = n > 0 ? (size_t)n : 0;
	r->head[r->headlen] = '\0';
}

void
line_init(struct line_reader *r, size_t max)
{
	r->max = max;
	r->scanned = 0;
	r->discarded = 0;
	r->discarding = 0;
	r->headlen = 0;
	r->head[0] = '\0';
}

enum line_status
line_next(struct line_reader *r, struct evbuffer *in, char **line, size_t *len)
{
	struct evbuffer_ptr	start, eol;
	size_t			avail = evbuffer_get_length(in), n;

	*line = NULL;
	*len = 0;
	if (r->discarding) {
		eol = evbuffer_search(in, "\n", 1, NULL);
		if (eol.pos < 0) {
			r->discarded += avail;
			evbuffer_drain(in, avail);
			return LINE_NONE;
		}
		n = (size_t)eol.pos;
		evbuffer_drain(in, n + 1);
		*len = r->discarded + n;
		r->discarded = 0;
		r->discarding = 0;
		return LINE_DROPPED;
	}

	/* Search only what was not searched before: huge lines stay O(n). */
	if (r->scanned > avail)
		r->scanned = 0;
	if (evbuffer_ptr_set(in, &start, r->scanned, EVBUFFER_PTR_SET) != 0)
		return LINE_NONE;
	eol = evbuffer_search(in, "\n", 1, &start);
	if (eol.pos < 0) {
		r->scanned = avail;
		if (avail > r->max) {
			line_keep_head(r, in);
			r->discarding = 1;
			r->discarded = avail;
			r->scanned = 0;
			evbuffer_drain(in, avail);
			return LINE_OVERFLOW;
		}
		return LINE_NONE;
	}
	n = (size_t)eol.pos;
	r->scanned = 0;
	if (n > r->max) {
		line_keep_head(r, in);
		evbuffer_drain(in, n + 1);
		*len = n;
		return LINE_DROPPED;
	}
	*line = xmalloc(n + 1);
	evbuffer_remove(in, *line, n);
	evbuffer_drain(in, 1);
	if (n > 0 && (*line)[n - 1] == '\r')
		n--;
	(*line)[n] = '\0';
	*len = n;
	return LINE_OK;
}
