/*
 * The digest of a rule set: SHA-256 over every file's name and text, in
 * order, each with its length.  The master and a worker each compute it
 * over the texts they compiled; equal digests, the same rules.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/log.h"
#include "policy/firewall/firewall.h"

static void
digest_part(EVP_MD_CTX *ctx, const void *p, size_t len)
{
	uint64_t	n = len;

	if (EVP_DigestUpdate(ctx, &n, sizeof n) != 1 ||
	    EVP_DigestUpdate(ctx, p, len) != 1)
		fatalx("policy_digest: EVP_DigestUpdate");
}

void
policy_digest(const struct policy_text *t, size_t n,
    char out[POLICY_DIGEST_LEN + 1])
{
	EVP_MD_CTX	*ctx;
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned	 mdlen = 0, i;
	size_t		 j;

	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		fatalx("policy_digest: EVP_DigestInit_ex");
	for (j = 0; j < n; j++) {
		digest_part(ctx, t[j].name, strlen(t[j].name));
		digest_part(ctx, t[j].text, t[j].len);
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 ||
	    mdlen * 2 != POLICY_DIGEST_LEN)
		fatalx("policy_digest: EVP_DigestFinal_ex");
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}
