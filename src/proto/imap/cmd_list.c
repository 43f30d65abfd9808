/* SPDX-License-Identifier: MIT */
/* LIST (RFC 9051 6.3.9) with LIST-EXTENDED (RFC 5258: selection options
 * SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE; return options CHILDREN,
 * SUBSCRIBED, SPECIAL-USE, STATUS of RFC 5819 LIST-STATUS), several
 * patterns, CHILDINFO; and LSUB (RFC 3501 6.3.9). The app lists every
 * mailbox once (ops->list + imap_server_list_add); the matching is here.
 * Children and special-use attributes are always sent (RFC 5258 4, RFC
 * 6154 2 allow it). */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_utf7.h"

#define LIST_MAX_PATTERNS 32

enum {
	SEL_SUBSCRIBED = 1 << 0,
	SEL_REMOTE = 1 << 1,
	SEL_RECURSIVE = 1 << 2,
	SEL_SPECIAL = 1 << 3,
	RET_CHILDREN = 1 << 4,
	RET_SUBSCRIBED = 1 << 5,
	RET_SPECIAL = 1 << 6,
	RET_STATUS = 1 << 7,
	LIST_LSUB = 1 << 8,
};

struct list_state {
	unsigned opts;
	unsigned status_items;
	char *pats[LIST_MAX_PATTERNS];
	size_t n_pats;
	size_t cursor; /* LIST-STATUS: next entry to ask STATUS for */
	bool *emit;    /* per entry: matched */
	bool *childinfo;
};

static void list_state_free(void *p)
{
	struct list_state *ls = p;
	for (size_t i = 0; i < ls->n_pats; i++)
		free(ls->pats[i]);
	free(ls->emit);
	free(ls->childinfo);
	free(ls);
}

void imap_server_list_add(struct imap_server *s, const struct imap_list_entry *e)
{
	if (!e->name || s->n_list >= 1000000)
		return;
	if (s->n_list == s->cap_list) {
		s->cap_list = s->cap_list ? s->cap_list * 2 : 32;
		s->list = xrealloc(s->list, s->cap_list * sizeof *s->list);
	}
	struct imap_list_item *it = &s->list[s->n_list++];
	it->name = xstrdup(e->name);
	it->attrs = e->attrs;
	it->special = e->special;
}

static bool matches(const struct list_state *ls, const char *name)
{
	size_t nn = strlen(name);
	for (size_t i = 0; i < ls->n_pats; i++) {
		const char *p = ls->pats[i];
		size_t pn = strlen(p);
		/* INBOX is case-insensitive (RFC 9051 5.1) */
		if (nn >= 5 && memcmp(name, "INBOX", 5) == 0 && pn >= 5 &&
		    ascii_strncasecmp(p, "INBOX", 5) == 0) {
			if (imap_list_match(p + 5, pn - 5, name + 5, nn - 5))
				return true;
			continue;
		}
		if (imap_list_match(p, pn, name, nn))
			return true;
	}
	return false;
}

static const char *const special_names[] = { NULL, "\\Drafts", "\\Sent", "\\Trash", "\\Junk",
					      "\\Archive" };

static void write_entry(struct imap_server *s, struct list_state *ls, size_t i)
{
	const struct imap_list_item *e = &s->list[i];
	bool lsub = ls->opts & LIST_LSUB;
	const char *sp = "";
	buf_xprintf(&s->out, "* %s (", lsub ? "LSUB" : "LIST");
#define ATTR(x)                                                                                    \
	do {                                                                                       \
		buf_xprintf(&s->out, "%s%s", sp, x);                                               \
		sp = " ";                                                                          \
	} while (0)
	if (e->attrs & IMAP_MBA_NONEXISTENT)
		ATTR(lsub ? "\\Noselect" : "\\NonExistent");
	else if (e->attrs & IMAP_MBA_NOSELECT)
		ATTR("\\Noselect");
	if (!lsub) {
		if (e->attrs & IMAP_MBA_HASCHILDREN)
			ATTR("\\HasChildren");
		else if (e->attrs & IMAP_MBA_HASNOCHILDREN)
			ATTR("\\HasNoChildren");
		if ((ls->opts & (RET_SUBSCRIBED | SEL_SUBSCRIBED)) &&
		    (e->attrs & IMAP_MBA_SUBSCRIBED))
			ATTR("\\Subscribed");
		if (e->special > IMAP_SPECIAL_NONE && e->special <= IMAP_SPECIAL_ARCHIVE)
			ATTR(special_names[e->special]);
	}
#undef ATTR
	buf_xprintf(&s->out, ") \"/\" ");
	imap_write_mailbox(s, &s->out, e->name);
	if (ls->childinfo && ls->childinfo[i])
		buf_xprintf(&s->out, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
	buf_xappend(&s->out, "\r\n", 2);
}

static void list_next(struct imap_server *s);

static void list_status_done(struct imap_server *s, enum imap_verdict v)
{
	struct list_state *ls = s->cmd_state;
	const struct imap_list_item *e = &s->list[ls->cursor];
	if (v == IMAP_OK) {
		buf_xprintf(&s->out, "* STATUS ");
		imap_write_mailbox(s, &s->out, e->name);
		buf_xappend(&s->out, " ", 1);
		imap_status_write(&s->out, ls->status_items, &s->st_res);
		buf_xappend(&s->out, "\r\n", 2);
	}
	/* RFC 5819: a mailbox whose status cannot be had is just listed */
	s->reply_set = false;
	ls->cursor++;
	list_next(s);
}

/* Emit entries from the cursor on; with STATUS, ask for each selectable one. */
static void list_next(struct imap_server *s)
{
	struct list_state *ls = s->cmd_state;
	while (ls->cursor < s->n_list) {
		size_t i = ls->cursor;
		if (!ls->emit[i]) {
			ls->cursor++;
			continue;
		}
		write_entry(s, ls, i);
		const struct imap_list_item *e = &s->list[i];
		if ((ls->opts & RET_STATUS) && s->ops->status &&
		    !(e->attrs & (IMAP_MBA_NOSELECT | IMAP_MBA_NONEXISTENT))) {
			ls->emit[i] = false;
			memset(&s->st_res, 0, sizeof s->st_res);
			imap_verdict(s, s->ops->status(s->ctx, s, e->name, &s->st_res),
				     list_status_done);
			return;
		}
		ls->cursor++;
	}
	imap_tagged(s, "OK", NULL, "%s completed", ls->opts & LIST_LSUB ? "LSUB" : "LIST");
}

static void list_done(struct imap_server *s, enum imap_verdict v)
{
	struct list_state *ls = s->cmd_state;
	if (v != IMAP_OK) {
		imap_no_app(s, "SERVERBUG", "LIST failed");
		return;
	}
	ls->emit = xcalloc(s->n_list ? s->n_list : 1, sizeof *ls->emit);
	bool sub_only = ls->opts & (SEL_SUBSCRIBED | LIST_LSUB);
	for (size_t i = 0; i < s->n_list; i++) {
		const struct imap_list_item *e = &s->list[i];
		if (!matches(ls, e->name))
			continue;
		if (sub_only && !(e->attrs & IMAP_MBA_SUBSCRIBED))
			continue;
		if (!sub_only && (e->attrs & IMAP_MBA_NONEXISTENT))
			continue;
		if ((ls->opts & SEL_SPECIAL) && e->special == IMAP_SPECIAL_NONE)
			continue;
		ls->emit[i] = true;
	}
	if ((ls->opts & SEL_RECURSIVE) && (ls->opts & SEL_SUBSCRIBED)) {
		/* RFC 5258 3.5: a matching parent that is not itself subscribed
		 * but has a subscribed descendant gets CHILDINFO */
		ls->childinfo = xcalloc(s->n_list ? s->n_list : 1, sizeof *ls->childinfo);
		for (size_t i = 0; i < s->n_list; i++) {
			const struct imap_list_item *e = &s->list[i];
			if (ls->emit[i] || !matches(ls, e->name))
				continue;
			size_t nl = strlen(e->name);
			for (size_t j = 0; j < s->n_list; j++) {
				const struct imap_list_item *c = &s->list[j];
				if ((c->attrs & IMAP_MBA_SUBSCRIBED) &&
				    strncmp(c->name, e->name, nl) == 0 && c->name[nl] == '/') {
					ls->emit[i] = ls->childinfo[i] = true;
					break;
				}
			}
		}
	}
	ls->cursor = 0;
	list_next(s);
}

/* Pattern in client form -> UTF-8 (wildcards are plain ASCII). */
static char *pattern(struct imap_server *s, const char *ref, size_t rl, const char *p, size_t pl)
{
	struct buf b;
	buf_init(&b, 2048);
	if (s->utf8) {
		if (!imap_utf8_valid(ref, rl) || !imap_utf8_valid(p, pl) ||
		    buf_append(&b, ref, rl) < 0 || buf_append(&b, p, pl) < 0)
			goto bad;
	} else if (imap_utf7_to_utf8(ref, rl, &b) < 0 || imap_utf7_to_utf8(p, pl, &b) < 0) {
		goto bad;
	}
	char *r = xstrndup((const char *)b.data, b.len);
	buf_deinit(&b);
	return r;
bad:
	buf_deinit(&b);
	return NULL;
}

static bool opt_list(const struct imap_arg *a, unsigned *opts, unsigned *items, bool ret)
{
	const struct imap_arg *l;
	size_t n;
	if (!imap_arg_get_list(a, &l, &n))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!ret) {
			if (imap_arg_atom_equals(&l[i], "SUBSCRIBED"))
				*opts |= SEL_SUBSCRIBED;
			else if (imap_arg_atom_equals(&l[i], "REMOTE"))
				*opts |= SEL_REMOTE;
			else if (imap_arg_atom_equals(&l[i], "RECURSIVEMATCH"))
				*opts |= SEL_RECURSIVE;
			else if (imap_arg_atom_equals(&l[i], "SPECIAL-USE"))
				*opts |= SEL_SPECIAL;
			else
				return false;
			continue;
		}
		if (imap_arg_atom_equals(&l[i], "CHILDREN")) {
			*opts |= RET_CHILDREN;
		} else if (imap_arg_atom_equals(&l[i], "SUBSCRIBED")) {
			*opts |= RET_SUBSCRIBED;
		} else if (imap_arg_atom_equals(&l[i], "SPECIAL-USE")) {
			*opts |= RET_SPECIAL;
		} else if (imap_arg_atom_equals(&l[i], "STATUS") && i + 1 < n) {
			const struct imap_arg *sl;
			size_t sn;
			if (!imap_arg_get_list(&l[++i], &sl, &sn) || !imap_status_items(sl, sn, items))
				return false;
			*opts |= RET_STATUS;
		} else {
			return false;
		}
	}
	return true;
}

static void do_list(struct imap_server *s, const struct imap_arg *a, size_t n, bool lsub)
{
	struct list_state *ls = xcalloc(1, sizeof *ls);
	s->cmd_state = ls;
	s->cmd_free = list_state_free;
	ls->opts = lsub ? LIST_LSUB : 0;
	size_t i = 0;
	bool extended = false;
	if (!lsub && i < n && a[i].type == IMAP_ARG_LIST) {
		if (!opt_list(&a[i], &ls->opts, &ls->status_items, false))
			goto bad;
		extended = true;
		i++;
	}
	const char *ref, *pat;
	size_t rl, pl;
	if (i + 2 > n || !imap_arg_get_astring(&a[i], &ref, &rl))
		goto bad;
	i++;
	const struct imap_arg *pats = &a[i];
	size_t np = 1;
	if (!lsub && a[i].type == IMAP_ARG_LIST) {
		if (!imap_arg_get_list(&a[i], &pats, &np) || np == 0 || np > LIST_MAX_PATTERNS)
			goto bad;
		extended = true;
	}
	i++;
	if (!lsub && i < n) {
		if (i + 2 != n || !imap_arg_atom_equals(&a[i], "RETURN") ||
		    !opt_list(&a[i + 1], &ls->opts, &ls->status_items, true))
			goto bad;
		extended = true;
	} else if (i != n) {
		goto bad;
	}
	/* RFC 5258 3.1: RECURSIVEMATCH alone is an error */
	if ((ls->opts & SEL_RECURSIVE) && !(ls->opts & (SEL_SUBSCRIBED | SEL_SPECIAL)))
		goto bad;
	for (size_t k = 0; k < np; k++) {
		if (!imap_arg_get_astring(&pats[k], &pat, &pl))
			goto bad;
		if (pl == 0 && !extended && !lsub) {
			/* RFC 9051 6.3.9: the hierarchy delimiter and root */
			imap_untagged(s, "LIST (\\Noselect) \"/\" \"\"");
			imap_tagged(s, "OK", NULL, "LIST completed");
			return;
		}
		char *p = pattern(s, ref, rl, pat, pl);
		if (!p) {
			/* a name that cannot exist matches nothing */
			continue;
		}
		ls->pats[ls->n_pats++] = p;
	}
	for (size_t k = 0; k < s->n_list; k++)
		free(s->list[k].name);
	s->n_list = 0;
	imap_verdict(s, s->ops->list(s->ctx, s), list_done);
	return;
bad:
	imap_bad(s, "Invalid %s arguments", lsub ? "LSUB" : "LIST");
}

void imap_cmd_list(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_list(s, args, n, false);
}

void imap_cmd_lsub(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_list(s, args, n, true);
}
