/* SPDX-License-Identifier: MIT */
/* COPY / UID COPY (RFC 9051 6.4.7, COPYUID of RFC 4315) and MOVE / UID MOVE
 * (RFC 6851: COPYUID in an untagged OK before the EXPUNGEs, 3.3). */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_seqset.h"

static void copyuid(struct imap_server *s, struct buf *b)
{
	struct imap_copy_result *r = &s->copy_res;
	buf_xprintf(b, "COPYUID %u ", r->uidvalidity);
	imap_uidlist_write(r->src, r->n, b);
	buf_xappend(b, " ", 1);
	imap_uidlist_write(r->dst, r->n, b);
}

static void copy_res_free(struct imap_server *s)
{
	free(s->copy_res.src);
	free(s->copy_res.dst);
	memset(&s->copy_res, 0, sizeof s->copy_res);
}

static void copy_done(struct imap_server *s, enum imap_verdict v)
{
	bool move = s->arg_flag;
	if (v != IMAP_OK) {
		copy_res_free(s);
		imap_no_app(s, "TRYCREATE", "Destination mailbox does not exist");
		return;
	}
	if (s->mbox && strcmp(s->arg_name, s->mbox) == 0)
		s->need_sync = true;
	struct buf code;
	buf_init(&code, 0);
	if (s->copy_res.n && s->copy_res.uidvalidity)
		copyuid(s, &code);
	char *c = xstrdup(buf_cstr(&code)); /* data is NULL when nothing was added */
	buf_deinit(&code);
	if (move) {
		if (*c)
			imap_untagged(s, "OK [%s] Moved", c);
		/* RFC 6851 3.3: EXPUNGE for every moved source message */
		uint32_t *src = s->arg_uids;
		for (size_t i = s->n_arg_uids; i-- > 0;)
			imap_map_remove_uid(s, src[i], true);
		imap_tagged(s, "OK", NULL, "MOVE completed");
	} else {
		imap_tagged(s, "OK", *c ? c : NULL, "COPY completed");
	}
	free(c);
	copy_res_free(s);
}

static void do_copy(struct imap_server *s, const struct imap_arg *args, size_t n, bool move)
{
	if (n != 2) {
		imap_bad(s, "%s needs a sequence set and a mailbox", move ? "MOVE" : "COPY");
		return;
	}
	if (!s->ops->copy) {
		imap_tagged(s, "NO", "CANNOT", "Not supported");
		return;
	}
	if (!imap_arg_uids(s, &args[0], s->cmd_uid, &s->arg_uids, &s->n_arg_uids))
		return;
	if (!(s->arg_name = imap_arg_mailbox(s, &args[1])))
		return;
	s->arg_flag = move;
	memset(&s->copy_res, 0, sizeof s->copy_res);
	if (s->n_arg_uids == 0) {
		/* RFC 9051 6.4.7/6.4.9: UID forms with no match are OK */
		imap_tagged(s, "OK", NULL, "No messages");
		return;
	}
	imap_verdict(s,
		     s->ops->copy(s->ctx, s, s->arg_uids, s->n_arg_uids, s->arg_name, move,
				  &s->copy_res),
		     copy_done);
}

void imap_cmd_copy(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_copy(s, args, n, false);
}

void imap_cmd_move(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	do_copy(s, args, n, true);
}
