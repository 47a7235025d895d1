/*
 * Firewall verdicts, one line each, for comparing two builds of the engine:
 * a change meant for speed must print the same bytes.  Every field of a
 * verdict is printed (blocked, score, quoted, every match with its rule,
 * category, severity, form and flags, the excerpt).
 *
 * usage: firewall-verdicts [-w] rulesdir file...
 * -w loads the rules as a worker does: texts checked by the master, then
 * loaded again (policy_load_texts_again), each pattern compiled on use.
 * Each line of each file (a ".tsv" file's fifth column, U+23CE standing for
 * a newline; a "@bash " or "@path " prefix dropped) is checked as every
 * target; then pieces of each file of 1 KB, 10 KB and 100 KB from varying
 * offsets, and the whole file, as a prompt and as a Bash command.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/firewall/firewall.h"

#define VERD_MAX_TEXT	(4 * 1024 * 1024)
#define VERD_PIECES	24		/* long texts per size and file */
#define VERD_STRIDE	7919		/* prime: offsets do not repeat soon */
#define VERD_NEWLINE	"\xe2\x8f\x8e"	/* U+23CE in a .tsv text */
#define VERD_TSV_TEXT	4		/* tabs before a .tsv line's text */

static const size_t verd_sizes[] = { 1024, 10240, 102400 };
static const enum policy_target verd_targets[] = {
	POLICY_PROMPT, POLICY_BASH, POLICY_PATH
};

static void
verd_print(const struct policy *p, const char *tag, size_t n,
    enum policy_target t, const char *text, size_t len)
{
	struct policy_verdict		 v;
	const struct policy_match	*m;
	size_t				 i;

	policy_check(p, t, text, len, 0, &v);
	printf("%s:%zu %s b=%d s=%d q=%d n=%zu", tag, n, policy_target_name(t),
	    v.blocked, v.score, v.quoted, v.nfound);
	for (i = 0; i < v.nmatches; i++) {
		m = &v.matches[i];
		printf(" [%s %s %d %s%s%s]", m->rule, m->category, m->severity,
		    policy_form_name(m->form), m->overrun ? " overrun" : "",
		    m->allowed ? " allowed" : "");
	}
	printf(" |%s|\n", v.excerpt);
}

/* One corpus line, made back into its text in place; its new length. */
static size_t
verd_line(char *s, size_t len, int tsv, char **text)
{
	char	*q, *w;
	size_t	 i, nl = strlen(VERD_NEWLINE);

	*text = s;
	if (tsv) {
		for (i = 0; i < VERD_TSV_TEXT; i++) {
			if ((q = memchr(*text, '\t', len - (size_t)(*text -
			    s))) == NULL)
				return 0;
			*text = q + 1;
		}
	} else if (len > 0 && s[0] == '@' && (q = memchr(s, ' ', len)) !=
	    NULL)
		*text = q + 1;
	len -= (size_t)(*text - s);
	for (q = w = *text; q < *text + len; ) {
		if (tsv && (size_t)(*text + len - q) >= nl &&
		    memcmp(q, VERD_NEWLINE, nl) == 0) {
			*w++ = '\n';
			q += nl;
		} else
			*w++ = *q++;
	}
	return (size_t)(w - *text);
}

int
main(int argc, char **argv)
{
	struct policy_text	 texts[POLICY_MAX_FILES];
	struct policy	*p, *checked;
	glob_t		 g;
	FILE		*f;
	char		 err[512], pat[4096], *buf, *copy, *line, *nl, *text;
	const char	*tag;
	size_t		 len, off, n, i, k, t, tl, lineno, span;
	int		 a, c, tsv, worker = 0;

	while ((c = getopt(argc, argv, "w")) != -1) {
		if (c != 'w')
			return 2;
		worker = 1;
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (argc < 3) {
		fprintf(stderr, "usage: firewall-verdicts [-w] rulesdir "
		    "file...\n");
		return 2;
	}
	snprintf(pat, sizeof pat, "%s/*.rules", argv[1]);
	if (glob(pat, 0, NULL, &g) != 0 || g.gl_pathc > POLICY_MAX_FILES) {
		fprintf(stderr, "no rule files in %s\n", argv[1]);
		return 1;
	}
	for (i = 0; i < g.gl_pathc; i++) {
		texts[i].name = g.gl_pathv[i];
		if (policy_read_file(g.gl_pathv[i], &copy, &texts[i].len, err,
		    sizeof err) != 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		texts[i].text = copy;
	}
	if ((p = policy_load_texts(texts, g.gl_pathc, err, sizeof err)) ==
	    NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (worker) {
		checked = p;
		if ((p = policy_load_texts_again(texts, g.gl_pathc, err,
		    sizeof err)) == NULL) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		policy_free(checked);
	}
	for (i = 0; i < g.gl_pathc; i++)
		free((char *)texts[i].text);
	globfree(&g);
	buf = malloc(VERD_MAX_TEXT);
	copy = malloc(VERD_MAX_TEXT);
	if (buf == NULL || copy == NULL)
		return 1;
	for (a = 2; a < argc; a++) {
		if ((f = fopen(argv[a], "r")) == NULL) {
			fprintf(stderr, "cannot read %s\n", argv[a]);
			return 1;
		}
		len = fread(buf, 1, VERD_MAX_TEXT, f);
		fclose(f);
		tag = strrchr(argv[a], '/') != NULL ? strrchr(argv[a], '/') +
		    1 : argv[a];
		tsv = strlen(tag) > 4 && strcmp(tag + strlen(tag) - 4,
		    ".tsv") == 0;
		memcpy(copy, buf, len);
		for (off = 0, lineno = 1; off < len; off += n + 1, lineno++) {
			line = copy + off;
			nl = memchr(line, '\n', len - off);
			n = nl != NULL ? (size_t)(nl - line) : len - off;
			tl = verd_line(line, n, tsv, &text);
			for (t = 0; t < sizeof verd_targets /
			    sizeof verd_targets[0]; t++)
				verd_print(p, tag, lineno, verd_targets[t],
				    text, tl);
		}
		for (i = 0; i < sizeof verd_sizes / sizeof verd_sizes[0];
		    i++) {
			span = len > verd_sizes[i] ? len - verd_sizes[i] : 0;
			for (k = 0; k < VERD_PIECES; k++) {
				off = span > 0 ? (k * VERD_STRIDE) % span : 0;
				n = len - off < verd_sizes[i] ? len - off :
				    verd_sizes[i];
				verd_print(p, tag, verd_sizes[i] + k,
				    POLICY_PROMPT, buf + off, n);
				verd_print(p, tag, verd_sizes[i] + k,
				    POLICY_BASH, buf + off, n);
			}
		}
		verd_print(p, tag, 0, POLICY_PROMPT, buf, len);
		verd_print(p, tag, 0, POLICY_BASH, buf, len);
	}
	free(buf);
	free(copy);
	policy_free(p);
	return 0;
}
