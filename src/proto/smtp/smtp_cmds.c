/* SPDX-License-Identifier: MIT */
/* The SMTP command table and its handlers (design.md 2.4). The dispatcher
 * applies every rule that can be written as data (HELO first, inside a
 * transaction, no arguments) before a handler runs. Each command then has a
 * check (syntax and command-specific state; it sends its own refusal and
 * returns false) and a proceed (does the work; its app_verdict is applied by
 * the dispatcher when the entry names a verdict kind). A policy step can later
 * slot in between the two without touching handlers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "auth/sasl_wire.h"
#include "base/util.h"
#include "proto/smtp/smtp_int.h"
#include "proto/smtp/smtp_parse.h"
#include "queue/dsn.h"

enum smtp_cmd_flags {
	SCF_PRE_TLS = 1 << 0,	 /* allowed before STARTTLS on a TLS-required listener (later) */
	SCF_PRE_AUTH = 1 << 1,	 /* allowed before AUTH when settings.auth_required */
	SCF_LAST = 1 << 2,	 /* must be last in a pipelined group (RFC 2920 3.1) */
	SCF_NEEDS_HELO = 1 << 3, /* HELO/EHLO first (RFC 5321 4.1.4) */
	SCF_IN_TX = 1 << 4,	 /* MAIL accepted first */
	SCF_NO_ARGS = 1 << 5,
	SCF_SELF = 1 << 6, /* checks HELO/transaction/AUTH state itself (BDAT) */
};

struct cmd_args {
	const char *name; /* the table's spelling */
	const char *arg;  /* after the verb and its spaces; not NUL-terminated */
	size_t len;
	uint64_t bdat_len;
	bool bdat_last;
};

struct smtp_cmd {
	const char *name;
	bool (*check)(struct smtp_server *s, struct cmd_args *a);
	enum app_verdict (*proceed)(struct smtp_server *s, struct cmd_args *a);
	enum smtp_pend verdict; /* what proceed's verdict decides; NONE: no app */
	unsigned flags;
};

/* ---- HELO / EHLO (RFC 5321 4.1.1.1) ----------------------------------- */

static bool check_helo(struct smtp_server *s, struct cmd_args *a)
{
	if (a->len == 0) {
		smtp_refuse(s, a->name, true, 501, "5.5.4", "Syntax: %s hostname", a->name);
		return false;
	}
	return true;
}

static void helo_common(struct smtp_server *s, struct cmd_args *a, bool ehlo)
{
	/* 4.1.4: EHLO/HELO resets the state as RSET would */
	smtp_tx_reset(s, false);
	free(s->helo);
	s->helo = xstrndup(a->arg, a->len);
	s->esmtp = ehlo;
	if (s->ops->helo)
		s->ops->helo(s->ctx, s, s->helo, ehlo);
}

static enum app_verdict proceed_helo(struct smtp_server *s, struct cmd_args *a)
{
	helo_common(s, a, false);
	smtp_emit(s, 250, NULL, "%s", s->set.hostname);
	return APP_OK;
}

static bool mech_plaintext(const char *m)
{
	return ascii_strcasecmp(m, "PLAIN") == 0 || ascii_strcasecmp(m, "LOGIN") == 0;
}

/* Supported by sasl.c, backed by the app, and not a password in the clear
 * where that is not allowed (RFC 4954 4: such mechanisms are not offered). */
static bool mech_usable(const struct smtp_server *s, const char *m)
{
	if (!sasl_mech_supported(m))
		return false;
	if (ascii_strcasecmp(m, "SCRAM-SHA-256") == 0)
		return s->ops->scram_creds != NULL;
	if (mech_plaintext(m))
		return s->ops->auth_password != NULL && (s->tls || s->set.auth_plaintext);
	return true;
}

static enum app_verdict proceed_ehlo(struct smtp_server *s, struct cmd_args *a)
{
	helo_common(s, a, true);
	/* RFC 1870 SIZE; RFC 2920; RFC 6152; RFC 2034; RFC 3207; RFC 4954;
	 * RFC 6531; RFC 3030; RFC 3461 */
	char size[32] = "SIZE";
	if (s->set.max_message_size)
		snprintf(size, sizeof size, "SIZE %llu",
			 (unsigned long long)s->set.max_message_size);
	struct buf auth = BUF_INIT(0);
	if (s->set.auth_offered) {
		for (size_t i = 0; sasl_mechanisms[i]; i++)
			if (mech_usable(s, sasl_mechanisms[i]))
				buf_xprintf(&auth, "%s %s", auth.len ? "" : "AUTH",
					    sasl_mechanisms[i]);
		if (auth.len)
			buf_xappend(&auth, "\n", 1);
	}
	smtp_emit(s, 250, NULL,
		  "%s\nPIPELINING\n%s\n8BITMIME\nENHANCEDSTATUSCODES\n%s%sSMTPUTF8\nCHUNKING\nDSN",
		  s->set.hostname, size, s->set.starttls_offered && !s->tls ? "STARTTLS\n" : "",
		  buf_cstr(&auth));
	buf_deinit(&auth);
	return APP_OK;
}

/* ---- MAIL (RFC 5321 4.1.1.2, RFC 1870, RFC 6152, RFC 6531) ------------ */

/* "FROM:" / "TO:" then optional spaces (Postfix tolerates "MAIL FROM: <a>"). */
static bool take_prefix(struct cmd_args *a, const char *prefix, const char **p)
{
	if (!ascii_prefix_ci(a->arg, a->len, prefix))
		return false;
	*p = a->arg + strlen(prefix);
	while (*p < a->arg + a->len && **p == ' ')
		(*p)++;
	return true;
}

static bool key_is(const struct smtp_param *kv, const char *name)
{
	return kv->keylen == strlen(name) && ascii_strncasecmp(kv->key, name, kv->keylen) == 0;
}

static bool value_is(const struct smtp_param *kv, const char *v)
{
	return kv->value && kv->valuelen == strlen(v) &&
	       ascii_strncasecmp(kv->value, v, kv->valuelen) == 0;
}

/* RFC 3461 4: xtext values, decoded; max bounds the encoded length (ENVID
 * 100, ORCPT 500: RFC 3461 4.4, 4.2). Control characters are refused even
 * when hex-escaped: the value ends up in a DSN header. malloc'd or NULL. */
static char *xtext_value(const char *p, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return NULL;
	struct buf b = BUF_INIT(max + 1);
	if (dsn_xtext_decode(p, n, &b) < 0) {
		buf_deinit(&b);
		return NULL;
	}
	for (size_t i = 0; i < b.len; i++) {
		if (b.data[i] < 0x20 || b.data[i] == 0x7f) {
			buf_deinit(&b);
			return NULL;
		}
	}
	char *r = xstrndup(buf_cstr(&b), b.len);
	buf_deinit(&b);
	return r;
}

/* RFC 3461 4.1: NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ).
 * Returns the bits, 0 on a syntax error. */
static unsigned parse_notify(const char *p, size_t n)
{
	static const struct {
		const char *name;
		unsigned bit;
	} kw[] = { { "NEVER", SMTP_NOTIFY_NEVER },
		   { "SUCCESS", SMTP_NOTIFY_SUCCESS },
		   { "FAILURE", SMTP_NOTIFY_FAILURE },
		   { "DELAY", SMTP_NOTIFY_DELAY } };
	unsigned bits = 0;
	const char *end = p + n;
	while (p < end) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t l = c ? (size_t)(c - p) : (size_t)(end - p);
		unsigned bit = 0;
		for (size_t i = 0; i < N_ELEMENTS(kw); i++)
			if (strlen(kw[i].name) == l && ascii_strncasecmp(p, kw[i].name, l) == 0)
				bit = kw[i].bit;
		if (!bit || (bits & bit))
			return 0;
		bits |= bit;
		if (!c)
			break;
		p = c + 1;
		if (p == end)
			return 0; /* trailing comma */
	}
	/* NEVER must stand alone */
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return 0;
	return bits;
}

/* RFC 3461 4.2: ORCPT=addr-type ";" xtext, addr-type = atom (RFC 3464 2.1.2:
 * "rfc822", "utf-8", ...). Returns "addr-type;decoded" malloc'd or NULL. */
static char *parse_orcpt(const char *p, size_t n)
{
	if (n > 500)
		return NULL;
	const char *semi = memchr(p, ';', n);
	if (!semi || semi == p)
		return NULL;
	for (const char *q = p; q < semi; q++) {
		unsigned char c = (unsigned char)*q;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-';
		if (!ok)
			return NULL;
	}
	char *addr = xtext_value(semi + 1, (size_t)(p + n - semi - 1), 500);
	if (!addr)
		return NULL;
	char *r = xasprintf("%.*s;%s", (int)(semi - p), p, addr);
	free(addr);
	return r;
}

static bool check_mail(struct smtp_server *s, struct cmd_args *a)
{
	const char *p, *end = a->arg + a->len;
	if (s->in_tx) {
		smtp_refuse(s, "MAIL", true, 503, "5.5.1", "Error: nested MAIL command");
		return false;
	}
	if (!take_prefix(a, "FROM:", &p)) {
		smtp_refuse(s, "MAIL", true, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return false;
	}
	char *addr;
	size_t used;
	if (smtp_parse_path(p, (size_t)(end - p), true, true, &addr, &used) < 0) {
		smtp_refuse(s, "MAIL", true, 501, "5.1.7", "Bad sender address syntax");
		return false;
	}
	p += used;
	struct smtp_mail m = { addr, 0, SMTP_BODY_7BIT, false, SMTP_RET_UNSPEC, NULL, NULL };
	bool seen_size = false, seen_body = false;
	char *envid = NULL, *auth = NULL;
	struct smtp_param kv;
	int r;
	while ((r = smtp_parse_param_next(&p, end, &kv)) > 0) {
		if (!s->esmtp) {
			/* RFC 5321 2.2.1: a client that said HELO uses no extensions */
			smtp_refuse(s, "MAIL", true, 555, "5.5.4",
				    "Error: parameters need EHLO: %.*s", (int)kv.keylen, kv.key);
			goto fail;
		}
		if (key_is(&kv, "SIZE") && !seen_size) {
			seen_size = true;
			if (!kv.value || smtp_parse_u64(kv.value, kv.valuelen, &m.size) < 0) {
				smtp_refuse(s, "MAIL", true, 501, "5.5.4",
					    "Bad SIZE parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "BODY") && !seen_body) {
			seen_body = true;
			if (value_is(&kv, "7BIT")) {
				m.body = SMTP_BODY_7BIT;
			} else if (value_is(&kv, "8BITMIME")) {
				m.body = SMTP_BODY_8BITMIME;
			} else if (value_is(&kv, "BINARYMIME")) {
				/* RFC 3030 3: only valid when advertised, and we do not */
				smtp_refuse(s, "MAIL", true, 504, "5.5.4",
					    "Error: BODY=BINARYMIME is not supported");
				goto fail;
			} else {
				smtp_refuse(s, "MAIL", true, 501, "5.5.4",
					    "Bad BODY parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "SMTPUTF8") && !m.smtputf8) {
			if (kv.value) {
				smtp_refuse(s, "MAIL", true, 501, "5.5.4",
					    "Bad SMTPUTF8 parameter syntax");
				goto fail;
			}
			m.smtputf8 = true;
		} else if (key_is(&kv, "RET") && m.ret == SMTP_RET_UNSPEC) {
			/* RFC 3461 4.3 */
			if (value_is(&kv, "FULL")) {
				m.ret = SMTP_RET_FULL;
			} else if (value_is(&kv, "HDRS")) {
				m.ret = SMTP_RET_HDRS;
			} else {
				smtp_refuse(s, "MAIL", true, 501, "5.5.4", "Bad RET parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "ENVID") && !envid) {
			/* RFC 3461 4.4 */
			if (!kv.value || !(envid = xtext_value(kv.value, kv.valuelen, 100))) {
				smtp_refuse(s, "MAIL", true, 501, "5.5.4",
					    "Bad ENVID parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "AUTH") && !auth) {
			/* RFC 4954 5: AUTH=xtext / "<>"; accepted and kept for the
			 * log, never trusted (we relay for no one on its word) */
			if (value_is(&kv, "<>"))
				auth = xstrdup("<>");
			else if (!kv.value || !(auth = xtext_value(kv.value, kv.valuelen, 500))) {
				smtp_refuse(s, "MAIL", true, 501, "5.5.4",
					    "Bad AUTH parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "SIZE") || key_is(&kv, "BODY") || key_is(&kv, "SMTPUTF8") ||
			   key_is(&kv, "RET") || key_is(&kv, "ENVID") || key_is(&kv, "AUTH")) {
			smtp_refuse(s, "MAIL", true, 501, "5.5.4", "Error: duplicate parameter");
			goto fail;
		} else {
			/* RFC 5321 4.1.1.11 / 4.2.3: 555 for unknown parameters */
			smtp_refuse(s, "MAIL", true, 555, "5.5.4", "Unsupported option: %.*s",
				    (int)kv.keylen, kv.key);
			goto fail;
		}
	}
	if (r < 0) {
		smtp_refuse(s, "MAIL", true, 501, "5.5.4",
			    "Syntax: MAIL FROM:<address> [parameters]");
		goto fail;
	}
	if (s->set.max_message_size && m.size > s->set.max_message_size) {
		/* RFC 1870 6.1 */
		smtp_refuse(s, "MAIL", false, 552, "5.3.4", "Message size exceeds fixed limit");
		goto fail;
	}
	if (!m.smtputf8 && !smtp_is_ascii(addr)) {
		/* RFC 6531 3.7.4.1 */
		smtp_refuse(s, "MAIL", true, 553, "5.6.7",
			    "Error: non-ASCII address requires SMTPUTF8");
		goto fail;
	}
	free(s->from);
	free(s->envid);
	free(s->auth_param);
	s->from = addr;
	s->envid = envid;
	s->auth_param = auth;
	m.envid = envid;
	m.auth = auth;
	s->mail = m;
	return true;
fail:
	free(addr);
	free(envid);
	free(auth);
	return false;
}

static enum app_verdict proceed_mail(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	return s->ops->mail(s->ctx, s, &s->mail);
}

/* ---- RCPT (RFC 5321 4.1.1.3) ------------------------------------------ */

static bool check_rcpt(struct smtp_server *s, struct cmd_args *a)
{
	const char *p, *end = a->arg + a->len;
	if (s->nrcpts >= s->set.max_rcpts) {
		/* RFC 5321 4.5.3.1.10 */
		smtp_refuse(s, "RCPT", false, 452, "4.5.3", "Error: too many recipients");
		return false;
	}
	if (!take_prefix(a, "TO:", &p)) {
		smtp_refuse(s, "RCPT", true, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return false;
	}
	char *addr;
	size_t used;
	if (ascii_prefix_ci(p, (size_t)(end - p), "<postmaster>")) {
		/* RFC 5321 4.5.1: "<Postmaster>" without a domain, any case */
		addr = xstrdup("postmaster");
		used = strlen("<postmaster>");
	} else if (smtp_parse_path(p, (size_t)(end - p), false, true, &addr, &used) < 0) {
		smtp_refuse(s, "RCPT", true, 501, "5.1.3", "Bad recipient address syntax");
		return false;
	}
	p += used;
	struct smtp_param kv;
	unsigned notify = 0;
	char *orcpt = NULL;
	int r;
	while ((r = smtp_parse_param_next(&p, end, &kv)) > 0) {
		if (!s->esmtp) {
			smtp_refuse(s, "RCPT", true, 555, "5.5.4",
				    "Error: parameters need EHLO: %.*s", (int)kv.keylen, kv.key);
			goto fail;
		}
		if (key_is(&kv, "NOTIFY") && !notify) {
			/* RFC 3461 4.1 */
			if (!kv.value || !(notify = parse_notify(kv.value, kv.valuelen))) {
				smtp_refuse(s, "RCPT", true, 501, "5.5.4",
					    "Bad NOTIFY parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "ORCPT") && !orcpt) {
			/* RFC 3461 4.2 */
			if (!kv.value || !(orcpt = parse_orcpt(kv.value, kv.valuelen))) {
				smtp_refuse(s, "RCPT", true, 501, "5.5.4",
					    "Bad ORCPT parameter syntax");
				goto fail;
			}
		} else if (key_is(&kv, "NOTIFY") || key_is(&kv, "ORCPT")) {
			smtp_refuse(s, "RCPT", true, 501, "5.5.4", "Error: duplicate parameter");
			goto fail;
		} else {
			smtp_refuse(s, "RCPT", true, 555, "5.5.4", "Unsupported option: %.*s",
				    (int)kv.keylen, kv.key);
			goto fail;
		}
	}
	if (r < 0) {
		smtp_refuse(s, "RCPT", true, 501, "5.5.4",
			    "Syntax: RCPT TO:<address> [parameters]");
		goto fail;
	}
	if (!s->smtputf8 && !smtp_is_ascii(addr)) {
		smtp_refuse(s, "RCPT", true, 553, "5.6.7",
			    "Error: non-ASCII address requires SMTPUTF8");
		goto fail;
	}
	free(s->to);
	free(s->orcpt);
	s->to = addr;
	s->orcpt = orcpt;
	s->rcpt = (struct smtp_rcpt){ addr, notify, orcpt };
	return true;
fail:
	free(addr);
	free(orcpt);
	return false;
}

static enum app_verdict proceed_rcpt(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	return s->ops->rcpt(s->ctx, s, &s->rcpt);
}

/* ---- DATA (RFC 5321 4.1.1.4) and BDAT (RFC 3030) ---------------------- */

static bool check_data(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	if (s->content == SMTP_CONTENT_BDAT) {
		/* RFC 3030 2: DATA and BDAT do not mix in one transaction */
		smtp_refuse(s, "DATA", true, 503, "5.5.1", "Error: DATA after BDAT");
		return false;
	}
	if (s->nrcpts == 0) {
		smtp_refuse(s, "DATA", true, 503, "5.5.1", "Error: need RCPT command");
		return false;
	}
	return true;
}

static enum app_verdict data_begin(struct smtp_server *s)
{
	return s->ops->data_begin ? s->ops->data_begin(s->ctx, s) : APP_OK;
}

static enum app_verdict proceed_data(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	return data_begin(s);
}

/* bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF (RFC 3030 2) */
static bool check_bdat(struct smtp_server *s, struct cmd_args *a)
{
	const char *sp = memchr(a->arg, ' ', a->len);
	size_t nlen = sp ? (size_t)(sp - a->arg) : a->len;
	bool ok = smtp_parse_u64(a->arg, nlen, &a->bdat_len) == 0;
	a->bdat_last = false;
	if (ok && sp) {
		const char *m = sp;
		while (m < a->arg + a->len && *m == ' ')
			m++;
		size_t mlen = (size_t)(a->arg + a->len - m);
		ok = mlen == 4 && ascii_strncasecmp(m, "LAST", 4) == 0;
		a->bdat_last = true;
	}
	if (!ok) {
		/* Without a valid size the chunk cannot be skipped, so the rest of
		 * the input cannot be trusted to be commands: give up. */
		smtp_refuse(s, "BDAT", true, 501, "5.5.4", "Syntax: BDAT count [LAST]");
		smtp_close(s);
		return false;
	}
	/* Refusals are sent after the chunk, which is read and dropped. */
	if (!s->helo) {
		smtp_bdat_refuse(s, a->bdat_len, 503, "5.5.1", "Error: send HELO/EHLO first");
		return false;
	}
	if (!s->esmtp) {
		/* RFC 3030 2 / RFC 5321 2.2.1: extensions only after EHLO */
		smtp_bdat_refuse(s, a->bdat_len, 503, "5.5.1", "Error: send EHLO first");
		return false;
	}
	if (s->set.auth_required && !s->authed) {
		smtp_bdat_refuse(s, a->bdat_len, 530, "5.7.0", "Authentication required");
		return false;
	}
	if (!s->in_tx) {
		smtp_bdat_refuse(s, a->bdat_len, 503, "5.5.1", "Error: need MAIL command");
		return false;
	}
	if (s->nrcpts == 0) {
		smtp_bdat_refuse(s, a->bdat_len, 503, "5.5.1", "Error: need RCPT command");
		return false;
	}
	return true;
}

static enum app_verdict proceed_bdat(struct smtp_server *s, struct cmd_args *a)
{
	smtp_bdat_begin(s, a->bdat_len, a->bdat_last);
	if (s->content == SMTP_CONTENT_BDAT)
		return APP_OK;
	return data_begin(s);
}

/* ---- AUTH (RFC 4954) --------------------------------------------------- */

/* sasl callbacks: PLAIN/LOGIN passwords are only recorded here and checked
 * by the app's auth_password() once the exchange is complete, so that check
 * may be PENDING (a job thread); sasl.c returns OK exactly when this returns
 * true (its authzid rule is applied before). */
static bool cb_verify(void *ctx, const char *authcid, const char *password)
{
	struct smtp_server *s = ctx;
	free(s->sasl_user);
	s->sasl_user = xstrdup(authcid);
	sasl_wire_set_secret(&s->sasl_pass, password);
	return true;
}

static bool cb_scram(void *ctx, const char *authcid, struct scram_creds *c)
{
	struct smtp_server *s = ctx;
	return s->ops->scram_creds(s->ctx, authcid, c);
}

static const struct sasl_callbacks smtp_sasl_cb = { cb_verify, cb_scram };

void smtp_auth_end(struct smtp_server *s)
{
	sasl_free(&s->sasl);
	s->in_sasl = s->sasl_final = s->sasl_had_input = false;
	free(s->sasl_mech);
	s->sasl_mech = NULL;
	free(s->sasl_user);
	s->sasl_user = NULL;
	free(s->sasl_claimed);
	s->sasl_claimed = NULL;
	sasl_wire_set_secret(&s->sasl_pass, NULL);
}

/* A refusal that ends the exchange. Protocol errors count toward
 * max_errors; bad credentials are the throttle's business. */
static void auth_refuse(struct smtp_server *s, bool count, int code, const char *esc,
			const char *text)
{
	smtp_auth_end(s);
	smtp_refuse(s, "AUTH", count, code, esc, "%s", text);
}

void smtp_auth_too_long(struct smtp_server *s)
{
	auth_refuse(s, true, 500, "5.5.6", "Authentication exchange line is too long");
}

/* The mechanism judged the exchange itself (SCRAM, or credentials it refused). */
static void auth_judged(struct smtp_server *s, bool ok)
{
	if (!ok && !s->sasl_user && s->sasl_claimed) {
		s->sasl_user = s->sasl_claimed;
		s->sasl_claimed = NULL;
	}
	s->in_sasl = false;
	s->reply_set = false;
	enum app_verdict v = APP_OK;
	if (s->ops->auth_done)
		v = s->ops->auth_done(s->ctx, s, s->sasl_mech, s->sasl_user ? s->sasl_user : "",
				      ok);
	if (!ok && v == APP_OK) {
		if (!s->reply_set)
			smtp_server_reply(s, 535, "5.7.8", "Authentication credentials invalid");
		v = APP_REJECTED;
	}
	smtp_verdict(s, SMTP_PEND_AUTH, v);
}

static void auth_step(struct smtp_server *s, const uint8_t *in, size_t n, bool has_input)
{
	if (has_input && !s->sasl_had_input) {
		s->sasl_had_input = true;
		if (strcmp(s->sasl_mech, "SCRAM-SHA-256") == 0) {
			free(s->sasl_claimed);
			s->sasl_claimed = sasl_wire_scram_username(in, n);
		}
	}
	const uint8_t *out = NULL;
	size_t outlen = 0;
	switch (sasl_step(s->sasl, in, n, has_input, &out, &outlen)) {
	case SASL_CONTINUE:
		/* RFC 4954 4: "334 " base64, nothing else on the line */
		sasl_wire_challenge(&s->out, "334 ", out, outlen);
		s->in_sasl = true;
		return;
	case SASL_OK:
		if (!mech_plaintext(s->sasl_mech)) {
			/* RFC 4954 4: no additional data with 235, so SCRAM's
			 * server-final goes out as a challenge answered by "" */
			free(s->sasl_user);
			s->sasl_user = xstrdup(sasl_authcid(s->sasl));
			sasl_wire_challenge(&s->out, "334 ", out, outlen);
			s->in_sasl = true;
			s->sasl_final = true;
			return;
		}
		{
			ASSERT(s->sasl_user && s->sasl_pass);
			char *pw = s->sasl_pass;
			s->sasl_pass = NULL;
			sasl_free(&s->sasl);
			s->in_sasl = false;
			s->reply_set = false;
			enum app_verdict v =
				s->ops->auth_password(s->ctx, s, s->sasl_mech, s->sasl_user, pw);
			explicit_bzero(pw, strlen(pw));
			free(pw);
			smtp_verdict(s, SMTP_PEND_AUTH, v);
		}
		return;
	case SASL_FAIL:
		auth_judged(s, false);
		return;
	case SASL_BAD:
		auth_refuse(s, true, 501, "5.5.2", "Invalid authentication exchange");
		return;
	}
}

void smtp_auth_line(struct smtp_server *s, const char *l, size_t len)
{
	uint8_t *dec;
	size_t declen;
	switch (sasl_wire_decode(l, len, false, &dec, &declen)) {
	case SASL_WIRE_CANCEL:
		/* RFC 4954 4: MUST reject with 501 */
		auth_refuse(s, false, 501, "5.0.0", "Authentication aborted");
		return;
	case SASL_WIRE_BAD:
		auth_refuse(s, true, 501, "5.5.2", "Invalid base64 data");
		return;
	case SASL_WIRE_TOO_LONG:
		smtp_auth_too_long(s);
		return;
	case SASL_WIRE_DATA:
		break;
	}
	if (s->sasl_final) {
		/* the answer to SCRAM's server-final must be empty */
		bool empty = declen == 0;
		sasl_wire_free(dec, declen);
		if (!empty) {
			auth_refuse(s, true, 501, "5.5.2", "Invalid authentication exchange");
			return;
		}
		auth_judged(s, true);
		return;
	}
	auth_step(s, dec, declen, true);
	sasl_wire_free(dec, declen);
}

static bool check_auth(struct smtp_server *s, struct cmd_args *a)
{
	if (!s->set.auth_offered) {
		smtp_refuse(s, "AUTH", true, 502, "5.5.1", "Error: command not implemented");
		return false;
	}
	if (!s->esmtp) {
		/* RFC 4954 3: an extension, so EHLO first */
		smtp_refuse(s, "AUTH", true, 503, "5.5.1", "Error: send EHLO first");
		return false;
	}
	if (s->authed) {
		smtp_refuse(s, "AUTH", true, 503, "5.5.1", "Error: already authenticated");
		return false;
	}
	if (s->in_tx) {
		smtp_refuse(s, "AUTH", true, 503, "5.5.1",
			    "Error: MAIL transaction in progress");
		return false;
	}
	if (a->len == 0) {
		smtp_refuse(s, "AUTH", true, 501, "5.5.4", "Syntax: AUTH mechanism [response]");
		return false;
	}
	return true;
}

static enum app_verdict proceed_auth(struct smtp_server *s, struct cmd_args *a)
{
	const char *sp = memchr(a->arg, ' ', a->len);
	size_t mlen = sp ? (size_t)(sp - a->arg) : a->len;
	char *mech = xstrndup(a->arg, mlen);
	for (char *c = mech; *c; c++)
		*c = ascii_toupper(*c);
	if (!mech_usable(s, mech)) {
		/* RFC 4954 4: unsupported, or needing an encryption layer: 504 5.5.4 */
		bool tls_needed = sasl_mech_supported(mech) && mech_plaintext(mech) &&
				  s->ops->auth_password;
		smtp_refuse(s, "AUTH", true, 504, "5.5.4", "%s",
			    tls_needed ? "Error: mechanism requires TLS (use STARTTLS)"
				       : "Unrecognized authentication type");
		free(mech);
		return APP_OK;
	}
	s->sasl = sasl_new(mech, &smtp_sasl_cb, s);
	ASSERT(s->sasl != NULL);
	s->sasl_mech = mech;
	if (!sp) {
		auth_step(s, NULL, 0, false);
		return APP_OK;
	}
	const char *ir = sp;
	while (ir < a->arg + a->len && *ir == ' ')
		ir++;
	uint8_t *dec;
	size_t declen;
	switch (sasl_wire_decode(ir, (size_t)(a->arg + a->len - ir), true, &dec, &declen)) {
	case SASL_WIRE_DATA:
		break;
	case SASL_WIRE_TOO_LONG:
		smtp_auth_too_long(s);
		return APP_OK;
	case SASL_WIRE_CANCEL:
	case SASL_WIRE_BAD:
		auth_refuse(s, true, 501, "5.5.2", "Invalid base64 data");
		return APP_OK;
	}
	auth_step(s, dec, declen, true);
	sasl_wire_free(dec, declen);
	return APP_OK;
}

/* ---- the rest --------------------------------------------------------- */

static enum app_verdict proceed_rset(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	smtp_tx_reset(s, true);
	smtp_emit(s, 250, "2.0.0", "Ok");
	return APP_OK;
}

static enum app_verdict proceed_noop(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	smtp_emit(s, 250, "2.0.0", "Ok");
	return APP_OK;
}

static enum app_verdict proceed_quit(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	smtp_emit(s, 221, "2.0.0", "Bye");
	smtp_close(s);
	return APP_OK;
}

static bool check_vrfy(struct smtp_server *s, struct cmd_args *a)
{
	if (a->len == 0) {
		smtp_refuse(s, "VRFY", true, 501, "5.5.4", "Syntax: VRFY address");
		return false;
	}
	return true;
}

static enum app_verdict proceed_vrfy(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	/* RFC 5321 3.5.3: 252 when we will not say (no address harvesting) */
	smtp_emit(s, 252, "2.5.2",
		  "Cannot VRFY user, but will accept message and attempt delivery");
	return APP_OK;
}

static enum app_verdict proceed_expn(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	/* RFC 5321 3.5.2 allows refusing EXPN; list membership is private, and
	 * 502 says so more honestly than a 252 that never expands. */
	smtp_refuse(s, "EXPN", false, 502, "5.5.1", "Error: command not implemented");
	return APP_OK;
}

static enum app_verdict proceed_help(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	smtp_emit(s, 214, "2.0.0",
		  "Commands supported:\nHELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP%s%s",
		  s->set.starttls_offered && !s->tls ? " STARTTLS" : "",
		  s->set.auth_offered ? " AUTH" : "");
	return APP_OK;
}

static bool check_starttls(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	if (s->tls) {
		smtp_refuse(s, "STARTTLS", true, 503, "5.5.1", "Error: TLS already active");
		return false;
	}
	if (!s->set.starttls_offered) {
		smtp_refuse(s, "STARTTLS", true, 502, "5.5.1", "Error: command not implemented");
		return false;
	}
	if (s->in_tx) {
		smtp_refuse(s, "STARTTLS", true, 503, "5.5.1",
			    "Error: MAIL transaction in progress");
		return false;
	}
	return true;
}

static enum app_verdict proceed_starttls(struct smtp_server *s, struct cmd_args *a)
{
	(void)a;
	/* RFC 3207 4: the rest of the input is dropped (smtp_server_feed) */
	smtp_starttls_begin(s);
	return APP_OK;
}

/* RFC 5321 3.x obsolete commands and TURN (RFC 821) */
static enum app_verdict proceed_not_impl(struct smtp_server *s, struct cmd_args *a)
{
	smtp_refuse(s, a->name, true, 502, "5.5.1", "Error: command not implemented");
	return APP_OK;
}

#define ANY (SCF_PRE_TLS | SCF_PRE_AUTH)
static const struct smtp_cmd smtp_cmds[] = {
	/* name     check           proceed           verdict         flags */
	{ "EHLO", check_helo, proceed_ehlo, SMTP_PEND_NONE, ANY | SCF_LAST },
	{ "HELO", check_helo, proceed_helo, SMTP_PEND_NONE, ANY | SCF_LAST },
	{ "STARTTLS", check_starttls, proceed_starttls, SMTP_PEND_NONE,
	  ANY | SCF_NO_ARGS | SCF_LAST },
	/* AUTH sends its own verdicts (several steps) */
	{ "AUTH", check_auth, proceed_auth, SMTP_PEND_NONE, ANY | SCF_LAST },
	{ "MAIL", check_mail, proceed_mail, SMTP_PEND_MAIL, SCF_NEEDS_HELO },
	{ "RCPT", check_rcpt, proceed_rcpt, SMTP_PEND_RCPT, SCF_NEEDS_HELO | SCF_IN_TX },
	{ "DATA", check_data, proceed_data, SMTP_PEND_DATA,
	  SCF_NEEDS_HELO | SCF_IN_TX | SCF_NO_ARGS | SCF_LAST },
	/* BDAT checks its own state: refused chunks must still be read */
	{ "BDAT", check_bdat, proceed_bdat, SMTP_PEND_BDAT, SCF_SELF },
	{ "RSET", NULL, proceed_rset, SMTP_PEND_NONE, ANY | SCF_NO_ARGS },
	{ "NOOP", NULL, proceed_noop, SMTP_PEND_NONE, ANY | SCF_LAST },
	{ "QUIT", NULL, proceed_quit, SMTP_PEND_NONE, ANY | SCF_NO_ARGS | SCF_LAST },
	{ "VRFY", check_vrfy, proceed_vrfy, SMTP_PEND_NONE, SCF_LAST },
	{ "EXPN", NULL, proceed_expn, SMTP_PEND_NONE, SCF_LAST },
	{ "HELP", NULL, proceed_help, SMTP_PEND_NONE, ANY },
	{ "SEND", NULL, proceed_not_impl, SMTP_PEND_NONE, 0 },
	{ "SOML", NULL, proceed_not_impl, SMTP_PEND_NONE, 0 },
	{ "SAML", NULL, proceed_not_impl, SMTP_PEND_NONE, 0 },
	{ "TURN", NULL, proceed_not_impl, SMTP_PEND_NONE, 0 },
};

void smtp_cmd_dispatch(struct smtp_server *s, const char *line, size_t len)
{
	const char *sp = memchr(line, ' ', len);
	size_t vlen = sp ? (size_t)(sp - line) : len;
	const struct smtp_cmd *cmd = NULL;
	for (size_t i = 0; i < N_ELEMENTS(smtp_cmds); i++) {
		if (strlen(smtp_cmds[i].name) == vlen &&
		    ascii_strncasecmp(line, smtp_cmds[i].name, vlen) == 0) {
			cmd = &smtp_cmds[i];
			break;
		}
	}
	if (!cmd) {
		smtp_refuse(s, "-", true, 500, "5.5.2", "Error: command not recognized");
		return;
	}
	struct cmd_args a = { .name = cmd->name };
	a.arg = line + vlen;
	a.len = len - vlen;
	while (a.len > 0 && *a.arg == ' ') {
		a.arg++;
		a.len--;
	}
	if (s->set.auth_required && !s->authed && !(cmd->flags & (SCF_PRE_AUTH | SCF_SELF))) {
		/* RFC 4954 6; RFC 6409 4.3 */
		smtp_refuse(s, cmd->name, true, 530, "5.7.0", "Authentication required");
		return;
	}
	if ((cmd->flags & SCF_NEEDS_HELO) && !s->helo) {
		smtp_refuse(s, cmd->name, true, 503, "5.5.1", "Error: send HELO/EHLO first");
		return;
	}
	if ((cmd->flags & SCF_IN_TX) && !s->in_tx) {
		smtp_refuse(s, cmd->name, true, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if ((cmd->flags & SCF_NO_ARGS) && a.len > 0) {
		smtp_refuse(s, cmd->name, true, 501, "5.5.4", "Syntax: %s", cmd->name);
		return;
	}
	if (cmd->check && !cmd->check(s, &a))
		return;
	s->reply_set = false;
	enum app_verdict v = cmd->proceed(s, &a);
	if (cmd->verdict != SMTP_PEND_NONE)
		smtp_verdict(s, cmd->verdict, v);
}
