/*
 * libFuzzer target: policy_check() on the default ruleset.  The first
 * byte picks the target (prompt, bash, path); the rest is the text.
 * Checks the verdict's invariants: bounded matches, score and blocked in
 * agreement, a NUL-terminated excerpt, JSON that builds.
 */
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/firewall/firewall.h"

#define FUZZ_RULES_DIR	"policy/firewall/rules"	/* or $FUZZ_RULES_DIR */
#define FUZZ_NTARGETS	3

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct policy	*fuzz_policy;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char	*dir;
	char		 pat[1024], err[512];
	glob_t		 g;

	if ((dir = getenv("FUZZ_RULES_DIR")) == NULL)
		dir = FUZZ_RULES_DIR;
	snprintf(pat, sizeof pat, "%s/*.rules", dir);
	if (glob(pat, 0, NULL, &g) != 0) {
		fprintf(stderr, "fuzz_firewall: no rules in %s\n", dir);
		exit(1);
	}
	fuzz_policy = policy_load((const char *const *)g.gl_pathv,
	    g.gl_pathc, err, sizeof err);
	globfree(&g);
	if (fuzz_policy == NULL) {
		fprintf(stderr, "fuzz_firewall: %s\n", err);
		exit(1);
	}
	return 0;
}

/*
 * Plain one-line ASCII: no form can break it into lines (normalization may
 * turn \r, \v, \f or Unicode separators into newlines).
 */
static int
fuzz_one_line(const uint8_t *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (p[i] == '\n' || p[i] == '\r' || p[i] == '\v' ||
		    p[i] == '\f' || p[i] >= 0x80)
			return 0;
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_verdict	 v;
	cJSON			*j;
	size_t			 i;
	int			 score = 0;

	if (size == 0)
		return 0;
	policy_check(fuzz_policy, (enum policy_target)(data[0] %
	    FUZZ_NTARGETS), (const char *)data + 1, size - 1, 0, &v);
	if (v.nmatches > POLICY_MAX_MATCHES || v.nmatches > v.nfound ||
	    v.blocked != (v.score >= v.threshold) ||
	    memchr(v.excerpt, '\0', sizeof v.excerpt) == NULL)
		__builtin_trap();
	for (i = 0; i < v.nmatches; i++) {
		if (!v.matches[i].allowed)
			score += v.matches[i].severity;
	}
	/*
	 * One line scores the sum of its distinct rules; several lines score
	 * their worst line (hotplex-policy(5)), at most that sum.
	 */
	if (v.nfound == v.nmatches && (fuzz_one_line(data + 1, size - 1) ?
	    score != v.score : v.score > score))
		__builtin_trap();
	if ((j = policy_verdict_json(&v)) == NULL)
		__builtin_trap();
	cJSON_Delete(j);
	return 0;
}
