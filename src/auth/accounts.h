/* SPDX-License-Identifier: MIT */
/* The account store: users, aliases and credentials in SQLite at
 * <data_dir>/accounts.db, shared by SMTP, POP3 and IMAP.
 *
 * Addresses are "local@domain". Lookups ignore ASCII case in both parts (the
 * stored spelling is kept for display), so Bob@Example.org and bob@example.org
 * are the same account. Each user has a password hash (libcrypt: yescrypt by
 * default; $y$, $6$, $2b$ verified) and, when the password was set through
 * Tern, SCRAM-SHA-256 keys (RFC 5802/7677) so SCRAM works without the
 * plaintext. Aliases map one address to one or more targets (accounts or other
 * aliases, resolved recursively with a depth limit).
 *
 * Every function is synchronous (SQLite, libcrypt): the daemon calls the slow
 * ones (verify, hashing) from io/jobs threads. One struct accounts per thread;
 * the database is opened in WAL mode with a busy timeout so the CLI can change
 * it while the server runs. */
#ifndef TERN_AUTH_ACCOUNTS_H
#define TERN_AUTH_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct accounts;

/* Opens (creating the schema if needed) <data_dir>/accounts.db. NULL + *err_r (malloc'd). */
struct accounts *accounts_open(const char *data_dir, char **err_r);
void accounts_close(struct accounts **a);

/* Results of mutations: 0 ok, -1 error with *err_r (malloc'd, human-readable:
 * "user exists", "no such user", "bad address", ...). */
int accounts_user_add(struct accounts *a, const char *address, const char *password,
		      char **err_r) ATTR_WARN_UNUSED;
/* Import an existing crypt hash ($y$, $6$, $2b$) instead of a password (no SCRAM keys). */
int accounts_user_add_hash(struct accounts *a, const char *address, const char *hash,
			   char **err_r) ATTR_WARN_UNUSED;
int accounts_user_del(struct accounts *a, const char *address, char **err_r) ATTR_WARN_UNUSED;
int accounts_user_passwd(struct accounts *a, const char *address, const char *password,
			 char **err_r) ATTR_WARN_UNUSED;
/* Calls cb for each user in address order. */
int accounts_user_list(struct accounts *a, void (*cb)(const char *address, void *ctx), void *ctx,
		       char **err_r) ATTR_WARN_UNUSED;
/* Canonical stored spelling of an existing user into *canon_r (malloc'd); false if none. */
bool accounts_user_exists(struct accounts *a, const char *address, char **canon_r);
/* First user created (by id), for postmaster fallback; NULL if none. malloc'd. */
char *accounts_first_user(struct accounts *a);
unsigned accounts_user_count(struct accounts *a);

int accounts_alias_add(struct accounts *a, const char *alias, const char *const *targets,
		       size_t ntargets, char **err_r) ATTR_WARN_UNUSED;
/* Delete an alias entirely (ntargets == 0) or just the given targets. */
int accounts_alias_del(struct accounts *a, const char *alias, const char *const *targets,
		       size_t ntargets, char **err_r) ATTR_WARN_UNUSED;
int accounts_alias_list(struct accounts *a, void (*cb)(const char *alias, const char *target,
						      void *ctx),
			void *ctx, char **err_r) ATTR_WARN_UNUSED;

/* Resolve a recipient address to the local accounts it delivers to.
 * Returns the number of accounts written to *users_r (a malloc'd array of
 * malloc'd canonical addresses, duplicates removed; free with
 * accounts_free_list), 0 if the address is neither a user nor an alias, or -1
 * on a storage error or alias loop/depth overflow (*err_r set). */
int accounts_resolve(struct accounts *a, const char *address, char ***users_r, char **err_r);
void accounts_free_list(char **list, size_t n);

/* Password check against the stored hash (slow by design: run on a job thread).
 * true only for an existing user and a matching password. */
bool accounts_verify_password(struct accounts *a, const char *address, const char *password);

/* SCRAM-SHA-256 credentials of a user (RFC 5802 3). false if the user is
 * unknown or has no SCRAM keys (imported hash). */
struct scram_creds {
	uint8_t salt[32];
	size_t salt_len;
	unsigned iterations;
	uint8_t stored_key[32];
	uint8_t server_key[32];
};
bool accounts_scram_creds(struct accounts *a, const char *address, struct scram_creds *c);

/* APOP (RFC 1939 7) shared secret of a user: set (secret != NULL) or remove
 * (NULL). Stored apart from the password hash and readable by design, which
 * is why APOP is weaker than a password hash: see README. 0 or -1 + *err_r. */
int accounts_apop_set(struct accounts *a, const char *address, const char *secret,
		      char **err_r) ATTR_WARN_UNUSED;
/* true if the user has an APOP secret and digest (32 hex digits, any case)
 * equals MD5(timestamp || secret). Constant-time comparison. */
bool accounts_apop_verify(struct accounts *a, const char *address, const char *timestamp,
			  const char *digest);

#endif
