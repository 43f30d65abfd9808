/* SPDX-License-Identifier: MIT */
/* Fuzz the SMTP client's reply parser and EHLO keyword parser: the input is
 * read as server replies, once whole and once in chunks whose sizes come from
 * the input, with limits chosen by the first byte. Both readings must yield
 * the same replies (code, enhanced code, text) and the same error; every
 * reply must be well formed (code 200..599, text without control octets,
 * textlen matching, an enhanced code of the form class.subject.detail). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proto/smtp/smtp_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reply(const struct smtp_reply *r)
{
	if (r->code < 200 || r->code > 599 || r->nlines == 0)
		abort();
	if (strlen(r->text) != r->textlen)
		abort();
	for (size_t i = 0; i < r->textlen; i++) {
		unsigned char c = (unsigned char)r->text[i];
		if ((c < 0x20 && c != '\n') || c == 0x7f)
			abort();
	}
	size_t el = strlen(r->esc);
	if (el) {
		if (el < 5 || el > 9 || r->esc[0] != '0' + r->code / 100 || r->esc[1] != '.')
			abort();
		if (strncmp(r->text, r->esc, el) != 0)
			abort();
	}
	struct smtp_ehlo e;
	smtp_ehlo_parse(r, &e);
	if (!(e.ext & SMTP_EXT_SIZE) && e.size_max)
		abort();
	if (!(e.ext & SMTP_EXT_AUTH) && e.auth)
		abort();
}

/* Append a digest of every reply to log; returns the final status. */
static int run(const uint8_t *data, size_t size, const struct smtp_reply_limits *lim, bool chunked,
	       struct buf *log)
{
	struct smtp_reply_reader rd;
	smtp_reply_reader_init(&rd, lim);
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < size && i < 16; i++)
		h = (h ^ data[i]) * 16777619u;
	size_t off = 0;
	int r = 0;
	while (off < size) {
		size_t k = size - off;
		if (chunked) {
			h = h * 1103515245u + 12345u;
			k = 1 + (h >> 16) % 23;
			if (k > size - off)
				k = size - off;
		}
		size_t end = off + k;
		while (off < end) {
			size_t used;
			r = smtp_reply_reader_feed(&rd, data + off, end - off, &used);
			if (used > end - off)
				abort();
			off += used;
			if (r < 0)
				goto out;
			if (r == 0) {
				if (off != end)
					abort();
				break;
			}
			check_reply(&rd.reply);
			buf_xprintf(log, "%d %s %u %zu:", rd.reply.code, rd.reply.esc,
				    rd.reply.nlines, rd.reply.textlen);
			buf_xappend(log, rd.reply.text, rd.reply.textlen);
			buf_xappend(log, "\n", 1);
		}
	}
out:
	if (r < 0)
		buf_xprintf(log,
			    "error\n"); /* which limit trips first may depend on the chunking */
	else if (smtp_reply_reader_partial(&rd))
		buf_xprintf(log, "partial\n");
	smtp_reply_reader_deinit(&rd);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_limits lim = {0, 0, 0};
	if (size > 0 && (data[0] & 0x80)) {
		lim.max_line = 8 + data[0] % 64;
		lim.max_size = 16 + (data[0] & 0x3f) * 8;
		lim.max_lines = 1 + data[0] % 7;
	}
	struct buf a, b;
	buf_init(&a, 0);
	buf_init(&b, 0);
	int ra = run(data, size, &lim, false, &a);
	int rb = run(data, size, &lim, true, &b);
	/* An over-limit line or reply may be detected at a chunk boundary, but
	 * what was parsed before must agree, and so must the outcome. */
	if ((ra < 0) != (rb < 0))
		abort();
	if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
		abort();
	buf_deinit(&a);
	buf_deinit(&b);
	return 0;
}
