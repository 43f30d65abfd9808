/* SPDX-License-Identifier: MIT */
/* Benchmark: deliveries/s of 4 KiB messages through the group committer
 * versus one synchronous commit per message (fdatasync + rename + fsync of
 * new/ per message, each client on its own thread), with 1, 20 and 100
 * concurrent clients. Each client delivers to its own Maildir and waits for
 * its commit before sending the next message, like an SMTP session waiting
 * for its 250. Lives outside src/ and tests/unit/ so the Makefile ignores it.
 *
 * Build and run by hand (after `make build/libtern.a`):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Isrc tools/bench_maildir.c build/libtern.a \
 *       -lssl -lcrypto -lsqlite3 -lcrypt -lz -lpthread -o build/bench_maildir
 *   build/bench_maildir [base_dir (default /tmp)] [seconds per run (default 3)]
 *                       [all|sync|committer|burst] [clients: 1, 20 or 100; default all]
 */
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "store/maildir.h"

#define MSG_SIZE 4096

static char msg[MSG_SIZE];
static char *base_dir;
static double run_secs = 3;

struct client {
	struct bench *b;
	char *root;
	char hdr[64];
	uint64_t count;
};

struct bench {
	struct committer *c;
	int efd;
	uint64_t end_ms;
	size_t inflight;
	uint64_t failures;
	pthread_mutex_t mu; /* baseline: counter only */
};

/* Time spent creating deliveries (delivery_new + add_target + write): in
 * committer mode this runs on the loop thread, so it is loop latency. */
static uint64_t make_ns, make_n, make_max_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct delivery *make(struct client *cl)
{
	uint64_t t0 = now_ns();
	char *err = NULL;
	struct delivery *d = delivery_new("bench.example");
	if (delivery_add_target(d, cl->root, cl->hdr, &err) < 0 ||
	    delivery_write(d, msg, sizeof msg) < 0) {
		fprintf(stderr, "bench: %s\n", err ? err : "write failed");
		exit(1);
	}
	uint64_t dt = now_ns() - t0;
	__atomic_fetch_add(&make_ns, dt, __ATOMIC_RELAXED);
	__atomic_fetch_add(&make_n, 1, __ATOMIC_RELAXED);
	if (dt > make_max_ns)
		make_max_ns = dt; /* racy in sync mode; only printed for the committer */
	return d;
}

static void notify(void *ctx)
{
	struct bench *b = ctx;
	uint64_t one = 1;
	if (write(b->efd, &one, sizeof one) < 0)
		abort();
}

static void done(struct delivery *d, int result, const char *err, void *ctx)
{
	(void)d;
	struct client *cl = ctx;
	struct bench *b = cl->b;
	if (result != 0) {
		fprintf(stderr, "bench: %s\n", err);
		b->failures++;
	}
	cl->count++;
	b->inflight--;
	if (time_mono_ms() < b->end_ms) {
		committer_submit(b->c, make(cl), done, cl);
		b->inflight++;
	}
}

static struct client *clients_new(size_t n, const char *tag)
{
	struct client *cls = xcalloc(n, sizeof *cls);
	for (size_t i = 0; i < n; i++) {
		char *err = NULL;
		cls[i].root = xasprintf("%s/%s%zu", base_dir, tag, i);
		snprintf(cls[i].hdr, sizeof cls[i].hdr, "Delivered-To: user%zu@example.org\n", i);
		if (maildir_create(cls[i].root, &err) < 0) {
			fprintf(stderr, "bench: %s\n", err);
			exit(1);
		}
	}
	return cls;
}

static uint64_t clients_free(struct client *cls, size_t n)
{
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		total += cls[i].count;
		free(cls[i].root);
	}
	free(cls);
	return total;
}

static void run_committer(size_t n)
{
	struct bench b = { 0 };
	make_ns = make_n = make_max_ns = 0;
	b.efd = eventfd(0, EFD_CLOEXEC);
	b.c = committer_new(notify, &b);
	struct client *cls = clients_new(n, "c");
	uint64_t start = time_mono_ms();
	b.end_ms = start + (uint64_t)(run_secs * 1000);
	for (size_t i = 0; i < n; i++) {
		cls[i].b = &b;
		committer_submit(b.c, make(&cls[i]), done, &cls[i]);
		b.inflight++;
	}
	while (b.inflight > 0) {
		struct pollfd p = { .fd = b.efd, .events = POLLIN };
		if (poll(&p, 1, 1000) > 0) {
			uint64_t v;
			if (read(b.efd, &v, sizeof v) < 0)
				abort();
			committer_reap(b.c);
		}
	}
	uint64_t ms = time_mono_ms() - start;
	uint64_t mk_avg = make_n ? make_ns / make_n / 1000 : 0, mk_max = make_max_ns / 1000;
	uint64_t batches, deliveries;
	committer_stats(b.c, &batches, &deliveries);
	committer_free(&b.c);
	close(b.efd);
	uint64_t total = clients_free(cls, n);
	printf("committer  clients=%3zu  %8.0f deliveries/s  (%llu in %llu ms, %llu batches, "
	       "avg batch %.1f, failures %llu; loop-thread create avg %llu us max %llu us)\n",
	       n, (double)total * 1000.0 / (double)ms, (unsigned long long)total,
	       (unsigned long long)ms, (unsigned long long)batches,
	       batches ? (double)deliveries / (double)batches : 0.0,
	       (unsigned long long)b.failures, (unsigned long long)mk_avg,
	       (unsigned long long)mk_max);
}

struct sync_arg {
	struct client *cl;
	uint64_t end_ms;
};

static void *sync_thread(void *arg)
{
	struct sync_arg *a = arg;
	while (time_mono_ms() < a->end_ms) {
		struct delivery *d = make(a->cl);
		char *err = NULL;
		if (delivery_commit_sync(&d, &err) < 0) {
			fprintf(stderr, "bench: %s\n", err);
			exit(1);
		}
		a->cl->count++;
	}
	return NULL;
}

static void run_sync(size_t n)
{
	struct client *cls = clients_new(n, "s");
	make_ns = make_n = make_max_ns = 0;
	struct sync_arg *args = xcalloc(n, sizeof *args);
	pthread_t *th = xcalloc(n, sizeof *th);
	uint64_t start = time_mono_ms();
	for (size_t i = 0; i < n; i++) {
		args[i] = (struct sync_arg){ &cls[i], start + (uint64_t)(run_secs * 1000) };
		if (pthread_create(&th[i], NULL, sync_thread, &args[i]) != 0)
			abort();
	}
	for (size_t i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	uint64_t ms = time_mono_ms() - start;
	uint64_t total = clients_free(cls, n);
	printf("sync/msg   clients=%3zu  %8.0f deliveries/s  "
	       "(%llu in %llu ms; create avg %llu us)\n",
	       n, (double)total * 1000.0 / (double)ms, (unsigned long long)total,
	       (unsigned long long)ms, (unsigned long long)(make_n ? make_ns / make_n / 1000 : 0));
	free(args);
	free(th);
}

/* Burst: 50 deliveries to 50 mailboxes prepared in advance, submitted at
 * once; time until every callback ran. Isolates the committer's batch cost
 * from the loop thread's file creation. */
static void burst_done(struct delivery *d, int result, const char *err, void *ctx)
{
	(void)d;
	if (result != 0) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	(*(int *)ctx)++;
}

static void run_burst(size_t k, int rounds)
{
	struct bench b = { 0 };
	b.efd = eventfd(0, EFD_CLOEXEC);
	b.c = committer_new(notify, &b);
	struct client *cls = clients_new(k, "b");
	struct delivery **ds = xcalloc(k, sizeof *ds);
	uint64_t total_ns = 0;
	int done_n = 0;
	for (int r = 0; r < rounds; r++) {
		for (size_t i = 0; i < k; i++)
			ds[i] = make(&cls[i]);
		uint64_t t0 = now_ns();
		for (size_t i = 0; i < k; i++)
			committer_submit(b.c, ds[i], burst_done, &done_n);
		while (done_n < (r + 1) * (int)k) {
			struct pollfd p = { .fd = b.efd, .events = POLLIN };
			if (poll(&p, 1, 1000) > 0) {
				uint64_t v;
				if (read(b.efd, &v, sizeof v) < 0)
					abort();
				committer_reap(b.c);
			}
		}
		total_ns += now_ns() - t0;
	}
	uint64_t batches, deliveries;
	committer_stats(b.c, &batches, &deliveries);
	committer_free(&b.c);
	close(b.efd);
	clients_free(cls, k);
	free(ds);
	printf("burst      %zu deliveries to %zu mailboxes at once: %llu us per burst "
	       "(%d rounds, %llu batches)\n",
	       k, k, (unsigned long long)(total_ns / (uint64_t)rounds / 1000), rounds,
	       (unsigned long long)batches);

	/* Baseline: the same bursts committed one by one on one thread. */
	cls = clients_new(k, "B");
	ds = xcalloc(k, sizeof *ds);
	total_ns = 0;
	for (int r = 0; r < rounds; r++) {
		for (size_t i = 0; i < k; i++)
			ds[i] = make(&cls[i]);
		uint64_t t0 = now_ns();
		for (size_t i = 0; i < k; i++) {
			char *err = NULL;
			if (delivery_commit_sync(&ds[i], &err) < 0) {
				fprintf(stderr, "bench: %s\n", err);
				exit(1);
			}
		}
		total_ns += now_ns() - t0;
	}
	clients_free(cls, k);
	free(ds);
	printf("burst      same, delivery_commit_sync one by one:  %llu us per burst\n",
	       (unsigned long long)(total_ns / (uint64_t)rounds / 1000));
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/tmp";
	if (argc > 2)
		run_secs = atof(argv[2]);
	base_dir = xasprintf("%s/tern-bench-XXXXXX", base);
	if (mkdtemp(base_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (i % 72 == 71) ? '\n' : (char)('a' + i % 26);
	const char *mode = argc > 3 ? argv[3] : "all";
	static const size_t ns[] = { 1, 20, 100 };
	for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
		if (argc > 4 && (size_t)atoi(argv[4]) != ns[i])
			continue;
		if (strcmp(mode, "all") == 0 || strcmp(mode, "sync") == 0)
			run_sync(ns[i]);
		if (strcmp(mode, "all") == 0 || strcmp(mode, "committer") == 0)
			run_committer(ns[i]);
	}
	if (strcmp(mode, "all") == 0 || strcmp(mode, "burst") == 0)
		run_burst(50, 40);
	nftw(base_dir, rm_cb, 64, FTW_DEPTH | FTW_PHYS);
	free(base_dir);
	return 0;
}
