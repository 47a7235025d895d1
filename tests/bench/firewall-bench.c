/*
 * Firewall benchmark: throughput and latency of policy_check() with the
 * default ruleset on benign prompts of 1 KB, 10 KB and 100 KB, side by side
 * with plain Oniguruma running every rule on the raw text (no
 * normalization, no prefilter).  Reports; never fails on a slow machine.
 *
 * usage: firewall-bench [-cfq] [-n iters] [-s size] rulesdir text-file...
 * -q runs 1 KB only, -s one size (bytes); -n times exactly iters prompts
 * per engine and size, whatever the time (for callgrind: the same work
 * each run); -f leaves plain Oniguruma out; -c times each check by the
 * thread's CPU clock, so that on a loaded machine the latencies leave out
 * the time other processes ran (wall time by default).
 * Each text file is cut into prompts of at most each size, of whole lines
 * from varying offsets; lines the firewall blocks on their own, or passes
 * only as a prompt quoting commands (whose context is the whole text), are
 * left out, so that "blocked" counts only what long texts add up to.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <oniguruma.h>

#include "policy/firewall/firewall.h"

#define BENCH_MAX_TEXT		(4 * 1024 * 1024)
#define BENCH_MAX_RULES		POLICY_MAX_RULES
#define BENCH_TIME_BUDGET	1.0	/* seconds per engine and size */
#define BENCH_MAX_ITER		2000	/* prompts per engine and size */
#define BENCH_MIN_ITER		5
#define BENCH_GOAL_MBS		100.0
#define BENCH_GOAL_P99_MS	1.0
#define BENCH_GOAL_SIZE		10240
#define BENCH_GOAL_LIST		1024	/* names of the texts, per verdict */

static const size_t bench_sizes[] = { 1024, 10240, 102400 };
static size_t	bench_iters;		/* -n: fixed count, no time budget */
static clockid_t bench_clock = CLOCK_MONOTONIC;	/* -c: thread CPU */

/* Plain Oniguruma: every rule, raw text, same options and limits. */
struct baseline {
	regex_t		*re[BENCH_MAX_RULES];
	size_t		 n;
};

struct run {
	double		 mbs;
	double		 p50;		/* ms */
	double		 p99;
	size_t		 iters;
	int		 blocked;	/* prompts blocked: benign should be 0 */
};

static double
now(void)
{
	struct timespec	ts;

	clock_gettime(bench_clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int
baseline_add(const struct policy_rule_def *def, void *arg, char *why,
    size_t whylen)
{
	struct baseline	*bl = arg;
	OnigErrorInfo	 einfo;
	const OnigUChar	*pat = (const OnigUChar *)def->pattern;

	if (def->allow != NULL)
		return 0;
	if (bl->n == BENCH_MAX_RULES ||
	    onig_new(&bl->re[bl->n], pat, pat + strlen(def->pattern),
	    ONIG_OPTION_IGNORECASE | ONIG_OPTION_IGNORECASE_IS_ASCII,
	    ONIG_ENCODING_UTF8, ONIG_SYNTAX_ONIGURUMA, &einfo) != ONIG_NORMAL) {
		snprintf(why, whylen, "cannot compile %s", def->id);
		return -1;
	}
	bl->n++;
	return 0;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE	*f;
	char	*buf;

	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	buf = malloc(BENCH_MAX_TEXT);
	*len = fread(buf, 1, BENCH_MAX_TEXT, f);
	fclose(f);
	return buf;
}

/* Keeps the lines of text that pass on their own, unquoted; the new length. */
static size_t
keep_passing(const struct policy *p, char *text, size_t len, size_t *dropped)
{
	struct policy_verdict	 v;
	size_t			 i = 0, n = 0, k;
	char			*nl;

	*dropped = 0;
	while (i < len) {
		nl = memchr(text + i, '\n', len - i);
		k = (nl != NULL ? (size_t)(nl - text) + 1 : len) - i;
		policy_check(p, POLICY_PROMPT, text + i, k, 0, &v);
		if (v.blocked || v.quoted)
			(*dropped)++;
		else {
			memmove(text + n, text + i, k);
			n += k;
		}
		i += k;
	}
	return n;
}

/* Repeats the text until it holds want bytes, so every size can be cut. */
static char *
grow_text(const char *text, size_t len, size_t want)
{
	char	*out = malloc(want);
	size_t	 n = 0, k;

	while (n < want) {
		k = len < want - n ? len : want - n;
		memcpy(out + n, text, k);
		n += k;
	}
	return out;
}

static int
baseline_check(const struct baseline *bl, OnigMatchParam *mp,
    const char *s, size_t len)
{
	const OnigUChar	*u = (const OnigUChar *)s;
	size_t		 i;
	int		 hits = 0;

	for (i = 0; i < bl->n; i++) {
		if (onig_search_with_param(bl->re[i], u, u + len, u, u + len,
		    NULL, ONIG_OPTION_NONE, mp) != ONIG_MISMATCH)
			hits++;
	}
	return hits;
}

/* Cuts prompts of size bytes from text at varying offsets and times them. */
static void
bench_run(const struct policy *p, const struct baseline *bl,
    const char *text, size_t len, size_t size, struct run *r)
{
	struct policy_verdict	 v;
	OnigMatchParam		*mp;
	double			*lat, start, t0, total = 0;
	size_t			 i, off, n, bytes = 0, span = len - size;

	lat = calloc(BENCH_MAX_ITER, sizeof *lat);
	mp = onig_new_match_param();
	onig_initialize_match_param(mp);
	onig_set_retry_limit_in_match_of_match_param(mp, POLICY_RETRY_LIMIT);
	onig_set_retry_limit_in_search_of_match_param(mp, POLICY_SEARCH_LIMIT);
	memset(r, 0, sizeof *r);
	start = now();
	for (i = 0; i < BENCH_MAX_ITER; i++) {
		if (bench_iters > 0 ? i >= bench_iters : i >= BENCH_MIN_ITER &&
		    now() - start > BENCH_TIME_BUDGET)
			break;
		/* A prime stride walks the text without repeating soon. */
		off = span > 0 ? (i * 7919) % span : 0;
		/* Whole lines: from the next line start to the last end. */
		while (off > 0 && off < span && text[off - 1] != '\n')
			off++;
		for (n = size; n > 0 && text[off + n - 1] != '\n'; n--)
			;
		if (n == 0)
			n = size;
		bytes += n;
		t0 = now();
		if (p != NULL) {
			policy_check(p, POLICY_PROMPT, text + off, n, 0, &v);
			r->blocked += v.blocked;
		} else
			(void)baseline_check(bl, mp, text + off, n);
		lat[i] = now() - t0;
		total += lat[i];
	}
	r->iters = i;
	qsort(lat, i, sizeof *lat, cmp_double);
	r->p50 = lat[i / 2] * 1e3;
	r->p99 = lat[(i * 99) / 100 < i ? (i * 99) / 100 : i - 1] * 1e3;
	r->mbs = (double)bytes / total / 1e6;
	onig_free_match_param(mp);
	free(lat);
}

int
main(int argc, char **argv)
{
	static OnigEncoding	 encs[] = { ONIG_ENCODING_UTF8 };
	struct baseline		 bl;
	struct policy		*p;
	struct run		 fw, raw;
	glob_t			 g;
	char			 err[512], pat[4096], *buf, *text;
	const char		*name;
	char			 met[BENCH_GOAL_LIST], unmet[BENCH_GOAL_LIST];
	size_t			 i, k, len, dropped, only = 0;
	int			 c, quick = 0, noraw = 0;

	while ((c = getopt(argc, argv, "cfn:qs:")) != -1) {
		switch (c) {
		case 'c':
			bench_clock = CLOCK_THREAD_CPUTIME_ID;
			break;
		case 'f':
			noraw = 1;
			break;
		case 'n':
			bench_iters = strtoul(optarg, NULL, 10);
			if (bench_iters == 0 || bench_iters > BENCH_MAX_ITER)
				return 2;
			break;
		case 'q':
			quick = 1;
			break;
		case 's':
			only = strtoul(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2) {
		fprintf(stderr, "usage: firewall-bench [-cfq] [-n iters] "
		    "[-s size] rulesdir text-file...\n");
		return 2;
	}
	snprintf(pat, sizeof pat, "%s/*.rules", argv[0]);
	if (glob(pat, 0, NULL, &g) != 0) {
		fprintf(stderr, "no rule files in %s\n", argv[0]);
		return 1;
	}
	if ((p = policy_load((const char *const *)g.gl_pathv, g.gl_pathc, err,
	    sizeof err)) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	onig_initialize(encs, 1);
	memset(&bl, 0, sizeof bl);
	for (i = 0; i < g.gl_pathc; i++) {
		buf = read_file(g.gl_pathv[i], &len);
		if (buf == NULL || policy_parse_rules(g.gl_pathv[i], buf, len,
		    baseline_add, &bl, err, sizeof err) != 0) {
			fprintf(stderr, "%s\n", buf == NULL ? g.gl_pathv[i] :
			    err);
			return 1;
		}
		free(buf);
	}
	globfree(&g);

	met[0] = unmet[0] = '\0';
	printf("firewall-bench: %zu rules, Oniguruma %s\n", policy_nrules(p),
	    onig_version());
	printf("%-12s %8s  %-9s %9s %9s %9s %7s %8s\n", "text", "size",
	    "engine", "MB/s", "p50 ms", "p99 ms", "iters", "blocked");
	for (k = 1; k < (size_t)argc; k++) {
		if ((buf = read_file(argv[k], &len)) == NULL || len == 0) {
			fprintf(stderr, "cannot read %s\n", argv[k]);
			return 1;
		}
		len = keep_passing(p, buf, len, &dropped);
		if (len == 0) {
			fprintf(stderr, "%s: every line is blocked\n", argv[k]);
			return 1;
		}
		text = grow_text(buf, len, 2 * bench_sizes[2]);
		free(buf);
		name = strrchr(argv[k], '/') != NULL ?
		    strrchr(argv[k], '/') + 1 : argv[k];
		printf("%s: %zu lines blocked or quoted on their own left out\n", name,
		    dropped);
		for (i = 0; i < sizeof bench_sizes / sizeof bench_sizes[0];
		    i++) {
			if ((quick && i > 0) ||
			    (only != 0 && bench_sizes[i] != only))
				continue;
			bench_run(p, NULL, text, 2 * bench_sizes[2],
			    bench_sizes[i], &fw);
			printf("%-12.12s %7zuK  %-9s %9.1f %9.3f %9.3f %7zu %8d\n",
			    name, bench_sizes[i] / 1024, "firewall", fw.mbs,
			    fw.p50, fw.p99, fw.iters, fw.blocked);
			if (!noraw) {
				bench_run(NULL, &bl, text, 2 * bench_sizes[2],
				    bench_sizes[i], &raw);
				printf("%-12.12s %7zuK  %-9s %9.1f %9.3f %9.3f "
				    "%7zu %8s\n", name, bench_sizes[i] / 1024,
				    "onig-raw", raw.mbs, raw.p50, raw.p99,
				    raw.iters, "-");
				printf("%-12.12s %8s  %-9s %8.1fx\n", "", "",
				    "speedup", fw.mbs / raw.mbs);
			}
			if (bench_sizes[i] == BENCH_GOAL_SIZE) {
				char	*l = fw.mbs < BENCH_GOAL_MBS ||
				    fw.p99 > BENCH_GOAL_P99_MS ? unmet : met;

				snprintf(l + strlen(l), BENCH_GOAL_LIST -
				    strlen(l), " %s", name);
			}
		}
		free(text);
	}
	printf("goal (>= %.0f MB/s and p99 < %.1f ms at 10 KB): met by%s; "
	    "not met by%s\n", BENCH_GOAL_MBS, BENCH_GOAL_P99_MS,
	    met[0] != '\0' ? met : " none", unmet[0] != '\0' ? unmet :
	    " none");
	for (i = 0; i < bl.n; i++)
		onig_free(bl.re[i]);
	policy_free(p);
	return 0;
}
