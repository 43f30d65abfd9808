/* SPDX-License-Identifier: MIT */
/* The SMTP client engine (see smtp_client.h): connection setup (greeting,
 * EHLO/HELO, STARTTLS, AUTH), one transaction per message with or without
 * PIPELINING, content encoding (LF -> CRLF, dot-stuffing) and result
 * reporting.
 *
 * Every command sent is recorded in a FIFO of expected replies; each complete
 * reply pops the head, so pipelined replies are matched in order (RFC 2920
 * 3.1). Replies to commands we did not send are a protocol error, as is a
 * malformed reply: the connection fails and everything in flight fails
 * temporarily. A 421 ends the connection wherever it comes (RFC 5321 3.8).
 *
 * Invariants:
 *  - rcpt_done() is called exactly once per recipient of a message, then
 *    msg_done() once; the message is freed before msg_done() runs so the
 *    callback may start the next one;
 *  - after a failure (state CLOSED) nothing more is sent and input is dropped;
 *  - QUIT is never written while content is in progress. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/smtp/smtp_client.h"

enum cstate {
	CS_SETUP,    /* greeting .. AUTH: one command outstanding at a time */
	CS_TLS_WAIT, /* STARTTLS got 220: waiting for the handshake */
	CS_READY,    /* idle between messages */
	CS_MSG,	     /* transaction commands outstanding */
	CS_CONTENT,  /* after 354: the caller supplies content */
	CS_QUIT,     /* QUIT sent */
	CS_CLOSED,   /* done or failed: want CLOSE */
};

/* What a queued reply answers. */
enum ccmd {
	CC_GREETING,
	CC_EHLO,
	CC_HELO,
	CC_STARTTLS,
	CC_AUTH_PLAIN,
	CC_AUTH_LOGIN, /* "AUTH LOGIN": expects 334 for the user name */
	CC_AUTH_USER,  /* user name sent: expects 334 for the password */
	CC_AUTH_PASS,  /* password sent: expects 235 */
	CC_RSET,
	CC_MAIL,
	CC_RCPT,
	CC_DATA,
	CC_DOT,	       /* end of content: the final reply */
	CC_DOT_IGNORE, /* empty content after a 354 with no recipient (RFC 2920 3.1) */
	CC_BDAT,       /* a chunk (RFC 3030) */
	CC_BDAT_LAST,  /* the last chunk: the final reply */
	CC_QUIT,
};

struct pend {
	enum ccmd cmd;
	size_t idx; /* CC_RCPT: recipient index */
};

struct crcpt {
	char *addr, *notify, *orcpt;
	bool accepted; /* 2xx to RCPT, outcome decided by the final reply */
	bool done;     /* rcpt_done() called */
};

struct cmsg {
	char *from, *ret, *envid;
	struct crcpt *rcpts;
	size_t nrcpts;
	uint64_t size;
	bool eightbit, smtputf8;
	bool mail_failed;
	bool bdat;	    /* content goes as BDAT chunks (RFC 3030) */
	bool bdat_failed;   /* a BDAT was refused: no more chunks are sent */
	bool content_ended; /* smtp_client_content_end() was called */
	size_t nreplied;    /* RCPT replies received */
	size_t naccepted;
	bool any_temp; /* a recipient failed temporarily */
	/* The message result for msg_done(), set by whichever reply decides it. */
	enum smtp_client_status status;
	enum smtp_client_stage stage;
	int code;
	char esc[16];
	char *text;
	bool decided;
	enum smtp_client_stage waiting; /* what the message waits for (failure stage) */
};

struct smtp_client {
	struct smtp_client_settings set;
	const struct smtp_client_ops *ops;
	void *ctx;

	struct buf out;
	struct smtp_reply_reader rd;
	enum cstate state;
	struct pend *pq;
	size_t pq_head, pq_n, pq_cap;

	struct smtp_ehlo ehlo;
	bool esmtp, tls, authed, pipelining;
	bool rset_needed; /* a transaction may be open: RSET before the next MAIL */
	bool ehlo_after_tls;

	/* content encoder (RFC 5321 4.5.2) */
	bool bol;	  /* at the beginning of a line */
	bool pending_cr;  /* the last content octet was a CR */
	struct buf chunk; /* BDAT: encoded content not yet sent (< SMTP_CLIENT_BDAT_CHUNK) */

	struct cmsg *msg;

	/* msg_refuse() running, and a refusal queued from inside its callbacks */
	bool refusing;
	const char *refuse_esc; /* static */
	char *refuse_text;
};

/* ---- helpers ---------------------------------------------------------------- */

static void pq_push(struct smtp_client *c, enum ccmd cmd, size_t idx)
{
	if (c->pq_head + c->pq_n == c->pq_cap) {
		if (c->pq_head > 0) {
			memmove(c->pq, c->pq + c->pq_head, c->pq_n * sizeof *c->pq);
			c->pq_head = 0;
		} else {
			c->pq_cap = c->pq_cap ? c->pq_cap * 2 : 8;
			c->pq = xrealloc(c->pq, c->pq_cap * sizeof *c->pq);
		}
	}
	c->pq[c->pq_head + c->pq_n] = (struct pend){cmd, idx};
	c->pq_n++;
}

/* BDAT chunk size: big enough to be cheap, small enough to bound memory. */
#define SMTP_CLIENT_BDAT_CHUNK 65536

static void pq_clear(struct smtp_client *c)
{
	c->pq_head = 0;
	c->pq_n = 0;
}

static void send_cmd(struct smtp_client *c, enum ccmd cmd, size_t idx, const char *fmt, ...)
    ATTR_FORMAT(4, 5);
static void send_cmd(struct smtp_client *c, enum ccmd cmd, size_t idx, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *line = NULL;
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	ASSERT(n >= 0);
	buf_xappend(&c->out, line, (size_t)n);
	buf_xappend(&c->out, "\r\n", 2);
	if (c->ops->trace) {
		/* design 2.5: AUTH payloads never reach a log */
		const char *shown = line;
		if (cmd == CC_AUTH_PLAIN)
			shown = "AUTH PLAIN ********";
		else if (cmd == CC_AUTH_USER || cmd == CC_AUTH_PASS)
			shown = "********";
		c->ops->trace(c->ctx, c, true, shown);
	}
	explicit_bzero(line, (size_t)n);
	free(line);
	pq_push(c, cmd, idx);
}

static enum smtp_client_status status_of(int code)
{
	if (code >= 200 && code < 300)
		return SMTP_CLIENT_OK;
	if (code >= 500)
		return SMTP_CLIENT_PERM;
	return SMTP_CLIENT_TEMP;
}

static void msg_free(struct cmsg **mp)
{
	struct cmsg *m = *mp;
	if (!m)
		return;
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].notify);
		free(m->rcpts[i].orcpt);
	}
	free(m->rcpts);
	free(m->from);
	free(m->ret);
	free(m->envid);
	free(m->text);
	free(m);
	*mp = NULL;
}

static void msg_decide(struct cmsg *m, enum smtp_client_status st, enum smtp_client_stage stage,
		       int code, const char *esc, const char *text)
{
	if (m->decided)
		return;
	m->decided = true;
	m->status = st;
	m->stage = stage;
	m->code = code;
	snprintf(m->esc, sizeof m->esc, "%s", esc ? esc : "");
	m->text = xstrdup(text ? text : "");
}

static void rcpt_report(struct smtp_client *c, size_t idx, enum smtp_client_status st,
			enum smtp_client_stage stage, int code, const char *esc, const char *text)
{
	struct crcpt *r = &c->msg->rcpts[idx];
	if (r->done)
		return;
	r->done = true;
	if (st == SMTP_CLIENT_TEMP)
		c->msg->any_temp = true;
	struct smtp_client_result res = {st, stage, code, esc ? esc : "", text ? text : ""};
	if (c->ops->rcpt_done)
		c->ops->rcpt_done(c->ctx, c, idx, &res);
}

/* Every open recipient gets this outcome. */
static void rcpt_report_all(struct smtp_client *c, enum smtp_client_status st,
			    enum smtp_client_stage stage, int code, const char *esc,
			    const char *text)
{
	for (size_t i = 0; i < c->msg->nrcpts; i++)
		rcpt_report(c, i, st, stage, code, esc, text);
}

/* All recipients are reported: free the message, go READY, msg_done(). The
 * callback may send the next message. */
static void msg_finish(struct smtp_client *c)
{
	struct cmsg *m = c->msg;
	ASSERT(m != NULL);
	if (!m->decided) {
		/* no reply decided for the whole message: nobody was accepted */
		msg_decide(m, m->any_temp ? SMTP_CLIENT_TEMP : SMTP_CLIENT_PERM, SMTP_STAGE_RCPT, 0,
			   m->any_temp ? "4.0.0" : "5.0.0", "No recipient was accepted");
	}
	char esc[sizeof m->esc];
	memcpy(esc, m->esc, sizeof esc);
	struct smtp_client_result res = {m->status, m->stage, m->code, esc, m->text};
	char *text = m->text;
	m->text = NULL;
	msg_free(&c->msg);
	if (c->state != CS_CLOSED)
		c->state = CS_READY;
	if (c->ops->msg_done)
		c->ops->msg_done(c->ctx, c, &res);
	free(text);
}

/* The connection is over: finish the message in flight with this outcome
 * (temporary for its open recipients), optionally say QUIT, then failed(). */
static void conn_fail(struct smtp_client *c, enum smtp_client_status st, int code, const char *esc,
		      const char *text, bool quit)
{
	if (c->state == CS_CLOSED)
		return;
	bool in_content = c->state == CS_CONTENT;
	enum smtp_client_stage stage = SMTP_STAGE_CONNECT;
	c->state = CS_CLOSED;
	pq_clear(c);
	if (quit && !in_content) {
		buf_xappend(&c->out, "QUIT\r\n", 6);
		if (c->ops->trace)
			c->ops->trace(c->ctx, c, true, "QUIT");
	}
	if (c->msg) {
		stage = c->msg->waiting;
		/* A connection-level failure never fails a recipient permanently:
		 * another attempt (or another MX) may succeed. */
		enum smtp_client_status rst = SMTP_CLIENT_TEMP;
		rcpt_report_all(c, rst, stage, code, esc, text);
		msg_decide(c->msg, rst, stage, code, esc, text);
		msg_finish(c);
	}
	struct smtp_client_result res = {st, stage, code, esc ? esc : "", text ? text : ""};
	if (c->ops->failed)
		c->ops->failed(c->ctx, c, &res);
}

static void protocol_error(struct smtp_client *c, const char *what)
{
	char *t = xasprintf("Protocol error: %s", what);
	conn_fail(c, SMTP_CLIENT_TEMP, 0, "4.5.0", t, false);
	free(t);
}

/* Failure carried by a reply (setup refused, 421, ...). */
static void conn_fail_reply(struct smtp_client *c, const struct smtp_reply *r, bool quit)
{
	/* a 2xx where another code was due (a greeting of 250) is no success */
	enum smtp_client_status st = status_of(r->code);
	conn_fail(c, st == SMTP_CLIENT_OK ? SMTP_CLIENT_TEMP : st, r->code, r->esc, r->text, quit);
}

static void conn_fail_local(struct smtp_client *c, const char *esc, const char *text)
{
	conn_fail(c, SMTP_CLIENT_TEMP, 0, esc, text, true);
}

/* ---- setup ---------------------------------------------------------------- */

static void send_ehlo(struct smtp_client *c)
{
	send_cmd(c, CC_EHLO, 0, "EHLO %s", c->set.helo_name);
}

static void become_ready(struct smtp_client *c)
{
	c->state = CS_READY;
	c->pipelining = (c->ehlo.ext & SMTP_EXT_PIPELINING) && !c->set.no_pipelining;
	if (c->ops->ready)
		c->ops->ready(c->ctx, c);
}

static bool want_auth(const struct smtp_client *c)
{
	return c->set.auth_user && c->set.auth_pass;
}

/* RFC 4954 4: AUTH PLAIN with an initial response, else LOGIN. */
static void start_auth(struct smtp_client *c)
{
	if (!c->tls && !c->set.auth_plaintext) {
		conn_fail_local(c, "4.7.0", "AUTH refused: the connection is not encrypted");
		return;
	}
	if (!(c->ehlo.ext & SMTP_EXT_AUTH)) {
		conn_fail_local(c, "4.7.0", "AUTH needed but the server does not offer AUTH");
		return;
	}
	if (c->ehlo.auth & SMTP_AUTH_PLAIN) {
		/* RFC 4616 2: [authzid] NUL authcid NUL passwd */
		size_t ul = strlen(c->set.auth_user), pl = strlen(c->set.auth_pass);
		uint8_t *raw = xmalloc(ul + pl + 2);
		raw[0] = 0;
		memcpy(raw + 1, c->set.auth_user, ul);
		raw[1 + ul] = 0;
		memcpy(raw + 2 + ul, c->set.auth_pass, pl);
		char *b64 = base64_encode(raw, ul + pl + 2);
		explicit_bzero(raw, ul + pl + 2);
		free(raw);
		send_cmd(c, CC_AUTH_PLAIN, 0, "AUTH PLAIN %s", b64);
		explicit_bzero(b64, strlen(b64));
		free(b64);
	} else if (c->ehlo.auth & SMTP_AUTH_LOGIN) {
		send_cmd(c, CC_AUTH_LOGIN, 0, "AUTH LOGIN");
	} else {
		conn_fail_local(c, "4.7.0",
				"AUTH needed but the server offers neither PLAIN nor LOGIN");
	}
}

/* EHLO/HELO done (again after TLS): STARTTLS, AUTH or ready. */
static void after_ehlo(struct smtp_client *c)
{
	if (!c->tls) {
		bool offered = c->ehlo.ext & SMTP_EXT_STARTTLS;
		if (offered && c->set.tls != SMTP_CLIENT_TLS_NEVER) {
			send_cmd(c, CC_STARTTLS, 0, "STARTTLS");
			return;
		}
		if (c->set.tls == SMTP_CLIENT_TLS_REQUIRE) {
			conn_fail_local(c, "4.7.0",
					"TLS is required but the server does not offer STARTTLS");
			return;
		}
	}
	if (want_auth(c) && !c->authed) {
		start_auth(c);
		return;
	}
	become_ready(c);
}

static void auth_done(struct smtp_client *c, const struct smtp_reply *r, bool ok)
{
	if (!ok) {
		/* 334 means the server still waits for an answer: no QUIT then */
		conn_fail_reply(c, r, r->code / 100 != 3);
		return;
	}
	c->authed = true;
	become_ready(c);
}

static void send_b64(struct smtp_client *c, enum ccmd cmd, const char *s)
{
	char *b64 = base64_encode(s, strlen(s));
	send_cmd(c, cmd, 0, "%s", b64);
	explicit_bzero(b64, strlen(b64));
	free(b64);
}

static void setup_reply(struct smtp_client *c, enum ccmd cmd, const struct smtp_reply *r)
{
	int k = r->code / 100;
	switch (cmd) {
	case CC_GREETING:
		if (r->code != 220) {
			/* RFC 5321 3.1: 554 (or any refusal): say QUIT and go */
			conn_fail_reply(c, r, true);
			return;
		}
		send_ehlo(c);
		return;
	case CC_EHLO:
		if (k == 2) {
			c->esmtp = true;
			smtp_ehlo_parse(r, &c->ehlo);
			after_ehlo(c);
		} else if (k == 5 && !c->ehlo_after_tls) {
			/* RFC 5321 3.2: an old server; fall back to HELO */
			send_cmd(c, CC_HELO, 0, "HELO %s", c->set.helo_name);
		} else {
			conn_fail_reply(c, r, true);
		}
		return;
	case CC_HELO:
		if (k != 2) {
			conn_fail_reply(c, r, true);
			return;
		}
		c->esmtp = false;
		memset(&c->ehlo, 0, sizeof c->ehlo);
		after_ehlo(c);
		return;
	case CC_STARTTLS:
		if (r->code == 220) {
			c->state = CS_TLS_WAIT;
			return;
		}
		if (c->set.tls == SMTP_CLIENT_TLS_REQUIRE) {
			conn_fail_reply(c, r, true);
			return;
		}
		/* Opportunistic: carry on in plaintext. Do not offer STARTTLS again. */
		c->ehlo.ext &= ~(unsigned)SMTP_EXT_STARTTLS;
		after_ehlo(c);
		return;
	case CC_AUTH_PLAIN:
	case CC_AUTH_PASS:
		auth_done(c, r, r->code == 235);
		return;
	case CC_AUTH_LOGIN:
		if (r->code != 334) {
			auth_done(c, r, false);
			return;
		}
		send_b64(c, CC_AUTH_USER, c->set.auth_user);
		return;
	case CC_AUTH_USER:
		if (r->code != 334) {
			auth_done(c, r, false);
			return;
		}
		send_b64(c, CC_AUTH_PASS, c->set.auth_pass);
		return;
	default:
		UNREACHABLE();
	}
}

/* ---- transaction ------------------------------------------------------------ */

static bool has_8bit(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* An envelope string must not be able to break the command line. */
static bool bad_addr(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '<' || *s == '>')
			return true;
	return false;
}

/* ESMTP parameter values (RFC 5321 4.1.2 esmtp-value, xtext for DSN). */
static bool bad_param(const char *s)
{
	if (!s)
		return false;
	if (!*s)
		return true;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '=')
			return true;
	return false;
}

static char *xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void send_mail(struct smtp_client *c)
{
	struct cmsg *m = c->msg;
	struct buf b = BUF_INIT(0);
	buf_xprintf(&b, "MAIL FROM:<%s>", m->from);
	if ((c->ehlo.ext & SMTP_EXT_SIZE) && m->size > 0)
		buf_xprintf(&b, " SIZE=%llu", (unsigned long long)m->size); /* RFC 1870 6 */
	if (m->eightbit)
		buf_xprintf(&b, " BODY=8BITMIME"); /* RFC 6152 3 */
	if (m->smtputf8)
		buf_xprintf(&b, " SMTPUTF8"); /* RFC 6531 3.4 */
	if (c->ehlo.ext & SMTP_EXT_DSN) {     /* RFC 3461 4.3, 4.4 */
		if (m->ret)
			buf_xprintf(&b, " RET=%s", m->ret);
		if (m->envid)
			buf_xprintf(&b, " ENVID=%s", m->envid);
	}
	send_cmd(c, CC_MAIL, 0, "%s", buf_cstr(&b));
	buf_deinit(&b);
	m->waiting = SMTP_STAGE_MAIL;
}

static void send_rcpt(struct smtp_client *c, size_t i)
{
	struct crcpt *r = &c->msg->rcpts[i];
	struct buf b = BUF_INIT(0);
	buf_xprintf(&b, "RCPT TO:<%s>", r->addr);
	if (c->ehlo.ext & SMTP_EXT_DSN) { /* RFC 3461 4.1, 4.2 */
		if (r->notify)
			buf_xprintf(&b, " NOTIFY=%s", r->notify);
		if (r->orcpt)
			buf_xprintf(&b, " ORCPT=%s", r->orcpt);
	}
	send_cmd(c, CC_RCPT, i, "%s", buf_cstr(&b));
	buf_deinit(&b);
}

/* Local refusal: every recipient fails permanently, nothing is sent. The
 * callbacks run inside send(), and msg_done() may send the next message,
 * which may be refused too: those nested refusals are queued and run by this
 * loop, so a long run of refused messages does not grow the stack. */
static void msg_refuse(struct smtp_client *c, const char *esc, const char *text)
{
	if (c->refusing) {
		ASSERT(c->refuse_text == NULL);
		c->refuse_esc = esc;
		c->refuse_text = xstrdup(text);
		return;
	}
	c->refusing = true;
	char *owned = NULL;
	for (;;) {
		rcpt_report_all(c, SMTP_CLIENT_PERM, SMTP_STAGE_LOCAL, 0, esc, text);
		msg_decide(c->msg, SMTP_CLIENT_PERM, SMTP_STAGE_LOCAL, 0, esc, text);
		msg_finish(c);
		free(owned);
		if (!c->refuse_text)
			break;
		esc = c->refuse_esc;
		text = owned = c->refuse_text;
		c->refuse_text = NULL;
	}
	c->refusing = false;
}

void smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg)
{
	ASSERT(c->state == CS_READY && c->msg == NULL);
	ASSERT(msg->nrcpts > 0 && msg->from != NULL);
	struct cmsg *m = xcalloc(1, sizeof *m);
	m->from = xstrdup(msg->from);
	m->ret = xstrdup_or_null(msg->ret);
	m->envid = xstrdup_or_null(msg->envid);
	m->size = msg->size;
	m->eightbit = msg->eightbit;
	m->smtputf8 = msg->smtputf8 || has_8bit(msg->from);
	m->nrcpts = msg->nrcpts;
	m->rcpts = xcalloc(msg->nrcpts, sizeof *m->rcpts);
	bool bad = bad_addr(msg->from) || bad_param(msg->ret) || bad_param(msg->envid);
	for (size_t i = 0; i < msg->nrcpts; i++) {
		const struct smtp_client_rcpt *r = &msg->rcpts[i];
		ASSERT(r->addr != NULL);
		m->rcpts[i].addr = xstrdup(r->addr);
		m->rcpts[i].notify = xstrdup_or_null(r->notify);
		m->rcpts[i].orcpt = xstrdup_or_null(r->orcpt);
		m->smtputf8 = m->smtputf8 || has_8bit(r->addr);
		bad = bad || !r->addr[0] || bad_addr(r->addr) || bad_param(r->notify) ||
		      bad_param(r->orcpt);
	}
	m->waiting = SMTP_STAGE_LOCAL;
	c->msg = m;
	c->state = CS_MSG;

	if (bad) {
		msg_refuse(c, "5.1.3", "Invalid envelope address or parameter");
		return;
	}
	if (m->smtputf8 && !(c->ehlo.ext & SMTP_EXT_SMTPUTF8)) {
		/* RFC 6531 3.4: without SMTPUTF8 at the peer the message cannot go */
		msg_refuse(c, "5.6.7",
			   "Message needs SMTPUTF8 but the remote server does not support it");
		return;
	}
	if (m->eightbit && !(c->ehlo.ext & SMTP_EXT_8BITMIME)) {
		/* RFC 6152 3: no 8-bit content to a 7-bit peer; we do not downgrade */
		msg_refuse(
		    c, "5.6.3",
		    "Message has 8-bit content but the remote server does not support 8BITMIME");
		return;
	}
	if (m->size > 0 && (c->ehlo.ext & SMTP_EXT_SIZE) && c->ehlo.size_max > 0 &&
	    m->size > c->ehlo.size_max) {
		/* RFC 1870 6: do not send a message the server declared too big */
		char *t =
		    xasprintf("Message size %llu exceeds the remote server's limit of %llu",
			      (unsigned long long)m->size, (unsigned long long)c->ehlo.size_max);
		msg_refuse(c, "5.3.4", t);
		free(t);
		return;
	}

	/* RFC 2920 3.1: RSET, MAIL and RCPT may be pipelined; DATA ends the group. */
	if (c->rset_needed) {
		send_cmd(c, CC_RSET, 0, "RSET");
		c->rset_needed = false;
		if (!c->pipelining) {
			m->waiting = SMTP_STAGE_MAIL;
			return; /* MAIL goes after RSET's 250 */
		}
	}
	/* RFC 3030 2: BDAT only with PIPELINING here, so chunks never wait for
	 * one another's replies */
	m->bdat = c->set.chunking && c->pipelining && (c->ehlo.ext & SMTP_EXT_CHUNKING);
	send_mail(c);
	if (c->pipelining) {
		for (size_t i = 0; i < m->nrcpts; i++)
			send_rcpt(c, i);
		if (!m->bdat)
			send_cmd(c, CC_DATA, 0, "DATA");
	}
}

void smtp_client_quit(struct smtp_client *c)
{
	ASSERT(c->state == CS_READY && c->msg == NULL);
	send_cmd(c, CC_QUIT, 0, "QUIT");
	c->state = CS_QUIT;
}

/* The next command of a non-pipelined transaction after recipient i. */
static void next_after_rcpt(struct smtp_client *c, size_t i)
{
	struct cmsg *m = c->msg;
	if (i + 1 < m->nrcpts) {
		send_rcpt(c, i + 1);
		return;
	}
	if (m->naccepted > 0) {
		send_cmd(c, CC_DATA, 0, "DATA");
		m->waiting = SMTP_STAGE_DATA;
		return;
	}
	c->rset_needed = true; /* MAIL was accepted: the transaction is open */
	msg_finish(c);
}

static void content_start(struct smtp_client *c)
{
	c->state = CS_CONTENT;
	c->msg->waiting = SMTP_STAGE_CONTENT;
	c->bol = true;
	c->pending_cr = false;
	buf_clear(&c->chunk);
	if (c->ops->content_wanted)
		c->ops->content_wanted(c->ctx, c);
}

/* BDAT: every RCPT reply is in; content if anyone was accepted. */
static void bdat_start(struct smtp_client *c)
{
	struct cmsg *m = c->msg;
	if (m->mail_failed) {
		msg_finish(c);
		return;
	}
	if (m->naccepted == 0) {
		c->rset_needed = true;
		msg_finish(c);
		return;
	}
	content_start(c);
}

/* The reply that decides the content's fate for every accepted recipient. */
static void content_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	struct cmsg *m = c->msg;
	/* RFC 5321 4.1.1.4 (and RFC 3030 2 for BDAT): one reply for everyone */
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].accepted)
			rcpt_report(c, i, status_of(r->code), SMTP_STAGE_CONTENT, r->code, r->esc,
				    r->text);
	msg_decide(m, status_of(r->code), SMTP_STAGE_CONTENT, r->code, r->esc, r->text);
	if (r->code / 100 != 2)
		c->rset_needed = true;
}

static void msg_reply(struct smtp_client *c, const struct pend *pe, const struct smtp_reply *r)
{
	struct cmsg *m = c->msg;
	int k = r->code / 100;
	switch (pe->cmd) {
	case CC_RSET:
		if (k != 2) {
			conn_fail_reply(c, r, true);
			return;
		}
		if (!c->pipelining)
			send_mail(c);
		return;
	case CC_MAIL:
		if (k == 3) {
			protocol_error(c, "unexpected 3xx reply to MAIL");
			return;
		}
		m->waiting = SMTP_STAGE_RCPT;
		if (k != 2) {
			m->mail_failed = true;
			rcpt_report_all(c, status_of(r->code), SMTP_STAGE_MAIL, r->code, r->esc,
					r->text);
			msg_decide(m, status_of(r->code), SMTP_STAGE_MAIL, r->code, r->esc,
				   r->text);
			if (!c->pipelining)
				msg_finish(c);
			/* pipelined: the RCPT and DATA replies are still to come */
			return;
		}
		if (!c->pipelining)
			send_rcpt(c, 0);
		return;
	case CC_RCPT:
		m->nreplied++;
		if (k == 3) {
			protocol_error(c, "unexpected 3xx reply to RCPT");
			return;
		}
		if (!m->mail_failed) {
			if (k == 2) {
				m->rcpts[pe->idx].accepted = true;
				m->naccepted++;
			} else {
				/* RFC 5321 4.5.3.1.10: a 552 to RCPT is the old "too many
				 * recipients"; treat it as the 452 it should be */
				enum smtp_client_status st =
				    r->code == 552 ? SMTP_CLIENT_TEMP : status_of(r->code);
				rcpt_report(c, pe->idx, st, SMTP_STAGE_RCPT, r->code, r->esc,
					    r->text);
			}
		}
		if (m->nreplied == m->nrcpts)
			m->waiting = SMTP_STAGE_DATA;
		if (m->bdat) {
			if (m->nreplied == m->nrcpts)
				bdat_start(c);
		} else if (!c->pipelining) {
			next_after_rcpt(c, pe->idx);
		}
		return;
	case CC_DATA:
		if (r->code == 354) {
			if (m->naccepted == 0 || m->mail_failed) {
				/* RFC 2920 3.1: DATA accepted with no valid recipient:
				 * send an empty message and ignore its reply */
				buf_xappend(&c->out, ".\r\n", 3);
				pq_push(c, CC_DOT_IGNORE, 0);
				return;
			}
			content_start(c);
			return;
		}
		if (k == 2 || k == 3) {
			protocol_error(c, "unexpected reply to DATA");
			return;
		}
		c->rset_needed = true;
		if (m->naccepted > 0 && !m->mail_failed) {
			for (size_t i = 0; i < m->nrcpts; i++)
				if (m->rcpts[i].accepted)
					rcpt_report(c, i, status_of(r->code), SMTP_STAGE_DATA,
						    r->code, r->esc, r->text);
			msg_decide(m, status_of(r->code), SMTP_STAGE_DATA, r->code, r->esc,
				   r->text);
		}
		msg_finish(c);
		return;
	case CC_DOT:
		if (k == 3) {
			protocol_error(c, "unexpected 3xx reply after the message content");
			return;
		}
		content_reply(c, r);
		msg_finish(c);
		return;
	case CC_DOT_IGNORE:
		c->rset_needed = true;
		msg_finish(c);
		return;
	case CC_BDAT:
	case CC_BDAT_LAST:
		if (k == 3) {
			protocol_error(c, "unexpected 3xx reply to BDAT");
			return;
		}
		if (!m->bdat_failed && (k != 2 || pe->cmd == CC_BDAT_LAST)) {
			/* RFC 3030 2: a refused chunk fails the transaction; send
			 * no more chunks (the caller's content is then dropped) */
			m->bdat_failed = k != 2;
			content_reply(c, r);
		}
		if (m->content_ended && c->pq_n == 0)
			msg_finish(c);
		return;
	default:
		UNREACHABLE();
	}
}

static void handle_reply(struct smtp_client *c, const struct smtp_reply *r)
{
	bool bdat_content = c->state == CS_CONTENT && c->msg->bdat;
	if ((c->state == CS_CONTENT && !bdat_content) || c->pq_n == 0) {
		/* A reply nobody asked for; the usual one is 421 before a close
		 * (RFC 5321 3.8). Either way we cannot go on. */
		if (r->code == 421) {
			conn_fail_reply(c, r, false);
			return;
		}
		protocol_error(c, c->state == CS_CONTENT ? "reply during message content"
							 : "unexpected reply");
		return;
	}
	struct pend pe = c->pq[c->pq_head];
	c->pq_head++;
	c->pq_n--;
	if (c->pq_n == 0)
		c->pq_head = 0;

	if (pe.cmd == CC_QUIT) {
		c->state = CS_CLOSED;
		pq_clear(c);
		return;
	}
	if (r->code == 421) {
		/* RFC 5321 3.8: the server is closing; whatever this answered failed */
		conn_fail_reply(c, r, false);
		return;
	}
	if (pe.cmd < CC_RSET)
		setup_reply(c, pe.cmd, r);
	else
		msg_reply(c, &pe, r);
}

/* ---- content ----------------------------------------------------------------- */

bool smtp_client_wants_content(const struct smtp_client *c)
{
	return c->state == CS_CONTENT;
}

/* RFC 5321 2.3.8 line ends: every LF and every bare CR ends a line with
 * CRLF; with stuff (DATA, RFC 5321 4.5.2 transparency) a line starting with
 * "." gets another ".". Appends to dst. */
static void encode(struct smtp_client *c, struct buf *dst, const uint8_t *p, size_t n, bool stuff)
{
	size_t i = 0;
	while (i < n) {
		if (c->pending_cr) {
			c->pending_cr = false;
			buf_xappend(dst, "\r\n", 2);
			c->bol = true;
			if (p[i] == '\n') {
				i++;
				continue;
			}
		}
		uint8_t ch = p[i];
		if (ch == '\r') {
			c->pending_cr = true;
			i++;
			continue;
		}
		if (ch == '\n') {
			buf_xappend(dst, "\r\n", 2);
			c->bol = true;
			i++;
			continue;
		}
		if (stuff && c->bol && ch == '.')
			buf_xappend(dst, ".", 1);
		/* copy the run of ordinary octets up to the next CR or LF */
		size_t s = i;
		while (i < n && p[i] != '\r' && p[i] != '\n')
			i++;
		buf_xappend(dst, p + s, i - s);
		c->bol = false;
	}
}

/* A last line without its LF gets its CRLF, as DATA requires. */
static void encode_end(struct smtp_client *c, struct buf *dst)
{
	if (c->pending_cr || !c->bol)
		buf_xappend(dst, "\r\n", 2);
	c->pending_cr = false;
	c->bol = true;
}

/* RFC 3030 2: "BDAT" SP chunk-size [SP "LAST"] CRLF, then exactly that many octets. */
static void bdat_send(struct smtp_client *c, size_t n, bool last)
{
	send_cmd(c, last ? CC_BDAT_LAST : CC_BDAT, 0, "BDAT %zu%s", n, last ? " LAST" : "");
	buf_xappend(&c->out, c->chunk.data, n);
	buf_consume(&c->chunk, n);
}

void smtp_client_content(struct smtp_client *c, const uint8_t *p, size_t n)
{
	ASSERT(c->state == CS_CONTENT);
	struct cmsg *m = c->msg;
	if (!m->bdat) {
		encode(c, &c->out, p, n, true);
		return;
	}
	if (m->bdat_failed)
		return;
	/* encode at most one chunk's worth at a time so memory stays bounded */
	while (n > 0) {
		size_t k = n < SMTP_CLIENT_BDAT_CHUNK ? n : SMTP_CLIENT_BDAT_CHUNK;
		encode(c, &c->chunk, p, k, false);
		p += k;
		n -= k;
		while (c->chunk.len >= SMTP_CLIENT_BDAT_CHUNK)
			bdat_send(c, SMTP_CLIENT_BDAT_CHUNK, false);
	}
}

void smtp_client_content_end(struct smtp_client *c)
{
	ASSERT(c->state == CS_CONTENT);
	struct cmsg *m = c->msg;
	c->state = CS_MSG;
	if (!m->bdat) {
		encode_end(c, &c->out);
		buf_xappend(&c->out, ".\r\n", 3);
		pq_push(c, CC_DOT, 0);
		return;
	}
	m->content_ended = true;
	if (!m->bdat_failed) {
		encode_end(c, &c->chunk);
		bdat_send(c, c->chunk.len, true);
	} else if (c->pq_n == 0) {
		msg_finish(c); /* every chunk's reply is in */
	}
}

/* ---- engine ---------------------------------------------------------------- */

struct smtp_client *smtp_client_new(const struct smtp_client_settings *set,
				    const struct smtp_client_ops *ops, void *ctx)
{
	ASSERT(set->helo_name != NULL);
	struct smtp_client *c = xcalloc(1, sizeof *c);
	c->set = *set;
	c->ops = ops;
	c->ctx = ctx;
	buf_init(&c->out, 0);
	buf_init(&c->chunk, 0);
	smtp_reply_reader_init(&c->rd, &set->limits);
	c->tls = set->tls_active;
	c->state = CS_SETUP;
	pq_push(c, CC_GREETING, 0);
	return c;
}

void smtp_client_free(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;
	if (!c)
		return;
	msg_free(&c->msg);
	free(c->refuse_text);
	buf_deinit(&c->out);
	buf_deinit(&c->chunk);
	smtp_reply_reader_deinit(&c->rd);
	free(c->pq);
	free(c);
	*cp = NULL;
}

size_t smtp_client_feed(struct smtp_client *c, const uint8_t *p, size_t n)
{
	size_t off = 0;
	while (off < n) {
		if (c->state == CS_CLOSED || c->state == CS_TLS_WAIT)
			return n; /* RFC 3207 5: nothing read before the handshake counts */
		size_t used;
		int r = smtp_reply_reader_feed(&c->rd, p + off, n - off, &used);
		off += used;
		if (r < 0) {
			protocol_error(c, c->rd.error);
			return n;
		}
		if (r == 0)
			break;
		if (c->ops->trace) {
			char *t = xasprintf("%03d %s", c->rd.reply.code, c->rd.reply.text);
			c->ops->trace(c->ctx, c, false, t);
			free(t);
		}
		handle_reply(c, &c->rd.reply);
	}
	return n;
}

enum proto_want smtp_client_want(const struct smtp_client *c)
{
	switch (c->state) {
	case CS_CLOSED:
		return PROTO_WANT_CLOSE;
	case CS_TLS_WAIT:
		return PROTO_WANT_STARTTLS;
	default:
		return PROTO_WANT_READ;
	}
}

struct buf *smtp_client_output(struct smtp_client *c)
{
	return &c->out;
}

bool smtp_client_is_ready(const struct smtp_client *c)
{
	return c->state == CS_READY;
}

void smtp_client_tls_started(struct smtp_client *c)
{
	ASSERT(c->state == CS_TLS_WAIT);
	/* RFC 3207 4.2: forget everything learned before TLS and EHLO again */
	c->tls = true;
	c->ehlo_after_tls = true;
	memset(&c->ehlo, 0, sizeof c->ehlo);
	smtp_reply_reader_deinit(&c->rd);
	smtp_reply_reader_init(&c->rd, &c->set.limits);
	c->state = CS_SETUP;
	send_ehlo(c);
}

static const char *waiting_for(const struct smtp_client *c)
{
	if (c->state == CS_CONTENT)
		return "message content";
	if (c->state == CS_TLS_WAIT)
		return "the TLS handshake";
	if (c->pq_n == 0)
		return "the next command (idle)";
	switch (c->pq[c->pq_head].cmd) {
	case CC_GREETING:
		return "the greeting";
	case CC_EHLO:
		return "EHLO";
	case CC_HELO:
		return "HELO";
	case CC_STARTTLS:
		return "STARTTLS";
	case CC_AUTH_PLAIN:
	case CC_AUTH_LOGIN:
	case CC_AUTH_USER:
	case CC_AUTH_PASS:
		return "AUTH";
	case CC_RSET:
		return "RSET";
	case CC_MAIL:
		return "MAIL";
	case CC_RCPT:
		return "RCPT";
	case CC_DATA:
		return "DATA";
	case CC_DOT:
	case CC_DOT_IGNORE:
		return "end of data";
	case CC_BDAT:
		return "BDAT";
	case CC_BDAT_LAST:
		return "BDAT LAST";
	case CC_QUIT:
		return "QUIT";
	}
	return "?";
}

void smtp_client_eof(struct smtp_client *c)
{
	if (c->state == CS_QUIT || c->state == CS_CLOSED) {
		c->state = CS_CLOSED;
		return;
	}
	char *t = xasprintf("Connection closed by the remote server while waiting for %s",
			    waiting_for(c));
	conn_fail(c, SMTP_CLIENT_TEMP, 0, "4.4.2", t, false);
	free(t);
}

void smtp_client_timeout(struct smtp_client *c)
{
	if (c->state == CS_QUIT || c->state == CS_CLOSED) {
		c->state = CS_CLOSED;
		return;
	}
	char *t = xasprintf("Timeout waiting for %s", waiting_for(c));
	conn_fail(c, SMTP_CLIENT_TEMP, 0, "4.4.2", t, false);
	free(t);
}

void smtp_client_abort(struct smtp_client *c, const char *reason)
{
	if (c->state == CS_QUIT) {
		c->state = CS_CLOSED;
		return;
	}
	conn_fail(c, SMTP_CLIENT_TEMP, 0, "4.3.0", reason, false);
}

unsigned smtp_client_timeout_secs(const struct smtp_client *c)
{
	/* RFC 5321 4.5.3.2 */
	if (c->state == CS_CONTENT)
		return 3 * 60; /* 4.5.3.2.5 data block */
	if (c->pq_n == 0)
		return 5 * 60;
	switch (c->pq[c->pq_head].cmd) {
	case CC_DATA:
		return 2 * 60; /* 4.5.3.2.4 */
	case CC_BDAT:
		return 3 * 60; /* like a data block */
	case CC_DOT:
	case CC_DOT_IGNORE:
	case CC_BDAT_LAST:
		return 10 * 60; /* 4.5.3.2.6 */
	default:
		return 5 * 60; /* 4.5.3.2.1-3: greeting, MAIL, RCPT */
	}
}

const struct smtp_ehlo *smtp_client_ehlo(const struct smtp_client *c)
{
	return &c->ehlo;
}

bool smtp_client_is_esmtp(const struct smtp_client *c)
{
	return c->esmtp;
}

bool smtp_client_is_tls(const struct smtp_client *c)
{
	return c->tls;
}

bool smtp_client_is_authenticated(const struct smtp_client *c)
{
	return c->authed;
}
