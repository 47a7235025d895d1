/*
 * Leading literals of a pattern: strings one of which starts every match,
 * read from the pattern's text at load, so that a search over a window of
 * starts runs Oniguruma only where one of them stands (firewall.c).  A
 * pattern this reader does not understand, or whose matches may start
 * with anything, has none.
 */
#ifndef HP_LITERALS_H
#define HP_LITERALS_H

#include <stddef.h>

#define LIT_LEN_MAX	24	/* bytes per literal: longer ones cut */
/*
 * A \\b of the pattern, kept in a literal where it stands: a word edge
 * between the bytes either side of it (the text's, at either end).
 */
#define LIT_WORD	'\001'
#define LIT_SET_MAX	128	/* literals per pattern */

struct lit_set {
	size_t	 n;
	char	 s[LIT_SET_MAX][LIT_LEN_MAX + 1];	/* ASCII lower case */
};

/*
 * The leading literals of an Oniguruma pattern compiled with ASCII-only
 * case folding and no options: 0, or -1 (pre->n is 0) if there are none
 * known.  Each literal holds at least one byte of the text, besides any
 * LIT_WORD.
 */
int	lit_prefixes(const char *pattern, struct lit_set *pre);

#endif
