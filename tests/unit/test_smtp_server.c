/* SPDX-License-Identifier: MIT */
/* The SMTP server engine driven by a stub application: every scenario is a
 * list of client writes (with session events between them), replayed whole,
 * byte by byte, at seeded random split points and at every two-chunk split
 * point; the replies and the callback log must be identical every time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/smtp/smtp_server.h"

/* ---- stub application ------------------------------------------------- */

struct stub_cfg {
	bool pend_mail, pend_rcpt, pend_begin, end_ok;
	bool reject_begin, fail_write;
	bool pend_auth;
};

enum stub_what { W_NONE, W_MAIL, W_RCPT, W_BEGIN, W_END, W_AUTH };

struct stub {
	struct stub_cfg cfg;
	struct buf log;
	bool in_write; /* last log entry is content: coalesce writes */
	enum stub_what what;
	char last_rcpt[256];
	char last_pass[64];
	unsigned queued;
};

static void logf_(struct stub *st, const char *fmt, ...) ATTR_FORMAT(2, 3);
static void logf_(struct stub *st, const char *fmt, ...)
{
	va_list ap;
	if (st->in_write)
		buf_xappend(&st->log, "|\n", 2);
	st->in_write = false;
	va_start(ap, fmt);
	char *t = NULL;
	assert_true(vasprintf(&t, fmt, ap) >= 0);
	va_end(ap);
	buf_xprintf(&st->log, "%s\n", t);
	free(t);
}

static void st_helo(void *ctx, struct smtp_server *s, const char *name, bool ehlo)
{
	(void)s;
	logf_(ctx, "helo %s ehlo=%d", name, ehlo);
}

static enum app_verdict st_mail(void *ctx, struct smtp_server *s, const struct smtp_mail *m)
{
	struct stub *st = ctx;
	logf_(st, "mail <%s> size=%llu body=%d utf8=%d", m->from, (unsigned long long)m->size,
	      (int)m->body, m->smtputf8);
	if (m->ret || m->envid || m->auth)
		logf_(st, "dsn ret=%d envid=%s auth=%s", (int)m->ret, m->envid ? m->envid : "-",
		      m->auth ? m->auth : "-");
	if (strcmp(m->from, "reject@x.test") == 0) {
		smtp_server_reply(s, 550, "5.7.1", "Sender rejected");
		return APP_REJECTED;
	}
	if (strcmp(m->from, "multi@x.test") == 0) {
		/* APP_OK with a reply overrides the default */
		smtp_server_reply(s, 250, "2.1.0", "Sender ok\nsecond line\r\n\x01third");
		return APP_OK;
	}
	if (st->cfg.pend_mail) {
		st->what = W_MAIL;
		return APP_PENDING;
	}
	return APP_OK;
}

static enum app_verdict st_rcpt(void *ctx, struct smtp_server *s, const struct smtp_rcpt *r)
{
	struct stub *st = ctx;
	logf_(st, "rcpt <%s>", r->to);
	if (r->notify || r->orcpt)
		logf_(st, "dsn notify=%u orcpt=%s", r->notify, r->orcpt ? r->orcpt : "-");
	snprintf(st->last_rcpt, sizeof st->last_rcpt, "%s", r->to);
	if (st->cfg.pend_rcpt) {
		st->what = W_RCPT;
		return APP_PENDING;
	}
	if (strncmp(r->to, "bad", 3) == 0) {
		smtp_server_reply(s, 550, "5.1.1", "User unknown");
		return APP_REJECTED;
	}
	return APP_OK;
}

static enum app_verdict st_begin(void *ctx, struct smtp_server *s)
{
	struct stub *st = ctx;
	logf_(st, "data_begin");
	if (st->cfg.reject_begin) {
		smtp_server_reply(s, 554, "5.7.1", "No content today");
		return APP_REJECTED;
	}
	if (st->cfg.pend_begin) {
		st->what = W_BEGIN;
		return APP_PENDING;
	}
	return APP_OK;
}

static int st_write(void *ctx, struct smtp_server *s, const uint8_t *p, size_t n)
{
	struct stub *st = ctx;
	(void)s;
	assert_true(n > 0);
	if (!st->in_write)
		buf_xappend(&st->log, "W:", 2);
	st->in_write = true;
	buf_xappend(&st->log, p, n);
	return st->cfg.fail_write ? -1 : 0;
}

static enum app_verdict st_end(void *ctx, struct smtp_server *s)
{
	struct stub *st = ctx;
	logf_(st, "data_end size=%llu", (unsigned long long)smtp_server_data_size(s));
	if (st->cfg.end_ok)
		return APP_OK;
	st->what = W_END;
	return APP_PENDING;
}

static void st_abort(void *ctx, struct smtp_server *s, int code, const char *text)
{
	(void)s;
	logf_(ctx, "abort %d %s", code, text);
}

static void st_rset(void *ctx, struct smtp_server *s)
{
	(void)s;
	logf_(ctx, "rset");
}

static void st_refusal(void *ctx, struct smtp_server *s, const char *cmd, int code,
		       const char *text)
{
	(void)s;
	logf_(ctx, "refusal %s %d %s", cmd, code, text);
}

static enum app_verdict st_auth_password(void *ctx, struct smtp_server *s, const char *mech,
					 const char *user, const char *password)
{
	struct stub *st = ctx;
	logf_(st, "auth %s %s %s", mech, user, password);
	snprintf(st->last_pass, sizeof st->last_pass, "%s", password);
	if (st->cfg.pend_auth) {
		st->what = W_AUTH;
		return APP_PENDING;
	}
	if (strcmp(password, "pw") == 0)
		return APP_OK;
	smtp_server_reply(s, 535, "5.7.8", "Authentication credentials invalid");
	return APP_REJECTED;
}

static const struct smtp_server_ops stub_ops = {
	.auth_password = st_auth_password,
	.helo = st_helo,
	.mail = st_mail,
	.rcpt = st_rcpt,
	.data_begin = st_begin,
	.data_write = st_write,
	.data_end = st_end,
	.data_abort = st_abort,
	.rset = st_rset,
	.log_refusal = st_refusal,
};

static void stub_resume(struct stub *st, struct smtp_server *s)
{
	enum stub_what w = st->what;
	st->what = W_NONE;
	switch (w) {
	case W_MAIL:
		smtp_server_resume(s, 250, "2.1.0", "Ok");
		break;
	case W_RCPT:
		if (strncmp(st->last_rcpt, "bad", 3) == 0)
			smtp_server_resume(s, 550, "5.1.1", "User unknown");
		else
			smtp_server_resume(s, 250, "2.1.5", "Ok");
		break;
	case W_BEGIN:
		smtp_server_resume(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
		break;
	case W_END:
		smtp_server_resume(s, 250, "2.0.0", "Ok: queued as Q%u", ++st->queued);
		break;
	case W_AUTH:
		if (strcmp(st->last_pass, "pw") == 0)
			smtp_server_resume(s, 235, "2.7.0", "Authentication successful");
		else
			smtp_server_resume(s, 535, "5.7.8", "Authentication credentials invalid");
		break;
	case W_NONE:
		fail_msg("engine pending but the stub is not");
	}
}

/* ---- scenarios and the split-loop driver ------------------------------ */

enum event { EV_NONE, EV_TLS, EV_TIMEOUT, EV_SHUTDOWN };

struct step {
	const char *in;
	size_t len; /* 0: strlen(in) */
	enum event after;
};

struct scenario {
	const char *name;
	struct step steps[8];
	struct stub_cfg cfg;
	/* settings overrides (0/false: the defaults below) */
	uint64_t max_size;
	size_t max_line;
	unsigned max_rcpts, max_errors;
	bool starttls, tls;
	bool auth, auth_plaintext, auth_required;
	const char *want_out; /* NULL: only check that all splits agree */
	const char *want_log; /* NULL: not checked against a literal */
	bool no_every_split;  /* too long for the every-split-point loop */
	bool out_only;        /* the log may depend on the split (write failures) */
};

struct result {
	struct buf out, log;
};

enum mode { M_WHOLE, M_BYTE, M_RANDOM, M_SPLIT };

struct driver {
	struct smtp_server *s;
	struct stub st;
	struct buf in;
};

static void drive_chunk(struct driver *d, const uint8_t *p, size_t n)
{
	buf_xappend(&d->in, p, n);
	for (;;) {
		enum proto_want w = smtp_server_want(d->s);
		if (w == PROTO_WANT_CLOSE) {
			buf_clear(&d->in);
			return;
		}
		if (w == PROTO_WANT_PENDING) {
			stub_resume(&d->st, d->s);
			continue;
		}
		if (d->in.len == 0)
			return;
		size_t used = smtp_server_feed(d->s, d->in.data, d->in.len);
		assert_true(used <= d->in.len);
		buf_consume(&d->in, used);
		w = smtp_server_want(d->s);
		if (w != PROTO_WANT_PENDING) {
			/* only a pending verdict leaves input unconsumed */
			assert_int_equal(d->in.len, 0);
			return;
		}
	}
}

static void run_scenario(const struct scenario *sc, enum mode mode, size_t arg, struct result *r)
{
	struct smtp_server_settings set = {
		.hostname = "mx.test",
		.banner = "ESMTP Tern",
		.max_message_size = sc->max_size ? sc->max_size : 10000,
		.max_line = sc->max_line ? sc->max_line : 512,
		.max_rcpts = sc->max_rcpts ? sc->max_rcpts : 3,
		.max_errors = sc->max_errors ? sc->max_errors : 5,
		.starttls_offered = sc->starttls,
		.tls_active = sc->tls,
		.auth_offered = sc->auth,
		.auth_plaintext = sc->auth_plaintext,
		.auth_required = sc->auth_required,
	};
	struct driver d;
	memset(&d, 0, sizeof d);
	d.st.cfg = sc->cfg;
	buf_init(&d.st.log, 0);
	buf_init(&d.in, 0);
	d.s = smtp_server_new(&set, &stub_ops, &d.st);
	smtp_server_start(d.s);
	unsigned seed = (unsigned)arg;
	for (size_t i = 0; i < N_ELEMENTS(sc->steps) && sc->steps[i].in; i++) {
		const struct step *stp = &sc->steps[i];
		const uint8_t *p = (const uint8_t *)stp->in;
		size_t n = stp->len ? stp->len : strlen(stp->in);
		size_t off = 0;
		while (off < n) {
			size_t k = n - off;
			if (mode == M_BYTE)
				k = 1;
			else if (mode == M_RANDOM)
				k = 1 + (size_t)rand_r(&seed) % (k < 64 ? k : 64);
			else if (mode == M_SPLIT && off == 0 && arg > 0 && arg < n)
				k = arg;
			drive_chunk(&d, p + off, k);
			off += k;
		}
		switch (stp->after) {
		case EV_TLS:
			assert_int_equal(smtp_server_want(d.s), PROTO_WANT_STARTTLS);
			smtp_server_tls_started(d.s);
			break;
		case EV_TIMEOUT:
			smtp_server_timeout(d.s);
			break;
		case EV_SHUTDOWN:
			smtp_server_shutdown(d.s);
			break;
		case EV_NONE:
			break;
		}
		drive_chunk(&d, NULL, 0);
	}
	struct buf *o = smtp_server_output(d.s);
	buf_init(&r->out, 0);
	buf_xappend(&r->out, o->data, o->len);
	r->log = d.st.log;
	smtp_server_free(&d.s);
	assert_null(d.s);
	buf_deinit(&d.in);
}

static void result_free(struct result *r)
{
	buf_deinit(&r->out);
	buf_deinit(&r->log);
}

static void same(const struct scenario *sc, const struct result *a, const struct result *b,
		 const char *mode, size_t arg)
{
	if (a->out.len != b->out.len || memcmp(a->out.data, b->out.data, a->out.len) != 0)
		fail_msg("%s: output differs in mode %s/%zu:\n%s\n--- vs whole ---\n%s", sc->name,
			 mode, arg, buf_cstr((struct buf *)&b->out), buf_cstr((struct buf *)&a->out));
	if (sc->out_only)
		return;
	if (a->log.len != b->log.len || memcmp(a->log.data, b->log.data, a->log.len) != 0)
		fail_msg("%s: callbacks differ in mode %s/%zu:\n%s\n--- vs whole ---\n%s", sc->name,
			 mode, arg, buf_cstr((struct buf *)&b->log), buf_cstr((struct buf *)&a->log));
}

static void check_scenario(const struct scenario *sc)
{
	struct result whole, r;
	run_scenario(sc, M_WHOLE, 0, &whole);
	if (sc->want_out && strcmp(buf_cstr(&whole.out), sc->want_out) != 0)
		fail_msg("%s: got output\n%s\nwant\n%s", sc->name, buf_cstr(&whole.out),
			 sc->want_out);
	if (sc->want_log && strcmp(buf_cstr(&whole.log), sc->want_log) != 0)
		fail_msg("%s: got callbacks\n%s\nwant\n%s", sc->name, buf_cstr(&whole.log),
			 sc->want_log);
	run_scenario(sc, M_BYTE, 0, &r);
	same(sc, &whole, &r, "byte", 0);
	result_free(&r);
	for (unsigned seed = 1; seed <= 20; seed++) {
		run_scenario(sc, M_RANDOM, seed, &r);
		same(sc, &whole, &r, "random", seed);
		result_free(&r);
	}
	if (!sc->no_every_split) {
		size_t maxlen = 0;
		for (size_t i = 0; i < N_ELEMENTS(sc->steps) && sc->steps[i].in; i++) {
			size_t n = sc->steps[i].len ? sc->steps[i].len : strlen(sc->steps[i].in);
			if (n > maxlen)
				maxlen = n;
		}
		for (size_t k = 1; k < maxlen; k++) {
			run_scenario(sc, M_SPLIT, k, &r);
			same(sc, &whole, &r, "split", k);
			result_free(&r);
		}
	}
	result_free(&whole);
}

static void check_table(const struct scenario *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_scenario(&t[i]);
}

#define GREETING "220 mx.test ESMTP Tern\r\n"
#define EHLO_C "EHLO client.test\r\n"
#define EHLO_S                                                                                     \
	"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"                     \
	"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
#define EHLO_L "helo client.test ehlo=1\n"
#define TX_C EHLO_C "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
#define TX_S GREETING EHLO_S "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
#define TX_L EHLO_L "mail <a@x.test> size=0 body=0 utf8=0\nrcpt <b@y.test>\n"
#define QUEUED "250 2.0.0 Ok: queued as Q1\r\n"

/* ---- the seed's transcript -------------------------------------------- */

#define SEED_BODY                                                                                  \
	"To: Reviewers: ;\r\n"                                                                     \
	"Subject: Want to review a book?\r\n"                                                      \
	"Date: Sun, 12 Apr 1992 11:50:40 -0700\r\n"                                                \
	"Message-ID: <18597.703104640@dbc.mtview.ca.us>\r\n"                                      \
	"From: Marshall Rose <mrose@dbc.mtview.ca.us>\r\n"                                        \
	"\r\n"                                                                                     \
	"As you may have heard, I am undertaking the ....\r\n"                                     \
	"/mtr\r\n"

static void test_seed_transcript(void **state)
{
	(void)state;
	static const char body_lf[] =
		"To: Reviewers: ;\n"
		"Subject: Want to review a book?\n"
		"Date: Sun, 12 Apr 1992 11:50:40 -0700\n"
		"Message-ID: <18597.703104640@dbc.mtview.ca.us>\n"
		"From: Marshall Rose <mrose@dbc.mtview.ca.us>\n"
		"\n"
		"As you may have heard, I am undertaking the ....\n"
		"/mtr\n";
	char want_log[2048];
	snprintf(want_log, sizeof want_log,
		 "helo baiji.dbc.mtview.ca.us ehlo=0\n"
		 "mail <mrose@dbc.mtview.ca.us> size=0 body=0 utf8=0\n"
		 "rcpt <nsb@thumper.bellcore.com>\n"
		 "rcpt <galvin@tis.com>\n"
		 "rcpt <pvm@darpa.mil>\n"
		 "data_begin\n"
		 "W:%s|\n"
		 "data_end size=%zu\n"
		 "rset\n",
		 body_lf, strlen(body_lf));
	const struct scenario sc[] = {
		{
			.name = "seed, one command per write",
			.steps = { { "HELO baiji.dbc.mtview.ca.us\r\n" },
				   { "MAIL FROM:<mrose@dbc.mtview.ca.us>\r\n" },
				   { "RCPT TO:<nsb@thumper.bellcore.com>\r\n" },
				   { "RCPT TO:<galvin@tis.com>\r\n" },
				   { "RCPT TO:<pvm@darpa.mil>\r\n" },
				   { "DATA\r\n" },
				   { SEED_BODY ".\r\n" },
				   { "QUIT\r\n" } },
			.want_out = GREETING "250 mx.test\r\n"
					     "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
					     "250 2.1.5 Ok\r\n"
					     "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED
					     "221 2.0.0 Bye\r\n",
			.want_log = want_log,
		},
		{
			.name = "seed, all in one write, app pending everywhere",
			.steps = { { "HELO baiji.dbc.mtview.ca.us\r\n"
				     "MAIL FROM:<mrose@dbc.mtview.ca.us>\r\n"
				     "RCPT TO:<nsb@thumper.bellcore.com>\r\n"
				     "RCPT TO:<galvin@tis.com>\r\n"
				     "RCPT TO:<pvm@darpa.mil>\r\n"
				     "DATA\r\n" SEED_BODY ".\r\nQUIT\r\n" } },
			.cfg = { .pend_mail = true, .pend_rcpt = true, .pend_begin = true },
			.want_out = GREETING "250 mx.test\r\n"
					     "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
					     "250 2.1.5 Ok\r\n"
					     "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED
					     "221 2.0.0 Bye\r\n",
			.want_log = want_log,
		},
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* ---- EHLO ------------------------------------------------------------- */

static void test_ehlo(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "ehlo plain",
		  .steps = { { EHLO_C } },
		  .want_out = GREETING EHLO_S,
		  .want_log = EHLO_L },
		{ .name = "ehlo with starttls offered",
		  .steps = { { "ehlo client.test\r\n" } },
		  .starttls = true,
		  .want_out = GREETING
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
		  "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n" },
		{ .name = "ehlo under implicit tls",
		  .steps = { { EHLO_C } },
		  .starttls = true,
		  .tls = true,
		  .want_out = GREETING EHLO_S },
		{ .name = "helo",
		  .steps = { { "HELO client.test\r\nHELO\r\nEHLO   \r\n" } },
		  .want_out = GREETING "250 mx.test\r\n"
				       "501 5.5.4 Syntax: HELO hostname\r\n"
				       "501 5.5.4 Syntax: EHLO hostname\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* ---- pipelining -------------------------------------------------------- */

#define PIPE_C                                                                                     \
	EHLO_C "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<bad@y.test>\r\n"             \
	       "RCPT TO:<c@y.test>\r\nDATA\r\nHello\r\n.\r\nNOOP\r\nQUIT\r\n"
#define PIPE_S                                                                                     \
	GREETING EHLO_S "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 User unknown\r\n250 2.1.5 Ok\r\n" \
			"354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED "250 2.0.0 Ok\r\n"         \
			"221 2.0.0 Bye\r\n"
#define PIPE_L                                                                                     \
	TX_L "rcpt <bad@y.test>\nrcpt <c@y.test>\ndata_begin\nW:Hello\n|\ndata_end size=6\nrset\n"

static void test_pipelining(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "pipelined, app synchronous",
		  .steps = { { PIPE_C } },
		  .want_out = PIPE_S,
		  .want_log = PIPE_L },
		{ .name = "pipelined, app pending on every verdict",
		  .steps = { { PIPE_C } },
		  .cfg = { .pend_mail = true, .pend_rcpt = true, .pend_begin = true },
		  .want_out = PIPE_S,
		  .want_log = PIPE_L },
		{ .name = "pipelined, data_end synchronous",
		  .steps = { { PIPE_C } },
		  .cfg = { .end_ok = true },
		  .want_out = GREETING EHLO_S
		  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 User unknown\r\n250 2.1.5 Ok\r\n"
		  "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
		  "221 2.0.0 Bye\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* A pending verdict stops processing: nothing after it is answered, and the
 * unconsumed bytes are offered again after resume. */
static void test_pending_stops_pipeline(void **state)
{
	(void)state;
	struct stub st;
	memset(&st, 0, sizeof st);
	st.cfg.pend_rcpt = true;
	buf_init(&st.log, 0);
	struct smtp_server_settings set = { .hostname = "mx.test", .banner = "ESMTP Tern",
					    .max_message_size = 1000, .max_line = 512,
					    .max_rcpts = 10, .max_errors = 5 };
	struct smtp_server *s = smtp_server_new(&set, &stub_ops, &st);
	smtp_server_start(s);
	const char *in = "HELO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nNOOP\r\n";
	size_t n = strlen(in);
	size_t used = smtp_server_feed(s, (const uint8_t *)in, n);
	assert_int_equal(used, n - strlen("NOOP\r\n"));
	assert_int_equal(smtp_server_want(s), PROTO_WANT_PENDING);
	assert_true(smtp_server_in_transaction(s));
	assert_string_equal(buf_cstr(smtp_server_output(s)),
			    GREETING "250 mx.test\r\n250 2.1.0 Ok\r\n");
	/* still pending: nothing more is consumed */
	assert_int_equal(smtp_server_feed(s, (const uint8_t *)in + used, n - used), 0);
	smtp_server_resume(s, 451, "4.3.0", "Try later");
	assert_int_equal(smtp_server_want(s), PROTO_WANT_READ);
	used += smtp_server_feed(s, (const uint8_t *)in + used, n - used);
	assert_int_equal(used, n);
	assert_string_equal(buf_cstr(smtp_server_output(s)),
			    GREETING "250 mx.test\r\n250 2.1.0 Ok\r\n451 4.3.0 Try later\r\n"
				     "250 2.0.0 Ok\r\n");
	assert_string_equal(smtp_server_helo_name(s), "c");
	assert_false(smtp_server_is_esmtp(s));
	assert_false(smtp_server_is_tls(s));
	smtp_server_free(&s);
	buf_deinit(&st.log);
}

/* ---- DATA content ----------------------------------------------------- */

static void test_data_content(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "dot-unstuffing and line endings",
		  .steps = { { TX_C "DATA\r\n" },
			     { "a\r\n..b\r\n...\r\n.\tx\r\nc\rd\ne\r\n\r\n\r\r\n.x\r\n..\r\n.\r\n" } },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED,
		  .want_log = TX_L "data_begin\nW:a\n.b\n..\n\tx\nc\rd\ne\n\n\r\nx\n.\n|\n"
				   "data_end size=24\nrset\n" },
		{ .name = "empty message",
		  .steps = { { TX_C "DATA\r\n.\r\nQUIT\r\n" } },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED
				   "221 2.0.0 Bye\r\n",
		  .want_log = TX_L "data_begin\ndata_end size=0\nrset\n" },
		{ .name = "second transaction after the first",
		  .steps = { { TX_C "DATA\r\nx\r\n.\r\n" },
			     { "MAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\nDATA\r\ny\r\n.\r\n" } },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED
				   "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
				   "354 End data with <CR><LF>.<CR><LF>\r\n"
				   "250 2.0.0 Ok: queued as Q2\r\n",
		  .want_log = TX_L "data_begin\nW:x\n|\ndata_end size=2\nrset\n"
				   "mail <> size=0 body=0 utf8=0\nrcpt <c@y.test>\ndata_begin\n"
				   "W:y\n|\ndata_end size=2\nrset\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* SMTP smuggling: only CRLF "." CRLF ends DATA. Each form is followed by a
 * smuggled transaction that must end up as content. */
static void test_smuggling(void **state)
{
	(void)state;
	static const struct {
		const char *form, *stored;
	} forms[] = {
		{ "\n.\n", "\n.\n" },         /* bare LF dot bare LF */
		{ "\n.\r\n", "\n.\n" },       /* bare LF dot CRLF */
		{ "\r\n.\n", "\n\n" },        /* CRLF dot bare LF: the dot is stuffing */
		{ "\r.\r\n", "\r.\n" },       /* bare CR dot CRLF */
		{ "\r\n.\r", "\n\r" },        /* CRLF dot bare CR */
		{ "\r.\r", "\r.\r" },         /* bare CR dot bare CR */
		{ "\n.\r", "\n.\r" },
		{ "\r\n.\r\r\n", "\n\r\n" },  /* CRLF dot CR CRLF */
	};
	for (size_t i = 0; i < N_ELEMENTS(forms); i++) {
		char in[512], log[1024];
		snprintf(in, sizeof in,
			 "x%sMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\nevil\r\n.\r\n",
			 forms[i].form);
		snprintf(log, sizeof log,
			 TX_L "data_begin\nW:x%sMAIL FROM:<evil@x.test>\nRCPT TO:<v@y.test>\n"
			      "DATA\nevil\n|\ndata_end size=%zu\nrset\n",
			 forms[i].stored,
			 1 + strlen(forms[i].stored) +
				 strlen("MAIL FROM:<evil@x.test>\nRCPT TO:<v@y.test>\nDATA\nevil\n"));
		const struct scenario sc = {
			.name = forms[i].form,
			.steps = { { TX_C "DATA\r\n" }, { in }, { "QUIT\r\n" } },
			.want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED
					 "221 2.0.0 Bye\r\n",
			.want_log = log,
		};
		check_scenario(&sc);
	}
}

/* A long line streams: the app has its bytes before the line ends. */
static void test_long_data_line(void **state)
{
	(void)state;
	size_t n = 200000;
	char *big = xmalloc(n + 1);
	memset(big, 'x', n);
	big[n] = '\0';
	struct scenario sc = {
		.name = "200k line",
		.steps = { { TX_C "DATA\r\n" }, { big }, { "\r\n.\r\n" } },
		.max_size = 1000000,
		.want_out = GREETING
		"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n"
		"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
		"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		"354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED,
		.no_every_split = true,
	};
	check_scenario(&sc);

	struct stub st;
	memset(&st, 0, sizeof st);
	st.cfg.end_ok = true;
	buf_init(&st.log, 0);
	struct smtp_server_settings set = { .hostname = "mx.test", .banner = "ESMTP Tern",
					    .max_message_size = 1000000, .max_line = 512,
					    .max_rcpts = 10, .max_errors = 5 };
	struct smtp_server *s = smtp_server_new(&set, &stub_ops, &st);
	const char *tx = TX_C "DATA\r\n";
	assert_int_equal(smtp_server_feed(s, (const uint8_t *)tx, strlen(tx)), strlen(tx));
	assert_int_equal(smtp_server_feed(s, (const uint8_t *)big, n), n);
	assert_int_equal(smtp_server_data_size(s), n);
	assert_non_null(memmem(st.log.data, st.log.len, big, n)); /* already written */
	smtp_server_free(&s);
	buf_deinit(&st.log);
	free(big);
}

static void test_data_limits(void **state)
{
	(void)state;
	char big[1200];
	memset(big, 'y', sizeof big - 3);
	memcpy(big + sizeof big - 3, "\r\n", 3);
	char log[2048];
	snprintf(log, sizeof log,
		 TX_L "data_begin\nW:%.1000s|\nabort 552 5.3.4 Error: message too big\n"
		      "refusal DATA 552 5.3.4 Error: message too big\nrset\n",
		 big);
	const struct scenario sc[] = {
		{ .name = "declared size",
		  .steps = { { EHLO_C "MAIL FROM:<a@x.test> SIZE=1001\r\n"
				      "MAIL FROM:<a@x.test> SIZE=1000\r\n" } },
		  .max_size = 1000,
		  .want_out = GREETING
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
		  "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
		  "552 5.3.4 Message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n" },
		{ .name = "actual size",
		  .steps = { { TX_C "DATA\r\n" }, { big }, { "more\r\n.\r\nNOOP\r\n" } },
		  .max_size = 1000,
		  .want_out = GREETING
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
		  "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
		  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
		  "552 5.3.4 Error: message too big\r\n250 2.0.0 Ok\r\n",
		  .want_log = log },
		{ .name = "NUL in content",
		  .steps = { { TX_C "DATA\r\nab" }, { "c\0d\r\n.\r\n", 9 } },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n"
				   "554 5.6.0 Error: NUL character in message content\r\n",
		  .want_log = TX_L "data_begin\nW:abc|\n"
				   "abort 554 5.6.0 Error: NUL character in message content\n"
				   "refusal DATA 554 5.6.0 Error: NUL character in message content\n"
				   "rset\n" },
		{ .name = "write failure",
		  .steps = { { TX_C "DATA\r\nabc\r\n.\r\nRSET\r\n" } },
		  .cfg = { .fail_write = true },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n"
				   "451 4.3.0 Error: internal error, try again later\r\n"
				   "250 2.0.0 Ok\r\n",
		  .out_only = true },
		{ .name = "data_begin refused",
		  .steps = { { TX_C "DATA\r\nRSET\r\n" } },
		  .cfg = { .reject_begin = true },
		  .want_out = TX_S "554 5.7.1 No content today\r\n250 2.0.0 Ok\r\n",
		  .want_log = TX_L "data_begin\nrset\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* ---- BDAT (RFC 3030) -------------------------------------------------- */

static void test_bdat(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "chunks, CRLF split across chunks",
		  .steps = { { TX_C "BDAT 3\r\nab\r" },
			     { "BDAT 4\r\n\ncd\rBDAT 6 LAST\r\nx\r\n\rz\r" },
			     { "QUIT\r\n" } },
		  .want_out = TX_S "250 2.0.0 3 octets received\r\n"
				   "250 2.0.0 4 octets received\r\n" QUEUED "221 2.0.0 Bye\r\n",
		  .want_log = TX_L "data_begin\nW:ab\ncd\rx\n\rz\r|\ndata_end size=11\nrset\n" },
		{ .name = "BDAT 0 LAST, pipelined with the envelope, app pending",
		  .steps = { { TX_C "BDAT 0 LAST\r\nNOOP\r\n" } },
		  .cfg = { .pend_mail = true, .pend_rcpt = true, .pend_begin = true },
		  .want_out = TX_S QUEUED "250 2.0.0 Ok\r\n",
		  .want_log = TX_L "data_begin\ndata_end size=0\nrset\n" },
		{ .name = "BDAT 0 then BDAT n last, no dot-unstuffing",
		  .steps = { { TX_C "BDAT 0\r\nbdat 6 last\r\n.\r\n.\r\n" } },
		  .want_out = TX_S "250 2.0.0 0 octets received\r\n" QUEUED,
		  .want_log = TX_L "data_begin\nW:.\n.\n|\ndata_end size=4\nrset\n" },
		{ .name = "BDAT out of sequence: chunk is consumed",
		  .steps = { { EHLO_C "BDAT 12\r\nNOOP\r\nNOOP\r\nNOOP\r\n" } },
		  .want_out = GREETING EHLO_S "503 5.5.1 Error: need MAIL command\r\n"
					      "250 2.0.0 Ok\r\n" },
		{ .name = "BDAT before HELO, BDAT before RCPT",
		  .steps = { { "BDAT 1 LAST\r\nx" EHLO_C
			       "MAIL FROM:<a@x.test>\r\nBDAT 2\r\nxx" } },
		  .want_out = GREETING "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_S
				       "250 2.1.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n" },
		{ .name = "DATA after BDAT",
		  .steps = { { TX_C "BDAT 2\r\nabDATA\r\nRSET\r\n" } },
		  .want_out = TX_S "250 2.0.0 2 octets received\r\n"
				   "503 5.5.1 Error: DATA after BDAT\r\n250 2.0.0 Ok\r\n" },
		{ .name = "BDAT size across chunks",
		  .steps = { { TX_C "BDAT 6\r\n012345" },
			     { "BDAT 6\r\n6789ab" },
			     { "BDAT 3 LAST\r\nxyzNOOP\r\n" } },
		  .max_size = 10,
		  .want_out = GREETING
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10\r\n250-8BITMIME\r\n"
		  "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
		  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 6 octets received\r\n"
		  "552 5.3.4 Error: message too big\r\n503 5.5.1 Error: need MAIL command\r\n"
		  "250 2.0.0 Ok\r\n",
		  .want_log = TX_L "data_begin\nW:0123456789|\n"
				   "abort 552 5.3.4 Error: message too big\n"
				   "refusal BDAT 552 5.3.4 Error: message too big\nrset\n"
				   "refusal BDAT 503 5.5.1 Error: need MAIL command\n" },
		{ .name = "BDAT refused by data_begin",
		  .steps = { { TX_C "BDAT 3\r\nabcNOOP\r\n" } },
		  .cfg = { .reject_begin = true },
		  .want_out = TX_S "554 5.7.1 No content today\r\n250 2.0.0 Ok\r\n",
		  .want_log = TX_L "data_begin\nrset\n" },
		{ .name = "BDAT NUL",
		  .steps = { { TX_C "BDAT 3 LAST\r\na\0b", strlen(TX_C "BDAT 3 LAST\r\n") + 3 } },
		  .want_out = TX_S "554 5.6.0 Error: NUL character in message content\r\n" },
		{ .name = "BDAT bad syntax closes",
		  .steps = { { TX_C "BDAT x\r\nNOOP\r\n" } },
		  .want_out = TX_S "501 5.5.4 Syntax: BDAT count [LAST]\r\n" },
		{ .name = "BDAT bad marker closes",
		  .steps = { { TX_C "BDAT 1 LASTX\r\nNOOP\r\n" } },
		  .want_out = TX_S "501 5.5.4 Syntax: BDAT count [LAST]\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* ---- command errors --------------------------------------------------- */

static void test_sequence_errors(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "MAIL before HELO, RCPT before MAIL, DATA before RCPT, nested MAIL",
		  .steps = { { "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n" EHLO_C
			       "RCPT TO:<b@y.test>\r\nMAIL FROM:<a@x.test>\r\nDATA\r\n"
			       "MAIL FROM:<a@x.test>\r\n" } },
		  .max_errors = 10,
		  .want_out = GREETING "503 5.5.1 Error: send HELO/EHLO first\r\n"
				       "503 5.5.1 Error: send HELO/EHLO first\r\n"
				       "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_S
				       "503 5.5.1 Error: need MAIL command\r\n"
				       "250 2.1.0 Ok\r\n"
				       "503 5.5.1 Error: need RCPT command\r\n"
				       "503 5.5.1 Error: nested MAIL command\r\n" },
		{ .name = "too many recipients",
		  .steps = { { TX_C "RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\n"
				    "RCPT TO:<e@y.test>\r\nRSET\r\nMAIL FROM:<a@x.test>\r\n"
				    "RCPT TO:<e@y.test>\r\n" } },
		  .want_out = TX_S "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
				   "452 4.5.3 Error: too many recipients\r\n250 2.0.0 Ok\r\n"
				   "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" },
		{ .name = "app reply overrides the default, multi-line, sanitised",
		  .steps = { { EHLO_C "MAIL FROM:<multi@x.test>\r\nRCPT TO:<b@y.test>\r\n" } },
		  .want_out = GREETING EHLO_S "250-2.1.0 Sender ok\r\n250-2.1.0 second line\r\n"
					      "250 2.1.0 ?third\r\n250 2.1.5 Ok\r\n" },
		{ .name = "sender rejected by the app",
		  .steps = { { EHLO_C "MAIL FROM:<reject@x.test>\r\nRCPT TO:<b@y.test>\r\n" } },
		  .want_out = GREETING EHLO_S "550 5.7.1 Sender rejected\r\n"
					      "503 5.5.1 Error: need MAIL command\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

static void test_syntax_errors(void **state)
{
	(void)state;
	static const struct {
		const char *cmd, *reply;
	} t[] = {
		{ "MAIL FROM:a@x.test", "501 5.1.7 Bad sender address syntax" },
		{ "MAIL FROM:<a@x.test", "501 5.1.7 Bad sender address syntax" },
		{ "MAIL FROM:<a@@x.test>", "501 5.1.7 Bad sender address syntax" },
		{ "MAIL TO:<a@x.test>", "501 5.5.4 Syntax: MAIL FROM:<address>" },
		{ "MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>" },
		{ "MAIL FROM:<a@x.test>x", "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]" },
		{ "MAIL FROM:<a@x.test> SIZE=abc", "501 5.5.4 Bad SIZE parameter syntax" },
		{ "MAIL FROM:<a@x.test> SIZE", "501 5.5.4 Bad SIZE parameter syntax" },
		{ "MAIL FROM:<a@x.test> SIZE=99999999999999999999999",
		  "501 5.5.4 Bad SIZE parameter syntax" },
		{ "MAIL FROM:<a@x.test> SIZE=10001", "552 5.3.4 Message size exceeds fixed limit" },
		{ "MAIL FROM:<a@x.test> BODY=BINARYMIME",
		  "504 5.5.4 Error: BODY=BINARYMIME is not supported" },
		{ "MAIL FROM:<a@x.test> BODY=9BIT", "501 5.5.4 Bad BODY parameter syntax" },
		{ "MAIL FROM:<a@x.test> FOO=bar", "555 5.5.4 Unsupported option: FOO" },
		{ "MAIL FROM:<a@x.test> SMTPUTF8=yes", "501 5.5.4 Bad SMTPUTF8 parameter syntax" },
		{ "MAIL FROM:<a@x.test> SIZE=1 SIZE=2", "501 5.5.4 Error: duplicate parameter" },
		{ "MAIL FROM:<a@x.test> =x", "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]" },
		{ "MAIL FROM:<j\xc3\xb6@x.test>", "553 5.6.7 Error: non-ASCII address requires SMTPUTF8" },
		{ "MAIL FROM:<\xff@x.test> SMTPUTF8", "501 5.1.7 Bad sender address syntax" },
		{ "FOO", "500 5.5.2 Error: command not recognized" },
		{ "MAILFROM:<a@x.test>", "500 5.5.2 Error: command not recognized" },
		{ "SEND FROM:<a@x.test>", "502 5.5.1 Error: command not implemented" },
		{ "SOML FROM:<a@x.test>", "502 5.5.1 Error: command not implemented" },
		{ "SAML FROM:<a@x.test>", "502 5.5.1 Error: command not implemented" },
		{ "TURN", "502 5.5.1 Error: command not implemented" },
		{ "EXPN list", "502 5.5.1 Error: command not implemented" },
		{ "VRFY", "501 5.5.4 Syntax: VRFY address" },
		{ "VRFY bob", "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery" },
		{ "RSET now", "501 5.5.4 Syntax: RSET" },
		{ "NOOP whatever", "250 2.0.0 Ok" },
		{ "noop", "250 2.0.0 Ok" },
		{ "HELP", "214-2.0.0 Commands supported:\r\n"
			  "214 2.0.0 HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP" },
		{ "STARTTLS", "502 5.5.1 Error: command not implemented" },
		{ "", "500 5.5.2 Error: command not recognized" },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		char in[256], out[1024];
		snprintf(in, sizeof in, EHLO_C "%s\r\nNOOP\r\n", t[i].cmd);
		snprintf(out, sizeof out, GREETING EHLO_S "%s\r\n250 2.0.0 Ok\r\n", t[i].reply);
		const struct scenario sc = { .name = t[i].cmd, .steps = { { in } }, .want_out = out };
		check_scenario(&sc);
	}
	static const struct {
		const char *cmd, *reply;
	} r[] = {
		{ "RCPT TO:<>", "501 5.1.3 Bad recipient address syntax" },
		{ "RCPT TO:b@y.test", "501 5.1.3 Bad recipient address syntax" },
		{ "RCPT TO:<b@y.test> XFOO=1", "555 5.5.4 Unsupported option: XFOO" },
		{ "RCPT TO:<b@y.test> !", "501 5.5.4 Syntax: RCPT TO:<address> [parameters]" },
		{ "RCPT FROM:<b@y.test>", "501 5.5.4 Syntax: RCPT TO:<address>" },
		{ "RCPT TO:<j\xc3\xb6@y.test>", "553 5.6.7 Error: non-ASCII address requires SMTPUTF8" },
		{ "DATA now", "501 5.5.4 Syntax: DATA" },
		{ "STARTTLS", "502 5.5.1 Error: command not implemented" },
	};
	for (size_t i = 0; i < N_ELEMENTS(r); i++) {
		char in[256], out[1024];
		snprintf(in, sizeof in, TX_C "%s\r\nNOOP\r\n", r[i].cmd);
		snprintf(out, sizeof out, TX_S "%s\r\n250 2.0.0 Ok\r\n", r[i].reply);
		const struct scenario sc = { .name = r[i].cmd, .steps = { { in } }, .want_out = out };
		check_scenario(&sc);
	}
}

static void test_paths_reach_app(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "tolerated forms",
		  .steps = { { EHLO_C "MAIL FROM: <@a.test,@b.test:u@x.test> BODY=8bitmime  SIZE=12\r\n"
				      "RCPT TO:<Postmaster>\r\nRCPT TO:<\"q a\"@[127.0.0.1]>\r\n"
				      "RSET\r\nMAIL FROM:<j\xc3\xb6@x.test> SMTPUTF8 BODY=7BIT\r\n"
				      "RCPT TO:<\xc3\xa5@y.test>\r\n" } },
		  .want_out = GREETING EHLO_S "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
					      "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n",
		  .want_log = EHLO_L "mail <u@x.test> size=12 body=1 utf8=0\n"
				     "rcpt <postmaster>\nrcpt <\"q a\"@[127.0.0.1]>\nrset\n"
				     "mail <j\xc3\xb6@x.test> size=0 body=0 utf8=1\n"
				     "rcpt <\xc3\xa5@y.test>\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

static void test_line_limits(void **state)
{
	(void)state;
	char longl[300];
	memset(longl, 'A', sizeof longl - 1);
	longl[sizeof longl - 1] = '\0';
	char in[1024];
	snprintf(in, sizeof in, "NOOP %s\r\nNOOP\r\n", longl);
	/* 100 octets including CRLF fit; 101 do not */
	char fit[128], nofit[128];
	memset(fit, 0, sizeof fit);
	memcpy(fit, "NOOP ", 5);
	memset(fit + 5, 'b', 93);
	memcpy(fit + 98, "\r\n", 2);
	memset(nofit, 0, sizeof nofit);
	memcpy(nofit, "NOOP ", 5);
	memset(nofit + 5, 'b', 94);
	memcpy(nofit + 99, "\r\n", 2);
	const struct scenario sc[] = {
		{ .name = "overlong then normal",
		  .steps = { { in } },
		  .max_line = 100,
		  .want_out = GREETING "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n",
		  .want_log = "refusal - 500 5.5.2 Line too long\n" },
		{ .name = "exact limit",
		  .steps = { { fit }, { nofit }, { "NOOP\n" } },
		  .max_line = 100,
		  .want_out = GREETING "250 2.0.0 Ok\r\n500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n" },
		{ .name = "bare LF, trailing space, NUL",
		  .steps = { { "NOOP\nnoop  \t\r\nNO\0OP\r\nHELO a\n", 29 } },
		  .want_out = GREETING "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"
				       "500 5.5.2 Error: NUL character in command\r\n250 mx.test\r\n" },
		{ .name = "too many errors",
		  .steps = { { "A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n" } },
		  .want_out = GREETING "500 5.5.2 Error: command not recognized\r\n"
				       "500 5.5.2 Error: command not recognized\r\n"
				       "500 5.5.2 Error: command not recognized\r\n"
				       "500 5.5.2 Error: command not recognized\r\n"
				       "500 5.5.2 Error: command not recognized\r\n"
				       "421 4.7.0 mx.test Error: too many errors\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* ---- STARTTLS, timeout, shutdown -------------------------------------- */

static void test_starttls(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "injection: RSET after STARTTLS is never answered",
		  .steps = { { EHLO_C "STARTTLS\r\nRSET\r\nMAIL FROM:<a@x.test>\r\n", 0, EV_TLS },
			     { "MAIL FROM:<a@x.test>\r\n" EHLO_C "STARTTLS\r\n" } },
		  .starttls = true,
		  .want_out = GREETING
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
		  "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
		  "220 2.0.0 Ready to start TLS\r\n"
		  "503 5.5.1 Error: send HELO/EHLO first\r\n" EHLO_S
		  "503 5.5.1 Error: TLS already active\r\n",
		  .want_log = EHLO_L "refusal MAIL 503 5.5.1 Error: send HELO/EHLO first\n" EHLO_L
				     "refusal STARTTLS 503 5.5.1 Error: TLS already active\n" },
		{ .name = "STARTTLS with argument, in a transaction",
		  .steps = { { TX_C "STARTTLS x\r\nSTARTTLS\r\n" } },
		  .starttls = true,
		  .want_out = GREETING
		  "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
		  "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
		  "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n501 5.5.4 Syntax: STARTTLS\r\n"
		  "503 5.5.1 Error: MAIL transaction in progress\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

static void test_timeout_shutdown(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "timeout",
		  .steps = { { EHLO_C, 0, EV_TIMEOUT }, { "NOOP\r\n" } },
		  .want_out = GREETING EHLO_S "421 4.4.2 mx.test Error: timeout exceeded\r\n" },
		{ .name = "timeout in DATA",
		  .steps = { { TX_C "DATA\r\npartial", 0, EV_TIMEOUT } },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n"
				   "421 4.4.2 mx.test Error: timeout exceeded\r\n",
		  .want_log = TX_L "data_begin\nW:partial|\nabort 421 4.4.2 Error: timeout exceeded\n" },
		{ .name = "shutdown idle",
		  .steps = { { EHLO_C, 0, EV_SHUTDOWN }, { "NOOP\r\n" } },
		  .want_out = GREETING EHLO_S
		  "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n" },
		{ .name = "shutdown in a transaction",
		  .steps = { { TX_C, 0, EV_SHUTDOWN }, { "DATA\r\nx\r\n.\r\nNOOP\r\n" } },
		  .want_out = TX_S "354 End data with <CR><LF>.<CR><LF>\r\n" QUEUED
		  "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n" },
		{ .name = "shutdown, transaction abandoned by RSET",
		  .steps = { { TX_C, 0, EV_SHUTDOWN }, { "RSET\r\nNOOP\r\n" } },
		  .want_out = TX_S "250 2.0.0 Ok\r\n"
		  "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* Findings of the first code review, each pinned by a scenario. */
static void test_review_fixes(void **state)
{
	(void)state;
	const struct scenario sc[] = {
		{ .name = "refused recipients count as errors (no endless harvesting)",
		  .steps = { { EHLO_C "MAIL FROM:<a@x.test>\r\nRCPT TO:<bad1@y.test>\r\n"
				      "RCPT TO:<bad2@y.test>\r\nRCPT TO:<bad3@y.test>\r\nNOOP\r\n" } },
		  .max_errors = 3,
		  .want_out = GREETING EHLO_S "250 2.1.0 Ok\r\n550 5.1.1 User unknown\r\n"
					      "550 5.1.1 User unknown\r\n550 5.1.1 User unknown\r\n"
					      "421 4.7.0 mx.test Error: too many errors\r\n" },
		{ .name = "refused sender counts too",
		  .steps = { { EHLO_C "MAIL FROM:<reject@x.test>\r\nMAIL FROM:<reject@x.test>\r\n"
				      "NOOP\r\n" } },
		  .max_errors = 2,
		  .want_out = GREETING EHLO_S "550 5.7.1 Sender rejected\r\n"
					      "550 5.7.1 Sender rejected\r\n"
					      "421 4.7.0 mx.test Error: too many errors\r\n" },
		{ .name = "no ESMTP parameters after HELO",
		  .steps = { { "HELO client.test\r\nMAIL FROM:<a@x.test> SIZE=10\r\n"
			       "MAIL FROM:<a@x.test> SMTPUTF8\r\nMAIL FROM:<a@x.test>\r\n" } },
		  .want_out = GREETING "250 mx.test\r\n"
				       "555 5.5.4 Error: parameters need EHLO: SIZE\r\n"
				       "555 5.5.4 Error: parameters need EHLO: SMTPUTF8\r\n"
				       "250 2.1.0 Ok\r\n" },
		{ .name = "no BDAT after HELO; the chunk is still skipped",
		  .steps = { { "HELO client.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n"
			       "BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n" } },
		  .want_out = GREETING "250 mx.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
				       "503 5.5.1 Error: send EHLO first\r\n250 2.0.0 Ok\r\n" },
		{ .name = "QUIT takes no arguments (RFC 5321 4.1.1.10)",
		  .steps = { { EHLO_C "QUIT now please\r\nQUIT\r\n" } },
		  .want_out = GREETING EHLO_S "501 5.5.4 Syntax: QUIT\r\n221 2.0.0 Bye\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* A client that pipelines without reading cannot make the engine buffer
 * more than about one high-water mark of replies per feed. */
static void test_output_is_bounded(void **state)
{
	(void)state;
	struct stub st = { 0 };
	struct smtp_server_settings set = { .hostname = "mx.test", .banner = "ESMTP Tern",
					    .max_message_size = 10000, .max_line = 512 };
	struct smtp_server *s = smtp_server_new(&set, &stub_ops, &st);
	smtp_server_start(s);
	struct buf in = BUF_INIT(0);
	size_t nhelp = 20000;
	for (size_t i = 0; i < nhelp; i++)
		buf_xappend(&in, "HELP\r\n", 6);
	size_t off = 0, rounds = 0, replies = 0, peak = 0;
	while (off < in.len && rounds < 100000) {
		off += smtp_server_feed(s, in.data + off, in.len - off);
		struct buf *out = smtp_server_output(s);
		if (out->len > peak)
			peak = out->len;
		for (size_t i = 0; i + 4 <= out->len; i++)
			if (memcmp(out->data + i, "214 ", 4) == 0)
				replies++;
		buf_clear(out);
		rounds++;
	}
	assert_int_equal(off, in.len);
	assert_int_equal(replies, nhelp);
	assert_true(rounds > 1);
	assert_true(peak < 64 * 1024 + 4096);
	buf_deinit(&in);
	smtp_server_free(&s);
	buf_deinit(&st.log);
}

/* A timeout after data_end (the app is committing) must not abort the message. */
static void test_timeout_while_committing(void **state)
{
	(void)state;
	struct stub st = { 0 };
	struct smtp_server_settings set = { .hostname = "mx.test", .banner = "ESMTP Tern",
					    .max_message_size = 10000, .max_line = 512 };
	struct smtp_server *s = smtp_server_new(&set, &stub_ops, &st);
	smtp_server_start(s);
	const char *in = TX_C "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n";
	size_t used = smtp_server_feed(s, (const uint8_t *)in, strlen(in));
	assert_int_equal(used, strlen(in));
	assert_int_equal(smtp_server_want(s), PROTO_WANT_PENDING);
	smtp_server_timeout(s);
	assert_null(strstr(buf_cstr(&st.log), "abort"));
	assert_int_equal(smtp_server_want(s), PROTO_WANT_CLOSE);
	smtp_server_free(&s);
	buf_deinit(&st.log);
}

/* ---- AUTH (RFC 4954) -------------------------------------------------- */

#define EHLO_AUTH_S                                                                                \
	"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"                     \
	"250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n"    \
	"250 DSN\r\n"
#define PLAIN_OK "AHVAeC50ZXN0AHB3"  /* "\0u@x.test\0pw" */
#define PLAIN_BAD "AHVAeC50ZXN0AG5v" /* "\0u@x.test\0no" */
#define AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define AUTH_BAD "535 5.7.8 Authentication credentials invalid\r\n"

static void test_auth(void **state)
{
	(void)state;
	static const struct scenario sc[] = {
		{ .name = "submission: 530 until AUTH, then mail flows",
		  .auth = true, .auth_plaintext = true, .auth_required = true,
		  .steps = { { EHLO_C "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
				      "VRFY x\r\nNOOP\r\nAUTH PLAIN " PLAIN_OK "\r\n"
				      "MAIL FROM:<a@x.test>\r\nQUIT\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "530 5.7.0 Authentication required\r\n"
			      "530 5.7.0 Authentication required\r\n"
			      "530 5.7.0 Authentication required\r\n"
			      "530 5.7.0 Authentication required\r\n"
			      "250 2.0.0 Ok\r\n" AUTH_OK "250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n" },
		{ .name = "pending password check holds the pipeline",
		  .auth = true, .auth_plaintext = true, .auth_required = true,
		  .cfg = { .pend_auth = true },
		  .steps = { { EHLO_C "AUTH PLAIN " PLAIN_OK "\r\nMAIL FROM:<a@x.test>\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S AUTH_OK "250 2.1.0 Ok\r\n",
		  .want_log = EHLO_L "auth PLAIN u@x.test pw\n"
				     "mail <a@x.test> size=0 body=0 utf8=0\n" },
		{ .name = "wrong password, pending: 535 and still 530",
		  .auth = true, .auth_plaintext = true, .auth_required = true,
		  .cfg = { .pend_auth = true },
		  .steps = { { EHLO_C "AUTH PLAIN " PLAIN_BAD "\r\nMAIL FROM:<a@x.test>\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S AUTH_BAD "530 5.7.0 Authentication required\r\n" },
		{ .name = "challenge and response, empty 334",
		  .auth = true, .auth_plaintext = true,
		  .steps = { { EHLO_C "AUTH plain\r\n" PLAIN_OK "\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "334 \r\n" AUTH_OK },
		{ .name = "LOGIN",
		  .auth = true, .auth_plaintext = true,
		  .steps = { { EHLO_C "AUTH LOGIN\r\ndUB4LnRlc3Q=\r\ncHc=\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" AUTH_OK,
		  .want_log = EHLO_L "auth LOGIN u@x.test pw\n" },
		{ .name = "LOGIN with an initial response",
		  .auth = true, .auth_plaintext = true,
		  .steps = { { EHLO_C "AUTH LOGIN dUB4LnRlc3Q=\r\ncHc=\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "334 UGFzc3dvcmQ6\r\n" AUTH_OK },
		{ .name = "cancel, bad base64, '=' for PLAIN, wrong password",
		  .auth = true, .auth_plaintext = true,
		  .steps = { { EHLO_C "AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nA===\r\n"
				      "AUTH PLAIN !!!!\r\nAUTH PLAIN =\r\nAUTH PLAIN " PLAIN_BAD "\r\n"
				      "AUTH LOGIN\r\n*\r\nNOOP\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "334 \r\n501 5.0.0 Authentication aborted\r\n"
			      "334 \r\n501 5.5.2 Invalid base64 data\r\n"
			      "501 5.5.2 Invalid base64 data\r\n"
			      "501 5.5.2 Invalid authentication exchange\r\n" AUTH_BAD
			      "334 VXNlcm5hbWU6\r\n501 5.0.0 Authentication aborted\r\n"
			      "250 2.0.0 Ok\r\n" },
		{ .name = "state rules: EHLO first, once only, not in a transaction",
		  .auth = true, .auth_plaintext = true, .max_errors = 20,
		  .steps = { { "HELO c\r\nAUTH PLAIN " PLAIN_OK "\r\n" EHLO_C
			       "MAIL FROM:<a@x.test>\r\nAUTH PLAIN " PLAIN_OK "\r\nRSET\r\n"
			       "AUTH PLAIN " PLAIN_OK "\r\nAUTH PLAIN " PLAIN_OK "\r\n"
			       "AUTH\r\nAUTH CRAM-MD5\r\n" } },
		  .want_out = GREETING "250 mx.test\r\n503 5.5.1 Error: send EHLO first\r\n" EHLO_AUTH_S
			      "250 2.1.0 Ok\r\n503 5.5.1 Error: MAIL transaction in progress\r\n"
			      "250 2.0.0 Ok\r\n" AUTH_OK
			      "503 5.5.1 Error: already authenticated\r\n"
			      "503 5.5.1 Error: already authenticated\r\n"
			      "503 5.5.1 Error: already authenticated\r\n" },
		{ .name = "unknown mechanism and missing argument",
		  .auth = true, .auth_plaintext = true,
		  .steps = { { EHLO_C "AUTH CRAM-MD5\r\nAUTH\r\nAUTH SCRAM-SHA-256\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "504 5.5.4 Unrecognized authentication type\r\n"
			      "501 5.5.4 Syntax: AUTH mechanism [response]\r\n"
			      /* the stub has no scram_creds: not offered */
			      "504 5.5.4 Unrecognized authentication type\r\n" },
		{ .name = "no plaintext without TLS: not offered, 504",
		  .auth = true, .auth_required = true,
		  .steps = { { EHLO_C "AUTH PLAIN " PLAIN_OK "\r\nAUTH LOGIN\r\n" } },
		  .want_out = GREETING
			      "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
			      "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n"
			      "504 5.5.4 Error: mechanism requires TLS (use STARTTLS)\r\n"
			      "504 5.5.4 Error: mechanism requires TLS (use STARTTLS)\r\n" },
		{ .name = "plaintext under implicit TLS",
		  .auth = true, .auth_required = true, .tls = true,
		  .steps = { { EHLO_C "AUTH PLAIN " PLAIN_OK "\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S AUTH_OK },
		{ .name = "STARTTLS forgets an earlier AUTH",
		  .auth = true, .auth_plaintext = true, .auth_required = true, .starttls = true,
		  .steps = { { EHLO_C "AUTH PLAIN " PLAIN_OK "\r\nSTARTTLS\r\n", 0, EV_TLS },
			     { EHLO_C "MAIL FROM:<a@x.test>\r\n" } },
		  .want_out = GREETING
			      "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
			      "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n"
			      "250-SMTPUTF8\r\n250-CHUNKING\r\n250 DSN\r\n" AUTH_OK
			      "220 2.0.0 Ready to start TLS\r\n" EHLO_AUTH_S
			      "530 5.7.0 Authentication required\r\n" },
		{ .name = "BDAT before AUTH: chunk skipped, then 530",
		  .auth = true, .auth_plaintext = true, .auth_required = true,
		  .steps = { { EHLO_C "BDAT 5 LAST\r\nhelloNOOP\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "530 5.7.0 Authentication required\r\n"
			      "250 2.0.0 Ok\r\n" },
		{ .name = "overlong response line: 500 5.5.6",
		  .auth = true, .auth_plaintext = true, .max_line = 64,
		  .steps = { { EHLO_C "AUTH PLAIN\r\n"
				      "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
				      "QUFBQUFBQUFB\r\nNOOP\r\n" } },
		  .want_out = GREETING EHLO_AUTH_S "334 \r\n"
			      "500 5.5.6 Authentication exchange line is too long\r\n"
			      "250 2.0.0 Ok\r\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
}

/* ---- DSN parameters (RFC 3461) ------------------------------------------- */

static void test_dsn_params(void **state)
{
	(void)state;
	static const struct scenario sc[] = {
		{ .name = "DSN and AUTH= values reach the app decoded",
		  .steps = { { EHLO_C "MAIL FROM:<a@x.test> RET=hdrs ENVID=QQ+2B314 AUTH=<>\r\n"
				      "RCPT TO:<b@y.test> NOTIFY=success,FAILURE,Delay "
				      "ORCPT=rfc822;b+2Bx@y.test\r\n"
				      "RCPT TO:<c@y.test> NOTIFY=NEVER\r\n"
				      "RCPT TO:<d@y.test> ORCPT=utf-8;d@y.test\r\n" } },
		  .want_out = GREETING EHLO_S "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
			      "250 2.1.5 Ok\r\n",
		  .want_log = EHLO_L "mail <a@x.test> size=0 body=0 utf8=0\n"
				     "dsn ret=2 envid=QQ+314 auth=<>\n"
				     "rcpt <b@y.test>\ndsn notify=14 orcpt=rfc822;b+x@y.test\n"
				     "rcpt <c@y.test>\ndsn notify=1 orcpt=-\n"
				     "rcpt <d@y.test>\ndsn notify=0 orcpt=utf-8;d@y.test\n" },
		{ .name = "RET=FULL, AUTH=xtext",
		  .steps = { { EHLO_C "MAIL FROM:<> RET=FULL AUTH=a+40b\r\n" } },
		  .want_out = GREETING EHLO_S "250 2.1.0 Ok\r\n",
		  .want_log = EHLO_L "mail <> size=0 body=0 utf8=0\ndsn ret=1 envid=- auth=a@b\n" },
	};
	check_table(sc, N_ELEMENTS(sc));
	static const struct {
		const char *cmd, *reply;
	} m[] = {
		{ "MAIL FROM:<a@x.test> RET=ALL", "501 5.5.4 Bad RET parameter syntax" },
		{ "MAIL FROM:<a@x.test> RET", "501 5.5.4 Bad RET parameter syntax" },
		{ "MAIL FROM:<a@x.test> RET=FULL RET=HDRS", "501 5.5.4 Error: duplicate parameter" },
		{ "MAIL FROM:<a@x.test> ENVID", "501 5.5.4 Bad ENVID parameter syntax" },
		{ "MAIL FROM:<a@x.test> ENVID=a+zz", "501 5.5.4 Bad ENVID parameter syntax" },
		{ "MAIL FROM:<a@x.test> ENVID=a+0A", "501 5.5.4 Bad ENVID parameter syntax" },
		{ "MAIL FROM:<a@x.test> ENVID=a+", "501 5.5.4 Bad ENVID parameter syntax" },
		{ "MAIL FROM:<a@x.test> ENVID=x ENVID=y", "501 5.5.4 Error: duplicate parameter" },
		{ "MAIL FROM:<a@x.test> ENVID="
		  "0123456789012345678901234567890123456789012345678901234567890123456789"
		  "0123456789012345678901234567890",
		  "501 5.5.4 Bad ENVID parameter syntax" },
		{ "MAIL FROM:<a@x.test> AUTH", "501 5.5.4 Bad AUTH parameter syntax" },
		{ "MAIL FROM:<a@x.test> AUTH=<> AUTH=<>", "501 5.5.4 Error: duplicate parameter" },
	};
	for (size_t i = 0; i < N_ELEMENTS(m); i++) {
		char in[512], out[1024];
		snprintf(in, sizeof in, EHLO_C "%s\r\nNOOP\r\n", m[i].cmd);
		snprintf(out, sizeof out, GREETING EHLO_S "%s\r\n250 2.0.0 Ok\r\n", m[i].reply);
		const struct scenario one = { .name = m[i].cmd, .steps = { { in } }, .want_out = out };
		check_scenario(&one);
	}
	static const struct {
		const char *cmd, *reply;
	} r[] = {
		{ "RCPT TO:<b@y.test> NOTIFY", "501 5.5.4 Bad NOTIFY parameter syntax" },
		{ "RCPT TO:<b@y.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Bad NOTIFY parameter syntax" },
		{ "RCPT TO:<b@y.test> NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 Bad NOTIFY parameter syntax" },
		{ "RCPT TO:<b@y.test> NOTIFY=SUCCESS,", "501 5.5.4 Bad NOTIFY parameter syntax" },
		{ "RCPT TO:<b@y.test> NOTIFY=,DELAY", "501 5.5.4 Bad NOTIFY parameter syntax" },
		{ "RCPT TO:<b@y.test> NOTIFY=SOMETIMES", "501 5.5.4 Bad NOTIFY parameter syntax" },
		{ "RCPT TO:<b@y.test> NOTIFY=DELAY NOTIFY=DELAY", "501 5.5.4 Error: duplicate parameter" },
		{ "RCPT TO:<b@y.test> ORCPT=rfc822", "501 5.5.4 Bad ORCPT parameter syntax" },
		{ "RCPT TO:<b@y.test> ORCPT=;b@y.test", "501 5.5.4 Bad ORCPT parameter syntax" },
		{ "RCPT TO:<b@y.test> ORCPT=rfc822;", "501 5.5.4 Bad ORCPT parameter syntax" },
		{ "RCPT TO:<b@y.test> ORCPT=rf.c;b@y.test", "501 5.5.4 Bad ORCPT parameter syntax" },
		{ "RCPT TO:<b@y.test> ORCPT=rfc822;b+00@y.test", "501 5.5.4 Bad ORCPT parameter syntax" },
		{ "RCPT TO:<b@y.test> ORCPT=rfc822;a ORCPT=rfc822;b", "501 5.5.4 Error: duplicate parameter" },
	};
	for (size_t i = 0; i < N_ELEMENTS(r); i++) {
		char in[512], out[1024];
		snprintf(in, sizeof in, TX_C "%s\r\nNOOP\r\n", r[i].cmd);
		snprintf(out, sizeof out, TX_S "%s\r\n250 2.0.0 Ok\r\n", r[i].reply);
		const struct scenario one = { .name = r[i].cmd, .steps = { { in } }, .want_out = out };
		check_scenario(&one);
	}
	/* HELO clients use no extensions (RFC 5321 2.2.1) */
	const struct scenario helo = {
		.name = "DSN after HELO",
		.steps = { { "HELO c\r\nMAIL FROM:<a@x.test> RET=FULL\r\nMAIL FROM:<a@x.test>\r\n"
			     "RCPT TO:<b@y.test> NOTIFY=NEVER\r\n" } },
		.want_out = GREETING "250 mx.test\r\n555 5.5.4 Error: parameters need EHLO: RET\r\n"
			    "250 2.1.0 Ok\r\n555 5.5.4 Error: parameters need EHLO: NOTIFY\r\n",
	};
	check_scenario(&helo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_review_fixes),
		cmocka_unit_test(test_output_is_bounded),
		cmocka_unit_test(test_timeout_while_committing),
		cmocka_unit_test(test_seed_transcript),
		cmocka_unit_test(test_ehlo),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_pending_stops_pipeline),
		cmocka_unit_test(test_data_content),
		cmocka_unit_test(test_smuggling),
		cmocka_unit_test(test_long_data_line),
		cmocka_unit_test(test_data_limits),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_sequence_errors),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_paths_reach_app),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_starttls),
		cmocka_unit_test(test_timeout_shutdown),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_dsn_params),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
