/* SPDX-License-Identifier: MIT */
/* Worker thread pool. Jobs wait in a FIFO under one mutex + condvar; a worker
 * runs job->run(ctx), marks the job finished and wakes the loop through an
 * ev_async. Every job is also on an "inflight" list in submission order; the
 * loop thread runs done(ctx) callbacks from the head of that list while the
 * head has finished, so completions are delivered in submission order even
 * when runs finish out of order (a slow job delays the done() of later ones,
 * never their run()). A job's done() always runs after its own run() returned.
 *
 * Workers block every signal so that signals reach the loop's signalfd. */
#include "io/jobs.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/util.h"
#include "io/evloop.h"

struct job {
	jobs_run_fn *run;
	jobs_done_fn *done;
	void *ctx;
	struct job *next;	   /* queue link */
	struct job *next_inflight; /* submission-order link */
	bool finished;
};

struct job_list {
	struct job *head, *tail;
};

struct jobs {
	struct evloop *ev;
	struct ev_async *async;
	pthread_t *threads;
	unsigned nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job_list queue;   /* submitted, not started */
	struct job *inflight;    /* every job whose done() has not run, oldest first */
	struct job *inflight_tail;
	bool stopping;
};

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct job *list_pop(struct job_list *l)
{
	struct job *j = l->head;
	if (j) {
		l->head = j->next;
		if (!l->head)
			l->tail = NULL;
	}
	return j;
}

static void *worker(void *arg)
{
	struct jobs *js = arg;
	pthread_mutex_lock(&js->mu);
	for (;;) {
		struct job *j = list_pop(&js->queue);
		if (!j) {
			if (js->stopping)
				break;
			pthread_cond_wait(&js->cv, &js->mu);
			continue;
		}
		pthread_mutex_unlock(&js->mu);
		if (j->run)
			j->run(j->ctx);
		pthread_mutex_lock(&js->mu);
		j->finished = true;
		bool head = j == js->inflight;
		pthread_mutex_unlock(&js->mu);
		if (head) /* later jobs wait for the head anyway */
			ev_async_notify(js->async);
		pthread_mutex_lock(&js->mu);
	}
	pthread_mutex_unlock(&js->mu);
	return NULL;
}

/* Loop thread: run the done() callbacks of the finished jobs at the head of
 * the submission order. */
static void run_done(struct jobs *js)
{
	struct job_list batch = { NULL, NULL };
	pthread_mutex_lock(&js->mu);
	while (js->inflight && js->inflight->finished) {
		struct job *j = js->inflight;
		js->inflight = j->next_inflight;
		if (!js->inflight)
			js->inflight_tail = NULL;
		list_push(&batch, j);
	}
	pthread_mutex_unlock(&js->mu);
	struct job *j;
	while ((j = list_pop(&batch))) {
		if (j->done)
			j->done(j->ctx);
		free(j);
	}
}

static void jobs_wakeup(struct evloop *ev, void *ctx)
{
	(void)ev;
	run_done(ctx);
}

struct jobs *jobs_new(struct evloop *ev, unsigned nthreads)
{
	if (nthreads == 0)
		nthreads = 1;
	struct jobs *js = xcalloc(1, sizeof *js);
	js->ev = ev;
	pthread_mutex_init(&js->mu, NULL);
	pthread_cond_init(&js->cv, NULL);
	js->async = ev_async_new(ev, jobs_wakeup, js);
	if (!js->async)
		goto fail;
	js->threads = xcalloc(nthreads, sizeof *js->threads);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* inherited by the workers */
	for (unsigned i = 0; i < nthreads; i++) {
		int e = pthread_create(&js->threads[i], NULL, worker, js);
		if (e != 0) {
			log_warnx("pthread_create: error %d", e);
			break;
		}
		js->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (js->nthreads == 0)
		goto fail;
	return js;
fail:
	ev_async_free(&js->async);
	free(js->threads);
	pthread_cond_destroy(&js->cv);
	pthread_mutex_destroy(&js->mu);
	free(js);
	return NULL;
}

void jobs_submit(struct jobs *js, jobs_run_fn *run, jobs_done_fn *done, void *ctx)
{
	struct job *j = xmalloc(sizeof *j);
	j->run = run;
	j->done = done;
	j->ctx = ctx;
	j->finished = false;
	j->next_inflight = NULL;
	pthread_mutex_lock(&js->mu);
	ASSERT(!js->stopping);
	list_push(&js->queue, j);
	if (js->inflight_tail)
		js->inflight_tail->next_inflight = j;
	else
		js->inflight = j;
	js->inflight_tail = j;
	pthread_cond_signal(&js->cv);
	pthread_mutex_unlock(&js->mu);
}

void jobs_free(struct jobs **jp)
{
	struct jobs *js = *jp;
	if (!js)
		return;
	*jp = NULL;
	pthread_mutex_lock(&js->mu);
	js->stopping = true;
	pthread_cond_broadcast(&js->cv);
	pthread_mutex_unlock(&js->mu);
	for (unsigned i = 0; i < js->nthreads; i++)
		pthread_join(js->threads[i], NULL);
	/* Every queued job has run; deliver the remaining completions here. */
	run_done(js);
	ASSERT(!js->inflight);
	ev_async_free(&js->async);
	free(js->threads);
	pthread_cond_destroy(&js->cv);
	pthread_mutex_destroy(&js->mu);
	free(js);
}
