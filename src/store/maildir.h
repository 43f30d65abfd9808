/* SPDX-License-Identifier: MIT */
/* Maildir delivery with group commit.
 *
 * Layout: each account's mail lives at <data_dir>/mail/<domain>/<local>/
 * (lowercased), a Maildir++ root with cur/ new/ tmp/ (folders come later as
 * .Name/ subdirectories).
 *
 * On-disk convention: messages are stored with LF line endings (what Maildir
 * tools expect). The wire form (CRLF) size is recorded in the file name as
 * ,W=<n> next to the physical ,S=<n>, so POP3 and IMAP can report exact sizes
 * without reading the file: wire size = physical size + number of LFs.
 * File names: <sec>.M<usec>P<pid>Q<seq>R<rand>.<host>,S=<size>,W=<wsize>
 *
 * Durability: a delivery writes one tmp/ file per target. Commit happens on
 * the committer thread, which takes every delivery queued since its last
 * round as one batch: file data is synced for the whole batch, files are
 * renamed into new/, and each distinct new/ directory is fsynced once (or,
 * when a batch touches many directories, one syncfs covers them). Only
 * then is the delivery's done callback run, so the SMTP 250 means "on disk"
 * while 20 concurrent senders share a handful of syncs instead of 20. If any
 * target of a delivery fails, none of its copies stays visible. */
#ifndef TERN_STORE_MAILDIR_H
#define TERN_STORE_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct delivery;
struct committer;

/* malloc'd "<data_dir>/mail/<domain>/<local>" for address (lowercased). NULL if
 * the address cannot be a path (no '@', '/', leading '.', control chars...). */
char *maildir_account_path(const char *data_dir, const char *address);
/* Create root, root/cur, root/new, root/tmp (0700) if missing. 0 or -1 + *err_r.
 * Every err_r in this file receives a malloc'd log message the caller frees. */
int maildir_create(const char *root, char **err_r) ATTR_WARN_UNUSED;

/* A message being written. hostname goes into the file names. */
struct delivery *delivery_new(const char *hostname);
/* Add a copy into the Maildir at root (created if missing); header is written
 * first in that copy only (e.g. "Delivered-To: ...\n"), may be NULL.
 * 0, or -1 + *err_r (the delivery is then failed). All targets must be added
 * before the first delivery_write (asserted). */
int delivery_add_target(struct delivery *d, const char *root, const char *header,
			char **err_r) ATTR_WARN_UNUSED;
/* Append content (storage form, LF endings) to every copy. 0, or -1 once any
 * write has failed (the error is kept and reported by commit). */
int delivery_write(struct delivery *d, const void *p, size_t n) ATTR_WARN_UNUSED;
/* Total content bytes written so far (excluding per-target headers). */
uint64_t delivery_size(const struct delivery *d);
/* Discard: close and unlink every tmp file. NULLs *d. */
void delivery_abort(struct delivery **d);
/* Synchronous commit of one delivery (tools, tests): sync, rename, fsync dir.
 * 0, or -1 + *err_r; frees the delivery either way (*d = NULL). */
int delivery_commit_sync(struct delivery **d, char **err_r) ATTR_WARN_UNUSED;
/* Names (relative to each root: "new/<file>") of committed copies, for tests/logs.
 * Valid until the delivery is freed; available in the done callback. NULL for
 * a copy that is not (or no longer) committed, e.g. after a failure. */
size_t delivery_ntargets(const struct delivery *d);
const char *delivery_target_file(const struct delivery *d, size_t i);

/* Group commit. notify(ctx) is called from the committer thread when results
 * are ready; the loop thread must then call committer_reap(), which runs the
 * done callbacks on the caller's thread. */
typedef void committer_notify_fn(void *ctx);
/* result: 0 ok, -1 failed (err is a log message, not for clients). The
 * delivery is freed after the callback returns. */
typedef void delivery_done_fn(struct delivery *d, int result, const char *err, void *ctx);

struct committer *committer_new(committer_notify_fn *notify, void *notify_ctx);
/* Commits every queued delivery, joins the thread, then runs the remaining
 * done callbacks itself (a final reap, so call it from the loop thread).
 * notify may still be called before it returns. NULLs *c. */
void committer_free(struct committer **c);
/* Queue d for commit; takes ownership. */
void committer_submit(struct committer *c, struct delivery *d, delivery_done_fn *done, void *ctx);
/* Run the done callbacks of finished deliveries. Loop thread only. */
void committer_reap(struct committer *c);
/* Statistics for benchmarks: batches run and deliveries committed. */
void committer_stats(const struct committer *c, uint64_t *batches, uint64_t *deliveries);

/* Remove tmp/ files older than 36 hours (Maildir convention) under root.
 * Age is the newer of mtime and ctime: an APPEND's finished file gets its
 * INTERNALDATE as mtime while still in tmp/, but its ctime is fresh. */
void maildir_clean_tmp(const char *root);
/* The same with another age limit in seconds (tests; may be negative). */
void maildir_clean_tmp_older(const char *root, int64_t max_age_secs);

/* For tests only: make every later write to copy number `target` (0-based
 * index in its delivery, any delivery) fail with ENOSPC once that copy would
 * exceed after_bytes (its header included). target SIZE_MAX turns it off. */
void maildir_test_fail_writes(size_t target, uint64_t after_bytes);

#endif
