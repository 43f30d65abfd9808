/* SPDX-License-Identifier: MIT */
/* Cache image of a struct mime_message for the index: "TMS1", then LEB128
 * varints for every count, part, parameter and envelope field, then the
 * string pool. Offsets are stored as deltas (wire minus physical) so that
 * small messages stay small. Deserialisation checks every index, string and
 * link (links must point forward, parents backward, so no cycles) before the
 * result is used: the index is on disk and disks lie. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/mime_int.h"

#define MAGIC "TMS1"

static void put(struct buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	do {
		t[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			t[n] |= 0x80;
		n++;
	} while (v);
	buf_xappend(b, t, n);
}

static void put_idx(struct buf *b, uint32_t v)
{
	put(b, v == MIME_NIL ? 0 : (uint64_t)v + 1);
}

static void put_str(struct buf *b, struct mime_str s)
{
	put_idx(b, s.off);
	if (s.off != MIME_NIL)
		put(b, s.len);
}

static void put_range(struct buf *b, const struct mime_range *r)
{
	put(b, r->off);
	put(b, r->len);
	put(b, r->woff - r->off);
	put(b, r->wlen - r->len);
}

int mime_message_serialize(const struct mime_message *m, struct buf *out)
{
	struct buf b = BUF_INIT(0);
	buf_xappend(&b, MAGIC, 4);
	put(&b, m->n_parts);
	put(&b, m->n_params);
	put(&b, m->n_envelopes);
	put(&b, m->pool_len);
	put(&b, m->flags);
	put(&b, m->size);
	put(&b, m->wire_size - m->size);
	put(&b, m->lines);
	for (uint32_t i = 0; i < m->n_parts; i++) {
		const struct mime_part *p = &m->parts[i];
		put_idx(&b, p->parent);
		put_idx(&b, p->first_child);
		put_idx(&b, p->next);
		put(&b, p->n_children);
		put(&b, p->depth);
		put(&b, p->flags);
		put(&b, p->cte);
		put_range(&b, &p->header);
		put_range(&b, &p->body);
		put(&b, p->body_lines);
		put(&b, p->header_lines);
		put_str(&b, p->type);
		put_str(&b, p->subtype);
		put(&b, p->params);
		put(&b, p->n_params);
		put_str(&b, p->encoding);
		put_str(&b, p->id);
		put_str(&b, p->description);
		put_str(&b, p->md5);
		put_str(&b, p->location);
		put_str(&b, p->disposition);
		put(&b, p->disp_params);
		put(&b, p->n_disp_params);
		put(&b, p->languages);
		put(&b, p->n_languages);
		put_idx(&b, p->envelope);
	}
	for (uint32_t i = 0; i < m->n_params; i++) {
		put_str(&b, m->params[i].name);
		put_str(&b, m->params[i].value);
	}
	for (uint32_t i = 0; i < m->n_envelopes; i++) {
		const struct mime_str *f = &m->envelopes[i].date;
		for (int k = 0; k < 10; k++)
			put_str(&b, f[k]);
	}
	buf_xappend(&b, m->pool, m->pool_len);
	int r = buf_append(out, b.data, b.len);
	buf_deinit(&b);
	return r;
}

struct rd {
	const uint8_t *p;
	size_t n, i;
	bool bad;
};

static uint64_t get(struct rd *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (r->i >= r->n) {
			r->bad = true;
			return 0;
		}
		uint8_t c = r->p[r->i++];
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static uint32_t get32(struct rd *r, uint64_t max)
{
	uint64_t v = get(r);
	if (v > max)
		r->bad = true;
	return (uint32_t)v;
}

static uint32_t get_idx(struct rd *r, uint32_t n)
{
	uint64_t v = get(r);
	if (v == 0)
		return MIME_NIL;
	if (v > n)
		r->bad = true;
	return (uint32_t)(v - 1);
}

static struct mime_str get_str(struct rd *r, const struct mime_message *m)
{
	struct mime_str s = { MIME_NIL, 0 };
	uint64_t v = get(r);
	if (v == 0)
		return s;
	uint64_t len = get(r);
	uint64_t off = v - 1;
	/* the pool is read last; pool_len is already known */
	if (off >= m->pool_len || len >= m->pool_len - off) {
		r->bad = true;
		return s;
	}
	s.off = (uint32_t)off;
	s.len = (uint32_t)len;
	return s;
}

static void get_range(struct rd *r, struct mime_range *g)
{
	g->off = get(r);
	g->len = get(r);
	g->woff = g->off + get(r);
	g->wlen = g->len + get(r);
	if (g->woff < g->off || g->wlen < g->len || g->off + g->len < g->off ||
	    g->woff + g->wlen < g->woff)
		r->bad = true;
}

struct mime_message *mime_message_deserialize(const void *data, size_t n)
{
	struct rd r = { data, n, 0, false };
	if (n < 4 || memcmp(data, MAGIC, 4) != 0)
		return NULL;
	r.i = 4;
	struct mime_message *m = xcalloc(1, sizeof *m);
	m->n_parts = get32(&r, 10000000);
	m->n_params = get32(&r, 100000000);
	m->n_envelopes = get32(&r, 10000000);
	m->pool_len = get32(&r, UINT32_MAX / 2);
	m->flags = get32(&r, UINT32_MAX);
	m->size = get(&r);
	m->wire_size = m->size + get(&r);
	m->lines = get(&r);
	/* every record takes at least one byte each: reject absurd counts early */
	if (r.bad || m->n_parts == 0 || m->n_parts > n || m->n_params > n || m->n_envelopes > n ||
	    m->pool_len > n)
		goto bad;
	m->parts = xcalloc(m->n_parts, sizeof *m->parts);
	m->params = m->n_params ? xcalloc(m->n_params, sizeof *m->params) : NULL;
	m->envelopes = m->n_envelopes ? xcalloc(m->n_envelopes, sizeof *m->envelopes) : NULL;
	for (uint32_t i = 0; i < m->n_parts && !r.bad; i++) {
		struct mime_part *p = &m->parts[i];
		p->parent = get_idx(&r, m->n_parts);
		p->first_child = get_idx(&r, m->n_parts);
		p->next = get_idx(&r, m->n_parts);
		p->n_children = get32(&r, m->n_parts);
		p->depth = (uint16_t)get32(&r, 0xffff);
		p->flags = (uint16_t)get32(&r, 0xffff);
		p->cte = (uint8_t)get32(&r, MIME_CTE_OTHER);
		get_range(&r, &p->header);
		get_range(&r, &p->body);
		p->body_lines = get(&r);
		p->header_lines = get(&r);
		p->type = get_str(&r, m);
		p->subtype = get_str(&r, m);
		p->params = get32(&r, m->n_params);
		p->n_params = get32(&r, m->n_params - p->params);
		p->encoding = get_str(&r, m);
		p->id = get_str(&r, m);
		p->description = get_str(&r, m);
		p->md5 = get_str(&r, m);
		p->location = get_str(&r, m);
		p->disposition = get_str(&r, m);
		p->disp_params = get32(&r, m->n_params);
		p->n_disp_params = get32(&r, m->n_params - p->disp_params);
		p->languages = get32(&r, m->n_params);
		p->n_languages = get32(&r, m->n_params - p->languages);
		p->envelope = get_idx(&r, m->n_envelopes);
		/* pre-order: parents before, children and siblings after */
		if ((i == 0) != (p->parent == MIME_NIL) || (p->parent != MIME_NIL && p->parent >= i) ||
		    (p->first_child != MIME_NIL && p->first_child <= i) ||
		    (p->next != MIME_NIL && p->next <= i) || p->body.off + p->body.len > m->size)
			r.bad = true;
	}
	for (uint32_t i = 0; i < m->n_params && !r.bad; i++) {
		m->params[i].name = get_str(&r, m);
		m->params[i].value = get_str(&r, m);
	}
	for (uint32_t i = 0; i < m->n_envelopes && !r.bad; i++) {
		struct mime_str *f = &m->envelopes[i].date;
		for (int k = 0; k < 10; k++)
			f[k] = get_str(&r, m);
	}
	if (r.bad || n - r.i != m->pool_len)
		goto bad;
	if (m->pool_len) {
		m->pool = xmalloc(m->pool_len);
		memcpy(m->pool, r.p + r.i, m->pool_len);
		if (m->pool[m->pool_len - 1] != 0)
			goto bad;
	}
	/* strings must be NUL-terminated in the pool */
	for (uint32_t i = 0; i < m->n_params; i++)
		if ((!mime_str_nil(m->params[i].name) &&
		     m->pool[m->params[i].name.off + m->params[i].name.len] != 0) ||
		    (!mime_str_nil(m->params[i].value) &&
		     m->pool[m->params[i].value.off + m->params[i].value.len] != 0))
			goto bad;
	for (uint32_t i = 0; i < m->n_parts; i++) {
		const struct mime_part *p = &m->parts[i];
		const struct mime_str *ss[] = { &p->type,	 &p->subtype, &p->encoding,
						&p->id,		 &p->description, &p->md5,
						&p->location, &p->disposition };
		for (size_t k = 0; k < N_ELEMENTS(ss); k++)
			if (!mime_str_nil(*ss[k]) && m->pool[ss[k]->off + ss[k]->len] != 0)
				goto bad;
		/* children must name this part as parent */
		for (uint32_t c = p->first_child, k = 0; c != MIME_NIL; c = m->parts[c].next, k++)
			if (m->parts[c].parent != i || k > m->n_parts)
				goto bad;
	}
	for (uint32_t i = 0; i < m->n_envelopes; i++) {
		const struct mime_str *f = &m->envelopes[i].date;
		for (int k = 0; k < 10; k++)
			if (!mime_str_nil(f[k]) && m->pool[f[k].off + f[k].len] != 0)
				goto bad;
	}
	return m;
bad:
	mime_message_free(&m);
	return NULL;
}
