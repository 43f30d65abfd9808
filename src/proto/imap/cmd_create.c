/* SPDX-License-Identifier: MIT */
/* CREATE (RFC 9051 6.3.4, with RFC 6154 USE), DELETE (6.3.5), RENAME
 * (6.3.6): the app's create/delete_mbox/rename ops; default refusals are
 * [ALREADYEXISTS], [NONEXISTENT] (RFC 5530). A trailing "/" on CREATE is
 * dropped (RFC 9051 6.3.4). */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"

static void create_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		imap_no_app(s, "ALREADYEXISTS", "Mailbox already exists");
		return;
	}
	imap_tagged(s, "OK", NULL, "CREATE completed");
}

void imap_cmd_create(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	const char *p;
	size_t len;
	if (n < 1 || n > 2 || !imap_arg_get_astring(&args[0], &p, &len)) {
		imap_bad(s, "CREATE needs a mailbox name");
		return;
	}
	enum imap_special sp = IMAP_SPECIAL_NONE;
	if (n == 2) {
		/* RFC 6154 3 / RFC 4466: (USE (\Sent)) */
		const struct imap_arg *l, *u;
		size_t ln, un;
		if (!imap_arg_get_list(&args[1], &l, &ln) || ln != 2 ||
		    !imap_arg_atom_equals(&l[0], "USE") || !imap_arg_get_list(&l[1], &u, &un) ||
		    un > 1) {
			imap_bad(s, "Invalid CREATE parameters");
			return;
		}
		static const char *const names[] = { NULL,      "\\Drafts", "\\Sent",
						     "\\Trash", "\\Junk",   "\\Archive" };
		if (un == 1) {
			for (int i = 1; i <= 5; i++)
				if (imap_arg_atom_equals(&u[0], names[i]))
					sp = (enum imap_special)i;
			if (sp == IMAP_SPECIAL_NONE) {
				imap_tagged(s, "NO", "USEATTR", "Unsupported special-use attribute");
				return;
			}
		}
	}
	if (len > 1 && p[len - 1] == '/')
		len--;
	char *name = imap_mailbox_from_wire(p, len, s->utf8);
	if (!name) {
		imap_tagged(s, "NO", "CANNOT", "Invalid mailbox name");
		return;
	}
	s->arg_name = name;
	if (strcmp(name, "INBOX") == 0) {
		imap_tagged(s, "NO", "ALREADYEXISTS", "INBOX always exists");
		return;
	}
	imap_verdict(s, s->ops->create(s->ctx, s, name, sp), create_done);
}

static void delete_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		imap_no_app(s, "NONEXISTENT", "Mailbox does not exist");
		return;
	}
	imap_tagged(s, "OK", NULL, "DELETE completed");
}

void imap_cmd_delete(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n != 1) {
		imap_bad(s, "DELETE needs a mailbox name");
		return;
	}
	if (!(s->arg_name = imap_arg_mailbox(s, &args[0])))
		return;
	if (strcmp(s->arg_name, "INBOX") == 0) {
		imap_tagged(s, "NO", "CANNOT", "INBOX cannot be deleted");
		return;
	}
	if (s->mbox && strcmp(s->mbox, s->arg_name) == 0) {
		/* deleting the selected mailbox: deselect first */
		imap_deselect(s);
	}
	imap_verdict(s, s->ops->delete_mbox(s->ctx, s, s->arg_name), delete_done);
}

static void rename_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		imap_no_app(s, "NONEXISTENT", "Rename failed");
		return;
	}
	imap_tagged(s, "OK", NULL, "RENAME completed");
}

void imap_cmd_rename(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n != 2) {
		imap_bad(s, "RENAME needs two mailbox names");
		return;
	}
	if (!(s->arg_name = imap_arg_mailbox(s, &args[0])))
		return;
	if (!(s->arg_name2 = imap_arg_mailbox(s, &args[1])))
		return;
	if (strcmp(s->arg_name2, "INBOX") == 0) {
		imap_tagged(s, "NO", "ALREADYEXISTS", "INBOX already exists");
		return;
	}
	imap_verdict(s, s->ops->rename(s->ctx, s, s->arg_name, s->arg_name2), rename_done);
}

static void sub_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		imap_no_app(s, "NONEXISTENT", "Mailbox does not exist");
		return;
	}
	imap_tagged(s, "OK", NULL, "%s completed", s->arg_flag ? "SUBSCRIBE" : "UNSUBSCRIBE");
}

static void do_sub(struct imap_server *s, const struct imap_arg *args, size_t n, bool on)
{
	if (n != 1) {
		imap_bad(s, "Mailbox name expected");
		return;
	}
	if (!(s->arg_name = imap_arg_mailbox(s, &args[0])))
		return;
	s->arg_flag = on;
	imap_verdict(s, s->ops->subscribe(s->ctx, s, s->arg_name, on), sub_done);
}

void imap_cmd_subscribe(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_sub(s, args, n, true);
}

void imap_cmd_unsubscribe(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_sub(s, args, n, false);
}
