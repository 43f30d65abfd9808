/* SPDX-License-Identifier: MIT */
/* SMTP MX role (RFC 5321 as a domain's MX): the application side of the
 * I/O-free engine. It decides who is local (config domains + account store),
 * refuses relaying, writes each accepted message into every recipient's
 * Maildir through the group committer, and only lets the engine say 250 once
 * the committer reports every copy durable. One log line per accepted
 * message and one per refusal. */
#include "daemon/role_smtp.h"

#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/role_imap.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "io/conn.h"
#include "io/tls.h"
#include "proto/smtp/smtp_server.h"
#include "store/maildir.h"

struct rcpt {
	char *addr;   /* as given in RCPT TO */
	char **users; /* local accounts it resolves to */
	size_t nusers;
};

struct smtp_sess {
	struct session base;
	struct smtp_server *eng;
	struct smtp_server_settings set;
	char *from;
	struct rcpt *rcpts;
	size_t nrcpts;
	struct delivery *d;
	char msgid[17];
	bool commit_pending;
	bool conn_gone;
	bool tls;
	unsigned accepted, refused;
};

static void free_rcpts(struct smtp_sess *s)
{
	for (size_t i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].addr);
		accounts_free_list(s->rcpts[i].users, s->rcpts[i].nusers);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
}

static void reset_tx(struct smtp_sess *s)
{
	free(s->from);
	s->from = NULL;
	free_rcpts(s);
	if (s->d)
		delivery_abort(&s->d);
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

static enum app_verdict op_mail(void *ctx, struct smtp_server *eng, const struct smtp_mail *m)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	reset_tx(s);
	s->from = xstrdup(m->from);
	return APP_OK;
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
	/* Anything not for a local domain would be relaying, which this port never
	 * does; address literals are never local (%-hacks and source routes have
	 * already been reduced to a local part that matches no account). */
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
	s->rcpts[s->nrcpts++] = (struct rcpt){ addr, users, (size_t)n };
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
			free(root);
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
	/* RFC 5321 4.4 trace field; "for" only with a single recipient so Bcc
	 * recipients are not disclosed to each other. */
	char date[64];
	time_rfc5322(time_unix(), date);
	const char *helo = smtp_server_helo_name(eng);
	const char *with = smtp_server_is_esmtp(eng) ? (s->tls ? "ESMTPS" : "ESMTP")
						     : (s->tls ? "SMTPS" : "SMTP");
	char helo_esc[130];
	log_escape(helo ? helo : "", helo ? strlen(helo) : 0, helo_esc, sizeof helo_esc);
	struct buf b = BUF_INIT(0);
	/* RFC 5321 4.1.3: IPv6 address literals are tagged "IPv6:" */
	bool v6 = strchr(s->base.peer, ':') != NULL;
	buf_xprintf(&b, "Received: from %s ([%s%s])\n\tby %s (Tern) with %s id %s", helo_esc,
		    v6 ? "IPv6:" : "", s->base.peer, cfg->hostname, with, s->msgid);
	if (s->nrcpts == 1)
		buf_xprintf(&b, "\n\tfor <%s>", s->rcpts[0].addr);
	buf_xprintf(&b, "; %s\n", date);
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

static int op_data_write(void *ctx, struct smtp_server *eng, const uint8_t *p, size_t n)
{
	struct smtp_sess *s = ctx;
	(void)eng;
	if (!s->d)
		return -1;
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
	buf_xprintf(&b, " size=%llu result=\"250 2.0.0\"", (unsigned long long)size);
	log_info("%s", buf_cstr(&b));
	buf_deinit(&b);
}

static void commit_done(struct delivery *d, int result, const char *err, void *ctx)
{
	struct smtp_sess *s = ctx;
	uint64_t size = delivery_size(d);
	s->commit_pending = false;
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
	(void)eng;
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

static const struct smtp_server_ops smtp_ops = {
	.helo = op_helo,
	.mail = op_mail,
	.rcpt = op_rcpt,
	.data_begin = op_data_begin,
	.data_write = op_data_write,
	.data_end = op_data_end,
	.data_abort = op_data_abort,
	.rset = op_rset,
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
	smtp_server_free(&s->eng);
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
	s->set = (struct smtp_server_settings){
		.hostname = cfg->hostname,
		.banner = "ESMTP Tern",
		.max_message_size = cfg->max_message_size,
		.max_line = 2048,
		.max_rcpts = (unsigned)cfg->max_recipients,
		.max_errors = 20,
		.starttls_offered = s->base.tls != NULL,
		.tls_active = false,
	};
	s->eng = smtp_server_new(&s->set, &smtp_ops, s);
	log_info("%s smtp connect client=%s port=%d listener=%s", s->base.id, peer, port,
		 listener_proto_name(sl->proto));
	smtp_server_start(s->eng);
	struct conn_settings cs = {
		.idle_ms = (unsigned)(cfg->smtp_timeout * 1000),
		.max_input = 64 * 1024,
		.tls = s->base.tls,
		.implicit_tls = false,
		.tls_handshake_ms = 30000,
	};
	s->base.conn = conn_new(srv->ev, fd, &cs, &conn_ops, s);
	/* conn_new failing means ops->closed() will not run: clean up here */
	if (!s->base.conn)
		session_destroy(&s->base);
}
