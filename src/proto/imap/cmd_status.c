/* SPDX-License-Identifier: MIT */
/* STATUS (RFC 9051 6.3.11; SIZE RFC 8438, DELETED RFC 9051, RECENT rev1)
 * and the status-att list shared with LIST-STATUS (RFC 5819). */
#include <string.h>

#include "proto/imap/imap_int.h"

static const struct {
	const char *name;
	unsigned bit;
} items[] = {
	{ "MESSAGES", IMAP_SI_MESSAGES }, { "UIDNEXT", IMAP_SI_UIDNEXT },
	{ "UIDVALIDITY", IMAP_SI_UIDVALIDITY }, { "UNSEEN", IMAP_SI_UNSEEN },
	{ "DELETED", IMAP_SI_DELETED }, { "SIZE", IMAP_SI_SIZE },
	{ "RECENT", IMAP_SI_RECENT },
};

bool imap_status_items(const struct imap_arg *l, size_t n, unsigned *r)
{
	unsigned v = 0;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		size_t k;
		for (k = 0; k < sizeof items / sizeof items[0]; k++)
			if (imap_arg_atom_equals(&l[i], items[k].name))
				break;
		if (k == sizeof items / sizeof items[0])
			return false;
		v |= items[k].bit;
	}
	*r = v;
	return true;
}

void imap_status_write(struct buf *b, unsigned it, const struct imap_status *st)
{
	const char *sp = "";
	buf_xappend(b, "(", 1);
	if (it & IMAP_SI_MESSAGES) {
		buf_xprintf(b, "%sMESSAGES %u", sp, st->messages);
		sp = " ";
	}
	if (it & IMAP_SI_RECENT) {
		buf_xprintf(b, "%sRECENT %u", sp, st->recent);
		sp = " ";
	}
	if (it & IMAP_SI_UIDNEXT) {
		buf_xprintf(b, "%sUIDNEXT %u", sp, st->uidnext);
		sp = " ";
	}
	if (it & IMAP_SI_UIDVALIDITY) {
		buf_xprintf(b, "%sUIDVALIDITY %u", sp, st->uidvalidity);
		sp = " ";
	}
	if (it & IMAP_SI_UNSEEN) {
		buf_xprintf(b, "%sUNSEEN %u", sp, st->unseen);
		sp = " ";
	}
	if (it & IMAP_SI_DELETED) {
		buf_xprintf(b, "%sDELETED %u", sp, st->deleted);
		sp = " ";
	}
	if (it & IMAP_SI_SIZE)
		buf_xprintf(b, "%sSIZE %llu", sp, (unsigned long long)st->size);
	buf_xappend(b, ")", 1);
}

static void status_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		imap_no_app(s, "NONEXISTENT", "Mailbox does not exist");
		return;
	}
	buf_xprintf(&s->out, "* STATUS ");
	imap_write_mailbox(s, &s->out, s->arg_name);
	buf_xappend(&s->out, " ", 1);
	imap_status_write(&s->out, s->cmd_step, &s->st_res);
	buf_xappend(&s->out, "\r\n", 2);
	imap_tagged(s, "OK", NULL, "STATUS completed");
}

void imap_cmd_status(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	const struct imap_arg *l;
	size_t ln;
	unsigned it;
	if (n != 2 || !imap_arg_get_list(&args[1], &l, &ln) || !imap_status_items(l, ln, &it)) {
		imap_bad(s, "STATUS needs a mailbox and a list of items");
		return;
	}
	if (!(s->arg_name = imap_arg_mailbox(s, &args[0])))
		return;
	s->cmd_step = it;
	memset(&s->st_res, 0, sizeof s->st_res);
	imap_verdict(s, s->ops->status(s->ctx, s, s->arg_name, &s->st_res), status_done);
}
