/* SPDX-License-Identifier: MIT */
/* Password hashing with libcrypt, and SCRAM-SHA-256 key derivation. */
#ifndef TERN_AUTH_PASSWD_H
#define TERN_AUTH_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* New yescrypt hash ("$y$...") of password; malloc'd, NULL on failure. */
char *passwd_hash(const char *password);
/* Constant-time verify of password against a crypt hash ($y$, $6$, $2b$, ...). */
bool passwd_verify(const char *password, const char *hash);
/* True if libcrypt understands this hash prefix. */
bool passwd_hash_supported(const char *hash);

/* SCRAM-SHA-256 (RFC 5802 3, RFC 7677): SaltedPassword = PBKDF2-HMAC-SHA-256,
 * StoredKey = H(HMAC(SaltedPassword, "Client Key")),
 * ServerKey = HMAC(SaltedPassword, "Server Key"). password should be SASLprep'd
 * (we accept ASCII as is and UTF-8 unchanged). */
void scram_derive(const char *password, const uint8_t *salt, size_t salt_len, unsigned iterations,
		  uint8_t stored_key[32], uint8_t server_key[32]);

#endif
