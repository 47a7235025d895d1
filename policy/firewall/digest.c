/*
 * The digest of a rule set: SHA-256 over every file's name and text, in
 * order, each with its length.  The master and a worker each compute it
 * over the texts they compiled; equal digests, the same rules.  Our own
 * SHA-256 (common/sha256.c): a worker linking libcrypto for it spent
 * about 4 ms of every start in the loader and the library's set-up.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/sha256.h"
#include "policy/firewall/firewall.h"

static void
digest_part(struct sha256 *s, const void *p, size_t len)
{
	uint64_t	n = len;

	sha256_update(s, &n, sizeof n);
	sha256_update(s, p, len);
}

void
policy_digest(const struct policy_text *t, size_t n,
    char out[POLICY_DIGEST_LEN + 1])
{
	struct sha256	 s;
	unsigned char	 md[SHA256_LEN];
	size_t		 i;

	sha256_init(&s);
	for (i = 0; i < n; i++) {
		digest_part(&s, t[i].name, strlen(t[i].name));
		digest_part(&s, t[i].text, t[i].len);
	}
	sha256_final(&s, md);
	for (i = 0; i < SHA256_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}
