/* SPDX-License-Identifier: MIT */
/* FETCH: item list compiler and per-message response renderer with
 * resumable body streaming (imap_fetch.h). */
#include "proto/imap/imap_fetch.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "proto/imap/imap_quote.h"

enum item_kind {
	IT_FLAGS,
	IT_INTERNALDATE,
	IT_RFC822_SIZE,
	IT_ENVELOPE,
	IT_BODY,          /* BODY (non-extensible BODYSTRUCTURE) */
	IT_BODYSTRUCTURE,
	IT_UID,
	IT_MODSEQ,
	IT_SECTION,       /* BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
	IT_BINARY,        /* BINARY[...], BINARY.PEEK[...] */
	IT_BINARY_SIZE,
};

struct item {
	enum item_kind kind;
	bool peek;
	char *label;      /* response name, e.g. "BODY[HEADER]<0>" or "RFC822.TEXT" */
	char *section_text;
	struct mime_section *sec;
	bool has_partial;
	uint64_t po, pn;
};

struct imap_fetch_plan {
	struct item *items;
	size_t n, cap;
	bool sets_seen;
	bool rev2, utf8, condstore;
	bool has_flags, has_modseq;
	unsigned want;
	uint64_t changedsince;
};

/* What begin() computed for one item. */
struct prep {
	struct mime_section_bytes sb;
	struct buf data;  /* filtered header or decoded binary (whole) */
	bool in_mem;
	bool literal8;
};
struct imap_fetch_prep_ {
	struct prep *v;
	size_t n;
};

/* ---- parsing ------------------------------------------------------------- */

static struct item *plan_add(struct imap_fetch_plan *p, enum item_kind k, const char *label)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->items = xrealloc(p->items, p->cap * sizeof *p->items);
	}
	struct item *it = &p->items[p->n++];
	memset(it, 0, sizeof *it);
	it->kind = k;
	it->label = xstrdup(label);
	switch (k) {
	case IT_FLAGS:
		p->has_flags = true;
		break;
	case IT_ENVELOPE:
		p->want |= IMAP_FETCH_W_ENVELOPE;
		break;
	case IT_BODY:
		p->want |= IMAP_FETCH_W_BODY;
		break;
	case IT_BODYSTRUCTURE:
		p->want |= IMAP_FETCH_W_BODYSTRUCTURE;
		break;
	case IT_SECTION:
	case IT_BINARY:
	case IT_BINARY_SIZE:
		p->want |= IMAP_FETCH_W_MIME | IMAP_FETCH_W_FILE;
		break;
	default:
		break;
	}
	return it;
}

static bool plan_has(const struct imap_fetch_plan *p, enum item_kind k)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->items[i].kind == k)
			return true;
	return false;
}

/* An item with a section (BODY[..], BINARY[..]); att is split already. */
static int add_section_item(struct imap_fetch_plan *p, const struct imap_fetch_att *a,
			    const char **error_r)
{
	enum item_kind k;
	bool peek = false;
	const char *rname;
	if (a->name_len == 4 && ascii_strncasecmp(a->name, "BODY", 4) == 0) {
		k = IT_SECTION;
		rname = "BODY";
	} else if (a->name_len == 9 && ascii_strncasecmp(a->name, "BODY.PEEK", 9) == 0) {
		k = IT_SECTION;
		peek = true;
		rname = "BODY";
	} else if (a->name_len == 6 && ascii_strncasecmp(a->name, "BINARY", 6) == 0) {
		k = IT_BINARY;
		rname = "BINARY";
	} else if (a->name_len == 11 && ascii_strncasecmp(a->name, "BINARY.PEEK", 11) == 0) {
		k = IT_BINARY;
		peek = true;
		rname = "BINARY";
	} else if (a->name_len == 11 && ascii_strncasecmp(a->name, "BINARY.SIZE", 11) == 0) {
		k = IT_BINARY_SIZE;
		peek = true;
		rname = "BINARY.SIZE";
	} else {
		*error_r = "Unknown FETCH item";
		return -1;
	}
	if (!a->has_section) {
		*error_r = "FETCH item needs a section";
		return -1;
	}
	if (a->has_partial && k == IT_BINARY_SIZE) {
		*error_r = "BINARY.SIZE takes no partial";
		return -1;
	}
	struct mime_section *sec = xmalloc(sizeof *sec);
	char *text = xstrndup(a->section, a->section_len);
	if (mime_section_parse(text, a->section_len, sec) < 0) {
		free(sec);
		free(text);
		*error_r = "Invalid FETCH section";
		return -1;
	}
	if (k != IT_SECTION && sec->kind != MIME_SECT_BODY) {
		/* RFC 3516 section-binary = "[" [section-part] "]" */
		free(sec);
		free(text);
		*error_r = "BINARY takes a part number only";
		return -1;
	}
	char *label;
	if (a->has_partial)
		label = xasprintf("%s[%s]<%llu>", rname, text, (unsigned long long)a->partial_off);
	else
		label = xasprintf("%s[%s]", rname, text);
	struct item *it = plan_add(p, k, label);
	free(label);
	it->peek = peek;
	it->sec = sec;
	it->section_text = text;
	it->has_partial = a->has_partial;
	it->po = a->has_partial ? a->partial_off : 0;
	it->pn = a->has_partial ? a->partial_len : UINT64_MAX;
	if (!peek)
		p->sets_seen = true;
	return 0;
}

static struct item *add_rfc822(struct imap_fetch_plan *p, const char *label, const char *sect,
			       bool peek)
{
	struct item *it = plan_add(p, IT_SECTION, label);
	it->sec = xmalloc(sizeof *it->sec);
	it->section_text = xstrdup(sect);
	if (mime_section_parse(it->section_text, strlen(sect), it->sec) < 0)
		ASSERT(false);
	it->peek = peek;
	it->pn = UINT64_MAX;
	if (!peek)
		p->sets_seen = true;
	return it;
}

static int add_item(struct imap_fetch_plan *p, const struct imap_arg *a,
		    const struct imap_fetch_opts *o, const char **error_r)
{
	const char *s;
	size_t n;
	if (!imap_arg_get_atom(a, &s, &n)) {
		*error_r = "Invalid FETCH item";
		return -1;
	}
	if (p->n >= IMAP_FETCH_MAX_ITEMS) {
		*error_r = "Too many FETCH items";
		return -1;
	}
	struct imap_fetch_att att;
	if (imap_fetch_att_split(s, n, &att) < 0) {
		*error_r = "Invalid FETCH item syntax";
		return -1;
	}
	if (att.has_section || att.has_partial || att.name_len != n)
		return add_section_item(p, &att, error_r);
	static const struct {
		const char *name;
		enum item_kind k;
	} simple[] = {
		{ "FLAGS", IT_FLAGS },
		{ "INTERNALDATE", IT_INTERNALDATE },
		{ "RFC822.SIZE", IT_RFC822_SIZE },
		{ "ENVELOPE", IT_ENVELOPE },
		{ "BODY", IT_BODY },
		{ "BODYSTRUCTURE", IT_BODYSTRUCTURE },
		{ "UID", IT_UID },
		{ "MODSEQ", IT_MODSEQ },
	};
	for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
		if (strlen(simple[i].name) == n && ascii_strncasecmp(s, simple[i].name, n) == 0) {
			if (simple[i].k == IT_MODSEQ && !o->condstore) {
				*error_r = "MODSEQ needs CONDSTORE";
				return -1;
			}
			plan_add(p, simple[i].k, simple[i].name);
			return 0;
		}
	}
	/* RFC 3501 6.4.5; deprecated by RFC 9051 appendix E (18), still
	 * accepted in rev2 sessions (see imap_fetch.h). */
	if (n == 6 && ascii_strncasecmp(s, "RFC822", 6) == 0) {
		add_rfc822(p, "RFC822", "", false);
		return 0;
	}
	if (n == 13 && ascii_strncasecmp(s, "RFC822.HEADER", 13) == 0) {
		add_rfc822(p, "RFC822.HEADER", "HEADER", true);
		return 0;
	}
	if (n == 11 && ascii_strncasecmp(s, "RFC822.TEXT", 11) == 0) {
		add_rfc822(p, "RFC822.TEXT", "TEXT", false);
		return 0;
	}
	*error_r = "Unknown FETCH item";
	return -1;
}

static int parse_modifiers(struct imap_fetch_plan *p, const struct imap_arg *a,
			   const struct imap_fetch_opts *o, const char **error_r)
{
	const struct imap_arg *l;
	size_t n;
	if (!imap_arg_get_list(a, &l, &n) || n == 0) {
		*error_r = "Invalid FETCH modifiers";
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		if (o->condstore && imap_arg_atom_equals(&l[i], "CHANGEDSINCE") && i + 1 < n &&
		    imap_arg_get_number(&l[i + 1], &v) && v > 0 && p->changedsince == 0) {
			p->changedsince = v;
			i++;
			continue;
		}
		*error_r = "Unknown FETCH modifier";
		return -1;
	}
	if (!plan_has(p, IT_MODSEQ))
		plan_add(p, IT_MODSEQ, "MODSEQ");
	return 0;
}

int imap_fetch_parse(const struct imap_arg *args, size_t n_args, bool uid,
		     const struct imap_fetch_opts *opts, struct imap_fetch_plan **plan_r,
		     const char **error_r)
{
	static const struct imap_fetch_opts defopts;
	const struct imap_fetch_opts *o = opts ? opts : &defopts;
	*plan_r = NULL;
	if (n_args < 1 || n_args > 2) {
		*error_r = "FETCH needs a list of items";
		return -1;
	}
	struct imap_fetch_plan *p = xcalloc(1, sizeof *p);
	p->rev2 = o->rev2;
	p->utf8 = o->utf8 || o->rev2;
	p->condstore = o->condstore;
	const struct imap_arg *a = &args[0];
	const struct imap_arg *l;
	size_t ln;
	int rc = 0;
	if (uid)
		plan_add(p, IT_UID, "UID"); /* RFC 9051 6.4.9: UID FETCH answers UID */
	if (imap_arg_atom_equals(a, "ALL") || imap_arg_atom_equals(a, "FAST") ||
	    imap_arg_atom_equals(a, "FULL")) {
		/* RFC 9051 6.4.5 macros */
		plan_add(p, IT_FLAGS, "FLAGS");
		plan_add(p, IT_INTERNALDATE, "INTERNALDATE");
		plan_add(p, IT_RFC822_SIZE, "RFC822.SIZE");
		if (!imap_arg_atom_equals(a, "FAST"))
			plan_add(p, IT_ENVELOPE, "ENVELOPE");
		if (imap_arg_atom_equals(a, "FULL"))
			plan_add(p, IT_BODY, "BODY");
	} else if (imap_arg_get_list(a, &l, &ln)) {
		if (ln == 0) {
			*error_r = "Empty FETCH item list";
			rc = -1;
		}
		for (size_t i = 0; rc == 0 && i < ln; i++)
			rc = add_item(p, &l[i], o, error_r);
	} else {
		rc = add_item(p, a, o, error_r);
	}
	if (rc == 0 && n_args == 2)
		rc = parse_modifiers(p, &args[1], o, error_r);
	if (rc < 0) {
		imap_fetch_plan_free(&p);
		return -1;
	}
	/* RFC 7162 3.1: a CONDSTORE-aware client gets MODSEQ with FLAGS */
	if (o->condstore && p->has_flags && !plan_has(p, IT_MODSEQ))
		plan_add(p, IT_MODSEQ, "MODSEQ");
	p->has_modseq = plan_has(p, IT_MODSEQ);
	/* a UID asked for explicitly after the implied one is answered once */
	if (uid) {
		for (size_t i = 1; i < p->n; i++)
			if (p->items[i].kind == IT_UID) {
				free(p->items[i].label);
				memmove(&p->items[i], &p->items[i + 1], (p->n - i - 1) * sizeof *p->items);
				p->n--;
				i--;
			}
	}
	*plan_r = p;
	return 0;
}

void imap_fetch_plan_free(struct imap_fetch_plan **pp)
{
	struct imap_fetch_plan *p = *pp;
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->items[i].label);
		free(p->items[i].section_text);
		free(p->items[i].sec);
	}
	free(p->items);
	free(p);
	*pp = NULL;
}

bool imap_fetch_plan_sets_seen(const struct imap_fetch_plan *p)
{
	return p->sets_seen;
}

unsigned imap_fetch_plan_wants(const struct imap_fetch_plan *p)
{
	return p->want;
}

uint64_t imap_fetch_plan_changedsince(const struct imap_fetch_plan *p)
{
	return p->changedsince;
}

/* ---- simple items -------------------------------------------------------- */

void imap_fetch_write_internaldate(int64_t t, int tz_min, struct buf *out)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	if (tz_min < -1439 || tz_min > 1439)
		tz_min = 0;
	time_t lt = (time_t)(t + (int64_t)tz_min * 60);
	struct tm tm;
	if (!gmtime_r(&lt, &tm)) {
		lt = 0;
		tz_min = 0;
		gmtime_r(&lt, &tm);
	}
	int z = tz_min < 0 ? -tz_min : tz_min;
	buf_xprintf(out, "\"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", tm.tm_mday, mon[tm.tm_mon],
		    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, tz_min < 0 ? '-' : '+',
		    z / 60, z % 60);
}

void imap_fetch_write_flags(const struct imap_msg *msg, bool rev2, struct buf *out)
{
	/* Dovecot's order, which the seed's "(\Deleted \Seen)" shows too */
	static const struct {
		unsigned bit;
		const char *name;
	} sys[] = {
		{ IMAP_MSGF_ANSWERED, "\\Answered" }, { IMAP_MSGF_FLAGGED, "\\Flagged" },
		{ IMAP_MSGF_DELETED, "\\Deleted" },   { IMAP_MSGF_SEEN, "\\Seen" },
		{ IMAP_MSGF_DRAFT, "\\Draft" },
	};
	bool first = true;
	buf_xappend(out, "(", 1);
	for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
		if (!(msg->flags & sys[i].bit))
			continue;
		if (!first)
			buf_xappend(out, " ", 1);
		buf_xappend(out, sys[i].name, strlen(sys[i].name));
		first = false;
	}
	if (msg->recent && !rev2) {
		if (!first)
			buf_xappend(out, " ", 1);
		buf_xappend(out, "\\Recent", 7);
		first = false;
	}
	const char *k = msg->keywords;
	size_t kl = k ? strlen(k) : 0, i = 0;
	while (i < kl) {
		while (i < kl && k[i] == ' ')
			i++;
		size_t j = i;
		while (j < kl && k[j] != ' ')
			j++;
		if (j > i) {
			if (!first)
				buf_xappend(out, " ", 1);
			buf_xappend(out, k + i, j - i);
			first = false;
		}
		i = j;
	}
	buf_xappend(out, ")", 1);
}

/* ---- begin: resolve sections, decode BINARY ---------------------------- */

static int read_range(struct imap_msg *msg, uint64_t off, uint64_t len, struct buf *b)
{
	if (len > IMAP_FETCH_MAX_MEM)
		return -2;
	void *p = buf_reserve(b, (size_t)len);
	if (!p && len)
		return -2;
	if (imap_msg_pread(msg, off, (size_t)len, p) < 0)
		return -1;
	buf_commit(b, (size_t)len);
	return 0;
}

static void prep_free(struct imap_fetch_render *r)
{
	if (!r->prep_)
		return;
	for (size_t i = 0; i < r->prep_->n; i++)
		buf_deinit(&r->prep_->v[i].data);
	free(r->prep_->v);
	free(r->prep_);
	r->prep_ = NULL;
}

int imap_fetch_render_begin(struct imap_fetch_render *r, const struct imap_fetch_plan *plan,
			    struct imap_msg *msg, bool add_flags, const char **error_r)
{
	memset(r, 0, sizeof *r);
	r->plan_ = plan;
	r->msg_ = msg;
	r->add_flags_ = add_flags && !plan->has_flags;
	bool need_tree = (plan->want & IMAP_FETCH_W_MIME) ||
			 (plan_has(plan, IT_ENVELOPE) && !msg->envelope) ||
			 (plan_has(plan, IT_BODY) && !msg->body) ||
			 (plan_has(plan, IT_BODYSTRUCTURE) && !msg->bodystructure);
	const struct mime_message *m = NULL;
	if (((plan->want & IMAP_FETCH_W_FILE) && !msg->read) ||
	    (need_tree && !(m = imap_msg_tree(msg)))) {
		*error_r = "[SERVERBUG] The message cannot be read";
		return -1;
	}
	if (!(plan->want & IMAP_FETCH_W_MIME))
		return 0; /* no sections: nothing to prepare (FETCH 1:* FLAGS) */
	r->prep_ = xcalloc(1, sizeof *r->prep_);
	r->prep_->v = xcalloc(plan->n ? plan->n : 1, sizeof *r->prep_->v);
	r->prep_->n = plan->n;
	for (size_t i = 0; i < plan->n; i++) {
		const struct item *it = &plan->items[i];
		struct prep *pr = &r->prep_->v[i];
		buf_init(&pr->data, 0);
		if (it->kind != IT_SECTION && it->kind != IT_BINARY && it->kind != IT_BINARY_SIZE)
			continue;
		if (mime_section_resolve(m, it->sec, &pr->sb) < 0) {
			*error_r = "[SERVERBUG] Section cannot be resolved";
			goto fail;
		}
		if (pr->sb.missing)
			continue;
		int rc;
		if (it->kind == IT_SECTION) {
			if (!pr->sb.filter)
				continue;
			struct buf hdr = BUF_INIT(0);
			rc = read_range(msg, pr->sb.range.off, pr->sb.range.len, &hdr);
			if (rc == 0 && mime_section_filter(it->sec, hdr.data, hdr.len, &pr->data) < 0)
				rc = -2;
			buf_deinit(&hdr);
		} else {
			struct buf raw = BUF_INIT(0);
			rc = read_range(msg, pr->sb.range.off, pr->sb.range.len, &raw);
			if (rc == 0 && it->sec->n_num == 0) {
				/* BINARY[]: the whole message has no transfer
				 * encoding of its own (RFC 3516 4.1 decodes a
				 * part's body); sent as is, literal8 if it
				 * holds NUL */
				struct mime_wire w;
				mime_wire_init(&w, 0, 0, UINT64_MAX);
				w.nul_0x80 = false;
				pr->data.max = IMAP_FETCH_MAX_MEM;
				rc = mime_wire_feed(&w, raw.data, raw.len, &pr->data) < 0 ? -2 : 0;
				pr->literal8 = pr->data.len &&
					       memchr(pr->data.data, 0, pr->data.len) != NULL;
			} else if (rc == 0) {
				pr->data.max = IMAP_FETCH_MAX_MEM;
				int d = mime_binary_decode(&m->parts[pr->sb.part], raw.data, raw.len,
							   &pr->data);
				if (d == -2) {
					/* RFC 3516 4.3 */
					*error_r = "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding";
					buf_deinit(&raw);
					goto fail;
				}
				if (d == -3) {
					*error_r = "[PARSE] Damaged Content-Transfer-Encoding";
					buf_deinit(&raw);
					goto fail;
				}
				rc = d < 0 ? -2 : 0;
				pr->literal8 = mime_binary_is_literal8(&m->parts[pr->sb.part],
								       pr->data.data, pr->data.len);
			}
			buf_deinit(&raw);
		}
		if (rc == -1) {
			*error_r = "[SERVERBUG] The message cannot be read";
			goto fail;
		}
		if (rc < 0) {
			*error_r = "[LIMIT] The requested part is too large";
			goto fail;
		}
		pr->in_mem = true;
	}
	return 0;
fail:
	prep_free(r);
	return -1;
}

void imap_fetch_render_end(struct imap_fetch_render *r)
{
	prep_free(r);
	free(r->chunk_);
	r->chunk_ = NULL;
}

/* ---- render -------------------------------------------------------------- */

static uint64_t window_len(uint64_t total, uint64_t po, uint64_t pn)
{
	if (po >= total)
		return 0;
	uint64_t left = total - po;
	return pn < left ? pn : left;
}

/* Appends the value of a non-streamed item. Returns 1 if a stream starts. */
static int render_item(struct imap_fetch_render *r, size_t i, struct buf *out)
{
	const struct imap_fetch_plan *p = r->plan_;
	const struct item *it = &p->items[i];
	struct prep *pr = r->prep_ ? &r->prep_->v[i] : NULL;
	struct imap_msg *msg = r->msg_;
	buf_xappend(out, it->label, strlen(it->label));
	buf_xappend(out, " ", 1);
	switch (it->kind) {
	case IT_FLAGS:
		imap_fetch_write_flags(msg, p->rev2, out);
		return 0;
	case IT_INTERNALDATE:
		imap_fetch_write_internaldate(msg->internaldate, msg->tz_min, out);
		return 0;
	case IT_RFC822_SIZE:
		buf_xprintf(out, "%llu", (unsigned long long)msg->wire_size);
		return 0;
	case IT_UID:
		buf_xprintf(out, "%u", msg->uid);
		return 0;
	case IT_MODSEQ:
		buf_xprintf(out, "(%llu)", (unsigned long long)msg->modseq);
		return 0;
	case IT_ENVELOPE:
	case IT_BODY:
	case IT_BODYSTRUCTURE: {
		const char *c = it->kind == IT_ENVELOPE ? msg->envelope
			      : it->kind == IT_BODY   ? msg->body
						      : msg->bodystructure;
		if (c) {
			buf_xappend(out, c, strlen(c));
			return 0;
		}
		const struct mime_message *m = msg->tree_;
		ASSERT(m);
		int rc = it->kind == IT_ENVELOPE
				 ? mime_imap_envelope(m, 0, out)
				 : mime_imap_bodystructure(m, 0, it->kind == IT_BODYSTRUCTURE, out);
		if (rc < 0 && it->kind == IT_ENVELOPE)
			buf_xappend(out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)", 41);
		return 0;
	}
	case IT_BINARY_SIZE:
		ASSERT(pr != NULL);
		buf_xprintf(out, "%zu", pr->sb.missing ? (size_t)0 : pr->data.len);
		return 0;
	case IT_BINARY:
	case IT_SECTION:
		break;
	}
	ASSERT(pr != NULL);
	if (pr->sb.missing || pr->in_mem) {
		size_t tot = pr->sb.missing ? 0 : pr->data.len;
		uint64_t wl = window_len(tot, it->po, it->pn);
		imap_quote_literal_header(out, wl, it->kind == IT_BINARY && pr->literal8);
		if (wl)
			buf_xappend(out, pr->data.data + it->po, (size_t)wl);
		return 0;
	}
	/* stream the range through mime_wire */
	uint64_t wl = window_len(pr->sb.range.wlen, it->po, it->pn);
	imap_quote_literal_header(out, wl, false);
	if (!wl)
		return 0;
	r->streaming_ = true;
	r->rpos_ = pr->sb.range.off;
	r->rend_ = pr->sb.range.off + pr->sb.range.len;
	r->lit_left_ = wl;
	if (it->po > 0 && pr->sb.range.wlen == pr->sb.range.len) {
		/* no bare LF in the range: wire offsets are physical ones, so
		 * start reading at the window; every LF there follows a CR,
		 * so one at the window start must not become CRLF */
		r->rpos_ += it->po;
		mime_wire_init(&r->wire_, it->po, it->po, it->pn);
		r->wire_.prev_cr = true;
	} else {
		mime_wire_init(&r->wire_, 0, it->po, it->pn);
	}
	if (!r->chunk_)
		r->chunk_ = xmalloc(IMAP_FETCH_CHUNK);
	return 1;
}

/* Streams until the literal is complete (0), out reaches high_water (1),
 * or the file fails us (-1). */
static int stream(struct imap_fetch_render *r, struct buf *out, size_t high_water)
{
	while (r->lit_left_) {
		if (out->len >= high_water)
			return 1;
		uint64_t left = r->rend_ - r->rpos_;
		if (!left)
			return -1; /* file shorter than the index said */
		size_t k = left < IMAP_FETCH_CHUNK ? (size_t)left : IMAP_FETCH_CHUNK;
		/* never produce more than the literal owes (2k wire bytes max) */
		if (imap_msg_pread(r->msg_, r->rpos_, k, r->chunk_) < 0)
			return -1;
		r->rpos_ += k;
		size_t before = out->len;
		int rc = mime_wire_feed(&r->wire_, r->chunk_, k, out);
		if (rc < 0)
			return -1;
		size_t got = out->len - before;
		if (got > r->lit_left_)
			return -1; /* our bug or a changed file: cannot recover */
		r->lit_left_ -= got;
		if (rc == 0 && r->lit_left_)
			return -1;
	}
	r->streaming_ = false;
	return 0;
}

static int render_loop(struct imap_fetch_render *r, struct buf *out, size_t high_water);

int imap_fetch_render(struct imap_fetch_render *r, struct buf *out, size_t high_water)
{
	/* our output is bounded by high_water, not by out's cap: the mime
	 * writers honour max, so lift it while they run */
	size_t save_max = out->max;
	out->max = 0;
	int rc = render_loop(r, out, high_water);
	out->max = save_max;
	return rc;
}

static int render_loop(struct imap_fetch_render *r, struct buf *out, size_t high_water)
{
	const struct imap_fetch_plan *p = r->plan_;
	if (r->phase_ == 2)
		return 0;
	if (r->phase_ == 0) {
		buf_xprintf(out, "* %u FETCH (", r->msg_->seq);
		r->phase_ = 1;
	}
	for (;;) {
		if (r->streaming_) {
			int rc = stream(r, out, high_water);
			if (rc != 0)
				return rc;
			r->item_++;
		}
		if (out->len >= high_water && r->item_ <= p->n)
			return 1;
		if (r->item_ < p->n) {
			if (r->item_ > 0)
				buf_xappend(out, " ", 1);
			if (render_item(r, r->item_, out) == 0)
				r->item_++;
			continue;
		}
		if (r->item_ == p->n) {
			if (r->add_flags_) {
				if (p->n)
					buf_xappend(out, " ", 1);
				buf_xappend(out, "FLAGS ", 6);
				imap_fetch_write_flags(r->msg_, p->rev2, out);
				if (p->condstore && !p->has_modseq)
					buf_xprintf(out, " MODSEQ (%llu)",
						    (unsigned long long)r->msg_->modseq);
			}
			buf_xappend(out, ")\r\n", 3);
			r->item_++;
			r->phase_ = 2;
			return 0;
		}
		return 0;
	}
}
