/* SPDX-License-Identifier: MIT */
/* SELECT and EXAMINE (RFC 9051 6.3.2-6.3.3, RFC 3501 6.3.1-6.3.2). rev1
 * gets RECENT and [UNSEEN n]; rev2 gets the mailbox's LIST response
 * instead (RFC 9051 6.3.2). A failed SELECT leaves no mailbox selected. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"

static const char *const special_names[] = { NULL, "\\Drafts", "\\Sent", "\\Trash", "\\Junk",
					      "\\Archive" };

static void write_kw_list(struct buf *b, const struct imap_select_info *r, bool star)
{
	buf_xprintf(b, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft");
	for (size_t i = 0; i < r->n_keywords; i++) {
		const char *k = r->keywords[i];
		bool ok = *k != '\0';
		for (const char *c = k; *c; c++)
			if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f ||
			    strchr("(){%*\"\\]", *c))
				ok = false;
		if (ok)
			buf_xprintf(b, " %s", k);
	}
	if (star)
		buf_xprintf(b, " \\*");
	buf_xappend(b, ")", 1);
}

static void select_done(struct imap_server *s, enum imap_verdict v)
{
	struct imap_select_info *r = &s->sel_res;
	if (v != IMAP_OK) {
		imap_no_app(s, "NONEXISTENT", "Mailbox does not exist");
		return;
	}
	s->mbox = s->arg_name;
	s->arg_name = NULL;
	s->readonly = s->arg_flag || r->readonly;
	s->uidvalidity = r->uidvalidity;
	s->uidnext = r->uidnext;
	s->need_sync = false;
	imap_map_set(s, r->uids, r->n_uids);
	s->state = IS_SELECTED;

	buf_xprintf(&s->out, "* FLAGS ");
	write_kw_list(&s->out, r, false);
	buf_xprintf(&s->out, "\r\n* %zu EXISTS\r\n", s->n_uids);
	if (!s->rev2) {
		imap_untagged(s, "%u RECENT", r->n_recent);
		uint32_t seq = r->first_unseen_uid ? imap_server_uid_to_seq(s, r->first_unseen_uid)
						   : 0;
		if (seq)
			imap_untagged(s, "OK [UNSEEN %u] First unseen", seq);
	} else {
		buf_xprintf(&s->out, "* LIST (");
		bool sp = false;
		if (r->attrs & IMAP_MBA_HASCHILDREN) {
			buf_xprintf(&s->out, "\\HasChildren");
			sp = true;
		} else if (r->attrs & IMAP_MBA_HASNOCHILDREN) {
			buf_xprintf(&s->out, "\\HasNoChildren");
			sp = true;
		}
		if (r->special > IMAP_SPECIAL_NONE && r->special <= IMAP_SPECIAL_ARCHIVE)
			buf_xprintf(&s->out, "%s%s", sp ? " " : "", special_names[r->special]);
		buf_xprintf(&s->out, ") \"/\" ");
		imap_write_mailbox(s, &s->out, s->mbox);
		buf_xappend(&s->out, "\r\n", 2);
	}
	buf_xprintf(&s->out, "* OK [PERMANENTFLAGS ");
	if (s->readonly)
		buf_xprintf(&s->out, "()");
	else
		write_kw_list(&s->out, r, true);
	buf_xprintf(&s->out, "] Flags permitted\r\n");
	imap_untagged(s, "OK [UIDVALIDITY %u] UIDs valid", s->uidvalidity);
	imap_untagged(s, "OK [UIDNEXT %u] Predicted next UID", s->uidnext);
	imap_tagged(s, "OK", s->readonly ? "READ-ONLY" : "READ-WRITE", "%s completed",
		    s->arg_flag ? "EXAMINE" : "SELECT");
}

static void do_select(struct imap_server *s, const struct imap_arg *args, size_t n, bool ro)
{
	/* RFC 4466 2.1: optional select parameters; none are supported */
	if (n < 1 || n > 2 || (n == 2 && args[1].type != IMAP_ARG_LIST)) {
		imap_bad(s, "%s needs a mailbox name", ro ? "EXAMINE" : "SELECT");
		return;
	}
	if (n == 2 && args[1].list_n) {
		imap_bad(s, "Unknown select parameter");
		return;
	}
	if (s->state == IS_SELECTED) {
		imap_deselect(s);
		imap_untagged(s, "OK [CLOSED] Previous mailbox closed"); /* RFC 9051 7.1 */
	}
	s->arg_name = imap_arg_mailbox(s, &args[0]);
	if (!s->arg_name)
		return;
	s->arg_flag = ro;
	memset(&s->sel_res, 0, sizeof s->sel_res);
	imap_verdict(s, s->ops->select(s->ctx, s, s->arg_name, ro, &s->sel_res), select_done);
}

void imap_cmd_select(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_select(s, args, n, false);
}

void imap_cmd_examine(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_select(s, args, n, true);
}
