/* SPDX-License-Identifier: MIT */
/* Maildir delivery: account paths, tmp/new discipline, ,S= and ,W= sizes,
 * all-or-nothing failure (open failure, injected ENOSPC), group commit
 * through the committer thread, and tmp/ cleaning. Each test works in its own
 * mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "store/maildir.h"

static char *tmpdir;

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/tern-maildir-XXXXXX";
	if (mkdtemp(tmpl) == NULL)
		return -1;
	tmpdir = xstrdup(tmpl);
	return 0;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static int teardown(void **state)
{
	(void)state;
	maildir_test_fail_writes(SIZE_MAX, 0);
	int r = nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(tmpdir);
	tmpdir = NULL;
	return r;
}

static char *path(const char *rel)
{
	return xasprintf("%s/%s", tmpdir, rel);
}

/* Number of entries in dir (without . and ..); -1 if it cannot be opened. */
static int count_entries(const char *root, const char *sub)
{
	char *p = xasprintf("%s/%s", root, sub);
	DIR *d = opendir(p);
	free(p);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* Name of the only file in root/sub (malloc'd), or NULL. */
static char *only_entry(const char *root, const char *sub)
{
	char *p = xasprintf("%s/%s", root, sub);
	DIR *d = opendir(p);
	free(p);
	if (d == NULL)
		return NULL;
	char *name = NULL;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		n++;
		free(name);
		name = xstrdup(e->d_name);
	}
	closedir(d);
	if (n != 1) {
		free(name);
		return NULL;
	}
	return name;
}

static char *slurp(const char *p, size_t *len_r)
{
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *buf = xmalloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
	close(fd);
	*len_r = got;
	return buf;
}

static uint64_t lfs_in(const char *p, size_t n)
{
	uint64_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += p[i] == '\n';
	return c;
}

/* Parse ",S=<n>,W=<n>" at the end of a file name. */
static void parse_sizes(const char *name, uint64_t *s, uint64_t *w)
{
	const char *p = strstr(name, ",S=");
	assert_non_null(p);
	unsigned long long a, b;
	int used = 0;
	assert_int_equal(sscanf(p, ",S=%llu,W=%llu%n", &a, &b, &used), 2);
	assert_int_equal(p[used], '\0');
	*s = a;
	*w = b;
}

/* ---- account paths ---- */

static void test_account_paths(void **state)
{
	(void)state;
	static const struct {
		const char *addr;
		const char *want; /* NULL: refused */
	} cases[] = {
		{ "alice@example.org", "/d/mail/example.org/alice" },
		{ "Alice.Smith@Example.ORG", "/d/mail/example.org/alice.smith" },
		{ "a+tag@x.y", "/d/mail/x.y/a+tag" },
		{ "bob.@x.y", "/d/mail/x.y/bob." },
		{ "\xc3\xa9t\xc3\xa9@x.y", "/d/mail/x.y/\xc3\xa9t\xc3\xa9" },
		{ "alice", NULL },
		{ "@example.org", NULL },
		{ "alice@", NULL },
		{ "a@b@c", NULL },
		{ "../etc@x.y", NULL },
		{ "a@../../etc", NULL },
		{ "a..b@x.y", NULL },
		{ "a@x..y", NULL },
		{ ".hidden@x.y", NULL },
		{ "a@.x.y", NULL },
		{ "a@x.y.", NULL },
		{ "a/b@x.y", NULL },
		{ "a@x/y", NULL },
		{ "a\\b@x.y", NULL },
		{ "a\nb@x.y", NULL },
		{ "a@x\ry", NULL },
		{ "a\tb@x.y", NULL },
		{ "a\x7f@x.y", NULL },
		{ ".@x.y", NULL },
		{ "..@x.y", NULL },
		{ "a@..", NULL },
		{ "a@.", NULL },
		{ "", NULL },
		{ "@", NULL },
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		char *got = maildir_account_path("/d", cases[i].addr);
		if (cases[i].want == NULL) {
			if (got != NULL)
				fail_msg("case %zu: %s accepted as %s", i, cases[i].addr, got);
		} else {
			assert_non_null(got);
			assert_string_equal(got, cases[i].want);
		}
		free(got);
	}
	/* RFC 5321 4.5.3.1.1: local part up to 64 octets. */
	char longl[80];
	memset(longl, 'a', 65);
	strcpy(longl + 65, "@x.y");
	assert_null(maildir_account_path("/d", longl));
	strcpy(longl + 64, "@x.y");
	char *ok = maildir_account_path("/d", longl);
	assert_non_null(ok);
	free(ok);
}

/* ---- maildir_create ---- */

static void test_create(void **state)
{
	(void)state;
	char *root = path("a/b/c");
	char *err = NULL;
	assert_int_equal(maildir_create(root, &err), 0);
	assert_int_equal(maildir_create(root, &err), 0); /* idempotent */
	static const char *const subs[] = { "cur", "new", "tmp" };
	for (size_t i = 0; i < N_ELEMENTS(subs); i++) {
		char *p = xasprintf("%s/%s", root, subs[i]);
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0700);
		free(p);
	}
	free(root);

	/* A regular file in the way: error with a log message. */
	char *file = path("plain");
	int fd = open(file, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	char *bad = path("plain/box");
	assert_int_equal(maildir_create(bad, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "mkdir("));
	free(err);
	free(bad);
	free(file);
}

/* ---- delivery ---- */

/* A message of n bytes with LF line endings and no trailing LF. */
static char *make_body(size_t n)
{
	char *b = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (i % 73 == 72) ? '\n' : (char)('a' + i % 26);
	if (n > 0)
		b[n - 1] = 'z';
	return b;
}

static void check_delivered(const char *root, const char *hdr, const char *body, size_t blen)
{
	assert_int_equal(count_entries(root, "tmp"), 0);
	assert_int_equal(count_entries(root, "cur"), 0);
	char *name = only_entry(root, "new");
	assert_non_null(name);
	char *p = xasprintf("%s/new/%s", root, name);
	size_t len;
	char *data = slurp(p, &len);
	size_t hlen = hdr ? strlen(hdr) : 0;
	assert_int_equal(len, hlen + blen);
	if (hlen > 0)
		assert_memory_equal(data, hdr, hlen);
	if (blen > 0)
		assert_memory_equal(data + hlen, body, blen);
	uint64_t s, w;
	parse_sizes(name, &s, &w);
	assert_int_equal(s, len);
	assert_int_equal(w, len + lfs_in(data, len));
	/* <sec>.M<usec>P<pid>Q<seq>R<rand>.<host>,S=.. */
	char pid[32];
	snprintf(pid, sizeof pid, "P%ld", (long)getpid());
	assert_non_null(strstr(name, ".M"));
	assert_non_null(strstr(name, pid));
	assert_non_null(strstr(name, "Q"));
	assert_non_null(strstr(name, "R"));
	assert_non_null(strstr(name, ".mx\\057a\\072b\\054c,S="));
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(data);
	free(p);
	free(name);
}

static void deliver_three(size_t blen, size_t chunk)
{
	char *roots[3] = { path("r0"), path("r1"), path("deep/r2") };
	const char *hdrs[3] = { "Delivered-To: a@x.y\n", NULL, "Delivered-To: c@x.y\nX-Two: 2\n" };
	char *err = NULL;
	assert_int_equal(maildir_create(roots[0], &err), 0);
	assert_int_equal(maildir_create(roots[1], &err), 0);
	/* roots[2] does not exist yet: add_target creates it. */
	struct delivery *d = delivery_new("mx/a:b,c");
	for (int i = 0; i < 3; i++)
		assert_int_equal(delivery_add_target(d, roots[i], hdrs[i], &err), 0);
	assert_int_equal(delivery_ntargets(d), 3);
	char *body = make_body(blen);
	for (size_t off = 0; off < blen; off += chunk) {
		size_t k = blen - off < chunk ? blen - off : chunk;
		assert_int_equal(delivery_write(d, body + off, k), 0);
	}
	assert_int_equal(delivery_size(d), blen);
	for (int i = 0; i < 3; i++) {
		/* Not visible before commit. */
		assert_int_equal(count_entries(roots[i], "new"), 0);
		assert_int_equal(count_entries(roots[i], "tmp"), 1);
	}
	assert_int_equal(delivery_commit_sync(&d, &err), 0);
	assert_null(d);
	for (int i = 0; i < 3; i++)
		check_delivered(roots[i], hdrs[i], body, blen);
	free(body);
	for (int i = 0; i < 3; i++)
		free(roots[i]);
}

static void test_deliver_small(void **state)
{
	(void)state;
	deliver_three(4096, 4096);
}

static void test_deliver_large_chunked(void **state)
{
	(void)state;
	/* Crosses the 64 KiB buffer several times with odd chunk sizes. */
	deliver_three(300 * 1000 + 7, 1000);
}

static void test_deliver_large_direct(void **state)
{
	(void)state;
	/* Chunks larger than the buffer take the no-copy path. */
	deliver_three(3 * 65536 + 11, 100000);
}

static void test_deliver_empty(void **state)
{
	(void)state;
	deliver_three(0, 1);
}

static void test_wsize_counts_lfs(void **state)
{
	(void)state;
	char *root = path("w");
	char *err = NULL;
	struct delivery *d = delivery_new("h");
	assert_int_equal(delivery_add_target(d, root, "H: 1\n", &err), 0);
	assert_int_equal(delivery_write(d, "a\n\nb\n", 5), 0);
	assert_int_equal(delivery_commit_sync(&d, &err), 0);
	char *name = only_entry(root, "new");
	assert_non_null(name);
	uint64_t s, w;
	parse_sizes(name, &s, &w);
	assert_int_equal(s, 5 + 5);
	assert_int_equal(w, 10 + 4);
	free(name);
	free(root);
}

/* Two copies into the same Maildir get distinct names; no hostname gives
 * "localhost". */
static void test_same_root_twice(void **state)
{
	(void)state;
	char *root = path("twice");
	char *err = NULL;
	struct delivery *d = delivery_new(NULL);
	assert_int_equal(delivery_add_target(d, root, "A: 1\n", &err), 0);
	assert_int_equal(delivery_add_target(d, root, "B: 22\n", &err), 0);
	assert_int_equal(delivery_write(d, "hi\n", 3), 0);
	assert_int_equal(delivery_commit_sync(&d, &err), 0);
	assert_int_equal(count_entries(root, "new"), 2);
	assert_int_equal(count_entries(root, "tmp"), 0);
	char *p = xasprintf("%s/new", root);
	DIR *dir = opendir(p);
	assert_non_null(dir);
	struct dirent *e;
	int seen = 0;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		assert_non_null(strstr(e->d_name, ".localhost,S="));
		uint64_t s, w;
		parse_sizes(e->d_name, &s, &w);
		assert_true((s == 8 && w == 10) || (s == 9 && w == 11));
		seen |= s == 8 ? 1 : 2;
	}
	closedir(dir);
	assert_int_equal(seen, 3);
	free(p);
	free(root);
}

static void test_abort(void **state)
{
	(void)state;
	char *r0 = path("a0"), *r1 = path("a1");
	char *err = NULL;
	struct delivery *d = delivery_new("h");
	assert_int_equal(delivery_add_target(d, r0, "X: y\n", &err), 0);
	assert_int_equal(delivery_add_target(d, r1, NULL, &err), 0);
	char *body = make_body(100000);
	assert_int_equal(delivery_write(d, body, 100000), 0);
	assert_int_equal(count_entries(r0, "tmp"), 1);
	delivery_abort(&d);
	assert_null(d);
	delivery_abort(&d); /* NULL is fine */
	assert_int_equal(count_entries(r0, "tmp"), 0);
	assert_int_equal(count_entries(r0, "new"), 0);
	assert_int_equal(count_entries(r1, "tmp"), 0);
	assert_int_equal(count_entries(r1, "new"), 0);
	free(body);
	free(r0);
	free(r1);
}

/* Replace root/tmp by a regular file: open in tmp/ fails even as root. */
static void break_tmp(const char *root)
{
	char *err = NULL;
	assert_int_equal(maildir_create(root, &err), 0);
	char *t = xasprintf("%s/tmp", root);
	assert_int_equal(rmdir(t), 0);
	int fd = open(t, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	free(t);
}

static void test_failed_target(void **state)
{
	(void)state;
	char *r0 = path("f0"), *r1 = path("f1"), *r2 = path("f2");
	break_tmp(r1);
	char *err = NULL;
	struct delivery *d = delivery_new("h");
	assert_int_equal(delivery_add_target(d, r0, NULL, &err), 0);
	assert_int_equal(delivery_add_target(d, r1, NULL, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "open("));
	free(err);
	err = NULL;
	assert_int_equal(delivery_write(d, "x\n", 2), -1);
	assert_int_equal(delivery_commit_sync(&d, &err), -1);
	assert_null(d);
	assert_non_null(err);
	assert_non_null(strstr(err, "open("));
	free(err);
	assert_int_equal(count_entries(r0, "tmp"), 0);
	assert_int_equal(count_entries(r0, "new"), 0);
	assert_int_equal(count_entries(r1, "new"), 0);

	/* Same, then abort: the good copy goes away too. */
	d = delivery_new("h");
	assert_int_equal(delivery_add_target(d, r2, NULL, &err), 0);
	assert_int_equal(delivery_add_target(d, r1, NULL, &err), -1);
	free(err);
	delivery_abort(&d);
	assert_int_equal(count_entries(r2, "tmp"), 0);
	free(r0);
	free(r1);
	free(r2);
}

static void check_no_files(char **roots, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(count_entries(roots[i], "tmp"), 0);
		assert_int_equal(count_entries(roots[i], "new"), 0);
		assert_int_equal(count_entries(roots[i], "cur"), 0);
	}
}

/* The second copy cannot be renamed (its new/ became a regular file): the
 * first copy, already in new/, is unlinked again and tmp/ is emptied. */
static void test_rename_failure_rolls_back(void **state)
{
	(void)state;
	char *roots[3] = { path("n0"), path("n1"), path("n2") };
	char *err = NULL;
	struct delivery *d = delivery_new("h");
	for (int i = 0; i < 3; i++)
		assert_int_equal(delivery_add_target(d, roots[i], NULL, &err), 0);
	assert_int_equal(delivery_write(d, "x\n", 2), 0);
	char *nd = xasprintf("%s/new", roots[1]);
	assert_int_equal(rmdir(nd), 0);
	int fd = open(nd, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(delivery_commit_sync(&d, &err), -1);
	assert_non_null(strstr(err, "rename("));
	free(err);
	assert_int_equal(unlink(nd), 0);
	assert_int_equal(mkdir(nd, 0700), 0);
	check_no_files(roots, 3);
	free(nd);
	for (int i = 0; i < 3; i++)
		free(roots[i]);
}

static void test_enospc_at_commit(void **state)
{
	(void)state;
	char *roots[3] = { path("e0"), path("e1"), path("e2") };
	char *err = NULL;
	/* Small message: buffered, so the write fails inside commit. */
	maildir_test_fail_writes(1, 100);
	struct delivery *d = delivery_new("h");
	for (int i = 0; i < 3; i++)
		assert_int_equal(delivery_add_target(d, roots[i], "H: v\n", &err), 0);
	char *body = make_body(4096);
	assert_int_equal(delivery_write(d, body, 4096), 0);
	assert_int_equal(delivery_commit_sync(&d, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "write("));
	assert_non_null(strstr(err, strerror(ENOSPC)));
	free(err);
	check_no_files(roots, 3);
	free(body);
	for (int i = 0; i < 3; i++)
		free(roots[i]);
}

static void test_enospc_during_write(void **state)
{
	(void)state;
	char *roots[3] = { path("e0"), path("e1"), path("e2") };
	char *err = NULL;
	/* The third copy fills up after 100 KB: the second buffer flush fails. */
	maildir_test_fail_writes(2, 100000);
	struct delivery *d = delivery_new("h");
	for (int i = 0; i < 3; i++)
		assert_int_equal(delivery_add_target(d, roots[i], NULL, &err), 0);
	char *body = make_body(200000);
	int r = 0;
	for (size_t off = 0; off < 200000 && r == 0; off += 10000)
		r = delivery_write(d, body + off, 10000);
	assert_int_equal(r, -1);
	assert_int_equal(delivery_write(d, "x", 1), -1); /* stays failed */
	assert_int_equal(delivery_commit_sync(&d, &err), -1);
	assert_non_null(strstr(err, strerror(ENOSPC)));
	free(err);
	check_no_files(roots, 3);
	free(body);
	for (int i = 0; i < 3; i++)
		free(roots[i]);
}

/* ---- group commit ---- */

struct loop {
	int efd;
	int done, ok, failed;
	int notified;
	char **roots;
};

static void notify_cb(void *ctx)
{
	struct loop *l = ctx;
	uint64_t one = 1;
	assert_int_equal(write(l->efd, &one, sizeof one), (ssize_t)sizeof one);
}

static void done_cb(struct delivery *d, int result, const char *err, void *ctx)
{
	struct loop *l = ctx;
	l->done++;
	if (result == 0) {
		assert_null(err);
		l->ok++;
		/* The committed name is available here and the file exists. */
		for (size_t i = 0; i < delivery_ntargets(d); i++) {
			const char *f = delivery_target_file(d, i);
			assert_non_null(f);
			assert_true(strncmp(f, "new/", 4) == 0);
		}
	} else {
		assert_non_null(err);
		l->failed++;
		for (size_t i = 0; i < delivery_ntargets(d); i++)
			assert_null(delivery_target_file(d, i));
	}
}

/* Run the "event loop" until want callbacks have run (or 5 s). */
static void run_loop(struct committer *c, struct loop *l, int want)
{
	uint64_t deadline = time_mono_ms() + 5000;
	while (l->done < want && time_mono_ms() < deadline) {
		struct pollfd p = { .fd = l->efd, .events = POLLIN };
		if (poll(&p, 1, 100) > 0) {
			uint64_t v;
			assert_int_equal(read(l->efd, &v, sizeof v), (ssize_t)sizeof v);
			l->notified++;
			committer_reap(c);
		}
	}
}

static struct delivery *make_delivery(const char *root, const char *body, size_t n)
{
	char *err = NULL;
	struct delivery *d = delivery_new("h");
	assert_int_equal(delivery_add_target(d, root, "Delivered-To: u@x.y\n", &err), 0);
	assert_int_equal(delivery_write(d, body, n), 0);
	return d;
}

#define NROOTS 5
#define NDELIV 50

static void test_group_commit(void **state)
{
	(void)state;
	struct loop l = { 0 };
	l.efd = eventfd(0, EFD_CLOEXEC);
	assert_true(l.efd >= 0);
	char *roots[NROOTS];
	for (int i = 0; i < NROOTS; i++)
		roots[i] = xasprintf("%s/g%d", tmpdir, i);
	char *body = make_body(4096);
	struct delivery *ds[NDELIV];
	for (int i = 0; i < NDELIV; i++)
		ds[i] = make_delivery(roots[i % NROOTS], body, 4096);

	struct committer *c = committer_new(notify_cb, &l);
	for (int i = 0; i < NDELIV; i++)
		committer_submit(c, ds[i], done_cb, &l);
	run_loop(c, &l, NDELIV);
	assert_int_equal(l.done, NDELIV);
	assert_int_equal(l.ok, NDELIV);
	assert_true(l.notified >= 1);
	uint64_t batches, deliveries;
	committer_stats(c, &batches, &deliveries);
	assert_int_equal(deliveries, NDELIV);
	assert_true(batches >= 1);
	assert_true(batches < NDELIV);
	committer_free(&c);
	assert_null(c);
	for (int i = 0; i < NROOTS; i++) {
		assert_int_equal(count_entries(roots[i], "new"), NDELIV / NROOTS);
		assert_int_equal(count_entries(roots[i], "tmp"), 0);
		free(roots[i]);
	}
	free(body);
	close(l.efd);
}

/* One failing delivery in a batch does not affect the others. */
static void test_group_commit_partial_failure(void **state)
{
	(void)state;
	struct loop l = { 0 };
	l.efd = eventfd(0, EFD_CLOEXEC);
	char *good = path("good"), *bad0 = path("bad0"), *bad1 = path("bad1");
	char *body = make_body(4096);
	char *err = NULL;
	/* Only the failing delivery has a second copy: copy 1 fails. */
	maildir_test_fail_writes(1, 0);
	struct delivery *ds[10];
	for (int i = 0; i < 10; i++) {
		if (i == 4) {
			ds[i] = delivery_new("h");
			assert_int_equal(delivery_add_target(ds[i], bad0, NULL, &err), 0);
			assert_int_equal(delivery_add_target(ds[i], bad1, NULL, &err), 0);
			assert_int_equal(delivery_write(ds[i], body, 4096), 0);
		} else {
			ds[i] = make_delivery(good, body, 4096);
		}
	}
	struct committer *c = committer_new(notify_cb, &l);
	for (int i = 0; i < 10; i++)
		committer_submit(c, ds[i], done_cb, &l);
	run_loop(c, &l, 10);
	assert_int_equal(l.ok, 9);
	assert_int_equal(l.failed, 1);
	committer_free(&c);
	assert_int_equal(count_entries(good, "new"), 9);
	assert_int_equal(count_entries(good, "tmp"), 0);
	char *bads[2] = { bad0, bad1 };
	check_no_files(bads, 2);
	free(body);
	free(good);
	free(bad0);
	free(bad1);
	close(l.efd);
}

static void test_committer_free_drains(void **state)
{
	(void)state;
	struct loop l = { 0 };
	l.efd = eventfd(0, EFD_CLOEXEC);
	char *root = path("drain");
	char *body = make_body(4096);
	struct committer *c = committer_new(notify_cb, &l);
	for (int i = 0; i < 20; i++)
		committer_submit(c, make_delivery(root, body, 4096), done_cb, &l);
	/* No reap: free commits what is pending and runs every callback. */
	committer_free(&c);
	assert_null(c);
	assert_int_equal(l.done, 20);
	assert_int_equal(l.ok, 20);
	assert_int_equal(count_entries(root, "new"), 20);
	assert_int_equal(count_entries(root, "tmp"), 0);
	free(body);
	free(root);
	close(l.efd);
}

/* ---- tmp cleaning ---- */

static void test_clean_tmp(void **state)
{
	(void)state;
	char *root = path("clean");
	char *err = NULL;
	assert_int_equal(maildir_create(root, &err), 0);
	static const struct {
		const char *name;
		int64_t age;
		bool gone;
	} files[] = {
		{ "old", 37 * 3600, true },
		{ "ancient", 400 * 86400, true },
		{ "fresh", 0, false },
		{ "recent", 35 * 3600, false },
	};
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	for (size_t i = 0; i < N_ELEMENTS(files); i++) {
		char *p = xasprintf("%s/tmp/%s", root, files[i].name);
		int fd = open(p, O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		struct timespec ts[2] = { { now.tv_sec - files[i].age, 0 },
					  { now.tv_sec - files[i].age, 0 } };
		assert_int_equal(futimens(fd, ts), 0);
		close(fd);
		free(p);
	}
	/* An old directory in tmp/ is not ours: left alone. */
	char *sub = xasprintf("%s/tmp/dir", root);
	assert_int_equal(mkdir(sub, 0700), 0);
	time_t old = now.tv_sec - 400 * 86400;
	struct timespec ts[2] = { { old, 0 }, { old, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, sub, ts, 0), 0);
	/* A message in new/ is never touched. */
	char *msg = xasprintf("%s/new/m", root);
	int fd = open(msg, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(utimensat(AT_FDCWD, msg, ts, 0), 0);

	/* Just written with an old mtime (like an APPEND's INTERNALDATE):
	 * the fresh ctime keeps every file. */
	maildir_clean_tmp(root);
	for (size_t i = 0; i < N_ELEMENTS(files); i++) {
		char *p = xasprintf("%s/tmp/%s", root, files[i].name);
		assert_int_equal(access(p, F_OK), 0);
		free(p);
	}
	/* A cutoff 10 s in the future puts every ctime (now) behind it; the
	 * mtimes, shifted by the same 36 h + 10 s, then decide as a real
	 * 36-hour sweep would. */
	int64_t shift = 36 * 3600 + 10;
	for (size_t i = 0; i < N_ELEMENTS(files); i++) {
		char *p = xasprintf("%s/tmp/%s", root, files[i].name);
		struct timespec t2[2] = { { now.tv_sec - files[i].age + shift, 0 },
					  { now.tv_sec - files[i].age + shift, 0 } };
		assert_int_equal(utimensat(AT_FDCWD, p, t2, 0), 0);
		free(p);
	}
	maildir_clean_tmp_older(root, -10);
	for (size_t i = 0; i < N_ELEMENTS(files); i++) {
		char *p = xasprintf("%s/tmp/%s", root, files[i].name);
		assert_int_equal(access(p, F_OK) == 0, !files[i].gone);
		free(p);
	}
	assert_int_equal(access(sub, F_OK), 0);
	assert_int_equal(access(msg, F_OK), 0);
	/* Missing Maildir: nothing happens. */
	char *missing = path("nope");
	maildir_clean_tmp(missing);
	free(missing);
	free(msg);
	free(sub);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_account_paths),
		cmocka_unit_test_setup_teardown(test_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_large_chunked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_large_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wsize_counts_lfs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_root_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_failure_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_at_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc_during_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_partial_failure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_committer_free_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clean_tmp, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
