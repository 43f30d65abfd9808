/* SPDX-License-Identifier: MIT */
/* The outbound delivery scheduler. See relay.h for the contract.
 *
 * Wake-ups: one timer at queue_next_due() (at most a minute away, so a
 * `tern queue flush` is seen even if its trigger is lost), relay_kick()
 * (a submission or a DSN was queued; runs through a 0 ms timer so it is
 * never re-entered from a caller's callback), an inotify watch on the
 * spool directory for the "flush" trigger file that `tern queue flush`
 * writes, and a one-minute timer for queue_notify_all() (delay warnings,
 * and at start the work a crash left).
 *
 * Work: queue_due() hands out claimed recipients grouped by domain; each
 * domain becomes a job (all domains are one job with relay_host: they share
 * the smarthost's connections). A job resolves its targets once (MX hosts
 * in preference order with their addresses, or the smarthost's addresses),
 * then runs up to relay_max_per_domain sessions, each one connection that
 * delivers job messages one after another until none is left, then QUITs.
 * A session that fails before it is ready (refused, timeout, 4xx/5xx
 * greeting, TLS failure) marks its address dead and the job opens the next
 * one (RFC 5321 5.1). Sessions count against relay_max_connections; a job
 * that cannot open one waits until some session ends.
 *
 * Results: each recipient's reply goes to queue_record() when its message
 * is done, then queue_notify() (DSN, removal); a queued DSN kicks the
 * scheduler. One log line per recipient per attempt.
 *
 * Local domains (bounces to local senders, local recipients that reached the
 * queue) are written into the Maildir through the group committer, exactly
 * as the SMTP role does.
 *
 * At most RELAY_MAX_INFLIGHT recipients are claimed at once; finishing a job
 * triggers the next scan.
 *
 * SQLite: every queue call of the scheduler (scan, record/release/notify,
 * notify_all) is an op run in order by one worker thread with its own queue
 * handle (QUEUE_OPEN_WRITER), completed back on the loop via ev_async; the
 * loop thread never waits for an fsync of the queue. */
#include "daemon/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/role_imap.h"
#include "daemon/server.h"
#include "io/conn.h"
#include "io/dns.h"
#include "io/evloop.h"
#include "io/tls.h"
#include "store/maildir.h"

#define RELAY_MAX_INFLIGHT 1000      /* claimed recipients at once */
#define RELAY_SCAN_MAX_MS 60000      /* longest sleep between queue looks */
#define RELAY_NOTIFY_MS 60000        /* queue_notify_all period */
#define RELAY_GREETING_MS (5 * 60 * 1000) /* RFC 5321 4.5.3.2.1 */
#define RELAY_CONTENT_CHUNK 65536
#define RELAY_OUT_LOW (256 * 1024) /* top the content up below this much output */
#define RELAY_MAX_LOCAL_MSG (512ull * 1024 * 1024)
#define FLUSH_TRIGGER "flush"

struct rjob;
struct rop;

struct rmsg {
	struct queue_msg *m;
	struct queue_result *res; /* one per claimed recipient, same order */
	struct buf *texts;        /* formatted replies backing res[i].err.text */
	char (*esc)[16];          /* enhanced codes backing res[i].err.enhanced */
	bool *done;               /* res[i] set */
	char *remote;
};


struct rjob {
	struct rjob *next;
	struct relay *r;
	char *key; /* domain, or "[relay_host]" */
	bool local;
	bool smarthost;
	struct rmsg **msgs; /* FIFO of messages not yet taken by a session */
	size_t head, n, cap;
	unsigned nsess;
	unsigned nlocal; /* local deliveries in the committer */
	struct dns_req *dreq;
	struct dns_result *dres;
	bool resolved;
	struct relay_target *targets;
	size_t ntargets;
	uint16_t port;
	char shost[256];
	/* failures before any session got ready, for the exhausted case */
	unsigned nfailed, nperm;
	int last_code;
	char last_esc[16];
	char *last_text, *last_host;
	bool waiting; /* wants a connection slot */
};

struct rsess {
	struct rsess *prev, *next;
	struct relay *r;
	struct rjob *job;
	struct conn *conn;
	struct smtp_client *cl;
	struct smtp_client_settings set;
	char *helo, *auth_user, *auth_pass;
	size_t tidx;
	char addr[64];
	struct rmsg *cur;
	struct smtp_client_rcpt *crcpts;
	char (*notify)[40];
	struct buf orcpt, envid; /* xtext values for the current message */
	int fd; /* content of cur, -1 */
	bool was_ready;
	bool did_msg;
	bool content_started; /* of cur: the peer may be about to accept it */
	bool connected;
};

struct relay {
	struct server *srv;
	struct evloop *ev;
	struct dns *dns;
	struct tls_ctx *tls;
	struct ev_timer *scan_timer;
	uint64_t scan_at;
	struct ev_timer *notify_timer;
	int ino_fd;
	struct rjob *jobs;
	struct rsess *sessions;
	unsigned nconns;
	size_t inflight; /* claimed recipients */
	bool stopping;
	/* queue worker (see worker_main); wq NULL = record on the loop */
	struct queue *wq;
	pthread_t wthread;
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	struct rop *work, **wtail; /* to run */
	struct rop *done, **done_tail; /* run, to complete on the loop */
	bool wstop;
	bool worker_gone; /* joined (relay_free): ops run inline */
	bool scanning;	  /* a scan op is with the worker */
	bool rescan;	  /* a scan was asked for meanwhile */
	struct ev_async *wasync;
	unsigned nops; /* handed to the worker, not completed */
};

static void job_pump(struct rjob *j);
static void job_maybe_finish(struct rjob *j);
static void schedule_scan(struct relay *r, uint64_t ms);

/* ---- pure decisions ---- */

enum queue_outcome relay_outcome(const struct smtp_client_result *res, bool peer_dsn)
{
	switch (res->status) {
	case SMTP_CLIENT_OK:
		return peer_dsn ? QUEUE_OUT_PASSED : QUEUE_OUT_RELAYED;
	case SMTP_CLIENT_PERM:
		return QUEUE_OUT_PERMFAIL;
	case SMTP_CLIENT_TEMP:
		break;
	}
	return QUEUE_OUT_TEMPFAIL;
}

bool relay_next_host_on_failure(const struct smtp_client_result *res, bool was_ready)
{
	(void)res;
	/* Before the session is ready nothing was attempted for any message:
	 * RFC 5321 5.1 has the client try the next address/MX. After, the
	 * messages already have their results. */
	return !was_ready;
}

enum queue_outcome relay_exhausted_outcome(unsigned nperm, unsigned nfailed)
{
	return nfailed > 0 && nperm == nfailed ? QUEUE_OUT_PERMFAIL : QUEUE_OUT_TEMPFAIL;
}

bool relay_may_connect(unsigned total, unsigned max_total, unsigned dom, unsigned max_dom)
{
	if (max_total && total >= max_total)
		return false;
	if (max_dom && dom >= max_dom)
		return false;
	return true;
}

void relay_format_reply(struct buf *out, int code, const char *text)
{
	if (!text)
		text = "";
	if (code == 0) {
		buf_xappend(out, text, strlen(text));
		return;
	}
	const char *p = text;
	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		buf_xprintf(out, "%03d%c%.*s", code, nl ? '-' : ' ', (int)len, p);
		if (!nl)
			break;
		buf_xappend(out, "\n", 1);
		p = nl + 1;
	}
}

void relay_xtext(struct buf *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
			buf_xprintf(out, "+%02X", *p);
		else
			buf_xappend(out, p, 1);
	}
}

const char *relay_notify_str(unsigned bits, char out[40])
{
	if (!bits)
		return NULL;
	if (bits & QUEUE_NOTIFY_NEVER) {
		snprintf(out, 40, "NEVER");
		return out;
	}
	out[0] = 0;
	if (bits & QUEUE_NOTIFY_SUCCESS)
		strcat(out, "SUCCESS,");
	if (bits & QUEUE_NOTIFY_FAILURE)
		strcat(out, "FAILURE,");
	if (bits & QUEUE_NOTIFY_DELAY)
		strcat(out, "DELAY,");
	size_t n = strlen(out);
	if (n == 0)
		return NULL;
	out[n - 1] = 0;
	return out;
}

/* ---- messages ---- */

static const struct config *cfg_of(struct relay *r)
{
	return r->srv->cfg;
}

static struct rmsg *rmsg_new(struct queue_msg *m)
{
	struct rmsg *x = xcalloc(1, sizeof *x);
	x->m = m;
	x->res = xcalloc(m->n_rcpts ? m->n_rcpts : 1, sizeof *x->res);
	x->texts = xcalloc(m->n_rcpts ? m->n_rcpts : 1, sizeof *x->texts);
	x->done = xcalloc(m->n_rcpts ? m->n_rcpts : 1, sizeof *x->done);
	x->esc = xcalloc(m->n_rcpts ? m->n_rcpts : 1, sizeof *x->esc);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		x->res[i].rcpt = m->rcpts[i].idx;
		buf_init(&x->texts[i], 0);
	}
	return x;
}

static void rmsg_free(struct rmsg **xp)
{
	struct rmsg *x = *xp;
	if (!x)
		return;
	*xp = NULL;
	for (size_t i = 0; i < x->m->n_rcpts; i++)
		buf_deinit(&x->texts[i]);
	free(x->texts);
	free(x->esc);
	free(x->res);
	free(x->done);
	free(x->remote);
	queue_msg_free(&x->m);
	free(x);
}

static const char *outcome_status(enum queue_outcome o)
{
	switch (o) {
	case QUEUE_OUT_DELIVERED:
	case QUEUE_OUT_RELAYED:
	case QUEUE_OUT_PASSED:
		return "sent";
	case QUEUE_OUT_TEMPFAIL:
		return "deferred";
	case QUEUE_OUT_PERMFAIL:
		return "bounced";
	}
	return "?";
}

/* Set recipient i's result and log the attempt (Postfix-like). */
static void rmsg_set(struct rmsg *x, size_t i, enum queue_outcome o, int code, const char *esc,
		     const char *text, const char *host, const char *addr, unsigned port)
{
	if (i >= x->m->n_rcpts || x->done[i])
		return;
	x->done[i] = true;
	struct buf *t = &x->texts[i];
	buf_clear(t);
	relay_format_reply(t, code, text);
	x->res[i].outcome = o;
	x->res[i].err.code = code;
	snprintf(x->esc[i], sizeof x->esc[i], "%s", esc ? esc : "");
	x->res[i].err.enhanced = x->esc[i][0] ? x->esc[i] : NULL;
	x->res[i].err.text = NULL;
	if (host && strcmp(host, "local") && !x->remote)
		x->remote = xstrdup(host);
	char to[300], res[400];
	log_escape(x->m->rcpts[i].addr, strlen(x->m->rcpts[i].addr), to, sizeof to);
	const char *txt = buf_cstr(t);
	log_escape(txt, strlen(txt), res, sizeof res);
	if (host && addr)
		log_info("%s relay to=<%s> relay=%s[%s]:%u attempt=%u status=%s result=\"%s\"",
			 x->m->id, to, host, addr, port, x->m->rcpts[i].attempts + 1,
			 outcome_status(o), res);
	else
		log_info("%s relay to=<%s> relay=%s attempt=%u status=%s result=\"%s\"", x->m->id,
			 to, host ? host : "none", x->m->rcpts[i].attempts + 1, outcome_status(o),
			 res);
}

/* Record the finished (or partly finished) message, notify, free it. With
 * release, recipients without a result are given back unclaimed. */
/* The queue's SQLite work runs on the loop thread: say so when it gets slow
 * enough to delay other sessions. */
static void slow_check(const char *what, const char *id, uint64_t t0)
{
	uint64_t ms = time_mono_ms() - t0;
	if (ms >= 200)
		log_warnx("relay: %s %s took %llu ms on the event loop", what, id ? id : "",
			  (unsigned long long)ms);
}

/* One message's results on their way into the queue: built on the loop,
 * written by the queue worker (or inline without one), completed on the
 * loop. */
struct rop {
	struct rop *next;
	bool all;	/* queue_notify_all() instead of one message (x NULL) */
	bool scan;	/* queue_due() + queue_next_due() (x NULL) */
	size_t max;	/* scan: recipients to claim at most */
	int64_t now;	/* scan: the time it ran for */
	struct queue_due due;
	int nd;		/* queue_next_due's return */
	int64_t next_t;
	char *err_due, *err_next;
	struct rmsg *x;
	struct queue_result *res;
	size_t n;
	uint32_t *rel;
	size_t nrel;
	bool deferred; /* some recipient was deferred: its next try needs a timer */
	/* results */
	char dsn[17];
	int notified; /* queue_notify's return */
	char *err_record, *err_release, *err_notify;
};

/* The SQLite side: record, release, notify. Any thread, one handle. */
static void rop_run(struct queue *q, struct rop *op)
{
	struct rmsg *x = op->x;
	int64_t now = time_unix();
	if (op->scan) {
		if (op->max && queue_due(q, op->now, op->max, &op->due, &op->err_due) < 0)
			memset(&op->due, 0, sizeof op->due);
		op->nd = queue_next_due(q, &op->next_t, &op->err_next);
		return;
	}
	if (op->all) {
		/* on the same handle and thread as the per-message notifies, so
		 * two of them never build a DSN for the same recipients */
		op->notified = queue_notify_all(q, now, &op->err_notify);
		return;
	}
	uint64_t t0 = time_mono_ms();
	if (op->n && queue_record(q, x->m->id, op->res, op->n, now, &op->err_record) < 0) {
		/* give the claims back so they are tried again (at least once: a
		 * recipient the peer accepted may get a second copy) */
		for (size_t i = 0; i < op->n; i++)
			op->rel[op->nrel++] = op->res[i].rcpt;
		op->n = 0;
	}
	if (op->nrel && queue_release(q, x->m->id, op->rel, op->nrel, &op->err_release) < 0) {
		/* the claims stay until the next start */
	}
	op->notified = 0;
	if (op->n)
		op->notified = queue_notify(q, x->m->id, now, op->dsn, &op->err_notify);
	uint64_t ms = time_mono_ms() - t0;
	if (ms >= 1000)
		log_warnx("%s relay: recording took %llu ms", x->m->id, (unsigned long long)ms);
}

/* Back on the loop: logs, wake-ups, free. */
static void scan_done(struct relay *r, struct rop *op);

static void rop_complete(struct relay *r, struct rop *op)
{
	if (op->scan) {
		scan_done(r, op);
		return;
	}
	if (op->all) {
		if (op->notified < 0) {
			log_warnx("relay: queue_notify_all: %s",
				  op->err_notify ? op->err_notify : "?");
		} else if (op->notified > 0) {
			log_debug("relay: notifications for %d messages", op->notified);
			relay_kick(r);
		}
		free(op->err_notify);
		free(op);
		return;
	}
	struct rmsg *x = op->x;
	const char *id = x->m->id;
	if (op->err_record)
		log_warnx("%s relay: cannot record results: %s", id, op->err_record);
	if (op->err_release)
		log_warnx("%s relay: cannot release recipients: %s", id, op->err_release);
	if (op->notified < 0)
		log_warnx("%s relay: notify: %s", id, op->err_notify ? op->err_notify : "?");
	if (op->dsn[0])
		log_info("%s relay dsn=%s queued for <%s>", id, op->dsn, x->m->sender);
	if (op->notified == 1)
		log_info("%s relay removed (all recipients final)", id);
	/* a DSN to send, or a deferral whose retry time a scan made while the
	 * recipient was still claimed could not see */
	if (op->dsn[0] || op->deferred || op->nrel)
		relay_kick(r);
	r->inflight -= x->m->n_rcpts <= r->inflight ? x->m->n_rcpts : r->inflight;
	free(op->err_record);
	free(op->err_release);
	free(op->err_notify);
	free(op->res);
	free(op->rel);
	rmsg_free(&op->x);
	free(op);
}

static void *worker_main(void *arg);

static void rop_submit(struct relay *r, struct rop *op)
{
	if (!r->wq || r->worker_gone) {
		/* no worker (or, in relay_free, no longer one): here and now */
		uint64_t t0 = time_mono_ms();
		rop_run(r->wq ? r->wq : r->srv->queue, op);
		slow_check(op->scan ? "queue scan" : op->all ? "notifications" : "recording",
			   op->x ? op->x->m->id : NULL, t0);
		rop_complete(r, op);
		return;
	}
	r->nops++;
	pthread_mutex_lock(&r->wlock);
	*r->wtail = op;
	r->wtail = &op->next;
	pthread_cond_signal(&r->wcond);
	pthread_mutex_unlock(&r->wlock);
}

static void rmsg_finish(struct relay *r, struct rmsg **xp)
{
	struct rmsg *x = *xp;
	*xp = NULL;
	struct rop *op = xcalloc(1, sizeof *op);
	op->x = x;
	op->res = xcalloc(x->m->n_rcpts ? x->m->n_rcpts : 1, sizeof *op->res);
	op->rel = xcalloc(x->m->n_rcpts ? x->m->n_rcpts : 1, sizeof *op->rel);
	for (size_t i = 0; i < x->m->n_rcpts; i++) {
		bool local_abort = x->done[i] && r->stopping &&
				   x->res[i].outcome == QUEUE_OUT_TEMPFAIL && x->res[i].err.code == 0;
		if (!x->done[i] || local_abort) {
			op->rel[op->nrel++] = x->m->rcpts[i].idx;
			continue;
		}
		struct queue_result *qr = &op->res[op->n++];
		*qr = x->res[i];
		const char *text = buf_cstr(&x->texts[i]);
		qr->err.text = *text ? text : NULL;
		qr->err.remote = x->remote;
		if (qr->outcome == QUEUE_OUT_TEMPFAIL)
			op->deferred = true;
	}
	rop_submit(r, op);
}

/* Completed ops, on the loop (ev_async), or from relay_free. */
static void worker_reap(struct relay *r)
{
	pthread_mutex_lock(&r->wlock);
	struct rop *done = r->done;
	r->done = NULL;
	r->done_tail = &r->done;
	pthread_mutex_unlock(&r->wlock);
	while (done) {
		struct rop *next = done->next;
		r->nops--;
		rop_complete(r, done);
		done = next;
	}
}

static void worker_async(struct evloop *ev, void *ctx)
{
	(void)ev;
	worker_reap(ctx);
}

/* The queue worker: one thread, its own queue handle (QUEUE_OPEN_WRITER), so
 * the fsync behind every recorded result never holds up the event loop. Ops
 * run in order; the thread drains the list before it exits. */
static void *worker_main(void *arg)
{
	struct relay *r = arg;
	pthread_mutex_lock(&r->wlock);
	for (;;) {
		while (!r->work && !r->wstop)
			pthread_cond_wait(&r->wcond, &r->wlock);
		struct rop *op = r->work;
		if (!op)
			break; /* stopping and drained */
		r->work = op->next;
		if (!r->work)
			r->wtail = &r->work;
		op->next = NULL;
		pthread_mutex_unlock(&r->wlock);
		rop_run(r->wq, op);
		pthread_mutex_lock(&r->wlock);
		*r->done_tail = op;
		r->done_tail = &op->next;
		if (r->wasync)
			ev_async_notify(r->wasync);
	}
	pthread_mutex_unlock(&r->wlock);
	return NULL;
}

/* ---- jobs ---- */

static void job_push(struct rjob *j, struct rmsg *x)
{
	if (j->n == j->cap) {
		if (j->head > 0) {
			memmove(j->msgs, j->msgs + j->head, (j->n - j->head) * sizeof *j->msgs);
			j->n -= j->head;
			j->head = 0;
		}
		if (j->n == j->cap) {
			j->cap = j->cap ? j->cap * 2 : 8;
			j->msgs = xrealloc(j->msgs, j->cap * sizeof *j->msgs);
		}
	}
	j->msgs[j->n++] = x;
}

static struct rmsg *job_pop(struct rjob *j)
{
	if (j->head == j->n)
		return NULL;
	return j->msgs[j->head++];
}

static size_t job_left(const struct rjob *j)
{
	return j->n - j->head;
}

static void job_unlink(struct rjob *j)
{
	struct relay *r = j->r;
	for (struct rjob **pp = &r->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			return;
		}
}

static void job_free(struct rjob *j)
{
	dns_cancel(&j->dreq);
	dns_result_free(&j->dres);
	struct rmsg *x;
	while ((x = job_pop(j)))
		rmsg_finish(j->r, &x); /* nothing done: releases */
	free(j->msgs);
	free(j->targets);
	free(j->key);
	free(j->last_text);
	free(j->last_host);
	free(j);
}

/* Every message left gets the same outcome (DNS failure, no host reachable). */
static void job_fail_all(struct rjob *j, enum queue_outcome o, int code, const char *esc,
			 const char *text, const char *host)
{
	struct rmsg *x;
	while ((x = job_pop(j))) {
		for (size_t i = 0; i < x->m->n_rcpts; i++)
			rmsg_set(x, i, o, code, esc, text, host, NULL, 0);
		rmsg_finish(j->r, &x);
	}
}

static void job_maybe_finish(struct rjob *j)
{
	if (j->nsess || j->nlocal || job_left(j) || j->dreq)
		return;
	struct relay *r = j->r;
	job_unlink(j);
	job_free(j);
	schedule_scan(r, 0);
}

/* ---- SMTP sessions ---- */

static void sess_next(struct rsess *s);

static void sess_set_rcpt(struct rsess *s, size_t idx, const struct smtp_client_result *res)
{
	bool dsn = (smtp_client_ehlo(s->cl)->ext & SMTP_EXT_DSN) != 0;
	rmsg_set(s->cur, idx, relay_outcome(res, dsn), res->code, res->esc, res->text,
		 s->job->targets[s->tidx].host, s->addr, s->job->port);
}

static void cl_ready(void *ctx, struct smtp_client *c)
{
	struct rsess *s = ctx;
	(void)c;
	s->was_ready = true;
	sess_next(s);
}

static void cl_rcpt_done(void *ctx, struct smtp_client *c, size_t idx,
			 const struct smtp_client_result *res)
{
	struct rsess *s = ctx;
	(void)c;
	if (s->cur)
		sess_set_rcpt(s, idx, res);
}

static void cl_content_wanted(void *ctx, struct smtp_client *c)
{
	(void)ctx;
	(void)c;
	/* content is pumped from the output callback, paced by the output size */
}

static void cur_close(struct rsess *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->crcpts);
	s->crcpts = NULL;
	free(s->notify);
	s->notify = NULL;
}

static void cl_msg_done(void *ctx, struct smtp_client *c, const struct smtp_client_result *res)
{
	struct rsess *s = ctx;
	(void)c;
	if (!s->cur)
		return;
	/* every rcpt_done() was called; a recipient the engine never reported
	 * (cannot happen) takes the message's outcome */
	for (size_t i = 0; i < s->cur->m->n_rcpts; i++)
		if (!s->cur->done[i])
			sess_set_rcpt(s, i, res);
	cur_close(s);
	s->did_msg = true;
	s->content_started = false;
	rmsg_finish(s->r, &s->cur);
	if (smtp_client_is_ready(s->cl))
		sess_next(s);
}

static void cl_failed(void *ctx, struct smtp_client *c, const struct smtp_client_result *res)
{
	struct rsess *s = ctx;
	(void)c;
	struct rjob *j = s->job;
	const char *host = j->targets[s->tidx].host;
	char t[300];
	log_escape(res->text, strlen(res->text), t, sizeof t);
	log_info("relay %s[%s]:%u session failed%s: %d %s", host, s->addr, j->port,
		 s->was_ready ? "" : " before ready", res->code, t);
	if (!relay_next_host_on_failure(res, s->was_ready) && s->did_msg)
		return;
	j->targets[s->tidx].dead = true;
	j->nfailed++;
	if (res->status == SMTP_CLIENT_PERM)
		j->nperm++;
	j->last_code = res->code;
	snprintf(j->last_esc, sizeof j->last_esc, "%s",
		 !s->connected ? "4.4.1" : (res->esc && *res->esc ? res->esc : "4.4.2"));
	free(j->last_text);
	j->last_text = !s->connected ? xasprintf("%s[%s]: %s", host, s->addr, res->text)
				     : xstrdup(res->text);
	free(j->last_host);
	j->last_host = xstrdup(host);
}

static void cl_trace(void *ctx, struct smtp_client *c, bool sent, const char *line)
{
	struct rsess *s = ctx;
	(void)c;
	if (log_get_level() > LOG_LVL_DEBUG)
		return;
	char e[300];
	log_escape(line, strlen(line), e, sizeof e);
	log_debug("relay %s %s %s", s->addr, sent ? ">>" : "<<", e);
}

static const struct smtp_client_ops cl_ops = {
	.ready = cl_ready,
	.rcpt_done = cl_rcpt_done,
	.content_wanted = cl_content_wanted,
	.msg_done = cl_msg_done,
	.failed = cl_failed,
	.trace = cl_trace,
};

/* Start the next message of the job on this ready session, or QUIT. */
static void sess_next(struct rsess *s)
{
	struct relay *r = s->r;
	struct rjob *j = s->job;
	while (smtp_client_is_ready(s->cl)) {
		struct rmsg *x = r->stopping ? NULL : job_pop(j);
		if (!x) {
			smtp_client_quit(s->cl);
			return;
		}
		char *path = queue_msg_path(r->srv->queue, x->m);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		int e = errno;
		free(path);
		if (fd < 0) {
			if (e == ENOENT) {
				/* deleted by `tern queue delete` meanwhile */
				log_info("%s relay: message deleted while queued", x->m->id);
			} else {
				errno = e;
				log_warn("%s relay: cannot open the message", x->m->id);
				for (size_t i = 0; i < x->m->n_rcpts; i++)
					rmsg_set(x, i, QUEUE_OUT_TEMPFAIL, 0, "4.3.0",
						 "cannot read the queued message", NULL, NULL, 0);
			}
			rmsg_finish(r, &x);
			continue;
		}
		s->fd = fd;
		s->cur = x;
		struct queue_msg *m = x->m;
		s->crcpts = xcalloc(m->n_rcpts, sizeof *s->crcpts);
		s->notify = xcalloc(m->n_rcpts, sizeof *s->notify);
		/* ORCPT values, NUL-separated in one buffer (pointers fixed below) */
		buf_clear(&s->orcpt);
		size_t *ooff = xcalloc(m->n_rcpts, sizeof *ooff);
		for (size_t i = 0; i < m->n_rcpts; i++) {
			ooff[i] = SIZE_MAX;
			const char *o = m->rcpts[i].orcpt;
			const char *semi = o ? strchr(o, ';') : NULL;
			if (semi) {
				ooff[i] = s->orcpt.len;
				buf_xappend(&s->orcpt, o, (size_t)(semi - o) + 1);
				relay_xtext(&s->orcpt, semi + 1);
				buf_xappend(&s->orcpt, "", 1);
			}
		}
		for (size_t i = 0; i < m->n_rcpts; i++) {
			s->crcpts[i].addr = m->rcpts[i].addr;
			s->crcpts[i].notify = relay_notify_str(m->rcpts[i].notify, s->notify[i]);
			s->crcpts[i].orcpt =
				ooff[i] == SIZE_MAX ? NULL : (const char *)s->orcpt.data + ooff[i];
		}
		free(ooff);
		buf_clear(&s->envid);
		if (m->envid) {
			relay_xtext(&s->envid, m->envid);
			buf_cstr(&s->envid);
		}
		struct smtp_client_msg cm = {
			.from = m->sender,
			.rcpts = s->crcpts,
			.nrcpts = m->n_rcpts,
			.size = m->wire_size,
			.eightbit = m->eightbit,
			.smtputf8 = m->smtputf8,
			.ret = m->ret == QUEUE_RET_FULL	  ? "FULL"
			       : m->ret == QUEUE_RET_HDRS ? "HDRS"
							  : NULL,
			.envid = m->envid ? buf_cstr(&s->envid) : NULL,
		};
		/* may finish the message at once (8-bit to a 7-bit peer): then
		 * msg_done already ran sess_next for the following one */
		smtp_client_send(s->cl, &cm);
		return;
	}
}

static void sess_pump_content(struct rsess *s)
{
	struct buf *out = smtp_client_output(s->cl);
	uint8_t chunk[RELAY_CONTENT_CHUNK];
	if (smtp_client_wants_content(s->cl))
		s->content_started = true;
	while (s->fd >= 0 && smtp_client_wants_content(s->cl) && out->len < RELAY_OUT_LOW) {
		ssize_t n = read(s->fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_warn("%s relay: reading the message", s->cur ? s->cur->m->id : "?");
			close(s->fd);
			s->fd = -1;
			smtp_client_abort(s->cl, "cannot read the queued message");
			return;
		}
		if (n == 0) {
			close(s->fd);
			s->fd = -1;
			smtp_client_content_end(s->cl);
			return;
		}
		smtp_client_content(s->cl, chunk, (size_t)n);
	}
}

static size_t ps_feed(void *p, const uint8_t *d, size_t n)
{
	struct rsess *s = p;
	s->connected = true;
	return smtp_client_feed(s->cl, d, n);
}

static enum proto_want ps_want(void *p)
{
	return smtp_client_want(((struct rsess *)p)->cl);
}

static struct buf *ps_output(void *p)
{
	struct rsess *s = p;
	sess_pump_content(s);
	/* called after every step: keep the reply timeout right for what the
	 * engine waits for now */
	if (s->conn && s->cl) {
		uint64_t t = cfg_of(s->r)->relay_timeout;
		if (!t)
			t = smtp_client_timeout_secs(s->cl);
		conn_set_idle_timeout(s->conn, (unsigned)(t * 1000));
	}
	return smtp_client_output(s->cl);
}

static void ps_tls_started(void *p, const char *version, const char *cipher)
{
	struct rsess *s = p;
	const char *v = conn_tls_verify_result(s->conn);
	log_info("relay %s[%s]:%u starttls version=%s cipher=%s verify=%s",
		 s->job->targets[s->tidx].host, s->addr, s->job->port, version, cipher,
		 v ? v : "?");
	smtp_client_tls_started(s->cl);
}

static void ps_timeout(void *p)
{
	smtp_client_timeout(((struct rsess *)p)->cl);
}

static void ps_shutdown(void *p)
{
	struct rsess *s = p;
	if (smtp_client_is_ready(s->cl))
		smtp_client_quit(s->cl);
	else if (!s->cur || !s->content_started)
		smtp_client_abort(s->cl, "server shutting down"); /* released, not failed */
	/* else: the content is (being) sent: wait for the peer's verdict, bounded
	 * by the server's stop deadline, so an accepted message is recorded and
	 * not sent twice; then sess_next QUITs */
}

static void ps_closed(void *p, const char *reason)
{
	struct rsess *s = p;
	struct relay *r = s->r;
	struct rjob *j = s->job;
	struct relay_target *tg = &j->targets[s->tidx];
	s->conn = NULL;
	bool tls_failed = reason && !strncmp(reason, "TLS", 3) && !s->was_ready && !tg->notls;
	if (!reason || !strcmp(reason, "connection closed by peer") ||
	    !strcmp(reason, "closed by server"))
		smtp_client_eof(s->cl);
	else
		smtp_client_abort(s->cl, reason);
	if (tls_failed && tg->dead) {
		/* opportunistic TLS: a failed handshake is retried in plaintext
		 * on the same address (RFC 7435 4) */
		log_info("relay %s[%s]: TLS failed, retrying without STARTTLS", tg->host, s->addr);
		tg->dead = false;
		tg->notls = true;
		j->nfailed--;
	}
	if (s->cur) /* cannot happen: the engine finished it above */
		rmsg_finish(r, &s->cur);
	cur_close(s);
	smtp_client_free(&s->cl);
	buf_deinit(&s->orcpt);
	buf_deinit(&s->envid);
	free(s->helo);
	free(s->auth_user);
	free(s->auth_pass);
	if (s->prev)
		s->prev->next = s->next;
	else
		r->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
	r->nconns--;
	j->nsess--;
	job_pump(j);
	/* a slot is free: jobs waiting for one */
	struct rjob *next;
	for (struct rjob *o = r->jobs; o; o = next) {
		next = o->next;
		if (o != j && o->waiting) {
			job_pump(o);
			job_maybe_finish(o);
		}
	}
	job_maybe_finish(j);
}

static const struct proto_session_ops ps_ops = {
	.feed = ps_feed,
	.want = ps_want,
	.output = ps_output,
	.tls_started = ps_tls_started,
	.timeout = ps_timeout,
	.shutdown = ps_shutdown,
	.closed = ps_closed,
};

static socklen_t to_sockaddr(const struct dns_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		s6->sin6_addr = a->u.v6;
		return sizeof *s6;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	s4->sin_addr = a->u.v4;
	return sizeof *s4;
}

/* Open one session to target t. 0, or -1 (target marked dead). */
static int sess_open(struct rjob *j, size_t t)
{
	struct relay *r = j->r;
	const struct config *cfg = cfg_of(r);
	struct rsess *s = xcalloc(1, sizeof *s);
	s->r = r;
	s->job = j;
	s->tidx = t;
	s->fd = -1;
	buf_init(&s->orcpt, 0);
	buf_init(&s->envid, 0);
	dns_addr_str(&j->targets[t].addr, s->addr, sizeof s->addr);
	s->helo = xstrdup(cfg->hostname);
	s->set.helo_name = s->helo;
	s->set.tls = r->tls && !j->targets[t].notls ? SMTP_CLIENT_TLS_OPPORTUNISTIC
						    : SMTP_CLIENT_TLS_NEVER;
	if (j->smarthost && *cfg->relay_auth) {
		const char *colon = strchr(cfg->relay_auth, ':');
		if (colon) {
			s->auth_user = xstrndup(cfg->relay_auth, (size_t)(colon - cfg->relay_auth));
			s->auth_pass = xstrdup(colon + 1);
			s->set.auth_user = s->auth_user;
			s->set.auth_pass = s->auth_pass;
		}
	}
	s->cl = smtp_client_new(&s->set, &cl_ops, s);
	struct sockaddr_storage ss;
	socklen_t sl = to_sockaddr(&j->targets[t].addr, j->port, &ss);
	struct conn_settings cs = {
		.idle_ms = cfg->relay_timeout ? (unsigned)(cfg->relay_timeout * 1000)
					      : RELAY_GREETING_MS,
		.max_input = 64 * 1024,
		.tls = r->tls,
		.tls_server_name = j->targets[t].host,
	};
	char *err = NULL;
	log_debug("relay connecting to %s[%s]:%u for %s", j->targets[t].host, s->addr, j->port,
		  j->key);
	s->conn = conn_connect(r->ev, (struct sockaddr *)&ss, sl,
			       (unsigned)(cfg->relay_connect_timeout * 1000), &cs, &ps_ops, s, &err);
	if (!s->conn) {
		struct smtp_client_result res = { SMTP_CLIENT_TEMP, SMTP_STAGE_CONNECT, 0, "4.4.1",
						  err ? err : "connect failed" };
		cl_failed(s, s->cl, &res);
		free(err);
		smtp_client_free(&s->cl);
		buf_deinit(&s->orcpt);
		buf_deinit(&s->envid);
		free(s->helo);
		free(s->auth_user);
		free(s->auth_pass);
		free(s);
		return -1;
	}
	r->nconns++;
	j->nsess++;
	s->next = r->sessions;
	if (r->sessions)
		r->sessions->prev = s;
	r->sessions = s;
	return 0;
}

size_t relay_first_alive(const struct relay_target *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!t[i].dead)
			return i;
	return SIZE_MAX;
}

size_t relay_targets_build(const struct dns_result *res, const char *host_override,
			   struct relay_target **out)
{
	size_t n = 0, k = 0;
	for (size_t h = 0; h < res->nhosts; h++)
		n += res->hosts[h].naddrs;
	*out = n ? xcalloc(n, sizeof **out) : NULL;
	for (size_t h = 0; h < res->nhosts; h++)
		for (size_t a = 0; a < res->hosts[h].naddrs; a++)
			(*out)[k++] = (struct relay_target){
				.host = host_override ? host_override : res->hosts[h].name,
				.addr = res->hosts[h].addrs[a],
			};
	return n;
}

/* Open sessions while there are messages nobody is handling and limits allow. */
static void job_pump(struct rjob *j)
{
	struct relay *r = j->r;
	const struct config *cfg = cfg_of(r);
	j->waiting = false;
	if (!j->resolved || j->local)
		return;
	if (r->stopping) {
		if (!j->nsess) {
			struct rmsg *x;
			while ((x = job_pop(j)))
				rmsg_finish(r, &x); /* released */
		}
		return;
	}
	while (job_left(j) > j->nsess) {
		size_t t = relay_first_alive(j->targets, j->ntargets);
		if (t == SIZE_MAX) {
			if (j->nsess == 0) {
				enum queue_outcome o = relay_exhausted_outcome(j->nperm, j->nfailed);
				job_fail_all(j, o, j->last_code,
					     j->last_esc[0] ? j->last_esc : "4.4.1",
					     j->last_text ? j->last_text : "no host reachable",
					     j->last_host);
			}
			return;
		}
		if (!relay_may_connect(r->nconns, (unsigned)cfg->relay_max_connections, j->nsess,
				       (unsigned)cfg->relay_max_per_domain)) {
			/* a free slot (a session ending) pumps again */
			j->waiting = j->nsess == 0 || r->nconns >= cfg->relay_max_connections;
			return;
		}
		sess_open(j, t);
	}
}

static void job_resolved(struct dns_result *res, void *ctx)
{
	struct rjob *j = ctx;
	struct relay *r = j->r;
	j->dreq = NULL;
	j->resolved = true;
	if (res->status == DNS_OK && !j->smarthost) {
		const char *names[] = { cfg_of(r)->hostname };
		size_t before = res->nhosts;
		if (dns_result_cut_self(res, names, 1, NULL, 0) == 0 && before > 0) {
			char *t = xasprintf("mail for %s loops back to myself", j->key);
			job_fail_all(j, QUEUE_OUT_PERMFAIL, 0, "5.4.6", t, NULL);
			free(t);
			dns_result_free(&res);
			job_maybe_finish(j);
			return;
		}
	}
	if (res->status != DNS_OK || res->nhosts == 0) {
		/* a smarthost that does not resolve is our configuration problem:
		 * keep the mail */
		enum queue_outcome o = res->status == DNS_PERMFAIL && !j->smarthost
					       ? QUEUE_OUT_PERMFAIL
					       : QUEUE_OUT_TEMPFAIL;
		char *t = xasprintf("%s: %s", j->smarthost ? j->shost : j->key,
				    res->msg ? res->msg : "no address");
		const char *esc = res->esc ? res->esc : "4.4.3";
		if (o == QUEUE_OUT_TEMPFAIL && esc[0] == '5')
			esc = "4.4.3";
		log_info("relay lookup for %s failed: %s", j->key, t);
		job_fail_all(j, o, 0, esc, t, NULL);
		free(t);
		dns_result_free(&res);
		job_maybe_finish(j);
		return;
	}
	j->dres = res;
	j->ntargets = relay_targets_build(res, j->smarthost ? j->shost : NULL, &j->targets);
	job_pump(j);
	job_maybe_finish(j);
}

/* ---- local delivery ---- */

struct local_dlv {
	struct rjob *job;
	struct rmsg *x;
	char **users;
	size_t nusers;
};

static void local_done(struct delivery *d, int result, const char *err, void *ctx)
{
	struct local_dlv *ld = ctx;
	struct rjob *j = ld->job;
	struct rmsg *x = ld->x;
	(void)d;
	for (size_t i = 0; i < x->m->n_rcpts; i++) {
		if (x->done[i])
			continue;
		if (result == 0)
			rmsg_set(x, i, QUEUE_OUT_DELIVERED, 250, "2.0.0", "Delivered to mailbox",
				 "local", NULL, 0);
		else
			rmsg_set(x, i, QUEUE_OUT_TEMPFAIL, 0, "4.3.0",
				 "local delivery failed, will retry", "local", NULL, 0);
	}
	if (result == 0) {
		for (size_t u = 0; u < ld->nusers; u++)
			role_imap_delivered(ld->users[u]);
	} else {
		log_warnx("%s relay local delivery failed: %s", x->m->id, err ? err : "?");
	}
	rmsg_finish(j->r, &ld->x);
	accounts_free_list(ld->users, ld->nusers);
	free(ld);
	j->nlocal--;
	job_maybe_finish(j);
}

static bool has_user(char **v, size_t n, const char *u)
{
	for (size_t i = 0; i < n; i++)
		if (!ascii_strcasecmp(v[i], u))
			return true;
	return false;
}

static void deliver_local(struct rjob *j, struct rmsg *x)
{
	struct relay *r = j->r;
	const struct config *cfg = cfg_of(r);
	struct queue_msg *m = x->m;
	char **all = NULL;
	size_t nall = 0;
	char *err = NULL;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		char **users = NULL;
		int n = accounts_resolve(r->srv->accounts, m->rcpts[i].addr, &users, &err);
		if (n == 0 && ascii_strncasecmp(m->rcpts[i].addr, "postmaster@", 11) == 0) {
			char *first = accounts_first_user(r->srv->accounts);
			if (first) {
				users = xmalloc(sizeof *users);
				users[0] = first;
				n = 1;
			}
		}
		if (n < 0) {
			rmsg_set(x, i, QUEUE_OUT_TEMPFAIL, 0, "4.3.0", err ? err : "lookup failure",
				 "local", NULL, 0);
			free(err);
			err = NULL;
			continue;
		}
		if (n == 0) {
			rmsg_set(x, i, QUEUE_OUT_PERMFAIL, 550, "5.1.1",
				 "Recipient address rejected: User unknown", "local", NULL, 0);
			continue;
		}
		for (int u = 0; u < n; u++) {
			if (has_user(all, nall, users[u])) {
				free(users[u]);
				continue;
			}
			all = xrealloc(all, (nall + 1) * sizeof *all);
			all[nall++] = users[u];
		}
		free(users);
	}
	if (nall == 0) {
		rmsg_finish(r, &x);
		return;
	}
	struct buf content = BUF_INIT(0);
	bool trunc = false;
	int rc = queue_read(r->srv->queue, m, RELAY_MAX_LOCAL_MSG, &content, &trunc, &err);
	struct delivery *d = NULL;
	if (rc == 0 && !trunc) {
		d = delivery_new(cfg->hostname);
		for (size_t u = 0; u < nall && d; u++) {
			char *root = maildir_account_path(cfg->data_dir, all[u]);
			char *hdr = xasprintf("Return-Path: <%s>\nDelivered-To: %s\n", m->sender,
					      all[u]);
			int ar = root ? delivery_add_target(d, root, hdr, &err) : -1;
			free(hdr);
			free(root);
			if (ar < 0)
				delivery_abort(&d);
		}
		if (d && delivery_write(d, content.data, content.len) < 0)
			delivery_abort(&d);
	}
	buf_deinit(&content);
	if (!d) {
		bool gone = rc < 0 && errno == ENOENT;
		if (!gone)
			log_warnx("%s relay local delivery: %s", m->id,
				  err ? err : trunc ? "message too large" : "cannot write mailbox");
		free(err);
		for (size_t i = 0; i < m->n_rcpts && !gone; i++)
			rmsg_set(x, i, QUEUE_OUT_TEMPFAIL, 0, "4.3.0", "local delivery failed",
				 "local", NULL, 0);
		rmsg_finish(r, &x);
		accounts_free_list(all, nall);
		return;
	}
	struct local_dlv *ld = xcalloc(1, sizeof *ld);
	ld->job = j;
	ld->x = x;
	ld->users = all;
	ld->nusers = nall;
	j->nlocal++;
	committer_submit(r->srv->committer, d, local_done, ld);
}

/* ---- scanning ---- */

static void job_start(struct rjob *j)
{
	struct relay *r = j->r;
	if (j->local) {
		j->resolved = true;
		struct rmsg *x;
		while ((x = job_pop(j)))
			deliver_local(j, x);
		return;
	}
	if (j->smarthost) {
		j->dreq = dns_host_addrs(r->dns, j->shost, strlen(j->shost), 0, job_resolved, j);
	} else {
		j->port = (uint16_t)cfg_of(r)->relay_mx_port;
		j->dreq = dns_mx_targets(r->dns, j->key, strlen(j->key), 0, job_resolved, j);
	}
}

static struct rjob *job_find(struct relay *r, const char *key)
{
	for (struct rjob *j = r->jobs; j; j = j->next)
		if (!strcmp(j->key, key) && !j->local)
			return j;
	return NULL;
}

/* Due recipients become jobs (loop thread). */
static void scan_apply(struct relay *r, struct queue_due *due)
{
	const struct config *cfg = cfg_of(r);
	char shost[256] = "";
	uint16_t sport = 25;
	const char *why = NULL;
	bool smart = *cfg->relay_host &&
		     config_parse_hostport(cfg->relay_host, shost, sizeof shost, &sport, &why) == 0;
	for (size_t b = 0; b < due->n; b++) {
		struct queue_batch *bt = &due->v[b];
		bool local = config_is_local_domain(cfg, bt->domain);
		struct rjob *j = NULL;
		char *key = local ? xstrdup(bt->domain)
			    : smart ? xasprintf("[%s]:%u", shost, sport)
				    : xstrdup(bt->domain);
		if (!local)
			j = job_find(r, key);
		if (!j) {
			j = xcalloc(1, sizeof *j);
			j->r = r;
			j->key = key;
			j->local = local;
			j->smarthost = !local && smart;
			if (j->smarthost) {
				snprintf(j->shost, sizeof j->shost, "%s", shost);
				j->port = sport;
			}
			j->next = r->jobs;
			r->jobs = j;
		} else {
			free(key);
		}
		for (size_t m = 0; m < bt->n_msgs; m++) {
			r->inflight += bt->msgs[m]->n_rcpts;
			job_push(j, rmsg_new(bt->msgs[m]));
			bt->msgs[m] = NULL;
		}
	}
	/* start new jobs; existing resolved ones may open more sessions */
	struct rjob *next;
	for (struct rjob *j = r->jobs; j; j = next) {
		next = j->next;
		if (!j->resolved && !j->dreq)
			job_start(j);
		else if (j->resolved)
			job_pump(j);
	}
	for (struct rjob *j = r->jobs; j; j = next) {
		next = j->next;
		job_maybe_finish(j);
	}
}

/* A scan came back from the worker (or ran inline). */
static void scan_done(struct relay *r, struct rop *op)
{
	r->scanning = false;
	if (op->err_due)
		log_warnx("relay: queue_due: %s", op->err_due);
	if (op->nd < 0)
		log_warnx("relay: queue_next_due: %s", op->err_next ? op->err_next : "?");
	if (r->stopping) {
		/* claimed meanwhile: give everything back untouched */
		for (size_t b = 0; b < op->due.n; b++)
			for (size_t m = 0; m < op->due.v[b].n_msgs; m++) {
				struct rmsg *x = rmsg_new(op->due.v[b].msgs[m]);
				op->due.v[b].msgs[m] = NULL;
				r->inflight += x->m->n_rcpts;
				rmsg_finish(r, &x);
			}
	} else {
		scan_apply(r, &op->due);
		/* sleep until the next due recipient, at most a minute */
		uint64_t ms = RELAY_SCAN_MAX_MS;
		if (op->nd == 1) {
			if (op->next_t <= op->now)
				ms = r->inflight >= RELAY_MAX_INFLIGHT ? RELAY_SCAN_MAX_MS : 1000;
			else if ((uint64_t)(op->next_t - op->now) * 1000 < ms)
				ms = (uint64_t)(op->next_t - op->now) * 1000;
		}
		schedule_scan(r, ms);
		if (r->rescan) {
			r->rescan = false;
			schedule_scan(r, 0);
		}
	}
	queue_due_free(&op->due);
	free(op->err_due);
	free(op->err_next);
	free(op);
}

/* Look at the queue: claim what is due (on the worker), then scan_done(). */
static void scan(struct relay *r)
{
	if (r->stopping)
		return;
	if (r->scanning) {
		r->rescan = true; /* something may have been queued after its query */
		return;
	}
	r->scanning = true;
	struct rop *op = xcalloc(1, sizeof *op);
	op->scan = true;
	op->now = time_unix();
	op->max = r->inflight < RELAY_MAX_INFLIGHT ? RELAY_MAX_INFLIGHT - r->inflight : 0;
	rop_submit(r, op);
}

static void scan_fired(struct evloop *ev, void *ctx)
{
	(void)ev;
	struct relay *r = ctx;
	r->scan_timer = NULL;
	r->scan_at = 0;
	scan(r);
}

/* Make sure a scan happens within ms (an earlier one already armed stays). */
static void schedule_scan(struct relay *r, uint64_t ms)
{
	if (r->stopping)
		return;
	uint64_t at = ev_now_ms(r->ev) + ms;
	if (r->scan_timer && r->scan_at <= at)
		return;
	ev_timer_del(r->ev, &r->scan_timer);
	r->scan_timer = ev_timer_add(r->ev, ms, scan_fired, r);
	r->scan_at = at;
}

void relay_kick(struct relay *r)
{
	if (r)
		schedule_scan(r, 0);
}

static void notify_fired(struct evloop *ev, void *ctx)
{
	struct relay *r = ctx;
	r->notify_timer = NULL;
	struct rop *op = xcalloc(1, sizeof *op);
	op->all = true;
	rop_submit(r, op);
	if (!r->stopping)
		r->notify_timer = ev_timer_add(ev, RELAY_NOTIFY_MS, notify_fired, r);
}

/* `tern queue flush` writes <spool>/flush: rescan now. */
static void ino_ready(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)ev;
	(void)events;
	struct relay *r = ctx;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool flush = false;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			if (e->len && !strcmp(e->name, FLUSH_TRIGGER))
				flush = true;
			p += sizeof *e + e->len;
		}
	}
	if (flush) {
		log_info("relay: flush requested");
		relay_kick(r);
	}
}

struct relay *relay_new(struct server *srv, char **err_r)
{
	const struct config *cfg = srv->cfg;
	*err_r = NULL;
	struct relay *r = xcalloc(1, sizeof *r);
	r->srv = srv;
	r->ev = srv->ev;
	r->ino_fd = -1;
	struct buf servers = BUF_INIT(0);
	for (size_t i = 0; i < cfg->dns_servers.n; i++)
		buf_xprintf(&servers, "%s%s", i ? " " : "", cfg->dns_servers.v[i]);
	struct dns_settings ds = {
		.servers = servers.len ? buf_cstr(&servers) : NULL,
		.timeout_ms = 2000,
		.tries = 2,
	};
	r->dns = dns_new(r->ev, &ds, err_r);
	buf_deinit(&servers);
	if (!r->dns) {
		free(r);
		return NULL;
	}
	char *terr = NULL;
	r->tls = tls_ctx_client_new(NULL, &terr);
	if (!r->tls) {
		log_warnx("relay: no client TLS (%s): outbound mail goes without STARTTLS",
			  terr ? terr : "?");
		free(terr);
	}
	/* the queue worker: results recorded off the loop */
	pthread_mutex_init(&r->wlock, NULL);
	pthread_cond_init(&r->wcond, NULL);
	r->wtail = &r->work;
	r->done_tail = &r->done;
	char *qerr = NULL;
	r->wq = queue_open(cfg->data_dir, QUEUE_OPEN_WRITER, &qerr);
	if (r->wq) {
		queue_set_policy(r->wq, &(struct queue_policy){
						.retry = (int64_t)cfg->queue_retry,
						.lifetime = (int64_t)cfg->queue_lifetime,
						.delay_warn = (int64_t)cfg->queue_delay_warning,
						.hostname = cfg->hostname,
					});
		r->wasync = ev_async_new(r->ev, worker_async, r);
		if (pthread_create(&r->wthread, NULL, worker_main, r) != 0) {
			log_warnx("relay: no queue worker thread; recording on the event loop");
			ev_async_free(&r->wasync);
			queue_close(&r->wq);
		}
	} else {
		log_warnx("relay: %s; recording on the event loop", qerr ? qerr : "?");
		free(qerr);
	}
	r->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (r->ino_fd >= 0) {
		const char *spool = queue_spool_root(srv->queue);
		if (inotify_add_watch(r->ino_fd, spool,
				      IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB | IN_CREATE) < 0 ||
		    ev_add_fd(r->ev, r->ino_fd, EV_READ, ino_ready, r) < 0) {
			log_warn("relay: cannot watch %s for flush requests", spool);
			close(r->ino_fd);
			r->ino_fd = -1;
		}
	}
	/* crash leftovers and delay warnings first, then the due mail */
	r->notify_timer = ev_timer_add(r->ev, 0, notify_fired, r);
	schedule_scan(r, 0);
	return r;
}

void relay_stop(struct relay *r)
{
	if (!r || r->stopping)
		return;
	r->stopping = true;
	ev_timer_del(r->ev, &r->scan_timer);
	ev_timer_del(r->ev, &r->notify_timer);
	/* unstarted work goes back to the queue; sessions QUIT after their
	 * current message (their conns get ops->shutdown from the server) */
	struct rjob *next;
	for (struct rjob *j = r->jobs; j; j = next) {
		next = j->next;
		if (j->dreq) {
			dns_cancel(&j->dreq);
			j->resolved = true;
		}
		job_pump(j);
		job_maybe_finish(j);
	}
}

bool relay_idle(const struct relay *r)
{
	if (!r)
		return true;
	if (r->nconns || r->nops)
		return false;
	for (const struct rjob *j = r->jobs; j; j = j->next)
		if (j->nlocal)
			return false;
	return true;
}

void relay_free(struct relay **rp)
{
	struct relay *r = *rp;
	if (!r)
		return;
	relay_stop(r);
	/* close what is still open: each session's closed() releases its
	 * message's unfinished recipients */
	while (r->sessions && r->sessions->conn)
		conn_close(r->sessions->conn, "server stopping");
	*rp = NULL;
	ev_timer_del(r->ev, &r->scan_timer);
	ev_timer_del(r->ev, &r->notify_timer);
	if (r->ino_fd >= 0) {
		ev_del_fd(r->ev, r->ino_fd);
		close(r->ino_fd);
	}
	struct rjob *next;
	for (struct rjob *j = r->jobs; j; j = next) {
		next = j->next;
		job_free(j);
	}
	r->jobs = NULL;
	if (r->wq) {
		/* the worker drains what is queued, then exits */
		pthread_mutex_lock(&r->wlock);
		r->wstop = true;
		pthread_cond_signal(&r->wcond);
		pthread_mutex_unlock(&r->wlock);
		pthread_join(r->wthread, NULL);
		r->worker_gone = true;
		worker_reap(r);
		ev_async_free(&r->wasync);
		queue_close(&r->wq);
	}
	pthread_mutex_destroy(&r->wlock);
	pthread_cond_destroy(&r->wcond);
	dns_free(&r->dns);
	tls_ctx_unref(&r->tls);
	free(r);
}
