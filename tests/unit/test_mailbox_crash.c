/* SPDX-License-Identifier: MIT */
/* Crash safety and concurrency of the mailbox store (store/mailbox.h).
 *
 * Crashes: for each operation (APPEND, COPY, MOVE, EXPUNGE, STORE, the sync
 * that adopts delivered mail, RENAME, RENAME INBOX, DELETE) a forked child
 * runs it on a copy of a seeded account and is killed with SIGKILL at crash
 * point 1, 2, ... (mbox_test_crash_at) until it gets through. After each
 * kill the account is reopened and checked: every file in cur/ and new/ has
 * exactly one index row and every row one file, UIDs are unique and
 * ascending below UIDNEXT, flags in file names match the index, surviving
 * messages keep their UIDs, and no message is lost (a MOVE leaves it in the
 * source, the destination or both, never neither; an expunged message never
 * comes back).
 *
 * Concurrency: four processes append, store, expunge, move and sync on one
 * mailbox at once; afterwards the same invariants hold and the message
 * counts add up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "store/maildir.h"
#include "store/mailbox.h"

static char *base_dir;

static int setup(void **state)
{
	(void)state;
	/* tmpfs when there is one: these tests kill processes, they do not
	 * need a disk, and a busy shared disk makes them slow. */
	char shm[] = "/dev/shm/tern-mbcrash-XXXXXX", tmp[] = "/tmp/tern-mbcrash-XXXXXX";
	char *tmpl = access("/dev/shm", W_OK) == 0 ? shm : tmp;
	if (mkdtemp(tmpl) == NULL)
		return -1;
	base_dir = xstrdup(tmpl);
	/* Process kills, not power loss: the page cache keeps what was written. */
	mbox_test_nosync(true);
	return 0;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* cp -a of a small tree (regular files and directories only). */
static const char *copy_src, *copy_dst;

static int copy_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)f;
	char *to = xasprintf("%s%s", copy_dst, p + strlen(copy_src));
	int r = 0;
	if (flag == FTW_D) {
		r = mkdir(to, sb->st_mode & 07777);
	} else if (flag == FTW_F) {
		int in = open(p, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
		char buf[8192];
		ssize_t n;
		r = in >= 0 && out >= 0 ? 0 : -1;
		while (r == 0 && (n = read(in, buf, sizeof buf)) > 0)
			r = write_full(out, buf, (size_t)n);
		if (in >= 0)
			close(in);
		if (out >= 0)
			close(out);
		struct timespec ts[2] = { sb->st_atim, sb->st_mtim };
		if (r == 0)
			r = utimensat(AT_FDCWD, to, ts, 0);
	}
	free(to);
	return r;
}

/* Directory mtimes are copied after their contents. */
static int copy_times_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)f;
	if (flag != FTW_DP)
		return 0;
	char *to = xasprintf("%s%s", copy_dst, p + strlen(copy_src));
	struct timespec ts[2] = { sb->st_atim, sb->st_mtim };
	int r = utimensat(AT_FDCWD, to, ts, 0);
	free(to);
	return r;
}

static void copy_tree(const char *from, const char *to)
{
	copy_src = from;
	copy_dst = to;
	assert_int_equal(nftw(from, copy_cb, 16, FTW_PHYS), 0);
	assert_int_equal(nftw(from, copy_times_cb, 16, FTW_PHYS | FTW_DEPTH), 0);
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(base_dir);
	free(base_dir);
	base_dir = NULL;
	return 0;
}

static void append_msg(struct mstore *s, const char *mbox, const char *tag, unsigned flags,
		       uint32_t *uid_r)
{
	char *msg = xasprintf("Subject: %s\r\nMessage-ID: <%s@x>\r\n\r\nbody of %s\r\n", tag, tag,
			      tag);
	struct mbox_append *a;
	struct mbox_err err;
	assert_int_equal(mstore_append_begin(s, mbox, &a, &err), 0);
	assert_int_equal(mbox_append_write(a, msg, strlen(msg), &err), 0);
	const char *kw[1] = { "$Tag" };
	uint32_t uv, uid;
	assert_int_equal(mbox_append_commit(&a, flags, kw, 1, 0, 0, &uv, &uid, &err), 0);
	if (uid_r)
		*uid_r = uid;
	free(msg);
}

/* ---- invariants ------------------------------------------------------------- */

#define MAX_SEEN 512

struct seen {
	char mbox[64];
	char tag[32];
	uint32_t uid;
};
struct tally {
	struct seen v[MAX_SEEN];
	size_t n;
};

static unsigned info_flags_of(const char *name)
{
	const char *c = strstr(name, ":2,");
	unsigned f = 0;
	if (!c)
		return 0;
	for (c += 3; *c; c++)
		f |= *c == 'D' ? MBOX_DRAFT
		   : *c == 'F' ? MBOX_FLAGGED
		   : *c == 'R' ? MBOX_ANSWERED
		   : *c == 'S' ? MBOX_SEEN
		   : *c == 'T' ? MBOX_DELETED
			       : 0;
	return f;
}

struct rowlist {
	struct mbox_meta *v;
	size_t n;
};

static int collect(const struct mbox_meta *m, void *ctx)
{
	struct rowlist *l = ctx;
	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	struct mbox_meta *c = &l->v[l->n++];
	*c = *m;
	c->keywords = xstrdup(m->keywords);
	c->base = xstrdup(m->base);
	c->envelope = m->envelope ? xstrdup(m->envelope) : NULL;
	c->body = c->bodystructure = NULL;
	c->mime = NULL;
	c->mime_len = 0;
	return 0;
}

static void check_mailbox(struct mstore *s, const char *root, const char *name, struct tally *t)
{
	struct mbox *m;
	struct mbox_err err;
	assert_int_equal(mbox_open(s, name, false, &m, &err), 0);
	struct mbox_changes ch;
	assert_int_equal(mbox_sync(m, MBOX_SYNC_FULL, &ch, &err), 0);
	mbox_changes_free(&ch);
	struct rowlist l = { NULL, 0 };
	assert_int_equal(mbox_meta_range(m, 1, UINT32_MAX, MBOX_W_ENVELOPE, collect, &l, &err), 0);
	char *dn = mbox_name_to_dir(name);
	char *dir = *dn ? xasprintf("%s/%s", root, dn) : xstrdup(root);
	free(dn);
	/* new/ is empty after a sync; every file in cur/ has exactly one row. */
	char *p = xasprintf("%s/new", dir);
	DIR *d = opendir(p);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		assert_true(de->d_name[0] == '.');
	closedir(d);
	free(p);
	p = xasprintf("%s/cur", dir);
	d = opendir(p);
	assert_non_null(d);
	size_t files = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		files++;
		size_t bl = strcspn(de->d_name, ",:");
		size_t hits = 0;
		for (size_t i = 0; i < l.n; i++) {
			if (strlen(l.v[i].base) == bl && memcmp(l.v[i].base, de->d_name, bl) == 0) {
				hits++;
				/* The file name carries the index's flags. */
				assert_int_equal(info_flags_of(de->d_name), l.v[i].flags);
			}
		}
		if (hits != 1)
			fprintf(stderr, "%s: %s has %zu rows\n", name, de->d_name, hits);
		assert_int_equal(hits, 1);
	}
	closedir(d);
	free(p);
	assert_int_equal(files, l.n);
	/* UIDs unique, ascending, below UIDNEXT; read every message. */
	for (size_t i = 0; i < l.n; i++) {
		if (i > 0)
			assert_true(l.v[i].uid > l.v[i - 1].uid);
		assert_true(l.v[i].uid < mbox_uidnext(m));
		int fd;
		assert_int_equal(mbox_msg_open(m, l.v[i].uid, &fd, &err), 0);
		char buf[256];
		ssize_t r = read(fd, buf, sizeof buf - 1);
		close(fd);
		assert_true(r > 9);
		buf[r] = '\0';
		assert_memory_equal(buf, "Subject: ", 9);
		assert_true(t->n < MAX_SEEN);
		struct seen *sv = &t->v[t->n++];
		snprintf(sv->mbox, sizeof sv->mbox, "%s", name);
		size_t tl = strcspn(buf + 9, "\n");
		snprintf(sv->tag, sizeof sv->tag, "%.*s", (int)tl, buf + 9);
		sv->uid = l.v[i].uid;
		assert_non_null(l.v[i].envelope);
		mbox_meta_free(&l.v[i]);
	}
	free(l.v);
	free(dir);
	mbox_close(&m);
}

/* Opens the account and checks every mailbox; fills t. */
static void check_account(const char *root, struct tally *t)
{
	struct mstore *s;
	struct mbox_err err;
	t->n = 0;
	int r = mstore_open(root, &s, &err);
	if (r != 0)
		fprintf(stderr, "mstore_open: %s\n", err.msg);
	assert_int_equal(r, 0);
	struct mbox_info *v;
	size_t n;
	assert_int_equal(mstore_list(s, &v, &n, &err), 0);
	for (size_t i = 0; i < n; i++)
		if (!(v[i].attrs & (MBOX_ATTR_NOSELECT | MBOX_ATTR_NONEXISTENT)))
			check_mailbox(s, root, v[i].name, t);
	mbox_info_free(v, n);
	mstore_close(&s);
}

/* Times tag occurs in mailbox mbox (NULL: anywhere); *uid_r its last UID. */
static size_t count(const struct tally *t, const char *mbox, const char *tag, uint32_t *uid_r)
{
	size_t c = 0;
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].tag, tag) == 0 && (!mbox || strcmp(t->v[i].mbox, mbox) == 0)) {
			c++;
			if (uid_r)
				*uid_r = t->v[i].uid;
		}
	}
	return c;
}

/* ---- crash scenarios ------------------------------------------------------------ */

enum op { OP_APPEND, OP_COPY, OP_MOVE, OP_EXPUNGE, OP_STORE, OP_ADOPT, OP_RENAME, OP_RENAME_INBOX,
	  OP_DELETE };
static const char *const op_name[] = { "append", "copy",   "move",         "expunge", "store",
				       "adopt",  "rename", "rename-inbox", "delete" };
static const char *const seed_tags[] = { "s1", "s2", "s3", "s4" };

/* INBOX: s1..s4 (UIDs 1..4; s2 and s4 \Deleted); Old/Sub: o1. Two delivered
 * files wait in new/ for OP_ADOPT. */
static char *make_seed(enum op op)
{
	char *seed = xasprintf("%s/seed", base_dir);
	rm_rf(seed);
	struct mstore *s;
	struct mbox_err err;
	assert_int_equal(mstore_open(seed, &s, &err), 0);
	for (unsigned i = 0; i < 4; i++)
		append_msg(s, "INBOX", seed_tags[i], i % 2 ? MBOX_DELETED : 0, NULL);
	assert_int_equal(mstore_create(s, "Old/Sub", MBOX_SPECIAL_NONE, &err), 0);
	append_msg(s, "Old/Sub", "o1", 0, NULL);
	/* Settle: open INBOX once so the index has seen everything. */
	struct mbox *m;
	assert_int_equal(mbox_open(s, "INBOX", false, &m, &err), 0);
	mbox_close(&m);
	mstore_close(&s);
	if (op == OP_ADOPT) {
		static const char *const d[] = { "Subject: d1\nMessage-ID: <d1@x>\n\nd1\n",
						 "Subject: d2\nMessage-ID: <d2@x>\n\nd2\n" };
		for (size_t i = 0; i < 2; i++) {
			struct delivery *dl = delivery_new("h");
			char *e = NULL;
			assert_int_equal(delivery_add_target(dl, seed, NULL, &e), 0);
			assert_int_equal(delivery_write(dl, d[i], strlen(d[i])), 0);
			assert_int_equal(delivery_commit_sync(&dl, &e), 0);
		}
	}
	return seed;
}

static void child_op(const char *root, enum op op, unsigned crash_at)
{
	struct mstore *s;
	struct mbox_err err;
	if (mstore_open(root, &s, &err) != 0)
		_exit(2);
	struct mbox *m = NULL;
	if (op != OP_RENAME && op != OP_RENAME_INBOX && op != OP_DELETE && op != OP_ADOPT &&
	    mbox_open(s, "INBOX", false, &m, &err) != 0)
		_exit(3);
	mbox_test_crash_at(crash_at);
	uint32_t all[4] = { 1, 2, 3, 4 }, uv, *su, *du;
	size_t n;
	int r = 0;
	switch (op) {
	case OP_APPEND: {
		struct mbox_append *a;
		const char *msg = "Subject: new\r\n\r\nnew\r\n";
		const char *kw[1] = { "$New" };
		uint32_t uid;
		r = mstore_append_begin(s, "INBOX", &a, &err);
		if (r == 0)
			r = mbox_append_write(a, msg, strlen(msg), &err);
		if (r == 0)
			r = mbox_append_commit(&a, MBOX_SEEN, kw, 1, 0, 0, &uv, &uid, &err);
		break;
	}
	case OP_COPY:
	case OP_MOVE:
		r = mbox_copy(m, all, 4, "Archive", op == OP_MOVE, &uv, &su, &du, &n, &err);
		break;
	case OP_EXPUNGE:
		r = mbox_expunge(m, NULL, 0, NULL, NULL, &err);
		break;
	case OP_STORE:
		r = mbox_store(m, all, 4, MBOX_OP_ADD, MBOX_FLAGGED | MBOX_SEEN, NULL, 0, 0, NULL,
			       NULL, &err);
		if (r == 0)
			r = mbox_store(m, all, 4, MBOX_OP_REMOVE, MBOX_DELETED, NULL, 0, 0, NULL, NULL,
				       &err);
		break;
	case OP_ADOPT:
		r = mbox_open(s, "INBOX", false, &m, &err);
		break;
	case OP_RENAME:
		r = mstore_rename(s, "Old", "New/Place", &err);
		break;
	case OP_RENAME_INBOX:
		r = mstore_rename(s, "INBOX", "Saved", &err);
		break;
	case OP_DELETE:
		r = mstore_delete(s, "Old/Sub", &err);
		break;
	}
	_exit(r == 0 ? 0 : 4);
}

/* Checks what must hold after op, complete or not. */
static void check_op(enum op op, const struct tally *t, bool done)
{
	for (unsigned i = 0; i < 4; i++) {
		const char *tag = seed_tags[i];
		bool deleted = i % 2 == 1;
		uint32_t uid = 0;
		size_t in = count(t, "INBOX", tag, &uid);
		size_t total = count(t, NULL, tag, NULL);
		assert_true(in <= 1);
		if (in)
			assert_int_equal(uid, i + 1); /* survivors keep their UID */
		switch (op) {
		case OP_MOVE:
		case OP_RENAME_INBOX: {
			const char *dst = op == OP_MOVE ? "Archive" : "Saved";
			size_t out = count(t, dst, tag, NULL);
			assert_true(out <= 1);
			assert_true(in + out >= 1); /* never lost */
			if (done)
				assert_true(in == 0 && out == 1);
			break;
		}
		case OP_COPY:
			assert_int_equal(in, 1);
			assert_true(count(t, "Archive", tag, NULL) <= 1);
			if (done)
				assert_int_equal(count(t, "Archive", tag, NULL), 1);
			break;
		case OP_EXPUNGE:
			if (!deleted || !done)
				assert_int_equal(total, deleted ? in : 1);
			if (!deleted)
				assert_int_equal(in, 1);
			if (done && deleted)
				assert_int_equal(in, 0);
			break;
		default:
			assert_int_equal(in, 1);
			assert_int_equal(total, 1);
			break;
		}
	}
	size_t o1 = count(t, NULL, "o1", NULL);
	switch (op) {
	case OP_APPEND:
		assert_true(count(t, "INBOX", "new", NULL) <= 1);
		if (done)
			assert_int_equal(count(t, "INBOX", "new", NULL), 1);
		break;
	case OP_ADOPT:
		assert_true(count(t, "INBOX", "d1", NULL) == 1);
		assert_true(count(t, "INBOX", "d2", NULL) == 1);
		break;
	case OP_RENAME:
		assert_int_equal(o1, 1);
		if (done)
			assert_int_equal(count(t, "New/Place/Sub", "o1", NULL), 1);
		break;
	case OP_DELETE:
		assert_true(o1 <= 1);
		if (done)
			assert_int_equal(o1, 0);
		break;
	default:
		assert_int_equal(o1, 1);
		break;
	}
}

static void crash_loop(enum op op)
{
	char *seed = make_seed(op);
	char *work = xasprintf("%s/work", base_dir);
	struct tally *t = xcalloc(1, sizeof *t);
	unsigned kills = 0;
	for (unsigned n = 1; n < 200; n++) {
		rm_rf(work);
		copy_tree(seed, work);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			child_op(work, op, n);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
		if (!killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			fprintf(stderr, "%s: child status %d at %u\n", op_name[op], status, n);
		assert_true(killed || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
		check_account(work, t);
		check_op(op, t, !killed);
		if (!killed)
			break;
		kills++;
	}
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "%s: %u crash points\n", op_name[op], kills);
	/* Every operation has crash points, and finished in the end. */
	assert_true(kills >= 2);
	free(t);
	free(work);
	free(seed);
}

static void test_crash_append(void **state)
{
	(void)state;
	crash_loop(OP_APPEND);
}
static void test_crash_copy(void **state)
{
	(void)state;
	crash_loop(OP_COPY);
}
static void test_crash_move(void **state)
{
	(void)state;
	crash_loop(OP_MOVE);
}
static void test_crash_expunge(void **state)
{
	(void)state;
	crash_loop(OP_EXPUNGE);
}
static void test_crash_store(void **state)
{
	(void)state;
	crash_loop(OP_STORE);
}
static void test_crash_adopt(void **state)
{
	(void)state;
	crash_loop(OP_ADOPT);
}
static void test_crash_rename(void **state)
{
	(void)state;
	crash_loop(OP_RENAME);
}
static void test_crash_rename_inbox(void **state)
{
	(void)state;
	crash_loop(OP_RENAME_INBOX);
}
static void test_crash_delete(void **state)
{
	(void)state;
	crash_loop(OP_DELETE);
}

/* ---- concurrency ----------------------------------------------------------------- */

#define NPROC 4
#define ITERS 30

struct counts {
	unsigned appended, expunged, moved, bad;
};

static void worker(const char *root, unsigned id, int out)
{
	struct counts c = { 0, 0, 0, 0 };
	struct mstore *s;
	struct mbox *m;
	struct mbox_err err;
	if (mstore_open(root, &s, &err) != 0 || mbox_open(s, "INBOX", false, &m, &err) != 0)
		_exit(2);
	size_t nv;
	const uint32_t *u0 = mbox_uids(m, &nv);
	uint32_t view[NPROC * ITERS + 8], mine[ITERS];
	size_t nmine = 0;
	if (nv)
		memcpy(view, u0, nv * sizeof *view);
	srand(id * 7919u + 1);
	for (unsigned k = 0; k < ITERS; k++) {
		char tag[32];
		snprintf(tag, sizeof tag, "p%u-%u", id, k);
		char *msg = xasprintf("Subject: %s\r\n\r\n%s\r\n", tag, tag);
		struct mbox_append *a;
		uint32_t uv, uid;
		if (mstore_append_begin(s, "INBOX", &a, &err) != 0 ||
		    mbox_append_write(a, msg, strlen(msg), &err) != 0 ||
		    mbox_append_commit(&a, 0, NULL, 0, 0, 0, &uv, &uid, &err) != 0)
			_exit(5);
		free(msg);
		c.appended++;
		mine[nmine++] = uid;
		uint32_t pick = mine[(size_t)rand() % nmine];
		if (k % 3 == 1 && mbox_store(m, &pick, 1, MBOX_OP_ADD, MBOX_DELETED, NULL, 0, 0, NULL,
					     NULL, &err) != 0)
			_exit(6);
		if (k % 5 == 4) {
			size_t ne;
			if (mbox_expunge(m, NULL, 0, NULL, &ne, &err) != 0)
				_exit(7);
			c.expunged += (unsigned)ne;
		}
		if (k % 7 == 6) {
			uint32_t *su, *du;
			size_t n;
			if (mbox_copy(m, &pick, 1, "Archive", true, &uv, &su, &du, &n, &err) != 0)
				_exit(8);
			c.moved += (unsigned)n;
			free(su);
			free(du);
		}
		/* The session's view: added UIDs are always above every UID seen. */
		struct mbox_changes ch;
		if (mbox_sync(m, 0, &ch, &err) != 0)
			_exit(9);
		for (size_t i = 0; i < ch.n_expunged; i++) {
			for (size_t j = 0; j < nv; j++) {
				if (view[j] == ch.expunged[i]) {
					memmove(&view[j], &view[j + 1], (nv - j - 1) * sizeof *view);
					nv--;
					break;
				}
			}
		}
		for (size_t i = 0; i < ch.n_added; i++) {
			if (nv > 0 && ch.added[i] <= view[nv - 1])
				c.bad++;
			if (nv < sizeof view / sizeof view[0])
				view[nv++] = ch.added[i];
		}
		mbox_changes_free(&ch);
	}
	/* Its view equals the index now (nobody else may be running: check
	 * only that every UID in the view is ascending). */
	for (size_t j = 1; j < nv; j++)
		if (view[j] <= view[j - 1])
			c.bad++;
	mbox_close(&m);
	mstore_close(&s);
	if (write(out, &c, sizeof c) != (ssize_t)sizeof c)
		_exit(10);
	_exit(0);
}

static void test_concurrent(void **state)
{
	(void)state;
	char *root = xasprintf("%s/conc", base_dir);
	struct mstore *s;
	struct mbox_err err;
	assert_int_equal(mstore_open(root, &s, &err), 0);
	mstore_close(&s);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pids[NPROC];
	for (unsigned i = 0; i < NPROC; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			close(fds[0]);
			worker(root, i, fds[1]);
		}
	}
	close(fds[1]);
	struct counts total = { 0, 0, 0, 0 };
	for (unsigned i = 0; i < NPROC; i++) {
		int status;
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		struct counts c;
		assert_int_equal(read(fds[0], &c, sizeof c), (ssize_t)sizeof c);
		total.appended += c.appended;
		total.expunged += c.expunged;
		total.moved += c.moved;
		total.bad += c.bad;
	}
	close(fds[0]);
	assert_int_equal(total.bad, 0);
	assert_int_equal(total.appended, NPROC * ITERS);
	assert_true(total.expunged > 0);
	struct tally *t = xcalloc(1, sizeof *t);
	check_account(root, t);
	size_t inbox = 0, archive = 0;
	for (size_t i = 0; i < t->n; i++) {
		inbox += strcmp(t->v[i].mbox, "INBOX") == 0;
		archive += strcmp(t->v[i].mbox, "Archive") == 0;
		/* Each message exists once. */
		assert_int_equal(count(t, NULL, t->v[i].tag, NULL), 1);
	}
	assert_int_equal(inbox, total.appended - total.expunged - total.moved);
	assert_int_equal(archive, total.moved);
	/* UIDs in INBOX went up to exactly the number of appends. */
	struct mbox_status st;
	assert_int_equal(mstore_open(root, &s, &err), 0);
	assert_int_equal(mstore_status(s, "INBOX", 0, &st, &err), 0);
	assert_int_equal(st.uidnext, total.appended + 1);
	assert_int_equal(st.messages, inbox);
	mstore_close(&s);
	free(t);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crash_append, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_adopt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_rename_inbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
