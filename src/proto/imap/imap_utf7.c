/* SPDX-License-Identifier: MIT */
/* Modified UTF-7 (RFC 3501 5.1.3) <-> UTF-8 for mailbox names, strict in
 * both directions so that each name has one wire form (see imap_utf7.h for
 * the exact rules), and the UTF-8 checks IMAP4rev2 names need. */
#include <stdint.h>
#include <string.h>

#include "proto/imap/imap_utf7.h"

/* Modified base64: RFC 3501 5.1.3 uses "," where RFC 4648 has "/". */
static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* Decodes one strict UTF-8 sequence at s[*i..n). Returns the code point
 * and advances *i, or returns -1 (overlong, surrogate, > U+10FFFF,
 * truncated, stray continuation byte). U+0000 is returned as 0. */
static int32_t utf8_next(const uint8_t *s, size_t n, size_t *i)
{
	uint8_t c = s[*i];
	if (c < 0x80) {
		(*i)++;
		return c;
	}
	size_t len;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return -1; /* continuation byte, 0xc0/0xc1 (always overlong), 0xf5+ */
	}
	if (n - *i < len)
		return -1;
	for (size_t k = 1; k < len; k++) {
		uint8_t d = s[*i + k];
		if ((d & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (d & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += len;
	return (int32_t)cp;
}

static void utf8_put(struct buf *b, uint32_t cp, int *err)
{
	uint8_t o[4];
	size_t k;
	if (cp < 0x80) {
		o[0] = (uint8_t)cp;
		k = 1;
	} else if (cp < 0x800) {
		o[0] = (uint8_t)(0xc0 | (cp >> 6));
		o[1] = (uint8_t)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		o[0] = (uint8_t)(0xe0 | (cp >> 12));
		o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (uint8_t)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		o[0] = (uint8_t)(0xf0 | (cp >> 18));
		o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (uint8_t)(0x80 | (cp & 0x3f));
		k = 4;
	}
	if (buf_append(b, o, k) < 0)
		*err = 1;
}

bool imap_utf8_valid(const void *pv, size_t n)
{
	const uint8_t *s = pv;
	size_t i = 0;
	while (i < n) {
		if (s[i] < 0x80) {
			if (s[i] == 0)
				return false;
			i++;
			continue;
		}
		if (utf8_next(s, n, &i) < 0)
			return false;
	}
	return true;
}

bool imap_mailbox_name_utf8_ok(const void *pv, size_t n)
{
	const uint8_t *s = pv;
	size_t i = 0;
	if (n == 0)
		return false;
	while (i < n) {
		int32_t cp = utf8_next(s, n, &i);
		if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
		    cp == 0x2029 || cp == 0xfffe || cp == 0xffff)
			return false; /* also cp < 0: invalid UTF-8 */
	}
	return true;
}

/* ---- mUTF-7 -> UTF-8 ---------------------------------------------------- */

/* Decodes the base64 run s[*i..n) up to and including its "-". */
static int decode_run(const uint8_t *s, size_t n, size_t *i, struct buf *out)
{
	uint32_t bits = 0;
	unsigned nbits = 0;
	uint32_t hi = 0; /* pending high surrogate */
	size_t units = 0;
	int err = 0;
	for (;;) {
		if (*i >= n)
			return -1; /* unterminated shift */
		uint8_t c = s[(*i)++];
		if (c == '-')
			break;
		int v = b64val(c);
		if (v < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = (bits >> nbits) & 0xffff;
		bits &= (1u << nbits) - 1;
		units++;
		if (hi) {
			if (u < 0xdc00 || u > 0xdfff)
				return -1; /* high surrogate not followed by a low one */
			utf8_put(out, 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00), &err);
			hi = 0;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			hi = u;
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			return -1; /* lone low surrogate */
		} else if (u >= 0x20 && u <= 0x7e) {
			return -1; /* printable ASCII must stand for itself */
		} else if (u == 0) {
			return -1;
		} else {
			utf8_put(out, u, &err);
		}
	}
	/* Canonical padding: fewer than 6 leftover bits, all zero; no empty run
	 * ("&-" is handled by the caller). */
	if (units == 0 || hi || nbits >= 6 || bits != 0 || err)
		return -1;
	return 0;
}

int imap_utf7_to_utf8(const char *sv, size_t n, struct buf *out)
{
	const uint8_t *s = (const uint8_t *)sv;
	size_t start = out->len;
	size_t i = 0;
	bool after_run = false;
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x20 || c > 0x7e)
			goto fail; /* raw control or 8-bit byte */
		if (c != '&') {
			if (buf_append(out, &c, 1) < 0)
				goto fail;
			i++;
			after_run = false;
			continue;
		}
		if (i + 1 < n && s[i + 1] == '-') {
			if (buf_append(out, "&", 1) < 0)
				goto fail;
			i += 2;
			after_run = false;
			continue;
		}
		if (after_run)
			goto fail; /* "&..-&..-": the canonical form is one run */
		i++;
		if (decode_run(s, n, &i, out) < 0)
			goto fail;
		after_run = true;
	}
	return 0;
fail:
	out->len = start;
	if (out->data)
		out->data[start] = 0;
	return -1;
}

bool imap_utf7_valid(const char *s, size_t n)
{
	struct buf tmp = BUF_INIT(0);
	bool ok = imap_utf7_to_utf8(s, n, &tmp) == 0;
	buf_deinit(&tmp);
	return ok;
}

/* ---- UTF-8 -> mUTF-7 ---------------------------------------------------- */

struct enc {
	struct buf *out;
	uint32_t bits;
	unsigned nbits;
	bool in_run;
	int err;
};

static void enc_put(struct enc *e, const void *p, size_t k)
{
	if (buf_append(e->out, p, k) < 0)
		e->err = 1;
}

static void enc_unit(struct enc *e, uint32_t u)
{
	e->bits = (e->bits << 16) | u;
	e->nbits += 16;
	while (e->nbits >= 6) {
		e->nbits -= 6;
		enc_put(e, &b64chars[(e->bits >> e->nbits) & 0x3f], 1);
	}
	e->bits &= (1u << e->nbits) - 1;
}

static void enc_close(struct enc *e)
{
	if (!e->in_run)
		return;
	if (e->nbits > 0)
		enc_put(e, &b64chars[(e->bits << (6 - e->nbits)) & 0x3f], 1);
	enc_put(e, "-", 1);
	e->bits = 0;
	e->nbits = 0;
	e->in_run = false;
}

int imap_utf8_to_utf7(const char *sv, size_t n, struct buf *out)
{
	const uint8_t *s = (const uint8_t *)sv;
	size_t start = out->len;
	struct enc e = { .out = out };
	size_t i = 0;
	while (i < n && !e.err) {
		int32_t cp = utf8_next(s, n, &i);
		if (cp <= 0)
			goto fail; /* invalid UTF-8 or U+0000 */
		if (cp >= 0x20 && cp <= 0x7e) {
			enc_close(&e);
			if (cp == '&')
				enc_put(&e, "&-", 2);
			else {
				char ch = (char)cp;
				enc_put(&e, &ch, 1);
			}
			continue;
		}
		if (!e.in_run) {
			enc_put(&e, "&", 1);
			e.in_run = true;
		}
		if (cp >= 0x10000) {
			uint32_t v = (uint32_t)cp - 0x10000;
			enc_unit(&e, 0xd800 + (v >> 10));
			enc_unit(&e, 0xdc00 + (v & 0x3ff));
		} else {
			enc_unit(&e, (uint32_t)cp);
		}
	}
	enc_close(&e);
	if (e.err)
		goto fail;
	return 0;
fail:
	out->len = start;
	if (out->data)
		out->data[start] = 0;
	return -1;
}
