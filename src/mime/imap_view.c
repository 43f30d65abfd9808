/* SPDX-License-Identifier: MIT */
/* IMAP views of a parsed message: ENVELOPE and BODY/BODYSTRUCTURE strings
 * (RFC 3501 7.4.2, RFC 9051 7.5.2), BODY[section] addressing (RFC 3501
 * 6.4.5), LF->CRLF streaming with partial windows, BINARY (RFC 3516) and
 * the folded text used by SEARCH. Output details that the RFCs leave open
 * follow Dovecot 2.3, as recorded in tests/data/mime/msg/ *.exp. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/imap_view.h"
#include "mime/mime_int.h"

/* ---- strings ------------------------------------------------------------ */

static void literal(struct buf *out, const void *p, size_t n)
{
	buf_xprintf(out, "{%zu}\r\n", n);
	buf_xappend(out, p, n);
}

/* Dovecot's imap_append_string: quoted with escapes unless 8-bit, CR, LF
 * or NUL (or more than 4 escapes) make it a literal. */
static void astring(struct buf *out, const void *pv, size_t n)
{
	const uint8_t *p = pv;
	unsigned esc = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '"' || c == '\\') {
			if (esc++ >= 4) {
				literal(out, p, n);
				return;
			}
		} else if (c >= 0x80 || c == '\r' || c == '\n' || c == 0) {
			literal(out, p, n);
			return;
		}
	}
	buf_xappend(out, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			buf_xappend(out, "\\", 1);
		buf_xappend(out, p + i, 1);
	}
	buf_xappend(out, "\"", 1);
}

void mime_imap_string(struct buf *out, const void *p, size_t n)
{
	if (!p)
		buf_xappend(out, "NIL", 3);
	else
		astring(out, p, n);
}

static void nstr(struct buf *out, const struct mime_message *m, struct mime_str s)
{
	size_t n;
	const char *p = mime_str_ptr(m, s, &n);
	mime_imap_string(out, p, n);
}

static void for_humans(struct buf *out, const uint8_t *p, size_t n);

static void cstr(struct buf *out, const char *s, bool humans)
{
	if (!s)
		buf_xappend(out, "NIL", 3);
	else if (humans)
		for_humans(out, (const uint8_t *)s, strlen(s));
	else
		astring(out, s, strlen(s));
}

/* ---- ENVELOPE ----------------------------------------------------------- */

/* Dovecot's imap_append_string_for_humans(), used for the Subject and
 * display names: runs of whitespace (CR, LF, TAB, SP) become one space,
 * leading and trailing whitespace go, NUL becomes 0x80; unchanged strings
 * without '"', '\\' or 8-bit are quoted, anything else is a literal. */
static void for_humans(struct buf *out, const uint8_t *p, size_t n)
{
	bool modify = false, lwsp = true;
	for (size_t i = 0; i < n && !modify; i++) {
		uint8_t c = p[i];
		if (c == '\r' || c == '\n' || c == '\t' || c == 0 || c == '"' || c == '\\' || c >= 0x80)
			modify = true;
		else if (c == ' ' && lwsp)
			modify = true;
		lwsp = c == ' ';
	}
	if (n && p[n - 1] == ' ')
		modify = true;
	if (!modify) {
		buf_xappend(out, "\"", 1);
		buf_xappend(out, p, n);
		buf_xappend(out, "\"", 1);
		return;
	}
	struct buf t = BUF_INIT(0);
	lwsp = true;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (c == '\r' || c == '\n' || c == '\t' || c == ' ') {
			if (!lwsp)
				buf_xappend(&t, " ", 1);
			lwsp = true;
			continue;
		}
		lwsp = false;
		if (c == 0)
			c = 0x80;
		buf_xappend(&t, &c, 1);
	}
	if (t.len && t.data[t.len - 1] == ' ')
		t.len--;
	if (t.len == 0)
		buf_xappend(out, "\"\"", 2);
	else
		literal(out, t.data, t.len);
	buf_deinit(&t);
}

/* Date, In-Reply-To, Message-ID: CR and LF are deleted (Dovecot's
 * imap_append_nstring_nolf), the rest is an ordinary string. */
static void env_string(struct buf *out, const struct mime_message *m, struct mime_str s,
		       bool humans)
{
	size_t n;
	const uint8_t *p = (const uint8_t *)mime_str_ptr(m, s, &n);
	if (!p) {
		buf_xappend(out, "NIL", 3);
		return;
	}
	if (humans) {
		for_humans(out, p, n);
		return;
	}
	if (!memchr(p, '\n', n) && !memchr(p, '\r', n)) {
		astring(out, p, n);
		return;
	}
	struct buf t = BUF_INIT(0);
	for (size_t i = 0; i < n; i++)
		if (p[i] != '\r' && p[i] != '\n')
			buf_xappend(&t, p + i, 1);
	astring(out, t.data ? t.data : (const uint8_t *)"", t.len);
	buf_deinit(&t);
}

static bool env_addrs(struct buf *out, const struct mime_message *m, struct mime_str s)
{
	size_t n;
	const uint8_t *p = (const uint8_t *)mime_str_ptr(m, s, &n);
	if (!p)
		return false;
	struct mime_addr_list l;
	mime_addr_parse(p, n, 0, &l);
	if (l.n == 0) {
		mime_addr_list_free(&l);
		return false;
	}
	buf_xappend(out, "(", 1);
	for (size_t i = 0; i < l.n; i++) {
		const struct mime_addr *a = &l.v[i];
		if (a->is_group_end) {
			buf_xappend(out, "(NIL NIL NIL NIL)", 17);
			continue;
		}
		buf_xappend(out, "(", 1);
		cstr(out, a->is_group_start ? NULL : a->name, true);
		buf_xappend(out, " ", 1);
		cstr(out, a->route, false);
		buf_xappend(out, " ", 1);
		if (a->is_group_start) {
			cstr(out, a->mailbox, false);
			buf_xappend(out, " NIL)", 5);
			continue;
		}
		/* Dovecot fills the holes of broken addresses with these */
		cstr(out, a->mailbox ? a->mailbox : "MISSING_MAILBOX", false);
		buf_xappend(out, " ", 1);
		cstr(out, !a->host ? "MISSING_DOMAIN" : a->syntax_error ? "SYNTAX_ERROR" : a->host,
		     false);
		buf_xappend(out, ")", 1);
	}
	buf_xappend(out, ")", 1);
	mime_addr_list_free(&l);
	return true;
}

static void env_addr_field(struct buf *out, const struct mime_message *m, struct mime_str s,
			   struct mime_str dflt)
{
	if (env_addrs(out, m, s))
		return;
	if (!mime_str_nil(dflt) && env_addrs(out, m, dflt))
		return;
	buf_xappend(out, "NIL", 3);
}

int mime_imap_envelope(const struct mime_message *m, uint32_t msg, struct buf *out)
{
	if (msg >= m->n_parts || m->parts[msg].envelope >= m->n_envelopes)
		return -1;
	const struct mime_envelope *e = &m->envelopes[m->parts[msg].envelope];
	struct mime_str nil = { MIME_NIL, 0 };
	buf_xappend(out, "(", 1);
	env_string(out, m, e->date, false);
	buf_xappend(out, " ", 1);
	env_string(out, m, e->subject, true);
	buf_xappend(out, " ", 1);
	env_addr_field(out, m, e->from, nil);
	buf_xappend(out, " ", 1);
	env_addr_field(out, m, e->sender, e->from); /* RFC 3501 7.4.2 defaults */
	buf_xappend(out, " ", 1);
	env_addr_field(out, m, e->reply_to, e->from);
	buf_xappend(out, " ", 1);
	env_addr_field(out, m, e->to, nil);
	buf_xappend(out, " ", 1);
	env_addr_field(out, m, e->cc, nil);
	buf_xappend(out, " ", 1);
	env_addr_field(out, m, e->bcc, nil);
	buf_xappend(out, " ", 1);
	env_string(out, m, e->in_reply_to, false);
	buf_xappend(out, " ", 1);
	env_string(out, m, e->message_id, false);
	buf_xappend(out, ")", 1);
	return out->max && out->len > out->max ? -1 : 0;
}

/* ---- BODYSTRUCTURE ------------------------------------------------------ */

static void params(struct buf *out, const struct mime_message *m, uint32_t first, uint32_t n,
		   bool default_charset)
{
	if (n == 0) {
		if (default_charset)
			buf_xappend(out, "(\"charset\" \"us-ascii\")", 22);
		else
			buf_xappend(out, "NIL", 3);
		return;
	}
	buf_xappend(out, "(", 1);
	for (uint32_t i = first; i < first + n && i < m->n_params; i++) {
		if (i > first)
			buf_xappend(out, " ", 1);
		nstr(out, m, m->params[i].name);
		buf_xappend(out, " ", 1);
		nstr(out, m, m->params[i].value);
	}
	buf_xappend(out, ")", 1);
}

static void ext_common(struct buf *out, const struct mime_message *m, const struct mime_part *pt)
{
	buf_xappend(out, " ", 1);
	if (mime_str_nil(pt->disposition)) {
		buf_xappend(out, "NIL", 3);
	} else {
		buf_xappend(out, "(", 1);
		nstr(out, m, pt->disposition);
		buf_xappend(out, " ", 1);
		params(out, m, pt->disp_params, pt->n_disp_params, false);
		buf_xappend(out, ")", 1);
	}
	buf_xappend(out, " ", 1);
	if (pt->n_languages == 0) {
		buf_xappend(out, "NIL", 3);
	} else {
		buf_xappend(out, "(", 1);
		for (uint32_t i = 0; i < pt->n_languages; i++) {
			if (i)
				buf_xappend(out, " ", 1);
			nstr(out, m, m->params[pt->languages + i].value);
		}
		buf_xappend(out, ")", 1);
	}
	buf_xappend(out, " ", 1);
	nstr(out, m, pt->location);
}

static bool str_is(const struct mime_message *m, struct mime_str s, const char *lit)
{
	return !mime_str_nil(s) && mime_eq_ci(m->pool + s.off, s.len, lit);
}

static void bodystructure(const struct mime_message *m, uint32_t idx, bool ext, struct buf *out,
			  unsigned depth)
{
	const struct mime_part *pt = &m->parts[idx];
	if (depth > 200)
		return; /* cannot happen: the parser limits depth */
	if ((pt->flags & MIME_PART_MULTIPART) && pt->first_child != MIME_NIL) {
		buf_xappend(out, "(", 1);
		for (uint32_t c = pt->first_child; c != MIME_NIL; c = m->parts[c].next)
			bodystructure(m, c, ext, out, depth + 1);
		buf_xappend(out, " ", 1);
		nstr(out, m, pt->subtype);
		if (ext) {
			buf_xappend(out, " ", 1);
			params(out, m, pt->params, pt->n_params, false);
			ext_common(out, m, pt);
		}
		buf_xappend(out, ")", 1);
		return;
	}
	buf_xappend(out, "(", 1);
	nstr(out, m, pt->type);
	buf_xappend(out, " ", 1);
	nstr(out, m, pt->subtype);
	buf_xappend(out, " ", 1);
	params(out, m, pt->params, pt->n_params, (pt->flags & MIME_PART_TEXT) != 0);
	buf_xappend(out, " ", 1);
	nstr(out, m, pt->id);
	buf_xappend(out, " ", 1);
	nstr(out, m, pt->description);
	buf_xappend(out, " ", 1);
	if (mime_str_nil(pt->encoding) || pt->encoding.len == 0)
		buf_xappend(out, "\"7bit\"", 6);
	else
		nstr(out, m, pt->encoding);
	buf_xprintf(out, " %llu", (unsigned long long)pt->body.wlen);
	if (pt->flags & MIME_PART_TEXT) {
		buf_xprintf(out, " %llu", (unsigned long long)pt->body_lines);
	} else if ((pt->flags & MIME_PART_MESSAGE) && pt->first_child != MIME_NIL) {
		buf_xappend(out, " ", 1);
		if (mime_imap_envelope(m, pt->first_child, out) < 0)
			buf_xappend(out, "NIL", 3);
		buf_xappend(out, " ", 1);
		bodystructure(m, pt->first_child, ext, out, depth + 1);
		buf_xprintf(out, " %llu", (unsigned long long)pt->body_lines);
	} else if (str_is(m, pt->type, "message") &&
		   (str_is(m, pt->subtype, "rfc822") || str_is(m, pt->subtype, "global"))) {
		/* not parsed (depth or part limit): the grammar (RFC 3501 9,
		 * body-type-msg) still wants an envelope, a body and lines */
		buf_xprintf(out, " (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" "
				 "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0%s) %llu",
			    ext ? " NIL NIL NIL NIL" : "", (unsigned long long)pt->body_lines);
	}
	if (ext) {
		buf_xappend(out, " ", 1);
		nstr(out, m, pt->md5);
		ext_common(out, m, pt);
	}
	buf_xappend(out, ")", 1);
}

int mime_imap_bodystructure(const struct mime_message *m, uint32_t part, bool extended,
			    struct buf *out)
{
	if (part >= m->n_parts)
		return -1;
	bodystructure(m, part, extended, out, 0);
	return out->max && out->len > out->max ? -1 : 0;
}

/* ---- BODY[section] ------------------------------------------------------ */

static bool word_ci(const char *s, size_t n, size_t i, const char *w)
{
	size_t l = strlen(w);
	return i + l <= n && ascii_strncasecmp(s + i, w, l) == 0;
}

int mime_section_parse(const char *s, size_t n, struct mime_section *sec)
{
	memset(sec, 0, sizeof *sec);
	sec->kind = MIME_SECT_BODY;
	size_t i = 0;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		uint64_t v = 0;
		if (s[i] == '0')
			return -1; /* nz-number */
		while (i < n && s[i] >= '0' && s[i] <= '9') {
			v = v * 10 + (uint64_t)(s[i++] - '0');
			if (v > UINT32_MAX)
				return -1;
		}
		if (sec->n_num == MIME_SECTION_MAX_DEPTH)
			return -1;
		sec->num[sec->n_num++] = (uint32_t)v;
		if (i == n)
			return 0;
		if (s[i] != '.')
			return -1;
		i++;
		if (i == n)
			return -1;
	}
	if (i == n)
		return 0;
	if (word_ci(s, n, i, "HEADER.FIELDS.NOT")) {
		sec->kind = MIME_SECT_FIELDS_NOT;
		i += 17;
	} else if (word_ci(s, n, i, "HEADER.FIELDS")) {
		sec->kind = MIME_SECT_FIELDS;
		i += 13;
	} else if (word_ci(s, n, i, "HEADER")) {
		sec->kind = MIME_SECT_HEADER;
		i += 6;
	} else if (word_ci(s, n, i, "TEXT")) {
		sec->kind = MIME_SECT_TEXT;
		i += 4;
	} else if (word_ci(s, n, i, "MIME") && sec->n_num > 0) {
		sec->kind = MIME_SECT_MIME;
		i += 4;
	} else {
		return -1;
	}
	if (sec->kind != MIME_SECT_FIELDS && sec->kind != MIME_SECT_FIELDS_NOT)
		return i == n ? 0 : -1;
	/* SP "(" header-fld-name *(SP header-fld-name) ")" */
	if (i + 1 >= n || s[i] != ' ' || s[i + 1] != '(')
		return -1;
	i += 2;
	for (;;) {
		while (i < n && s[i] == ' ')
			i++;
		if (i >= n)
			return -1;
		if (s[i] == ')')
			break;
		size_t st = i;
		if (s[i] == '"') {
			st = ++i;
			while (i < n && s[i] != '"')
				i++;
			if (i >= n)
				return -1;
		} else {
			while (i < n && s[i] != ' ' && s[i] != ')' && (uint8_t)s[i] > ' ' &&
			       s[i] != ':')
				i++;
		}
		if (i == st || sec->n_fields == MIME_SECTION_MAX_FIELDS)
			return -1;
		sec->field[sec->n_fields] = s + st;
		sec->field_len[sec->n_fields++] = i - st;
		if (s[i] == '"')
			i++;
	}
	if (sec->n_fields == 0 || i + 1 != n)
		return -1;
	return 0;
}

int mime_section_resolve(const struct mime_message *m, const struct mime_section *sec,
			 struct mime_section_bytes *r)
{
	memset(r, 0, sizeof *r);
	uint32_t part = 0;
	bool found = true;
	/* Dovecot's rule (RFC 3501 6.4.5 is silent on it): a non-multipart
	 * part absorbs one "1" (the body of a single-part message, and
	 * "1.1" for a leaf as Dovecot also allows); a message/rfc822 part
	 * is entered when a further number follows it. */
	bool absorbed = false;
	for (unsigned k = 0; k < sec->n_num && found; k++) {
		const struct mime_part *pt = &m->parts[part];
		if (k > 0 && (pt->flags & MIME_PART_MESSAGE) && pt->first_child != MIME_NIL) {
			part = pt->first_child;
			pt = &m->parts[part];
			absorbed = false;
		}
		if (pt->flags & MIME_PART_MULTIPART) {
			uint32_t c = pt->first_child;
			for (uint32_t j = 1; c != MIME_NIL && j < sec->num[k]; j++)
				c = m->parts[c].next;
			if (c == MIME_NIL)
				found = false;
			else
				part = c;
			absorbed = false;
		} else if (!absorbed && sec->num[k] == 1) {
			absorbed = true;
		} else {
			found = false;
		}
	}
	r->part = part;
	r->missing = !found;
	if (!found) {
		r->range.off = r->range.woff = 0;
		return 0;
	}
	const struct mime_part *pt = &m->parts[part];
	switch (sec->kind) {
	case MIME_SECT_BODY:
		if (sec->n_num == 0) {
			r->range.off = 0;
			r->range.woff = 0;
			r->range.len = m->size;
			r->range.wlen = m->wire_size;
		} else {
			r->range = pt->body;
		}
		break;
	case MIME_SECT_MIME:
		r->range = pt->header;
		break;
	case MIME_SECT_HEADER:
	case MIME_SECT_FIELDS:
	case MIME_SECT_FIELDS_NOT:
	case MIME_SECT_TEXT:
		if (sec->n_num > 0) {
			if (!(pt->flags & MIME_PART_MESSAGE) || pt->first_child == MIME_NIL) {
				r->range.off = r->range.woff = 0;
				return 0; /* not a message: nothing (Dovecot: "") */
			}
			pt = &m->parts[pt->first_child];
		}
		r->range = sec->kind == MIME_SECT_TEXT ? pt->body : pt->header;
		r->filter = sec->kind == MIME_SECT_FIELDS || sec->kind == MIME_SECT_FIELDS_NOT;
		break;
	}
	return 0;
}

static bool field_listed(const struct mime_section *sec, const uint8_t *name, size_t nl)
{
	for (unsigned i = 0; i < sec->n_fields; i++)
		if (sec->field_len[i] == nl &&
		    ascii_strncasecmp(sec->field[i], (const char *)name, nl) == 0)
			return true;
	return false;
}

int mime_section_filter(const struct mime_section *sec, const uint8_t *h, size_t n,
			struct buf *out)
{
	bool want_not = sec->kind == MIME_SECT_FIELDS_NOT;
	bool blank = false, matched = false;
	size_t i = 0;
	struct mime_wire w;
	while (i < n) {
		size_t ls = i;
		const uint8_t *e = memchr(h + i, '\n', n - i);
		size_t le = e ? (size_t)(e - h) + 1 : n;
		if (le - ls <= 2 && (h[ls] == '\n' || (h[ls] == '\r' && le - ls == 2))) {
			blank = true; /* the blank line that ends the header */
			break;
		}
		size_t fe = le;
		while (fe < n && mime_is_wsp(h[fe])) {
			const uint8_t *e2 = memchr(h + fe, '\n', n - fe);
			fe = e2 ? (size_t)(e2 - h) + 1 : n;
		}
		i = fe;
		const uint8_t *colon = mime_is_wsp(h[ls]) ? NULL : memchr(h + ls, ':', le - ls);
		if (!colon) {
			/* not a field: FIELDS.NOT passes it through (Dovecot) */
			if (!want_not)
				continue;
		} else {
			size_t nl = (size_t)(colon - (h + ls));
			while (nl && mime_is_wsp(h[ls + nl - 1]))
				nl--;
			if (field_listed(sec, h + ls, nl) == want_not)
				continue;
		}
		matched = true;
		size_t fl = fe - ls;
		if (fe == n && h[n - 1] == '\r' && !want_not)
			fl--; /* a CR cut off from its LF at the end (Dovecot) */
		mime_wire_init(&w, 0, 0, UINT64_MAX);
		if (mime_wire_feed(&w, h + ls, fl, out) < 0)
			return -1;
	}
	/* Dovecot: FIELDS always ends with CRLF; FIELDS.NOT passes the
	 * header's own blank line through, so a header without one (a
	 * message without a body) gets none */
	if (!blank && (want_not || (!matched && n > 0)))
		return 0;
	return buf_append(out, "\r\n", 2);
}

/* ---- LF -> CRLF with a window ------------------------------------------ */

void mime_wire_init(struct mime_wire *w, uint64_t start_woff, uint64_t o, uint64_t n)
{
	w->pos = start_woff;
	w->begin = o;
	w->end = n > UINT64_MAX - o ? UINT64_MAX : o + n;
	w->prev_cr = false;
	w->nul_0x80 = true;
}

static int wire_emit(struct mime_wire *w, const void *p, size_t n, struct buf *out)
{
	/* the n wire bytes at w->pos, clipped to the window */
	uint64_t s = w->pos, e = w->pos + n;
	w->pos = e;
	if (e <= w->begin || s >= w->end)
		return 0;
	uint64_t a = s < w->begin ? w->begin - s : 0;
	uint64_t b = e > w->end ? n - (e - w->end) : n;
	if (b <= a)
		return 0;
	size_t start = out->len;
	if (buf_append(out, (const uint8_t *)p + a, (size_t)(b - a)) < 0)
		return -1;
	if (w->nul_0x80) {
		uint8_t *q = out->data + start, *qe = out->data + out->len;
		while ((q = memchr(q, 0, (size_t)(qe - q))) != NULL)
			*q++ = 0x80;
	}
	return 0;
}

int mime_wire_feed(struct mime_wire *w, const void *pv, size_t n, struct buf *out)
{
	const uint8_t *p = pv;
	size_t i = 0;
	while (i < n && w->pos < w->end) {
		const uint8_t *q = memchr(p + i, '\n', n - i);
		size_t run = q ? (size_t)(q - (p + i)) : n - i;
		if (run) {
			if (wire_emit(w, p + i, run, out) < 0)
				return -1;
			w->prev_cr = p[i + run - 1] == '\r';
			i += run;
		}
		if (!q)
			break;
		if (w->prev_cr) {
			if (wire_emit(w, "\n", 1, out) < 0)
				return -1;
		} else if (wire_emit(w, "\r\n", 2, out) < 0) {
			return -1;
		}
		w->prev_cr = false;
		i++;
	}
	return w->pos < w->end ? 1 : 0;
}

/* ---- BINARY ------------------------------------------------------------- */

int mime_binary_decode(const struct mime_part *part, const uint8_t *body, size_t n,
		       struct buf *out)
{
	if (part->cte == MIME_CTE_OTHER && !(part->flags & (MIME_PART_MESSAGE | MIME_PART_MULTIPART)))
		return -2;
	if ((part->cte == MIME_CTE_BASE64 || part->cte == MIME_CTE_QP) &&
	    !(part->flags & (MIME_PART_MESSAGE | MIME_PART_MULTIPART))) {
		/* containers are sent as they are (Dovecot) */
		struct mime_decoder d;
		mime_decoder_init(&d, (enum mime_cte)part->cte);
		size_t start = out->len;
		if (mime_decoder_feed(&d, body, n, out) < 0 || mime_decoder_finish(&d, out) < 0)
			return -1;
		if (d.invalid) {
			out->len = start;
			return -3;
		}
		return 0;
	}
	struct mime_wire w;
	mime_wire_init(&w, 0, 0, UINT64_MAX);
	w.nul_0x80 = false;
	return mime_wire_feed(&w, body, n, out) < 0 ? -1 : 0;
}

bool mime_binary_is_literal8(const struct mime_part *part, const uint8_t *data, size_t n)
{
	return ((part->cte == MIME_CTE_BASE64 || part->cte == MIME_CTE_QP) &&
		!(part->flags & (MIME_PART_MESSAGE | MIME_PART_MULTIPART))) ||
	       (n && memchr(data, 0, n) != NULL);
}

/* ---- SEARCH ------------------------------------------------------------- */

static uint32_t fold_cp(uint32_t c)
{
	if (c < 0x80)
		return (c >= 'A' && c <= 'Z') ? c + 32 : c;
	if ((c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) ||
	    (c >= 0x410 && c <= 0x42f))
		return c + 32;
	if (c >= 0x400 && c <= 0x40f)
		return c + 80;
	if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 &&
	    c != 0x17f) {
		/* Latin Extended-A pairs: even upper/odd lower, except 0x139-0x148
		 * and 0x179-0x17e which are odd upper/even lower */
		bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
		if (odd_upper ? (c & 1) : !(c & 1))
			return c + 1;
	}
	return c;
}

void mime_search_fold(const uint8_t *s, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		size_t st = i;
		while (i < n && s[i] < 0x80 && !(s[i] >= 'A' && s[i] <= 'Z'))
			i++;
		if (i > st)
			buf_xappend(out, s + st, i - st);
		if (i >= n)
			break;
		if (s[i] < 0x80) {
			uint8_t c = (uint8_t)(s[i] + 32);
			buf_xappend(out, &c, 1);
			i++;
			continue;
		}
		/* decode one UTF-8 sequence (input is valid UTF-8 from the converters) */
		uint32_t cp;
		size_t l;
		if ((s[i] & 0xe0) == 0xc0 && i + 1 < n) {
			cp = ((uint32_t)(s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f);
			l = 2;
		} else {
			size_t k = 1;
			while (i + k < n && (s[i + k] & 0xc0) == 0x80)
				k++;
			buf_xappend(out, s + i, k);
			i += k;
			continue;
		}
		cp = fold_cp(cp);
		if (cp < 0x800) {
			uint8_t two[2] = { (uint8_t)(0xc0 | (cp >> 6)), (uint8_t)(0x80 | (cp & 0x3f)) };
			buf_xappend(out, two, 2);
		}
		i += l;
	}
}

int mime_search_header(const uint8_t *v, size_t n, struct buf *out)
{
	struct buf t = BUF_INIT(0);
	int r = mime_decode_words(v, n, &t);
	if (r == 0) {
		size_t start = out->len;
		mime_search_fold(t.data ? t.data : (const uint8_t *)"", t.len, out);
		if (out->max && out->len > out->max) {
			out->len = start;
			r = -1;
		}
	}
	buf_deinit(&t);
	return r;
}

int mime_search_body(const struct mime_message *m, const uint8_t *msg, size_t n, struct buf *out)
{
	struct buf raw = BUF_INIT(0), utf = BUF_INIT(0);
	int ret = 0;
	for (uint32_t i = 0; i < m->n_parts && ret == 0; i++) {
		const struct mime_part *pt = &m->parts[i];
		if (!(pt->flags & MIME_PART_TEXT) || pt->first_child != MIME_NIL)
			continue;
		if (pt->body.off > n || pt->body.len > n - pt->body.off)
			continue;
		raw.len = utf.len = 0;
		struct mime_decoder d;
		mime_decoder_init(&d, pt->cte == MIME_CTE_OTHER ? MIME_CTE_8BIT
								 : (enum mime_cte)pt->cte);
		if (mime_decoder_feed(&d, msg + pt->body.off, (size_t)pt->body.len, &raw) < 0 ||
		    mime_decoder_finish(&d, &raw) < 0)
			continue;
		struct buf cs = BUF_INIT(128);
		const struct mime_param *cp = mime_param_find(m, pt->params, pt->n_params, "charset");
		if (cp)
			buf_xappend(&cs, m->pool + cp->value.off, cp->value.len < 64 ? cp->value.len : 0);
		if (mime_charset_to_utf8(cs.len ? buf_cstr(&cs) : NULL,
					 raw.data ? raw.data : (const uint8_t *)"", raw.len, &utf) < 0)
			ret = -1;
		buf_deinit(&cs);
		size_t start = out->len;
		mime_search_fold(utf.data ? utf.data : (const uint8_t *)"", utf.len, out);
		buf_xappend(out, "\n", 1);
		if (out->max && out->len > out->max) {
			out->len = start;
			ret = -1;
		}
	}
	buf_deinit(&raw);
	buf_deinit(&utf);
	return ret;
}
