/* SPDX-License-Identifier: MIT */
/* RFC 822/2045 lexical pieces shared by the header parsers: CFWS skipping,
 * tokens, quoted strings, and Content-Type/Disposition parameters with RFC
 * 2231 continuations joined the way Dovecot joins them (plain parameters
 * first in their order, then each continued parameter, "name*" when its
 * first segment is extended). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/mime_int.h"

bool mime_is_tspecial(uint8_t c)
{
	/* RFC 2045 5.1: tspecials, SPACE and CTLs end a token */
	if (c <= ' ' || c == 0x7f)
		return true;
	return memchr("()<>@,;:\\\"/[]?=", c, 16) != NULL;
}

int mime_hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

size_t mime_skip_cfws(const uint8_t *p, size_t n, size_t i, struct buf *comment)
{
	for (;;) {
		while (i < n && mime_is_fws(p[i]))
			i++;
		if (i >= n || p[i] != '(')
			return i;
		/* RFC 5322 3.2.2: comments nest; quoted-pair escapes */
		unsigned depth = 0;
		size_t cs = i + 1;
		if (comment)
			comment->len = 0;
		for (; i < n; i++) {
			if (p[i] == '\\' && i + 1 < n) {
				if (comment && depth == 1)
					buf_xappend(comment, p + i + 1, 1);
				i++;
				continue;
			}
			if (p[i] == '(') {
				if (depth++ == 0)
					continue;
			} else if (p[i] == ')') {
				if (--depth == 0) {
					i++;
					break;
				}
			}
			if (comment && depth >= 1 && i >= cs)
				buf_xappend(comment, p + i, 1);
		}
	}
}

struct rawparam {
	const uint8_t *name;
	size_t name_len;
	struct buf value;
	int seg;     /* continuation number, or -1 */
	bool ext;    /* "*" after the (segment) name */
	bool used;
};

/* quoted-string at v[i] == '"' into out; returns the index after it. An
 * unterminated string runs to the end (real mail). */
static size_t quoted(const uint8_t *v, size_t n, size_t i, struct buf *out)
{
	for (i++; i < n; i++) {
		if (v[i] == '"')
			return i + 1;
		if (v[i] == '\\' && i + 1 < n)
			i++;
		if (v[i] == '\r' || v[i] == '\n')
			continue; /* folding inside the string */
		buf_xappend(out, v + i, 1);
	}
	return n;
}

int mime_params_parse(struct mime_builder *b, const uint8_t *v, size_t n, size_t i,
		      uint32_t *first_r, uint32_t *count_r)
{
	struct rawparam *rp = NULL;
	size_t nrp = 0, cap = 0;
	int ret = 0;
	*first_r = b->m->n_params;
	*count_r = 0;
	for (;;) {
		i = mime_skip_cfws(v, n, i, NULL);
		if (i >= n)
			break;
		if (v[i] != ';') {
			ret = -1;
			break;
		}
		i = mime_skip_cfws(v, n, i + 1, NULL);
		if (i >= n)
			break;
		if (v[i] == ';')
			continue;
		size_t ns = i;
		while (i < n && !mime_is_tspecial(v[i]))
			i++;
		if (i == ns) {
			ret = -1;
			break;
		}
		size_t ne = i;
		i = mime_skip_cfws(v, n, i, NULL);
		if (i >= n || v[i] != '=') {
			ret = -1;
			break;
		}
		i = mime_skip_cfws(v, n, i + 1, NULL);
		if (nrp >= b->max_params)
			break; /* limit: keep what we have */
		if (nrp == cap) {
			cap = cap ? cap * 2 : 8;
			rp = xrealloc(rp, cap * sizeof *rp);
		}
		struct rawparam *r = &rp[nrp];
		memset(r, 0, sizeof *r);
		buf_init(&r->value, 0);
		if (i < n && v[i] == '"') {
			i = quoted(v, n, i, &r->value);
		} else {
			size_t vs = i;
			while (i < n && !mime_is_tspecial(v[i]))
				i++;
			if (i == vs) {
				buf_deinit(&r->value);
				ret = -1;
				break;
			}
			buf_xappend(&r->value, v + vs, i - vs);
		}
		nrp++;
		r->name = v + ns;
		r->name_len = ne - ns;
		r->seg = -1;
		/* RFC 2231 3/4: name*N, name*N*, name* */
		const uint8_t *st = memchr(r->name, '*', r->name_len);
		if (st) {
			size_t bl = (size_t)(st - r->name);
			size_t k = bl + 1;
			int num = -1;
			if (k < r->name_len && v[ns + k] >= '0' && v[ns + k] <= '9') {
				num = 0;
				while (k < r->name_len && v[ns + k] >= '0' && v[ns + k] <= '9' &&
				       num < 100000)
					num = num * 10 + (v[ns + k++] - '0');
			}
			bool ext = k < r->name_len && v[ns + k] == '*';
			if (ext)
				k++;
			if (k == r->name_len && num >= 0 && bl > 0) {
				r->seg = num;
				r->ext = ext;
				r->name_len = bl;
			}
		}
	}
	if (ret == 0) {
		/* plain parameters first, in order */
		for (size_t k = 0; k < nrp; k++) {
			if (rp[k].seg >= 0)
				continue;
			if (mime_param_add(b, mime_pool_add(b, rp[k].name, rp[k].name_len),
					   mime_pool_add(b, rp[k].value.data ? rp[k].value.data
									      : (const uint8_t *)"",
							 rp[k].value.len)) != MIME_NIL)
				(*count_r)++;
		}
		/* then continuations, joined in segment order from 0 */
		for (size_t k = 0; k < nrp; k++) {
			if (rp[k].seg < 0 || rp[k].used)
				continue;
			struct buf val = BUF_INIT(0);
			bool ext0 = false, found = false;
			for (int want = 0;; want++) {
				size_t f;
				for (f = 0; f < nrp; f++)
					if (!rp[f].used && rp[f].seg == want &&
					    rp[f].name_len == rp[k].name_len &&
					    ascii_strncasecmp((const char *)rp[f].name,
							      (const char *)rp[k].name,
							      rp[k].name_len) == 0)
						break;
				if (f == nrp)
					break;
				rp[f].used = true;
				if (want == 0)
					ext0 = rp[f].ext;
				found = true;
				buf_xappend(&val, rp[f].value.data, rp[f].value.len);
			}
			/* segments not reachable from 0 are dropped */
			for (size_t f = 0; f < nrp; f++)
				if (rp[f].seg >= 0 && rp[f].name_len == rp[k].name_len &&
				    ascii_strncasecmp((const char *)rp[f].name,
						      (const char *)rp[k].name, rp[k].name_len) == 0)
					rp[f].used = true;
			struct buf nm = BUF_INIT(0);
			buf_xappend(&nm, rp[k].name, rp[k].name_len);
			if (ext0)
				buf_xappend(&nm, "*", 1);
			if (found) {
				if (mime_param_add(b, mime_pool_add(b, nm.data, nm.len),
						   mime_pool_add(b, val.data ? val.data
									 : (const uint8_t *)"",
								 val.len)) != MIME_NIL)
					(*count_r)++;
			}
			buf_deinit(&nm);
			buf_deinit(&val);
		}
	}
	for (size_t k = 0; k < nrp; k++)
		buf_deinit(&rp[k].value);
	free(rp);
	return ret;
}
