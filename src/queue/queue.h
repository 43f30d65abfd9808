/* SPDX-License-Identifier: MIT */
/* The outbound queue: a durable spool of messages waiting for relay, with
 * per-recipient state in SQLite. No I/O loop here: the scheduler that drives
 * deliveries (and needs the event loop) lives elsewhere and calls this API.
 *
 * Layout under <data_dir>/queue/ (0700):
 *   queue.db            SQLite (WAL, busy timeout, PRAGMA user_version)
 *   tmp/ new/ cur/      a Maildir-shaped spool: message files (storage form,
 *                       LF line endings) live in new/; cur/ is unused
 *   lock                flock()ed by the server handle (QUEUE_OPEN_SERVER)
 *
 * Durability of enqueue: the file is written to tmp/, fdatasync'ed, renamed
 * into new/ and new/ is fsync'ed; only then are the rows inserted in one
 * SQLite transaction (synchronous=FULL). Success is reported once both are
 * durable. A crash in between leaves either nothing visible (tmp/ debris) or
 * a file in new/ that no row names: the next server open removes both.
 * Files can also be written with store/maildir.h's group commit (target
 * queue_spool_root()) and registered with queue_enqueue_file().
 *
 * Delivery is at least once. queue_due() marks the recipients it hands out
 * as claimed (in the database, so a second handle does not hand them out
 * too); queue_record() stores the outcome and clears the claim. A server
 * open clears every claim left by a crash, so those recipients are tried
 * again. A duplicate can happen exactly when the peer accepted the message
 * (250 after DATA) and we died before queue_record() committed.
 *
 * Concurrency: each handle is one SQLite connection, for one thread at a
 * time. Any number of handles (the server, `tern queue` CLIs) may be open:
 * writes are IMMEDIATE transactions under the busy timeout. Only the handle
 * opened with QUEUE_OPEN_SERVER recovers and may create files (enqueue,
 * and queue_notify() when it queues a DSN): recovery deletes files without
 * rows, so an enqueue must never be in flight in another process while a
 * server opens. A second server open fails while one holds the lock.
 * Listing, flush, delete, due/record/release work from any handle.
 *
 * Times are unix seconds passed in by the caller (tests use a fake clock). */
#ifndef TERN_QUEUE_QUEUE_H
#define TERN_QUEUE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

struct queue;

/* RFC 3461 4.1 NOTIFY. 0 = no NOTIFY given (treated as FAILURE,DELAY). */
enum queue_notify {
	QUEUE_NOTIFY_NEVER = 1 << 0,
	QUEUE_NOTIFY_SUCCESS = 1 << 1,
	QUEUE_NOTIFY_FAILURE = 1 << 2,
	QUEUE_NOTIFY_DELAY = 1 << 3,
};

/* RFC 3461 4.3 RET. */
enum queue_ret { QUEUE_RET_UNSPEC = 0, QUEUE_RET_FULL = 1, QUEUE_RET_HDRS = 2 };

enum queue_rcpt_state {
	QUEUE_RCPT_QUEUED,    /* not tried yet */
	QUEUE_RCPT_DEFERRED,  /* temporary failure, retried at next_attempt */
	QUEUE_RCPT_DELIVERED, /* final: accepted by the peer (or delivered locally) */
	QUEUE_RCPT_FAILED,    /* final: permanent failure or lifetime expired */
};

/* What a recipient's notification (DSN) needs now; computed by the queue
 * from state, NOTIFY, flags and the null sender (RFC 3461 5.2). */
enum queue_action {
	QUEUE_ACTION_NONE,
	QUEUE_ACTION_FAILED,	/* "failed" DSN due */
	QUEUE_ACTION_DELAYED,	/* "delayed" DSN due (delay warning) */
	QUEUE_ACTION_DELIVERED, /* "delivered" DSN due (NOTIFY=SUCCESS) */
	QUEUE_ACTION_RELAYED,	/* "relayed" DSN due (NOTIFY=SUCCESS, peer without DSN) */
};

/* Outcome of one delivery attempt for one recipient. */
enum queue_outcome {
	QUEUE_OUT_DELIVERED, /* final delivery (e.g. local): "delivered" DSN if SUCCESS asked */
	QUEUE_OUT_RELAYED,   /* peer without DSN support accepted: "relayed" if SUCCESS asked */
	QUEUE_OUT_PASSED,    /* peer with DSN support accepted: it reports from now on */
	QUEUE_OUT_TEMPFAIL,  /* 4xx, timeout, refused...: retry with backoff until lifetime */
	QUEUE_OUT_PERMFAIL,  /* 5xx, null MX...: failed now */
};

/* A reply or local failure description, as given to queue_record(). */
struct queue_error {
	int code;	      /* SMTP reply code; 0 for a local failure (DNS, connect...) */
	const char *enhanced; /* RFC 3463 "x.y.z" or NULL */
	const char *text;     /* the reply as received, lines joined by '\n' and each
			       * starting with its code ("550-..." / "550 ..."); for
			       * code 0 our own description. NULL if none. */
	const char *remote;   /* the peer's host name, NULL if no remote MTA involved */
};

/* Queue behaviour; every field 0/NULL takes the default. */
struct queue_policy {
	int64_t retry;	      /* first retry delay (queue_retry, 300 s), doubled per attempt */
	int64_t max_backoff;  /* cap on one retry delay (4 h) */
	int64_t lifetime;     /* queue_lifetime (5 d): then a temporary failure is final */
	int64_t delay_warn;   /* age of a message before a "delayed" DSN (4 h) */
	const char *hostname; /* Reporting-MTA and MAILER-DAEMON@ of our DSNs ("localhost") */
	uint64_t max_return;  /* largest original returned whole in a DSN (1 MiB) */
};

/* One recipient as given at RCPT time. */
struct queue_rcpt_spec {
	const char *addr;  /* forward-path without <> */
	const char *orcpt; /* ORCPT decoded from xtext, "addr-type;address", or NULL */
	unsigned notify;   /* enum queue_notify bits, 0 if no NOTIFY */
};

struct queue_envelope {
	const char *sender; /* reverse-path without <>; "" for the null sender */
	const char *envid;  /* ENVID decoded from xtext, or NULL */
	enum queue_ret ret;
	bool eightbit;	       /* BODY=8BITMIME (or 8-bit content) */
	bool smtputf8;	       /* SMTPUTF8 */
	const char *submitter; /* authenticated user, or NULL */
	int64_t arrival;       /* unix time the message was accepted */
	const struct queue_rcpt_spec *rcpts;
	size_t n_rcpts;
};

/* A recipient as stored. */
struct queue_rcpt {
	uint32_t idx; /* position in the envelope: identifies it in queue_record() */
	char *addr;
	char *domain; /* lowercased part after the last '@', "" if none */
	char *orcpt;  /* or NULL */
	unsigned notify;
	enum queue_rcpt_state state;
	unsigned attempts;
	int64_t next_attempt;			    /* for QUEUED/DEFERRED */
	int64_t last_attempt;			    /* 0 = never */
	int err_code;				    /* last reply; 0 with err_text NULL = none */
	char *err_enhanced, *err_text, *err_remote; /* or NULL */
	enum queue_outcome success; /* for DELIVERED: DELIVERED, RELAYED or PASSED */
	bool delay_warned;	    /* a "delayed" DSN was queued */
	bool reported;		    /* final state handled (DSN queued or none needed) */
	bool claimed;		    /* handed out by queue_due(), no result yet */
	enum queue_action action;   /* DSN due now (filled by queue_get/queue_list) */
};

struct queue_msg {
	char id[17];
	char *file; /* relative to the spool: "new/<name>" */
	char *sender, *envid, *submitter;
	enum queue_ret ret;
	bool eightbit, smtputf8;
	uint64_t size;	    /* bytes in the file (LF form) */
	uint64_t wire_size; /* bytes as sent (CRLF): for SIZE= */
	int64_t arrival;
	struct queue_rcpt *rcpts; /* sorted by idx; queue_due(): only the claimed ones */
	size_t n_rcpts;
};

enum queue_open_flags {
	QUEUE_OPEN_SERVER = 1 << 0, /* take the lock, recover (see above) */
	/* A second handle inside the server process, for another thread: may
	 * create files (enqueue, DSNs) like the server handle, but takes no lock
	 * and recovers nothing. Open it only after the server handle (whose
	 * recovery then already ran) and close it before that one. */
	QUEUE_OPEN_WRITER = 1 << 1,
};

/* Opens (creating if needed) <data_dir>/queue. NULL + *err_r (malloc'd, for
 * the log) on failure, including "locked by another server". Every err_r in
 * this file receives a malloc'd message the caller frees. */
struct queue *queue_open(const char *data_dir, unsigned flags, char **err_r);
void queue_close(struct queue **q);
/* Copies p (strings too); fields left 0 keep their defaults. */
void queue_set_policy(struct queue *q, const struct queue_policy *p);
/* "<data_dir>/queue": a Maildir root for delivery_add_target(). */
const char *queue_spool_root(const struct queue *q);

/* Retry delay after the attempts-th temporary failure (attempts >= 1):
 * retry * 2^(attempts-1), capped at max_backoff. Pure; defaults applied. */
int64_t queue_backoff(const struct queue_policy *p, unsigned attempts);

/* ---- Enqueue ---- */

/* Validates env (limits, no control characters): 0, or -1 + *err_r. */
int queue_envelope_check(const struct queue_envelope *env, char **err_r) ATTR_WARN_UNUSED;

/* One message written through the queue's own durable writer. */
struct queue_writer;
struct queue_writer *queue_writer_new(struct queue *q, char **err_r);
/* Append content in storage form. 0, or -1 once a write failed (reported by commit). */
int queue_writer_write(struct queue_writer *w, const void *p, size_t n) ATTR_WARN_UNUSED;
/* Makes the file durable, then inserts the rows. 0 and id_r set when both are
 * on disk; -1 + *err_r and nothing left visible otherwise. Frees *w. */
int queue_writer_commit(struct queue_writer **w, const struct queue_envelope *env, char id_r[17],
			char **err_r) ATTR_WARN_UNUSED;
void queue_writer_abort(struct queue_writer **w);
/* Convenience: writer_new + write + commit. */
int queue_enqueue(struct queue *q, const struct queue_envelope *env, const void *data, size_t len,
		  char id_r[17], char **err_r) ATTR_WARN_UNUSED;
/* Registers a file already made durable in the spool by the Maildir group
 * commit (rel is delivery_target_file(), "new/<name>,S=..,W=.."). Server
 * handle only. 0 and id_r, or -1 + *err_r (the file is then removed). */
int queue_enqueue_file(struct queue *q, const struct queue_envelope *env, const char *rel,
		       char id_r[17], char **err_r) ATTR_WARN_UNUSED;

/* ---- Reading ---- */

void queue_msg_free(struct queue_msg **m);
void queue_msgs_free(struct queue_msg **v, size_t n);
/* One message with all recipients and their due DSN actions at now.
 * 1 and *m_r, 0 if there is no such id, -1 + *err_r. */
int queue_get(struct queue *q, const char *id, int64_t now, struct queue_msg **m_r,
	      char **err_r) ATTR_WARN_UNUSED;
/* Every message, oldest first (for `tern queue list`). *v_r is an array of
 * *n_r messages; free with queue_msgs_free(). */
int queue_list(struct queue *q, int64_t now, struct queue_msg ***v_r, size_t *n_r,
	       char **err_r) ATTR_WARN_UNUSED;
/* Absolute path of a message file (malloc'd). The file may vanish at any
 * time (queue_delete from the CLI): open() then fails with ENOENT. */
char *queue_msg_path(const struct queue *q, const struct queue_msg *m);
/* Reads up to max bytes of the message into out; *truncated_r set if the
 * file is longer. 0, or -1 + *err_r (errno kept, ENOENT if deleted). */
int queue_read(const struct queue *q, const struct queue_msg *m, uint64_t max, struct buf *out,
	       bool *truncated_r, char **err_r) ATTR_WARN_UNUSED;

/* ---- Scheduling ---- */

/* Work for one destination domain: messages holding only their claimed
 * recipients of that domain (a message with two domains appears twice). */
struct queue_batch {
	char *domain;
	struct queue_msg **msgs;
	size_t n_msgs;
};
struct queue_due {
	struct queue_batch *v;
	size_t n;
};
/* Claims up to max_rcpts unclaimed QUEUED/DEFERRED recipients with
 * next_attempt <= now, grouped by domain (for connection reuse). 0 (out may
 * be empty), or -1 + *err_r. Each claimed recipient must get a
 * queue_record() or queue_release(). */
int queue_due(struct queue *q, int64_t now, size_t max_rcpts, struct queue_due *out,
	      char **err_r) ATTR_WARN_UNUSED;
void queue_due_free(struct queue_due *d);
/* Earliest next_attempt among unclaimed pending recipients: 1 and *t_r, 0 if none. */
int queue_next_due(struct queue *q, int64_t *t_r, char **err_r) ATTR_WARN_UNUSED;

struct queue_result {
	uint32_t rcpt; /* queue_rcpt.idx */
	enum queue_outcome outcome;
	struct queue_error err; /* reply (also for successes), may be all 0 */
};
/* Records attempt results of one message in one transaction, at now:
 * DELIVERED/RELAYED/PASSED -> delivered; PERMFAIL -> failed; TEMPFAIL ->
 * deferred with next_attempt = now + queue_backoff(attempts), never later
 * than arrival + lifetime, or failed once now >= arrival + lifetime.
 * Results for final or unknown recipients (deleted message) are ignored.
 * 0, or -1 + *err_r. Call queue_notify() afterwards. */
int queue_record(struct queue *q, const char *id, const struct queue_result *r, size_t n,
		 int64_t now, char **err_r) ATTR_WARN_UNUSED;
/* Gives claimed recipients back without a result (shutdown): clears claims. */
int queue_release(struct queue *q, const char *id, const uint32_t *rcpts, size_t n,
		  char **err_r) ATTR_WARN_UNUSED;

/* Notifications and removal for one message, at now: builds one DSN (see
 * dsn.h) for the recipients whose action is due, queues it (null sender, to
 * the original sender) and marks those recipients in the same transaction;
 * recipients whose final state needs no DSN are marked too. When every
 * recipient is final and marked, the message is removed (rows, then file),
 * in that same transaction as its last DSN. *dsn_id_r (if not NULL) gets
 * the DSN's id or "". 1 if the message was removed, 0 if it stays (or is
 * unknown), -1 + *err_r. */
int queue_notify(struct queue *q, const char *id, int64_t now, char dsn_id_r[17],
		 char **err_r) ATTR_WARN_UNUSED;
/* queue_notify() for every message that needs it (after a crash, and for
 * delay warnings, which come due as time passes). Returns the number of
 * messages handled, or -1 + *err_r. */
int queue_notify_all(struct queue *q, int64_t now, char **err_r) ATTR_WARN_UNUSED;

/* ---- Administration (safe while the server runs) ---- */

/* Every pending recipient becomes due now (next_attempt = 0). Returns the
 * number of recipients changed, or -1 + *err_r. */
int queue_flush(struct queue *q, char **err_r) ATTR_WARN_UNUSED;
/* Drops a message silently (no DSN). 1 deleted, 0 no such id, -1 + *err_r. */
int queue_delete(struct queue *q, const char *id, char **err_r) ATTR_WARN_UNUSED;

/* Names for list output. */
const char *queue_state_name(enum queue_rcpt_state s);
/* True for a well-formed queue id (16 lowercase hex digits). */
bool queue_id_valid(const char *id);

/* ---- Tests only: simulated crashes ---- */

/* The next operation reaching point stops there and returns -1 with
 * "simulated crash", leaving the disk as a killed process would (no
 * cleanup; an open SQLite transaction is rolled back, as a crash would).
 * QUEUE_CRASH_NONE turns it off. One-shot. */
enum queue_crash {
	QUEUE_CRASH_NONE,
	QUEUE_CRASH_ENQ_TMP,	 /* content written to tmp/, not synced */
	QUEUE_CRASH_ENQ_RENAMED, /* renamed into new/, directory not synced */
	QUEUE_CRASH_ENQ_FILE,	 /* file durable, rows not inserted */
	QUEUE_CRASH_ENQ_TXN,	 /* rows inserted, not committed */
	QUEUE_CRASH_NOTIFY_FILE, /* DSN file durable, transaction not committed */
	QUEUE_CRASH_NOTIFY_TXN,	 /* committed, original's file not yet removed */
	QUEUE_CRASH_DELETE_TXN,	 /* delete committed, file not yet removed */
};
void queue_test_crash_at(enum queue_crash point);

#endif
