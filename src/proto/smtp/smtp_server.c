/* SPDX-License-Identifier: MIT */
/* The I/O-free SMTP server engine (RFC 5321): input framing, the DATA and
 * BDAT content decoders, verdict bookkeeping (APP_OK / APP_REJECTED /
 * APP_PENDING and resume) and the session-level events (STARTTLS, timeout,
 * shutdown). Command syntax and per-command rules live in smtp_cmds.c.
 *
 * Framing rules:
 *  - a command line is at most max_line octets including CRLF (RFC 5321
 *    4.5.3.1.4); a longer one is answered 500 5.5.2 once, and skipped up to
 *    its LF. A bare LF ends a command too (as Postfix accepts);
 *  - DATA content ends only at CRLF "." CRLF (4.1.1.4). A dot line ended by a
 *    bare LF or CR, or preceded by a bare LF or CR, is content: this is the
 *    defence against SMTP smuggling. Dot-unstuffing (4.5.2) applies only to
 *    lines that start after a CRLF, the same lines that can end the data;
 *  - content is handed over in storage form: CRLF and bare LF become LF, a
 *    CR not followed by LF stays. Nothing is line-buffered: a line of any
 *    length streams through a small staging buffer;
 *  - BDAT (RFC 3030) chunks are exactly the announced octets, consumed even
 *    when the chunk is refused, so the session stays in sync.
 *
 * Zero settings get defaults: max_line 1000 (RFC 5321 4.5.3.1.4),
 * max_rcpts 100 (4.5.3.1.8), max_errors 20 (Postfix smtpd_hard_error_limit).
 * max_message_size 0 means no fixed limit, as SIZE 0 does in RFC 1870. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/smtp/smtp_int.h"

#define SMTP_DEF_MAX_LINE 1000
#define SMTP_MIN_MAX_LINE 16
#define SMTP_DEF_MAX_RCPTS 100
#define SMTP_DEF_MAX_ERRORS 20

struct smtp_server *smtp_server_new(const struct smtp_server_settings *set,
				    const struct smtp_server_ops *ops, void *ctx)
{
	struct smtp_server *s = xcalloc(1, sizeof *s);
	s->set = *set;
	if (!s->set.hostname)
		s->set.hostname = "localhost";
	if (!s->set.banner)
		s->set.banner = "ESMTP";
	if (s->set.max_line == 0)
		s->set.max_line = SMTP_DEF_MAX_LINE;
	if (s->set.max_line < SMTP_MIN_MAX_LINE)
		s->set.max_line = SMTP_MIN_MAX_LINE;
	if (s->set.max_rcpts == 0)
		s->set.max_rcpts = SMTP_DEF_MAX_RCPTS;
	if (s->set.max_errors == 0)
		s->set.max_errors = SMTP_DEF_MAX_ERRORS;
	s->ops = ops;
	s->ctx = ctx;
	buf_init(&s->out, 0);
	buf_init(&s->line, s->set.max_line);
	buf_init(&s->reply, 0);
	buf_init(&s->bdat_reply, 0);
	s->tls = set->tls_active;
	if (s->tls)
		s->set.starttls_offered = false;
	s->state = SMTP_ST_CMD;
	return s;
}

void smtp_server_free(struct smtp_server **sp)
{
	struct smtp_server *s = *sp;
	if (!s)
		return;
	buf_deinit(&s->out);
	buf_deinit(&s->line);
	buf_deinit(&s->reply);
	buf_deinit(&s->bdat_reply);
	smtp_auth_end(s);
	free(s->auth_user);
	free(s->helo);
	free(s->from);
	free(s->to);
	free(s->envid);
	free(s->auth_param);
	free(s->orcpt);
	free(s->bdat_err_text);
	free(s);
	*sp = NULL;
}

void smtp_server_start(struct smtp_server *s)
{
	/* RFC 5321 4.2: no enhanced code on the greeting (RFC 2034 covers 2/4/5xx
	 * replies after EHLO; Postfix also leaves it off here). */
	smtp_emit(s, 220, NULL, "%s %s", s->set.hostname, s->set.banner);
}

struct buf *smtp_server_output(struct smtp_server *s)
{
	return &s->out;
}

enum proto_want smtp_server_want(const struct smtp_server *s)
{
	if (s->state == SMTP_ST_CLOSED)
		return PROTO_WANT_CLOSE;
	if (s->state == SMTP_ST_TLS_WAIT)
		return PROTO_WANT_STARTTLS;
	if (s->pend != SMTP_PEND_NONE)
		return PROTO_WANT_PENDING;
	return PROTO_WANT_READ;
}

void smtp_emit(struct smtp_server *s, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	smtp_reply_vformat(&s->out, code, esc, fmt, ap);
	va_end(ap);
}

void smtp_close(struct smtp_server *s)
{
	s->state = SMTP_ST_CLOSED;
}

static void too_many_errors(struct smtp_server *s)
{
	if (s->state == SMTP_ST_CLOSED || s->errors < s->set.max_errors)
		return;
	if (s->ops->log_refusal)
		s->ops->log_refusal(s->ctx, s, "-", 421, "4.7.0 Error: too many errors");
	smtp_emit(s, 421, "4.7.0", "%s Error: too many errors", s->set.hostname);
	smtp_close(s);
}

static void refuse_text(struct smtp_server *s, const char *cmd, bool count, int code,
			const char *esc, const char *text)
{
	if (s->ops->log_refusal) {
		char *t = xasprintf("%s%s%s", esc ? esc : "", esc ? " " : "", text);
		s->ops->log_refusal(s->ctx, s, cmd, code, t);
		free(t);
	}
	smtp_reply_format(&s->out, code, esc, "%s", text);
	if (count) {
		s->errors++;
		too_many_errors(s);
	}
}

void smtp_refuse(struct smtp_server *s, const char *cmd, bool count, int code, const char *esc,
		 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *text = NULL;
	if (vasprintf(&text, fmt, ap) < 0)
		panic("vasprintf failed");
	va_end(ap);
	refuse_text(s, cmd, count, code, esc, text);
	free(text);
}

/* Server shutdown waits for the transaction in flight (smtp_server_shutdown). */
static void maybe_shutdown(struct smtp_server *s)
{
	if (!s->shutdown_req || s->in_tx || s->pend != SMTP_PEND_NONE || s->state == SMTP_ST_CLOSED)
		return;
	smtp_emit(s, 421, "4.3.2", "%s Service shutting down, closing transmission channel",
		  s->set.hostname);
	smtp_close(s);
}

static void clear_content(struct smtp_server *s)
{
	s->content = SMTP_CONTENT_NONE;
	s->data_size = 0;
	s->too_big = s->nul = s->write_failed = false;
	s->dstate = SMTP_DS_BOL;
	s->bdat_cr = false;
}

void smtp_tx_reset(struct smtp_server *s, bool force)
{
	bool was = s->in_tx;
	s->in_tx = false;
	s->smtputf8 = false;
	s->nrcpts = 0;
	clear_content(s);
	if ((was || force) && s->ops->rset)
		s->ops->rset(s->ctx, s);
}

static void content_abort(struct smtp_server *s, int code, const char *esc, const char *text)
{
	if (s->ops->data_abort) {
		char *t = xasprintf("%s %s", esc, text);
		s->ops->data_abort(s->ctx, s, code, t);
		free(t);
	}
	refuse_text(s, s->content == SMTP_CONTENT_BDAT ? "BDAT" : "DATA", false, code, esc, text);
}

/* What a verdict means once its reply is known (sync or via resume).
 * The reply is in s->reply. */
static void default_reply(struct smtp_server *s, enum smtp_pend kind);

static void complete(struct smtp_server *s, enum smtp_pend kind, bool ok)
{
	s->pend = SMTP_PEND_NONE;
	switch (kind) {
	case SMTP_PEND_MAIL:
		if (ok) {
			s->in_tx = true;
			s->smtputf8 = s->mail.smtputf8;
			clear_content(s);
		}
		break;
	case SMTP_PEND_RCPT:
		if (ok)
			s->nrcpts++;
		break;
	case SMTP_PEND_DATA:
		if (ok && s->reply_code / 100 != 3)
			default_reply(s, SMTP_PEND_DATA); /* the client needs a 354 */
		if (ok) {
			s->content = SMTP_CONTENT_DATA;
			s->state = SMTP_ST_DATA;
			s->dstate = SMTP_DS_BOL;
		}
		break;
	case SMTP_PEND_BDAT:
		/* RFC 3030 2: the chunk follows the command unconditionally; a
		 * refusal is only sent once it has been read. */
		if (ok) {
			s->content = SMTP_CONTENT_BDAT;
		} else {
			buf_clear(&s->bdat_reply);
			buf_xappend(&s->bdat_reply, s->reply.data, s->reply.len);
			s->bdat_discard = true;
			s->bdat_reset = true;
		}
		buf_clear(&s->reply);
		return;
	case SMTP_PEND_END:
		break;
	case SMTP_PEND_AUTH:
		if (ok) {
			s->authed = true;
			free(s->auth_user);
			s->auth_user = s->sasl_user;
			s->sasl_user = NULL;
		}
		smtp_auth_end(s);
		break;
	case SMTP_PEND_NONE:
		UNREACHABLE();
	}
	buf_xappend(&s->out, s->reply.data, s->reply.len);
	buf_clear(&s->reply);
	free(s->from);
	free(s->to);
	free(s->envid);
	free(s->auth_param);
	free(s->orcpt);
	s->from = s->to = s->envid = s->auth_param = s->orcpt = NULL;
	s->mail.from = s->mail.envid = s->mail.auth = NULL;
	s->rcpt.to = s->rcpt.orcpt = NULL;
	if (kind == SMTP_PEND_END)
		smtp_tx_reset(s, true);
	/* A refused sender or recipient counts as an error, as Postfix's
	 * smtpd_hard_error_limit does: otherwise one connection could probe
	 * addresses (directory harvesting) or relays without end. */
	if (!ok && (kind == SMTP_PEND_MAIL || kind == SMTP_PEND_RCPT) && s->reply_code >= 500) {
		s->errors++;
		too_many_errors(s);
	}
}

static void default_reply(struct smtp_server *s, enum smtp_pend kind)
{
	buf_clear(&s->reply);
	switch (kind) {
	case SMTP_PEND_MAIL:
		s->reply_code = 250;
		smtp_reply_format(&s->reply, 250, "2.1.0", "Ok");
		break;
	case SMTP_PEND_RCPT:
		s->reply_code = 250;
		smtp_reply_format(&s->reply, 250, "2.1.5", "Ok");
		break;
	case SMTP_PEND_DATA:
		/* no enhanced code on 354 (RFC 2034 covers 2/4/5xx) */
		s->reply_code = 354;
		smtp_reply_format(&s->reply, 354, NULL, "End data with <CR><LF>.<CR><LF>");
		break;
	case SMTP_PEND_BDAT:
		s->reply_code = 250; /* never sent */
		break;
	case SMTP_PEND_END:
		s->reply_code = 250;
		smtp_reply_format(&s->reply, 250, "2.0.0", "Ok");
		break;
	case SMTP_PEND_AUTH:
		s->reply_code = 235;
		smtp_reply_format(&s->reply, 235, "2.7.0", "Authentication successful");
		break;
	case SMTP_PEND_NONE:
		UNREACHABLE();
	}
}

static bool code_ok(enum smtp_pend kind, int code)
{
	/* data_begin does not know whether DATA (354) or BDAT (no reply) asked */
	if (kind == SMTP_PEND_DATA || kind == SMTP_PEND_BDAT)
		return code < 400;
	return code / 100 == 2;
}

void smtp_verdict(struct smtp_server *s, enum smtp_pend kind, enum app_verdict v)
{
	switch (v) {
	case APP_OK:
		if (!s->reply_set)
			default_reply(s, kind);
		complete(s, kind, code_ok(kind, s->reply_code));
		break;
	case APP_REJECTED:
		if (!s->reply_set) {
			/* the app broke its contract; fail safe and temporary */
			buf_clear(&s->reply);
			s->reply_code = 451;
			smtp_reply_format(&s->reply, 451, "4.3.0", "Error: internal error");
		}
		complete(s, kind, false);
		break;
	case APP_PENDING:
		s->pend = kind;
		break;
	}
	s->reply_set = false;
	maybe_shutdown(s);
}

void smtp_server_reply(struct smtp_server *s, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;
	buf_clear(&s->reply);
	va_start(ap, fmt);
	smtp_reply_vformat(&s->reply, code, esc, fmt, ap);
	va_end(ap);
	s->reply_code = code;
	s->reply_set = true;
}

static void bdat_maybe_done(struct smtp_server *s);

void smtp_server_resume(struct smtp_server *s, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;
	if (s->state == SMTP_ST_CLOSED) {
		/* timed out or closed meanwhile: nobody is listening */
		s->pend = SMTP_PEND_NONE;
		return;
	}
	ASSERT(s->pend != SMTP_PEND_NONE);
	enum smtp_pend kind = s->pend;
	buf_clear(&s->reply);
	va_start(ap, fmt);
	smtp_reply_vformat(&s->reply, code, esc, fmt, ap);
	va_end(ap);
	s->reply_code = code;
	s->reply_set = false;
	complete(s, kind, code_ok(kind, code));
	bdat_maybe_done(s);
	maybe_shutdown(s);
}

/* ---- content ---------------------------------------------------------- */

/* Hand storage-form bytes to the app, enforcing the size limit and refusing
 * NUL. Only the bytes before the limit or the first NUL are written, so what
 * the app sees does not depend on how the input was split. */
static void content_write(struct smtp_server *s, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	uint64_t before = s->data_size;
	s->data_size += n;
	if (s->too_big || s->nul || s->write_failed)
		return;
	size_t w = n;
	uint64_t max = s->set.max_message_size;
	if (max && before + n > max) {
		w = (size_t)(max - before);
		s->too_big = true;
	}
	const uint8_t *z = memchr(p, 0, w);
	if (z) {
		w = (size_t)(z - p);
		s->nul = true;
	}
	if (w && s->ops->data_write(s->ctx, s, p, w) < 0)
		s->write_failed = true;
}

/* The content is complete: engine refusals first, then the app's data_end. */
static void content_end(struct smtp_server *s)
{
	if (s->too_big || s->nul || s->write_failed) {
		if (s->too_big)
			content_abort(s, 552, "5.3.4", "Error: message too big");
		else if (s->nul)
			content_abort(s, 554, "5.6.0", "Error: NUL character in message content");
		else
			content_abort(s, 451, "4.3.0", "Error: internal error, try again later");
		smtp_tx_reset(s, true);
		maybe_shutdown(s);
		return;
	}
	s->reply_set = false;
	smtp_verdict(s, SMTP_PEND_END, s->ops->data_end(s->ctx, s));
}

struct stage {
	uint8_t b[4096];
	size_t n;
};

static void stage_flush(struct smtp_server *s, struct stage *st)
{
	content_write(s, st->b, st->n);
	st->n = 0;
}

static void stage_put(struct smtp_server *s, struct stage *st, uint8_t c)
{
	st->b[st->n++] = c;
	if (st->n == sizeof st->b)
		stage_flush(s, st);
}

/* DATA content decoder. States: BOL = a line starts here (after CRLF or at
 * the start); DOT = BOL then "."; DOT_CR = BOL "." CR; TEXT = inside a line
 * (also after a bare LF, which is content, not a line end); CR = a CR whose
 * meaning depends on the next byte. Returns bytes consumed. */
static size_t feed_data(struct smtp_server *s, const uint8_t *p, size_t n)
{
	struct stage st;
	size_t i = 0;
	st.n = 0;
	while (i < n) {
		if (s->dstate == SMTP_DS_TEXT) {
			/* fast path: stream the run up to the next CR untouched */
			const uint8_t *cr = memchr(p + i, '\r', n - i);
			size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
			if (run) {
				stage_flush(s, &st);
				content_write(s, p + i, run);
				i += run;
				continue;
			}
		}
		uint8_t c = p[i++];
		switch (s->dstate) {
		case SMTP_DS_BOL:
			if (c == '.') {
				s->dstate = SMTP_DS_DOT;
				break;
			}
			if (c == '\r') {
				s->dstate = SMTP_DS_CR;
				break;
			}
			stage_put(s, &st, c);
			s->dstate = SMTP_DS_TEXT;
			break;
		case SMTP_DS_TEXT:
			s->dstate = SMTP_DS_CR; /* c is CR: the fast path took the rest */
			break;
		case SMTP_DS_CR:
			if (c == '\n') {
				stage_put(s, &st, '\n');
				s->dstate = SMTP_DS_BOL;
			} else if (c == '\r') {
				stage_put(s, &st, '\r');
			} else {
				stage_put(s, &st, '\r');
				stage_put(s, &st, c);
				s->dstate = SMTP_DS_TEXT;
			}
			break;
		case SMTP_DS_DOT:
			/* RFC 5321 4.5.2: a leading dot with more on the line is removed */
			if (c == '\r') {
				s->dstate = SMTP_DS_DOT_CR;
			} else {
				stage_put(s, &st, c);
				s->dstate = SMTP_DS_TEXT;
			}
			break;
		case SMTP_DS_DOT_CR:
			if (c == '\n') {
				/* CRLF "." CRLF: end of mail data (4.1.1.4) */
				stage_flush(s, &st);
				s->state = SMTP_ST_CMD;
				content_end(s);
				return i;
			}
			/* ".<CR>x": the dot was stuffing, the CR a lone CR */
			stage_put(s, &st, '\r');
			if (c == '\r') {
				s->dstate = SMTP_DS_CR;
			} else {
				stage_put(s, &st, c);
				s->dstate = SMTP_DS_TEXT;
			}
			break;
		}
	}
	stage_flush(s, &st);
	return n;
}

/* RFC 3030: raw octets; CRLF and bare LF become LF, a CR at the end of a
 * chunk waits for the next one. */
static void bdat_convert(struct smtp_server *s, const uint8_t *p, size_t n)
{
	struct stage st;
	st.n = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (s->bdat_cr) {
			s->bdat_cr = false;
			if (c == '\n') {
				stage_put(s, &st, '\n');
				continue;
			}
			stage_put(s, &st, '\r');
		}
		if (c == '\r') {
			s->bdat_cr = true;
		} else {
			/* stream the run up to the next CR without copying */
			const uint8_t *cr = memchr(p + i, '\r', n - i);
			size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
			stage_flush(s, &st);
			content_write(s, p + i, run);
			i += run - 1;
		}
	}
	stage_flush(s, &st);
}

/* The announced octets of a chunk have all been read. */
static void bdat_chunk_done(struct smtp_server *s)
{
	s->state = SMTP_ST_CMD;
	if (s->bdat_discard) {
		s->bdat_discard = false;
		if (s->bdat_err_code) {
			refuse_text(s, "BDAT", true, s->bdat_err_code, s->bdat_err_esc,
				    s->bdat_err_text);
			free(s->bdat_err_text);
			s->bdat_err_text = NULL;
			s->bdat_err_code = 0;
		} else {
			buf_xappend(&s->out, s->bdat_reply.data, s->bdat_reply.len);
			buf_clear(&s->bdat_reply);
		}
		if (s->bdat_reset) {
			s->bdat_reset = false;
			smtp_tx_reset(s, true);
		}
		maybe_shutdown(s);
		return;
	}
	if (s->bdat_last && s->bdat_cr) {
		s->bdat_cr = false;
		content_write(s, (const uint8_t *)"\r", 1);
	}
	if (s->bdat_last) {
		content_end(s);
		return;
	}
	if (s->too_big || s->nul || s->write_failed) {
		/* refuse now rather than after more chunks: the client is told at
		 * once, and further BDATs get 503 until a new MAIL */
		content_end(s);
		return;
	}
	smtp_emit(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->bdat_len);
}

static void bdat_maybe_done(struct smtp_server *s)
{
	if (s->state == SMTP_ST_BDAT && s->pend == SMTP_PEND_NONE && s->bdat_left == 0)
		bdat_chunk_done(s);
}

static size_t feed_bdat(struct smtp_server *s, const uint8_t *p, size_t n)
{
	size_t take = n;
	if (take > s->bdat_left)
		take = (size_t)s->bdat_left;
	if (!s->bdat_discard)
		bdat_convert(s, p, take);
	s->bdat_left -= take;
	bdat_maybe_done(s);
	return take;
}

void smtp_bdat_begin(struct smtp_server *s, uint64_t len, bool last)
{
	s->state = SMTP_ST_BDAT;
	s->bdat_len = s->bdat_left = len;
	s->bdat_last = last;
	s->bdat_discard = false;
	s->bdat_reset = false;
}

void smtp_bdat_refuse(struct smtp_server *s, uint64_t len, int code, const char *esc,
		      const char *text)
{
	smtp_bdat_begin(s, len, false);
	s->bdat_discard = true;
	s->bdat_err_code = code;
	s->bdat_err_esc = esc;
	free(s->bdat_err_text);
	s->bdat_err_text = xstrdup(text);
	bdat_maybe_done(s);
}

/* ---- command lines ---------------------------------------------------- */

static void line_too_long(struct smtp_server *s)
{
	buf_clear(&s->line);
	if (s->in_sasl) {
		smtp_auth_too_long(s);
		return;
	}
	smtp_refuse(s, "-", true, 500, "5.5.2", "Line too long");
}

static void run_line(struct smtp_server *s)
{
	size_t len = s->line.len;
	const char *l = (const char *)s->line.data;
	/* strip the CR of CRLF and any trailing white space */
	while (len > 0 && (l[len - 1] == '\r' || l[len - 1] == ' ' || l[len - 1] == '\t'))
		len--;
	if (s->in_sasl)
		smtp_auth_line(s, l, len); /* base64 has no NUL: refused there */
	else if (len && memchr(l, '\0', len))
		smtp_refuse(s, "-", true, 500, "5.5.2", "Error: NUL character in command");
	else
		smtp_cmd_dispatch(s, l, len);
	buf_clear(&s->line);
	bdat_maybe_done(s); /* BDAT 0 has nothing to wait for */
	maybe_shutdown(s);
}

/* Returns bytes consumed; runs at most one command. */
static size_t feed_cmd(struct smtp_server *s, const uint8_t *p, size_t n)
{
	const uint8_t *lf = memchr(p, '\n', n);
	size_t take = lf ? (size_t)(lf - p) + 1 : n;
	if (s->line_skip) {
		if (lf)
			s->line_skip = false;
		return take;
	}
	size_t max = s->set.max_line;
	if (lf) {
		if (s->line.len + take > max) {
			line_too_long(s);
			return take;
		}
		if (buf_append(&s->line, p, take - 1) < 0)
			panic("line buffer over its cap");
		run_line(s);
		return take;
	}
	/* No LF yet: max octets without one cannot become a valid line. */
	if (s->line.len + n >= max) {
		line_too_long(s);
		s->line_skip = true;
		return n;
	}
	if (buf_append(&s->line, p, n) < 0)
		panic("line buffer over its cap");
	return n;
}

#define SMTP_OUT_HIWAT (64 * 1024)

size_t smtp_server_feed(struct smtp_server *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	for (;;) {
		if (s->state == SMTP_ST_CLOSED || s->state == SMTP_ST_TLS_WAIT) {
			/* RFC 3207 5: plaintext after STARTTLS must not be acted on
			 * (no command injection); after close nothing is. */
			return n;
		}
		if (s->pend != SMTP_PEND_NONE || used == n)
			return used;
		/* A client that pipelines without reading must not make us buffer
		 * unbounded replies: stop until the connection has written some. */
		if (s->out.len > SMTP_OUT_HIWAT)
			return used;
		switch (s->state) {
		case SMTP_ST_CMD:
			used += feed_cmd(s, p + used, n - used);
			break;
		case SMTP_ST_DATA:
			used += feed_data(s, p + used, n - used);
			break;
		case SMTP_ST_BDAT:
			used += feed_bdat(s, p + used, n - used);
			break;
		case SMTP_ST_TLS_WAIT:
		case SMTP_ST_CLOSED:
			UNREACHABLE();
		}
	}
}

/* ---- session events --------------------------------------------------- */

void smtp_starttls_begin(struct smtp_server *s)
{
	smtp_emit(s, 220, "2.0.0", "Ready to start TLS");
	s->state = SMTP_ST_TLS_WAIT;
}

void smtp_server_tls_started(struct smtp_server *s)
{
	/* RFC 3207 4.2: discard all knowledge from the client; it must EHLO again */
	if (s->state == SMTP_ST_CLOSED)
		return;
	s->tls = true;
	s->set.starttls_offered = false;
	smtp_tx_reset(s, false);
	/* an AUTH before STARTTLS is knowledge from the client too */
	smtp_auth_end(s);
	s->authed = false;
	free(s->auth_user);
	s->auth_user = NULL;
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	s->state = SMTP_ST_CMD;
	s->line_skip = false;
	buf_clear(&s->line);
	maybe_shutdown(s);
}

void smtp_server_timeout(struct smtp_server *s)
{
	if (s->state == SMTP_ST_CLOSED)
		return;
	/* Once data_end was called the message belongs to the app (it may be
	 * committing it): only content still arriving is aborted. */
	if (s->content != SMTP_CONTENT_NONE && s->pend != SMTP_PEND_END && s->ops->data_abort)
		s->ops->data_abort(s->ctx, s, 421, "4.4.2 Error: timeout exceeded");
	smtp_emit(s, 421, "4.4.2", "%s Error: timeout exceeded", s->set.hostname);
	smtp_close(s);
}

void smtp_server_shutdown(struct smtp_server *s)
{
	s->shutdown_req = true;
	maybe_shutdown(s);
}

const char *smtp_server_helo_name(const struct smtp_server *s)
{
	return s->helo;
}

bool smtp_server_is_esmtp(const struct smtp_server *s)
{
	return s->esmtp;
}

bool smtp_server_is_tls(const struct smtp_server *s)
{
	return s->tls;
}

bool smtp_server_in_transaction(const struct smtp_server *s)
{
	return s->in_tx;
}

const char *smtp_server_auth_user(const struct smtp_server *s)
{
	return s->authed ? s->auth_user : NULL;
}

uint64_t smtp_server_data_size(const struct smtp_server *s)
{
	return s->data_size;
}
