/*
 * Rule file parser: stanzas of "key value" lines, each opened by "rule ID".
 * Pure text handling, no regex compilation: every complete rule is handed to
 * a callback, and any error stops the parse with "file:line: why".
 * The format is documented in hotplex-policy(5).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "policy/firewall/firewall.h"

#define RULES_WS	" \t"
#define RULES_REACH_LINE "line"	/* after a reach: the hint's line only */

/* One rule being read; fixed-size fields bound every value. */
struct rules_stanza {
	unsigned	 line;		/* of its "rule" line; 0: none open */
	char		 id[POLICY_MAX_ID];
	char		 category[POLICY_MAX_CATEGORY];
	char		 message[POLICY_MAX_MESSAGE];
	char		 pattern[POLICY_MAX_PATTERN];
	char		 allow[POLICY_MAX_ID];
	char		 hints[POLICY_MAX_HINTS][POLICY_MAX_HINT];
	size_t		 nhints;
	char		 needs[POLICY_MAX_HINTS][POLICY_MAX_HINT];
	size_t		 nneeds;
	int		 severity;	/* 0: not given */
	unsigned	 targets;	/* 0: not given */
	int		 reach;		/* -1: not given */
	int		 line_only;	/* "reach N line": hint's line only */
	enum policy_context context;	/* "context ask|run" */
};

/* A named piece of pattern, "define NAME text", used as {{NAME}}. */
struct rules_macro {
	char		 name[POLICY_MAX_ID];
	char		*value;			/* expanded, in the arena */
};

#define RULES_ARENA	(POLICY_MAX_MACROS * POLICY_MAX_LINE)
#define RULES_MACRO_OPEN	"{{"
#define RULES_MACRO_CLOSE	"}}"

struct rules_parser {
	struct rules_macro	 macros[POLICY_MAX_MACROS];
	size_t			 nmacros;
	char			 arena[RULES_ARENA];	/* macro values */
	size_t			 arena_used;
	const char		*name;
	unsigned		 lineno;
	char			*err;
	size_t			 errlen;
	policy_rule_cb		 cb;
	void			*arg;
	struct rules_stanza	 st;
};

static const struct {
	const char	*name;
	int		 severity;
} rules_severities[] = {
	{ "critical",	POLICY_SEV_CRITICAL },
	{ "error",	POLICY_SEV_ERROR },
	{ "warning",	POLICY_SEV_WARNING },
	{ "notice",	POLICY_SEV_NOTICE },
};

static int rules_error(struct rules_parser *, unsigned, const char *, ...)
	    __attribute__((format(printf, 3, 4)));

static int
rules_error(struct rules_parser *p, unsigned line, const char *fmt, ...)
{
	char	why[POLICY_MAX_MESSAGE];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (p->err != NULL && p->errlen > 0)
		snprintf(p->err, p->errlen, "%s:%u: %s", p->name, line, why);
	return -1;
}

/* Copies a value into a bounded field; too long is an error. */
static int
rules_set(struct rules_parser *p, const char *key, char *dst, size_t dstlen,
    const char *val)
{
	if (dst[0] != '\0')
		return rules_error(p, p->lineno, "duplicate %s", key);
	if (strlen(val) >= dstlen)
		return rules_error(p, p->lineno, "%s longer than %zu bytes",
		    key, dstlen - 1);
	strcpy(dst, val);
	return 0;
}

/* Expands {{NAME}} references of val into dst (dstlen bytes). */
static int
rules_expand(struct rules_parser *p, char *dst, size_t dstlen,
    const char *val)
{
	const char	*open, *close;
	size_t		 n = 0, k, i;

	while ((open = strstr(val, RULES_MACRO_OPEN)) != NULL) {
		k = (size_t)(open - val);
		if (n + k >= dstlen)
			goto toolong;
		memcpy(dst + n, val, k);
		n += k;
		open += strlen(RULES_MACRO_OPEN);
		if ((close = strstr(open, RULES_MACRO_CLOSE)) == NULL)
			return rules_error(p, p->lineno, "unclosed {{");
		for (i = 0; i < p->nmacros; i++) {
			if (strlen(p->macros[i].name) == (size_t)(close - open) &&
			    memcmp(p->macros[i].name, open,
			    (size_t)(close - open)) == 0)
				break;
		}
		if (i == p->nmacros)
			return rules_error(p, p->lineno, "undefined macro "
			    "\"%.*s\"", (int)(close - open) < POLICY_MAX_ID ?
			    (int)(close - open) : POLICY_MAX_ID, open);
		k = strlen(p->macros[i].value);
		if (n + k >= dstlen)
			goto toolong;
		memcpy(dst + n, p->macros[i].value, k);
		n += k;
		val = close + strlen(RULES_MACRO_CLOSE);
	}
	k = strlen(val);
	if (n + k >= dstlen)
		goto toolong;
	memcpy(dst + n, val, k + 1);
	return 0;
toolong:
	return rules_error(p, p->lineno, "expanded pattern longer than %zu "
	    "bytes", dstlen - 1);
}

static int rules_id_valid(const char *);

/* "define NAME text" outside a rule. */
static int
rules_define(struct rules_parser *p, char *val)
{
	struct rules_macro	*m;
	char			*name, *text;
	size_t			 i, room;

	name = val;
	text = val + strcspn(val, RULES_WS);
	if (*text != '\0')
		*text++ = '\0';
	text += strspn(text, RULES_WS);
	if (!rules_id_valid(name) || strlen(name) >= POLICY_MAX_ID)
		return rules_error(p, p->lineno, "bad macro name");
	if (*text == '\0')
		return rules_error(p, p->lineno, "macro %s without a value",
		    name);
	for (i = 0; i < p->nmacros; i++) {
		if (strcmp(p->macros[i].name, name) == 0)
			return rules_error(p, p->lineno,
			    "duplicate macro %s", name);
	}
	if (p->nmacros == POLICY_MAX_MACROS)
		return rules_error(p, p->lineno, "more than %d macros",
		    POLICY_MAX_MACROS);
	room = RULES_ARENA - p->arena_used;
	if (room > POLICY_MAX_LINE)
		room = POLICY_MAX_LINE;
	m = &p->macros[p->nmacros];
	if (rules_expand(p, p->arena + p->arena_used, room, text) != 0)
		return -1;
	strcpy(m->name, name);
	m->value = p->arena + p->arena_used;
	p->arena_used += strlen(m->value) + 1;
	p->nmacros++;
	return 0;
}

static int
rules_id_valid(const char *id)
{
	const unsigned char	*s;

	for (s = (const unsigned char *)id; *s != '\0'; s++) {
		if (!isalnum(*s) && strchr("._-", *s) == NULL)
			return 0;
	}
	return s != (const unsigned char *)id;
}

static int
rules_targets(struct rules_parser *p, char *val)
{
	enum policy_target	 t;
	char			*word, *save = NULL;
	unsigned		 bits = 0;

	if (p->st.targets != 0)
		return rules_error(p, p->lineno, "duplicate target");
	for (word = strtok_r(val, RULES_WS ",", &save); word != NULL;
	    word = strtok_r(NULL, RULES_WS ",", &save)) {
		if (strcmp(word, "any") == 0)
			bits |= POLICY_TARGET_ANY;
		else if (policy_target_parse(word, &t) == 0)
			bits |= POLICY_TARGET_BIT(t);
		else
			return rules_error(p, p->lineno,
			    "unknown target \"%s\"", word);
	}
	if (bits == 0)
		return rules_error(p, p->lineno, "empty target");
	p->st.targets = bits;
	return 0;
}

static int
rules_severity(struct rules_parser *p, const char *val)
{
	size_t	i;

	if (p->st.severity != 0)
		return rules_error(p, p->lineno, "duplicate severity");
	for (i = 0; i < sizeof rules_severities / sizeof rules_severities[0];
	    i++) {
		if (strcmp(val, rules_severities[i].name) == 0) {
			p->st.severity = rules_severities[i].severity;
			return 0;
		}
	}
	return rules_error(p, p->lineno, "unknown severity \"%s\"", val);
}

/* "context ask" or "context run": what a match says of a prompt. */
static int
rules_context(struct rules_parser *p, const char *val)
{
	if (p->st.context != POLICY_CONTEXT_NONE)
		return rules_error(p, p->lineno, "duplicate context");
	if (strcmp(val, "ask") == 0)
		p->st.context = POLICY_CONTEXT_ASK;
	else if (strcmp(val, "run") == 0)
		p->st.context = POLICY_CONTEXT_RUN;
	else
		return rules_error(p, p->lineno, "unknown context \"%s\"",
		    val);
	return 0;
}

/* A literal of a "hint" or "need" line, kept folded: matched without case. */
static int
rules_literal(struct rules_parser *p, const char *key, const char *val,
    char (*list)[POLICY_MAX_HINT], size_t *n)
{
	char	*dst;
	size_t	 i;

	if (*n == POLICY_MAX_HINTS)
		return rules_error(p, p->lineno, "more than %d %ss",
		    POLICY_MAX_HINTS, key);
	if (strlen(val) >= POLICY_MAX_HINT)
		return rules_error(p, p->lineno, "%s longer than %d bytes",
		    key, POLICY_MAX_HINT - 1);
	dst = list[(*n)++];
	for (i = 0; val[i] != '\0'; i++)
		dst[i] = (char)tolower((unsigned char)val[i]);
	dst[i] = '\0';
	return 0;
}

static int
rules_reach(struct rules_parser *p, const char *val)
{
	char	*end;
	long	 n;

	if (p->st.reach != -1)
		return rules_error(p, p->lineno, "duplicate reach");
	n = strtol(val, &end, 10);
	if (end != val && strchr(RULES_WS, *end) != NULL && *end != '\0') {
		/* "reach N line": starts stay on the line of the hint. */
		end += strspn(end, RULES_WS);
		if (strcmp(end, RULES_REACH_LINE) == 0) {
			p->st.line_only = 1;
			end += strlen(end);
		}
	}
	if (*end != '\0' || end == val || n < 0 || n > POLICY_MAX_REACH)
		return rules_error(p, p->lineno, "reach must be 0 to %d, "
		    "then maybe \"%s\"", POLICY_MAX_REACH, RULES_REACH_LINE);
	p->st.reach = (int)n;
	return 0;
}

/*
 * Empties the stanza for the next rule: only what a rule reads before it
 * writes it.  A memset of the whole (its pattern alone is 16 KB) was most
 * of a worker's load of the rules.
 */
static void
rules_stanza_reset(struct rules_stanza *st)
{
	st->line = 0;
	st->id[0] = st->category[0] = st->message[0] = '\0';
	st->pattern[0] = st->allow[0] = '\0';
	st->nhints = st->nneeds = 0;
	st->severity = 0;
	st->targets = 0;
	st->reach = -1;
	st->line_only = 0;
	st->context = POLICY_CONTEXT_NONE;
}

/* Hands the open stanza, if any, to the callback once it is complete. */
static int
rules_flush(struct rules_parser *p)
{
	struct rules_stanza	*st = &p->st;
	struct policy_rule_def	 def;
	char			 why[POLICY_MAX_MESSAGE];
	size_t			 i;

	if (st->line == 0)
		return 0;
	if (st->pattern[0] == '\0')
		return rules_error(p, st->line, "rule %s has no pattern",
		    st->id);
	if (st->allow[0] != '\0' && st->context != POLICY_CONTEXT_NONE)
		return rules_error(p, st->line, "rule %s both allows and "
		    "sets a context", st->id);
	/* Context rules read prompts only: they weigh the others there. */
	if (st->context != POLICY_CONTEXT_NONE && st->targets != 0 &&
	    st->targets != POLICY_TARGET_BIT(POLICY_PROMPT))
		return rules_error(p, st->line, "context rule %s must target "
		    "prompt only", st->id);
	if (st->allow[0] == '\0' && st->context == POLICY_CONTEXT_NONE) {
		if (st->severity == 0)
			return rules_error(p, st->line,
			    "rule %s has no severity", st->id);
		if (st->category[0] == '\0')
			return rules_error(p, st->line,
			    "rule %s has no category", st->id);
		if (st->message[0] == '\0')
			return rules_error(p, st->line,
			    "rule %s has no message", st->id);
	}

	/* Needs narrow where hints let a rule run: no hint, nothing to narrow. */
	if (st->nneeds > 0 && st->nhints == 0)
		return rules_error(p, st->line, "rule %s has needs but no "
		    "hint", st->id);

	memset(&def, 0, sizeof def);
	def.file = p->name;
	def.line = st->line;
	def.id = st->id;
	def.category = st->category[0] != '\0' ? st->category :
	    st->context != POLICY_CONTEXT_NONE ? "context" : "allow";
	def.message = st->message[0] != '\0' ? st->message :
	    st->context != POLICY_CONTEXT_NONE ? "context" : "allowed";
	def.pattern = st->pattern;
	def.allow = st->allow[0] != '\0' ? st->allow : NULL;
	for (i = 0; i < st->nhints; i++)
		def.hints[i] = st->hints[i];
	def.nhints = st->nhints;
	for (i = 0; i < st->nneeds; i++)
		def.needs[i] = st->needs[i];
	def.nneeds = st->nneeds;
	def.severity = st->severity;
	def.targets = st->targets != 0 ? st->targets :
	    st->context != POLICY_CONTEXT_NONE ?
	    POLICY_TARGET_BIT(POLICY_PROMPT) : POLICY_TARGET_ANY;
	def.context = st->context;
	def.reach = st->reach;
	def.line_only = st->line_only;

	why[0] = '\0';
	if (p->cb != NULL && p->cb(&def, p->arg, why, sizeof why) != 0)
		return rules_error(p, st->line, "%s",
		    why[0] != '\0' ? why : "rule refused");
	rules_stanza_reset(st);
	return 0;
}

static int
rules_line(struct rules_parser *p, char *line)
{
	struct rules_stanza	*st = &p->st;
	char			*key, *val, *end;

	key = line + strspn(line, RULES_WS);
	if (*key == '\0' || *key == '#')
		return 0;
	val = key + strcspn(key, RULES_WS);
	if (*val != '\0')
		*val++ = '\0';
	val += strspn(val, RULES_WS);
	end = val + strlen(val);
	while (end > val && strchr(RULES_WS, end[-1]) != NULL)
		*--end = '\0';
	if (*val == '\0')
		return rules_error(p, p->lineno, "%s without a value", key);

	if (strcmp(key, "rule") == 0) {
		if (rules_flush(p) != 0)
			return -1;
		if (!rules_id_valid(val))
			return rules_error(p, p->lineno,
			    "bad rule id \"%.*s\"", POLICY_MAX_ID, val);
		st->line = p->lineno;
		st->reach = -1;
		return rules_set(p, key, st->id, sizeof st->id, val);
	}
	if (strcmp(key, "define") == 0) {
		/* Macros live between rules, for the rest of the file. */
		if (rules_flush(p) != 0)
			return -1;
		return rules_define(p, val);
	}
	if (st->line == 0)
		return rules_error(p, p->lineno, "%s outside a rule", key);

	if (strcmp(key, "category") == 0) {
		if (!rules_id_valid(val))
			return rules_error(p, p->lineno, "bad category");
		return rules_set(p, key, st->category, sizeof st->category,
		    val);
	}
	if (strcmp(key, "message") == 0)
		return rules_set(p, key, st->message, sizeof st->message, val);
	if (strcmp(key, "pattern") == 0) {
		if (st->pattern[0] != '\0')
			return rules_error(p, p->lineno, "duplicate pattern");
		return rules_expand(p, st->pattern, sizeof st->pattern, val);
	}
	if (strcmp(key, "allow") == 0) {
		if (!rules_id_valid(val))
			return rules_error(p, p->lineno, "bad rule id to allow");
		return rules_set(p, key, st->allow, sizeof st->allow, val);
	}
	if (strcmp(key, "context") == 0)
		return rules_context(p, val);
	if (strcmp(key, "severity") == 0)
		return rules_severity(p, val);
	if (strcmp(key, "target") == 0)
		return rules_targets(p, val);
	if (strcmp(key, "hint") == 0)
		return rules_literal(p, key, val, st->hints, &st->nhints);
	if (strcmp(key, "need") == 0)
		return rules_literal(p, key, val, st->needs, &st->nneeds);
	if (strcmp(key, "reach") == 0)
		return rules_reach(p, val);
	return rules_error(p, p->lineno, "unknown keyword \"%.*s\"",
	    POLICY_MAX_ID, key);
}

static int
rules_parse(struct rules_parser *p, const char *buf, size_t len)
{
	char		 line[POLICY_MAX_LINE + 1];
	const char	*s = buf, *end = buf + len, *nl;
	size_t		 n;

	while (s < end) {
		p->lineno++;
		if ((nl = memchr(s, '\n', (size_t)(end - s))) == NULL)
			nl = end;
		n = (size_t)(nl - s);
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (n > POLICY_MAX_LINE)
			return rules_error(p, p->lineno,
			    "line longer than %d bytes", POLICY_MAX_LINE);
		if (memchr(s, '\0', n) != NULL)
			return rules_error(p, p->lineno, "NUL byte");
		memcpy(line, s, n);
		line[n] = '\0';
		if (rules_line(p, line) != 0)
			return -1;
		s = nl + 1;
	}
	return rules_flush(p);
}

int
policy_parse_rules(const char *name, const char *buf, size_t len,
    policy_rule_cb cb, void *arg, char *err, size_t errlen)
{
	struct rules_parser	*p;
	int			 rc;

	/*
	 * The macro arena is too big for a stack frame, and not cleared:
	 * macros and arena are read only as far as they were written.
	 */
	p = xmalloc(sizeof *p);
	p->nmacros = 0;
	p->arena_used = 0;
	p->lineno = 0;
	rules_stanza_reset(&p->st);
	p->name = name;
	p->err = err;
	p->errlen = errlen;
	p->cb = cb;
	p->arg = arg;
	rc = rules_parse(p, buf, len);
	free(p);
	return rc;
}
