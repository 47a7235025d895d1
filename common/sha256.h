/*
 * SHA-256 (FIPS 180-4), for the rule-set digest: a worker computes one at
 * every start, and libcrypto's loading and provider set-up cost it more
 * than the rules' whole text takes to hash.
 */
#ifndef HP_SHA256_H
#define HP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN	32	/* bytes of a digest */
#define SHA256_BLOCK	64	/* bytes per compression */

struct sha256 {
	uint32_t	h[8];
	uint64_t	len;		/* bytes taken so far */
	unsigned char	buf[SHA256_BLOCK];
	size_t		nbuf;		/* bytes in buf */
};

void	sha256_init(struct sha256 *);
void	sha256_update(struct sha256 *, const void *, size_t);
void	sha256_final(struct sha256 *, unsigned char out[SHA256_LEN]);

#endif
