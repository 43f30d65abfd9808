/* SPDX-License-Identifier: MIT */
/* The SMTP client engine against fake server transcripts, and its reply
 * parser on its own. Each scenario is a list of steps: server bytes (S:),
 * the exact client bytes expected since the previous check (C:), and caller
 * events (!tls, !eof, !timeout, !abort, !content). A stub application sends
 * the scenario's messages in turn (on ready() and msg_done()), then QUIT, and
 * logs every callback. Every scenario runs with the server bytes fed whole,
 * byte by byte and at seeded random split points, with the content pushed in
 * matching chunks; the wire bytes and the log must match every time. */
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
#include "proto/smtp/smtp_client.h"
#include "proto/smtp/smtp_server.h"

/* ---- scenarios -------------------------------------------------------------- */

struct tmsg {
	struct smtp_client_msg m;
	const char *content;
	bool defer; /* content only at a "!content" step */
};

struct scenario {
	const char *name;
	struct smtp_client_settings set;
	const struct tmsg *msgs;
	size_t nmsgs;
	bool no_quit;
	const char *const *steps;
	const char *log;
	enum proto_want want_end;
};

/* M_SPLIT feeds every chunk as two pieces, the first rng bytes long. */
enum mode { M_WHOLE, M_BYTE, M_RANDOM, M_SPLIT };

struct app {
	const struct scenario *sc;
	size_t next;
	const struct tmsg *cur;
	struct buf log;
	enum mode mode;
	uint32_t rng;
};

static uint32_t rnd(struct app *a)
{
	a->rng = a->rng * 1103515245u + 12345u;
	return a->rng >> 16;
}

static const char *st_name(enum smtp_client_status s)
{
	return s == SMTP_CLIENT_OK ? "OK" : s == SMTP_CLIENT_TEMP ? "TEMP" : "PERM";
}

static const char *stage_name(enum smtp_client_stage s)
{
	static const char *const n[] = {"CONNECT", "MAIL",  "RCPT", "DATA",
					"CONTENT", "LOCAL", "QUIT"};
	return n[s];
}

static void log_result(struct app *a, const char *what, const struct smtp_client_result *r)
{
	buf_xprintf(&a->log, "%s %s %s %d %s ", what, st_name(r->status), stage_name(r->stage),
		    r->code, r->esc[0] ? r->esc : "-");
	for (const char *p = r->text; *p; p++)
		buf_xappend(&a->log, *p == '\n' ? "|" : p, 1);
	buf_xappend(&a->log, "\n", 1);
}

static void next_msg(struct app *a, struct smtp_client *c)
{
	if (a->next < a->sc->nmsgs) {
		a->cur = &a->sc->msgs[a->next++];
		smtp_client_send(c, &a->cur->m);
	} else if (!a->sc->no_quit) {
		smtp_client_quit(c);
	}
}

static void push_content(struct app *a, struct smtp_client *c)
{
	const uint8_t *p = (const uint8_t *)a->cur->content;
	size_t n = strlen(a->cur->content), off = 0;
	while (off < n) {
		size_t k = n - off;
		if (a->mode == M_BYTE)
			k = 1;
		else if (a->mode == M_RANDOM)
			k = 1 + rnd(a) % 7;
		else if (a->mode == M_SPLIT && off == 0)
			k = a->rng;
		if (k > n - off)
			k = n - off;
		smtp_client_content(c, p + off, k);
		off += k;
	}
	smtp_client_content_end(c);
}

static void a_ready(void *ctx, struct smtp_client *c)
{
	struct app *a = ctx;
	buf_xprintf(&a->log, "ready tls=%d auth=%d esmtp=%d\n", smtp_client_is_tls(c),
		    smtp_client_is_authenticated(c), smtp_client_is_esmtp(c));
	next_msg(a, c);
}

static void a_rcpt(void *ctx, struct smtp_client *c, size_t idx, const struct smtp_client_result *r)
{
	(void)c;
	char what[32];
	snprintf(what, sizeof what, "rcpt %zu", idx);
	log_result(ctx, what, r);
}

static void a_content(void *ctx, struct smtp_client *c)
{
	struct app *a = ctx;
	buf_xprintf(&a->log, "content\n");
	assert_true(smtp_client_wants_content(c));
	if (!a->cur->defer)
		push_content(a, c);
}

static void a_done(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	struct app *a = ctx;
	log_result(a, "done", r);
	if (smtp_client_is_ready(c))
		next_msg(a, c);
}

static void a_failed(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	log_result(ctx, "failed", r);
	assert_int_equal(smtp_client_want(c), PROTO_WANT_CLOSE);
}

static const struct smtp_client_ops aops = {
    .ready = a_ready,
    .rcpt_done = a_rcpt,
    .content_wanted = a_content,
    .msg_done = a_done,
    .failed = a_failed,
};

static void feed(struct app *a, struct smtp_client *c, const char *s)
{
	size_t n = strlen(s), off = 0;
	while (off < n) {
		size_t k = n - off;
		if (a->mode == M_BYTE)
			k = 1;
		else if (a->mode == M_RANDOM)
			k = 1 + rnd(a) % 13;
		else if (a->mode == M_SPLIT && off == 0)
			k = a->rng;
		if (k > n - off)
			k = n - off;
		/* an exact-size copy so ASan sees over-reads */
		uint8_t *copy = xmalloc(k);
		memcpy(copy, s + off, k);
		assert_int_equal(smtp_client_feed(c, copy, k), k);
		free(copy);
		off += k;
	}
}

static void run(const struct scenario *sc, enum mode mode, uint32_t seed)
{
	struct app a = {.sc = sc, .mode = mode, .rng = seed};
	buf_init(&a.log, 0);
	struct smtp_client_settings set = sc->set;
	if (!set.helo_name)
		set.helo_name = "client.test";
	struct smtp_client *c = smtp_client_new(&set, &aops, &a);
	struct buf *out = smtp_client_output(c);
	for (const char *const *st = sc->steps; *st; st++) {
		const char *s = *st;
		if (strncmp(s, "S:", 2) == 0) {
			feed(&a, c, s + 2);
		} else if (strncmp(s, "C:", 2) == 0) {
			if (out->len != strlen(s + 2) ||
			    (out->len && memcmp(out->data, s + 2, out->len) != 0))
				fail_msg("%s mode %d step %zu: client sent\n[%s]\nwant\n[%s]",
					 sc->name, (int)mode, (size_t)(st - sc->steps),
					 buf_cstr(out), s + 2);
			buf_clear(out);
		} else if (strcmp(s, "!tls") == 0) {
			assert_int_equal(smtp_client_want(c), PROTO_WANT_STARTTLS);
			smtp_client_tls_started(c);
		} else if (strcmp(s, "!eof") == 0) {
			smtp_client_eof(c);
		} else if (strcmp(s, "!timeout") == 0) {
			smtp_client_timeout(c);
		} else if (strcmp(s, "!abort") == 0) {
			smtp_client_abort(c, "local failure");
		} else if (strcmp(s, "!content") == 0) {
			push_content(&a, c);
		} else {
			fail_msg("bad step %s", s);
		}
	}
	if (out->len != 0)
		fail_msg("%s mode %d: unchecked client output [%s]", sc->name, (int)mode,
			 buf_cstr(out));
	if (strcmp(buf_cstr(&a.log), sc->log) != 0)
		fail_msg("%s mode %d: log\n%s\nwant\n%s", sc->name, (int)mode, buf_cstr(&a.log),
			 sc->log);
	assert_int_equal(smtp_client_want(c), sc->want_end);
	smtp_client_free(&c);
	assert_null(c);
	buf_deinit(&a.log);
}

static void run_all_modes(const struct scenario *sc)
{
	run(sc, M_WHOLE, 0);
	run(sc, M_BYTE, 0);
	for (uint32_t seed = 1; seed <= 4; seed++)
		run(sc, M_RANDOM, seed);
	/* every split point of every server write (and of the content) */
	size_t longest = 0;
	for (const char *const *st = sc->steps; *st; st++)
		if (strlen(*st) > longest)
			longest = strlen(*st);
	for (uint32_t k = 1; k < longest; k++)
		run(sc, M_SPLIT, k);
}

/* ---- transcripts -------------------------------------------------------------- */

#define GREET "S:220 mx.test ESMTP\r\n"
#define EHLO  "C:EHLO client.test\r\n"
#define EHLO_FULL                                                                       \
	"S:250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n" \
	"250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"
#define EHLO_NOPIPE "S:250-mx.test\r\n250-8BITMIME\r\n250 SIZE\r\n"
#define QUIT	    "C:QUIT\r\n", "S:221 2.0.0 Bye\r\n"

static const struct smtp_client_rcpt r_bc[] = {{"b@mx.test", NULL, NULL},
					       {"c@mx.test", NULL, NULL}};
static const struct smtp_client_rcpt r_b[] = {{"b@mx.test", NULL, NULL}};
static const struct smtp_client_rcpt r_bcd[] = {
    {"b@mx.test", NULL, NULL}, {"c@mx.test", NULL, NULL}, {"d@mx.test", NULL, NULL}};
static const struct smtp_client_rcpt r_notify[] = {{"b@mx.test", "FAILURE", NULL}};
static const struct smtp_client_rcpt r_utf8[] = {{"j\xc3\xb6rg@mx.test", NULL, NULL}};

static const struct tmsg m_simple[] = {
    {{"a@c.test", r_bc, 2, 18, false, false, NULL, NULL}, "Subject: x\n\nhello\n", false},
};
static const struct tmsg m_one[] = {
    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "hi\n", false},
};

static void t_plain_pipelining(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> SIZE=18\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n"
	    "DATA\r\n",
	    "S:250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
	    "<CR><LF>.<CR><LF>\r\n",
	    "C:Subject: x\r\n\r\nhello\r\n.\r\n",
	    "S:250 2.0.0 Ok: queued as 12345\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "plain_pipelining",
	    .msgs = m_simple,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 2.0.0 2.0.0 Ok: queued as 12345\n"
		   "rcpt 1 OK CONTENT 250 2.0.0 2.0.0 Ok: queued as 12345\n"
		   "done OK CONTENT 250 2.0.0 2.0.0 Ok: queued as 12345\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static const char *const steps_nopipe[] = {
    GREET,
    EHLO,
    EHLO_NOPIPE,
    "C:MAIL FROM:<a@c.test>\r\n", /* "250 SIZE" without a value: size 0 is not sent */
    "S:250 2.1.0 Ok\r\n",
    "C:RCPT TO:<b@mx.test>\r\n",
    "S:250 2.1.5 Ok\r\n",
    "C:RCPT TO:<c@mx.test>\r\n",
    "S:250 2.1.5 Ok\r\n",
    "C:DATA\r\n",
    "S:354 go ahead\r\n",
    "C:Subject: x\r\n\r\nhello\r\n.\r\n",
    "S:250 Ok\r\n",
    QUIT,
    NULL,
};
static const char log_nopipe[] = "ready tls=0 auth=0 esmtp=1\n"
				 "content\n"
				 "rcpt 0 OK CONTENT 250 - Ok\n"
				 "rcpt 1 OK CONTENT 250 - Ok\n"
				 "done OK CONTENT 250 - Ok\n";

static void t_plain_no_pipelining(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    {{"a@c.test", r_bc, 2, 0, false, false, NULL, NULL}, "Subject: x\n\nhello\n", false},
	};
	static const struct scenario sc = {
	    .name = "no_pipelining",
	    .msgs = m,
	    .nmsgs = 1,
	    .steps = steps_nopipe,
	    .log = log_nopipe,
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_pipelining_disabled(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> SIZE=18\r\n",
	    "S:250 2.1.0 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 2.1.5 Ok\r\n",
	    "C:RCPT TO:<c@mx.test>\r\n",
	    "S:550 5.1.1 No such user\r\n",
	    "C:DATA\r\n",
	    "S:354 go ahead\r\n",
	    "C:Subject: x\r\n\r\nhello\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "pipelining_disabled",
	    .set = {.no_pipelining = true},
	    .msgs = m_simple,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 No such user\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_starttls_offered(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
	    "C:STARTTLS\r\n",
	    /* bytes after the 220 arrive before the handshake: dropped (RFC 3207 5) */
	    "S:220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 PIPELINING\r\n",
	    "C:",
	    "!tls",
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:hi\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "starttls_offered",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=1 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_starttls_not_offered(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:hi\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "starttls_not_offered",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_starttls_required_missing(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET, EHLO, "S:250-mx.test\r\n250 PIPELINING\r\n", "C:QUIT\r\n", NULL,
	};
	static const struct scenario sc = {
	    .name = "starttls_required_missing",
	    .set = {.tls = SMTP_CLIENT_TLS_REQUIRE},
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "failed TEMP CONNECT 0 4.7.0 TLS is required but the server does not offer "
		   "STARTTLS\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_starttls_refused(void **state)
{
	(void)state;
	/* required: a 454 fails the connection */
	static const char *const steps_req[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 STARTTLS\r\n",
	    "C:STARTTLS\r\n",
	    "S:454 4.7.0 TLS not available\r\n",
	    "C:QUIT\r\n",
	    NULL,
	};
	static const struct scenario req = {
	    .name = "starttls_required_454",
	    .set = {.tls = SMTP_CLIENT_TLS_REQUIRE},
	    .steps = steps_req,
	    .log = "failed TEMP CONNECT 454 4.7.0 4.7.0 TLS not available\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&req);
	/* opportunistic: carry on in plaintext */
	static const char *const steps_opp[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 STARTTLS\r\n",
	    "C:STARTTLS\r\n",
	    "S:454 4.7.0 TLS not available\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:hi\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario opp = {
	    .name = "starttls_opportunistic_454",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_opp,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&opp);
	/* never: STARTTLS offered but not used */
	static const char *const steps_never[] = {
	    GREET, EHLO, "S:250-mx.test\r\n250 STARTTLS\r\n", "C:QUIT\r\n", "S:221 Bye\r\n", NULL,
	};
	static const struct scenario never = {
	    .name = "starttls_never",
	    .set = {.tls = SMTP_CLIENT_TLS_NEVER},
	    .steps = steps_never,
	    .log = "ready tls=0 auth=0 esmtp=1\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&never);
	/* the handshake fails (the caller aborts) or the peer hangs up instead */
	static const char *const steps_hs[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 STARTTLS\r\n",
	    "C:STARTTLS\r\n",
	    "S:220 go\r\n",
	    "!abort",
	    "C:",
	    NULL,
	};
	static const struct scenario hs = {
	    .name = "tls_handshake_failed",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_hs,
	    .log = "failed TEMP CONNECT 0 4.3.0 local failure\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&hs);
	static const char *const steps_hup[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 STARTTLS\r\n",
	    "C:STARTTLS\r\n",
	    "S:220 go\r\n",
	    "!eof",
	    "C:",
	    NULL,
	};
	static const struct scenario hup = {
	    .name = "tls_handshake_eof",
	    .steps = steps_hup,
	    .log = "failed TEMP CONNECT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for the TLS handshake\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&hup);
}

static void t_starttls_required_ok_then_auth(void **state)
{
	(void)state;
	/* smarthost: TLS required, then AUTH PLAIN (preferred over LOGIN) */
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-relay.test\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n",
	    "C:STARTTLS\r\n",
	    "S:220 Go\r\n",
	    "!tls",
	    EHLO,
	    "S:250-relay.test\r\n250-PIPELINING\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n",
	    "C:AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
	    "S:235 2.7.0 Authentication successful\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:hi\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "smarthost_auth_plain",
	    .set = {.tls = SMTP_CLIENT_TLS_REQUIRE, .auth_user = "user", .auth_pass = "secret"},
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=1 auth=1 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_auth_login(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-relay.test\r\n250 AUTH=LOGIN\r\n",
	    "C:AUTH LOGIN\r\n",
	    "S:334 VXNlcm5hbWU6\r\n",
	    "C:dXNlcg==\r\n",
	    "S:334 UGFzc3dvcmQ6\r\n",
	    "C:c2VjcmV0\r\n",
	    "S:235 Ok\r\n",
	    "C:QUIT\r\n",
	    "S:221 Bye\r\n",
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "auth_login_implicit_tls",
	    .set = {.tls_active = true, .auth_user = "user", .auth_pass = "secret"},
	    .steps = steps,
	    .log = "ready tls=1 auth=1 esmtp=1\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_auth_failures(void **state)
{
	(void)state;
	static const char *const steps_535[] = {
	    GREET,
	    EHLO,
	    "S:250-relay.test\r\n250 AUTH PLAIN\r\n",
	    "C:AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
	    "S:535 5.7.8 Authentication credentials invalid\r\n",
	    "C:QUIT\r\n",
	    NULL,
	};
	static const struct scenario s535 = {
	    .name = "auth_535",
	    .set = {.tls_active = true, .auth_user = "user", .auth_pass = "secret"},
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_535,
	    .log = "failed PERM CONNECT 535 5.7.8 5.7.8 Authentication credentials invalid\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&s535);
	/* no TLS and plaintext AUTH not allowed: never send the password */
	static const char *const steps_plain[] = {
	    GREET, EHLO, "S:250-relay.test\r\n250 AUTH PLAIN\r\n", "C:QUIT\r\n", NULL,
	};
	static const struct scenario sp = {
	    .name = "auth_needs_tls",
	    .set = {.tls = SMTP_CLIENT_TLS_NEVER, .auth_user = "user", .auth_pass = "secret"},
	    .steps = steps_plain,
	    .log = "failed TEMP CONNECT 0 4.7.0 AUTH refused: the connection is not encrypted\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sp);
	/* plaintext allowed */
	static const char *const steps_ok[] = {
	    GREET,
	    EHLO,
	    "S:250-relay.test\r\n250 AUTH PLAIN\r\n",
	    "C:AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
	    "S:235 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sok = {
	    .name = "auth_plaintext_allowed",
	    .set = {.auth_user = "user", .auth_pass = "secret", .auth_plaintext = true},
	    .steps = steps_ok,
	    .log = "ready tls=0 auth=1 esmtp=1\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sok);
	/* no common mechanism */
	static const char *const steps_mech[] = {
	    GREET, EHLO, "S:250-relay.test\r\n250 AUTH CRAM-MD5\r\n", "C:QUIT\r\n", NULL,
	};
	static const struct scenario sm = {
	    .name = "auth_no_mech",
	    .set = {.tls_active = true, .auth_user = "user", .auth_pass = "secret"},
	    .steps = steps_mech,
	    .log = "failed TEMP CONNECT 0 4.7.0 AUTH needed but the server offers neither PLAIN "
		   "nor LOGIN\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sm);
}

static void t_rcpt_mixed(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    {{"a@c.test", r_bcd, 3, 0, false, false, NULL, NULL}, "x\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n"
	    "RCPT TO:<d@mx.test>\r\nDATA\r\n",
	    "S:250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.1 Mailbox busy\r\n"
	    "550-5.1.1 No such user\r\n550 5.1.1 (see the docs)\r\n354 go\r\n",
	    "C:x\r\n.\r\n",
	    "S:250 2.0.0 queued\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "rcpt_mixed",
	    .msgs = m,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 1 TEMP RCPT 450 4.2.1 4.2.1 Mailbox busy\n"
		   "rcpt 2 PERM RCPT 550 5.1.1 5.1.1 No such user|5.1.1 (see the docs)\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 2.0.0 2.0.0 queued\n"
		   "done OK CONTENT 250 2.0.0 2.0.0 queued\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_rcpt_552(void **state)
{
	(void)state;
	/* RFC 5321 4.5.3.1.10: 552 to RCPT means too many recipients: temporary */
	static const struct tmsg m[] = {
	    {{"a@c.test", r_bcd, 3, 0, false, false, NULL, NULL}, "x\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n"
	    "RCPT TO:<d@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n452 4.5.3 Too many recipients\r\n552 Too many recipients\r\n"
	    "354 go\r\n",
	    "C:x\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "rcpt_552",
	    .msgs = m,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 1 TEMP RCPT 452 4.5.3 4.5.3 Too many recipients\n"
		   "rcpt 2 TEMP RCPT 552 - Too many recipients\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_data_failures(void **state)
{
	(void)state;
	/* DATA 451 for the first message (RSET before the next), final 554 for the second */
	static const struct tmsg m[] = {
	    {{"a@c.test", r_bc, 2, 0, false, false, NULL, NULL}, "one\n", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "two\n", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "three\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n550 5.1.1 Unknown\r\n451 4.3.0 Try later\r\n",
	    "C:RSET\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:two\r\n.\r\n",
	    "S:554 5.6.0 Content rejected\r\n",
	    "C:RSET\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:three\r\n.\r\n",
	    "S:452 4.3.1 Out of space\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "data_failures",
	    .msgs = m,
	    .nmsgs = 3,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 Unknown\n"
		   "rcpt 0 TEMP DATA 451 4.3.0 4.3.0 Try later\n"
		   "done TEMP DATA 451 4.3.0 4.3.0 Try later\n"
		   "content\n"
		   "rcpt 0 PERM CONTENT 554 5.6.0 5.6.0 Content rejected\n"
		   "done PERM CONTENT 554 5.6.0 5.6.0 Content rejected\n"
		   "content\n"
		   "rcpt 0 TEMP CONTENT 452 4.3.1 4.3.1 Out of space\n"
		   "done TEMP CONTENT 452 4.3.1 4.3.1 Out of space\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_greeting_554(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    "S:554-mx.test No SMTP service here\r\n554 5.7.1 Go away\r\n",
	    "C:QUIT\r\n",
	    "S:221 Bye\r\n", /* dropped: the engine already gave up */
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "greeting_554",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "failed PERM CONNECT 554 - mx.test No SMTP service here|5.7.1 Go away\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_ehlo_502_helo(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    /* DSN and SIZE asked for, but HELO means no extensions at all */
	    {{"a@c.test", r_notify, 1, 99, false, false, "HDRS", "id1"}, "hi\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:502 5.5.1 Command not implemented\r\n",
	    "C:HELO client.test\r\n",
	    "S:250 mx.test\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:hi\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "ehlo_502_helo",
	    .msgs = m,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=0\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
	/* HELO refused too */
	static const char *const steps2[] = {
	    GREET,	  EHLO, "S:500 What?\r\n", "C:HELO client.test\r\n", "S:501 No\r\n",
	    "C:QUIT\r\n", NULL,
	};
	static const struct scenario sc2 = {
	    .name = "helo_refused",
	    .steps = steps2,
	    .log = "failed PERM CONNECT 501 - No\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc2);
}

static void t_8bit_to_7bit_peer(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    {{"a@c.test", r_bc, 2, 0, true, false, NULL, NULL}, "caf\xc3\xa9\n", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "plain\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-old.test\r\n250 PIPELINING\r\n",
	    /* nothing for the 8-bit message; the 7-bit one goes */
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:plain\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "8bit_to_7bit_peer",
	    .msgs = m,
	    .nmsgs = 2,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 PERM LOCAL 0 5.6.3 Message has 8-bit content but the remote server "
		   "does not support 8BITMIME\n"
		   "rcpt 1 PERM LOCAL 0 5.6.3 Message has 8-bit content but the remote server "
		   "does not support 8BITMIME\n"
		   "done PERM LOCAL 0 5.6.3 Message has 8-bit content but the remote server "
		   "does not support 8BITMIME\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
	/* 8BITMIME offered: BODY=8BITMIME and the octets go through untouched */
	static const char *const steps_ok[] = {
	    GREET,
	    EHLO,
	    "S:250-new.test\r\n250 8BITMIME\r\n",
	    "C:MAIL FROM:<a@c.test> BODY=8BITMIME\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<c@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:caf\xc3\xa9\r\n.\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:plain\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario ok = {
	    .name = "8bit_to_8bitmime_peer",
	    .msgs = m,
	    .nmsgs = 2,
	    .steps = steps_ok,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "rcpt 1 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&ok);
}

static void t_smtputf8(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    {{"a@c.test", r_utf8, 1, 0, true, false, NULL, NULL}, "x\n", false},
	    {{"a@c.test", r_b, 1, 0, false, true, NULL, NULL}, "y\n", false},
	};
	static const char *const steps_missing[] = {
	    GREET, EHLO, "S:250-mx.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n", QUIT, NULL,
	};
	static const struct scenario missing = {
	    .name = "smtputf8_missing",
	    .msgs = m,
	    .nmsgs = 2,
	    .steps = steps_missing,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 PERM LOCAL 0 5.6.7 Message needs SMTPUTF8 but the remote server does "
		   "not support it\n"
		   "done PERM LOCAL 0 5.6.7 Message needs SMTPUTF8 but the remote server does "
		   "not support it\n"
		   "rcpt 0 PERM LOCAL 0 5.6.7 Message needs SMTPUTF8 but the remote server does "
		   "not support it\n"
		   "done PERM LOCAL 0 5.6.7 Message needs SMTPUTF8 but the remote server does "
		   "not support it\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&missing);
	static const char *const steps_ok[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@mx.test>\r\n"
	    "DATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:x\r\n.\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<a@c.test> SMTPUTF8\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:y\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario ok = {
	    .name = "smtputf8_ok",
	    .msgs = m,
	    .nmsgs = 2,
	    .steps = steps_ok,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&ok);
}

static void t_reuse_three(void **state)
{
	(void)state;
	/* three messages on one connection; the second has no recipient accepted
	 * and the server still answers DATA with 354 (RFC 2920 3.1): an empty
	 * message is sent and an RSET precedes the third */
	static const struct tmsg m[] = {
	    {{"a@c.test", r_b, 1, 5, false, false, NULL, NULL}, "one\n", false},
	    {{"", r_bc, 2, 5, false, false, NULL, NULL}, "two\n", false},
	    {{"x@c.test", r_bc, 2, 7, false, false, NULL, NULL}, "three\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> SIZE=5\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:one\r\n.\r\n",
	    "S:250 2.0.0 first\r\n",
	    "C:MAIL FROM:<> SIZE=5\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n550 5.1.1 no b\r\n550 5.1.1 no c\r\n354 go\r\n",
	    "C:.\r\n",
	    "S:554 5.5.1 No valid recipients\r\n",
	    "C:RSET\r\nMAIL FROM:<x@c.test> SIZE=7\r\nRCPT TO:<b@mx.test>\r\nRCPT "
	    "TO:<c@mx.test>\r\n"
	    "DATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:three\r\n.\r\n",
	    "S:250 2.0.0 third\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "reuse_three",
	    .msgs = m,
	    .nmsgs = 3,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 2.0.0 2.0.0 first\n"
		   "done OK CONTENT 250 2.0.0 2.0.0 first\n"
		   "rcpt 0 PERM RCPT 550 5.1.1 5.1.1 no b\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 no c\n"
		   "done PERM RCPT 0 5.0.0 No recipient was accepted\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 2.0.0 2.0.0 third\n"
		   "rcpt 1 OK CONTENT 250 2.0.0 2.0.0 third\n"
		   "done OK CONTENT 250 2.0.0 2.0.0 third\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
	/* the same without pipelining: no DATA when nobody was accepted */
	static const char *const steps_np[] = {
	    GREET,
	    EHLO,
	    "S:250 mx.test\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:one\r\n.\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:450 4.2.0 greylisted\r\n",
	    "C:RCPT TO:<c@mx.test>\r\n",
	    "S:550 5.1.1 no c\r\n",
	    "C:RSET\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<x@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<c@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:three\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario np = {
	    .name = "reuse_three_no_pipelining",
	    .msgs = m,
	    .nmsgs = 3,
	    .steps = steps_np,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n"
		   "rcpt 0 TEMP RCPT 450 4.2.0 4.2.0 greylisted\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 no c\n"
		   "done TEMP RCPT 0 4.0.0 No recipient was accepted\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "rcpt 1 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&np);
}

static void t_dot_stuffing(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    /* leading dots, a lone dot line, CRLF already present, a bare CR,
	     * and no final LF */
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL},
	     ".hidden\n..two\n.\nmid.dle\n\n.\r\nbare\rcr\n.end",
	     false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "\n\n.", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "cr at end\r", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:..hidden\r\n...two\r\n..\r\nmid.dle\r\n\r\n..\r\nbare\r\ncr\r\n..end\r\n.\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:.\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:\r\n\r\n..\r\n.\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:cr at end\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "dot_stuffing",
	    .msgs = m,
	    .nmsgs = 4,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\nrcpt 0 OK CONTENT 250 - Ok\ndone OK CONTENT 250 - Ok\n"
		   "content\nrcpt 0 OK CONTENT 250 - Ok\ndone OK CONTENT 250 - Ok\n"
		   "content\nrcpt 0 OK CONTENT 250 - Ok\ndone OK CONTENT 250 - Ok\n"
		   "content\nrcpt 0 OK CONTENT 250 - Ok\ndone OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
}

static void t_peer_closes(void **state)
{
	(void)state;
	/* EOF after MAIL's reply, while RCPT replies are due */
	static const char *const steps_rcpt[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> SIZE=18\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n"
	    "DATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n25", /* a partial reply, then EOF */
	    "!eof",
	    NULL,
	};
	static const struct scenario rcpt = {
	    .name = "eof_during_rcpt",
	    .msgs = m_simple,
	    .nmsgs = 1,
	    .steps = steps_rcpt,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 TEMP RCPT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for RCPT\n"
		   "rcpt 1 TEMP RCPT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for RCPT\n"
		   "done TEMP RCPT 0 4.4.2 Connection closed by the remote server while waiting "
		   "for RCPT\n"
		   "failed TEMP RCPT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for RCPT\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&rcpt);
	/* EOF in the middle of the content: no QUIT may be written */
	static const struct tmsg md[] = {
	    {{"a@c.test", r_bc, 2, 0, false, false, NULL, NULL}, "body\n", true},
	};
	static const char *const steps_content[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n550 5.1.1 no c\r\n354 go\r\n",
	    "C:",
	    "!eof",
	    "C:",
	    NULL,
	};
	static const struct scenario content = {
	    .name = "eof_during_content",
	    .msgs = md,
	    .nmsgs = 1,
	    .steps = steps_content,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 no c\n"
		   "content\n"
		   "rcpt 0 TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for message content\n"
		   "done TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for message content\n"
		   "failed TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for message content\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&content);
	/* content sent, EOF before the final reply: stage CONTENT, code 0 */
	static const char *const steps_dot[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "!content",
	    "C:body\r\n.\r\n",
	    "!eof",
	    NULL,
	};
	static const struct scenario dot = {
	    .name = "eof_before_final_reply",
	    .msgs = md,
	    .nmsgs = 1,
	    .steps = steps_dot,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for end of data\n"
		   "rcpt 1 TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for end of data\n"
		   "done TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for end of data\n"
		   "failed TEMP CONTENT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for end of data\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&dot);
	/* EOF after QUIT is normal; idle EOF (cached connection) is a failure
	 * without a message */
	static const char *const steps_quit[] = {
	    GREET, EHLO, "S:250 mx.test\r\n", "C:QUIT\r\n", "!eof", NULL,
	};
	static const struct scenario quit = {
	    .name = "eof_after_quit",
	    .steps = steps_quit,
	    .log = "ready tls=0 auth=0 esmtp=1\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&quit);
	static const char *const steps_idle[] = {
	    GREET, EHLO, "S:250 mx.test\r\n", "!eof", NULL,
	};
	static const struct scenario idle = {
	    .name = "eof_idle",
	    .no_quit = true,
	    .steps = steps_idle,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "failed TEMP CONNECT 0 4.4.2 Connection closed by the remote server while "
		   "waiting for the next command (idle)\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&idle);
}

static void t_timeout_abort_421(void **state)
{
	(void)state;
	static const char *const steps_to[] = {
	    GREET,
	    EHLO,
	    "S:250 mx.test\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "!timeout",
	    NULL,
	};
	static const struct scenario to = {
	    .name = "timeout_data",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_to,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 TEMP DATA 0 4.4.2 Timeout waiting for DATA\n"
		   "done TEMP DATA 0 4.4.2 Timeout waiting for DATA\n"
		   "failed TEMP DATA 0 4.4.2 Timeout waiting for DATA\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&to);
	static const char *const steps_421[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> SIZE=18\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n"
	    "DATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n421 4.3.2 Shutting down\r\n",
	    NULL,
	};
	static const struct scenario s421 = {
	    .name = "rcpt_421",
	    .msgs = m_simple,
	    .nmsgs = 1,
	    .steps = steps_421,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 TEMP RCPT 421 4.3.2 4.3.2 Shutting down\n"
		   "rcpt 1 TEMP RCPT 421 4.3.2 4.3.2 Shutting down\n"
		   "done TEMP RCPT 421 4.3.2 4.3.2 Shutting down\n"
		   "failed TEMP RCPT 421 4.3.2 4.3.2 Shutting down\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&s421);
	static const struct tmsg md[] = {
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "body\n", true},
	};
	static const char *const steps_abort[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "!abort",
	    "C:",
	    NULL,
	};
	static const struct scenario ab = {
	    .name = "abort_content",
	    .msgs = md,
	    .nmsgs = 1,
	    .steps = steps_abort,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 TEMP CONTENT 0 4.3.0 local failure\n"
		   "done TEMP CONTENT 0 4.3.0 local failure\n"
		   "failed TEMP CONTENT 0 4.3.0 local failure\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&ab);
	/* 421 while idle between messages */
	static const char *const steps_idle[] = {
	    GREET, EHLO, "S:250 mx.test\r\n", "S:421 4.4.2 Idle too long\r\n", "C:", NULL,
	};
	static const struct scenario idle = {
	    .name = "idle_421",
	    .no_quit = true,
	    .steps = steps_idle,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "failed TEMP CONNECT 421 4.4.2 4.4.2 Idle too long\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&idle);
}

static void t_malformed(void **state)
{
	(void)state;
	static const struct {
		const char *server;
		const char *log;
	} cases[] = {
	    {"S:hello\r\n", "failed TEMP CONNECT 0 4.5.0 Protocol error: malformed reply code\n"},
	    {"S:220-mx\r\n250 x\r\n", "failed TEMP CONNECT 0 4.5.0 Protocol error: reply code "
				      "changes within a multiline reply\n"},
	    {"S:220mx\r\n", "failed TEMP CONNECT 0 4.5.0 Protocol error: malformed reply line\n"},
	    {"S:120 x\r\n", "failed TEMP CONNECT 0 4.5.0 Protocol error: malformed reply code\n"},
	    {"S:22\r\n", "failed TEMP CONNECT 0 4.5.0 Protocol error: malformed reply code\n"},
	    {"S:220 ok\r\n250 unsolicited\r\n",
	     "failed TEMP CONNECT 0 4.5.0 Protocol error: unexpected reply\n"},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		const char *steps[] = {cases[i].server, "C:", NULL};
		/* the unsolicited 250 comes after EHLO was sent and answered */
		const char *steps_uns[] = {"S:220 ok\r\n", "C:EHLO client.test\r\n",
					   "S:250 mx\r\n250 unsolicited\r\n", "C:", NULL};
		struct scenario sc = {
		    .name = "malformed",
		    .no_quit = true,
		    .steps = i == 5 ? steps_uns : steps,
		    .log = i == 5 ? "ready tls=0 auth=0 esmtp=1\n"
				    "failed TEMP CONNECT 0 4.5.0 Protocol error: unexpected "
				    "reply\n"
				  : cases[i].log,
		    .want_end = PROTO_WANT_CLOSE,
		};
		run_all_modes(&sc);
	}
	/* a success code where another was due is still a failure */
	static const char *const steps_250[] = {"S:250 2.0.0 hello\r\n", "C:QUIT\r\n", NULL};
	static const struct scenario s250 = {
	    .name = "greeting_250",
	    .steps = steps_250,
	    .log = "failed TEMP CONNECT 250 2.0.0 2.0.0 hello\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&s250);
	static const char *const steps_auth250[] = {GREET,
						    EHLO,
						    "S:250-relay.test\r\n250 AUTH PLAIN\r\n",
						    "C:AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
						    "S:250 whatever\r\n",
						    "C:QUIT\r\n",
						    NULL};
	static const struct scenario sauth = {
	    .name = "auth_250",
	    .set = {.tls_active = true, .auth_user = "user", .auth_pass = "secret"},
	    .steps = steps_auth250,
	    .log = "failed TEMP CONNECT 250 - whatever\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sauth);
	/* over-long line and too many lines (limits lowered), during a message */
	static const char *const steps_long[] = {
	    GREET,
	    EHLO,
	    "S:250 mx.test\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok this line is much too long for the limit\r\n",
	    "C:",
	    NULL,
	};
	static const struct scenario lng = {
	    .name = "line_too_long",
	    .set = {.limits = {.max_line = 32}},
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_long,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 TEMP MAIL 0 4.5.0 Protocol error: reply line too long\n"
		   "done TEMP MAIL 0 4.5.0 Protocol error: reply line too long\n"
		   "failed TEMP MAIL 0 4.5.0 Protocol error: reply line too long\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&lng);
	static const char *const steps_many[] = {
	    GREET, EHLO, "S:250-a\r\n250-b\r\n250-c\r\n250 d\r\n", "C:", NULL,
	};
	static const struct scenario many = {
	    .name = "too_many_lines",
	    .set = {.limits = {.max_lines = 3}},
	    .steps = steps_many,
	    .log = "failed TEMP CONNECT 0 4.5.0 Protocol error: too many reply lines\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&many);
	static const char *const steps_size[] = {
	    GREET, EHLO, "S:250-aaaaaaaaaa\r\n250-bbbbbbbbbb\r\n250 c\r\n", "C:", NULL,
	};
	static const struct scenario size = {
	    .name = "reply_too_big",
	    .set = {.limits = {.max_size = 30}},
	    .steps = steps_size,
	    .log = "failed TEMP CONNECT 0 4.5.0 Protocol error: reply too long\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&size);
	/* a reply while the content is being sent */
	static const struct tmsg md[] = {
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "body\n", true},
	};
	static const char *const steps_dc[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "S:554 5.3.4 Too much\r\n",
	    "C:",
	    NULL,
	};
	static const struct scenario dc = {
	    .name = "reply_during_content",
	    .msgs = md,
	    .nmsgs = 1,
	    .steps = steps_dc,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 TEMP CONTENT 0 4.5.0 Protocol error: reply during message content\n"
		   "done TEMP CONTENT 0 4.5.0 Protocol error: reply during message content\n"
		   "failed TEMP CONTENT 0 4.5.0 Protocol error: reply during message content\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&dc);
	/* 3xx where none is possible */
	static const char *const steps_3xx[] = {
	    GREET, EHLO, "S:250 mx.test\r\n", "C:MAIL FROM:<a@c.test>\r\n", "S:354 what\r\n",
	    "C:",  NULL,
	};
	static const struct scenario s3 = {
	    .name = "mail_354",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_3xx,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 TEMP MAIL 0 4.5.0 Protocol error: unexpected 3xx reply to MAIL\n"
		   "done TEMP MAIL 0 4.5.0 Protocol error: unexpected 3xx reply to MAIL\n"
		   "failed TEMP MAIL 0 4.5.0 Protocol error: unexpected 3xx reply to MAIL\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&s3);
}

static void t_mail_rejected_pipelined(void **state)
{
	(void)state;
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test> SIZE=18\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n"
	    "DATA\r\n",
	    "S:550 5.7.1 Sender blocked\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
	    "503 5.5.1 need MAIL\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "mail_rejected_pipelined",
	    .msgs = m_simple,
	    .nmsgs = 1,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 PERM MAIL 550 5.7.1 5.7.1 Sender blocked\n"
		   "rcpt 1 PERM MAIL 550 5.7.1 5.7.1 Sender blocked\n"
		   "done PERM MAIL 550 5.7.1 5.7.1 Sender blocked\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
	static const char *const steps_np[] = {
	    GREET,
	    EHLO,
	    "S:250 mx.test\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:451 4.3.0 Try later\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario np = {
	    .name = "mail_rejected",
	    .msgs = m_one,
	    .nmsgs = 1,
	    .steps = steps_np,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 0 TEMP MAIL 451 4.3.0 4.3.0 Try later\n"
		   "done TEMP MAIL 451 4.3.0 4.3.0 Try later\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&np);
}

static void t_dsn_and_size(void **state)
{
	(void)state;
	static const struct smtp_client_rcpt rd[] = {
	    {"b@mx.test", "SUCCESS,FAILURE", "rfc822;b+2Bx@mx.test"},
	    {"c@mx.test", "NEVER", NULL},
	};
	static const struct tmsg m[] = {
	    {{"a@c.test", rd, 2, 42, false, false, "HDRS", "QQ314159"}, "x\n", false},
	    {{"a@c.test", r_b, 1, 2000000, false, false, NULL, NULL}, "big\n", false},
	    {{"a\r\nRSET@c.test", r_b, 1, 0, false, false, NULL, NULL}, "evil\n", false},
	    {{"a@c.test", r_b, 1, 0, false, false, "FULL x", NULL}, "evil\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250-DSN\r\n250-SIZE 1000000\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test> SIZE=42 RET=HDRS ENVID=QQ314159\r\n"
	    "RCPT TO:<b@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@mx.test\r\n"
	    "RCPT TO:<c@mx.test> NOTIFY=NEVER\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:x\r\n.\r\n",
	    "S:250 Ok\r\n",
	    /* message 2 is over the advertised SIZE, 3 and 4 are malformed: nothing sent */
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "dsn_and_size",
	    .msgs = m,
	    .nmsgs = 4,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "rcpt 1 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n"
		   "rcpt 0 PERM LOCAL 0 5.3.4 Message size 2000000 exceeds the remote server's "
		   "limit of 1000000\n"
		   "done PERM LOCAL 0 5.3.4 Message size 2000000 exceeds the remote server's "
		   "limit of 1000000\n"
		   "rcpt 0 PERM LOCAL 0 5.1.3 Invalid envelope address or parameter\n"
		   "done PERM LOCAL 0 5.1.3 Invalid envelope address or parameter\n"
		   "rcpt 0 PERM LOCAL 0 5.1.3 Invalid envelope address or parameter\n"
		   "done PERM LOCAL 0 5.1.3 Invalid envelope address or parameter\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
	/* no DSN at the peer: the parameters are left out */
	static const char *const steps_nodsn[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 PIPELINING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\nDATA\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n",
	    "C:x\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario nodsn = {
	    .name = "no_dsn",
	    .msgs = m,
	    .nmsgs = 1,
	    .steps = steps_nodsn,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "rcpt 1 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&nodsn);
}

static void t_timeouts_suggested(void **state)
{
	(void)state;
	struct app a = {0};
	static const struct scenario sc = {.name = "t", .no_quit = true};
	a.sc = &sc;
	buf_init(&a.log, 0);
	struct smtp_client_settings set = {.helo_name = "client.test"};
	struct smtp_client *c = smtp_client_new(&set, &aops, &a);
	assert_int_equal(smtp_client_timeout_secs(c), 300);
	static const struct tmsg m = {
	    {"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "x\n", true};
	a.cur = &m;
	const char *in = "220 x\r\n250-x\r\n250 PIPELINING\r\n";
	assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
	assert_true(smtp_client_is_ready(c));
	assert_int_equal(smtp_client_ehlo(c)->ext, SMTP_EXT_PIPELINING);
	smtp_client_send(c, &m.m);
	assert_int_equal(smtp_client_timeout_secs(c), 300); /* MAIL */
	in = "250 ok\r\n250 ok\r\n";
	assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
	assert_int_equal(smtp_client_timeout_secs(c), 120); /* DATA */
	in = "354 go\r\n";
	assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
	assert_int_equal(smtp_client_timeout_secs(c), 180); /* data block */
	smtp_client_content_end(c);
	assert_int_equal(smtp_client_timeout_secs(c), 600); /* final reply */
	smtp_client_free(&c);
	buf_deinit(&a.log);
}

/* RFC 3030 BDAT instead of DATA when asked for and offered with PIPELINING */
static void t_chunking(void **state)
{
	(void)state;
	static const struct tmsg m[] = {
	    {{"a@c.test", r_bc, 2, 0, false, false, NULL, NULL}, ".dot\nline", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "x\n", false},
	    {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "", false},
	    {{"a@c.test", r_bc, 2, 0, false, false, NULL, NULL}, "never\n", false},
	};
	static const char *const steps[] = {
	    GREET,
	    EHLO,
	    EHLO_FULL,
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n",
	    "S:250 Ok\r\n250 Ok\r\n550 5.1.1 no c\r\n",
	    "C:BDAT 12 LAST\r\n.dot\r\nline\r\n", /* no dot-stuffing, final CRLF added */
	    "S:250 2.0.0 queued\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n250 Ok\r\n",
	    "C:BDAT 3 LAST\r\nx\r\n",
	    "S:552 5.3.4 too big\r\n",
	    "C:RSET\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n250 Ok\r\n250 Ok\r\n",
	    "C:BDAT 0 LAST\r\n",
	    "S:250 Ok\r\n",
	    "C:MAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\nRCPT TO:<c@mx.test>\r\n",
	    "S:250 Ok\r\n550 5.1.1 no b\r\n550 5.1.1 no c\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario sc = {
	    .name = "chunking",
	    .set = {.chunking = true},
	    .msgs = m,
	    .nmsgs = 4,
	    .steps = steps,
	    .log = "ready tls=0 auth=0 esmtp=1\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 no c\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 2.0.0 2.0.0 queued\n"
		   "done OK CONTENT 250 2.0.0 2.0.0 queued\n"
		   "content\n"
		   "rcpt 0 PERM CONTENT 552 5.3.4 5.3.4 too big\n"
		   "done PERM CONTENT 552 5.3.4 5.3.4 too big\n"
		   "content\n"
		   "rcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n"
		   "rcpt 0 PERM RCPT 550 5.1.1 5.1.1 no b\n"
		   "rcpt 1 PERM RCPT 550 5.1.1 5.1.1 no c\n"
		   "done PERM RCPT 0 5.0.0 No recipient was accepted\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&sc);
	/* CHUNKING without PIPELINING: DATA as usual */
	static const char *const steps_np[] = {
	    GREET,
	    EHLO,
	    "S:250-mx.test\r\n250 CHUNKING\r\n",
	    "C:MAIL FROM:<a@c.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:RCPT TO:<b@mx.test>\r\n",
	    "S:250 Ok\r\n",
	    "C:DATA\r\n",
	    "S:354 go\r\n",
	    "C:x\r\n.\r\n",
	    "S:250 Ok\r\n",
	    QUIT,
	    NULL,
	};
	static const struct scenario np = {
	    .name = "chunking_without_pipelining",
	    .set = {.chunking = true},
	    .msgs = m + 1,
	    .nmsgs = 1,
	    .steps = steps_np,
	    .log = "ready tls=0 auth=0 esmtp=1\ncontent\nrcpt 0 OK CONTENT 250 - Ok\n"
		   "done OK CONTENT 250 - Ok\n",
	    .want_end = PROTO_WANT_CLOSE,
	};
	run_all_modes(&np);
}

/* A refused chunk while the caller is still supplying content, and one
 * refused after BDAT LAST went out: no more chunks, one result. */
static void t_chunking_refused(void **state)
{
	(void)state;
	static const struct scenario sc = {.name = "manual", .no_quit = true};
	static const struct tmsg tm = {{"a@c.test", r_b, 1, 0, false, false, NULL, NULL}, "", true};
	static char big[70000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (i % 10 == 9) ? '\n' : 'a';
	for (int late = 0; late <= 1; late++) {
		struct app a = {.sc = &sc, .mode = M_WHOLE};
		buf_init(&a.log, 0);
		struct smtp_client_settings set = {.helo_name = "client.test", .chunking = true};
		struct smtp_client *c = smtp_client_new(&set, &aops, &a);
		struct buf *out = smtp_client_output(c);
		const char *in = "220 x\r\n250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
		assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
		a.cur = &tm;
		smtp_client_send(c, &tm.m);
		buf_clear(out);
		in = "250 ok\r\n250 ok\r\n";
		assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
		assert_true(smtp_client_wants_content(c));
		smtp_client_content(c, (const uint8_t *)big, sizeof big);
		/* 70000 storage octets = 77000 on the wire: one full chunk so far */
		assert_int_equal(out->len, strlen("BDAT 65536\r\n") + 65536);
		assert_memory_equal(out->data, "BDAT 65536\r\naaaaaaaaa\r\na", 24);
		buf_clear(out);
		if (late) {
			smtp_client_content_end(c);
			assert_int_equal(out->len, strlen("BDAT 11464 LAST\r\n") + 11464);
			buf_clear(out);
		}
		in = "554 5.3.4 Message too big\r\n";
		assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
		assert_string_equal(buf_cstr(&a.log),
				    "ready tls=0 auth=0 esmtp=1\ncontent\n"
				    "rcpt 0 PERM CONTENT 554 5.3.4 5.3.4 Message too big\n");
		assert_false(smtp_client_is_ready(c));
		if (!late) {
			/* the rest of the content goes nowhere */
			assert_true(smtp_client_wants_content(c));
			smtp_client_content(c, (const uint8_t *)big, sizeof big);
			smtp_client_content_end(c);
			assert_int_equal(out->len, 0);
		} else {
			in = "250 2.0.0 ok\r\n"; /* BDAT LAST's reply changes nothing */
			assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)),
					 strlen(in));
		}
		assert_true(smtp_client_is_ready(c));
		assert_string_equal(buf_cstr(&a.log),
				    "ready tls=0 auth=0 esmtp=1\ncontent\n"
				    "rcpt 0 PERM CONTENT 554 5.3.4 5.3.4 Message too big\n"
				    "done PERM CONTENT 554 5.3.4 5.3.4 Message too big\n");
		/* the next message starts with RSET */
		a.cur = &tm;
		smtp_client_send(c, &tm.m);
		assert_string_equal(buf_cstr(out),
				    "RSET\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@mx.test>\r\n");
		smtp_client_free(&c);
		buf_deinit(&a.log);
	}
}

/* The trace hook: commands and replies in order, AUTH secrets masked. */
static void tr_trace(void *ctx, struct smtp_client *c, bool sent, const char *line)
{
	(void)c;
	buf_xprintf(ctx, "%s %s\n", sent ? "C" : "S", line);
}

static void t_trace(void **state)
{
	(void)state;
	static const struct smtp_client_ops ops = {.trace = tr_trace};
	static const struct {
		const char *server;
		const char *trace;
	} cases[] = {
	    {"220 relay\r\n250-relay\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 "
	     "UGFzc3dvcmQ6\r\n535-5.7.8 no\r\n535 5.7.8 really\r\n",
	     "S 220 relay\nC EHLO client.test\nS 250 relay\nAUTH LOGIN\nC AUTH LOGIN\n"
	     "S 334 VXNlcm5hbWU6\nC ********\nS 334 UGFzc3dvcmQ6\nC ********\n"
	     "S 535 5.7.8 no\n5.7.8 really\nC QUIT\n"},
	    {"220 relay\r\n250-relay\r\n250 AUTH PLAIN\r\n",
	     "S 220 relay\nC EHLO client.test\nS 250 relay\nAUTH PLAIN\nC AUTH PLAIN ********\n"},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct buf log;
		buf_init(&log, 0);
		struct smtp_client_settings set = {.helo_name = "client.test",
						   .tls_active = true,
						   .auth_user = "user",
						   .auth_pass = "secret"};
		struct smtp_client *c = smtp_client_new(&set, &ops, &log);
		const char *in = cases[i].server;
		assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
		assert_string_equal(buf_cstr(&log), cases[i].trace);
		assert_null(strstr(buf_cstr(&log), "c2VjcmV0"));
		assert_null(strstr(buf_cstr(&log), "dXNlcg"));
		smtp_client_free(&c);
		buf_deinit(&log);
	}
}

/* A long run of messages refused locally (inside send(), next one sent from
 * msg_done()) must not nest callbacks: the stack stays flat. */
struct flat {
	unsigned depth, max_depth, done, rcpts, left;
};

static void fl_send(struct flat *f, struct smtp_client *c)
{
	static const struct smtp_client_msg m8 = {"a@c.test", r_bc, 2, 0, true, false, NULL, NULL};
	if (f->left == 0) {
		smtp_client_quit(c);
		return;
	}
	f->left--;
	f->depth++;
	if (f->depth > f->max_depth)
		f->max_depth = f->depth;
	smtp_client_send(c, &m8);
	f->depth--;
}

static void fl_ready(void *ctx, struct smtp_client *c)
{
	fl_send(ctx, c);
}

static void fl_rcpt(void *ctx, struct smtp_client *c, size_t idx,
		    const struct smtp_client_result *r)
{
	struct flat *f = ctx;
	(void)c;
	assert_true(idx < 2);
	assert_int_equal(r->status, SMTP_CLIENT_PERM);
	assert_int_equal(r->stage, SMTP_STAGE_LOCAL);
	f->rcpts++;
}

static void fl_done(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	struct flat *f = ctx;
	assert_string_equal(r->esc, "5.6.3");
	f->done++;
	fl_send(f, c);
}

static void t_refusals_flat(void **state)
{
	(void)state;
	static const struct smtp_client_ops ops = {
	    .ready = fl_ready, .rcpt_done = fl_rcpt, .msg_done = fl_done};
	struct flat f = {.left = 5000};
	struct smtp_client_settings set = {.helo_name = "client.test"};
	struct smtp_client *c = smtp_client_new(&set, &ops, &f);
	const char *in = "220 x\r\n250-x\r\n250 PIPELINING\r\n";
	assert_int_equal(smtp_client_feed(c, (const uint8_t *)in, strlen(in)), strlen(in));
	assert_int_equal(f.done, 5000);
	assert_int_equal(f.rcpts, 10000);
	assert_int_equal(f.max_depth,
			 2); /* one send() inside the first one's msg_done(), never deeper */
	struct buf *out = smtp_client_output(c);
	assert_int_equal(out->len, strlen("EHLO client.test\r\nQUIT\r\n"));
	assert_memory_equal(out->data, "EHLO client.test\r\nQUIT\r\n", out->len);
	smtp_client_free(&c);
}

/* ---- round trip through Tern's own server engine ---------------------------- */

/* The client's wire form, read back by smtp_server (which stores CRLF and
 * bare LF as LF and undoes dot-stuffing), must give back the content: the
 * storage form exactly, plus a final LF if it had none and with a bare CR
 * turned into a line end. Random contents full of dots and line ends, every
 * message on one connection, with and without pipelining. */
struct rt {
	struct buf got;	 /* content the server stored for the current message */
	struct buf want; /* what it should be */
	unsigned delivered, rejected;
	const char *content;
	size_t len;
	unsigned left;
	uint32_t rng;
	bool pipelining_seen;
	unsigned bdat, data;
};

static void rt_trace(void *ctx, struct smtp_client *c, bool sent, const char *line)
{
	struct rt *t = ctx;
	(void)c;
	if (sent && strncmp(line, "BDAT ", 5) == 0)
		t->bdat++;
	if (sent && strcmp(line, "DATA") == 0)
		t->data++;
}

static enum app_verdict rt_mail(void *ctx, struct smtp_server *s, const struct smtp_mail *m)
{
	(void)ctx;
	(void)s;
	assert_string_equal(m->from, "a@c.test");
	return APP_OK;
}

static enum app_verdict rt_rcpt(void *ctx, struct smtp_server *s, const struct smtp_rcpt *r)
{
	(void)ctx;
	if (strncmp(r->to, "bad", 3) == 0) {
		smtp_server_reply(s, 550, "5.1.1", "No such user");
		return APP_REJECTED;
	}
	return APP_OK;
}

static enum app_verdict rt_begin(void *ctx, struct smtp_server *s)
{
	(void)s;
	buf_clear(&((struct rt *)ctx)->got);
	return APP_OK;
}

static int rt_write(void *ctx, struct smtp_server *s, const uint8_t *p, size_t n)
{
	(void)s;
	buf_xappend(&((struct rt *)ctx)->got, p, n);
	return 0;
}

static enum app_verdict rt_end(void *ctx, struct smtp_server *s)
{
	struct rt *t = ctx;
	(void)s;
	assert_int_equal(t->got.len, t->want.len);
	assert_memory_equal(t->got.data, t->want.data, t->got.len);
	t->delivered++;
	return APP_OK;
}

static void rt_abort(void *ctx, struct smtp_server *s, int code, const char *text)
{
	(void)ctx;
	(void)s;
	fail_msg("server refused the content: %d %s", code, text);
}

static void rt_rset(void *ctx, struct smtp_server *s)
{
	(void)ctx;
	(void)s;
}

static void rt_next(struct rt *t, struct smtp_client *c)
{
	static const struct smtp_client_rcpt rr[] = {
	    {"b@mx.test", NULL, NULL}, {"bad@mx.test", NULL, NULL}, {"c@mx.test", NULL, NULL}};
	static const char alphabet[] = "..\n\n\r.ab \xc3";
	if (t->left == 0) {
		smtp_client_quit(c);
		return;
	}
	t->left--;
	static char content[150000];
	t->rng = t->rng * 1103515245u + 12345u;
	/* mostly small, now and then over two BDAT chunks */
	size_t n = t->left % 50 == 0 ? 140000 + (t->rng >> 16) % 2000 : (t->rng >> 16) % 200;
	for (size_t i = 0; i < n; i++) {
		t->rng = t->rng * 1103515245u + 12345u;
		content[i] = alphabet[(t->rng >> 16) % (sizeof alphabet - 1)];
	}
	t->content = content;
	t->len = n;
	/* expected storage form */
	buf_clear(&t->want);
	for (size_t i = 0; i < n; i++) {
		if (content[i] == '\r') {
			buf_xappend(&t->want, "\n", 1);
			if (i + 1 < n && content[i + 1] == '\n')
				i++;
		} else {
			buf_xappend(&t->want, content + i, 1);
		}
	}
	if (t->want.len && t->want.data[t->want.len - 1] != '\n')
		buf_xappend(&t->want, "\n", 1);
	struct smtp_client_msg m = {"a@c.test", rr, 3, n + 64, true, false, NULL, NULL};
	smtp_client_send(c, &m);
}

static void rt_ready(void *ctx, struct smtp_client *c)
{
	struct rt *t = ctx;
	t->pipelining_seen = smtp_client_ehlo(c)->ext & SMTP_EXT_PIPELINING;
	rt_next(t, c);
}

static void rt_rcpt_done(void *ctx, struct smtp_client *c, size_t idx,
			 const struct smtp_client_result *r)
{
	struct rt *t = ctx;
	(void)c;
	if (idx == 1) {
		assert_int_equal(r->status, SMTP_CLIENT_PERM);
		assert_string_equal(r->esc, "5.1.1");
		t->rejected++;
	} else {
		if (r->status != SMTP_CLIENT_OK)
			fail_msg("rcpt %zu: %d %s %s", idx, r->code, r->esc, r->text);
		assert_int_equal(r->stage, SMTP_STAGE_CONTENT);
	}
}

static void rt_content(void *ctx, struct smtp_client *c)
{
	struct rt *t = ctx;
	size_t off = 0;
	while (off < t->len) {
		t->rng = t->rng * 1103515245u + 12345u;
		size_t k = 1 + (t->rng >> 16) % 11;
		if (k > t->len - off)
			k = t->len - off;
		smtp_client_content(c, (const uint8_t *)t->content + off, k);
		off += k;
	}
	smtp_client_content_end(c);
}

static void rt_done(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	assert_int_equal(r->status, SMTP_CLIENT_OK);
	if (smtp_client_is_ready(c))
		rt_next(ctx, c);
}

static void rt_failed(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	(void)ctx;
	(void)c;
	fail_msg("client failed: %d %s %s", r->code, r->esc, r->text);
}

static void t_round_trip_server(void **state)
{
	(void)state;
	static const struct smtp_server_ops sops = {
	    .mail = rt_mail,
	    .rcpt = rt_rcpt,
	    .data_begin = rt_begin,
	    .data_write = rt_write,
	    .data_end = rt_end,
	    .data_abort = rt_abort,
	    .rset = rt_rset,
	};
	static const struct smtp_client_ops cops = {
	    .ready = rt_ready,
	    .rcpt_done = rt_rcpt_done,
	    .content_wanted = rt_content,
	    .msg_done = rt_done,
	    .failed = rt_failed,
	    .trace = rt_trace,
	};
	/* 0: pipelined DATA, 1: lock-step DATA, 2: pipelined BDAT */
	for (int mode = 0; mode <= 2; mode++) {
		struct rt t = {.left = 300, .rng = 7u + (uint32_t)mode};
		buf_init(&t.got, 0);
		buf_init(&t.want, 0);
		struct smtp_server_settings ss = {
		    .hostname = "mx.test",
		    .banner = "ESMTP Tern",
		    .max_message_size = 1 << 20,
		    .max_line = 1000,
		    .max_rcpts = 100,
		    .max_errors = 1000, /* each refused RCPT counts as an error */
		};
		struct smtp_server *srv = smtp_server_new(&ss, &sops, &t);
		struct smtp_client_settings cs = {
		    .helo_name = "client.test", .no_pipelining = mode == 1, .chunking = mode == 2};
		struct smtp_client *cli = smtp_client_new(&cs, &cops, &t);
		smtp_server_start(srv);
		for (int round = 0; round < 100000; round++) {
			struct buf *so = smtp_server_output(srv), *co = smtp_client_output(cli);
			if (so->len == 0 && co->len == 0)
				break;
			if (so->len) {
				assert_int_equal(smtp_client_feed(cli, so->data, so->len), so->len);
				buf_clear(so);
			}
			if (co->len) {
				size_t n = smtp_server_feed(srv, co->data, co->len);
				assert_int_equal(n, co->len); /* the stub never pends */
				buf_clear(co);
			}
		}
		assert_int_equal(smtp_client_want(cli), PROTO_WANT_CLOSE);
		assert_int_equal(smtp_server_want(srv), PROTO_WANT_CLOSE);
		assert_int_equal(t.delivered, 300);
		assert_int_equal(t.rejected, 300);
		assert_true(t.pipelining_seen);
		if (mode == 2) {
			/* every message ends with BDAT LAST; the 6 big ones need 3 chunks */
			assert_int_equal(t.data, 0);
			assert_int_equal(t.bdat, 300 + 6 * 2);
		} else {
			assert_int_equal(t.data, 300);
			assert_int_equal(t.bdat, 0);
		}
		smtp_client_free(&cli);
		smtp_server_free(&srv);
		buf_deinit(&t.got);
		buf_deinit(&t.want);
	}
}

/* ---- the reply parser on its own ------------------------------------------------- */

struct want_reply {
	int code;
	const char *esc;
	unsigned nlines;
	const char *text;
};

static void check_replies(const char *in, size_t n, const struct want_reply *w, size_t nw,
			  size_t split)
{
	struct smtp_reply_reader rd;
	smtp_reply_reader_init(&rd, NULL);
	size_t got = 0, off = 0;
	while (off < n) {
		size_t lim = split ? (off < split ? split : n) : n;
		size_t used;
		int r = smtp_reply_reader_feed(&rd, (const uint8_t *)in + off, lim - off, &used);
		assert_true(r >= 0);
		assert_true(used <= lim - off);
		off += used;
		if (r == 1) {
			assert_true(got < nw);
			assert_int_equal(rd.reply.code, w[got].code);
			assert_string_equal(rd.reply.esc, w[got].esc);
			assert_int_equal(rd.reply.nlines, w[got].nlines);
			assert_string_equal(rd.reply.text, w[got].text);
			assert_int_equal(rd.reply.textlen, strlen(w[got].text));
			got++;
		} else {
			assert_int_equal(used, lim - off + used);
		}
	}
	assert_int_equal(got, nw);
	assert_false(smtp_reply_reader_partial(&rd));
	smtp_reply_reader_deinit(&rd);
}

static void t_reply_reader(void **state)
{
	(void)state;
	static const char in[] = "220 mx.test ESMTP\r\n"
				 "250-mx.test\r\n250-SIZE 100\r\n250 8BITMIME\r\n"
				 "550-5.1.1 first\r\n550 5.1.1 second\r\n"
				 "250\r\n"		  /* no text */
				 "451 4.3.0\r\n"	  /* code only */
				 "250 2.1.5x ok\r\n"	  /* not an enhanced code */
				 "452 5.2.2 mismatch\r\n" /* class differs */
				 "250 2.0.0 tab\there\x01\r\n"
				 "421 4.4.2 bare LF\n"
				 "354 3.0.0 no class 3\r\n"
				 "250 22.1.1 x\r\n"
				 "250 2.1234.1 x\r\n"
				 "554 5.7.1\xc3\xa9 x\r\n";
	static const struct want_reply w[] = {
	    {220, "", 1, "mx.test ESMTP"},
	    {250, "", 3, "mx.test\nSIZE 100\n8BITMIME"},
	    {550, "5.1.1", 2, "5.1.1 first\n5.1.1 second"},
	    {250, "", 1, ""},
	    {451, "4.3.0", 1, "4.3.0"},
	    {250, "", 1, "2.1.5x ok"},
	    {452, "", 1, "5.2.2 mismatch"},
	    {250, "2.0.0", 1, "2.0.0 tab?here?"},
	    {421, "4.4.2", 1, "4.4.2 bare LF"},
	    {354, "", 1, "3.0.0 no class 3"},
	    {250, "", 1, "22.1.1 x"},
	    {250, "", 1, "2.1234.1 x"},
	    {554, "", 1, "5.7.1\xc3\xa9 x"},
	};
	size_t n = strlen(in);
	check_replies(in, n, w, N_ELEMENTS(w), 0);
	for (size_t k = 1; k < n; k++)
		check_replies(in, n, w, N_ELEMENTS(w), k);
	/* byte by byte */
	struct smtp_reply_reader rd;
	smtp_reply_reader_init(&rd, NULL);
	size_t got = 0;
	for (size_t i = 0; i < n; i++) {
		size_t used;
		int r = smtp_reply_reader_feed(&rd, (const uint8_t *)in + i, 1, &used);
		assert_true(r >= 0);
		assert_int_equal(used, 1);
		if (r == 1) {
			assert_int_equal(rd.reply.code, w[got].code);
			assert_string_equal(rd.reply.text, w[got].text);
			got++;
		}
	}
	assert_int_equal(got, N_ELEMENTS(w));
	smtp_reply_reader_deinit(&rd);
}

static void t_reply_reader_errors(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *error;
	} cases[] = {
	    {"2x0 x\r\n", "malformed reply code"},
	    {"600 x\r\n", "malformed reply code"},
	    {"199 x\r\n", "malformed reply code"},
	    {"\r\n", "malformed reply code"},
	    {"250_x\r\n", "malformed reply line"},
	    {"250-a\r\n251 b\r\n", "reply code changes within a multiline reply"},
	    {"250-a\r\n\r\n", "malformed reply code"},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct smtp_reply_reader rd;
		smtp_reply_reader_init(&rd, NULL);
		size_t used;
		assert_int_equal(smtp_reply_reader_feed(&rd, (const uint8_t *)cases[i].in,
							strlen(cases[i].in), &used),
				 -1);
		assert_string_equal(rd.error, cases[i].error);
		/* stays failed */
		assert_int_equal(
		    smtp_reply_reader_feed(&rd, (const uint8_t *)"250 x\r\n", 7, &used), -1);
		smtp_reply_reader_deinit(&rd);
	}
	/* limits: a line without LF longer than max_line, exactly at the limit */
	struct smtp_reply_limits lim = {.max_line = 10, .max_size = 25, .max_lines = 2};
	struct smtp_reply_reader rd;
	size_t used;
	smtp_reply_reader_init(&rd, &lim);
	assert_int_equal(smtp_reply_reader_feed(&rd, (const uint8_t *)"250 abcd\r\n", 10, &used),
			 1);
	assert_int_equal(smtp_reply_reader_feed(&rd, (const uint8_t *)"250 abcdef", 10, &used), 0);
	assert_true(smtp_reply_reader_partial(&rd));
	assert_int_equal(smtp_reply_reader_feed(&rd, (const uint8_t *)"\r\n", 2, &used), -1);
	assert_string_equal(rd.error, "reply line too long");
	smtp_reply_reader_deinit(&rd);
	smtp_reply_reader_init(&rd, &lim);
	assert_int_equal(
	    smtp_reply_reader_feed(&rd, (const uint8_t *)"250-a\r\n250-b\r\n250-c\r\n", 21, &used),
	    -1);
	assert_string_equal(rd.error, "too many reply lines");
	smtp_reply_reader_deinit(&rd);
	lim.max_lines = 10;
	smtp_reply_reader_init(&rd, &lim);
	assert_int_equal(smtp_reply_reader_feed(
			     &rd, (const uint8_t *)"250-abcd\r\n250-abcd\r\n250 x", 25, &used),
			 0);
	assert_int_equal(smtp_reply_reader_feed(&rd, (const uint8_t *)"\n", 1, &used), -1);
	assert_string_equal(rd.error, "reply too long");
	smtp_reply_reader_deinit(&rd);
}

static void t_ehlo_parse(void **state)
{
	(void)state;
	static const struct {
		const char *reply;
		unsigned ext;
		uint64_t size;
		unsigned auth;
	} cases[] = {
	    {"250-mx\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
	     "250-SMTPUTF8\r\n250-STARTTLS\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n"
	     "250-CHUNKING\r\n250-BINARYMIME\r\n250 AUTH PLAIN LOGIN SCRAM-SHA-256\r\n",
	     SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
		 SMTP_EXT_STARTTLS | SMTP_EXT_DSN | SMTP_EXT_ENHANCEDSTATUSCODES |
		 SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME | SMTP_EXT_AUTH,
	     52428800, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_SCRAM_SHA_256},
	    /* the greeting line is never a keyword */
	    {"250 PIPELINING\r\n", 0, 0, 0},
	    /* case, SIZE without value, the old AUTH= form, unknown keywords */
	    {"250-mx\r\n250-pipelining\r\n250-SIZE\r\n250-AUTH=login\r\n250-XFOO bar\r\n"
	     "250 8bitmime\r\n",
	     SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_AUTH | SMTP_EXT_8BITMIME, 0,
	     SMTP_AUTH_LOGIN},
	    /* bad or overflowing SIZE values mean no limit; keyword with params */
	    {"250-mx\r\n250-SIZE 12x\r\n250 STARTTLS now\r\n", SMTP_EXT_SIZE | SMTP_EXT_STARTTLS, 0,
	     0},
	    {"250-mx\r\n250-SIZE 99999999999999999999999\r\n250 SIZE  77 \r\n", SMTP_EXT_SIZE, 77,
	     0},
	    {"250-mx\r\n250-SIZE 18446744073709551616\r\n250 AUTH   CRAM-MD5  XOAUTH2\r\n",
	     SMTP_EXT_SIZE | SMTP_EXT_AUTH, 0, SMTP_AUTH_CRAM_MD5 | SMTP_AUTH_XOAUTH2},
	    /* prefixes and partial words are not keywords */
	    {"250-mx\r\n250-PIPELININGX\r\n250-8BIT\r\n250-\r\n250 STARTTLS=1\r\n", 0, 0, 0},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct smtp_reply_reader rd;
		smtp_reply_reader_init(&rd, NULL);
		size_t used;
		size_t n = strlen(cases[i].reply);
		assert_int_equal(
		    smtp_reply_reader_feed(&rd, (const uint8_t *)cases[i].reply, n, &used), 1);
		assert_int_equal(used, n);
		struct smtp_ehlo e;
		smtp_ehlo_parse(&rd.reply, &e);
		assert_int_equal(e.ext, cases[i].ext);
		assert_int_equal(e.size_max, cases[i].size);
		assert_int_equal(e.auth, cases[i].auth);
		smtp_reply_reader_deinit(&rd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(t_reply_reader),
	    cmocka_unit_test(t_reply_reader_errors),
	    cmocka_unit_test(t_ehlo_parse),
	    cmocka_unit_test(t_plain_pipelining),
	    cmocka_unit_test(t_plain_no_pipelining),
	    cmocka_unit_test(t_pipelining_disabled),
	    cmocka_unit_test(t_starttls_offered),
	    cmocka_unit_test(t_starttls_not_offered),
	    cmocka_unit_test(t_starttls_required_missing),
	    cmocka_unit_test(t_starttls_refused),
	    cmocka_unit_test(t_starttls_required_ok_then_auth),
	    cmocka_unit_test(t_auth_login),
	    cmocka_unit_test(t_auth_failures),
	    cmocka_unit_test(t_rcpt_mixed),
	    cmocka_unit_test(t_data_failures),
	    cmocka_unit_test(t_greeting_554),
	    cmocka_unit_test(t_ehlo_502_helo),
	    cmocka_unit_test(t_8bit_to_7bit_peer),
	    cmocka_unit_test(t_smtputf8),
	    cmocka_unit_test(t_reuse_three),
	    cmocka_unit_test(t_dot_stuffing),
	    cmocka_unit_test(t_peer_closes),
	    cmocka_unit_test(t_timeout_abort_421),
	    cmocka_unit_test(t_malformed),
	    cmocka_unit_test(t_mail_rejected_pipelined),
	    cmocka_unit_test(t_dsn_and_size),
	    cmocka_unit_test(t_timeouts_suggested),
	    cmocka_unit_test(t_refusals_flat),
	    cmocka_unit_test(t_trace),
	    cmocka_unit_test(t_chunking),
	    cmocka_unit_test(t_chunking_refused),
	    cmocka_unit_test(t_rcpt_552),
	    cmocka_unit_test(t_round_trip_server),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
