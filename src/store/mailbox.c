/* SPDX-License-Identifier: MIT */
/* The IMAP mailbox store (mailbox.h): an account's Maildir++ folders and the
 * SQLite index that gives them UIDs, flags, keywords, MODSEQs and cached
 * ENVELOPE/BODYSTRUCTURE.
 *
 * Index schema (PRAGMA user_version = SCHEMA_VERSION):
 *   meta(k, v)                         next UIDVALIDITY
 *   mailboxes(id, name, dir, selectable, special, uidvalidity, uidnext,
 *             highestmodseq, recent_uid, mt_new, mt_cur)
 *   subscriptions(name)                may name mailboxes that do not exist
 *   messages(id, mailbox, uid, base, path, flags, keywords, internaldate, tz,
 *            size, wsize, modseq)      narrow, so counts and SELECT scan fast
 *   cache(id -> envelope, body, bodystructure, mime)  the parsed message
 *   expunged(mailbox, uid, modseq)     for mbox_sync's EXPUNGE reports (pruned:
 *                                      mbox_prune_expunged)
 *   kwnames(mailbox, name)             keywords ever used (FLAGS response)
 *
 * Ordering rules that make every crash recoverable by the next scan:
 *   - a file is put in place (rename/link into cur/, directory fsynced)
 *     before the index row that names it is committed: a file without a row
 *     is adopted by the next scan;
 *   - a file is removed before the commit that drops its row: a row without
 *     a file is dropped by the next scan, and an expunged message can never
 *     come back;
 *   - a flag rename happens before the commit: the next scan sees a file name
 *     that differs from the row's and takes the flags from it.
 * Each of those steps has a crash point (mbox_test_crash_at) for the tests. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "mime/imap_view.h"
#include "mime/message.h"
#include "store/mailbox.h"

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 30000
#define MTIME_SETTLE_NS 2000000000LL /* dir mtimes newer than this are not trusted */
#define CACHE_STR_MAX (16u << 20)

/* ---- crash points (tests) -------------------------------------------------- */

/* Relaxed atomics: the daemon calls the store from several job threads. */
static unsigned crash_at, crash_count;

void mbox_test_crash_at(unsigned n)
{
	__atomic_store_n(&crash_at, n, __ATOMIC_RELAXED);
	__atomic_store_n(&crash_count, 0, __ATOMIC_RELAXED);
}

unsigned mbox_test_crash_points(void)
{
	return __atomic_load_n(&crash_count, __ATOMIC_RELAXED);
}

static bool test_nosync;

void mbox_test_nosync(bool on)
{
	test_nosync = on;
}

/* Maildir: a file left in tmp/ for 36 hours is garbage. */
#define TMP_MAX_AGE (36 * 3600)
static int64_t tmp_max_age = TMP_MAX_AGE;

void mbox_test_tmp_max_age(int64_t secs)
{
	tmp_max_age = secs ? secs : TMP_MAX_AGE;
}

static int sync_dir(const char *path)
{
	return test_nosync ? 0 : fsync_dir(path);
}

static int sync_data(int fd)
{
	return test_nosync ? 0 : fdatasync(fd);
}

static void crash_point(void)
{
	unsigned n = __atomic_add_fetch(&crash_count, 1, __ATOMIC_RELAXED);
	unsigned at = __atomic_load_n(&crash_at, __ATOMIC_RELAXED);
	if (at != 0 && n == at)
		raise(SIGKILL);
}

/* ---- types ----------------------------------------------------------------- */

struct mstore {
	char *root;
	sqlite3 *db;
	char *host;
	char rand[17];
	unsigned seq;
	/* mbox_meta's statement per "want" combination, prepared once per
	 * connection: FETCH calls it for every message, and parsing the SQL
	 * each time cost more than running it. */
	sqlite3_stmt *meta_st[16];
};

static void meta_cache_drop(struct mstore *s)
{
	for (size_t i = 0; i < N_ELEMENTS(s->meta_st); i++) {
		sqlite3_finalize(s->meta_st[i]);
		s->meta_st[i] = NULL;
	}
}

struct mrow {
	int64_t id;
	char *name, *dir; /* dir: "" (INBOX) or ".a.b" */
	bool selectable;
	int special;
	uint32_t uidvalidity, uidnext, recent_uid;
	uint64_t modseq;
	int64_t mt_new, mt_cur;
};

struct rrange {
	uint32_t lo, hi;
};

/* What mbox_poll compares: mtimes of new/, cur/, the index and its WAL. */
#define POLL_N 4

struct mbox {
	struct mstore *s;
	int64_t poll[POLL_N];
	int64_t poll_at; /* when poll[] was taken */
	char *dir;       /* the mailbox directory as of the last open/sync */
	int64_t id;
	char *name;
	bool readonly;
	int special;
	uint32_t uidvalidity, uidnext;
	uint64_t modseq;
	uint32_t last_uid;    /* highest UID the session has been told about */
	uint64_t sync_modseq; /* highestmodseq as of the last sync */
	uint32_t *uids;
	size_t n_uids;
	struct rrange *rr;
	size_t n_rr;
};

struct parsed;
struct mbox_append {
	struct mstore *s;
	char *name;
	char *tmp_path, *base, *cur_dir;
	int fd;
	bool pending_cr, failed;
	struct mime_parser *parser;
	struct buf out;
	/* set by mbox_append_finish: the message waits in tmp/ */
	bool finished;
	struct parsed *p;
	unsigned flags;
	char *kw;
	int64_t internaldate;
	int tz_min;
};

/* ---- errors and SQL helpers -------------------------------------------------- */

static int ATTR_FORMAT(3, 4) fail(struct mbox_err *err, enum mbox_code code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err) {
		err->code = code;
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		if (code == MBOX_E_SERVERBUG)
			log_warnx("mailbox: %s", err->msg);
	}
	va_end(ap);
	return -1;
}

static int fail_errno(struct mbox_err *err, const char *fn, const char *path)
{
	return fail(err, MBOX_E_SERVERBUG, "%s(%s): %s", fn, path, strerror(errno));
}

static int db_fail(struct mstore *s, struct mbox_err *err, const char *what)
{
	return fail(err, MBOX_E_SERVERBUG, "sqlite (%s): %s", what, sqlite3_errmsg(s->db));
}

/* Opens the index connection (again, after mstore_suspend). */
static int db_open(struct mstore *s, struct mbox_err *err)
{
	char *path = xasprintf("%s/%s", s->root, MBOX_INDEX_NAME);
	int rc = sqlite3_open_v2(path, &s->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	free(path);
	if (rc != SQLITE_OK) {
		fail(err, MBOX_E_SERVERBUG, "sqlite open %s: %s", s->root, sqlite3_errstr(rc));
		sqlite3_close(s->db);
		s->db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	/* synchronous=FULL: a UID the client was told must survive a power loss. */
	if (sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db,
			 test_nosync ? "PRAGMA synchronous = OFF" : "PRAGMA synchronous = FULL", NULL,
			 NULL, NULL) != SQLITE_OK) {
		db_fail(s, err, "pragma");
		sqlite3_close(s->db);
		s->db = NULL;
		return -1;
	}
	return 0;
}

static sqlite3_stmt *prep(struct mstore *s, const char *sql, struct mbox_err *err)
{
	if (!s->db && db_open(s, err) < 0)
		return NULL;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_fail(s, err, sql);
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

static int exec(struct mstore *s, const char *sql, struct mbox_err *err)
{
	if (!s->db && db_open(s, err) < 0)
		return -1;
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(s, err, sql);
	return 0;
}

static int tx_begin(struct mstore *s, struct mbox_err *err)
{
	return exec(s, "BEGIN IMMEDIATE", err);
}

static void tx_rollback(struct mstore *s)
{
	if (s->db && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int tx_commit(struct mstore *s, struct mbox_err *err)
{
	crash_point();
	if (exec(s, "COMMIT", err) < 0) {
		tx_rollback(s);
		return -1;
	}
	crash_point();
	return 0;
}

/* Runs a statement that returns no rows; finalizes it. */
static int step_done(struct mstore *s, sqlite3_stmt *st, struct mbox_err *err)
{
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, err, "step");
	return 0;
}

static char *col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return xstrdup(t ? (const char *)t : "");
}

/* ---- paths and names ------------------------------------------------------- */

static char *mdir(const struct mstore *s, const char *dir)
{
	return dir[0] ? xasprintf("%s/%s", s->root, dir) : xstrdup(s->root);
}

static size_t base_len(const char *name)
{
	size_t i = 0;
	while (name[i] && name[i] != ',' && name[i] != ':')
		i++;
	return i;
}

/* Length of the part before the Maildir info (":2,..."). */
static size_t fields_len(const char *name)
{
	const char *c = strchr(name, ':');
	return c ? (size_t)(c - name) : strlen(name);
}

static const struct {
	char c;
	unsigned f;
} info_map[] = {
	{ 'D', MBOX_DRAFT }, { 'F', MBOX_FLAGGED }, { 'R', MBOX_ANSWERED },
	{ 'S', MBOX_SEEN },  { 'T', MBOX_DELETED },
};

static unsigned info_flags(const char *name)
{
	const char *c = strstr(name, ":2,");
	unsigned f = 0;
	if (!c)
		return 0;
	for (c += 3; *c; c++)
		for (size_t i = 0; i < sizeof info_map / sizeof info_map[0]; i++)
			if (*c == info_map[i].c)
				f |= info_map[i].f;
	return f;
}

static int cmp_char(const void *a, const void *b)
{
	return *(const char *)a - *(const char *)b;
}

/* The file name for `name` carrying flags: its fields, ":2,", the letters
 * for flags plus any other letters it had (e.g. P), ASCII-sorted (Maildir
 * info flags must be in ASCII order). */
static char *name_with_flags(const char *name, unsigned flags)
{
	char letters[64];
	size_t n = 0;
	const char *c = strstr(name, ":2,");
	if (c) {
		for (c += 3; *c && n < 32; c++) {
			bool ours = false;
			for (size_t i = 0; i < sizeof info_map / sizeof info_map[0]; i++)
				ours |= *c == info_map[i].c;
			if (!ours && memchr(letters, *c, n) == NULL && *c > 0x20 && *c < 0x7f)
				letters[n++] = *c;
		}
	}
	for (size_t i = 0; i < sizeof info_map / sizeof info_map[0]; i++)
		if (flags & info_map[i].f)
			letters[n++] = info_map[i].c;
	qsort(letters, n, 1, cmp_char);
	letters[n] = '\0';
	return xasprintf("%.*s:2,%s", (int)fields_len(name), name, letters);
}

static char *new_base(struct mstore *s)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return xasprintf("%lld.M%06ldP%ldQ%uR%s.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
			 (long)getpid(), s->seq++, s->rand, s->host);
}

static char *sanitize_host(void)
{
	char h[256];
	if (gethostname(h, sizeof h) != 0 || h[0] == '\0')
		snprintf(h, sizeof h, "localhost");
	h[sizeof h - 1] = '\0';
	struct buf o = BUF_INIT(0);
	for (size_t i = 0; i < 64 && h[i]; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '/' || c == ':' || c == ',' || c == '\\' || c <= 0x20 || c >= 0x7f)
			buf_xprintf(&o, "\\%03o", c);
		else
			buf_xappend(&o, &c, 1);
	}
	char *r = xstrdup(buf_cstr(&o));
	buf_deinit(&o);
	return r;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	if (remove(p) != 0 && errno != ENOENT)
		log_warn("remove(%s)", p);
	return 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates a Maildir (and, for folders, the maildirfolder marker). */
static int make_maildir(const char *path, bool folder, struct mbox_err *err)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	if (mkdir_p(path, 0700) != 0)
		return fail_errno(err, "mkdir", path);
	for (size_t i = 0; i < 3; i++) {
		char *p = xasprintf("%s/%s", path, sub[i]);
		int r = mkdir(p, 0700);
		if (r != 0 && errno != EEXIST) {
			fail_errno(err, "mkdir", p);
			free(p);
			return -1;
		}
		free(p);
	}
	if (folder) {
		char *p = xasprintf("%s/maildirfolder", path);
		int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			fail_errno(err, "open", p);
			free(p);
			return -1;
		}
		close(fd);
		free(p);
	}
	return 0;
}

/* Looks for a file with this base name in <dir>/cur and <dir>/new; returns
 * "cur/<name>" or "new/<name>" (malloc'd) or NULL. */
static char *locate(const char *dir, const char *base)
{
	static const char *const sub[] = { "cur", "new" };
	size_t bl = strlen(base);
	for (size_t i = 0; i < 2; i++) {
		char *p = xasprintf("%s/%s", dir, sub[i]);
		DIR *d = opendir(p);
		free(p);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (base_len(de->d_name) == bl && memcmp(de->d_name, base, bl) == 0) {
				char *r = xasprintf("%s/%s", sub[i], de->d_name);
				closedir(d);
				return r;
			}
		}
		closedir(d);
	}
	return NULL;
}

/* ---- mailbox rows ------------------------------------------------------------ */

static void mrow_free(struct mrow *r)
{
	free(r->name);
	free(r->dir);
	memset(r, 0, sizeof *r);
}

#define MROW_COLS                                                                                  \
	"id, name, dir, selectable, special, uidvalidity, uidnext, highestmodseq, recent_uid, "   \
	"mt_new, mt_cur"

static void mrow_read(sqlite3_stmt *st, struct mrow *r)
{
	r->id = sqlite3_column_int64(st, 0);
	r->name = col_str(st, 1);
	r->dir = col_str(st, 2);
	r->selectable = sqlite3_column_int(st, 3) != 0;
	r->special = sqlite3_column_int(st, 4);
	r->uidvalidity = (uint32_t)sqlite3_column_int64(st, 5);
	r->uidnext = (uint32_t)sqlite3_column_int64(st, 6);
	r->modseq = (uint64_t)sqlite3_column_int64(st, 7);
	r->recent_uid = (uint32_t)sqlite3_column_int64(st, 8);
	r->mt_new = sqlite3_column_int64(st, 9);
	r->mt_cur = sqlite3_column_int64(st, 10);
}

/* 0 found, 1 missing, -1 error. Looks up by name, or by id if name is NULL. */
static int mrow_load(struct mstore *s, const char *name, int64_t id, struct mrow *r,
		     struct mbox_err *err)
{
	sqlite3_stmt *st = prep(s,
				name ? "SELECT " MROW_COLS " FROM mailboxes WHERE name = ?"
				     : "SELECT " MROW_COLS " FROM mailboxes WHERE id = ?",
				err);
	if (!st)
		return -1;
	if (name)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		mrow_read(st, r);
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return 1;
	return db_fail(s, err, "load mailbox");
}

static int mrow_save(struct mstore *s, const struct mrow *r, struct mbox_err *err)
{
	sqlite3_stmt *st = prep(s,
				"UPDATE mailboxes SET uidnext = ?, highestmodseq = ?, recent_uid = ?, "
				"mt_new = ?, mt_cur = ? WHERE id = ?",
				err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, r->uidnext);
	sqlite3_bind_int64(st, 2, (int64_t)r->modseq);
	sqlite3_bind_int64(st, 3, r->recent_uid);
	sqlite3_bind_int64(st, 4, r->mt_new);
	sqlite3_bind_int64(st, 5, r->mt_cur);
	sqlite3_bind_int64(st, 6, r->id);
	return step_done(s, st, err);
}

/* A UIDVALIDITY never handed out before in this account (RFC 9051 2.3.1.1). */
static int next_uidvalidity(struct mstore *s, uint32_t *r, struct mbox_err *err)
{
	sqlite3_stmt *st = prep(s, "SELECT v FROM meta WHERE k = 'uidvalidity'", err);
	if (!st)
		return -1;
	int64_t v = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	int64_t now = time_unix();
	int64_t nv = v + 1 > now ? v + 1 : now;
	if (nv > UINT32_MAX)
		nv = v + 1 <= UINT32_MAX ? v + 1 : 1;
	st = prep(s, "INSERT OR REPLACE INTO meta(k, v) VALUES('uidvalidity', ?)", err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, nv);
	*r = (uint32_t)nv;
	return step_done(s, st, err);
}

static int mrow_insert(struct mstore *s, const char *name, const char *dir, bool selectable,
		       int special, struct mbox_err *err)
{
	uint32_t uv;
	if (next_uidvalidity(s, &uv, err) < 0)
		return -1;
	sqlite3_stmt *st = prep(s,
				"INSERT INTO mailboxes(name, dir, selectable, special, uidvalidity) "
				"VALUES(?, ?, ?, ?, ?)",
				err);
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, dir, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, selectable);
	sqlite3_bind_int(st, 4, special);
	sqlite3_bind_int64(st, 5, uv);
	return step_done(s, st, err);
}

/* Removes every message row (and cache row) of a mailbox. */
static int drop_messages(struct mstore *s, int64_t id, struct mbox_err *err)
{
	static const char *const sql[] = {
		"DELETE FROM cache WHERE id IN (SELECT id FROM messages WHERE mailbox = ?)",
		"DELETE FROM messages WHERE mailbox = ?",
		"DELETE FROM expunged WHERE mailbox = ?",
		"DELETE FROM kwnames WHERE mailbox = ?",
	};
	for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
		sqlite3_stmt *st = prep(s, sql[i], err);
		if (!st)
			return -1;
		sqlite3_bind_int64(st, 1, id);
		if (step_done(s, st, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- message rows ------------------------------------------------------------ */

struct newmsg {
	uint32_t uid;
	const char *base, *path;
	unsigned flags;
	const char *keywords;
	int64_t internaldate;
	int tz;
	uint64_t size, wsize, modseq;
};

static int msg_insert(struct mstore *s, int64_t mailbox, const struct newmsg *n, int64_t *id_r,
		      struct mbox_err *err)
{
	sqlite3_stmt *st = prep(s,
				"INSERT INTO messages(mailbox, uid, base, path, flags, keywords, "
				"internaldate, tz, size, wsize, modseq) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
				err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, mailbox);
	sqlite3_bind_int64(st, 2, n->uid);
	sqlite3_bind_text(st, 3, n->base, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, n->path, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, (int)n->flags);
	sqlite3_bind_text(st, 6, n->keywords ? n->keywords : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, n->internaldate);
	sqlite3_bind_int(st, 8, n->tz);
	sqlite3_bind_int64(st, 9, (int64_t)n->size);
	sqlite3_bind_int64(st, 10, (int64_t)n->wsize);
	sqlite3_bind_int64(st, 11, (int64_t)n->modseq);
	if (step_done(s, st, err) < 0)
		return -1;
	*id_r = sqlite3_last_insert_rowid(s->db);
	return 0;
}

struct parsed {
	struct buf env, body, bs, mime;
	uint64_t size, wsize;
};

static void parsed_init(struct parsed *p)
{
	buf_init(&p->env, CACHE_STR_MAX);
	buf_init(&p->body, CACHE_STR_MAX);
	buf_init(&p->bs, CACHE_STR_MAX);
	buf_init(&p->mime, CACHE_STR_MAX);
	p->size = p->wsize = 0;
}

static void parsed_deinit(struct parsed *p)
{
	buf_deinit(&p->env);
	buf_deinit(&p->body);
	buf_deinit(&p->bs);
	buf_deinit(&p->mime);
}

/* Fills the cache strings from a parsed message (consumes it). A string
 * over its cap is left out (NULL column): the engine then rebuilds it from
 * the blob or the file. */
static void parsed_fill(struct parsed *p, struct mime_message *m)
{
	p->size = m->size;
	p->wsize = m->wire_size;
	if (mime_imap_envelope(m, 0, &p->env) < 0)
		buf_clear(&p->env);
	if (mime_imap_bodystructure(m, 0, false, &p->body) < 0)
		buf_clear(&p->body);
	if (mime_imap_bodystructure(m, 0, true, &p->bs) < 0)
		buf_clear(&p->bs);
	if (mime_message_serialize(m, &p->mime) < 0)
		buf_clear(&p->mime);
	mime_message_free(&m);
}

static void bind_buf_text(sqlite3_stmt *st, int i, struct buf *b)
{
	if (b->len)
		sqlite3_bind_text(st, i, (const char *)b->data, (int)b->len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static int cache_insert(struct mstore *s, int64_t id, struct parsed *p, struct mbox_err *err)
{
	sqlite3_stmt *st = prep(
		s, "INSERT INTO cache(id, envelope, body, bodystructure, mime) VALUES(?,?,?,?,?)", err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	bind_buf_text(st, 2, &p->env);
	bind_buf_text(st, 3, &p->body);
	bind_buf_text(st, 4, &p->bs);
	if (p->mime.len)
		sqlite3_bind_blob(st, 5, p->mime.data, (int)p->mime.len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	return step_done(s, st, err);
}

static int msg_delete(struct mstore *s, int64_t mailbox, int64_t id, uint32_t uid, uint64_t modseq,
		      struct mbox_err *err)
{
	sqlite3_stmt *st = prep(s, "DELETE FROM cache WHERE id = ?", err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	if (step_done(s, st, err) < 0)
		return -1;
	if (!(st = prep(s, "DELETE FROM messages WHERE id = ?", err)))
		return -1;
	sqlite3_bind_int64(st, 1, id);
	if (step_done(s, st, err) < 0)
		return -1;
	if (!(st = prep(s, "INSERT INTO expunged(mailbox, uid, modseq) VALUES(?,?,?)", err)))
		return -1;
	sqlite3_bind_int64(st, 1, mailbox);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_int64(st, 3, (int64_t)modseq);
	return step_done(s, st, err);
}

static int kw_record(struct mstore *s, int64_t mailbox, const char *kws, struct mbox_err *err)
{
	if (!kws || !*kws)
		return 0;
	sqlite3_stmt *st = prep(s, "INSERT OR IGNORE INTO kwnames(mailbox, name) VALUES(?, ?)", err);
	if (!st)
		return -1;
	const char *p = kws;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		sqlite3_bind_int64(st, 1, mailbox);
		sqlite3_bind_text(st, 2, p, (int)n, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqlite3_finalize(st);
			return db_fail(s, err, "kwnames");
		}
		sqlite3_reset(st);
		p += n;
		while (*p == ' ')
			p++;
	}
	sqlite3_finalize(st);
	return 0;
}

/* ---- keywords ------------------------------------------------------------------ */

/* A keyword list as a space-separated string; lookups are case-insensitive
 * (RFC 9051 2.3.2: flag names are not case-sensitive). */
static bool kw_has(const char *list, const char *kw)
{
	size_t kl = strlen(kw);
	const char *p = list;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == kl && ascii_strncasecmp(p, kw, n) == 0)
			return true;
		p += n;
		while (*p == ' ')
			p++;
	}
	return false;
}

static size_t kw_count(const char *list)
{
	size_t c = 0;
	for (const char *p = list; *p; p++)
		if (*p != ' ' && (p == list || p[-1] == ' '))
			c++;
	return c;
}

static int kw_check(const char *const *kw, size_t n, struct mbox_err *err)
{
	if (n > MBOX_KEYWORDS_MAX)
		return fail(err, MBOX_E_LIMIT, "too many keywords");
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(kw[i]);
		if (l == 0 || l > MBOX_KEYWORD_MAX || kw[i][0] == '\\')
			return fail(err, MBOX_E_CANNOT, "bad keyword");
		for (size_t j = 0; j < l; j++) {
			unsigned char c = (unsigned char)kw[i][j];
			/* RFC 9051 9: atom-char minus resp-specials; no wildcards. */
			if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c))
				return fail(err, MBOX_E_CANNOT, "bad keyword");
		}
	}
	return 0;
}

static char *kw_apply(const char *cur, enum mbox_flag_op op, const char *const *kw, size_t n)
{
	struct buf o = BUF_INIT(0);
	const char *p = op == MBOX_OP_REPLACE ? "" : cur;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		bool drop = false;
		if (op == MBOX_OP_REMOVE)
			for (size_t i = 0; i < n && !drop; i++)
				drop = strlen(kw[i]) == l && ascii_strncasecmp(kw[i], p, l) == 0;
		if (!drop) {
			if (o.len)
				buf_xappend(&o, " ", 1);
			buf_xappend(&o, p, l);
		}
		p += l;
		while (*p == ' ')
			p++;
	}
	if (op != MBOX_OP_REMOVE) {
		for (size_t i = 0; i < n; i++) {
			if (kw_has(buf_cstr(&o), kw[i]))
				continue;
			if (o.len)
				buf_xappend(&o, " ", 1);
			buf_xappend(&o, kw[i], strlen(kw[i]));
		}
	}
	char *r = xstrdup(buf_cstr(&o));
	buf_deinit(&o);
	return r;
}

/* ---- scan: the index follows the disk -------------------------------------------- */

struct dent {
	char *name; /* file name */
	uint8_t sub; /* 0 new, 1 cur */
	size_t blen;
	bool timed, dup;
	uint64_t sec, usec;
};

struct drow {
	int64_t id;
	uint32_t uid;
	char *base, *path;
	unsigned flags;
	uint64_t modseq;
};

static int cmp_dent_base(const void *a, const void *b)
{
	const struct dent *x = a, *y = b;
	size_t n = x->blen < y->blen ? x->blen : y->blen;
	int c = memcmp(x->name, y->name, n);
	if (c)
		return c;
	if (x->blen != y->blen)
		return x->blen < y->blen ? -1 : 1;
	return (int)y->sub - (int)x->sub; /* cur/ first */
}

static int cmp_drow_base(const void *a, const void *b)
{
	return strcmp(((const struct drow *)a)->base, ((const struct drow *)b)->base);
}

static int cmp_base_key(const struct dent *d, const char *base)
{
	size_t bl = strlen(base);
	size_t n = d->blen < bl ? d->blen : bl;
	int c = memcmp(d->name, base, n);
	if (c)
		return c;
	return d->blen == bl ? 0 : (d->blen < bl ? -1 : 1);
}

static void parse_time(struct dent *d)
{
	const char *b = d->name;
	size_t i = 0;
	uint64_t v = 0;
	while (i < d->blen && b[i] >= '0' && b[i] <= '9' && i < 19)
		v = v * 10 + (uint64_t)(b[i++] - '0');
	d->timed = i > 0 && i < d->blen && b[i] == '.';
	d->sec = v;
	d->usec = 0;
	if (d->timed && i + 1 < d->blen && b[i + 1] == 'M') {
		size_t j = i + 2;
		while (j < d->blen && b[j] >= '0' && b[j] <= '9' && j < i + 12)
			d->usec = d->usec * 10 + (uint64_t)(b[j++] - '0');
	}
}

/* Delivery order: "<sec>.M<usec>" names by time, others after, then by name. */
static int cmp_dent_order(const void *a, const void *b)
{
	const struct dent *x = *(const struct dent *const *)a, *y = *(const struct dent *const *)b;
	if (x->timed != y->timed)
		return x->timed ? -1 : 1;
	if (x->timed && (x->sec != y->sec || x->usec != y->usec))
		return (x->sec < y->sec || (x->sec == y->sec && x->usec < y->usec)) ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int read_sub(const char *dir, uint8_t sub, struct dent **v, size_t *n, size_t *cap,
		    struct mbox_err *err)
{
	char *p = xasprintf("%s/%s", dir, sub ? "cur" : "new");
	DIR *d = opendir(p);
	if (!d) {
		if (errno == ENOENT) {
			/* Recreate a missing new/ or cur/ (another tool removed it). */
			int r = mkdir(p, 0700);
			free(p);
			return r == 0 || errno == EEXIST ? 0 : fail_errno(err, "mkdir", dir);
		}
		fail_errno(err, "opendir", p);
		free(p);
		return -1;
	}
	free(p);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (*n == *cap) {
			*cap = *cap ? *cap * 2 : 256;
			*v = xrealloc(*v, *cap * sizeof **v);
		}
		struct dent *e = &(*v)[(*n)++];
		e->name = xstrdup(de->d_name);
		e->sub = sub;
		e->blen = base_len(e->name);
		e->dup = false;
		parse_time(e);
	}
	closedir(d);
	return 0;
}

static int64_t mtime_ns(const char *dir, const char *sub)
{
	char *p = xasprintf("%s/%s", dir, sub);
	struct stat st;
	int r = stat(p, &st);
	free(p);
	if (r != 0)
		return -1;
	return (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Whether the directories may have changed since the last full scan. */
static bool scan_needed(const struct mstore *s, const struct mrow *r)
{
	if (r->mt_new == 0 || r->mt_cur == 0)
		return true;
	char *dir = mdir(s, r->dir);
	bool need = mtime_ns(dir, "new") != r->mt_new || mtime_ns(dir, "cur") != r->mt_cur;
	free(dir);
	return need;
}

/* Reads and parses one file (the whole file is mapped). */
static int parse_file(int fd, uint64_t size, struct parsed *p)
{
	struct mime_message *m;
	if (size == 0) {
		m = mime_parse("", 0, NULL);
	} else {
		void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED)
			return -1;
		m = mime_parse(map, size, NULL);
		munmap(map, size);
	}
	parsed_fill(p, m);
	return 0;
}

/* Gives a duplicate file a fresh base name (same directory, same fields). */
static int rebase(struct mstore *s, const char *dir, struct dent *d)
{
	char *b = new_base(s);
	char *nn = xasprintf("%s%s", b, d->name + d->blen);
	const char *sub = d->sub ? "cur" : "new";
	char *from = xasprintf("%s/%s/%s", dir, sub, d->name);
	char *to = xasprintf("%s/%s/%s", dir, sub, nn);
	int r = rename(from, to);
	if (r == 0) {
		free(d->name);
		d->name = nn;
		d->blen = strlen(b);
		parse_time(d);
	} else {
		log_warn("rename(%s, %s)", from, to);
		free(nn);
	}
	free(from);
	free(to);
	free(b);
	return r;
}

/* Adopts one file without a row. *r is updated (uidnext, modseq). */
static int adopt(struct mstore *s, struct mrow *r, const char *dir, struct dent *d,
		 struct mbox_err *err)
{
	char *src = xasprintf("%s/%s/%s", dir, d->sub ? "cur" : "new", d->name);
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		free(src);
		if (e == ENOENT)
			return 0; /* gone meanwhile */
		errno = e;
		return fail_errno(err, "open", d->name);
	}
	struct stat st;
	struct parsed p;
	parsed_init(&p);
	if (fstat(fd, &st) != 0 || parse_file(fd, (uint64_t)st.st_size, &p) < 0) {
		fail_errno(err, "read", src);
		close(fd);
		parsed_deinit(&p);
		free(src);
		return -1;
	}
	close(fd);
	unsigned flags = d->sub ? info_flags(d->name) : 0;
	char *rel;
	if (d->sub == 0) {
		/* new/ -> cur/ (RFC-less Maildir convention: seen by a client). */
		char *nn = name_with_flags(d->name, 0);
		char *dst = xasprintf("%s/cur/%s", dir, nn);
		crash_point();
		if (rename(src, dst) != 0) {
			int e = errno;
			free(dst);
			free(nn);
			free(src);
			parsed_deinit(&p);
			if (e == ENOENT)
				return 0;
			errno = e;
			return fail_errno(err, "rename", d->name);
		}
		crash_point();
		free(dst);
		rel = xasprintf("cur/%s", nn);
		free(nn);
	} else {
		rel = xasprintf("cur/%s", d->name);
	}
	free(src);
	char *base = xstrndup(d->name, d->blen);
	struct newmsg n = {
		.uid = r->uidnext,
		.base = base,
		.path = rel,
		.flags = flags,
		.internaldate = (int64_t)st.st_mtim.tv_sec,
		.size = (uint64_t)st.st_size,
		.wsize = p.wsize,
		.modseq = r->modseq + 1,
	};
	int64_t id;
	int ret = -1;
	if (msg_insert(s, r->id, &n, &id, err) == 0 && cache_insert(s, id, &p, err) == 0) {
		r->uidnext++;
		r->modseq++;
		ret = 0;
	}
	free(base);
	free(rel);
	parsed_deinit(&p);
	return ret;
}

/* Brings the index of one mailbox up to date with its directories. Inside a
 * write transaction. force: scan even if the mtimes say nothing changed. */
static int scan(struct mstore *s, struct mrow *r, bool force, struct mbox_err *err)
{
	if (!r->selectable)
		return 0;
	if (!force && !scan_needed(s, r))
		return 0;
	char *dir = mdir(s, r->dir);
	int64_t mt_new = mtime_ns(dir, "new"), mt_cur = mtime_ns(dir, "cur");
	uint64_t before_modseq = r->modseq;
	struct dent *dv = NULL;
	size_t dn = 0, dcap = 0;
	struct drow *rv = NULL;
	size_t rn = 0, rcap = 0;
	struct dent **adoptv = NULL;
	size_t an = 0;
	int ret = -1;
	if (read_sub(dir, 1, &dv, &dn, &dcap, err) < 0 || read_sub(dir, 0, &dv, &dn, &dcap, err) < 0)
		goto out;
	if (dn)
		qsort(dv, dn, sizeof *dv, cmp_dent_base);

	sqlite3_stmt *st = prep(s, "SELECT id, uid, base, path, flags, modseq FROM messages WHERE mailbox = ?",
				err);
	if (!st)
		goto out;
	sqlite3_bind_int64(st, 1, r->id);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (rn == rcap) {
			rcap = rcap ? rcap * 2 : 256;
			rv = xrealloc(rv, rcap * sizeof *rv);
		}
		struct drow *x = &rv[rn++];
		x->id = sqlite3_column_int64(st, 0);
		x->uid = (uint32_t)sqlite3_column_int64(st, 1);
		x->base = col_str(st, 2);
		x->path = col_str(st, 3);
		x->flags = (unsigned)sqlite3_column_int(st, 4);
		x->modseq = (uint64_t)sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		db_fail(s, err, "scan rows");
		goto out;
	}
	if (rn)
		qsort(rv, rn, sizeof *rv, cmp_drow_base);

	/* A second file with the same base name (a copy some tool made) is a
	 * message of its own: it gets a fresh base name and is adopted. */
	for (size_t k = 1; k < dn; k++)
		dv[k].dup = dv[k - 1].blen == dv[k].blen &&
			    memcmp(dv[k - 1].name, dv[k].name, dv[k].blen) == 0;
	/* Merge the two sorted lists by base name. */
	adoptv = xcalloc(dn + 1, sizeof *adoptv);
	size_t i = 0, j = 0;
	while (i < dn || j < rn) {
		if (i < dn && dv[i].dup) {
			if (rebase(s, dir, &dv[i]) == 0)
				adoptv[an++] = &dv[i];
			i++;
			continue;
		}
		int c = i == dn ? 1 : j == rn ? -1 : cmp_base_key(&dv[i], rv[j].base);
		if (c < 0) {
			/* A file without a row. */
			adoptv[an++] = &dv[i];
			i++;
		} else if (c > 0) {
			/* A row without a file: expunged by another program. */
			if (msg_delete(s, r->id, rv[j].id, rv[j].uid, ++r->modseq, err) < 0)
				goto out;
			j++;
		} else {
			struct dent *d = &dv[i];
			struct drow *x = &rv[j];
			char *rel = xasprintf("%s/%s", d->sub ? "cur" : "new", d->name);
			int urc = 0;
			if (strcmp(rel, x->path) != 0) {
				/* Renamed outside: take the standard flags from the name
				 * (a file in new/ has none; keep the row's then). */
				unsigned nf = d->sub ? info_flags(d->name) : x->flags;
				sqlite3_stmt *u = prep(
					s, "UPDATE messages SET path = ?, flags = ?, modseq = ? WHERE id = ?",
					err);
				if (!u) {
					urc = -1;
				} else {
					sqlite3_bind_text(u, 1, rel, -1, SQLITE_STATIC);
					sqlite3_bind_int(u, 2, (int)nf);
					if (nf != x->flags)
						sqlite3_bind_int64(u, 3, (int64_t)++r->modseq);
					else
						sqlite3_bind_int64(u, 3, (int64_t)x->modseq);
					sqlite3_bind_int64(u, 4, x->id);
					urc = step_done(s, u, err);
				}
			}
			free(rel);
			if (urc < 0)
				goto out;
			i++;
			j++;
		}
	}
	if (an)
		qsort(adoptv, an, sizeof *adoptv, cmp_dent_order);
	for (size_t k = 0; k < an; k++)
		if (adopt(s, r, dir, adoptv[k], err) < 0)
			goto out;
	/* Remember the mtimes seen before reading, unless too fresh to trust. */
	int64_t limit = now_ns() - MTIME_SETTLE_NS;
	struct mrow before = *r;
	r->mt_new = mt_new > 0 && mt_new < limit ? mt_new : 0;
	r->mt_cur = mt_cur > 0 && mt_cur < limit ? mt_cur : 0;
	/* Nothing to write when nothing changed (keeps idle pollers quiet). */
	if (an == 0 && r->modseq == before_modseq && r->mt_new == before.mt_new &&
	    r->mt_cur == before.mt_cur)
		ret = 0;
	else
		ret = mrow_save(s, r, err);
out:
	for (size_t k = 0; k < dn; k++)
		free(dv[k].name);
	free(dv);
	for (size_t k = 0; k < rn; k++) {
		free(rv[k].base);
		free(rv[k].path);
	}
	free(rv);
	free(adoptv);
	free(dir);
	return ret;
}

/* ---- account ------------------------------------------------------------------- */

static const char *const schema[] = {
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER)",
	"CREATE TABLE IF NOT EXISTS mailboxes(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
	"dir TEXT NOT NULL, selectable INTEGER NOT NULL DEFAULT 1, special INTEGER NOT NULL "
	"DEFAULT 0, uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1, "
	"highestmodseq INTEGER NOT NULL DEFAULT 1, recent_uid INTEGER NOT NULL DEFAULT 0, "
	"mt_new INTEGER NOT NULL DEFAULT 0, mt_cur INTEGER NOT NULL DEFAULT 0)",
	"CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY)",
	"CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, mailbox INTEGER NOT NULL, "
	"uid INTEGER NOT NULL, base TEXT NOT NULL, path TEXT NOT NULL, flags INTEGER NOT NULL, "
	"keywords TEXT NOT NULL DEFAULT '', internaldate INTEGER NOT NULL, tz INTEGER NOT NULL "
	"DEFAULT 0, size INTEGER NOT NULL, wsize INTEGER NOT NULL, modseq INTEGER NOT NULL)",
	"CREATE UNIQUE INDEX IF NOT EXISTS messages_uid ON messages(mailbox, uid)",
	/* Covers SELECT's UID list, STATUS counts and the first unseen. */
	"CREATE INDEX IF NOT EXISTS messages_cover ON messages(mailbox, uid, flags, wsize)",
	"CREATE UNIQUE INDEX IF NOT EXISTS messages_base ON messages(mailbox, base)",
	"CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox, modseq)",
	"CREATE TABLE IF NOT EXISTS cache(id INTEGER PRIMARY KEY, envelope TEXT, body TEXT, "
	"bodystructure TEXT, mime BLOB)",
	"CREATE TABLE IF NOT EXISTS expunged(mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, "
	"modseq INTEGER NOT NULL)",
	"CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox, modseq)",
	"CREATE TABLE IF NOT EXISTS kwnames(mailbox INTEGER NOT NULL, name TEXT NOT NULL, "
	"PRIMARY KEY(mailbox, name))",
};

static const struct {
	const char *name;
	enum mbox_special sp;
} specials[] = {
	{ "Drafts", MBOX_SPECIAL_DRAFTS }, { "Sent", MBOX_SPECIAL_SENT },
	{ "Trash", MBOX_SPECIAL_TRASH },   { "Junk", MBOX_SPECIAL_JUNK },
	{ "Archive", MBOX_SPECIAL_ARCHIVE },
};

static int subscribe_row(struct mstore *s, const char *name, bool on, struct mbox_err *err)
{
	sqlite3_stmt *st = prep(s,
				on ? "INSERT OR IGNORE INTO subscriptions(name) VALUES(?)"
				   : "DELETE FROM subscriptions WHERE name = ?",
				err);
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	return step_done(s, st, err);
}

static int create_one(struct mstore *s, const char *name, int special, struct mbox_err *err);

/* First open: schema, INBOX and the RFC 6154 special-use mailboxes. */
static int init_db(struct mstore *s, struct mbox_err *err)
{
	for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
		if (exec(s, schema[i], err) < 0)
			return -1;
	if (mrow_insert(s, "INBOX", "", true, 0, err) < 0 || subscribe_row(s, "INBOX", true, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
		if (create_one(s, specials[i].name, specials[i].sp, err) < 0 ||
		    subscribe_row(s, specials[i].name, true, err) < 0)
			return -1;
	}
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
	return exec(s, sql, err);
}

/* Makes the mailbox rows follow the folders on disk (folders made by other
 * tools, folders lost in a crash during RENAME/DELETE), sweeps deleted trees. */
/* APPEND writes into the folder's tmp/ (mstore_append_begin) and renames
 * into cur/ at the commit: a kill in between leaves the file there, and
 * the server's start-up sweep only covers the account's own tmp/ (where
 * SMTP delivers). Removes a folder's tmp/ files older than 36 hours by
 * ctime, not mtime: a finished message's mtime is its INTERNALDATE, often
 * years old, while a live MULTIAPPEND's files are never that old (the
 * session times out first). Failures only leave garbage. */
static void sweep_tmp(const char *folder)
{
	char *path = xasprintf("%s/tmp", folder);
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!dir) {
		if (dfd >= 0)
			close(dfd);
		free(path);
		return;
	}
	time_t cutoff = time(NULL) - (time_t)tmp_max_age;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		struct stat st;
		if (e->d_name[0] == '.' ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_ctime >= cutoff)
			continue;
		if (unlinkat(dfd, e->d_name, 0) == 0)
			log_info("mailbox: removed stale %s/%s", path, e->d_name);
	}
	closedir(dir);
	free(path);
}

static int reconcile(struct mstore *s, struct mbox_err *err)
{
	DIR *d = opendir(s->root);
	if (!d)
		return fail_errno(err, "opendir", s->root);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "tern-trash-", 11) == 0) {
			char *p = xasprintf("%s/%s", s->root, de->d_name);
			rm_tree(p);
			free(p);
			continue;
		}
		if (de->d_name[0] != '.' || !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *p = xasprintf("%s/%s/cur", s->root, de->d_name);
		struct stat st;
		bool ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
		free(p);
		char *name = ok ? mbox_dir_to_name(de->d_name) : NULL;
		if (!name)
			continue;
		/* Complete a folder another tool made (tmp/, new/, maildirfolder). */
		p = xasprintf("%s/%s", s->root, de->d_name);
		if (make_maildir(p, true, err) < 0) {
			free(p);
			free(name);
			continue;
		}
		sweep_tmp(p);
		free(p);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n++] = name;
	}
	closedir(d);
	int ret = -1;
	for (size_t i = 0; i < n; i++) {
		struct mrow r;
		int f = mrow_load(s, names[i], 0, &r, err);
		if (f < 0)
			goto out;
		if (f == 1) {
			char *dir = mbox_name_to_dir(names[i]);
			int x = mrow_insert(s, names[i], dir, true, 0, err);
			free(dir);
			if (x < 0)
				goto out;
		} else {
			if (!r.selectable) {
				/* A folder for a \Noselect name: it is a mailbox again,
				 * with a new UIDVALIDITY. */
				uint32_t uv;
				sqlite3_stmt *st;
				if (next_uidvalidity(s, &uv, err) < 0 ||
				    !(st = prep(s,
						"UPDATE mailboxes SET selectable = 1, uidvalidity = ?, "
						"uidnext = 1, recent_uid = 0, mt_new = 0, mt_cur = 0 "
						"WHERE id = ?",
						err))) {
					mrow_free(&r);
					goto out;
				}
				sqlite3_bind_int64(st, 1, uv);
				sqlite3_bind_int64(st, 2, r.id);
				if (step_done(s, st, err) < 0) {
					mrow_free(&r);
					goto out;
				}
			}
			mrow_free(&r);
		}
	}
	/* Selectable rows whose folder is gone. */
	sqlite3_stmt *st = prep(s, "SELECT id, dir FROM mailboxes WHERE selectable = 1 AND dir <> ''",
				err);
	if (!st)
		goto out;
	int64_t *gone = NULL;
	size_t ng = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		char *p = xasprintf("%s/%s/cur", s->root, (const char *)sqlite3_column_text(st, 1));
		struct stat sb;
		if (stat(p, &sb) != 0) {
			gone = xrealloc(gone, (ng + 1) * sizeof *gone);
			gone[ng++] = sqlite3_column_int64(st, 0);
		}
		free(p);
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < ng; i++) {
		if (drop_messages(s, gone[i], err) < 0 ||
		    !(st = prep(s, "UPDATE mailboxes SET selectable = 0 WHERE id = ?", err))) {
			free(gone);
			goto out;
		}
		sqlite3_bind_int64(st, 1, gone[i]);
		if (step_done(s, st, err) < 0) {
			free(gone);
			goto out;
		}
	}
	free(gone);
	/* \Noselect rows without inferiors have no reason to exist. */
	ret = exec(s,
		   "DELETE FROM mailboxes WHERE selectable = 0 AND NOT EXISTS (SELECT 1 FROM "
		   "mailboxes c WHERE substr(c.name, 1, length(mailboxes.name) + 1) = "
		   "mailboxes.name || '/')",
		   err);
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ret;
}

int mstore_open(const char *root, struct mstore **s_r, struct mbox_err *err)
{
	*s_r = NULL;
	if (make_maildir(root, false, err) < 0)
		return -1;
	struct mstore *s = xcalloc(1, sizeof *s);
	s->root = xstrdup(root);
	s->host = sanitize_host();
	random_id(s->rand);
	if (db_open(s, err) < 0 || tx_begin(s, err) < 0) {
		mstore_close(&s);
		return -1;
	}
	sqlite3_stmt *st = prep(s, "PRAGMA user_version", err);
	int version = -1;
	if (st && sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	int r = -1;
	if (version == 0)
		r = init_db(s, err);
	else if (version == SCHEMA_VERSION)
		r = 0;
	else
		fail(err, MBOX_E_SERVERBUG, "%s: unknown index schema version %d", root, version);
	if (r == 0)
		r = reconcile(s, err);
	if (r < 0 || tx_commit(s, err) < 0) {
		tx_rollback(s);
		mstore_close(&s);
		return -1;
	}
	*s_r = s;
	return 0;
}

void mstore_suspend(struct mstore *s)
{
	ASSERT(s->db == NULL || sqlite3_get_autocommit(s->db));
	meta_cache_drop(s);
	sqlite3_close(s->db);
	s->db = NULL;
}

void mstore_close(struct mstore **sp)
{
	struct mstore *s = *sp;
	if (!s)
		return;
	meta_cache_drop(s);
	sqlite3_close(s->db);
	free(s->root);
	free(s->host);
	free(s);
	*sp = NULL;
}

/* ---- LIST ---------------------------------------------------------------------- */

/* Sort order in which children follow their parent directly: "/" sorts
 * lowest, INBOX first. */
static int name_cmp(const char *a, const char *b)
{
	bool ia = strcmp(a, "INBOX") == 0 || strncmp(a, "INBOX/", 6) == 0;
	bool ib = strcmp(b, "INBOX") == 0 || strncmp(b, "INBOX/", 6) == 0;
	if (ia != ib)
		return ia ? -1 : 1;
	for (;; a++, b++) {
		unsigned ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca == '/')
			ca = 1;
		if (cb == '/')
			cb = 1;
		if (ca != cb || ca == 0)
			return (int)ca - (int)cb;
	}
}

static int cmp_info(const void *a, const void *b)
{
	return name_cmp(((const struct mbox_info *)a)->name, ((const struct mbox_info *)b)->name);
}

static struct mbox_info *info_find(struct mbox_info *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

int mstore_list(struct mstore *s, struct mbox_info **v_r, size_t *n_r, struct mbox_err *err)
{
	*v_r = NULL;
	*n_r = 0;
	struct mbox_info *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st = prep(s,
				"SELECT name, selectable, special, 0 FROM mailboxes UNION ALL "
				"SELECT name, 0, 0, 1 FROM subscriptions",
				err);
	if (!st)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		bool sub = sqlite3_column_int(st, 3) != 0;
		struct mbox_info *e = sub ? info_find(v, n, name) : NULL;
		if (sub && e) {
			e->attrs |= MBOX_ATTR_SUBSCRIBED;
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof *v);
		}
		e = &v[n++];
		e->name = xstrdup(name);
		e->special = (enum mbox_special)sqlite3_column_int(st, 2);
		e->attrs = sub ? (MBOX_ATTR_SUBSCRIBED | MBOX_ATTR_NONEXISTENT | MBOX_ATTR_NOSELECT)
			       : sqlite3_column_int(st, 1) ? 0 : MBOX_ATTR_NOSELECT;
	}
	sqlite3_finalize(st);
	/* Implied superiors of every existing mailbox are \Noselect. */
	for (size_t i = 0; i < n; i++) {
		if (v[i].attrs & MBOX_ATTR_NONEXISTENT)
			continue;
		char *p = xstrdup(v[i].name);
		char *slash;
		while ((slash = strrchr(p, '/')) != NULL) {
			*slash = '\0';
			struct mbox_info *e = info_find(v, n, p);
			if (e && !(e->attrs & MBOX_ATTR_NONEXISTENT))
				break;
			if (e) {
				e->attrs &= ~(unsigned)MBOX_ATTR_NONEXISTENT;
				continue;
			}
			if (n == cap) {
				cap = cap * 2;
				v = xrealloc(v, cap * sizeof *v);
			}
			v[n].name = xstrdup(p);
			v[n].attrs = MBOX_ATTR_NOSELECT;
			v[n].special = MBOX_SPECIAL_NONE;
			n++;
		}
		free(p);
	}
	if (n)
		qsort(v, n, sizeof *v, cmp_info);
	for (size_t i = 0; i < n; i++) {
		if (v[i].attrs & MBOX_ATTR_NONEXISTENT)
			continue;
		size_t l = strlen(v[i].name);
		bool kids = false;
		for (size_t j = i + 1; j < n && !kids; j++) {
			if (strncmp(v[j].name, v[i].name, l) != 0 || v[j].name[l] != '/')
				break;
			kids = !(v[j].attrs & MBOX_ATTR_NONEXISTENT);
		}
		v[i].attrs |= kids ? MBOX_ATTR_HASCHILDREN : MBOX_ATTR_HASNOCHILDREN;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

void mbox_info_free(struct mbox_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* ---- CREATE / DELETE / RENAME / SUBSCRIBE ------------------------------------------ */

/* The whole hierarchy is one folder name on disk (Maildir++), which must fit
 * in one path component (NAME_MAX 255 on Linux file systems). */
#define DIR_NAME_MAX 255

static int canon(const char *name, char **c_r, struct mbox_err *err)
{
	*c_r = mbox_name_canon(name, strlen(name));
	if (!*c_r)
		return fail(err, MBOX_E_CANNOT, "invalid mailbox name");
	char *d = mbox_name_to_dir(*c_r);
	size_t dl = strlen(d);
	free(d);
	if (dl > DIR_NAME_MAX) {
		free(*c_r);
		*c_r = NULL;
		return fail(err, MBOX_E_CANNOT, "mailbox name too long");
	}
	return 0;
}

/* Creates one mailbox (its superiors must be handled by the caller). Inside
 * a transaction. The folder is made first: a crash leaves a folder without a
 * row, which reconcile() adopts. */
static int create_one(struct mstore *s, const char *name, int special, struct mbox_err *err)
{
	struct mrow r;
	int f = mrow_load(s, name, 0, &r, err);
	if (f < 0)
		return -1;
	if (f == 0 && r.selectable) {
		mrow_free(&r);
		return fail(err, MBOX_E_ALREADYEXISTS, "mailbox exists");
	}
	char *dir = mbox_name_to_dir(name);
	char *path = mdir(s, dir);
	int ret = make_maildir(path, true, err);
	free(path);
	if (ret == 0) {
		if (f == 0) {
			uint32_t uv;
			sqlite3_stmt *st;
			ret = -1;
			if (next_uidvalidity(s, &uv, err) == 0 &&
			    (st = prep(s,
				       "UPDATE mailboxes SET selectable = 1, uidvalidity = ?, "
				       "uidnext = 1, recent_uid = 0, mt_new = 0, mt_cur = 0, "
				       "special = ? WHERE id = ?",
				       err))) {
				sqlite3_bind_int64(st, 1, uv);
				sqlite3_bind_int(st, 2, special);
				sqlite3_bind_int64(st, 3, r.id);
				ret = step_done(s, st, err);
			}
		} else {
			ret = mrow_insert(s, name, dir, true, special, err);
		}
	}
	if (f == 0)
		mrow_free(&r);
	free(dir);
	return ret;
}

/* Creates the missing superiors of name. */
static int create_parents(struct mstore *s, const char *name, struct mbox_err *err)
{
	char *p = xstrdup(name);
	int ret = 0;
	for (char *slash = strchr(p, '/'); slash && ret == 0; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		struct mrow r;
		int f = mrow_load(s, p, 0, &r, err);
		bool selectable = false;
		if (f < 0) {
			ret = -1;
		} else if (f == 0) {
			selectable = r.selectable; /* mrow_free clears r */
			mrow_free(&r);
		}
		if (f == 1 || (f == 0 && !selectable))
			ret = create_one(s, p, 0, err);
		*slash = '/';
	}
	free(p);
	return ret;
}

int mstore_create(struct mstore *s, const char *name, enum mbox_special sp, struct mbox_err *err)
{
	char *c;
	if (canon(name, &c, err) < 0)
		return -1;
	if (tx_begin(s, err) < 0) {
		free(c);
		return -1;
	}
	int r = create_parents(s, c, err);
	if (r == 0)
		r = create_one(s, c, (int)sp, err);
	if (r == 0)
		r = tx_commit(s, err);
	else
		tx_rollback(s);
	free(c);
	return r;
}

static bool has_children(struct mstore *s, const char *name)
{
	sqlite3_stmt *st = prep(s,
				"SELECT 1 FROM mailboxes WHERE substr(name, 1, length(?1) + 1) = ?1 || '/' "
				"LIMIT 1",
				NULL);
	if (!st)
		return true;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	bool r = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return r;
}

/* Moves a folder out of the way (atomic), to be removed after the commit. */
static char *trash_folder(struct mstore *s, const char *dir, struct mbox_err *err)
{
	char id[17];
	random_id(id);
	char *from = mdir(s, dir);
	char *to = xasprintf("%s/tern-trash-%s", s->root, id);
	if (rename(from, to) != 0 && errno != ENOENT) {
		fail_errno(err, "rename", from);
		free(from);
		free(to);
		return NULL;
	}
	free(from);
	return to;
}

int mstore_delete(struct mstore *s, const char *name, struct mbox_err *err)
{
	char *c;
	if (canon(name, &c, err) < 0)
		return -1;
	if (strcmp(c, "INBOX") == 0) {
		free(c);
		return fail(err, MBOX_E_CANNOT, "INBOX cannot be deleted");
	}
	if (tx_begin(s, err) < 0) {
		free(c);
		return -1;
	}
	struct mrow r = { 0 };
	char *trash = NULL;
	int ret = -1;
	int f = mrow_load(s, c, 0, &r, err);
	if (f == 1)
		fail(err, MBOX_E_NONEXISTENT, "no such mailbox");
	if (f != 0)
		goto out;
	bool kids = has_children(s, c);
	if (!r.selectable && kids) {
		fail(err, MBOX_E_HASCHILDREN, "mailbox has inferiors");
		goto out;
	}
	if (r.selectable && !(trash = trash_folder(s, r.dir, err)))
		goto out;
	crash_point();
	if (drop_messages(s, r.id, err) < 0)
		goto out;
	sqlite3_stmt *st = prep(s,
				kids ? "UPDATE mailboxes SET selectable = 0, special = 0 WHERE id = ?"
				     : "DELETE FROM mailboxes WHERE id = ?",
				err);
	if (!st)
		goto out;
	sqlite3_bind_int64(st, 1, r.id);
	if (step_done(s, st, err) < 0)
		goto out;
	ret = tx_commit(s, err);
out:
	if (ret < 0) {
		tx_rollback(s);
		if (trash) {
			/* Put the folder back; if that fails reconcile() sorts it out. */
			char *back = mdir(s, r.dir);
			if (rename(trash, back) != 0)
				log_warn("rename(%s, %s)", trash, back);
			free(back);
		}
	} else if (trash) {
		rm_tree(trash);
	}
	free(trash);
	mrow_free(&r);
	free(c);
	return ret;
}

static int copy_msgs(struct mstore *s, struct mrow *src, const uint32_t *uids, size_t n,
		     struct mrow *dst, bool move, uint32_t **src_r, uint32_t **dst_r, size_t *n_r,
		     struct mbox_err *err);

int mstore_rename(struct mstore *s, const char *from, const char *to, struct mbox_err *err)
{
	char *f = NULL, *t = NULL;
	if (canon(from, &f, err) < 0 || canon(to, &t, err) < 0) {
		free(f);
		return -1;
	}
	int ret = -1;
	struct mrow r = { 0 }, d = { 0 };
	char **names = NULL;
	size_t nn = 0;
	if (tx_begin(s, err) < 0)
		goto done;
	int x = mrow_load(s, f, 0, &r, err);
	if (x == 1)
		fail(err, MBOX_E_NONEXISTENT, "no such mailbox");
	if (x != 0)
		goto out;
	if ((x = mrow_load(s, t, 0, &d, err)) != 1) {
		if (x == 0)
			fail(err, MBOX_E_ALREADYEXISTS, "target exists");
		goto out;
	}
	size_t fl = strlen(f);
	if (strncmp(t, f, fl) == 0 && t[fl] == '/') {
		fail(err, MBOX_E_CANNOT, "cannot rename a mailbox into itself");
		goto out;
	}
	if (create_parents(s, t, err) < 0)
		goto out;
	if (strcmp(f, "INBOX") == 0) {
		/* RFC 9051 6.3.6: move INBOX's messages to a new mailbox; INBOX
		 * stays, empty; its inferiors are not renamed. */
		if (create_one(s, t, 0, err) < 0 || mrow_load(s, t, 0, &d, err) != 0)
			goto out;
		if (scan(s, &r, false, err) < 0)
			goto out;
		if (copy_msgs(s, &r, NULL, 0, &d, true, NULL, NULL, NULL, err) < 0)
			goto out;
		ret = tx_commit(s, err);
		goto out;
	}
	/* The mailbox and its inferiors. */
	sqlite3_stmt *st = prep(s,
				"SELECT name FROM mailboxes WHERE name = ?1 OR "
				"substr(name, 1, length(?1) + 1) = ?1 || '/'",
				err);
	if (!st)
		goto out;
	sqlite3_bind_text(st, 1, f, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		names = xrealloc(names, (nn + 1) * sizeof *names);
		names[nn++] = col_str(st, 0);
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < nn; i++) {
		char *nname = xasprintf("%s%s", t, names[i] + fl);
		struct mrow o;
		int e = mrow_load(s, names[i], 0, &o, err);
		if (e != 0) {
			free(nname);
			goto out;
		}
		char *ndir = mbox_name_to_dir(nname);
		if (strlen(nname) > MBOX_NAME_MAX || strlen(ndir) > DIR_NAME_MAX) {
			fail(err, MBOX_E_CANNOT, "name too long");
			free(nname);
			free(ndir);
			mrow_free(&o);
			goto out;
		}
		int rc = 0;
		if (o.selectable) {
			char *a = mdir(s, o.dir), *b = mdir(s, ndir);
			crash_point();
			if (rename(a, b) != 0)
				rc = fail_errno(err, "rename", a);
			crash_point();
			free(a);
			free(b);
		}
		if (rc == 0) {
			sqlite3_stmt *u = prep(s, "UPDATE mailboxes SET name = ?, dir = ? WHERE id = ?",
					       err);
			if (!u) {
				rc = -1;
			} else {
				sqlite3_bind_text(u, 1, nname, -1, SQLITE_STATIC);
				sqlite3_bind_text(u, 2, ndir, -1, SQLITE_STATIC);
				sqlite3_bind_int64(u, 3, o.id);
				rc = step_done(s, u, err);
			}
		}
		free(nname);
		free(ndir);
		mrow_free(&o);
		if (rc < 0)
			goto out;
	}
	ret = tx_commit(s, err);
out:
	if (ret < 0)
		tx_rollback(s);
done:
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	mrow_free(&r);
	mrow_free(&d);
	free(f);
	free(t);
	return ret;
}

int mstore_subscribe(struct mstore *s, const char *name, bool on, struct mbox_err *err)
{
	char *c;
	if (canon(name, &c, err) < 0)
		return -1;
	int r = subscribe_row(s, c, on, err);
	free(c);
	return r;
}

/* ---- refresh (sync without a session) ----------------------------------------- */

/* Opens a transaction on the mailbox row, scanning the directories when
 * needed. A read transaction is enough when nothing must be written; the
 * write lock is taken only for a scan (or, with want_write, always). On
 * success the caller must commit or roll back. */
static int refresh(struct mstore *s, const char *name, int64_t id, bool want_write, bool force,
		   struct mrow *r, struct mbox_err *err)
{
	if (!want_write && !force) {
		if (exec(s, "BEGIN", err) < 0)
			return -1;
		int f = mrow_load(s, name, id, r, err);
		if (f != 0) {
			tx_rollback(s);
			return f < 0 ? -1 : fail(err, MBOX_E_NONEXISTENT, "no such mailbox");
		}
		if (!r->selectable || !scan_needed(s, r))
			return 0;
		mrow_free(r);
		tx_rollback(s);
	}
	if (tx_begin(s, err) < 0)
		return -1;
	int f = mrow_load(s, name, id, r, err);
	if (f != 0) {
		tx_rollback(s);
		return f < 0 ? -1 : fail(err, MBOX_E_NONEXISTENT, "no such mailbox");
	}
	if (scan(s, r, force, err) < 0) {
		tx_rollback(s);
		mrow_free(r);
		return -1;
	}
	return 0;
}

int mstore_status(struct mstore *s, const char *name, unsigned items, struct mbox_status *out,
		  struct mbox_err *err)
{
	(void)items;
	memset(out, 0, sizeof *out);
	char *c;
	if (canon(name, &c, err) < 0)
		return -1;
	struct mrow r;
	int ret = refresh(s, c, 0, false, false, &r, err);
	free(c);
	if (ret < 0)
		return -1;
	if (!r.selectable) {
		tx_rollback(s);
		mrow_free(&r);
		return fail(err, MBOX_E_CANNOT, "mailbox is \\Noselect");
	}
	sqlite3_stmt *st = prep(s,
				"SELECT count(*), total((flags & 1) = 0), total((flags & 8) <> 0), "
				"total(wsize), total(uid > ?) FROM messages WHERE mailbox = ?",
				err);
	if (!st) {
		tx_rollback(s);
		mrow_free(&r);
		return -1;
	}
	sqlite3_bind_int64(st, 1, r.recent_uid);
	sqlite3_bind_int64(st, 2, r.id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		out->messages = (uint32_t)sqlite3_column_int64(st, 0);
		out->unseen = (uint32_t)sqlite3_column_double(st, 1);
		out->deleted = (uint32_t)sqlite3_column_double(st, 2);
		out->size = (uint64_t)sqlite3_column_double(st, 3);
		out->recent = (uint32_t)sqlite3_column_double(st, 4);
	}
	sqlite3_finalize(st);
	out->uidnext = r.uidnext;
	out->uidvalidity = r.uidvalidity;
	out->highestmodseq = r.modseq;
	mrow_free(&r);
	return tx_commit(s, err);
}

/* The selectable mailbox called name, for APPEND and SELECT: *c_r gets its
 * canonical name (malloc'd) and *r its row. A \Noselect one fails with
 * noselect_code. 0, or -1 with err set and nothing to free. */
static int load_selectable(struct mstore *s, const char *name, enum mbox_code noselect_code,
			   char **c_r, struct mrow *r, struct mbox_err *err)
{
	if (canon(name, c_r, err) < 0)
		return -1;
	int f = mrow_load(s, *c_r, 0, r, err);
	if (f == 0 && r->selectable)
		return 0;
	free(*c_r);
	*c_r = NULL;
	if (f < 0)
		return -1;
	if (f == 0) {
		mrow_free(r);
		return fail(err, noselect_code, "mailbox is \\Noselect");
	}
	return fail(err, MBOX_E_NONEXISTENT, "no such mailbox");
}

/* ---- APPEND -------------------------------------------------------------------- */

int mstore_append_begin(struct mstore *s, const char *name, struct mbox_append **a_r,
			struct mbox_err *err)
{
	*a_r = NULL;
	char *c;
	struct mrow r;
	if (load_selectable(s, name, MBOX_E_NONEXISTENT, &c, &r, err) < 0)
		return -1;
	struct mbox_append *a = xcalloc(1, sizeof *a);
	a->s = s;
	a->name = c;
	char *dir = mdir(s, r.dir);
	a->cur_dir = xasprintf("%s/cur", dir);
	a->base = new_base(s);
	a->tmp_path = xasprintf("%s/tmp/%s", dir, a->base);
	free(dir);
	mrow_free(&r);
	a->fd = open(a->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (a->fd < 0) {
		fail_errno(err, "open", a->tmp_path);
		free(a->tmp_path);
		a->tmp_path = NULL;
		mbox_append_abort(&a);
		return -1;
	}
	a->parser = mime_parser_new(NULL);
	buf_init(&a->out, 0);
	*a_r = a;
	return 0;
}

static int append_flush(struct mbox_append *a, struct mbox_err *err)
{
	if (a->out.len == 0)
		return 0;
	mime_parser_feed(a->parser, a->out.data, a->out.len);
	if (write_full(a->fd, a->out.data, a->out.len) != 0) {
		a->failed = true;
		return fail_errno(err, "write", a->tmp_path);
	}
	buf_clear(&a->out);
	return 0;
}

int mbox_append_write(struct mbox_append *a, const void *p, size_t n, struct mbox_err *err)
{
	if (a->failed)
		return fail(err, MBOX_E_SERVERBUG, "append already failed");
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		if (a->pending_cr) {
			a->pending_cr = false;
			if (b[i] != '\n')
				buf_xappend(&a->out, "\r", 1);
		}
		if (b[i] == '\r') {
			a->pending_cr = true;
			continue;
		}
		/* Runs without CR are copied in one go. */
		size_t j = i;
		while (j < n && b[j] != '\r')
			j++;
		buf_xappend(&a->out, b + i, j - i);
		i = j - 1;
		if (a->out.len >= 65536 && append_flush(a, err) < 0)
			return -1;
	}
	return append_flush(a, err);
}

void mbox_append_abort(struct mbox_append **ap)
{
	struct mbox_append *a = *ap;
	if (!a)
		return;
	if (a->fd >= 0)
		close(a->fd);
	if (a->tmp_path)
		unlink(a->tmp_path);
	if (a->parser) {
		struct mime_message *m = mime_parser_finish(&a->parser);
		mime_message_free(&m);
	}
	if (a->p) {
		parsed_deinit(a->p);
		free(a->p);
	}
	buf_deinit(&a->out);
	free(a->kw);
	free(a->tmp_path);
	free(a->cur_dir);
	free(a->base);
	free(a->name);
	free(a);
	*ap = NULL;
}

int mbox_append_finish(struct mbox_append *a, unsigned flags, const char *const *keywords,
		       size_t n_keywords, int64_t internaldate, int tz_min, struct mbox_err *err)
{
	if (a->finished || a->failed)
		return fail(err, MBOX_E_SERVERBUG, "append already finished or failed");
	if (kw_check(keywords, n_keywords, err) < 0)
		return -1;
	if (a->pending_cr) {
		a->pending_cr = false;
		buf_xappend(&a->out, "\r", 1);
	}
	if (append_flush(a, err) < 0)
		return -1;
	a->p = xmalloc(sizeof *a->p);
	parsed_init(a->p);
	parsed_fill(a->p, mime_parser_finish(&a->parser));
	if (internaldate <= 0)
		internaldate = time_unix();
	struct timespec ts[2] = { { internaldate, 0 }, { internaldate, 0 } };
	crash_point();
	/* Data first; the mtime carries INTERNALDATE for a reindex. */
	if (sync_data(a->fd) != 0 || futimens(a->fd, ts) != 0) {
		a->failed = true;
		return fail_errno(err, "fsync", a->tmp_path);
	}
	close(a->fd);
	a->fd = -1;
	a->flags = flags & MBOX_FLAGS_ALL;
	a->kw = kw_apply("", MBOX_OP_ADD, keywords, n_keywords);
	a->internaldate = internaldate;
	a->tz_min = tz_min;
	a->finished = true;
	return 0;
}

/* Renames every finished message into cur/ and adds the rows in one
 * transaction. On failure the files renamed so far are unlinked again
 * before the rollback, so nothing shows. A crash in the short window
 * between the first rename and the commit leaves the renamed files for the
 * next sync to adopt (the store's rule: a file without a row is adopted),
 * so MULTIAPPEND is all-or-nothing for every failure except a kill of the
 * process inside that window; before it, the messages sit in tmp/ where
 * nothing adopts them. */
int mbox_append_commit_all(struct mbox_append **v, size_t n, uint32_t *uidvalidity_r,
			   uint32_t *uids_r, struct mbox_err *err)
{
	int ret = -1;
	struct mrow r = { 0 };
	char **dst = xcalloc(n ? n : 1, sizeof *dst);
	char **fname = xcalloc(n ? n : 1, sizeof *fname);
	size_t renamed = 0;
	bool in_tx = false;
	if (n == 0 || !v[0]) {
		fail(err, MBOX_E_SERVERBUG, "nothing to commit");
		goto out;
	}
	struct mstore *s = v[0]->s;
	for (size_t i = 0; i < n; i++) {
		if (!v[i] || !v[i]->finished || v[i]->s != s || strcmp(v[i]->name, v[0]->name)) {
			fail(err, MBOX_E_SERVERBUG, "append %zu not finished or elsewhere", i);
			goto out;
		}
	}
	if (tx_begin(s, err) < 0)
		goto out;
	in_tx = true;
	int f = mrow_load(s, v[0]->name, 0, &r, err);
	if (f == 1 || (f == 0 && !r.selectable))
		fail(err, MBOX_E_NONEXISTENT, "mailbox vanished");
	if (f != 0 || !r.selectable)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct mbox_append *a = v[i];
		char *fields = xasprintf("%s,S=%llu,W=%llu", a->base, (unsigned long long)a->p->size,
					 (unsigned long long)a->p->wsize);
		fname[i] = name_with_flags(fields, a->flags);
		free(fields);
		dst[i] = xasprintf("%s/%s", a->cur_dir, fname[i]);
		crash_point();
		if (rename(a->tmp_path, dst[i]) != 0) {
			fail_errno(err, "rename", a->tmp_path);
			goto out;
		}
		renamed = i + 1;
	}
	crash_point();
	if (sync_dir(v[0]->cur_dir) != 0) {
		fail_errno(err, "fsync", v[0]->cur_dir);
		goto out;
	}
	crash_point();
	/* one operation, one modseq for all of its messages (RFC 7162 3.1) */
	uint64_t modseq = r.modseq + 1;
	for (size_t i = 0; i < n; i++) {
		struct mbox_append *a = v[i];
		char *rel = xasprintf("cur/%s", fname[i]);
		struct newmsg nm = {
			.uid = r.uidnext,
			.base = a->base,
			.path = rel,
			.flags = a->flags,
			.keywords = a->kw,
			.internaldate = a->internaldate,
			.tz = a->tz_min,
			.size = a->p->size,
			.wsize = a->p->wsize,
			.modseq = modseq,
		};
		int64_t id;
		int e = msg_insert(s, r.id, &nm, &id, err);
		free(rel);
		if (e < 0 || cache_insert(s, id, a->p, err) < 0 || kw_record(s, r.id, a->kw, err) < 0)
			goto out;
		uids_r[i] = r.uidnext++;
	}
	r.modseq = modseq;
	if (mrow_save(s, &r, err) < 0 || tx_commit(s, err) < 0)
		goto out;
	in_tx = false;
	*uidvalidity_r = r.uidvalidity;
	ret = 0;
out:
	if (ret < 0) {
		for (size_t i = 0; i < renamed; i++)
			unlink(dst[i]);
		if (in_tx)
			tx_rollback(v[0]->s);
	}
	mrow_free(&r);
	for (size_t i = 0; i < n; i++) {
		free(dst[i]);
		free(fname[i]);
		if (ret == 0) {
			/* renamed away: nothing left in tmp/ to unlink */
			free(v[i]->tmp_path);
			v[i]->tmp_path = NULL;
		}
		mbox_append_abort(&v[i]);
	}
	free(dst);
	free(fname);
	return ret;
}

int mbox_append_commit(struct mbox_append **ap, unsigned flags, const char *const *keywords,
		       size_t n_keywords, int64_t internaldate, int tz_min, uint32_t *uidvalidity_r,
		       uint32_t *uid_r, struct mbox_err *err)
{
	if (mbox_append_finish(*ap, flags, keywords, n_keywords, internaldate, tz_min, err) < 0) {
		mbox_append_abort(ap);
		return -1;
	}
	return mbox_append_commit_all(ap, 1, uidvalidity_r, uid_r, err);
}

/* ---- selected mailbox ---------------------------------------------------------------- */

/* Claims the UIDs above the recent marker for a read-write session. */
static void claim_recent(struct mbox *m, struct mrow *r)
{
	if (m->readonly || r->uidnext - 1 <= r->recent_uid)
		return;
	m->rr = xrealloc(m->rr, (m->n_rr + 1) * sizeof *m->rr);
	m->rr[m->n_rr].lo = r->recent_uid + 1;
	m->rr[m->n_rr].hi = r->uidnext - 1;
	m->n_rr++;
	r->recent_uid = r->uidnext - 1;
}

static bool needs_claim(const struct mbox *m, const struct mrow *r)
{
	return !m->readonly && r->uidnext - 1 > r->recent_uid;
}

static int load_uids(struct mbox *m, struct mbox_err *err)
{
	sqlite3_stmt *st =
		prep(m->s, "SELECT uid FROM messages WHERE mailbox = ? ORDER BY uid", err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, m->id);
	size_t cap = 0;
	free(m->uids);
	m->uids = NULL;
	m->n_uids = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (m->n_uids == cap) {
			cap = cap ? cap * 2 : 1024;
			m->uids = xrealloc(m->uids, cap * sizeof *m->uids);
		}
		m->uids[m->n_uids++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return 0;
}

static void poll_stat(struct mbox *m, const char *dir, int64_t v[POLL_N])
{
	v[0] = mtime_ns(dir, "new");
	v[1] = mtime_ns(dir, "cur");
	v[2] = mtime_ns(m->s->root, MBOX_INDEX_NAME);
	char *wal = xasprintf("%s-wal", MBOX_INDEX_NAME);
	v[3] = mtime_ns(m->s->root, wal);
	free(wal);
}

/* Taken before a sync reads anything, so later changes show up. */
static void poll_record(struct mbox *m, const char *dir)
{
	poll_stat(m, dir, m->poll);
	m->poll_at = now_ns();
}

bool mbox_poll(struct mbox *m)
{
	if (!m->dir)
		return true;
	/* A change in the same clock tick as the last record would not move the
	 * mtimes: until the record is old enough, always say "maybe". */
	int64_t newest = 0;
	for (size_t i = 0; i < POLL_N; i++)
		newest = m->poll[i] > newest ? m->poll[i] : newest;
	if (newest == 0 || newest >= m->poll_at - MTIME_SETTLE_NS)
		return true;
	int64_t v[POLL_N];
	poll_stat(m, m->dir, v);
	return memcmp(v, m->poll, sizeof v) != 0;
}

bool mbox_poll_files(struct mbox *m)
{
	if (!m->dir)
		return true;
	/* as mbox_poll, but only new/ and cur/: the index's own files change
	 * when an idle session closes its connection (the WAL checkpoint) */
	int64_t newest = m->poll[0] > m->poll[1] ? m->poll[0] : m->poll[1];
	if (newest == 0 || newest >= m->poll_at - MTIME_SETTLE_NS)
		return true;
	int64_t v[POLL_N];
	poll_stat(m, m->dir, v);
	return v[0] != m->poll[0] || v[1] != m->poll[1];
}

/* Refresh for a session: scan if needed, claim \Recent, in one transaction
 * (left open on success). */
static int session_refresh(struct mbox *m, bool force, struct mrow *r, struct mbox_err *err)
{
	if (refresh(m->s, NULL, m->id, false, force, r, err) < 0)
		return -1;
	if (!r->selectable) {
		tx_rollback(m->s);
		mrow_free(r);
		return fail(err, MBOX_E_NONEXISTENT, "mailbox was deleted");
	}
	if (needs_claim(m, r) && sqlite3_txn_state(m->s->db, NULL) != SQLITE_TXN_WRITE) {
		/* Read transaction: retake as a write one to claim. */
		mrow_free(r);
		tx_rollback(m->s);
		if (refresh(m->s, NULL, m->id, true, force, r, err) < 0)
			return -1;
	}
	if (needs_claim(m, r)) {
		claim_recent(m, r);
		if (mrow_save(m->s, r, err) < 0) {
			tx_rollback(m->s);
			mrow_free(r);
			return -1;
		}
	}
	return 0;
}

int mbox_open(struct mstore *s, const char *name, bool readonly, struct mbox **m_r,
	      struct mbox_err *err)
{
	*m_r = NULL;
	char *c;
	struct mrow r;
	if (load_selectable(s, name, MBOX_E_CANNOT, &c, &r, err) < 0)
		return -1;
	struct mbox *m = xcalloc(1, sizeof *m);
	m->s = s;
	m->id = r.id;
	m->name = c;
	m->readonly = readonly;
	m->dir = mdir(s, r.dir);
	poll_record(m, m->dir);
	mrow_free(&r);
	if (session_refresh(m, false, &r, err) < 0) {
		mbox_close(&m);
		return -1;
	}
	m->special = r.special;
	m->uidvalidity = r.uidvalidity;
	m->uidnext = r.uidnext;
	m->modseq = r.modseq;
	m->last_uid = r.uidnext - 1;
	m->sync_modseq = r.modseq;
	mrow_free(&r);
	if (load_uids(m, err) < 0 || tx_commit(s, err) < 0) {
		tx_rollback(s);
		mbox_close(&m);
		return -1;
	}
	*m_r = m;
	return 0;
}

void mbox_close(struct mbox **mp)
{
	struct mbox *m = *mp;
	if (!m)
		return;
	free(m->name);
	free(m->dir);
	free(m->uids);
	free(m->rr);
	free(m);
	*mp = NULL;
}

const char *mbox_name(const struct mbox *m)
{
	return m->name;
}
int64_t mbox_id(const struct mbox *m)
{
	return m->id;
}
bool mbox_readonly(const struct mbox *m)
{
	return m->readonly;
}
uint32_t mbox_uidvalidity(const struct mbox *m)
{
	return m->uidvalidity;
}
uint32_t mbox_uidnext(const struct mbox *m)
{
	return m->uidnext;
}
uint64_t mbox_highestmodseq(const struct mbox *m)
{
	return m->modseq;
}
enum mbox_special mbox_special_use(const struct mbox *m)
{
	return (enum mbox_special)m->special;
}

const uint32_t *mbox_uids(const struct mbox *m, size_t *n_r)
{
	*n_r = m->n_uids;
	return m->uids;
}

bool mbox_is_recent(const struct mbox *m, uint32_t uid)
{
	for (size_t i = 0; i < m->n_rr; i++)
		if (uid >= m->rr[i].lo && uid <= m->rr[i].hi)
			return true;
	return false;
}

int mbox_keywords(struct mbox *m, char ***kw_r, size_t *n_r, struct mbox_err *err)
{
	*kw_r = NULL;
	*n_r = 0;
	sqlite3_stmt *st = prep(m->s, "SELECT name FROM kwnames WHERE mailbox = ? ORDER BY name", err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, m->id);
	while (sqlite3_step(st) == SQLITE_ROW) {
		*kw_r = xrealloc(*kw_r, (*n_r + 1) * sizeof **kw_r);
		(*kw_r)[(*n_r)++] = col_str(st, 0);
	}
	sqlite3_finalize(st);
	return 0;
}

int mbox_first_unseen(struct mbox *m, uint32_t *uid_r, struct mbox_err *err)
{
	*uid_r = 0;
	sqlite3_stmt *st = prep(m->s,
				"SELECT min(uid) FROM messages WHERE mailbox = ? AND (flags & 1) = 0",
				err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, m->id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*uid_r = (uint32_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_fail(m->s, err, "first unseen");
}

void mbox_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Expunges and flag changes with modseq > since among UIDs <= max_uid. */
static int query_changes(struct mstore *s, int64_t mailbox, uint64_t since, uint32_t max_uid,
			 struct mbox_changes *ch, struct mbox_err *err)
{
	size_t cap = 0;
	sqlite3_stmt *st = prep(s,
				"SELECT DISTINCT uid FROM expunged WHERE mailbox = ? AND modseq > ? "
				"AND uid <= ? ORDER BY uid",
				err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, mailbox);
	sqlite3_bind_int64(st, 2, (int64_t)since);
	sqlite3_bind_int64(st, 3, max_uid);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (ch->n_expunged == cap) {
			cap = cap ? cap * 2 : 64;
			ch->expunged = xrealloc(ch->expunged, cap * sizeof *ch->expunged);
		}
		ch->expunged[ch->n_expunged++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	cap = 0;
	st = prep(s,
		  "SELECT uid, flags, keywords, modseq FROM messages WHERE mailbox = ? AND "
		  "modseq > ? AND uid <= ? ORDER BY uid",
		  err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, mailbox);
	sqlite3_bind_int64(st, 2, (int64_t)since);
	sqlite3_bind_int64(st, 3, max_uid);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (ch->n_changed == cap) {
			cap = cap ? cap * 2 : 64;
			ch->changed = xrealloc(ch->changed, cap * sizeof *ch->changed);
		}
		struct mbox_flag_change *c = &ch->changed[ch->n_changed++];
		c->uid = (uint32_t)sqlite3_column_int64(st, 0);
		c->flags = (unsigned)sqlite3_column_int(st, 1);
		c->keywords = col_str(st, 2);
		c->modseq = (uint64_t)sqlite3_column_int64(st, 3);
	}
	sqlite3_finalize(st);
	return 0;
}

int mbox_changes_since(struct mbox *m, uint64_t since, struct mbox_changes *ch,
		       struct mbox_err *err)
{
	memset(ch, 0, sizeof *ch);
	struct mstore *s = m->s;
	if (exec(s, "BEGIN", err) < 0)
		return -1;
	if (query_changes(s, m->id, since, m->last_uid, ch, err) < 0) {
		tx_rollback(s);
		mbox_changes_free(ch);
		return -1;
	}
	tx_rollback(s); /* read only */
	return 0;
}

int mbox_sync(struct mbox *m, unsigned flags, struct mbox_changes *ch, struct mbox_err *err)
{
	memset(ch, 0, sizeof *ch);
	struct mrow r;
	poll_record(m, m->dir);
	if (session_refresh(m, (flags & MBOX_SYNC_FULL) != 0, &r, err) < 0)
		return -1;
	struct mstore *s = m->s;
	if (strcmp(r.name, m->name) != 0) {
		/* renamed away by another session: for this one the mailbox is
		 * gone, as if deleted (the engine ends the session) */
		fail(err, MBOX_E_NONEXISTENT, "mailbox was renamed");
		goto fail;
	}
	char *dir = mdir(s, r.dir);
	if (strcmp(dir, m->dir) != 0) { /* defensive: the name check covers renames */
		free(m->dir);
		m->dir = dir;
		poll_record(m, m->dir);
	} else {
		free(dir);
	}
	size_t cap = 0;
	sqlite3_stmt *st = prep(s, "SELECT uid FROM messages WHERE mailbox = ? AND uid > ? ORDER BY uid",
				err);
	if (!st)
		goto fail;
	sqlite3_bind_int64(st, 1, m->id);
	sqlite3_bind_int64(st, 2, m->last_uid);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (ch->n_added == cap) {
			cap = cap ? cap * 2 : 64;
			ch->added = xrealloc(ch->added, cap * sizeof *ch->added);
		}
		uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
		ch->added[ch->n_added++] = uid;
		if (mbox_is_recent(m, uid))
			ch->n_recent_added++;
	}
	sqlite3_finalize(st);
	if (r.modseq > m->sync_modseq &&
	    query_changes(s, m->id, m->sync_modseq, m->last_uid, ch, err) < 0)
		goto fail;
	if (tx_commit(s, err) < 0)
		goto fail_nort;
	if (ch->n_added)
		m->last_uid = ch->added[ch->n_added - 1];
	if (r.uidnext - 1 > m->last_uid)
		m->last_uid = r.uidnext - 1; /* added and expunged meanwhile: never shown */
	m->sync_modseq = r.modseq;
	m->uidnext = r.uidnext;
	m->modseq = r.modseq;
	free(m->uids);
	m->uids = NULL;
	m->n_uids = 0;
	mrow_free(&r);
	return 0;
fail:
	tx_rollback(s);
fail_nort:
	mrow_free(&r);
	mbox_changes_free(ch);
	return -1;
}

uint64_t mbox_seen_modseq(const struct mbox *m)
{
	return m->sync_modseq;
}

/* Pruning expunge records. A session's mbox_sync reports the expunges with
 * a modseq above its sync_modseq (the highestmodseq as of its open or last
 * sync), so a record at or below the smallest sync_modseq of every session
 * that has the mailbox open is needed by nobody: later opens start above
 * it. Only the caller knows the sessions (daemon/role_imap.c's registry,
 * the only user of the index): it passes that floor, computed on the loop
 * thread while no SELECT is in flight; an open that starts afterwards reads
 * a highestmodseq at least as high as the floor, so it never needs a
 * record at or below it. The records of this mailbox (by id, so a mailbox
 * deleted and created again under the same name is not touched) are
 * deleted in one transaction. mbox_changes_since is then exact only above
 * the floor (QRESYNC's VANISHED (EARLIER) would have to answer from it). */
int mbox_prune_expunged(struct mbox *m, uint64_t floor, struct mbox_err *err)
{
	struct mstore *s = m->s;
	if (tx_begin(s, err) < 0)
		return -1;
	sqlite3_stmt *st = prep(s, "DELETE FROM expunged WHERE mailbox = ? AND modseq <= ?", err);
	if (!st) {
		tx_rollback(s);
		return -1;
	}
	sqlite3_bind_int64(st, 1, m->id);
	sqlite3_bind_int64(st, 2, (int64_t)floor);
	if (step_done(s, st, err) < 0) {
		tx_rollback(s);
		return -1;
	}
	return tx_commit(s, err);
}

void mbox_changes_free(struct mbox_changes *ch)
{
	free(ch->added);
	free(ch->expunged);
	for (size_t i = 0; i < ch->n_changed; i++)
		free(ch->changed[i].keywords);
	free(ch->changed);
	memset(ch, 0, sizeof *ch);
}

/* ---- metadata -------------------------------------------------------------------- */

static sqlite3_stmt *meta_stmt(struct mbox *m, unsigned want, struct mbox_err *err)
{
	char sql[512];
	snprintf(sql, sizeof sql,
		 "SELECT m.uid, m.flags, m.keywords, m.internaldate, m.tz, m.size, m.wsize, "
		 "m.modseq, m.base, %s, %s, %s, %s FROM messages m LEFT JOIN cache c ON c.id = m.id "
		 "WHERE m.mailbox = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid",
		 want & MBOX_W_ENVELOPE ? "c.envelope" : "NULL",
		 want & MBOX_W_BODY ? "c.body" : "NULL",
		 want & MBOX_W_BODYSTRUCTURE ? "c.bodystructure" : "NULL",
		 want & MBOX_W_MIME ? "c.mime" : "NULL");
	sqlite3_stmt *st = prep(m->s, sql, err);
	if (st)
		sqlite3_bind_int64(st, 1, m->id);
	return st;
}

static char *col_opt(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL : col_str(st, i);
}

static void meta_read(sqlite3_stmt *st, struct mbox_meta *r)
{
	r->uid = (uint32_t)sqlite3_column_int64(st, 0);
	r->flags = (unsigned)sqlite3_column_int(st, 1);
	r->keywords = col_str(st, 2);
	r->internaldate = sqlite3_column_int64(st, 3);
	r->tz_min = sqlite3_column_int(st, 4);
	r->size = (uint64_t)sqlite3_column_int64(st, 5);
	r->wire_size = (uint64_t)sqlite3_column_int64(st, 6);
	r->modseq = (uint64_t)sqlite3_column_int64(st, 7);
	r->base = col_str(st, 8);
	r->envelope = col_opt(st, 9);
	r->body = col_opt(st, 10);
	r->bodystructure = col_opt(st, 11);
	r->mime = NULL;
	r->mime_len = 0;
	if (sqlite3_column_type(st, 12) == SQLITE_BLOB) {
		int n = sqlite3_column_bytes(st, 12);
		r->mime = xmalloc((size_t)n + 1);
		memcpy(r->mime, sqlite3_column_blob(st, 12), (size_t)n);
		r->mime_len = (size_t)n;
	}
}

void mbox_meta_free(struct mbox_meta *r)
{
	free(r->keywords);
	free(r->base);
	free(r->envelope);
	free(r->body);
	free(r->bodystructure);
	free(r->mime);
	memset(r, 0, sizeof *r);
}

int mbox_meta(struct mbox *m, uint32_t uid, unsigned want, struct mbox_meta *r,
	      struct mbox_err *err)
{
	memset(r, 0, sizeof *r);
	sqlite3_stmt **slot = &m->s->meta_st[want & 15];
	if (*slot && m->s->db) {
		sqlite3_reset(*slot);
		sqlite3_bind_int64(*slot, 1, m->id);
	} else {
		sqlite3_finalize(*slot);
		*slot = meta_stmt(m, want, err);
		if (!*slot)
			return -1;
	}
	sqlite3_stmt *st = *slot;
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_int64(st, 3, uid);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		meta_read(st, r);
	sqlite3_reset(st); /* kept for the next message; reset ends its read */
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return fail(err, MBOX_E_EXPUNGED, "no message with uid %u", uid);
	return db_fail(m->s, err, "meta");
}

int mbox_meta_range(struct mbox *m, uint32_t lo, uint32_t hi, unsigned want, mbox_meta_fn *cb,
		    void *ctx, struct mbox_err *err)
{
	sqlite3_stmt *st = meta_stmt(m, want, err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 2, lo);
	sqlite3_bind_int64(st, 3, hi);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct mbox_meta meta;
		meta_read(st, &meta);
		int stop = cb(&meta, ctx);
		mbox_meta_free(&meta);
		if (stop) {
			rc = SQLITE_DONE;
			break;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_fail(m->s, err, "meta range");
}

/* The mailbox directory of the session (re-read: the mailbox may have been
 * renamed by another session). */
static char *session_dir(struct mbox *m, struct mbox_err *err)
{
	struct mrow r;
	int f = mrow_load(m->s, NULL, m->id, &r, err);
	if (f != 0) {
		if (f == 1)
			fail(err, MBOX_E_NONEXISTENT, "mailbox was deleted");
		return NULL;
	}
	char *d = mdir(m->s, r.dir);
	mrow_free(&r);
	return d;
}

int mbox_msg_open(struct mbox *m, uint32_t uid, int *fd_r, struct mbox_err *err)
{
	*fd_r = -1;
	sqlite3_stmt *st =
		prep(m->s, "SELECT path, base FROM messages WHERE mailbox = ? AND uid = ?", err);
	if (!st)
		return -1;
	sqlite3_bind_int64(st, 1, m->id);
	sqlite3_bind_int64(st, 2, uid);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return fail(err, MBOX_E_EXPUNGED, "no message with uid %u", uid);
	}
	char *rel = col_str(st, 0), *base = col_str(st, 1);
	sqlite3_finalize(st);
	char *dir = session_dir(m, err);
	int ret = -1;
	if (dir) {
		char *p = xasprintf("%s/%s", dir, rel);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		free(p);
		if (fd < 0 && errno == ENOENT) {
			/* Renamed by another program since the last sync. */
			char *where = locate(dir, base);
			if (where) {
				p = xasprintf("%s/%s", dir, where);
				fd = open(p, O_RDONLY | O_CLOEXEC);
				free(p);
				free(where);
			}
		}
		if (fd >= 0) {
			*fd_r = fd;
			ret = 0;
		} else if (errno == ENOENT) {
			fail(err, MBOX_E_EXPUNGED, "message %u is gone", uid);
		} else {
			fail_errno(err, "open", rel);
		}
	}
	free(dir);
	free(rel);
	free(base);
	return ret;
}

/* ---- STORE -------------------------------------------------------------------------- */

/* One message's planned change (first pass of mbox_store). */
struct store_plan {
	int64_t id;
	unsigned old_flags, new_flags;
	char *path, *base, *kw;
	bool kw_changed;
};

static void plans_free(struct store_plan *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].path);
		free(p[i].base);
		free(p[i].kw);
	}
	free(p);
}

int mbox_store(struct mbox *m, const uint32_t *uids, size_t n, enum mbox_flag_op op,
	       unsigned flags, const char *const *keywords, size_t n_keywords,
	       uint64_t unchanged_since, uint32_t **failed_r, size_t *n_failed_r,
	       struct mbox_err *err)
{
	if (failed_r)
		*failed_r = NULL;
	if (n_failed_r)
		*n_failed_r = 0;
	if (m->readonly)
		return fail(err, MBOX_E_CANNOT, "mailbox is read-only");
	if (kw_check(keywords, n_keywords, err) < 0)
		return -1;
	flags &= MBOX_FLAGS_ALL;
	struct mstore *s = m->s;
	struct mrow r;
	if (tx_begin(s, err) < 0)
		return -1;
	int f = mrow_load(s, NULL, m->id, &r, err);
	if (f != 0) {
		tx_rollback(s);
		return f < 0 ? -1 : fail(err, MBOX_E_NONEXISTENT, "mailbox was deleted");
	}
	char *dir = mdir(s, r.dir);
	char *curdir = xasprintf("%s/cur", dir);
	uint32_t *failed = NULL;
	size_t nf = 0, np = 0;
	struct store_plan *plan = NULL;
	int ret = -1;
	sqlite3_stmt *upd = NULL;
	sqlite3_stmt *sel = prep(s,
				 "SELECT id, flags, keywords, path, base, modseq FROM messages "
				 "WHERE mailbox = ? AND uid = ?",
				 err);
	if (!sel)
		goto out;
	/* Pass 1: what changes, and whether every change is allowed, before
	 * anything is touched (a refused STORE changes nothing). */
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(sel);
		sqlite3_bind_int64(sel, 1, m->id);
		sqlite3_bind_int64(sel, 2, uids[i]);
		if (sqlite3_step(sel) != SQLITE_ROW)
			continue;
		uint64_t oms = (uint64_t)sqlite3_column_int64(sel, 5);
		if (unchanged_since && oms > unchanged_since) {
			failed = xrealloc(failed, (nf + 1) * sizeof *failed);
			failed[nf++] = uids[i];
			continue;
		}
		unsigned of = (unsigned)sqlite3_column_int(sel, 1);
		unsigned nfl = op == MBOX_OP_REPLACE ? flags
			     : op == MBOX_OP_ADD     ? (of | flags)
						     : (of & ~flags);
		const char *okw = (const char *)sqlite3_column_text(sel, 2);
		char *nkw = kw_apply(okw ? okw : "", op, keywords, n_keywords);
		bool kwc = strcmp(okw ? okw : "", nkw) != 0;
		if (kw_count(nkw) > MBOX_KEYWORDS_MAX) {
			free(nkw);
			fail(err, MBOX_E_LIMIT, "too many keywords");
			goto out;
		}
		if (nfl == of && !kwc) {
			free(nkw);
			continue;
		}
		plan = xrealloc(plan, (np + 1) * sizeof *plan);
		struct store_plan *p = &plan[np++];
		p->id = sqlite3_column_int64(sel, 0);
		p->old_flags = of;
		p->new_flags = nfl;
		p->path = col_str(sel, 3);
		p->base = col_str(sel, 4);
		p->kw = nkw;
		p->kw_changed = kwc;
	}
	sqlite3_finalize(sel);
	sel = NULL;
	upd = prep(s, "UPDATE messages SET flags = ?, keywords = ?, path = ?, modseq = ? WHERE id = ?",
		   err);
	if (!upd)
		goto out;
	/* Pass 2: mirror the flags into the file names (other tools see them),
	 * then the rows. A crash in between is repaired by the next scan, which
	 * takes the flags from the names. */
	for (size_t i = 0; i < np; i++) {
		struct store_plan *p = &plan[i];
		if (p->new_flags != p->old_flags) {
			char *from = xasprintf("%s/%s", dir, p->path);
			if (access(from, F_OK) != 0) {
				char *w = locate(dir, p->base);
				free(from);
				from = w ? xasprintf("%s/%s", dir, w) : NULL;
				if (w) {
					free(p->path);
					p->path = w;
				}
			}
			if (from) { /* else gone: the next scan expunges it */
				char *nn = name_with_flags(strchr(p->path, '/') + 1, p->new_flags);
				char *to = xasprintf("%s/%s", curdir, nn);
				crash_point();
				int rc = rename(from, to);
				if (rc != 0)
					fail_errno(err, "rename", from);
				crash_point();
				free(p->path);
				p->path = xasprintf("cur/%s", nn);
				free(nn);
				free(to);
				free(from);
				if (rc != 0)
					goto out;
			}
		}
		sqlite3_reset(upd);
		sqlite3_bind_int(upd, 1, (int)p->new_flags);
		sqlite3_bind_text(upd, 2, p->kw, -1, SQLITE_STATIC);
		sqlite3_bind_text(upd, 3, p->path, -1, SQLITE_STATIC);
		sqlite3_bind_int64(upd, 4, (int64_t)++r.modseq);
		sqlite3_bind_int64(upd, 5, p->id);
		if (sqlite3_step(upd) != SQLITE_DONE) {
			db_fail(s, err, "store");
			goto out;
		}
		if (p->kw_changed && kw_record(s, m->id, p->kw, err) < 0)
			goto out;
	}
	sqlite3_finalize(upd);
	upd = NULL;
	if (mrow_save(s, &r, err) < 0)
		goto out;
	ret = tx_commit(s, err);
out:
	sqlite3_finalize(sel);
	sqlite3_finalize(upd);
	if (ret < 0) {
		tx_rollback(s);
		free(failed);
	} else {
		if (failed_r)
			*failed_r = failed;
		else
			free(failed);
		if (n_failed_r)
			*n_failed_r = nf;
	}
	plans_free(plan, np);
	free(dir);
	free(curdir);
	mrow_free(&r);
	return ret;
}

/* ---- EXPUNGE / COPY / MOVE -------------------------------------------------------- */

struct victim {
	int64_t id;
	uint32_t uid;
	char *path, *base;
};

/* Removes files then rows (see the file comment), inside the transaction. */
static int remove_msgs(struct mstore *s, struct mrow *r, struct victim *v, size_t n,
		       struct mbox_err *err)
{
	if (n == 0)
		return 0;
	char *dir = mdir(s, r->dir);
	int ret = 0;
	for (size_t i = 0; i < n && ret == 0; i++) {
		char *p = xasprintf("%s/%s", dir, v[i].path);
		crash_point();
		if (unlink(p) != 0) {
			if (errno == ENOENT) {
				char *w = locate(dir, v[i].base);
				if (w) {
					free(p);
					p = xasprintf("%s/%s", dir, w);
					free(w);
					if (unlink(p) != 0 && errno != ENOENT)
						ret = fail_errno(err, "unlink", p);
				}
			} else {
				ret = fail_errno(err, "unlink", p);
			}
		}
		free(p);
	}
	char *cur = xasprintf("%s/cur", dir);
	if (ret == 0 && sync_dir(cur) != 0)
		ret = fail_errno(err, "fsync", cur);
	crash_point();
	free(cur);
	free(dir);
	for (size_t i = 0; i < n && ret == 0; i++)
		ret = msg_delete(s, r->id, v[i].id, v[i].uid, ++r->modseq, err);
	return ret;
}

static void victims_free(struct victim *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].path);
		free(v[i].base);
	}
	free(v);
}

/* Rows of the selection: uids (ascending) or, if NULL, every message; only
 * \Deleted ones if deleted_only. */
static int select_msgs(struct mstore *s, int64_t mailbox, const uint32_t *uids, size_t n,
		       bool deleted_only, struct victim **v_r, size_t *n_r, struct mbox_err *err)
{
	*v_r = NULL;
	*n_r = 0;
	sqlite3_stmt *st = prep(s,
				uids ? "SELECT id, uid, path, base, flags FROM messages WHERE "
				       "mailbox = ? AND uid = ?"
				     : "SELECT id, uid, path, base, flags FROM messages WHERE "
				       "mailbox = ? ORDER BY uid",
				err);
	if (!st)
		return -1;
	size_t cap = 0;
	for (size_t i = 0; i < (uids ? n : 1); i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, mailbox);
		if (uids)
			sqlite3_bind_int64(st, 2, uids[i]);
		while (sqlite3_step(st) == SQLITE_ROW) {
			if (deleted_only && !(sqlite3_column_int(st, 4) & MBOX_DELETED))
				continue;
			if (*n_r == cap) {
				cap = cap ? cap * 2 : 64;
				*v_r = xrealloc(*v_r, cap * sizeof **v_r);
			}
			struct victim *x = &(*v_r)[(*n_r)++];
			x->id = sqlite3_column_int64(st, 0);
			x->uid = (uint32_t)sqlite3_column_int64(st, 1);
			x->path = col_str(st, 2);
			x->base = col_str(st, 3);
		}
	}
	sqlite3_finalize(st);
	return 0;
}

int mbox_expunge(struct mbox *m, const uint32_t *uids, size_t n, uint32_t **expunged_r,
		 size_t *n_expunged_r, struct mbox_err *err)
{
	if (expunged_r)
		*expunged_r = NULL;
	if (n_expunged_r)
		*n_expunged_r = 0;
	if (m->readonly)
		return fail(err, MBOX_E_CANNOT, "mailbox is read-only");
	struct mstore *s = m->s;
	struct mrow r;
	if (tx_begin(s, err) < 0)
		return -1;
	int f = mrow_load(s, NULL, m->id, &r, err);
	if (f != 0) {
		tx_rollback(s);
		return f < 0 ? -1 : fail(err, MBOX_E_NONEXISTENT, "mailbox was deleted");
	}
	struct victim *v = NULL;
	size_t nv = 0;
	int ret = -1;
	if (select_msgs(s, m->id, uids, n, true, &v, &nv, err) < 0 ||
	    remove_msgs(s, &r, v, nv, err) < 0 || mrow_save(s, &r, err) < 0 ||
	    tx_commit(s, err) < 0) {
		tx_rollback(s);
		goto out;
	}
	ret = 0;
	if (expunged_r && nv) {
		*expunged_r = xmalloc(nv * sizeof **expunged_r);
		for (size_t i = 0; i < nv; i++)
			(*expunged_r)[i] = v[i].uid;
	}
	if (n_expunged_r)
		*n_expunged_r = nv;
out:
	victims_free(v, nv);
	mrow_free(&r);
	return ret;
}

/* Copies (links) the selected messages of src into dst, inside a write
 * transaction; with move, removes them from src too. uids NULL = all. */
static int copy_msgs(struct mstore *s, struct mrow *src, const uint32_t *uids, size_t n,
		     struct mrow *dst, bool move, uint32_t **src_r, uint32_t **dst_r, size_t *n_r,
		     struct mbox_err *err)
{
	struct victim *v = NULL;
	size_t nv = 0, done = 0;
	if (select_msgs(s, src->id, uids, n, false, &v, &nv, err) < 0)
		return -1;
	char *sdir = mdir(s, src->dir), *ddir = mdir(s, dst->dir);
	char *dcur = xasprintf("%s/cur", ddir);
	uint32_t *su = xcalloc(nv + 1, sizeof *su), *du = xcalloc(nv + 1, sizeof *du);
	struct victim *moved = xcalloc(nv + 1, sizeof *moved);
	int ret = -1;
	sqlite3_stmt *ins = prep(s,
				 "INSERT INTO messages(mailbox, uid, base, path, flags, keywords, "
				 "internaldate, tz, size, wsize, modseq) SELECT ?, ?, ?, ?, flags, "
				 "keywords, internaldate, tz, size, wsize, ? FROM messages WHERE id = ?",
				 err);
	sqlite3_stmt *cins = prep(s,
				  "INSERT INTO cache(id, envelope, body, bodystructure, mime) SELECT "
				  "?, envelope, body, bodystructure, mime FROM cache WHERE id = ?",
				  err);
	sqlite3_stmt *kwq = prep(s, "SELECT keywords FROM messages WHERE id = ?", err);
	if (!ins || !cins || !kwq)
		goto out;
	/* Files first (linked into the destination's cur/), then one fsync. */
	char **names = xcalloc(nv + 1, sizeof *names);
	char **bases = xcalloc(nv + 1, sizeof *bases);
	for (size_t i = 0; i < nv; i++) {
		char *from = xasprintf("%s/%s", sdir, v[i].path);
		char *b = new_base(s);
		const char *fname = strchr(v[i].path, '/') + 1;
		char *nn = xasprintf("%s%s", b, fname + base_len(fname));
		if (strstr(nn, ":2,") == NULL) {
			char *t = name_with_flags(nn, 0);
			free(nn);
			nn = t;
		}
		char *to = xasprintf("%s/%s", dcur, nn);
		crash_point();
		int rc = link(from, to);
		if (rc != 0 && errno == ENOENT) {
			char *w = locate(sdir, v[i].base);
			if (w) {
				free(from);
				from = xasprintf("%s/%s", sdir, w);
				free(w);
				rc = link(from, to);
			}
		}
		crash_point();
		free(from);
		free(to);
		if (rc != 0) {
			if (errno == ENOENT) { /* expunged by another program: skip */
				free(nn);
				free(b);
				continue;
			}
			fail_errno(err, "link", nn);
			free(nn);
			free(b);
			for (size_t k = 0; k < done; k++) {
				char *p = xasprintf("%s/%s", dcur, names[k]);
				unlink(p);
				free(p);
			}
			goto out_names;
		}
		names[done] = nn;
		bases[done] = b;
		su[done] = v[i].uid;
		moved[done] = v[i];
		done++;
	}
	if (done && sync_dir(dcur) != 0) {
		fail_errno(err, "fsync", dcur);
		goto out_names;
	}
	crash_point();
	for (size_t k = 0; k < done; k++) {
		char *rel = xasprintf("cur/%s", names[k]);
		du[k] = dst->uidnext++;
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, dst->id);
		sqlite3_bind_int64(ins, 2, du[k]);
		sqlite3_bind_text(ins, 3, bases[k], -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 4, rel, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 5, (int64_t)++dst->modseq);
		sqlite3_bind_int64(ins, 6, moved[k].id);
		int rc = sqlite3_step(ins);
		free(rel);
		if (rc != SQLITE_DONE) {
			db_fail(s, err, "copy");
			goto out_names;
		}
		int64_t nid = sqlite3_last_insert_rowid(s->db);
		sqlite3_reset(cins);
		sqlite3_bind_int64(cins, 1, nid);
		sqlite3_bind_int64(cins, 2, moved[k].id);
		if (sqlite3_step(cins) != SQLITE_DONE) {
			db_fail(s, err, "copy cache");
			goto out_names;
		}
		sqlite3_reset(kwq);
		sqlite3_bind_int64(kwq, 1, moved[k].id);
		if (sqlite3_step(kwq) == SQLITE_ROW) {
			char *kw = col_str(kwq, 0);
			int e = kw_record(s, dst->id, kw, err);
			free(kw);
			if (e < 0)
				goto out_names;
		}
	}
	if (src->id == dst->id) {
		/* Same mailbox: keep src's counters in step. */
		src->uidnext = dst->uidnext;
		src->modseq = dst->modseq;
	}
	if (move && remove_msgs(s, src, moved, done, err) < 0)
		goto out_names;
	if (src->id == dst->id)
		dst->modseq = src->modseq;
	if (mrow_save(s, dst, err) < 0 || (src->id != dst->id && move && mrow_save(s, src, err) < 0))
		goto out_names;
	ret = 0;
	if (src_r) {
		*src_r = su;
		*dst_r = du;
		*n_r = done;
		su = du = NULL;
	}
out_names:
	for (size_t k = 0; k < done; k++) {
		free(names[k]);
		free(bases[k]);
	}
	free(names);
	free(bases);
out:
	sqlite3_finalize(ins);
	sqlite3_finalize(cins);
	sqlite3_finalize(kwq);
	free(moved);
	victims_free(v, nv);
	free(su);
	free(du);
	free(sdir);
	free(ddir);
	free(dcur);
	return ret;
}

int mbox_copy(struct mbox *m, const uint32_t *uids, size_t n, const char *dest, bool move,
	      uint32_t *uidvalidity_r, uint32_t **src_r, uint32_t **dst_r, size_t *n_r,
	      struct mbox_err *err)
{
	*src_r = *dst_r = NULL;
	*n_r = 0;
	if (move && m->readonly)
		return fail(err, MBOX_E_CANNOT, "mailbox is read-only");
	char *c;
	if (canon(dest, &c, err) < 0)
		return -1;
	struct mstore *s = m->s;
	struct mrow src = { 0 }, dst = { 0 };
	int ret = -1;
	if (tx_begin(s, err) < 0) {
		free(c);
		return -1;
	}
	int f = mrow_load(s, NULL, m->id, &src, err);
	if (f == 1)
		fail(err, MBOX_E_NONEXISTENT, "mailbox was deleted");
	if (f != 0)
		goto out;
	f = mrow_load(s, c, 0, &dst, err);
	if (f == 1 || (f == 0 && !dst.selectable))
		fail(err, MBOX_E_NONEXISTENT, "no such mailbox");
	if (f != 0 || !dst.selectable)
		goto out;
	struct mrow *d = src.id == dst.id ? &src : &dst;
	if (copy_msgs(s, &src, uids, n, d, move, src_r, dst_r, n_r, err) < 0)
		goto out;
	*uidvalidity_r = d->uidvalidity;
	ret = tx_commit(s, err);
	if (ret < 0) {
		free(*src_r);
		free(*dst_r);
		*src_r = *dst_r = NULL;
		*n_r = 0;
	}
out:
	if (ret < 0)
		tx_rollback(s);
	mrow_free(&src);
	mrow_free(&dst);
	free(c);
	return ret;
}
