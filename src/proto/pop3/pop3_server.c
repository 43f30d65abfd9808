/* SPDX-License-Identifier: MIT */
/* The I/O-free POP3 server engine: line framing, verdict bookkeeping
 * (POP3_OK / POP3_REJECTED / POP3_PENDING and resume), multi-line responses
 * produced on demand (LIST, UIDL, RETR, TOP), the storage-to-wire conversion
 * of message content, and the session events (STLS, timeout, shutdown).
 * Command syntax and the per-command rules live in pop3_cmds.c.
 *
 * Framing: a line ends at LF (a preceding CR is dropped; a bare LF is
 * accepted as most servers do). A command line may have max_line octets
 * including CRLF (RFC 2449 4: 255); a longer one is answered -ERR once and
 * skipped up to its LF, and the session goes on. SASL response lines may be
 * up to P3_SASL_MAX_LINE (RFC 5034 4 lifts the limit for them).
 *
 * Wire conversion (RFC 1939 3): every LF of the stored content becomes CRLF
 * (a CR already there is kept, matching the W= wire size that store/maildir.c
 * computes as size + number of LFs) and a line starting with "." gets one
 * more "."; the response ends with CRLF "." CRLF. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/sasl.h"
#include "base/util.h"
#include "proto/pop3/pop3_int.h"

#define P3_DEF_MAX_LINE 255
#define P3_MIN_MAX_LINE 64
#define P3_DEF_MAX_ERRORS 10
#define P3_DEF_MAX_AUTH_FAILURES 3
#define P3_DEF_HIWAT (64 * 1024)

static void make_timestamp(struct pop3_server *s)
{
	/* RFC 1939 7: unique per greeting; the pid.clock@hostname form with a
	 * process-wide counter so two sessions in one microsecond differ. */
	static uint64_t last;
	uint64_t now = (uint64_t)time_unix() * 1000000u + time_mono_ms() % 1000u * 1000u;
	uint64_t prev = __atomic_load_n(&last, __ATOMIC_RELAXED);
	for (;;) {
		uint64_t v = now > prev ? now : prev + 1;
		if (__atomic_compare_exchange_n(&last, &prev, v, false, __ATOMIC_RELAXED,
						__ATOMIC_RELAXED)) {
			now = v;
			break;
		}
	}
	snprintf(s->timestamp, sizeof s->timestamp, "<%ld.%llu@%.100s>", (long)getpid(),
		 (unsigned long long)now, s->set.hostname);
}

struct pop3_server *pop3_server_new(const struct pop3_server_settings *set,
				    const struct pop3_server_ops *ops, void *ctx)
{
	struct pop3_server *s = xcalloc(1, sizeof *s);
	s->set = *set;
	if (!s->set.hostname)
		s->set.hostname = "localhost";
	if (!s->set.greeting)
		s->set.greeting = "Tern POP3 server ready";
	if (!s->set.implementation)
		s->set.implementation = "Tern";
	if (s->set.max_line == 0)
		s->set.max_line = P3_DEF_MAX_LINE;
	if (s->set.max_line < P3_MIN_MAX_LINE)
		s->set.max_line = P3_MIN_MAX_LINE;
	if (s->set.max_errors == 0)
		s->set.max_errors = P3_DEF_MAX_ERRORS;
	if (s->set.max_auth_failures == 0)
		s->set.max_auth_failures = P3_DEF_MAX_AUTH_FAILURES;
	if (s->set.out_hiwat == 0)
		s->set.out_hiwat = P3_DEF_HIWAT;
	if (!ops->apop)
		s->set.apop = false;
	s->ops = ops;
	s->ctx = ctx;
	buf_init(&s->out, 0);
	buf_init(&s->line, P3_SASL_MAX_LINE);
	buf_init(&s->reply, 0);
	s->tls = set->tls_active;
	if (s->tls)
		s->set.stls_offered = false;
	s->state = P3_ST_AUTH;
	if (s->set.apop) {
		if (s->set.apop_timestamp)
			snprintf(s->timestamp, sizeof s->timestamp, "%s", s->set.apop_timestamp);
		else
			make_timestamp(s);
	}
	return s;
}

static void release(struct pop3_server *s)
{
	if (s->msg_is_open) {
		s->msg_is_open = false;
		s->ops->msg_close(s->ctx, s);
	}
	s->stream = P3_STREAM_NONE;
	if (s->md_open) {
		s->md_open = false;
		s->ops->maildrop_close(s->ctx, s);
	}
}

void pop3_server_free(struct pop3_server **sp)
{
	struct pop3_server *s = *sp;
	if (!s)
		return;
	release(s);
	pop3_sasl_end(s);
	buf_deinit(&s->out);
	if (s->line.data)
		memset(s->line.data, 0, s->line.len); /* may hold a PASS line */
	buf_deinit(&s->line);
	buf_deinit(&s->reply);
	free(s->user);
	free(s->login_user);
	free(s->sizes);
	free(s->deleted);
	free(s);
	*sp = NULL;
}

void pop3_server_start(struct pop3_server *s)
{
	if (s->timestamp[0])
		pop3_ok(s, "%s %s", s->set.greeting, s->timestamp);
	else
		pop3_ok(s, "%s", s->set.greeting);
}

enum proto_want pop3_server_want(const struct pop3_server *s)
{
	if (s->state == P3_ST_CLOSED)
		return PROTO_WANT_CLOSE;
	if (s->state == P3_ST_TLS_WAIT)
		return PROTO_WANT_STARTTLS;
	/* Above the high-water mark (a flood of pipelined commands), take no
	 * more input until the connection has written some: it flushes before
	 * it feeds again, so this never stalls. */
	if (s->pend != P3_PEND_NONE || s->stream != P3_STREAM_NONE ||
	    s->out.len >= s->set.out_hiwat)
		return PROTO_WANT_PENDING;
	return PROTO_WANT_READ;
}

struct buf *pop3_server_output(struct pop3_server *s)
{
	pop3_fill(s);
	return &s->out;
}

/* ---- responses ---------------------------------------------------------- */

/* Response text comes from us or the app; keep it one line (RFC 2449 4:
 * responses up to 512 octets). */
static void append_text(struct buf *b, const char *text)
{
	size_t n = strlen(text);
	if (n > 480)
		n = 480;
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = ' ';
		buf_xappend(b, &c, 1);
	}
}

static void vformat(struct buf *b, const char *status, const char *code, const char *fmt,
		    va_list ap)
{
	char *text = NULL;
	if (vasprintf(&text, fmt, ap) < 0)
		panic("vasprintf failed");
	buf_xprintf(b, "%s ", status);
	if (code && *code)
		buf_xprintf(b, "[%s] ", code);
	append_text(b, text);
	buf_xappend(b, "\r\n", 2);
	free(text);
}

void pop3_ok(struct pop3_server *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vformat(&s->out, "+OK", NULL, fmt, ap);
	va_end(ap);
}

static void check_limits(struct pop3_server *s)
{
	if (s->state == P3_ST_CLOSED)
		return;
	if (s->errors >= s->set.max_errors || s->auth_failures >= s->set.max_auth_failures) {
		if (s->ops->log_refusal)
			s->ops->log_refusal(s->ctx, s, "-", s->errors >= s->set.max_errors
								  ? "too many errors"
								  : "too many authentication failures");
		pop3_close(s);
	}
}

void pop3_refuse(struct pop3_server *s, const char *cmd, bool count, const char *code,
		 const char *fmt, ...)
{
	va_list ap;
	size_t start = s->out.len;
	va_start(ap, fmt);
	vformat(&s->out, "-ERR", code, fmt, ap);
	va_end(ap);
	if (s->ops->log_refusal) {
		char *t = xstrndup((const char *)s->out.data + start, s->out.len - start - 2);
		s->ops->log_refusal(s->ctx, s, cmd, t);
		free(t);
	}
	if (count) {
		s->errors++;
		check_limits(s);
	}
}

void pop3_server_reply(struct pop3_server *s, const char *code, const char *fmt, ...)
{
	va_list ap;
	buf_clear(&s->reply);
	va_start(ap, fmt);
	vformat(&s->reply, "-ERR", code, fmt, ap);
	va_end(ap);
	s->reply_set = true;
}

/* The app's -ERR, or the default. */
static void emit_reject(struct pop3_server *s, const char *code, const char *dflt)
{
	if (s->reply_set)
		buf_xappend(&s->out, s->reply.data, s->reply.len);
	else
		pop3_refuse(s, "-", false, code, "%s", dflt);
	buf_clear(&s->reply);
	s->reply_set = false;
}

void pop3_close(struct pop3_server *s)
{
	release(s);
	pop3_sasl_end(s);
	s->state = P3_ST_CLOSED;
}

/* Shutdown waits for the response in flight (pop3_server_shutdown). */
static void maybe_shutdown(struct pop3_server *s)
{
	if (!s->shutdown_req || s->pend != P3_PEND_NONE || s->stream != P3_STREAM_NONE ||
	    s->state == P3_ST_CLOSED || s->state == P3_ST_TLS_WAIT)
		return;
	pop3_refuse(s, "-", false, "SYS/TEMP", "Server shutting down");
	pop3_close(s);
}

/* ---- maildrop and verdicts ---------------------------------------------- */

bool pop3_plaintext_ok(const struct pop3_server *s)
{
	return s->tls || s->set.plaintext_auth;
}

void pop3_maildrop_stat(const struct pop3_server *s, unsigned *n_r, uint64_t *octets_r)
{
	unsigned n = 0;
	uint64_t o = 0;
	for (unsigned i = 0; i < s->nmsgs; i++) {
		if (!s->deleted[i]) {
			n++;
			o += s->sizes[i];
		}
	}
	*n_r = n;
	*octets_r = o;
}

void pop3_auth_failed(struct pop3_server *s)
{
	free(s->user);
	s->user = NULL;
	s->user_given = false;
	s->auth_failures++;
	check_limits(s);
}

void pop3_auth_ok(struct pop3_server *s, const char *user)
{
	free(s->login_user);
	s->login_user = xstrdup(user);
	pop3_verdict(s, P3_PEND_OPEN, s->ops->maildrop_open(s->ctx, s, user));
}

static void open_done(struct pop3_server *s)
{
	s->md_open = true;
	free(s->sizes);
	free(s->deleted);
	s->nmsgs = s->ops->msg_count(s->ctx, s);
	s->sizes = xcalloc(s->nmsgs ? s->nmsgs : 1, sizeof *s->sizes);
	s->deleted = xcalloc(s->nmsgs ? s->nmsgs : 1, 1);
	for (unsigned i = 0; i < s->nmsgs; i++) {
		struct pop3_msg_info mi = { 0, NULL };
		s->ops->msg_info(s->ctx, s, i, &mi);
		s->sizes[i] = mi.size;
	}
	free(s->user);
	s->user = s->login_user;
	s->login_user = NULL;
	s->user_given = false;
	s->state = P3_ST_TRANS;
	unsigned n;
	uint64_t o;
	pop3_maildrop_stat(s, &n, &o);
	pop3_ok(s, "Logged in: maildrop has %u message%s (%llu octets)", n, n == 1 ? "" : "s",
		(unsigned long long)o);
}

static void quit_reply(struct pop3_server *s)
{
	unsigned n;
	uint64_t o;
	pop3_maildrop_stat(s, &n, &o);
	if (n == 0)
		pop3_ok(s, "%s POP3 server signing off (maildrop empty)", s->set.hostname);
	else
		pop3_ok(s, "%s POP3 server signing off (%u message%s left)", s->set.hostname, n,
			n == 1 ? "" : "s");
}

static void complete(struct pop3_server *s, enum pop3_pend kind, bool ok)
{
	switch (kind) {
	case P3_PEND_LOGIN:
		if (ok && !s->login_denied) {
			char *u = s->login_user;
			s->login_user = NULL;
			pop3_auth_ok(s, u);
			free(u);
			return; /* the reply comes with the maildrop */
		}
		s->login_denied = false;
		emit_reject(s, "AUTH", "Authentication failed");
		free(s->login_user);
		s->login_user = NULL;
		pop3_auth_failed(s);
		break;
	case P3_PEND_OPEN:
		if (ok) {
			open_done(s);
		} else {
			emit_reject(s, "SYS/TEMP", "Unable to open the maildrop");
			free(s->login_user);
			s->login_user = NULL;
			free(s->user);
			s->user = NULL;
		}
		break;
	case P3_PEND_MSG:
		if (ok) {
			s->msg_is_open = true;
			if (s->body_top)
				pop3_ok(s, "Top of message follows");
			else
				pop3_ok(s, "%llu octets", (unsigned long long)s->sizes[s->msg_idx]);
			pop3_stream_begin(s, P3_STREAM_BODY);
		} else {
			emit_reject(s, "SYS/TEMP", "Unable to read the message");
		}
		break;
	case P3_PEND_COMMIT:
		if (ok) {
			quit_reply(s);
		} else {
			emit_reject(s, "SYS/TEMP", "Some deleted messages not removed");
		}
		pop3_close(s);
		break;
	case P3_PEND_SCRAM:
		if (!ok && s->reply_set) {
			emit_reject(s, "SYS/TEMP", "Authentication failed");
			pop3_sasl_end(s);
		} else {
			s->reply_set = false;
			buf_clear(&s->reply);
			pop3_sasl_continue(s);
		}
		break;
	case P3_PEND_NONE:
		UNREACHABLE();
	}
}

void pop3_verdict(struct pop3_server *s, enum pop3_pend kind, enum pop3_verdict v)
{
	switch (v) {
	case POP3_OK:
		s->reply_set = false;
		buf_clear(&s->reply);
		complete(s, kind, true);
		break;
	case POP3_REJECTED:
		complete(s, kind, false);
		break;
	case POP3_PENDING:
		s->pend = kind;
		return;
	}
	maybe_shutdown(s);
}

void pop3_server_resume(struct pop3_server *s, enum pop3_verdict v)
{
	ASSERT(v != POP3_PENDING);
	enum pop3_pend kind = s->pend;
	ASSERT(kind != P3_PEND_NONE);
	s->pend = P3_PEND_NONE;
	if (s->state == P3_ST_CLOSED) {
		/* timed out meanwhile: give back what the app just opened */
		if (v == POP3_OK && kind == P3_PEND_OPEN)
			s->ops->maildrop_close(s->ctx, s);
		else if (v == POP3_OK && kind == P3_PEND_MSG)
			s->ops->msg_close(s->ctx, s);
		free(s->login_user);
		s->login_user = NULL;
		s->reply_set = false;
		return;
	}
	pop3_verdict(s, kind, v);
}

/* ---- multi-line responses ------------------------------------------------ */

void pop3_stream_begin(struct pop3_server *s, enum pop3_stream kind)
{
	s->stream = kind;
	s->cursor = 0;
	if (kind == P3_STREAM_BODY) {
		s->body_wait = s->body_done = s->body_failed = false;
		s->body_bol = true;
		s->body_line_cr = false;
		s->body_in_header = true;
		s->produced = 0;
		s->timeout_mark = 0;
	}
	pop3_fill(s);
}

static void stream_end(struct pop3_server *s)
{
	buf_xappend(&s->out, ".\r\n", 3);
	s->stream = P3_STREAM_NONE;
}

static void fill_list(struct pop3_server *s)
{
	while (s->out.len < s->set.out_hiwat && s->cursor < s->nmsgs) {
		unsigned i = s->cursor++;
		if (s->deleted[i])
			continue;
		if (s->stream == P3_STREAM_LIST) {
			buf_xprintf(&s->out, "%u %llu\r\n", i + 1, (unsigned long long)s->sizes[i]);
		} else {
			struct pop3_msg_info mi = { 0, NULL };
			s->ops->msg_info(s->ctx, s, i, &mi);
			buf_xprintf(&s->out, "%u %s\r\n", i + 1, mi.uidl ? mi.uidl : "");
		}
	}
	if (s->cursor >= s->nmsgs)
		stream_end(s);
}

static void body_finish(struct pop3_server *s)
{
	if (!s->body_bol)
		buf_xappend(&s->out, "\r\n", 2);
	stream_end(s);
	if (s->msg_is_open) {
		s->msg_is_open = false;
		s->ops->msg_close(s->ctx, s);
	}
}

void pop3_fill(struct pop3_server *s)
{
	if (s->filling || s->stream == P3_STREAM_NONE || s->state == P3_ST_CLOSED)
		return;
	s->filling = true;
	while (s->stream != P3_STREAM_NONE && s->state != P3_ST_CLOSED) {
		if (s->stream != P3_STREAM_BODY) {
			fill_list(s);
			break;
		}
		if (s->body_failed) {
			if (s->ops->log_refusal)
				s->ops->log_refusal(s->ctx, s, s->body_top ? "TOP" : "RETR",
						    "message read failed mid-response");
			pop3_close(s);
			break;
		}
		if (s->body_done) {
			body_finish(s);
			break;
		}
		if (s->body_wait || s->out.len >= s->set.out_hiwat)
			break;
		s->body_wait = true;
		s->ops->msg_read(s->ctx, s);
	}
	s->filling = false;
	if (s->stream == P3_STREAM_NONE)
		maybe_shutdown(s);
}

static void out_dot_line_piece(struct pop3_server *s, const uint8_t *p, size_t n)
{
	buf_xappend(&s->out, p, n);
	s->produced += n;
}

/* Storage form to wire form; stops at TOP's last line. */
static void body_convert(struct pop3_server *s, const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n && !s->body_done) {
		if (s->body_bol && p[i] == '.')
			buf_xappend(&s->out, ".", 1); /* RFC 1939 3: byte-stuff */
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		size_t end = lf ? (size_t)(lf - p) : n;
		/* A file stored with CRLF (another Maildir tool) ends its header
		 * with a line holding just a CR; that CR may come in a chunk of
		 * its own, so remember it across chunks. */
		if (end > i)
			s->body_line_cr = s->body_bol && end - i == 1 && p[i] == '\r';
		bool empty_line = (s->body_bol && end == i) || s->body_line_cr;
		out_dot_line_piece(s, p + i, end - i);
		if (!lf) {
			if (end > i)
				s->body_bol = false;
			break;
		}
		out_dot_line_piece(s, (const uint8_t *)"\r\n", 2);
		s->body_bol = true;
		s->body_line_cr = false;
		i = end + 1;
		if (!s->body_top)
			continue;
		/* TOP (RFC 1939 7): the header, the blank line, then top_left lines */
		if (s->body_in_header) {
			if (empty_line) {
				s->body_in_header = false;
				if (s->top_left == 0)
					s->body_done = true;
			}
		} else if (--s->top_left == 0) {
			s->body_done = true;
		}
	}
}

void pop3_server_body_data(struct pop3_server *s, const void *p, size_t n, bool eof)
{
	if (s->stream != P3_STREAM_BODY || s->state == P3_ST_CLOSED)
		return; /* TOP had enough, or the session ended: ignore */
	s->body_wait = false;
	if (!s->body_done)
		body_convert(s, p, n);
	if (eof)
		s->body_done = true;
	/* The response is completed in pop3_fill() (never re-entering the app
	 * from inside its own call). */
}

void pop3_server_body_fail(struct pop3_server *s)
{
	if (s->stream != P3_STREAM_BODY || s->state == P3_ST_CLOSED)
		return;
	/* closed in pop3_fill(), so msg_close never runs inside the app's call */
	s->body_failed = true;
	s->body_wait = false;
}

/* ---- input ---------------------------------------------------------------- */

static void run_line(struct pop3_server *s)
{
	size_t len = s->line.len;
	const char *l = (const char *)s->line.data;
	if (len > 0 && l[len - 1] == '\r')
		len--;
	if (s->in_sasl) {
		pop3_sasl_line(s, l ? l : "", len);
	} else if (len && memchr(l, '\0', len)) {
		pop3_refuse(s, "-", true, NULL, "NUL character in command");
	} else {
		pop3_cmd_dispatch(s, l ? l : "", len);
	}
	if (s->line.data)
		memset(s->line.data, 0, s->line.len);
	buf_clear(&s->line);
	maybe_shutdown(s);
}

static void line_too_long(struct pop3_server *s)
{
	buf_clear(&s->line);
	if (s->in_sasl) {
		pop3_sasl_end(s);
		pop3_refuse(s, "AUTH", true, NULL, "Authentication line too long");
		return;
	}
	s->user_given = false;
	pop3_refuse(s, "-", true, NULL, "Line too long");
}

/* Returns bytes consumed; runs at most one line. */
static size_t feed_line(struct pop3_server *s, const uint8_t *p, size_t n)
{
	const uint8_t *lf = memchr(p, '\n', n);
	size_t take = lf ? (size_t)(lf - p) + 1 : n;
	if (s->line_skip) {
		if (lf)
			s->line_skip = false;
		return take;
	}
	size_t max = s->in_sasl ? P3_SASL_MAX_LINE : s->set.max_line;
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

size_t pop3_server_feed(struct pop3_server *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	pop3_fill(s);
	for (;;) {
		if (s->state == P3_ST_CLOSED || s->state == P3_ST_TLS_WAIT) {
			/* RFC 2595 4 / RFC 3207 5: nothing sent in plaintext after
			 * STLS is acted on; after the end nothing is. */
			return n;
		}
		if (s->pend != P3_PEND_NONE || s->stream != P3_STREAM_NONE || used == n ||
		    s->out.len >= s->set.out_hiwat)
			return used;
		used += feed_line(s, p + used, n - used);
	}
}

/* ---- session events --------------------------------------------------------- */

void pop3_server_tls_started(struct pop3_server *s)
{
	if (s->state == P3_ST_CLOSED)
		return;
	/* RFC 2595 4: discard knowledge obtained from the client */
	s->tls = true;
	s->set.stls_offered = false;
	free(s->user);
	s->user = NULL;
	s->user_given = false;
	if (s->state == P3_ST_TLS_WAIT)
		s->state = P3_ST_AUTH;
	s->line_skip = false;
	buf_clear(&s->line);
	maybe_shutdown(s);
}

void pop3_server_timeout(struct pop3_server *s)
{
	if (s->state == P3_ST_CLOSED || s->pend == P3_PEND_COMMIT)
		return; /* a commit in flight finishes and closes by itself */
	if (s->stream != P3_STREAM_NONE) {
		/* A long download is not idleness; a stalled one is. A
		 * multi-line response cannot carry an -ERR: just close. */
		if (s->stream == P3_STREAM_BODY && s->produced != s->timeout_mark) {
			s->timeout_mark = s->produced;
			return;
		}
		pop3_close(s);
		return;
	}
	/* RFC 1939 3: an autologout timer closes without entering UPDATE */
	pop3_refuse(s, "-", false, NULL, "Disconnected for inactivity");
	pop3_close(s);
}

void pop3_server_shutdown(struct pop3_server *s)
{
	s->shutdown_req = true;
	maybe_shutdown(s);
}

bool pop3_server_is_tls(const struct pop3_server *s)
{
	return s->tls;
}

const char *pop3_server_user(const struct pop3_server *s)
{
	return s->state == P3_ST_TRANS || s->state == P3_ST_UPDATE ? s->user : NULL;
}

const char *pop3_server_timestamp(const struct pop3_server *s)
{
	return s->timestamp;
}
