/* SPDX-License-Identifier: MIT */
/* A second handle in the server process (QUEUE_OPEN_WRITER, the relay's
 * queue worker): it may create DSN files, takes no lock, recovers nothing;
 * and opening it must not drop the POSIX locks of the server handle's SQLite
 * connection (close(2) on any fd of the file would), or a CLI process closing
 * its handle resets the WAL under the server and the server's later commits
 * become invisible to everyone else. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "queue/queue.h"

static char dir[64];

/* In a child process (another program, like `tern queue`): 0 flush, 1 count. */
static int child(int what)
{
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		char *err = NULL;
		struct queue *q = queue_open(dir, 0, &err);
		if (!q)
			_exit(100);
		int rc = 0;
		if (what == 0) {
			rc = queue_flush(q, &err) < 0 ? 101 : 0;
		} else {
			struct queue_msg **v = NULL;
			size_t n = 0;
			rc = queue_list(q, time_unix(), &v, &n, &err) < 0 ? 102 : (int)n;
			queue_msgs_free(v, n);
		}
		queue_close(&q);
		_exit(rc);
	}
	int st = 0;
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_writer_handle_keeps_locks(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/tern-qw-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char *err = NULL;
	struct queue *s = queue_open(dir, QUEUE_OPEN_SERVER, &err);
	assert_non_null(s);
	struct queue_rcpt_spec r = { .addr = "bob@remote.test" };
	struct queue_envelope env = { .sender = "alice@example.org",
				      .arrival = time_unix(),
				      .rcpts = &r,
				      .n_rcpts = 1 };
	char id[17];
	assert_int_equal(queue_enqueue(s, &env, "Subject: x\n\nhi\n", 15, id, &err), 0);
	/* the second handle opens an existing database */
	struct queue *w = queue_open(dir, QUEUE_OPEN_WRITER, &err);
	assert_non_null(w);
	/* a second server handle is still refused: the lock is the server's */
	struct queue *s2 = queue_open(dir, QUEUE_OPEN_SERVER, &err);
	assert_null(s2);
	free(err);
	err = NULL;

	struct queue_due d;
	assert_int_equal(queue_due(s, time_unix(), 10, &d, &err), 0);
	assert_int_equal(d.n, 1);
	queue_due_free(&d);
	struct queue_result res = { .rcpt = 0, .outcome = QUEUE_OUT_TEMPFAIL,
				    .err = { .code = 451, .text = "451 later" } };
	assert_int_equal(queue_record(w, id, &res, 1, time_unix(), &err), 0);
	assert_int_equal(child(1), 1);
	/* another process writes and closes (tern queue flush) ... */
	assert_int_equal(child(0), 0);
	/* ... then the server process goes on writing through both handles */
	assert_int_equal(queue_due(s, time_unix(), 10, &d, &err), 0);
	assert_int_equal(d.n, 1);
	queue_due_free(&d);
	res.outcome = QUEUE_OUT_PERMFAIL;
	res.err = (struct queue_error){ .code = 550, .text = "550 no" };
	assert_int_equal(queue_record(w, id, &res, 1, time_unix(), &err), 0);
	char dsn[17];
	/* the writer handle may create the DSN file */
	assert_int_equal(queue_notify(w, id, time_unix(), dsn, &err), 1);
	assert_int_equal(strlen(dsn), 16);
	/* visible to other processes now, not only after the server closes */
	assert_int_equal(child(1), 1); /* the DSN, the original removed */
	queue_close(&w);
	queue_close(&s);
	assert_int_equal(child(1), 1);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_handle_keeps_locks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
