/*
 * NDJSON line framing over an evbuffer, bounded: a line longer than the
 * cap is discarded as it arrives (memory stays bounded) and reported, and
 * the stream goes on at the next newline.
 */
#ifndef HP_LINE_H
#define HP_LINE_H

#include <stddef.h>

struct evbuffer;

enum line_status {
	LINE_NONE = 0,	/* no complete line yet */
	LINE_OK,	/* *line holds one line (owned by the caller) */
	LINE_OVERFLOW,	/* a line just passed the cap; discarding it */
	LINE_DROPPED	/* the end of an over-long line: *len = its size */
};

#define LINE_HEAD_MAX	64	/* first bytes of a dropped line, kept */

struct line_reader {
	size_t	max;		/* longest line accepted, without '\n' */
	char	head[LINE_HEAD_MAX + 1];	/* of the line dropped last */
	size_t	headlen;
	size_t	scanned;	/* bytes already searched for '\n' */
	size_t	discarded;	/* bytes of the line being dropped */
	int	discarding;
};

void	line_init(struct line_reader *, size_t max);
/*
 * Next event from the buffer.  On LINE_OK, *line is NUL-terminated
 * (without '\n' or a trailing '\r'), *len its length; free it.
 */
enum line_status line_next(struct line_reader *, struct evbuffer *,
	    char **line, size_t *len);

#endif
