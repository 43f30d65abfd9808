/* SPDX-License-Identifier: MIT */
/* SMTP roles: the application side of the I/O-free engine, for the MX port
 * (RFC 5321 as a domain's MX) and, with the same code, the submission ports
 * (RFC 6409: submission_listen with STARTTLS, submissions_listen with
 * implicit TLS, RFC 8314).
 *
 * Both decide who is local (config domains + account store), write each
 * accepted message into every local recipient's Maildir through the group
 * committer, and only let the engine say 250 once the committer reports
 * every copy durable. One log line per accepted message and one per refusal.
 *
 * MX: relaying is refused (554 5.7.1).
 * Submission: AUTH is required before MAIL (530 5.7.0, in the engine);
 * passwords are checked by daemon/login.c on a job thread. Sender rules,
 * in the spirit of Postfix's reject_sender_login_mismatch:
 *  - MAIL FROM must be an address that resolves to the authenticated
 *    account (its own address or an alias that includes it), else 553 5.7.1.
 *    The null sender is allowed (MDNs, RFC 8098, and client-generated
 *    replies use it; a null sender never gets bounces, so it cannot be used
 *    for backscatter), the From: check below still binds the message.
 *  - every address in From:, and the one in Sender: if present, must pass
 *    the same test (553 5.7.1 after the data). A Sender: naming the user
 *    does not excuse a foreign From: (that would make phishing easy: most
 *    clients show only From:). A message without From: is refused too, and
 *    so is one whose From:/Sender: is not a well-formed address-list or
 *    whose header holds a bare CR: readers must see what was checked.
 * Recipients in local domains are delivered locally exactly as on the MX
 * port; all others (no address literals) are written into the outbound
 * queue's spool by the same group commit and registered with
 * queue_enqueue_file() before the 250, then server_queue_changed(). If that
 * registration fails, the local copies are removed again before the 451. A
 * crash between the commit and the registration leaves the local copies
 * (the spool file is an orphan the next start removes); the client, which
 * never saw a 250, sends again, so local recipients may get it twice.
 * Message-ID and Date are added when missing (RFC 6409 8.2, 8.3); Received
 * says "with ESMTPSA"/"ESMTPA" (RFC 3848) and names the user. */
#include "daemon/role_smtp.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/role_imap.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "auth/sasl.h"
#include "daemon/login.h"
#include "io/conn.h"
#include "io/evloop.h"
#include "io/tls.h"
#include "mime/message.h"
#include "proto/smtp/smtp_server.h"
#include "queue/queue.h"
#include "store/maildir.h"

_Static_assert((unsigned)SMTP_NOTIFY_NEVER == (unsigned)QUEUE_NOTIFY_NEVER &&
		       (unsigned)SMTP_NOTIFY_SUCCESS == (unsigned)QUEUE_NOTIFY_SUCCESS &&
		       (unsigned)SMTP_NOTIFY_FAILURE == (unsigned)QUEUE_NOTIFY_FAILURE &&
		       (unsigned)SMTP_NOTIFY_DELAY == (unsigned)QUEUE_NOTIFY_DELAY,
	       "NOTIFY bits are stored as they come");

/* The header of a submitted message is held back (up to this) until it is
 * complete, so From:/Sender: can be checked and Message-ID/Date added. */
#define SUBMIT_MAX_HEADER (256 * 1024)
/* Addresses in one From:/Sender: field; more is refused, not truncated. */
#define SUBMIT_MAX_FIELD_ADDRS 100

struct rcpt {
	char *addr;   /* as given in RCPT TO (local: unquoted form) */
	char **users; /* local accounts it resolves to; none for a remote one */
	size_t nusers;
	bool remote;  /* submission: goes to the outbound queue */
	unsigned notify;
	char *orcpt;
};

struct smtp_sess {
	struct session base;
	struct smtp_server *eng;
	struct smtp_server_settings set;
	bool submission;
	char *user;		 /* authenticated account (canonical), submission */
	struct login_req *login; /* password check in flight */
	struct ev_timer *delay;	 /* throttle delay before a failed SCRAM's answer */
	char *from;
	struct smtp_mail mail;	 /* RET, BODY, SMTPUTF8 of the transaction */
	char *envid;
	struct rcpt *rcpts;
	size_t nrcpts;
	size_t nremote;
	size_t nsuccess;	 /* local recipients with NOTIFY=SUCCESS (non-null sender) */
	struct delivery *d;
	char **roots;		 /* Maildir root of each local copy in d (target i) */
	size_t nroots;
	size_t queue_target;	 /* index of the spool copy in d, if nremote + nsuccess */
	struct buf hdr;		 /* submission: the header being held back */
	bool hdr_done;
	const char *hdr_refusal; /* submission: why From:/Sender: failed, or NULL */
	bool saw_8bit;		 /* content has octets >= 0x80 (queue: eightbit) */
	char msgid[17];
	char qid[17];
	bool commit_pending;
	bool conn_gone;
	bool tls;
	unsigned accepted, refused;
};

static void free_rcpts(struct smtp_sess *s)
{
	for (size_t i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].addr);
		free(s->rcpts[i].orcpt);
		accounts_free_list(s->rcpts[i].users, s->rcpts[i].nusers);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	s->nremote = 0;
	s->nsuccess = 0;
}

static void reset_tx(struct smtp_sess *s)
{
	free(s->from);
	s->from = NULL;
	free(s->envid);
	s->envid = NULL;
	free_rcpts(s);
	for (size_t i = 0; i < s->nroots; i++)
		free(s->roots[i]);
	free(s->roots);
	s->roots = NULL;
	s->nroots = 0;
	if (s->d)
		delivery_abort(&s->d);
	buf_deinit(&s->hdr);
	s->hdr_done = false;
	s->hdr_refusal = NULL;
	s->saw_8bit = false;
	s->qid[0] = '\0';
}

/* Quote an address for a log value: <addr> with unsafe bytes escaped. */
static void log_addr(const char *a, char out[300])
{
	char esc[290];
	log_escape(a, strlen(a), esc, sizeof esc);
	snprintf(out, 300, "<%s>", esc);
}

static void log_refusal(struct smtp_sess *s, const char *what, const char *addr, int code,
			const char *text)
{
	char a[300], t[300];
	log_addr(addr ? addr : "", a);
	log_escape(text, strlen(text), t, sizeof t);
	s->refused++;
	log_info("%s smtp refused client=%s %s=%s result=\"%d %s\"", s->base.id, s->base.peer, what,
		 a, code, t);
}

static void op_helo(void *ctx, struct smtp_server *eng, const char *name, bool ehlo)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	char n[130];
	log_escape(name, strlen(name), n, sizeof n);
	log_debug("%s smtp %s name=%s", s->base.id, ehlo ? "ehlo" : "helo", n);
}

/* Split at the last '@'. Returns the domain or NULL. */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}

static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL || c >= 0x80;
}

/* RFC 5321 4.1.2: a quoted local part that needs no quoting ("alice"@example.org)
 * names the same mailbox as the plain form. Anything that does need quotes
 * (spaces, '@', ...) stays quoted, and matches no account. malloc'd. */
static char *unquote_local_part(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t ll = at ? (size_t)(at - addr) : 0;
	if (!at || ll < 2 || addr[0] != '"' || addr[ll - 1] != '"')
		return xstrdup(addr);
	char *out = xmalloc(strlen(addr) + 1);
	size_t o = 0;
	for (size_t i = 1; i + 1 < ll; i++) {
		char c = addr[i];
		if (c == '\\' && i + 2 < ll)
			c = addr[++i];
		bool dot_ok = c == '.' && o > 0 && out[o - 1] != '.';
		if (!is_atext((unsigned char)c) && !dot_ok) {
			free(out);
			return xstrdup(addr);
		}
		out[o++] = c;
	}
	if (o == 0 || out[o - 1] == '.') {
		free(out);
		return xstrdup(addr);
	}
	strcpy(out + o, at);
	return out;
}

/* Submission: does the authenticated account own addr (its own address,
 * or an alias in a local domain that resolves to it)? */
static bool owns_address(struct smtp_sess *s, const char *addr)
{
	if (!s->user)
		return false;
	char *a = unquote_local_part(addr);
	const char *domain = domain_of(a);
	bool ok = false;
	if (ascii_strcasecmp(a, s->user) == 0) {
		ok = true;
	} else if (domain && domain[0] != '[' && config_is_local_domain(s->base.cfg, domain)) {
		char **users = NULL;
		char *err = NULL;
		int n = accounts_resolve(s->base.srv->accounts, a, &users, &err);
		for (int i = 0; i < n; i++)
			if (ascii_strcasecmp(users[i], s->user) == 0)
				ok = true;
		if (n > 0)
			accounts_free_list(users, (size_t)n);
		free(err);
	}
	free(a);
	return ok;
}

static enum app_verdict op_mail(void *ctx, struct smtp_server *eng, const struct smtp_mail *m)
{
	struct smtp_sess *s = ctx;
	reset_tx(s);
	if (s->submission && m->from[0] && !owns_address(s, m->from)) {
		smtp_server_reply(eng, 553, "5.7.1",
				  "<%s>: Sender address rejected: not owned by user %s", m->from,
				  s->user ? s->user : "-");
		log_refusal(s, "from", m->from, 553, "5.7.1 sender not owned by user");
		return APP_REJECTED;
	}
	s->from = xstrdup(m->from);
	s->mail = *m;
	s->mail.from = NULL;
	s->mail.envid = s->mail.auth = NULL;
	s->envid = m->envid ? xstrdup(m->envid) : NULL;
	return APP_OK;
}

/* Would the queue take this recipient with the transaction's envelope
 * (its limits are tighter than SMTP's: 256-octet paths)? Asked at RCPT time
 * so that nothing fails after the local copies are committed. */
static bool queue_accepts(struct smtp_sess *s, const char *addr, const struct smtp_rcpt *r)
{
	struct queue_rcpt_spec spec = { addr, r->orcpt, r->notify };
	struct queue_envelope env = {
		.sender = s->from ? s->from : "",
		.envid = s->envid,
		.ret = (enum queue_ret)s->mail.ret,
		.submitter = s->user,
		.rcpts = &spec,
		.n_rcpts = 1,
	};
	char *err = NULL;
	if (queue_envelope_check(&env, &err) == 0)
		return true;
	log_info("%s smtp queue refuses to=<%s>: %s", s->base.id, addr, err ? err : "?");
	free(err);
	return false;
}

static enum app_verdict op_rcpt(void *ctx, struct smtp_server *eng, const struct smtp_rcpt *r)
{
	struct smtp_sess *s = ctx;
	const struct config *cfg = s->base.cfg;
	char *addr;
	const char *domain = domain_of(r->to);

	if (!domain) {
		/* RFC 5321 4.5.1: "RCPT TO:<Postmaster>" without a domain must work. */
		if (ascii_strcasecmp(r->to, "postmaster") != 0) {
			smtp_server_reply(eng, 550, "5.1.1", "<%s>: Recipient address rejected: "
							     "no domain", r->to);
			log_refusal(s, "to", r->to, 550, "5.1.1 no domain");
			return APP_REJECTED;
		}
		addr = xasprintf("postmaster@%s", cfg->domains.v[0]);
		domain = cfg->domains.v[0];
	} else {
		addr = unquote_local_part(r->to);
	}
	/* Anything not for a local domain would be relaying, which the MX port
	 * never does; address literals are never local (%-hacks and source routes
	 * have already been reduced to a local part that matches no account). An
	 * authenticated submission relays to domain names only. */
	if (s->submission && s->user && domain[0] != '[' &&
	    !config_is_local_domain(cfg, domain)) {
		if (!queue_accepts(s, r->to, r)) {
			smtp_server_reply(eng, 553, "5.1.3",
					  "<%s>: Recipient address rejected: too long for relay", r->to);
			log_refusal(s, "to", r->to, 553, "5.1.3 too long for relay");
			free(addr);
			return APP_REJECTED;
		}
		s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof *s->rcpts);
		s->rcpts[s->nrcpts++] = (struct rcpt){ xstrdup(r->to), NULL, 0, true, r->notify,
							r->orcpt ? xstrdup(r->orcpt) : NULL };
		s->nremote++;
		free(addr);
		return APP_OK;
	}
	if (domain[0] == '[' || !config_is_local_domain(cfg, domain)) {
		smtp_server_reply(eng, 554, "5.7.1", "<%s>: Relay access denied", r->to);
		log_refusal(s, "to", r->to, 554, "5.7.1 Relay access denied");
		free(addr);
		return APP_REJECTED;
	}
	char **users = NULL;
	char *err = NULL;
	int n = accounts_resolve(s->base.srv->accounts, addr, &users, &err);
	if (n == 0 && ascii_strncasecmp(addr, "postmaster@", 11) == 0) {
		/* RFC 5321 4.5.1: postmaster is always accepted; without an alias it
		 * goes to the first account. */
		char *first = accounts_first_user(s->base.srv->accounts);
		if (first) {
			users = xmalloc(sizeof *users);
			users[0] = first;
			n = 1;
		}
	}
	if (n < 0) {
		char a[300];
		log_addr(addr, a);
		log_warnx("%s smtp accounts_resolve(%s) failed: %s", s->base.id, a, err ? err : "?");
		free(err);
		smtp_server_reply(eng, 451, "4.3.0", "<%s>: Temporary lookup failure", r->to);
		log_refusal(s, "to", r->to, 451, "4.3.0 Temporary lookup failure");
		free(addr);
		return APP_REJECTED;
	}
	if (n == 0) {
		smtp_server_reply(eng, 550, "5.1.1",
				  "<%s>: Recipient address rejected: User unknown", r->to);
		log_refusal(s, "to", r->to, 550, "5.1.1 User unknown");
		free(addr);
		return APP_REJECTED;
	}
	s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof *s->rcpts);
	s->rcpts[s->nrcpts++] = (struct rcpt){ addr, users, (size_t)n, false, r->notify,
						r->orcpt ? xstrdup(r->orcpt) : NULL };
	if ((r->notify & SMTP_NOTIFY_SUCCESS) && s->from && s->from[0]) {
		if (queue_accepts(s, addr, r))
			s->nsuccess++;
		else
			s->rcpts[s->nrcpts - 1].notify &= ~(unsigned)SMTP_NOTIFY_SUCCESS;
	}
	return APP_OK;
}

static bool seen_user(struct smtp_sess *s, size_t ri, size_t ui)
{
	const char *u = s->rcpts[ri].users[ui];
	for (size_t i = 0; i <= ri; i++)
		for (size_t j = 0; j < s->rcpts[i].nusers; j++) {
			if (i == ri && j == ui)
				return false;
			if (!ascii_strcasecmp(s->rcpts[i].users[j], u))
				return true;
		}
	return false;
}

/* RFC 5321 4.4 trace field; "for" only with a single recipient so Bcc
 * recipients are not disclosed to each other. RFC 3848: "A" for an
 * authenticated session, and the user in a comment (RFC 4954 7). */
static void received_header(struct smtp_sess *s, struct buf *b)
{
	struct smtp_server *eng = s->eng;
	char date[64];
	time_rfc5322(time_unix(), date);
	const char *helo = smtp_server_helo_name(eng);
	const char *auth = s->user && smtp_server_auth_user(eng) ? "A" : "";
	const char *with = smtp_server_is_esmtp(eng) ? (s->tls ? "ESMTPS" : "ESMTP")
						     : (s->tls ? "SMTPS" : "SMTP");
	char helo_esc[130];
	log_escape(helo ? helo : "", helo ? strlen(helo) : 0, helo_esc, sizeof helo_esc);
	/* RFC 5321 4.1.3: IPv6 address literals are tagged "IPv6:" */
	bool v6 = strchr(s->base.peer, ':') != NULL;
	buf_xprintf(b, "Received: from %s ([%s%s])\n\tby %s (Tern) with %s%s id %s", helo_esc,
		    v6 ? "IPv6:" : "", s->base.peer, s->base.cfg->hostname, with, auth, s->msgid);
	if (*auth) {
		char u[300];
		log_escape(s->user, strlen(s->user), u, sizeof u);
		buf_xprintf(b, "\n\t(authenticated user %s)", u);
	}
	if (s->nrcpts == 1)
		buf_xprintf(b, "\n\tfor <%s>", s->rcpts[0].addr);
	buf_xprintf(b, "; %s\n", date);
}

static enum app_verdict op_data_begin(void *ctx, struct smtp_server *eng)
{
	struct smtp_sess *s = ctx;
	const struct config *cfg = s->base.cfg;
	char *err = NULL;

	random_id(s->msgid);
	s->d = delivery_new(cfg->hostname);
	for (size_t i = 0; i < s->nrcpts; i++) {
		for (size_t j = 0; j < s->rcpts[i].nusers; j++) {
			if (seen_user(s, i, j))
				continue;
			const char *user = s->rcpts[i].users[j];
			char *root = maildir_account_path(cfg->data_dir, user);
			/* RFC 5321 4.4: Return-Path is added by the final delivery. */
			char *hdr = xasprintf("Return-Path: <%s>\nDelivered-To: %s\n", s->from,
					      user);
			int r = root ? delivery_add_target(s->d, root, hdr, &err) : -1;
			free(hdr);
			if (r == 0) {
				s->roots = xrealloc(s->roots, (s->nroots + 1) * sizeof *s->roots);
				s->roots[s->nroots++] = root;
			} else {
				free(root);
			}
			if (r < 0) {
				log_warnx("%s smtp delivery to %s failed: %s", s->base.id, user,
					  err ? err : "bad mailbox path");
				free(err);
				delivery_abort(&s->d);
				smtp_server_reply(eng, 451, "4.3.0",
						  "Error: internal error, try again later (session %s)",
						  s->base.id);
				log_refusal(s, "from", s->from, 451, "4.3.0 cannot write mailbox");
				return APP_REJECTED;
			}
		}
	}
	if (s->nremote || s->nsuccess) {
		/* the outbound copy: no Return-Path (not a final delivery) */
		s->queue_target = delivery_ntargets(s->d);
		if (delivery_add_target(s->d, queue_spool_root(s->base.srv->queue), NULL, &err) <
		    0) {
			log_warnx("%s smtp queue spool: %s", s->base.id, err ? err : "?");
			free(err);
			delivery_abort(&s->d);
			smtp_server_reply(eng, 451, "4.3.0",
					  "Error: internal error, try again later (session %s)",
					  s->base.id);
			return APP_REJECTED;
		}
	}
	if (s->submission)
		return APP_OK; /* the header is held back: see submit_header() */
	struct buf b = BUF_INIT(0);
	received_header(s, &b);
	int r = delivery_write(s->d, b.data, b.len);
	buf_deinit(&b);
	if (r < 0) {
		delivery_abort(&s->d);
		smtp_server_reply(eng, 451, "4.3.0",
				  "Error: internal error, try again later (session %s)", s->base.id);
		return APP_REJECTED;
	}
	return APP_OK;
}

/* ---- submission: the header ------------------------------------------ */

/* ---- submission: strict address-list syntax ------------------------------ */

/* mime_addr_parse() is lenient the way a mail reader must be: it stops at
 * garbage and keeps what came before. That is fine for an IMAP ENVELOPE but
 * not for deciding whose name a message may carry: "From: alice@example.org
 * <ceo@bank.example>" parses as alice's address, while mail readers show the
 * bank's (alice's address becomes the display name). So a From:/Sender:
 * field must also be a well-formed RFC 5322 3.4 address-list (with the
 * obsolete empty list elements and routes of 4.4); anything else is refused.
 * Local parts are one atom (dots included) or one quoted string. */
enum atok { AT_END, AT_WORD, AT_QSTR, AT_DLIT, AT_SPECIAL, AT_BAD };

struct astrict {
	const uint8_t *p;
	size_t n, i;
	enum atok t;	 /* current token */
	uint8_t sp;	 /* its character when AT_SPECIAL */
	size_t mailboxes; /* complete mailboxes seen */
};

/* CFWS: white space (folding included; a stray CR is white space too) and
 * nested comments. false on an unterminated comment. */
static bool astrict_cfws(struct astrict *a)
{
	while (a->i < a->n) {
		uint8_t c = a->p[a->i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			a->i++;
			continue;
		}
		if (c != '(')
			return true;
		unsigned depth = 0;
		do {
			c = a->p[a->i++];
			if (c == '\\') {
				if (a->i >= a->n)
					return false;
				a->i++;
			} else if (c == '(') {
				if (++depth > 64)
					return false;
			} else if (c == ')') {
				depth--;
			}
		} while (depth && a->i < a->n);
		if (depth)
			return false;
	}
	return true;
}

/* Read up to the closing delimiter of a quoted string or domain literal. */
static enum atok astrict_delimited(struct astrict *a, uint8_t close, enum atok kind)
{
	a->i++;
	while (a->i < a->n) {
		uint8_t c = a->p[a->i++];
		if (c == '\\') {
			if (a->i >= a->n)
				return AT_BAD;
			a->i++;
		} else if (c == close) {
			return kind;
		} else if (close == ']' && c == '[') {
			return AT_BAD;
		}
	}
	return AT_BAD;
}

static void astrict_adv(struct astrict *a)
{
	if (!astrict_cfws(a)) {
		a->t = AT_BAD;
		return;
	}
	if (a->i >= a->n) {
		a->t = AT_END;
		return;
	}
	uint8_t c = a->p[a->i];
	if (c == '"') {
		a->t = astrict_delimited(a, '"', AT_QSTR);
	} else if (c == '[') {
		a->t = astrict_delimited(a, ']', AT_DLIT);
	} else if (c && memchr("<>@,:;", c, 6)) {
		a->i++;
		a->sp = c;
		a->t = AT_SPECIAL;
	} else if (is_atext(c) || c == '.') {
		while (a->i < a->n && (is_atext(a->p[a->i]) || a->p[a->i] == '.'))
			a->i++;
		a->t = AT_WORD;
	} else {
		a->t = AT_BAD;
	}
}

static bool astrict_is(const struct astrict *a, uint8_t c)
{
	return a->t == AT_SPECIAL && a->sp == c;
}

static bool astrict_word(const struct astrict *a)
{
	return a->t == AT_WORD || a->t == AT_QSTR;
}

/* domain = dot-atom / domain-literal (obs-domain is the same token here) */
static bool astrict_domain(struct astrict *a)
{
	if (a->t != AT_WORD && a->t != AT_DLIT)
		return false;
	astrict_adv(a);
	return true;
}

/* After "<": [obs-route] local-part "@" domain ">" */
static bool astrict_angle(struct astrict *a)
{
	if (astrict_is(a, '@')) {
		/* obs-route = obs-domain-list ":" */
		astrict_adv(a);
		if (!astrict_domain(a))
			return false;
		while (astrict_is(a, ',')) {
			astrict_adv(a);
			if (astrict_is(a, '@')) {
				astrict_adv(a);
				if (!astrict_domain(a))
					return false;
			}
		}
		if (!astrict_is(a, ':'))
			return false;
		astrict_adv(a);
	}
	if (!astrict_word(a))
		return false;
	astrict_adv(a);
	if (!astrict_is(a, '@'))
		return false;
	astrict_adv(a);
	if (!astrict_domain(a) || !astrict_is(a, '>'))
		return false;
	astrict_adv(a);
	a->mailboxes++;
	return true;
}

/* address = mailbox / group; mailbox = name-addr / addr-spec */
static bool astrict_address(struct astrict *a, bool group_ok)
{
	if (astrict_is(a, '<')) {
		astrict_adv(a);
		return astrict_angle(a);
	}
	if (!astrict_word(a))
		return false;
	astrict_adv(a);
	if (astrict_is(a, '@')) {
		astrict_adv(a);
		if (!astrict_domain(a))
			return false;
		a->mailboxes++;
		return true;
	}
	while (astrict_word(a)) /* the rest of a display name */
		astrict_adv(a);
	if (astrict_is(a, '<')) {
		astrict_adv(a);
		return astrict_angle(a);
	}
	if (!group_ok || !astrict_is(a, ':'))
		return false;
	/* group = display-name ":" [group-list] ";" */
	astrict_adv(a);
	for (;;) {
		if (astrict_is(a, ';')) {
			astrict_adv(a);
			return true;
		}
		if (astrict_is(a, ',')) {
			astrict_adv(a);
			continue;
		}
		if (!astrict_address(a, false))
			return false;
		if (!astrict_is(a, ',') && !astrict_is(a, ';'))
			return false;
	}
}

/* Is v/n a well-formed address-list? *mailboxes: how many mailboxes. */
static bool address_list_strict(const uint8_t *v, size_t n, size_t *mailboxes)
{
	struct astrict a = { .p = v, .n = n };
	astrict_adv(&a);
	while (a.t != AT_END) {
		if (astrict_is(&a, ',')) {
			astrict_adv(&a);
			continue;
		}
		if (!astrict_address(&a, true))
			return false;
		if (a.t != AT_END && !astrict_is(&a, ','))
			return false;
	}
	*mailboxes = a.mailboxes;
	return true;
}

/* Do all addresses of an address field belong to the user? false for an
 * empty or unparsable one. */
static bool field_owned(struct smtp_sess *s, const uint8_t *v, size_t n)
{
	size_t nstrict;
	if (!address_list_strict(v, n, &nstrict) || nstrict > SUBMIT_MAX_FIELD_ADDRS)
		return false;
	struct mime_addr_list l;
	mime_addr_parse(v, n, 0, &l);
	size_t seen = 0;
	bool ok = true;
	for (size_t i = 0; i < l.n && ok; i++) {
		const struct mime_addr *a = &l.v[i];
		if (a->is_group_start || a->is_group_end)
			continue;
		seen++;
		if (!a->mailbox || !a->host || !a->mailbox[0] || !a->host[0] || a->syntax_error) {
			ok = false;
			break;
		}
		char *addr = xasprintf("%s@%s", a->mailbox, a->host);
		ok = owns_address(s, addr);
		free(addr);
	}
	mime_addr_list_free(&l);
	/* every mailbox the strict syntax saw must have been checked */
	return ok && seen > 0 && seen == nstrict;
}

/* The held-back header is complete (hdr holds it, up to and including the
 * empty line if there was one): check From:/Sender:, then write Received,
 * the missing Message-ID/Date and the header. 0 or -1 (write failed). */
static int submit_header(struct smtp_sess *s)
{
	const uint8_t *h = s->hdr.data ? s->hdr.data : (const uint8_t *)"";
	size_t pos = 0, nlen, vlen;
	const uint8_t *name, *val;
	bool have_from = false, have_msgid = false, have_date = false, from_ok = true,
	     sender_ok = true;
	while (mime_header_next(h, s->hdr.len, &pos, &name, &nlen, &val, &vlen) == 1) {
		if (nlen == 4 && ascii_strncasecmp((const char *)name, "From", 4) == 0) {
			have_from = true;
			from_ok = from_ok && field_owned(s, val, vlen);
		} else if (nlen == 6 && ascii_strncasecmp((const char *)name, "Sender", 6) == 0) {
			sender_ok = sender_ok && field_owned(s, val, vlen);
		} else if (nlen == 10 && ascii_strncasecmp((const char *)name, "Message-ID", 10) == 0) {
			have_msgid = true;
		} else if (nlen == 4 && ascii_strncasecmp((const char *)name, "Date", 4) == 0) {
			have_date = true;
		}
	}
	if (memchr(h, '\r', s->hdr.len))
		/* CRLF became LF, so this is a bare CR (RFC 5322 2.2 forbids it):
		 * many readers end a line there and would see fields this check
		 * did not, e.g. "Subject: x<CR>From: someone-else" */
		s->hdr_refusal = "bare CR in header section";
	else if (!have_from)
		s->hdr_refusal = "message has no From: header";
	else if (!from_ok)
		s->hdr_refusal = "From: address not owned by user";
	else if (!sender_ok)
		s->hdr_refusal = "Sender: address not owned by user";
	s->hdr_done = true;
	if (s->hdr_refusal)
		return 0; /* refused at the end; nothing more is written */
	struct buf b = BUF_INIT(0);
	received_header(s, &b);
	if (!have_msgid) {
		/* RFC 6409 8.3, RFC 5322 3.6.4 */
		char rnd[17], rnd2[17];
		random_id(rnd);
		random_id(rnd2);
		buf_xprintf(&b, "Message-ID: <%s%s@%s>\n", rnd, rnd2, s->base.cfg->hostname);
	}
	if (!have_date) {
		/* RFC 6409 8.2 */
		char date[64];
		time_rfc5322(time_unix(), date);
		buf_xprintf(&b, "Date: %s\n", date);
	}
	int r = delivery_write(s->d, b.data, b.len);
	buf_deinit(&b);
	if (r == 0 && s->hdr.len)
		r = delivery_write(s->d, s->hdr.data, s->hdr.len);
	buf_deinit(&s->hdr);
	return r;
}

/* Hold back content until the header ends (an empty line), then pass the
 * rest through. */
static int submit_write(struct smtp_sess *s, const uint8_t *p, size_t n)
{
	if (s->hdr_done)
		return s->hdr_refusal ? 0 : delivery_write(s->d, p, n);
	size_t old = s->hdr.len;
	/* the empty line: "\n" at the very start, or "\n\n" possibly straddling */
	size_t cut = 0;
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		bool prev_lf = i > 0 ? p[i - 1] == '\n'
				     : (old == 0 || s->hdr.data[old - 1] == '\n');
		if (prev_lf) {
			cut = i + 1;
			found = true;
			break;
		}
	}
	size_t take = found ? cut : n;
	if (old + take > SUBMIT_MAX_HEADER) {
		/* refused at the end (552), the rest is dropped */
		s->hdr_done = true;
		s->hdr_refusal = "header section too large";
		buf_deinit(&s->hdr);
		return 0;
	}
	buf_xappend(&s->hdr, p, take);
	if (!found)
		return 0;
	if (submit_header(s) < 0)
		return -1;
	return take < n ? submit_write(s, p + take, n - take) : 0;
}

static int op_data_write(void *ctx, struct smtp_server *eng, const uint8_t *p, size_t n)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	if (!s->d)
		return -1;
	for (size_t i = 0; i < n && !s->saw_8bit; i++)
		s->saw_8bit = p[i] >= 0x80;
	if (s->submission)
		return submit_write(s, p, n);
	return delivery_write(s->d, p, n);
}

static void log_accepted(struct smtp_sess *s, uint64_t size)
{
	struct buf b = BUF_INIT(0);
	char a[300];
	log_addr(s->from ? s->from : "", a);
	buf_xprintf(&b, "%s smtp accepted msgid=%s client=%s from=%s", s->base.id, s->msgid,
		    s->base.peer, a);
	for (size_t i = 0; i < s->nrcpts; i++) {
		log_addr(s->rcpts[i].addr, a);
		buf_xprintf(&b, " to=%s", a);
	}
	if (s->user)
		buf_xprintf(&b, " user=%s", s->user);
	if (s->qid[0])
		buf_xprintf(&b, " queued=%s", s->qid);
	buf_xprintf(&b, " size=%llu result=\"250 2.0.0\"", (unsigned long long)size);
	log_info("%s", buf_cstr(&b));
	buf_deinit(&b);
}

static bool wants_success_dsn(const struct smtp_sess *s, const struct rcpt *r)
{
	return !r->remote && (r->notify & SMTP_NOTIFY_SUCCESS) && s->from && s->from[0];
}

/* RFC 3461 5.2.2 for final local deliveries: the message is in the queue
 * with those recipients (see enqueue_spool); record them delivered, and
 * queue_notify() builds the "delivered" DSN to the sender (and drops the
 * message if nothing else is left in it). Best effort: the mail itself is
 * delivered whatever happens here. */
static void local_success_dsn(struct smtp_sess *s, uint32_t first, size_t n)
{
	struct queue *q = s->base.srv->queue;
	struct queue_result *res = xcalloc(n, sizeof *res);
	for (size_t i = 0; i < n; i++)
		res[i] = (struct queue_result){
			.rcpt = first + (uint32_t)i,
			.outcome = QUEUE_OUT_DELIVERED,
			.err = { 250, "2.0.0", "250 2.0.0 Ok: delivered to mailbox", NULL },
		};
	char *err = NULL;
	char dsn[17] = "";
	int64_t now = time_unix();
	if (queue_record(q, s->qid, res, n, now, &err) < 0 ||
	    queue_notify(q, s->qid, now, dsn, &err) < 0) {
		log_warnx("%s smtp success DSN for %s failed: %s", s->base.id, s->qid,
			  err ? err : "?");
		free(err);
	} else if (dsn[0]) {
		log_info("%s smtp dsn queued=%s action=delivered for=%s", s->base.id, dsn, s->qid);
	}
	free(res);
}

/* The spool copy is durable: register it with its envelope (remote
 * recipients first, then local ones that asked for a success DSN). 0 or -1. */
static int enqueue_spool(struct smtp_sess *s, struct delivery *d)
{
	const char *rel = delivery_target_file(d, s->queue_target);
	struct queue_rcpt_spec *v = xcalloc(s->nremote + s->nsuccess, sizeof *v);
	size_t n = 0;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (s->rcpts[i].remote)
			v[n++] = (struct queue_rcpt_spec){ s->rcpts[i].addr, s->rcpts[i].orcpt,
							   s->rcpts[i].notify };
	size_t nlocal = 0;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (wants_success_dsn(s, &s->rcpts[i])) {
			v[n++] = (struct queue_rcpt_spec){ s->rcpts[i].addr, s->rcpts[i].orcpt,
							   s->rcpts[i].notify };
			nlocal++;
		}
	struct queue_envelope env = {
		.sender = s->from ? s->from : "",
		.envid = s->envid,
		.ret = (enum queue_ret)s->mail.ret,
		/* 8-bit content without BODY=8BITMIME still needs an 8BITMIME peer */
		.eightbit = s->mail.body == SMTP_BODY_8BITMIME || s->saw_8bit,
		.smtputf8 = s->mail.smtputf8,
		.submitter = s->user,
		.arrival = time_unix(),
		.rcpts = v,
		.n_rcpts = n,
	};
	char *err = NULL;
	int r = rel ? queue_enqueue_file(s->base.srv->queue, &env, rel, s->qid, &err) : -1;
	free(v);
	if (r < 0) {
		log_warnx("%s smtp enqueue failed: %s", s->base.id, err ? err : "no spool file");
		free(err);
		s->qid[0] = '\0';
		return -1;
	}
	if (nlocal)
		local_success_dsn(s, (uint32_t)(n - nlocal), nlocal);
	server_queue_changed(s->base.srv);
	return 0;
}

/* The queue half failed after the local copies were committed: take them
 * back, since the client is told 451 and will send the whole message again
 * (a reader may have seen a copy in the moment between; a crash between
 * commit and enqueue still leaves them, and the retry duplicates them). */
static void unpublish_local(struct smtp_sess *s, struct delivery *d)
{
	for (size_t i = 0; i < s->nroots; i++) {
		const char *rel = delivery_target_file(d, i);
		if (!rel)
			continue;
		char *path = xasprintf("%s/%s", s->roots[i], rel);
		char *dir = xasprintf("%s/new", s->roots[i]);
		if (unlink(path) < 0)
			log_warn("%s smtp unlink(%s)", s->base.id, path);
		else if (fsync_dir(dir) < 0)
			log_warn("%s smtp fsync(%s)", s->base.id, dir);
		free(dir);
		free(path);
	}
}

static void commit_done(struct delivery *d, int result, const char *err, void *ctx)
{
	struct smtp_sess *s = ctx;
	uint64_t size = delivery_size(d);
	s->commit_pending = false;
	if (result == 0 && (s->nremote || s->nsuccess) && enqueue_spool(s, d) < 0) {
		/* the client will retry the whole message: no local half */
		unpublish_local(s, d);
		result = -1;
		err = "enqueue failed";
	}
	if (result == 0) {
		s->accepted++;
		log_accepted(s, size);
		/* IMAP sessions with these INBOXes selected: EXISTS soon */
		for (size_t i = 0; i < s->nrcpts; i++)
			for (size_t j = 0; j < s->rcpts[i].nusers; j++)
				role_imap_delivered(s->rcpts[i].users[j]);
	} else {
		log_warnx("%s smtp commit failed: %s", s->base.id, err ? err : "?");
		log_refusal(s, "from", s->from, 451, "4.3.0 commit failed");
	}
	if (s->conn_gone) {
		session_destroy(&s->base);
		return;
	}
	if (result == 0)
		smtp_server_resume(s->eng, 250, "2.0.0", "Ok: queued as %s", s->msgid);
	else
		smtp_server_resume(s->eng, 451, "4.3.0",
				   "Error: internal error, try again later (session %s)",
				   s->base.id);
	conn_kick(s->base.conn);
}

static enum app_verdict op_data_end(void *ctx, struct smtp_server *eng)
{
	struct smtp_sess *s = ctx;
	if (s->submission) {
		if (!s->hdr_done && submit_header(s) < 0) {
			delivery_abort(&s->d);
			smtp_server_reply(eng, 451, "4.3.0",
					  "Error: internal error, try again later (session %s)",
					  s->base.id);
			return APP_REJECTED;
		}
		if (s->hdr_refusal) {
			bool big = strstr(s->hdr_refusal, "too large") != NULL;
			bool cr = strstr(s->hdr_refusal, "bare CR") != NULL;
			delivery_abort(&s->d);
			if (big)
				smtp_server_reply(eng, 552, "5.3.4", "Error: %s", s->hdr_refusal);
			else if (cr)
				smtp_server_reply(eng, 554, "5.6.0", "Error: %s", s->hdr_refusal);
			else
				smtp_server_reply(eng, 553, "5.7.1", "Error: %s (user %s)",
						  s->hdr_refusal, s->user ? s->user : "-");
			log_refusal(s, "from", s->from, big ? 552 : cr ? 554 : 553, s->hdr_refusal);
			return APP_REJECTED;
		}
	}
	struct delivery *d = s->d;
	s->d = NULL;
	s->commit_pending = true;
	committer_submit(s->base.srv->committer, d, commit_done, s);
	return APP_PENDING;
}

static void op_data_abort(void *ctx, struct smtp_server *eng, int code, const char *text)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	if (s->d)
		delivery_abort(&s->d);
	log_refusal(s, "from", s->from, code, text);
}

static void op_rset(void *ctx, struct smtp_server *eng)
{
	(void)eng;
	reset_tx(ctx);
}

static void op_log_refusal(void *ctx, struct smtp_server *eng, const char *cmd, int code,
			   const char *text)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	char c[64], t[300];
	log_escape(cmd, strlen(cmd), c, sizeof c);
	log_escape(text, strlen(text), t, sizeof t);
	log_info("%s smtp error client=%s command=\"%s\" result=\"%d %s\"", s->base.id,
		 s->base.peer, c, code, t);
}

/* ---- AUTH -------------------------------------------------------------- */

static void login_done(struct session *base, bool ok, char *canon)
{
	struct smtp_sess *s = (struct smtp_sess *)base;
	s->login = NULL;
	free(s->user);
	s->user = ok ? canon : NULL;
	if (!ok)
		free(canon);
	if (ok)
		smtp_server_resume(s->eng, 235, "2.7.0", "Authentication successful");
	else
		smtp_server_resume(s->eng, 535, "5.7.8", "Authentication credentials invalid");
	conn_kick(s->base.conn);
}

static enum app_verdict op_auth_password(void *ctx, struct smtp_server *eng, const char *mech,
					 const char *user, const char *password)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	char m[32];
	snprintf(m, sizeof m, "%s", mech);
	ascii_lower(m);
	s->login = login_start(&s->base, "smtp", LOGIN_PASSWORD, m, user, password, NULL,
			       login_done);
	return APP_PENDING;
}

static bool op_scram_creds(void *ctx, const char *user, struct scram_creds *c)
{
	struct smtp_sess *s = ctx;
	return accounts_scram_creds(s->base.srv->accounts, user, c);
}

static void delay_done(struct evloop *ev, void *ctx)
{
	struct smtp_sess *s = ctx;
	(void)ev;
	s->delay = NULL;
	smtp_server_resume(s->eng, 535, "5.7.8", "Authentication credentials invalid");
	conn_kick(s->base.conn);
}

/* The engine judged a SCRAM proof (or a mechanism refused the credentials):
 * log it and hold a failure back like a wrong password. */
static enum app_verdict op_auth_done(void *ctx, struct smtp_server *eng, const char *mech,
				     const char *user, bool ok)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	char m[32];
	snprintf(m, sizeof m, "%s", mech);
	ascii_lower(m);
	unsigned delay = login_record(&s->base, "smtp", m, user, ok);
	if (ok) {
		free(s->user);
		if (!accounts_user_exists(s->base.srv->accounts, user, &s->user))
			s->user = xstrdup(user);
		return APP_OK;
	}
	if (!delay)
		return APP_OK; /* the engine answers 535 */
	s->delay = ev_timer_add(s->base.srv->ev, delay, delay_done, s);
	return APP_PENDING;
}

static const struct smtp_server_ops smtp_ops = {
	.helo = op_helo,
	.mail = op_mail,
	.rcpt = op_rcpt,
	.data_begin = op_data_begin,
	.data_write = op_data_write,
	.data_end = op_data_end,
	.data_abort = op_data_abort,
	.rset = op_rset,
	.auth_password = op_auth_password,
	.scram_creds = op_scram_creds,
	.auth_done = op_auth_done,
	.log_refusal = op_log_refusal,
};

/* proto_session_ops adapter for io/conn */
static size_t sess_feed(void *p, const uint8_t *data, size_t n)
{
	return smtp_server_feed(((struct smtp_sess *)p)->eng, data, n);
}
static enum proto_want sess_want(void *p)
{
	return smtp_server_want(((struct smtp_sess *)p)->eng);
}
static struct buf *sess_output(void *p)
{
	return smtp_server_output(((struct smtp_sess *)p)->eng);
}
static void sess_tls_started(void *p, const char *version, const char *cipher)
{
	struct smtp_sess *s = p;
	s->tls = true;
	log_info("%s smtp starttls version=%s cipher=%s", s->base.id, version, cipher);
	/* RFC 3207 4.2: forget what the client told us, an AUTH included */
	free(s->user);
	s->user = NULL;
	smtp_server_tls_started(s->eng);
}
static void sess_timeout(void *p)
{
	struct smtp_sess *s = p;
	log_info("%s smtp timeout client=%s", s->base.id, s->base.peer);
	smtp_server_timeout(s->eng);
}
static void sess_shutdown(void *p)
{
	smtp_server_shutdown(((struct smtp_sess *)p)->eng);
}
static void sess_closed(void *p, const char *reason)
{
	struct smtp_sess *s = p;
	log_info("%s smtp disconnect client=%s reason=%s accepted=%u refused=%u", s->base.id,
		 s->base.peer, reason ? reason : "close", s->accepted, s->refused);
	s->base.conn = NULL;
	if (s->commit_pending) {
		/* the message is being made durable; free when the committer is done */
		s->conn_gone = true;
		return;
	}
	session_destroy(&s->base);
}

static void smtp_sess_free(struct session *base)
{
	struct smtp_sess *s = (struct smtp_sess *)base;
	reset_tx(s);
	/* a check still running on a job thread finishes without us */
	login_cancel(&s->login);
	if (s->delay)
		ev_timer_del(s->base.srv->ev, &s->delay);
	smtp_server_free(&s->eng);
	free(s->user);
}

static const struct proto_session_ops conn_ops = {
	.feed = sess_feed,
	.want = sess_want,
	.output = sess_output,
	.tls_started = sess_tls_started,
	.timeout = sess_timeout,
	.shutdown = sess_shutdown,
	.closed = sess_closed,
};

void role_smtp_accept(struct server *srv, const struct server_listener *sl, int fd,
		      const char *peer, int port)
{
	struct smtp_sess *s = xcalloc(1, sizeof *s);
	session_init(&s->base, srv, "smtp", peer, port, smtp_sess_free);
	const struct config *cfg = s->base.cfg;
	/* RFC 6409 on 587 (STARTTLS), RFC 8314 on 465 (implicit TLS) */
	s->submission = sl->proto == LP_SUBMISSION || sl->proto == LP_SUBMISSIONS;
	bool implicit = sl->proto == LP_SUBMISSIONS;
	s->tls = implicit;
	s->set = (struct smtp_server_settings){
		.hostname = cfg->hostname,
		.banner = "ESMTP Tern",
		.max_message_size = cfg->max_message_size,
		.max_line = 2048,
		.max_rcpts = (unsigned)cfg->max_recipients,
		.max_errors = 20,
		.starttls_offered = s->base.tls != NULL && !implicit,
		.tls_active = implicit,
		.auth_offered = s->submission,
		.auth_plaintext = session_plaintext_ok(&s->base),
		.auth_required = s->submission,
	};
	s->eng = smtp_server_new(&s->set, &smtp_ops, s);
	log_info("%s smtp connect client=%s port=%d listener=%s", s->base.id, peer, port,
		 listener_proto_name(sl->proto));
	smtp_server_start(s->eng);
	struct conn_settings cs = {
		.idle_ms = (unsigned)(cfg->smtp_timeout * 1000),
		.max_input = 64 * 1024,
		.tls = s->base.tls,
		.implicit_tls = implicit,
		.tls_handshake_ms = 30000,
	};
	s->base.conn = conn_new(srv->ev, fd, &cs, &conn_ops, s);
	/* conn_new failing means ops->closed() will not run: clean up here */
	if (!s->base.conn)
		session_destroy(&s->base);
}
