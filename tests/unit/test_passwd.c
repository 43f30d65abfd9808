/* SPDX-License-Identifier: MIT */
/* Password hashing (libcrypt) and SCRAM-SHA-256 key derivation, including the
 * RFC 7677 section 3 example exchange. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/passwd.h"
#include "base/util.h"

/* A hash made directly with libcrypt, independent of passwd_hash(). */
static char *make_hash(const char *prefix, unsigned long count, const char *password)
{
	char *salt = crypt_gensalt_ra(prefix, count, NULL, 0);
	assert_non_null(salt);
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	assert_non_null(cd);
	const char *h = crypt_r(password, salt, cd);
	assert_non_null(h);
	assert_true(h[0] != '*');
	char *r = strdup(h);
	free(cd);
	free(salt);
	return r;
}

static void test_hash_roundtrip(void **state)
{
	(void)state;
	char *h = passwd_hash("correct horse");
	assert_non_null(h);
	assert_memory_equal(h, "$y$", 3);
	assert_true(passwd_verify("correct horse", h));
	assert_false(passwd_verify("correct horsE", h));
	assert_false(passwd_verify("", h));
	assert_true(passwd_hash_supported(h));
	/* salts differ */
	char *h2 = passwd_hash("correct horse");
	assert_non_null(h2);
	assert_string_not_equal(h, h2);
	assert_true(passwd_verify("correct horse", h2));
	free(h);
	free(h2);
	/* UTF-8 passwords are bytes */
	h = passwd_hash("p\xc3\xa4ssw\xc3\xb6rd");
	assert_non_null(h);
	assert_true(passwd_verify("p\xc3\xa4ssw\xc3\xb6rd", h));
	assert_false(passwd_verify("passwrd", h));
	free(h);
}

static void test_known_schemes(void **state)
{
	(void)state;
	static const struct {
		const char *prefix;
		unsigned long count;
	} schemes[] = {
		{ "$y$", 0 },
		{ "$6$", 5000 },
		{ "$2b$", 4 }, /* lowest bcrypt cost: keep the test fast */
	};
	for (size_t i = 0; i < N_ELEMENTS(schemes); i++) {
		char *h = make_hash(schemes[i].prefix, schemes[i].count, "s3cret");
		assert_memory_equal(h, schemes[i].prefix, strlen(schemes[i].prefix));
		assert_true(passwd_hash_supported(h));
		assert_true(passwd_verify("s3cret", h));
		assert_false(passwd_verify("s3cre", h));
		assert_false(passwd_verify("s3cret ", h));
		/* a changed last character no longer matches */
		size_t n = strlen(h);
		h[n - 1] = h[n - 1] == 'A' ? 'B' : 'A';
		assert_false(passwd_verify("s3cret", h));
		/* truncated hash */
		h[n - 5] = '\0';
		assert_false(passwd_verify("s3cret", h));
		assert_false(passwd_hash_supported(h));
		free(h);
	}
}

static void test_garbage_hashes(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"*",
		"!",
		"*LK*",
		"!$6$abc$def",
		"!!",
		"garbage",
		"$",
		"$y$",
		"$6$",
		"$2b$",
		"$2b$04$short",
		"$99$salt$hash",
		"$y$j9T$",
	};
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		assert_false(passwd_verify("", bad[i]));
		assert_false(passwd_verify("garbage", bad[i]));
		assert_false(passwd_hash_supported(bad[i]));
	}
	assert_false(passwd_verify("x", NULL));
	assert_false(passwd_hash_supported(NULL));
	/* a locked copy of a valid hash is refused */
	char *h = make_hash("$6$", 5000, "pw");
	char *locked = xasprintf("!%s", h);
	assert_false(passwd_verify("pw", locked));
	assert_false(passwd_hash_supported(locked));
	free(locked);
	free(h);
}

static void hmac256(const uint8_t *key, size_t keylen, const void *d, size_t n, uint8_t out[32])
{
	unsigned len = 0;
	assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, d, n, out, &len));
	assert_int_equal(len, 32);
}

static uint8_t *b64(const char *s, size_t *n)
{
	uint8_t *out = NULL;
	assert_int_equal(base64_decode(s, strlen(s), &out, n), 0);
	return out;
}

/* RFC 7677 3: user "user", password "pencil". */
static void test_scram_rfc7677(void **state)
{
	(void)state;
	size_t saltlen, prooflen, vlen;
	uint8_t *salt = b64("W22ZaJ0SNY7soEsUEjb6gQ==", &saltlen);
	uint8_t stored[32], server[32];
	scram_derive("pencil", salt, saltlen, 4096, stored, server);

	const char *auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,"
				   "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
				   "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
				   "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
	uint8_t *proof = b64("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", &prooflen);
	uint8_t *v = b64("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", &vlen);
	assert_int_equal(prooflen, 32);
	assert_int_equal(vlen, 32);

	/* ServerSignature = HMAC(ServerKey, AuthMessage) is the v= of the example */
	uint8_t sig[32];
	hmac256(server, 32, auth_message, strlen(auth_message), sig);
	assert_memory_equal(sig, v, 32);

	/* ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) = StoredKey */
	uint8_t csig[32], ckey[32], h[32];
	hmac256(stored, 32, auth_message, strlen(auth_message), csig);
	for (int i = 0; i < 32; i++)
		ckey[i] = proof[i] ^ csig[i];
	unsigned hl = 0;
	assert_int_equal(EVP_Digest(ckey, 32, h, &hl, EVP_sha256(), NULL), 1);
	assert_memory_equal(h, stored, 32);

	/* another password gives other keys */
	uint8_t stored2[32], server2[32];
	scram_derive("pencil2", salt, saltlen, 4096, stored2, server2);
	assert_memory_not_equal(stored, stored2, 32);
	assert_memory_not_equal(server, server2, 32);
	/* and so does another iteration count */
	scram_derive("pencil", salt, saltlen, 4097, stored2, server2);
	assert_memory_not_equal(stored, stored2, 32);
	free(salt);
	free(proof);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hash_roundtrip),
		cmocka_unit_test(test_known_schemes),
		cmocka_unit_test(test_garbage_hashes),
		cmocka_unit_test(test_scram_rfc7677),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
