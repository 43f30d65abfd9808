/* SPDX-License-Identifier: MIT */
/* The account store on SQLite: users with their libcrypt hash and SCRAM keys,
 * and aliases (address -> targets). See accounts.h for the contract.
 *
 * Case: addresses are compared with SQLite's NOCASE collation (ASCII case
 * only), matching "lookups ignore ASCII case". On storage the domain is
 * lowercased (ASCII) and the local part is kept as given.
 *
 * Consistency rules, enforced inside IMMEDIATE transactions:
 *  - an address is either a user or an alias, never both;
 *  - alias targets are existing users or aliases (local only for now), and
 *    adding one must not create a loop or a chain deeper than ALIAS_MAX_DEPTH;
 *  - deleting a user or alias also deletes alias entries pointing to it, and
 *    then, repeatedly, entries pointing to aliases that became empty.
 * Resolution still checks loops and depth: the file may be edited by hand.
 *
 * Schema versions live in PRAGMA user_version; accounts_open() upgrades
 * older files step by step and refuses newer ones. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "base/log.h"
#include "base/util.h"

#define SCHEMA_VERSION 2
#define ALIAS_MAX_DEPTH 10 /* alias levels followed by accounts_resolve() */
#define SCRAM_SALT_LEN 16
#define SCRAM_ITERATIONS 4096 /* RFC 7677 4: at least 4096 */
#define LOCAL_MAX 64          /* RFC 5321 4.5.3.1.1 */
#define DOMAIN_MAX 253        /* RFC 1035 2.3.4, without the trailing dot */
#define LABEL_MAX 63
#define PASSWORD_MAX 512

/* Version 1. Migrations append further steps in migrate(). */
static const char schema_v1[] =
	"CREATE TABLE users (\n"
	"	id INTEGER PRIMARY KEY,\n"
	"	address TEXT NOT NULL UNIQUE COLLATE NOCASE,\n"
	"	hash TEXT NOT NULL,\n"
	"	scram_salt BLOB,\n"
	"	scram_iter INTEGER,\n"
	"	scram_stored BLOB,\n"
	"	scram_server BLOB,\n"
	"	created INTEGER NOT NULL\n"
	");\n"
	"CREATE TABLE aliases (\n"
	"	alias TEXT NOT NULL COLLATE NOCASE,\n"
	"	target TEXT NOT NULL COLLATE NOCASE,\n"
	"	PRIMARY KEY (alias, target)\n"
	");\n"
	"CREATE INDEX aliases_target ON aliases (target);\n"
	"PRAGMA user_version = 1;\n";

/* Version 2: APOP shared secrets (RFC 1939 7), kept apart from the password
 * hash because they must be stored readable: only accounts given one with
 * `tern user apop` can use APOP. */
static const char schema_v2[] =
	"CREATE TABLE apop_secrets (\n"
	"	user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,\n"
	"	secret TEXT NOT NULL\n"
	");\n"
	"PRAGMA user_version = 2;\n";

struct accounts {
	sqlite3 *db;
};

struct strvec {
	char **v;
	size_t n, cap;
};

static void strvec_push(struct strvec *sv, char *s)
{
	if (sv->n == sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 8;
		sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	sv->v[sv->n++] = s;
}

static bool strvec_has_ci(const struct strvec *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++)
		if (ascii_strcasecmp(sv->v[i], s) == 0)
			return true;
	return false;
}

static void strvec_free(struct strvec *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

static void set_err(char **err_r, const char *fmt, ...) ATTR_FORMAT(2, 3);
static void set_err(char **err_r, const char *fmt, ...)
{
	if (!err_r)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		panic("out of memory");
	va_end(ap);
	free(*err_r);
	*err_r = s;
}

static int db_fail(struct accounts *a, char **err_r, const char *what)
{
	set_err(err_r, "database error (%s): %s", what, sqlite3_errmsg(a->db));
	return -1;
}

static sqlite3_stmt *prep(struct accounts *a, const char *sql, char **err_r)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_fail(a, err_r, "prepare");
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

static int exec(struct accounts *a, const char *sql, char **err_r)
{
	if (sqlite3_exec(a->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(a, err_r, sql);
	return 0;
}

static int begin(struct accounts *a, char **err_r)
{
	return exec(a, "BEGIN IMMEDIATE", err_r);
}

static int commit(struct accounts *a, char **err_r)
{
	if (exec(a, "COMMIT", err_r) < 0) {
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

static int rollback(struct accounts *a)
{
	sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* Runs a statement with text parameters and no result rows; returns the number
 * of changed rows, or -1. */
static int run(struct accounts *a, const char *sql, const char *p1, const char *p2,
	       char **err_r)
{
	sqlite3_stmt *st = prep(a, sql, err_r);
	if (!st)
		return -1;
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_TRANSIENT);
	if (p2)
		sqlite3_bind_text(st, 2, p2, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(a, err_r, "write");
	return sqlite3_changes(a->db);
}

/* ---- address syntax ---- */

/* Strict UTF-8 (RFC 3629) without C0/C1 controls; used for the non-ASCII
 * parts of addresses (RFC 6531 allows UTF-8 in both parts). */
static bool utf8_seq_ok(const unsigned char *p, size_t n, size_t *used)
{
	unsigned char c = p[0];
	size_t len;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return false;
	if (n < len)
		return false;
	for (size_t k = 1; k < len; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return false;
		cp = cp << 6 | (p[k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp <= 0x9f)
		return false;
	*used = len;
	return true;
}

/* RFC 5322 3.2.3 atext, minus '/' (it would be a path separator in maildirs). */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-=?^_`{|}~", c) != NULL;
}

/* local part: dot-atom (RFC 5321 4.1.2) of atext or UTF-8, 1..64 octets */
static bool local_valid(const unsigned char *p, size_t n)
{
	if (n == 0 || n > LOCAL_MAX || p[0] == '.' || p[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n;) {
		size_t used = 1;
		if (p[i] == '.') {
			if (p[i - 1] == '.')
				return false;
		} else if (p[i] >= 0x80) {
			if (!utf8_seq_ok(p + i, n - i, &used))
				return false;
		} else if (!is_atext(p[i])) {
			return false;
		}
		i += used;
	}
	return true;
}

/* domain: labels of letters, digits, hyphens (not at the ends) or UTF-8 */
static bool domain_valid(const unsigned char *p, size_t n)
{
	if (n == 0 || n > DOMAIN_MAX)
		return false;
	size_t start = 0;
	while (start <= n) {
		const unsigned char *dot = memchr(p + start, '.', n - start);
		size_t end = dot ? (size_t)(dot - p) : n;
		size_t l = end - start;
		if (l == 0 || l > LABEL_MAX || p[start] == '-' || p[end - 1] == '-')
			return false;
		for (size_t i = start; i < end;) {
			size_t used = 1;
			unsigned char c = p[i];
			if (c >= 0x80) {
				if (!utf8_seq_ok(p + i, end - i, &used))
					return false;
			} else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				     (c >= '0' && c <= '9') || c == '-')) {
				return false;
			}
			i += used;
		}
		if (!dot)
			break;
		start = end + 1;
	}
	return true;
}

/* Validated storage form (domain lowercased), malloc'd; NULL if invalid. */
static char *address_normalize(const char *addr)
{
	if (!addr)
		return NULL;
	size_t n = strnlen(addr, LOCAL_MAX + 1 + DOMAIN_MAX + 1);
	if (n > LOCAL_MAX + 1 + DOMAIN_MAX)
		return NULL;
	const char *at = memrchr(addr, '@', n);
	if (!at)
		return NULL;
	size_t ll = (size_t)(at - addr);
	if (!local_valid((const unsigned char *)addr, ll) ||
	    !domain_valid((const unsigned char *)at + 1, n - ll - 1))
		return NULL;
	char *out = xstrdup(addr);
	ascii_lower(out + ll + 1);
	return out;
}

/* ---- open / schema ---- */

static int migrate(struct accounts *a, char **err_r)
{
	if (begin(a, err_r) < 0)
		return -1;
	sqlite3_stmt *st = prep(a, "PRAGMA user_version", err_r);
	if (!st)
		return rollback(a);
	int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	if (version < 0) {
		db_fail(a, err_r, "user_version");
		return rollback(a);
	}
	if (version > SCHEMA_VERSION) {
		set_err(err_r, "accounts.db has schema version %d, newer than this tern (%d)",
			version, SCHEMA_VERSION);
		return rollback(a);
	}
	if (version < 1 && exec(a, schema_v1, err_r) < 0)
		return rollback(a);
	if (version < 2 && exec(a, schema_v2, err_r) < 0)
		return rollback(a);
	return commit(a, err_r);
}

struct accounts *accounts_open(const char *data_dir, char **err_r)
{
	if (mkdir_p(data_dir, 0700) < 0) {
		set_err(err_r, "mkdir(%s): %s", data_dir, strerror(errno));
		return NULL;
	}
	char *path = xasprintf("%s/accounts.db", data_dir);
	/* Create it ourselves so hashes are never world-readable; SQLite gives
	 * the -wal and -shm files the same mode. Only a file we create is
	 * opened and closed here: close(2) of any descriptor for an existing
	 * database drops every POSIX lock this process holds on it, including
	 * those of another handle's SQLite connection (the server has several),
	 * and another process could then reset the WAL under that connection. */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0) {
		close(fd); /* new: nobody can hold locks on it yet */
	} else if (errno != EEXIST) {
		set_err(err_r, "open(%s): %s", path, strerror(errno));
		free(path);
		return NULL;
	} else {
		struct stat sb;
		if (lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
			set_err(err_r, "%s: not a regular file", path);
			free(path);
			return NULL;
		}
	}
	struct accounts *a = xcalloc(1, sizeof(*a));
	int rc = sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		set_err(err_r, "sqlite3_open(%s): %s", path,
			a->db ? sqlite3_errmsg(a->db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(a->db, 5000);
	sqlite3_extended_result_codes(a->db, 1);
	if (exec(a, "PRAGMA journal_mode=WAL", err_r) < 0 ||
	    exec(a, "PRAGMA foreign_keys=ON", err_r) < 0 || migrate(a, err_r) < 0)
		goto fail;
	free(path);
	return a;
fail:
	free(path);
	accounts_close(&a);
	return NULL;
}

void accounts_close(struct accounts **ap)
{
	struct accounts *a = *ap;
	if (!a)
		return;
	sqlite3_close_v2(a->db);
	free(a);
	*ap = NULL;
}

/* ---- lookups (no transaction of their own) ---- */

/* 1 and *canon_r (if not NULL) when addr is a user, 0 if not, -1 on error. */
static int user_lookup(struct accounts *a, const char *addr, char **canon_r, char **err_r)
{
	sqlite3_stmt *st = prep(a, "SELECT address FROM users WHERE address = ?", err_r);
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st), r;
	if (rc == SQLITE_ROW) {
		if (canon_r)
			*canon_r = xstrdup((const char *)sqlite3_column_text(st, 0));
		r = 1;
	} else if (rc == SQLITE_DONE) {
		r = 0;
	} else {
		r = db_fail(a, err_r, "read");
	}
	sqlite3_finalize(st);
	return r;
}

/* Targets of alias addr in insertion order into *tg; -1 on error. */
static int alias_targets(struct accounts *a, const char *addr, struct strvec *tg, char **err_r)
{
	sqlite3_stmt *st =
		prep(a, "SELECT target FROM aliases WHERE alias = ? ORDER BY rowid", err_r);
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_TRANSIENT);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		strvec_push(tg, xstrdup((const char *)sqlite3_column_text(st, 0)));
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(a, err_r, "read");
	return 0;
}

static int alias_exists(struct accounts *a, const char *addr, char **err_r)
{
	sqlite3_stmt *st = prep(a, "SELECT 1 FROM aliases WHERE alias = ? LIMIT 1", err_r);
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_fail(a, err_r, "read");
}

/* Depth-first expansion. path holds the aliases being expanded (loop check),
 * out the canonical users found (no duplicates). */
static int resolve_rec(struct accounts *a, const char *addr, unsigned depth, struct strvec *path,
		       struct strvec *out, char **err_r)
{
	char *canon = NULL;
	int r = user_lookup(a, addr, &canon, err_r);
	if (r < 0)
		return -1;
	if (r > 0) {
		if (strvec_has_ci(out, canon))
			free(canon);
		else
			strvec_push(out, canon);
		return 0;
	}
	struct strvec tg = { 0 };
	if (alias_targets(a, addr, &tg, err_r) < 0)
		return -1;
	if (tg.n == 0) /* unknown (a dangling target is skipped) */
		return 0;
	int ret = 0;
	if (strvec_has_ci(path, addr)) {
		set_err(err_r, "alias loop at %s", addr);
		ret = -1;
	} else if (depth >= ALIAS_MAX_DEPTH) {
		set_err(err_r, "aliases nested deeper than %d at %s", ALIAS_MAX_DEPTH, addr);
		ret = -1;
	} else {
		strvec_push(path, xstrdup(addr));
		for (size_t i = 0; i < tg.n && ret == 0; i++)
			ret = resolve_rec(a, tg.v[i], depth + 1, path, out, err_r);
		free(path->v[--path->n]);
	}
	strvec_free(&tg);
	return ret;
}

static int resolve_core(struct accounts *a, const char *address, struct strvec *out, char **err_r)
{
	struct strvec path = { 0 };
	int r = resolve_rec(a, address, 0, &path, out, err_r);
	strvec_free(&path);
	return r;
}

/* Delete alias entries whose target is neither a user nor an alias any more,
 * until nothing changes (an emptied alias disappears, and so on upwards). */
static int prune_dangling(struct accounts *a, char **err_r)
{
	for (int i = 0; i <= ALIAS_MAX_DEPTH + 1; i++) {
		int n = run(a,
			    "DELETE FROM aliases WHERE target NOT IN (SELECT address FROM users)"
			    " AND target NOT IN (SELECT alias FROM aliases)",
			    NULL, NULL, err_r);
		if (n <= 0)
			return n;
	}
	return 0;
}

/* ---- users ---- */

static int user_insert(struct accounts *a, const char *addr, const char *hash,
		       const uint8_t *salt, const uint8_t *stored, const uint8_t *server,
		       char **err_r)
{
	if (begin(a, err_r) < 0)
		return -1;
	int r = user_lookup(a, addr, NULL, err_r);
	if (r != 0) {
		if (r > 0)
			set_err(err_r, "user exists");
		return rollback(a);
	}
	r = alias_exists(a, addr, err_r);
	if (r != 0) {
		if (r > 0)
			set_err(err_r, "address is an alias");
		return rollback(a);
	}
	sqlite3_stmt *st = prep(a,
				"INSERT INTO users (address, hash, scram_salt, scram_iter,"
				" scram_stored, scram_server, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
				err_r);
	if (!st)
		return rollback(a);
	sqlite3_bind_text(st, 1, addr, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, hash, -1, SQLITE_TRANSIENT);
	if (salt) {
		sqlite3_bind_blob(st, 3, salt, SCRAM_SALT_LEN, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 4, SCRAM_ITERATIONS);
		sqlite3_bind_blob(st, 5, stored, 32, SQLITE_TRANSIENT);
		sqlite3_bind_blob(st, 6, server, 32, SQLITE_TRANSIENT);
	}
	sqlite3_bind_int64(st, 7, time_unix());
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			set_err(err_r, "user exists");
		else
			db_fail(a, err_r, "insert user");
		return rollback(a);
	}
	return commit(a, err_r);
}

/* New hash and SCRAM keys for password; -1 with *err_r if it cannot be used. */
static int make_creds(const char *password, char **hash_r, uint8_t salt[SCRAM_SALT_LEN],
		      uint8_t stored[32], uint8_t server[32], char **err_r)
{
	if (!password || !*password) {
		set_err(err_r, "empty password");
		return -1;
	}
	if (strlen(password) >= PASSWORD_MAX) {
		set_err(err_r, "password too long (max %d octets)", PASSWORD_MAX - 1);
		return -1;
	}
	*hash_r = passwd_hash(password);
	if (!*hash_r) {
		set_err(err_r, "cannot hash password");
		return -1;
	}
	random_bytes(salt, SCRAM_SALT_LEN);
	scram_derive(password, salt, SCRAM_SALT_LEN, SCRAM_ITERATIONS, stored, server);
	return 0;
}

int accounts_user_add(struct accounts *a, const char *address, const char *password,
		      char **err_r)
{
	char *addr = address_normalize(address);
	if (!addr) {
		set_err(err_r, "bad address");
		return -1;
	}
	char *hash = NULL;
	uint8_t salt[SCRAM_SALT_LEN], stored[32], server[32];
	int r = make_creds(password, &hash, salt, stored, server, err_r);
	if (r == 0)
		r = user_insert(a, addr, hash, salt, stored, server, err_r);
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	free(hash);
	free(addr);
	return r;
}

int accounts_user_add_hash(struct accounts *a, const char *address, const char *hash,
			   char **err_r)
{
	char *addr = address_normalize(address);
	if (!addr) {
		set_err(err_r, "bad address");
		return -1;
	}
	int r = -1;
	if (!passwd_hash_supported(hash))
		set_err(err_r, "unsupported password hash");
	else
		r = user_insert(a, addr, hash, NULL, NULL, NULL, err_r);
	free(addr);
	return r;
}

int accounts_user_del(struct accounts *a, const char *address, char **err_r)
{
	if (begin(a, err_r) < 0)
		return -1;
	int n = run(a, "DELETE FROM users WHERE address = ?", address, NULL, err_r);
	if (n <= 0) {
		if (n == 0)
			set_err(err_r, "no such user");
		return rollback(a);
	}
	if (run(a, "DELETE FROM aliases WHERE target = ?", address, NULL, err_r) < 0 ||
	    prune_dangling(a, err_r) < 0)
		return rollback(a);
	return commit(a, err_r);
}

int accounts_user_passwd(struct accounts *a, const char *address, const char *password,
			 char **err_r)
{
	char *hash = NULL;
	uint8_t salt[SCRAM_SALT_LEN], stored[32], server[32];
	if (make_creds(password, &hash, salt, stored, server, err_r) < 0)
		return -1;
	int r = -1;
	sqlite3_stmt *st = prep(a,
				"UPDATE users SET hash = ?, scram_salt = ?, scram_iter = ?,"
				" scram_stored = ?, scram_server = ? WHERE address = ?",
				err_r);
	if (st) {
		sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
		sqlite3_bind_blob(st, 2, salt, SCRAM_SALT_LEN, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, SCRAM_ITERATIONS);
		sqlite3_bind_blob(st, 4, stored, 32, SQLITE_TRANSIENT);
		sqlite3_bind_blob(st, 5, server, 32, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 6, address, -1, SQLITE_TRANSIENT);
		int rc = sqlite3_step(st);
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			db_fail(a, err_r, "update user");
		else if (sqlite3_changes(a->db) == 0)
			set_err(err_r, "no such user");
		else
			r = 0;
	}
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	free(hash);
	return r;
}

int accounts_user_list(struct accounts *a, void (*cb)(const char *address, void *ctx), void *ctx,
		       char **err_r)
{
	sqlite3_stmt *st = prep(a, "SELECT address FROM users ORDER BY address", err_r);
	if (!st)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb((const char *)sqlite3_column_text(st, 0), ctx);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(a, err_r, "list users");
	return 0;
}

bool accounts_user_exists(struct accounts *a, const char *address, char **canon_r)
{
	char *err = NULL;
	int r = user_lookup(a, address, canon_r, &err);
	if (r < 0)
		log_warnx("accounts_user_exists: %s", err);
	free(err);
	return r > 0;
}

char *accounts_first_user(struct accounts *a)
{
	sqlite3_stmt *st = prep(a, "SELECT address FROM users ORDER BY id LIMIT 1", NULL);
	if (!st)
		return NULL;
	char *r = NULL;
	if (sqlite3_step(st) == SQLITE_ROW)
		r = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return r;
}

unsigned accounts_user_count(struct accounts *a)
{
	sqlite3_stmt *st = prep(a, "SELECT count(*) FROM users", NULL);
	if (!st)
		return 0;
	unsigned n = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = (unsigned)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* ---- aliases ---- */

int accounts_alias_add(struct accounts *a, const char *alias, const char *const *targets,
		       size_t ntargets, char **err_r)
{
	if (ntargets == 0) {
		set_err(err_r, "no alias targets");
		return -1;
	}
	char *addr = address_normalize(alias);
	if (!addr) {
		set_err(err_r, "bad address");
		return -1;
	}
	if (begin(a, err_r) < 0) {
		free(addr);
		return -1;
	}
	int r = user_lookup(a, addr, NULL, err_r);
	if (r != 0) {
		if (r > 0)
			set_err(err_r, "address is a user");
		goto fail;
	}
	for (size_t i = 0; i < ntargets; i++) {
		char *t = address_normalize(targets[i]);
		if (!t) {
			set_err(err_r, "bad target address");
			goto fail;
		}
		r = user_lookup(a, t, NULL, err_r);
		if (r == 0)
			r = alias_exists(a, t, err_r);
		if (r == 0 && ascii_strcasecmp(t, addr) == 0) {
			set_err(err_r, "alias loop at %s", t);
			r = -1;
		} else if (r == 0) {
			/* local only: relaying to other domains comes later */
			set_err(err_r, "no such user or alias: %s", t);
			r = -1;
		}
		if (r > 0)
			r = run(a, "INSERT OR IGNORE INTO aliases (alias, target) VALUES (?, ?)",
				addr, t, err_r);
		free(t);
		if (r < 0)
			goto fail;
	}
	/* Refuse what would make resolution fail (loops, too deep). Only
	 * aliases that can reach addr are affected, but checking every alias
	 * that points at it would cost more than re-resolving the few chains
	 * that exist; check addr itself and everything that reaches it. */
	struct strvec users = { 0 }, pending = { 0 }, seen = { 0 };
	strvec_push(&pending, xstrdup(addr));
	r = 0;
	while (r == 0 && pending.n > 0) {
		char *cur = pending.v[--pending.n];
		if (strvec_has_ci(&seen, cur)) {
			free(cur);
			continue;
		}
		strvec_push(&seen, cur);
		r = resolve_core(a, cur, &users, err_r);
		strvec_free(&users);
		if (r < 0 || seen.n > 10000)
			break;
		sqlite3_stmt *st = prep(a, "SELECT alias FROM aliases WHERE target = ?", err_r);
		if (!st) {
			r = -1;
			break;
		}
		sqlite3_bind_text(st, 1, cur, -1, SQLITE_TRANSIENT);
		while (sqlite3_step(st) == SQLITE_ROW)
			strvec_push(&pending, xstrdup((const char *)sqlite3_column_text(st, 0)));
		sqlite3_finalize(st);
	}
	strvec_free(&pending);
	strvec_free(&seen);
	if (r < 0)
		goto fail;
	free(addr);
	return commit(a, err_r);
fail:
	free(addr);
	return rollback(a);
}

int accounts_alias_del(struct accounts *a, const char *alias, const char *const *targets,
		       size_t ntargets, char **err_r)
{
	if (begin(a, err_r) < 0)
		return -1;
	int r = alias_exists(a, alias, err_r);
	if (r <= 0) {
		if (r == 0)
			set_err(err_r, "no such alias");
		return rollback(a);
	}
	if (ntargets == 0) {
		if (run(a, "DELETE FROM aliases WHERE alias = ?", alias, NULL, err_r) < 0)
			return rollback(a);
	}
	for (size_t i = 0; i < ntargets; i++) {
		r = run(a, "DELETE FROM aliases WHERE alias = ? AND target = ?", alias,
			targets[i], err_r);
		if (r <= 0) {
			if (r == 0)
				set_err(err_r, "%s is not a target of this alias", targets[i]);
			return rollback(a);
		}
	}
	if (prune_dangling(a, err_r) < 0)
		return rollback(a);
	return commit(a, err_r);
}

int accounts_alias_list(struct accounts *a,
			void (*cb)(const char *alias, const char *target, void *ctx), void *ctx,
			char **err_r)
{
	sqlite3_stmt *st =
		prep(a, "SELECT alias, target FROM aliases ORDER BY alias, rowid", err_r);
	if (!st)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb((const char *)sqlite3_column_text(st, 0),
		   (const char *)sqlite3_column_text(st, 1), ctx);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_fail(a, err_r, "list aliases");
	return 0;
}

int accounts_resolve(struct accounts *a, const char *address, char ***users_r, char **err_r)
{
	*users_r = NULL;
	/* one read transaction: a consistent snapshot while we follow the chain */
	if (exec(a, "BEGIN", err_r) < 0)
		return -1;
	struct strvec out = { 0 };
	int r = resolve_core(a, address, &out, err_r);
	sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL);
	if (r < 0) {
		strvec_free(&out);
		return -1;
	}
	if (out.n == 0) {
		free(out.v);
		return 0;
	}
	if (out.n > INT_MAX) {
		strvec_free(&out);
		set_err(err_r, "too many recipients");
		return -1;
	}
	*users_r = out.v;
	return (int)out.n;
}

void accounts_free_list(char **list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		free(list[i]);
	free(list);
}

/* ---- credentials ---- */

static char *dummy_hash;
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_init(void)
{
	dummy_hash = passwd_hash("tern: no such user");
}

bool accounts_verify_password(struct accounts *a, const char *address, const char *password)
{
	if (!password)
		return false;
	sqlite3_stmt *st = prep(a, "SELECT hash FROM users WHERE address = ?", NULL);
	if (!st)
		return false;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	char *hash = NULL;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
		hash = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (!hash) {
		/* same work for unknown users, so timing does not tell them apart */
		pthread_once(&dummy_once, dummy_init);
		if (dummy_hash)
			(void)passwd_verify(password, dummy_hash);
		return false;
	}
	bool ok = passwd_verify(password, hash);
	free(hash);
	return ok;
}

bool accounts_scram_creds(struct accounts *a, const char *address, struct scram_creds *c)
{
	sqlite3_stmt *st = prep(a,
				"SELECT scram_salt, scram_iter, scram_stored, scram_server"
				" FROM users WHERE address = ?",
				NULL);
	if (!st)
		return false;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	bool ok = false;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB &&
	    sqlite3_column_type(st, 1) == SQLITE_INTEGER &&
	    sqlite3_column_type(st, 2) == SQLITE_BLOB &&
	    sqlite3_column_type(st, 3) == SQLITE_BLOB) {
		const void *salt = sqlite3_column_blob(st, 0);
		size_t slen = (size_t)sqlite3_column_bytes(st, 0);
		sqlite3_int64 iter = sqlite3_column_int64(st, 1);
		const void *stored = sqlite3_column_blob(st, 2);
		size_t stlen = (size_t)sqlite3_column_bytes(st, 2);
		const void *server = sqlite3_column_blob(st, 3);
		size_t svlen = (size_t)sqlite3_column_bytes(st, 3);
		if (slen >= 1 && slen <= sizeof(c->salt) && iter >= 1 && iter <= INT_MAX &&
		    stlen == 32 && svlen == 32) {
			memset(c, 0, sizeof(*c));
			memcpy(c->salt, salt, slen);
			c->salt_len = slen;
			c->iterations = (unsigned)iter;
			memcpy(c->stored_key, stored, 32);
			memcpy(c->server_key, server, 32);
			ok = true;
		}
	}
	sqlite3_finalize(st);
	return ok;
}

int accounts_apop_set(struct accounts *a, const char *address, const char *secret, char **err_r)
{
	if (secret && (!*secret || strlen(secret) > PASSWORD_MAX)) {
		set_err(err_r, "the APOP secret must be 1 to %d bytes", PASSWORD_MAX);
		return -1;
	}
	if (begin(a, err_r) < 0)
		return -1;
	int n = user_lookup(a, address, NULL, err_r);
	if (n == 0)
		set_err(err_r, "no such user: %s", address);
	if (n <= 0)
		return rollback(a);
	int r;
	if (secret)
		r = run(a,
			"INSERT OR REPLACE INTO apop_secrets (user_id, secret)"
			" SELECT id, ?2 FROM users WHERE address = ?1",
			address, secret, err_r);
	else
		r = run(a,
			"DELETE FROM apop_secrets WHERE user_id ="
			" (SELECT id FROM users WHERE address = ?1)",
			address, NULL, err_r);
	if (r < 0)
		return rollback(a);
	return commit(a, err_r);
}

bool accounts_apop_verify(struct accounts *a, const char *address, const char *timestamp,
			  const char *digest)
{
	sqlite3_stmt *st = prep(a,
				"SELECT s.secret FROM apop_secrets s JOIN users u ON u.id = s.user_id"
				" WHERE u.address = ?",
				NULL);
	if (!st)
		return false;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_TRANSIENT);
	char *secret = NULL;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
		secret = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (!secret || strlen(digest) != 32) {
		free(secret);
		return false;
	}
	/* RFC 1939 7: digest = MD5(timestamp || secret), 32 lowercase hex digits */
	char *in = xasprintf("%s%s", timestamp, secret);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	bool ok = EVP_Digest(in, strlen(in), md, &mdlen, EVP_md5(), NULL) == 1 && mdlen == 16;
	explicit_bzero(in, strlen(in));
	explicit_bzero(secret, strlen(secret));
	free(in);
	free(secret);
	if (!ok)
		return false;
	char hex[33], want[33];
	hex_encode(md, 16, hex);
	for (size_t i = 0; i < 32; i++)
		want[i] = ascii_tolower(digest[i]);
	want[32] = 0;
	return CRYPTO_memcmp(hex, want, 32) == 0;
}
