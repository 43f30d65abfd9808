/* SPDX-License-Identifier: MIT */
/* Fuzz the POP3 engine with whole sessions: command framing, the state
 * machine, AUTH (real sasl module), RETR/TOP streaming, PENDING verdicts.
 *
 * Input: one control byte, then client bytes.
 *   control & 1    plaintext auth allowed
 *   control & 2    STLS offered (STARTTLS "succeeds" at once)
 *   control & 4    every verdict and every body read is PENDING, resolved later
 *   control & 8    APOP on
 *   control >> 4   feed chunk size - 1 (1..16 bytes per feed)
 * The app knows user "u" / password "p" (also for SCRAM via scram_derive), a
 * maildrop of three small messages; verdicts alternate between OK and
 * REJECTED when the user is "r". Checks: the engine never consumes more than
 * offered, its output stays bounded, opens and closes pair up, and after
 * timeout() it wants CLOSE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "base/buf.h"
#include "base/err.h"
#include "proto/pop3/pop3_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const msgs[] = { "Subject: x\n\nbody\n.dot\n", "A: b\n\nno lf", "" };

struct app {
	struct pop3_server *s;
	bool async;
	bool pend;
	enum pop3_verdict pend_v;
	bool read_pend;
	int cur;
	size_t off;
	int md_opens, md_closes, msg_opens, msg_closes;
	unsigned flip;
};

static enum pop3_verdict v(struct app *a, enum pop3_verdict x)
{
	if (a->async) {
		a->pend = true;
		a->pend_v = x;
		return POP3_PENDING;
	}
	if (x == POP3_REJECTED && (a->flip++ & 1))
		pop3_server_reply(a->s, "SYS/TEMP", "nope %u", a->flip);
	return x;
}

static enum pop3_verdict a_login(void *ctx, struct pop3_server *s, const char *mech,
				 const char *user, const char *pw)
{
	(void)s;
	(void)mech;
	return v(ctx, strcmp(user, "u") == 0 && strcmp(pw, "p") == 0 ? POP3_OK : POP3_REJECTED);
}

static enum pop3_verdict a_apop(void *ctx, struct pop3_server *s, const char *user,
				const char *ts, const char *digest)
{
	(void)s;
	(void)ts;
	(void)digest;
	return v(ctx, strcmp(user, "u") == 0 ? POP3_OK : POP3_REJECTED);
}

static bool a_scram(void *ctx, const char *user, struct scram_creds *c)
{
	(void)ctx;
	if (strcmp(user, "u") != 0)
		return false;
	memset(c, 0, sizeof *c);
	c->salt_len = 16;
	c->iterations = 1;
	scram_derive("p", c->salt, c->salt_len, 1, c->stored_key, c->server_key);
	return true;
}

static enum pop3_verdict a_open(void *ctx, struct pop3_server *s, const char *user)
{
	struct app *a = ctx;
	(void)s;
	if (strcmp(user, "r") == 0)
		return v(a, POP3_REJECTED);
	a->md_opens++;
	return v(a, POP3_OK);
}

static unsigned a_count(void *ctx, struct pop3_server *s)
{
	(void)ctx;
	(void)s;
	return 3;
}

static void a_info(void *ctx, struct pop3_server *s, unsigned idx, struct pop3_msg_info *r)
{
	(void)ctx;
	(void)s;
	ASSERT(idx < 3);
	r->size = strlen(msgs[idx]);
	r->uidl = idx == 0 ? "a" : idx == 1 ? "b" : "c";
}

static enum pop3_verdict a_msg_open(void *ctx, struct pop3_server *s, unsigned idx)
{
	struct app *a = ctx;
	(void)s;
	ASSERT(idx < 3 && a->cur < 0);
	a->msg_opens++;
	a->cur = (int)idx;
	a->off = 0;
	return v(a, POP3_OK);
}

static void supply(struct app *a)
{
	const char *m = msgs[a->cur];
	size_t left = strlen(m) - a->off;
	size_t n = left < 3 ? left : 3;
	a->off += n;
	pop3_server_body_data(a->s, m + a->off - n, n, a->off == strlen(m));
}

static void a_read(void *ctx, struct pop3_server *s)
{
	struct app *a = ctx;
	(void)s;
	ASSERT(a->cur >= 0 && !a->read_pend);
	if (a->async)
		a->read_pend = true;
	else
		supply(a);
}

static void a_msg_close(void *ctx, struct pop3_server *s)
{
	struct app *a = ctx;
	(void)s;
	ASSERT(a->cur >= 0);
	a->cur = -1;
	a->read_pend = false;
	a->msg_closes++;
}

static enum pop3_verdict a_commit(void *ctx, struct pop3_server *s, const unsigned *idx, size_t n)
{
	(void)s;
	ASSERT(n > 0 && n <= 3);
	for (size_t i = 0; i < n; i++)
		ASSERT(idx[i] < 3);
	return v(ctx, POP3_OK);
}

static void a_md_close(void *ctx, struct pop3_server *s)
{
	struct app *a = ctx;
	(void)s;
	a->md_closes++;
	ASSERT(a->md_closes <= a->md_opens);
}

static enum pop3_verdict a_prepare(void *ctx, struct pop3_server *s, const char *user)
{
	(void)s;
	return v(ctx, strcmp(user, "u") == 0 ? POP3_OK : POP3_REJECTED);
}

static const struct pop3_server_ops ops = {
	.login = a_login,
	.apop = a_apop,
	.scram_creds = a_scram,
	.scram_prepare = a_prepare,
	.maildrop_open = a_open,
	.msg_count = a_count,
	.msg_info = a_info,
	.msg_open = a_msg_open,
	.msg_read = a_read,
	.msg_close = a_msg_close,
	.commit = a_commit,
	.maildrop_close = a_md_close,
	.log_refusal = NULL,
};

static void settle(struct app *a)
{
	for (int i = 0; i < 100000; i++) {
		struct buf *o = pop3_server_output(a->s);
		ASSERT(o->len < 1024 * 1024);
		buf_clear(o);
		enum proto_want w = pop3_server_want(a->s);
		if (w == PROTO_WANT_STARTTLS) {
			pop3_server_tls_started(a->s);
			continue;
		}
		if (w != PROTO_WANT_PENDING)
			return;
		if (a->pend) {
			a->pend = false;
			pop3_server_resume(a->s, a->pend_v);
		} else if (a->read_pend) {
			a->read_pend = false;
			supply(a);
		}
	}
	panic("engine did not settle");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	data++;
	size--;
	struct pop3_server_settings set = { 0 };
	set.hostname = "fuzz.test";
	set.plaintext_auth = ctl & 1;
	set.stls_offered = ctl & 2;
	set.apop = ctl & 8;
	set.apop_timestamp = "<1.2@fuzz.test>";
	struct app a = { 0 };
	a.cur = -1;
	a.async = ctl & 4;
	a.s = pop3_server_new(&set, &ops, &a);
	pop3_server_start(a.s);
	size_t chunk = (size_t)(ctl >> 4) + 1;
	struct buf in = BUF_INIT(0);
	for (size_t off = 0; off < size || in.len;) {
		size_t k = size - off < chunk ? size - off : chunk;
		buf_xappend(&in, data + off, k);
		off += k;
		for (;;) {
			settle(&a);
			if (pop3_server_want(a.s) != PROTO_WANT_READ || in.len == 0)
				break;
			size_t used = pop3_server_feed(a.s, in.data, in.len);
			ASSERT(used <= in.len);
			buf_consume(&in, used);
			if (used == 0)
				break;
		}
		if (pop3_server_want(a.s) == PROTO_WANT_CLOSE)
			break;
		if (k == 0)
			break;
	}
	buf_deinit(&in);
	if (ctl & 0x80)
		pop3_server_shutdown(a.s);
	pop3_server_timeout(a.s);
	pop3_server_timeout(a.s);
	settle(&a);
	ASSERT(pop3_server_want(a.s) == PROTO_WANT_CLOSE || a.pend || a.read_pend);
	if (a.pend) { /* a late verdict after the close */
		a.pend = false;
		pop3_server_resume(a.s, a.pend_v);
	}
	pop3_server_free(&a.s);
	ASSERT(a.md_opens == a.md_closes);
	ASSERT(a.msg_opens == a.msg_closes);
	return 0;
}
