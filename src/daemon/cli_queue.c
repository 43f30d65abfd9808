/* SPDX-License-Identifier: MIT */
/* tern queue list|flush|delete: the outbound queue seen from the command
 * line. It opens its own queue handle (not the server's: no lock, no
 * recovery), so it is safe while the server runs; SQLite's busy timeout
 * serialises it with the server's writes.
 *
 * flush makes every pending recipient due now in the database, then tells
 * a running server by writing the trigger file <data_dir>/queue/flush,
 * which the server watches with inotify (and, should that ever miss, it
 * looks at the queue at least once a minute anyway). No pid file, no
 * signal: it works whoever runs the command, as long as it may write the
 * spool, which privdrop makes true for root and the server's user. */
#include "daemon/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "conf/config.h"
#include "daemon/privdrop.h"
#include "queue/queue.h"

static const char queue_usage[] =
	"usage: tern queue list   -c FILE       show queued messages and their recipients\n"
	"       tern queue flush  -c FILE       retry every queued recipient now\n"
	"       tern queue delete -c FILE ID    drop message ID (no bounce is sent)\n"
	"\n"
	"All three are safe while the server runs. list shows, per message, its id,\n"
	"arrival time, size and sender, then per recipient its state (queued,\n"
	"deferred, delivered, failed), attempts, next try and the last error.\n"
	"flush tells a running server through the file <data_dir>/queue/flush.\n";

static void fmt_time(int64_t t, char out[32])
{
	if (t <= 0) {
		snprintf(out, 32, "-");
		return;
	}
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* One line, control characters shown as '?' (a reply text has '\n'). */
static void print_clean(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		putchar(*p == '\n' ? ' ' : (*p < 0x20 || *p == 0x7f) ? '?' : *p);
}

static int do_list(struct queue *q)
{
	struct queue_msg **v = NULL;
	size_t n = 0;
	char *err = NULL;
	int64_t now = time_unix();
	if (queue_list(q, now, &v, &n, &err) < 0) {
		fprintf(stderr, "tern: queue list: %s\n", err ? err : "?");
		free(err);
		return 1;
	}
	if (n == 0) {
		puts("Queue is empty");
		return 0;
	}
	size_t nr = 0;
	for (size_t i = 0; i < n; i++) {
		struct queue_msg *m = v[i];
		char arr[32];
		fmt_time(m->arrival, arr);
		printf("%s  %s  %llu bytes  from <", m->id, arr, (unsigned long long)m->size);
		print_clean(m->sender);
		printf(">\n");
		for (size_t j = 0; j < m->n_rcpts; j++) {
			struct queue_rcpt *r = &m->rcpts[j];
			char next[32];
			bool pending = r->state == QUEUE_RCPT_QUEUED || r->state == QUEUE_RCPT_DEFERRED;
			fmt_time(pending ? r->next_attempt : 0, next);
			printf("    <");
			print_clean(r->addr);
			printf(">  %s%s  attempts=%u  next=%s", queue_state_name(r->state),
			       r->claimed ? " (delivering)" : "", r->attempts,
			       pending && r->next_attempt <= now ? "now" : next);
			if (r->err_text || r->err_code) {
				printf("  last=\"");
				if (r->err_text)
					print_clean(r->err_text);
				else
					printf("%d", r->err_code);
				printf("\"");
				if (r->err_remote) {
					printf(" (");
					print_clean(r->err_remote);
					printf(")");
				}
			}
			putchar('\n');
			nr++;
		}
	}
	printf("%zu message%s, %zu recipient%s\n", n, n == 1 ? "" : "s", nr, nr == 1 ? "" : "s");
	queue_msgs_free(v, n);
	return 0;
}

/* Tell a running server: write <spool>/flush (inotify IN_CLOSE_WRITE). */
static void poke_server(struct queue *q)
{
	char *path = xasprintf("%s/flush", queue_spool_root(q));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EACCES && unlink(path) == 0)
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, "tern: cannot write %s (%s): a running server retries within a "
				"minute anyway\n",
			path, strerror(errno));
	} else {
		char line[32];
		int len = snprintf(line, sizeof line, "%lld\n", (long long)time_unix());
		if (write_full(fd, line, (size_t)len) < 0) {
			/* the close still wakes the server */
		}
		close(fd);
	}
	free(path);
}

int cli_queue(int argc, char **argv)
{
	const char *conf = NULL;
	const char *sub = NULL, *id = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(queue_usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "-c")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tern: -c needs a FILE\n%s", queue_usage);
				return 2;
			}
			conf = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "tern: unknown option '%s'\n%s", argv[i], queue_usage);
			return 2;
		} else if (!sub) {
			sub = argv[i];
		} else if (!id) {
			id = argv[i];
		} else {
			fprintf(stderr, "tern: too many arguments\n%s", queue_usage);
			return 2;
		}
	}
	if (!sub) {
		fputs(queue_usage, stderr);
		return 2;
	}
	bool list = !strcmp(sub, "list"), flush = !strcmp(sub, "flush"),
	     del = !strcmp(sub, "delete");
	if (!list && !flush && !del) {
		fprintf(stderr, "tern: unknown queue command '%s'\n%s", sub, queue_usage);
		return 2;
	}
	if (!conf) {
		fprintf(stderr, "tern: -c FILE is required\n%s", queue_usage);
		return 2;
	}
	if (del != (id != NULL)) {
		fprintf(stderr, del ? "tern: queue delete needs an ID\n%s"
				    : "tern: unexpected argument\n%s",
			queue_usage);
		return 2;
	}
	if (del && !queue_id_valid(id)) {
		fprintf(stderr, "tern: '%s' is not a queue id (16 hex digits, see tern queue list)\n",
			id);
		return 2;
	}
	char *err = NULL;
	struct config *c = config_load(conf, &err);
	if (!c) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	/* as the server's user, so nothing in data_dir ends up owned by root */
	if (privdrop_prepare(c) < 0 || privdrop_now(c) < 0) {
		config_free(&c);
		return 1;
	}
	if (mkdir_p(c->data_dir, 0700) < 0) {
		fprintf(stderr, "tern: cannot create %s: %s\n", c->data_dir, strerror(errno));
		config_free(&c);
		return 1;
	}
	struct queue *q = queue_open(c->data_dir, 0, &err);
	if (!q) {
		fprintf(stderr, "tern: %s\n", err ? err : "cannot open the queue");
		free(err);
		config_free(&c);
		return 1;
	}
	int rc = 0;
	if (list) {
		rc = do_list(q);
	} else if (flush) {
		int n = queue_flush(q, &err);
		if (n < 0) {
			fprintf(stderr, "tern: queue flush: %s\n", err ? err : "?");
			free(err);
			rc = 1;
		} else {
			poke_server(q);
			printf("%d recipient%s due now\n", n, n == 1 ? "" : "s");
		}
	} else {
		int r = queue_delete(q, id, &err);
		if (r < 0) {
			fprintf(stderr, "tern: queue delete: %s\n", err ? err : "?");
			free(err);
			rc = 1;
		} else if (r == 0) {
			fprintf(stderr, "tern: no message %s in the queue\n", id);
			rc = 1;
		} else {
			printf("deleted %s\n", id);
		}
	}
	queue_close(&q);
	config_free(&c);
	return rc;
}
