/* SPDX-License-Identifier: MIT */
/* The account store in a temporary directory: users, address syntax, case,
 * aliases (fan-out, chains, loops, conflicts, cleanup), resolution, password
 * and SCRAM credentials, hash import and schema versioning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "base/util.h"

struct fx {
	char dir[64];
	struct accounts *a;
	char *sha512; /* a cheap $6$ hash of "pw", for fast imports */
};

static char *make_sha512(const char *pw)
{
	char *salt = crypt_gensalt_ra("$6$", 5000, NULL, 0);
	assert_non_null(salt);
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	assert_non_null(cd);
	char *h = strdup(crypt_r(pw, salt, cd));
	free(cd);
	free(salt);
	return h;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-accounts.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	char *err = NULL;
	f->a = accounts_open(f->dir, &err);
	if (!f->a) {
		fprintf(stderr, "accounts_open: %s\n", err);
		return -1;
	}
	f->sha512 = make_sha512("pw");
	*state = f;
	return 0;
}

static void rm_db(const char *dir)
{
	static const char *const names[] = { "accounts.db", "accounts.db-wal",
					     "accounts.db-shm" };
	for (size_t i = 0; i < N_ELEMENTS(names); i++) {
		char *p = xasprintf("%s/%s", dir, names[i]);
		unlink(p);
		free(p);
	}
}

static int teardown(void **state)
{
	struct fx *f = *state;
	accounts_close(&f->a);
	rm_db(f->dir);
	rmdir(f->dir);
	free(f->sha512);
	free(f);
	return 0;
}

/* Adds users cheaply (imported hash). */
static void add_users(struct fx *f, const char *const *addrs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *err = NULL;
		if (accounts_user_add_hash(f->a, addrs[i], f->sha512, &err) < 0)
			fail_msg("add %s: %s", addrs[i], err);
	}
}

#define ASSERT_ERR(call, want)                                                                     \
	do {                                                                                       \
		char *err_ = NULL;                                                                 \
		assert_int_equal((call), -1);                                                      \
		assert_non_null(err_);                                                             \
		if (!strstr(err_, (want)))                                                         \
			fail_msg("error \"%s\" lacks \"%s\"", err_, (want));                       \
		free(err_);                                                                        \
	} while (0)

#define ASSERT_OK(call)                                                                            \
	do {                                                                                       \
		char *err_ = NULL;                                                                 \
		if ((call) != 0)                                                                   \
			fail_msg("%s: %s", #call, err_ ? err_ : "?");                              \
		assert_null(err_);                                                                 \
	} while (0)

struct list {
	char buf[1024];
};

static void list_cb(const char *address, void *ctx)
{
	struct list *l = ctx;
	size_t n = strlen(l->buf);
	snprintf(l->buf + n, sizeof(l->buf) - n, "%s;", address);
}

static void alias_cb(const char *alias, const char *target, void *ctx)
{
	struct list *l = ctx;
	size_t n = strlen(l->buf);
	snprintf(l->buf + n, sizeof(l->buf) - n, "%s>%s;", alias, target);
}

static void test_users(void **state)
{
	struct fx *f = *state;
	struct accounts *a = f->a;
	assert_int_equal(accounts_user_count(a), 0);
	assert_null(accounts_first_user(a));
	ASSERT_OK(accounts_user_add(a, "carol@example.org", "secret one", &err_));
	ASSERT_OK(accounts_user_add(a, "Bob@Example.ORG", "secret two", &err_));
	assert_int_equal(accounts_user_count(a), 2);
	/* duplicates, in any case */
	ASSERT_ERR(accounts_user_add(a, "carol@example.org", "x", &err_), "user exists");
	ASSERT_ERR(accounts_user_add(a, "CAROL@EXAMPLE.ORG", "x", &err_), "user exists");
	ASSERT_ERR(accounts_user_add_hash(a, "bob@example.org", f->sha512, &err_), "user exists");
	ASSERT_ERR(accounts_user_add(a, "dave@example.org", "", &err_), "empty password");
	ASSERT_ERR(accounts_user_add(a, "dave@example.org", NULL, &err_), "empty password");
	assert_int_equal(accounts_user_count(a), 2);

	/* local part kept as given, domain lowercased; lookups ignore case */
	char *canon = NULL;
	assert_true(accounts_user_exists(a, "BOB@example.org", &canon));
	assert_string_equal(canon, "Bob@example.org");
	free(canon);
	assert_true(accounts_user_exists(a, "carol@EXAMPLE.org", NULL));
	assert_false(accounts_user_exists(a, "carl@example.org", NULL));
	canon = accounts_first_user(a);
	assert_string_equal(canon, "carol@example.org");
	free(canon);

	struct list l = { "" };
	ASSERT_OK(accounts_user_list(a, list_cb, &l, &err_));
	assert_string_equal(l.buf, "Bob@example.org;carol@example.org;");

	/* passwords */
	assert_true(accounts_verify_password(a, "carol@example.org", "secret one"));
	assert_true(accounts_verify_password(a, "CAROL@example.org", "secret one"));
	assert_false(accounts_verify_password(a, "carol@example.org", "secret two"));
	assert_false(accounts_verify_password(a, "nobody@example.org", "secret one"));
	ASSERT_OK(accounts_user_passwd(a, "carol@Example.org", "new secret", &err_));
	assert_true(accounts_verify_password(a, "carol@example.org", "new secret"));
	assert_false(accounts_verify_password(a, "carol@example.org", "secret one"));
	ASSERT_ERR(accounts_user_passwd(a, "nobody@example.org", "x", &err_), "no such user");
	ASSERT_ERR(accounts_user_passwd(a, "carol@example.org", "", &err_), "empty password");

	/* delete */
	ASSERT_OK(accounts_user_del(a, "CAROL@example.org", &err_));
	ASSERT_ERR(accounts_user_del(a, "carol@example.org", &err_), "no such user");
	assert_false(accounts_user_exists(a, "carol@example.org", NULL));
	assert_false(accounts_verify_password(a, "carol@example.org", "new secret"));
	assert_int_equal(accounts_user_count(a), 1);
	canon = accounts_first_user(a);
	assert_string_equal(canon, "Bob@example.org");
	free(canon);
}

static void test_addresses(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
		"",
		"plain",
		"@example.org",
		"user@",
		"user@@example.org",
		"us@er@example.org",
		".user@example.org",
		"user.@example.org",
		"us..er@example.org",
		"us/er@example.org",
		"us er@example.org",
		"us\ter@example.org",
		"us\x7f" "er@example.org",
		"\"quoted\"@example.org",
		"us(er)@example.org",
		"user@-example.org",
		"user@example-.org",
		"user@exa_mple.org",
		"user@example..org",
		"user@.example.org",
		"user@example.org.",
		"user@[192.0.2.1]",
		"user@exa mple.org",
		"us\xc3" "er@example.org",      /* truncated UTF-8 */
		"us\xc2\x85" "er@example.org",  /* U+0085, a C1 control */
		"us\xc0\xafr@example.org",      /* overlong */
		"user@ex\xff" "ample.org",
		/* 65-octet local part */
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org",
		/* 64-octet label */
		"u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
	};
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		char *err = NULL;
		if (accounts_user_add_hash(f->a, bad[i], f->sha512, &err) != -1)
			fail_msg("accepted bad address %zu \"%s\"", i, bad[i]);
		assert_string_equal(err, "bad address");
		free(err);
		err = NULL;
		const char *t = "x@example.org";
		assert_int_equal(accounts_alias_add(f->a, bad[i], &t, 1, &err), -1);
		free(err);
	}
	static const struct {
		const char *in, *stored;
	} good[] = {
		{ "a@b", "a@b" },
		{ "first.last@Example.COM", "first.last@example.com" },
		{ "o'neil+tag@mx-1.example.org", "o'neil+tag@mx-1.example.org" },
		{ "!#$%&'*+-=?^_`{|}~@example.org", "!#$%&'*+-=?^_`{|}~@example.org" },
		{ "J\xc3\xb6rg@B\xc3\xbc" "cher.example", "J\xc3\xb6rg@b\xc3\xbc" "cher.example" },
		{ "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.test",
		  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.test" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.org",
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.org" },
		{ "u@123.example", "u@123.example" },
	};
	for (size_t i = 0; i < N_ELEMENTS(good); i++) {
		char *err = NULL;
		if (accounts_user_add_hash(f->a, good[i].in, f->sha512, &err) != 0)
			fail_msg("refused good address %zu \"%s\": %s", i, good[i].in, err);
		char *canon = NULL;
		assert_true(accounts_user_exists(f->a, good[i].in, &canon));
		assert_string_equal(canon, good[i].stored);
		free(canon);
	}
	assert_int_equal(accounts_user_count(f->a), N_ELEMENTS(good));
}

static void expect_resolve(struct accounts *a, const char *addr, const char *want)
{
	char **users = NULL, *err = NULL;
	int n = accounts_resolve(a, addr, &users, &err);
	if (n < 0)
		fail_msg("resolve %s: %s", addr, err);
	char got[1024] = "";
	for (int i = 0; i < n; i++) {
		size_t l = strlen(got);
		snprintf(got + l, sizeof(got) - l, "%s;", users[i]);
	}
	accounts_free_list(users, (size_t)n);
	assert_string_equal(got, want);
}

static void test_aliases(void **state)
{
	struct fx *f = *state;
	struct accounts *a = f->a;
	static const char *const users[] = { "ann@example.org", "Ben@example.org",
					     "cid@example.org" };
	add_users(f, users, N_ELEMENTS(users));

	const char *team[] = { "ann@example.org", "ben@EXAMPLE.org" };
	ASSERT_OK(accounts_alias_add(a, "Team@Example.org", team, 2, &err_));
	/* fan-out to an alias, a user, and a duplicate of one already reached */
	const char *all[] = { "team@example.org", "cid@example.org", "ANN@example.org" };
	ASSERT_OK(accounts_alias_add(a, "all@example.org", all, 3, &err_));

	expect_resolve(a, "ann@example.org", "ann@example.org;");
	expect_resolve(a, "BEN@example.org", "Ben@example.org;");
	expect_resolve(a, "team@example.org", "ann@example.org;Ben@example.org;");
	expect_resolve(a, "ALL@example.org", "ann@example.org;Ben@example.org;cid@example.org;");
	expect_resolve(a, "nobody@example.org", "");
	char **none = (char **)1;
	char *err = NULL;
	assert_int_equal(accounts_resolve(a, "nobody@example.org", &none, &err), 0);
	assert_null(none);
	assert_null(err);

	/* adding an existing target again is harmless */
	ASSERT_OK(accounts_alias_add(a, "team@example.org", team, 1, &err_));
	struct list l = { "" };
	ASSERT_OK(accounts_alias_list(a, alias_cb, &l, &err_));
	assert_string_equal(l.buf, "all@example.org>team@example.org;"
				   "all@example.org>cid@example.org;"
				   "all@example.org>ANN@example.org;"
				   "Team@example.org>ann@example.org;"
				   "Team@example.org>ben@example.org;");

	/* conflicts and unknown targets */
	ASSERT_ERR(accounts_alias_add(a, "ann@example.org", all, 1, &err_), "address is a user");
	ASSERT_ERR(accounts_user_add_hash(a, "TEAM@example.org", f->sha512, &err_),
		   "address is an alias");
	const char *unknown[] = { "cid@example.org", "zed@example.org" };
	ASSERT_ERR(accounts_alias_add(a, "x@example.org", unknown, 2, &err_), "no such user");
	const char *remote[] = { "someone@elsewhere.test" };
	ASSERT_ERR(accounts_alias_add(a, "x@example.org", remote, 1, &err_), "no such user");
	const char *badt[] = { "not an address" };
	ASSERT_ERR(accounts_alias_add(a, "x@example.org", badt, 1, &err_), "bad target");
	ASSERT_ERR(accounts_alias_add(a, "x@example.org", NULL, 0, &err_), "no alias targets");
	/* nothing of the failed adds remains */
	expect_resolve(a, "x@example.org", "");

	/* removing one target, then the last one, then a whole alias */
	const char *ann[] = { "ANN@example.org" };
	ASSERT_OK(accounts_alias_del(a, "team@example.org", ann, 1, &err_));
	expect_resolve(a, "all@example.org", "Ben@example.org;cid@example.org;ann@example.org;");
	ASSERT_ERR(accounts_alias_del(a, "team@example.org", ann, 1, &err_), "not a target");
	ASSERT_ERR(accounts_alias_del(a, "nope@example.org", NULL, 0, &err_), "no such alias");
	ASSERT_OK(accounts_alias_del(a, "all@example.org", NULL, 0, &err_));
	expect_resolve(a, "all@example.org", "");
	expect_resolve(a, "team@example.org", "Ben@example.org;");
}

static void test_alias_cleanup(void **state)
{
	struct fx *f = *state;
	struct accounts *a = f->a;
	static const char *const users[] = { "u1@example.org", "u2@example.org" };
	add_users(f, users, N_ELEMENTS(users));
	const char *t1[] = { "U1@example.org" };
	/* targets spelled in another case than the users must survive pruning */
	const char *t12[] = { "u1@example.org", "U2@example.org" };
	const char *tinner[] = { "inner@example.org" };
	ASSERT_OK(accounts_alias_add(a, "inner@example.org", t1, 1, &err_));
	ASSERT_OK(accounts_alias_add(a, "outer@example.org", tinner, 1, &err_));
	ASSERT_OK(accounts_alias_add(a, "both@example.org", t12, 2, &err_));
	ASSERT_OK(accounts_alias_add(a, "mixed@example.org", tinner, 1, &err_));
	ASSERT_OK(accounts_alias_add(a, "mixed@example.org", &t12[1], 1, &err_));
	expect_resolve(a, "outer@example.org", "u1@example.org;");
	expect_resolve(a, "mixed@example.org", "u1@example.org;u2@example.org;");
	const char *tm[] = { "MIXED@example.org" };
	ASSERT_OK(accounts_alias_add(a, "keep@example.org", tm, 1, &err_));

	/* deleting u1 removes every alias entry that can only lead to it */
	ASSERT_OK(accounts_user_del(a, "u1@EXAMPLE.org", &err_));
	struct list l = { "" };
	ASSERT_OK(accounts_alias_list(a, alias_cb, &l, &err_));
	assert_string_equal(l.buf, "both@example.org>U2@example.org;"
				   "keep@example.org>MIXED@example.org;"
				   "mixed@example.org>U2@example.org;");
	expect_resolve(a, "outer@example.org", "");
	expect_resolve(a, "both@example.org", "u2@example.org;");

	/* deleting an alias removes the entries pointing to it */
	ASSERT_OK(accounts_alias_add(a, "top@example.org", (const char *[]){ "both@example.org" },
				     1, &err_));
	ASSERT_OK(accounts_alias_del(a, "both@example.org", NULL, 0, &err_));
	expect_resolve(a, "top@example.org", "");
	expect_resolve(a, "mixed@example.org", "u2@example.org;");
}

static void test_alias_chains_and_loops(void **state)
{
	struct fx *f = *state;
	struct accounts *a = f->a;
	static const char *const users[] = { "end@example.org" };
	add_users(f, users, 1);
	/* l0 -> end, l1 -> l0, ...: ten alias levels are fine, the eleventh is not */
	char prev[64] = "end@example.org";
	for (int i = 0; i <= 10; i++) {
		char name[64];
		snprintf(name, sizeof(name), "l%d@example.org", i);
		const char *t = prev;
		char *err = NULL;
		int r = accounts_alias_add(a, name, &t, 1, &err);
		if (i < 10) {
			if (r != 0)
				fail_msg("level %d: %s", i, err);
		} else {
			assert_int_equal(r, -1);
			assert_non_null(strstr(err, "deeper"));
			free(err);
		}
		snprintf(prev, sizeof(prev), "%s", name);
	}
	expect_resolve(a, "l9@example.org", "end@example.org;");
	expect_resolve(a, "l10@example.org", "");

	/* loops are refused at creation */
	const char *self[] = { "l0@example.org" };
	ASSERT_ERR(accounts_alias_add(a, "L0@example.org", self, 1, &err_), "loop");
	const char *up[] = { "l5@example.org" };
	ASSERT_ERR(accounts_alias_add(a, "l2@example.org", up, 1, &err_), "loop");
	expect_resolve(a, "l5@example.org", "end@example.org;");

	/* a diamond is not a loop */
	const char *d[] = { "l1@example.org", "l0@example.org" };
	ASSERT_OK(accounts_alias_add(a, "diamond@example.org", d, 2, &err_));
	expect_resolve(a, "diamond@example.org", "end@example.org;");

	/* a loop written behind our back is detected by resolve */
	char *path = xasprintf("%s/accounts.db", f->dir);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db,
				      "INSERT INTO aliases VALUES ('l0@example.org', "
				      "'L3@example.org')",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	free(path);
	char **list = NULL, *err = NULL;
	assert_int_equal(accounts_resolve(a, "l3@example.org", &list, &err), -1);
	assert_null(list);
	assert_non_null(strstr(err, "loop"));
	free(err);
	err = NULL;
	assert_int_equal(accounts_resolve(a, "diamond@example.org", &list, &err), -1);
	free(err);
}

static void test_credentials(void **state)
{
	struct fx *f = *state;
	struct accounts *a = f->a;
	ASSERT_OK(accounts_user_add(a, "user@example.org", "pencil", &err_));
	struct scram_creds c;
	memset(&c, 0xaa, sizeof(c));
	assert_true(accounts_scram_creds(a, "USER@example.org", &c));
	assert_int_equal(c.salt_len, 16);
	assert_int_equal(c.iterations, 4096);
	uint8_t stored[32], server[32];
	scram_derive("pencil", c.salt, c.salt_len, c.iterations, stored, server);
	assert_memory_equal(stored, c.stored_key, 32);
	assert_memory_equal(server, c.server_key, 32);

	/* a new password gives a new salt and keys */
	ASSERT_OK(accounts_user_passwd(a, "user@example.org", "crayon", &err_));
	struct scram_creds c2;
	assert_true(accounts_scram_creds(a, "user@example.org", &c2));
	assert_memory_not_equal(c.salt, c2.salt, 16);
	scram_derive("crayon", c2.salt, c2.salt_len, c2.iterations, stored, server);
	assert_memory_equal(stored, c2.stored_key, 32);
	assert_false(accounts_scram_creds(a, "nobody@example.org", &c2));

	/* imported hashes: verify works, no SCRAM keys */
	ASSERT_OK(accounts_user_add_hash(a, "old@example.org", f->sha512, &err_));
	assert_true(accounts_verify_password(a, "old@example.org", "pw"));
	assert_false(accounts_verify_password(a, "old@example.org", "pw2"));
	assert_false(accounts_scram_creds(a, "old@example.org", &c2));
	char *y = passwd_hash("why");
	ASSERT_OK(accounts_user_add_hash(a, "y@example.org", y, &err_));
	assert_true(accounts_verify_password(a, "y@example.org", "why"));
	free(y);
	static const char *const bad[] = { "", "*", "!", "!$6$x$y", "plaintext", "$1$", "$y$" };
	for (size_t i = 0; i < N_ELEMENTS(bad); i++)
		ASSERT_ERR(accounts_user_add_hash(a, "imp@example.org", bad[i], &err_),
			   "unsupported");
	/* a password set later adds SCRAM keys */
	ASSERT_OK(accounts_user_passwd(a, "old@example.org", "fresh", &err_));
	assert_true(accounts_scram_creds(a, "old@example.org", &c2));
	assert_true(accounts_verify_password(a, "old@example.org", "fresh"));
}

static void test_persistence_and_schema(void **state)
{
	struct fx *f = *state;
	static const char *const users[] = { "keep@example.org" };
	add_users(f, users, 1);
	accounts_close(&f->a);
	assert_null(f->a);

	char *path = xasprintf("%s/accounts.db", f->dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	char *err = NULL;
	f->a = accounts_open(f->dir, &err);
	assert_non_null(f->a);
	assert_true(accounts_user_exists(f->a, "keep@example.org", NULL));
	accounts_close(&f->a);

	/* version and journal mode, seen from outside */
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 2);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	/* a file from a newer tern is refused */
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	f->a = accounts_open(f->dir, &err);
	assert_null(f->a);
	assert_non_null(strstr(err, "newer"));
	free(err);
	free(path);

	/* unusable directory */
	err = NULL;
	assert_null(accounts_open("/proc/no/such/dir", &err));
	assert_non_null(err);
	free(err);
}

/* accounts_open() creates the file itself (mode 0600) but never opens and
 * closes an existing one (that would drop the POSIX locks of the server's
 * other connections): a symlink in its place is refused, not followed. */
static void test_open_refuses_symlink(void **state)
{
	struct fx *f = *state;
	char *err = NULL;
	char *path = xasprintf("%s/accounts.db", f->dir);
	/* a symlink in place of the database is refused */
	char *dir2 = xasprintf("%s/sub", f->dir);
	assert_int_equal(mkdir(dir2, 0700), 0);
	char *link = xasprintf("%s/accounts.db", dir2);
	assert_int_equal(symlink(path, link), 0);
	assert_null(accounts_open(dir2, &err));
	assert_non_null(err);
	free(err);
	unlink(link);
	rmdir(dir2);
	free(link);
	free(dir2);
	free(path);
}

/* RFC 1939 7: the example digest for timestamp <1896.697170952@dbc.mtview.ca.us>
 * and secret "tanstaaf". */
static void test_apop(void **state)
{
	struct fx *f = *state;
	char *err = NULL;
	const char *ts = "<1896.697170952@dbc.mtview.ca.us>";
	const char *digest = "c4c9334bac560ecc979e58001b3e22fb";
	assert_int_equal(accounts_user_add(f->a, "mrose@example.org", "pw", &err), 0);
	assert_false(accounts_apop_verify(f->a, "mrose@example.org", ts, digest));
	assert_int_equal(accounts_apop_set(f->a, "mrose@example.org", "tanstaaf", &err), 0);
	assert_true(accounts_apop_verify(f->a, "mrose@example.org", ts, digest));
	assert_true(accounts_apop_verify(f->a, "MROSE@example.org", ts,
					 "C4C9334BAC560ECC979E58001B3E22FB"));
	assert_false(accounts_apop_verify(f->a, "mrose@example.org", ts,
					  "c4c9334bac560ecc979e58001b3e22fc"));
	assert_false(accounts_apop_verify(f->a, "mrose@example.org", "<other@x>", digest));
	assert_false(accounts_apop_verify(f->a, "mrose@example.org", ts, "c4c9"));
	assert_false(accounts_apop_verify(f->a, "nobody@example.org", ts, digest));
	/* the password is not the APOP secret, and vice versa */
	assert_false(accounts_verify_password(f->a, "mrose@example.org", "tanstaaf"));
	assert_int_equal(accounts_apop_set(f->a, "nobody@example.org", "x", &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(accounts_apop_set(f->a, "mrose@example.org", "", &err), -1);
	free(err);
	err = NULL;
	/* removing the secret, and deleting the user, drop APOP */
	assert_int_equal(accounts_apop_set(f->a, "mrose@example.org", NULL, &err), 0);
	assert_false(accounts_apop_verify(f->a, "mrose@example.org", ts, digest));
	assert_int_equal(accounts_apop_set(f->a, "mrose@example.org", "tanstaaf", &err), 0);
	assert_int_equal(accounts_user_del(f->a, "mrose@example.org", &err), 0);
	assert_int_equal(accounts_user_add(f->a, "mrose@example.org", "pw", &err), 0);
	assert_false(accounts_apop_verify(f->a, "mrose@example.org", ts, digest));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alias_cleanup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alias_chains_and_loops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persistence_and_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refuses_symlink, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
