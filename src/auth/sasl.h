/* SPDX-License-Identifier: MIT */
/* I/O-free SASL server mechanisms shared by SMTP AUTH, POP3 AUTH and IMAP
 * AUTHENTICATE: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login) and
 * SCRAM-SHA-256 (RFC 5802, RFC 7677). The protocol layer does the base64 and
 * framing; this module sees decoded bytes. Credentials are checked through
 * callbacks, so the caller decides where (job thread) and how (accounts). */
#ifndef TERN_AUTH_SASL_H
#define TERN_AUTH_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct scram_creds;
struct sasl;

struct sasl_callbacks {
	/* PLAIN and LOGIN: true if authcid/password are valid. */
	bool (*verify_password)(void *ctx, const char *authcid, const char *password);
	/* SCRAM: fill creds for authcid; false if unknown (the exchange then fails at
	 * the end, without revealing whether the user exists). */
	bool (*scram_creds)(void *ctx, const char *authcid, struct scram_creds *c);
};

enum sasl_result {
	SASL_CONTINUE, /* send the challenge in *out, then step() with the client's answer */
	SASL_OK,       /* authenticated; *out may hold final server data (SCRAM's v=) */
	SASL_FAIL,     /* authentication failed (bad credentials) */
	SASL_BAD,      /* malformed exchange (protocol error) */
};

/* Mechanism names in advertising order: "PLAIN", "LOGIN", "SCRAM-SHA-256",
 * then NULL. */
extern const char *const sasl_mechanisms[];
bool sasl_mech_supported(const char *name); /* case-insensitive */

/* NULL if the mechanism is unknown, or if cb lacks the callback it needs
 * (verify_password for PLAIN/LOGIN, scram_creds for SCRAM-SHA-256). */
struct sasl *sasl_new(const char *mech, const struct sasl_callbacks *cb, void *ctx);
void sasl_free(struct sasl **s);
/* Feed the client's next message (decoded; for the first step it is the initial
 * response, or NULL when the client sent none). On CONTINUE/OK, *out and *outlen
 * point to server data owned by s (valid until the next call). */
enum sasl_result sasl_step(struct sasl *s, const uint8_t *in, size_t inlen, bool has_input,
			   const uint8_t **out, size_t *outlen);
/* After SASL_OK: the authenticated identity (authcid). An authzid different
 * from the authcid is refused by the mechanisms (SASL_FAIL). */
const char *sasl_authcid(const struct sasl *s);

/* Tests only: make a SCRAM-SHA-256 exchange use server_nonce (printable, no
 * ',') instead of 24 random octets, so the RFC 7677 example can be replayed.
 * Call right after sasl_new(). Never use outside tests: nonces must be fresh. */
void sasl_scram_set_nonce_for_test(struct sasl *s, const char *server_nonce);

#endif
