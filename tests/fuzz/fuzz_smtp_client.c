/* SPDX-License-Identifier: MIT */
/* Fuzz the SMTP client engine: arbitrary server bytes, fed in chunks whose
 * sizes come from the input, to an engine whose settings (TLS mode, AUTH,
 * pipelining, small reply limits) come from the first byte, with a stub
 * queue that sends a few messages of different kinds (8-bit, SMTPUTF8, DSN,
 * several recipients), supplies content in pieces (DATA or BDAT) and quits
 * at the end.
 * Checks the result contract (every recipient reported once before
 * msg_done, failed at most once and then CLOSE), that what the client
 * writes always has CRLF line ends, and that STARTTLS/EOF/timeout paths
 * never misbehave. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proto/smtp/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct smtp_client_rcpt rc3[] = {
    {"b@mx.test", "SUCCESS,FAILURE", "rfc822;b@mx.test"},
    {"c@mx.test", NULL, NULL},
    {"d@mx.test", "NEVER", NULL},
};
static const struct smtp_client_rcpt rcu[] = {{"j\xc3\xb6rg@mx.test", NULL, NULL}};

static const struct smtp_client_msg msgs[] = {
    {"a@c.test", rc3, 3, 120, false, false, "HDRS", "ENV1"},
    {"", rc3, 1, 0, true, false, NULL, NULL},
    {"a@c.test", rcu, 1, 0, true, true, NULL, NULL},
    {"a@c.test", rc3 + 1, 2, 99999999, false, false, NULL, NULL},
};
static const char content[] = ".lead\nline\r\n\n.\nbare\rcr\n..\ncaf\xc3\xa9\nno final LF";

struct fstub {
	size_t next;
	bool done[3];
	size_t nrcpts;
	bool in_msg;
	unsigned failed;
	bool content_pending;
	uint32_t h;
};

static void next_msg(struct fstub *f, struct smtp_client *c)
{
	if (f->next < sizeof msgs / sizeof msgs[0]) {
		const struct smtp_client_msg *m = &msgs[f->next++];
		memset(f->done, 0, sizeof f->done);
		f->nrcpts = m->nrcpts;
		f->in_msg = true;
		smtp_client_send(c, m);
	} else {
		smtp_client_quit(c);
	}
}

static void check_result(const struct smtp_client_result *r)
{
	if (!r->text || !r->esc || r->code < 0 || r->code > 599)
		abort();
	if (r->status == SMTP_CLIENT_OK && (r->code < 200 || r->code > 299))
		abort();
}

static void f_ready(void *ctx, struct smtp_client *c)
{
	struct fstub *f = ctx;
	if (f->in_msg || f->failed)
		abort();
	next_msg(f, c);
}

static void f_rcpt(void *ctx, struct smtp_client *c, size_t idx, const struct smtp_client_result *r)
{
	struct fstub *f = ctx;
	(void)c;
	check_result(r);
	if (!f->in_msg || idx >= f->nrcpts || f->done[idx])
		abort();
	f->done[idx] = true;
}

static void push(struct fstub *f, struct smtp_client *c)
{
	/* now and then more than one BDAT chunk (64 KiB) */
	unsigned reps = (f->h & 0x3f) == 0 ? 1200 : 1;
	for (unsigned r = 0; r < reps; r++) {
		size_t n = sizeof content - 1, off = 0;
		while (off < n) {
			f->h = f->h * 1103515245u + 12345u;
			size_t k = reps > 1 ? n : 1 + (f->h >> 16) % 9;
			if (k > n - off)
				k = n - off;
			smtp_client_content(c, (const uint8_t *)content + off, k);
			off += k;
		}
	}
	smtp_client_content_end(c);
}

static void f_content(void *ctx, struct smtp_client *c)
{
	struct fstub *f = ctx;
	if (!f->in_msg || !smtp_client_wants_content(c))
		abort();
	/* sometimes later, from outside the callback */
	if (f->h & 0x100)
		f->content_pending = true;
	else
		push(f, c);
}

static void f_done(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	struct fstub *f = ctx;
	check_result(r);
	if (!f->in_msg)
		abort();
	for (size_t i = 0; i < f->nrcpts; i++)
		if (!f->done[i])
			abort();
	f->in_msg = false;
	f->content_pending = false;
	if (smtp_client_is_ready(c))
		next_msg(f, c);
}

static void f_failed(void *ctx, struct smtp_client *c, const struct smtp_client_result *r)
{
	struct fstub *f = ctx;
	check_result(r);
	if (r->status == SMTP_CLIENT_OK)
		abort();
	if (f->failed++ || f->in_msg || smtp_client_want(c) != PROTO_WANT_CLOSE)
		abort();
}

static const struct smtp_client_ops fops = {
    .ready = f_ready,
    .rcpt_done = f_rcpt,
    .content_wanted = f_content,
    .msg_done = f_done,
    .failed = f_failed,
};

/* Every LF the client writes is part of a CRLF. */
static void check_output(struct buf *o)
{
	for (size_t i = 0; i < o->len; i++)
		if (o->data[i] == '\n' && (i == 0 || o->data[i - 1] != '\r'))
			abort();
	if (o->len && o->data[o->len - 1] != '\n')
		abort();
	buf_clear(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t knobs = size ? data[0] : 0;
	struct fstub f = {0};
	f.h = 2166136261u;
	for (size_t i = 0; i < size && i < 16; i++)
		f.h = (f.h ^ data[i]) * 16777619u;
	struct smtp_client_settings set = {
	    .helo_name = "client.test",
	    .tls = (enum smtp_client_tls)(knobs % 3),
	    .tls_active = knobs & 4,
	    .auth_user = (knobs & 8) ? "user" : NULL,
	    .auth_pass = (knobs & 8) ? "secret" : NULL,
	    .auth_plaintext = knobs & 16,
	    .no_pipelining = knobs & 32,
	};
	if (knobs & 64) {
		set.limits.max_line = 40;
		set.limits.max_size = 200;
		set.limits.max_lines = 5;
	}
	set.chunking = (f.h >> 7) & 1;
	struct smtp_client *c = smtp_client_new(&set, &fops, &f);
	size_t off = size ? 1 : 0;
	while (off < size) {
		f.h = f.h * 1103515245u + 12345u;
		size_t k = 1 + (f.h >> 16) % 61;
		if (k > size - off)
			k = size - off;
		if (smtp_client_feed(c, data + off, k) != k)
			abort();
		off += k;
		if (f.content_pending && smtp_client_wants_content(c)) {
			f.content_pending = false;
			push(&f, c);
		}
		enum proto_want w = smtp_client_want(c);
		if (w == PROTO_WANT_CLOSE)
			break;
		if (w == PROTO_WANT_STARTTLS)
			smtp_client_tls_started(c);
		check_output(smtp_client_output(c));
		(void)smtp_client_timeout_secs(c);
	}
	check_output(smtp_client_output(c));
	switch (knobs >> 7 ? f.h % 3 : 0) {
	case 0:
		smtp_client_eof(c);
		break;
	case 1:
		smtp_client_timeout(c);
		break;
	default:
		smtp_client_abort(c, "fuzz");
		break;
	}
	if (smtp_client_want(c) != PROTO_WANT_CLOSE || f.in_msg)
		abort();
	check_output(smtp_client_output(c));
	smtp_client_free(&c);
	return 0;
}
