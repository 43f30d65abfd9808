/* SPDX-License-Identifier: MIT */
/* Benchmark: the mailbox index (store/mailbox.h) on one big mailbox.
 *
 * Fills INBOX with N messages (files written straight into cur/, then
 * adopted by one full sync, which parses each once), then times:
 *   - adoption (first sync: readdir + parse + insert per message);
 *   - SELECT with an up-to-date index: mstore_open + mbox_open + the UID
 *     list (two stat() calls and one indexed query, no readdir);
 *   - STATUS (one aggregate query);
 *   - FETCH 1:* (FLAGS UID) and FETCH 1:* ALL from the cache (one range query;
 *     ALL also reads the cached ENVELOPE);
 *   - a forced full rescan (readdir of cur/ + merge with the rows), which is
 *     what a SELECT costs when the directory changed since the last scan.
 * Lives outside src/ and tests/unit/ so the Makefile ignores it.
 *
 * Build and run by hand (after `make build/libtern.a`):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Isrc tools/bench_index.c build/libtern.a \
 *       -lssl -lcrypto -lsqlite3 -lcrypt -lz -lpthread -o build/bench_index
 *   build/bench_index [base_dir (default /tmp)] [messages (default 100000)]
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "store/mailbox.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static void die(const char *what, const struct mbox_err *err)
{
	fprintf(stderr, "%s: %s\n", what, err ? err->msg : "failed");
	exit(1);
}

/* Pretend the directories have been quiet for a while, so the next full
 * scan records their mtimes and later opens trust the index. */
static void age_dirs(const char *root)
{
	struct timespec old[2] = { { time(NULL) - 60, 0 }, { time(NULL) - 60, 0 } };
	char *c = xasprintf("%s/cur", root), *n = xasprintf("%s/new", root);
	if (utimensat(AT_FDCWD, c, old, 0) != 0 || utimensat(AT_FDCWD, n, old, 0) != 0)
		die("utimensat", NULL);
	free(c);
	free(n);
}

struct fetch_ctx {
	uint64_t n, bytes;
};

static int fetch_cb(const struct mbox_meta *m, void *ctx)
{
	struct fetch_ctx *c = ctx;
	c->n++;
	c->bytes += m->envelope ? strlen(m->envelope) : 0;
	return 0;
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/tmp";
	unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 100000;
	char *root = xasprintf("%s/tern-bench-index-%d", base, (int)getpid());
	struct mstore *s;
	struct mbox_err err;
	if (mstore_open(root, &s, &err) != 0)
		die("mstore_open", &err);
	double t0 = now();
	for (unsigned i = 0; i < n; i++) {
		char *p = xasprintf("%s/cur/%u.M%06uP1.bench:2,%s", root, 1700000000 + i / 1000,
				    i % 1000, i % 3 ? "S" : "");
		FILE *f = fopen(p, "w");
		if (!f)
			die(p, NULL);
		fprintf(f,
			"From: Sender %u <s%u@example.org>\nTo: r@example.net\n"
			"Subject: message number %u\nDate: Thu, 26 Nov 2026 10:00:00 +0000\n"
			"Message-ID: <%u@example.org>\nMIME-Version: 1.0\n"
			"Content-Type: text/plain; charset=utf-8\n\n"
			"Hello,\nthis is message %u of the benchmark.\n",
			i, i, i, i, i);
		fclose(f);
		free(p);
	}
	double t1 = now();
	printf("write %u files: %.2f s\n", n, t1 - t0);

	age_dirs(root);
	struct mbox *m;
	t0 = now();
	if (mbox_open(s, "INBOX", false, &m, &err) != 0)
		die("mbox_open", &err);
	t1 = now();
	printf("adopt (first SELECT, parse each): %.2f s (%.0f msg/s)\n", t1 - t0,
	       n / (t1 - t0));
	mbox_close(&m);
	mstore_close(&s);
	/* adopt() left the directory mtimes fresh; age them and rescan once so
	 * the index records them (what happens by itself 2 s after a change). */
	age_dirs(root);
	if (mstore_open(root, &s, &err) != 0 || mbox_open(s, "INBOX", true, &m, &err) != 0)
		die("open", &err);
	struct mbox_changes ch;
	if (mbox_sync(m, MBOX_SYNC_FULL, &ch, &err) != 0)
		die("sync", &err);
	mbox_changes_free(&ch);
	mbox_close(&m);
	mstore_close(&s);

	for (int round = 0; round < 3; round++) {
		t0 = now();
		if (mstore_open(root, &s, &err) != 0)
			die("mstore_open", &err);
		double t_acc = now();
		if (mbox_open(s, "INBOX", false, &m, &err) != 0)
			die("mbox_open", &err);
		size_t nu;
		mbox_uids(m, &nu);
		t1 = now();
		printf("SELECT INBOX (%zu messages, index current): %.1f ms (account open %.1f ms)\n",
		       nu, (t1 - t0) * 1e3, (t_acc - t0) * 1e3);
		t0 = now();
		struct mbox_status stt;
		if (mstore_status(s, "INBOX", 0, &stt, &err) != 0)
			die("status", &err);
		t1 = now();
		printf("STATUS (MESSAGES %u UNSEEN %u SIZE %llu): %.1f ms\n", stt.messages, stt.unseen,
		       (unsigned long long)stt.size, (t1 - t0) * 1e3);
		struct fetch_ctx fc = { 0, 0 };
		t0 = now();
		if (mbox_meta_range(m, 1, UINT32_MAX, 0, fetch_cb, &fc, &err) != 0)
			die("meta_range", &err);
		t1 = now();
		printf("FETCH 1:* (FLAGS UID): %llu rows %.1f ms\n", (unsigned long long)fc.n,
		       (t1 - t0) * 1e3);
		fc.n = fc.bytes = 0;
		t0 = now();
		if (mbox_meta_range(m, 1, UINT32_MAX, MBOX_W_ENVELOPE, fetch_cb, &fc, &err) != 0)
			die("meta_range", &err);
		t1 = now();
		printf("FETCH 1:* ALL (cached ENVELOPE, %llu bytes): %.1f ms\n",
		       (unsigned long long)fc.bytes, (t1 - t0) * 1e3);
		t0 = now();
		if (mbox_sync(m, MBOX_SYNC_FULL, &ch, &err) != 0)
			die("sync", &err);
		t1 = now();
		mbox_changes_free(&ch);
		printf("full rescan (readdir + merge): %.1f ms\n", (t1 - t0) * 1e3);
		t0 = now();
		if (mbox_sync(m, 0, &ch, &err) != 0)
			die("sync", &err);
		t1 = now();
		mbox_changes_free(&ch);
		printf("NOOP sync (nothing changed): %.3f ms\n", (t1 - t0) * 1e3);
		mbox_close(&m);
		mstore_close(&s);
	}
	nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(root);
	return 0;
}
