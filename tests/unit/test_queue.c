/* SPDX-License-Identifier: MIT */
/* The outbound queue store in a temporary directory, with a fake clock:
 * enqueue/list, envelope limits, due() grouping and claims, results with
 * backoff and lifetime expiry, notifications (which recipients get a DSN,
 * removal), flush, delete, the server lock, recovery after a simulated
 * crash at every step, the Maildir group-commit path (also through a
 * QUEUE_OPEN_WRITER handle), recipients enqueued as already delivered
 * locally (their success DSN, crashes around it), and two handles working
 * concurrently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "mime/message.h"
#include "queue/queue.h"
#include "store/maildir.h"

#define T0 1700000000LL

struct fx {
	char dir[64];
	struct queue *q;
};

static const char msg_text[] = "From: a@example.org\n"
			       "To: b@example.net\n"
			       "Subject: hello\n"
			       "Message-ID: <m1@example.org>\n"
			       "\n"
			       "body line\n";

static struct queue *open_q(const char *dir, unsigned flags)
{
	char *err = NULL;
	struct queue *q = queue_open(dir, flags, &err);
	if (q == NULL)
		fprintf(stderr, "queue_open: %s\n", err);
	free(err);
	assert_non_null(q);
	struct queue_policy p = {.hostname = "mx.example.org"};
	queue_set_policy(q, &p);
	return q;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/tern-queue.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	queue_test_crash_at(QUEUE_CRASH_NONE);
	queue_close(&f->q);
	char *cmd = xasprintf("rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", f->dir);
	free(cmd);
	free(f);
	return 0;
}

static size_t count_files(const char *dir, const char *sub)
{
	char *p = xasprintf("%s/queue/%s", dir, sub);
	DIR *d = opendir(p);
	free(p);
	if (d == NULL)
		return 0;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void enqueue(struct queue *q, const char *sender, const struct queue_rcpt_spec *r, size_t n,
		    int64_t arrival, char id[17])
{
	struct queue_envelope env = {
	    .sender = sender,
	    .arrival = arrival,
	    .rcpts = r,
	    .n_rcpts = n,
	};
	char *err = NULL;
	int rc = queue_enqueue(q, &env, msg_text, strlen(msg_text), id, &err);
	if (rc != 0)
		fprintf(stderr, "enqueue: %s\n", err);
	free(err);
	assert_int_equal(rc, 0);
	assert_true(queue_id_valid(id));
}

static struct queue_msg *get(struct queue *q, const char *id, int64_t now)
{
	struct queue_msg *m = NULL;
	char *err = NULL;
	int rc = queue_get(q, id, now, &m, &err);
	free(err);
	assert_int_not_equal(rc, -1);
	return m;
}

static size_t list_count(struct queue *q)
{
	struct queue_msg **v;
	size_t n;
	char *err = NULL;
	assert_int_equal(queue_list(q, T0, &v, &n, &err), 0);
	queue_msgs_free(v, n);
	return n;
}

static void record1(struct queue *q, const char *id, uint32_t rcpt, enum queue_outcome o, int code,
		    const char *enh, const char *text, int64_t now)
{
	struct queue_result r = {rcpt, o, {code, enh, text, "mx.example.net"}};
	char *err = NULL;
	int rc = queue_record(q, id, &r, 1, now, &err);
	if (rc != 0)
		fprintf(stderr, "record: %s\n", err);
	free(err);
	assert_int_equal(rc, 0);
}

/* Claims everything due and returns the number of recipients claimed. */
static size_t due_count(struct queue *q, int64_t now)
{
	struct queue_due d;
	char *err = NULL;
	assert_int_equal(queue_due(q, now, 1000, &d, &err), 0);
	size_t n = 0;
	for (size_t i = 0; i < d.n; i++)
		for (size_t j = 0; j < d.v[i].n_msgs; j++)
			n += d.v[i].msgs[j]->n_rcpts;
	queue_due_free(&d);
	return n;
}

/* ---- tests ---- */

static void test_backoff(void **state)
{
	(void)state;
	static const struct {
		int64_t retry, cap;
		unsigned attempts;
		int64_t want;
	} cases[] = {
	    {0, 0, 1, 300},   {0, 0, 2, 600},	 {0, 0, 3, 1200},      {0, 0, 6, 9600},
	    {0, 0, 7, 14400}, {0, 0, 8, 14400},	 {0, 0, 1000, 14400},  {60, 0, 1, 60},
	    {60, 0, 4, 480},  {60, 100, 3, 100}, {10, 3600, 60, 3600},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct queue_policy p = {.retry = cases[i].retry, .max_backoff = cases[i].cap};
		assert_int_equal(queue_backoff(&p, cases[i].attempts), cases[i].want);
	}
}

static void test_enqueue_list(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {
	    {"b@Example.NET", "rfc822;b@Example.NET", QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE},
	    {"c@example.com", NULL, 0},
	};
	struct queue_envelope env = {
	    .sender = "a@example.org",
	    .envid = "ENV-1",
	    .ret = QUEUE_RET_HDRS,
	    .eightbit = true,
	    .submitter = "a@example.org",
	    .arrival = T0,
	    .rcpts = r,
	    .n_rcpts = 2,
	};
	char id[17], *err = NULL;
	assert_int_equal(queue_enqueue(f->q, &env, msg_text, strlen(msg_text), id, &err), 0);
	struct queue_msg **v;
	size_t n;
	assert_int_equal(queue_list(f->q, T0, &v, &n, &err), 0);
	assert_int_equal(n, 1);
	struct queue_msg *m = v[0];
	assert_string_equal(m->id, id);
	assert_string_equal(m->sender, "a@example.org");
	assert_string_equal(m->envid, "ENV-1");
	assert_string_equal(m->submitter, "a@example.org");
	assert_int_equal(m->ret, QUEUE_RET_HDRS);
	assert_true(m->eightbit);
	assert_false(m->smtputf8);
	assert_int_equal(m->arrival, T0);
	assert_int_equal(m->size, strlen(msg_text));
	assert_int_equal(m->wire_size, strlen(msg_text) + 6); /* 6 LFs become CRLF */
	assert_int_equal(m->n_rcpts, 2);
	assert_int_equal(m->rcpts[0].idx, 0);
	assert_string_equal(m->rcpts[0].addr, "b@Example.NET");
	assert_string_equal(m->rcpts[0].domain, "example.net");
	assert_string_equal(m->rcpts[0].orcpt, "rfc822;b@Example.NET");
	assert_int_equal(m->rcpts[0].notify, QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE);
	assert_int_equal(m->rcpts[0].state, QUEUE_RCPT_QUEUED);
	assert_null(m->rcpts[1].orcpt);
	assert_int_equal(m->rcpts[1].attempts, 0);
	assert_string_equal(queue_state_name(m->rcpts[1].state), "queued");
	/* the file holds the content in storage form */
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(f->q, m, 1 << 20, &b, &trunc, &err), 0);
	assert_false(trunc);
	assert_int_equal(b.len, strlen(msg_text));
	assert_memory_equal(b.data, msg_text, b.len);
	buf_clear(&b);
	assert_int_equal(queue_read(f->q, m, 10, &b, &trunc, &err), 0);
	assert_true(trunc);
	assert_int_equal(b.len, 10);
	buf_deinit(&b);
	queue_msgs_free(v, n);
	assert_int_equal(count_files(f->dir, "new"), 1);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
	/* survives a reopen */
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(list_count(f->q), 1);
	assert_int_equal(count_files(f->dir, "new"), 1);
}

static void test_envelope_limits(void **state)
{
	struct fx *f = *state;
	char *long_addr = xmalloc(400);
	memset(long_addr, 'a', 399);
	long_addr[399] = '\0';
	long_addr[10] = '@';
	struct {
		const char *sender, *addr, *orcpt, *envid;
		unsigned notify;
		size_t n;
	} bad[] = {
	    {"a@b\r\nX: y", "c@d", NULL, NULL, 0, 1},
	    {"a@b", "", NULL, NULL, 0, 1},
	    {"a@b", "c@d\n", NULL, NULL, 0, 1},
	    {"a@b", long_addr, NULL, NULL, 0, 1},
	    {"a@b", "c@d", "no-semicolon", NULL, 0, 1},
	    {"a@b", "c@d", NULL, "env\x01", 0, 1},
	    {"a@b", "c@d", NULL, NULL, QUEUE_NOTIFY_NEVER | QUEUE_NOTIFY_DELAY, 1},
	    {"a@b", "c@d", NULL, NULL, 1u << 7, 1},
	    {"a@b", "c@d", NULL, NULL, 0, 0},
	};
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		struct queue_rcpt_spec r = {bad[i].addr, bad[i].orcpt, bad[i].notify};
		struct queue_envelope env = {
		    .sender = bad[i].sender,
		    .envid = bad[i].envid,
		    .rcpts = &r,
		    .n_rcpts = bad[i].n,
		};
		char id[17], *err = NULL;
		assert_int_equal(queue_enqueue(f->q, &env, "x\n", 2, id, &err), -1);
		assert_non_null(err);
		free(err);
	}
	free(long_addr);
	assert_int_equal(list_count(f->q), 0);
	assert_int_equal(count_files(f->dir, "new"), 0);
	assert_int_equal(count_files(f->dir, "tmp"), 0);
}

static void test_due_grouping(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec ra[] = {
	    {"x1@y.org", NULL, 0}, {"x2@X.org", NULL, 0}, {"x3@y.org", NULL, 0}};
	struct queue_rcpt_spec rb[] = {{"z@y.org", NULL, 0}};
	char a[17], b[17];
	enqueue(f->q, "s@example.org", ra, 3, T0, a);
	enqueue(f->q, "s@example.org", rb, 1, T0 + 1, b);
	int64_t t;
	char *err = NULL;
	assert_int_equal(queue_next_due(f->q, &t, &err), 1);
	assert_int_equal(t, 0);
	/* nothing due before arrival-independent next_attempt 0? it is 0: all due */
	struct queue_due d;
	assert_int_equal(queue_due(f->q, T0 + 1, 100, &d, &err), 0);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.v[0].domain, "x.org");
	assert_int_equal(d.v[0].n_msgs, 1);
	assert_string_equal(d.v[0].msgs[0]->id, a);
	assert_int_equal(d.v[0].msgs[0]->n_rcpts, 1);
	assert_int_equal(d.v[0].msgs[0]->rcpts[0].idx, 1);
	assert_true(d.v[0].msgs[0]->rcpts[0].claimed);
	assert_string_equal(d.v[1].domain, "y.org");
	assert_int_equal(d.v[1].n_msgs, 2);
	assert_string_equal(d.v[1].msgs[0]->id, a); /* older first */
	assert_int_equal(d.v[1].msgs[0]->n_rcpts, 2);
	assert_int_equal(d.v[1].msgs[0]->rcpts[0].idx, 0);
	assert_int_equal(d.v[1].msgs[0]->rcpts[1].idx, 2);
	assert_string_equal(d.v[1].msgs[1]->id, b);
	assert_string_equal(d.v[1].msgs[1]->sender, "s@example.org");
	queue_due_free(&d);
	/* claimed: not handed out again, not due for next_due */
	assert_int_equal(due_count(f->q, T0 + 100), 0);
	assert_int_equal(queue_next_due(f->q, &t, &err), 0);
	/* a release gives them back */
	uint32_t idx[] = {0, 2};
	assert_int_equal(queue_release(f->q, a, idx, 2, &err), 0);
	assert_int_equal(due_count(f->q, T0 + 100), 2);
	/* max_rcpts bounds a call */
	uint32_t all[] = {0, 1, 2};
	assert_int_equal(queue_release(f->q, a, all, 3, &err), 0);
	assert_int_equal(queue_due(f->q, T0, 2, &d, &err), 0);
	size_t n = 0;
	for (size_t i = 0; i < d.n; i++)
		for (size_t j = 0; j < d.v[i].n_msgs; j++)
			n += d.v[i].msgs[j]->n_rcpts;
	assert_int_equal(n, 2);
	queue_due_free(&d);
}

static void test_backoff_lifetime(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {{"u@slow.example", NULL, QUEUE_NOTIFY_FAILURE}};
	char id[17];
	enqueue(f->q, "s@example.org", r, 1, T0, id);
	int64_t now = T0, expiry = T0 + 5 * 86400;
	unsigned attempts = 0;
	int64_t prev_delay = 0;
	for (;;) {
		assert_int_equal(due_count(f->q, now), 1);
		record1(f->q, id, 0, QUEUE_OUT_TEMPFAIL, 451, "4.3.0", "451 4.3.0 try later", now);
		attempts++;
		struct queue_msg *m = get(f->q, id, now);
		assert_non_null(m);
		if (m->rcpts[0].state == QUEUE_RCPT_FAILED) {
			assert_true(now >= expiry);
			assert_int_equal(m->rcpts[0].action, QUEUE_ACTION_FAILED);
			queue_msg_free(&m);
			break;
		}
		assert_int_equal(m->rcpts[0].state, QUEUE_RCPT_DEFERRED);
		assert_int_equal(m->rcpts[0].attempts, attempts);
		assert_int_equal(m->rcpts[0].err_code, 451);
		assert_string_equal(m->rcpts[0].err_enhanced, "4.3.0");
		assert_string_equal(m->rcpts[0].err_remote, "mx.example.net");
		int64_t next = m->rcpts[0].next_attempt;
		int64_t delay = next - now;
		/* 5m doubling, capped at 4h, never past the expiry */
		int64_t want = attempts == 1 ? 300 : prev_delay * 2;
		if (want > 4 * 3600)
			want = 4 * 3600;
		if (now + want > expiry)
			want = expiry - now;
		assert_int_equal(delay, want);
		prev_delay = delay < 4 * 3600 ? delay : 4 * 3600;
		queue_msg_free(&m);
		/* not due one second early */
		assert_int_equal(due_count(f->q, next - 1), 0);
		now = next;
		assert_true(attempts < 100);
	}
	/* 300,600,...,9600 (6 retries), then 4h steps: about 35 attempts in 5 days */
	assert_true(attempts > 30 && attempts < 40);
	/* the bounce: queued, and the message is gone */
	char dsn[17], *err = NULL;
	assert_int_equal(queue_notify(f->q, id, now, dsn, &err), 1);
	assert_true(queue_id_valid(dsn));
	struct queue_msg *m = get(f->q, id, now);
	assert_null(m);
	m = get(f->q, dsn, now);
	assert_non_null(m);
	assert_string_equal(m->sender, "");
	assert_int_equal(m->n_rcpts, 1);
	assert_string_equal(m->rcpts[0].addr, "s@example.org");
	assert_int_equal(m->rcpts[0].notify, QUEUE_NOTIFY_NEVER);
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(f->q, m, 1 << 20, &b, &trunc, &err), 0);
	struct mime_message *mm = mime_parse(b.data, b.len, NULL);
	size_t l;
	assert_string_equal(mime_str_ptr(mm, mm->parts[0].subtype, &l), "report");
	assert_int_equal(mm->parts[0].n_children, 3);
	assert_non_null(memmem(b.data, b.len, "Action: failed\n", 15));
	assert_non_null(memmem(b.data, b.len, "Status: 4.3.0\n", 14));
	mime_message_free(&mm);
	buf_deinit(&b);
	queue_msg_free(&m);
	assert_int_equal(count_files(f->dir, "new"), 1); /* only the DSN */
	/* a null-sender DSN that fails is dropped without a bounce */
	assert_int_equal(due_count(f->q, now), 1);
	record1(f->q, dsn, 0, QUEUE_OUT_PERMFAIL, 550, "5.1.1", "550 5.1.1 no", now);
	char dsn2[17];
	assert_int_equal(queue_notify(f->q, dsn, now, dsn2, &err), 1);
	assert_string_equal(dsn2, "");
	assert_int_equal(list_count(f->q), 0);
	assert_int_equal(count_files(f->dir, "new"), 0);
}

/* Which recipients get a DSN (RFC 3461 5.2), and removal when all final. */
static void test_notify_rules(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {
	    {"perm@x.example", NULL, 0},					    /* failed DSN */
	    {"ok@x.example", NULL, QUEUE_NOTIFY_SUCCESS},			    /* delivered */
	    {"passed@x.example", "rfc822;passed@x.example", QUEUE_NOTIFY_SUCCESS},  /* none */
	    {"relay@x.example", NULL, QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE}, /* relayed */
	    {"quiet@x.example", NULL, QUEUE_NOTIFY_NEVER},			    /* none */
	    {"nofail@x.example", NULL, QUEUE_NOTIFY_SUCCESS},			    /* none */
	    {"later@x.example", NULL, 0},					    /* pending */
	};
	char id[17], dsn[17], *err = NULL;
	enqueue(f->q, "s@example.org", r, N_ELEMENTS(r), T0, id);
	assert_int_equal(due_count(f->q, T0), 7);
	struct queue_result res[] = {
	    {0, QUEUE_OUT_PERMFAIL, {550, "5.1.1", "550 5.1.1 unknown user", "mx.x.example"}},
	    {1, QUEUE_OUT_DELIVERED, {250, "2.0.0", "250 2.0.0 ok", NULL}},
	    {2, QUEUE_OUT_PASSED, {250, NULL, "250 ok", "mx.x.example"}},
	    {3, QUEUE_OUT_RELAYED, {250, NULL, "250 ok", "mx.x.example"}},
	    {4, QUEUE_OUT_PERMFAIL, {550, NULL, "550 no", "mx.x.example"}},
	    {5, QUEUE_OUT_PERMFAIL, {550, NULL, "550 no", "mx.x.example"}},
	    {6, QUEUE_OUT_TEMPFAIL, {0, "4.4.1", "connection refused", "mx.x.example"}},
	};
	assert_int_equal(queue_record(f->q, id, res, N_ELEMENTS(res), T0 + 10, &err), 0);
	struct queue_msg *m = get(f->q, id, T0 + 10);
	static const enum queue_action want[] = {
	    QUEUE_ACTION_FAILED, QUEUE_ACTION_DELIVERED, QUEUE_ACTION_NONE, QUEUE_ACTION_RELAYED,
	    QUEUE_ACTION_NONE,	 QUEUE_ACTION_NONE,	 QUEUE_ACTION_NONE,
	};
	for (size_t i = 0; i < N_ELEMENTS(want); i++)
		assert_int_equal(m->rcpts[i].action, want[i]);
	assert_int_equal(m->rcpts[6].state, QUEUE_RCPT_DEFERRED);
	assert_int_equal(m->rcpts[6].next_attempt, T0 + 10 + 300);
	queue_msg_free(&m);
	/* results for final recipients are ignored */
	record1(f->q, id, 0, QUEUE_OUT_DELIVERED, 250, NULL, "250 ok", T0 + 11);
	m = get(f->q, id, T0 + 11);
	assert_int_equal(m->rcpts[0].state, QUEUE_RCPT_FAILED);
	queue_msg_free(&m);

	assert_int_equal(queue_notify(f->q, id, T0 + 12, dsn, &err), 0); /* stays: one pending */
	assert_true(queue_id_valid(dsn));
	m = get(f->q, id, T0 + 12);
	for (size_t i = 0; i < 6; i++) {
		assert_true(m->rcpts[i].reported);
		assert_int_equal(m->rcpts[i].action, QUEUE_ACTION_NONE);
	}
	assert_false(m->rcpts[6].reported);
	queue_msg_free(&m);
	struct queue_msg *d = get(f->q, dsn, T0 + 12);
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(f->q, d, 1 << 20, &b, &trunc, &err), 0);
	assert_non_null(memmem(b.data, b.len, "Final-Recipient: rfc822; perm@x.example\n", 40));
	assert_non_null(memmem(b.data, b.len, "Final-Recipient: rfc822; ok@x.example\n", 38));
	assert_non_null(memmem(b.data, b.len, "Action: relayed\n", 16));
	assert_null(memmem(b.data, b.len, "passed@", 7));
	assert_null(memmem(b.data, b.len, "quiet@", 6));
	assert_null(memmem(b.data, b.len, "nofail@", 7));
	assert_null(memmem(b.data, b.len, "later@", 6));
	buf_deinit(&b);
	queue_msg_free(&d);
	/* nothing more to say now */
	assert_int_equal(queue_notify(f->q, id, T0 + 13, dsn, &err), 0);
	assert_string_equal(dsn, "");
	/* the last one delivered without SUCCESS: removed without a DSN */
	assert_int_equal(due_count(f->q, T0 + 310), 2); /* and the DSN itself */
	record1(f->q, id, 6, QUEUE_OUT_PASSED, 250, NULL, "250 ok", T0 + 310);
	assert_int_equal(queue_notify_all(f->q, T0 + 311, &err), 1);
	assert_null(get(f->q, id, T0 + 311));
	assert_int_equal(list_count(f->q), 1); /* the first DSN only */
}

static void test_null_sender(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}};
	char id[17], dsn[17], *err = NULL;
	enqueue(f->q, "", r, 1, T0, id);
	assert_int_equal(due_count(f->q, T0), 1);
	/* no delay warning either */
	record1(f->q, id, 0, QUEUE_OUT_TEMPFAIL, 421, NULL, "421 busy", T0);
	assert_int_equal(queue_notify_all(f->q, T0 + 5 * 3600, &err), 0);
	assert_int_equal(due_count(f->q, T0 + 5 * 3600), 1);
	record1(f->q, id, 0, QUEUE_OUT_PERMFAIL, 550, NULL, "550 no", T0 + 5 * 3600);
	struct queue_msg *m = get(f->q, id, T0 + 5 * 3600);
	assert_int_equal(m->rcpts[0].action, QUEUE_ACTION_NONE);
	queue_msg_free(&m);
	assert_int_equal(queue_notify(f->q, id, T0 + 5 * 3600, dsn, &err), 1);
	assert_string_equal(dsn, "");
	assert_int_equal(list_count(f->q), 0);
}

static void test_delay_warning(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {
	    {"d1@x.example", NULL, 0},
	    {"d2@x.example", NULL, QUEUE_NOTIFY_DELAY | QUEUE_NOTIFY_FAILURE},
	    {"d3@x.example", NULL, QUEUE_NOTIFY_FAILURE}, /* no DELAY: no warning */
	};
	char id[17], *err = NULL;
	enqueue(f->q, "s@example.org", r, 3, T0, id);
	assert_int_equal(due_count(f->q, T0), 3);
	struct queue_result res[3];
	for (uint32_t i = 0; i < 3; i++)
		res[i] = (struct queue_result){
		    i, QUEUE_OUT_TEMPFAIL, {450, "4.2.0", "450 4.2.0 mailbox busy", "mx"}};
	assert_int_equal(queue_record(f->q, id, res, 3, T0, &err), 0);
	/* not before 4 hours */
	assert_int_equal(queue_notify_all(f->q, T0 + 4 * 3600 - 1, &err), 0);
	int64_t now = T0 + 4 * 3600;
	struct queue_msg *m = get(f->q, id, now);
	assert_int_equal(m->rcpts[0].action, QUEUE_ACTION_DELAYED);
	assert_int_equal(m->rcpts[1].action, QUEUE_ACTION_DELAYED);
	assert_int_equal(m->rcpts[2].action, QUEUE_ACTION_NONE);
	queue_msg_free(&m);
	assert_int_equal(queue_notify_all(f->q, now, &err), 1);
	m = get(f->q, id, now);
	assert_true(m->rcpts[0].delay_warned);
	assert_true(m->rcpts[1].delay_warned);
	assert_false(m->rcpts[2].delay_warned);
	assert_int_equal(m->rcpts[0].action, QUEUE_ACTION_NONE);
	queue_msg_free(&m);
	/* once only */
	assert_int_equal(queue_notify_all(f->q, now + 3600, &err), 0);
	struct queue_msg **v;
	size_t n;
	assert_int_equal(queue_list(f->q, now, &v, &n, &err), 0);
	assert_int_equal(n, 2);
	struct queue_msg *dsn = strcmp(v[0]->id, id) == 0 ? v[1] : v[0];
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(f->q, dsn, 1 << 20, &b, &trunc, &err), 0);
	assert_non_null(memmem(b.data, b.len, "Action: delayed\n", 16));
	assert_non_null(memmem(b.data, b.len, "Will-Retry-Until: ", 18));
	assert_non_null(memmem(b.data, b.len, "Content-Type: text/rfc822-headers", 33));
	assert_null(memmem(b.data, b.len, "d3@", 3));
	buf_deinit(&b);
	queue_msgs_free(v, n);
}

static void test_flush_delete(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}, {"v@y.example", NULL, 0}};
	char a[17], b[17], *err = NULL;
	enqueue(f->q, "s@example.org", r, 2, T0, a);
	enqueue(f->q, "s@example.org", r, 1, T0, b);
	assert_int_equal(due_count(f->q, T0), 3);
	struct queue_result res[] = {{0, QUEUE_OUT_TEMPFAIL, {421, NULL, "421 x", NULL}},
				     {1, QUEUE_OUT_TEMPFAIL, {421, NULL, "421 x", NULL}}};
	assert_int_equal(queue_record(f->q, a, res, 2, T0, &err), 0);
	assert_int_equal(queue_record(f->q, b, res, 1, T0, &err), 0);
	assert_int_equal(due_count(f->q, T0 + 1), 0);
	/* flush from another handle (the CLI) */
	struct queue *cli = open_q(f->dir, 0);
	assert_int_equal(queue_flush(cli, &err), 3);
	assert_int_equal(due_count(f->q, T0 + 1), 3);
	/* delete while claimed: the late result is ignored */
	assert_int_equal(queue_delete(cli, a, &err), 1);
	assert_int_equal(queue_delete(cli, a, &err), 0);
	assert_int_equal(queue_delete(cli, "nothex", &err), 0);
	assert_int_equal(queue_delete(cli, "../../etc/passwd", &err), 0);
	record1(f->q, a, 0, QUEUE_OUT_DELIVERED, 250, NULL, "250 ok", T0 + 2);
	char dsn[17];
	assert_int_equal(queue_notify(f->q, a, T0 + 2, dsn, &err), 0);
	assert_null(get(f->q, a, T0 + 2));
	assert_int_equal(list_count(cli), 1);
	assert_int_equal(count_files(f->dir, "new"), 1);
	queue_close(&cli);
}

static void test_server_lock(void **state)
{
	struct fx *f = *state;
	char *err = NULL;
	struct queue *q2 = queue_open(f->dir, QUEUE_OPEN_SERVER, &err);
	assert_null(q2);
	assert_non_null(strstr(err, "another server"));
	free(err);
	err = NULL;
	struct queue *cli = queue_open(f->dir, 0, &err);
	assert_non_null(cli);
	queue_close(&cli);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER); /* the lock went with the handle */
}

/* A crash at each step of enqueue: after the server reopens, the message is
 * either wholly absent (no file, no rows) or present and due. */
static void test_crash_enqueue(void **state)
{
	struct fx *f = *state;
	static const enum queue_crash points[] = {QUEUE_CRASH_ENQ_TMP, QUEUE_CRASH_ENQ_RENAMED,
						  QUEUE_CRASH_ENQ_FILE, QUEUE_CRASH_ENQ_TXN};
	static const char *const debris[] = {"tmp", "new", "new", "new"};
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}};
	struct queue_envelope env = {.sender = "s@example.org", .rcpts = r, .n_rcpts = 1};
	for (size_t i = 0; i < N_ELEMENTS(points); i++) {
		char id[17], *err = NULL;
		queue_test_crash_at(points[i]);
		assert_int_equal(queue_enqueue(f->q, &env, msg_text, strlen(msg_text), id, &err),
				 -1);
		assert_string_equal(err, "simulated crash");
		free(err);
		assert_int_equal(count_files(f->dir, debris[i]), 1);
		assert_int_equal(list_count(f->q), 0);
		queue_close(&f->q);
		f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
		assert_int_equal(list_count(f->q), 0);
		assert_int_equal(count_files(f->dir, "new"), 0);
		assert_int_equal(count_files(f->dir, "tmp"), 0);
	}
	/* and no crash: it stays */
	char id[17];
	enqueue(f->q, "s@example.org", r, 1, T0, id);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(list_count(f->q), 1);
	assert_int_equal(due_count(f->q, T0), 1);
}

/* A crash during delivery (claimed, no result): retried after restart. */
static void test_crash_delivery(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}, {"v@x.example", NULL, 0}};
	char id[17];
	enqueue(f->q, "s@example.org", r, 2, T0, id);
	assert_int_equal(due_count(f->q, T0), 2);
	record1(f->q, id, 0, QUEUE_OUT_PASSED, 250, NULL, "250 ok", T0); /* v: no result */
	/* a CLI open does not steal claims */
	struct queue *cli = open_q(f->dir, 0);
	assert_int_equal(due_count(cli, T0), 0);
	queue_close(&cli);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(due_count(f->q, T0), 1); /* v again (at least once) */
	record1(f->q, id, 1, QUEUE_OUT_PASSED, 250, NULL, "250 ok", T0 + 1);
	char *err = NULL;
	assert_int_equal(queue_notify(f->q, id, T0 + 1, NULL, &err), 1);
	assert_int_equal(list_count(f->q), 0);
}

/* A crash around the bounce: never lost, never twice. */
static void test_crash_notify(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}};
	char id[17], dsn[17], *err = NULL;
	enqueue(f->q, "s@example.org", r, 1, T0, id);
	assert_int_equal(due_count(f->q, T0), 1);
	record1(f->q, id, 0, QUEUE_OUT_PERMFAIL, 550, NULL, "550 no", T0);
	/* DSN file durable, transaction not committed */
	queue_test_crash_at(QUEUE_CRASH_NOTIFY_FILE);
	assert_int_equal(queue_notify(f->q, id, T0, dsn, &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(count_files(f->dir, "new"), 2);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(count_files(f->dir, "new"), 1); /* orphan DSN removed */
	assert_int_equal(list_count(f->q), 1);
	/* committed, original file not yet unlinked */
	queue_test_crash_at(QUEUE_CRASH_NOTIFY_TXN);
	assert_int_equal(queue_notify_all(f->q, T0 + 1, &err), -1);
	free(err);
	err = NULL;
	assert_int_equal(count_files(f->dir, "new"), 2);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(count_files(f->dir, "new"), 1); /* the original's file went */
	struct queue_msg **v;
	size_t n;
	assert_int_equal(queue_list(f->q, T0, &v, &n, &err), 0);
	assert_int_equal(n, 1); /* exactly one DSN */
	assert_string_equal(v[0]->sender, "");
	queue_msgs_free(v, n);
	assert_int_equal(queue_notify_all(f->q, T0 + 2, &err), 0);
	/* delete committed, file left: removed by recovery */
	struct queue_msg *none = get(f->q, id, T0);
	assert_null(none);
	char other[17];
	enqueue(f->q, "s@example.org", r, 1, T0, other);
	queue_test_crash_at(QUEUE_CRASH_DELETE_TXN);
	assert_int_equal(queue_delete(f->q, other, &err), -1);
	free(err);
	assert_int_equal(count_files(f->dir, "new"), 2);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(count_files(f->dir, "new"), 1);
	assert_int_equal(list_count(f->q), 1);
}

/* The original's file lost (not by us): the bounce still goes, without it. */
static void test_lost_file(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}};
	char id[17], dsn[17], *err = NULL;
	enqueue(f->q, "s@example.org", r, 1, T0, id);
	struct queue_msg *m = get(f->q, id, T0);
	char *path = queue_msg_path(f->q, m);
	assert_int_equal(unlink(path), 0);
	free(path);
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(f->q, m, 100, &b, &trunc, &err), -1);
	assert_int_equal(errno, ENOENT);
	free(err);
	err = NULL;
	queue_msg_free(&m);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER); /* logs it, keeps the rows */
	assert_int_equal(due_count(f->q, T0), 1);
	record1(f->q, id, 0, QUEUE_OUT_PERMFAIL, 554, "5.3.0", "message file lost", T0);
	assert_int_equal(queue_notify(f->q, id, T0, dsn, &err), 1);
	m = get(f->q, dsn, T0);
	assert_non_null(m);
	assert_int_equal(queue_read(f->q, m, 1 << 20, &b, &trunc, &err), 0);
	struct mime_message *mm = mime_parse(b.data, b.len, NULL);
	assert_int_equal(mm->parts[0].n_children, 2);
	mime_message_free(&mm);
	buf_deinit(&b);
	queue_msg_free(&m);
}

/* The SMTP path: the file written by store/maildir.c's group commit. */
struct file_ctx {
	struct queue *q;
	int rc;
	char id[17];
};

static void file_done(struct delivery *d, int result, const char *err, void *ctx)
{
	struct file_ctx *c = ctx;
	assert_int_equal(result, 0);
	(void)err;
	struct queue_rcpt_spec r = {"u@x.example", NULL, 0};
	struct queue_envelope env = {
	    .sender = "s@example.org", .arrival = T0, .rcpts = &r, .n_rcpts = 1};
	char *e = NULL;
	c->rc = queue_enqueue_file(c->q, &env, delivery_target_file(d, 0), c->id, &e);
	free(e);
}

static void file_done_dl(struct delivery *d, int result, const char *err, void *ctx)
{
	struct file_ctx *c = ctx;
	assert_int_equal(result, 0);
	(void)err;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0},
				      {"b@example.org", NULL, QUEUE_NOTIFY_SUCCESS}};
	const bool dl[] = {false, true};
	struct queue_envelope env = {.sender = "s@example.org",
				     .arrival = T0,
				     .rcpts = r,
				     .n_rcpts = 2,
				     .delivered = dl};
	char *e = NULL;
	c->rc = queue_enqueue_file(c->q, &env, delivery_target_file(d, 0), c->id, &e);
	free(e);
}

static void test_enqueue_file(void **state)
{
	struct fx *f = *state;
	struct delivery *d = delivery_new("mx.example.org");
	char *err = NULL;
	assert_int_equal(delivery_add_target(d, queue_spool_root(f->q), NULL, &err), 0);
	assert_int_equal(delivery_write(d, msg_text, strlen(msg_text)), 0);
	struct file_ctx c = {f->q, -2, ""};
	struct committer *cm = committer_new(NULL, NULL);
	committer_submit(cm, d, file_done, &c);
	committer_free(&cm); /* commits, then runs the done callback */
	assert_int_equal(c.rc, 0);
	struct queue_msg *m = get(f->q, c.id, T0);
	assert_non_null(m);
	assert_int_equal(m->size, strlen(msg_text));
	assert_int_equal(m->wire_size, strlen(msg_text) + 6);
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(f->q, m, 1 << 20, &b, &trunc, &err), 0);
	assert_memory_equal(b.data, msg_text, strlen(msg_text));
	buf_deinit(&b);
	queue_msg_free(&m);
	/* names outside new/ are refused */
	struct queue_rcpt_spec r = {"u@x.example", NULL, 0};
	struct queue_envelope env = {.sender = "", .rcpts = &r, .n_rcpts = 1};
	char id[17];
	static const char *const bad[] = {"cur/x", "new/", "new/../queue.db", "new/a/b", "/etc/x"};
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		assert_int_equal(queue_enqueue_file(f->q, &env, bad[i], id, &err), -1);
		free(err);
		err = NULL;
	}
	assert_int_equal(list_count(f->q), 1);
	/* an orphan written this way is removed by recovery */
	d = delivery_new("mx.example.org");
	assert_int_equal(delivery_add_target(d, queue_spool_root(f->q), NULL, &err), 0);
	assert_int_equal(delivery_write(d, "x\n", 2), 0);
	assert_int_equal(delivery_commit_sync(&d, &err), 0);
	assert_int_equal(count_files(f->dir, "new"), 2);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(count_files(f->dir, "new"), 1);
}

/* ---- recipients already delivered locally (queue_envelope.delivered) ---- */

static void enqueue_dl(struct queue *q, const char *sender, const struct queue_rcpt_spec *r,
		       const bool *dl, size_t n, char id[17])
{
	struct queue_envelope env = {
	    .sender = sender, .arrival = T0, .rcpts = r, .n_rcpts = n, .delivered = dl};
	char *err = NULL;
	int rc = queue_enqueue(q, &env, msg_text, strlen(msg_text), id, &err);
	if (rc != 0)
		fprintf(stderr, "enqueue: %s\n", err);
	free(err);
	assert_int_equal(rc, 0);
}

/* The DSNs in the queue (null sender, other than the message orig), each
 * one's text appended to out. */
static size_t dsns(struct queue *q, const char *orig, struct buf *out)
{
	struct queue_msg **v;
	size_t n, k = 0;
	char *err = NULL;
	assert_int_equal(queue_list(q, T0, &v, &n, &err), 0);
	for (size_t i = 0; i < n; i++) {
		if (v[i]->sender[0] != '\0' || (orig != NULL && !strcmp(v[i]->id, orig)))
			continue;
		k++;
		bool trunc;
		if (out != NULL)
			assert_int_equal(queue_read(q, v[i], 1 << 20, out, &trunc, &err), 0);
	}
	queue_msgs_free(v, n);
	return k;
}

static size_t count_str(const struct buf *b, const char *needle)
{
	size_t n = 0, l = strlen(needle);
	const char *p = (const char *)b->data, *e = p + b->len;
	while (p < e && (p = memmem(p, (size_t)(e - p), needle, l)) != NULL) {
		n++;
		p += l;
	}
	return n;
}

/* A local recipient with NOTIFY=SUCCESS goes in final in the same
 * transaction: never handed out for delivery, its "delivered" DSN built by
 * queue_notify(); without SUCCESS, or for a null sender, no DSN. Table:
 * sender, notify of the local recipient, with a remote recipient or not. */
static void test_enqueue_delivered(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *sender;
		unsigned notify;
		bool with_remote;
		bool dsn;
	} cases[] = {
	    {"s@example.org", QUEUE_NOTIFY_SUCCESS, true, true},
	    {"s@example.org", QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE, false, true},
	    {"s@example.org", QUEUE_NOTIFY_FAILURE, true, false},
	    {"s@example.org", QUEUE_NOTIFY_NEVER, false, false},
	    {"", QUEUE_NOTIFY_SUCCESS, true, false},
	};
	for (size_t c = 0; c < N_ELEMENTS(cases); c++) {
		struct queue_rcpt_spec r[] = {
		    {"u@x.example", NULL, QUEUE_NOTIFY_FAILURE},
		    {"b@example.org", "rfc822;b@example.org", cases[c].notify},
		};
		const bool dl[] = {false, true};
		size_t off = cases[c].with_remote ? 0 : 1;
		char id[17], dsn[17], *err = NULL;
		enqueue_dl(f->q, cases[c].sender, r + off, dl + off, 2 - off, id);
		struct queue_msg *m = get(f->q, id, T0);
		const struct queue_rcpt *lr = &m->rcpts[1 - off];
		assert_int_equal(lr->state, QUEUE_RCPT_DELIVERED);
		assert_int_equal(lr->success, QUEUE_OUT_DELIVERED);
		assert_int_equal(lr->attempts, 1);
		assert_int_equal(lr->last_attempt, T0);
		assert_int_equal(lr->err_code, 250);
		assert_string_equal(lr->err_enhanced, "2.0.0");
		assert_false(lr->reported);
		assert_int_equal(lr->action,
				 cases[c].dsn ? QUEUE_ACTION_DELIVERED : QUEUE_ACTION_NONE);
		if (cases[c].with_remote) {
			assert_int_equal(m->rcpts[0].state, QUEUE_RCPT_QUEUED);
			assert_int_equal(m->rcpts[0].attempts, 0);
			assert_int_equal(m->rcpts[0].err_code, 0);
			assert_null(m->rcpts[0].err_text);
		}
		queue_msg_free(&m);
		/* only the remote one is ever handed out */
		assert_int_equal(due_count(f->q, T0), cases[c].with_remote ? 1 : 0);
		int rc = queue_notify(f->q, id, T0, dsn, &err);
		assert_int_equal(rc, cases[c].with_remote ? 0 : 1);
		assert_int_equal(queue_id_valid(dsn), cases[c].dsn);
		struct buf b = BUF_INIT(0);
		assert_int_equal(dsns(f->q, id, &b), cases[c].dsn ? 1 : 0);
		if (cases[c].dsn) {
			assert_int_equal(count_str(&b, "Action: delivered\n"), 1);
			assert_int_equal(count_str(&b, "Final-Recipient: rfc822; b@example.org\n"),
					 1);
			assert_int_equal(count_str(&b, "Status: 2.0.0\n"), 1);
			assert_int_equal(count_str(&b, "u@x.example"), 0);
		}
		buf_deinit(&b);
		/* said once */
		assert_int_equal(queue_notify(f->q, id, T0 + 1, dsn, &err), 0);
		assert_string_equal(dsn, "");
		if (cases[c].with_remote) {
			/* the remote recipient's own outcome finishes the message */
			record1(f->q, id, 0, QUEUE_OUT_PASSED, 250, NULL, "250 ok", T0 + 2);
			assert_int_equal(queue_notify(f->q, id, T0 + 2, dsn, &err), 1);
			assert_string_equal(dsn, "");
		}
		assert_null(get(f->q, id, T0 + 2));
		/* start the next case with an empty queue */
		struct queue_msg **v;
		size_t n;
		assert_int_equal(queue_list(f->q, T0, &v, &n, &err), 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(queue_delete(f->q, v[i]->id, &err), 1);
		queue_msgs_free(v, n);
		assert_int_equal(count_files(f->dir, "new"), 0);
	}
}

/* Crashes around an enqueue with a locally delivered recipient: either
 * nothing is queued (the client got no 250 and sends again), or the local
 * recipient is final and gets exactly one DSN after the restart, and is
 * never handed out for an SMTP delivery. */
static void test_crash_enqueue_delivered(void **state)
{
	struct fx *f = *state;
	struct queue_rcpt_spec r[] = {
	    {"u@x.example", NULL, 0},
	    {"b@example.org", NULL, QUEUE_NOTIFY_SUCCESS},
	};
	const bool dl[] = {false, true};
	struct queue_envelope env = {
	    .sender = "s@example.org", .arrival = T0, .rcpts = r, .n_rcpts = 2, .delivered = dl};
	static const enum queue_crash enq[] = {QUEUE_CRASH_ENQ_TMP, QUEUE_CRASH_ENQ_RENAMED,
					       QUEUE_CRASH_ENQ_FILE, QUEUE_CRASH_ENQ_TXN};
	char id[17], dsn[17], *err = NULL;
	for (size_t i = 0; i < N_ELEMENTS(enq); i++) {
		queue_test_crash_at(enq[i]);
		assert_int_equal(queue_enqueue(f->q, &env, msg_text, strlen(msg_text), id, &err),
				 -1);
		free(err);
		err = NULL;
		queue_close(&f->q);
		f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
		assert_int_equal(list_count(f->q), 0);
		assert_int_equal(queue_notify_all(f->q, T0, &err), 0);
		assert_int_equal(count_files(f->dir, "new"), 0);
	}
	/* committed, then the process died before queue_notify() */
	enqueue_dl(f->q, "s@example.org", r, dl, 2, id);
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	/* the DSN file durable, its transaction not committed */
	queue_test_crash_at(QUEUE_CRASH_NOTIFY_FILE);
	assert_int_equal(queue_notify_all(f->q, T0, &err), -1);
	free(err);
	err = NULL;
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_int_equal(dsns(f->q, id, NULL), 0); /* the orphan went */
	assert_int_equal(due_count(f->q, T0), 1); /* u only */
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER); /* claims cleared */
	assert_int_equal(queue_notify_all(f->q, T0, &err), 1);
	assert_int_equal(queue_notify_all(f->q, T0, &err), 0);
	struct buf b = BUF_INIT(0);
	assert_int_equal(dsns(f->q, id, &b), 1);
	assert_int_equal(count_str(&b, "Action: delivered\n"), 1);
	buf_deinit(&b);
	/* u delivered: its last notify removes the message; a crash after the
	 * commit leaves only the file, which recovery removes */
	struct queue_due d;
	assert_int_equal(queue_due(f->q, T0, 1000, &d, &err), 0);
	queue_due_free(&d);
	record1(f->q, id, 0, QUEUE_OUT_PASSED, 250, NULL, "250 ok", T0 + 1);
	queue_test_crash_at(QUEUE_CRASH_NOTIFY_TXN);
	assert_int_equal(queue_notify(f->q, id, T0 + 1, dsn, &err), -1);
	free(err);
	err = NULL;
	queue_close(&f->q);
	f->q = open_q(f->dir, QUEUE_OPEN_SERVER);
	assert_null(get(f->q, id, T0 + 1));
	assert_int_equal(list_count(f->q), 1); /* the one DSN */
	assert_int_equal(count_files(f->dir, "new"), 1);
}

/* The server's queue worker registers group-committed files through its
 * own QUEUE_OPEN_WRITER handle, delivered flags included. */
static void test_enqueue_file_writer_handle(void **state)
{
	struct fx *f = *state;
	struct queue *w = open_q(f->dir, QUEUE_OPEN_WRITER);
	struct delivery *d = delivery_new("mx.example.org");
	char *err = NULL;
	assert_int_equal(delivery_add_target(d, queue_spool_root(w), NULL, &err), 0);
	assert_int_equal(delivery_write(d, msg_text, strlen(msg_text)), 0);
	struct file_ctx c = {w, -2, ""};
	struct committer *cm = committer_new(NULL, NULL);
	committer_submit(cm, d, file_done_dl, &c);
	committer_free(&cm);
	assert_int_equal(c.rc, 0);
	char dsn[17];
	assert_int_equal(queue_notify(w, c.id, T0, dsn, &err), 0);
	assert_true(queue_id_valid(dsn));
	queue_close(&w);
	/* seen by the server handle: u due, b final and reported */
	struct queue_msg *m = get(f->q, c.id, T0);
	assert_non_null(m);
	assert_int_equal(m->n_rcpts, 2);
	assert_int_equal(m->rcpts[0].state, QUEUE_RCPT_QUEUED);
	assert_int_equal(m->rcpts[1].state, QUEUE_RCPT_DELIVERED);
	assert_true(m->rcpts[1].reported);
	queue_msg_free(&m);
	assert_int_equal(due_count(f->q, T0), 2); /* u and the DSN to s@ */
}

/* Two handles on two threads: the server delivering, the CLI listing,
 * flushing and deleting. No errors, no recipient handed out twice, and
 * every message ends delivered-and-removed or deleted. */
#define CONC_MSGS 40

struct conc {
	const char *dir;
	struct queue *q;
	char ids[CONC_MSGS][17];
	int handed[CONC_MSGS];
	int errors;
	volatile int done;
};

static int find_id(struct conc *c, const char *id)
{
	for (int i = 0; i < CONC_MSGS; i++)
		if (strcmp(c->ids[i], id) == 0)
			return i;
	return -1;
}

static void *conc_cli(void *arg)
{
	struct conc *c = arg;
	char *err = NULL;
	struct queue *cli = queue_open(c->dir, 0, &err);
	if (cli == NULL) {
		c->errors++;
		return NULL;
	}
	int round = 0;
	while (!__atomic_load_n(&c->done, __ATOMIC_SEQ_CST)) {
		struct queue_msg **v;
		size_t n;
		if (queue_list(cli, T0, &v, &n, &err) < 0)
			c->errors++;
		else
			queue_msgs_free(v, n);
		if (queue_flush(cli, &err) < 0)
			c->errors++;
		/* delete every 5th message once */
		int k = (round++ * 5) % CONC_MSGS;
		if (queue_delete(cli, c->ids[k], &err) < 0)
			c->errors++;
		/* a second scheduler handle competing for work */
		struct queue_due d;
		if (queue_due(cli, T0 + 1000, 3, &d, &err) < 0) {
			c->errors++;
		} else {
			for (size_t i = 0; i < d.n; i++)
				for (size_t j = 0; j < d.v[i].n_msgs; j++) {
					struct queue_msg *m = d.v[i].msgs[j];
					int x = find_id(c, m->id);
					if (x >= 0)
						__atomic_fetch_add(&c->handed[x], (int)m->n_rcpts,
								   __ATOMIC_SEQ_CST);
					for (size_t r = 0; r < m->n_rcpts; r++) {
						struct queue_result res = {
						    m->rcpts[r].idx,
						    QUEUE_OUT_PASSED,
						    {250, NULL, "250", NULL}};
						if (queue_record(cli, m->id, &res, 1, T0 + 1000,
								 &err) < 0)
							c->errors++;
					}
				}
			queue_due_free(&d);
		}
	}
	free(err);
	queue_close(&cli);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	struct conc c;
	memset(&c, 0, sizeof c);
	c.dir = f->dir;
	c.q = f->q;
	struct queue_rcpt_spec r[] = {{"u@x.example", NULL, 0}, {"v@y.example", NULL, 0}};
	for (int i = 0; i < CONC_MSGS; i++)
		enqueue(f->q, "s@example.org", r, 2, T0, c.ids[i]);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, conc_cli, &c), 0);
	char *err = NULL;
	int idle = 0;
	while (idle < 3) {
		struct queue_due d;
		assert_int_equal(queue_due(f->q, T0 + 1000, 5, &d, &err), 0);
		idle = d.n == 0 ? idle + 1 : 0;
		for (size_t i = 0; i < d.n; i++)
			for (size_t j = 0; j < d.v[i].n_msgs; j++) {
				struct queue_msg *m = d.v[i].msgs[j];
				int x = find_id(&c, m->id);
				assert_true(x >= 0);
				__atomic_fetch_add(&c.handed[x], (int)m->n_rcpts, __ATOMIC_SEQ_CST);
				struct queue_result res[2];
				for (size_t k = 0; k < m->n_rcpts; k++)
					res[k] = (struct queue_result){m->rcpts[k].idx,
								       QUEUE_OUT_PASSED,
								       {250, NULL, "250", NULL}};
				assert_int_equal(
				    queue_record(f->q, m->id, res, m->n_rcpts, T0 + 1000, &err), 0);
				assert_int_not_equal(
				    queue_notify(f->q, m->id, T0 + 1000, NULL, &err), -1);
			}
		queue_due_free(&d);
		if (idle > 0)
			usleep(2000);
	}
	__atomic_store_n(&c.done, 1, __ATOMIC_SEQ_CST);
	pthread_join(th, NULL);
	assert_int_equal(c.errors, 0);
	assert_true(queue_notify_all(f->q, T0 + 1000, &err) >= 0);
	for (int i = 0; i < CONC_MSGS; i++)
		assert_true(c.handed[i] <= 2); /* never a recipient twice */
	assert_int_equal(list_count(f->q), 0);
	assert_int_equal(count_files(f->dir, "new"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test_setup_teardown(test_enqueue_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_envelope_limits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_due_grouping, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_backoff_lifetime, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_notify_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_sender, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delay_warning, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flush_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_server_lock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_enqueue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_delivery, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_notify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lost_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enqueue_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enqueue_delivered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_enqueue_delivered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enqueue_file_writer_handle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
