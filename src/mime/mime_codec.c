/* SPDX-License-Identifier: MIT */
/* Decoders: streaming base64 (RFC 2045 6.8) and quoted-printable (6.7)
 * tolerant of real-world damage, RFC 2047 encoded words, RFC 2231 extended
 * parameter values, and charset conversion to UTF-8 through glibc iconv. */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/mime_int.h"

/* ---- UTF-8 helpers ------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p, or 0 if invalid/truncated. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	size_t len;
	uint32_t min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	uint32_t cp = c & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = utf8_seq(p + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

static void latin1_to_utf8(const uint8_t *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c < 0x80) {
			buf_xappend(out, &c, 1);
		} else {
			uint8_t two[2] = { (uint8_t)(0xc0 | (c >> 6)), (uint8_t)(0x80 | (c & 0x3f)) };
			buf_xappend(out, two, 2);
		}
	}
}

static bool cs_is(const char *cs, const char *name)
{
	return ascii_strcasecmp(cs, name) == 0;
}

int mime_charset_to_utf8(const char *charset, const uint8_t *p, size_t n, struct buf *out)
{
	size_t start = out->len;
	if (!charset || !*charset || cs_is(charset, "us-ascii") || cs_is(charset, "utf-8") ||
	    cs_is(charset, "utf8") || cs_is(charset, "ascii")) {
		if (utf8_valid(p, n)) {
			buf_xappend(out, p, n);
		} else if (charset && (cs_is(charset, "utf-8") || cs_is(charset, "utf8"))) {
			for (size_t i = 0; i < n;) {
				size_t l = utf8_seq(p + i, n - i);
				if (l) {
					buf_xappend(out, p + i, l);
					i += l;
				} else {
					buf_xappend(out, "\xef\xbf\xbd", 3);
					i++;
				}
			}
		} else {
			latin1_to_utf8(p, n, out);
		}
	} else {
		iconv_t cd = iconv_open("UTF-8", charset);
		if (cd == (iconv_t)-1) {
			if (utf8_valid(p, n))
				buf_xappend(out, p, n);
			else
				latin1_to_utf8(p, n, out);
		} else {
			char *in = (char *)(uintptr_t)p;
			size_t inleft = n;
			char tmp[4096];
			while (inleft > 0) {
				char *o = tmp;
				size_t oleft = sizeof tmp;
				size_t r = iconv(cd, &in, &inleft, &o, &oleft);
				buf_xappend(out, tmp, (size_t)(o - tmp));
				if (r == (size_t)-1) {
					if (errno == E2BIG)
						continue;
					/* EILSEQ / EINVAL: replace one byte, go on */
					buf_xappend(out, "\xef\xbf\xbd", 3);
					in++;
					inleft--;
					iconv(cd, NULL, NULL, NULL, NULL);
				}
			}
			char *o = tmp;
			size_t oleft = sizeof tmp;
			iconv(cd, NULL, NULL, &o, &oleft);
			buf_xappend(out, tmp, (size_t)(o - tmp));
			iconv_close(cd);
		}
	}
	if (out->max && out->len > out->max) {
		out->len = start < out->max ? out->max : start;
		return -1;
	}
	return 0;
}

/* ---- transfer decoders -------------------------------------------------- */

static const int8_t b64val[256] = {
	['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
	['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
	['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
	['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
	['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
	['/'] = 64,
}; /* value + 1; 0 = not in the alphabet */

void mime_decoder_init(struct mime_decoder *d, enum mime_cte cte)
{
	memset(d, 0, sizeof *d);
	d->cte = cte;
}

static int b64_feed(struct mime_decoder *d, const uint8_t *p, size_t n, struct buf *out)
{
	uint8_t tmp[3 * 256];
	size_t t = 0;
	for (size_t i = 0; i < n && !d->done; i++) {
		int v = b64val[p[i]];
		if (!v) {
			if (p[i] == '=') {
				d->done = true; /* padding: the rest is ignored */
			} else if (!mime_is_fws(p[i])) {
				d->invalid = true;
			}
			continue;
		}
		d->acc = (d->acc << 6) | (uint32_t)(v - 1);
		if (++d->nacc == 4) {
			tmp[t++] = (uint8_t)(d->acc >> 16);
			tmp[t++] = (uint8_t)(d->acc >> 8);
			tmp[t++] = (uint8_t)d->acc;
			d->nacc = 0;
			d->acc = 0;
			if (t == sizeof tmp) {
				if (buf_append(out, tmp, t) < 0)
					return -1;
				t = 0;
			}
		}
	}
	return t ? buf_append(out, tmp, t) : 0;
}

static int b64_finish(struct mime_decoder *d, struct buf *out)
{
	uint8_t tmp[2];
	size_t t = 0;
	if (d->nacc == 2) {
		tmp[t++] = (uint8_t)(d->acc >> 4);
	} else if (d->nacc == 3) {
		tmp[t++] = (uint8_t)(d->acc >> 10);
		tmp[t++] = (uint8_t)(d->acc >> 2);
	} else if (d->nacc == 1) {
		d->invalid = true;
	}
	d->nacc = 0;
	return t ? buf_append(out, tmp, t) : 0;
}

/* QP states in d->acc: 0 normal (pend = WSP/CR run), 1 "=", 2 "=H",
 * 3 "=" + WSP (soft break candidate). */
static int qp_flush(struct mime_decoder *d, struct buf *out)
{
	int r = d->npend ? buf_append(out, d->pend, d->npend) : 0;
	d->npend = 0;
	d->acc = 0;
	return r;
}

static int qp_feed(struct mime_decoder *d, const uint8_t *p, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		switch (d->acc) {
		case 0:
			if (c == ' ' || c == '\t' || c == '\r') {
				if (d->npend == sizeof d->pend && qp_flush(d, out) < 0)
					return -1;
				d->pend[d->npend++] = c;
				i++;
			} else if (c == '\n') {
				d->npend = 0; /* RFC 2045 6.7 (3): trailing WSP is dropped */
				if (buf_append(out, "\r\n", 2) < 0)
					return -1;
				i++;
			} else if (c == '=') {
				if (qp_flush(d, out) < 0)
					return -1;
				d->pend[d->npend++] = c;
				d->acc = 1;
				i++;
			} else {
				if (d->npend && qp_flush(d, out) < 0)
					return -1;
				size_t s = i;
				while (i < n && p[i] != '=' && p[i] != ' ' && p[i] != '\t' &&
				       p[i] != '\r' && p[i] != '\n')
					i++;
				if (buf_append(out, p + s, i - s) < 0)
					return -1;
			}
			break;
		case 1:
			if (mime_hexval(c) >= 0) {
				d->pend[d->npend++] = c;
				d->acc = 2;
				i++;
			} else if (c == ' ' || c == '\t' || c == '\r') {
				d->pend[d->npend++] = c;
				d->acc = 3;
				i++;
			} else if (c == '\n') {
				d->npend = 0; /* soft line break */
				d->acc = 0;
				i++;
			} else {
				d->invalid = true;
				if (qp_flush(d, out) < 0)
					return -1;
			}
			break;
		case 2:
			if (mime_hexval(c) >= 0) {
				uint8_t b = (uint8_t)(mime_hexval(d->pend[1]) * 16 + mime_hexval(c));
				d->npend = 0;
				d->acc = 0;
				if (buf_append(out, &b, 1) < 0)
					return -1;
				i++;
			} else {
				d->invalid = true;
				if (qp_flush(d, out) < 0)
					return -1;
			}
			break;
		default:
			if (c == ' ' || c == '\t' || c == '\r') {
				if (d->npend == sizeof d->pend) {
					d->invalid = true;
					if (qp_flush(d, out) < 0)
						return -1;
					break;
				}
				d->pend[d->npend++] = c;
				i++;
			} else if (c == '\n') {
				d->npend = 0;
				d->acc = 0;
				i++;
			} else {
				d->invalid = true;
				if (qp_flush(d, out) < 0)
					return -1;
			}
			break;
		}
	}
	return 0;
}

int mime_decoder_feed(struct mime_decoder *d, const void *p, size_t n, struct buf *out)
{
	switch (d->cte) {
	case MIME_CTE_BASE64:
		return b64_feed(d, p, n, out);
	case MIME_CTE_QP:
		return qp_feed(d, p, n, out);
	default:
		return buf_append(out, p, n);
	}
}

int mime_decoder_finish(struct mime_decoder *d, struct buf *out)
{
	if (d->cte == MIME_CTE_BASE64)
		return b64_finish(d, out);
	if (d->cte == MIME_CTE_QP) {
		if (d->acc == 0) {
			d->npend = 0; /* trailing whitespace at the end: dropped */
			return 0;
		}
		d->invalid = true;
		return qp_flush(d, out);
	}
	return 0;
}

/* ---- RFC 2047 ----------------------------------------------------------- */

/* Tries to decode an encoded word at v[i] ("=?cs?e?text?="). On success
 * appends UTF-8, sets *end_r and returns true. */
static bool encoded_word(const uint8_t *v, size_t n, size_t i, size_t *end_r, struct buf *out)
{
	if (i + 8 > n || v[i] != '=' || v[i + 1] != '?')
		return false;
	size_t cs = i + 2, j = cs;
	while (j < n && v[j] != '?' && !mime_is_fws(v[j]))
		j++;
	if (j >= n || v[j] != '?' || j == cs || j - cs > 64)
		return false;
	size_t cse = j;
	if (j + 3 >= n || v[j + 2] != '?')
		return false;
	uint8_t enc = v[j + 1] | 0x20;
	if (enc != 'b' && enc != 'q')
		return false;
	size_t ts = j + 3, k = ts;
	while (k + 1 < n && !(v[k] == '?' && v[k + 1] == '=')) {
		if (v[k] == '\r' || v[k] == '\n' || (enc == 'b' && v[k] == ' '))
			return false;
		k++;
	}
	if (k + 1 >= n)
		return false;
	char charset[65];
	size_t cl = cse - cs;
	memcpy(charset, v + cs, cl);
	charset[cl] = 0;
	char *star = memchr(charset, '*', cl); /* RFC 2231 5: charset*lang */
	if (star)
		*star = 0;
	struct buf raw = BUF_INIT(0);
	bool ok = true;
	if (enc == 'b') {
		struct mime_decoder d;
		mime_decoder_init(&d, MIME_CTE_BASE64);
		if (mime_decoder_feed(&d, v + ts, k - ts, &raw) < 0 ||
		    mime_decoder_finish(&d, &raw) < 0 || d.invalid)
			ok = false;
	} else {
		for (size_t q = ts; q < k; q++) {
			uint8_t c = v[q];
			if (c == '_') {
				c = ' ';
			} else if (c == '=' && q + 2 < k && mime_hexval(v[q + 1]) >= 0 &&
				   mime_hexval(v[q + 2]) >= 0) {
				c = (uint8_t)(mime_hexval(v[q + 1]) * 16 + mime_hexval(v[q + 2]));
				q += 2;
			}
			buf_xappend(&raw, &c, 1);
		}
	}
	if (ok)
		ok = mime_charset_to_utf8(charset, raw.data ? raw.data : (const uint8_t *)"", raw.len,
					  out) == 0;
	buf_deinit(&raw);
	if (ok)
		*end_r = k + 2;
	return ok;
}

int mime_decode_words(const uint8_t *v, size_t n, struct buf *out)
{
	size_t i = 0, start = out->len;
	bool prev_word = false;
	struct buf lit = BUF_INIT(0), word = BUF_INIT(0);
	int ret = 0;
	while (i < n) {
		size_t e;
		if (v[i] == '=' && i + 1 < n && v[i + 1] == '?') {
			word.len = 0;
			if (encoded_word(v, n, i, &e, &word)) {
				bool all_ws = true;
				for (size_t k = 0; k < lit.len; k++)
					if (!mime_is_fws(lit.data[k]))
						all_ws = false;
				/* whitespace between two encoded words is dropped (6.2) */
				if (lit.len && !(prev_word && all_ws) &&
				    mime_charset_to_utf8(NULL, lit.data, lit.len, out) < 0)
					ret = -1;
				lit.len = 0;
				if (word.len)
					buf_xappend(out, word.data, word.len);
				prev_word = true;
				i = e;
				continue;
			}
		}
		if (v[i] != '\r' && v[i] != '\n')
			buf_xappend(&lit, v + i, 1);
		i++;
	}
	if (lit.len && mime_charset_to_utf8(NULL, lit.data, lit.len, out) < 0)
		ret = -1;
	buf_deinit(&lit);
	buf_deinit(&word);
	if (ret < 0 || (out->max && out->len > out->max)) {
		out->len = start;
		return -1;
	}
	return 0;
}

int mime_param_decode(const uint8_t *v, size_t n, struct buf *out)
{
	const uint8_t *q1 = memchr(v, '\'', n);
	const uint8_t *q2 = q1 ? memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - v)) : NULL;
	if (!q2)
		return mime_charset_to_utf8(NULL, v, n, out);
	char charset[65];
	size_t cl = (size_t)(q1 - v);
	if (cl > 64)
		cl = 0;
	memcpy(charset, v, cl);
	charset[cl] = 0;
	struct buf raw = BUF_INIT(0);
	for (const uint8_t *p = q2 + 1; p < v + n; p++) {
		uint8_t c = *p;
		if (c == '%' && p + 2 < v + n && mime_hexval(p[1]) >= 0 && mime_hexval(p[2]) >= 0) {
			c = (uint8_t)(mime_hexval(p[1]) * 16 + mime_hexval(p[2]));
			p += 2;
		}
		buf_xappend(&raw, &c, 1);
	}
	int r = mime_charset_to_utf8(charset, raw.data ? raw.data : (const uint8_t *)"", raw.len, out);
	buf_deinit(&raw);
	return r;
}
