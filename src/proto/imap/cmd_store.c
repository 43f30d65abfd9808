/* SPDX-License-Identifier: MIT */
/* STORE / UID STORE (RFC 9051 6.4.6, 6.4.9; RFC 3501 6.4.6): arguments
 * parsed by imap_store.h, the change made by ops->store, then one untagged
 * "* n FETCH (FLAGS (...))" per stored message unless .SILENT, with the
 * flags read back from the app (so the answer shows what is stored).
 * The store and the read-back run through ops->offload when the app has it
 * (a job thread in the daemon: the change is a write transaction with an
 * fsync, and may wait for another session's lock); the FETCH lines are
 * rendered into the command's own buffer and appended on the resume. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
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

struct store_state {
	struct imap_store_opts opts;
	struct imap_store_req req;
	uint32_t *failed;
	size_t n_failed;
	enum imap_verdict v;
	char *reply;    /* the app's NO text (the resume clears the engine's) */
	struct buf out; /* the untagged FETCH answers */
};

static void store_state_free(void *p)
{
	struct store_state *st = p;
	imap_store_req_free(&st->req);
	free(st->failed);
	free(st->reply);
	buf_deinit(&st->out);
	free(st);
}

/* The change and the read-back: inline or on a job thread (touches only
 * st; the sequence map cannot change while the command runs). */
static void store_work(struct imap_server *s)
{
	struct store_state *st = s->cmd_state;
	struct imap_store_req *req = &st->req;
	st->v = s->ops->store(s->ctx, s, s->arg_uids, s->n_arg_uids, (unsigned)req->op,
			      req->flags, (const char *const *)req->keywords, req->n_keywords,
			      req->has_unchangedsince ? req->unchangedsince : 0, &st->failed,
			      &st->n_failed);
	if (st->v != IMAP_OK) {
		if (s->reply_set)
			st->reply = xstrndup((const char *)s->reply.data, s->reply.len);
		return;
	}
	if (st->failed)
		qsort(st->failed, st->n_failed, sizeof *st->failed, cmp_u32);
	if (!imap_store_wants_fetch(req))
		return;
	for (size_t i = 0; i < s->n_arg_uids; i++) {
		uint32_t uid = s->arg_uids[i];
		if (in_sorted(st->failed, st->n_failed, uid))
			continue;
		struct imap_msg m;
		memset(&m, 0, sizeof m);
		if (s->ops->msg_get(s->ctx, s, uid, 0, &m) < 0)
			continue; /* gone meanwhile */
		m.uid = uid;
		m.seq = imap_server_uid_to_seq(s, uid);
		if (s->rev2)
			m.recent = false;
		imap_store_render(req, &m, s->cmd_uid, &st->opts, &st->out);
		imap_msg_release(&m);
		if (s->ops->msg_put)
			s->ops->msg_put(s->ctx, s, &m);
	}
}

static void store_done(struct imap_server *s, enum imap_verdict v)
{
	(void)v;
	struct store_state *st = s->cmd_state;
	if (st->v != IMAP_OK) {
		if (st->reply)
			imap_tagged(s, "NO", NULL, "%s", st->reply);
		else
			imap_tagged(s, "NO", "SERVERBUG", "STORE failed");
		return;
	}
	buf_xappend(&s->out, st->out.data, st->out.len);
	if (st->n_failed) {
		/* RFC 7162 3.1.3: the numbers that failed UNCHANGEDSINCE */
		uint32_t *v2 = st->failed;
		if (!s->cmd_uid)
			for (size_t i = 0; i < st->n_failed; i++)
				v2[i] = imap_server_uid_to_seq(s, st->failed[i]);
		struct buf code;
		buf_init(&code, 0);
		imap_store_write_modified(v2, st->n_failed, &code);
		char *c = xstrndup((const char *)code.data + 1, code.len - 2);
		buf_deinit(&code);
		imap_tagged(s, "OK", c, "Conditional STORE failed");
		free(c);
		return;
	}
	imap_tagged(s, "OK", NULL, "STORE completed");
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
	struct store_state *st = xcalloc(1, sizeof *st);
	st->opts.rev2 = s->rev2;
	buf_init(&st->out, 0);
	s->cmd_state = st;
	s->cmd_free = store_state_free;
	const char *err = NULL;
	int rc = imap_store_parse(args + 1, n - 1, &st->opts, &st->req, &err);
	if (rc < 0) {
		if (rc == -2)
			imap_tagged(s, "NO", NULL, "%s", err ? err : "[LIMIT] Too many keywords");
		else
			imap_bad(s, "%s", err ? err : "Invalid STORE arguments");
		return;
	}
	if (s->n_arg_uids == 0) {
		imap_tagged(s, "OK", NULL, "STORE completed");
		return;
	}
	s->reply_set = false;
	if (s->ops->offload) {
		enum imap_verdict v = s->ops->offload(s->ctx, s, store_work);
		/* OK: the app ran the work itself */
		imap_verdict(s, v == IMAP_PENDING ? v : IMAP_OK, store_done);
		return;
	}
	store_work(s);
	store_done(s, IMAP_OK);
}
