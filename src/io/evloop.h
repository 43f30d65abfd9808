/* SPDX-License-Identifier: MIT */
/* Single-threaded epoll event loop (level-triggered), millisecond timers,
 * signals via signalfd, before-sleep hooks (flush outputs once per iteration)
 * and cross-thread wakeups (ev_async) for job completions. Only the loop's
 * own thread may call these functions, except ev_async_notify(). */
#ifndef TERN_IO_EVLOOP_H
#define TERN_IO_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

struct evloop;
struct ev_timer;
struct ev_async;

enum { EV_READ = 1, EV_WRITE = 2 };

typedef void ev_fd_cb(struct evloop *ev, int fd, unsigned events, void *ctx);
typedef void ev_timer_cb(struct evloop *ev, void *ctx);
typedef void ev_signal_cb(struct evloop *ev, int signo, void *ctx);
typedef void ev_hook_cb(struct evloop *ev, void *ctx);

struct evloop *evloop_new(void);
void evloop_free(struct evloop **ev);

/* Watch fd for mask (EV_READ|EV_WRITE). One callback per fd. 0 or -1. */
int ev_add_fd(struct evloop *ev, int fd, unsigned mask, ev_fd_cb *cb, void *ctx) ATTR_WARN_UNUSED;
void ev_mod_fd(struct evloop *ev, int fd, unsigned mask);
void ev_del_fd(struct evloop *ev, int fd);

/* One-shot timer after ms (from ev_now_ms()). The handle is freed when it fires
 * (after cb returns; cb should forget its copy) or by ev_timer_del (which NULLs
 * *t; safe on NULL, and safe inside the timer's own callback). Timers due at the
 * same ms fire in the order they were added. */
struct ev_timer *ev_timer_add(struct evloop *ev, uint64_t ms, ev_timer_cb *cb, void *ctx);
void ev_timer_del(struct evloop *ev, struct ev_timer **t);

/* Deliver signo through the loop (blocked for the process, read via signalfd). */
int ev_add_signal(struct evloop *ev, int signo, ev_signal_cb *cb, void *ctx) ATTR_WARN_UNUSED;

/* Called once per loop iteration before waiting. */
void ev_before_sleep(struct evloop *ev, ev_hook_cb *cb, void *ctx);

/* Cross-thread wakeup: ev_async_notify() may be called from any thread; cb runs
 * on the loop thread (coalesced: several notifies may give one call). */
struct ev_async *ev_async_new(struct evloop *ev, ev_hook_cb *cb, void *ctx);
void ev_async_notify(struct ev_async *a);
/* Unregister and free (loop thread only, after every notifier is gone).
 * NULLs *a; safe on NULL. evloop_free() frees any that remain. */
void ev_async_free(struct ev_async **a);

/* Cached monotonic time of this iteration, ms. */
uint64_t ev_now_ms(struct evloop *ev);

/* Run until evloop_stop(). Returns 0, or -1 on an epoll failure. */
int evloop_run(struct evloop *ev);
void evloop_stop(struct evloop *ev);

#endif
