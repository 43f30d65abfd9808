/* SPDX-License-Identifier: MIT */
/* The one-pass message scanner: bytes in (any chunking), struct mime_message
 * out. It is line-oriented: each complete line is either a header line of
 * the current part (kept, up to the header limit, until the blank line),
 * a boundary line of an open multipart (RFC 2046 5.1.1), or body bytes,
 * which are only counted. LF and bare-LF counts are kept from the start so
 * that every offset is known both physically and in wire (CRLF) form.
 *
 * Behaviour on malformed structure follows Dovecot's message-parser:
 * boundaries match as prefixes, innermost first; an outer boundary closes
 * inner parts; a missing final boundary ends at EOF; message/rfc822 is
 * parsed as a message whatever its transfer encoding; multipart without a
 * boundary gets one empty text/plain child. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/mime_int.h"

#define PFX_MAX 256      /* line prefix kept for boundary checks */
#define BOUNDARY_MAX 200 /* RFC 2046 says 70; real mail goes further */
#define MIME_POOL_MAX (32u << 20) /* strings kept per message */
#define MIME_PARAMS_MAX 100000    /* parameters kept per message */

struct mime_parser {
	struct mime_limits lim;
	struct mime_builder b;
	uint32_t cur; /* deepest open part */
	bool in_header;
	struct buf hdr; /* header block of cur, capped */
	uint64_t hdr_seen;

	uint64_t pos, lf, bare;          /* before the next byte */
	uint64_t ls_off, ls_lf, ls_bare; /* at the start of the current line */
	size_t line_len;                 /* bytes of the current line so far */
	uint8_t pfx[PFX_MAX];
	size_t pfx_len;
	uint8_t prev_term; /* terminator length of the previous line (0, 1 or 2) */
	bool pfx_on;       /* the current line starts with '-': keep its prefix */
	bool prev_end_delim; /* the previous line was an end delimiter "--b--" */
	bool end_delim;      /* set by line_done for the current line */
	bool last_cr;      /* the last byte fed was CR */

	/* per part: boundary (into bpool), and whether it is still active */
	uint32_t *bnd_off;
	uint16_t *bnd_len;
	uint8_t *bnd_active; /* 1 = boundary open, 2 = end delimiter seen */
	uint64_t *start_lf; /* LF count at body start (lines = end - start) */
	uint64_t *hstart_lf;
	struct buf bpool;
	unsigned n_active;
	uint32_t aux_cap;
	uint32_t *last_child;
	struct buf env_acc[10]; /* envelope fields of the header being finished */
	bool env_seen[10];
};

void mime_limits_default(struct mime_limits *l)
{
	l->max_depth = 100;
	l->max_parts = 10000;
	l->max_header_bytes = 1024 * 1024;
	l->max_params = 256;
}

/* ---- string pool and arrays --------------------------------------------- */

struct mime_str mime_pool_add(struct mime_builder *b, const void *p, size_t n)
{
	struct mime_message *m = b->m;
	struct mime_str s = { MIME_NIL, 0 };
	if ((uint64_t)m->pool_len + n + 1 > MIME_POOL_MAX) {
		/* pathological input (many parts with huge fields): keep the
		 * tree, store the excess strings as "" */
		m->flags |= MIME_MSG_HDR_LIMIT;
		n = 0;
		if ((uint64_t)m->pool_len + 1 > MIME_POOL_MAX + 4096)
			return s;
	}
	if (m->pool_len + n + 1 > b->pool_cap) {
		size_t nc = b->pool_cap ? b->pool_cap : 256;
		while (nc < m->pool_len + n + 1)
			nc *= 2;
		m->pool = xrealloc(m->pool, nc);
		b->pool_cap = (uint32_t)nc;
	}
	if (n)
		memcpy(m->pool + m->pool_len, p, n);
	m->pool[m->pool_len + n] = 0;
	s.off = m->pool_len;
	s.len = (uint32_t)n;
	m->pool_len += (uint32_t)n + 1;
	return s;
}

uint32_t mime_param_add(struct mime_builder *b, struct mime_str name, struct mime_str value)
{
	struct mime_message *m = b->m;
	if (m->n_params >= MIME_PARAMS_MAX) {
		m->flags |= MIME_MSG_HDR_LIMIT;
		return MIME_NIL;
	}
	if (m->n_params == b->params_cap) {
		b->params_cap = b->params_cap ? b->params_cap * 2 : 16;
		m->params = xrealloc(m->params, b->params_cap * sizeof *m->params);
	}
	m->params[m->n_params].name = name;
	m->params[m->n_params].value = value;
	return m->n_params++;
}

static void aux_grow(struct mime_parser *p, uint32_t need)
{
	if (need <= p->aux_cap)
		return;
	uint32_t nc = p->aux_cap ? p->aux_cap * 2 : 8;
	while (nc < need)
		nc *= 2;
	p->bnd_off = xrealloc(p->bnd_off, nc * sizeof *p->bnd_off);
	p->bnd_len = xrealloc(p->bnd_len, nc * sizeof *p->bnd_len);
	p->bnd_active = xrealloc(p->bnd_active, nc * sizeof *p->bnd_active);
	p->start_lf = xrealloc(p->start_lf, nc * sizeof *p->start_lf);
	p->hstart_lf = xrealloc(p->hstart_lf, nc * sizeof *p->hstart_lf);
	p->last_child = xrealloc(p->last_child, nc * sizeof *p->last_child);
	p->aux_cap = nc;
}

static const struct mime_str nil_str = { MIME_NIL, 0 };

/* Starts a new part at the current position, in header state. */
static uint32_t part_new(struct mime_parser *p, uint32_t parent, uint64_t off, uint64_t lf,
			 uint64_t bare)
{
	struct mime_builder *b = &p->b;
	struct mime_message *m = b->m;
	if (m->n_parts == b->parts_cap) {
		b->parts_cap = b->parts_cap ? b->parts_cap * 2 : 8;
		m->parts = xrealloc(m->parts, b->parts_cap * sizeof *m->parts);
	}
	uint32_t idx = m->n_parts++;
	aux_grow(p, m->n_parts);
	struct mime_part *pt = &m->parts[idx];
	memset(pt, 0, sizeof *pt);
	pt->parent = parent;
	pt->first_child = pt->next = MIME_NIL;
	pt->type = pt->subtype = pt->encoding = pt->id = pt->description = nil_str;
	pt->md5 = pt->location = pt->disposition = nil_str;
	pt->envelope = MIME_NIL;
	pt->header.off = off;
	pt->header.woff = off + bare;
	p->hstart_lf[idx] = lf;
	p->bnd_active[idx] = 0;
	p->bnd_len[idx] = 0;
	if (parent != MIME_NIL) {
		struct mime_part *par = &m->parts[parent];
		pt->depth = (uint16_t)(par->depth + 1);
		if (par->first_child == MIME_NIL)
			par->first_child = idx;
		else
			m->parts[p->last_child[parent]].next = idx;
		p->last_child[parent] = idx;
		par->n_children++;
	}
	p->cur = idx;
	p->in_header = true;
	buf_clear(&p->hdr);
	p->hdr_seen = 0;
	return idx;
}

/* ---- header field scanning ---------------------------------------------- */

int mime_header_next(const uint8_t *h, size_t n, size_t *pos, const uint8_t **name_r,
		     size_t *name_len_r, const uint8_t **value_r, size_t *value_len_r)
{
	size_t i = *pos;
	while (i < n) {
		size_t ls = i;
		const uint8_t *e = memchr(h + i, '\n', n - i);
		size_t le = e ? (size_t)(e - h) + 1 : n;
		size_t cl = le - ls; /* content length without terminator */
		if (cl && h[ls + cl - 1] == '\n')
			cl--;
		if (cl && h[ls + cl - 1] == '\r')
			cl--;
		if (cl == 0) { /* blank line: end of header */
			*pos = n;
			return 0;
		}
		/* the field extends over continuation lines */
		size_t fe = le;
		while (fe < n && mime_is_wsp(h[fe])) {
			const uint8_t *e2 = memchr(h + fe, '\n', n - fe);
			fe = e2 ? (size_t)(e2 - h) + 1 : n;
		}
		i = fe;
		if (mime_is_wsp(h[ls]))
			continue; /* continuation without a field: skip */
		const uint8_t *colon = memchr(h + ls, ':', cl);
		if (!colon)
			continue; /* no colon: not a field (Dovecot skips it too) */
		size_t nl = (size_t)(colon - (h + ls));
		while (nl && mime_is_wsp(h[ls + nl - 1]))
			nl--; /* obs-fws before the colon, RFC 5322 4.5 */
		if (nl == 0)
			continue;
		size_t vs = (size_t)(colon - h) + 1;
		while (vs < fe && mime_is_wsp(h[vs]))
			vs++;
		size_t ve = fe;
		if (ve > vs && h[ve - 1] == '\n')
			ve--;
		if (ve > vs && h[ve - 1] == '\r')
			ve--;
		if (ve < vs)
			ve = vs;
		*name_r = h + ls;
		*name_len_r = nl;
		*value_r = h + vs;
		*value_len_r = ve - vs;
		*pos = i;
		return 1;
	}
	*pos = n;
	return 0;
}

void mime_unfold(const uint8_t *v, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		const uint8_t *e = memchr(v + i, '\n', n - i);
		size_t end = e ? (size_t)(e - v) : n;
		size_t seg = end;
		if (seg > i && v[seg - 1] == '\r')
			seg--;
		buf_xappend(out, v + i, seg - i);
		i = end < n ? end + 1 : n;
	}
}

bool mime_eq_ci(const uint8_t *p, size_t n, const char *s)
{
	size_t sl = strlen(s);
	return n == sl && ascii_prefix_ci(p, n, s);
}

/* Stores the unfolded value; for envelope strings Dovecot keeps the last
 * occurrence, for address fields it concatenates (we join with NUL, which
 * the address parser treats as a list separator). */
/* Envelope fields are collected while the header is scanned and stored
 * once at the end: strings keep the last occurrence (Dovecot), address
 * fields concatenate all occurrences, joined with NUL which the address
 * parser treats as a list separator. Values are kept raw (folding and CRs
 * included): the ENVELOPE writer cleans them the way Dovecot does. Building
 * once keeps this linear in the header size. */
static void env_collect(struct buf *acc, bool *seen, const uint8_t *v, size_t n, bool append)
{
	if (!append)
		buf_clear(acc);
	else if (*seen)
		buf_xappend(acc, "\0", 1);
	*seen = true;
	buf_xappend(acc, v, n);
}

static struct mime_str raw_value(struct mime_parser *p, const uint8_t *v, size_t n)
{
	struct buf t = BUF_INIT(0);
	mime_unfold(v, n, &t);
	struct mime_str s = mime_pool_add(&p->b, t.data ? t.data : (const uint8_t *)"", t.len);
	buf_deinit(&t);
	return s;
}

/* Content-Type: type "/" subtype *(";" parameter), RFC 2045 5.1. Dovecot
 * keeps whatever token precedes the slash, lets the subtype be empty, and
 * drops every parameter if any of them is malformed. */
static void parse_content_type(struct mime_parser *p, struct mime_part *pt, const uint8_t *v,
			       size_t n)
{
	size_t i = mime_skip_cfws(v, n, 0, NULL);
	size_t ts = i;
	while (i < n && !mime_is_tspecial(v[i]))
		i++;
	size_t te = i;
	if (te == ts) {
		/* "Content-Type:" with nothing usable: Dovecot reports "" "" */
		pt->type = mime_pool_add(&p->b, "", 0);
		pt->subtype = mime_pool_add(&p->b, "", 0);
		pt->flags |= MIME_PART_HAS_CT;
		return;
	}
	i = mime_skip_cfws(v, n, i, NULL);
	size_t ss = i, se = i;
	if (i < n && v[i] == '/') {
		i = mime_skip_cfws(v, n, i + 1, NULL);
		ss = i;
		while (i < n && !mime_is_tspecial(v[i]))
			i++;
		se = i;
	}
	pt->type = mime_pool_add(&p->b, v + ts, te - ts);
	pt->subtype = mime_pool_add(&p->b, v + ss, se - ss);
	pt->flags |= MIME_PART_HAS_CT;
	uint32_t mark = p->b.m->n_params;
	uint32_t first, count;
	if (mime_params_parse(&p->b, v, n, i, &first, &count) < 0) {
		p->b.m->n_params = mark;
		first = count = 0;
	}
	pt->params = first;
	pt->n_params = count;
}

static void parse_disposition(struct mime_parser *p, struct mime_part *pt, const uint8_t *v,
			      size_t n)
{
	size_t i = mime_skip_cfws(v, n, 0, NULL);
	size_t ts = i;
	while (i < n && !mime_is_tspecial(v[i]))
		i++;
	if (i == ts)
		return;
	pt->disposition = mime_pool_add(&p->b, v + ts, i - ts);
	uint32_t mark = p->b.m->n_params;
	uint32_t first, count;
	if (mime_params_parse(&p->b, v, n, i, &first, &count) < 0) {
		p->b.m->n_params = mark;
		first = count = 0;
	}
	pt->disp_params = first;
	pt->n_disp_params = count;
}

/* Content-Language: 1#Language-Tag (RFC 3282), comments allowed. */
static void parse_language(struct mime_parser *p, struct mime_part *pt, const uint8_t *v, size_t n)
{
	size_t i = 0;
	uint32_t first = p->b.m->n_params, count = 0;
	while (i < n && count < p->b.max_params) {
		i = mime_skip_cfws(v, n, i, NULL);
		size_t s = i;
		while (i < n && (v[i] == '-' || (v[i] >= '0' && v[i] <= '9') ||
				 ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z')))
			i++;
		if (i > s) {
			if (mime_param_add(&p->b, nil_str, mime_pool_add(&p->b, v + s, i - s)) !=
			    MIME_NIL)
				count++;
		}
		i = mime_skip_cfws(v, n, i, NULL);
		if (i < n && v[i] != ',') {
			/* garbage: Dovecot gives up on the rest */
			break;
		}
		i++;
	}
	pt->languages = first;
	pt->n_languages = count;
}

static enum mime_cte cte_of(const uint8_t *v, size_t n)
{
	size_t i = mime_skip_cfws(v, n, 0, NULL), s = i;
	while (i < n && !mime_is_tspecial(v[i]))
		i++;
	const uint8_t *t = v + s;
	size_t l = i - s;
	if (mime_eq_ci(t, l, "7bit"))
		return MIME_CTE_7BIT;
	if (mime_eq_ci(t, l, "8bit"))
		return MIME_CTE_8BIT;
	if (mime_eq_ci(t, l, "binary"))
		return MIME_CTE_BINARY;
	if (mime_eq_ci(t, l, "quoted-printable"))
		return MIME_CTE_QP;
	if (mime_eq_ci(t, l, "base64"))
		return MIME_CTE_BASE64;
	return MIME_CTE_OTHER;
}

static bool str_eq_ci(const struct mime_message *m, struct mime_str s, const char *lit)
{
	return !mime_str_nil(s) && mime_eq_ci(m->pool + s.off, s.len, lit);
}

/* The blank line after the current part's header has been seen (or the
 * header was cut off): extract the fields and decide what the body is. */
static void header_done(struct mime_parser *p)
{
	struct mime_message *m = p->b.m;
	uint32_t idx = p->cur;
	struct mime_part *pt = &m->parts[idx];
	const uint8_t *h = p->hdr.data ? p->hdr.data : (const uint8_t *)"";
	size_t hn = p->hdr.len, pos = 0;
	const uint8_t *name, *v;
	size_t nl, vl;
	struct mime_envelope *env = NULL;
	bool is_root = (pt->flags & MIME_PART_IS_MSG_ROOT) != 0;
	if (is_root) {
		if (m->n_envelopes == p->b.env_cap) {
			p->b.env_cap = p->b.env_cap ? p->b.env_cap * 2 : 4;
			m->envelopes = xrealloc(m->envelopes, p->b.env_cap * sizeof *m->envelopes);
		}
		pt->envelope = m->n_envelopes++;
		env = &m->envelopes[pt->envelope];
		struct mime_str *f = &env->date;
		for (int k = 0; k < 10; k++)
			f[k] = nil_str;
	}
	bool have_ct = false, have_cte = false, have_disp = false, have_lang = false;
	while (mime_header_next(h, hn, &pos, &name, &nl, &v, &vl) > 0) {
		if (nl > 8 && ascii_prefix_ci(name, nl, "content-")) {
			const uint8_t *s = name + 8;
			size_t sl = nl - 8;
			if (mime_eq_ci(s, sl, "type") && !have_ct) {
				have_ct = true;
				parse_content_type(p, pt, v, vl);
			} else if (mime_eq_ci(s, sl, "transfer-encoding") && !have_cte) {
				have_cte = true;
				pt->cte = (uint8_t)cte_of(v, vl);
				size_t i = mime_skip_cfws(v, vl, 0, NULL), st = i;
				while (i < vl && !mime_is_tspecial(v[i]))
					i++;
				pt->encoding = mime_pool_add(&p->b, v + st, i - st);
			} else if (mime_eq_ci(s, sl, "id") && mime_str_nil(pt->id)) {
				pt->id = raw_value(p, v, vl);
			} else if (mime_eq_ci(s, sl, "description") && mime_str_nil(pt->description)) {
				pt->description = raw_value(p, v, vl);
			} else if (mime_eq_ci(s, sl, "md5") && mime_str_nil(pt->md5)) {
				pt->md5 = raw_value(p, v, vl);
			} else if (mime_eq_ci(s, sl, "location") && mime_str_nil(pt->location)) {
				pt->location = raw_value(p, v, vl);
			} else if (mime_eq_ci(s, sl, "disposition") && !have_disp) {
				have_disp = true;
				parse_disposition(p, pt, v, vl);
			} else if (mime_eq_ci(s, sl, "language") && !have_lang) {
				have_lang = true;
				parse_language(p, pt, v, vl);
			}
			continue;
		}
		if (!env)
			continue;
		static const char *const env_names[10] = { "date", "subject",	  "from", "sender",
							   "reply-to", "to", "cc",     "bcc",
							   "in-reply-to", "message-id" };
		for (int k = 0; k < 10; k++)
			if (mime_eq_ci(name, nl, env_names[k])) {
				bool addr = k >= 2 && k <= 7;
				env_collect(&p->env_acc[k], &p->env_seen[k], v, vl, addr);
				break;
			}
	}
	if (env) {
		for (int k = 0; k < 10; k++) {
			struct buf *acc = &p->env_acc[k];
			if (p->env_seen[k]) {
				p->env_seen[k] = false;
				struct mime_str st = mime_pool_add(
					&p->b, acc->data ? acc->data : (const uint8_t *)"", acc->len);
				(&m->envelopes[m->parts[idx].envelope].date)[k] = st;
			}
			buf_deinit(acc);
		}
	}
	pt = &m->parts[idx];
	if (!(pt->flags & MIME_PART_HAS_CT)) {
		bool digest = pt->parent != MIME_NIL &&
			      (m->parts[pt->parent].flags & MIME_PART_MULTIPART) &&
			      str_eq_ci(m, m->parts[pt->parent].subtype, "digest");
		pt->type = mime_pool_add(&p->b, digest ? "message" : "text", digest ? 7 : 4);
		pt->subtype = mime_pool_add(&p->b, digest ? "rfc822" : "plain", digest ? 6 : 5);
	}
	if (str_eq_ci(m, pt->type, "text"))
		pt->flags |= MIME_PART_TEXT;
	if (p->hdr_seen > p->hdr.len) {
		pt->flags |= MIME_PART_HDR_TRUNCATED;
		m->flags |= MIME_MSG_HDR_LIMIT;
	}
	for (size_t i = 0; i < hn; i++)
		if (h[i] & 0x80) {
			pt->flags |= MIME_PART_8BIT_HDR;
			break;
		}
	bool deep = pt->depth + 1u >= p->lim.max_depth;
	if (str_eq_ci(m, pt->type, "multipart")) {
		const struct mime_param *bp =
			mime_param_find(m, pt->params, pt->n_params, "boundary");
		if (deep) {
			pt->flags |= MIME_PART_DEPTH_LIMIT;
			m->flags |= MIME_MSG_DEPTH_LIMIT;
		} else if (bp && bp->value.len > 0 && bp->value.len <= BOUNDARY_MAX) {
			pt->flags |= MIME_PART_MULTIPART;
			p->bnd_off[idx] = (uint32_t)p->bpool.len;
			p->bnd_len[idx] = (uint16_t)bp->value.len;
			buf_xappend(&p->bpool, m->pool + bp->value.off, bp->value.len);
			p->bnd_active[idx] = 1;
			p->n_active++;
		} else {
			pt->flags |= MIME_PART_MULTIPART; /* gets an empty child at the end */
		}
	} else if (str_eq_ci(m, pt->type, "message") &&
		   (str_eq_ci(m, pt->subtype, "rfc822") || str_eq_ci(m, pt->subtype, "global"))) {
		if (deep) {
			pt->flags |= MIME_PART_DEPTH_LIMIT;
			m->flags |= MIME_MSG_DEPTH_LIMIT;
		} else if (m->n_parts < p->lim.max_parts) {
			pt->flags |= MIME_PART_MESSAGE;
		} else {
			m->flags |= MIME_MSG_PART_LIMIT;
		}
	}
}

/* The header of cur ends at the current line (which is blank and included,
 * or a boundary and excluded). */
static void end_header(struct mime_parser *p, uint64_t off, uint64_t lf, uint64_t bare)
{
	struct mime_part *pt = &p->b.m->parts[p->cur];
	if (off < pt->header.off) { /* cut by a boundary on its first line */
		off = pt->header.off;
		bare = pt->header.woff - pt->header.off;
		lf = p->hstart_lf[p->cur];
	}
	pt->header.len = off - pt->header.off;
	pt->header.wlen = off + bare - pt->header.woff;
	pt->header_lines = lf - p->hstart_lf[p->cur];
	pt->body.off = off;
	pt->body.woff = off + bare;
	p->start_lf[p->cur] = lf;
	p->in_header = false;
	header_done(p);
	pt = &p->b.m->parts[p->cur];
	if (pt->flags & MIME_PART_MESSAGE) {
		uint32_t c = part_new(p, p->cur, off, lf, bare);
		p->b.m->parts[c].flags |= MIME_PART_IS_MSG_ROOT;
	}
}

/* Closes part idx with its body ending at (off, lf, bare). */
static void close_part(struct mime_parser *p, uint32_t idx, uint64_t off, uint64_t lf,
		       uint64_t bare)
{
	struct mime_message *m = p->b.m;
	if (p->in_header && idx == p->cur) {
		end_header(p, off, lf, bare);
		if (p->cur != idx) { /* message/rfc822 with a cut header: empty child */
			close_part(p, p->cur, off, lf, bare);
			p->cur = idx;
		}
	}
	struct mime_part *pt = &m->parts[idx];
	if (off < pt->body.off) {
		/* boundary right after the header: the line break before it
		 * belongs to the boundary even if it ended the header */
		if (off < pt->header.off) {
			off = pt->header.off;
			lf = p->hstart_lf[idx];
			bare = pt->header.woff - pt->header.off;
		}
		pt->header.len = off - pt->header.off;
		pt->header.wlen = off + bare - pt->header.woff;
		pt->header_lines = lf - p->hstart_lf[idx];
		pt->body.off = off;
		pt->body.woff = off + bare;
		p->start_lf[idx] = lf;
	}
	pt->body.len = off - pt->body.off;
	pt->body.wlen = off + bare - pt->body.woff;
	pt->body_lines = lf - p->start_lf[idx];
	if (p->bnd_active[idx] == 1) {
		p->bnd_active[idx] = 0;
		p->n_active--;
		pt->flags |= MIME_PART_NO_END_BOUNDARY;
		m->flags |= MIME_MSG_BROKEN;
	}
	if ((pt->flags & MIME_PART_MULTIPART) && pt->n_children == 0 &&
	    m->n_parts < p->lim.max_parts) {
		/* Dovecot: a multipart without parts has one empty text/plain */
		uint32_t saved = p->cur;
		uint32_t c = part_new(p, idx, off, lf, bare);
		close_part(p, c, off, lf, bare);
		p->cur = saved;
	}
}

/* Is the line (prefix in p->pfx, full length len) a boundary of an open
 * multipart? Returns the multipart's index or MIME_NIL; *end_r tells "--b--". */
static uint32_t match_boundary(struct mime_parser *p, size_t len, bool *end_r)
{
	if (len < 3 || p->pfx[0] != '-' || p->pfx[1] != '-')
		return MIME_NIL;
	struct mime_message *m = p->b.m;
	for (uint32_t a = p->cur; a != MIME_NIL; a = m->parts[a].parent) {
		if (p->bnd_active[a] != 1)
			continue;
		size_t bl = p->bnd_len[a];
		if (bl + 2 > p->pfx_len)
			continue;
		if (memcmp(p->pfx + 2, p->bpool.data + p->bnd_off[a], bl) != 0)
			continue;
		*end_r = bl + 4 <= p->pfx_len && p->pfx[bl + 2] == '-' && p->pfx[bl + 3] == '-';
		return a;
	}
	return MIME_NIL;
}

/* A complete line: starts at ls_off, content len bytes, terminator term
 * bytes (0 only at EOF). */
static void line_done(struct mime_parser *p, size_t len, unsigned term)
{
	struct mime_message *m = p->b.m;
	if (p->n_active) {
		bool is_end = false;
		uint32_t a = match_boundary(p, len, &is_end);
		if (a != MIME_NIL) {
			/* The line break before the boundary belongs to it,
			 * except (Dovecot) the one ending a "--inner--" line
			 * just before. An embedded message whose header is cut
			 * short by the boundary keeps Dovecot's split: its
			 * header loses that line break but the message/rfc822
			 * part around it keeps it. */
			uint64_t eo = p->ls_off, el = p->ls_lf, eb = p->ls_bare;
			if (p->prev_term && eo >= p->prev_term && !p->prev_end_delim) {
				eo -= p->prev_term;
				el--;
				if (p->prev_term == 1)
					eb--;
			}
			uint64_t ao = eo, al = el, ab = eb;
			if (p->in_header && p->cur != a &&
			    (m->parts[p->cur].flags & MIME_PART_IS_MSG_ROOT) &&
			    m->parts[p->cur].header.off < eo) {
				ao = p->ls_off;
				al = p->ls_lf;
				ab = p->ls_bare;
			}
			bool first = true;
			while (p->cur != a) {
				uint32_t c = p->cur;
				if (first)
					close_part(p, c, eo, el, eb);
				else
					close_part(p, c, ao, al, ab);
				first = false;
				p->cur = m->parts[c].parent;
			}
			if (p->in_header) /* the multipart itself cannot be in header */
				p->in_header = false;
			uint64_t no = p->ls_off + len + term;
			uint64_t nlf = p->lf, nbare = p->bare;
			if (is_end) {
				p->end_delim = true;
				p->bnd_active[a] = 2;
				p->n_active--;
			} else if (m->n_parts < p->lim.max_parts) {
				part_new(p, a, no, nlf, nbare);
			} else {
				m->flags |= MIME_MSG_PART_LIMIT;
			}
			return;
		}
	}
	if (p->in_header && len == 0)
		end_header(p, p->ls_off + term, p->lf, p->bare);
}

static void hdr_add(struct mime_parser *p, const uint8_t *d, size_t n)
{
	p->hdr_seen += n;
	if (p->hdr.len >= p->lim.max_header_bytes)
		return;
	size_t room = p->lim.max_header_bytes - p->hdr.len;
	buf_xappend(&p->hdr, d, n < room ? n : room);
}

struct mime_parser *mime_parser_new(const struct mime_limits *limits)
{
	struct mime_parser *p = xcalloc(1, sizeof *p);
	if (limits)
		p->lim = *limits;
	else
		mime_limits_default(&p->lim);
	if (p->lim.max_depth < 2)
		p->lim.max_depth = 2;
	if (p->lim.max_parts < 1)
		p->lim.max_parts = 1;
	p->b.m = xcalloc(1, sizeof *p->b.m);
	p->b.max_params = p->lim.max_params ? p->lim.max_params : 256;
	buf_init(&p->hdr, 0);
	buf_init(&p->bpool, 0);
	uint32_t r = part_new(p, MIME_NIL, 0, 0, 0);
	p->b.m->parts[r].flags |= MIME_PART_IS_MSG_ROOT;
	return p;
}

void mime_parser_feed(struct mime_parser *p, const void *data, size_t n)
{
	const uint8_t *d = data;
	while (n > 0) {
		const uint8_t *q = memchr(d, '\n', n);
		size_t seg = q ? (size_t)(q - d) + 1 : n;
		if (p->line_len == 0) {
			p->ls_off = p->pos;
			p->ls_lf = p->lf;
			p->ls_bare = p->bare;
			p->pfx_len = 0;
			p->pfx_on = d[0] == '-' && p->n_active;
		}
		/* keep a prefix when the line may be a boundary */
		if (p->pfx_on && p->pfx_len < PFX_MAX) {
			size_t k = seg < PFX_MAX - p->pfx_len ? seg : PFX_MAX - p->pfx_len;
			memcpy(p->pfx + p->pfx_len, d, k);
			p->pfx_len += k;
		}
		if (p->in_header)
			hdr_add(p, d, seg);
		if (memchr(d, 0, seg))
			p->b.m->flags |= MIME_MSG_NUL;
		p->line_len += seg;
		p->pos += seg;
		if (q) {
			bool cr = seg >= 2 ? d[seg - 2] == '\r' : p->last_cr;
			p->lf++;
			if (!cr) {
				p->bare++;
				p->b.m->flags |= MIME_MSG_BARE_LF;
			}
			unsigned term = cr && p->line_len >= 2 ? 2 : 1;
			size_t len = p->line_len - term;
			if (p->pfx_len > len)
				p->pfx_len = len; /* drop the terminator from the prefix */
			p->end_delim = false;
			line_done(p, len, term);
			p->prev_term = (uint8_t)term;
			p->prev_end_delim = p->end_delim;
			p->line_len = 0;
		}
		p->last_cr = d[seg - 1] == '\r';
		d += seg;
		n -= seg;
	}
}

struct mime_message *mime_parser_finish(struct mime_parser **pp)
{
	struct mime_parser *p = *pp;
	if (!p)
		return NULL;
	*pp = NULL;
	struct mime_message *m = p->b.m;
	if (p->line_len > 0) {
		size_t len = p->line_len;
		if (p->pfx_len > len)
			p->pfx_len = len;
		line_done(p, len, 0);
	}
	for (;;) {
		uint32_t c = p->cur;
		close_part(p, c, p->pos, p->lf, p->bare);
		if (m->parts[c].parent == MIME_NIL)
			break;
		p->cur = m->parts[c].parent;
	}
	m->size = p->pos;
	m->wire_size = p->pos + p->bare;
	m->lines = p->lf;
	buf_deinit(&p->hdr);
	buf_deinit(&p->bpool);
	free(p->bnd_off);
	free(p->bnd_len);
	free(p->bnd_active);
	free(p->start_lf);
	free(p->hstart_lf);
	free(p->last_child);
	for (int k = 0; k < 10; k++)
		buf_deinit(&p->env_acc[k]);
	free(p);
	return m;
}

struct mime_message *mime_parse(const void *data, size_t n, const struct mime_limits *limits)
{
	struct mime_parser *p = mime_parser_new(limits);
	mime_parser_feed(p, data, n);
	return mime_parser_finish(&p);
}

void mime_message_free(struct mime_message **mp)
{
	struct mime_message *m = *mp;
	if (!m)
		return;
	free(m->parts);
	free(m->params);
	free(m->envelopes);
	free(m->pool);
	free(m);
	*mp = NULL;
}

const char *mime_str_ptr(const struct mime_message *m, struct mime_str s, size_t *len_r)
{
	if (s.off == MIME_NIL) {
		if (len_r)
			*len_r = 0;
		return NULL;
	}
	if (len_r)
		*len_r = s.len;
	return (const char *)m->pool + s.off;
}

const struct mime_param *mime_param_find(const struct mime_message *m, uint32_t first, uint32_t n,
					 const char *name)
{
	for (uint32_t i = first; i < first + n && i < m->n_params; i++) {
		const struct mime_param *pr = &m->params[i];
		if (!mime_str_nil(pr->name) && mime_eq_ci(m->pool + pr->name.off, pr->name.len, name))
			return pr;
	}
	return NULL;
}

int mime_part_param_utf8(const struct mime_message *m, const struct mime_part *part,
			 const char *name, struct buf *out)
{
	char ext[128];
	snprintf(ext, sizeof ext, "%s*", name);
	const struct mime_param *pr = mime_param_find(m, part->params, part->n_params, ext);
	if (pr)
		return mime_param_decode(m->pool + pr->value.off, pr->value.len, out) < 0 ? -1 : 0;
	pr = mime_param_find(m, part->params, part->n_params, name);
	if (!pr)
		return -1;
	return mime_decode_words(m->pool + pr->value.off, pr->value.len, out);
}
