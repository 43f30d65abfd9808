/* SPDX-License-Identifier: MIT */
/* Fuzz FETCH (proto/imap/imap_fetch): item list compile + render.
 *
 * Input: 1 options byte, then the FETCH arguments as the client sends them
 * (fed to the IMAP reader as "t FETCH 1 <input>\r\n", literals accepted).
 *   opt & 3     which built-in message (simple, multipart/base64,
 *               message/rfc822 with QP and NUL, header-only)
 *   opt & 4     UID FETCH
 *   opt & 8     rev2; opt & 16 CONDSTORE
 *   opt & 32    give the render a serialised part tree instead of the file,
 *               and render as if the engine had just set \Seen (add_flags)
 *   opt >> 6    high-water mark selector (1, 7, 100, 64 KiB)
 * Properties: no crash or leak; a compiled plan renders a response that
 * starts with "* 1 FETCH (" and ends with ")\r\n"; rendering with a small
 * high-water mark and resuming gives exactly the same bytes as rendering
 * in one go. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/imap/imap_fetch.h"
#include "proto/imap/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const msgs[4] = {
	"From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: test\n"
	"Date: Thu, 26 Nov 2026 10:00:00 +0000\nMessage-ID: <m1@example.org>\n\nHello world\n",
	"From: a@b\nSubject: mp\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
	"pre\n--XX\nContent-Type: text/plain\n\nfirst\n--XX\nContent-Type: application/octet-stream\n"
	"Content-Transfer-Encoding: base64\n\nAAECAwQF\n--XX\nContent-Transfer-Encoding: x-foo\n\nzz\n"
	"--XX--\nepilogue\n",
	"From: a@b\r\nSubject: inner\r\nContent-Type: message/rfc822\r\n\r\nSubject: deep\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n"
	"\r\nGr=FC=DFe =\r\nsoft\0nul\r\n",
	"Subject: only a header\nX-A: b",
};

struct mem {
	const uint8_t *p;
	size_t n;
};

static long mem_read(void *ctx, uint64_t off, size_t len, void *buf)
{
	struct mem *m = ctx;
	if (off >= m->n)
		return 0;
	size_t k = m->n - (size_t)off < len ? m->n - (size_t)off : len;
	if (k > 5000)
		k = 5000; /* short reads */
	memcpy(buf, m->p + off, k);
	return (long)k;
}

static int render(const struct imap_fetch_plan *plan, struct imap_msg *msg, bool add_flags,
		  size_t hw, struct buf *all)
{
	struct imap_fetch_render r;
	const char *err;
	if (imap_fetch_render_begin(&r, plan, msg, add_flags, &err) < 0) {
		ASSERT(err != NULL);
		return -2;
	}
	struct buf out = BUF_INIT(0);
	int rc;
	while ((rc = imap_fetch_render(&r, &out, hw)) == 1) {
		ASSERT(out.len >= hw);
		buf_xappend(all, out.data, out.len);
		buf_clear(&out);
	}
	buf_xappend(all, out.data, out.len);
	buf_deinit(&out);
	imap_fetch_render_end(&r);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	uint8_t opt = data[0];
	struct buf line = BUF_INIT(0);
	buf_xappend(&line, "t FETCH 1 ", 10);
	buf_xappend(&line, data + 1, size - 1);
	buf_xappend(&line, "\r\n", 2);
	struct imap_parser *p = imap_parser_new(NULL);
	struct imap_parse_event ev;
	size_t off = 0;
	for (;;) {
		off += imap_parser_feed(p, line.data + off, line.len - off, &ev);
		if (ev.type != IMAP_PARSE_CONTINUATION)
			break;
		imap_parser_literal_accept(p);
	}
	if (ev.type != IMAP_PARSE_COMMAND || ev.n_args < 2) {
		imap_parser_free(&p);
		buf_deinit(&line);
		return 0;
	}
	struct imap_fetch_opts o = { .rev2 = (opt & 8) != 0, .condstore = (opt & 16) != 0 };
	struct imap_fetch_plan *plan = NULL;
	const char *err = NULL;
	if (imap_fetch_parse(ev.args + 1, ev.n_args - 1, (opt & 4) != 0, &o, &plan, &err) < 0) {
		ASSERT(plan == NULL && err != NULL);
		imap_parser_free(&p);
		buf_deinit(&line);
		return 0;
	}
	unsigned which = opt & 3;
	size_t mlen = strlen(msgs[which]);
	if (which == 2) {
		/* the QP message holds a NUL: find its real end */
		mlen += 1 + strlen(msgs[2] + mlen + 1);
	}
	struct mem mem = { (const uint8_t *)msgs[which], mlen };
	struct imap_msg msg = { .seq = 1, .uid = 42, .flags = IMAP_MSGF_SEEN, .keywords = "$X",
				.recent = true, .internaldate = 1795687200, .tz_min = -300,
				.size = mlen, .modseq = 9, .read = mem_read, .read_ctx = &mem };
	struct buf ser = BUF_INIT(0);
	if (opt & 32) {
		struct mime_message *m = mime_parse(mem.p, mem.n, NULL);
		if (mime_message_serialize(m, &ser) == 0) {
			msg.mime = ser.data;
			msg.mime_len = ser.len;
		}
		mime_message_free(&m);
	}
	static const size_t hws[4] = { 1, 7, 100, 65536 };
	struct buf a = BUF_INIT(0), b = BUF_INIT(0);
	int ra = render(plan, &msg, (opt & 0x20) != 0, SIZE_MAX, &a);
	int rb = render(plan, &msg, (opt & 0x20) != 0, hws[opt >> 6], &b);
	ASSERT(ra == rb);
	if (ra == 0) {
		ASSERT(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
		ASSERT(a.len >= 14 && memcmp(a.data, "* 1 FETCH (", 11) == 0);
		ASSERT(memcmp(a.data + a.len - 3, ")\r\n", 3) == 0);
	}
	buf_deinit(&a);
	buf_deinit(&b);
	buf_deinit(&ser);
	imap_msg_release(&msg);
	imap_fetch_plan_free(&plan);
	imap_parser_free(&p);
	buf_deinit(&line);
	return 0;
}
