/*
 * common/sha256.c: FIPS 180-4's examples, and every length from 0 to
 * 4 blocks and a half, fed whole and in pieces of every size below a
 * block, against libcrypto's SHA-256 (the implementation the rule-set
 * digest used before: the digests must not change).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "common/sha256.h"

#define MAXLEN		(4 * SHA256_BLOCK + SHA256_BLOCK / 2)

static void
hex(const unsigned char *md, char out[2 * SHA256_LEN + 1])
{
	int	i;

	for (i = 0; i < SHA256_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
ours(const void *p, size_t len, size_t piece, unsigned char md[SHA256_LEN])
{
	const unsigned char	*c = p;
	struct sha256		 s;
	size_t			 n;

	sha256_init(&s);
	while (len > 0) {
		n = piece < len ? piece : len;
		sha256_update(&s, c, n);
		c += n;
		len -= n;
	}
	sha256_final(&s, md);
}

static void
theirs(const void *p, size_t len, unsigned char md[SHA256_LEN])
{
	unsigned int	n = 0;

	assert_int_equal(EVP_Digest(p, len, md, &n, EVP_sha256(), NULL), 1);
	assert_int_equal(n, SHA256_LEN);
}

static void
test_vectors(void **state)
{
	static const struct {
		const char	*in;
		const char	*md;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
		    "7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff"
		    "61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd4"
		    "19db06c1" },
	};
	unsigned char	md[SHA256_LEN];
	char		h[2 * SHA256_LEN + 1];
	size_t		i;

	for (i = 0; i < sizeof v / sizeof v[0]; i++) {
		ours(v[i].in, strlen(v[i].in), SHA256_BLOCK, md);
		hex(md, h);
		assert_string_equal(h, v[i].md);
	}
}

static void
test_against_libcrypto(void **state)
{
	unsigned char	buf[MAXLEN], a[SHA256_LEN], b[SHA256_LEN];
	size_t		len, piece, i;

	for (i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	for (len = 0; len <= MAXLEN; len++) {
		theirs(buf, len, b);
		for (piece = 1; piece <= SHA256_BLOCK + 1; piece++) {
			ours(buf, len, piece, a);
			if (memcmp(a, b, sizeof a) != 0)
				fail_msg("length %zu in pieces of %zu", len,
				    piece);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_against_libcrypto),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
