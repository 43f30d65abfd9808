/* SPDX-License-Identifier: MIT */
/* Job pool tests: run() happens on a worker thread, done() on the loop thread
 * after its run(), every job completes exactly once, done() callbacks come in
 * submission order, and jobs_free finishes what is queued. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "io/evloop.h"
#include "io/jobs.h"

enum { NJOBS = 200 };

struct job_rec {
	unsigned id;
	atomic_bool ran;
	bool ran_on_worker;
	bool done;
	bool ran_before_done;
	bool done_on_loop;
};

static pthread_t loop_thread;
static struct job_rec recs[NJOBS];
static unsigned done_order[NJOBS];
static unsigned ndone;
static unsigned expect_done;

static void job_run(void *ctx)
{
	struct job_rec *r = ctx;
	r->ran_on_worker = !pthread_equal(pthread_self(), loop_thread);
	if (r->id % 7 == 0)
		usleep(200); /* mix fast and slow jobs */
	atomic_store(&r->ran, true);
}

static void job_done(void *ctx)
{
	struct job_rec *r = ctx;
	r->ran_before_done = atomic_load(&r->ran);
	r->done_on_loop = pthread_equal(pthread_self(), loop_thread);
	r->done = true;
	done_order[ndone++] = r->id;
}

static void check_done(struct evloop *ev, void *ctx)
{
	(void)ctx;
	if (ndone >= expect_done)
		evloop_stop(ev);
}

static void tick(struct evloop *ev, void *ctx)
{
	(void)ctx;
	ev_timer_add(ev, 1, tick, NULL);
}

static bool guard_hit;

static void guard(struct evloop *ev, void *ctx)
{
	(void)ctx;
	guard_hit = true;
	evloop_stop(ev);
}

static void reset(void)
{
	loop_thread = pthread_self();
	ndone = 0;
	guard_hit = false;
	for (unsigned i = 0; i < NJOBS; i++) {
		recs[i].id = i;
		atomic_store(&recs[i].ran, false);
		recs[i].ran_on_worker = recs[i].done = false;
		recs[i].ran_before_done = recs[i].done_on_loop = false;
	}
}

static void run_jobs(unsigned nthreads, unsigned njobs)
{
	reset();
	struct evloop *ev = evloop_new();
	assert_non_null(ev);
	struct jobs *js = jobs_new(ev, nthreads);
	assert_non_null(js);
	ev_before_sleep(ev, check_done, NULL);
	ev_timer_add(ev, 1, tick, NULL);
	ev_timer_add(ev, 5000, guard, NULL);
	expect_done = njobs;
	for (unsigned i = 0; i < njobs; i++)
		jobs_submit(js, job_run, job_done, &recs[i]);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(guard_hit);
	assert_int_equal(ndone, njobs);
	for (unsigned i = 0; i < njobs; i++) {
		assert_true(recs[i].done);
		assert_true(recs[i].ran_on_worker);
		assert_true(recs[i].ran_before_done);
		assert_true(recs[i].done_on_loop);
	}
	jobs_free(&js);
	assert_null(js);
	assert_int_equal(ndone, njobs); /* nothing delivered twice */
	evloop_free(&ev);
}

static void test_many_threads(void **state)
{
	(void)state;
	run_jobs(4, NJOBS);
	/* Runs finish out of order (every 7th is slow); done() keeps submission order. */
	for (unsigned i = 0; i < NJOBS; i++)
		assert_int_equal(done_order[i], i);
}

static void test_one_thread_keeps_order(void **state)
{
	(void)state;
	run_jobs(1, 50);
	for (unsigned i = 0; i < 50; i++)
		assert_int_equal(done_order[i], i);
}

static void test_free_finishes_queued(void **state)
{
	(void)state;
	reset();
	struct evloop *ev = evloop_new();
	assert_non_null(ev);
	struct jobs *js = jobs_new(ev, 2);
	assert_non_null(js);
	for (unsigned i = 0; i < 30; i++)
		jobs_submit(js, job_run, job_done, &recs[i]);
	/* The loop never runs: jobs_free must still run and complete them. */
	jobs_free(&js);
	assert_int_equal(ndone, 30);
	for (unsigned i = 0; i < 30; i++) {
		assert_true(recs[i].ran_before_done);
		assert_true(recs[i].done_on_loop);
	}
	evloop_free(&ev);
}

static void test_null_callbacks(void **state)
{
	(void)state;
	reset();
	struct evloop *ev = evloop_new();
	assert_non_null(ev);
	struct jobs *js = jobs_new(ev, 1);
	assert_non_null(js);
	jobs_submit(js, job_run, NULL, &recs[0]); /* fire and forget */
	jobs_submit(js, NULL, job_done, &recs[1]);
	jobs_free(&js);
	assert_true(atomic_load(&recs[0].ran));
	assert_false(recs[0].done);
	assert_true(recs[1].done);
	evloop_free(&ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_threads),
		cmocka_unit_test(test_one_thread_keeps_order),
		cmocka_unit_test(test_free_finishes_queued),
		cmocka_unit_test(test_null_callbacks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
