/* SPDX-License-Identifier: MIT */
/* A fake in-memory mailbox application for the IMAP engine, shared by
 * tests/unit/test_imap_server.c and tests/fuzz/fuzz_imap_server.c
 * (included, not compiled on its own: everything is static). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "base/util.h"
#include "proto/imap/imap_msg.h"
#include "proto/imap/imap_server.h"

#define FK_MAXBOX 16
#define FK_MAXMSG 256

struct fk_box {
	char name[64];
	bool exists, subscribed, noselect;
	enum imap_special special;
	uint32_t uidvalidity, uidnext;
	uint32_t uids[FK_MAXMSG];
	unsigned flags[FK_MAXMSG];
	size_t n;
};

struct fake {
	struct imap_server *s;
	struct fk_box box[FK_MAXBOX];
	int sel; /* selected box or -1 */
	uint32_t known[FK_MAXMSG]; /* what the session saw (for sync) */
	size_t n_known;
	bool async; /* every verdict PENDING */
	bool has_pend;
	enum imap_verdict pend_v;
	void (*pend_work)(struct imap_server *s); /* offloaded: run before resume */
	unsigned offloads;
	int ap_box;
	size_t ap_bytes;
	unsigned ap_flags[8]; /* messages ended, not yet committed */
	size_t ap_n;
	unsigned appends, aborts, unselects, selects;
	char scram_salt[16];
	char text[512]; /* the message msg_get handed out */
	size_t text_len;
	unsigned gets, puts, stores;
};

static struct fk_box *fk_find(struct fake *f, const char *name)
{
	for (int i = 0; i < FK_MAXBOX; i++)
		if (f->box[i].exists && strcmp(f->box[i].name, name) == 0)
			return &f->box[i];
	return NULL;
}

static struct fk_box *fk_add(struct fake *f, const char *name, enum imap_special sp)
{
	for (int i = 0; i < FK_MAXBOX; i++) {
		struct fk_box *b = &f->box[i];
		if (!b->exists) {
			memset(b, 0, sizeof *b);
			b->exists = true;
			snprintf(b->name, sizeof b->name, "%s", name);
			b->special = sp;
			b->uidvalidity = 1000 + (uint32_t)i;
			b->uidnext = 1;
			b->subscribed = true;
			return b;
		}
	}
	return NULL;
}

static void fk_msg(struct fk_box *b, unsigned flags)
{
	if (b->n < FK_MAXMSG) {
		b->uids[b->n] = b->uidnext++;
		b->flags[b->n++] = flags;
	}
}

static enum imap_verdict fk_v(struct fake *f, enum imap_verdict v)
{
	if (f->async) {
		f->has_pend = true;
		f->pend_v = v;
		return IMAP_PENDING;
	}
	return v;
}

static enum imap_verdict fk_login(void *ctx, struct imap_server *s, const char *mech,
				  const char *user, const char *pw)
{
	(void)s;
	(void)mech;
	return fk_v(ctx, strcmp(user, "fred") == 0 && strcmp(pw, "secret") == 0 ? IMAP_OK
										 : IMAP_NO);
}

static bool fk_scram(void *ctx, const char *user, struct scram_creds *c)
{
	(void)ctx;
	if (strcmp(user, "fred") != 0)
		return false;
	memcpy(c->salt, "saltsaltsalt", 12);
	c->salt_len = 12;
	c->iterations = 4096;
	scram_derive("secret", c->salt, 12, 4096, c->stored_key, c->server_key);
	return true;
}

static enum imap_verdict fk_create(void *ctx, struct imap_server *s, const char *name,
				   enum imap_special sp)
{
	struct fake *f = ctx;
	if (fk_find(f, name)) {
		imap_server_reply(s, "ALREADYEXISTS", "Mailbox exists");
		return fk_v(f, IMAP_NO);
	}
	return fk_v(f, fk_add(f, name, sp) ? IMAP_OK : IMAP_NO);
}

static enum imap_verdict fk_delete(void *ctx, struct imap_server *s, const char *name)
{
	struct fake *f = ctx;
	(void)s;
	struct fk_box *b = fk_find(f, name);
	if (!b)
		return fk_v(f, IMAP_NO);
	b->exists = false;
	return fk_v(f, IMAP_OK);
}

static enum imap_verdict fk_rename(void *ctx, struct imap_server *s, const char *from,
				   const char *to)
{
	struct fake *f = ctx;
	struct fk_box *b = fk_find(f, from);
	if (!b)
		return fk_v(f, IMAP_NO);
	if (fk_find(f, to)) {
		imap_server_reply(s, "ALREADYEXISTS", "Target exists");
		return fk_v(f, IMAP_NO);
	}
	snprintf(b->name, sizeof b->name, "%s", to);
	return fk_v(f, IMAP_OK);
}

static enum imap_verdict fk_subscribe(void *ctx, struct imap_server *s, const char *name, bool on)
{
	struct fake *f = ctx;
	(void)s;
	struct fk_box *b = fk_find(f, name);
	if (!b)
		return fk_v(f, IMAP_NO);
	b->subscribed = on;
	return fk_v(f, IMAP_OK);
}

static bool fk_has_children(struct fake *f, const char *name)
{
	size_t n = strlen(name);
	for (int i = 0; i < FK_MAXBOX; i++)
		if (f->box[i].exists && strncmp(f->box[i].name, name, n) == 0 &&
		    f->box[i].name[n] == '/')
			return true;
	return false;
}

static int fk_cmp(const void *a, const void *b)
{
	const struct fk_box *x = *(const struct fk_box *const *)a, *y = *(const struct fk_box *const *)b;
	if (strcmp(x->name, "INBOX") == 0)
		return -1;
	if (strcmp(y->name, "INBOX") == 0)
		return 1;
	return strcmp(x->name, y->name);
}

static enum imap_verdict fk_list(void *ctx, struct imap_server *s)
{
	struct fake *f = ctx;
	struct fk_box *v[FK_MAXBOX];
	size_t n = 0;
	for (int i = 0; i < FK_MAXBOX; i++)
		if (f->box[i].exists)
			v[n++] = &f->box[i];
	qsort(v, n, sizeof v[0], fk_cmp);
	for (size_t i = 0; i < n; i++) {
		struct imap_list_entry e = { v[i]->name, 0, v[i]->special };
		e.attrs = fk_has_children(f, v[i]->name) ? IMAP_MBA_HASCHILDREN
							 : IMAP_MBA_HASNOCHILDREN;
		if (v[i]->subscribed)
			e.attrs |= IMAP_MBA_SUBSCRIBED;
		if (v[i]->noselect)
			e.attrs |= IMAP_MBA_NOSELECT;
		imap_server_list_add(s, &e);
	}
	return fk_v(f, IMAP_OK);
}

static void fk_stat(struct fk_box *b, struct imap_status *r)
{
	memset(r, 0, sizeof *r);
	r->messages = (uint32_t)b->n;
	r->uidnext = b->uidnext;
	r->uidvalidity = b->uidvalidity;
	for (size_t i = 0; i < b->n; i++) {
		if (!(b->flags[i] & IMAP_F_SEEN))
			r->unseen++;
		if (b->flags[i] & IMAP_F_DELETED)
			r->deleted++;
		r->size += 100;
	}
}

static enum imap_verdict fk_status(void *ctx, struct imap_server *s, const char *name,
				   struct imap_status *r)
{
	struct fake *f = ctx;
	(void)s;
	struct fk_box *b = fk_find(f, name);
	if (!b)
		return fk_v(f, IMAP_NO);
	fk_stat(b, r);
	return fk_v(f, IMAP_OK);
}

static const char *const fk_kw[] = { "$Forwarded", "Work" };

static enum imap_verdict fk_select(void *ctx, struct imap_server *s, const char *name, bool ro,
				   struct imap_select_info *r)
{
	struct fake *f = ctx;
	(void)s;
	(void)ro;
	struct fk_box *b = fk_find(f, name);
	if (!b)
		return fk_v(f, IMAP_NO);
	f->sel = (int)(b - f->box);
	f->selects++;
	memcpy(f->known, b->uids, b->n * sizeof b->uids[0]);
	f->n_known = b->n;
	r->uidvalidity = b->uidvalidity;
	r->uidnext = b->uidnext;
	r->uids = f->known;
	r->n_uids = b->n;
	r->n_recent = b->n >= 2 ? 2 : (uint32_t)b->n;
	for (size_t i = 0; i < b->n; i++)
		if (!(b->flags[i] & IMAP_F_SEEN)) {
			r->first_unseen_uid = b->uids[i];
			break;
		}
	r->keywords = fk_kw;
	r->n_keywords = 2;
	r->special = b->special;
	r->attrs = fk_has_children(f, name) ? IMAP_MBA_HASCHILDREN : IMAP_MBA_HASNOCHILDREN;
	return fk_v(f, IMAP_OK);
}

static void fk_unselect(void *ctx, struct imap_server *s)
{
	struct fake *f = ctx;
	(void)s;
	f->sel = -1;
	f->unselects++;
}

static enum imap_verdict fk_sync(void *ctx, struct imap_server *s, struct imap_changes *r)
{
	struct fake *f = ctx;
	if (f->sel < 0)
		return fk_v(f, IMAP_OK);
	struct fk_box *b = &f->box[f->sel];
	if (!b->exists) {
		imap_server_mailbox_gone(s);
		return fk_v(f, IMAP_NO);
	}
	r->added = malloc(FK_MAXMSG * sizeof *r->added);
	r->expunged = malloc(FK_MAXMSG * sizeof *r->expunged);
	for (size_t i = 0; i < f->n_known; i++) {
		bool found = false;
		for (size_t j = 0; j < b->n; j++)
			found |= b->uids[j] == f->known[i];
		if (!found)
			r->expunged[r->n_expunged++] = f->known[i];
	}
	uint32_t maxk = f->n_known ? f->known[f->n_known - 1] : 0;
	for (size_t j = 0; j < b->n; j++)
		if (b->uids[j] > maxk)
			r->added[r->n_added++] = b->uids[j];
	r->n_recent_added = (uint32_t)r->n_added;
	memcpy(f->known, b->uids, b->n * sizeof b->uids[0]);
	f->n_known = b->n;
	return fk_v(f, IMAP_OK);
}

static enum imap_verdict fk_expunge(void *ctx, struct imap_server *s, const uint32_t *uids,
				    size_t n, struct imap_expunge_result *r)
{
	struct fake *f = ctx;
	(void)s;
	struct fk_box *b = &f->box[f->sel];
	r->uids = malloc(FK_MAXMSG * sizeof *r->uids);
	size_t k = 0;
	for (size_t i = 0; i < b->n; i++) {
		bool want = b->flags[i] & IMAP_F_DELETED;
		if (uids) {
			bool in = false;
			for (size_t j = 0; j < n; j++)
				in |= uids[j] == b->uids[i];
			want = want && in;
		}
		if (want) {
			r->uids[r->n++] = b->uids[i];
			continue;
		}
		b->uids[k] = b->uids[i];
		b->flags[k++] = b->flags[i];
	}
	b->n = k;
	/* the session's own expunges are not reported again by sync */
	memcpy(f->known, b->uids, b->n * sizeof b->uids[0]);
	f->n_known = b->n;
	return fk_v(f, IMAP_OK);
}

static enum imap_verdict fk_copy(void *ctx, struct imap_server *s, const uint32_t *uids, size_t n,
				 const char *dest, bool move, struct imap_copy_result *r)
{
	struct fake *f = ctx;
	struct fk_box *d = fk_find(f, dest), *src = &f->box[f->sel];
	if (!d) {
		imap_server_reply(s, "TRYCREATE", "No such mailbox");
		return fk_v(f, IMAP_NO);
	}
	r->src = malloc(n * sizeof *r->src);
	r->dst = malloc(n * sizeof *r->dst);
	r->uidvalidity = d->uidvalidity;
	for (size_t i = 0; i < n; i++) {
		r->src[i] = uids[i];
		r->dst[i] = d->uidnext;
		fk_msg(d, 0);
	}
	r->n = n;
	if (move) {
		size_t k = 0;
		for (size_t i = 0; i < src->n; i++) {
			bool in = false;
			for (size_t j = 0; j < n; j++)
				in |= uids[j] == src->uids[i];
			if (in)
				continue;
			src->uids[k] = src->uids[i];
			src->flags[k++] = src->flags[i];
		}
		src->n = k;
		memcpy(f->known, src->uids, src->n * sizeof src->uids[0]);
		f->n_known = src->n;
	}
	return fk_v(f, IMAP_OK);
}

static enum imap_verdict fk_ap_begin(void *ctx, struct imap_server *s,
				     const struct imap_append_info *info)
{
	struct fake *f = ctx;
	struct fk_box *b = fk_find(f, info->mailbox);
	if (!b) {
		imap_server_reply(s, "TRYCREATE", "No such mailbox");
		return fk_v(f, IMAP_NO);
	}
	f->ap_box = (int)(b - f->box);
	f->ap_bytes = 0;
	return fk_v(f, IMAP_OK);
}

static bool fk_ap_write(void *ctx, struct imap_server *s, const void *p, size_t n)
{
	struct fake *f = ctx;
	(void)s;
	(void)p;
	f->ap_bytes += n;
	return true;
}

static enum imap_verdict fk_ap_end(void *ctx, struct imap_server *s,
				   const struct imap_append_info *info)
{
	struct fake *f = ctx;
	(void)s;
	if (f->ap_bytes != info->size || f->ap_n >= sizeof f->ap_flags / sizeof f->ap_flags[0])
		return fk_v(f, IMAP_NO);
	f->ap_flags[f->ap_n++] = info->flags;
	return fk_v(f, IMAP_OK);
}

/* All ended messages at once (RFC 3502). */
static enum imap_verdict fk_ap_commit(void *ctx, struct imap_server *s, const char *mailbox,
				      struct imap_append_result *r)
{
	struct fake *f = ctx;
	(void)s;
	struct fk_box *b = &f->box[f->ap_box];
	if (strcmp(b->name, mailbox) != 0)
		return fk_v(f, IMAP_NO);
	r->uidvalidity = b->uidvalidity;
	r->uids = xcalloc(f->ap_n ? f->ap_n : 1, sizeof *r->uids);
	r->n = f->ap_n;
	for (size_t i = 0; i < f->ap_n; i++) {
		r->uids[i] = b->uidnext;
		fk_msg(b, f->ap_flags[i]);
		f->appends++;
	}
	f->ap_n = 0;
	return fk_v(f, IMAP_OK);
}

/* SEARCH/FETCH work: run by the test loop before the resume when async
 * (as a job thread would), else at once. */
static enum imap_verdict fk_offload(void *ctx, struct imap_server *s,
				   void (*work)(struct imap_server *s))
{
	struct fake *f = ctx;
	f->offloads++;
	if (f->async) {
		f->pend_work = work;
		return fk_v(f, IMAP_OK);
	}
	work(s);
	return IMAP_OK;
}

static void fk_ap_abort(void *ctx, struct imap_server *s)
{
	struct fake *f = ctx;
	(void)s;
	f->ap_n = 0;
	f->aborts++;
}

/* Every message is a small text message numbered by its UID, followed by
 * fk_big_body bytes of 64-byte lines "xxx...x\n" (for streaming tests). */
static size_t fk_big_body;

static long fk_read(void *ctx, uint64_t off, size_t len, void *buf)
{
	struct fake *f = ctx;
	uint64_t total = f->text_len + fk_big_body;
	if (off >= total)
		return 0;
	if (len > total - off)
		len = (size_t)(total - off);
	uint8_t *o = buf;
	for (size_t k = 0; k < len; k++) {
		uint64_t p = off + k;
		if (p < f->text_len)
			o[k] = (uint8_t)f->text[p];
		else
			o[k] = (p - f->text_len) % 64 == 63 ? '\n' : 'x';
	}
	return (long)len;
}

static int fk_msg_get(void *ctx, struct imap_server *s, uint32_t uid, unsigned want,
		      struct imap_msg *m)
{
	struct fake *f = ctx;
	(void)s;
	(void)want;
	if (f->sel < 0)
		return -2;
	struct fk_box *b = &f->box[f->sel];
	size_t i = 0;
	while (i < b->n && b->uids[i] != uid)
		i++;
	if (i == b->n)
		return -1;
	f->text_len = (size_t)snprintf(f->text, sizeof f->text,
				       "From: Fred Foobar <foobar@Blurdybloop.example>\n"
				       "Subject: message %u\n"
				       "To: mooch@owatagu.example\n"
				       "Date: Mon, 7 Feb 1994 21:52:25 -0800\n"
				       "Message-Id: <B27397-0100000@Blurdybloop.example>\n"
				       "\n"
				       "Hello Joe, this is message %u.\n",
				       uid, uid);
	uint64_t lines = fk_big_body / 64;
	for (size_t k = 0; k < f->text_len; k++)
		lines += f->text[k] == '\n';
	m->uid = uid;
	m->flags = b->flags[i];
	m->recent = i + 2 >= b->n;
	m->keywords = "";
	m->internaldate = 760689145;
	m->tz_min = -480;
	m->size = f->text_len + fk_big_body;
	m->wire_size = m->size + lines;
	m->read = fk_read;
	m->read_ctx = f;
	f->gets++;
	return 0;
}

static void fk_msg_put(void *ctx, struct imap_server *s, struct imap_msg *m)
{
	struct fake *f = ctx;
	(void)s;
	(void)m;
	f->puts++;
}

static enum imap_verdict fk_store(void *ctx, struct imap_server *s, const uint32_t *uids,
				  size_t n, unsigned op, unsigned flags,
				  const char *const *keywords, size_t n_keywords,
				  uint64_t unchanged_since, uint32_t **failed_r,
				  size_t *n_failed_r)
{
	struct fake *f = ctx;
	(void)unchanged_since;
	if (failed_r)
		*failed_r = NULL;
	if (n_failed_r)
		*n_failed_r = 0;
	for (size_t k = 0; k < n_keywords; k++)
		if (strcmp(keywords[k], "Refused") == 0) {
			/* a store refusal with the app's own text */
			imap_server_reply(s, "LIMIT", "Keyword refused");
			return IMAP_NO;
		}
	struct fk_box *b = &f->box[f->sel];
	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i < b->n; i++)
			if (b->uids[i] == uids[j])
				b->flags[i] = op == 0 ? flags
					      : op == 1 ? b->flags[i] | flags
							: b->flags[i] & ~flags;
	f->stores++;
	return IMAP_OK;
}

static const struct imap_server_ops fk_ops = {
	.msg_get = fk_msg_get,
	.msg_put = fk_msg_put,
	.store = fk_store,
	.login = fk_login,
	.scram_creds = fk_scram,
	.create = fk_create,
	.delete_mbox = fk_delete,
	.rename = fk_rename,
	.subscribe = fk_subscribe,
	.list = fk_list,
	.status = fk_status,
	.select = fk_select,
	.unselect = fk_unselect,
	.sync = fk_sync,
	.expunge = fk_expunge,
	.copy = fk_copy,
	.append_begin = fk_ap_begin,
	.append_write = fk_ap_write,
	.append_end = fk_ap_end,
	.append_commit = fk_ap_commit,
	.append_abort = fk_ap_abort,
	.offload = fk_offload,
};

/* INBOX with 19 messages (8 marked \Deleted, 17..19 unseen), Sent, Trash,
 * Lists/a, Lists/b (b unsubscribed). */
static void fk_init(struct fake *f)
{
	memset(f, 0, sizeof *f);
	f->sel = -1;
	struct fk_box *in = fk_add(f, "INBOX", IMAP_SPECIAL_NONE);
	for (int i = 1; i <= 19; i++)
		fk_msg(in, (i == 8 ? IMAP_F_DELETED : 0) | (i < 17 ? IMAP_F_SEEN : 0));
	fk_add(f, "Sent", IMAP_SPECIAL_SENT);
	fk_add(f, "Trash", IMAP_SPECIAL_TRASH);
	fk_add(f, "Lists/a", IMAP_SPECIAL_NONE);
	fk_add(f, "Lists/b", IMAP_SPECIAL_NONE)->subscribed = false;
	struct fk_box *l = fk_add(f, "Lists", IMAP_SPECIAL_NONE);
	l->noselect = true;
	l->subscribed = false;
}
