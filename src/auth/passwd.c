/* SPDX-License-Identifier: MIT */
/* Password hashes and SCRAM keys.
 *
 * Hashes are libcrypt (libxcrypt) strings: new ones are yescrypt ("$y$") at
 * libcrypt's default cost; verification accepts whatever the library supports
 * ($y$, $6$ sha512crypt, $2b$ bcrypt, ...). The crypt work area is large
 * (~32 KiB), so it lives on the heap and is wiped after use. The comparison
 * of the computed and stored hash is constant-time.
 *
 * SCRAM-SHA-256 keys follow RFC 5802 3 with the hash of RFC 7677. */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/passwd.h"
#include "base/util.h"

/* libcrypt limit (CRYPT_MAX_PASSPHRASE_SIZE) and a generous bound on stored hashes. */
#define PASSWD_MAX_LEN 512
#define HASH_MAX_LEN 512

/* Runs crypt_r(password, setting) and returns a malloc'd copy of the result,
 * or NULL when libcrypt refuses (its failure tokens start with '*'). */
static char *crypt_dup(const char *password, const char *setting)
{
	if (strlen(password) >= PASSWD_MAX_LEN || strlen(setting) >= HASH_MAX_LEN)
		return NULL;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *res = crypt_r(password, setting, cd);
	char *out = NULL;
	if (res && res[0] != '*' && res[0] != '\0')
		out = xstrdup(res);
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return out;
}

char *passwd_hash(const char *password)
{
	if (!password)
		return NULL;
	/* count 0 = libcrypt's default cost for yescrypt; NULL rbytes = its own entropy */
	char *salt = crypt_gensalt_ra("$y$", 0, NULL, 0);
	if (!salt)
		return NULL;
	char *h = crypt_dup(password, salt);
	free(salt);
	return h;
}

/* "*..." and "!..." are the locked / disabled account conventions of shadow(5). */
static bool hash_plausible(const char *hash)
{
	return hash && hash[0] != '\0' && hash[0] != '*' && hash[0] != '!' &&
	       strlen(hash) < HASH_MAX_LEN;
}

bool passwd_verify(const char *password, const char *hash)
{
	if (!password || !hash_plausible(hash))
		return false;
	char *got = crypt_dup(password, hash);
	if (!got)
		return false;
	size_t n = strlen(hash);
	bool ok = strlen(got) == n && CRYPTO_memcmp(got, hash, n) == 0;
	OPENSSL_cleanse(got, strlen(got));
	free(got);
	return ok;
}

bool passwd_hash_supported(const char *hash)
{
	if (!hash_plausible(hash))
		return false;
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_METHOD_LEGACY:
	case CRYPT_SALT_TOO_CHEAP:
		break;
	default:
		return false;
	}
	/* crypt_checksalt() only looks at the setting: make sure the whole string
	 * has the shape libcrypt produces, by hashing a dummy password with it and
	 * comparing lengths and the setting part (up to the last '$'). */
	char *got = crypt_dup("tern-probe", hash);
	if (!got)
		return false;
	const char *last = strrchr(hash, '$');
	size_t prefix = last ? (size_t)(last - hash) : 2; /* DES: 2-char salt */
	bool ok = strlen(got) == strlen(hash) && strncmp(got, hash, prefix) == 0;
	free(got);
	return ok;
}

static void hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len,
			uint8_t out[32])
{
	unsigned outlen = 0;
	if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) || outlen != 32)
		panic("HMAC-SHA-256 failed");
}

void scram_derive(const char *password, const uint8_t *salt, size_t salt_len, unsigned iterations,
		  uint8_t stored_key[32], uint8_t server_key[32])
{
	ASSERT(iterations >= 1 && iterations <= 0x7fffffff);
	ASSERT(salt_len <= 0x7fffffff);
	uint8_t salted[32], client_key[32];
	size_t plen = strlen(password);
	ASSERT(plen <= 0x7fffffff);
	/* RFC 5802 3: SaltedPassword := Hi(Normalize(password), salt, i), Hi = PBKDF2 */
	if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, (int)iterations,
			      EVP_sha256(), sizeof(salted), salted) != 1)
		panic("PBKDF2 failed");
	hmac_sha256(salted, sizeof(salted), "Client Key", 10, client_key);
	hmac_sha256(salted, sizeof(salted), "Server Key", 10, server_key);
	unsigned mdlen = 0;
	if (EVP_Digest(client_key, sizeof(client_key), stored_key, &mdlen, EVP_sha256(), NULL) !=
		    1 ||
	    mdlen != 32)
		panic("SHA-256 failed");
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
}
