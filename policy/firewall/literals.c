/*
 * Leading literals of a pattern (see literals.h): a recursive descent over
 * the pattern's text that knows the constructs the rule files use and
 * refuses the others.  Every step may only weaken what it claims: a
 * construct read as "anything" ends the literals, never adds a wrong one.
 *
 * Each piece of the pattern is summed up by the strings it matches
 * exactly, if it is a literal run such as \bchmod's "chmod" (anchors and
 * look-around match the empty string), and else by the strings its
 * matches start with, if known.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "policy/firewall/literals.h"

#define LIT_DEPTH_MAX	32	/* groups within groups */
#define LIT_INF		(-1)	/* no upper bound on a repeat */

/* What one piece of a pattern matches. */
struct lit_info {
	int		 exact;		/* only the strings of set */
	int		 pre;		/* else: matches start with one */
	struct lit_set	 set;
};

struct lit_parse {
	const char	*s;
	int		 depth;
	int		 bad;		/* a construct not known: none */
};

static void	lit_alt(struct lit_parse *, struct lit_info *);

static void
lit_info_any(struct lit_info *x)
{
	x->exact = 0;
	x->pre = 0;
	x->set.n = 0;
}

static void
lit_info_string(struct lit_info *x, const char *s)
{
	x->exact = 1;
	x->pre = 0;
	x->set.n = 1;
	snprintf(x->set.s[0], sizeof x->set.s[0], "%s", s);
}

static void
lit_info_char(struct lit_info *x, unsigned char c)
{
	char	s[2];

	s[0] = (char)tolower(c);
	s[1] = '\0';
	lit_info_string(x, s);
}

static int
lit_set_has(const struct lit_set *a, const char *s)
{
	size_t	i;

	for (i = 0; i < a->n; i++) {
		if (strcmp(a->s[i], s) == 0)
			return 1;
	}
	return 0;
}

/* Whether a string holds no byte of the text, only word edges. */
static int
lit_str_empty(const char *s)
{
	while (*s == LIT_WORD)
		s++;
	return *s == '\0';
}

/* Whether no string of the set is empty: each may lead a match. */
static int
lit_set_leads(const struct lit_set *a)
{
	size_t	i;

	for (i = 0; i < a->n; i++) {
		if (lit_str_empty(a->s[i]))
			return 0;
	}
	return a->n > 0;
}

/* Copies the strings in use only: a set is mostly empty. */
static void
lit_set_copy(struct lit_set *d, const struct lit_set *s)
{
	d->n = s->n;
	memcpy(d->s, s->s, s->n * sizeof s->s[0]);
}

/* a = a x b, if it fits; 0, or -1 with a unchanged. */
static int
lit_set_product(struct lit_set *a, const struct lit_set *b)
{
	struct lit_set	r;
	size_t		i, j, la, lb;

	r.n = 0;
	for (i = 0; i < a->n; i++) {
		for (j = 0; j < b->n; j++) {
			la = strlen(a->s[i]);
			lb = strlen(b->s[j]);
			if (la + lb > LIT_LEN_MAX || r.n == LIT_SET_MAX)
				return -1;
			memcpy(r.s[r.n], a->s[i], la);
			memcpy(r.s[r.n] + la, b->s[j], lb + 1);
			if (!lit_set_has(&r, r.s[r.n]))
				r.n++;
		}
	}
	lit_set_copy(a, &r);
	return 0;
}

/* a = a u b, if it fits; 0, or -1 with a unchanged. */
static int
lit_set_union(struct lit_set *a, const struct lit_set *b)
{
	struct lit_set	r;
	size_t		j;

	lit_set_copy(&r, a);
	for (j = 0; j < b->n; j++) {
		if (lit_set_has(&r, b->s[j]))
			continue;
		if (r.n == LIT_SET_MAX)
			return -1;
		memcpy(r.s[r.n++], b->s[j], sizeof r.s[0]);
	}
	lit_set_copy(a, &r);
	return 0;
}

/* The strings a piece's matches start with: 1, or 0 if not known. */
static int
lit_info_leads(const struct lit_info *x, struct lit_set *out)
{
	if (x->exact ? !lit_set_leads(&x->set) : !x->pre)
		return 0;
	if (out != &x->set)
		lit_set_copy(out, &x->set);
	return 1;
}

/* A repeat of x from min to max (LIT_INF) times. */
static void
lit_repeat(struct lit_info *x, long min, long max)
{
	struct lit_set	empty;

	if (max == 0) {
		lit_info_string(x, "");
		return;
	}
	if (min == 0) {
		empty.n = 1;
		empty.s[0][0] = '\0';
		if (x->exact && max == 1 && lit_set_union(&x->set, &empty) == 0)
			return;
		lit_info_any(x);
		return;
	}
	if (max == 1)
		return;
	/* At least once: the first time leads. */
	x->pre = lit_info_leads(x, &x->set);
	x->exact = 0;
}

/* A number of an interval; -1 if there is none. */
static long
lit_number(struct lit_parse *ps)
{
	long	n = 0;

	if (!isdigit((unsigned char)*ps->s))
		return -1;
	while (isdigit((unsigned char)*ps->s)) {
		if (n > 100000) {
			ps->bad = 1;
			return -1;
		}
		n = n * 10 + (*ps->s++ - '0');
	}
	return n;
}

/* Quantifiers after a piece, each applied in turn. */
static void
lit_quantifiers(struct lit_parse *ps, struct lit_info *x)
{
	long	min, max;
	int	simple;

	for (;;) {
		simple = 1;
		switch (*ps->s) {
		case '*':
			min = 0;
			max = LIT_INF;
			break;
		case '+':
			min = 1;
			max = LIT_INF;
			break;
		case '?':
			min = 0;
			max = 1;
			break;
		case '{':
			/* {n}, {n,}, {,m}, {n,m}; anything else: refused. */
			simple = 0;
			ps->s++;
			min = lit_number(ps);
			max = min;
			if (*ps->s == ',') {
				ps->s++;
				max = lit_number(ps);
				if (max < 0)
					max = LIT_INF;
				if (min < 0)
					min = 0;
			}
			if (*ps->s != '}' || min < 0 ||
			    (max != LIT_INF && max < min)) {
				ps->bad = 1;
				return;
			}
			break;
		default:
			return;
		}
		ps->s++;
		lit_repeat(x, min, max);
		/*
		 * Lazy or possessive after *, + and ?: the same strings lead.
		 * After an interval, Oniguruma reads a '+' as a repeat (and
		 * '?' as lazy): taken as one, which only weakens.
		 */
		if (simple && (*ps->s == '?' || *ps->s == '+'))
			ps->s++;
	}
}

/* A bracket class: no literal; nested classes and && refused. */
static void
lit_class(struct lit_parse *ps)
{
	int	first = 1;
	char	c;

	ps->s++;			/* '[' */
	if (*ps->s == '^')
		ps->s++;
	for (;; first = 0) {
		c = *ps->s;
		if (c == '\0' || c == '[' || (c == '&' && ps->s[1] == '&')) {
			ps->bad = 1;
			return;
		}
		if (c == ']' && !first)
			break;
		ps->s++;
		if (c == '\\') {
			if (*ps->s == '\0') {
				ps->bad = 1;
				return;
			}
			ps->s++;
		}
	}
	ps->s++;			/* ']' */
}

/* An escape out of a class. */
static void
lit_escape(struct lit_parse *ps, struct lit_info *x)
{
	char	c = *++ps->s;

	if (c == '\0') {
		ps->bad = 1;
		return;
	}
	ps->s++;
	switch (c) {
	case 'b':
		lit_info_string(x, (char[]){ LIT_WORD, '\0' });
		return;
	case 'B': case 'A': case 'z': case 'Z': case 'G':
		lit_info_string(x, "");		/* an anchor */
		return;
	case 's': case 'S': case 'w': case 'W': case 'd': case 'D':
	case 'h': case 'H': case 'n': case 't': case 'r': case 'f':
		lit_info_any(x);
		return;
	default:
		break;
	}
	if (c >= '1' && c <= '9') {
		/* A back reference. */
		while (isdigit((unsigned char)*ps->s))
			ps->s++;
		lit_info_any(x);
		return;
	}
	if (ispunct((unsigned char)c)) {
		lit_info_char(x, (unsigned char)c);
		return;
	}
	ps->bad = 1;
}

/* A group after its opening parenthesis; the caller reads the ')'. */
static void
lit_group(struct lit_parse *ps, struct lit_info *x)
{
	int	zero = 0;

	if (*ps->s == '?') {
		ps->s++;
		if (*ps->s == ':' || *ps->s == '>')
			ps->s++;
		else if (*ps->s == '=' || *ps->s == '!') {
			ps->s++;
			zero = 1;
		} else if (*ps->s == '<' && (ps->s[1] == '=' ||
		    ps->s[1] == '!')) {
			ps->s += 2;
			zero = 1;
		} else if (*ps->s == '<' && (isalpha((unsigned char)ps->s[1]) ||
		    ps->s[1] == '_')) {
			/* A named group. */
			ps->s++;
			while (isalnum((unsigned char)*ps->s) || *ps->s == '_')
				ps->s++;
			if (*ps->s != '>') {
				ps->bad = 1;
				return;
			}
			ps->s++;
		} else if (strncmp(ps->s, "-i:", 3) == 0)
			ps->s += 3;	/* case kept: folded literals still lead */
		else {
			ps->bad = 1;
			return;
		}
	}
	lit_alt(ps, x);
	/* Look-around matches the empty string. */
	if (zero && !ps->bad)
		lit_info_string(x, "");
}

/* One piece without its quantifiers. */
static void
lit_atom(struct lit_parse *ps, struct lit_info *x)
{
	unsigned char	c = (unsigned char)*ps->s;

	switch (c) {
	case '(':
		if (++ps->depth > LIT_DEPTH_MAX) {
			ps->bad = 1;
			return;
		}
		ps->s++;
		lit_group(ps, x);
		if (ps->bad || *ps->s != ')') {
			ps->bad = 1;
			return;
		}
		ps->s++;
		ps->depth--;
		return;
	case '[':
		lit_class(ps);
		lit_info_any(x);
		return;
	case '.':
		ps->s++;
		lit_info_any(x);
		return;
	case '^':
	case '$':
		ps->s++;
		lit_info_string(x, "");
		return;
	case '\\':
		lit_escape(ps, x);
		return;
	case '*': case '+': case '?': case '{': case '}': case ']':
		ps->bad = 1;
		return;
	default:
		break;
	}
	if (c >= 0x80) {
		/* A character beyond ASCII: case folding not known here. */
		ps->s++;
		while (((unsigned char)*ps->s & 0xC0) == 0x80)
			ps->s++;
		lit_info_any(x);
		return;
	}
	if (c < 0x20 || c == 0x7f) {
		ps->bad = 1;
		return;
	}
	ps->s++;
	lit_info_char(x, c);
}

/* A sequence of pieces, up to '|', ')' or the end. */
static void
lit_seq(struct lit_parse *ps, struct lit_info *out)
{
	struct lit_info	*x;
	struct lit_set	*run;		/* the heap's: groups recurse */
	int		 exact = 1, decided = 0;

	x = xmalloc(sizeof *x);
	run = xmalloc(sizeof *run);
	run->n = 1;
	run->s[0][0] = '\0';
	lit_info_any(out);
	while (!ps->bad && *ps->s != '\0' && *ps->s != '|' && *ps->s != ')') {
		lit_atom(ps, x);
		if (ps->bad)
			break;
		lit_quantifiers(ps, x);
		if (ps->bad)
			break;
		if (!exact)
			continue;	/* what leads is decided */
		if (x->exact && lit_set_product(run, &x->set) == 0)
			continue;
		/*
		 * The run so far leads, or, if it is only the empty string
		 * (anchors), what this piece starts with.
		 */
		exact = 0;
		decided = 1;
		if (lit_set_leads(run)) {
			out->pre = 1;
			lit_set_copy(&out->set, run);
		} else if (run->n == 1 && lit_str_empty(run->s[0]))
			out->pre = lit_info_leads(x, &out->set);
	}
	if (!decided) {
		out->exact = 1;
		out->pre = 0;
		lit_set_copy(&out->set, run);
	}
	free(run);
	free(x);
}

/* Alternatives, up to ')' or the end. */
static void
lit_alt(struct lit_parse *ps, struct lit_info *out)
{
	struct lit_info	*b;
	struct lit_set	*lead;

	lit_seq(ps, out);
	if (ps->bad || *ps->s != '|')
		return;
	b = xmalloc(sizeof *b);
	lead = xmalloc(sizeof *lead);
	while (!ps->bad && *ps->s == '|') {
		ps->s++;
		lit_seq(ps, b);
		if (ps->bad)
			break;
		if (out->exact && b->exact && lit_set_union(&out->set,
		    &b->set) == 0)
			continue;
		/* Not exact: each alternative's leading strings, together. */
		out->pre = lit_info_leads(out, &out->set) &&
		    lit_info_leads(b, lead) &&
		    lit_set_union(&out->set, lead) == 0;
		out->exact = 0;
	}
	free(lead);
	free(b);
}

int
lit_prefixes(const char *pattern, struct lit_set *pre)
{
	struct lit_parse	 ps;
	struct lit_info		*x;
	int			 rc = -1;

	memset(&ps, 0, sizeof ps);
	ps.s = pattern;
	x = xmalloc(sizeof *x);
	lit_alt(&ps, x);
	pre->n = 0;
	if (!ps.bad && *ps.s == '\0' && lit_info_leads(x, pre))
		rc = 0;
	else
		pre->n = 0;
	free(x);
	return rc;
}
