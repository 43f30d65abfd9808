/* SPDX-License-Identifier: MIT */
/* AUTHENTICATE (RFC 9051 6.2.2) with SASL-IR (RFC 4959): mechanisms from
 * auth/sasl.h. The engine does base64 and framing; PLAIN/LOGIN passwords
 * are checked by the app's login() op once the exchange is complete (so
 * that may be PENDING), SCRAM-SHA-256 proofs by sasl.c with the app's
 * scram_creds, and the outcome goes to sasl_done when the app has it (the
 * POP3 engine's contract). "*" cancels (BAD). */
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "auth/sasl_wire.h"
#include "base/util.h"
#include "proto/imap/imap_int.h"

static bool mech_plaintext(const char *m)
{
	return ascii_strcasecmp(m, "PLAIN") == 0 || ascii_strcasecmp(m, "LOGIN") == 0;
}

static bool cb_verify(void *ctx, const char *authcid, const char *password)
{
	struct imap_server *s = ctx;
	free(s->sasl_user);
	s->sasl_user = xstrdup(authcid);
	sasl_wire_set_secret(&s->sasl_pass, password);
	return true;
}

static bool cb_scram(void *ctx, const char *authcid, struct scram_creds *c)
{
	struct imap_server *s = ctx;
	return s->ops->scram_creds(s->ctx, authcid, c);
}

static const struct sasl_callbacks imap_sasl_cb = { cb_verify, cb_scram };

void imap_sasl_end(struct imap_server *s)
{
	sasl_free(&s->sasl);
	s->in_sasl = s->sasl_final = s->sasl_had_input = false;
	if (s->sasl_in.data)
		memset(s->sasl_in.data, 0, s->sasl_in.len);
	buf_deinit(&s->sasl_in);
	free(s->sasl_mech);
	s->sasl_mech = NULL;
	free(s->sasl_user);
	s->sasl_user = NULL;
	free(s->sasl_claimed);
	s->sasl_claimed = NULL;
	sasl_wire_set_secret(&s->sasl_pass, NULL);
}


static void sasl_done(struct imap_server *s, bool ok)
{
	const char *who = ok ? s->sasl_user : (s->sasl_user ? s->sasl_user : s->sasl_claimed);
	char *user = xstrdup(who ? who : "");
	char *mech = xstrdup(s->sasl_mech);
	imap_sasl_end(s);
	free(s->login_user);
	s->login_user = user;
	s->login_denied = !ok;
	enum imap_verdict v = s->ops->sasl_done(s->ctx, s, mech, user, ok);
	free(mech);
	imap_verdict(s, v, imap_login_verdict);
}

static void challenge(struct imap_server *s, const uint8_t *p, size_t n)
{
	sasl_wire_challenge(&s->out, "+ ", p, n);
	s->in_sasl = true;
	imap_parser_read_line(s->parser);
}

static void sasl_failed(struct imap_server *s, bool credentials, const char *text)
{
	imap_sasl_end(s);
	if (credentials) {
		imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "%s", text);
		imap_auth_failed(s);
	} else {
		imap_bad(s, "%s", text);
	}
}

static void auth_step(struct imap_server *s, const uint8_t *in, size_t n, bool has_input)
{
	bool scram = ascii_strcasecmp(s->sasl_mech, "SCRAM-SHA-256") == 0;
	if (has_input && !s->sasl_had_input) {
		s->sasl_had_input = true;
		if (scram) {
			free(s->sasl_claimed);
			s->sasl_claimed = sasl_wire_scram_username(in, n);
		}
		char *user = NULL;
		if (s->ops->scram_prepare && scram && (user = sasl_wire_scram_username(in, n)) != NULL) {
			buf_clear(&s->sasl_in);
			buf_xappend(&s->sasl_in, in, n);
			enum imap_verdict v = s->ops->scram_prepare(s->ctx, s, user);
			free(user);
			imap_verdict(s, v, imap_sasl_continue);
			return;
		}
	}
	const uint8_t *out = NULL;
	size_t outlen = 0;
	switch (sasl_step(s->sasl, in, n, has_input, &out, &outlen)) {
	case SASL_CONTINUE:
		challenge(s, out, outlen);
		return;
	case SASL_OK:
		if (!mech_plaintext(s->sasl_mech)) {
			/* RFC 9051 6.2.2 allows the final data in the OK, but
			 * clients cope best with it as a challenge answered by "" */
			free(s->sasl_user);
			s->sasl_user = xstrdup(sasl_authcid(s->sasl));
			s->sasl_final = true;
			challenge(s, out, outlen);
			return;
		}
		{
			char *mech = xstrdup(s->sasl_mech);
			free(s->login_user);
			s->login_user = s->sasl_user;
			s->sasl_user = NULL;
			char *pw = s->sasl_pass;
			s->sasl_pass = NULL;
			imap_sasl_end(s);
			s->login_denied = false;
			enum imap_verdict v = s->ops->login(s->ctx, s, mech, s->login_user, pw ? pw : "");
			if (pw) {
				memset(pw, 0, strlen(pw));
				free(pw);
			}
			free(mech);
			imap_verdict(s, v, imap_login_verdict);
		}
		return;
	case SASL_FAIL:
		if (s->ops->sasl_done) {
			sasl_done(s, false);
			return;
		}
		sasl_failed(s, true, "Authentication failed");
		return;
	case SASL_BAD:
		sasl_failed(s, false, "Invalid authentication exchange");
		return;
	}
}

void imap_sasl_continue(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK && s->reply_set) {
		imap_sasl_end(s);
		imap_no_app(s, "UNAVAILABLE", "Authentication failed");
		return;
	}
	s->reply_set = false;
	struct buf in = s->sasl_in;
	buf_init(&s->sasl_in, 0);
	auth_step(s, in.data, in.len, true);
	if (in.data)
		memset(in.data, 0, in.len);
	buf_deinit(&in);
}

void imap_sasl_line(struct imap_server *s, const uint8_t *l, size_t len)
{
	s->in_sasl = false;
	uint8_t *dec = NULL;
	size_t declen = 0;
	enum sasl_wire_kind k = sasl_wire_decode((const char *)l, len, false, &dec, &declen);
	if (k == SASL_WIRE_CANCEL) {
		/* RFC 9051 6.2.2: the client cancels; BAD */
		imap_sasl_end(s);
		imap_bad(s, "Authentication cancelled");
		return;
	}
	if (s->sasl_final) {
		sasl_wire_free(dec, declen);
		if (len != 0) {
			sasl_failed(s, true, "Authentication failed");
			return;
		}
		if (s->ops->sasl_done) {
			sasl_done(s, true);
			return;
		}
		free(s->login_user);
		s->login_user = s->sasl_user;
		s->sasl_user = NULL;
		imap_sasl_end(s);
		s->login_denied = false;
		imap_login_verdict(s, IMAP_OK);
		return;
	}
	if (k != SASL_WIRE_DATA) {
		sasl_failed(s, false, "Invalid base64 data");
		return;
	}
	auth_step(s, dec, declen, true);
	sasl_wire_free(dec, declen);
}

void imap_cmd_authenticate(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	const char *m, *ir = NULL;
	size_t ml, irl = 0;
	if (n < 1 || n > 2 || !imap_arg_get_atom(&args[0], &m, &ml) ||
	    (n == 2 && !imap_arg_get_atom(&args[1], &ir, &irl))) {
		imap_bad(s, "AUTHENTICATE needs a mechanism");
		return;
	}
	char *mech = xstrndup(m, ml);
	for (char *c = mech; *c; c++)
		*c = ascii_toupper(*c);
	bool offered = sasl_mech_supported(mech) &&
		       (strcmp(mech, "SCRAM-SHA-256") != 0 || s->ops->scram_creds);
	if (!offered || (mech_plaintext(mech) && !imap_plaintext_ok(s))) {
		free(mech);
		/* RFC 9051 6.2.2: NO for an unsupported mechanism */
		imap_tagged(s, "NO", offered ? "PRIVACYREQUIRED" : "CANNOT",
			    offered ? "Plaintext authentication disallowed"
				    : "Unsupported authentication mechanism");
		return;
	}
	s->sasl = sasl_new(mech, &imap_sasl_cb, s);
	ASSERT(s->sasl != NULL);
	s->sasl_mech = mech;
	if (!ir) {
		auth_step(s, NULL, 0, false);
		return;
	}
	/* RFC 4959: "=" is an empty initial response (sasl_wire) */
	uint8_t *dec = NULL;
	size_t declen = 0;
	if (sasl_wire_decode(ir, irl, true, &dec, &declen) != SASL_WIRE_DATA) {
		sasl_failed(s, false, "Invalid base64 data");
		return;
	}
	auth_step(s, dec, declen, true);
	sasl_wire_free(dec, declen);
}
