/* SPDX-License-Identifier: MIT */
/* SEARCH: key compiler, cost-ordered evaluator and (E)SEARCH answers
 * (imap_search.h). */
#include "proto/imap/imap_search.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/imap_view.h"
#include "mime/message.h"
#include "proto/imap/imap_quote.h"

enum node_kind {
	N_ALL,
	N_AND,
	N_OR,
	N_NOT,
	N_FLAG,       /* mask set (all bits of mask present) */
	N_KEYWORD,
	N_RECENT,
	N_NEW,        /* \Recent and not \Seen */
	N_SEQ,
	N_UID,
	N_LARGER,
	N_SMALLER,
	N_BEFORE,     /* INTERNALDATE day < */
	N_ON,
	N_SINCE,      /* >= */
	N_SENTBEFORE,
	N_SENTON,
	N_SENTSINCE,
	N_MODSEQ,
	N_HEADER,     /* field name + folded value */
	N_BODY,
	N_TEXT,
};

enum cost { C_META = 0, C_HEADER = 1, C_BODY = 2 };

struct node {
	enum node_kind kind;
	enum cost cost;
	struct node **kids;
	size_t n_kids;
	unsigned mask;
	int64_t day;
	uint64_t num;
	char *field;   /* HEADER field name; KEYWORD */
	struct buf needle; /* folded */
	struct imap_seqset set;
};

enum ret_opt { R_MIN = 1, R_MAX = 2, R_ALL = 4, R_COUNT = 8, R_SAVE = 16 };

struct imap_search {
	struct node *root;
	bool uid, esearch, modseq_key;
	unsigned ret;
	unsigned n_keys;
	bool needs_file;
};

struct pctx {
	const struct imap_arg *a;
	size_t n, i;
	const struct imap_search_opts *o;
	struct imap_search *prog;
	const char *err;
};

static void node_free(struct node *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->n_kids; i++)
		node_free(x->kids[i]);
	free(x->kids);
	free(x->field);
	buf_deinit(&x->needle);
	imap_seqset_free(&x->set);
	free(x);
}

static struct node *node_new(enum node_kind k)
{
	struct node *x = xcalloc(1, sizeof *x);
	x->kind = k;
	return x;
}

static void node_add(struct node *p, struct node *k)
{
	p->kids = xrealloc(p->kids, (p->n_kids + 1) * sizeof *p->kids);
	p->kids[p->n_kids++] = k;
}

/* RFC 9051 9 date = date-text / DQUOTE date-text DQUOTE; date-text =
 * date-day "-" date-month "-" date-year. Days since the epoch. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int parse_date(const char *s, size_t n, int64_t *day_r)
{
	static const char mon[12][4] = { "jan", "feb", "mar", "apr", "may", "jun",
					 "jul", "aug", "sep", "oct", "nov", "dec" };
	size_t i = 0;
	unsigned d = 0, y = 0, m;
	while (i < n && i < 2 && s[i] >= '0' && s[i] <= '9')
		d = d * 10 + (unsigned)(s[i++] - '0');
	if (i == 0 || i >= n || s[i] != '-' || d < 1 || d > 31)
		return -1;
	i++;
	if (n - i != 8 || s[i + 3] != '-')
		return -1;
	for (m = 0; m < 12; m++)
		if (ascii_strncasecmp(s + i, mon[m], 3) == 0)
			break;
	if (m == 12)
		return -1;
	i += 4;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		y = y * 10 + (unsigned)(s[i] - '0');
	}
	*day_r = days_from_civil(y, m + 1, d);
	return 0;
}

static int64_t day_of(int64_t t, int tz_min)
{
	int64_t l = t + (int64_t)tz_min * 60;
	return l >= 0 ? l / 86400 : -((-l + 86399) / 86400);
}

static const struct imap_arg *next_arg(struct pctx *c)
{
	if (c->i >= c->n)
		return NULL;
	return &c->a[c->i++];
}

static int get_str(struct pctx *c, const char **s, size_t *n)
{
	const struct imap_arg *a = next_arg(c);
	if (!a || !imap_arg_get_astring(a, s, n)) {
		c->err = "Missing or invalid SEARCH string";
		return -1;
	}
	return 0;
}

static struct node *str_node(struct pctx *c, enum node_kind k, const char *field)
{
	const char *s;
	size_t n;
	if (get_str(c, &s, &n) < 0)
		return NULL;
	struct node *x = node_new(k);
	x->cost = k == N_HEADER ? C_HEADER : C_BODY;
	if (field)
		x->field = xstrdup(field);
	mime_search_fold((const uint8_t *)s, n, &x->needle);
	c->prog->needs_file = true;
	return x;
}

static struct node *date_node(struct pctx *c, enum node_kind k)
{
	const char *s;
	size_t n;
	int64_t day;
	if (get_str(c, &s, &n) < 0 || parse_date(s, n, &day) < 0) {
		c->err = "Invalid SEARCH date";
		return NULL;
	}
	struct node *x = node_new(k);
	x->day = day;
	if (k == N_SENTBEFORE || k == N_SENTON || k == N_SENTSINCE) {
		x->cost = C_HEADER;
		c->prog->needs_file = true;
	}
	return x;
}

static struct node *num_node(struct pctx *c, enum node_kind k)
{
	uint64_t v;
	const struct imap_arg *a = next_arg(c);
	if (!a || !imap_arg_get_number(a, &v)) {
		c->err = "Invalid SEARCH number";
		return NULL;
	}
	struct node *x = node_new(k);
	x->num = v;
	return x;
}

static struct node *set_node(struct pctx *c, enum node_kind k, const char *s, size_t n)
{
	struct node *x = node_new(k);
	bool uid = k == N_UID;
	static const struct imap_seqset empty;
	const struct imap_seqset *saved = uid ? c->o->saved_uid : c->o->saved_seq;
	if (!saved)
		saved = &empty;
	const char *err;
	if (imap_seqset_parse(&x->set, s, n, uid ? c->o->max_uid : c->o->n_msgs,
			      uid ? 0 : IMAP_SEQSET_SEQ, saved, 0, &err) < 0) {
		/* "*" in an empty mailbox matches nothing rather than failing */
		if ((uid ? c->o->max_uid : c->o->n_msgs) == 0 && imap_seqset_syntax_ok(s, n)) {
			imap_seqset_clear(&x->set);
			return x;
		}
		c->err = err;
		node_free(x);
		return NULL;
	}
	return x;
}

static struct node *parse_key(struct pctx *c, unsigned depth);

static struct node *parse_keys_into(struct pctx *c, struct node *and, unsigned depth,
				    bool until_end)
{
	do {
		struct node *k = parse_key(c, depth);
		if (!k) {
			node_free(and);
			return NULL;
		}
		node_add(and, k);
	} while (until_end && c->i < c->n);
	return and;
}

static const struct {
	const char *name;
	unsigned mask;
	bool neg;
} flag_keys[] = {
	{ "ANSWERED", IMAP_MSGF_ANSWERED, false }, { "DELETED", IMAP_MSGF_DELETED, false },
	{ "DRAFT", IMAP_MSGF_DRAFT, false },       { "FLAGGED", IMAP_MSGF_FLAGGED, false },
	{ "SEEN", IMAP_MSGF_SEEN, false },         { "UNANSWERED", IMAP_MSGF_ANSWERED, true },
	{ "UNDELETED", IMAP_MSGF_DELETED, true },  { "UNDRAFT", IMAP_MSGF_DRAFT, true },
	{ "UNFLAGGED", IMAP_MSGF_FLAGGED, true },  { "UNSEEN", IMAP_MSGF_SEEN, true },
};

static struct node *negate(struct node *x)
{
	if (!x)
		return NULL;
	struct node *n = node_new(N_NOT);
	node_add(n, x);
	n->cost = x->cost;
	return n;
}

static struct node *keyword_node(struct pctx *c, bool neg)
{
	const char *s;
	size_t n;
	const struct imap_arg *a = next_arg(c);
	if (!a || !imap_arg_get_atom(a, &s, &n)) {
		c->err = "Invalid SEARCH keyword";
		return NULL;
	}
	struct node *x = NULL;
	if (n && s[0] == '\\') {
		/* a system flag spelled as a keyword: Dovecot matches the flag */
		static const struct {
			const char *name;
			unsigned bit;
		} sys[] = { { "\\Seen", IMAP_MSGF_SEEN },       { "\\Answered", IMAP_MSGF_ANSWERED },
			    { "\\Flagged", IMAP_MSGF_FLAGGED }, { "\\Deleted", IMAP_MSGF_DELETED },
			    { "\\Draft", IMAP_MSGF_DRAFT } };
		for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
			if (strlen(sys[i].name) == n && ascii_strncasecmp(s, sys[i].name, n) == 0) {
				x = node_new(N_FLAG);
				x->mask = sys[i].bit;
			}
		if (!x) {
			x = node_new(N_NOT); /* unknown system flag: never set */
			node_add(x, node_new(N_ALL));
		}
	} else {
		x = node_new(N_KEYWORD);
		x->field = xstrndup(s, n);
	}
	return neg ? negate(x) : x;
}

static struct node *parse_key(struct pctx *c, unsigned depth)
{
	if (depth > IMAP_SEARCH_MAX_DEPTH || ++c->prog->n_keys > IMAP_SEARCH_MAX_KEYS) {
		c->err = "SEARCH too complex";
		return NULL;
	}
	const struct imap_arg *a = next_arg(c);
	if (!a) {
		c->err = "Missing SEARCH key";
		return NULL;
	}
	const struct imap_arg *l;
	size_t ln;
	if (imap_arg_get_list(a, &l, &ln)) {
		if (ln == 0) {
			c->err = "Empty SEARCH group";
			return NULL;
		}
		struct pctx sub = *c;
		sub.a = l;
		sub.n = ln;
		sub.i = 0;
		struct node *and = parse_keys_into(&sub, node_new(N_AND), depth + 1, true);
		c->err = sub.err;
		return and;
	}
	const char *s;
	size_t n;
	if (!imap_arg_get_atom(a, &s, &n)) {
		c->err = "Invalid SEARCH key";
		return NULL;
	}
	char w[16];
	if (n < sizeof w) {
		for (size_t i = 0; i < n; i++)
			w[i] = ascii_toupper(s[i]);
		w[n] = 0;
	} else {
		w[0] = 0;
	}
	for (size_t i = 0; i < sizeof flag_keys / sizeof flag_keys[0]; i++)
		if (strcmp(w, flag_keys[i].name) == 0) {
			struct node *x = node_new(N_FLAG);
			x->mask = flag_keys[i].mask;
			return flag_keys[i].neg ? negate(x) : x;
		}
	if (strcmp(w, "ALL") == 0)
		return node_new(N_ALL);
	if (strcmp(w, "RECENT") == 0)
		return node_new(N_RECENT);
	if (strcmp(w, "NEW") == 0)
		return node_new(N_NEW);
	if (strcmp(w, "OLD") == 0)
		return negate(node_new(N_RECENT));
	if (strcmp(w, "NOT") == 0)
		return negate(parse_key(c, depth + 1));
	if (strcmp(w, "OR") == 0) {
		struct node *x = node_new(N_OR);
		for (int k = 0; k < 2; k++) {
			struct node *y = parse_key(c, depth + 1);
			if (!y) {
				node_free(x);
				return NULL;
			}
			node_add(x, y);
		}
		return x;
	}
	if (strcmp(w, "KEYWORD") == 0)
		return keyword_node(c, false);
	if (strcmp(w, "UNKEYWORD") == 0)
		return keyword_node(c, true);
	if (strcmp(w, "LARGER") == 0)
		return num_node(c, N_LARGER);
	if (strcmp(w, "SMALLER") == 0)
		return num_node(c, N_SMALLER);
	if (strcmp(w, "BEFORE") == 0)
		return date_node(c, N_BEFORE);
	if (strcmp(w, "ON") == 0)
		return date_node(c, N_ON);
	if (strcmp(w, "SINCE") == 0)
		return date_node(c, N_SINCE);
	if (strcmp(w, "SENTBEFORE") == 0)
		return date_node(c, N_SENTBEFORE);
	if (strcmp(w, "SENTON") == 0)
		return date_node(c, N_SENTON);
	if (strcmp(w, "SENTSINCE") == 0)
		return date_node(c, N_SENTSINCE);
	static const char *const addr[] = { "FROM", "TO", "CC", "BCC", "SUBJECT" };
	for (size_t i = 0; i < sizeof addr / sizeof addr[0]; i++)
		if (strcmp(w, addr[i]) == 0)
			return str_node(c, N_HEADER, addr[i]);
	if (strcmp(w, "HEADER") == 0) {
		const char *f;
		size_t fn;
		if (get_str(c, &f, &fn) < 0)
			return NULL;
		if (fn == 0 || fn > 256 || memchr(f, ':', fn) || memchr(f, '\0', fn)) {
			c->err = "Invalid SEARCH header field name";
			return NULL;
		}
		char *field = xstrndup(f, fn);
		struct node *x = str_node(c, N_HEADER, field);
		free(field);
		return x;
	}
	if (strcmp(w, "BODY") == 0)
		return str_node(c, N_BODY, NULL);
	if (strcmp(w, "TEXT") == 0)
		return str_node(c, N_TEXT, NULL);
	if (strcmp(w, "UID") == 0) {
		const struct imap_arg *b = next_arg(c);
		const char *u;
		size_t un;
		if (!b || !imap_arg_get_atom(b, &u, &un) || !imap_seqset_syntax_ok(u, un)) {
			c->err = "Invalid UID set in SEARCH";
			return NULL;
		}
		return set_node(c, N_UID, u, un);
	}
	if (strcmp(w, "MODSEQ") == 0 && c->o->condstore) {
		/* RFC 7162 3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer */
		if (c->i + 2 < c->n + 0 && c->a[c->i].type != IMAP_ARG_NUMBER) {
			const char *en;
			size_t enl;
			if (!imap_arg_get_astring(&c->a[c->i], &en, &enl) ||
			    !(imap_arg_atom_equals(&c->a[c->i + 1], "priv") ||
			      imap_arg_atom_equals(&c->a[c->i + 1], "shared") ||
			      imap_arg_atom_equals(&c->a[c->i + 1], "all"))) {
				c->err = "Invalid MODSEQ entry";
				return NULL;
			}
			c->i += 2;
		}
		c->prog->modseq_key = true;
		return num_node(c, N_MODSEQ);
	}
	if (imap_seqset_syntax_ok(s, n))
		return set_node(c, N_SEQ, s, n);
	c->err = "Unknown SEARCH key";
	return NULL;
}

/* Sorts AND children by cost (stable) and computes costs bottom-up. */
static enum cost plan_costs(struct node *x)
{
	enum cost c = x->cost;
	for (size_t i = 0; i < x->n_kids; i++) {
		enum cost k = plan_costs(x->kids[i]);
		if (k > c)
			c = k;
	}
	x->cost = c;
	if (x->kind == N_AND || x->kind == N_OR) {
		for (size_t i = 1; i < x->n_kids; i++) {
			struct node *v = x->kids[i];
			size_t j = i;
			while (j > 0 && x->kids[j - 1]->cost > v->cost) {
				x->kids[j] = x->kids[j - 1];
				j--;
			}
			x->kids[j] = v;
		}
	}
	return c;
}

static int parse_return(struct pctx *c)
{
	const struct imap_arg *l;
	size_t ln;
	if (c->i >= c->n || !imap_arg_get_list(&c->a[c->i], &l, &ln)) {
		c->err = "Invalid RETURN options";
		return -1;
	}
	c->i++;
	unsigned r = 0;
	for (size_t i = 0; i < ln; i++) {
		static const struct {
			const char *name;
			unsigned bit;
		} opts[] = { { "MIN", R_MIN }, { "MAX", R_MAX }, { "ALL", R_ALL },
			     { "COUNT", R_COUNT }, { "SAVE", R_SAVE } };
		size_t k;
		for (k = 0; k < sizeof opts / sizeof opts[0]; k++)
			if (imap_arg_atom_equals(&l[i], opts[k].name))
				break;
		if (k == sizeof opts / sizeof opts[0]) {
			c->err = "Unknown RETURN option";
			return -1;
		}
		r |= opts[k].bit;
	}
	/* RFC 4731 3.1: "RETURN ()" is "RETURN (ALL)" */
	c->prog->ret = r ? r : R_ALL;
	c->prog->esearch = true;
	return 0;
}

int imap_search_parse(const struct imap_arg *args, size_t n_args, bool uid,
		      const struct imap_search_opts *opts, struct imap_search **prog_r,
		      const char **error_r)
{
	static const struct imap_search_opts defopts;
	struct pctx c = { .a = args, .n = n_args, .o = opts ? opts : &defopts };
	*prog_r = NULL;
	c.prog = xcalloc(1, sizeof *c.prog);
	c.prog->uid = uid;
	if (c.o->rev2) {
		c.prog->esearch = true; /* RFC 9051 6.4.4.1: ESEARCH, ALL by default */
		c.prog->ret = R_ALL;
	}
	if (c.n && imap_arg_atom_equals(&c.a[0], "RETURN")) {
		c.i = 1;
		if (parse_return(&c) < 0)
			goto bad;
	}
	if (c.i < c.n && imap_arg_atom_equals(&c.a[c.i], "CHARSET")) {
		const char *cs;
		size_t csn;
		c.i++;
		if (c.i >= c.n || !imap_arg_get_astring(&c.a[c.i], &cs, &csn)) {
			c.err = "Missing CHARSET";
			goto bad;
		}
		c.i++;
		if (!((csn == 5 && ascii_strncasecmp(cs, "UTF-8", 5) == 0) ||
		      (csn == 8 && ascii_strncasecmp(cs, "US-ASCII", 8) == 0))) {
			/* RFC 9051 6.4.4, 7.1 */
			*error_r = "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset";
			imap_search_free(&c.prog);
			return -2;
		}
	}
	if (c.i >= c.n) {
		c.err = "Missing SEARCH criteria";
		goto bad;
	}
	c.prog->root = parse_keys_into(&c, node_new(N_AND), 0, true);
	if (!c.prog->root)
		goto bad;
	plan_costs(c.prog->root);
	*prog_r = c.prog;
	return 0;
bad:
	*error_r = c.err ? c.err : "Invalid SEARCH";
	imap_search_free(&c.prog);
	return -1;
}

void imap_search_free(struct imap_search **pp)
{
	if (!*pp)
		return;
	node_free((*pp)->root);
	free(*pp);
	*pp = NULL;
}

bool imap_search_needs_file(const struct imap_search *prog)
{
	return prog->needs_file;
}

/* ---- evaluation ---------------------------------------------------------- */

struct ectx {
	struct imap_msg *msg;
	const struct mime_message *tree;
	bool tree_tried;
	bool hdr_done, hdr_ok;
	struct buf hdr;      /* raw header bytes of the message */
	bool text_done;
	struct buf hdr_text; /* decoded, folded "name: value\n" for TEXT */
	bool body_done;
	struct buf body;     /* decoded, folded text parts */
	bool date_done, date_ok;
	int64_t sent_day;
};

static const struct mime_message *tree(struct ectx *e)
{
	if (!e->tree_tried) {
		e->tree_tried = true;
		e->tree = imap_msg_tree(e->msg);
	}
	return e->tree;
}

static bool load_header(struct ectx *e)
{
	if (e->hdr_done)
		return e->hdr_ok;
	e->hdr_done = true;
	const struct mime_message *m = tree(e);
	if (!m || !m->n_parts)
		return false;
	uint64_t len = m->parts[0].header.len;
	if (len > IMAP_SEARCH_MAX_READ)
		len = IMAP_SEARCH_MAX_READ;
	void *p = buf_reserve(&e->hdr, (size_t)len + 1);
	if (!p || imap_msg_pread(e->msg, m->parts[0].header.off, (size_t)len, p) < 0)
		return false;
	buf_commit(&e->hdr, (size_t)len);
	e->hdr_ok = true;
	return true;
}

static bool contains(const struct buf *hay, const struct buf *needle)
{
	if (needle->len == 0)
		return true;
	if (!hay->len)
		return false;
	return memmem(hay->data, hay->len, needle->data, needle->len) != NULL;
}

static bool match_header(struct ectx *e, const struct node *x)
{
	if (!load_header(e))
		return false;
	size_t pos = 0, fl = strlen(x->field);
	const uint8_t *name, *val;
	size_t nl, vl;
	bool found = false;
	struct buf dec = BUF_INIT(0);
	while (!found && mime_header_next(e->hdr.data, e->hdr.len, &pos, &name, &nl, &val, &vl) == 1) {
		if (nl != fl || ascii_strncasecmp((const char *)name, x->field, fl) != 0)
			continue;
		if (x->needle.len == 0) {
			found = true; /* RFC 9051 6.4.4 HEADER with "" */
			break;
		}
		buf_clear(&dec);
		if (mime_search_header(val, vl, &dec) == 0 && contains(&dec, &x->needle))
			found = true;
	}
	buf_deinit(&dec);
	return found;
}

static bool load_body(struct ectx *e)
{
	if (e->body_done)
		return true;
	e->body_done = true;
	const struct mime_message *m = tree(e);
	if (!m)
		return false;
	uint64_t n = e->msg->size ? e->msg->size : m->size;
	if (n > IMAP_SEARCH_MAX_READ)
		n = IMAP_SEARCH_MAX_READ;
	struct buf raw = BUF_INIT(0);
	void *p = buf_reserve(&raw, (size_t)n + 1);
	if (p && imap_msg_pread(e->msg, 0, (size_t)n, p) == 0) {
		buf_commit(&raw, (size_t)n);
		e->body.max = IMAP_SEARCH_MAX_READ;
		if (mime_search_body(m, raw.data ? raw.data : (const uint8_t *)"", raw.len, &e->body) < 0)
			e->body.max = 0; /* capped: search what we have */
		e->body.max = 0;
	}
	buf_deinit(&raw);
	return true;
}

static bool load_hdr_text(struct ectx *e)
{
	if (e->text_done)
		return true;
	e->text_done = true;
	if (!load_header(e))
		return false;
	size_t pos = 0;
	const uint8_t *name, *val;
	size_t nl, vl;
	while (mime_header_next(e->hdr.data, e->hdr.len, &pos, &name, &nl, &val, &vl) == 1) {
		mime_search_fold(name, nl, &e->hdr_text);
		buf_xappend(&e->hdr_text, ": ", 2);
		if (mime_search_header(val, vl, &e->hdr_text) < 0)
			break;
		buf_xappend(&e->hdr_text, "\n", 1);
	}
	return true;
}

static bool sent_day(struct ectx *e, int64_t *day)
{
	if (!e->date_done) {
		e->date_done = true;
		if (load_header(e)) {
			size_t pos = 0;
			const uint8_t *name, *val;
			size_t nl, vl;
			while (mime_header_next(e->hdr.data, e->hdr.len, &pos, &name, &nl, &val, &vl) == 1) {
				if (nl != 4 || ascii_strncasecmp((const char *)name, "Date", 4) != 0)
					continue;
				struct mime_date d;
				if (mime_date_parse(val, vl, &d) == 0) {
					e->sent_day = day_of(d.t, d.tz_minutes);
					e->date_ok = true;
				}
				break; /* the first Date field counts */
			}
		}
	}
	*day = e->sent_day;
	return e->date_ok;
}

static bool eval(struct ectx *e, const struct node *x)
{
	const struct imap_msg *m = e->msg;
	int64_t d;
	switch (x->kind) {
	case N_ALL:
		return true;
	case N_AND:
		for (size_t i = 0; i < x->n_kids; i++)
			if (!eval(e, x->kids[i]))
				return false;
		return true;
	case N_OR:
		for (size_t i = 0; i < x->n_kids; i++)
			if (eval(e, x->kids[i]))
				return true;
		return false;
	case N_NOT:
		return !eval(e, x->kids[0]);
	case N_FLAG:
		return (m->flags & x->mask) == x->mask;
	case N_KEYWORD:
		return imap_msg_has_keyword(m, x->field, strlen(x->field));
	case N_RECENT:
		return m->recent;
	case N_NEW:
		return m->recent && !(m->flags & IMAP_MSGF_SEEN);
	case N_SEQ:
		return imap_seqset_contains(&x->set, m->seq);
	case N_UID:
		return imap_seqset_contains(&x->set, m->uid);
	case N_LARGER:
		return m->wire_size > x->num;
	case N_SMALLER:
		return m->wire_size < x->num;
	case N_BEFORE:
		return day_of(m->internaldate, m->tz_min) < x->day;
	case N_ON:
		return day_of(m->internaldate, m->tz_min) == x->day;
	case N_SINCE:
		return day_of(m->internaldate, m->tz_min) >= x->day;
	case N_SENTBEFORE:
		return sent_day(e, &d) && d < x->day;
	case N_SENTON:
		return sent_day(e, &d) && d == x->day;
	case N_SENTSINCE:
		return sent_day(e, &d) && d >= x->day;
	case N_MODSEQ:
		return m->modseq >= x->num;
	case N_HEADER:
		return match_header(e, x);
	case N_BODY:
		return load_body(e) && contains(&e->body, &x->needle);
	case N_TEXT:
		if (load_hdr_text(e) && contains(&e->hdr_text, &x->needle))
			return true;
		return load_body(e) && contains(&e->body, &x->needle);
	}
	return false;
}

int imap_search_match(const struct imap_search *prog, struct imap_msg *msg)
{
	struct ectx e;
	memset(&e, 0, sizeof e);
	e.msg = msg;
	bool r = eval(&e, prog->root);
	buf_deinit(&e.hdr);
	buf_deinit(&e.hdr_text);
	buf_deinit(&e.body);
	return r ? 1 : 0;
}

/* ---- results ------------------------------------------------------------- */

void imap_search_result_init(struct imap_search_result *r)
{
	memset(r, 0, sizeof *r);
	imap_seqset_init(&r->hits);
}

void imap_search_result_free(struct imap_search_result *r)
{
	imap_seqset_free(&r->hits);
}

void imap_search_result_add(const struct imap_search *prog, struct imap_search_result *r,
			    const struct imap_msg *msg)
{
	imap_seqset_add(&r->hits, prog->uid ? msg->uid : msg->seq);
	if (msg->modseq > r->max_modseq)
		r->max_modseq = msg->modseq;
}

bool imap_search_saves(const struct imap_search *prog)
{
	return (prog->ret & R_SAVE) != 0;
}

void imap_search_saved_set(const struct imap_search *prog, const struct imap_search_result *r,
			   struct imap_seqset *out)
{
	imap_seqset_clear(out);
	unsigned other = prog->ret & ~(unsigned)R_SAVE;
	if (other && !(other & (R_ALL | R_COUNT))) {
		if ((other & R_MIN) && imap_seqset_min(&r->hits))
			imap_seqset_add(out, imap_seqset_min(&r->hits));
		if ((other & R_MAX) && imap_seqset_max(&r->hits))
			imap_seqset_add(out, imap_seqset_max(&r->hits));
		return;
	}
	for (size_t i = 0; i < r->hits.n; i++)
		imap_seqset_add_range(out, r->hits.r[i].lo, r->hits.r[i].hi);
}

void imap_search_render(const struct imap_search *prog, const struct imap_search_result *r,
			const char *tag, struct buf *out)
{
	bool modseq = prog->modseq_key && r->hits.n;
	if (!prog->esearch) {
		/* RFC 3501 7.2.5 */
		buf_xappend(out, "* SEARCH", 8);
		struct imap_seqset_iter it;
		uint32_t v;
		imap_seqset_iter_init(&it, &r->hits);
		while (imap_seqset_iter_next(&it, &v))
			buf_xprintf(out, " %u", v);
		if (modseq)
			buf_xprintf(out, " (MODSEQ %llu)", (unsigned long long)r->max_modseq);
		buf_xappend(out, "\r\n", 2);
		return;
	}
	unsigned ret = prog->ret;
	if (ret == R_SAVE)
		return; /* RFC 5182 2.1: SAVE alone gives no ESEARCH */
	/* RFC 4731 3.1, RFC 9051 7.3.4 */
	buf_xappend(out, "* ESEARCH (TAG ", 15);
	imap_quote_string(out, tag, strlen(tag), 0);
	buf_xappend(out, ")", 1);
	if (prog->uid)
		buf_xappend(out, " UID", 4);
	if (r->hits.n) {
		if (ret & R_MIN)
			buf_xprintf(out, " MIN %u", imap_seqset_min(&r->hits));
		if (ret & R_MAX)
			buf_xprintf(out, " MAX %u", imap_seqset_max(&r->hits));
		if (ret & R_ALL) {
			buf_xappend(out, " ALL ", 5);
			imap_seqset_write(&r->hits, out);
		}
	}
	if (ret & R_COUNT)
		buf_xprintf(out, " COUNT %llu", (unsigned long long)imap_seqset_count(&r->hits));
	if (modseq)
		buf_xprintf(out, " MODSEQ %llu", (unsigned long long)r->max_modseq);
	buf_xappend(out, "\r\n", 2);
}
