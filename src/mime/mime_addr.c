/* SPDX-License-Identifier: MIT */
/* RFC 5322 3.4 address lists with the obsolete syntax of 4.4 (routes,
 * CFWS around dots, phrases with dots) and the repairs Dovecot makes on
 * real mail: a lone phrase is a display name without a mailbox, a lone word
 * is a mailbox without a domain, a trailing comment names an address that
 * has no phrase, "<a@b" without '>' is a syntax error, and garbage after an
 * address ends the list (what was parsed so far is kept). NUL separates
 * repeated fields (the parser joins them that way) and restarts the list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/mime_int.h"

struct aparse {
	const uint8_t *p;
	size_t n, i;
	struct buf comment;
	struct mime_addr_list *out;
	size_t max;
	/* offsets into out->strings_, (size_t)-1 = NULL, while parsing */
	struct raw {
		size_t name, route, mailbox, host;
		bool gs, ge, err;
	} *raw;
	size_t nraw, rawcap;
};

#define NONE ((size_t)-1)

static size_t str_store(struct aparse *a, const void *s, size_t n)
{
	struct mime_addr_list *l = a->out;
	if (l->strings_len_ + n + 1 > l->strings_cap_) {
		size_t nc = l->strings_cap_ ? l->strings_cap_ * 2 : 128;
		while (nc < l->strings_len_ + n + 1)
			nc *= 2;
		l->strings_ = xrealloc(l->strings_, nc);
		l->strings_cap_ = nc;
	}
	size_t off = l->strings_len_;
	if (n)
		memcpy(l->strings_ + off, s, n);
	l->strings_[off + n] = 0;
	l->strings_len_ += n + 1;
	return off;
}

static void emit(struct aparse *a, size_t name, size_t route, size_t mailbox, size_t host,
		 bool gs, bool ge, bool err)
{
	if (a->nraw >= a->max)
		return;
	if (a->nraw == a->rawcap) {
		a->rawcap = a->rawcap ? a->rawcap * 2 : 8;
		a->raw = xrealloc(a->raw, a->rawcap * sizeof *a->raw);
	}
	struct raw *r = &a->raw[a->nraw++];
	r->name = name;
	r->route = route;
	r->mailbox = mailbox;
	r->host = host;
	r->gs = gs;
	r->ge = ge;
	r->err = err;
}

static bool is_atext(uint8_t c)
{
	if (c >= 0x80)
		return true; /* RFC 6532 UTF-8, and raw 8-bit junk */
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return true;
	if (c >= '0' && c <= '9')
		return true;
	return c && memchr("!#$%&'*+-/=?^_`{|}~", c, 19) != NULL;
}

static void skip(struct aparse *a)
{
	a->i = mime_skip_cfws(a->p, a->n, a->i, &a->comment);
}

/* quoted-string at p[i] == '"'; appends the content. -1 if unterminated. */
static int qstring(struct aparse *a, struct buf *out)
{
	size_t i = a->i + 1;
	for (; i < a->n; i++) {
		uint8_t c = a->p[i];
		if (c == '"') {
			a->i = i + 1;
			return 0;
		}
		if (c == 0)
			break;
		if (c == '\\' && i + 1 < a->n)
			c = a->p[++i];
		else if (c == '\r' || c == '\n')
			continue;
		buf_xappend(out, &c, 1);
	}
	a->i = a->n;
	return -1;
}

/* A phrase (RFC 5322 3.2.5 + obs-phrase): words separated by single
 * spaces. Returns the number of words; -1 on an unterminated quote. */
static int phrase(struct aparse *a, struct buf *out)
{
	int words = 0;
	for (;;) {
		skip(a);
		if (a->i >= a->n)
			return words;
		uint8_t c = a->p[a->i];
		if (c == '"') {
			if (words)
				buf_xappend(out, " ", 1);
			if (qstring(a, out) < 0)
				return -1;
		} else if (is_atext(c) || (c == '.' && words)) {
			if (words)
				buf_xappend(out, " ", 1);
			size_t s = a->i;
			while (a->i < a->n && (is_atext(a->p[a->i]) || a->p[a->i] == '.'))
				a->i++;
			buf_xappend(out, a->p + s, a->i - s);
		} else {
			return words;
		}
		words++;
	}
}

/* local-part: dot-atom / quoted-string / obs-local-part (CFWS around dots). */
static int local_part(struct aparse *a, struct buf *out, int *words_r)
{
	*words_r = 0;
	for (;;) {
		skip(a);
		if (a->i >= a->n)
			return 0;
		uint8_t c = a->p[a->i];
		if (c == '"') {
			if (qstring(a, out) < 0)
				return -1;
		} else if (is_atext(c)) {
			size_t s = a->i;
			while (a->i < a->n && is_atext(a->p[a->i]))
				a->i++;
			buf_xappend(out, a->p + s, a->i - s);
		} else {
			return 0;
		}
		(*words_r)++;
		skip(a);
		if (a->i < a->n && a->p[a->i] == '.') {
			buf_xappend(out, ".", 1);
			a->i++;
			continue;
		}
		/* another word without a dot: a phrase, not a local part */
		if (a->i < a->n && (is_atext(a->p[a->i]) || a->p[a->i] == '"')) {
			buf_xappend(out, " ", 1);
			continue;
		}
		return 0;
	}
}

/* domain: dot-atom / domain-literal. 0 ok (maybe empty), -1 bad. */
static int domain(struct aparse *a, struct buf *out)
{
	skip(a);
	if (a->i < a->n && a->p[a->i] == '[') {
		size_t s = a->i;
		while (a->i < a->n && a->p[a->i] != ']')
			a->i++;
		if (a->i >= a->n)
			return -1;
		a->i++;
		buf_xappend(out, a->p + s, a->i - s);
		return 0;
	}
	for (;;) {
		skip(a);
		size_t s = a->i;
		while (a->i < a->n && is_atext(a->p[a->i]))
			a->i++;
		if (a->i == s)
			return -1;
		buf_xappend(out, a->p + s, a->i - s);
		skip(a);
		if (a->i < a->n && a->p[a->i] == '.') {
			buf_xappend(out, ".", 1);
			a->i++;
			continue;
		}
		return 0;
	}
}

static size_t store_buf(struct aparse *a, struct buf *b)
{
	return str_store(a, b->data ? b->data : (const uint8_t *)"", b->len);
}

/* angle-addr at '<': [obs-route] addr-spec '>'. */
static int angle(struct aparse *a, size_t name)
{
	struct buf route = BUF_INIT(0), lp = BUF_INIT(0), dom = BUF_INIT(0);
	bool err = false, have_dom = false;
	int words;
	a->i++;
	skip(a);
	/* obs-route = obs-domain-list ":" ; obs-domain-list = "@" domain *("," ["@" domain]) */
	if (a->i < a->n && a->p[a->i] == '@') {
		size_t save = a->i;
		for (;;) {
			skip(a);
			if (a->i < a->n && a->p[a->i] == ',') {
				a->i++;
				continue;
			}
			if (a->i < a->n && a->p[a->i] == '@') {
				a->i++;
				if (route.len)
					buf_xappend(&route, ",", 1);
				buf_xappend(&route, "@", 1);
				if (domain(a, &route) < 0)
					break;
				continue;
			}
			break;
		}
		if (a->i < a->n && a->p[a->i] == ':') {
			a->i++;
		} else {
			a->i = save;
			route.len = 0;
		}
	}
	int r = local_part(a, &lp, &words);
	if (r == 0 && a->i < a->n && a->p[a->i] == '@') {
		a->i++;
		if (domain(a, &dom) < 0)
			err = true;
		else
			have_dom = true;
	}
	skip(a);
	bool unclosed = false;
	if (a->i < a->n && a->p[a->i] == '>') {
		a->i++;
	} else {
		unclosed = true; /* "<a@b, c@d": flagged, but the list goes on */
	}
	size_t mbox = lp.len || r == 0 ? store_buf(a, &lp) : NONE;
	if (lp.len == 0 && !have_dom && !err) {
		/* "<>": the null path */
		mbox = NONE;
	}
	emit(a, name, route.len ? store_buf(a, &route) : NONE, mbox, have_dom ? store_buf(a, &dom) : NONE,
	     false, false, err || unclosed);
	buf_deinit(&route);
	buf_deinit(&lp);
	buf_deinit(&dom);
	return err ? -1 : 0;
}

/* One mailbox (name-addr / addr-spec). Returns 0, or -1 to stop the list. */
static int mailbox(struct aparse *a)
{
	size_t start = a->i;
	struct buf ph = BUF_INIT(0);
	a->comment.len = 0;
	int words = phrase(a, &ph);
	skip(a);
	if (words >= 0 && a->i < a->n && a->p[a->i] == '<') {
		size_t name = ph.len ? store_buf(a, &ph) : NONE;
		buf_deinit(&ph);
		return angle(a, name);
	}
	buf_deinit(&ph);
	/* addr-spec */
	a->i = start;
	a->comment.len = 0;
	struct buf lp = BUF_INIT(0), dom = BUF_INIT(0);
	size_t q = mime_skip_cfws(a->p, a->n, a->i, NULL);
	bool quoted = q < a->n && a->p[q] == '"';
	int r = local_part(a, &lp, &words);
	int ret = 0;
	bool have_dom = false, err = false;
	if (r < 0) {
		emit(a, NONE, NONE, NONE, NONE, false, false, true);
		ret = -1;
		goto out;
	}
	if (a->i < a->n && a->p[a->i] == '@') {
		a->i++;
		if (domain(a, &dom) < 0)
			err = true;
		else
			have_dom = true;
	}
	skip(a);
	size_t name = a->comment.len ? str_store(a, a->comment.data, a->comment.len) : NONE;
	if (!have_dom && !err && (quoted || words > 1) && lp.len) {
		/* "Name Only" / undisclosed recipients: a display name */
		emit(a, store_buf(a, &lp), NONE, NONE, NONE, false, false, false);
	} else if (lp.len == 0 && !have_dom) {
		if (a->i < a->n && a->p[a->i] != ',' && a->p[a->i] != ';' && a->p[a->i] != 0) {
			emit(a, NONE, NONE, NONE, NONE, false, false, true);
			ret = -1;
		}
		/* empty element between commas: nothing */
	} else {
		emit(a, name, NONE, lp.len ? store_buf(a, &lp) : NONE, have_dom ? store_buf(a, &dom) : NONE,
		     false, false, err);
		if (err)
			ret = -1;
	}
out:
	buf_deinit(&lp);
	buf_deinit(&dom);
	return ret;
}

/* One list: stops at NUL or garbage. */
static void list(struct aparse *a)
{
	bool in_group = false;
	while (a->i < a->n && a->nraw < a->max) {
		skip(a);
		if (a->i >= a->n || a->p[a->i] == 0)
			break;
		uint8_t c = a->p[a->i];
		if (c == ',') {
			a->i++;
			continue;
		}
		if (c == ';' && in_group) {
			a->i++;
			emit(a, NONE, NONE, NONE, NONE, false, true, false);
			in_group = false;
			continue;
		}
		/* group = display-name ":" [group-list] ";" */
		size_t start = a->i;
		struct buf ph = BUF_INIT(0);
		int words = phrase(a, &ph);
		skip(a);
		if (!in_group && words > 0 && a->i < a->n && a->p[a->i] == ':') {
			a->i++;
			emit(a, NONE, NONE, store_buf(a, &ph), NONE, true, false, false);
			in_group = true;
			buf_deinit(&ph);
			continue;
		}
		buf_deinit(&ph);
		a->i = start;
		if (mailbox(a) < 0)
			break;
		skip(a);
		if (a->i < a->n && a->p[a->i] != ',' && a->p[a->i] != 0 &&
		    !(a->p[a->i] == ';' && in_group))
			break; /* garbage after an address: Dovecot stops here */
	}
	if (in_group)
		emit(a, NONE, NONE, NONE, NONE, false, true, false);
}

void mime_addr_parse(const uint8_t *v, size_t n, size_t max_addrs, struct mime_addr_list *out)
{
	memset(out, 0, sizeof *out);
	struct aparse a = { .p = v, .n = n, .out = out, .max = max_addrs ? max_addrs : 10000 };
	buf_init(&a.comment, 4096);
	while (a.i < n) {
		list(&a);
		const uint8_t *z = a.i < n ? memchr(v + a.i, 0, n - a.i) : NULL;
		if (!z)
			break;
		a.i = (size_t)(z - v) + 1;
	}
	buf_deinit(&a.comment);
	out->v = a.nraw ? xcalloc(a.nraw, sizeof *out->v) : NULL;
	out->n = out->cap_ = a.nraw;
	for (size_t k = 0; k < a.nraw; k++) {
		struct raw *r = &a.raw[k];
		struct mime_addr *d = &out->v[k];
		d->name = r->name == NONE ? NULL : out->strings_ + r->name;
		d->route = r->route == NONE ? NULL : out->strings_ + r->route;
		d->mailbox = r->mailbox == NONE ? NULL : out->strings_ + r->mailbox;
		d->host = r->host == NONE ? NULL : out->strings_ + r->host;
		d->is_group_start = r->gs;
		d->is_group_end = r->ge;
		d->syntax_error = r->err;
	}
	free(a.raw);
}

void mime_addr_list_free(struct mime_addr_list *l)
{
	free(l->v);
	free(l->strings_);
	memset(l, 0, sizeof *l);
}
