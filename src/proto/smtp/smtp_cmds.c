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

#include "base/util.h"
#include "proto/smtp/smtp_int.h"
#include "proto/smtp/smtp_parse.h"

enum smtp_cmd_flags {
	SCF_PRE_TLS = 1 << 0,	 /* allowed before STARTTLS on a TLS-required listener (later) */
	SCF_PRE_AUTH = 1 << 1,	 /* allowed before AUTH on submission (later) */
	SCF_LAST = 1 << 2,	 /* must be last in a pipelined group (RFC 2920 3.1) */
	SCF_NEEDS_HELO = 1 << 3, /* HELO/EHLO first (RFC 5321 4.1.4) */
	SCF_IN_TX = 1 << 4,	 /* MAIL accepted first */
	SCF_NO_ARGS = 1 << 5,
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

static enum app_verdict proceed_ehlo(struct smtp_server *s, struct cmd_args *a)
{
	helo_common(s, a, true);
	/* RFC 1870 SIZE; RFC 2920; RFC 6152; RFC 2034; RFC 3207; RFC 6531; RFC 3030 */
	char size[32] = "SIZE";
	if (s->set.max_message_size)
		snprintf(size, sizeof size, "SIZE %llu",
			 (unsigned long long)s->set.max_message_size);
	smtp_emit(s, 250, NULL,
		  "%s\nPIPELINING\n%s\n8BITMIME\nENHANCEDSTATUSCODES\n%sSMTPUTF8\nCHUNKING",
		  s->set.hostname, size, s->set.starttls_offered && !s->tls ? "STARTTLS\n" : "");
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
	struct smtp_mail m = { addr, 0, SMTP_BODY_7BIT, false };
	bool seen_size = false, seen_body = false;
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
		} else if (key_is(&kv, "SIZE") || key_is(&kv, "BODY") || key_is(&kv, "SMTPUTF8")) {
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
	s->from = addr;
	s->mail = m;
	return true;
fail:
	free(addr);
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
	int r = smtp_parse_param_next(&p, end, &kv);
	if (r < 0) {
		smtp_refuse(s, "RCPT", true, 501, "5.5.4",
			    "Syntax: RCPT TO:<address> [parameters]");
		goto fail;
	}
	if (r > 0) {
		smtp_refuse(s, "RCPT", true, 555, "5.5.4", "Unsupported option: %.*s",
			    (int)kv.keylen, kv.key);
		goto fail;
	}
	if (!s->smtputf8 && !smtp_is_ascii(addr)) {
		smtp_refuse(s, "RCPT", true, 553, "5.6.7",
			    "Error: non-ASCII address requires SMTPUTF8");
		goto fail;
	}
	free(s->to);
	s->to = addr;
	s->rcpt.to = addr;
	return true;
fail:
	free(addr);
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
		  "Commands supported:\nHELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP%s",
		  s->set.starttls_offered && !s->tls ? " STARTTLS" : "");
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
	{ "MAIL", check_mail, proceed_mail, SMTP_PEND_MAIL, SCF_NEEDS_HELO },
	{ "RCPT", check_rcpt, proceed_rcpt, SMTP_PEND_RCPT, SCF_NEEDS_HELO | SCF_IN_TX },
	{ "DATA", check_data, proceed_data, SMTP_PEND_DATA,
	  SCF_NEEDS_HELO | SCF_IN_TX | SCF_NO_ARGS | SCF_LAST },
	/* BDAT checks its own state: refused chunks must still be read */
	{ "BDAT", check_bdat, proceed_bdat, SMTP_PEND_BDAT, 0 },
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
