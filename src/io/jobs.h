/* SPDX-License-Identifier: MIT */
/* A small worker thread pool for blocking work kept off the event loop:
 * password hashing, SQLite writes, fsync. run() executes on a worker thread;
 * done() runs afterwards on the loop thread (via ev_async), and done()
 * callbacks run in submission order. Either function may be NULL. */
#ifndef TERN_IO_JOBS_H
#define TERN_IO_JOBS_H

struct evloop;
struct jobs;

typedef void jobs_run_fn(void *ctx);
typedef void jobs_done_fn(void *ctx);

struct jobs *jobs_new(struct evloop *ev, unsigned nthreads);
/* Finishes queued jobs, joins the threads. NULLs *j. */
void jobs_free(struct jobs **j);
void jobs_submit(struct jobs *j, jobs_run_fn *run, jobs_done_fn *done, void *ctx);

#endif
