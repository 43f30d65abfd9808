/* SPDX-License-Identifier: MIT */
/* The POP3 maildrop on a temporary Maildir: order, sizes (with and without
 * W=), UIDLs (natural and hashed), files in new/ and cur/ with flags, a file
 * moved or renamed between listing and RETR / commit, a file vanished,
 * nothing unmarked ever deleted, and the lock between two handles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "store/maildrop.h"

static char *mkroot(void)
{
	char tmpl[] = "/tmp/tern-maildrop-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	char *root = xasprintf("%s/mail/example.org/bob", d);
	return root;
}

/* Removes the whole temporary tree of a root made by mkroot(). */
static void rm_rf(const char *root)
{
	const char *suffix = "/mail/example.org/bob";
	size_t n = strlen(root) - strlen(suffix);
	assert_string_equal(root + n, suffix);
	char *cmd = xasprintf("rm -rf '%.*s'", (int)n, root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void put(const char *root, const char *dir, const char *name, const char *content)
{
	char *d = xasprintf("%s/%s", root, dir);
	assert_int_equal(mkdir_p(d, 0700), 0);
	char *p = xasprintf("%s/%s", d, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write_full(fd, content, strlen(content)), 0);
	close(fd);
	free(p);
	free(d);
}

static bool exists(const char *root, const char *dir, const char *name)
{
	char *p = xasprintf("%s/%s/%s", root, dir, name);
	bool r = access(p, F_OK) == 0;
	free(p);
	return r;
}

static void mv(const char *root, const char *from, const char *to)
{
	char *a = xasprintf("%s/%s", root, from), *b = xasprintf("%s/%s", root, to);
	assert_int_equal(rename(a, b), 0);
	free(a);
	free(b);
}

static char *slurp(int fd)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *b = xmalloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	b[st.st_size] = '\0';
	close(fd);
	return b;
}

static char *long_base(void)
{
	/* 71 characters: too long for a UIDL (RFC 1939 7) */
	char *b = xmalloc(72);
	memset(b, 'a', 71);
	memcpy(b, "1700000005.M1P1.", 16);
	b[71] = '\0';
	return b;
}

/* The fixture: five messages, listed in delivery order
 *   0 cur/1700000001.M9P1Q2R2.host,S=6,W=8:2,S        "x\n.y\n" (W= given)
 *   1 new/1700000002.M5P1Q1R1.host,S=12,W=14          "hello\nworld\n"
 *   2 new/1700000002.M7P1Q3R3.host2                    "no W\nhere" (computed: 9 + 1)
 *   3 cur/<71-char base>:2,RS                          "a\nb\n" (hashed UIDL)
 *   4 new/zz-foreign                                   "" (no time: last)
 * plus ignored entries: new/.hidden, cur/subdir/, tmp/ files, the lock file. */
static char *fixture(void)
{
	char *root = mkroot();
	put(root, "cur", "1700000001.M9P1Q2R2.host,S=6,W=8:2,S", "x\n.y\n");
	put(root, "new", "1700000002.M5P1Q1R1.host,S=12,W=14", "hello\nworld\n");
	put(root, "new", "1700000002.M7P1Q3R3.host2", "no W\nhere");
	char *lb = long_base();
	char *n = xasprintf("%s:2,RS", lb);
	put(root, "cur", n, "a\nb\n");
	free(n);
	free(lb);
	put(root, "new", "zz-foreign", "");
	put(root, "new", ".hidden", "junk\n");
	put(root, "tmp", "1700000009.M1P1.host", "in flight\n");
	char *sd = xasprintf("%s/cur/subdir", root);
	assert_int_equal(mkdir_p(sd, 0700), 0);
	free(sd);
	return root;
}

static void test_listing(void **state)
{
	(void)state;
	char *root = fixture();
	struct maildrop *md = NULL;
	char *err = NULL;
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	assert_null(err);
	assert_int_equal(maildrop_count(md), 5);
	const uint64_t sizes[] = { 8, 14, 10, 6, 0 };
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(maildrop_wire_size(md, i), sizes[i]);
	assert_string_equal(maildrop_uidl(md, 0), "1700000001.M9P1Q2R2.host");
	assert_string_equal(maildrop_uidl(md, 1), "1700000002.M5P1Q1R1.host");
	assert_string_equal(maildrop_uidl(md, 2), "1700000002.M7P1Q3R3.host2");
	assert_string_equal(maildrop_uidl(md, 4), "zz-foreign");
	const char *h = maildrop_uidl(md, 3);
	assert_int_equal(strlen(h), 33);
	assert_int_equal(h[0], '~');
	char *lb = long_base();
	assert_string_equal(maildrop_base(md, 3), lb);
	char again[MAILDROP_UIDL_MAX + 1];
	maildrop_uidl_of(lb, strlen(lb), again);
	assert_string_equal(again, h); /* stable: a function of the base name only */
	free(lb);
	/* content is storage form */
	int fd = -1;
	assert_int_equal(maildrop_msg_open(md, 1, &fd, &err), 0);
	char *c = slurp(fd);
	assert_string_equal(c, "hello\nworld\n");
	free(c);
	maildrop_close(&md);
	assert_null(md);
	/* the lock file is in the root, never a message; a second session
	 * lists the same UIDLs in the same order */
	assert_true(exists(root, ".", MAILDROP_LOCK_NAME));
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	assert_int_equal(maildrop_count(md), 5);
	assert_string_equal(maildrop_uidl(md, 2), "1700000002.M7P1Q3R3.host2");
	maildrop_close(&md);
	rm_rf(root);
	free(root);
}

static void test_uidl_of(void **state)
{
	(void)state;
	struct {
		const char *base;
		bool natural;
	} cases[] = {
		{ "1700000000.M1P2Q3R4.host", true },
		{ "!", true },
		{ "~tilde", false },   /* reserved for hashes */
		{ "has space", false },
		{ "", false },
		{ "\x7f" "del", false },
		{ "caf\xc3\xa9", false },
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		char out[MAILDROP_UIDL_MAX + 1];
		maildrop_uidl_of(cases[i].base, strlen(cases[i].base), out);
		if (cases[i].natural) {
			assert_string_equal(out, cases[i].base);
		} else {
			assert_int_equal(strlen(out), 33);
			assert_int_equal(out[0], '~');
			for (size_t k = 0; k < 33; k++)
				assert_true(out[k] >= 0x21 && out[k] <= 0x7e);
		}
	}
	/* 70 is fine, 71 is hashed; different bases, different hashes */
	char b70[71], b71[72], u1[71], u2[71];
	memset(b70, 'a', 70);
	b70[70] = '\0';
	memset(b71, 'a', 71);
	b71[71] = '\0';
	maildrop_uidl_of(b70, 70, u1);
	assert_string_equal(u1, b70);
	maildrop_uidl_of(b71, 71, u1);
	b71[3] = 'b';
	maildrop_uidl_of(b71, 71, u2);
	assert_int_equal(u1[0], '~');
	assert_string_not_equal(u1, u2);
}

static void test_moved_between_list_and_use(void **state)
{
	(void)state;
	char *root = fixture();
	struct maildrop *md = NULL;
	char *err = NULL;
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	/* another program (IMAP, a MUA) moves new/ -> cur/ and sets flags */
	mv(root, "new/1700000002.M5P1Q1R1.host,S=12,W=14",
	   "cur/1700000002.M5P1Q1R1.host,S=12,W=14:2,S");
	/* and changes the flags of a cur/ message */
	mv(root, "cur/1700000001.M9P1Q2R2.host,S=6,W=8:2,S",
	   "cur/1700000001.M9P1Q2R2.host,S=6,W=8:2,RS");
	int fd = -1;
	assert_int_equal(maildrop_msg_open(md, 1, &fd, &err), 0);
	char *c = slurp(fd);
	assert_string_equal(c, "hello\nworld\n");
	free(c);
	/* a message with a longer base sharing this prefix is not confused */
	put(root, "new", "1700000002.M5P1Q1R1.hostX,S=3", "new\n");
	/* delete 0 and 1 after more moves; 2, 3, 4 and the new one stay */
	mv(root, "cur/1700000002.M5P1Q1R1.host,S=12,W=14:2,S",
	   "cur/1700000002.M5P1Q1R1.host,S=12,W=14:2,ST");
	unsigned idx[] = { 0, 1 };
	unsigned removed = 99;
	assert_int_equal(maildrop_commit(md, idx, 2, &removed, &err), 0);
	assert_null(err);
	assert_int_equal(removed, 2);
	assert_false(exists(root, "cur", "1700000001.M9P1Q2R2.host,S=6,W=8:2,RS"));
	assert_false(exists(root, "cur", "1700000002.M5P1Q1R1.host,S=12,W=14:2,ST"));
	assert_true(exists(root, "new", "1700000002.M5P1Q1R1.hostX,S=3"));
	assert_true(exists(root, "new", "1700000002.M7P1Q3R3.host2"));
	assert_true(exists(root, "new", "zz-foreign"));
	assert_true(exists(root, "new", ".hidden"));
	assert_true(exists(root, "tmp", "1700000009.M1P1.host"));
	maildrop_close(&md);
	/* the next session sees the survivors, the new one included */
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	assert_int_equal(maildrop_count(md), 4);
	assert_string_equal(maildrop_uidl(md, 0), "1700000002.M5P1Q1R1.hostX");
	assert_string_equal(maildrop_uidl(md, 1), "1700000002.M7P1Q3R3.host2");
	maildrop_close(&md);
	rm_rf(root);
	free(root);
}

static void test_vanished(void **state)
{
	(void)state;
	char *root = fixture();
	struct maildrop *md = NULL;
	char *err = NULL;
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	char *p = xasprintf("%s/new/1700000002.M7P1Q3R3.host2", root);
	assert_int_equal(unlink(p), 0);
	free(p);
	int fd = -1;
	assert_int_equal(maildrop_msg_open(md, 2, &fd, &err), -1);
	assert_int_equal(errno, ENOENT);
	assert_non_null(err);
	free(err);
	err = NULL;
	/* gone counts as deleted; the others are removed */
	unsigned idx[] = { 2, 4 };
	unsigned removed = 0;
	assert_int_equal(maildrop_commit(md, idx, 2, &removed, &err), 0);
	assert_null(err);
	assert_int_equal(removed, 1);
	assert_false(exists(root, "new", "zz-foreign"));
	assert_true(exists(root, "new", "1700000002.M5P1Q1R1.host,S=12,W=14"));
	/* committing again: everything already gone, still success */
	assert_int_equal(maildrop_commit(md, idx, 2, &removed, &err), 0);
	assert_int_equal(removed, 0);
	maildrop_close(&md);
	rm_rf(root);
	free(root);
}

static void test_duplicate_during_move(void **state)
{
	(void)state;
	/* a move caught half-way (both names present): listed once */
	char *root = mkroot();
	put(root, "new", "1700000001.M1P1.h,S=2,W=3", "a\n");
	put(root, "cur", "1700000001.M1P1.h,S=2,W=3:2,S", "a\n");
	struct maildrop *md = NULL;
	char *err = NULL;
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	assert_int_equal(maildrop_count(md), 1);
	assert_int_equal(maildrop_wire_size(md, 0), 3);
	maildrop_close(&md);
	rm_rf(root);
	free(root);
}

static void test_lock(void **state)
{
	(void)state;
	char *root = mkroot(); /* does not exist yet: created, empty */
	struct maildrop *a = NULL, *b = NULL;
	char *err = NULL;
	assert_int_equal(maildrop_open(root, &a, &err), 0);
	assert_int_equal(maildrop_count(a), 0);
	assert_true(exists(root, ".", "tmp"));
	/* RFC 1939 8 / RFC 2449 8.1.2: a second session is IN-USE */
	assert_int_equal(maildrop_open(root, &b, &err), 1);
	assert_null(b);
	assert_null(err);
	maildrop_close(&a);
	assert_int_equal(maildrop_open(root, &b, &err), 0);
	maildrop_close(&b);
	/* a root that cannot be a directory */
	char *f = xasprintf("%s/file", root);
	put(root, ".", "file", "x");
	assert_int_equal(maildrop_open(f, &a, &err), -1);
	assert_null(a);
	assert_non_null(err);
	free(err);
	free(f);
	rm_rf(root);
	free(root);
}

static void test_many(void **state)
{
	(void)state;
	char *root = mkroot();
	for (int i = 499; i >= 0; i--) {
		char *n = xasprintf("%d.M%dP1Q%d.host,S=2,W=3", 1700000000 + i / 10, i % 10, i);
		put(root, i % 2 ? "new" : "cur", n, "a\n");
		free(n);
	}
	struct maildrop *md = NULL;
	char *err = NULL;
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	assert_int_equal(maildrop_count(md), 500);
	for (unsigned i = 0; i < 500; i++) {
		char *want = xasprintf("%u.M%uP1Q%u.host", 1700000000 + i / 10, i % 10, i);
		assert_string_equal(maildrop_uidl(md, i), want);
		free(want);
	}
	unsigned *all = xcalloc(500, sizeof *all);
	for (unsigned i = 0; i < 500; i++)
		all[i] = i;
	unsigned removed = 0;
	assert_int_equal(maildrop_commit(md, all, 500, &removed, &err), 0);
	assert_int_equal(removed, 500);
	free(all);
	maildrop_close(&md);
	assert_int_equal(maildrop_open(root, &md, &err), 0);
	assert_int_equal(maildrop_count(md), 0);
	maildrop_close(&md);
	rm_rf(root);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listing),
		cmocka_unit_test(test_uidl_of),
		cmocka_unit_test(test_moved_between_list_and_use),
		cmocka_unit_test(test_vanished),
		cmocka_unit_test(test_duplicate_during_move),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
