/* SPDX-License-Identifier: MIT */
/* IMAP role (RFC 3501 IMAP4rev1, RFC 9051 IMAP4rev2): the application side
 * of the I/O-free IMAP engine (proto/imap/imap_server.h).
 *
 * Password checks (LOGIN, AUTHENTICATE PLAIN/LOGIN) go through
 * daemon/login.c (job threads, the shared failed-login throttle and its
 * delay); SCRAM outcomes are recorded with login_record(). After a login the
 * account's mailbox store is opened (mstore_open on the Maildir root).
 *
 * Every mailbox operation maps onto one mstore_* / mbox_* call and runs
 * synchronously on the loop thread for now. store/mailbox.h asks for job
 * threads; moving the calls there (PENDING verdicts, one mstore per session
 * is already the rule) is the next step: a slow disk or a SEARCH BODY over a
 * large mailbox holds every other connection meanwhile.
 *
 * Untagged updates: a registry (loop thread only) lists the sessions with a
 * mailbox selected; after a change (STORE, EXPUNGE, APPEND, COPY/MOVE, the
 * implicit \Seen of FETCH, SMTP delivery through role_imap_delivered()) the
 * other sessions of the same account and mailbox get
 * imap_server_mailbox_changed(). Files dropped in by other programs are
 * found by a 1 s timer calling mbox_poll_files() (two stat() calls) while a
 * mailbox is selected. */
#include "daemon/role_imap.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/login.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "io/conn.h"
#include "io/evloop.h"
#include "proto/imap/imap_msg.h"
#include "proto/imap/imap_server.h"
#include "store/mailbox.h"
#include "store/maildir.h"

#define POLL_MS 1000
/* After this long without a command a selected session gives its SQLite
 * connection back (mstore_suspend: ~100 KB and two file descriptors); the
 * next command reopens it. IDLE sessions therefore cost little. */
#define SUSPEND_AFTER_MS 5000

struct imap_sess {
	struct session base;
	struct imap_server *eng;
	struct imap_server_settings set;
	char *user;              /* canonical address after login */
	struct login_req *login; /* password check in flight */
	struct ev_timer *delay;  /* throttle delay before a failed SCRAM's answer */
	bool tls;
	struct mstore *ms;
	struct mbox *mb;
	char **sel_kw; /* keywords handed to the engine at SELECT */
	size_t n_sel_kw;
	struct ev_timer *poll;
	struct imap_sess *reg_prev, *reg_next; /* registry while mb is open */
	struct mbox_append *ap;    /* message being written */
	struct mbox_append **aps;  /* ended messages of this APPEND (RFC 3502) */
	size_t n_aps;
	/* the message msg_get handed out */
	struct mbox_meta meta;
	bool have_meta;
	int msg_fd;
	uint32_t msg_uid;
	unsigned fetched, stored, expunged, appended;
	uint64_t last_input_ms; /* last bytes fed to the engine */
	bool suspended;         /* ms gave its database connection back */
};

static struct imap_sess *registry;

/* ---- registry ---------------------------------------------------------------- */

static void reg_add(struct imap_sess *s)
{
	s->reg_prev = NULL;
	s->reg_next = registry;
	if (registry)
		registry->reg_prev = s;
	registry = s;
}

static void reg_del(struct imap_sess *s)
{
	if (s->reg_prev)
		s->reg_prev->reg_next = s->reg_next;
	else if (registry == s)
		registry = s->reg_next;
	if (s->reg_next)
		s->reg_next->reg_prev = s->reg_prev;
	s->reg_prev = s->reg_next = NULL;
}

/* Tell every other session with (user, mailbox) selected. A session may
 * close inside conn_kick, so collect first and kick afterwards. */
static void notify(struct imap_sess *self, const char *user, const char *mailbox)
{
	struct conn *kick[64];
	size_t nk = 0;
	for (struct imap_sess *o = registry; o; o = o->reg_next) {
		if (o == self || !o->mb || !o->user || ascii_strcasecmp(o->user, user) != 0 ||
		    strcmp(mbox_name(o->mb), mailbox) != 0)
			continue;
		imap_server_mailbox_changed(o->eng);
		if (o->base.conn && nk < sizeof kick / sizeof kick[0])
			kick[nk++] = o->base.conn;
	}
	for (size_t i = 0; i < nk; i++)
		conn_kick(kick[i]);
}

static void notify_selected(struct imap_sess *s)
{
	if (s->mb && s->user)
		notify(s, s->user, mbox_name(s->mb));
}

void role_imap_delivered(const char *account)
{
	notify(NULL, account, "INBOX");
}

/* ---- errors -------------------------------------------------------------------- */

static enum imap_verdict fail(struct imap_sess *s, const struct mbox_err *e, const char *what)
{
	static const char *const codes[] = {
		[MBOX_E_OK] = NULL,
		[MBOX_E_NONEXISTENT] = "NONEXISTENT",
		[MBOX_E_ALREADYEXISTS] = "ALREADYEXISTS",
		[MBOX_E_CANNOT] = "CANNOT",
		[MBOX_E_HASCHILDREN] = "HASCHILDREN",
		[MBOX_E_LIMIT] = "LIMIT",
		[MBOX_E_EXPUNGED] = "EXPUNGEISSUED",
		[MBOX_E_SERVERBUG] = "SERVERBUG",
	};
	const char *code = (unsigned)e->code < sizeof codes / sizeof codes[0] ? codes[e->code]
									      : "SERVERBUG";
	if (e->code == MBOX_E_SERVERBUG || !code) {
		log_warnx("%s imap %s failed user=%s: %s", s->base.id, what,
			  s->user ? s->user : "-", e->msg);
		imap_server_reply(s->eng, "SERVERBUG", "%s failed (session %s)", what, s->base.id);
	} else {
		imap_server_reply(s->eng, code, "%s", e->msg[0] ? e->msg : "Refused");
	}
	return IMAP_NO;
}

/* ---- login ------------------------------------------------------------------------ */

static bool open_store(struct imap_sess *s)
{
	char *root = maildir_account_path(s->base.cfg->data_dir, s->user);
	struct mbox_err e = { 0 };
	if (!root || mstore_open(root, &s->ms, &e) < 0) {
		log_warnx("%s imap mstore_open(%s) failed: %s", s->base.id, s->user,
			  root ? e.msg : "bad address");
		free(root);
		imap_server_reply(s->eng, "UNAVAILABLE", "Mail store unavailable (session %s)",
				  s->base.id);
		return false;
	}
	free(root);
	return true;
}

static void delay_done(struct evloop *ev, void *ctx)
{
	struct imap_sess *s = ctx;
	(void)ev;
	s->delay = NULL;
	imap_server_resume(s->eng, IMAP_NO);
	conn_kick(s->base.conn);
}

static void login_done(struct session *base, bool ok, char *canon)
{
	struct imap_sess *s = (struct imap_sess *)base;
	s->login = NULL;
	free(s->user);
	s->user = ok ? canon : NULL;
	if (!ok)
		free(canon);
	if (ok && !s->user)
		ok = false;
	if (ok && !open_store(s))
		ok = false;
	imap_server_resume(s->eng, ok ? IMAP_OK : IMAP_NO);
	conn_kick(s->base.conn);
}

static enum imap_verdict op_login(void *ctx, struct imap_server *eng, const char *mech,
				  const char *user, const char *password)
{
	struct imap_sess *s = ctx;
	(void)eng;
	char m[32];
	size_t i = 0;
	for (; mech && mech[i] && i < sizeof m - 1; i++)
		m[i] = ascii_tolower(mech[i]);
	m[i] = '\0';
	s->login = login_start(&s->base, "imap", LOGIN_PASSWORD, i ? m : "password", user,
			       password, NULL, login_done);
	return IMAP_PENDING;
}

static bool op_scram_creds(void *ctx, const char *user, struct scram_creds *c)
{
	struct imap_sess *s = ctx;
	return accounts_scram_creds(s->base.srv->accounts, user, c);
}

static enum imap_verdict op_sasl_done(void *ctx, struct imap_server *eng, const char *mech,
				      const char *user, bool ok)
{
	struct imap_sess *s = ctx;
	(void)eng;
	unsigned delay = login_record(&s->base, "imap", mech, user, ok);
	if (ok) {
		free(s->user);
		if (!accounts_user_exists(s->base.srv->accounts, user, &s->user))
			s->user = xstrdup(user);
		return open_store(s) ? IMAP_OK : IMAP_NO;
	}
	if (!delay)
		return IMAP_NO;
	s->delay = ev_timer_add(s->base.srv->ev, delay, delay_done, s);
	return IMAP_PENDING;
}

/* ---- account ------------------------------------------------------------------------ */

static enum imap_verdict op_create(void *ctx, struct imap_server *eng, const char *name,
				   enum imap_special sp)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	if (mstore_create(s->ms, name, (enum mbox_special)sp, &e) < 0)
		return fail(s, &e, "CREATE");
	return IMAP_OK;
}

static enum imap_verdict op_delete(void *ctx, struct imap_server *eng, const char *name)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	if (mstore_delete(s->ms, name, &e) < 0)
		return fail(s, &e, "DELETE");
	notify(s, s->user, name);
	return IMAP_OK;
}

static enum imap_verdict op_rename(void *ctx, struct imap_server *eng, const char *from,
				   const char *to)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	if (mstore_rename(s->ms, from, to, &e) < 0)
		return fail(s, &e, "RENAME");
	notify(s, s->user, from);
	return IMAP_OK;
}

static enum imap_verdict op_subscribe(void *ctx, struct imap_server *eng, const char *name,
				      bool on)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	if (mstore_subscribe(s->ms, name, on, &e) < 0)
		return fail(s, &e, on ? "SUBSCRIBE" : "UNSUBSCRIBE");
	return IMAP_OK;
}

static enum imap_verdict op_list(void *ctx, struct imap_server *eng)
{
	struct imap_sess *s = ctx;
	struct mbox_err e = { 0 };
	struct mbox_info *v = NULL;
	size_t n = 0;
	if (mstore_list(s->ms, &v, &n, &e) < 0)
		return fail(s, &e, "LIST");
	for (size_t i = 0; i < n; i++) {
		struct imap_list_entry le = { v[i].name, v[i].attrs, (enum imap_special)v[i].special };
		imap_server_list_add(eng, &le);
	}
	mbox_info_free(v, n);
	return IMAP_OK;
}

static enum imap_verdict op_status(void *ctx, struct imap_server *eng, const char *name,
				   struct imap_status *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	struct mbox_status st;
	memset(&st, 0, sizeof st);
	if (mstore_status(s->ms, name, 0xff, &st, &e) < 0)
		return fail(s, &e, "STATUS");
	r->messages = st.messages;
	r->uidnext = st.uidnext;
	r->uidvalidity = st.uidvalidity;
	r->unseen = st.unseen;
	r->deleted = st.deleted;
	r->recent = st.recent;
	r->size = st.size;
	return IMAP_OK;
}

/* ---- selected mailbox ------------------------------------------------------------------ */

static void poll_fired(struct evloop *ev, void *ctx)
{
	struct imap_sess *s = ctx;
	s->poll = ev_timer_add(ev, POLL_MS, poll_fired, s);
	if (s->mb && mbox_poll_files(s->mb)) {
		s->suspended = false; /* the sync reopens the database */
		imap_server_mailbox_changed(s->eng);
		conn_kick(s->base.conn); /* may close the session: last */
		return;
	}
	if (s->ms && !s->suspended && !s->ap && !s->have_meta &&
	    imap_server_want(s->eng) == PROTO_WANT_READ &&
	    time_mono_ms() - s->last_input_ms >= SUSPEND_AFTER_MS) {
		mstore_suspend(s->ms);
		s->suspended = true;
		/* SQLite's freed page caches stay in malloc's arenas otherwise;
		 * give them back to the kernel, at most once a second. */
		static uint64_t last_trim;
		uint64_t now = time_mono_ms();
		if (now - last_trim >= 1000) {
			last_trim = now;
			malloc_trim(0);
		}
	}
}

static void close_mbox(struct imap_sess *s)
{
	if (s->poll)
		ev_timer_del(s->base.srv->ev, &s->poll);
	if (s->mb)
		reg_del(s);
	mbox_close(&s->mb);
	mbox_strv_free(s->sel_kw, s->n_sel_kw);
	s->sel_kw = NULL;
	s->n_sel_kw = 0;
}

static enum imap_verdict op_select(void *ctx, struct imap_server *eng, const char *name,
				   bool readonly, struct imap_select_info *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	close_mbox(s);
	struct mbox_err e = { 0 };
	if (mbox_open(s->ms, name, readonly, &s->mb, &e) < 0)
		return fail(s, &e, readonly ? "EXAMINE" : "SELECT");
	if (mbox_keywords(s->mb, &s->sel_kw, &s->n_sel_kw, &e) < 0) {
		mbox_close(&s->mb);
		return fail(s, &e, "SELECT");
	}
	uint32_t unseen = 0;
	if (mbox_first_unseen(s->mb, &unseen, &e) < 0)
		unseen = 0;
	size_t n = 0;
	const uint32_t *uids = mbox_uids(s->mb, &n);
	uint32_t recent = 0;
	for (size_t i = 0; i < n; i++)
		recent += mbox_is_recent(s->mb, uids[i]);
	r->uidvalidity = mbox_uidvalidity(s->mb);
	r->uidnext = mbox_uidnext(s->mb);
	r->uids = uids;
	r->n_uids = n;
	r->n_recent = recent;
	r->first_unseen_uid = unseen;
	r->keywords = (const char *const *)s->sel_kw;
	r->n_keywords = s->n_sel_kw;
	r->readonly = mbox_readonly(s->mb);
	r->special = (enum imap_special)mbox_special_use(s->mb);
	if (imap_server_rev2(s->eng)) {
		/* RFC 9051 6.3.2: rev2's SELECT answer has the mailbox's LIST
		 * line; its children attribute comes from the list */
		struct mbox_info *v = NULL;
		size_t nv = 0;
		if (mstore_list(s->ms, &v, &nv, &e) == 0) {
			for (size_t i = 0; i < nv; i++)
				if (strcmp(v[i].name, mbox_name(s->mb)) == 0)
					r->attrs = v[i].attrs & (MBOX_ATTR_HASCHILDREN |
								 MBOX_ATTR_HASNOCHILDREN);
			mbox_info_free(v, nv);
		}
	}
	reg_add(s);
	s->poll = ev_timer_add(s->base.srv->ev, POLL_MS, poll_fired, s);
	return IMAP_OK;
}

static void op_unselect(void *ctx, struct imap_server *eng)
{
	(void)eng;
	close_mbox(ctx);
}

static enum imap_verdict op_sync(void *ctx, struct imap_server *eng, struct imap_changes *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	if (!s->mb)
		return IMAP_OK;
	struct mbox_err e = { 0 };
	struct mbox_changes ch;
	memset(&ch, 0, sizeof ch);
	if (mbox_sync(s->mb, 0, &ch, &e) < 0) {
		if (e.code == MBOX_E_NONEXISTENT) {
			/* deleted or renamed by another session: BYE (the
			 * engine closes); no [ALERT] on every later command */
			log_info("%s imap selected mailbox gone user=%s", s->base.id, s->user);
			imap_server_mailbox_gone(eng);
			return IMAP_NO;
		}
		return fail(s, &e, "sync");
	}
	r->added = ch.added;
	r->n_added = ch.n_added;
	r->n_recent_added = ch.n_recent_added;
	r->expunged = ch.expunged;
	r->n_expunged = ch.n_expunged;
	ch.added = ch.expunged = NULL;
	if (ch.n_changed) {
		r->changed = xcalloc(ch.n_changed, sizeof *r->changed);
		for (size_t i = 0; i < ch.n_changed; i++) {
			r->changed[i].uid = ch.changed[i].uid;
			r->changed[i].flags = ch.changed[i].flags;
			r->changed[i].keywords = ch.changed[i].keywords;
			ch.changed[i].keywords = NULL;
		}
		r->n_changed = ch.n_changed;
	}
	mbox_changes_free(&ch);
	return IMAP_OK;
}

static enum imap_verdict op_expunge(void *ctx, struct imap_server *eng, const uint32_t *uids,
				    size_t n, struct imap_expunge_result *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	if (mbox_expunge(s->mb, uids, n, &r->uids, &r->n, &e) < 0)
		return fail(s, &e, "EXPUNGE");
	s->expunged += (unsigned)r->n;
	if (r->n)
		notify_selected(s);
	return IMAP_OK;
}

static enum imap_verdict op_copy(void *ctx, struct imap_server *eng, const uint32_t *uids,
				 size_t n, const char *dest, bool move, struct imap_copy_result *r)
{
	struct imap_sess *s = ctx;
	struct mbox_err e = { 0 };
	if (mbox_copy(s->mb, uids, n, dest, move, &r->uidvalidity, &r->src, &r->dst, &r->n, &e) <
	    0) {
		if (e.code == MBOX_E_NONEXISTENT) {
			imap_server_reply(eng, "TRYCREATE", "No such mailbox");
			return IMAP_NO;
		}
		return fail(s, &e, move ? "MOVE" : "COPY");
	}
	notify(s, s->user, dest);
	if (move)
		notify_selected(s);
	return IMAP_OK;
}

static enum imap_verdict op_append_begin(void *ctx, struct imap_server *eng,
					 const struct imap_append_info *info)
{
	struct imap_sess *s = ctx;
	struct mbox_err e = { 0 };
	if (mstore_append_begin(s->ms, info->mailbox, &s->ap, &e) < 0) {
		if (e.code == MBOX_E_NONEXISTENT) {
			imap_server_reply(eng, "TRYCREATE", "No such mailbox");
			return IMAP_NO;
		}
		return fail(s, &e, "APPEND");
	}
	return IMAP_OK;
}

static bool op_append_write(void *ctx, struct imap_server *eng, const void *p, size_t n)
{
	struct imap_sess *s = ctx;
	struct mbox_err e = { 0 };
	if (!s->ap || mbox_append_write(s->ap, p, n, &e) < 0) {
		fail(s, &e, "APPEND");
		(void)eng;
		return false;
	}
	return true;
}

static enum imap_verdict op_append_end(void *ctx, struct imap_server *eng,
				       const struct imap_append_info *info)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	if (!s->ap)
		return IMAP_NO;
	if (mbox_append_finish(s->ap, info->flags, info->keywords, info->n_keywords,
			       info->internaldate, info->tz_min, &e) < 0) {
		mbox_append_abort(&s->ap);
		return fail(s, &e, "APPEND");
	}
	s->aps = xrealloc(s->aps, (s->n_aps + 1) * sizeof *s->aps);
	s->aps[s->n_aps++] = s->ap;
	s->ap = NULL;
	return IMAP_OK;
}

static void append_drop(struct imap_sess *s)
{
	mbox_append_abort(&s->ap);
	for (size_t i = 0; i < s->n_aps; i++)
		mbox_append_abort(&s->aps[i]);
	free(s->aps);
	s->aps = NULL;
	s->n_aps = 0;
}

static enum imap_verdict op_append_commit(void *ctx, struct imap_server *eng, const char *mailbox,
					  struct imap_append_result *r)
{
	struct imap_sess *s = ctx;
	struct mbox_err e = { 0 };
	if (s->n_aps == 0)
		return IMAP_NO;
	size_t n = s->n_aps;
	uint32_t *uids = xcalloc(n, sizeof *uids);
	int rc = mbox_append_commit_all(s->aps, n, &r->uidvalidity, uids, &e);
	free(s->aps); /* commit_all freed the handles */
	s->aps = NULL;
	s->n_aps = 0;
	if (rc < 0) {
		free(uids);
		if (e.code == MBOX_E_NONEXISTENT) {
			imap_server_reply(eng, "TRYCREATE", "No such mailbox");
			return IMAP_NO;
		}
		return fail(s, &e, "APPEND");
	}
	r->uids = uids;
	r->n = n;
	s->appended += (unsigned)n;
	notify(s, s->user, mailbox);
	return IMAP_OK;
}

static void op_append_abort(void *ctx, struct imap_server *eng)
{
	(void)eng;
	append_drop(ctx);
}

/* ---- messages --------------------------------------------------------------------------- */

static long msg_read(void *ctx, uint64_t off, size_t len, void *buf)
{
	struct imap_sess *s = ctx;
	if (s->msg_fd < 0) {
		struct mbox_err e = { 0 };
		if (!s->mb || mbox_msg_open(s->mb, s->msg_uid, &s->msg_fd, &e) < 0) {
			s->msg_fd = -1;
			return -1;
		}
	}
	ssize_t n;
	do
		n = pread(s->msg_fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : (long)n;
}

static void msg_release(struct imap_sess *s)
{
	if (s->have_meta)
		mbox_meta_free(&s->meta);
	s->have_meta = false;
	if (s->msg_fd >= 0)
		close(s->msg_fd);
	s->msg_fd = -1;
}

static int op_msg_get(void *ctx, struct imap_server *eng, uint32_t uid, unsigned want,
		      struct imap_msg *m)
{
	struct imap_sess *s = ctx;
	(void)eng;
	msg_release(s);
	if (!s->mb)
		return -2;
	struct mbox_err e = { 0 };
	/* enum imap_fetch_want's first four bits are enum mbox_want's */
	if (mbox_meta(s->mb, uid, want & 0xf, &s->meta, &e) < 0) {
		if (e.code == MBOX_E_EXPUNGED)
			return -1;
		log_warnx("%s imap mbox_meta(%u) failed: %s", s->base.id, uid, e.msg);
		return -2;
	}
	s->have_meta = true;
	s->msg_uid = uid;
	const struct mbox_meta *x = &s->meta;
	m->uid = uid;
	m->flags = x->flags;
	m->recent = mbox_is_recent(s->mb, uid);
	m->keywords = x->keywords;
	m->internaldate = x->internaldate;
	m->tz_min = x->tz_min;
	m->size = x->size;
	m->wire_size = x->wire_size;
	m->modseq = x->modseq;
	m->envelope = x->envelope;
	m->body = x->body;
	m->bodystructure = x->bodystructure;
	m->mime = x->mime;
	m->mime_len = x->mime_len;
	m->read = msg_read;
	m->read_ctx = s;
	s->fetched++;
	return 0;
}

static void op_msg_put(void *ctx, struct imap_server *eng, struct imap_msg *m)
{
	(void)eng;
	(void)m;
	msg_release(ctx);
}

static enum imap_verdict op_store(void *ctx, struct imap_server *eng, const uint32_t *uids,
				  size_t n, unsigned op, unsigned flags,
				  const char *const *keywords, size_t n_keywords,
				  uint64_t unchanged_since, uint32_t **failed_r, size_t *n_failed_r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct mbox_err e = { 0 };
	uint32_t *failed = NULL;
	size_t nf = 0;
	if (mbox_store(s->mb, uids, n, (enum mbox_flag_op)op, flags, keywords, n_keywords,
		       unchanged_since, &failed, &nf, &e) < 0)
		return fail(s, &e, "STORE");
	if (failed_r) {
		*failed_r = failed;
		*n_failed_r = nf;
	} else {
		free(failed);
	}
	s->stored += (unsigned)n;
	notify_selected(s);
	return IMAP_OK;
}

/* ---- logging ------------------------------------------------------------------------------ */

static void op_client_id(void *ctx, struct imap_server *eng, const char *const *kv, size_t n)
{
	struct imap_sess *s = ctx;
	(void)eng;
	struct buf b;
	buf_init(&b, 4096);
	for (size_t i = 0; i + 1 < n && b.len < 1024; i += 2) {
		char k[64], v[200];
		log_escape(kv[i], strlen(kv[i]), k, sizeof k);
		if (kv[i + 1])
			log_escape(kv[i + 1], strlen(kv[i + 1]), v, sizeof v);
		else
			snprintf(v, sizeof v, "NIL");
		buf_xprintf(&b, " %s=\"%s\"", k, v);
	}
	log_info("%s imap id%.*s", s->base.id, (int)b.len, b.data ? (const char *)b.data : "");
	buf_deinit(&b);
}

static void op_log_refusal(void *ctx, struct imap_server *eng, const char *cmd, const char *text)
{
	struct imap_sess *s = ctx;
	(void)eng;
	char c[64], t[300];
	log_escape(cmd, strlen(cmd), c, sizeof c);
	log_escape(text, strlen(text), t, sizeof t);
	log_info("%s imap error client=%s command=\"%s\" result=\"%s\"", s->base.id, s->base.peer,
		 c, t);
}

static const struct imap_server_ops imap_ops = {
	.login = op_login,
	.scram_creds = op_scram_creds,
	.sasl_done = op_sasl_done,
	.create = op_create,
	.delete_mbox = op_delete,
	.rename = op_rename,
	.subscribe = op_subscribe,
	.list = op_list,
	.status = op_status,
	.select = op_select,
	.unselect = op_unselect,
	.sync = op_sync,
	.expunge = op_expunge,
	.copy = op_copy,
	.append_begin = op_append_begin,
	.append_write = op_append_write,
	.append_end = op_append_end,
	.append_commit = op_append_commit,
	.append_abort = op_append_abort,
	.msg_get = op_msg_get,
	.msg_put = op_msg_put,
	.store = op_store,
	.client_id = op_client_id,
	.log_refusal = op_log_refusal,
};

/* ---- connection --------------------------------------------------------------------------- */

static size_t sess_feed(void *p, const uint8_t *data, size_t n)
{
	struct imap_sess *s = p;
	s->last_input_ms = time_mono_ms();
	s->suspended = false; /* any command may reopen the store */
	return imap_server_feed(s->eng, data, n);
}
static enum proto_want sess_want(void *p)
{
	return imap_server_want(((struct imap_sess *)p)->eng);
}
static struct buf *sess_output(void *p)
{
	return imap_server_output(((struct imap_sess *)p)->eng);
}
static void sess_tls_started(void *p, const char *version, const char *cipher)
{
	struct imap_sess *s = p;
	s->tls = true;
	log_info("%s imap tls version=%s cipher=%s", s->base.id, version, cipher);
	imap_server_tls_started(s->eng);
}
static void sess_timeout(void *p)
{
	struct imap_sess *s = p;
	log_info("%s imap timeout client=%s", s->base.id, s->base.peer);
	imap_server_timeout(s->eng);
}
static void sess_shutdown(void *p)
{
	imap_server_shutdown(((struct imap_sess *)p)->eng);
}
static void sess_closed(void *p, const char *reason)
{
	struct imap_sess *s = p;
	log_info("%s imap disconnect client=%s user=%s reason=%s fetched=%u stored=%u "
		 "expunged=%u appended=%u",
		 s->base.id, s->base.peer, s->user ? s->user : "-", reason ? reason : "close",
		 s->fetched, s->stored, s->expunged, s->appended);
	s->base.conn = NULL;
	session_destroy(&s->base);
}

static void imap_sess_free(struct session *base)
{
	struct imap_sess *s = (struct imap_sess *)base;
	login_cancel(&s->login);
	if (s->delay)
		ev_timer_del(s->base.srv->ev, &s->delay);
	/* aborts an APPEND in flight and unselects (close_mbox) */
	imap_server_free(&s->eng);
	msg_release(s);
	append_drop(s);
	close_mbox(s);
	mstore_close(&s->ms);
	free(s->user);
}

static const struct proto_session_ops conn_ops = {
	.feed = sess_feed,
	.want = sess_want,
	.output = sess_output,
	.tls_started = sess_tls_started,
	.timeout = sess_timeout,
	.shutdown = sess_shutdown,
	.closed = sess_closed,
};

void role_imap_accept(struct server *srv, const struct server_listener *sl, int fd,
		      const char *peer, int port)
{
	struct imap_sess *s = xcalloc(1, sizeof *s);
	session_init(&s->base, srv, "imap", peer, port, imap_sess_free);
	s->msg_fd = -1;
	const struct config *cfg = s->base.cfg;
	bool implicit = sl->proto == LP_IMAPS;
	s->set = (struct imap_server_settings){
		.hostname = cfg->hostname,
		.plaintext_auth = session_plaintext_ok(&s->base),
		.starttls_offered = s->base.tls != NULL,
		.tls_active = implicit,
		.literal_plus = true,
		.append_limit = cfg->max_message_size,
	};
	s->eng = imap_server_new(&s->set, &imap_ops, s);
	log_info("%s imap connect client=%s port=%d listener=%s", s->base.id, peer, port,
		 listener_proto_name(sl->proto));
	imap_server_start(s->eng);
	struct conn_settings cs = {
		.idle_ms = (unsigned)(cfg->imap_timeout * 1000),
		.max_input = 128 * 1024,
		.tls = s->base.tls,
		.implicit_tls = implicit,
		.tls_handshake_ms = 30000,
	};
	s->base.conn = conn_new(srv->ev, fd, &cs, &conn_ops, s);
	if (!s->base.conn)
		session_destroy(&s->base);
}
