/* SPDX-License-Identifier: MIT */
/* Fuzz the SMTP server engine: arbitrary client bytes, fed in chunks whose
 * sizes are derived from the input, against a stub app that cycles through
 * OK / REJECTED / PENDING (resumed at once) and small limits. Checks that
 * every reply line is well formed and that only a pending verdict leaves
 * input unconsumed. Knob bits of the first byte switch on AUTH (16),
 * plaintext AUTH (32) and required AUTH (64). Also runs smtp_parse_path
 * over the raw input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proto/smtp/smtp_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fstub {
	unsigned n;
	int pending; /* 0 none, 1 mail/rcpt, 2 data_begin, 3 data_end, 4 auth */
	uint64_t written;
};

static enum app_verdict verdict(struct fstub *f, struct smtp_server *s, int kind)
{
	switch (f->n++ % 3) {
	case 0:
		return APP_OK;
	case 1:
		smtp_server_reply(s, 550, "5.7.1", "Rejected\nby the stub");
		return APP_REJECTED;
	default:
		f->pending = kind;
		return APP_PENDING;
	}
}

static enum app_verdict f_mail(void *ctx, struct smtp_server *s, const struct smtp_mail *m)
{
	if (strlen(m->from) > 4096)
		abort();
	return verdict(ctx, s, 1);
}

static enum app_verdict f_rcpt(void *ctx, struct smtp_server *s, const struct smtp_rcpt *r)
{
	if (!r->to[0])
		abort(); /* the null path is for MAIL only */
	return verdict(ctx, s, 1);
}

static enum app_verdict f_begin(void *ctx, struct smtp_server *s)
{
	return verdict(ctx, s, 2);
}

static int f_write(void *ctx, struct smtp_server *s, const uint8_t *p, size_t n)
{
	struct fstub *f = ctx;
	(void)s;
	if (n == 0 || memchr(p, 0, n))
		abort(); /* NUL never reaches the app */
	f->written += n;
	if (f->written > 256)
		abort(); /* max_message_size */
	return (f->n & 7) == 7 ? -1 : 0;
}

static enum app_verdict f_end(void *ctx, struct smtp_server *s)
{
	return verdict(ctx, s, 3);
}

static void f_rset(void *ctx, struct smtp_server *s)
{
	struct fstub *f = ctx;
	(void)s;
	f->written = 0;
}

static void f_abort(void *ctx, struct smtp_server *s, int code, const char *text)
{
	(void)s;
	(void)code;
	(void)text;
	((struct fstub *)ctx)->written = 0;
}

static enum app_verdict f_auth(void *ctx, struct smtp_server *s, const char *mech,
			       const char *user, const char *password)
{
	if (!mech[0] || strlen(user) > 4096 || strlen(password) > 4096)
		abort();
	return verdict(ctx, s, 4);
}

static const struct smtp_server_ops fops = {
	.auth_password = f_auth,
	.mail = f_mail,
	.rcpt = f_rcpt,
	.data_begin = f_begin,
	.data_write = f_write,
	.data_end = f_end,
	.data_abort = f_abort,
	.rset = f_rset,
};

static void resume(struct fstub *f, struct smtp_server *s)
{
	int k = f->pending;
	f->pending = 0;
	if (k == 2)
		smtp_server_resume(s, (f->n & 1) ? 354 : 554, NULL, "begin");
	else if (k == 3)
		smtp_server_resume(s, 250, "2.0.0", "Ok: queued as %u", f->n);
	else if (k == 4)
		smtp_server_resume(s, (f->n & 1) ? 235 : 535, NULL, "auth");
	else
		smtp_server_resume(s, (f->n & 1) ? 250 : 450, NULL, "later");
}

/* Every line: 3 digits, ' ' or '-', text without CR/LF, CRLF. */
static void check_output(const struct buf *o)
{
	size_t i = 0;
	while (i < o->len) {
		const uint8_t *lf = memchr(o->data + i, '\n', o->len - i);
		if (!lf)
			abort();
		size_t e = (size_t)(lf - o->data);
		if (e - i < 5 || o->data[e - 1] != '\r')
			abort();
		for (size_t k = i; k < i + 3; k++)
			if (o->data[k] < '0' || o->data[k] > '9')
				abort();
		if (o->data[i + 3] != ' ' && o->data[i + 3] != '-')
			abort();
		if (memchr(o->data + i, '\r', e - 1 - i))
			abort();
		i = e + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *addr;
	size_t used;
	if (smtp_parse_path((const char *)data, size, true, size & 1, &addr, &used) == 0) {
		if (used > size)
			abort();
		free(addr);
	}

	uint8_t knobs = size ? data[0] : 0;
	struct smtp_server_settings set = {
		.hostname = "mx.fuzz",
		.banner = "ESMTP",
		.max_message_size = 256,
		.max_line = 64,
		.max_rcpts = 3,
		.max_errors = 10,
		.starttls_offered = knobs & 1,
		.tls_active = (knobs & 6) == 6,
		.auth_offered = knobs & 16,
		.auth_plaintext = knobs & 32,
		.auth_required = knobs & 64,
	};
	struct fstub f = { 0, 0, 0 };
	struct smtp_server *s = smtp_server_new(&set, &fops, &f);
	smtp_server_start(s);
	struct buf in;
	buf_init(&in, 0);
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < size && i < 16; i++)
		h = (h ^ data[i]) * 16777619u;
	size_t off = 0;
	bool closed = false;
	while (off < size && !closed) {
		h = h * 1103515245u + 12345u;
		size_t k = 1 + (h >> 16) % 97;
		if (k > size - off)
			k = size - off;
		buf_xappend(&in, data + off, k);
		off += k;
		for (;;) {
			enum proto_want w = smtp_server_want(s);
			if (w == PROTO_WANT_CLOSE) {
				closed = true;
				break;
			}
			if (w == PROTO_WANT_STARTTLS) {
				buf_clear(&in);
				smtp_server_tls_started(s);
				continue;
			}
			if (w == PROTO_WANT_PENDING) {
				resume(&f, s);
				continue;
			}
			if (in.len == 0)
				break;
			size_t n = smtp_server_feed(s, in.data, in.len);
			if (n > in.len)
				abort();
			buf_consume(&in, n);
			if (smtp_server_want(s) == PROTO_WANT_READ && in.len != 0)
				abort();
			if (smtp_server_want(s) != PROTO_WANT_PENDING)
				break;
		}
		struct buf *o = smtp_server_output(s);
		check_output(o);
		buf_clear(o);
	}
	if (!closed) {
		if (knobs & 8)
			smtp_server_shutdown(s);
		else
			smtp_server_timeout(s);
		if (smtp_server_want(s) == PROTO_WANT_PENDING)
			resume(&f, s);
		check_output(smtp_server_output(s));
	}
	smtp_server_free(&s);
	buf_deinit(&in);
	return 0;
}
