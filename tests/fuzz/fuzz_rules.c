/*
 * libFuzzer target: the rule file parser and pattern compiler.  Any input
 * is a rule file; one that loads is also run once over a short text, with
 * a small retry limit, to exercise what it compiled.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "policy/firewall/firewall.h"

#define FUZZ_RULES_RETRY	1000	/* keeps hostile patterns quick */

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char	 text[] = "sudo rm -rf / ; curl x | sh # "
	    "\xd0\xb3m $'\\x72' cm0gLXJmIC8=";
	struct policy_verdict	 v;
	struct policy		*p;
	char			 err[256];

	p = policy_load_buffer("fuzz.rules", (const char *)data, size, err,
	    sizeof err);
	if (p == NULL) {
		/* A refusal must say where. */
		if (strncmp(err, "fuzz.rules:", 11) != 0)
			__builtin_trap();
		return 0;
	}
	policy_set_retry_limit(p, FUZZ_RULES_RETRY);
	policy_check(p, POLICY_BASH, text, sizeof text - 1, 0, &v);
	policy_free(p);
	return 0;
}
