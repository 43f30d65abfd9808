/* SPDX-License-Identifier: MIT */
/* IMAP role (RFC 3501 IMAP4rev1, RFC 9051 IMAP4rev2): the application side
 * of the I/O-free IMAP engine (proto/imap/imap_server.h).
 *
 * Password checks (LOGIN, AUTHENTICATE PLAIN/LOGIN) go through
 * daemon/login.c (job threads, the shared failed-login throttle and its
 * delay); SCRAM outcomes are recorded with login_record(). After a login the
 * account's mailbox store is opened (mstore_open on the Maildir root, on a
 * job thread).
 *
 * Every mailbox operation maps onto one mstore_* / mbox_* call. The slow
 * ones run on IMAP's job threads with PENDING verdicts (see "jobs" below):
 * opening the store after login, SELECT/EXAMINE, STATUS, LIST, CREATE/DELETE/RENAME/SUBSCRIBE, sync,
 * EXPUNGE, COPY/MOVE, APPEND's fsync and commit, and the message loops of
 * STORE, SEARCH and FETCH with bodies (ops->offload). APPEND's begin and
 * writes, and small FETCH/SEARCH stay on the loop thread.
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
#include <pthread.h>
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
#include "io/jobs.h"
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

	/* the job in flight (see "jobs" below) */
	bool busy, dead;
	bool deferred_changed, deferred_timeout, deferred_unselect, deferred_abort;
	void (*job_run)(struct imap_sess *s);
	enum imap_verdict (*job_finish)(struct imap_sess *s);
	void (*job_drop)(struct imap_sess *s);
	int j_rc;
	struct mbox_err j_err;
	const char *j_what;   /* for fail() */
	const char *j_notify; /* mailbox to notify about on success */
	char *j_name, *j_name2;
	uint32_t *j_uids;
	size_t j_n;
	bool j_flag, j_rev2;
	unsigned j_special, j_attrs;
	uint32_t j_unseen, j_recent, j_uidvalidity;
	void *j_res; /* the engine's result structure */
	struct mbox_status j_st;
	struct mbox_changes j_ch;
	struct mbox_info *j_list;
	size_t j_nlist;
	uint32_t *j_out, *j_out2;
	size_t j_nout;
	struct imap_sess *done_next; /* on the finished-jobs list */
	uint64_t seen_modseq; /* mbox_seen_modseq after the last select/sync */
	uint64_t pruned;      /* expunge records pruned up to this modseq */
	uint64_t j_floor;     /* prune up to this after the job's expunge, 0: no */
	void (*j_work)(struct imap_server *eng); /* offloaded engine work */
	bool j_stored; /* the work stored flags: notify the others at its end */
};

static struct imap_sess *registry;
static unsigned imap_opening; /* SELECT/EXAMINE jobs in flight */

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
		if (o->busy) {
			/* its job has the engine waiting: told at the job's end */
			o->deferred_changed = true;
			continue;
		}
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

/* Expunge records at or below the returned modseq are needed by no
 * session of this process (the only user of the index): the smallest
 * seen_modseq of the sessions with s's mailbox selected, matched by
 * mbox_id and not by name (a session that selected it under a name it was
 * renamed away from and back to still syncs from its records; copies taken on
 * this thread after their jobs, so never above the real value). 0 while a
 * SELECT is in flight (its starting point is not known yet) or when
 * nothing new can be pruned. See mbox_prune_expunged. */
static uint64_t prune_floor(struct imap_sess *s)
{
	if (imap_opening || !s->mb || !s->user)
		return 0;
	uint64_t floor = s->seen_modseq;
	for (struct imap_sess *o = registry; o; o = o->reg_next) {
		if (o == s || !o->mb || !o->user || ascii_strcasecmp(o->user, s->user) != 0 ||
		    mbox_id(o->mb) != mbox_id(s->mb))
			continue;
		if (o->seen_modseq < floor)
			floor = o->seen_modseq;
	}
	return floor > s->pruned ? floor : 0;
}

void role_imap_delivered(const char *account)
{
	notify(NULL, account, "INBOX");
}

static void close_mbox(struct imap_sess *s);
static void append_drop(struct imap_sess *s);
static void job_args_free(struct imap_sess *s);
static enum imap_verdict submit(struct imap_sess *s, void (*run)(struct imap_sess *),
				enum imap_verdict (*finish)(struct imap_sess *),
				void (*drop)(struct imap_sess *));

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

/* Job: open the account's store (creates a new account's Maildir, index
 * and special-use mailboxes: directories, SQLite, fsyncs). */
static void run_open(struct imap_sess *s)
{
	s->j_rc = mstore_open(s->j_name, &s->ms, &s->j_err);
}

static enum imap_verdict finish_open(struct imap_sess *s)
{
	job_args_free(s);
	if (s->j_rc < 0) {
		log_warnx("%s imap mstore_open(%s) failed: %s", s->base.id, s->user, s->j_err.msg);
		imap_server_reply(s->eng, "UNAVAILABLE", "Mail store unavailable (session %s)",
				  s->base.id);
		return IMAP_NO;
	}
	return IMAP_OK;
}

/* After a successful login: PENDING (the job resumes the engine) or NO. */
static enum imap_verdict open_store(struct imap_sess *s)
{
	char *root = maildir_account_path(s->base.cfg->data_dir, s->user);
	if (!root) {
		log_warnx("%s imap no mail store for %s: bad address", s->base.id, s->user);
		imap_server_reply(s->eng, "UNAVAILABLE", "Mail store unavailable (session %s)",
				  s->base.id);
		return IMAP_NO;
	}
	s->j_name = root;
	return submit(s, run_open, finish_open, job_args_free);
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
	if (ok && open_store(s) == IMAP_PENDING)
		return; /* the job resumes the engine */
	imap_server_resume(s->eng, IMAP_NO);
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
		return open_store(s);
	}
	if (!delay)
		return IMAP_NO;
	s->delay = ev_timer_add(s->base.srv->ev, delay, delay_done, s);
	return IMAP_PENDING;
}

/* ---- jobs ---------------------------------------------------------------------------- */

/* The slow mailbox calls run on IMAP's own pool of job threads (so a long
 * SEARCH BODY never queues behind, or in front of, password checks on
 * srv->jobs). One job per session at a time: the engine waits for the
 * PENDING verdict before reading more, so s->ms and s->mb are used by one
 * thread at a time. While s->busy the loop thread leaves them alone: the
 * 1 s poll and the idle suspend skip the session, notifications from other
 * sessions and a connection timeout are kept for the job's end, and a
 * connection that closes meanwhile only marks the session; the job's done
 * callback destroys it. run() touches only the store and the session's job
 * fields; finish() (loop thread) turns its outcome into the verdict,
 * replies and notifications. */
#define IMAP_JOB_THREADS 2

/* io/jobs delivers done() callbacks in submission order, so a quick NOOP
 * sync would wait for the end of another session's SEARCH BODY submitted
 * before it. IMAP sessions are independent of each other: their jobs have
 * no done() for io/jobs; run() puts the session on this list instead and
 * wakes the loop, which finishes each session as soon as its own job has
 * returned.
 *
 * The pool exists while IMAP sessions do: created by the first one, and
 * joined (jobs_free) when the last one is freed (no job can be in flight
 * then: a session with a job is freed only at the job's end), so that no
 * worker outlives the sessions; the server frees the event loop, and with
 * it the pool's wakeup, after the last session at shutdown. */
static struct jobs *imap_jobs;
static struct ev_async *imap_jobs_async; /* the completion list's wakeup */
static unsigned imap_live;               /* sessions not yet freed */
static pthread_mutex_t imap_done_mu = PTHREAD_MUTEX_INITIALIZER;
static struct imap_sess *imap_done_head, *imap_done_tail; /* linked by done_next */

static void job_done_cb(struct imap_sess *s);

static void job_run_cb(void *ctx)
{
	struct imap_sess *s = ctx;
	memset(&s->j_err, 0, sizeof s->j_err);
	s->j_rc = 0;
	s->job_run(s);
	pthread_mutex_lock(&imap_done_mu);
	s->done_next = NULL;
	if (imap_done_tail)
		imap_done_tail->done_next = s;
	else
		imap_done_head = s;
	imap_done_tail = s;
	pthread_mutex_unlock(&imap_done_mu);
	ev_async_notify(imap_jobs_async);
}

/* Loop thread: finish every session whose job has returned. */
static void jobs_wakeup(struct evloop *ev, void *ctx)
{
	(void)ev;
	(void)ctx;
	pthread_mutex_lock(&imap_done_mu);
	struct imap_sess *list = imap_done_head;
	imap_done_head = imap_done_tail = NULL;
	pthread_mutex_unlock(&imap_done_mu);
	while (list) {
		struct imap_sess *s = list;
		list = s->done_next;
		job_done_cb(s);
	}
}

static void job_done_cb(struct imap_sess *s)
{
	s->busy = false;
	if (s->dead) {
		/* the connection closed while the job ran: drop its results */
		s->job_drop(s);
		session_destroy(&s->base);
		return;
	}
	enum imap_verdict v = s->job_finish(s);
	imap_server_resume(s->eng, v);
	if (!s->busy) {
		/* what happened while the store was busy */
		if (s->deferred_unselect) {
			s->deferred_unselect = false;
			close_mbox(s);
		}
		if (s->deferred_changed) {
			s->deferred_changed = false;
			imap_server_mailbox_changed(s->eng);
		}
		if (s->deferred_abort) {
			s->deferred_abort = false;
			append_drop(s);
		}
		if (s->deferred_timeout) {
			s->deferred_timeout = false;
			imap_server_timeout(s->eng);
		}
	}
	if (s->base.conn)
		conn_kick(s->base.conn); /* may close the session: last */
}

static void job_nothing(struct imap_sess *s)
{
	(void)s;
}

static enum imap_verdict submit(struct imap_sess *s, void (*run)(struct imap_sess *),
				enum imap_verdict (*finish)(struct imap_sess *),
				void (*drop)(struct imap_sess *))
{
	ASSERT(!s->busy);
	s->busy = true;
	s->job_run = run;
	s->job_finish = finish;
	s->job_drop = drop ? drop : job_nothing;
	jobs_submit(imap_jobs, job_run_cb, NULL, s);
	return IMAP_PENDING;
}

static void job_args_free(struct imap_sess *s)
{
	free(s->j_name);
	free(s->j_name2);
	free(s->j_uids);
	s->j_name = s->j_name2 = NULL;
	s->j_uids = NULL;
	s->j_n = 0;
}

static void set_uids(struct imap_sess *s, const uint32_t *uids, size_t n)
{
	free(s->j_uids);
	s->j_uids = NULL;
	s->j_n = n;
	if (uids) {
		s->j_uids = xmalloc((n ? n : 1) * sizeof *uids);
		memcpy(s->j_uids, uids, n * sizeof *uids);
	}
}

/* A plain "0 or -1 with j_err" outcome. */
static enum imap_verdict finish_simple(struct imap_sess *s)
{
	enum imap_verdict v = s->j_rc < 0 ? fail(s, &s->j_err, s->j_what) : IMAP_OK;
	if (v == IMAP_OK && s->j_notify)
		notify(s, s->user, s->j_notify);
	s->j_notify = NULL;
	job_args_free(s);
	return v;
}

/* ---- account ------------------------------------------------------------------------ */

static void run_create(struct imap_sess *s)
{
	s->j_rc = mstore_create(s->ms, s->j_name, (enum mbox_special)s->j_special, &s->j_err);
}

static enum imap_verdict op_create(void *ctx, struct imap_server *eng, const char *name,
				   enum imap_special sp)
{
	struct imap_sess *s = ctx;
	(void)eng;
	s->j_name = xstrdup(name);
	s->j_special = (unsigned)sp;
	s->j_what = "CREATE";
	return submit(s, run_create, finish_simple, job_args_free);
}

static void run_delete(struct imap_sess *s)
{
	s->j_rc = mstore_delete(s->ms, s->j_name, &s->j_err);
}

static enum imap_verdict op_delete(void *ctx, struct imap_server *eng, const char *name)
{
	struct imap_sess *s = ctx;
	(void)eng;
	s->j_name = xstrdup(name);
	s->j_what = "DELETE";
	s->j_notify = s->j_name;
	return submit(s, run_delete, finish_simple, job_args_free);
}

static void run_rename(struct imap_sess *s)
{
	s->j_rc = mstore_rename(s->ms, s->j_name, s->j_name2, &s->j_err);
}

static enum imap_verdict op_rename(void *ctx, struct imap_server *eng, const char *from,
				   const char *to)
{
	struct imap_sess *s = ctx;
	(void)eng;
	s->j_name = xstrdup(from);
	s->j_name2 = xstrdup(to);
	s->j_what = "RENAME";
	s->j_notify = s->j_name;
	return submit(s, run_rename, finish_simple, job_args_free);
}

static void run_subscribe(struct imap_sess *s)
{
	s->j_rc = mstore_subscribe(s->ms, s->j_name, s->j_flag, &s->j_err);
}

static enum imap_verdict op_subscribe(void *ctx, struct imap_server *eng, const char *name,
				      bool on)
{
	struct imap_sess *s = ctx;
	(void)eng;
	s->j_name = xstrdup(name);
	s->j_flag = on;
	s->j_what = on ? "SUBSCRIBE" : "UNSUBSCRIBE";
	return submit(s, run_subscribe, finish_simple, job_args_free);
}

static void run_list(struct imap_sess *s)
{
	s->j_rc = mstore_list(s->ms, &s->j_list, &s->j_nlist, &s->j_err);
}

static void drop_list(struct imap_sess *s)
{
	mbox_info_free(s->j_list, s->j_nlist);
	s->j_list = NULL;
	s->j_nlist = 0;
}

static enum imap_verdict finish_list(struct imap_sess *s)
{
	if (s->j_rc < 0)
		return fail(s, &s->j_err, "LIST");
	for (size_t i = 0; i < s->j_nlist; i++) {
		struct mbox_info *v = &s->j_list[i];
		struct imap_list_entry le = { v->name, v->attrs, (enum imap_special)v->special };
		imap_server_list_add(s->eng, &le);
	}
	drop_list(s);
	return IMAP_OK;
}

static enum imap_verdict op_list(void *ctx, struct imap_server *eng)
{
	struct imap_sess *s = ctx;
	(void)eng;
	return submit(s, run_list, finish_list, drop_list);
}

static void run_status(struct imap_sess *s)
{
	memset(&s->j_st, 0, sizeof s->j_st);
	s->j_rc = mstore_status(s->ms, s->j_name, 0xff, &s->j_st, &s->j_err);
}

static enum imap_verdict finish_status(struct imap_sess *s)
{
	job_args_free(s);
	if (s->j_rc < 0)
		return fail(s, &s->j_err, "STATUS");
	struct imap_status *r = s->j_res;
	r->messages = s->j_st.messages;
	r->uidnext = s->j_st.uidnext;
	r->uidvalidity = s->j_st.uidvalidity;
	r->unseen = s->j_st.unseen;
	r->deleted = s->j_st.deleted;
	r->recent = s->j_st.recent;
	r->size = s->j_st.size;
	return IMAP_OK;
}

static enum imap_verdict op_status(void *ctx, struct imap_server *eng, const char *name,
				   struct imap_status *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	s->j_name = xstrdup(name);
	s->j_res = r;
	return submit(s, run_status, finish_status, job_args_free);
}

/* ---- selected mailbox ------------------------------------------------------------------ */

static void poll_fired(struct evloop *ev, void *ctx)
{
	struct imap_sess *s = ctx;
	s->poll = ev_timer_add(ev, POLL_MS, poll_fired, s);
	if (s->busy)
		return; /* a job has the store; the end of its command syncs anyway */
	if (s->mb && mbox_poll_files(s->mb)) {
		s->suspended = false; /* the sync reopens the database */
		imap_server_mailbox_changed(s->eng);
		conn_kick(s->base.conn); /* may close the session: last */
		return;
	}
	if (s->ms && !s->suspended && !s->ap && !s->n_aps && !s->have_meta &&
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

/* Job: open the mailbox (the index sync of SELECT) and gather the answer. */
static void run_select(struct imap_sess *s)
{
	struct mbox_err *e = &s->j_err;
	s->j_rc = -1;
	if (mbox_open(s->ms, s->j_name, s->j_flag, &s->mb, e) < 0)
		return;
	if (mbox_keywords(s->mb, &s->sel_kw, &s->n_sel_kw, e) < 0) {
		mbox_close(&s->mb);
		return;
	}
	struct mbox_err e2 = { 0 };
	if (mbox_first_unseen(s->mb, &s->j_unseen, &e2) < 0)
		s->j_unseen = 0;
	size_t n = 0;
	const uint32_t *uids = mbox_uids(s->mb, &n);
	s->j_recent = 0;
	for (size_t i = 0; i < n; i++)
		s->j_recent += mbox_is_recent(s->mb, uids[i]);
	s->j_attrs = 0;
	if (s->j_rev2) {
		/* RFC 9051 6.3.2: rev2's SELECT answer has the mailbox's LIST
		 * line; its children attribute comes from the list */
		struct mbox_info *v = NULL;
		size_t nv = 0;
		if (mstore_list(s->ms, &v, &nv, &e2) == 0) {
			for (size_t i = 0; i < nv; i++)
				if (strcmp(v[i].name, mbox_name(s->mb)) == 0)
					s->j_attrs = v[i].attrs & (MBOX_ATTR_HASCHILDREN |
								   MBOX_ATTR_HASNOCHILDREN);
			mbox_info_free(v, nv);
		}
	}
	s->j_rc = 0;
}

static void drop_select(struct imap_sess *s)
{
	imap_opening--;
	close_mbox(s); /* never registered: reg_del is a no-op */
	job_args_free(s);
}

static enum imap_verdict finish_select(struct imap_sess *s)
{
	bool ro = s->j_flag;
	imap_opening--;
	job_args_free(s);
	if (s->j_rc < 0)
		return fail(s, &s->j_err, ro ? "EXAMINE" : "SELECT");
	s->seen_modseq = mbox_seen_modseq(s->mb);
	s->pruned = 0;
	struct imap_select_info *r = s->j_res;
	size_t n = 0;
	r->uids = mbox_uids(s->mb, &n);
	r->n_uids = n;
	r->uidvalidity = mbox_uidvalidity(s->mb);
	r->uidnext = mbox_uidnext(s->mb);
	r->n_recent = s->j_recent;
	r->first_unseen_uid = s->j_unseen;
	r->keywords = (const char *const *)s->sel_kw;
	r->n_keywords = s->n_sel_kw;
	r->readonly = mbox_readonly(s->mb);
	r->special = (enum imap_special)mbox_special_use(s->mb);
	r->attrs = s->j_attrs;
	reg_add(s);
	s->poll = ev_timer_add(s->base.srv->ev, POLL_MS, poll_fired, s);
	return IMAP_OK;
}

static enum imap_verdict op_select(void *ctx, struct imap_server *eng, const char *name,
				   bool readonly, struct imap_select_info *r)
{
	struct imap_sess *s = ctx;
	close_mbox(s);
	s->j_name = xstrdup(name);
	s->j_flag = readonly;
	s->j_rev2 = imap_server_rev2(eng);
	s->j_res = r;
	imap_opening++;
	return submit(s, run_select, finish_select, drop_select);
}

static void op_unselect(void *ctx, struct imap_server *eng)
{
	struct imap_sess *s = ctx;
	(void)eng;
	if (s->busy) {
		/* the engine ended meanwhile (timeout): after the job */
		s->deferred_unselect = true;
		return;
	}
	close_mbox(s);
}

static void run_sync(struct imap_sess *s)
{
	memset(&s->j_ch, 0, sizeof s->j_ch);
	s->j_rc = mbox_sync(s->mb, 0, &s->j_ch, &s->j_err);
}

static void drop_sync(struct imap_sess *s)
{
	mbox_changes_free(&s->j_ch);
}

static enum imap_verdict finish_sync(struct imap_sess *s)
{
	if (s->j_rc < 0) {
		if (s->j_err.code == MBOX_E_NONEXISTENT) {
			/* deleted or renamed by another session: BYE (the
			 * engine closes); no [ALERT] on every later command */
			log_info("%s imap selected mailbox gone user=%s", s->base.id, s->user);
			imap_server_mailbox_gone(s->eng);
			return IMAP_NO;
		}
		return fail(s, &s->j_err, "sync");
	}
	s->seen_modseq = mbox_seen_modseq(s->mb);
	struct imap_changes *r = s->j_res;
	struct mbox_changes *ch = &s->j_ch;
	r->added = ch->added;
	r->n_added = ch->n_added;
	r->n_recent_added = ch->n_recent_added;
	r->expunged = ch->expunged;
	r->n_expunged = ch->n_expunged;
	ch->added = ch->expunged = NULL;
	if (ch->n_changed) {
		r->changed = xcalloc(ch->n_changed, sizeof *r->changed);
		for (size_t i = 0; i < ch->n_changed; i++) {
			r->changed[i].uid = ch->changed[i].uid;
			r->changed[i].flags = ch->changed[i].flags;
			r->changed[i].keywords = ch->changed[i].keywords;
			ch->changed[i].keywords = NULL;
		}
		r->n_changed = ch->n_changed;
	}
	mbox_changes_free(ch);
	return IMAP_OK;
}

static enum imap_verdict op_sync(void *ctx, struct imap_server *eng, struct imap_changes *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	if (!s->mb)
		return IMAP_OK;
	s->suspended = false;
	s->j_res = r;
	return submit(s, run_sync, finish_sync, drop_sync);
}

/* After an expunge or a move (which add records): drop the records no
 * session needs any more (j_floor from prune_floor). A failure only costs
 * space. */
static void run_prune(struct imap_sess *s)
{
	if (s->j_rc < 0 || !s->j_floor)
		return;
	struct mbox_err e = { 0 };
	if (mbox_prune_expunged(s->mb, s->j_floor, &e) < 0)
		s->j_floor = 0;
}

static void run_expunge(struct imap_sess *s)
{
	s->j_out = NULL;
	s->j_nout = 0;
	s->j_rc = mbox_expunge(s->mb, s->j_uids, s->j_n, &s->j_out, &s->j_nout, &s->j_err);
	run_prune(s);
}

static void drop_out(struct imap_sess *s)
{
	free(s->j_out);
	free(s->j_out2);
	s->j_out = s->j_out2 = NULL;
	s->j_nout = 0;
	job_args_free(s);
}

static enum imap_verdict finish_expunge(struct imap_sess *s)
{
	job_args_free(s);
	if (s->j_rc < 0)
		return fail(s, &s->j_err, "EXPUNGE");
	if (s->j_floor)
		s->pruned = s->j_floor;
	struct imap_expunge_result *r = s->j_res;
	r->uids = s->j_out;
	r->n = s->j_nout;
	s->j_out = NULL;
	s->expunged += (unsigned)r->n;
	if (r->n)
		notify_selected(s);
	return IMAP_OK;
}

static enum imap_verdict op_expunge(void *ctx, struct imap_server *eng, const uint32_t *uids,
				    size_t n, struct imap_expunge_result *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	set_uids(s, uids, n);
	s->j_res = r;
	s->j_floor = prune_floor(s);
	return submit(s, run_expunge, finish_expunge, drop_out);
}

static void run_copy(struct imap_sess *s)
{
	s->j_out = s->j_out2 = NULL;
	s->j_nout = 0;
	s->j_rc = mbox_copy(s->mb, s->j_uids, s->j_n, s->j_name, s->j_flag, &s->j_uidvalidity,
			    &s->j_out, &s->j_out2, &s->j_nout, &s->j_err);
	if (s->j_flag)
		run_prune(s);
}

static enum imap_verdict finish_copy(struct imap_sess *s)
{
	bool move = s->j_flag;
	if (s->j_rc < 0) {
		job_args_free(s);
		if (s->j_err.code == MBOX_E_NONEXISTENT) {
			imap_server_reply(s->eng, "TRYCREATE", "No such mailbox");
			return IMAP_NO;
		}
		return fail(s, &s->j_err, move ? "MOVE" : "COPY");
	}
	if (move && s->j_floor)
		s->pruned = s->j_floor;
	struct imap_copy_result *r = s->j_res;
	r->uidvalidity = s->j_uidvalidity;
	r->src = s->j_out;
	r->dst = s->j_out2;
	r->n = s->j_nout;
	s->j_out = s->j_out2 = NULL;
	notify(s, s->user, s->j_name);
	if (move)
		notify_selected(s);
	job_args_free(s);
	return IMAP_OK;
}

static enum imap_verdict op_copy(void *ctx, struct imap_server *eng, const uint32_t *uids,
				 size_t n, const char *dest, bool move, struct imap_copy_result *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	set_uids(s, uids, n);
	s->j_name = xstrdup(dest);
	s->j_flag = move;
	s->j_res = r;
	s->j_floor = move ? prune_floor(s) : 0;
	return submit(s, run_copy, finish_copy, drop_out);
}

static enum imap_verdict op_append_begin(void *ctx, struct imap_server *eng,
					 const struct imap_append_info *info)
{
	struct imap_sess *s = ctx;
	struct mbox_err e = { 0 };
	s->suspended = false;
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

/* Job: the message's fsync. */
static void run_append_end(struct imap_sess *s)
{
	const struct imap_append_info *info = s->j_res;
	s->j_rc = mbox_append_finish(s->ap, info->flags, info->keywords, info->n_keywords,
				     info->internaldate, info->tz_min, &s->j_err);
}

static enum imap_verdict finish_append_end(struct imap_sess *s)
{
	if (s->j_rc < 0) {
		mbox_append_abort(&s->ap);
		return fail(s, &s->j_err, "APPEND");
	}
	s->aps = xrealloc(s->aps, (s->n_aps + 1) * sizeof *s->aps);
	s->aps[s->n_aps++] = s->ap;
	s->ap = NULL;
	return IMAP_OK;
}

static enum imap_verdict op_append_end(void *ctx, struct imap_server *eng,
				       const struct imap_append_info *info)
{
	struct imap_sess *s = ctx;
	(void)eng;
	if (!s->ap)
		return IMAP_NO;
	s->j_res = (void *)info; /* the engine keeps it until resume */
	return submit(s, run_append_end, finish_append_end, NULL);
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

/* Job: every message of the command at once (RFC 3502). */
static void run_append_commit(struct imap_sess *s)
{
	s->j_out = xcalloc(s->n_aps ? s->n_aps : 1, sizeof *s->j_out);
	s->j_nout = s->n_aps;
	s->j_rc = mbox_append_commit_all(s->aps, s->n_aps, &s->j_uidvalidity, s->j_out, &s->j_err);
	free(s->aps); /* commit_all freed the handles */
	s->aps = NULL;
	s->n_aps = 0;
}

static enum imap_verdict finish_append_commit(struct imap_sess *s)
{
	if (s->j_rc < 0) {
		drop_out(s);
		if (s->j_err.code == MBOX_E_NONEXISTENT) {
			imap_server_reply(s->eng, "TRYCREATE", "No such mailbox");
			return IMAP_NO;
		}
		return fail(s, &s->j_err, "APPEND");
	}
	struct imap_append_result *r = s->j_res;
	r->uidvalidity = s->j_uidvalidity;
	r->uids = s->j_out;
	r->n = s->j_nout;
	s->j_out = NULL;
	s->j_nout = 0;
	s->appended += (unsigned)r->n;
	notify(s, s->user, s->j_name);
	job_args_free(s);
	return IMAP_OK;
}

static enum imap_verdict op_append_commit(void *ctx, struct imap_server *eng, const char *mailbox,
					  struct imap_append_result *r)
{
	struct imap_sess *s = ctx;
	(void)eng;
	if (s->n_aps == 0)
		return IMAP_NO;
	s->j_name = xstrdup(mailbox);
	s->j_res = r;
	return submit(s, run_append_commit, finish_append_commit, drop_out);
}

static void op_append_abort(void *ctx, struct imap_server *eng)
{
	struct imap_sess *s = ctx;
	(void)eng;
	if (s->busy) {
		/* the engine ended meanwhile: the job's drop or the session's
		 * free aborts them (imap_sess_free) */
		s->deferred_abort = true;
		return;
	}
	append_drop(s);
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
	if (s->busy)
		s->j_stored = true; /* FETCH's \Seen on a job thread: notify at its end */
	else
		notify_selected(s);
	return IMAP_OK;
}

/* SEARCH and FETCH's message loop on a job thread. */
static void run_offload(struct imap_sess *s)
{
	s->j_work(s->eng);
}

static enum imap_verdict finish_offload(struct imap_sess *s)
{
	s->j_work = NULL;
	if (s->j_stored) {
		s->j_stored = false;
		notify_selected(s);
	}
	return IMAP_OK;
}

static void drop_offload(struct imap_sess *s)
{
	s->j_work = NULL;
	s->j_stored = false;
}

static enum imap_verdict op_offload(void *ctx, struct imap_server *eng,
				    void (*work)(struct imap_server *s))
{
	struct imap_sess *s = ctx;
	(void)eng;
	s->suspended = false;
	s->j_work = work;
	return submit(s, run_offload, finish_offload, drop_offload);
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
	.offload = op_offload,
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
	if (s->busy) {
		s->deferred_timeout = true; /* the engine must not drop state in use */
		return;
	}
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
	if (s->busy) {
		/* a job still uses the store: job_done_cb destroys the session */
		s->dead = true;
		return;
	}
	session_destroy(&s->base);
}

static void imap_sess_free(struct session *base)
{
	struct imap_sess *s = (struct imap_sess *)base;
	ASSERT(!s->busy);
	login_cancel(&s->login);
	if (s->delay)
		ev_timer_del(s->base.srv->ev, &s->delay);
	/* aborts an APPEND in flight and unselects (close_mbox) */
	imap_server_free(&s->eng);
	msg_release(s);
	append_drop(s);
	close_mbox(s);
	mstore_close(&s->ms);
	job_args_free(s);
	free(s->user);
	if (--imap_live == 0)
		jobs_free(&imap_jobs); /* joins the idle workers */
}

void role_imap_stop(void)
{
	/* Sessions left at the deadline stay allocated until exit; a job of
	 * theirs finishes here and only queues its session for a wakeup that
	 * will not run any more. */
	jobs_free(&imap_jobs);
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
	imap_live++;
	if (!imap_jobs_async)
		imap_jobs_async = ev_async_new(srv->ev, jobs_wakeup, NULL);
	if (!imap_jobs && imap_jobs_async)
		imap_jobs = jobs_new(srv->ev, IMAP_JOB_THREADS);
	if (!imap_jobs) {
		log_warnx("%s imap: no job threads; connection refused", s->base.id);
		close(fd);
		session_destroy(&s->base);
		return;
	}
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
