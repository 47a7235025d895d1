/*
 * Literal prefilter: Aho-Corasick over the rules' literal hints, as a dense
 * automaton over byte classes, matched without ASCII case.  One scan of a
 * text tells which rules can match it at all.
 */
#ifndef HP_PREFILTER_H
#define HP_PREFILTER_H

#include <stddef.h>

#define PREFILTER_MAX_STATES	(1U << 20)	/* bounds the automaton */

struct prefilter;

struct prefilter	*prefilter_new(void);
void			 prefilter_free(struct prefilter *);
/* Literal of len bytes (folded to lower case) that announces rule id. */
int			 prefilter_add(struct prefilter *, const char *,
			    size_t, unsigned);
void			 prefilter_build(struct prefilter *);
/* Sets bit id of hits (a bitmap of the caller) for every literal found. */
void			 prefilter_scan(const struct prefilter *,
			    const char *, size_t, unsigned char *);

#define PREFILTER_BIT_SET(map, id)	((map)[(id) >> 3] |= 1U << ((id) & 7))
#define PREFILTER_BIT_ISSET(map, id)	(((map)[(id) >> 3] >> ((id) & 7)) & 1U)
#define PREFILTER_MAP_BYTES(n)		(((n) + 7) / 8)

#endif
