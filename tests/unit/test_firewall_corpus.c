/*
 * Corpus test of the default ruleset: every line of the dangerous corpus
 * should be blocked, none of the benign corpus should be.  Prints the
 * detection and false-positive rates as TAP and fails under
 * CORPUS_MIN_DETECT or over CORPUS_MAX_FP.
 *
 * usage: test_firewall_corpus [-v] dangerous.txt benign.txt rulesdir
 * Corpus lines: "[@bash |@path |@prompt ]text"; '#' lines are comments.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"

#define CORPUS_MIN_DETECT	95.0	/* percent of dangerous blocked */
#define CORPUS_MAX_FP		3.0	/* percent of benign blocked */
#define CORPUS_MIN_LINES	300	/* lines each corpus must hold */
#define CORPUS_MAX_LINE		8192

struct corpus_stats {
	size_t	total;
	size_t	blocked;
	size_t	per_target[3];
};

static int	verbose;

static void
corpus_show(const char *what, const char *line, const struct policy_verdict *v)
{
	size_t	i;

	fprintf(stderr, "%s: %s\n   score %d:", what, line, v->score);
	for (i = 0; i < v->nmatches; i++)
		fprintf(stderr, " %s(%s,%d)", v->matches[i].rule,
		    policy_form_name(v->matches[i].form), v->matches[i].severity);
	fprintf(stderr, "\n");
}

static int
corpus_run(const struct policy *p, const char *path, int dangerous,
    struct corpus_stats *st)
{
	static const struct {
		const char		*prefix;
		enum policy_target	 target;
	} prefixes[] = {
		{ "@bash ", POLICY_BASH },
		{ "@path ", POLICY_PATH },
		{ "@prompt ", POLICY_PROMPT },
	};
	struct policy_verdict	 v;
	enum policy_target	 target;
	FILE			*f;
	char			 line[CORPUS_MAX_LINE], *text;
	size_t			 n, i;

	if ((f = fopen(path, "r")) == NULL) {
		perror(path);
		return -1;
	}
	memset(st, 0, sizeof *st);
	while (fgets(line, sizeof line, f) != NULL) {
		n = strcspn(line, "\n");
		line[n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		text = line;
		target = POLICY_PROMPT;
		for (i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
			if (strncmp(line, prefixes[i].prefix,
			    strlen(prefixes[i].prefix)) == 0) {
				text = line + strlen(prefixes[i].prefix);
				target = prefixes[i].target;
			}
		}
		policy_check(p, target, text, strlen(text), 0, &v);
		st->total++;
		st->per_target[target]++;
		if (v.blocked)
			st->blocked++;
		if (verbose && v.blocked != dangerous)
			corpus_show(dangerous ? "MISSED" : "FALSE POSITIVE",
			    line, &v);
		else if (verbose > 1)
			corpus_show("ok", line, &v);
	}
	fclose(f);
	return 0;
}

int
main(int argc, char **argv)
{
	struct corpus_stats	 bad, good;
	struct policy		*p;
	glob_t			 g;
	char			 err[512], pat[4096];
	double			 detect, fp;
	int			 c, failed = 0;

	while ((c = getopt(argc, argv, "v")) != -1) {
		if (c == 'v')
			verbose++;
		else
			return 2;
	}
	argc -= optind;
	argv += optind;
	if (argc != 3) {
		fprintf(stderr, "usage: test_firewall_corpus [-v] dangerous "
		    "benign rulesdir\n");
		return 2;
	}
	printf("1..4\n");
	snprintf(pat, sizeof pat, "%s/*.rules", argv[2]);
	if (glob(pat, 0, NULL, &g) != 0) {
		printf("not ok 1 - no rule files in %s\n", argv[2]);
		return 1;
	}
	p = policy_load((const char *const *)g.gl_pathv, g.gl_pathc, err,
	    sizeof err);
	globfree(&g);
	if (p == NULL) {
		printf("not ok 1 - default ruleset loads: %s\n", err);
		return 1;
	}
	printf("ok 1 - default ruleset loads (%zu rules)\n", policy_nrules(p));
	if (corpus_run(p, argv[0], 1, &bad) != 0 ||
	    corpus_run(p, argv[1], 0, &good) != 0) {
		policy_free(p);
		return 1;
	}
	policy_free(p);

	if (bad.total >= CORPUS_MIN_LINES && good.total >= CORPUS_MIN_LINES)
		printf("ok 2 - corpus sizes: %zu dangerous, %zu benign\n",
		    bad.total, good.total);
	else {
		printf("not ok 2 - corpus sizes: %zu dangerous, %zu benign "
		    "(need %d each)\n", bad.total, good.total,
		    CORPUS_MIN_LINES);
		failed = 1;
	}
	detect = bad.total ? 100.0 * (double)bad.blocked / (double)bad.total :
	    0.0;
	fp = good.total ? 100.0 * (double)good.blocked / (double)good.total :
	    100.0;
	printf("%s 3 - detection rate %.1f%% (%zu/%zu blocked), "
	    "need >= %.0f%%\n", detect >= CORPUS_MIN_DETECT ? "ok" : "not ok",
	    detect, bad.blocked, bad.total, CORPUS_MIN_DETECT);
	printf("%s 4 - false-positive rate %.1f%% (%zu/%zu blocked), "
	    "need <= %.0f%%\n", fp <= CORPUS_MAX_FP ? "ok" : "not ok", fp,
	    good.blocked, good.total, CORPUS_MAX_FP);
	if (detect < CORPUS_MIN_DETECT || fp > CORPUS_MAX_FP)
		failed = 1;
	return failed;
}
