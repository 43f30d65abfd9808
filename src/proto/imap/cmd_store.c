/* SPDX-License-Identifier: MIT */
/* STORE / UID STORE (RFC 9051 6.4.6, 6.4.9; RFC 3501 6.4.6): arguments
 * parsed by imap_store.h, the change made by ops->store, then one untagged
 * "* n FETCH (FLAGS (...))" per stored message unless .SILENT, with the
 * flags read back from the app (so the answer shows what is stored). */
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_int.h"
#include "proto/imap/imap_store.h"

static bool in_sorted(const uint32_t *v, size_t n, uint32_t x)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && v[lo] == x;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

void imap_cmd_store(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n < 3) {
		imap_bad(s, "STORE needs a sequence set, an item and flags");
		return;
	}
	if (!s->ops->store || !s->ops->msg_get) {
		imap_tagged(s, "NO", "CANNOT", "Not supported");
		return;
	}
	if (!imap_arg_uids(s, &args[0], s->cmd_uid, &s->arg_uids, &s->n_arg_uids))
		return;
	struct imap_store_opts opts = { .rev2 = s->rev2 };
	struct imap_store_req req;
	memset(&req, 0, sizeof req);
	const char *err = NULL;
	int rc = imap_store_parse(args + 1, n - 1, &opts, &req, &err);
	if (rc < 0) {
		imap_store_req_free(&req);
		if (rc == -2)
			imap_tagged(s, "NO", NULL, "%s", err ? err : "[LIMIT] Too many keywords");
		else
			imap_bad(s, "%s", err ? err : "Invalid STORE arguments");
		return;
	}
	if (s->n_arg_uids == 0) {
		imap_store_req_free(&req);
		imap_tagged(s, "OK", NULL, "STORE completed");
		return;
	}
	uint32_t *failed = NULL;
	size_t n_failed = 0;
	s->reply_set = false;
	enum imap_verdict v = s->ops->store(
		s->ctx, s, s->arg_uids, s->n_arg_uids, (unsigned)req.op, req.flags,
		(const char *const *)req.keywords, req.n_keywords,
		req.has_unchangedsince ? req.unchangedsince : 0, &failed, &n_failed);
	if (v != IMAP_OK) {
		free(failed);
		imap_store_req_free(&req);
		imap_no_app(s, "SERVERBUG", "STORE failed");
		return;
	}
	if (failed)
		qsort(failed, n_failed, sizeof *failed, cmp_u32);
	if (imap_store_wants_fetch(&req)) {
		for (size_t i = 0; i < s->n_arg_uids; i++) {
			uint32_t uid = s->arg_uids[i];
			if (in_sorted(failed, n_failed, uid))
				continue;
			struct imap_msg m;
			memset(&m, 0, sizeof m);
			if (s->ops->msg_get(s->ctx, s, uid, 0, &m) < 0)
				continue; /* gone meanwhile */
			m.uid = uid;
			m.seq = imap_server_uid_to_seq(s, uid);
			if (s->rev2)
				m.recent = false;
			imap_store_render(&req, &m, s->cmd_uid, &opts, &s->out);
			imap_msg_release(&m);
			if (s->ops->msg_put)
				s->ops->msg_put(s->ctx, s, &m);
		}
	}
	imap_store_req_free(&req);
	if (n_failed) {
		/* RFC 7162 3.1.3: the numbers that failed UNCHANGEDSINCE */
		uint32_t *v2 = failed;
		if (!s->cmd_uid)
			for (size_t i = 0; i < n_failed; i++)
				v2[i] = imap_server_uid_to_seq(s, failed[i]);
		struct buf code;
		buf_init(&code, 0);
		imap_store_write_modified(v2, n_failed, &code);
		buf_xappend(&code, "", 0);
		char *c = strndup((const char *)code.data + 1, code.len - 2);
		buf_deinit(&code);
		free(failed);
		imap_tagged(s, "OK", c, "Conditional STORE failed");
		free(c);
		return;
	}
	free(failed);
	imap_tagged(s, "OK", NULL, "STORE completed");
}
