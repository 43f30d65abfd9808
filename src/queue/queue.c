/* SPDX-License-Identifier: MIT */
/* The outbound queue store: spool files plus SQLite metadata, and the
 * bookkeeping around delivery attempts (claims, backoff, lifetime) and
 * notifications (which recipients get a DSN, removal once all are final).
 * See queue.h for the contract and the crash rules.
 *
 * Files. Our own writer (queue_writer_*) is a small equivalent of
 * store/maildir.c's delivery rather than a use of it, because the queue
 * must know the file name before the rows are inserted and
 * delivery_commit_sync() frees the delivery without telling the name; the
 * steps are the same (tmp/ O_EXCL, fdatasync, rename into new/, fsync new/).
 * For the SMTP path, where the group commit matters, the spool is a Maildir
 * root so store/maildir.c's committer can write the file and
 * queue_enqueue_file() registers the name its done callback reports.
 *
 * Ordering invariant: a row never names a file that is not durable (file
 * first, rows second), and removal goes rows first, file second. So after
 * any crash the only debris is files without rows, which the server open
 * removes (under the lock, so no enqueue can be in flight at that moment).
 *
 * Notifications (RFC 3461 5.2): a recipient's DSN is due when it is
 * failed and NOTIFY has FAILURE or is absent; delivered with SUCCESS
 * ("delivered" for a final delivery, "relayed" when the peer does not do
 * DSNs, none when the peer took the request over); deferred for delay_warn
 * with DELAY or no NOTIFY, once. Never for a null sender, never for NEVER.
 * The DSN is queued, the recipients marked and (when everything is final)
 * the message removed in ONE transaction, so a crash can neither lose a
 * bounce nor send it twice (the DSN file written before the transaction is
 * an orphan if the transaction did not commit). */
#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/log.h"
#include "base/util.h"
#include "queue/dsn.h"

#define SCHEMA_VERSION	1
#define BUSY_TIMEOUT_MS 5000
#define WRITE_BUF	(64 * 1024)

/* Defaults (issue 6: queue_retry 5m, queue_lifetime 5d, delay warning 4h). */
#define DEF_RETRY	300
#define DEF_MAX_BACKOFF (4 * 3600)
#define DEF_LIFETIME	(5 * 86400)
#define DEF_DELAY_WARN	(4 * 3600)
#define DEF_MAX_RETURN	(1024 * 1024)

/* Limits on what we store. RFC 5321 4.5.3.1.3: a path is at most 256
 * octets; RFC 3461 4.2/4.4: ORCPT 500, ENVID 100. */
#define PATH_MAX_LEN 256
#define ORCPT_MAX    500
#define ENVID_MAX    100
#define MAX_RCPTS    10000
#define ERR_TEXT_MAX 4096
#define ENHANCED_MAX 15
#define REMOTE_MAX   255
#define REL_MAX	     1024

/* The reply kept for a recipient enqueued as already delivered locally
 * (queue_envelope.delivered): what its "delivered" DSN quotes. */
#define LOCAL_DELIVERED_REPLY "250 2.0.0 Ok: delivered to mailbox"

static const char schema_v1[] =
    "CREATE TABLE messages (\n"
    "	id TEXT PRIMARY KEY,\n"
    "	file TEXT NOT NULL UNIQUE,\n"
    "	sender TEXT NOT NULL,\n"
    "	envid TEXT,\n"
    "	ret INTEGER NOT NULL,\n"
    "	size INTEGER NOT NULL,\n"
    "	wire_size INTEGER NOT NULL,\n"
    "	eightbit INTEGER NOT NULL,\n"
    "	smtputf8 INTEGER NOT NULL,\n"
    "	arrival INTEGER NOT NULL,\n"
    "	submitter TEXT\n"
    ");\n"
    "CREATE TABLE rcpts (\n"
    "	msg TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,\n"
    "	idx INTEGER NOT NULL,\n"
    "	addr TEXT NOT NULL,\n"
    "	domain TEXT NOT NULL,\n"
    "	orcpt TEXT,\n"
    "	notify INTEGER NOT NULL,\n"
    "	state TEXT NOT NULL CHECK (state IN ('queued','deferred','delivered','failed')),\n"
    "	attempts INTEGER NOT NULL DEFAULT 0,\n"
    "	next_attempt INTEGER NOT NULL DEFAULT 0,\n"
    "	last_attempt INTEGER NOT NULL DEFAULT 0,\n"
    "	err_code INTEGER NOT NULL DEFAULT 0,\n"
    "	err_enhanced TEXT,\n"
    "	err_text TEXT,\n"
    "	err_remote TEXT,\n"
    "	success INTEGER NOT NULL DEFAULT 0,\n"
    "	delay_warned INTEGER NOT NULL DEFAULT 0,\n"
    "	reported INTEGER NOT NULL DEFAULT 0,\n"
    "	claimed INTEGER NOT NULL DEFAULT 0,\n"
    "	PRIMARY KEY (msg, idx)\n"
    ");\n"
    "CREATE INDEX rcpts_pending ON rcpts (next_attempt) WHERE state IN ('queued','deferred');\n"
    "PRAGMA user_version = 1;\n";

struct queue {
	sqlite3 *db;
	char *root, *new_dir, *tmp_dir;
	int lock_fd;
	bool server;
	bool writer; /* may create files: the server handle or QUEUE_OPEN_WRITER */
	struct queue_policy pol; /* defaults applied; hostname owned */
};

struct queue_writer {
	struct queue *q;
	char id[17];
	char *tmp_path, *new_path, *rel;
	int fd;
	uint8_t *buf;
	size_t buf_len;
	uint64_t size, lfs;
	bool failed;
	int err_no;
};

static enum queue_crash crash_point = QUEUE_CRASH_NONE;

void queue_test_crash_at(enum queue_crash point)
{
	__atomic_store_n(&crash_point, point, __ATOMIC_SEQ_CST);
}

static bool crash_here(enum queue_crash p, char **err_r)
{
	enum queue_crash want = p;
	if (!__atomic_compare_exchange_n(&crash_point, &want, QUEUE_CRASH_NONE, false,
					 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return false;
	free(*err_r);
	*err_r = xstrdup("simulated crash");
	return true;
}

/* ---- small helpers ---- */

static void set_err(char **err_r, const char *fmt, ...) ATTR_FORMAT(2, 3);
static void set_err(char **err_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		panic("out of memory");
	va_end(ap);
	free(*err_r);
	*err_r = s;
}

static int db_fail(struct queue *q, char **err_r, const char *what)
{
	set_err(err_r, "queue.db (%s): %s", what, sqlite3_errmsg(q->db));
	return -1;
}

static sqlite3_stmt *prep(struct queue *q, const char *sql, char **err_r)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_fail(q, err_r, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

static int exec(struct queue *q, const char *sql, char **err_r)
{
	if (sqlite3_exec(q->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(q, err_r, sql);
	return 0;
}

static int begin(struct queue *q, char **err_r)
{
	return exec(q, "BEGIN IMMEDIATE", err_r);
}

static int rollback(struct queue *q)
{
	sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int commit(struct queue *q, char **err_r)
{
	if (exec(q, "COMMIT", err_r) < 0)
		return rollback(q);
	return 0;
}

/* Steps a statement without result rows; 0 or -1. Finalizes it. */
static int step_done(struct queue *q, sqlite3_stmt *st, char **err_r)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(q, err_r, "step");
	return 0;
}

/* Removes a message's rows (recipients, then the message) inside the
 * caller's transaction; the file is the caller's business. 0 or -1. */
static int delete_msg_rows(struct queue *q, const char *id, char **err_r)
{
	static const char *const sql[] = { "DELETE FROM rcpts WHERE msg = ?",
					   "DELETE FROM messages WHERE id = ?" };
	for (size_t i = 0; i < N_ELEMENTS(sql); i++) {
		sqlite3_stmt *st = prep(q, sql[i], err_r);
		if (st == NULL)
			return -1;
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		if (step_done(q, st, err_r) < 0)
			return -1;
	}
	return 0;
}

static char *col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	return s != NULL ? xstrdup((const char *)s) : NULL;
}

static void bind_str(sqlite3_stmt *st, int i, const char *s, size_t max)
{
	if (s == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, (int)strnlen(s, max), SQLITE_TRANSIENT);
}

static const char *const state_names[] = {"queued", "deferred", "delivered", "failed"};

const char *queue_state_name(enum queue_rcpt_state s)
{
	return (unsigned)s < N_ELEMENTS(state_names) ? state_names[s] : "?";
}

static enum queue_rcpt_state state_parse(const unsigned char *s)
{
	for (size_t i = 0; s != NULL && i < N_ELEMENTS(state_names); i++)
		if (strcmp((const char *)s, state_names[i]) == 0)
			return (enum queue_rcpt_state)i;
	return QUEUE_RCPT_QUEUED;
}

static bool state_final(enum queue_rcpt_state s)
{
	return s == QUEUE_RCPT_DELIVERED || s == QUEUE_RCPT_FAILED;
}

bool queue_id_valid(const char *id)
{
	if (id == NULL || strlen(id) != 16)
		return false;
	for (size_t i = 0; i < 16; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static void apply_defaults(struct queue_policy *p)
{
	if (p->retry <= 0)
		p->retry = DEF_RETRY;
	if (p->max_backoff <= 0)
		p->max_backoff = DEF_MAX_BACKOFF;
	if (p->lifetime <= 0)
		p->lifetime = DEF_LIFETIME;
	if (p->delay_warn <= 0)
		p->delay_warn = DEF_DELAY_WARN;
	if (p->max_return == 0)
		p->max_return = DEF_MAX_RETURN;
}

int64_t queue_backoff(const struct queue_policy *pin, unsigned attempts)
{
	struct queue_policy p = *pin;
	apply_defaults(&p);
	int64_t d = p.retry;
	for (unsigned i = 1; i < attempts && d < p.max_backoff; i++)
		d *= 2; /* stops growing at the cap: no overflow */
	return d < p.max_backoff ? d : p.max_backoff;
}

/* ---- open, schema, recovery ---- */

static int migrate(struct queue *q, char **err_r)
{
	if (begin(q, err_r) < 0)
		return -1;
	sqlite3_stmt *st = prep(q, "PRAGMA user_version", err_r);
	if (st == NULL)
		return rollback(q);
	int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (version < 0) {
		db_fail(q, err_r, "user_version");
		return rollback(q);
	}
	if (version > SCHEMA_VERSION) {
		set_err(err_r, "queue.db has schema version %d, newer than this tern (%d)", version,
			SCHEMA_VERSION);
		return rollback(q);
	}
	if (version < 1 && exec(q, schema_v1, err_r) < 0)
		return rollback(q);
	return commit(q, err_r);
}

/* Removes every entry of dir for which keep() says no; returns the count. */
static size_t sweep_dir(struct queue *q, const char *dir, const char *prefix, bool check_db)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno != ENOENT)
			log_warn("opendir(%s)", dir);
		return 0;
	}
	sqlite3_stmt *st = NULL;
	char *err = NULL;
	if (check_db && (st = prep(q, "SELECT 1 FROM messages WHERE file = ?", &err)) == NULL) {
		log_warnx("queue recovery: %s", err);
		free(err);
		closedir(d);
		return 0;
	}
	size_t removed = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		bool keep = false;
		if (check_db) {
			char *rel = xasprintf("%s/%s", prefix, e->d_name);
			sqlite3_reset(st);
			sqlite3_bind_text(st, 1, rel, -1, SQLITE_TRANSIENT);
			int rc = sqlite3_step(st);
			/* On a database error keep the file: never lose mail. */
			keep = rc != SQLITE_DONE;
			free(rel);
		}
		if (keep)
			continue;
		char *path = xasprintf("%s/%s", dir, e->d_name);
		if (unlink(path) == 0)
			removed++;
		else if (errno != ENOENT)
			log_warn("unlink(%s)", path);
		free(path);
	}
	sqlite3_finalize(st);
	closedir(d);
	if (removed > 0 && fsync_dir(dir) < 0)
		log_warn("fsync(%s)", dir);
	return removed;
}

/* Server open after a possible crash: debris files go, claims are cleared
 * so every pending recipient is tried again (at least once delivery). */
static int recover(struct queue *q, char **err_r)
{
	size_t tmp = sweep_dir(q, q->tmp_dir, "tmp", false);
	size_t orphans = sweep_dir(q, q->new_dir, "new", true);
	char *cur = xasprintf("%s/cur", q->root);
	orphans += sweep_dir(q, cur, "cur", true);
	free(cur);
	if (exec(q, "UPDATE rcpts SET claimed = 0 WHERE claimed != 0", err_r) < 0)
		return -1;
	int claims = sqlite3_changes(q->db);
	/* Rows whose file is gone cannot come from us (file before rows); say so. */
	sqlite3_stmt *st = prep(q, "SELECT id, file FROM messages", err_r);
	if (st == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *file = (const char *)sqlite3_column_text(st, 1);
		char *path = xasprintf("%s/%s", q->root, file != NULL ? file : "");
		struct stat sb;
		if (stat(path, &sb) < 0)
			log_warnx("queue: message %s: file %s is missing",
				  (const char *)sqlite3_column_text(st, 0), path);
		free(path);
	}
	sqlite3_finalize(st);
	if (tmp > 0 || orphans > 0 || claims > 0)
		log_info("queue recovery: removed %zu tmp and %zu orphan files, "
			 "%d interrupted deliveries will be retried",
			 tmp, orphans, claims);
	return 0;
}

static int make_dirs(const char *root, char **err_r)
{
	static const char *const subs[] = {"", "/tmp", "/new", "/cur"};
	for (size_t i = 0; i < N_ELEMENTS(subs); i++) {
		char *p = xasprintf("%s%s", root, subs[i]);
		int r = mkdir_p(p, 0700);
		if (r < 0)
			set_err(err_r, "mkdir(%s): %s", p, strerror(errno));
		free(p);
		if (r < 0)
			return -1;
	}
	return 0;
}

struct queue *queue_open(const char *data_dir, unsigned flags, char **err_r)
{
	struct queue *q = xcalloc(1, sizeof *q);
	q->lock_fd = -1;
	q->server = (flags & QUEUE_OPEN_SERVER) != 0;
	q->writer = q->server || (flags & QUEUE_OPEN_WRITER) != 0;
	q->root = xasprintf("%s/queue", data_dir);
	q->new_dir = xasprintf("%s/new", q->root);
	q->tmp_dir = xasprintf("%s/tmp", q->root);
	apply_defaults(&q->pol);
	q->pol.hostname = xstrdup("localhost");
	if (make_dirs(q->root, err_r) < 0)
		goto fail;
	if (q->server) {
		char *lp = xasprintf("%s/lock", q->root);
		q->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (q->lock_fd < 0 || flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			set_err(err_r, "%s(%s): %s", q->lock_fd < 0 ? "open" : "flock", lp,
				errno == EWOULDBLOCK ? "queue in use by another server"
						     : strerror(errno));
			free(lp);
			goto fail;
		}
		free(lp);
	}
	char *path = xasprintf("%s/queue.db", q->root);
	/* Create the file 0600 (and refuse a symlink) ourselves, but never
	 * open+close an existing database: close(2) drops every POSIX lock this
	 * process holds on the file, including those of another handle's SQLite
	 * connection, and another process could then checkpoint and reset the
	 * WAL under it (a second handle in the server, QUEUE_OPEN_WRITER). */
	struct stat sb;
	if (lstat(path, &sb) < 0) {
		int fd = errno == ENOENT
				 ? open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)
				 : -1;
		if (fd < 0 && errno != EEXIST) {
			set_err(err_r, "open(%s): %s", path, strerror(errno));
			free(path);
			goto fail;
		}
		if (fd >= 0)
			close(fd); /* new: nobody can hold locks on it yet */
	} else if (!S_ISREG(sb.st_mode)) {
		set_err(err_r, "%s: not a regular file", path);
		free(path);
		goto fail;
	}
	int rc = sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		set_err(err_r, "sqlite3_open(%s): %s", path,
			q->db != NULL ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
		free(path);
		goto fail;
	}
	free(path);
	sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(q->db, 1);
	/* synchronous=FULL: a commit is on disk when COMMIT returns. */
	if (exec(q, "PRAGMA journal_mode=WAL", err_r) < 0 ||
	    exec(q, "PRAGMA synchronous=FULL", err_r) < 0 ||
	    exec(q, "PRAGMA foreign_keys=ON", err_r) < 0 || migrate(q, err_r) < 0)
		goto fail;
	if (q->server && recover(q, err_r) < 0)
		goto fail;
	return q;
fail:
	queue_close(&q);
	return NULL;
}

void queue_close(struct queue **qp)
{
	struct queue *q = *qp;
	if (q == NULL)
		return;
	*qp = NULL;
	sqlite3_close_v2(q->db);
	if (q->lock_fd >= 0)
		close(q->lock_fd); /* releases the flock */
	free((char *)(uintptr_t)q->pol.hostname);
	free(q->root);
	free(q->new_dir);
	free(q->tmp_dir);
	free(q);
}

void queue_set_policy(struct queue *q, const struct queue_policy *p)
{
	char *host =
	    xstrdup(p->hostname != NULL && *p->hostname != '\0' ? p->hostname : q->pol.hostname);
	free((char *)(uintptr_t)q->pol.hostname);
	q->pol = *p;
	apply_defaults(&q->pol);
	q->pol.hostname = host;
}

const char *queue_spool_root(const struct queue *q)
{
	return q->root;
}

/* ---- envelope validation ---- */

static bool str_ok(const char *s, size_t max, bool may_be_empty)
{
	if (s == NULL)
		return false;
	size_t n = strnlen(s, max + 1);
	if (n > max || (n == 0 && !may_be_empty))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

int queue_envelope_check(const struct queue_envelope *env, char **err_r)
{
	if (!str_ok(env->sender, PATH_MAX_LEN, true)) {
		set_err(err_r, "bad envelope sender");
		return -1;
	}
	if (env->envid != NULL && !str_ok(env->envid, ENVID_MAX, false)) {
		set_err(err_r, "bad ENVID");
		return -1;
	}
	if (env->submitter != NULL && !str_ok(env->submitter, PATH_MAX_LEN, false)) {
		set_err(err_r, "bad submitter");
		return -1;
	}
	if ((unsigned)env->ret > QUEUE_RET_HDRS) {
		set_err(err_r, "bad RET");
		return -1;
	}
	if (env->n_rcpts == 0 || env->n_rcpts > MAX_RCPTS || env->rcpts == NULL) {
		set_err(err_r, "bad recipient count %zu", env->n_rcpts);
		return -1;
	}
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt_spec *r = &env->rcpts[i];
		unsigned all = QUEUE_NOTIFY_NEVER | QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE |
			       QUEUE_NOTIFY_DELAY;
		if (!str_ok(r->addr, PATH_MAX_LEN, false) ||
		    (r->orcpt != NULL &&
		     (!str_ok(r->orcpt, ORCPT_MAX, false) || strchr(r->orcpt, ';') == NULL)) ||
		    (r->notify & ~all) != 0 ||
		    ((r->notify & QUEUE_NOTIFY_NEVER) && r->notify != QUEUE_NOTIFY_NEVER)) {
			set_err(err_r, "bad recipient %zu", i);
			return -1;
		}
	}
	return 0;
}

static char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	char *d = xstrdup(at != NULL ? at + 1 : "");
	ascii_lower(d);
	return d;
}

/* Inserts the rows of a message whose file is durable. Inside a transaction. */
static int insert_rows(struct queue *q, const struct queue_envelope *env, const char *id,
		       const char *rel, uint64_t size, uint64_t wire_size, char **err_r)
{
	sqlite3_stmt *st = prep(q,
				"INSERT INTO messages (id, file, sender, envid, ret, size, "
				"wire_size, eightbit, smtputf8, arrival, submitter) "
				"VALUES (?,?,?,?,?,?,?,?,?,?,?)",
				err_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, rel, -1, SQLITE_TRANSIENT);
	bind_str(st, 3, env->sender, PATH_MAX_LEN);
	bind_str(st, 4, env->envid, ENVID_MAX);
	sqlite3_bind_int(st, 5, (int)env->ret);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)size);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)wire_size);
	sqlite3_bind_int(st, 8, env->eightbit);
	sqlite3_bind_int(st, 9, env->smtputf8);
	int64_t arrival = env->arrival != 0 ? env->arrival : time_unix();
	sqlite3_bind_int64(st, 10, arrival);
	bind_str(st, 11, env->submitter, PATH_MAX_LEN);
	if (step_done(q, st, err_r) < 0)
		return -1;
	/* A recipient already delivered locally goes in final, as if
	 * queue_record() had stored QUEUE_OUT_DELIVERED at arrival; its
	 * "delivered" DSN (NOTIFY=SUCCESS) is then queue_notify()'s work, and a
	 * crash before that leaves it to queue_notify_all(). Never QUEUED, so
	 * never handed out by queue_due(). */
	st = prep(q,
		  "INSERT INTO rcpts (msg, idx, addr, domain, orcpt, notify, state, attempts, "
		  "last_attempt, err_code, err_enhanced, err_text, success) "
		  "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
		  err_r);
	if (st == NULL)
		return -1;
	for (size_t i = 0; i < env->n_rcpts; i++) {
		const struct queue_rcpt_spec *r = &env->rcpts[i];
		char *dom = domain_of(r->addr);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)i);
		bind_str(st, 3, r->addr, PATH_MAX_LEN);
		sqlite3_bind_text(st, 4, dom, -1, SQLITE_TRANSIENT);
		bind_str(st, 5, r->orcpt, ORCPT_MAX);
		sqlite3_bind_int(st, 6, (int)r->notify);
		bool done = env->delivered != NULL && env->delivered[i];
		sqlite3_bind_text(st, 7, state_names[done ? QUEUE_RCPT_DELIVERED : QUEUE_RCPT_QUEUED],
				  -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 8, done ? 1 : 0);
		sqlite3_bind_int64(st, 9, done ? arrival : 0);
		sqlite3_bind_int(st, 10, done ? 250 : 0);
		if (done) {
			sqlite3_bind_text(st, 11, "2.0.0", -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 12, LOCAL_DELIVERED_REPLY, -1, SQLITE_STATIC);
		} else {
			sqlite3_bind_null(st, 11);
			sqlite3_bind_null(st, 12);
		}
		sqlite3_bind_int(st, 13, (int)QUEUE_OUT_DELIVERED);
		free(dom);
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_fail(q, err_r, "insert rcpt");
			sqlite3_finalize(st);
			return -1;
		}
	}
	sqlite3_finalize(st);
	return 0;
}

/* ---- the writer ---- */

struct queue_writer *queue_writer_new(struct queue *q, char **err_r)
{
	ASSERT(q->writer); /* see queue.h: recovery would take a CLI's file */
	struct queue_writer *w = xcalloc(1, sizeof *w);
	w->q = q;
	w->fd = -1;
	for (int attempt = 0; attempt < 5 && w->fd < 0; attempt++) {
		random_id(w->id);
		free(w->tmp_path);
		w->tmp_path = xasprintf("%s/%s", q->tmp_dir, w->id);
		w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (w->fd < 0 && errno != EEXIST)
			break;
	}
	if (w->fd < 0) {
		set_err(err_r, "open(%s): %s", w->tmp_path, strerror(errno));
		free(w->tmp_path);
		free(w);
		return NULL;
	}
	w->rel = xasprintf("new/%s", w->id);
	w->new_path = xasprintf("%s/%s", q->root, w->rel);
	return w;
}

static int writer_flush(struct queue_writer *w)
{
	if (w->failed)
		return -1;
	if (w->buf_len > 0 && write_full(w->fd, w->buf, w->buf_len) < 0) {
		w->failed = true;
		w->err_no = errno;
		return -1;
	}
	w->buf_len = 0;
	return 0;
}

int queue_writer_write(struct queue_writer *w, const void *p, size_t n)
{
	const uint8_t *s = p, *end = s + n;
	if (w->failed)
		return -1;
	w->size += n;
	for (const uint8_t *x = s; x < end && (x = memchr(x, '\n', (size_t)(end - x))) != NULL; x++)
		w->lfs++;
	if (w->buf == NULL)
		w->buf = xmalloc(WRITE_BUF);
	while (n > 0) {
		size_t k = WRITE_BUF - w->buf_len < n ? WRITE_BUF - w->buf_len : n;
		memcpy(w->buf + w->buf_len, s, k);
		w->buf_len += k;
		s += k;
		n -= k;
		if (w->buf_len == WRITE_BUF && writer_flush(w) < 0)
			return -1;
	}
	return 0;
}

static void writer_free(struct queue_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	free(w->buf);
	free(w->tmp_path);
	free(w->new_path);
	free(w->rel);
	free(w);
}

void queue_writer_abort(struct queue_writer **wp)
{
	struct queue_writer *w = *wp;
	if (w == NULL)
		return;
	*wp = NULL;
	if (unlink(w->tmp_path) < 0 && errno != ENOENT)
		log_warn("unlink(%s)", w->tmp_path);
	writer_free(w);
}

/* Steps 1-4 of the commit: the file is durable in new/ on success. On
 * failure nothing is left (except after a simulated crash). */
static int writer_make_durable(struct queue_writer *w, char **err_r)
{
	if (writer_flush(w) < 0) {
		set_err(err_r, "write(%s): %s", w->tmp_path, strerror(w->err_no));
		goto fail_tmp;
	}
	if (crash_here(QUEUE_CRASH_ENQ_TMP, err_r))
		return -1;
	if (fdatasync(w->fd) < 0) {
		set_err(err_r, "fdatasync(%s): %s", w->tmp_path, strerror(errno));
		goto fail_tmp;
	}
	close(w->fd);
	w->fd = -1;
	if (rename(w->tmp_path, w->new_path) < 0) {
		set_err(err_r, "rename(%s, %s): %s", w->tmp_path, w->new_path, strerror(errno));
		goto fail_tmp;
	}
	if (crash_here(QUEUE_CRASH_ENQ_RENAMED, err_r))
		return -1;
	if (fsync_dir(w->q->new_dir) < 0) {
		set_err(err_r, "fsync(%s): %s", w->q->new_dir, strerror(errno));
		unlink(w->new_path);
		return -1;
	}
	return 0;
fail_tmp:
	unlink(w->tmp_path);
	return -1;
}

int queue_writer_commit(struct queue_writer **wp, const struct queue_envelope *env, char id_r[17],
			char **err_r)
{
	struct queue_writer *w = *wp;
	*wp = NULL;
	struct queue *q = w->q;
	int r = -1;
	if (queue_envelope_check(env, err_r) < 0) {
		unlink(w->tmp_path);
		goto out;
	}
	if (writer_make_durable(w, err_r) < 0)
		goto out;
	if (crash_here(QUEUE_CRASH_ENQ_FILE, err_r))
		goto out;
	if (begin(q, err_r) < 0)
		goto fail_file;
	if (insert_rows(q, env, w->id, w->rel, w->size, w->size + w->lfs, err_r) < 0) {
		rollback(q);
		goto fail_file;
	}
	if (crash_here(QUEUE_CRASH_ENQ_TXN, err_r)) {
		rollback(q);
		goto out;
	}
	if (commit(q, err_r) < 0)
		goto fail_file;
	memcpy(id_r, w->id, 17);
	r = 0;
	goto out;
fail_file:
	/* Best effort: a leftover is an orphan for the next recovery. */
	if (unlink(w->new_path) < 0 && errno != ENOENT)
		log_warn("unlink(%s)", w->new_path);
out:
	writer_free(w);
	return r;
}

int queue_enqueue(struct queue *q, const struct queue_envelope *env, const void *data, size_t len,
		  char id_r[17], char **err_r)
{
	struct queue_writer *w = queue_writer_new(q, err_r);
	if (w == NULL)
		return -1;
	if (queue_writer_write(w, data, len) < 0) {
		set_err(err_r, "write(%s): %s", w->tmp_path, strerror(w->err_no));
		queue_writer_abort(&w);
		return -1;
	}
	return queue_writer_commit(&w, env, id_r, err_r);
}

/* ",W=<n>" in a Maildir name written by store/maildir.c. */
static bool wire_size_from_name(const char *name, uint64_t *w_r)
{
	const char *p = strstr(name, ",W=");
	if (p == NULL)
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p + 3, &end, 10);
	if (errno != 0 || end == p + 3 || (*end != '\0' && *end != ','))
		return false;
	*w_r = v;
	return true;
}

static int count_lfs_file(const char *path, uint64_t *lfs_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	uint8_t b[16384];
	uint64_t c = 0;
	for (;;) {
		ssize_t n = read(fd, b, sizeof b);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		for (const uint8_t *x = b, *end = b + n;
		     x < end && (x = memchr(x, '\n', (size_t)(end - x))) != NULL; x++)
			c++;
	}
	close(fd);
	*lfs_r = c;
	return 0;
}

int queue_enqueue_file(struct queue *q, const struct queue_envelope *env, const char *rel,
		       char id_r[17], char **err_r)
{
	ASSERT(q->writer);
	size_t rl = strnlen(rel, REL_MAX + 1);
	if (rl > REL_MAX || strncmp(rel, "new/", 4) != 0 || rl == 4 || strchr(rel + 4, '/') ||
	    rel[4] == '.') {
		set_err(err_r, "bad spool file name");
		return -1;
	}
	char *path = xasprintf("%s/%s", q->root, rel);
	int r = -1;
	struct stat sb;
	uint64_t wire, lfs;
	if (queue_envelope_check(env, err_r) < 0)
		goto fail;
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		set_err(err_r, "stat(%s): %s", path, strerror(errno ? errno : EINVAL));
		goto fail;
	}
	if (!wire_size_from_name(rel, &wire)) {
		if (count_lfs_file(path, &lfs) < 0) {
			set_err(err_r, "read(%s): %s", path, strerror(errno));
			goto fail;
		}
		wire = (uint64_t)sb.st_size + lfs;
	}
	char id[17];
	random_id(id);
	if (begin(q, err_r) < 0)
		goto fail;
	if (insert_rows(q, env, id, rel, (uint64_t)sb.st_size, wire, err_r) < 0) {
		rollback(q);
		goto fail;
	}
	if (crash_here(QUEUE_CRASH_ENQ_TXN, err_r)) {
		rollback(q);
		free(path);
		return -1;
	}
	if (commit(q, err_r) < 0)
		goto fail;
	memcpy(id_r, id, 17);
	r = 0;
	free(path);
	return r;
fail:
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("unlink(%s)", path);
	free(path);
	return r;
}

/* ---- reading ---- */

#define MSG_COLS \
	"id, file, sender, envid, ret, size, wire_size, eightbit, smtputf8, arrival, submitter"
#define RCPT_COLS                                                                         \
	"idx, addr, domain, orcpt, notify, state, attempts, next_attempt, last_attempt, " \
	"err_code, err_enhanced, err_text, err_remote, success, delay_warned, reported, claimed"

static struct queue_msg *msg_from_row(sqlite3_stmt *st)
{
	struct queue_msg *m = xcalloc(1, sizeof *m);
	const unsigned char *id = sqlite3_column_text(st, 0);
	snprintf(m->id, sizeof m->id, "%s", id != NULL ? (const char *)id : "");
	m->file = col_str(st, 1);
	m->sender = col_str(st, 2);
	if (m->sender == NULL)
		m->sender = xstrdup("");
	m->envid = col_str(st, 3);
	m->ret = (enum queue_ret)sqlite3_column_int(st, 4);
	m->size = (uint64_t)sqlite3_column_int64(st, 5);
	m->wire_size = (uint64_t)sqlite3_column_int64(st, 6);
	m->eightbit = sqlite3_column_int(st, 7) != 0;
	m->smtputf8 = sqlite3_column_int(st, 8) != 0;
	m->arrival = sqlite3_column_int64(st, 9);
	m->submitter = col_str(st, 10);
	return m;
}

static void rcpt_from_row(sqlite3_stmt *st, struct queue_rcpt *r)
{
	memset(r, 0, sizeof *r);
	r->idx = (uint32_t)sqlite3_column_int64(st, 0);
	r->addr = col_str(st, 1);
	r->domain = col_str(st, 2);
	r->orcpt = col_str(st, 3);
	r->notify = (unsigned)sqlite3_column_int(st, 4);
	r->state = state_parse(sqlite3_column_text(st, 5));
	r->attempts = (unsigned)sqlite3_column_int(st, 6);
	r->next_attempt = sqlite3_column_int64(st, 7);
	r->last_attempt = sqlite3_column_int64(st, 8);
	r->err_code = sqlite3_column_int(st, 9);
	r->err_enhanced = col_str(st, 10);
	r->err_text = col_str(st, 11);
	r->err_remote = col_str(st, 12);
	r->success = (enum queue_outcome)sqlite3_column_int(st, 13);
	r->delay_warned = sqlite3_column_int(st, 14) != 0;
	r->reported = sqlite3_column_int(st, 15) != 0;
	r->claimed = sqlite3_column_int(st, 16) != 0;
	if (r->addr == NULL)
		r->addr = xstrdup("");
	if (r->domain == NULL)
		r->domain = xstrdup("");
}

static void rcpt_push(struct queue_msg *m, size_t *cap)
{
	if (m->n_rcpts == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		m->rcpts = xrealloc(m->rcpts, *cap * sizeof *m->rcpts);
	}
	m->n_rcpts++;
}

/* RFC 3461 5.2: which DSN this recipient needs now. */
static enum queue_action rcpt_action(const struct queue *q, const struct queue_msg *m,
				     const struct queue_rcpt *r, int64_t now)
{
	if (m->sender[0] == '\0' || (r->notify & QUEUE_NOTIFY_NEVER))
		return QUEUE_ACTION_NONE;
	switch (r->state) {
	case QUEUE_RCPT_FAILED:
		if (!r->reported && (r->notify == 0 || (r->notify & QUEUE_NOTIFY_FAILURE)))
			return QUEUE_ACTION_FAILED;
		return QUEUE_ACTION_NONE;
	case QUEUE_RCPT_DELIVERED:
		if (r->reported || !(r->notify & QUEUE_NOTIFY_SUCCESS))
			return QUEUE_ACTION_NONE;
		if (r->success == QUEUE_OUT_RELAYED)
			return QUEUE_ACTION_RELAYED;
		if (r->success == QUEUE_OUT_DELIVERED)
			return QUEUE_ACTION_DELIVERED;
		return QUEUE_ACTION_NONE; /* PASSED: the peer reports */
	case QUEUE_RCPT_QUEUED:
	case QUEUE_RCPT_DEFERRED:
		if (!r->delay_warned && !r->claimed &&
		    (r->notify == 0 || (r->notify & QUEUE_NOTIFY_DELAY)) &&
		    now - m->arrival >= q->pol.delay_warn && now < m->arrival + q->pol.lifetime)
			return QUEUE_ACTION_DELAYED;
		return QUEUE_ACTION_NONE;
	}
	return QUEUE_ACTION_NONE;
}

static void rcpt_free(struct queue_rcpt *r)
{
	free(r->addr);
	free(r->domain);
	free(r->orcpt);
	free(r->err_enhanced);
	free(r->err_text);
	free(r->err_remote);
}

void queue_msg_free(struct queue_msg **mp)
{
	struct queue_msg *m = *mp;
	if (m == NULL)
		return;
	*mp = NULL;
	for (size_t i = 0; i < m->n_rcpts; i++)
		rcpt_free(&m->rcpts[i]);
	free(m->rcpts);
	free(m->file);
	free(m->sender);
	free(m->envid);
	free(m->submitter);
	free(m);
}

void queue_msgs_free(struct queue_msg **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		queue_msg_free(&v[i]);
	free(v);
}

/* Loads every recipient of m (actions computed at now). */
static int load_rcpts(struct queue *q, struct queue_msg *m, int64_t now, char **err_r)
{
	sqlite3_stmt *st =
	    prep(q, "SELECT " RCPT_COLS " FROM rcpts WHERE msg = ? ORDER BY idx", err_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, m->id, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rcpt_push(m, &cap);
		struct queue_rcpt *r = &m->rcpts[m->n_rcpts - 1];
		rcpt_from_row(st, r);
		r->action = rcpt_action(q, m, r, now);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(q, err_r, "select rcpts");
	return 0;
}

static int load_msg(struct queue *q, const char *id, struct queue_msg **m_r, char **err_r)
{
	sqlite3_stmt *st = prep(q, "SELECT " MSG_COLS " FROM messages WHERE id = ?", err_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*m_r = msg_from_row(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(q, err_r, "select message");
}

int queue_get(struct queue *q, const char *id, int64_t now, struct queue_msg **m_r, char **err_r)
{
	*m_r = NULL;
	if (!queue_id_valid(id))
		return 0;
	/* One read transaction: message and recipients from the same snapshot. */
	if (exec(q, "BEGIN", err_r) < 0)
		return -1;
	struct queue_msg *m = NULL;
	int r = load_msg(q, id, &m, err_r);
	if (r == 1 && load_rcpts(q, m, now, err_r) < 0)
		r = -1;
	rollback(q); /* read only */
	if (r != 1) {
		queue_msg_free(&m);
		return r;
	}
	*m_r = m;
	return 1;
}

int queue_list(struct queue *q, int64_t now, struct queue_msg ***v_r, size_t *n_r, char **err_r)
{
	*v_r = NULL;
	*n_r = 0;
	if (exec(q, "BEGIN", err_r) < 0)
		return -1;
	sqlite3_stmt *st = prep(q, "SELECT " MSG_COLS " FROM messages ORDER BY arrival, id", err_r);
	if (st == NULL) {
		rollback(q);
		return -1;
	}
	struct queue_msg **v = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof *v);
		}
		v[n++] = msg_from_row(st);
	}
	sqlite3_finalize(st);
	int r = 0;
	if (rc != SQLITE_DONE)
		r = db_fail(q, err_r, "select messages");
	for (size_t i = 0; r == 0 && i < n; i++)
		r = load_rcpts(q, v[i], now, err_r);
	rollback(q);
	if (r < 0) {
		queue_msgs_free(v, n);
		return -1;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

char *queue_msg_path(const struct queue *q, const struct queue_msg *m)
{
	return xasprintf("%s/%s", q->root, m->file);
}

int queue_read(const struct queue *q, const struct queue_msg *m, uint64_t max, struct buf *out,
	       bool *truncated_r, char **err_r)
{
	char *path = queue_msg_path(q, m);
	*truncated_r = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		set_err(err_r, "open(%s): %s", path, strerror(e));
		free(path);
		errno = e;
		return -1;
	}
	uint64_t got = 0;
	for (;;) {
		size_t want = max - got > 65536 ? 65536 : (size_t)(max - got);
		if (want == 0) {
			uint8_t c;
			*truncated_r = read(fd, &c, 1) == 1;
			break;
		}
		void *p = buf_reserve(out, want);
		if (p == NULL) {
			set_err(err_r, "read(%s): buffer cap", path);
			close(fd);
			free(path);
			errno = ENOMEM;
			return -1;
		}
		ssize_t n = read(fd, p, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			set_err(err_r, "read(%s): %s", path, strerror(e));
			close(fd);
			free(path);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		buf_commit(out, (size_t)n);
		got += (uint64_t)n;
	}
	close(fd);
	free(path);
	return 0;
}

/* ---- scheduling ---- */

void queue_due_free(struct queue_due *d)
{
	for (size_t i = 0; i < d->n; i++) {
		queue_msgs_free(d->v[i].msgs, d->v[i].n_msgs);
		free(d->v[i].domain);
	}
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

struct claim {
	char msg[17];
	uint32_t idx;
};

int queue_due(struct queue *q, int64_t now, size_t max_rcpts, struct queue_due *out, char **err_r)
{
	out->v = NULL;
	out->n = 0;
	if (max_rcpts == 0)
		return 0;
	if (begin(q, err_r) < 0)
		return -1;
	sqlite3_stmt *st = prep(q,
				"SELECT r.msg, r.idx FROM rcpts r JOIN messages m ON m.id = r.msg "
				"WHERE r.state IN ('queued','deferred') AND r.claimed = 0 "
				"AND r.next_attempt <= ? "
				"ORDER BY r.domain, m.arrival, r.msg, r.idx LIMIT ?",
				err_r);
	if (st == NULL)
		return rollback(q);
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, max_rcpts > INT64_MAX ? INT64_MAX : (sqlite3_int64)max_rcpts);
	struct claim *c = NULL;
	size_t nc = 0, capc = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (nc == capc) {
			capc = capc ? capc * 2 : 32;
			c = xrealloc(c, capc * sizeof *c);
		}
		const unsigned char *id = sqlite3_column_text(st, 0);
		snprintf(c[nc].msg, sizeof c[nc].msg, "%s", id != NULL ? (const char *)id : "");
		c[nc].idx = (uint32_t)sqlite3_column_int64(st, 1);
		nc++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(c);
		db_fail(q, err_r, "select due");
		return rollback(q);
	}
	sqlite3_stmt *up = prep(q, "UPDATE rcpts SET claimed = 1 WHERE msg = ? AND idx = ?", err_r);
	sqlite3_stmt *one =
	    prep(q, "SELECT " RCPT_COLS " FROM rcpts WHERE msg = ? AND idx = ?", err_r);
	int r = up != NULL && one != NULL ? 0 : -1;
	struct queue_msg *cur = NULL;
	size_t cur_cap = 0, batch_cap = 0;
	for (size_t i = 0; r == 0 && i < nc; i++) {
		sqlite3_reset(up);
		sqlite3_bind_text(up, 1, c[i].msg, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(up, 2, c[i].idx);
		if (sqlite3_step(up) != SQLITE_DONE) {
			r = db_fail(q, err_r, "claim");
			break;
		}
		sqlite3_reset(one);
		sqlite3_bind_text(one, 1, c[i].msg, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(one, 2, c[i].idx);
		if (sqlite3_step(one) != SQLITE_ROW) {
			r = db_fail(q, err_r, "select claimed");
			break;
		}
		struct queue_rcpt rc1;
		rcpt_from_row(one, &rc1);
		/* New batch when the domain changes; new message entry when the
		 * message changes (rows are ordered by domain, then message). */
		struct queue_batch *b = out->n > 0 ? &out->v[out->n - 1] : NULL;
		if (b == NULL || strcmp(b->domain, rc1.domain) != 0) {
			if (out->n == batch_cap) {
				batch_cap = batch_cap ? batch_cap * 2 : 8;
				out->v = xrealloc(out->v, batch_cap * sizeof *out->v);
			}
			b = &out->v[out->n++];
			memset(b, 0, sizeof *b);
			b->domain = xstrdup(rc1.domain);
			cur = NULL;
		}
		if (cur == NULL || strcmp(cur->id, c[i].msg) != 0) {
			struct queue_msg *m = NULL;
			if (load_msg(q, c[i].msg, &m, err_r) != 1) {
				if (err_r != NULL && *err_r == NULL)
					set_err(err_r, "message %s vanished", c[i].msg);
				rcpt_free(&rc1);
				r = -1;
				break;
			}
			b->msgs = xrealloc(b->msgs, (b->n_msgs + 1) * sizeof *b->msgs);
			b->msgs[b->n_msgs++] = m;
			cur = m;
			cur_cap = 0;
		}
		rcpt_push(cur, &cur_cap);
		rc1.claimed = true;
		cur->rcpts[cur->n_rcpts - 1] = rc1;
	}
	sqlite3_finalize(up);
	sqlite3_finalize(one);
	free(c);
	if (r < 0 || commit(q, err_r) < 0) {
		if (r < 0)
			rollback(q);
		queue_due_free(out);
		return -1;
	}
	return 0;
}

int queue_next_due(struct queue *q, int64_t *t_r, char **err_r)
{
	sqlite3_stmt *st = prep(q,
				"SELECT MIN(next_attempt) FROM rcpts "
				"WHERE state IN ('queued','deferred') AND claimed = 0",
				err_r);
	if (st == NULL)
		return -1;
	int rc = sqlite3_step(st);
	int r;
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		*t_r = sqlite3_column_int64(st, 0);
		r = 1;
	} else if (rc == SQLITE_ROW) {
		r = 0;
	} else {
		r = db_fail(q, err_r, "next due");
	}
	sqlite3_finalize(st);
	return r;
}

int queue_record(struct queue *q, const char *id, const struct queue_result *res, size_t n,
		 int64_t now, char **err_r)
{
	if (!queue_id_valid(id))
		return 0;
	if (begin(q, err_r) < 0)
		return -1;
	struct queue_msg *m = NULL;
	int found = load_msg(q, id, &m, err_r);
	if (found <= 0) {
		rollback(q);
		return found; /* deleted meanwhile: nothing to record */
	}
	int64_t expiry = m->arrival + q->pol.lifetime;
	queue_msg_free(&m);
	sqlite3_stmt *sel =
	    prep(q, "SELECT state, attempts FROM rcpts WHERE msg = ? AND idx = ?", err_r);
	sqlite3_stmt *up = prep(q,
				"UPDATE rcpts SET state = ?, attempts = ?, next_attempt = ?, "
				"last_attempt = ?, err_code = ?, err_enhanced = ?, err_text = ?, "
				"err_remote = ?, success = ?, claimed = 0 "
				"WHERE msg = ? AND idx = ?",
				err_r);
	int r = sel != NULL && up != NULL ? 0 : -1;
	for (size_t i = 0; r == 0 && i < n; i++) {
		const struct queue_result *x = &res[i];
		sqlite3_reset(sel);
		sqlite3_bind_text(sel, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(sel, 2, x->rcpt);
		int rc = sqlite3_step(sel);
		if (rc == SQLITE_DONE)
			continue;
		if (rc != SQLITE_ROW) {
			r = db_fail(q, err_r, "select rcpt");
			break;
		}
		enum queue_rcpt_state st = state_parse(sqlite3_column_text(sel, 0));
		unsigned attempts = (unsigned)sqlite3_column_int(sel, 1);
		if (state_final(st))
			continue;
		attempts++;
		int64_t next = 0;
		enum queue_outcome success = QUEUE_OUT_DELIVERED;
		switch (x->outcome) {
		case QUEUE_OUT_DELIVERED:
		case QUEUE_OUT_RELAYED:
		case QUEUE_OUT_PASSED:
			st = QUEUE_RCPT_DELIVERED;
			success = x->outcome;
			break;
		case QUEUE_OUT_PERMFAIL:
			st = QUEUE_RCPT_FAILED;
			break;
		case QUEUE_OUT_TEMPFAIL:
			if (now >= expiry) {
				st = QUEUE_RCPT_FAILED; /* lifetime over: the 4xx becomes final */
			} else {
				st = QUEUE_RCPT_DEFERRED;
				next = now + queue_backoff(&q->pol, attempts);
				if (next > expiry)
					next = expiry; /* one last try at the end of the lifetime */
			}
			break;
		}
		sqlite3_reset(up);
		sqlite3_bind_text(up, 1, state_names[st], -1, SQLITE_STATIC);
		sqlite3_bind_int64(up, 2, attempts);
		sqlite3_bind_int64(up, 3, next);
		sqlite3_bind_int64(up, 4, now);
		sqlite3_bind_int(up, 5, x->err.code);
		bind_str(up, 6, x->err.enhanced, ENHANCED_MAX);
		bind_str(up, 7, x->err.text, ERR_TEXT_MAX);
		bind_str(up, 8, x->err.remote, REMOTE_MAX);
		sqlite3_bind_int(up, 9, (int)success);
		sqlite3_bind_text(up, 10, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(up, 11, x->rcpt);
		if (sqlite3_step(up) != SQLITE_DONE)
			r = db_fail(q, err_r, "update rcpt");
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(up);
	if (r < 0)
		return rollback(q);
	return commit(q, err_r);
}

int queue_release(struct queue *q, const char *id, const uint32_t *rcpts, size_t n, char **err_r)
{
	if (begin(q, err_r) < 0)
		return -1;
	sqlite3_stmt *st = prep(q, "UPDATE rcpts SET claimed = 0 WHERE msg = ? AND idx = ?", err_r);
	if (st == NULL)
		return rollback(q);
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, rcpts[i]);
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_fail(q, err_r, "release");
			sqlite3_finalize(st);
			return rollback(q);
		}
	}
	sqlite3_finalize(st);
	return commit(q, err_r);
}

/* ---- notifications and removal ---- */

/* Builds the DSN for m's due actions into out. 1 built, 0 none needed. */
static int build_dsn(struct queue *q, const struct queue_msg *m, int64_t now, struct buf *out,
		     struct dsn_result *res)
{
	struct dsn_rcpt *dr = xcalloc(m->n_rcpts, sizeof *dr);
	size_t n = 0;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct queue_rcpt *r = &m->rcpts[i];
		if (r->action == QUEUE_ACTION_NONE)
			continue;
		dr[n++] = (struct dsn_rcpt){
		    .addr = r->addr,
		    .orcpt = r->orcpt,
		    .action = r->action,
		    .code = r->err_code,
		    .enhanced = r->err_enhanced,
		    .text = r->err_text,
		    .remote = r->err_remote,
		    .last_attempt = r->last_attempt,
		    .will_retry_until =
			r->action == QUEUE_ACTION_DELAYED ? m->arrival + q->pol.lifetime : 0,
		};
	}
	struct buf orig = BUF_INIT(0);
	bool truncated = false, have_orig = false;
	if (n > 0) {
		char *err = NULL;
		if (queue_read(q, m, q->pol.max_return, &orig, &truncated, &err) == 0) {
			have_orig = true;
		} else {
			log_warnx("queue %s: DSN without the original: %s", m->id, err);
			free(err);
		}
	}
	struct dsn_input in = {
	    .hostname = q->pol.hostname,
	    .sender = m->sender,
	    .envid = m->envid,
	    .queue_id = m->id,
	    .ret = m->ret,
	    .smtputf8 = m->smtputf8,
	    .eightbit = m->eightbit,
	    .arrival = m->arrival,
	    .now = now,
	    .rcpts = dr,
	    .n_rcpts = n,
	    .orig = have_orig ? orig.data : NULL,
	    .orig_len = have_orig ? orig.len : 0,
	    .orig_truncated = truncated,
	    .max_return = q->pol.max_return,
	};
	int r = n > 0 ? dsn_build(&in, out, res) : 0;
	buf_deinit(&orig);
	free(dr);
	return r > 0 ? 1 : 0;
}

int queue_notify(struct queue *q, const char *id, int64_t now, char dsn_id_r[17], char **err_r)
{
	if (dsn_id_r != NULL)
		dsn_id_r[0] = '\0';
	struct queue_msg *m = NULL;
	int g = queue_get(q, id, now, &m, err_r);
	if (g <= 0)
		return g;
	struct buf dsn = BUF_INIT(0);
	struct dsn_result res = {0};
	struct queue_writer *w = NULL;
	int built = build_dsn(q, m, now, &dsn, &res);
	int r = -1;
	if (built) {
		w = queue_writer_new(q, err_r);
		if (w == NULL)
			goto out;
		if (queue_writer_write(w, dsn.data, dsn.len) < 0) {
			set_err(err_r, "write(%s): %s", w->tmp_path, strerror(w->err_no));
			queue_writer_abort(&w);
			goto out;
		}
		if (writer_make_durable(w, err_r) < 0) {
			writer_free(w);
			w = NULL;
			goto out;
		}
		if (crash_here(QUEUE_CRASH_NOTIFY_FILE, err_r)) {
			writer_free(w);
			w = NULL;
			goto out;
		}
	}
	if (begin(q, err_r) < 0)
		goto fail_dsn;
	struct queue_msg *still = NULL;
	int found = load_msg(q, id, &still, err_r);
	queue_msg_free(&still);
	if (found <= 0) { /* deleted meanwhile: no DSN either */
		rollback(q);
		r = found;
		goto fail_dsn;
	}
	if (built) {
		struct queue_rcpt_spec to = {.addr = m->sender, .notify = QUEUE_NOTIFY_NEVER};
		struct queue_envelope env = {
		    .sender = "",
		    .ret = QUEUE_RET_UNSPEC,
		    .eightbit = res.eightbit,
		    .smtputf8 = res.smtputf8,
		    .arrival = now,
		    .rcpts = &to,
		    .n_rcpts = 1,
		};
		if (insert_rows(q, &env, w->id, w->rel, w->size, w->size + w->lfs, err_r) < 0)
			goto fail_txn;
	}
	sqlite3_stmt *rep = prep(q,
				 "UPDATE rcpts SET reported = 1 WHERE msg = ? AND idx = ? "
				 "AND state IN ('delivered','failed') AND reported = 0",
				 err_r);
	sqlite3_stmt *warn = prep(
	    q, "UPDATE rcpts SET delay_warned = 1 WHERE msg = ? AND idx = ? AND delay_warned = 0",
	    err_r);
	int ok = rep != NULL && warn != NULL;
	bool raced = false;
	for (size_t i = 0; ok && i < m->n_rcpts; i++) {
		const struct queue_rcpt *rc = &m->rcpts[i];
		sqlite3_stmt *st = NULL;
		if (state_final(rc->state) && !rc->reported)
			st = rep;
		else if (rc->action == QUEUE_ACTION_DELAYED)
			st = warn;
		if (st == NULL)
			continue;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, rc->idx);
		if (sqlite3_step(st) != SQLITE_DONE)
			ok = db_fail(q, err_r, "mark rcpt") == 0;
		else if (rc->action != QUEUE_ACTION_NONE && sqlite3_changes(q->db) != 1)
			raced = true; /* reported by another handle since our snapshot */
	}
	sqlite3_finalize(rep);
	sqlite3_finalize(warn);
	if (!ok)
		goto fail_txn;
	if (raced) { /* never the same notification twice: drop ours */
		rollback(q);
		r = 0;
		goto fail_dsn;
	}
	/* Removal once every recipient is final and handled. */
	sqlite3_stmt *left = prep(q,
				  "SELECT COUNT(*) FROM rcpts WHERE msg = ? AND NOT "
				  "(state IN ('delivered','failed') AND reported = 1)",
				  err_r);
	if (left == NULL)
		goto fail_txn;
	sqlite3_bind_text(left, 1, id, -1, SQLITE_TRANSIENT);
	int64_t pending = sqlite3_step(left) == SQLITE_ROW ? sqlite3_column_int64(left, 0) : -1;
	sqlite3_finalize(left);
	if (pending < 0) {
		db_fail(q, err_r, "count pending");
		goto fail_txn;
	}
	bool removed = pending == 0;
	if (removed && delete_msg_rows(q, id, err_r) < 0)
		goto fail_txn;
	if (commit(q, err_r) < 0)
		goto fail_dsn;
	if (built && dsn_id_r != NULL)
		memcpy(dsn_id_r, w->id, 17);
	if (crash_here(QUEUE_CRASH_NOTIFY_TXN, err_r))
		goto out;
	if (removed) {
		char *path = queue_msg_path(q, m);
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("unlink(%s)", path); /* an orphan for the next recovery */
		free(path);
	}
	r = removed ? 1 : 0;
	goto out;
fail_txn:
	rollback(q);
fail_dsn:
	if (w != NULL && unlink(w->new_path) < 0 && errno != ENOENT)
		log_warn("unlink(%s)", w->new_path);
out:
	if (w != NULL)
		writer_free(w);
	buf_deinit(&dsn);
	queue_msg_free(&m);
	return r;
}

int queue_notify_all(struct queue *q, int64_t now, char **err_r)
{
	/* Candidates: final recipients not yet handled, and pending ones old
	 * enough for a delay warning. queue_notify() decides exactly. */
	sqlite3_stmt *st =
	    prep(q,
		 "SELECT DISTINCT r.msg FROM rcpts r JOIN messages m ON m.id = r.msg "
		 "WHERE (r.state IN ('delivered','failed') AND r.reported = 0) "
		 "OR (r.state IN ('queued','deferred') AND r.delay_warned = 0 "
		 "AND r.claimed = 0 AND m.sender != '' AND (r.notify & 1) = 0 "
		 "AND (r.notify = 0 OR (r.notify & 8) != 0) "
		 "AND m.arrival <= ? AND m.arrival > ?)",
		 err_r);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, now - q->pol.delay_warn);
	sqlite3_bind_int64(st, 2, now - q->pol.lifetime);
	char(*ids)[17] = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			ids = xrealloc(ids, cap * sizeof *ids);
		}
		const unsigned char *id = sqlite3_column_text(st, 0);
		snprintf(ids[n++], 17, "%s", id != NULL ? (const char *)id : "");
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(ids);
		return db_fail(q, err_r, "select notices");
	}
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (queue_notify(q, ids[i], now, NULL, err_r) < 0) {
			r = -1;
			break;
		}
		r++;
	}
	free(ids);
	return r;
}

/* ---- administration ---- */

int queue_flush(struct queue *q, char **err_r)
{
	if (exec(q, "UPDATE rcpts SET next_attempt = 0 WHERE state IN ('queued','deferred')",
		 err_r) < 0)
		return -1;
	return sqlite3_changes(q->db);
}

int queue_delete(struct queue *q, const char *id, char **err_r)
{
	if (!queue_id_valid(id))
		return 0;
	if (begin(q, err_r) < 0)
		return -1;
	struct queue_msg *m = NULL;
	int found = load_msg(q, id, &m, err_r);
	if (found <= 0) {
		rollback(q);
		return found;
	}
	if (delete_msg_rows(q, id, err_r) < 0)
		goto fail;
	if (commit(q, err_r) < 0) {
		queue_msg_free(&m);
		return -1;
	}
	if (crash_here(QUEUE_CRASH_DELETE_TXN, err_r)) {
		queue_msg_free(&m);
		return -1;
	}
	char *path = queue_msg_path(q, m);
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("unlink(%s)", path);
	free(path);
	queue_msg_free(&m);
	return 1;
fail:
	rollback(q);
	queue_msg_free(&m);
	return -1;
}
