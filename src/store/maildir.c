/* SPDX-License-Identifier: MIT */
/* Maildir delivery: account paths, tmp/ files, buffered writes to every copy
 * of a message, and the commit that makes the copies visible in new/, either
 * synchronously or batched on the committer thread (group commit).
 *
 * Commit protocol, per delivery (see maildir.h for the file layout):
 *   1. flush the in-memory buffer to every tmp/ file;
 *   2. make the file data durable (fdatasync, or syncfs for a batch);
 *   3. rename tmp/<name> to new/<name>,S=<size>,W=<wsize>: the sizes are only
 *      final now, so the name is chosen at rename time;
 *   4. fsync each distinct new/ directory once, which makes the renames
 *      durable (a rename is a directory change, fdatasync of the file does
 *      not cover it); for a batch touching many directories, one syncfs
 *      instead (see sync_dirs()).
 * Any failure unlinks every copy of that delivery (renamed or still in tmp/),
 * so a delivery is all or nothing; other deliveries of the batch are not
 * affected.
 *
 * Group commit. Deliveries are queued from the loop thread; one committer
 * thread takes the WHOLE queue as a batch. A batch of one delivery uses
 * fdatasync per file (cheapest when alone: no unrelated data is flushed).
 * From two deliveries up it calls syncfs() once per filesystem of the batch
 * instead of one fdatasync per file: on ext4/xfs each fdatasync forces a
 * journal commit plus a device cache flush, and N of them in a row cost N
 * flushes, while syncfs writes back every dirty page of the filesystem and
 * ends with a single journal commit and flush. Why this is safe:
 *   - renames happen only after syncfs returned 0, i.e. after every file's
 *     data and size are on stable storage, so a crash can never expose a
 *     new/ entry that points at missing data (same ordering as with
 *     fdatasync; batching changes the number of syncs, not their order);
 *   - the done callbacks (the SMTP 250) run only after step 4, so a
 *     message acknowledged to the client survives a crash;
 *   - error reporting: since Linux 5.8 syncfs returns writeback errors
 *     recorded on the filesystem since the fd it is called on was opened.
 *     We call it on the earliest-opened file of the batch on that
 *     filesystem, so an error on any file of the batch is reported. On older
 *     kernels (syncfs always returned 0) we never use it. If syncfs fails we
 *     fall back to fdatasync per file, which reports the error per file
 *     (each fd has its own error cursor), so only the deliveries whose data
 *     was actually lost fail.
 * The cost is that syncfs also flushes unrelated dirty data of the same
 * filesystem; mail spools normally live on a filesystem used for mail.
 * While the committer syncs, new submissions accumulate and form the next
 * batch, so the batch size follows the load without any timer.
 *
 * What tools/bench_maildir.c measured on the (shared, 2-core) dev VM, where
 * a flush costs only ~0.2 ms: with 100 clients a batch averages ~50
 * deliveries, i.e. two syncfs per 50 messages instead of two syncs each,
 * but throughput was not better than one thread per client doing its own
 * fdatasync + fsync(new/) (the kernel's journal already merges concurrent
 * fsyncs): the single committer and the single loop thread serialise the
 * per-file metadata calls (open in tmp/, rename). The win is on storage
 * where a flush costs milliseconds, and in not needing a thread per
 * message in flight. Replacing the per-directory fsyncs of a 50-mailbox
 * batch by one syncfs cut its commit from 6.5-14.5 ms to 3.5-5.4 ms.
 *
 * Writes: content is buffered (64 KiB) and written to all copies with one
 * writev() per copy (per-target header + buffer), so a small message costs
 * one write per copy. The write path runs on whichever thread calls
 * delivery_write / the commit; a delivery is only touched by one thread at
 * a time (the committer owns it from committer_submit to the reap). For a
 * message under 64 KiB the caller's thread does only the open() in tmp/
 * (and an fstat); every write and sync happens on the committer thread.
 * That open() is metadata work and can wait for a journal commit: under
 * tools/bench_maildir.c it averaged 0.03-0.5 ms with peaks of 5 ms on the
 * loop thread, which is why the daemon may prefer to create deliveries on
 * a jobs thread. */
#include "store/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

#define DELIVERY_BUF_SIZE (64 * 1024)
/* Maildir convention: tmp/ files untouched for 36 hours are debris. */
#define TMP_MAX_AGE_SECS (36 * 3600)
/* RFC 5321 4.5.3.1.1 (local part 64 octets) and 4.5.3.1.2 (domain 255). */
#define LOCAL_MAX 64
#define DOMAIN_MAX 255
#define HOST_MAX 255

struct target {
	char *root;
	char *new_dir;  /* root/new */
	char *base;     /* unique base name, without ,S= ,W= */
	char *tmp_path; /* root/tmp/base */
	char *new_path; /* root/new/base,S=..,W=.. once renamed */
	char *rel;      /* "new/base,S=..,W=.." once renamed */
	int fd;
	dev_t dev;
	uint64_t open_seq; /* orders opens: syncfs uses the earliest fd */
	char *hdr;         /* per-copy header, written with the first flush */
	size_t hdr_len;
	uint64_t hdr_lfs;
	uint64_t written; /* bytes written to fd (test fault injection) */
	bool created; /* tmp_path is ours to unlink */
	bool renamed;
};

struct delivery {
	char *host; /* sanitised for file names */
	char rand[17];
	struct target *t;
	size_t n, cap;
	uint8_t *buf; /* lazily allocated, DELIVERY_BUF_SIZE */
	size_t buf_len;
	uint64_t size; /* content bytes, excluding per-target headers */
	uint64_t lfs;  /* LFs in content */
	bool failed;
	char *err; /* first error, for the log */
	/* committer */
	struct delivery *next;
	delivery_done_fn *done;
	void *done_ctx;
};

struct committer {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct delivery *pending, **pending_tail;
	struct delivery *done, **done_tail;
	bool stop;
	pthread_t thread;
	committer_notify_fn *notify;
	void *notify_ctx;
	uint64_t batches, deliveries; /* __atomic, read by committer_stats */
};

static uint64_t name_seq;
static uint64_t open_seq_counter;
static size_t test_fail_target = SIZE_MAX;
static uint64_t test_fail_after;

void maildir_test_fail_writes(size_t target, uint64_t after_bytes)
{
	__atomic_store_n(&test_fail_after, after_bytes, __ATOMIC_SEQ_CST);
	__atomic_store_n(&test_fail_target, target, __ATOMIC_SEQ_CST);
}

static uint64_t count_lfs(const void *p, size_t n)
{
	const char *s = p, *end = s + n;
	uint64_t c = 0;
	while (s < end && (s = memchr(s, '\n', (size_t)(end - s))) != NULL) {
		c++;
		s++;
	}
	return c;
}

static bool has_dotdot(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '.' && s[i + 1] == '.')
			return true;
	return false;
}

/* A local part or domain usable as one path component. */
static bool path_part_ok(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max || s[0] == '.' || has_dotdot(s, n))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
			return false;
	}
	return true;
}

char *maildir_account_path(const char *data_dir, const char *address)
{
	const char *at = strchr(address, '@');
	if (at == NULL || strchr(at + 1, '@') != NULL)
		return NULL;
	size_t llen = (size_t)(at - address);
	size_t dlen = strlen(at + 1);
	if (!path_part_ok(address, llen, LOCAL_MAX) || !path_part_ok(at + 1, dlen, DOMAIN_MAX))
		return NULL;
	/* "example.com." would alias "example.com" in another directory. */
	if (at[dlen] == '.')
		return NULL;
	char *local = xstrndup(address, llen);
	char *domain = xstrdup(at + 1);
	ascii_lower(local);
	ascii_lower(domain);
	char *r = xasprintf("%s/mail/%s/%s", data_dir, domain, local);
	free(local);
	free(domain);
	return r;
}

/* Length of the longest existing directory prefix of path (at a '/'). */
static size_t existing_prefix(const char *path)
{
	char *p = xstrdup(path);
	size_t n = strlen(p);
	struct stat st;
	while (n > 0 && stat(p, &st) < 0) {
		while (n > 0 && p[n - 1] != '/')
			n--;
		while (n > 1 && p[n - 1] == '/')
			n--;
		p[n] = '\0';
	}
	free(p);
	return n;
}

/* A message in a directory created just now is only durable if the new
 * directory entries are: fsync every directory from the deepest one that
 * already existed down to root. */
static int fsync_created(const char *root, size_t existed, char **err_r)
{
	char *p = xstrdup(root);
	size_t n = strlen(p);
	for (;;) {
		const char *dir = n > 0 ? p : ".";
		if (fsync_dir(dir) < 0) {
			*err_r = xasprintf("fsync(%s): %s", dir, strerror(errno));
			free(p);
			return -1;
		}
		if (n <= existed)
			break;
		while (n > 0 && p[n - 1] != '/')
			n--;
		while (n > 1 && p[n - 1] == '/')
			n--;
		p[n] = '\0';
	}
	free(p);
	return 0;
}

int maildir_create(const char *root, char **err_r)
{
	static const char *const subs[] = { "cur", "new", "tmp" };
	size_t existed = existing_prefix(root);
	bool created = false;
	if (mkdir_p(root, 0700) < 0) {
		*err_r = xasprintf("mkdir(%s): %s", root, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < N_ELEMENTS(subs); i++) {
		char *p = xasprintf("%s/%s", root, subs[i]);
		if (mkdir(p, 0700) == 0) {
			created = true;
		} else if (errno != EEXIST) {
			*err_r = xasprintf("mkdir(%s): %s", p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	if (existed == strlen(root) && !created)
		return 0;
	return fsync_created(root, existed, err_r);
}

/* '/' and ':' are forbidden in Maildir names (the usual \057 and \072
 * escapes); ',' would confuse the ,S= ,W= fields. */
static char *sanitize_host(const char *h)
{
	if (h == NULL || *h == '\0')
		h = "localhost";
	size_t n = strnlen(h, HOST_MAX);
	char *out = xmalloc(n * 4 + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '/' || c == ':' || c == ',' || c == '\\' || c <= 0x20 || c >= 0x7f)
			o += sprintf(o, "\\%03o", c);
		else
			*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

struct delivery *delivery_new(const char *hostname)
{
	struct delivery *d = xcalloc(1, sizeof *d);
	d->host = sanitize_host(hostname);
	random_id(d->rand);
	return d;
}

static void fail(struct delivery *d, char *err)
{
	d->failed = true;
	if (d->err == NULL)
		d->err = err;
	else
		free(err);
}

static void fail_errno(struct delivery *d, const char *fn, const char *path)
{
	fail(d, xasprintf("%s(%s): %s", fn, path, strerror(errno)));
}

static int open_tmp(struct delivery *d, struct target *t, char **err_r)
{
	struct timeval tv;
	for (int attempt = 0; attempt < 5; attempt++) {
		gettimeofday(&tv, NULL);
		uint64_t q = __atomic_fetch_add(&name_seq, 1, __ATOMIC_RELAXED);
		free(t->base);
		free(t->tmp_path);
		t->base = xasprintf("%lld.M%06ldP%ldQ%lluR%s.%s", (long long)tv.tv_sec,
				    (long)tv.tv_usec, (long)getpid(), (unsigned long long)q,
				    d->rand, d->host);
		t->tmp_path = xasprintf("%s/tmp/%s", t->root, t->base);
		t->fd = open(t->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (t->fd >= 0) {
			t->created = true;
			return 0;
		}
		if (errno == ENOENT && attempt == 0) {
			/* Missing Maildir: create it once, then retry. */
			if (maildir_create(t->root, err_r) < 0)
				return -1;
			continue;
		}
		if (errno != EEXIST)
			break;
	}
	*err_r = xasprintf("open(%s): %s", t->tmp_path, strerror(errno));
	return -1;
}

int delivery_add_target(struct delivery *d, const char *root, const char *header, char **err_r)
{
	/* Content already flushed to the other copies cannot be replayed. */
	ASSERT(d->size == 0);
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 4;
		d->t = xrealloc(d->t, d->cap * sizeof *d->t);
	}
	struct target *t = &d->t[d->n];
	memset(t, 0, sizeof *t);
	t->fd = -1;
	t->root = xstrdup(root);
	t->new_dir = xasprintf("%s/new", root);
	d->n++; /* counted even on failure so abort/commit clean it up */
	struct stat st;
	if (open_tmp(d, t, err_r) < 0 || fstat(t->fd, &st) < 0) {
		if (t->fd >= 0) {
			*err_r = xasprintf("fstat(%s): %s", t->tmp_path, strerror(errno));
		}
		fail(d, xstrdup(*err_r));
		return -1;
	}
	t->dev = st.st_dev;
	t->open_seq = __atomic_fetch_add(&open_seq_counter, 1, __ATOMIC_RELAXED);
	if (header != NULL && *header != '\0') {
		t->hdr_len = strlen(header);
		t->hdr = xstrndup(header, t->hdr_len);
		t->hdr_lfs = count_lfs(header, t->hdr_len);
	}
	return 0;
}

static int writev_full(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t r = writev(fd, iov, iovcnt);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		size_t left = (size_t)r;
		while (iovcnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

/* Write p (may be empty) to every copy, preceded by copy headers not yet
 * written. One writev per copy. */
static int write_all_targets(struct delivery *d, const void *p, size_t n)
{
	if (d->failed)
		return -1;
	for (size_t i = 0; i < d->n; i++) {
		struct target *t = &d->t[i];
		struct iovec iov[2];
		int cnt = 0;
		if (t->hdr != NULL) {
			iov[cnt].iov_base = t->hdr;
			iov[cnt++].iov_len = t->hdr_len;
		}
		if (n > 0) {
			iov[cnt].iov_base = (void *)(uintptr_t)p;
			iov[cnt++].iov_len = n;
		}
		if (cnt == 0)
			continue;
		size_t len = (t->hdr != NULL ? t->hdr_len : 0) + n;
		int r;
		if (i == __atomic_load_n(&test_fail_target, __ATOMIC_SEQ_CST) &&
		    t->written + len > __atomic_load_n(&test_fail_after, __ATOMIC_SEQ_CST)) {
			errno = ENOSPC;
			r = -1;
		} else {
			r = writev_full(t->fd, iov, cnt);
		}
		if (r < 0) {
			fail_errno(d, "write", t->tmp_path);
			return -1;
		}
		t->written += len;
		free(t->hdr);
		t->hdr = NULL;
	}
	return 0;
}

static int flush(struct delivery *d)
{
	int r = write_all_targets(d, d->buf, d->buf_len);
	d->buf_len = 0;
	return r;
}

int delivery_write(struct delivery *d, const void *p, size_t n)
{
	const uint8_t *s = p;
	if (d->failed)
		return -1;
	d->size += n;
	d->lfs += count_lfs(p, n);
	if (d->buf_len == 0 && n >= DELIVERY_BUF_SIZE)
		return write_all_targets(d, s, n); /* large chunk: no copy */
	if (d->buf == NULL)
		d->buf = xmalloc(DELIVERY_BUF_SIZE);
	while (n > 0) {
		size_t k = DELIVERY_BUF_SIZE - d->buf_len;
		if (k > n)
			k = n;
		memcpy(d->buf + d->buf_len, s, k);
		d->buf_len += k;
		s += k;
		n -= k;
		if (d->buf_len == DELIVERY_BUF_SIZE && flush(d) < 0)
			return -1;
	}
	return 0;
}

uint64_t delivery_size(const struct delivery *d)
{
	return d->size;
}

size_t delivery_ntargets(const struct delivery *d)
{
	return d->n;
}

const char *delivery_target_file(const struct delivery *d, size_t i)
{
	ASSERT(i < d->n);
	return d->t[i].rel;
}

static void close_fds(struct delivery *d)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->t[i].fd >= 0)
			close(d->t[i].fd);
		d->t[i].fd = -1;
	}
}

/* Unlink every copy (renamed or not); make removals from new/ durable as
 * far as we can, so a failed delivery does not resurrect after a crash. */
static void rollback(struct delivery *d)
{
	close_fds(d);
	for (size_t i = 0; i < d->n; i++) {
		struct target *t = &d->t[i];
		if (t->renamed) {
			if (unlink(t->new_path) < 0 && errno != ENOENT)
				log_warn("unlink(%s)", t->new_path);
			else if (fsync_dir(t->new_dir) < 0)
				log_warn("fsync(%s)", t->new_dir);
			t->renamed = false;
			free(t->rel);
			t->rel = NULL;
		} else if (t->created) {
			if (unlink(t->tmp_path) < 0 && errno != ENOENT)
				log_warn("unlink(%s)", t->tmp_path);
			t->created = false;
		}
	}
}

static void delivery_free(struct delivery *d)
{
	close_fds(d);
	for (size_t i = 0; i < d->n; i++) {
		struct target *t = &d->t[i];
		free(t->root);
		free(t->new_dir);
		free(t->base);
		free(t->tmp_path);
		free(t->new_path);
		free(t->rel);
		free(t->hdr);
	}
	free(d->t);
	free(d->buf);
	free(d->host);
	free(d->err);
	free(d);
}

void delivery_abort(struct delivery **dp)
{
	struct delivery *d = *dp;
	if (d == NULL)
		return;
	*dp = NULL;
	rollback(d);
	delivery_free(d);
}

static int datasync_delivery(struct delivery *d)
{
	for (size_t i = 0; i < d->n; i++) {
		if (fdatasync(d->t[i].fd) < 0) {
			fail_errno(d, "fdatasync", d->t[i].tmp_path);
			return -1;
		}
	}
	return 0;
}

/* Running kernel as major * 1000 + minor (0 if unknown), cached. */
static unsigned kernel_version(void)
{
	static int cached = -1;
	int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v < 0) {
		struct utsname u;
		unsigned major = 0, minor = 0;
		v = 0;
		if (uname(&u) == 0 && sscanf(u.release, "%u.%u", &major, &minor) == 2 &&
		    major < 1000 && minor < 1000)
			v = (int)(major * 1000 + minor);
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return (unsigned)v;
}

/* syncfs reports writeback errors only since Linux 5.8. */
static bool syncfs_reports_errors(void)
{
	return kernel_version() >= 5008;
}

/* ...and errors of the filesystem's own sync (journal commit) since 5.17. */
static bool syncfs_reports_sync_errors(void)
{
	return kernel_version() >= 5017;
}

/* Step 2 for a batch: syncfs once per filesystem, on its earliest-opened fd;
 * per-file fdatasync where syncfs is not usable or failed. */
static void sync_batch(struct delivery **ds, size_t n)
{
	size_t live = 0;
	for (size_t i = 0; i < n; i++)
		live += !ds[i]->failed;
	if (live < 2 || !syncfs_reports_errors()) {
		for (size_t i = 0; i < n; i++)
			if (!ds[i]->failed)
				(void)datasync_delivery(ds[i]);
		return;
	}
	/* Distinct devices; a batch touches few filesystems, so a linear scan. */
	struct fs {
		dev_t dev;
		int fd;
		uint64_t seq;
		bool ok;
	} *fss = NULL;
	size_t nfs = 0, capfs = 0;
	for (size_t i = 0; i < n; i++) {
		if (ds[i]->failed)
			continue;
		for (size_t j = 0; j < ds[i]->n; j++) {
			struct target *t = &ds[i]->t[j];
			size_t k;
			for (k = 0; k < nfs && fss[k].dev != t->dev; k++)
				;
			if (k == nfs) {
				if (nfs == capfs) {
					capfs = capfs ? capfs * 2 : 4;
					fss = xrealloc(fss, capfs * sizeof *fss);
				}
				fss[nfs++] = (struct fs){ t->dev, t->fd, t->open_seq, false };
			} else if (t->open_seq < fss[k].seq) {
				fss[k].fd = t->fd;
				fss[k].seq = t->open_seq;
			}
		}
	}
	for (size_t k = 0; k < nfs; k++) {
		fss[k].ok = syncfs(fss[k].fd) == 0;
		if (!fss[k].ok)
			log_warn("syncfs: falling back to fdatasync");
	}
	for (size_t i = 0; i < n; i++) {
		struct delivery *d = ds[i];
		for (size_t j = 0; j < d->n && !d->failed; j++) {
			size_t k;
			for (k = 0; fss[k].dev != d->t[j].dev; k++)
				;
			if (!fss[k].ok && fdatasync(d->t[j].fd) < 0)
				fail_errno(d, "fdatasync", d->t[j].tmp_path);
		}
	}
	free(fss);
}

struct dir_sync {
	const char *dir;
	dev_t dev;
	int fd; /* an open file on dev, for syncfs */
	int err; /* 0 durable, -1 to do, -2 fsync it, else errno of the failure */
};

static int cmp_dir_sync(const void *a, const void *b)
{
	const struct dir_sync *x = a, *y = b;
	return strcmp(x->dir, y->dir);
}

/* Step 4: make the renames durable. Each distinct new/ directory is fsynced
 * once. But on a filesystem where a batch of two or more deliveries touched
 * DIR_SYNCFS_MIN or more directories, one syncfs replaces those fsyncs: on
 * ext4 every directory fsync forces its own journal commit and cache flush
 * (directories get no fast path), while syncfs commits the journal holding
 * all the renames once. Only on kernels where syncfs reports the journal
 * commit's errors; if it fails, the per-directory fsyncs run after all, so
 * the error lands on the right deliveries. Then failed deliveries are
 * rolled back. */
#define DIR_SYNCFS_MIN 4
static void sync_dirs(struct delivery **ds, size_t n)
{
	size_t nd = 0, live = 0;
	for (size_t i = 0; i < n; i++)
		if (!ds[i]->failed) {
			nd += ds[i]->n;
			live++;
		}
	struct dir_sync *dirs = xcalloc(nd ? nd : 1, sizeof *dirs);
	nd = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; !ds[i]->failed && j < ds[i]->n; j++)
			/* rename() does not cross filesystems: new/ is on t->dev. */
			dirs[nd++] = (struct dir_sync){ ds[i]->t[j].new_dir, ds[i]->t[j].dev,
							ds[i]->t[j].fd, -1 };
	qsort(dirs, nd, sizeof *dirs, cmp_dir_sync);
	size_t u = 0;
	for (size_t i = 0; i < nd; i++)
		if (u == 0 || strcmp(dirs[u - 1].dir, dirs[i].dir) != 0)
			dirs[u++] = dirs[i];
	if (live >= 2 && u >= DIR_SYNCFS_MIN && syncfs_reports_sync_errors()) {
		for (size_t i = 0; i < u; i++) {
			if (dirs[i].err != -1)
				continue; /* its device is done */
			size_t same = 0;
			for (size_t k = i; k < u; k++)
				same += dirs[k].dev == dirs[i].dev;
			int r = same >= DIR_SYNCFS_MIN && syncfs(dirs[i].fd) == 0 ? 0 : -2;
			for (size_t k = i; k < u; k++)
				if (dirs[k].dev == dirs[i].dev)
					dirs[k].err = r;
		}
	}
	bool any_bad = false;
	for (size_t i = 0; i < u; i++) {
		if (dirs[i].err == 0)
			continue;
		dirs[i].err = fsync_dir(dirs[i].dir) < 0 ? (errno ? errno : EIO) : 0;
		any_bad |= dirs[i].err != 0;
	}
	for (size_t i = 0; i < n; i++) {
		struct delivery *d = ds[i];
		for (size_t j = 0; j < d->n && !d->failed && any_bad; j++) {
			struct dir_sync key = { .dir = d->t[j].new_dir };
			struct dir_sync *hit = bsearch(&key, dirs, u, sizeof *dirs, cmp_dir_sync);
			if (hit != NULL && hit->err != 0)
				fail(d, xasprintf("fsync(%s): %s", hit->dir, strerror(hit->err)));
		}
		if (d->failed)
			rollback(d);
		else
			close_fds(d);
	}
	free(dirs);
}

/* The whole commit for n deliveries; on return each is committed (rel set)
 * or failed (err set, nothing left on disk). */
static void commit_batch(struct delivery **ds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!ds[i]->failed)
			(void)flush(ds[i]);
	sync_batch(ds, n);
	/* Rename: the sizes are final now, so they go into the name. */
	for (size_t i = 0; i < n; i++) {
		struct delivery *d = ds[i];
		if (d->failed)
			continue;
		for (size_t j = 0; j < d->n; j++) {
			struct target *t = &d->t[j];
			unsigned long long size = t->written;
			unsigned long long wsize = size + d->lfs + t->hdr_lfs;
			t->rel = xasprintf("new/%s,S=%llu,W=%llu", t->base, size, wsize);
			t->new_path = xasprintf("%s/%s", t->root, t->rel);
			if (rename(t->tmp_path, t->new_path) < 0) {
				fail(d, xasprintf("rename(%s, %s): %s", t->tmp_path, t->new_path,
						  strerror(errno)));
				free(t->rel);
				t->rel = NULL;
				break;
			}
			t->renamed = true;
		}
	}
	sync_dirs(ds, n);
}

int delivery_commit_sync(struct delivery **dp, char **err_r)
{
	struct delivery *d = *dp;
	*dp = NULL;
	commit_batch(&d, 1);
	int r = 0;
	if (d->failed) {
		*err_r = xstrdup(d->err != NULL ? d->err : "delivery failed");
		r = -1;
	}
	delivery_free(d);
	return r;
}

/* Committer thread: take the whole pending list, commit it as one batch,
 * hand it to the done list, notify. Exits once stopped and drained. */
static void *committer_main(void *arg)
{
	struct committer *c = arg;
	struct delivery **batch = NULL;
	size_t cap = 0;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->pending == NULL && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->pending == NULL)
			break;
		struct delivery *head = c->pending;
		c->pending = NULL;
		c->pending_tail = &c->pending;
		pthread_mutex_unlock(&c->mu);

		size_t n = 0;
		for (struct delivery *d = head; d != NULL; d = d->next) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				batch = xrealloc(batch, cap * sizeof *batch);
			}
			batch[n++] = d;
		}
		commit_batch(batch, n);
		__atomic_fetch_add(&c->batches, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&c->deliveries, n, __ATOMIC_RELAXED);

		pthread_mutex_lock(&c->mu);
		*c->done_tail = head;
		c->done_tail = &batch[n - 1]->next;
		pthread_mutex_unlock(&c->mu);
		if (c->notify != NULL)
			c->notify(c->notify_ctx);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	free(batch);
	return NULL;
}

struct committer *committer_new(committer_notify_fn *notify, void *notify_ctx)
{
	struct committer *c = xcalloc(1, sizeof *c);
	c->notify = notify;
	c->notify_ctx = notify_ctx;
	c->pending_tail = &c->pending;
	c->done_tail = &c->done;
	if (pthread_mutex_init(&c->mu, NULL) != 0 || pthread_cond_init(&c->cv, NULL) != 0)
		panic("committer_new: pthread init failed");
	int e = pthread_create(&c->thread, NULL, committer_main, c);
	if (e != 0)
		panic("committer_new: pthread_create: %s", strerror(e));
	return c;
}

void committer_submit(struct committer *c, struct delivery *d, delivery_done_fn *done, void *ctx)
{
	d->done = done;
	d->done_ctx = ctx;
	d->next = NULL;
	pthread_mutex_lock(&c->mu);
	ASSERT(!c->stop);
	*c->pending_tail = d;
	c->pending_tail = &d->next;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

void committer_reap(struct committer *c)
{
	pthread_mutex_lock(&c->mu);
	struct delivery *d = c->done;
	c->done = NULL;
	c->done_tail = &c->done;
	pthread_mutex_unlock(&c->mu);
	while (d != NULL) {
		struct delivery *next = d->next;
		if (d->done != NULL)
			d->done(d, d->failed ? -1 : 0,
				d->failed ? (d->err != NULL ? d->err : "delivery failed") : NULL,
				d->done_ctx);
		delivery_free(d);
		d = next;
	}
}

void committer_free(struct committer **cp)
{
	struct committer *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	committer_reap(c);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

void committer_stats(const struct committer *c, uint64_t *batches, uint64_t *deliveries)
{
	*batches = __atomic_load_n(&c->batches, __ATOMIC_RELAXED);
	*deliveries = __atomic_load_n(&c->deliveries, __ATOMIC_RELAXED);
}

void maildir_clean_tmp(const char *root)
{
	maildir_clean_tmp_older(root, TMP_MAX_AGE_SECS);
}

void maildir_clean_tmp_older(const char *root, int64_t max_age_secs)
{
	char *path = xasprintf("%s/tmp", root);
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (dir == NULL) {
		if (errno != ENOENT)
			log_warn("opendir(%s)", path);
		if (dfd >= 0)
			close(dfd);
		free(path);
		return;
	}
	time_t cutoff = time(NULL) - (time_t)max_age_secs;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue; /* ".", ".." and nothing we create */
		struct stat st;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
			continue;
		/* mtime: every write of a live delivery refreshes it; ctime too,
		 * and also a utimes() that set an old mtime (IMAP APPEND's
		 * INTERNALDATE); atime is unreliable under noatime/relatime. */
		if (st.st_mtime >= cutoff || st.st_ctime >= cutoff)
			continue;
		if (unlinkat(dfd, e->d_name, 0) < 0 && errno != ENOENT)
			log_warn("unlink(%s/%s)", path, e->d_name);
		else
			log_info("maildir: removed stale %s/%s", path, e->d_name);
	}
	closedir(dir);
	free(path);
}
