/* SPDX-License-Identifier: MIT */
/* EXPUNGE (RFC 9051 6.4.3) and UID EXPUNGE (RFC 4315 2.1): the app removes
 * the \Deleted messages (of the UID set) and returns their UIDs; the engine
 * sends one untagged EXPUNGE per message, highest sequence number first. */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"

static void expunge_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		free(s->exp_res.uids);
		memset(&s->exp_res, 0, sizeof s->exp_res);
		imap_no_app(s, "SERVERBUG", "Expunge failed");
		return;
	}
	for (size_t i = s->exp_res.n; i-- > 0;)
		imap_map_remove_uid(s, s->exp_res.uids[i], true);
	free(s->exp_res.uids);
	memset(&s->exp_res, 0, sizeof s->exp_res);
	imap_tagged(s, "OK", NULL, "EXPUNGE completed");
}

void imap_cmd_expunge(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (!s->ops->expunge) {
		imap_tagged(s, "NO", "CANNOT", "Not supported");
		return;
	}
	memset(&s->exp_res, 0, sizeof s->exp_res);
	if (s->cmd_uid) {
		if (n != 1) {
			imap_bad(s, "UID EXPUNGE takes a UID set");
			return;
		}
		if (!imap_arg_uids(s, &args[0], true, &s->arg_uids, &s->n_arg_uids))
			return;
		if (s->n_arg_uids == 0) {
			imap_tagged(s, "OK", NULL, "EXPUNGE completed");
			return;
		}
		imap_verdict(s, s->ops->expunge(s->ctx, s, s->arg_uids, s->n_arg_uids, &s->exp_res),
			     expunge_done);
		return;
	}
	(void)args;
	if (n) {
		imap_bad(s, "EXPUNGE takes no arguments");
		return;
	}
	imap_verdict(s, s->ops->expunge(s->ctx, s, NULL, 0, &s->exp_res), expunge_done);
}
