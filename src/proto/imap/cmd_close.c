/* SPDX-License-Identifier: MIT */
/* CLOSE (RFC 9051 6.4.1): silently expunge \Deleted messages when the
 * mailbox is read-write, then deselect; UNSELECT (RFC 3691): deselect
 * without expunging. Neither sends untagged EXPUNGE. */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"

static void close_done(struct imap_server *s, enum imap_verdict v)
{
	(void)v; /* RFC 9051 6.4.1: the mailbox is closed whatever happened */
	free(s->exp_res.uids);
	memset(&s->exp_res, 0, sizeof s->exp_res);
	imap_deselect(s);
	imap_tagged(s, "OK", NULL, "CLOSE completed");
}

void imap_cmd_close(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "CLOSE takes no arguments");
		return;
	}
	if (s->readonly || !s->ops->expunge) {
		close_done(s, IMAP_OK);
		return;
	}
	memset(&s->exp_res, 0, sizeof s->exp_res);
	imap_verdict(s, s->ops->expunge(s->ctx, s, NULL, 0, &s->exp_res), close_done);
}

void imap_cmd_unselect(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "UNSELECT takes no arguments");
		return;
	}
	imap_deselect(s);
	imap_tagged(s, "OK", NULL, "UNSELECT completed");
}
