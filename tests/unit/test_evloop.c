/* SPDX-License-Identifier: MIT */
/* Event loop tests: timer order (including equal deadlines and deletes from
 * callbacks), a heap stress run, fd readiness on a pipe, stale events after
 * ev_del_fd, paused fds, ev_async from another thread, signals via raise(),
 * before-sleep hooks. Every test has a guard timer so it is bounded in time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "io/evloop.h"

static bool guard_hit;

static void guard_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	guard_hit = true;
	evloop_stop(ev);
}

static void stop_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	evloop_stop(ev);
}

static struct evloop *new_loop(void)
{
	struct evloop *ev = evloop_new();
	assert_non_null(ev);
	guard_hit = false;
	/* The handle is freed by evloop_free if it never fires. */
	assert_non_null(ev_timer_add(ev, 3000, guard_cb, NULL));
	return ev;
}

/* ---- timers ---- */

static char order[64];
static size_t norder;

static void rec_cb(struct evloop *ev, void *ctx)
{
	(void)ev;
	order[norder++] = *(const char *)ctx;
}

static void test_timer_order(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	norder = 0;
	static char a = 'a', b = 'b', c = 'c', d = 'd', x = 'x';
	ev_timer_add(ev, 30, rec_cb, &c);
	ev_timer_add(ev, 10, rec_cb, &a);
	ev_timer_add(ev, 20, rec_cb, &b);
	ev_timer_add(ev, 10, rec_cb, &d); /* same ms as 'a': fires after it */
	struct ev_timer *gone = ev_timer_add(ev, 15, rec_cb, &x);
	ev_timer_del(ev, &gone);
	assert_null(gone);
	ev_timer_del(ev, &gone); /* safe on NULL */
	ev_timer_add(ev, 40, stop_cb, NULL);
	uint64_t t0 = ev_now_ms(ev);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(guard_hit);
	assert_int_equal(norder, 4);
	assert_memory_equal(order, "adbc", 4);
	assert_true(ev_now_ms(ev) >= t0 + 40);
	evloop_free(&ev);
	assert_null(ev);
}

static struct ev_timer *self_timer;
static int self_fired;

static void self_del_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	self_fired++;
	ev_timer_del(ev, &self_timer); /* deleting yourself while firing is allowed */
	assert_null(self_timer);
	evloop_stop(ev);
}

static void test_timer_del_in_callback(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	self_fired = 0;
	self_timer = ev_timer_add(ev, 1, self_del_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	assert_int_equal(self_fired, 1);
	assert_false(guard_hit);
	evloop_free(&ev);
}

/* Many timers with random deadlines and random deletions: the ones that stay
 * fire exactly once, in deadline order. */
static uint64_t last_at;
static unsigned fired_count;
static bool out_of_order;

struct stress_timer {
	uint64_t at;
	struct ev_timer *t;
};

static void stress_cb(struct evloop *ev, void *ctx)
{
	struct stress_timer *st = ctx;
	st->t = NULL;
	if (st->at < last_at)
		out_of_order = true;
	last_at = st->at;
	fired_count++;
	(void)ev;
}

static void test_timer_heap_stress(void **state)
{
	(void)state;
	enum { N = 20000 };
	struct evloop *ev = new_loop();
	struct stress_timer *ts = calloc(N, sizeof *ts);
	assert_non_null(ts);
	srand(42);
	uint64_t base = ev_now_ms(ev);
	for (unsigned i = 0; i < N; i++) {
		uint64_t ms = (uint64_t)(rand() % 60);
		ts[i].at = base + ms;
		ts[i].t = ev_timer_add(ev, ms, stress_cb, &ts[i]);
	}
	unsigned kept = N;
	for (unsigned i = 0; i < N; i += 2) {
		ev_timer_del(ev, &ts[i].t);
		kept--;
	}
	last_at = 0;
	fired_count = 0;
	out_of_order = false;
	ev_timer_add(ev, 100, stop_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(guard_hit);
	assert_int_equal(fired_count, kept);
	assert_false(out_of_order);
	for (unsigned i = 0; i < N; i++)
		assert_null(ts[i].t);
	free(ts);
	evloop_free(&ev);
}

/* ---- fds ---- */

struct pipe_ctx {
	int reads;
	int writes;
	char got[8];
};

static void pipe_read_cb(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	struct pipe_ctx *p = ctx;
	assert_true(events & EV_READ);
	ssize_t n = read(fd, p->got, sizeof p->got);
	assert_true(n > 0);
	p->reads++;
	evloop_stop(ev);
}

static void pipe_write_cb(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	struct pipe_ctx *p = ctx;
	assert_true(events & EV_WRITE);
	assert_int_equal(write(fd, "x", 1), 1);
	p->writes++;
	ev_mod_fd(ev, fd, 0); /* one write is enough */
}

static void test_fd_pipe(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct pipe_ctx pc = { 0 };
	assert_int_equal(ev_add_fd(ev, p[0], EV_READ, pipe_read_cb, &pc), 0);
	assert_int_equal(ev_add_fd(ev, p[1], EV_WRITE, pipe_write_cb, &pc), 0);
	/* A second registration for the same fd is refused. */
	assert_int_equal(ev_add_fd(ev, p[0], EV_READ, pipe_read_cb, &pc), -1);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(guard_hit);
	assert_int_equal(pc.writes, 1);
	assert_int_equal(pc.reads, 1);
	assert_int_equal(pc.got[0], 'x');
	ev_del_fd(ev, p[0]);
	ev_del_fd(ev, p[1]);
	ev_del_fd(ev, p[1]); /* unknown fd: ignored */
	close(p[0]);
	close(p[1]);
	evloop_free(&ev);
}

/* A paused fd (mask 0) whose peer hung up must not be reported: epoll always
 * reports EPOLLHUP, so the loop has to take it out of epoll. */
static int hup_calls;

static void hup_cb(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)ev;
	(void)fd;
	(void)events;
	(void)ctx;
	hup_calls++;
}

static void test_fd_paused_not_reported(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(ev_add_fd(ev, p[0], EV_READ, hup_cb, NULL), 0);
	ev_mod_fd(ev, p[0], 0);
	close(p[1]); /* p[0] now has EPOLLHUP */
	hup_calls = 0;
	ev_timer_add(ev, 30, stop_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	assert_int_equal(hup_calls, 0);
	/* Resumed, the hangup is delivered as readable. */
	ev_mod_fd(ev, p[0], EV_READ);
	ev_timer_add(ev, 30, stop_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	assert_true(hup_calls > 0);
	ev_del_fd(ev, p[0]);
	close(p[0]);
	evloop_free(&ev);
}

/* Two readable fds in one batch; whichever runs first deletes the other: the
 * stale event must be dropped. */
static int stale_calls;
static int stale_fds[2];

static void stale_cb(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	(void)ctx;
	stale_calls++;
	int other = fd == stale_fds[0] ? stale_fds[1] : stale_fds[0];
	ev_del_fd(ev, other);
	ev_del_fd(ev, fd);
	evloop_stop(ev);
}

static void test_fd_stale_event_dropped(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	int a[2], b[2];
	assert_int_equal(pipe(a), 0);
	assert_int_equal(pipe(b), 0);
	assert_int_equal(write(a[1], "1", 1), 1);
	assert_int_equal(write(b[1], "1", 1), 1);
	stale_fds[0] = a[0];
	stale_fds[1] = b[0];
	stale_calls = 0;
	assert_int_equal(ev_add_fd(ev, a[0], EV_READ, stale_cb, NULL), 0);
	assert_int_equal(ev_add_fd(ev, b[0], EV_READ, stale_cb, NULL), 0);
	assert_int_equal(evloop_run(ev), 0);
	assert_int_equal(stale_calls, 1);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	evloop_free(&ev);
}

/* ---- async ---- */

static int async_calls;

static void async_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	async_calls++;
	evloop_stop(ev);
}

static void *notifier(void *arg)
{
	usleep(20000);
	for (int i = 0; i < 10; i++)
		ev_async_notify(arg);
	return NULL;
}

static void test_async_from_thread(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	struct ev_async *a = ev_async_new(ev, async_cb, NULL);
	assert_non_null(a);
	async_calls = 0;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, notifier, a), 0);
	assert_int_equal(evloop_run(ev), 0);
	pthread_join(th, NULL);
	assert_false(guard_hit);
	/* Ten notifies are coalesced into at least one call. */
	assert_true(async_calls >= 1 && async_calls <= 10);
	ev_async_free(&a);
	assert_null(a);
	evloop_free(&ev);
}

/* ---- signals ---- */

static int sig_got;

static void sig_cb(struct evloop *ev, int signo, void *ctx)
{
	(void)ctx;
	sig_got = signo;
	evloop_stop(ev);
}

static void raise_cb(struct evloop *ev, void *ctx)
{
	(void)ev;
	(void)ctx;
	raise(SIGUSR1);
}

static void test_signal(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	sig_got = 0;
	assert_int_equal(ev_add_signal(ev, SIGUSR1, sig_cb, NULL), 0);
	assert_int_equal(ev_add_signal(ev, SIGKILL, sig_cb, NULL), -1);
	ev_timer_add(ev, 5, raise_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(guard_hit);
	assert_int_equal(sig_got, SIGUSR1);
	/* Blocked for the process: it is only ever seen through the loop. */
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	assert_true(sigismember(&cur, SIGUSR1));
	evloop_free(&ev);
}

/* ---- hooks ---- */

static int hook_calls;

static void hook_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	if (++hook_calls == 3)
		evloop_stop(ev);
}

static void tick_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	ev_timer_add(ev, 1, tick_cb, NULL);
}

static void test_before_sleep(void **state)
{
	(void)state;
	struct evloop *ev = new_loop();
	hook_calls = 0;
	ev_before_sleep(ev, hook_cb, NULL);
	ev_timer_add(ev, 1, tick_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(guard_hit);
	assert_int_equal(hook_calls, 3);
	evloop_free(&ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_del_in_callback),
		cmocka_unit_test(test_timer_heap_stress),
		cmocka_unit_test(test_fd_pipe),
		cmocka_unit_test(test_fd_paused_not_reported),
		cmocka_unit_test(test_fd_stale_event_dropped),
		cmocka_unit_test(test_async_from_thread),
		cmocka_unit_test(test_signal),
		cmocka_unit_test(test_before_sleep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
