/* SPDX-License-Identifier: MIT */
/* Test helper for tests/e2e/test_queue_cli.py and test_relay_smoke.py: puts a
 * message into a (stopped or running) server's outbound queue through the
 * queue library, the way submission will. Built by the tests themselves
 * against build/libtern.a (not part of the product).
 *
 * usage: queue_helper DATA_DIR SENDER RCPT... < message
 * Prints the queue id. Enqueueing needs the server handle (QUEUE_OPEN_SERVER),
 * so the server must not be running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "queue/queue.h"

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: queue_helper DATA_DIR SENDER RCPT... < message\n");
		return 2;
	}
	struct buf in = BUF_INIT(0);
	char tmp[65536];
	ssize_t n;
	while ((n = read(0, tmp, sizeof tmp)) > 0)
		buf_xappend(&in, tmp, (size_t)n);
	size_t nr = (size_t)argc - 3;
	struct queue_rcpt_spec *r = calloc(nr, sizeof *r);
	for (size_t i = 0; i < nr; i++)
		r[i].addr = argv[3 + i];
	struct queue_envelope env = {
		.sender = argv[2],
		.arrival = time_unix(),
		.rcpts = r,
		.n_rcpts = nr,
	};
	char *err = NULL;
	struct queue *q = queue_open(argv[1], QUEUE_OPEN_SERVER, &err);
	if (!q) {
		fprintf(stderr, "queue_open: %s\n", err);
		return 1;
	}
	char id[17];
	if (queue_enqueue(q, &env, in.data, in.len, id, &err) < 0) {
		fprintf(stderr, "queue_enqueue: %s\n", err);
		return 1;
	}
	printf("%s\n", id);
	queue_close(&q);
	buf_deinit(&in);
	free(r);
	return 0;
}
