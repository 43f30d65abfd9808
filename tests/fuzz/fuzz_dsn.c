/* SPDX-License-Identifier: MIT */
/* Fuzz the DSN builder with hostile originals, replies and envelope strings:
 * the output must always parse as a well-formed multipart/report with 2 or
 * 3 parts, every line of the machine-readable part must be a field, a
 * continuation or a group separator, and nothing from the input may end a
 * part early. Also xtext: decode never over-reads, encode/decode round-trips.
 *
 * Input: one flags byte, then NUL-separated fields: original, reply text,
 * recipient address, ORCPT, ENVID, sender. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/message.h"
#include "queue/dsn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Next NUL-terminated field of [*p, end) as a malloc'd C string. */
static char *next_field(const uint8_t **p, const uint8_t *end, size_t *len_r)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul != NULL ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s = xstrndup((const char *)*p, n);
	*len_r = n;
	*p = nul != NULL ? nul + 1 : end;
	return s;
}

static void check_report(const struct buf *out)
{
	struct mime_message *m = mime_parse(out->data, out->len, NULL);
	const struct mime_part *root = &m->parts[0];
	size_t l;
	const char *sub = mime_str_ptr(m, root->subtype, &l);
	if (sub == NULL || strcmp(sub, "report") != 0)
		abort();
	if (root->n_children < 2 || root->n_children > 3 ||
	    (root->flags & MIME_PART_NO_END_BOUNDARY))
		abort();
	const struct mime_part *ds = &m->parts[m->parts[root->first_child].next];
	const char *dsub = mime_str_ptr(m, ds->subtype, &l);
	if (dsub == NULL || strstr(dsub, "delivery-status") == NULL)
		abort();
	const uint8_t *p = out->data + ds->body.off, *end = p + ds->body.len;
	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0 && p[0] != ' ' && memchr(p, ':', n) == NULL)
			abort();
		if (memchr(p, '\r', n) != NULL || n > 998)
			abort();
		p = nl != NULL ? nl + 1 : end;
	}
	mime_message_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 16)
		return 0;
	uint8_t flags = data[0];
	const uint8_t *p = data + 1, *end = data + size;
	size_t orig_len, text_len, n;
	char *orig = next_field(&p, end, &orig_len);
	char *text = next_field(&p, end, &text_len);
	char *addr = next_field(&p, end, &n);
	char *orcpt = next_field(&p, end, &n);
	char *envid = next_field(&p, end, &n);
	char *sender = next_field(&p, end, &n);

	struct dsn_rcpt r[2] = {
	    {
		.addr = addr,
		.orcpt = (flags & 1) ? orcpt : NULL,
		.action = (enum queue_action)(1 + (flags >> 1) % 4),
		.code = (flags & 8) ? 550 : 0,
		.enhanced = text,
		.text = text,
		.remote = (flags & 16) ? addr : NULL,
		.last_attempt = 1700000000,
		.will_retry_until = 1700400000,
	    },
	    {.addr = "x@example.org", .action = QUEUE_ACTION_FAILED, .code = 451},
	};
	struct dsn_input in = {
	    .hostname = "mx.example.org",
	    .sender = (flags & 32) ? sender : "a@example.org",
	    .envid = (flags & 64) ? envid : NULL,
	    .queue_id = "0123456789abcdef",
	    .ret = (enum queue_ret)(flags % 3),
	    .smtputf8 = (flags & 128) != 0,
	    .arrival = 1700000000,
	    .now = 1700000100,
	    .rcpts = r,
	    .n_rcpts = 2,
	    .orig = (const uint8_t *)orig,
	    .orig_len = orig_len,
	    .orig_truncated = (flags & 4) != 0,
	    .max_return = (flags & 2) ? 64 : 0,
	};
	struct buf out = BUF_INIT(0);
	struct dsn_result res;
	int rc = dsn_build(&in, &out, &res);
	if (rc < 0 || (rc == 0 && in.sender[0] != '\0'))
		abort();
	if (rc == 1)
		check_report(&out);
	buf_deinit(&out);

	/* xtext */
	struct buf dec = BUF_INIT(0), enc = BUF_INIT(0), back = BUF_INIT(0);
	if (dsn_xtext_decode(text, text_len, &dec) == 0 && dec.len > text_len)
		abort(); /* decoding never grows */
	dsn_xtext_encode(orig, orig_len, &enc);
	if (dsn_xtext_decode((const char *)enc.data, enc.len, &back) < 0 || back.len != orig_len ||
	    (orig_len > 0 && memcmp(back.data, orig, orig_len) != 0))
		abort();
	buf_deinit(&dec);
	buf_deinit(&enc);
	buf_deinit(&back);

	free(orig);
	free(text);
	free(addr);
	free(orcpt);
	free(envid);
	free(sender);
	return 0;
}
