/* SPDX-License-Identifier: MIT */
/* Fuzz the SASL mechanisms with whole exchanges.
 *
 * Input: one control byte, then the client messages separated by '\n'.
 *   control & 3   mechanism: 0 PLAIN, 1 LOGIN, 2 SCRAM-SHA-256, 3 PLAIN
 *   control & 4   the first message is an initial response (else the first
 *                 step is sent without input)
 *   control & 8   SCRAM: random server nonce (else the RFC 7677 example
 *                 nonce, so the seed with the RFC exchange authenticates)
 * The callbacks accept only user "user" with password "pencil" (SCRAM keys
 * from the RFC 7677 salt). Checks: no crash, output present on CONTINUE/OK,
 * OK only for "user", and every step after the end is SASL_BAD. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "auth/sasl.h"
#include "base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct scram_creds user_creds;
static bool creds_ready;

static bool cb_verify(void *ctx, const char *authcid, const char *password)
{
	(void)ctx;
	return strcmp(authcid, "user") == 0 && strcmp(password, "pencil") == 0;
}

static bool cb_creds(void *ctx, const char *authcid, struct scram_creds *c)
{
	(void)ctx;
	if (strcmp(authcid, "user") != 0)
		return false;
	*c = user_creds;
	return true;
}

static void init_creds(void)
{
	static const char salt64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";
	uint8_t *salt = NULL;
	size_t n = 0;
	if (base64_decode(salt64, sizeof(salt64) - 1, &salt, &n) < 0)
		abort();
	memcpy(user_creds.salt, salt, n);
	user_creds.salt_len = n;
	user_creds.iterations = 4096;
	scram_derive("pencil", salt, n, 4096, user_creds.stored_key, user_creds.server_key);
	free(salt);
	creds_ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const mechs[] = { "PLAIN", "LOGIN", "SCRAM-SHA-256", "plain" };
	static const struct sasl_callbacks cbs = { cb_verify, cb_creds };
	if (size < 1)
		return 0;
	if (!creds_ready)
		init_creds();
	uint8_t ctl = data[0];
	struct sasl *s = sasl_new(mechs[ctl & 3], &cbs, NULL);
	if (!s)
		abort();
	if ((ctl & 3) == 2 && !(ctl & 8))
		sasl_scram_set_nonce_for_test(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
	const uint8_t *p = data + 1, *end = data + size;
	const uint8_t *out = NULL;
	size_t outlen = 0;
	enum sasl_result r = SASL_CONTINUE;
	if (!(ctl & 4)) {
		r = sasl_step(s, NULL, 0, false, &out, &outlen);
		if (r != SASL_CONTINUE || !out)
			abort(); /* every mechanism starts with a challenge */
	}
	for (int steps = 0; r == SASL_CONTINUE && steps < 16; steps++) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		/* an exact-size copy, so ASan sees over-reads */
		uint8_t *msg = malloc(n ? n : 1);
		if (!msg)
			abort();
		if (n)
			memcpy(msg, p, n);
		r = sasl_step(s, msg, n, true, &out, &outlen);
		free(msg);
		if ((r == SASL_CONTINUE || r == SASL_OK) && !out)
			abort();
		if (!nl && r == SASL_CONTINUE)
			break;
		p = nl ? nl + 1 : end;
	}
	if (r == SASL_OK) {
		const char *id = sasl_authcid(s);
		if (!out || !id || strcmp(id, "user") != 0)
			abort();
	} else if (sasl_authcid(s)) {
		abort();
	}
	if (r != SASL_CONTINUE && sasl_step(s, (const uint8_t *)"x", 1, true, &out, &outlen) !=
					  SASL_BAD)
		abort();
	sasl_free(&s);
	return 0;
}
