/* SPDX-License-Identifier: MIT */
/* STORE argument parsing and FETCH FLAGS answers (imap_store.h). */
#include "proto/imap/imap_store.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_fetch.h"
#include "proto/imap/imap_seqset.h"

static int add_flag(struct imap_store_req *r, const struct imap_arg *a, const char **error_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} sys[] = { { "\\Answered", IMAP_MSGF_ANSWERED }, { "\\Flagged", IMAP_MSGF_FLAGGED },
		    { "\\Deleted", IMAP_MSGF_DELETED },   { "\\Seen", IMAP_MSGF_SEEN },
		    { "\\Draft", IMAP_MSGF_DRAFT } };
	const char *s;
	size_t n;
	if (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NUMBER) {
		*error_r = "Invalid flag";
		return -1;
	}
	if (!imap_arg_get_atom(a, &s, &n) || n == 0) {
		*error_r = "Invalid flag";
		return -1;
	}
	if (s[0] == '\\') {
		for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
			if (strlen(sys[i].name) == n && ascii_strncasecmp(s, sys[i].name, n) == 0) {
				r->flags |= sys[i].bit;
				return 0;
			}
		*error_r = n == 7 && ascii_strncasecmp(s, "\\Recent", 7) == 0
				   ? "\\Recent cannot be changed"
				   : "Invalid system flag";
		return -1;
	}
	/* flag-keyword = atom (RFC 9051 9): no atom-specials */
	for (size_t i = 0; i < n; i++)
		if (s[i] == '%' || s[i] == '*' || s[i] == ']' || s[i] == '\\' || s[i] == '[' ||
		    (unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) {
			*error_r = "Invalid keyword";
			return -1;
		}
	if (n > IMAP_STORE_MAX_KEYWORD) {
		*error_r = "Keyword too long";
		return -1;
	}
	for (size_t i = 0; i < r->n_keywords; i++)
		if (strlen(r->keywords[i]) == n && ascii_strncasecmp(r->keywords[i], s, n) == 0)
			return 0;
	if (r->n_keywords >= IMAP_STORE_MAX_KEYWORDS) {
		*error_r = "[LIMIT] Too many keywords";
		return -2;
	}
	r->keywords = xrealloc(r->keywords, (r->n_keywords + 1) * sizeof *r->keywords);
	r->keywords[r->n_keywords++] = xstrndup(s, n);
	return 0;
}

int imap_store_parse(const struct imap_arg *args, size_t n_args, const struct imap_store_opts *opts,
		     struct imap_store_req *r, const char **error_r)
{
	static const struct imap_store_opts defopts;
	const struct imap_store_opts *o = opts ? opts : &defopts;
	memset(r, 0, sizeof *r);
	r->condstore = o->condstore;
	size_t i = 0;
	const struct imap_arg *l;
	size_t ln;
	if (i < n_args && imap_arg_get_list(&args[i], &l, &ln)) {
		/* store-modifiers (RFC 4466 2.5, RFC 7162 3.1.3) */
		if (!o->condstore || ln != 2 || !imap_arg_atom_equals(&l[0], "UNCHANGEDSINCE") ||
		    !imap_arg_get_number(&l[1], &r->unchangedsince)) {
			*error_r = "Invalid STORE modifier";
			return -1;
		}
		r->has_unchangedsince = true;
		i++;
	}
	const char *s;
	size_t n;
	if (i >= n_args || !imap_arg_get_atom(&args[i], &s, &n)) {
		*error_r = "Missing STORE data item";
		return -1;
	}
	i++;
	size_t k = 0;
	if (n && (s[0] == '+' || s[0] == '-')) {
		r->op = s[0] == '+' ? IMAP_STORE_ADD : IMAP_STORE_REMOVE;
		k = 1;
	}
	if (n - k == 12 && ascii_strncasecmp(s + k, "FLAGS.SILENT", 12) == 0) {
		r->silent = true;
	} else if (!(n - k == 5 && ascii_strncasecmp(s + k, "FLAGS", 5) == 0)) {
		*error_r = "Unknown STORE data item";
		return -1;
	}
	if (i >= n_args) {
		*error_r = "Missing flags";
		return -1;
	}
	int rc;
	if (imap_arg_get_list(&args[i], &l, &ln)) {
		/* flag-list; "()" is fine (FLAGS () clears everything) */
		if (i + 1 != n_args) {
			*error_r = "Unexpected arguments after the flag list";
			return -1;
		}
		for (size_t j = 0; j < ln; j++)
			if ((rc = add_flag(r, &l[j], error_r)) < 0)
				goto fail;
		return 0;
	}
	/* flag *(SP flag) without parentheses (RFC 9051 9 store-att-flags) */
	for (; i < n_args; i++)
		if ((rc = add_flag(r, &args[i], error_r)) < 0)
			goto fail;
	return 0;
fail:
	imap_store_req_free(r);
	return rc;
}

void imap_store_req_free(struct imap_store_req *r)
{
	for (size_t i = 0; i < r->n_keywords; i++)
		free(r->keywords[i]);
	free(r->keywords);
	r->keywords = NULL;
	r->n_keywords = 0;
}

unsigned imap_store_apply(const struct imap_store_req *r, unsigned old)
{
	switch (r->op) {
	case IMAP_STORE_ADD:
		return old | r->flags;
	case IMAP_STORE_REMOVE:
		return old & ~r->flags;
	case IMAP_STORE_REPLACE:
		break;
	}
	return r->flags;
}

bool imap_store_wants_fetch(const struct imap_store_req *r)
{
	return !r->silent || r->has_unchangedsince;
}

void imap_store_render(const struct imap_store_req *r, const struct imap_msg *msg, bool uid,
		       const struct imap_store_opts *opts, struct buf *out)
{
	static const struct imap_store_opts defopts;
	const struct imap_store_opts *o = opts ? opts : &defopts;
	buf_xprintf(out, "* %u FETCH (", msg->seq);
	bool sp = false;
	if (uid) {
		buf_xprintf(out, "UID %u", msg->uid);
		sp = true;
	}
	if (!r->silent) {
		if (sp)
			buf_xappend(out, " ", 1);
		buf_xappend(out, "FLAGS ", 6);
		imap_fetch_write_flags(msg, o->rev2, out);
		sp = true;
	}
	if (o->condstore) {
		if (sp)
			buf_xappend(out, " ", 1);
		buf_xprintf(out, "MODSEQ (%llu)", (unsigned long long)msg->modseq);
	}
	buf_xappend(out, ")\r\n", 3);
}

void imap_store_write_modified(const uint32_t *v, size_t n, struct buf *out)
{
	struct imap_seqset s;
	imap_seqset_init(&s);
	for (size_t i = 0; i < n; i++)
		imap_seqset_add(&s, v[i]);
	buf_xappend(out, "[MODIFIED ", 10);
	imap_seqset_write(&s, out);
	buf_xappend(out, "]", 1);
	imap_seqset_free(&s);
}
