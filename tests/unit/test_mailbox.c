/* SPDX-License-Identifier: MIT */
/* The IMAP mailbox store (store/mailbox.h): names and their Maildir++
 * folders, a new account's mailboxes, CREATE/DELETE/RENAME/SUBSCRIBE/LIST,
 * APPEND, SELECT/EXAMINE and \Recent, sync with files that other programs
 * add, rename or remove, STORE, EXPUNGE, COPY/MOVE, STATUS and the mtime
 * shortcut. Each test works in its own mkdtemp account. Crashes and
 * concurrent processes are in test_mailbox_crash.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "store/maildir.h"
#include "store/maildrop.h"
#include "store/mailbox.h"

static char *root;
static struct mstore *st;

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/tern-mbox-XXXXXX";
	if (mkdtemp(tmpl) == NULL)
		return -1;
	root = xstrdup(tmpl);
	struct mbox_err err;
	return mstore_open(root, &st, &err);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static int teardown(void **state)
{
	(void)state;
	mstore_close(&st);
	int r = nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(root);
	root = NULL;
	return r;
}

/* Files in root/<dir>/<sub> (count). */
static int count_files(const char *dir, const char *sub)
{
	char *p = xasprintf("%s/%s%s%s", root, dir, *dir ? "/" : "", sub);
	DIR *d = opendir(p);
	free(p);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* The name of the file in root/<dir>/cur whose base starts with prefix. */
static char *find_file(const char *dir, const char *sub, const char *base)
{
	char *p = xasprintf("%s/%s%s%s", root, dir, *dir ? "/" : "", sub);
	DIR *d = opendir(p);
	free(p);
	if (!d)
		return NULL;
	char *r = NULL;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, base, strlen(base)) == 0)
			r = xstrdup(e->d_name);
	closedir(d);
	return r;
}

static const char msg_fmt[] = "From: Alice <alice@example.org>\r\n"
			      "To: bob@example.org\r\n"
			      "Subject: %s\r\n"
			      "Message-ID: <%s@example.org>\r\n"
			      "\r\n"
			      "Hello %s\r\n";

static uint32_t append(const char *mbox, const char *tag, unsigned flags, const char *kw)
{
	char *msg = xasprintf(msg_fmt, tag, tag, tag);
	struct mbox_append *a;
	struct mbox_err err;
	assert_int_equal(mstore_append_begin(st, mbox, &a, &err), 0);
	/* Written in two pieces split inside a CRLF. */
	size_t n = strlen(msg), half = strstr(msg, "\r\n") - msg + 1;
	assert_int_equal(mbox_append_write(a, msg, half, &err), 0);
	assert_int_equal(mbox_append_write(a, msg + half, n - half, &err), 0);
	const char *kws[1] = { kw };
	uint32_t uv = 0, uid = 0;
	assert_int_equal(mbox_append_commit(&a, flags, kws, kw ? 1 : 0, 1700000000, 60, &uv, &uid,
					    &err),
			 0);
	assert_null(a);
	assert_true(uv != 0);
	assert_true(uid != 0);
	free(msg);
	return uid;
}

/* Deliver like SMTP does (store/maildir.c) into the Maildir at root/dir. */
static void deliver(const char *dir, const char *tag)
{
	char *msg = xasprintf(msg_fmt, tag, tag, tag);
	/* Storage form: LF line ends. */
	char *o = msg;
	for (char *p = msg; *p; p++)
		if (*p != '\r')
			*o++ = *p;
	*o = '\0';
	char *path = xasprintf("%s%s%s", root, *dir ? "/" : "", dir);
	struct delivery *d = delivery_new("test.host");
	char *e = NULL;
	assert_int_equal(delivery_add_target(d, path, NULL, &e), 0);
	assert_int_equal(delivery_write(d, msg, strlen(msg)), 0);
	assert_int_equal(delivery_commit_sync(&d, &e), 0);
	free(path);
	free(msg);
}

static struct mbox *sel(const char *name, bool ro)
{
	struct mbox *m;
	struct mbox_err err;
	int r = mbox_open(st, name, ro, &m, &err);
	if (r != 0)
		fprintf(stderr, "mbox_open(%s): %s\n", name, err.msg);
	assert_int_equal(r, 0);
	return m;
}

static struct mbox_info *list_find(struct mbox_info *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/* ---- names ---------------------------------------------------------------- */

static void test_names(void **state)
{
	(void)state;
	static const struct {
		const char *in, *canon, *dir;
	} ok[] = {
		{ "INBOX", "INBOX", "" },
		{ "inbox", "INBOX", "" },
		{ "InBoX/sub", "INBOX/sub", ".INBOX.sub" },
		{ "Sent", "Sent", ".Sent" },
		{ "Lists/a.b", "Lists/a.b", ".Lists.a&AC4-b" },
		{ "a&b", "a&b", ".a&-b" },
		{ "Entw\xc3\xbcrfe", "Entw\xc3\xbcrfe", ".Entw&APw-rfe" },
		{ "\xe5\x8f\xb0\xe5\x8c\x97", "\xe5\x8f\xb0\xe5\x8c\x97", ".&U,BTFw-" },
		{ "x\xf0\x9f\x98\x80y", "x\xf0\x9f\x98\x80y", ".x&2D3eAA-y" },
		{ "a b/c", "a b/c", ".a b.c" },
		{ "...x", "...x", ".&AC4ALgAu-x" },
		{ "inboxes", "inboxes", ".inboxes" },
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char *c = mbox_name_canon(ok[i].in, strlen(ok[i].in));
		assert_non_null(c);
		assert_string_equal(c, ok[i].canon);
		char *d = mbox_name_to_dir(c);
		assert_string_equal(d, ok[i].dir);
		char *back = mbox_dir_to_name(d);
		assert_non_null(back);
		assert_string_equal(back, ok[i].canon);
		free(c);
		free(d);
		free(back);
	}
	static const char *const bad[] = {
		"", "/", "a/", "/a", "a//b", ".", "..", "a/../b", "a/./b", "a\tb", "a\x7f",
		"a%", "*", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "a\xc2\x85",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_null(mbox_name_canon(bad[i], strlen(bad[i])));
	char big[MBOX_NAME_MAX + 2];
	memset(big, 'a', sizeof big);
	assert_null(mbox_name_canon(big, MBOX_NAME_MAX + 1));
	char *c = mbox_name_canon(big, MBOX_NAME_MAX);
	assert_non_null(c);
	free(c);
	/* Folder names we would not write are not read as mailboxes. */
	static const char *const baddir[] = { ".a&AGE-", ".&", ".&Zm9v", ".a..b", "x", ".inbox",
					      ".a&-&-." };
	for (size_t i = 0; i < sizeof baddir / sizeof baddir[0]; i++) {
		char *n = mbox_dir_to_name(baddir[i]);
		if (n)
			fprintf(stderr, "accepted %s as %s\n", baddir[i], n);
		assert_null(n);
	}
	assert_string_equal(mbox_special_name(MBOX_SPECIAL_TRASH), "\\Trash");
	assert_null(mbox_special_name(MBOX_SPECIAL_NONE));
}

/* ---- account -------------------------------------------------------------- */

static void test_new_account(void **state)
{
	(void)state;
	struct mbox_info *v;
	size_t n;
	struct mbox_err err;
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_int_equal(n, 6);
	assert_string_equal(v[0].name, "INBOX");
	static const struct {
		const char *name;
		enum mbox_special sp;
	} want[] = {
		{ "INBOX", MBOX_SPECIAL_NONE },    { "Drafts", MBOX_SPECIAL_DRAFTS },
		{ "Sent", MBOX_SPECIAL_SENT },     { "Trash", MBOX_SPECIAL_TRASH },
		{ "Junk", MBOX_SPECIAL_JUNK },     { "Archive", MBOX_SPECIAL_ARCHIVE },
	};
	for (size_t i = 0; i < 6; i++) {
		struct mbox_info *e = list_find(v, n, want[i].name);
		assert_non_null(e);
		assert_int_equal(e->special, want[i].sp);
		assert_int_equal(e->attrs, MBOX_ATTR_SUBSCRIBED | MBOX_ATTR_HASNOCHILDREN);
		if (i > 0) {
			char *p = xasprintf("%s/.%s/maildirfolder", root, want[i].name);
			assert_int_equal(access(p, F_OK), 0);
			free(p);
		}
	}
	mbox_info_free(v, n);
	/* The index: WAL, schema version. */
	char *p = xasprintf("%s/%s", root, MBOX_INDEX_NAME);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 1);
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	sqlite3_close(db);
	free(p);
	/* Reopening changes nothing (no second set of special mailboxes). */
	mstore_close(&st);
	assert_int_equal(mstore_open(root, &st, &err), 0);
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_int_equal(n, 6);
	mbox_info_free(v, n);
}

static void test_create_delete_list(void **state)
{
	(void)state;
	struct mbox_err err;
	struct mbox_info *v;
	size_t n;
	assert_int_equal(mstore_create(st, "Work/2026/Q4", MBOX_SPECIAL_NONE, &err), 0);
	assert_int_equal(mstore_create(st, "Work/2026/Q4", MBOX_SPECIAL_NONE, &err), -1);
	assert_int_equal(err.code, MBOX_E_ALREADYEXISTS);
	assert_int_equal(mstore_create(st, "inbox", MBOX_SPECIAL_NONE, &err), -1);
	assert_int_equal(err.code, MBOX_E_ALREADYEXISTS);
	assert_int_equal(mstore_create(st, "a//b", MBOX_SPECIAL_NONE, &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	assert_int_equal(mstore_create(st, "../x", MBOX_SPECIAL_NONE, &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	/* 100 x "ü" is 200 bytes of UTF-8 but 271 on disk: too long for a folder. */
	char longname[256] = "";
	for (int i = 0; i < 100; i++)
		strcat(longname, "\xc3\xbc");
	assert_int_equal(mstore_create(st, longname, MBOX_SPECIAL_NONE, &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	longname[180] = '\0';
	assert_int_equal(mstore_create(st, longname, MBOX_SPECIAL_NONE, &err), 0);
	assert_int_equal(mstore_delete(st, longname, &err), 0);
	assert_int_equal(mstore_create(st, "Work-x", MBOX_SPECIAL_NONE, &err), 0);
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	/* Parents were created as real mailboxes; children follow parents. */
	struct mbox_info *w = list_find(v, n, "Work");
	assert_non_null(w);
	assert_int_equal(w->attrs, MBOX_ATTR_HASCHILDREN);
	assert_int_equal(list_find(v, n, "Work/2026")->attrs, MBOX_ATTR_HASCHILDREN);
	assert_int_equal(list_find(v, n, "Work/2026/Q4")->attrs, MBOX_ATTR_HASNOCHILDREN);
	assert_int_equal(list_find(v, n, "Work-x")->attrs, MBOX_ATTR_HASNOCHILDREN);
	size_t iw = (size_t)(w - v);
	assert_string_equal(v[iw + 1].name, "Work/2026");
	assert_string_equal(v[iw + 2].name, "Work/2026/Q4");
	mbox_info_free(v, n);
	char *p = xasprintf("%s/.Work.2026.Q4/cur", root);
	assert_int_equal(access(p, F_OK), 0);
	free(p);

	/* DELETE rules (RFC 9051 6.3.5). */
	assert_int_equal(mstore_delete(st, "INBOX", &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	assert_int_equal(mstore_delete(st, "Nope", &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	append("Work", "w1", 0, NULL);
	struct mbox_status s0;
	assert_int_equal(mstore_status(st, "Work", 0, &s0, &err), 0);
	assert_int_equal(s0.messages, 1);
	assert_int_equal(mstore_delete(st, "Work", &err), 0); /* has children: \Noselect */
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_int_equal(list_find(v, n, "Work")->attrs,
			 MBOX_ATTR_NOSELECT | MBOX_ATTR_HASCHILDREN);
	mbox_info_free(v, n);
	p = xasprintf("%s/.Work", root);
	assert_int_equal(access(p, F_OK), -1);
	free(p);
	struct mbox *m;
	assert_int_equal(mbox_open(st, "Work", false, &m, &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	assert_int_equal(mstore_status(st, "Work", 0, &s0, &err), -1);
	struct mbox_append *a;
	assert_int_equal(mstore_append_begin(st, "Work", &a, &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	assert_int_equal(mstore_delete(st, "Work", &err), -1);
	assert_int_equal(err.code, MBOX_E_HASCHILDREN);
	/* CREATE of a \Noselect name makes it a mailbox again, with a new UIDVALIDITY. */
	assert_int_equal(mstore_create(st, "Work", MBOX_SPECIAL_NONE, &err), 0);
	struct mbox_status s1;
	assert_int_equal(mstore_status(st, "Work", 0, &s1, &err), 0);
	assert_int_equal(s1.messages, 0);
	assert_true(s1.uidvalidity > s0.uidvalidity);
	assert_int_equal(mstore_delete(st, "Work", &err), 0);
	assert_int_equal(mstore_delete(st, "Work/2026/Q4", &err), 0);
	assert_int_equal(mstore_delete(st, "Work/2026", &err), 0);
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	/* Work: \Noselect without inferiors now; DELETE removes the name. */
	assert_int_equal(list_find(v, n, "Work")->attrs,
			 MBOX_ATTR_NOSELECT | MBOX_ATTR_HASNOCHILDREN);
	mbox_info_free(v, n);
	assert_int_equal(mstore_delete(st, "Work", &err), 0);
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_null(list_find(v, n, "Work"));
	assert_int_equal(n, 7);
	mbox_info_free(v, n);
	/* No deleted folder is left behind. */
	assert_null(find_file("", ".", "tern-trash-"));
}

static void test_subscribe(void **state)
{
	(void)state;
	struct mbox_err err;
	struct mbox_info *v;
	size_t n;
	assert_int_equal(mstore_subscribe(st, "Ghost/Child", true, &err), 0);
	assert_int_equal(mstore_subscribe(st, "Junk", false, &err), 0);
	assert_int_equal(mstore_subscribe(st, "bad//name", true, &err), -1);
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	struct mbox_info *g = list_find(v, n, "Ghost/Child");
	assert_non_null(g);
	assert_true(g->attrs & MBOX_ATTR_NONEXISTENT);
	assert_true(g->attrs & MBOX_ATTR_SUBSCRIBED);
	assert_null(list_find(v, n, "Ghost")); /* nothing implied by a subscription */
	assert_int_equal(list_find(v, n, "Junk")->attrs & MBOX_ATTR_SUBSCRIBED, 0);
	mbox_info_free(v, n);
	/* Subscriptions survive DELETE (RFC 9051 6.3.9). */
	assert_int_equal(mstore_create(st, "Tmp", MBOX_SPECIAL_NONE, &err), 0);
	assert_int_equal(mstore_subscribe(st, "Tmp", true, &err), 0);
	assert_int_equal(mstore_delete(st, "Tmp", &err), 0);
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_int_equal(list_find(v, n, "Tmp")->attrs,
			 MBOX_ATTR_SUBSCRIBED | MBOX_ATTR_NONEXISTENT | MBOX_ATTR_NOSELECT);
	mbox_info_free(v, n);
}

/* ---- messages --------------------------------------------------------------- */

static void test_append_select(void **state)
{
	(void)state;
	struct mbox_err err;
	assert_int_equal(append("INBOX", "one", MBOX_SEEN | MBOX_FLAGGED, "$Label1"), 1);
	assert_int_equal(append("INBOX", "two", 0, NULL), 2);
	assert_int_equal(append("INBOX", "three", MBOX_DRAFT | MBOX_DELETED | MBOX_ANSWERED, NULL),
			 3);
	assert_int_equal(count_files("", "cur"), 3);
	assert_int_equal(count_files("", "tmp"), 0);
	struct mbox *m = sel("INBOX", false);
	size_t n;
	const uint32_t *u = mbox_uids(m, &n);
	assert_int_equal(n, 3);
	assert_int_equal(u[0], 1);
	assert_int_equal(u[2], 3);
	assert_int_equal(mbox_uidnext(m), 4);
	/* Appended messages were \Recent for nobody yet: this session claims them. */
	assert_true(mbox_is_recent(m, 1) && mbox_is_recent(m, 3));
	struct mbox_meta meta;
	assert_int_equal(mbox_meta(m, 1, MBOX_W_ENVELOPE | MBOX_W_BODYSTRUCTURE | MBOX_W_BODY |
					     MBOX_W_MIME,
				   &meta, &err),
			 0);
	assert_int_equal(meta.flags, MBOX_SEEN | MBOX_FLAGGED);
	assert_string_equal(meta.keywords, "$Label1");
	assert_int_equal(meta.internaldate, 1700000000);
	assert_int_equal(meta.tz_min, 60);
	char *expect = xasprintf(msg_fmt, "one", "one", "one");
	assert_int_equal(meta.wire_size, strlen(expect));
	assert_int_equal(meta.size, strlen(expect) - 6); /* CRLF stored as LF */
	assert_non_null(meta.envelope);
	assert_non_null(strstr(meta.envelope, "\"one\""));
	assert_non_null(strstr(meta.envelope, "\"alice\" \"example.org\""));
	assert_non_null(meta.bodystructure);
	if (!strstr(meta.bodystructure, "\"text\" \"plain\""))
		fprintf(stderr, "%s\n", meta.bodystructure);
	assert_non_null(strstr(meta.bodystructure, "\"text\" \"plain\""));
	assert_non_null(meta.body);
	assert_non_null(meta.mime);
	assert_true(meta.mime_len > 0);
	/* File name: base,S=,W=:2,FS (info letters in ASCII order). */
	char *f = find_file("", "cur", meta.base);
	assert_non_null(f);
	char *want = xasprintf("%s,S=%llu,W=%llu:2,FS", meta.base, (unsigned long long)meta.size,
			       (unsigned long long)meta.wire_size);
	assert_string_equal(f, want);
	free(want);
	free(f);
	/* The file holds LF line ends. */
	int fd;
	assert_int_equal(mbox_msg_open(m, 1, &fd, &err), 0);
	char buf[512];
	ssize_t r = read(fd, buf, sizeof buf);
	close(fd);
	assert_int_equal(r, (ssize_t)meta.size);
	assert_null(memchr(buf, '\r', (size_t)r));
	mbox_meta_free(&meta);
	free(expect);
	assert_int_equal(mbox_meta(m, 3, 0, &meta, &err), 0);
	assert_null(meta.envelope);
	f = find_file("", "cur", meta.base);
	assert_non_null(strstr(f, ":2,DRT"));
	free(f);
	mbox_meta_free(&meta);
	assert_int_equal(mbox_meta(m, 4, 0, &meta, &err), -1);
	assert_int_equal(err.code, MBOX_E_EXPUNGED);
	assert_int_equal(mbox_msg_open(m, 9, &fd, &err), -1);
	assert_int_equal(err.code, MBOX_E_EXPUNGED);
	char **kw;
	size_t nkw;
	uint32_t fu;
	assert_int_equal(mbox_first_unseen(m, &fu, &err), 0);
	assert_int_equal(fu, 2);
	assert_int_equal(mbox_keywords(m, &kw, &nkw, &err), 0);
	assert_int_equal(nkw, 1);
	assert_string_equal(kw[0], "$Label1");
	mbox_strv_free(kw, nkw);
	mbox_close(&m);

	/* A second session: same UIDs, nothing recent any more. */
	m = sel("INBOX", false);
	assert_false(mbox_is_recent(m, 1));
	mbox_close(&m);

	/* APPEND to a missing mailbox: TRYCREATE. A bad keyword: refused. */
	struct mbox_append *a;
	assert_int_equal(mstore_append_begin(st, "Missing", &a, &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	assert_int_equal(mstore_append_begin(st, "Sent", &a, &err), 0);
	assert_int_equal(mbox_append_write(a, "x\r", 2, &err), 0);
	const char *badkw[1] = { "a(b" };
	uint32_t uv, uid;
	assert_int_equal(mbox_append_commit(&a, 0, badkw, 1, 0, 0, &uv, &uid, &err), -1);
	assert_int_equal(count_files(".Sent", "tmp"), 0);
	assert_int_equal(count_files(".Sent", "cur"), 0);
	/* Abort leaves nothing behind; a lone CR at the end is kept. */
	assert_int_equal(mstore_append_begin(st, "Sent", &a, &err), 0);
	mbox_append_abort(&a);
	assert_null(a);
	assert_int_equal(count_files(".Sent", "tmp"), 0);
	assert_int_equal(mstore_append_begin(st, "Sent", &a, &err), 0);
	assert_int_equal(mbox_append_write(a, "a\r\r\nb\r", 6, &err), 0);
	assert_int_equal(mbox_append_commit(&a, 0, NULL, 0, 0, 0, &uv, &uid, &err), 0);
	m = sel("Sent", true);
	assert_int_equal(mbox_uidvalidity(m), uv);
	assert_int_equal(mbox_msg_open(m, uid, &fd, &err), 0);
	r = read(fd, buf, sizeof buf);
	close(fd);
	assert_int_equal(r, 5);
	assert_memory_equal(buf, "a\r\nb\r", 5);
	assert_int_equal(mbox_special_use(m), MBOX_SPECIAL_SENT);
	mbox_close(&m);
}

/* MULTIAPPEND (RFC 3502): finished messages stay invisible in tmp/ until
 * mbox_append_commit_all makes all of them visible at once; a failure or
 * an abort leaves nothing. */
static void test_append_all_or_nothing(void **state)
{
	(void)state;
	struct mbox_err err;
	struct mbox_append *v[3];
	char *msg = xasprintf(msg_fmt, "m", "m", "m");
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mstore_append_begin(st, "Sent", &v[i], &err), 0);
		assert_int_equal(mbox_append_write(v[i], msg, strlen(msg), &err), 0);
		assert_int_equal(mbox_append_finish(v[i], i == 1 ? MBOX_SEEN : 0, NULL, 0,
						    1700000000 + i, 0, &err),
				 0);
	}
	/* durable but invisible */
	assert_int_equal(count_files(".Sent", "tmp"), 3);
	assert_int_equal(count_files(".Sent", "cur"), 0);
	struct mbox_status stt;
	assert_int_equal(mstore_status(st, "Sent", 0, &stt, &err), 0);
	assert_int_equal(stt.messages, 0);
	/* a bad keyword fails finish but keeps the handle (the caller aborts) */
	struct mbox_append *bad;
	assert_int_equal(mstore_append_begin(st, "Sent", &bad, &err), 0);
	const char *badkw[1] = { "a(b" };
	assert_int_equal(mbox_append_finish(bad, 0, badkw, 1, 0, 0, &err), -1);
	assert_non_null(bad);
	mbox_append_abort(&bad);
	/* an unfinished handle in the set: nothing is committed */
	struct mbox_append *w[2];
	assert_int_equal(mstore_append_begin(st, "Sent", &w[0], &err), 0);
	assert_int_equal(mbox_append_write(w[0], msg, strlen(msg), &err), 0);
	assert_int_equal(mbox_append_finish(w[0], 0, NULL, 0, 0, 0, &err), 0);
	assert_int_equal(mstore_append_begin(st, "Sent", &w[1], &err), 0);
	uint32_t uv = 0, uids[3] = { 0 };
	assert_int_equal(mbox_append_commit_all(w, 2, &uv, uids, &err), -1);
	assert_null(w[0]);
	assert_null(w[1]);
	assert_int_equal(count_files(".Sent", "tmp"), 3);
	/* all three at once, consecutive UIDs in order */
	assert_int_equal(mbox_append_commit_all(v, 3, &uv, uids, &err), 0);
	for (int i = 0; i < 3; i++)
		assert_null(v[i]);
	assert_true(uv != 0);
	assert_int_equal(uids[1], uids[0] + 1);
	assert_int_equal(uids[2], uids[0] + 2);
	assert_int_equal(count_files(".Sent", "tmp"), 0);
	assert_int_equal(count_files(".Sent", "cur"), 3);
	struct mbox *m = sel("Sent", true);
	struct mbox_meta meta;
	assert_int_equal(mbox_meta(m, uids[1], 0, &meta, &err), 0);
	assert_int_equal(meta.flags, MBOX_SEEN);
	assert_int_equal(meta.internaldate, 1700000001);
	mbox_meta_free(&meta);
	mbox_close(&m);
	/* the mailbox vanishes before the commit: NONEXISTENT, nothing left */
	assert_int_equal(mstore_create(st, "Gone", MBOX_SPECIAL_NONE, &err), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(mstore_append_begin(st, "Gone", &v[i], &err), 0);
		assert_int_equal(mbox_append_write(v[i], msg, strlen(msg), &err), 0);
		assert_int_equal(mbox_append_finish(v[i], 0, NULL, 0, 0, 0, &err), 0);
	}
	assert_int_equal(mstore_delete(st, "Gone", &err), 0);
	assert_int_equal(mbox_append_commit_all(v, 2, &uv, uids, &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	assert_null(find_file("", ".", ".Gone"));
	free(msg);
}

/* An APPEND killed before its commit leaves its file in the folder's tmp/
 * (the server's start-up sweep only looks at the account's own tmp/, the
 * one SMTP delivers through): opening the store removes tmp/ files of the
 * folders older than the Maildir 36 hours (by ctime: a finished APPEND's
 * mtime is its INTERNALDATE), and leaves a live one alone. */
static void test_stale_folder_tmp_swept(void **state)
{
	(void)state;
	struct mbox_err err;
	char *msg = xasprintf(msg_fmt, "m", "m", "m");
	/* a MULTIAPPEND to Sent that never committed (the process died) */
	struct mbox_append *a;
	assert_int_equal(mstore_append_begin(st, "Sent", &a, &err), 0);
	assert_int_equal(mbox_append_write(a, msg, strlen(msg), &err), 0);
	assert_int_equal(mbox_append_finish(a, 0, NULL, 0, 1000000000, 0, &err), 0);
	char *stale = xasprintf("%s/.Sent/tmp/stale-1", root);
	char *p = xasprintf("%s/.Sent/tmp", root);
	DIR *d = opendir(p);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.') {
			char *from = xasprintf("%s/%s", p, e->d_name);
			assert_int_equal(link(from, stale), 0);
			free(from);
		}
	if (d)
		closedir(d);
	free(p);
	assert_int_equal(count_files(".Sent", "tmp"), 2);
	/* a fresh file survives the sweep (the live handle a) */
	struct mstore *st2;
	assert_int_equal(mstore_open(root, &st2, &err), 0);
	mstore_close(&st2);
	assert_int_equal(count_files(".Sent", "tmp"), 2);
	/* 36 hours later (the test moves the cut-off instead of the clock) */
	mbox_test_tmp_max_age(-10);
	assert_int_equal(mstore_open(root, &st2, &err), 0);
	mbox_test_tmp_max_age(0);
	mstore_close(&st2);
	assert_int_equal(count_files(".Sent", "tmp"), 0);
	mbox_append_abort(&a);
	free(stale);
	free(msg);
}

/* Expunge records in the index (sqlite3 directly). */
static int count_expunge_records(void)
{
	char *db = xasprintf("%s/%s", root, MBOX_INDEX_NAME);
	sqlite3 *h = NULL;
	int n = -1;
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_stmt *q = NULL;
		if (sqlite3_prepare_v2(h, "SELECT count(*) FROM expunged", -1, &q, NULL) ==
			    SQLITE_OK &&
		    sqlite3_step(q) == SQLITE_ROW)
			n = sqlite3_column_int(q, 0);
		sqlite3_finalize(q);
	}
	sqlite3_close(h);
	free(db);
	return n;
}

/* Pruning: records at or below the smallest seen modseq of the open
 * sessions go; a session that has not synced yet keeps its records. */
static void test_prune_expunged(void **state)
{
	(void)state;
	struct mbox_err err;
	assert_int_equal(mstore_create(st, "Prune", MBOX_SPECIAL_NONE, &err), 0);
	uint32_t u[4];
	for (int i = 0; i < 4; i++)
		u[i] = append("Prune", "p", 0, NULL);
	struct mbox *a = sel("Prune", false), *b = sel("Prune", true);
	assert_int_equal(mbox_store(a, u, 2, MBOX_OP_ADD, MBOX_DELETED, NULL, 0, 0, NULL, NULL,
				    &err),
			 0);
	uint32_t *gone = NULL;
	size_t n_gone = 0;
	assert_int_equal(mbox_expunge(a, NULL, 0, &gone, &n_gone, &err), 0);
	assert_int_equal(n_gone, 2);
	free(gone);
	int before = count_expunge_records();
	assert_true(before >= 2);
	/* b has not synced: the floor is its open point, nothing of this goes */
	uint64_t floor = mbox_seen_modseq(a) < mbox_seen_modseq(b) ? mbox_seen_modseq(a)
								   : mbox_seen_modseq(b);
	assert_int_equal(mbox_prune_expunged(a, floor, &err), 0);
	assert_int_equal(count_expunge_records(), before);
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(b, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 2);
	assert_int_equal(ch.expunged[0], u[0]);
	mbox_changes_free(&ch);
	assert_int_equal(mbox_sync(a, 0, &ch, &err), 0);
	mbox_changes_free(&ch);
	/* both have seen everything: the records go */
	floor = mbox_seen_modseq(a) < mbox_seen_modseq(b) ? mbox_seen_modseq(a)
							  : mbox_seen_modseq(b);
	assert_int_equal(mbox_prune_expunged(b, floor, &err), 0);
	assert_int_equal(count_expunge_records(), before - 2);
	/* later sessions and syncs are unaffected */
	struct mbox *c = sel("Prune", false);
	size_t n = 0;
	mbox_uids(c, &n);
	assert_int_equal(n, 2);
	assert_int_equal(mbox_sync(c, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 0);
	mbox_changes_free(&ch);
	assert_int_equal(mbox_sync(b, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 0);
	mbox_changes_free(&ch);
	mbox_close(&a);
	mbox_close(&b);
	mbox_close(&c);
}

static void test_delivery_and_recent(void **state)
{
	(void)state;
	struct mbox_err err;
	append("INBOX", "appended", 0, NULL);
	struct mbox *m1 = sel("INBOX", false);
	deliver("", "d1");
	deliver("", "d2");
	assert_int_equal(count_files("", "new"), 2);
	struct mbox_status s;
	assert_int_equal(mstore_status(st, "INBOX", 0, &s, &err), 0);
	assert_int_equal(s.messages, 3);
	assert_int_equal(s.recent, 2);
	assert_int_equal(s.unseen, 3);
	assert_int_equal(s.uidnext, 4);
	/* STATUS adopted the files (new/ -> cur/) without claiming \Recent. */
	assert_int_equal(count_files("", "new"), 0);
	assert_int_equal(count_files("", "cur"), 3);
	/* An EXAMINE session sees them but does not take \Recent. */
	struct mbox *ro = sel("INBOX", true);
	assert_false(mbox_is_recent(ro, 2));
	mbox_close(&ro);
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m1, 0, &ch, &err), 0);
	assert_int_equal(ch.n_added, 2);
	assert_int_equal(ch.added[0], 2);
	assert_int_equal(ch.added[1], 3);
	assert_int_equal(ch.n_recent_added, 2);
	assert_int_equal(ch.n_expunged, 0);
	mbox_changes_free(&ch);
	/* Delivery order: d1 before d2. */
	struct mbox_meta meta;
	assert_int_equal(mbox_meta(m1, 2, MBOX_W_ENVELOPE, &meta, &err), 0);
	assert_non_null(strstr(meta.envelope, "\"d1\""));
	mbox_meta_free(&meta);
	/* Another session now sees them, not as \Recent. */
	struct mbox *m2 = sel("INBOX", false);
	assert_false(mbox_is_recent(m2, 2));
	assert_int_equal(mstore_status(st, "INBOX", 0, &s, &err), 0);
	assert_int_equal(s.recent, 0);
	/* Nothing changed: an empty sync. */
	assert_int_equal(mbox_sync(m2, 0, &ch, &err), 0);
	assert_int_equal(ch.n_added + ch.n_expunged + ch.n_changed, 0);
	mbox_changes_free(&ch);
	mbox_close(&m1);
	mbox_close(&m2);
}

static void test_external_changes(void **state)
{
	(void)state;
	struct mbox_err err;
	for (int i = 0; i < 4; i++) {
		char tag[8];
		snprintf(tag, sizeof tag, "m%d", i);
		append("INBOX", tag, 0, NULL);
	}
	struct mbox *m = sel("INBOX", false);
	struct mbox_meta m1, m2;
	assert_int_equal(mbox_meta(m, 1, 0, &m1, &err), 0);
	assert_int_equal(mbox_meta(m, 2, 0, &m2, &err), 0);
	/* Another tool: marks 1 seen+trashed, removes 2, drops a file into cur/. */
	char *f1 = find_file("", "cur", m1.base);
	char *from = xasprintf("%s/cur/%s", root, f1);
	char *to = xasprintf("%s/cur/%s,S=1:2,ST", root, m1.base);
	assert_int_equal(rename(from, to), 0);
	free(from);
	free(to);
	free(f1);
	char *f2 = find_file("", "cur", m2.base);
	char *p2 = xasprintf("%s/cur/%s", root, f2);
	assert_int_equal(unlink(p2), 0);
	free(p2);
	free(f2);
	char *p3 = xasprintf("%s/cur/1.M2P3.other:2,F", root);
	FILE *fp = fopen(p3, "w");
	fputs("Subject: other\n\nbody\n", fp);
	fclose(fp);
	free(p3);
	/* A copy of message 3's file with the same base: a message of its own. */
	struct mbox_meta m3;
	assert_int_equal(mbox_meta(m, 3, 0, &m3, &err), 0);
	char *f3 = find_file("", "cur", m3.base);
	char *a3 = xasprintf("%s/cur/%s", root, f3);
	char *b3 = xasprintf("%s/new/%s", root, m3.base);
	assert_int_equal(link(a3, b3), 0);
	free(a3);
	free(b3);
	free(f3);

	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 1);
	assert_int_equal(ch.expunged[0], 2);
	assert_int_equal(ch.n_changed, 1);
	assert_int_equal(ch.changed[0].uid, 1);
	assert_int_equal(ch.changed[0].flags, MBOX_SEEN | MBOX_DELETED);
	assert_true(ch.changed[0].modseq > m1.modseq);
	assert_int_equal(ch.n_added, 2);
	assert_int_equal(ch.added[0], 5); /* "1.M2..." sorts before the fresh name */
	assert_int_equal(ch.added[1], 6);
	mbox_changes_free(&ch);
	struct mbox_meta m5;
	assert_int_equal(mbox_meta(m, 5, MBOX_W_ENVELOPE, &m5, &err), 0);
	assert_int_equal(m5.flags, MBOX_FLAGGED);
	assert_non_null(strstr(m5.envelope, "\"other\""));
	assert_int_equal(m5.wire_size, m5.size + 3);
	mbox_meta_free(&m5);
	struct mbox_meta m6;
	assert_int_equal(mbox_meta(m, 6, 0, &m6, &err), 0);
	assert_string_not_equal(m6.base, m3.base);
	mbox_meta_free(&m6);
	/* Reading message 1 still works (found by base name). */
	int fd;
	assert_int_equal(mbox_msg_open(m, 1, &fd, &err), 0);
	close(fd);
	assert_int_equal(count_files("", "new"), 0);
	assert_int_equal(count_files("", "cur"), 5);
	/* A file renamed again after the sync is still found by mbox_msg_open. */
	f1 = find_file("", "cur", m1.base);
	from = xasprintf("%s/cur/%s", root, f1);
	to = xasprintf("%s/cur/%s:2,", root, m1.base);
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(mbox_msg_open(m, 1, &fd, &err), 0);
	close(fd);
	free(from);
	free(to);
	free(f1);
	mbox_meta_free(&m1);
	mbox_meta_free(&m2);
	mbox_meta_free(&m3);
	mbox_close(&m);
}

static void test_store(void **state)
{
	(void)state;
	struct mbox_err err;
	append("INBOX", "a", 0, NULL);
	append("INBOX", "b", MBOX_SEEN, "Old");
	struct mbox *m = sel("INBOX", false);
	uint64_t ms0 = mbox_highestmodseq(m);
	uint32_t both[2] = { 1, 2 };
	const char *kw[2] = { "$Important", "old" };
	uint32_t *failed;
	size_t nf;
	assert_int_equal(mbox_store(m, both, 2, MBOX_OP_ADD, MBOX_DELETED | MBOX_DRAFT, kw, 2, 0,
				    &failed, &nf, &err),
			 0);
	assert_int_equal(nf, 0);
	struct mbox_meta a, b;
	assert_int_equal(mbox_meta(m, 1, 0, &a, &err), 0);
	assert_int_equal(mbox_meta(m, 2, 0, &b, &err), 0);
	assert_int_equal(a.flags, MBOX_DELETED | MBOX_DRAFT);
	assert_string_equal(a.keywords, "$Important old");
	assert_int_equal(b.flags, MBOX_DELETED | MBOX_DRAFT | MBOX_SEEN);
	assert_string_equal(b.keywords, "Old $Important"); /* case-insensitive: no "old" */
	assert_true(a.modseq > ms0 && b.modseq > a.modseq);
	char *f = find_file("", "cur", b.base);
	assert_non_null(strstr(f, ":2,DST"));
	free(f);
	/* Remove, replace. */
	const char *rm[1] = { "OLD" };
	assert_int_equal(
		mbox_store(m, both, 2, MBOX_OP_REMOVE, MBOX_DELETED, rm, 1, 0, NULL, NULL, &err), 0);
	uint32_t one = 1;
	assert_int_equal(mbox_store(m, &one, 1, MBOX_OP_REPLACE, MBOX_ANSWERED, NULL, 0, 0, NULL,
				    NULL, &err),
			 0);
	struct mbox_meta a2, b2;
	assert_int_equal(mbox_meta(m, 1, 0, &a2, &err), 0);
	assert_int_equal(mbox_meta(m, 2, 0, &b2, &err), 0);
	assert_int_equal(a2.flags, MBOX_ANSWERED);
	assert_string_equal(a2.keywords, "");
	assert_int_equal(b2.flags, MBOX_DRAFT | MBOX_SEEN);
	assert_string_equal(b2.keywords, "$Important");
	f = find_file("", "cur", a2.base);
	assert_non_null(strstr(f, ":2,R"));
	free(f);
	/* No change: no new modseq. */
	uint64_t before = mbox_highestmodseq(m);
	assert_int_equal(mbox_store(m, &one, 1, MBOX_OP_ADD, MBOX_ANSWERED, NULL, 0, 0, NULL, NULL,
				    &err),
			 0);
	struct mbox_meta a3;
	assert_int_equal(mbox_meta(m, 1, 0, &a3, &err), 0);
	assert_int_equal(a3.modseq, a2.modseq);
	(void)before;
	/* UNCHANGEDSINCE (RFC 7162 3.1.3): 1 changed after b2.modseq. */
	assert_true(a2.modseq > b2.modseq);
	assert_int_equal(mbox_store(m, both, 2, MBOX_OP_ADD, MBOX_FLAGGED, NULL, 0, b2.modseq,
				    &failed, &nf, &err),
			 0);
	assert_int_equal(nf, 1);
	assert_int_equal(failed[0], 1);
	free(failed);
	/* The sync reports what changed since this session's last look. */
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
	assert_int_equal(ch.n_changed, 2);
	assert_int_equal(ch.changed[0].flags, MBOX_ANSWERED);
	assert_int_equal(ch.changed[1].flags, MBOX_DRAFT | MBOX_SEEN | MBOX_FLAGGED);
	assert_string_equal(ch.changed[1].keywords, "$Important");
	mbox_changes_free(&ch);
	/* Limits and read-only. */
	const char *many[MBOX_KEYWORDS_MAX + 1];
	for (size_t i = 0; i <= MBOX_KEYWORDS_MAX; i++)
		many[i] = "k";
	assert_int_equal(mbox_store(m, &one, 1, MBOX_OP_ADD, 0, many, MBOX_KEYWORDS_MAX + 1, 0,
				    NULL, NULL, &err),
			 -1);
	assert_int_equal(err.code, MBOX_E_LIMIT);
	/* A STORE refused for one message changes no message at all. */
	char kwbuf[MBOX_KEYWORDS_MAX][8];
	const char *full[MBOX_KEYWORDS_MAX];
	for (size_t i = 0; i < MBOX_KEYWORDS_MAX; i++) {
		snprintf(kwbuf[i], sizeof kwbuf[i], "k%zu", i);
		full[i] = kwbuf[i];
	}
	uint32_t two = 2;
	assert_int_equal(mbox_store(m, &two, 1, MBOX_OP_REPLACE, 0, full, MBOX_KEYWORDS_MAX, 0,
				    NULL, NULL, &err),
			 0);
	struct mbox_meta a4;
	assert_int_equal(mbox_meta(m, 1, 0, &a4, &err), 0);
	char *f_before = find_file("", "cur", a4.base);
	const char *extra[1] = { "$One" };
	assert_int_equal(mbox_store(m, both, 2, MBOX_OP_ADD, MBOX_DELETED, extra, 1, 0, NULL, NULL,
				    &err),
			 -1);
	assert_int_equal(err.code, MBOX_E_LIMIT);
	struct mbox_meta a5;
	assert_int_equal(mbox_meta(m, 1, 0, &a5, &err), 0);
	assert_int_equal(a5.flags, a4.flags);
	assert_int_equal(a5.modseq, a4.modseq);
	char *f_after = find_file("", "cur", a4.base);
	assert_string_equal(f_before, f_after);
	free(f_before);
	free(f_after);
	mbox_meta_free(&a4);
	mbox_meta_free(&a5);
	const char *sys[1] = { "\\Seen" };
	assert_int_equal(mbox_store(m, &one, 1, MBOX_OP_ADD, 0, sys, 1, 0, NULL, NULL, &err), -1);
	struct mbox *ro = sel("INBOX", true);
	assert_int_equal(mbox_store(ro, &one, 1, MBOX_OP_ADD, MBOX_SEEN, NULL, 0, 0, NULL, NULL,
				    &err),
			 -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	mbox_close(&ro);
	mbox_meta_free(&a);
	mbox_meta_free(&b);
	mbox_meta_free(&a2);
	mbox_meta_free(&b2);
	mbox_meta_free(&a3);
	mbox_close(&m);
}

static void test_expunge(void **state)
{
	(void)state;
	struct mbox_err err;
	for (int i = 0; i < 5; i++)
		append("INBOX", "x", i % 2 ? MBOX_DELETED : 0, NULL);
	struct mbox *m = sel("INBOX", false);
	struct mbox *other = sel("INBOX", false);
	/* UID EXPUNGE 1:2: only 2 is \Deleted. */
	uint32_t set[2] = { 1, 2 };
	uint32_t *ex;
	size_t nex;
	assert_int_equal(mbox_expunge(m, set, 2, &ex, &nex, &err), 0);
	assert_int_equal(nex, 1);
	assert_int_equal(ex[0], 2);
	free(ex);
	assert_int_equal(count_files("", "cur"), 4);
	/* Mark 5 deleted, then EXPUNGE everything \Deleted (4 and 5). */
	uint32_t five = 5;
	assert_int_equal(mbox_store(m, &five, 1, MBOX_OP_ADD, MBOX_DELETED, NULL, 0, 0, NULL, NULL,
				    &err),
			 0);
	assert_int_equal(mbox_expunge(m, NULL, 0, &ex, &nex, &err), 0);
	assert_int_equal(nex, 2);
	assert_int_equal(ex[0], 4);
	assert_int_equal(ex[1], 5);
	free(ex);
	assert_int_equal(count_files("", "cur"), 2);
	/* The other session learns about all three. */
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(other, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 3);
	assert_int_equal(ch.expunged[0], 2);
	assert_int_equal(ch.expunged[2], 5);
	assert_int_equal(ch.n_added, 0);
	/* 5 changed flags before it went: not reported as a flag change. */
	assert_int_equal(ch.n_changed, 0);
	mbox_changes_free(&ch);
	/* CONDSTORE/QRESYNC view: everything since the start, or since one point. */
	assert_int_equal(mbox_changes_since(other, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 3);
	assert_int_equal(ch.n_changed, 2); /* 1 and 3 remain, with their append modseqs */
	assert_int_equal(ch.n_added, 0);
	uint64_t mid = ch.changed[1].modseq;
	mbox_changes_free(&ch);
	assert_int_equal(mbox_changes_since(other, mid, &ch, &err), 0);
	assert_int_equal(ch.n_changed, 0);
	assert_int_equal(ch.n_expunged, 3);
	mbox_changes_free(&ch);
	assert_int_equal(mbox_changes_since(other, mbox_highestmodseq(other), &ch, &err), 0);
	assert_int_equal(ch.n_expunged + ch.n_changed, 0);
	mbox_changes_free(&ch);
	/* UIDs are never reused, even the highest one. */
	assert_int_equal(append("INBOX", "y", 0, NULL), 6);
	mbox_close(&m);
	mbox_close(&other);
	mstore_close(&st);
	assert_int_equal(mstore_open(root, &st, &err), 0);
	assert_int_equal(append("INBOX", "z", 0, NULL), 7);
	/* A message added and expunged between two syncs is never reported. */
	other = sel("INBOX", false);
	uint32_t u8 = append("INBOX", "q", MBOX_DELETED, NULL);
	m = sel("INBOX", false);
	assert_int_equal(mbox_expunge(m, &u8, 1, NULL, NULL, &err), 0);
	assert_int_equal(mbox_sync(other, 0, &ch, &err), 0);
	assert_int_equal(ch.n_added, 0);
	assert_int_equal(ch.n_expunged, 0);
	mbox_changes_free(&ch);
	mbox_close(&m);
	mbox_close(&other);
}

static void test_copy_move(void **state)
{
	(void)state;
	struct mbox_err err;
	append("INBOX", "c1", MBOX_SEEN, "$Work");
	append("INBOX", "c2", 0, NULL);
	append("INBOX", "c3", MBOX_FLAGGED, NULL);
	append("Archive", "a1", 0, NULL);
	struct mbox *m = sel("INBOX", false);
	uint32_t set[3] = { 1, 3, 9 }, uv, *su, *du;
	size_t n;
	assert_int_equal(mbox_copy(m, set, 3, "Archive", false, &uv, &su, &du, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(su[0], 1);
	assert_int_equal(su[1], 3);
	assert_int_equal(du[0], 2);
	assert_int_equal(du[1], 3);
	free(su);
	free(du);
	assert_int_equal(count_files("", "cur"), 3);
	assert_int_equal(count_files(".Archive", "cur"), 3);
	struct mbox *a = sel("Archive", false);
	assert_int_equal(mbox_uidvalidity(a), uv);
	struct mbox_meta meta, orig;
	assert_int_equal(mbox_meta(a, 2, MBOX_W_ENVELOPE | MBOX_W_MIME, &meta, &err), 0);
	assert_int_equal(mbox_meta(m, 1, 0, &orig, &err), 0);
	assert_int_equal(meta.flags, MBOX_SEEN);
	assert_string_equal(meta.keywords, "$Work");
	assert_int_equal(meta.internaldate, orig.internaldate);
	assert_int_equal(meta.wire_size, orig.wire_size);
	assert_non_null(strstr(meta.envelope, "\"c1\""));
	assert_non_null(meta.mime);
	assert_string_not_equal(meta.base, orig.base);
	mbox_meta_free(&meta);
	mbox_meta_free(&orig);
	/* MOVE 2 to Trash; the source loses it in the same transaction. */
	uint32_t two = 2;
	assert_int_equal(mbox_copy(m, &two, 1, "Trash", true, &uv, &su, &du, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(du[0], 1);
	free(su);
	free(du);
	assert_int_equal(count_files("", "cur"), 2);
	assert_int_equal(count_files(".Trash", "cur"), 1);
	assert_int_equal(mbox_meta(m, 2, 0, &meta, &err), -1);
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 1);
	assert_int_equal(ch.expunged[0], 2);
	mbox_changes_free(&ch);
	/* MOVE within the same mailbox: new UIDs. */
	uint32_t three = 3;
	assert_int_equal(mbox_copy(m, &three, 1, "INBOX", true, &uv, &su, &du, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(du[0], 4);
	free(su);
	free(du);
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
	assert_int_equal(ch.n_added, 1);
	assert_int_equal(ch.added[0], 4);
	assert_int_equal(ch.n_expunged, 1);
	assert_int_equal(ch.expunged[0], 3);
	mbox_changes_free(&ch);
	/* Destination missing: TRYCREATE; read-only source can copy but not move. */
	assert_int_equal(mbox_copy(m, &three, 1, "Nope", false, &uv, &su, &du, &n, &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	struct mbox *ro = sel("INBOX", true);
	uint32_t four = 4;
	assert_int_equal(mbox_copy(ro, &four, 1, "Junk", true, &uv, &su, &du, &n, &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	assert_int_equal(mbox_copy(ro, &four, 1, "Junk", false, &uv, &su, &du, &n, &err), 0);
	free(su);
	free(du);
	mbox_close(&ro);
	mbox_close(&a);
	mbox_close(&m);
}

static void test_rename(void **state)
{
	(void)state;
	struct mbox_err err;
	assert_int_equal(mstore_create(st, "Proj/Sub", MBOX_SPECIAL_NONE, &err), 0);
	append("Proj", "p", 0, NULL);
	append("Proj/Sub", "s", MBOX_SEEN, NULL);
	struct mbox_status s0, s1;
	assert_int_equal(mstore_status(st, "Proj/Sub", 0, &s0, &err), 0);
	assert_int_equal(mstore_rename(st, "Proj", "Old/Proj.2026", &err), 0);
	assert_int_equal(mstore_status(st, "Old/Proj.2026/Sub", 0, &s1, &err), 0);
	assert_int_equal(s1.uidvalidity, s0.uidvalidity);
	assert_int_equal(s1.messages, 1);
	assert_int_equal(count_files(".Old.Proj&AC4-2026.Sub", "cur"), 1);
	assert_int_equal(count_files(".Old.Proj&AC4-2026", "cur"), 1);
	assert_int_equal(mstore_status(st, "Proj", 0, &s1, &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	struct mbox_info *v;
	size_t n;
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_null(list_find(v, n, "Proj/Sub"));
	assert_int_equal(list_find(v, n, "Old")->attrs, MBOX_ATTR_HASCHILDREN);
	mbox_info_free(v, n);
	/* a session with the renamed mailbox selected finds it gone */
	struct mbox *sm = sel("Old/Proj.2026/Sub", false);
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(sm, 0, &ch, &err), 0);
	mbox_changes_free(&ch);
	assert_int_equal(mstore_rename(st, "Old/Proj.2026", "Old/P", &err), 0);
	assert_int_equal(mbox_sync(sm, 0, &ch, &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	mbox_close(&sm);
	assert_int_equal(mstore_rename(st, "Old/P", "Old/Proj.2026", &err), 0);
	assert_int_equal(mstore_rename(st, "Old", "Old/Inside", &err), -1);
	assert_int_equal(err.code, MBOX_E_CANNOT);
	assert_int_equal(mstore_rename(st, "Old", "Sent", &err), -1);
	assert_int_equal(err.code, MBOX_E_ALREADYEXISTS);
	assert_int_equal(mstore_rename(st, "Nope", "X", &err), -1);
	assert_int_equal(err.code, MBOX_E_NONEXISTENT);
	/* INBOX: its messages move to the new mailbox, INBOX stays (empty). */
	append("INBOX", "i1", MBOX_SEEN, NULL);
	append("INBOX", "i2", 0, NULL);
	struct mbox_status ib;
	assert_int_equal(mstore_status(st, "INBOX", 0, &ib, &err), 0);
	assert_int_equal(mstore_rename(st, "INBOX", "Saved/Inbox", &err), 0);
	assert_int_equal(mstore_status(st, "Saved/Inbox", 0, &s1, &err), 0);
	assert_int_equal(s1.messages, 2);
	assert_int_equal(s1.unseen, 1);
	struct mbox_status ib2;
	assert_int_equal(mstore_status(st, "INBOX", 0, &ib2, &err), 0);
	assert_int_equal(ib2.messages, 0);
	assert_int_equal(ib2.uidvalidity, ib.uidvalidity);
	assert_int_equal(ib2.uidnext, ib.uidnext);
	assert_int_equal(count_files("", "cur"), 0);
	assert_int_equal(count_files(".Saved.Inbox", "cur"), 2);
}

static void test_status(void **state)
{
	(void)state;
	struct mbox_err err;
	append("Drafts", "d1", MBOX_SEEN | MBOX_DELETED, NULL);
	append("Drafts", "d2", 0, NULL);
	append("Drafts", "d3", MBOX_DELETED, NULL);
	struct mbox_status s;
	assert_int_equal(mstore_status(st, "drafts", 0, &s, &err), -1); /* names are case-sensitive */
	assert_int_equal(mstore_status(st, "Drafts", MBOX_ST_MESSAGES, &s, &err), 0);
	assert_int_equal(s.messages, 3);
	assert_int_equal(s.unseen, 2);
	assert_int_equal(s.deleted, 2);
	assert_int_equal(s.recent, 3);
	assert_int_equal(s.uidnext, 4);
	assert_true(s.highestmodseq >= 4);
	char *one = xasprintf(msg_fmt, "d1", "d1", "d1");
	assert_int_equal(s.size, 3 * strlen(one));
	free(one);
}

/* The SELECT shortcut: with settled directory mtimes the index is trusted. */
static void test_mtime_shortcut(void **state)
{
	(void)state;
	struct mbox_err err;
	append("INBOX", "s1", 0, NULL);
	/* Age the directories so the next scan records their mtimes. */
	struct timespec old[2] = { { time(NULL) - 100, 0 }, { time(NULL) - 100, 0 } };
	char *cur = xasprintf("%s/cur", root), *nw = xasprintf("%s/new", root);
	assert_int_equal(utimensat(AT_FDCWD, cur, old, 0), 0);
	assert_int_equal(utimensat(AT_FDCWD, nw, old, 0), 0);
	struct mbox *m = sel("INBOX", false);
	mbox_close(&m);
	/* A file slipped in while the mtime is forced back: not seen... */
	char *p = xasprintf("%s/cur/2.M1P1.sneaky:2,", root);
	FILE *fp = fopen(p, "w");
	fputs("Subject: sneaky\n\nx\n", fp);
	fclose(fp);
	assert_int_equal(utimensat(AT_FDCWD, cur, old, 0), 0);
	m = sel("INBOX", false);
	size_t n;
	mbox_uids(m, &n);
	assert_int_equal(n, 1);
	/* ...until a full sync (or any real change of the directory). */
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m, MBOX_SYNC_FULL, &ch, &err), 0);
	assert_int_equal(ch.n_added, 1);
	mbox_changes_free(&ch);
	mbox_close(&m);
	free(p);
	free(cur);
	free(nw);
}

/* Folders created or removed by other tools are followed on open. */
static void test_reconcile(void **state)
{
	(void)state;
	struct mbox_err err;
	char *p = xasprintf("%s/.Ext.Sub&AOk-/cur", root);
	assert_int_equal(mkdir_p(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.Bogus&", root);
	assert_int_equal(mkdir_p(p, 0700), 0);
	free(p);
	p = xasprintf("%s/.Junk", root);
	char *q = xasprintf("%s/gone", root);
	assert_int_equal(rename(p, q), 0);
	free(p);
	free(q);
	mstore_close(&st);
	assert_int_equal(mstore_open(root, &st, &err), 0);
	struct mbox_info *v;
	size_t n;
	assert_int_equal(mstore_list(st, &v, &n, &err), 0);
	assert_non_null(list_find(v, n, "Ext/Sub\xc3\xa9"));
	assert_int_equal(list_find(v, n, "Ext")->attrs, MBOX_ATTR_NOSELECT | MBOX_ATTR_HASCHILDREN);
	assert_null(list_find(v, n, "Junk/x"));
	struct mbox_info *j = list_find(v, n, "Junk");
	/* Junk is still subscribed, but no longer a mailbox. */
	assert_non_null(j);
	assert_true(j->attrs & MBOX_ATTR_NONEXISTENT);
	mbox_info_free(v, n);
	append("Ext/Sub\xc3\xa9", "e", 0, NULL);
	struct mbox *m = sel("Ext/Sub\xc3\xa9", false);
	mbox_close(&m);
}

/* POP3 (store/maildrop.h) and IMAP share INBOX: one identity per message. */
static void test_pop3_coexistence(void **state)
{
	(void)state;
	struct mbox_err err;
	deliver("", "p1");
	append("INBOX", "p2", MBOX_SEEN, NULL);
	deliver("", "p3");
	struct mbox *m = sel("INBOX", false);
	size_t n;
	mbox_uids(m, &n);
	assert_int_equal(n, 3);
	struct maildrop *md;
	char *e = NULL;
	assert_int_equal(maildrop_open(root, &md, &e), 0);
	assert_int_equal(maildrop_count(md), 3);
	/* Same base names (POP3's UIDL) as the index, whichever way they came. */
	for (uint32_t uid = 1; uid <= 3; uid++) {
		struct mbox_meta meta;
		assert_int_equal(mbox_meta(m, uid, 0, &meta, &err), 0);
		bool found = false;
		for (unsigned i = 0; i < 3; i++)
			found |= strcmp(maildrop_base(md, i), meta.base) == 0;
		assert_true(found);
		if (uid == 2) {
			/* POP3 deletes this one. */
			for (unsigned i = 0; i < 3; i++) {
				if (strcmp(maildrop_base(md, i), meta.base) == 0) {
					unsigned removed;
					assert_int_equal(maildrop_commit(md, &i, 1, &removed, &e), 0);
					assert_int_equal(removed, 1);
				}
			}
		}
		mbox_meta_free(&meta);
	}
	maildrop_close(&md);
	/* A flag change by IMAP renames the file; POP3 still finds it. */
	uint32_t three = 3;
	assert_int_equal(mbox_store(m, &three, 1, MBOX_OP_ADD, MBOX_SEEN, NULL, 0, 0, NULL, NULL,
				    &err),
			 0);
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
	assert_int_equal(ch.n_expunged, 1);
	assert_int_equal(ch.expunged[0], 2);
	mbox_changes_free(&ch);
	assert_int_equal(maildrop_open(root, &md, &e), 0);
	assert_int_equal(maildrop_count(md), 2);
	int fd;
	assert_int_equal(maildrop_msg_open(md, 1, &fd, &e), 0);
	close(fd);
	maildrop_close(&md);
	mbox_close(&m);
}

static void age(const char *rel)
{
	struct timespec old[2] = { { time(NULL) - 100, 0 }, { time(NULL) - 100, 0 } };
	char *p = xasprintf("%s/%s", root, rel);
	utimensat(AT_FDCWD, p, old, 0); /* the WAL may not exist */
	free(p);
}

static void age_all(void)
{
	age("new");
	age("cur");
	age(MBOX_INDEX_NAME);
	age(MBOX_INDEX_NAME "-wal");
}

/* Lets time pass (as far as mtimes go) and leaves the session suspended
 * with a current poll record. */
static void settle(struct mbox *m)
{
	struct mbox_err err;
	struct mbox_changes ch;
	for (int i = 0; i < 2; i++) {
		mstore_suspend(st);
		age_all();
		assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
		mbox_changes_free(&ch);
	}
	mstore_suspend(st);
}

/* IDLE support: a suspended session polls with stat() only. */
static void test_suspend_poll(void **state)
{
	(void)state;
	struct mbox_err err;
	append("INBOX", "i1", 0, NULL);
	struct mbox *m = sel("INBOX", false);
	struct mbox_changes ch;
	/* Fresh changes: poll always says "maybe". */
	assert_true(mbox_poll(m));
	settle(m);
	assert_false(mbox_poll(m));
	assert_false(mbox_poll(m));
	/* A delivery moves new/'s mtime. */
	deliver("", "d1");
	assert_true(mbox_poll(m));
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0); /* reopens the index */
	assert_int_equal(ch.n_added, 1);
	mbox_changes_free(&ch);
	settle(m);
	assert_false(mbox_poll(m));
	/* A keyword set by another session touches no file, only the index. */
	struct mstore *st2;
	struct mbox *m2;
	assert_int_equal(mstore_open(root, &st2, &err), 0);
	assert_int_equal(mbox_open(st2, "INBOX", false, &m2, &err), 0);
	uint32_t one = 1;
	const char *kw[1] = { "$Seen2" };
	assert_int_equal(mbox_store(m2, &one, 1, MBOX_OP_ADD, 0, kw, 1, 0, NULL, NULL, &err), 0);
	mbox_close(&m2);
	mstore_close(&st2);
	assert_true(mbox_poll(m));
	assert_int_equal(mbox_sync(m, 0, &ch, &err), 0);
	assert_int_equal(ch.n_changed, 1);
	assert_string_equal(ch.changed[0].keywords, "$Seen2");
	mbox_changes_free(&ch);
	mbox_close(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_new_account, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_delete_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_select, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_folder_tmp_swept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prune_expunged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delivery_and_recent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_external_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mtime_shortcut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pop3_coexistence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suspend_poll, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
