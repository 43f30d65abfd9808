/* SPDX-License-Identifier: MIT */
/* SEARCH / UID SEARCH (RFC 9051 6.4.4, RFC 3501 6.4.4, ESEARCH RFC 4731):
 * the program compiled by imap_search.h is run over every message in the
 * session's view, in ascending order; the file is only read when a key
 * needs it (imap_search_needs_file). The loop over the messages runs
 * through ops->offload (a job thread in the daemon) when it reads files or
 * covers more than IMAP_OFFLOAD_MIN_MSGS messages, so a SEARCH BODY over a
 * large mailbox holds only its own session; the answer is rendered on the
 * resume. SEARCHRES is not offered, so "$" is the empty set. */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"
#include "base/util.h"
#include "proto/imap/imap_search.h"

struct search_state {
	struct imap_search *prog;
	struct imap_search_result res;
	unsigned want;
	bool failed;
};

static void search_state_free(void *p)
{
	struct search_state *st = p;
	imap_search_result_free(&st->res);
	imap_search_free(&st->prog);
	free(st);
}

/* The message loop: inline, or on a job thread through ops->offload (it
 * touches only st and reads the sequence map, which cannot change while
 * the command runs). */
static void search_work(struct imap_server *s)
{
	struct search_state *st = s->cmd_state;
	for (size_t i = 0; i < s->n_uids; i++) {
		struct imap_msg m;
		memset(&m, 0, sizeof m);
		int r = s->ops->msg_get(s->ctx, s, s->uids[i], st->want, &m);
		if (r < 0) {
			st->failed |= r != -1;
			continue;
		}
		m.uid = s->uids[i];
		m.seq = (uint32_t)(i + 1);
		if (s->rev2)
			m.recent = false;
		if (imap_search_match(st->prog, &m) > 0)
			imap_search_result_add(st->prog, &st->res, &m);
		imap_msg_release(&m);
		if (s->ops->msg_put)
			s->ops->msg_put(s->ctx, s, &m);
	}
}

static void search_done(struct imap_server *s, enum imap_verdict v)
{
	(void)v;
	struct search_state *st = s->cmd_state;
	if (st->failed) {
		imap_tagged(s, "NO", "SERVERBUG", "Some messages could not be read");
		return;
	}
	imap_search_render(st->prog, &st->res, s->tag, &s->out);
	imap_tagged(s, "OK", NULL, "SEARCH completed");
}

void imap_cmd_search(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n < 1) {
		imap_bad(s, "SEARCH needs search keys");
		return;
	}
	if (!s->ops->msg_get) {
		imap_tagged(s, "NO", "CANNOT", "Not supported");
		return;
	}
	struct imap_search_opts opts;
	memset(&opts, 0, sizeof opts);
	opts.rev2 = s->rev2;
	opts.n_msgs = (uint32_t)s->n_uids;
	opts.max_uid = s->n_uids ? s->uids[s->n_uids - 1] : (s->uidnext > 1 ? s->uidnext - 1 : 1);
	struct imap_search *prog = NULL;
	const char *err = NULL;
	int rc = imap_search_parse(args, n, s->cmd_uid, &opts, &prog, &err);
	if (rc == -2) {
		imap_tagged(s, "NO", NULL, "%s", err ? err : "[BADCHARSET] Unsupported charset");
		return;
	}
	if (rc < 0) {
		imap_bad(s, "%s", err ? err : "Invalid search");
		return;
	}
	struct search_state *st = xcalloc(1, sizeof *st);
	st->prog = prog;
	st->want = imap_search_needs_file(prog) ? IMAP_FETCH_W_MIME | IMAP_FETCH_W_FILE : 0;
	imap_search_result_init(&st->res);
	s->cmd_state = st;
	s->cmd_free = search_state_free;
	if (s->ops->offload && (st->want || s->n_uids > IMAP_OFFLOAD_MIN_MSGS)) {
		enum imap_verdict v = s->ops->offload(s->ctx, s, search_work);
		/* OK: the app ran the work itself */
		imap_verdict(s, v == IMAP_PENDING ? v : IMAP_OK, search_done);
		return;
	}
	search_work(s);
	search_done(s, IMAP_OK);
}
