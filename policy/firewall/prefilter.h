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
/* The literal must start or end at a word boundary ("\\b" in a hint). */
#define PREFILTER_WORD_START	0x1U
#define PREFILTER_WORD_END	0x2U

/* Literal of len bytes (folded to lower case) that announces rule id. */
int			 prefilter_add(struct prefilter *, const char *,
			    size_t, unsigned, unsigned);
void			 prefilter_build(struct prefilter *);
/* Called for every literal found: its rule id and its offset in the text. */
typedef void	(*prefilter_cb)(void *, unsigned, size_t);
void			 prefilter_scan(const struct prefilter *,
			    const char *, size_t, prefilter_cb, void *);

#endif
