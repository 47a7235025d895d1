/*
 * Aho-Corasick prefilter (see prefilter.h).  Built once per policy: a trie
 * of the literals, failure links by breadth-first walk, then folded into a
 * full transition table so that a scan is one table load per byte.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "policy/firewall/prefilter.h"

#define PF_NOSTATE	UINT32_MAX
#define PF_BYTES	256
#define PF_OUTPUT	0x80000000U	/* scan table: target has outputs */
/*
 * A scan walks the table once per byte, each step waiting on the load of
 * the last: a long text is cut into this many pieces walked side by side,
 * so that their loads overlap.
 */
#define PF_STREAMS	4
#define PF_STREAM_MIN	256	/* bytes per piece worth the cut */
#define PF_HITS_MIN	64	/* first allocation of a piece's hits */

struct prefilter {
	uint8_t		 cls[PF_BYTES];	/* byte -> class; 0: in no literal */
	size_t		 ncls;
	uint32_t	*delta;		/* nstates * ncls transitions */
	uint32_t	*scan;		/* same, as row offsets | PF_OUTPUT */
	uint32_t	*fail;
	uint32_t	 nstates;
	uint32_t	 cap;		/* states allocated */

	/* Output: rule ids that end at each state, after build with
	 * those of the failure chain merged in. */
	uint32_t	*out_start;
	uint32_t	*out_count;
	struct pf_out {
		unsigned	 id;
		unsigned	 flags;
		size_t		 len;
	}		*out;
	size_t		 nout;
	size_t		 maxlen;	/* of the longest literal */

	/* Literals kept until build. */
	struct pf_lit {
		char		*s;
		size_t		 len;
		unsigned	 id;
		unsigned	 flags;
	}		*lits;
	size_t		 nlits;
	int		 built;
};

struct prefilter *
prefilter_new(void)
{
	return xcalloc(1, sizeof(struct prefilter));
}

void
prefilter_free(struct prefilter *pf)
{
	size_t	i;

	if (pf == NULL)
		return;
	for (i = 0; i < pf->nlits; i++)
		free(pf->lits[i].s);
	free(pf->lits);
	free(pf->delta);
	free(pf->scan);
	free(pf->fail);
	free(pf->out_start);
	free(pf->out_count);
	free(pf->out);
	free(pf);
}

int
prefilter_add(struct prefilter *pf, const char *s, size_t len, unsigned id,
    unsigned flags)
{
	struct pf_lit	*l;
	size_t		 i;

	if (pf->built || len == 0)
		return -1;
	pf->lits = xreallocarray(pf->lits, pf->nlits + 1, sizeof *pf->lits);
	l = &pf->lits[pf->nlits++];
	l->s = xmalloc(len);
	for (i = 0; i < len; i++)
		l->s[i] = (char)tolower((unsigned char)s[i]);
	l->len = len;
	if (len > pf->maxlen)
		pf->maxlen = len;
	l->id = id;
	l->flags = flags;
	return 0;
}

static uint32_t
pf_state_new(struct prefilter *pf)
{
	uint32_t	st;
	size_t		i;

	if (pf->nstates == pf->cap) {
		pf->cap = pf->cap == 0 ? 64 : pf->cap * 2;
		pf->delta = xreallocarray(pf->delta,
		    (size_t)pf->cap * pf->ncls, sizeof *pf->delta);
		pf->fail = xreallocarray(pf->fail, pf->cap, sizeof *pf->fail);
	}
	st = pf->nstates++;
	for (i = 0; i < pf->ncls; i++)
		pf->delta[(size_t)st * pf->ncls + i] = PF_NOSTATE;
	pf->fail[st] = 0;
	return st;
}

void
prefilter_build(struct prefilter *pf)
{
	uint32_t	*queue, *first, *next, st, nx, f, n;
	struct pf_out	*term;
	unsigned	*ends;
	size_t		 i, j, c, head = 0, tail = 0, nends = 0, total;
	uint32_t	 k;

	if (pf->built)
		return;
	pf->built = 1;

	/* Byte classes: one per distinct byte of the literals, both cases. */
	pf->ncls = 1;
	for (i = 0; i < pf->nlits; i++) {
		for (j = 0; j < pf->lits[i].len; j++) {
			c = (unsigned char)pf->lits[i].s[j];
			if (pf->cls[c] == 0 && pf->ncls < PF_BYTES)
				pf->cls[c] = (uint8_t)pf->ncls++;
		}
	}
	for (c = 'A'; c <= 'Z'; c++)
		pf->cls[c] = pf->cls[c + ('a' - 'A')];

	/* Trie; term lists, per state, the literals that end there. */
	pf_state_new(pf);
	term = xcalloc(pf->nlits + 1, sizeof *term);
	ends = xcalloc(pf->nlits + 1, sizeof *ends);
	for (i = 0; i < pf->nlits; i++) {
		st = 0;
		for (j = 0; j < pf->lits[i].len; j++) {
			c = pf->cls[(unsigned char)pf->lits[i].s[j]];
			nx = pf->delta[(size_t)st * pf->ncls + c];
			if (nx == PF_NOSTATE) {
				if (pf->nstates >= PREFILTER_MAX_STATES)
					break;
				nx = pf_state_new(pf);
				pf->delta[(size_t)st * pf->ncls + c] = nx;
			}
			st = nx;
		}
		/* A literal cut by the state bound announces its prefix. */
		ends[nends] = (unsigned)st;
		term[nends].id = pf->lits[i].id;
		term[nends].flags = pf->lits[i].flags;
		term[nends++].len = j;
	}

	/* Failure links breadth-first, turning the trie into a DFA. */
	queue = xcalloc(pf->nstates, sizeof *queue);
	for (c = 0; c < pf->ncls; c++) {
		nx = pf->delta[c];
		if (nx == PF_NOSTATE)
			pf->delta[c] = 0;
		else {
			pf->fail[nx] = 0;
			queue[tail++] = nx;
		}
	}
	while (head < tail) {
		st = queue[head++];
		f = pf->fail[st];
		for (c = 0; c < pf->ncls; c++) {
			nx = pf->delta[(size_t)st * pf->ncls + c];
			if (nx == PF_NOSTATE)
				pf->delta[(size_t)st * pf->ncls + c] =
				    pf->delta[(size_t)f * pf->ncls + c];
			else {
				pf->fail[nx] = pf->delta[(size_t)f * pf->ncls +
				    c];
				queue[tail++] = nx;
			}
		}
	}

	/*
	 * Outputs: a state reports its own literals, in the order they were
	 * added, then those of its failure chain.  States in BFS order see
	 * their failure state done first.  Counted, then filled: each state's
	 * own literals are a chain through next[], never a walk of them all.
	 */
	first = xreallocarray(NULL, pf->nstates, sizeof *first);
	next = xreallocarray(NULL, nends + 1, sizeof *next);
	for (k = 0; k < pf->nstates; k++)
		first[k] = PF_NOSTATE;
	for (i = nends; i > 0; i--) {
		next[i - 1] = first[ends[i - 1]];
		first[ends[i - 1]] = (uint32_t)(i - 1);
	}
	pf->out_start = xcalloc(pf->nstates, sizeof *pf->out_start);
	pf->out_count = xcalloc(pf->nstates, sizeof *pf->out_count);
	total = 0;
	for (k = 0; k <= tail; k++) {
		st = k == 0 ? 0 : queue[k - 1];
		pf->out_start[st] = (uint32_t)total;
		for (n = first[st]; n != PF_NOSTATE; n = next[n])
			pf->out_count[st]++;
		if (st != 0)
			pf->out_count[st] += pf->out_count[pf->fail[st]];
		total += pf->out_count[st];
	}
	pf->out = xreallocarray(NULL, total + 1, sizeof *pf->out);
	for (k = 0; k <= tail; k++) {
		st = k == 0 ? 0 : queue[k - 1];
		f = pf->fail[st];
		j = pf->out_start[st];
		for (n = first[st]; n != PF_NOSTATE; n = next[n])
			pf->out[j++] = term[n];
		if (st != 0)
			memcpy(&pf->out[j], &pf->out[pf->out_start[f]],
			    pf->out_count[f] * sizeof *pf->out);
	}
	pf->nout = total;

	/*
	 * The scan table saves a multiply and a lookup per byte.  Made in
	 * place: each entry only reads itself, and one table of states by
	 * classes is a large part of a compile (allocation and page faults).
	 */
	pf->scan = pf->delta;
	pf->delta = NULL;
	for (i = 0; i < (size_t)pf->nstates * pf->ncls; i++) {
		nx = pf->scan[i];
		pf->scan[i] = nx * (uint32_t)pf->ncls |
		    (pf->out_count[nx] != 0 ? PF_OUTPUT : 0);
	}

	free(first);
	free(next);
	free(pf->fail);		/* only the build follows failure links */
	pf->fail = NULL;
	free(queue);
	free(term);
	free(ends);
	for (i = 0; i < pf->nlits; i++)
		free(pf->lits[i].s);
	free(pf->lits);
	pf->lits = NULL;
	pf->nlits = 0;
}

/*
 * ASCII letters, digits and _ make words.  Other bytes may belong to a
 * Unicode separator, so they count as a boundary: a hint must never be
 * stricter than the \\b of its pattern.
 */
static int
pf_wordbyte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_';
}

/* Literals found in one piece, in the order they end. */
struct pf_hits {
	struct pf_hit {
		unsigned	 id;
		size_t		 at;
	}		*v;
	size_t		 n;
	size_t		 cap;
};

/* Records the literals of output state row that end at text offset i. */
static void
pf_emit(const struct prefilter *pf, const unsigned char *s, size_t len,
    size_t i, uint32_t row, struct pf_hits *h)
{
	const struct pf_out	*o;
	uint32_t		 st, k;
	size_t			 at;

	st = (row & ~PF_OUTPUT) / (uint32_t)pf->ncls;
	for (k = 0; k < pf->out_count[st]; k++) {
		o = &pf->out[pf->out_start[st] + k];
		at = i + 1 - o->len;
		if ((o->flags & PREFILTER_WORD_START) && at > 0 &&
		    pf_wordbyte(s[at - 1]))
			continue;
		if ((o->flags & PREFILTER_WORD_END) && i + 1 < len &&
		    pf_wordbyte(s[i + 1]))
			continue;
		if (h->n == h->cap) {
			h->cap = h->cap == 0 ? PF_HITS_MIN : h->cap * 2;
			h->v = xreallocarray(h->v, h->cap, sizeof *h->v);
		}
		h->v[h->n].id = o->id;
		h->v[h->n++].at = at;
	}
}

/*
 * A text cut in n pieces of plen bytes (the last may be shorter), each
 * walked from the automaton's start ov bytes (the longest literal but one)
 * before the end of the piece before it.  A literal that ends in that
 * overlap is the earlier piece's: the later one reports only those that
 * end past it, and finds every such one, as it starts early enough.
 */
_Static_assert(PF_STREAMS == 4, "pf_scan_pieces() walks four pieces");
static void
pf_scan_pieces(const struct prefilter *pf, const unsigned char *s,
    size_t len, size_t n, size_t plen, size_t ov, struct pf_hits *h)
{
	const uint32_t		*scan = pf->scan;
	const uint8_t		*cls = pf->cls;
	const unsigned char	*p0, *p1, *p2, *p3;
	uint32_t		 r0 = 0, r1 = 0, r2 = 0, r3 = 0, row;
	size_t			 a[PF_STREAMS] = { 0 }, i = 0, j, k, end,
				 lastlen;

	for (j = 0; j < n; j++)
		a[j] = j * (plen - ov);
	lastlen = len - a[n - 1];
	if (n == PF_STREAMS) {
		/* Four walks in step, in registers, as far as the last goes. */
		p0 = s + a[0];
		p1 = s + a[1];
		p2 = s + a[2];
		p3 = s + a[3];
		for (; i < lastlen; i++) {
			r0 = scan[r0 + cls[p0[i]]];
			r1 = scan[r1 + cls[p1[i]]];
			r2 = scan[r2 + cls[p2[i]]];
			r3 = scan[r3 + cls[p3[i]]];
			if (((r0 | r1 | r2 | r3) & PF_OUTPUT) == 0)
				continue;
			if (r0 & PF_OUTPUT) {
				r0 &= ~PF_OUTPUT;
				pf_emit(pf, s, len, a[0] + i, r0, &h[0]);
			}
			if (r1 & PF_OUTPUT) {
				r1 &= ~PF_OUTPUT;
				if (i >= ov)
					pf_emit(pf, s, len, a[1] + i, r1,
					    &h[1]);
			}
			if (r2 & PF_OUTPUT) {
				r2 &= ~PF_OUTPUT;
				if (i >= ov)
					pf_emit(pf, s, len, a[2] + i, r2,
					    &h[2]);
			}
			if (r3 & PF_OUTPUT) {
				r3 &= ~PF_OUTPUT;
				if (i >= ov)
					pf_emit(pf, s, len, a[3] + i, r3,
					    &h[3]);
			}
		}
	}
	/* What is left of each piece, one walk at a time. */
	for (j = 0; j < n; j++) {
		row = j == 0 ? r0 : j == 1 ? r1 : j == 2 ? r2 : r3;
		end = j == n - 1 ? lastlen : plen;
		for (k = i; k < end; k++) {
			row = scan[row + cls[s[a[j] + k]]];
			if ((row & PF_OUTPUT) == 0)
				continue;
			row &= ~PF_OUTPUT;
			if (j == 0 || k >= ov)
				pf_emit(pf, s, len, a[j] + k, row, &h[j]);
		}
	}
}

void
prefilter_scan(const struct prefilter *pf, const char *text, size_t len,
    prefilter_cb cb, void *arg)
{
	const unsigned char	*s = (const unsigned char *)text;
	struct pf_hits		 h[PF_STREAMS];
	size_t			 n, ov, plen, j, k;

	if (!pf->built || pf->nstates == 0 || len == 0)
		return;
	memset(h, 0, sizeof h);
	ov = pf->maxlen > 0 ? pf->maxlen - 1 : 0;
	if (len >= PF_STREAMS * PF_STREAM_MIN && PF_STREAM_MIN > ov) {
		n = PF_STREAMS;
		/* Pieces of plen bytes, overlaps included, cover the text. */
		plen = (len + (n - 1) * ov + n - 1) / n;
	} else {
		n = 1;
		plen = len;
	}
	pf_scan_pieces(pf, s, len, n, plen, ov, h);
	for (j = 0; j < n; j++) {
		for (k = 0; k < h[j].n; k++)
			cb(arg, h[j].v[k].id, h[j].v[k].at);
		free(h[j].v);
	}
}
