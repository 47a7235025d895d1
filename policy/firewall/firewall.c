/*
 * The firewall: loads rule files into an immutable policy (patterns
 * compiled, hints in the prefilter) and screens texts against it.
 *
 * policy_check() keeps every piece of scratch state on its own call:
 * normalized forms, prefilter hits, Oniguruma match parameters.  Nothing
 * global changes after the first policy_load() initialized Oniguruma.
 * The one thing a check may change in a policy is a rule's compiled
 * pattern, the first time it runs, in a policy loaded from texts checked
 * before (struct fw_pattern).
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <oniguruma.h>

#include "common/xmalloc.h"
#include "policy/firewall/literals.h"
#include "policy/firewall/normalize.h"
#include "policy/firewall/firewall.h"
#include "policy/firewall/prefilter.h"

#define FW_MAX_FILE		(1024 * 1024)	/* bytes per rule file */
#define FW_EXCERPT_BEFORE	(POLICY_MAX_EXCERPT / 4)
#define FW_NOALLOW		((size_t)-1)
#define FW_WINDOWS_INLINE	4	/* windows kept in place, no malloc */
#define FW_OFFSETS_INLINE	8	/* ... literal offsets */
#define FW_NEED_BIT		0x80000000U	/* prefilter id of a need */
#define FW_OCC_MIN		64	/* first allocation of need sightings */
#define FW_NEWLINES_MIN		64	/* ... of a form's newline offsets */
#define FW_RULES_MIN		64	/* ... of a policy's rules */
/* A contents callout before the pattern: fw_bound_callout bounds starts. */
#define FW_BOUND_OPEN		"(?{b})(?:"
/*
 * After the pattern, 25 empty groups that never run (the branch fails
 * first; they come after the pattern's own, so \\1 and the others keep
 * their numbers).  Oniguruma 6.9.8 keeps the match stack of a pattern of
 * fewer than 25 groups on the C stack and, at the end of every match,
 * copies it to the heap for the next (it is freed unused after a
 * match): that copy was a third of the cost of a match that fails at
 * once.  With more groups it allocates the stack on the heap to begin
 * with, and copies nothing.
 */
#define FW_BOUND_CLOSE		")(?:(?!)()()()()()()()()()()()()()()()" \
				"()()()()()()()()()())?"

/* Findings on the input itself, not from a rule file. */
#define FW_RULE_TOO_LONG	"input.too-long"
#define FW_RULE_INVALID_UTF8	"input.invalid-utf8"
#define FW_RULE_NUL		"input.nul-byte"
#define FW_CATEGORY_INPUT	"input"

struct fw_rule {
	char		*id;
	char		*category;
	char		*message;
	char		*file;
	unsigned	 line;
	int		 severity;
	unsigned	 targets;
	int		 hinted;	/* runs only where a hint was seen */
	unsigned	*needs;		/* ... and one of these need literals */
	uint64_t	*needmask;	/* (the same, as bits) */
	size_t		 nneeds;	/* (the policy's) is near it */
	size_t		 reach;		/* ... starting this far before it */
	int		 line_only;	/* ... but not before its line */
	char		*allow_id;	/* allow rule: the rule it cancels */
	size_t		 allow;		/* ... resolved to its index */
	enum policy_context context;	/* context rule: what it says */
	struct fw_pattern *pat;		/* behind a pointer: see below */
};

/*
 * The literals one of which starts every match of a rule (literals.c):
 * a window of starts is tried only where one stands, each place by one
 * anchored match, rather than by a search that tries every start.
 */
struct fw_lead {
	uint8_t		 first[256 / 8];	/* bytes that start one, both
						   cases */
	uint16_t	 from[256];	/* literals starting with a (lower */
	uint16_t	 to[256];	/* case) byte: lit[from] to lit[to] */
	int		 edge_before;	/* every literal has a \\b before */
	size_t		 n;
	struct fw_lead_lit {
		char	 s[LIT_LEN_MAX + 1];	/* lower case */
		size_t	 len;
		int	 edge_before;	/* a \\b before it */
		int	 edge_after;	/* ... after it */
	}		 lit[];		/* n of them */
};

/*
 * A rule's bounded pattern.  A worker compiles the texts the master
 * checked (policy_load_texts_again), and most of its rules never run
 * there: each is compiled the first time a check needs it, and its text
 * kept until then.  Behind a pointer, so that a const policy may fill it.
 */
struct fw_pattern {
	regex_t		*re;		/* NULL: not compiled yet */
	char		*text;		/* NULL once compiled */
	struct fw_lead	*lead;		/* read when compiled; NULL: none */
};

/*
 * A need literal, kept once however many rules need it: a scan records
 * where it occurs once, and each rule then looks its needs up.
 */
struct fw_need {
	char		*lit;		/* as written, \b and all */
};

/* Rule indexes, in rule order. */
struct fw_list {
	size_t		*v;
	size_t		 n;
};

struct policy {
	struct fw_rule		*rules;
	size_t			 nrules;
	size_t			 caprules;	/* allocated, grown by half */
	/*
	 * A check visits the rules a hint was seen for, and these: an
	 * ordinary rule without hints, the allow and the context rules.
	 */
	struct fw_list		 plain;
	struct fw_list		 allows;
	struct fw_list		 asks;
	struct fw_list		 runs;
	struct fw_need		*needs;
	size_t			 nneeds;
	struct prefilter	*pf;
	unsigned long		 retry_limit;
	unsigned long		 search_limit;
	int			 checked;	/* texts accepted before: no
						   stand-alone compile */
};

/* What one rule did to one text. */
struct fw_hit {
	int		 listed;	/* in the scan's active list */
	int		 matched;
	int		 overrun;
	int		 allowed;
	enum policy_form form;
	size_t		 pos;		/* match offset in that form */
};

static const char *const fw_form_names[POLICY_NFORMS] = {
	"raw", "folded", "shell", "decoded"
};
static const char *const fw_target_names[] = { "prompt", "bash", "path" };

const char *
policy_form_name(enum policy_form f)
{
	return (unsigned)f < POLICY_NFORMS ? fw_form_names[f] : "unknown";
}

const char *
policy_target_name(enum policy_target t)
{
	return (unsigned)t < sizeof fw_target_names / sizeof fw_target_names[0]
	    ? fw_target_names[t] : "unknown";
}

int
policy_target_parse(const char *s, enum policy_target *t)
{
	size_t	i;

	for (i = 0; i < sizeof fw_target_names / sizeof fw_target_names[0];
	    i++) {
		if (strcmp(s, fw_target_names[i]) == 0) {
			*t = (enum policy_target)i;
			return 0;
		}
	}
	return -1;
}

static void
fw_onig_init(void)
{
	static OnigEncoding	encs[] = { ONIG_ENCODING_UTF8 };

	/* Idempotent in Oniguruma itself. */
	onig_initialize(encs, sizeof encs / sizeof encs[0]);
}

static void
fw_rule_clear(struct fw_rule *r)
{
	free(r->id);
	free(r->category);
	free(r->message);
	free(r->file);
	free(r->allow_id);
	free(r->needs);
	free(r->needmask);
	if (r->pat != NULL) {
		if (r->pat->re != NULL)
			onig_free(r->pat->re);
		free(r->pat->lead);
		free(r->pat->text);
		free(r->pat);
	}
}

void
policy_free(struct policy *p)
{
	size_t	i;

	if (p == NULL)
		return;
	for (i = 0; i < p->nrules; i++)
		fw_rule_clear(&p->rules[i]);
	free(p->rules);
	for (i = 0; i < p->nneeds; i++)
		free(p->needs[i].lit);
	free(p->needs);
	free(p->plain.v);
	free(p->allows.v);
	free(p->asks.v);
	free(p->runs.v);
	prefilter_free(p->pf);
	free(p);
}

size_t
policy_nrules(const struct policy *p)
{
	return p != NULL ? p->nrules : 0;
}

void
policy_set_retry_limit(struct policy *p, unsigned long limit)
{
	if (p == NULL || limit == 0)
		return;
	p->retry_limit = limit;
	if (p->search_limit < limit)
		p->search_limit = limit;
}

static struct fw_rule *
fw_find(const struct policy *p, const char *id)
{
	size_t	i;

	for (i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i].id, id) == 0)
			return &p->rules[i];
	}
	return NULL;
}

static int
fw_compile(regex_t **re, const char *pat, size_t len, OnigErrorInfo *einfo)
{
	const OnigUChar	*u = (const OnigUChar *)pat;

	return onig_new(re, u, u + len,
	    ONIG_OPTION_IGNORECASE | ONIG_OPTION_IGNORECASE_IS_ASCII,
	    ONIG_ENCODING_UTF8, ONIG_SYNTAX_ONIGURUMA, einfo);
}

/*
 * The pattern behind a callout that runs before every match attempt, so
 * that one search can cover a window of starts and stop past its end
 * (fw_bound_callout): the search keeps Oniguruma's own skipping, and its
 * match may still run past the window, to the real end of the text.
 */
static int
fw_compile_bounded(regex_t **re, const char *pat, OnigErrorInfo *einfo)
{
	char	*wrapped;
	int	 rc, n;

	n = xasprintf(&wrapped, "%s%s%s", FW_BOUND_OPEN, pat, FW_BOUND_CLOSE);
	rc = fw_compile(re, wrapped, (size_t)n, einfo);
	free(wrapped);
	return rc;
}

/* Where the match attempts of a windowed search must start, at the latest. */
struct fw_bound {
	const OnigUChar	*last;
};

static int
fw_bound_callout(OnigCalloutArgs *args, void *arg)
{
	const struct fw_bound	*b = arg;

	if (onig_get_start_by_callout_args(args) > b->last)
		return ONIG_ABORT;	/* past the window: stop the search */
	return ONIG_CALLOUT_SUCCESS;
}

/* A hint may start or end with \\b: the literal must sit on a word edge. */
static void
fw_add_hint(struct prefilter *pf, const char *hint, unsigned id)
{
	static const char	 wb[] = "\\b";
	size_t			 len = strlen(hint);
	unsigned		 flags = 0;

	if (len > 2 && strncmp(hint, wb, 2) == 0) {
		flags |= PREFILTER_WORD_START;
		hint += 2;
		len -= 2;
	}
	if (len > 2 && strncmp(hint + len - 2, wb, 2) == 0) {
		flags |= PREFILTER_WORD_END;
		len -= 2;
	}
	prefilter_add(pf, hint, len, id, flags);
}

/* The index of a need literal, added to the prefilter when new. */
static unsigned
fw_need_id(struct policy *p, const char *lit)
{
	size_t	i;

	for (i = 0; i < p->nneeds; i++) {
		if (strcmp(p->needs[i].lit, lit) == 0)
			return (unsigned)i;
	}
	p->needs = xreallocarray(p->needs, p->nneeds + 1, sizeof *p->needs);
	p->needs[p->nneeds].lit = xstrdup(lit);
	fw_add_hint(p->pf, lit, (unsigned)p->nneeds | FW_NEED_BIT);
	return (unsigned)p->nneeds++;
}

static int
fw_lead_cmp(const void *a, const void *b)
{
	const struct fw_lead_lit	*x = a, *y = b;

	return (unsigned char)x->s[0] - (unsigned char)y->s[0];
}

/* The leading literals of a pattern, if it has any. */
static struct fw_lead *
fw_lead_new(const char *pattern)
{
	struct lit_set		*set;
	struct fw_lead		*l = NULL;
	struct fw_lead_lit	*lit;
	const char		*p;
	unsigned char		 c;
	size_t			 i;

	set = xmalloc(sizeof *set);
	if (lit_prefixes(pattern, set) == 0) {
		l = xcalloc(1, sizeof *l + set->n * sizeof l->lit[0]);
		for (i = 0; i < set->n; i++) {
			/* Word edges out of the string, noted at its ends. */
			lit = &l->lit[i];
			p = set->s[i];
			lit->edge_before = *p == LIT_WORD;
			for (; *p != '\0'; p++) {
				if (*p != LIT_WORD)
					lit->s[lit->len++] = *p;
			}
			lit->edge_after = p[-1] == LIT_WORD;
		}
		l->n = set->n;
		/* Sorted by first byte: a place compares only its own. */
		qsort(l->lit, l->n, sizeof l->lit[0], fw_lead_cmp);
		l->edge_before = 1;
		for (i = 0; i < l->n; i++) {
			c = (unsigned char)l->lit[i].s[0];
			if (i == 0 || c != (unsigned char)l->lit[i - 1].s[0])
				l->from[c] = (uint16_t)i;
			l->to[c] = (uint16_t)(i + 1);
			l->first[c / 8] |= 1U << (c % 8);
			c = (unsigned char)toupper(c);
			l->first[c / 8] |= 1U << (c % 8);
			l->edge_before &= l->lit[i].edge_before;
		}
	}
	free(set);
	return l;
}

/* A byte of a word (1), not (0), or not known: beyond ASCII (-1). */
static int
fw_word(unsigned char c)
{
	if (c >= 0x80)
		return -1;
	return isalnum(c) || c == '_';
}

/* Whether \\b may hold between bytes of word classes a and b. */
static int
fw_edge(int a, int b)
{
	return a < 0 || b < 0 || a != b;
}

/*
 * Whether one of the leading literals starts at offset pos of the len
 * bytes at s, with a word edge where its \\b stands.
 */
static int
fw_lead_at(const struct fw_lead *l, const unsigned char *s, size_t len,
    size_t pos)
{
	const struct fw_lead_lit	*lit;
	size_t				 i, end;
	unsigned char			 c = (unsigned char)tolower(s[pos]);

	if (l->edge_before && !fw_edge(pos > 0 ? fw_word(s[pos - 1]) : 0,
	    fw_word(s[pos])))
		return 0;
	for (i = l->from[c]; i < l->to[c]; i++) {
		lit = &l->lit[i];
		end = pos + lit->len;
		if (end > len ||
		    strncasecmp((const char *)s + pos, lit->s, lit->len) != 0)
			continue;
		if (lit->edge_before && !fw_edge(pos > 0 ? fw_word(s[pos - 1]) :
		    0, fw_word(s[pos])))
			continue;
		if (lit->edge_after && !fw_edge(fw_word(s[end - 1]),
		    end < len ? fw_word(s[end]) : 0))
			continue;
		return 1;
	}
	return 0;
}

/* Parser callback: compiles one rule into the policy. */
static int
fw_add_rule(const struct policy_rule_def *def, void *arg, char *why,
    size_t whylen)
{
	struct policy		*p = arg;
	struct fw_rule		*r;
	OnigErrorInfo		 einfo;
	OnigUChar		 msg[ONIG_MAX_ERROR_MESSAGE_LEN];
	const OnigUChar		*empty = (const OnigUChar *)"";
	regex_t			*re;
	size_t			 i;
	int			 rc;

	if (p->nrules >= POLICY_MAX_RULES) {
		snprintf(why, whylen, "more than %d rules", POLICY_MAX_RULES);
		return -1;
	}
	/* Texts accepted before were refused for this already. */
	if (!p->checked && fw_find(p, def->id) != NULL) {
		snprintf(why, whylen, "duplicate rule id %s", def->id);
		return -1;
	}
	/*
	 * Compiled on its own first: the bounded copy would take a pattern
	 * such as "a)|(?:b" whose tail escapes the bound.  Texts accepted
	 * before (policy_load_texts_again) skip this.
	 */
	if (!p->checked && (rc = fw_compile(&re, def->pattern,
	    strlen(def->pattern), &einfo)) != ONIG_NORMAL) {
		onig_error_code_to_str(msg, rc, &einfo);
		snprintf(why, whylen, "rule %s: bad pattern: %s", def->id,
		    (char *)msg);
		return -1;
	}
	/* A pattern that matches nothing at all would match every text. */
	if (!p->checked && onig_search(re, empty, empty, empty, empty, NULL,
	    ONIG_OPTION_NONE) >= 0) {
		onig_free(re);
		snprintf(why, whylen, "rule %s: pattern matches the empty text",
		    def->id);
		return -1;
	}
	if (!p->checked)
		onig_free(re);
	/*
	 * Valid on its own: now the copy that asks before each start, at
	 * once where the texts are being checked, on first use otherwise.
	 */
	re = NULL;
	if (!p->checked && (rc = fw_compile_bounded(&re, def->pattern,
	    &einfo)) != ONIG_NORMAL) {
		onig_error_code_to_str(msg, rc, &einfo);
		snprintf(why, whylen, "rule %s: bad pattern: %s", def->id,
		    (char *)msg);
		return -1;
	}

	if (p->nrules == p->caprules) {
		p->caprules += p->caprules / 2 + FW_RULES_MIN;
		p->rules = xreallocarray(p->rules, p->caprules,
		    sizeof *p->rules);
	}
	r = &p->rules[p->nrules];
	memset(r, 0, sizeof *r);
	r->id = xstrdup(def->id);
	r->category = xstrdup(def->category);
	r->message = xstrdup(def->message);
	r->file = xstrdup(def->file);
	r->line = def->line;
	r->severity = def->severity;
	r->targets = def->targets;
	r->allow_id = def->allow != NULL ? xstrdup(def->allow) : NULL;
	r->allow = FW_NOALLOW;
	r->context = def->context;
	r->pat = xcalloc(1, sizeof *r->pat);
	r->pat->re = re;
	if (re == NULL)
		r->pat->text = xstrdup(def->pattern);
	r->hinted = def->nhints > 0;
	if (re != NULL)
		r->pat->lead = fw_lead_new(def->pattern);
	r->reach = def->reach >= 0 ? (size_t)def->reach : POLICY_DEFAULT_REACH;
	r->line_only = def->line_only;
	for (i = 0; i < def->nhints; i++)
		fw_add_hint(p->pf, def->hints[i], (unsigned)p->nrules);
	if (def->nneeds > 0)
		r->needs = xcalloc(def->nneeds, sizeof *r->needs);
	for (i = 0; i < def->nneeds; i++)
		r->needs[r->nneeds++] = fw_need_id(p, def->needs[i]);
	p->nrules++;
	return 0;
}

static struct policy *
fw_policy_new(void)
{
	struct policy	*p;

	fw_onig_init();
	p = xcalloc(1, sizeof *p);
	p->pf = prefilter_new();
	p->retry_limit = POLICY_RETRY_LIMIT;
	p->search_limit = POLICY_SEARCH_LIMIT;
	return p;
}

static void
fw_list_add(struct fw_list *l, size_t i, size_t max)
{
	if (l->v == NULL)
		l->v = xcalloc(max, sizeof *l->v);
	l->v[l->n++] = i;
}

/*
 * Links allow rules to the rules they name, lists the rules every check
 * visits, then freezes the prefilter.
 */
static int
fw_policy_finish(struct policy *p, char *err, size_t errlen)
{
	struct fw_rule	*r, *target;
	size_t		 i, k;

	for (i = 0; i < p->nrules; i++) {
		r = &p->rules[i];
		if (r->allow_id == NULL)
			continue;
		target = fw_find(p, r->allow_id);
		if (target == NULL || target->allow_id != NULL) {
			snprintf(err, errlen, "%s:%u: rule %s allows %s, "
			    "which is not a rule", r->file, r->line, r->id,
			    r->allow_id);
			return -1;
		}
		r->allow = (size_t)(target - p->rules);
	}
	for (i = 0; i < p->nrules; i++) {
		r = &p->rules[i];
		if (r->nneeds > 0)
			r->needmask = xcalloc((p->nneeds + 63) / 64,
			    sizeof *r->needmask);
		for (k = 0; k < r->nneeds; k++)
			r->needmask[r->needs[k] / 64] |= 1ULL <<
			    (r->needs[k] % 64);
		if (r->allow_id != NULL)
			fw_list_add(&p->allows, i, p->nrules);
		else if (r->context == POLICY_CONTEXT_ASK)
			fw_list_add(&p->asks, i, p->nrules);
		else if (r->context == POLICY_CONTEXT_RUN)
			fw_list_add(&p->runs, i, p->nrules);
		else if (!r->hinted)
			fw_list_add(&p->plain, i, p->nrules);
	}
	prefilter_build(p->pf);
	return 0;
}

static int
fw_read_file(const char *path, char **buf, size_t *len, char *err,
    size_t errlen)
{
	FILE	*f;
	size_t	 n;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	*buf = xmalloc(FW_MAX_FILE + 1);
	n = fread(*buf, 1, FW_MAX_FILE + 1, f);
	if (ferror(f) || n > FW_MAX_FILE) {
		snprintf(err, errlen, "%s: %s", path, ferror(f) ?
		    strerror(errno) : "file too large");
		fclose(f);
		free(*buf);
		return -1;
	}
	fclose(f);
	*len = n;
	return 0;
}

struct policy *
policy_load(const char *const *files, size_t nfiles, char *err,
    size_t errlen)
{
	struct policy	*p;
	char		*buf;
	size_t		 i, len;
	int		 rc;

	if (nfiles == 0 || nfiles > POLICY_MAX_FILES) {
		snprintf(err, errlen, "need 1 to %d rule files",
		    POLICY_MAX_FILES);
		return NULL;
	}
	p = fw_policy_new();
	for (i = 0; i < nfiles; i++) {
		if (fw_read_file(files[i], &buf, &len, err, errlen) != 0) {
			policy_free(p);
			return NULL;
		}
		rc = policy_parse_rules(files[i], buf, len, fw_add_rule, p,
		    err, errlen);
		free(buf);
		if (rc != 0) {
			policy_free(p);
			return NULL;
		}
	}
	if (fw_policy_finish(p, err, errlen) != 0) {
		policy_free(p);
		return NULL;
	}
	return p;
}

struct policy *
policy_load_buffer(const char *name, const char *buf, size_t len, char *err,
    size_t errlen)
{
	struct policy	*p;

	p = fw_policy_new();
	if (policy_parse_rules(name, buf, len, fw_add_rule, p, err,
	    errlen) != 0 || fw_policy_finish(p, err, errlen) != 0) {
		policy_free(p);
		return NULL;
	}
	return p;
}

static struct policy *
fw_load_texts(const struct policy_text *t, size_t n, int checked, char *err,
    size_t errlen)
{
	struct policy	*p;
	size_t		 i;

	if (n == 0 || n > POLICY_MAX_FILES) {
		snprintf(err, errlen, "need 1 to %d rule files",
		    POLICY_MAX_FILES);
		return NULL;
	}
	p = fw_policy_new();
	p->checked = checked;
	for (i = 0; i < n; i++) {
		if (t[i].len > FW_MAX_FILE) {
			snprintf(err, errlen, "%s: file too large", t[i].name);
			policy_free(p);
			return NULL;
		}
		if (policy_parse_rules(t[i].name, t[i].text, t[i].len,
		    fw_add_rule, p, err, errlen) != 0) {
			policy_free(p);
			return NULL;
		}
	}
	if (fw_policy_finish(p, err, errlen) != 0) {
		policy_free(p);
		return NULL;
	}
	return p;
}

struct policy *
policy_load_texts(const struct policy_text *t, size_t n, char *err,
    size_t errlen)
{
	return fw_load_texts(t, n, 0, err, errlen);
}

struct policy *
policy_load_texts_again(const struct policy_text *t, size_t n, char *err,
    size_t errlen)
{
	return fw_load_texts(t, n, 1, err, errlen);
}

int
policy_read_file(const char *path, char **buf, size_t *len, char *err,
    size_t errlen)
{
	return fw_read_file(path, buf, len, err, errlen);
}

static void
fw_copy(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src);
}

static void
fw_excerpt(struct policy_verdict *v, const char *s, size_t len, size_t pos)
{
	size_t	start, end, i, n = 0;
	char	c;

	if (pos > len)
		pos = len;
	start = pos > FW_EXCERPT_BEFORE ? pos - FW_EXCERPT_BEFORE : 0;
	/* Never start or end inside a UTF-8 sequence. */
	while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80)
		start--;
	end = start + POLICY_MAX_EXCERPT < len ? start + POLICY_MAX_EXCERPT :
	    len;
	while (end < len && end > start &&
	    ((unsigned char)s[end] & 0xC0) == 0x80)
		end--;
	for (i = start; i < end; i++) {
		c = s[i];
		/* Controls would be noise in a log line or an event. */
		v->excerpt[n++] = ((unsigned char)c < 0x20 || c == 0x7F) ?
		    ' ' : c;
	}
	v->excerpt[n] = '\0';
}

static void
fw_add_match(struct policy_verdict *v, const char *id, const char *category,
    const char *message, int severity, enum policy_form form, int overrun,
    int allowed)
{
	struct policy_match	*m;

	size_t			 i, low = 0;

	v->nfound++;
	if (!allowed)
		v->score += severity;
	if (v->nmatches == POLICY_MAX_MATCHES) {
		/* Full: keep the most severe, dropping the least. */
		for (i = 1; i < v->nmatches; i++) {
			if (v->matches[i].severity < v->matches[low].severity)
				low = i;
		}
		if (allowed || v->matches[low].severity >= severity)
			return;
		m = &v->matches[low];
	} else
		m = &v->matches[v->nmatches++];
	fw_copy(m->rule, sizeof m->rule, id);
	fw_copy(m->category, sizeof m->category, category);
	fw_copy(m->message, sizeof m->message, message);
	m->severity = severity;
	m->form = form;
	m->overrun = overrun;
	m->allowed = allowed;
}

static int
fw_same(const struct norm_buf *a, const struct norm_buf *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Patterns ignore ASCII case: a form equal but for it adds nothing. */
static int
fw_same_nocase(const struct norm_buf *a, const struct norm_buf *b)
{
	return a->len == b->len && strncasecmp(a->data, b->data, a->len) == 0;
}

/* Offsets of literals in one form, kept sorted. */
struct fw_offsets {
	size_t	 n;
	size_t	 cap;
	size_t	*v;			/* in, or from the heap when it grew */
	size_t	 in[FW_OFFSETS_INLINE];
};

/*
 * Where a hinted rule may match in one form: the offsets at which a match
 * may start, from its reach before each hint seen up to the hint, merged.
 * For a rule with needs, its hints are first kept apart, and a hint opens
 * a window only once one of the rule's need literals is seen close to it.
 */
struct fw_windows {
	size_t			 n;
	size_t			 cap;
	size_t			*from;		/* from_in, or the heap */
	size_t			*to;		/* inclusive */
	size_t			 from_in[FW_WINDOWS_INLINE];
	size_t			 to_in[FW_WINDOWS_INLINE];
	struct fw_offsets	 hints;
};

struct fw_scan {
	const struct policy	 *p;
	unsigned		  tbit;
	const char		 *data;		/* the form scanned */
	size_t			  len;
	struct fw_windows	**win;		/* per rule, NULL: no hint */
	struct fw_windows	 *pool;		/* what win[] points to */
	size_t			  npool;
	struct fw_hit		 *hits;
	size_t			 *active;	/* rules with windows */
	size_t			  nactive;
	/*
	 * Need literals seen in the form, by offset: one array for all,
	 * grown as needed, rather than one per need cleared every check.
	 */
	struct fw_occ {
		unsigned	  need;
		size_t		  at;
	}			 *occ;
	size_t			  nocc;
	size_t			  capocc;
	int			  needy;	/* hints of rules with needs */
};

/*
 * An array that starts in place and moves to the heap when it outgrows
 * it: most rules see a few hints in a text, and a malloc for each was a
 * tenth of a check.
 */
static size_t *
fw_grow(size_t *v, const size_t *in, size_t n, size_t cap)
{
	size_t	*nv;

	if (v != in)
		return xreallocarray(v, cap, sizeof *v);
	nv = xreallocarray(NULL, cap, sizeof *v);
	memcpy(nv, in, n * sizeof *v);
	return nv;
}

static void
fw_offsets_add(struct fw_offsets *o, size_t at)
{
	size_t	i;

	if (o->cap == 0) {
		o->v = o->in;
		o->cap = FW_OFFSETS_INLINE;
	} else if (o->n == o->cap) {
		o->v = fw_grow(o->v, o->in, o->n, o->cap * 2);
		o->cap *= 2;
	}
	/* Literals are found in the order they end: starts almost sorted. */
	for (i = o->n; i > 0 && o->v[i - 1] > at; i--)
		o->v[i] = o->v[i - 1];
	o->v[i] = at;
	o->n++;
}

/* The first match start a hint at offset at allows. */
static size_t
fw_window_start(const struct fw_scan *sc, const struct fw_rule *r, size_t at)
{
	const char	*nl;
	size_t		 from;

	from = at > r->reach ? at - r->reach : 0;
	/* A rule kept to its hint's line starts after the newline before. */
	if (r->line_only && at > from &&
	    (nl = memrchr(sc->data + from, '\n', at - from)) != NULL)
		from = (size_t)(nl - sc->data) + 1;
	return from;
}

static void
fw_window_add(struct fw_windows *w, size_t from, size_t at)
{
	/*
	 * Hints come in the order they end, so starts are almost sorted: a
	 * window that touches the last one widens it, both ways.
	 */
	if (w->n > 0 && from <= w->to[w->n - 1] + 1) {
		if (from < w->from[w->n - 1])
			w->from[w->n - 1] = from;
		if (at > w->to[w->n - 1])
			w->to[w->n - 1] = at;
		return;
	}
	/* At most one window per hint seen, so bounded by the text. */
	if (w->n == w->cap) {
		w->from = fw_grow(w->from, w->from_in, w->n, w->cap * 2);
		w->to = fw_grow(w->to, w->to_in, w->n, w->cap * 2);
		w->cap *= 2;
	}
	w->from[w->n] = from;
	w->to[w->n++] = at;
}

static void
fw_occ_add(struct fw_scan *sc, unsigned need, size_t at)
{
	size_t	i;

	if (sc->nocc == sc->capocc) {
		sc->capocc = sc->capocc == 0 ? FW_OCC_MIN : sc->capocc * 2;
		sc->occ = xreallocarray(sc->occ, sc->capocc, sizeof *sc->occ);
	}
	/* Found in the order they end: starts almost sorted. */
	for (i = sc->nocc; i > 0 && sc->occ[i - 1].at > at; i--)
		sc->occ[i] = sc->occ[i - 1];
	sc->occ[i].need = need;
	sc->occ[i].at = at;
	sc->nocc++;
}

static void
fw_hint_seen(void *arg, unsigned id, size_t at)
{
	struct fw_scan		*sc = arg;
	const struct fw_rule	*r;
	struct fw_windows	*w;

	if (id & FW_NEED_BIT) {
		fw_occ_add(sc, id & ~FW_NEED_BIT, at);
		return;
	}
	r = &sc->p->rules[id];
	if ((r->targets & sc->tbit) == 0)
		return;
	if ((w = sc->win[id]) == NULL) {
		if (!sc->hits[id].listed) {
			sc->hits[id].listed = 1;
			sc->active[sc->nactive++] = id;
		}
		w = sc->win[id] = &sc->pool[sc->npool++];
		memset(w, 0, sizeof *w);
		w->from = w->from_in;
		w->to = w->to_in;
		w->cap = FW_WINDOWS_INLINE;
	}
	if (r->nneeds > 0) {
		fw_offsets_add(&w->hints, at);
		sc->needy = 1;
	} else
		fw_window_add(w, fw_window_start(sc, r, at), at);
}

/* Whether one of rule r's need literals starts in [from, to]. */
static int
fw_need_near(const struct fw_scan *sc, const struct fw_rule *r, size_t from,
    size_t to)
{
	size_t		lo = 0, hi = sc->nocc, mid;
	unsigned	n;

	/* The first sighting at or after from. */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (sc->occ[mid].at < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < sc->nocc && sc->occ[lo].at <= to; lo++) {
		n = sc->occ[lo].need;
		if (r->needmask[n / 64] & (1ULL << (n % 64)))
			return 1;
	}
	return 0;
}

/*
 * After the scan of a form: a hint of a rule with needs opens its window
 * only if a need starts between the window's start and the end of the
 * hint's line (hotplex-policy(5)).
 */
static void
fw_needs_settle(struct fw_scan *sc)
{
	const struct fw_rule	*r;
	struct fw_windows	*w;
	const char		*nl;
	size_t			 i, k, from, at, eol;

	for (i = 0; sc->needy && i < sc->p->nrules; i++) {
		r = &sc->p->rules[i];
		if (r->nneeds == 0 || (w = sc->win[i]) == NULL ||
		    w->hints.n == 0)
			continue;
		for (k = 0; k < w->hints.n; k++) {
			at = w->hints.v[k];
			from = fw_window_start(sc, r, at);
			nl = memchr(sc->data + at, '\n', sc->len - at);
			eol = nl != NULL ? (size_t)(nl - sc->data) : sc->len;
			if (fw_need_near(sc, r, from, eol))
				fw_window_add(w, from, at);
		}
		w->hints.n = 0;
	}
	sc->needy = 0;
	sc->nocc = 0;
}

/*
 * A rule's compiled pattern, compiled now if it was not yet; NULL if that
 * fails (out of memory: the texts were checked), which the caller reports
 * as an error, so that the rule fails closed; the next check tries again.
 */
static regex_t *
fw_rule_re(const struct fw_rule *r)
{
	struct fw_pattern	*pat = r->pat;
	OnigErrorInfo		 einfo;

	if (pat->re != NULL)
		return pat->re;
	if (fw_compile_bounded(&pat->re, pat->text, &einfo) != ONIG_NORMAL) {
		pat->re = NULL;
		return NULL;
	}
	pat->lead = fw_lead_new(pat->text);
	free(pat->text);
	pat->text = NULL;
	return pat->re;
}

/*
 * One window of starts [from, to]: a search that stops past to, or, for a
 * window of one start, a match anchored there, which is cheaper.  Returns
 * the start of a match, ONIG_MISMATCH if none is left up to the end of
 * the text, ONIG_ABORT if none starts in the window, or an error.
 */
static int
fw_search_window(const struct fw_rule *r, const struct norm_buf *nb,
    size_t from, size_t to, OnigRegion *region, OnigMatchParam *mp,
    struct fw_bound *b)
{
	const OnigUChar		*s = (const OnigUChar *)nb->data;
	const OnigUChar		*e = s + nb->len;
	const struct fw_lead	*lead;
	regex_t			*re;
	size_t			 pos;
	int			 rc;

	if ((re = fw_rule_re(r)) == NULL)
		return ONIGERR_MEMORY;
	if (to > nb->len)
		to = nb->len;
	b->last = s + to;
	if ((lead = r->pat->lead) != NULL) {
		/* Only where a leading literal stands, in order. */
		for (pos = from; pos <= to && pos < nb->len; pos++) {
			/* The byte test first: most places fail it. */
			if ((lead->first[s[pos] / 8] &
			    (1U << (s[pos] % 8))) == 0 ||
			    !fw_lead_at(lead, s, nb->len, pos))
				continue;
			rc = onig_match_with_param(re, s, e, s + pos, region,
			    ONIG_OPTION_NONE, mp);
			if (rc >= 0)
				return (int)pos;
			if (rc != ONIG_MISMATCH)
				return rc;
		}
		return ONIG_ABORT;
	}
	if (from == to) {
		rc = onig_match_with_param(re, s, e, s + from, region,
		    ONIG_OPTION_NONE, mp);
		if (rc >= 0)
			return (int)from;
		return rc == ONIG_MISMATCH ? ONIG_ABORT : rc;
	}
	return onig_search_with_param(re, s, e, s + from, e, region,
	    ONIG_OPTION_NONE, mp);
}

/*
 * Matches one rule in one form: one search per window of starts its hints
 * allow, or, for a rule without hints, one search through the whole form.
 * Each search sees the whole text as context for ^, $, \\b and look-around
 * and stops at the first attempt past its window (fw_bound_callout), each
 * attempt under the match retry limit.  A search that finds nothing up to
 * the end of the form settles the later windows too.
 */
static int
fw_search_rule(const struct policy *p, const struct fw_rule *r,
    const struct norm_buf *nb, const struct fw_windows *w,
    OnigMatchParam *mp, struct fw_bound *b)
{
	const OnigUChar	*s = (const OnigUChar *)nb->data;
	const OnigUChar	*e = s + nb->len;
	size_t		 k, settled = nb->len + 1;
	regex_t		*re;
	int		 rc;

	if (!r->hinted) {
		if ((re = fw_rule_re(r)) == NULL)
			return ONIGERR_MEMORY;
		b->last = e;
		onig_set_retry_limit_in_search_of_match_param(mp,
		    p->search_limit);
		return onig_search_with_param(re, s, e, s, e, NULL,
		    ONIG_OPTION_NONE, mp);
	}
	if (w == NULL)
		return ONIG_MISMATCH;
	/* Starts are bounded by the window, attempts by the match limit. */
	onig_set_retry_limit_in_search_of_match_param(mp, 0);
	for (k = 0; k < w->n; k++) {
		/* Windows are almost sorted: skip those already settled. */
		if (w->from[k] >= settled)
			continue;
		rc = fw_search_window(r, nb, w->from[k], w->to[k], NULL, mp,
		    b);
		if (rc == ONIG_MISMATCH)
			settled = w->from[k];
		else if (rc != ONIG_ABORT)
			return rc;
	}
	return ONIG_MISMATCH;
}

/* Runs every rule for the target over the forms the prefilter allows. */
/* Whether a rule only weighs the others: an allow or context rule. */
static int
fw_weighs(const struct fw_rule *r)
{
	return r->allow_id != NULL || r->context != POLICY_CONTEXT_NONE;
}

/* Matches rule i against the useful forms, in order, into hits[i]. */
static void
fw_match_rule(const struct policy *p, size_t i, unsigned tbit,
    const struct norm_buf *forms, const int *useful, struct fw_hit *hits,
    OnigMatchParam *mp, struct fw_bound *b, struct fw_windows **win)
{
	const struct fw_rule	*r = &p->rules[i];
	int			 f, rc;

	if ((r->targets & tbit) == 0)
		return;
	for (f = 0; f < POLICY_NFORMS; f++) {
		if (!useful[f])
			continue;
		rc = fw_search_rule(p, r, &forms[f],
		    win[(size_t)f * p->nrules + i], mp, b);
		if (rc == ONIG_MISMATCH)
			continue;
		hits[i].matched = 1;
		hits[i].form = (enum policy_form)f;
		if (rc >= 0)
			hits[i].pos = (size_t)rc;
		else
			hits[i].overrun = 1;	/* fail closed */
		return;
	}
}

/* Adds rule i to the matched list if it matched. */
static void
fw_matched(const struct fw_hit *hits, size_t i, struct fw_list *m)
{
	if (hits[i].matched)
		m->v[m->n++] = i;
}

static int
fw_index_cmp(const void *a, const void *b)
{
	size_t	x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Runs the rules for the target over the forms the prefilter allows, and
 * lists those that matched in m, in rule order (m->v holds nrules).
 * Returns how many windows of the pool it took.
 */
static size_t
fw_match(const struct policy *p, unsigned tbit, struct norm_buf *forms,
    const int *useful, struct fw_hit *hits, OnigMatchParam *mp,
    struct fw_bound *b, struct fw_windows **win, struct fw_windows *pool,
    struct fw_list *m)
{
	const struct fw_rule	*r;
	struct fw_scan		 sc;
	size_t			 i, k;
	int			 f, command = 0, ask = 0;

	sc.p = p;
	sc.tbit = tbit;
	sc.pool = pool;
	sc.npool = 0;
	sc.hits = hits;
	sc.active = xreallocarray(NULL, p->nrules + 1, sizeof *sc.active);
	sc.nactive = 0;
	sc.occ = NULL;
	sc.nocc = sc.capocc = 0;
	sc.needy = 0;
	for (f = 0; f < POLICY_NFORMS; f++) {
		if (!useful[f])
			continue;
		sc.win = win + (size_t)f * p->nrules;
		sc.data = forms[f].data;
		sc.len = forms[f].len;
		prefilter_scan(p->pf, forms[f].data, forms[f].len,
		    fw_hint_seen, &sc);
		fw_needs_settle(&sc);
	}
	free(sc.occ);
	/*
	 * The rules that score first; then only the allow rules whose rule
	 * matched, and the context rules of a prompt where a command rule
	 * matched (ask) and something asked about it (run): the others
	 * could change nothing.
	 */
	/* Rules are independent here: any order gives the same hits. */
	for (k = 0; k < sc.nactive + p->plain.n; k++) {
		i = k < sc.nactive ? sc.active[k] : p->plain.v[k - sc.nactive];
		if (fw_weighs(&p->rules[i]))
			continue;
		fw_match_rule(p, i, tbit, forms, useful, hits, mp, b, win);
		fw_matched(hits, i, m);
		if (hits[i].matched && !hits[i].overrun &&
		    (p->rules[i].targets & POLICY_TARGET_BIT(POLICY_BASH)))
			command = 1;
	}
	free(sc.active);
	for (k = 0; k < p->allows.n; k++) {
		i = p->allows.v[k];
		r = &p->rules[i];
		if (hits[r->allow].matched && !hits[r->allow].overrun) {
			fw_match_rule(p, i, tbit, forms, useful, hits, mp, b,
			    win);
			fw_matched(hits, i, m);
		}
	}
	if (tbit == POLICY_TARGET_BIT(POLICY_PROMPT) && command) {
		for (k = 0; k < p->asks.n; k++) {
			i = p->asks.v[k];
			fw_match_rule(p, i, tbit, forms, useful, hits, mp, b,
			    win);
			fw_matched(hits, i, m);
			ask |= hits[i].matched && !hits[i].overrun;
		}
		for (k = 0; k < p->runs.n && ask; k++) {
			i = p->runs.v[k];
			fw_match_rule(p, i, tbit, forms, useful, hits, mp, b,
			    win);
			fw_matched(hits, i, m);
		}
	}
	qsort(m->v, m->n, sizeof *m->v, fw_index_cmp);
	return sc.npool;
}

static void
fw_windows_free(struct fw_windows **win, struct fw_windows *pool,
    size_t npool)
{
	size_t	i;

	for (i = 0; i < npool; i++) {
		if (pool[i].from != pool[i].from_in) {
			free(pool[i].from);
			free(pool[i].to);
		}
		if (pool[i].hints.v != pool[i].hints.in)
			free(pool[i].hints.v);
	}
	free(win);
	free(pool);
}

/* Line of a text offset: the count of newlines before it. */
static size_t
fw_line_of(const size_t *nl, size_t nnl, size_t pos)
{
	size_t	lo = 0, hi = nnl, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (nl[mid] < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* What fw_rule_lines() does to each line a match of a rule touches. */
struct fw_lines {
	size_t		*mark;		/* mark[l] = val: line done */
	size_t		 val;
	int		*score;		/* NULL: only mark */
	int		 severity;
	const size_t	*skip;		/* skip[l] = val: allowed there */
};

/*
 * Marks every line of one form that a match of rule id touches, once per
 * line, adding its severity to the line unless an allow rule cancelled it
 * there; searches from the hint windows as fw_search_rule() does.  Returns
 * -1 if a search failed (retry limit).
 */
static int
fw_rule_lines(const struct policy *p, size_t id, const struct norm_buf *nb,
    const struct fw_windows *w, const size_t *nl, size_t nnl,
    const struct fw_lines *ln, OnigMatchParam *mp, struct fw_bound *b,
    OnigRegion *region)
{
	const struct fw_rule	*r = &p->rules[id];
	size_t			 k, nw, from, to, l, l0, l1;
	int			 rc;

	nw = r->hinted ? (w != NULL ? w->n : 0) : 1;
	onig_set_retry_limit_in_search_of_match_param(mp, r->hinted ? 0 :
	    p->search_limit);
	for (k = 0; k < nw; k++) {
		from = r->hinted ? w->from[k] : 0;
		to = r->hinted && w->to[k] < nb->len ? w->to[k] : nb->len;
		while (from <= to) {
			rc = fw_search_window(r, nb, from, to, region, mp, b);
			if (rc == ONIG_ABORT || rc == ONIG_MISMATCH)
				break;
			if (rc < 0)
				return -1;
			l0 = fw_line_of(nl, nnl, (size_t)region->beg[0]);
			l1 = fw_line_of(nl, nnl, region->end[0] > region->beg[0] ?
			    (size_t)region->end[0] - 1 : (size_t)region->beg[0]);
			for (l = l0; l <= l1; l++) {
				if (ln->mark[l] == ln->val || (ln->skip != NULL &&
				    ln->skip[l] == ln->val))
					continue;
				ln->mark[l] = ln->val;
				if (ln->score != NULL)
					ln->score[l] += ln->severity;
			}
			/* Once per line: go on after the last line it touched. */
			if (l1 >= nnl)
				break;
			from = nl[l1] + 1;
		}
	}
	return 0;
}

/*
 * What each matched rule counts: its severity, or, in a prompt that only
 * quotes commands, a share of it for a rule that screens Bash commands,
 * once per category (several rules naming one reverse shell are one
 * quoted command).  Fills sev[] for every matched rule (list m).
 */
static void
fw_severities(const struct policy *p, const struct fw_hit *hits, int quoted,
    const struct fw_list *m, int *sev)
{
	const struct fw_rule	*r;
	size_t			 i, j, k, l;

	for (k = 0; k < m->n; k++) {
		i = m->v[k];
		r = &p->rules[i];
		sev[i] = r->severity;
		if (!quoted || !hits[i].matched ||
		    !(r->targets & POLICY_TARGET_BIT(POLICY_BASH)))
			continue;
		sev[i] = r->severity / POLICY_CONTEXT_DIVISOR;
		for (l = 0; l < k; l++) {
			j = m->v[l];
			if (hits[j].matched && !fw_weighs(&p->rules[j]) &&
			    (p->rules[j].targets &
			    POLICY_TARGET_BIT(POLICY_BASH)) &&
			    strcmp(p->rules[j].category, r->category) == 0)
				sev[i] = 0;
		}
	}
}

/*
 * Scores one rule over the lines of form f: first the lines where the
 * allow rules naming it match, then its own lines but those.
 */
static int
fw_rule_score(const struct policy *p, size_t id, int f,
    const struct norm_buf *nb, const struct fw_hit *hits,
    struct fw_windows **win, const size_t *nl, size_t nnl, int *score,
    size_t *stamp, size_t *allowed, OnigMatchParam *mp, struct fw_bound *b,
    OnigRegion *region, const int *sev)
{
	struct fw_lines	 ln;
	size_t		 a, k;

	memset(&ln, 0, sizeof ln);
	ln.val = id + 1;
	if (hits[id].allowed) {
		ln.mark = allowed;
		for (k = 0; k < p->allows.n; k++) {
			a = p->allows.v[k];
			if (p->rules[a].allow != id || !hits[a].matched ||
			    hits[a].overrun || (int)hits[a].form > f)
				continue;
			if (fw_rule_lines(p, a, nb, win[(size_t)f * p->nrules +
			    a], nl, nnl, &ln, mp, b, region) != 0)
				return -1;
		}
		ln.skip = allowed;
	}
	ln.mark = stamp;
	ln.score = score;
	ln.severity = sev[id];
	return fw_rule_lines(p, id, nb, win[(size_t)f * p->nrules + id], nl,
	    nnl, &ln, mp, b, region);
}

/*
 * Offsets of the newlines of a form into *nl (grown as needed, *cap
 * entries, one spare); their count.  memchr, as lines are long next to
 * the bytes a loop would test one by one.
 */
static size_t
fw_newlines(const struct norm_buf *nb, size_t **nl, size_t *cap)
{
	const char	*p = nb->data, *end = nb->data + nb->len, *q;
	size_t		 n = 0;

	for (;;) {
		if (n + 1 >= *cap) {
			*cap = *cap == 0 ? FW_NEWLINES_MIN : *cap * 2;
			*nl = xreallocarray(*nl, *cap, sizeof **nl);
		}
		if (p >= end || (q = memchr(p, '\n', (size_t)(end - p))) ==
		    NULL)
			break;
		(*nl)[n++] = (size_t)(q - nb->data);
		p = q + 1;
	}
	return n;
}

/*
 * The score of a text of several lines: the highest sum, over the lines
 * of the raw, folded and shell forms, of the rules that match on that
 * line, plus what counts everywhere (global: input findings, overruns,
 * matches in the decoded form, which has no lines of the text).  Returns
 * -1 for a text of one line, or if a search failed, so that the caller
 * keeps the whole-text score.
 */
static int
fw_line_score(const struct policy *p, const struct norm_buf *forms,
    const int *useful, const struct fw_hit *hits, const struct fw_list *m,
    struct fw_windows **win, OnigMatchParam *mp, struct fw_bound *b,
    int global, const int *sev)
{
	const struct fw_rule	*r;
	OnigRegion		*region;
	size_t			*nl = NULL, *stamp = NULL, *allowed = NULL;
	size_t			 nnl, i, k, cap = 0;
	int			*score = NULL, best = 0, f, rc = 0, lines = 0;

	if ((region = onig_region_new()) == NULL)
		return -1;
	for (f = POLICY_FORM_RAW; f <= POLICY_FORM_SHELL && rc == 0; f++) {
		if (!useful[f])
			continue;
		nnl = fw_newlines(&forms[f], &nl, &cap);
		lines |= nnl > 0;
		free(score);
		free(stamp);
		free(allowed);
		score = xcalloc(nnl + 1, sizeof *score);
		stamp = xcalloc(nnl + 1, sizeof *stamp);
		allowed = xcalloc(nnl + 1, sizeof *allowed);
		for (k = 0; k < m->n && rc == 0; k++) {
			i = m->v[k];
			r = &p->rules[i];
			if (fw_weighs(r) || !hits[i].matched ||
			    hits[i].overrun ||
			    hits[i].form == POLICY_FORM_DECODED ||
			    (int)hits[i].form > f)
				continue;
			rc = fw_rule_score(p, i, f, &forms[f], hits, win, nl,
			    nnl, score, stamp, allowed, mp, b, region, sev);
		}
		for (i = 0; i <= nnl; i++) {
			if (score[i] > best)
				best = score[i];
		}
	}
	free(nl);
	free(score);
	free(stamp);
	free(allowed);
	onig_region_free(region, 1);
	/* One line: the whole-text score stands, across all forms. */
	return rc == 0 && lines ? best + global : -1;
}

/* Highest severity first, rule order among equals. */
static int
fw_match_cmp(const void *a, const void *b)
{
	const struct policy_match	*x = a, *y = b;

	if (x->allowed != y->allowed)
		return x->allowed - y->allowed;
	return y->severity - x->severity;
}

/*
 * Builds the forms of a text, and marks those worth matching: a form equal
 * to the one before it cannot match anything new.  Returns the findings
 * made on the raw text.
 */
static unsigned
fw_forms(const char *text, size_t len, struct norm_buf *forms, int *useful)
{
	struct norm_buf	decoded, folded;
	unsigned	flags;

	memset(forms, 0, POLICY_NFORMS * sizeof *forms);
	memset(&decoded, 0, sizeof decoded);
	memset(&folded, 0, sizeof folded);
	flags = normalize_raw(text, len, &forms[POLICY_FORM_RAW]);
	normalize_fold(text, len, &forms[POLICY_FORM_FOLDED]);
	normalize_shell_changed(forms[POLICY_FORM_FOLDED].data,
	    forms[POLICY_FORM_FOLDED].len, &forms[POLICY_FORM_SHELL]);
	/* Decoded from the raw text: base64 needs its case. */
	normalize_decode(text, len, &decoded);
	if (decoded.len > 0) {
		normalize_fold(decoded.data, decoded.len, &folded);
		normalize_shell(folded.data, folded.len,
		    &forms[POLICY_FORM_DECODED]);
	}
	normalize_buf_free(&decoded);
	normalize_buf_free(&folded);

	useful[POLICY_FORM_RAW] = 1;
	useful[POLICY_FORM_FOLDED] = !fw_same_nocase(&forms[POLICY_FORM_FOLDED],
	    &forms[POLICY_FORM_RAW]);
	/* Only the lines that shell cleaning changes, and their neighbours. */
	useful[POLICY_FORM_SHELL] = forms[POLICY_FORM_SHELL].len > 0 &&
	    !fw_same(&forms[POLICY_FORM_SHELL], &forms[POLICY_FORM_FOLDED]);
	useful[POLICY_FORM_DECODED] = forms[POLICY_FORM_DECODED].len > 0;
	return flags;
}

static void
fw_input_findings(struct policy_verdict *v, unsigned flags)
{
	if (flags & NORMALIZE_NUL)
		fw_add_match(v, FW_RULE_NUL, FW_CATEGORY_INPUT,
		    "NUL byte in the text", POLICY_SEV_ERROR, POLICY_FORM_RAW,
		    0, 0);
	if (flags & NORMALIZE_INVALID_UTF8)
		fw_add_match(v, FW_RULE_INVALID_UTF8, FW_CATEGORY_INPUT,
		    "text is not valid UTF-8", POLICY_SEV_WARNING,
		    POLICY_FORM_RAW, 0, 0);
}

/*
 * Whether a prompt only quotes commands: a context rule says it asks
 * about one (to explain, review, lint it) and none says it asks to run
 * one.  Bash commands never get this allowance.
 */
static int
fw_quoted(const struct policy *p, enum policy_target target,
    const struct fw_hit *hits, const struct fw_list *m)
{
	size_t	i, k;
	int	ask = 0, run = 0;

	if (target != POLICY_PROMPT)
		return 0;
	for (k = 0; k < m->n; k++) {
		i = m->v[k];
		/* An overrun may hide a request to run: it counts as one. */
		ask |= p->rules[i].context == POLICY_CONTEXT_ASK &&
		    !hits[i].overrun;
		run |= p->rules[i].context == POLICY_CONTEXT_RUN;
	}
	return ask && !run;
}

int
policy_check(const struct policy *p, enum policy_target target,
    const char *text, size_t len, int threshold, struct policy_verdict *v)
{
	struct norm_buf		 forms[POLICY_NFORMS];
	struct fw_hit		*hits;
	struct fw_bound		 bound;
	struct fw_windows	**win, *pool;
	const struct fw_rule	*r;
	OnigMatchParam		*mp;
	struct fw_list		 m;		/* rules that matched */
	size_t			 i, k, best = FW_NOALLOW, npool;
	unsigned		 flags;
	int			 useful[POLICY_NFORMS], f, global, line, *sev;
	int			 cancelled = 0;

	memset(v, 0, sizeof *v);
	v->threshold = threshold > 0 ? threshold : POLICY_DEFAULT_THRESHOLD;
	if (p == NULL || (text == NULL && len > 0) ||
	    (unsigned)target >= sizeof fw_target_names /
	    sizeof fw_target_names[0]) {
		v->blocked = 1;		/* a misuse fails closed too */
		return -1;
	}
	if (len > POLICY_MAX_INPUT) {
		fw_add_match(v, FW_RULE_TOO_LONG, FW_CATEGORY_INPUT,
		    "text longer than the firewall screens",
		    POLICY_SEV_CRITICAL, POLICY_FORM_RAW, 0, 0);
		memset(forms, 0, sizeof forms);
		normalize_raw(text, POLICY_MAX_EXCERPT, &forms[0]);
		fw_excerpt(v, forms[0].data, forms[0].len, 0);
		normalize_buf_free(&forms[0]);
		v->blocked = 1;
		return v->blocked;
	}

	if (text == NULL)
		text = "";
	flags = fw_forms(text, len, forms, useful);

	mp = onig_new_match_param();
	if (mp == NULL) {
		for (f = 0; f < POLICY_NFORMS; f++)
			normalize_buf_free(&forms[f]);
		v->blocked = 1;
		return -1;
	}
	onig_initialize_match_param(mp);
	onig_set_retry_limit_in_match_of_match_param(mp, p->retry_limit);
	onig_set_retry_limit_in_search_of_match_param(mp, p->search_limit);
	onig_set_progress_callout_of_match_param(mp, fw_bound_callout);
	onig_set_callout_user_data_of_match_param(mp, &bound);

	hits = xcalloc(p->nrules + 1, sizeof *hits);
	/* Only the useful forms' windows are ever looked at: cleared. */
	win = xreallocarray(NULL, p->nrules * POLICY_NFORMS + 1, sizeof *win);
	for (f = 0; f < POLICY_NFORMS; f++) {
		if (useful[f])
			memset(win + (size_t)f * p->nrules, 0,
			    p->nrules * sizeof *win);
	}
	/* At most one set of windows per rule and form: taken as needed. */
	pool = xreallocarray(NULL, p->nrules * POLICY_NFORMS + 1,
	    sizeof *pool);
	m.v = xreallocarray(NULL, p->nrules + 1, sizeof *m.v);
	m.n = 0;
	npool = fw_match(p, POLICY_TARGET_BIT(target), forms, useful, hits,
	    mp, &bound, win, pool, &m);

	/* Allow rules cancel only the rule they name, never an overrun. */
	for (k = 0; k < p->allows.n; k++) {
		r = &p->rules[p->allows.v[k]];
		if (hits[p->allows.v[k]].matched &&
		    !hits[p->allows.v[k]].overrun && hits[r->allow].matched &&
		    !hits[r->allow].overrun)
			hits[r->allow].allowed = 1;
	}

	v->quoted = fw_quoted(p, target, hits, &m);
	/* Set for every matched rule, the only ones read. */
	sev = xreallocarray(NULL, p->nrules + 1, sizeof *sev);
	fw_severities(p, hits, v->quoted, &m, sev);
	fw_input_findings(v, flags);
	global = v->score;
	for (k = 0; k < m.n; k++) {
		i = m.v[k];
		r = &p->rules[i];
		if (fw_weighs(r) || !hits[i].matched)
			continue;
		fw_add_match(v, r->id, r->category, r->message, sev[i],
		    hits[i].form, hits[i].overrun, hits[i].allowed);
		/* Where these matched is unknown or not a line of the text. */
		if (!hits[i].allowed && (hits[i].overrun ||
		    hits[i].form == POLICY_FORM_DECODED))
			global += sev[i];
		if (!hits[i].allowed && (best == FW_NOALLOW ||
		    r->severity > p->rules[best].severity))
			best = i;
		if (hits[i].allowed)
			cancelled += sev[i];
	}
	qsort(v->matches, v->nmatches, sizeof v->matches[0], fw_match_cmp);

	if (best != FW_NOALLOW) {
		f = hits[best].form;
		fw_excerpt(v, forms[f].data, forms[f].len, hits[best].pos);
	} else if (v->nfound > 0)
		fw_excerpt(v, forms[POLICY_FORM_FOLDED].data,
		    forms[POLICY_FORM_FOLDED].len, 0);
	/*
	 * Weak matches far apart in a long text do not add up: a text of
	 * several lines scores its worst line (see fw_line_score()).
	 */
	/*
	 * An allow entry cancels its rule only on its own lines: a text of
	 * several lines where the cancelled rules would reach the threshold
	 * is scored line by line too, so "grep 'rm -rf /' f" on one line
	 * does not pass "rm -rf /" on the next.
	 */
	if (v->score + cancelled >= v->threshold && (line = fw_line_score(p,
	    forms, useful, hits, &m, win, mp, &bound, global, sev)) >= 0)
		v->score = line;
	v->blocked = v->score >= v->threshold;

	onig_free_match_param(mp);
	fw_windows_free(win, pool, npool);
	free(m.v);
	free(sev);
	free(hits);
	for (f = 0; f < POLICY_NFORMS; f++)
		normalize_buf_free(&forms[f]);
	return v->blocked;
}

cJSON *
policy_verdict_json(const struct policy_verdict *v)
{
	const struct policy_match	*m;
	cJSON				*o, *arr, *jm;
	size_t				 i;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	if (cJSON_AddBoolToObject(o, "blocked", v->blocked) == NULL ||
	    cJSON_AddNumberToObject(o, "score", v->score) == NULL ||
	    (v->quoted && cJSON_AddTrueToObject(o, "quoted") == NULL) ||
	    (arr = cJSON_AddArrayToObject(o, "matches")) == NULL)
		goto fail;
	for (i = 0; i < v->nmatches; i++) {
		m = &v->matches[i];
		if ((jm = cJSON_CreateObject()) == NULL)
			goto fail;
		cJSON_AddItemToArray(arr, jm);
		if (cJSON_AddStringToObject(jm, "rule", m->rule) == NULL ||
		    cJSON_AddStringToObject(jm, "category",
		    m->category) == NULL ||
		    cJSON_AddNumberToObject(jm, "severity",
		    m->severity) == NULL ||
		    cJSON_AddStringToObject(jm, "form",
		    policy_form_name(m->form)) == NULL ||
		    cJSON_AddStringToObject(jm, "message", m->message) == NULL)
			goto fail;
		if ((m->overrun && cJSON_AddTrueToObject(jm,
		    "overrun") == NULL) || (m->allowed &&
		    cJSON_AddTrueToObject(jm, "allowed") == NULL))
			goto fail;
	}
	if (cJSON_AddStringToObject(o, "excerpt", v->excerpt) == NULL)
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}
