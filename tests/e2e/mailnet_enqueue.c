/* SPDX-License-Identifier: MIT */
/* Test helper for the e2e relay tests: puts one message into a stopped
 * server's outbound queue through the queue API (queue/queue.h), the way
 * submission will once it exists. The server handle takes the queue lock,
 * so this works only while no `tern serve` runs on that data_dir.
 *
 *   mailnet_enqueue [-r FULL|HDRS] [-e ENVID] [-a ARRIVAL] [-u SUBMITTER] [-8] [-U]
 *                [-n COUNT [-m MOD]] DATA_DIR SENDER RCPT[,NOTIFY[,ORCPT]]... < message
 *
 * -n COUNT enqueues COUNT copies (for the benchmark); in copy k, "%N" in a
 * recipient becomes k % MOD (MOD defaults to COUNT).
 *
 * NOTIFY is "-" or a '+'-separated list of NEVER SUCCESS FAILURE DELAY.
 * The message may have CRLF or LF line ends; it is stored in storage form
 * (LF). Prints the queue id of each copy, one per line. Built by the test suite itself (conftest-free:
 * test_relay.py compiles it against build/libtern.a). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"

static unsigned parse_notify(const char *s)
{
	unsigned bits = 0;
	char *copy = strdup(s), *save = NULL;
	for (char *t = strtok_r(copy, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
		if (strcmp(t, "NEVER") == 0)
			bits |= QUEUE_NOTIFY_NEVER;
		else if (strcmp(t, "SUCCESS") == 0)
			bits |= QUEUE_NOTIFY_SUCCESS;
		else if (strcmp(t, "FAILURE") == 0)
			bits |= QUEUE_NOTIFY_FAILURE;
		else if (strcmp(t, "DELAY") == 0)
			bits |= QUEUE_NOTIFY_DELAY;
	}
	free(copy);
	return bits;
}

int main(int argc, char **argv)
{
	struct queue_envelope env = { .ret = QUEUE_RET_UNSPEC, .arrival = (int64_t)time(NULL) };
	bool force8 = false;
	long count = 1, mod = 0;
	int c;
	while ((c = getopt(argc, argv, "r:e:a:u:8Un:m:")) != -1) {
		switch (c) {
		case 'r':
			env.ret = strcmp(optarg, "FULL") == 0 ? QUEUE_RET_FULL : QUEUE_RET_HDRS;
			break;
		case 'e':
			env.envid = optarg;
			break;
		case 'a':
			env.arrival = strtoll(optarg, NULL, 10);
			break;
		case 'u':
			env.submitter = optarg;
			break;
		case '8':
			force8 = true;
			break;
		case 'U':
			env.smtputf8 = true;
			break;
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 'm':
			mod = strtol(optarg, NULL, 10);
			break;
		default:
			return 2;
		}
	}
	if (argc - optind < 3) {
		fprintf(stderr, "usage: mailnet_enqueue [opts] DATA_DIR SENDER RCPT... < message\n");
		return 2;
	}
	const char *data_dir = argv[optind];
	env.sender = argv[optind + 1];
	size_t n = (size_t)(argc - optind - 2);
	struct queue_rcpt_spec *rcpts = calloc(n, sizeof *rcpts);
	for (size_t i = 0; i < n; i++) {
		char *spec = argv[optind + 2 + i];
		char *comma = strchr(spec, ',');
		rcpts[i].addr = spec;
		if (comma) {
			*comma = '\0';
			char *orcpt = strchr(comma + 1, ',');
			if (orcpt) {
				*orcpt = '\0';
				rcpts[i].orcpt = orcpt + 1;
			}
			if (strcmp(comma + 1, "-") != 0)
				rcpts[i].notify = parse_notify(comma + 1);
		}
	}
	env.rcpts = rcpts;
	env.n_rcpts = n;

	/* stdin, CRLF -> LF (storage form) */
	size_t cap = 1 << 16, len = 0;
	char *data = malloc(cap);
	size_t r;
	while ((r = fread(data + len, 1, cap - len, stdin)) > 0) {
		len += r;
		if (len == cap)
			data = realloc(data, cap *= 2);
	}
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		if ((unsigned char)data[i] >= 0x80)
			env.eightbit = true;
		data[o++] = data[i];
	}
	if (force8)
		env.eightbit = true;

	char *err = NULL;
	if (queue_envelope_check(&env, &err) < 0) {
		fprintf(stderr, "mailnet_enqueue: envelope: %s\n", err);
		return 1;
	}
	struct queue *q = queue_open(data_dir, QUEUE_OPEN_SERVER, &err);
	if (q == NULL) {
		fprintf(stderr, "mailnet_enqueue: %s\n", err);
		return 1;
	}
	if (count < 1)
		count = 1;
	if (mod < 1)
		mod = count;
	char **addrs = calloc(n, sizeof *addrs);
	for (long k = 0; k < count; k++) {
		for (size_t i = 0; i < n; i++) {
			const char *tmpl = argv[optind + 2 + i], *pct = strstr(tmpl, "%N");
			free(addrs[i]);
			addrs[i] = NULL;
			if (pct == NULL) {
				rcpts[i].addr = tmpl;
				continue;
			}
			if (asprintf(&addrs[i], "%.*s%ld%s", (int)(pct - tmpl), tmpl, k % mod, pct + 2) < 0)
				return 1;
			rcpts[i].addr = addrs[i];
		}
		char id[17];
		if (queue_enqueue(q, &env, data, o, id, &err) < 0) {
			fprintf(stderr, "mailnet_enqueue: enqueue: %s\n", err);
			queue_close(&q);
			return 1;
		}
		printf("%s\n", id);
	}
	queue_close(&q);
	for (size_t i = 0; i < n; i++)
		free(addrs[i]);
	free(addrs);
	free(data);
	free(rcpts);
	return 0;
}
