/* SPDX-License-Identifier: MIT */
/* Shared login checks (see login.h). A request outlives a cancelled
 * session: the job still runs, its result is dropped. */
#include "daemon/login.h"

#include <stdlib.h>
#include <string.h>

#include "auth/accounts.h"
#include "auth/throttle.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "io/evloop.h"
#include "io/jobs.h"

struct login_req {
	struct session *s; /* NULL once cancelled */
	struct server *srv;
	const char *proto;
	enum login_kind kind;
	char *method, *data_dir, *user, *secret, *timestamp, *canon;
	bool ok;
	bool running; /* the job has not reported yet */
	struct ev_timer *delay;
	login_done_fn *done;
};

static void req_free(struct login_req *r)
{
	if (r->secret) {
		explicit_bzero(r->secret, strlen(r->secret));
		free(r->secret);
	}
	free(r->method);
	free(r->data_dir);
	free(r->user);
	free(r->timestamp);
	free(r->canon);
	free(r);
}

static void job_run(void *ctx)
{
	struct login_req *r = ctx;
	char *err = NULL;
	struct accounts *a = accounts_open(r->data_dir, &err);
	if (!a) {
		log_warnx("login: accounts_open(%s) failed: %s", r->data_dir, err ? err : "?");
		free(err);
		return;
	}
	if (r->kind == LOGIN_PASSWORD)
		r->ok = accounts_verify_password(a, r->user, r->secret);
	else
		r->ok = accounts_apop_verify(a, r->user, r->timestamp, r->secret);
	if (r->ok && !accounts_user_exists(a, r->user, &r->canon))
		r->ok = false;
	accounts_close(&a);
}

static void finish(struct login_req *r)
{
	struct session *s = r->s;
	char *canon = r->canon;
	r->canon = NULL;
	bool ok = r->ok;
	login_done_fn *done = r->done;
	req_free(r);
	if (s)
		done(s, ok, canon);
	else
		free(canon);
}

static void delay_fired(struct evloop *ev, void *ctx)
{
	struct login_req *r = ctx;
	(void)ev;
	r->delay = NULL;
	finish(r);
}

unsigned login_record(struct session *s, const char *proto, const char *method,
		      const char *user, bool ok)
{
	struct server *srv = s->srv;
	char u[200];
	log_escape(user, strlen(user), u, sizeof u);
	if (ok) {
		throttle_success(srv->throttle, s->peer);
		log_info("%s %s login user=%s method=%s client=%s", s->id, proto, u, method,
			 s->peer);
		return 0;
	}
	throttle_failure(srv->throttle, s->peer, time_mono_ms());
	log_info("%s %s login failed user=%s method=%s client=%s", s->id, proto, u, method,
		 s->peer);
	return throttle_delay_ms(srv->throttle, s->peer, time_mono_ms());
}

static void job_done(void *ctx)
{
	struct login_req *r = ctx;
	r->running = false;
	if (!r->s) {
		req_free(r);
		return;
	}
	unsigned delay = login_record(r->s, r->proto, r->method, r->user, r->ok);
	if (!r->ok && delay) {
		/* RFC 1939 4 / RFC 9051 6.2.3: a server may delay after a failure */
		r->delay = ev_timer_add(r->srv->ev, delay, delay_fired, r);
		return;
	}
	finish(r);
}

struct login_req *login_start(struct session *s, const char *proto, enum login_kind kind,
			      const char *method, const char *user, const char *secret,
			      const char *timestamp, login_done_fn *done)
{
	struct login_req *r = xcalloc(1, sizeof *r);
	r->s = s;
	r->srv = s->srv;
	r->proto = proto;
	r->kind = kind;
	r->method = xstrdup(method);
	r->data_dir = xstrdup(s->cfg->data_dir);
	r->user = xstrdup(user);
	r->secret = xstrdup(secret);
	r->timestamp = timestamp ? xstrdup(timestamp) : NULL;
	r->done = done;
	r->running = true;
	jobs_submit(s->srv->jobs, job_run, job_done, r);
	return r;
}

void login_cancel(struct login_req **rp)
{
	struct login_req *r = *rp;
	*rp = NULL;
	if (!r)
		return;
	r->s = NULL;
	if (r->delay) {
		ev_timer_del(r->srv->ev, &r->delay);
		req_free(r);
		return;
	}
	/* the job still owns r: job_done frees it */
}
