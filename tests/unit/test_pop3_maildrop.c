/* SPDX-License-Identifier: MIT */
/* The POP3 engine on a real Maildir through store/maildrop: the seed's
 * transcript (USER, PASS, STAT, LIST, RETR, DELE, QUIT) leaves the maildrop
 * empty for the next session; a second session meanwhile gets [IN-USE]; a
 * message moved new/ -> cur/ by another program during the session is still
 * retrieved and deleted; a dropped session deletes nothing. The callbacks
 * here are a synchronous sketch of what daemon/role_pop3.c does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/pop3/pop3_server.h"
#include "store/maildrop.h"

struct sess {
	const char *root;
	struct maildrop *md;
	struct pop3_server *s;
	int fd;
	struct buf out;
};

static enum pop3_verdict a_login(void *ctx, struct pop3_server *s, const char *mech,
				 const char *user, const char *password)
{
	(void)ctx;
	(void)s;
	(void)mech;
	return strcmp(user, "mrose") == 0 && strcmp(password, "secret") == 0 ? POP3_OK
									      : POP3_REJECTED;
}

static enum pop3_verdict a_open(void *ctx, struct pop3_server *s, const char *user)
{
	struct sess *x = ctx;
	(void)user;
	char *err = NULL;
	int r = maildrop_open(x->root, &x->md, &err);
	if (r == 1) {
		pop3_server_reply(s, "IN-USE", "Maildrop is locked by another session");
		return POP3_REJECTED;
	}
	if (r < 0) {
		free(err);
		pop3_server_reply(s, "SYS/TEMP", "Unable to open the maildrop");
		return POP3_REJECTED;
	}
	return POP3_OK;
}

static unsigned a_count(void *ctx, struct pop3_server *s)
{
	(void)s;
	return maildrop_count(((struct sess *)ctx)->md);
}

static void a_info(void *ctx, struct pop3_server *s, unsigned idx, struct pop3_msg_info *r)
{
	struct sess *x = ctx;
	(void)s;
	r->size = maildrop_wire_size(x->md, idx);
	r->uidl = maildrop_uidl(x->md, idx);
}

static enum pop3_verdict a_msg_open(void *ctx, struct pop3_server *s, unsigned idx)
{
	struct sess *x = ctx;
	char *err = NULL;
	if (maildrop_msg_open(x->md, idx, &x->fd, &err) < 0) {
		free(err);
		pop3_server_reply(s, "SYS/TEMP", "Message is no longer available");
		return POP3_REJECTED;
	}
	return POP3_OK;
}

static void a_read(void *ctx, struct pop3_server *s)
{
	struct sess *x = ctx;
	uint8_t b[4096];
	ssize_t r = read(x->fd, b, sizeof b);
	if (r < 0)
		pop3_server_body_fail(s);
	else
		pop3_server_body_data(s, b, (size_t)r, r == 0);
}

static void a_msg_close(void *ctx, struct pop3_server *s)
{
	struct sess *x = ctx;
	(void)s;
	close(x->fd);
	x->fd = -1;
}

static enum pop3_verdict a_commit(void *ctx, struct pop3_server *s, const unsigned *idx,
				  size_t n)
{
	struct sess *x = ctx;
	(void)s;
	char *err = NULL;
	if (maildrop_commit(x->md, idx, n, NULL, &err) < 0) {
		free(err);
		return POP3_REJECTED;
	}
	return POP3_OK;
}

static void a_md_close(void *ctx, struct pop3_server *s)
{
	(void)s;
	maildrop_close(&((struct sess *)ctx)->md);
}

static const struct pop3_server_ops ops = {
	.login = a_login,
	.maildrop_open = a_open,
	.msg_count = a_count,
	.msg_info = a_info,
	.msg_open = a_msg_open,
	.msg_read = a_read,
	.msg_close = a_msg_close,
	.commit = a_commit,
	.maildrop_close = a_md_close,
};

static void sess_start(struct sess *x, const char *root)
{
	memset(x, 0, sizeof *x);
	x->root = root;
	x->fd = -1;
	buf_init(&x->out, 0);
	struct pop3_server_settings set = { 0 };
	set.hostname = "dbc.mtview.ca.us";
	set.plaintext_auth = true;
	x->s = pop3_server_new(&set, &ops, x);
	pop3_server_start(x->s);
}

/* Feed a line and collect everything the engine answers. */
static void say(struct sess *x, const char *line)
{
	const uint8_t *p = (const uint8_t *)line;
	size_t n = strlen(line);
	for (;;) {
		struct buf *o = pop3_server_output(x->s);
		buf_xappend(&x->out, o->data, o->len);
		buf_clear(o);
		enum proto_want w = pop3_server_want(x->s);
		if (w == PROTO_WANT_CLOSE)
			return;
		if (w == PROTO_WANT_PENDING)
			continue; /* a response being produced */
		if (n == 0)
			return;
		size_t used = pop3_server_feed(x->s, p, n);
		p += used;
		n -= used;
	}
}

static char *sess_end(struct sess *x)
{
	pop3_server_free(&x->s);
	assert_null(x->md);
	assert_int_equal(x->fd, -1);
	char *r = xstrndup((const char *)x->out.data, x->out.len);
	buf_deinit(&x->out);
	return r;
}

static void put(const char *root, const char *rel, const char *content)
{
	char *p = xasprintf("%s/%s", root, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write_full(fd, content, strlen(content)), 0);
	close(fd);
	free(p);
}

/* A stored message (LF endings) of exactly wire octets in CRLF form. */
static char *sized(const char *prefix, size_t wire)
{
	size_t pw = strlen(prefix);
	for (const char *c = prefix; *c; c++)
		pw += *c == '\n';
	size_t k = wire - pw - 2;
	char *m = xmalloc(strlen(prefix) + k + 2);
	strcpy(m, prefix);
	memset(m + strlen(prefix), 'x', k);
	strcpy(m + strlen(prefix) + k, "\n");
	return m;
}

static void test_seed_over_maildir(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/tern-pop3md-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	char *root = xasprintf("%s/mail/dbc.mtview.ca.us/mrose", tmpl);
	/* the first session creates the Maildir; it is empty */
	struct sess x;
	sess_start(&x, root);
	say(&x, "USER mrose\r\nPASS secret\r\nQUIT\r\n");
	char *got = sess_end(&x);
	assert_non_null(strstr(got, "maildrop has 0 messages (0 octets)"));
	free(got);
	/* two deliveries, as store/maildir.c names them; one with a dot line */
	char *m1 = sized("From: a@b\nSubject: one\n\n.dot line\n", 120);
	char *m2 = sized("From: c@d\nSubject: two\n\n", 200);
	put(root, "new/1700000001.M1P9Q1R1.dbc,S=115,W=120", m1);
	put(root, "new/1700000002.M1P9Q2R2.dbc,S=196,W=200", m2);

	sess_start(&x, root);
	say(&x, "USER mrose\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\n");
	/* meanwhile: a second POP3 session is refused, and an IMAP session
	 * marks message 2 seen (new/ -> cur/) */
	struct sess y;
	sess_start(&y, root);
	say(&y, "USER mrose\r\nPASS secret\r\nQUIT\r\n");
	char *goty = sess_end(&y);
	assert_non_null(strstr(goty, "-ERR [IN-USE] Maildrop is locked by another session\r\n"));
	free(goty);
	char *a = xasprintf("%s/new/1700000002.M1P9Q2R2.dbc,S=196,W=200", root);
	char *b = xasprintf("%s/cur/1700000002.M1P9Q2R2.dbc,S=196,W=200:2,S", root);
	assert_int_equal(rename(a, b), 0);
	say(&x, "RETR 2\r\nDELE 2\r\nQUIT\r\n");
	got = sess_end(&x);
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want, "+OK Tern POP3 server ready\r\n+OK Send your password\r\n"
			   "+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			   "+OK 2 320\r\n+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"
			   "+OK 120 octets\r\nFrom: a@b\r\nSubject: one\r\n\r\n..dot line\r\n");
	for (size_t i = strlen("From: a@b\nSubject: one\n\n.dot line\n"); i + 1 < strlen(m1);
	     i++)
		buf_xappend(&want, "x", 1);
	buf_xprintf(&want, "\r\n.\r\n+OK Message 1 deleted\r\n"
			   "+OK 200 octets\r\nFrom: c@d\r\nSubject: two\r\n\r\n");
	for (size_t i = strlen("From: c@d\nSubject: two\n\n"); i + 1 < strlen(m2); i++)
		buf_xappend(&want, "x", 1);
	buf_xprintf(&want, "\r\n.\r\n+OK Message 2 deleted\r\n"
			   "+OK dbc.mtview.ca.us POP3 server signing off (maildrop empty)\r\n");
	assert_string_equal(got, buf_cstr(&want));
	buf_deinit(&want);
	free(got);
	assert_int_equal(access(b, F_OK), -1);

	/* a new session finds the maildrop empty */
	sess_start(&x, root);
	say(&x, "USER mrose\r\nPASS secret\r\nSTAT\r\n");
	got = sess_end(&x);
	assert_non_null(strstr(got, "+OK 0 0\r\n"));
	free(got);

	/* a dropped session deletes nothing */
	put(root, "new/1700000003.M1P9Q3R3.dbc,S=2,W=3", "a\n");
	sess_start(&x, root);
	say(&x, "USER mrose\r\nPASS secret\r\nDELE 1\r\n");
	got = sess_end(&x);
	free(got);
	char *c = xasprintf("%s/new/1700000003.M1P9Q3R3.dbc,S=2,W=3", root);
	assert_int_equal(access(c, F_OK), 0);

	char *cmd = xasprintf("rm -rf '%s'", tmpl);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(a);
	free(b);
	free(c);
	free(m1);
	free(m2);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_over_maildir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
