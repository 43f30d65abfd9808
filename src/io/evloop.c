/* SPDX-License-Identifier: MIT */
/* The event loop: level-triggered epoll over an fd table indexed by fd,
 * one-shot timers in a binary min-heap (O(log n) add/delete, so 10,000+
 * connection timers stay cheap), signals through one signalfd, before-sleep
 * hooks, and eventfd-based ev_async for wakeups from worker threads.
 *
 * Stale events: each fd slot carries a generation number that is stored in the
 * epoll data next to the fd, so an event for an fd that was deleted (and maybe
 * re-added) earlier in the same epoll_wait batch is dropped, not misdelivered.
 * An fd whose mask is 0 is taken out of epoll entirely: epoll always reports
 * EPOLLHUP/EPOLLERR, and a paused connection must not spin on them. */
#include "io/evloop.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

#define TIMER_FIRING SIZE_MAX
#define MAX_EVENTS 256
#define MAX_SIGNO 64

struct fd_slot {
	ev_fd_cb *cb;
	void *ctx;
	unsigned mask;
	uint32_t gen;
	bool used;
	bool in_epoll;
};

struct ev_timer {
	uint64_t at;
	uint64_t seq;
	ev_timer_cb *cb;
	void *ctx;
	size_t idx; /* heap position, or TIMER_FIRING while its callback runs */
};

struct hook {
	ev_hook_cb *cb;
	void *ctx;
};

struct ev_async {
	struct evloop *ev;
	int fd;
	ev_hook_cb *cb;
	void *ctx;
	struct ev_async *prev, *next;
};

struct sig_handler {
	ev_signal_cb *cb;
	void *ctx;
};

struct evloop {
	int epfd;
	struct fd_slot *fds;
	size_t nfds;
	struct ev_timer **heap;
	size_t nheap, capheap;
	uint64_t seq;
	uint64_t now;
	struct hook *hooks;
	size_t nhooks;
	int sigfd;
	sigset_t sigs;
	struct sig_handler sig[MAX_SIGNO + 1];
	struct ev_async *asyncs;
	bool stop;
};

struct evloop *evloop_new(void)
{
	struct evloop *ev = xcalloc(1, sizeof *ev);
	ev->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ev->epfd < 0) {
		log_warn("epoll_create1");
		free(ev);
		return NULL;
	}
	ev->sigfd = -1;
	sigemptyset(&ev->sigs);
	ev->now = time_mono_ms();
	return ev;
}

void evloop_free(struct evloop **evp)
{
	struct evloop *ev = *evp;
	if (!ev)
		return;
	while (ev->asyncs) {
		struct ev_async *a = ev->asyncs;
		ev_async_free(&a);
	}
	for (size_t i = 0; i < ev->nheap; i++)
		free(ev->heap[i]);
	free(ev->heap);
	free(ev->hooks);
	free(ev->fds);
	if (ev->sigfd >= 0)
		close(ev->sigfd);
	/* Signals stay blocked: unblocking could deliver a pending SIGTERM with
	 * its default action. */
	close(ev->epfd);
	free(ev);
	*evp = NULL;
}

uint64_t ev_now_ms(struct evloop *ev)
{
	return ev->now;
}

void evloop_stop(struct evloop *ev)
{
	ev->stop = true;
}

/* ---- fds ---- */

static uint32_t epoll_mask(unsigned mask)
{
	return ((mask & EV_READ) ? EPOLLIN : 0) | ((mask & EV_WRITE) ? EPOLLOUT : 0);
}

static int sync_epoll(struct evloop *ev, int fd)
{
	struct fd_slot *s = &ev->fds[fd];
	if (s->mask == 0) {
		if (s->in_epoll && epoll_ctl(ev->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 &&
		    errno != EBADF && errno != ENOENT)
			log_warn("epoll_ctl(DEL, %d)", fd);
		s->in_epoll = false;
		return 0;
	}
	struct epoll_event e = { .events = epoll_mask(s->mask),
				 .data.u64 = ((uint64_t)s->gen << 32) | (uint32_t)fd };
	if (epoll_ctl(ev->epfd, s->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e) < 0)
		return -1;
	s->in_epoll = true;
	return 0;
}

int ev_add_fd(struct evloop *ev, int fd, unsigned mask, ev_fd_cb *cb, void *ctx)
{
	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if ((size_t)fd >= ev->nfds) {
		size_t n = ev->nfds ? ev->nfds : 64;
		while (n <= (size_t)fd)
			n *= 2;
		ev->fds = xrealloc(ev->fds, n * sizeof *ev->fds);
		memset(ev->fds + ev->nfds, 0, (n - ev->nfds) * sizeof *ev->fds);
		ev->nfds = n;
	}
	struct fd_slot *s = &ev->fds[fd];
	if (s->used) {
		errno = EEXIST;
		return -1;
	}
	s->cb = cb;
	s->ctx = ctx;
	s->mask = mask & (EV_READ | EV_WRITE);
	s->in_epoll = false;
	s->used = true;
	if (sync_epoll(ev, fd) < 0) {
		int e = errno;
		s->used = false;
		s->gen++;
		errno = e;
		return -1;
	}
	return 0;
}

void ev_mod_fd(struct evloop *ev, int fd, unsigned mask)
{
	ASSERT(fd >= 0 && (size_t)fd < ev->nfds && ev->fds[fd].used);
	struct fd_slot *s = &ev->fds[fd];
	mask &= EV_READ | EV_WRITE;
	if (s->mask == mask && (mask == 0 || s->in_epoll))
		return;
	s->mask = mask;
	if (sync_epoll(ev, fd) < 0)
		log_warn("epoll_ctl(%d)", fd);
}

void ev_del_fd(struct evloop *ev, int fd)
{
	if (fd < 0 || (size_t)fd >= ev->nfds || !ev->fds[fd].used)
		return;
	struct fd_slot *s = &ev->fds[fd];
	s->mask = 0;
	sync_epoll(ev, fd);
	s->used = false;
	s->cb = NULL;
	s->ctx = NULL;
	s->gen++;
}

/* ---- timers: binary min-heap ordered by (at, seq) ---- */

static bool timer_less(const struct ev_timer *a, const struct ev_timer *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void heap_set(struct evloop *ev, size_t i, struct ev_timer *t)
{
	ev->heap[i] = t;
	t->idx = i;
}

static void heap_up(struct evloop *ev, size_t i)
{
	struct ev_timer *t = ev->heap[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!timer_less(t, ev->heap[p]))
			break;
		heap_set(ev, i, ev->heap[p]);
		i = p;
	}
	heap_set(ev, i, t);
}

static void heap_down(struct evloop *ev, size_t i)
{
	struct ev_timer *t = ev->heap[i];
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		const struct ev_timer *best = t;
		if (l < ev->nheap && timer_less(ev->heap[l], best)) {
			m = l;
			best = ev->heap[l];
		}
		if (l + 1 < ev->nheap && timer_less(ev->heap[l + 1], best))
			m = l + 1;
		if (m == i)
			break;
		heap_set(ev, i, ev->heap[m]);
		i = m;
	}
	heap_set(ev, i, t);
}

static void heap_remove(struct evloop *ev, size_t i)
{
	ASSERT(i < ev->nheap);
	ev->nheap--;
	if (i == ev->nheap)
		return;
	struct ev_timer *moved = ev->heap[ev->nheap];
	heap_set(ev, i, moved);
	heap_up(ev, i);
	if (moved->idx == i)
		heap_down(ev, i);
}

struct ev_timer *ev_timer_add(struct evloop *ev, uint64_t ms, ev_timer_cb *cb, void *ctx)
{
	struct ev_timer *t = xmalloc(sizeof *t);
	t->at = ev->now + ms;
	t->seq = ev->seq++;
	t->cb = cb;
	t->ctx = ctx;
	if (ev->nheap == ev->capheap) {
		ev->capheap = ev->capheap ? ev->capheap * 2 : 64;
		ev->heap = xrealloc(ev->heap, ev->capheap * sizeof *ev->heap);
	}
	ev->heap[ev->nheap] = t;
	t->idx = ev->nheap++;
	heap_up(ev, t->idx);
	return t;
}

void ev_timer_del(struct evloop *ev, struct ev_timer **tp)
{
	struct ev_timer *t = *tp;
	if (!t)
		return;
	*tp = NULL;
	if (t->idx == TIMER_FIRING)
		return; /* freed by run_timers() after its callback returns */
	ASSERT(t->idx < ev->nheap && ev->heap[t->idx] == t);
	heap_remove(ev, t->idx);
	free(t);
}

static void run_timers(struct evloop *ev)
{
	/* Timers added by callbacks in this pass wait for the next iteration, so a
	 * callback re-adding a 0 ms timer cannot starve the fds. */
	uint64_t seq_limit = ev->seq;
	while (ev->nheap > 0 && !ev->stop) {
		struct ev_timer *t = ev->heap[0];
		if (t->at > ev->now || t->seq >= seq_limit)
			break;
		heap_remove(ev, 0);
		t->idx = TIMER_FIRING;
		t->cb(ev, t->ctx);
		free(t);
	}
}

/* ---- signals ---- */

static void signal_ready(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	(void)ctx;
	struct signalfd_siginfo si[16];
	for (;;) {
		ssize_t n = read(fd, si, sizeof si);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				log_warn("read(signalfd)");
			return;
		}
		size_t k = (size_t)n / sizeof si[0];
		for (size_t i = 0; i < k; i++) {
			int signo = (int)si[i].ssi_signo;
			if (signo > 0 && signo <= MAX_SIGNO && ev->sig[signo].cb)
				ev->sig[signo].cb(ev, signo, ev->sig[signo].ctx);
		}
		if (k < N_ELEMENTS(si))
			return;
	}
}

int ev_add_signal(struct evloop *ev, int signo, ev_signal_cb *cb, void *ctx)
{
	if (signo <= 0 || signo > MAX_SIGNO || signo == SIGKILL || signo == SIGSTOP) {
		errno = EINVAL;
		return -1;
	}
	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, signo);
	/* Block it so it is only ever seen through the signalfd. Process-wide this
	 * holds for threads created afterwards (jobs threads block everything). */
	if (pthread_sigmask(SIG_BLOCK, &one, NULL) != 0)
		return -1;
	sigaddset(&ev->sigs, signo);
	int fd = signalfd(ev->sigfd, &ev->sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ev->sigfd < 0) {
		ev->sigfd = fd;
		if (ev_add_fd(ev, fd, EV_READ, signal_ready, NULL) < 0) {
			int e = errno;
			close(fd);
			ev->sigfd = -1;
			errno = e;
			return -1;
		}
	}
	ev->sig[signo].cb = cb;
	ev->sig[signo].ctx = ctx;
	return 0;
}

/* ---- hooks and async ---- */

void ev_before_sleep(struct evloop *ev, ev_hook_cb *cb, void *ctx)
{
	ev->hooks = xrealloc(ev->hooks, (ev->nhooks + 1) * sizeof *ev->hooks);
	ev->hooks[ev->nhooks++] = (struct hook){ cb, ctx };
}

static void async_ready(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	struct ev_async *a = ctx;
	uint64_t v;
	ssize_t n;
	do
		n = read(fd, &v, sizeof v);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno != EAGAIN)
		log_warn("read(eventfd)");
	a->cb(ev, a->ctx);
}

struct ev_async *ev_async_new(struct evloop *ev, ev_hook_cb *cb, void *ctx)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0) {
		log_warn("eventfd");
		return NULL;
	}
	struct ev_async *a = xcalloc(1, sizeof *a);
	a->ev = ev;
	a->fd = fd;
	a->cb = cb;
	a->ctx = ctx;
	if (ev_add_fd(ev, fd, EV_READ, async_ready, a) < 0) {
		log_warn("ev_add_fd(eventfd)");
		close(fd);
		free(a);
		return NULL;
	}
	a->next = ev->asyncs;
	if (a->next)
		a->next->prev = a;
	ev->asyncs = a;
	return a;
}

void ev_async_notify(struct ev_async *a)
{
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(a->fd, &one, sizeof one);
	while (n < 0 && errno == EINTR);
	/* EAGAIN means the counter is saturated: the loop is already woken. */
}

void ev_async_free(struct ev_async **ap)
{
	struct ev_async *a = *ap;
	if (!a)
		return;
	*ap = NULL;
	ev_del_fd(a->ev, a->fd);
	close(a->fd);
	if (a->prev)
		a->prev->next = a->next;
	else
		a->ev->asyncs = a->next;
	if (a->next)
		a->next->prev = a->prev;
	free(a);
}

/* ---- the loop ---- */

static int next_timeout(struct evloop *ev)
{
	if (ev->nheap == 0)
		return -1;
	uint64_t now = time_mono_ms();
	uint64_t at = ev->heap[0]->at;
	if (at <= now)
		return 0;
	uint64_t d = at - now;
	return d > INT_MAX ? INT_MAX : (int)d;
}

int evloop_run(struct evloop *ev)
{
	struct epoll_event evs[MAX_EVENTS];
	ev->stop = false;
	while (!ev->stop) {
		ev->now = time_mono_ms();
		run_timers(ev);
		for (size_t i = 0; i < ev->nhooks && !ev->stop; i++)
			ev->hooks[i].cb(ev, ev->hooks[i].ctx);
		if (ev->stop)
			break;
		int n = epoll_wait(ev->epfd, evs, MAX_EVENTS, next_timeout(ev));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_warn("epoll_wait");
			return -1;
		}
		ev->now = time_mono_ms();
		for (int i = 0; i < n && !ev->stop; i++) {
			int fd = (int)(uint32_t)evs[i].data.u64;
			uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
			if ((size_t)fd >= ev->nfds)
				continue;
			struct fd_slot *s = &ev->fds[fd];
			if (!s->used || s->gen != gen)
				continue;
			unsigned got = 0;
			if (evs[i].events & EPOLLIN)
				got |= EV_READ;
			if (evs[i].events & EPOLLOUT)
				got |= EV_WRITE;
			/* Errors and hangups surface through the read or write the owner
			 * is waiting for. */
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				got |= EV_READ | EV_WRITE;
			got &= s->mask;
			if (got)
				s->cb(ev, fd, got, s->ctx);
		}
	}
	return 0;
}
