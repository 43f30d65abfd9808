/* SPDX-License-Identifier: MIT */
/* FETCH / UID FETCH (RFC 9051 6.4.5, 6.4.9; RFC 3501 6.4.5): the item list
 * is compiled by imap_fetch.h, then the messages are rendered one after the
 * other, streaming: imap_fetch_pump() stops whenever the output holds
 * IMAP_FETCH_HIWAT bytes and is called again from imap_server_output()
 * once the connection has drained it, so a FETCH 1:* of a large mailbox or
 * a 50 MB BODY[] never sits in memory. No untagged EXPUNGE is sent while
 * it runs (the command has ICF_USES_SEQS).
 *
 * A FETCH that reads message files, or covers more than
 * IMAP_OFFLOAD_MIN_MSGS messages, renders in batches through ops->offload
 * (a job thread in the daemon): each batch fills fetch_buf up to
 * IMAP_FETCH_HIWAT away from the loop, and the resume appends it to the
 * output; the next batch starts when the connection has drained that. */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_fetch.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_store.h"

static void msg_done(struct imap_server *s)
{
	imap_msg_release(&s->fetch_m);
	if (s->ops->msg_put)
		s->ops->msg_put(s->ctx, s, &s->fetch_m);
	memset(&s->fetch_m, 0, sizeof s->fetch_m);
}

void imap_fetch_cleanup(struct imap_server *s)
{
	if (s->fetch_in_msg) {
		imap_fetch_render_end(&s->fetch_r);
		msg_done(s);
		s->fetch_in_msg = false;
	}
	imap_fetch_plan_free(&s->fetch_plan);
	buf_clear(&s->fetch_buf);
	s->fetch_offload = s->fetch_fatal = false;
	s->fetch_active = false;
	s->fetch_i = 0;
	s->fetch_err = NULL;
}

/* Loads message i of the command and prepares its response; false if it
 * has none (gone, not changed since CHANGEDSINCE, or an error noted in
 * fetch_err). */
static bool begin_msg(struct imap_server *s, uint32_t uid)
{
	struct imap_msg *m = &s->fetch_m;
	memset(m, 0, sizeof *m);
	int rc = s->ops->msg_get(s->ctx, s, uid, imap_fetch_plan_wants(s->fetch_plan), m);
	if (rc < 0) {
		/* RFC 2180 4.1.2 / RFC 5530 EXPUNGEISSUED: a message another
		 * session expunged is left out, and the command says so */
		if (rc != -1)
			s->fetch_err = "[SERVERBUG] Some messages could not be read";
		else if (!s->fetch_err)
			s->fetch_err = "[EXPUNGEISSUED] Some of the requested messages no longer exist";
		memset(m, 0, sizeof *m);
		return false;
	}
	m->uid = uid;
	m->seq = imap_server_uid_to_seq(s, uid);
	if (s->rev2)
		m->recent = false;
	uint64_t since = imap_fetch_plan_changedsince(s->fetch_plan);
	if (since && m->modseq <= since) {
		msg_done(s);
		return false;
	}
	bool add_flags = false;
	if (imap_fetch_plan_sets_seen(s->fetch_plan) && !s->readonly &&
	    !(m->flags & IMAP_MSGF_SEEN) && s->ops->store) {
		/* RFC 9051 6.4.5 BODY[]: "The \Seen flag is implicitly set" */
		uint32_t u = uid;
		if (s->ops->store(s->ctx, s, &u, 1, IMAP_STORE_ADD, IMAP_F_SEEN, NULL, 0, 0, NULL,
				  NULL) == IMAP_OK) {
			m->flags |= IMAP_MSGF_SEEN;
			add_flags = true;
		}
	}
	const char *err = NULL;
	if (imap_fetch_render_begin(&s->fetch_r, s->fetch_plan, m, add_flags, &err) < 0) {
		s->fetch_err = err ? err : "[SERVERBUG] Message could not be read";
		msg_done(s);
		return false;
	}
	s->fetch_in_msg = true;
	return true;
}

/* Renders into out until it holds IMAP_FETCH_HIWAT or the messages are
 * done: true when done (or fetch_fatal). Runs on the loop, or as the
 * offloaded work with out = fetch_buf. */
static bool render_batch(struct imap_server *s, struct buf *out)
{
	for (;;) {
		if (s->fetch_in_msg) {
			int rc = imap_fetch_render(&s->fetch_r, out, IMAP_FETCH_HIWAT);
			if (rc == 1)
				return false;
			imap_fetch_render_end(&s->fetch_r);
			s->fetch_in_msg = false;
			msg_done(s);
			if (rc < 0) {
				/* a literal was promised and cannot be completed:
				 * the only way out is closing (imap_fetch.h) */
				s->fetch_fatal = true;
				return true;
			}
			continue;
		}
		if (out->len >= IMAP_FETCH_HIWAT)
			return false;
		if (s->fetch_i >= s->n_arg_uids)
			return true;
		begin_msg(s, s->arg_uids[s->fetch_i++]);
	}
}

/* On the loop: the batch (if any) is in the output; end the command when
 * the messages are done. */
static void batch_end(struct imap_server *s, bool done)
{
	if (s->fetch_fatal) {
		imap_logout(s, NULL);
		return;
	}
	if (!done)
		return;
	const char *err = s->fetch_err;
	imap_fetch_cleanup(s);
	if (err)
		imap_tagged(s, "NO", NULL, "%s", err);
	else
		imap_tagged(s, "OK", NULL, "FETCH completed");
}

static void offload_work(struct imap_server *s)
{
	bool done = render_batch(s, &s->fetch_buf);
	s->cmd_step = done; /* read back on resume */
}

static void offload_done(struct imap_server *s, enum imap_verdict v)
{
	(void)v;
	buf_xappend(&s->out, s->fetch_buf.data, s->fetch_buf.len);
	buf_clear(&s->fetch_buf);
	batch_end(s, s->cmd_step != 0);
}

void imap_fetch_pump(struct imap_server *s)
{
	if (!s->fetch_active || s->pending)
		return;
	if (s->fetch_offload) {
		if (s->out.len >= IMAP_FETCH_HIWAT)
			return;
		s->cmd_step = 0;
		enum imap_verdict v = s->ops->offload(s->ctx, s, offload_work);
		/* OK: the app ran the work itself */
		imap_verdict(s, v == IMAP_PENDING ? v : IMAP_OK, offload_done);
		return;
	}
	batch_end(s, render_batch(s, &s->out));
}

void imap_cmd_fetch(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n < 2 || n > 3) {
		imap_bad(s, "FETCH needs a sequence set and items");
		return;
	}
	if (!s->ops->msg_get) {
		imap_tagged(s, "NO", "CANNOT", "Not supported");
		return;
	}
	if (!imap_arg_uids(s, &args[0], s->cmd_uid, &s->arg_uids, &s->n_arg_uids))
		return;
	struct imap_fetch_opts opts = { .rev2 = s->rev2, .utf8 = s->utf8 };
	const char *err = NULL;
	struct imap_fetch_plan *plan = NULL;
	if (imap_fetch_parse(args + 1, n - 1, s->cmd_uid, &opts, &plan, &err) < 0) {
		imap_bad(s, "%s", err ? err : "Invalid FETCH items");
		return;
	}
	s->fetch_plan = plan;
	s->fetch_i = 0;
	s->fetch_err = NULL;
	s->fetch_active = true;
	s->fetch_offload = s->ops->offload &&
			   ((imap_fetch_plan_wants(plan) & IMAP_FETCH_W_FILE) ||
			    s->n_arg_uids > IMAP_OFFLOAD_MIN_MSGS);
	imap_fetch_pump(s);
}
