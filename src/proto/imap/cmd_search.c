/* SPDX-License-Identifier: MIT */
/* SEARCH / UID SEARCH (RFC 9051 6.4.4, RFC 3501 6.4.4, ESEARCH RFC 4731):
 * the program compiled by imap_search.h is run over every message in the
 * session's view, in ascending order; the file is only read when a key
 * needs it (imap_search_needs_file). Synchronous: a SEARCH BODY over a large
 * mailbox holds the session (and, in the daemon today, the loop thread)
 * until it is done. SEARCHRES is not offered, so "$" is the empty set. */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"
#include "proto/imap/imap_search.h"

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
	unsigned want = imap_search_needs_file(prog) ? IMAP_FETCH_W_MIME | IMAP_FETCH_W_FILE : 0;
	struct imap_search_result res;
	imap_search_result_init(&res);
	bool failed = false;
	for (size_t i = 0; i < s->n_uids; i++) {
		struct imap_msg m;
		memset(&m, 0, sizeof m);
		int r = s->ops->msg_get(s->ctx, s, s->uids[i], want, &m);
		if (r < 0) {
			failed |= r != -1;
			continue;
		}
		m.uid = s->uids[i];
		m.seq = (uint32_t)(i + 1);
		if (s->rev2)
			m.recent = false;
		if (imap_search_match(prog, &m) > 0)
			imap_search_result_add(prog, &res, &m);
		imap_msg_release(&m);
		if (s->ops->msg_put)
			s->ops->msg_put(s->ctx, s, &m);
	}
	if (failed) {
		imap_search_result_free(&res);
		imap_search_free(&prog);
		imap_tagged(s, "NO", "SERVERBUG", "Some messages could not be read");
		return;
	}
	imap_search_render(prog, &res, s->tag, &s->out);
	imap_search_result_free(&res);
	imap_search_free(&prog);
	imap_tagged(s, "OK", NULL, "SEARCH completed");
}
