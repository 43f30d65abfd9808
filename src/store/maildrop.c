/* SPDX-License-Identifier: MIT */
/* The POP3 maildrop over a Maildir: listing (order, sizes, UIDLs), the
 * session lock, reading and committing deletions. See maildrop.h for the
 * identity and locking rules.
 *
 * Files are addressed through directory fds for new/ and cur/ held for the
 * session, so the root path is resolved once. A message remembers where it
 * was listed; when that name is gone (another program moved it or changed
 * its flags) both directories are rescanned and every message is found
 * again by base name (a sorted index makes that one pass). */
#include "store/maildrop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

enum { MD_NEW, MD_CUR, MD_NDIRS };
static const char *const md_dir_names[MD_NDIRS] = { "new", "cur" };

struct md_msg {
	char *base; /* identity: the name up to the first ',' or ':' */
	char *name; /* current file name inside dirs[dir] */
	int dir;
	bool timed; /* name starts with "<sec>." */
	uint64_t sec, usec;
	uint64_t wire;
	char uidl[MAILDROP_UIDL_MAX + 1];
};

struct maildrop {
	char *root;
	int lock_fd;
	int dirfd[MD_NDIRS];
	struct md_msg *m;
	unsigned n;
	unsigned *by_base; /* indices into m sorted by base */
};

/* ---- names ------------------------------------------------------------------- */

static size_t base_len(const char *name)
{
	size_t i = 0;
	while (name[i] && name[i] != ',' && name[i] != ':')
		i++;
	return i;
}

static bool parse_u64(const char *p, size_t n, uint64_t *out)
{
	if (n == 0 || n > 19)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return true;
}

/* ",S=<n>" and ",W=<n>" between the base and the ":2," info. */
static void parse_sizes(const char *name, bool *has_w, uint64_t *w)
{
	const char *p = name + base_len(name);
	*has_w = false;
	while (*p == ',') {
		p++;
		size_t l = 0;
		while (p[l] && p[l] != ',' && p[l] != ':')
			l++;
		if (l > 2 && p[0] == 'W' && p[1] == '=')
			*has_w = parse_u64(p + 2, l - 2, w);
		p += l;
	}
}

/* "<sec>.M<usec>..." (Maildir delivery names); other names sort after. */
static void parse_time(struct md_msg *m)
{
	const char *b = m->base;
	size_t i = 0;
	while (b[i] >= '0' && b[i] <= '9')
		i++;
	m->timed = i > 0 && b[i] == '.' && parse_u64(b, i, &m->sec);
	m->usec = 0;
	if (m->timed && b[i + 1] == 'M') {
		size_t j = i + 2, k = j;
		while (b[k] >= '0' && b[k] <= '9')
			k++;
		if (!parse_u64(b + j, k - j, &m->usec))
			m->usec = 0;
	}
}

static uint64_t fnv1a(const uint8_t *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void maildrop_uidl_of(const char *base, size_t len, char out[MAILDROP_UIDL_MAX + 1])
{
	/* RFC 1939 7: 1 to 70 characters in 0x21-0x7E. Names starting with '~'
	 * are hashed too, so a natural UIDL never equals a hashed one. */
	bool ok = len >= 1 && len <= MAILDROP_UIDL_MAX && base[0] != '~';
	for (size_t i = 0; ok && i < len; i++)
		ok = base[i] >= 0x21 && base[i] <= 0x7e;
	if (ok) {
		memcpy(out, base, len);
		out[len] = '\0';
		return;
	}
	uint64_t h[2] = { fnv1a((const uint8_t *)base, len, 0xcbf29ce484222325ull),
			  fnv1a((const uint8_t *)base, len, 0x84222325cbf29ce4ull) };
	snprintf(out, MAILDROP_UIDL_MAX + 1, "~%016llx%016llx", (unsigned long long)h[0],
		 (unsigned long long)h[1]);
}

/* ---- listing --------------------------------------------------------------------- */

static bool is_regular(int dfd, const struct dirent *de)
{
	if (de->d_type == DT_REG)
		return true;
	if (de->d_type != DT_UNKNOWN)
		return false;
	struct stat st;
	return fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* Physical size + LFs by reading the file. -1 if it cannot be read (gone). */
static int compute_wire(int dfd, const char *name, uint64_t *wire_r)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	uint8_t b[65536];
	uint64_t w = 0;
	for (;;) {
		ssize_t r = read(fd, b, sizeof b);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		w += (uint64_t)r;
		for (const uint8_t *p = b, *e = b + r; (p = memchr(p, '\n', (size_t)(e - p)));
		     p++)
			w++;
	}
	close(fd);
	*wire_r = w;
	return 0;
}

typedef void scan_fn(void *ctx, int dir, const char *name);

static int scan_dir(struct maildrop *md, int dir, scan_fn *fn, void *ctx)
{
	int fd = openat(md->dirfd[dir], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || !is_regular(md->dirfd[dir], de))
			continue;
		fn(ctx, dir, de->d_name);
	}
	int e = errno;
	closedir(d);
	errno = e;
	return e ? -1 : 0;
}

struct list_ctx {
	struct maildrop *md;
	unsigned cap;
};

static void list_one(void *ctx, int dir, const char *name)
{
	struct list_ctx *lc = ctx;
	struct maildrop *md = lc->md;
	bool has_w;
	uint64_t w = 0;
	parse_sizes(name, &has_w, &w);
	if (!has_w && compute_wire(md->dirfd[dir], name, &w) < 0)
		return; /* vanished while listing */
	if (md->n == lc->cap) {
		lc->cap = lc->cap ? lc->cap * 2 : 64;
		md->m = xrealloc(md->m, lc->cap * sizeof *md->m);
	}
	struct md_msg *m = &md->m[md->n++];
	memset(m, 0, sizeof *m);
	size_t bl = base_len(name);
	m->base = xstrndup(name, bl);
	m->name = xstrdup(name);
	m->dir = dir;
	m->wire = w;
	parse_time(m);
	maildrop_uidl_of(m->base, bl, m->uidl);
}

static int cmp_base(const void *a, const void *b)
{
	const struct md_msg *x = a, *y = b;
	int c = strcmp(x->base, y->base);
	/* duplicates (seen in new/ and then in cur/ during a move): cur/ first */
	return c ? c : y->dir - x->dir;
}

static int cmp_order(const void *a, const void *b)
{
	const struct md_msg *x = a, *y = b;
	if (x->timed != y->timed)
		return x->timed ? -1 : 1;
	if (x->sec != y->sec)
		return x->sec < y->sec ? -1 : 1;
	if (x->usec != y->usec)
		return x->usec < y->usec ? -1 : 1;
	return strcmp(x->base, y->base);
}

static int cmp_idx_base(const void *a, const void *b, void *ctx)
{
	const struct maildrop *md = ctx;
	return strcmp(md->m[*(const unsigned *)a].base, md->m[*(const unsigned *)b].base);
}

static void free_msg(struct md_msg *m)
{
	free(m->base);
	free(m->name);
}

static void build_index(struct maildrop *md)
{
	/* dedupe by base name, keeping one entry per message */
	if (md->n > 1) {
		qsort(md->m, md->n, sizeof *md->m, cmp_base);
		unsigned o = 1;
		for (unsigned i = 1; i < md->n; i++) {
			if (strcmp(md->m[i].base, md->m[o - 1].base) == 0)
				free_msg(&md->m[i]);
			else
				md->m[o++] = md->m[i];
		}
		md->n = o;
		qsort(md->m, md->n, sizeof *md->m, cmp_order);
	}
	md->by_base = xcalloc(md->n ? md->n : 1, sizeof *md->by_base);
	for (unsigned i = 0; i < md->n; i++)
		md->by_base[i] = i;
	qsort_r(md->by_base, md->n, sizeof *md->by_base, cmp_idx_base, md);
}

static int find_base(const struct maildrop *md, const char *base, size_t len)
{
	size_t lo = 0, hi = md->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *b = md->m[md->by_base[mid]].base;
		int c = strncmp(b, base, len);
		if (c == 0 && b[len] != '\0')
			c = 1;
		if (c == 0)
			return (int)md->by_base[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* ---- relocation -------------------------------------------------------------------- */

struct reloc_ctx {
	struct maildrop *md;
	bool *found;
};

static void reloc_one(void *ctx, int dir, const char *name)
{
	struct reloc_ctx *rc = ctx;
	int i = find_base(rc->md, name, base_len(name));
	if (i < 0)
		return;
	struct md_msg *m = &rc->md->m[i];
	if (strcmp(m->name, name) != 0 || m->dir != dir) {
		free(m->name);
		m->name = xstrdup(name);
		m->dir = dir;
	}
	rc->found[i] = true;
}

/* Find every message again by base name. found[i] tells which still exist. */
static int relocate(struct maildrop *md, bool *found)
{
	memset(found, 0, md->n ? md->n : 1);
	struct reloc_ctx rc = { md, found };
	for (int d = 0; d < MD_NDIRS; d++)
		if (scan_dir(md, d, reloc_one, &rc) < 0)
			return -1;
	return 0;
}

/* ---- API -------------------------------------------------------------------------- */

int maildrop_open(const char *root, struct maildrop **md_r, char **err_r)
{
	*md_r = NULL;
	*err_r = NULL;
	static const char *const sub[] = { "cur", "new", "tmp" };
	for (size_t i = 0; i < N_ELEMENTS(sub); i++) {
		char *p = xasprintf("%s/%s", root, sub[i]);
		int r = mkdir_p(p, 0700);
		if (r < 0 && errno != EEXIST) {
			*err_r = xasprintf("mkdir(%s): %s", p, strerror(errno));
			free(p);
			return -1;
		}
		free(p);
	}
	struct maildrop *md = xcalloc(1, sizeof *md);
	md->root = xstrdup(root);
	md->lock_fd = -1;
	md->dirfd[0] = md->dirfd[1] = -1;
	char *lp = xasprintf("%s/%s", root, MAILDROP_LOCK_NAME);
	md->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (md->lock_fd < 0) {
		*err_r = xasprintf("open(%s): %s", lp, strerror(errno));
		free(lp);
		maildrop_close(&md);
		return -1;
	}
	/* flock locks belong to the open file description: a second open in
	 * this process conflicts too, which is what one-session-per-maildrop
	 * needs; the kernel drops the lock if we die. */
	if (flock(md->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e != EWOULDBLOCK)
			*err_r = xasprintf("flock(%s): %s", lp, strerror(e));
		free(lp);
		maildrop_close(&md);
		return e == EWOULDBLOCK ? 1 : -1;
	}
	free(lp);
	for (int d = 0; d < MD_NDIRS; d++) {
		char *p = xasprintf("%s/%s", root, md_dir_names[d]);
		md->dirfd[d] = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (md->dirfd[d] < 0) {
			*err_r = xasprintf("open(%s): %s", p, strerror(errno));
			free(p);
			maildrop_close(&md);
			return -1;
		}
		free(p);
	}
	/* new/ before cur/: a message moved between the two scans is seen
	 * twice (deduplicated), never missed */
	struct list_ctx lc = { md, 0 };
	for (int d = 0; d < MD_NDIRS; d++) {
		if (scan_dir(md, d, list_one, &lc) < 0) {
			*err_r = xasprintf("readdir(%s/%s): %s", root, md_dir_names[d],
					   strerror(errno));
			maildrop_close(&md);
			return -1;
		}
	}
	build_index(md);
	*md_r = md;
	return 0;
}

void maildrop_close(struct maildrop **mdp)
{
	struct maildrop *md = *mdp;
	if (!md)
		return;
	for (unsigned i = 0; i < md->n; i++)
		free_msg(&md->m[i]);
	free(md->m);
	free(md->by_base);
	for (int d = 0; d < MD_NDIRS; d++)
		if (md->dirfd[d] >= 0)
			close(md->dirfd[d]);
	if (md->lock_fd >= 0)
		close(md->lock_fd); /* releases the flock */
	free(md->root);
	free(md);
	*mdp = NULL;
}

unsigned maildrop_count(const struct maildrop *md)
{
	return md->n;
}

uint64_t maildrop_wire_size(const struct maildrop *md, unsigned idx)
{
	ASSERT(idx < md->n);
	return md->m[idx].wire;
}

const char *maildrop_uidl(const struct maildrop *md, unsigned idx)
{
	ASSERT(idx < md->n);
	return md->m[idx].uidl;
}

const char *maildrop_base(const struct maildrop *md, unsigned idx)
{
	ASSERT(idx < md->n);
	return md->m[idx].base;
}

int maildrop_msg_open(struct maildrop *md, unsigned idx, int *fd_r, char **err_r)
{
	ASSERT(idx < md->n);
	*err_r = NULL;
	for (int attempt = 0; attempt < 3; attempt++) {
		struct md_msg *m = &md->m[idx];
		int fd = openat(md->dirfd[m->dir], m->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			*fd_r = fd;
			return 0;
		}
		if (errno != ENOENT)
			break;
		bool *found = xcalloc(md->n, 1);
		int r = relocate(md, found);
		bool there = found[idx];
		free(found);
		if (r < 0)
			break;
		if (!there) {
			*err_r = xasprintf("%s/%s: message %s vanished", md->root,
					   md_dir_names[md->m[idx].dir], md->m[idx].base);
			errno = ENOENT;
			return -1;
		}
	}
	int e = errno;
	*err_r = xasprintf("open(%s/%s/%s): %s", md->root, md_dir_names[md->m[idx].dir],
			   md->m[idx].name, strerror(e));
	errno = e;
	return -1;
}

int maildrop_commit(struct maildrop *md, const unsigned *idx, size_t n, unsigned *removed_r,
		    char **err_r)
{
	*err_r = NULL;
	unsigned removed = 0;
	int rc = 0;
	bool *found = xcalloc(md->n ? md->n : 1, 1);
	bool touched[MD_NDIRS] = { false, false };
	for (size_t k = 0; k < n; k++) {
		unsigned i = idx[k];
		ASSERT(i < md->n);
		for (int attempt = 0;; attempt++) {
			struct md_msg *m = &md->m[i];
			if (unlinkat(md->dirfd[m->dir], m->name, 0) == 0) {
				removed++;
				touched[m->dir] = true;
				break;
			}
			int e = errno;
			if (e == ENOENT && attempt < 3) {
				/* moved or renamed by someone else: find it again */
				if (relocate(md, found) < 0) {
					e = errno;
				} else if (!found[i]) {
					break; /* already gone: counts as deleted */
				} else {
					continue;
				}
			}
			if (!*err_r)
				*err_r = xasprintf("unlink(%s/%s/%s): %s", md->root,
						   md_dir_names[m->dir], m->name, strerror(e));
			rc = -1;
			break;
		}
	}
	free(found);
	for (int d = 0; d < MD_NDIRS; d++) {
		if (touched[d] && fsync(md->dirfd[d]) < 0 && !*err_r) {
			*err_r = xasprintf("fsync(%s/%s): %s", md->root, md_dir_names[d],
					   strerror(errno));
			rc = -1;
		}
	}
	if (removed_r)
		*removed_r = removed;
	return rc;
}
