/* SPDX-License-Identifier: MIT */
/* The POP3 engine against a fake application with an in-memory maildrop:
 * the seed's transcript, every command and state rule, APOP (RFC 1939
 * example digest), AUTH PLAIN/LOGIN/SCRAM-SHA-256 through the real sasl
 * module, RETR/TOP wire conversion, pipelining, STLS injection, every -ERR
 * path, and the PENDING paths. Transcripts are replayed whole, byte by byte
 * and in random splits (and with every verdict PENDING) and must give
 * identical output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "base/buf.h"
#include "base/util.h"
#include "proto/pop3/pop3_server.h"

/* ---- the fake application ---- */

#define MAXMSG 600

struct fake {
	/* maildrop */
	char *content[MAXMSG];
	size_t len[MAXMSG];
	char uidl[MAXMSG][80];
	unsigned n;
	bool in_use;        /* maildrop_open -> [IN-USE] */
	bool open_fails;    /* maildrop_open -> [SYS/TEMP] */
	bool commit_fails;
	bool vanished[MAXMSG];
	bool read_fails;    /* body_fail after the first chunk */
	size_t chunk;       /* body bytes per msg_read */
	/* behaviour */
	bool async;         /* every verdict PENDING, resolved by the driver */
	bool body_async;    /* msg_read answers later */
	enum pop3_verdict pend_v;
	const char *pend_code, *pend_text;
	bool has_pend;
	bool read_pending;
	bool in_read;
	/* current message */
	int cur;
	size_t off;
	/* observations */
	unsigned md_opens, md_closes, msg_opens, msg_closes, commits, logins, prepares;
	char prep_user[64];
	unsigned committed[MAXMSG];
	size_t ncommitted;
	char last_mech[32];
	char last_user[128];
	size_t max_out; /* largest output buffer seen */
	struct pop3_server *s;
};

static size_t wire_size(const char *p, size_t n)
{
	size_t w = n;
	for (size_t i = 0; i < n; i++)
		w += p[i] == '\n';
	return w;
}

static void add_msg(struct fake *f, const char *content, size_t len)
{
	ASSERT(f->n < MAXMSG);
	f->content[f->n] = xmalloc(len + 1);
	memcpy(f->content[f->n], content, len);
	f->len[f->n] = len;
	snprintf(f->uidl[f->n], sizeof f->uidl[0], "1700000000.M%uP1.host", f->n);
	f->n++;
}

static void add_str(struct fake *f, const char *content)
{
	add_msg(f, content, strlen(content));
}

/* A message of exactly wire wire octets. */
static void add_sized(struct fake *f, const char *prefix, size_t wire)
{
	size_t pw = wire_size(prefix, strlen(prefix));
	ASSERT(wire >= pw + 2);
	size_t k = wire - pw - 2;
	char *m = xmalloc(strlen(prefix) + k + 2);
	strcpy(m, prefix);
	memset(m + strlen(prefix), 'x', k);
	m[strlen(prefix) + k] = '\n';
	m[strlen(prefix) + k + 1] = '\0';
	add_str(f, m);
	free(m);
}

static void fake_free(struct fake *f)
{
	for (unsigned i = 0; i < f->n; i++)
		free(f->content[i]);
}

static enum pop3_verdict verdict(struct fake *f, enum pop3_verdict v, const char *code,
				 const char *text)
{
	if (f->async) {
		f->has_pend = true;
		f->pend_v = v;
		f->pend_code = code;
		f->pend_text = text;
		return POP3_PENDING;
	}
	if (v == POP3_REJECTED && text)
		pop3_server_reply(f->s, code, "%s", text);
	return v;
}

static enum pop3_verdict f_login(void *ctx, struct pop3_server *s, const char *mech,
				 const char *user, const char *password)
{
	struct fake *f = ctx;
	(void)s;
	f->logins++;
	snprintf(f->last_mech, sizeof f->last_mech, "%s", mech);
	snprintf(f->last_user, sizeof f->last_user, "%s", user);
	bool ok = (strcmp(user, "mrose") == 0 && strcmp(password, "secret") == 0) ||
		  (strcmp(user, "user") == 0 && strcmp(password, "pencil") == 0) ||
		  (strcmp(user, "sp") == 0 && strcmp(password, "a b ") == 0);
	if (strcmp(user, "broken") == 0)
		return verdict(f, POP3_REJECTED, "SYS/TEMP", "Account lookup failed");
	return verdict(f, ok ? POP3_OK : POP3_REJECTED, NULL, NULL);
}

static void md5_hex(const char *a, const char *b, char out[33])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	uint8_t d[16];
	unsigned l = 0;
	assert_int_equal(EVP_DigestInit_ex(c, EVP_md5(), NULL), 1);
	EVP_DigestUpdate(c, a, strlen(a));
	EVP_DigestUpdate(c, b, strlen(b));
	EVP_DigestFinal_ex(c, d, &l);
	EVP_MD_CTX_free(c);
	hex_encode(d, 16, out);
}

static enum pop3_verdict f_apop(void *ctx, struct pop3_server *s, const char *user,
				const char *timestamp, const char *digest)
{
	struct fake *f = ctx;
	(void)s;
	snprintf(f->last_mech, sizeof f->last_mech, "APOP");
	char want[33];
	md5_hex(timestamp, "tanstaaf", want);
	bool ok = strcmp(user, "mrose") == 0 && strcmp(digest, want) == 0;
	return verdict(f, ok ? POP3_OK : POP3_REJECTED, NULL, NULL);
}

static const char rfc_salt_b64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";

static bool f_scram(void *ctx, const char *user, struct scram_creds *c)
{
	(void)ctx;
	if (strcmp(user, "user") != 0)
		return false;
	uint8_t *salt = NULL;
	size_t n = 0;
	assert_int_equal(base64_decode(rfc_salt_b64, strlen(rfc_salt_b64), &salt, &n), 0);
	memcpy(c->salt, salt, n);
	c->salt_len = n;
	c->iterations = 4096;
	scram_derive("pencil", salt, n, 4096, c->stored_key, c->server_key);
	free(salt);
	return true;
}

static enum pop3_verdict f_scram_prepare(void *ctx, struct pop3_server *s, const char *user)
{
	struct fake *f = ctx;
	(void)s;
	f->prepares++;
	snprintf(f->prep_user, sizeof f->prep_user, "%s", user);
	if (strcmp(user, "broken") == 0)
		return verdict(f, POP3_REJECTED, "SYS/TEMP", "Account lookup failed");
	return verdict(f, strcmp(user, "user") == 0 ? POP3_OK : POP3_REJECTED, NULL, NULL);
}

static enum pop3_verdict f_md_open(void *ctx, struct pop3_server *s, const char *user)
{
	struct fake *f = ctx;
	(void)s;
	snprintf(f->last_user, sizeof f->last_user, "%s", user);
	if (f->in_use)
		return verdict(f, POP3_REJECTED, "IN-USE", "Maildrop already locked");
	if (f->open_fails)
		return verdict(f, POP3_REJECTED, NULL, NULL);
	f->md_opens++;
	return verdict(f, POP3_OK, NULL, NULL);
}

static unsigned f_count(void *ctx, struct pop3_server *s)
{
	(void)s;
	return ((struct fake *)ctx)->n;
}

static void f_info(void *ctx, struct pop3_server *s, unsigned idx, struct pop3_msg_info *r)
{
	struct fake *f = ctx;
	(void)s;
	assert_true(idx < f->n);
	r->size = wire_size(f->content[idx], f->len[idx]);
	r->uidl = f->uidl[idx];
}

static enum pop3_verdict f_msg_open(void *ctx, struct pop3_server *s, unsigned idx)
{
	struct fake *f = ctx;
	(void)s;
	assert_int_equal(f->cur, -1);
	if (f->vanished[idx])
		return verdict(f, POP3_REJECTED, "SYS/TEMP", "Message vanished");
	f->msg_opens++;
	f->cur = (int)idx;
	f->off = 0;
	return verdict(f, POP3_OK, NULL, NULL);
}

static void supply(struct fake *f)
{
	ASSERT(f->cur >= 0);
	if (f->read_fails && f->off > 0) {
		pop3_server_body_fail(f->s);
		return;
	}
	size_t left = f->len[f->cur] - f->off;
	size_t n = left < f->chunk ? left : f->chunk;
	f->off += n;
	pop3_server_body_data(f->s, f->content[f->cur] + f->off - n, n, f->off == f->len[f->cur]);
}

static void f_msg_read(void *ctx, struct pop3_server *s)
{
	struct fake *f = ctx;
	(void)s;
	assert_false(f->read_pending);
	if (f->body_async) {
		f->read_pending = true;
	} else {
		f->in_read = true;
		supply(f);
		f->in_read = false;
	}
}

static void f_msg_close(void *ctx, struct pop3_server *s)
{
	struct fake *f = ctx;
	(void)s;
	assert_true(f->cur >= 0);
	assert_false(f->in_read); /* never re-entered from inside msg_read */
	f->cur = -1;
	f->read_pending = false;
	f->msg_closes++;
}

static enum pop3_verdict f_commit(void *ctx, struct pop3_server *s, const unsigned *idx,
				  size_t n)
{
	struct fake *f = ctx;
	(void)s;
	f->commits++;
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++) {
		if (i)
			assert_true(idx[i] > idx[i - 1]);
		f->committed[f->ncommitted++] = idx[i];
	}
	if (f->commit_fails)
		return verdict(f, POP3_REJECTED, NULL, NULL);
	return verdict(f, POP3_OK, NULL, NULL);
}

static void f_md_close(void *ctx, struct pop3_server *s)
{
	struct fake *f = ctx;
	(void)s;
	f->md_closes++;
	assert_true(f->md_closes <= f->md_opens);
}

static const struct pop3_server_ops fake_ops = {
	.login = f_login,
	.apop = f_apop,
	.scram_creds = f_scram,
	.scram_prepare = f_scram_prepare,
	.maildrop_open = f_md_open,
	.msg_count = f_count,
	.msg_info = f_info,
	.msg_open = f_msg_open,
	.msg_read = f_msg_read,
	.msg_close = f_msg_close,
	.commit = f_commit,
	.maildrop_close = f_md_close,
	.log_refusal = NULL,
};

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof *f);
	f->cur = -1;
	f->chunk = 7;
}

static struct pop3_server_settings default_set(void)
{
	struct pop3_server_settings set = { 0 };
	set.hostname = "dbc.mtview.ca.us";
	set.greeting = "POP3 server ready";
	set.plaintext_auth = true;
	set.apop = true;
	set.apop_timestamp = "<1896.697170952@dbc.mtview.ca.us>";
	return set;
}

/* ---- the driver: a fake connection ---- */

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM, SPLIT_ASYNC };

struct drv {
	struct fake *f;
	struct pop3_server *s;
	struct buf got;
	struct buf in;
	bool closed;
	bool tls_started;
};

static void drain(struct drv *d)
{
	struct buf *o = pop3_server_output(d->s);
	if (o->len > d->f->max_out)
		d->f->max_out = o->len;
	buf_xappend(&d->got, o->data, o->len);
	buf_clear(o);
}

static void resolve(struct drv *d)
{
	struct fake *f = d->f;
	if (f->has_pend) {
		f->has_pend = false;
		if (f->pend_v == POP3_REJECTED && f->pend_text)
			pop3_server_reply(d->s, f->pend_code, "%s", f->pend_text);
		pop3_server_resume(d->s, f->pend_v);
	} else if (f->read_pending) {
		f->read_pending = false;
		supply(f);
	}
}

/* Run until the engine needs more input than we have (or closes). */
static void pump(struct drv *d)
{
	for (int guard = 0; guard < 10000000; guard++) {
		drain(d);
		enum proto_want w = pop3_server_want(d->s);
		if (w == PROTO_WANT_CLOSE) {
			d->closed = true;
			buf_clear(&d->in);
			return;
		}
		if (w == PROTO_WANT_STARTTLS) {
			buf_clear(&d->in); /* the conn drops unread plaintext */
			pop3_server_tls_started(d->s);
			d->tls_started = true;
			continue;
		}
		if (w == PROTO_WANT_PENDING) {
			if (d->f->has_pend || d->f->read_pending) {
				resolve(d);
				continue;
			}
			size_t before = d->got.len;
			drain(d);
			if (d->got.len == before && pop3_server_want(d->s) == PROTO_WANT_PENDING)
				fail_msg("engine pending with nothing to wait for");
			continue;
		}
		if (d->in.len == 0)
			return;
		size_t used = pop3_server_feed(d->s, d->in.data, d->in.len);
		assert_true(used <= d->in.len);
		buf_consume(&d->in, used);
		if (used == 0 && pop3_server_want(d->s) == PROTO_WANT_READ)
			return;
	}
	fail_msg("pump did not settle");
}

static void drv_start(struct drv *d, struct fake *f, const struct pop3_server_settings *set)
{
	memset(d, 0, sizeof *d);
	d->f = f;
	d->s = pop3_server_new(set, &fake_ops, f);
	f->s = d->s;
	buf_init(&d->got, 0);
	buf_init(&d->in, 0);
	pop3_server_start(d->s);
	drain(d);
}

static void drv_feed(struct drv *d, const char *p, size_t n)
{
	if (d->closed)
		return;
	buf_xappend(&d->in, p, n);
	pump(d);
}

static void drv_feed_split(struct drv *d, const char *p, size_t n, enum split mode,
			   unsigned *seed)
{
	switch (mode) {
	case SPLIT_WHOLE:
	case SPLIT_ASYNC:
		drv_feed(d, p, n);
		break;
	case SPLIT_BYTES:
		for (size_t i = 0; i < n; i++)
			drv_feed(d, p + i, 1);
		break;
	case SPLIT_RANDOM:
		for (size_t i = 0; i < n;) {
			size_t k = 1 + (size_t)rand_r(seed) % 13;
			if (k > n - i)
				k = n - i;
			drv_feed(d, p + i, k);
			i += k;
		}
		break;
	}
}

static char *drv_end(struct drv *d)
{
	drain(d);
	pop3_server_free(&d->s);
	d->f->s = NULL;
	buf_deinit(&d->in);
	char *r = xstrndup((const char *)d->got.data, d->got.len);
	buf_deinit(&d->got);
	return r;
}

/* Run input through a fresh engine; returns the whole output (malloc'd). */
static char *run(struct fake *f, const struct pop3_server_settings *set, const char *input,
		 enum split mode)
{
	struct drv d;
	unsigned seed = 7;
	f->async = mode == SPLIT_ASYNC;
	f->body_async = mode == SPLIT_ASYNC;
	drv_start(&d, f, set);
	drv_feed_split(&d, input, strlen(input), mode, &seed);
	return drv_end(&d);
}

/* Expected wire form of stored content (an independent per-byte version). */
static void wire_of(struct buf *b, const char *p, size_t n)
{
	bool bol = true;
	for (size_t i = 0; i < n; i++) {
		if (bol && p[i] == '.')
			buf_xappend(b, ".", 1);
		if (p[i] == '\n') {
			buf_xappend(b, "\r\n", 2);
			bol = true;
		} else {
			buf_xappend(b, p + i, 1);
			bol = false;
		}
	}
	if (!bol)
		buf_xappend(b, "\r\n", 2);
	buf_xappend(b, ".\r\n", 3);
}

typedef void setup_fn(struct fake *f, struct pop3_server_settings *set);

/* The same transcript in all four modes must produce want (and the same
 * side effects: check_fn on the fake). */
static void check_all_modes(setup_fn *setup, const char *input, const char *want,
			    void (*check_fn)(struct fake *f))
{
	for (int m = SPLIT_WHOLE; m <= SPLIT_ASYNC; m++) {
		struct fake f;
		fake_init(&f);
		struct pop3_server_settings set = default_set();
		if (setup)
			setup(&f, &set);
		char *got = run(&f, &set, input, (enum split)m);
		if (strcmp(got, want) != 0)
			fail_msg("mode %d:\n--- got\n%s\n--- want\n%s", m, got, want);
		assert_int_equal(f.md_opens, f.md_closes);
		assert_int_equal(f.msg_opens, f.msg_closes);
		if (check_fn)
			check_fn(&f);
		free(got);
		fake_free(&f);
	}
}

/* ---- the seed's transcript ---- */

static void setup_seed(struct fake *f, struct pop3_server_settings *set)
{
	(void)set;
	add_sized(f, "From: mrose@dbc.mtview.ca.us\nSubject: one\n\n.hidden dot line\n", 120);
	add_sized(f, "From: nsb@thumper.bellcore.com\nSubject: two\n\nbody\n", 200);
}

static void check_seed(struct fake *f)
{
	assert_int_equal(f->commits, 1);
	assert_int_equal(f->ncommitted, 2);
	assert_int_equal(f->committed[0], 0);
	assert_int_equal(f->committed[1], 1);
	assert_string_equal(f->last_mech, "USER");
}

static void test_seed_transcript(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_seed(&f, &set);
	assert_int_equal(wire_size(f.content[0], f.len[0]), 120);
	assert_int_equal(wire_size(f.content[1], f.len[1]), 200);
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want, "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			   "+OK Send your password\r\n"
			   "+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			   "+OK 2 320\r\n"
			   "+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"
			   "+OK 120 octets\r\n");
	wire_of(&want, f.content[0], f.len[0]);
	buf_xprintf(&want, "+OK Message 1 deleted\r\n+OK 200 octets\r\n");
	wire_of(&want, f.content[1], f.len[1]);
	buf_xprintf(&want, "+OK Message 2 deleted\r\n"
			   "+OK dbc.mtview.ca.us POP3 server signing off (maildrop empty)\r\n");
	fake_free(&f);
	check_all_modes(setup_seed,
			"USER mrose\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\n"
			"RETR 2\r\nDELE 2\r\nQUIT\r\n",
			buf_cstr(&want), check_seed);
	buf_deinit(&want);
}

/* ---- APOP ---- */

static void test_apop_rfc1939(void **state)
{
	(void)state;
	char d[33];
	md5_hex("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf", d);
	assert_string_equal(d, "c4c9334bac560ecc979e58001b3e22fb");
	check_all_modes(setup_seed,
			"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\nSTAT\r\nQUIT\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			"+OK 2 320\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off (2 messages left)\r\n",
			NULL);
	/* upper-case hex is the same digest; a wrong one is [AUTH] */
	check_all_modes(setup_seed,
			"APOP mrose C4C9334BAC560ECC979E58001B3E22FB\r\nQUIT\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off (2 messages left)\r\n",
			NULL);
	check_all_modes(setup_seed,
			"APOP mrose c4c9334bac560ecc979e58001b3e22fc\r\n"
			"APOP mrose c4c9334bac560ecc979e58001b3e22f\r\n"
			"APOP mrose c4c9334bac560ecc979e58001b3e22fx\r\nAPOP mrose\r\nQUIT\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"-ERR [AUTH] Authentication failed\r\n"
			"-ERR Invalid digest\r\n-ERR Invalid digest\r\n-ERR Missing argument\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off\r\n",
			NULL);
}

static void setup_no_apop(struct fake *f, struct pop3_server_settings *set)
{
	setup_seed(f, set);
	set->apop = false;
}

static void test_apop_off(void **state)
{
	(void)state;
	check_all_modes(setup_no_apop,
			"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
			"+OK POP3 server ready\r\n-ERR APOP not available\r\n", NULL);
	/* the generated timestamp is <pid.clock@hostname>, unique per session */
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	set.apop_timestamp = NULL;
	struct pop3_server *a = pop3_server_new(&set, &fake_ops, &f);
	struct pop3_server *b = pop3_server_new(&set, &fake_ops, &f);
	const char *ta = pop3_server_timestamp(a);
	assert_true(ta[0] == '<');
	assert_non_null(strstr(ta, "@dbc.mtview.ca.us>"));
	assert_non_null(strchr(ta, '.'));
	assert_string_not_equal(ta, pop3_server_timestamp(b));
	pop3_server_free(&a);
	pop3_server_free(&b);
	assert_null(a);
}

/* ---- USER/PASS and state rules ---- */

static void test_user_pass(void **state)
{
	(void)state;
	const char *g = "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n";
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want,
		    "%s"
		    "-ERR Send USER first\r\n"
		    "+OK Send your password\r\n"
		    "-ERR [AUTH] Authentication failed\r\n"
		    "-ERR Send USER first\r\n"
		    "+OK Send your password\r\n"
		    "-ERR Command not valid in this state\r\n"
		    "-ERR Send USER first\r\n"
		    "+OK Send your password\r\n"
		    "-ERR [SYS/TEMP] Account lookup failed\r\n"
		    "+OK Send your password\r\n"
		    "+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
		    "-ERR Command not valid in this state\r\n"
		    "-ERR Command not valid in this state\r\n"
		    "-ERR Command not valid in this state\r\n"
		    "-ERR Command not valid in this state\r\n"
		    "+OK dbc.mtview.ca.us POP3 server signing off (2 messages left)\r\n",
		    g);
	/* PASS takes the rest of the line, spaces included (RFC 1939 7) */
	check_all_modes(setup_seed,
			"PASS secret\r\nUSER mrose\r\nPASS wrong\r\nPASS secret\r\n"
			"USER mrose\r\nSTAT\r\nPASS secret\r\n"
			"USER broken\r\nPASS x\r\n"
			"user sp\r\npass a b \r\nUSER x\r\nPASS y\r\nAPOP a b\r\nAUTH PLAIN\r\n"
			"QUIT\r\n",
			buf_cstr(&want), NULL);
	buf_deinit(&want);
	/* TRANSACTION commands in AUTHORIZATION */
	check_all_modes(setup_seed, "STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nNOOP\r\nRSET\r\n"
				    "TOP 1 1\r\nUIDL\r\nXYZZY\r\nQUIT\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Command not valid in this state\r\n"
			"-ERR Unknown command\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off\r\n",
			NULL);
}

static void test_user_names(void **state)
{
	(void)state;
	check_all_modes(setup_seed, "USER \r\nUSER  \r\nUSER a\tb\r\nUSER mrose  \r\nPASS secret\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"-ERR Missing argument\r\n-ERR Invalid user name\r\n"
			"-ERR Invalid user name\r\n+OK Send your password\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n",
			NULL);
}

static void check_locked(struct fake *f)
{
	assert_int_equal(f->md_opens, 0);
	assert_string_equal(f->last_user, "mrose");
}

static void setup_in_use(struct fake *f, struct pop3_server_settings *set)
{
	setup_seed(f, set);
	f->in_use = true;
}

static void setup_open_fails(struct fake *f, struct pop3_server_settings *set)
{
	setup_seed(f, set);
	f->open_fails = true;
}

static void test_maildrop_open_fails(void **state)
{
	(void)state;
	/* RFC 2449 8.1.2: [IN-USE]; the session stays in AUTHORIZATION */
	check_all_modes(setup_in_use, "USER mrose\r\nPASS secret\r\nSTAT\r\nCAPA\r\nQUIT\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Send your password\r\n"
			"-ERR [IN-USE] Maildrop already locked\r\n"
			"-ERR Command not valid in this state\r\n"
			"+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n"
			"SASL PLAIN LOGIN SCRAM-SHA-256\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
			"PIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION Tern\r\n.\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off\r\n",
			check_locked);
	check_all_modes(setup_open_fails, "USER mrose\r\nPASS secret\r\nQUIT\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Send your password\r\n"
			"-ERR [SYS/TEMP] Unable to open the maildrop\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off\r\n",
			NULL);
}

/* ---- TRANSACTION commands ---- */

static void setup_three(struct fake *f, struct pop3_server_settings *set)
{
	(void)set;
	add_str(f, "Subject: a\n\nline1\n.dot\n..two\nline4\n");
	add_str(f, "Subject: b\nX: y\n\nno final newline");
	add_str(f, "");
	snprintf(f->uidl[2], sizeof f->uidl[2], "%s", "uid-three");
}

#define LOGIN "USER mrose\r\nPASS secret\r\n"
#define HELLO                                                                                      \
	"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n+OK Send your password\r\n"

static void test_transaction(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_three(&f, &set);
	unsigned long w0 = wire_size(f.content[0], f.len[0]);
	unsigned long w1 = wire_size(f.content[1], f.len[1]);
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want, HELLO "+OK Logged in: maildrop has 3 messages (%lu octets)\r\n",
		    w0 + w1);
	/* STAT, LIST n, UIDL, UIDL n */
	buf_xprintf(&want, "+OK 3 %lu\r\n+OK 2 %lu\r\n", w0 + w1, w1);
	buf_xprintf(&want, "+OK Unique-ID listing follows\r\n1 1700000000.M0P1.host\r\n"
			   "2 1700000000.M1P1.host\r\n3 uid-three\r\n.\r\n+OK 3 uid-three\r\n");
	/* RETR of every message */
	for (unsigned i = 0; i < 3; i++) {
		buf_xprintf(&want, "+OK %lu octets\r\n",
			    (unsigned long)wire_size(f.content[i], f.len[i]));
		wire_of(&want, f.content[i], f.len[i]);
	}
	/* DELE, then every command on the deleted message */
	buf_xprintf(&want, "+OK Message 1 deleted\r\n");
	for (int i = 0; i < 5; i++)
		buf_xprintf(&want, "-ERR Message 1 already deleted\r\n");
	buf_xprintf(&want, "+OK 2 %lu\r\n", w1);
	buf_xprintf(&want, "+OK 2 messages (%lu octets)\r\n2 %lu\r\n3 0\r\n.\r\n", w1, w1);
	buf_xprintf(&want, "+OK Unique-ID listing follows\r\n2 1700000000.M1P1.host\r\n"
			   "3 uid-three\r\n.\r\n");
	/* RSET, NOOP, bad numbers */
	buf_xprintf(&want, "+OK Maildrop has 3 messages (%lu octets)\r\n+OK\r\n", w0 + w1);
	buf_xprintf(&want, "-ERR No such message\r\n-ERR No such message\r\n"
			   "-ERR Invalid message number\r\n-ERR Invalid message number\r\n"
			   "-ERR Invalid message number\r\n-ERR Too many arguments\r\n"
			   "-ERR Missing argument\r\n-ERR Too many arguments\r\n"
			   "-ERR Invalid number of lines\r\n");
	/* QUIT after RSET: nothing is deleted */
	buf_xprintf(&want, "+OK dbc.mtview.ca.us POP3 server signing off (3 messages left)\r\n");
	fake_free(&f);
	check_all_modes(setup_three,
			LOGIN "STAT\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\n"
			      "DELE 1\r\nRETR 1\r\nDELE 1\r\nLIST 1\r\nUIDL 1\r\nTOP 1 0\r\n"
			      "STAT\r\nLIST\r\nUIDL\r\nRSET\r\nNOOP\r\nRETR 4\r\nLIST 0\r\n"
			      "RETR -1\r\nRETR +1\r\nDELE 99999999999999999999\r\nLIST 1 2\r\n"
			      "RETR\r\nNOOP x\r\nTOP 1 x\r\nQUIT\r\n",
			buf_cstr(&want), NULL);
	buf_deinit(&want);
}

static void test_top(void **state)
{
	(void)state;
	const char *m = "Subject: a\n.Hdr: dotted\n\nb1\n.b2\nb3\n";
	struct {
		const char *cmd;
		const char *want;
	} cases[] = {
		{ "TOP 1 0", "Subject: a\r\n..Hdr: dotted\r\n\r\n.\r\n" },
		{ "TOP 1 1", "Subject: a\r\n..Hdr: dotted\r\n\r\nb1\r\n.\r\n" },
		{ "TOP 1 2", "Subject: a\r\n..Hdr: dotted\r\n\r\nb1\r\n..b2\r\n.\r\n" },
		{ "TOP 1 3", "Subject: a\r\n..Hdr: dotted\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n" },
		{ "TOP 1 99", "Subject: a\r\n..Hdr: dotted\r\n\r\nb1\r\n..b2\r\nb3\r\n.\r\n" },
		/* no blank line: the whole message is header */
		{ "TOP 2 0", "Subject: only\r\nX: y\r\n.\r\n" },
		/* no final LF, empty header, empty message */
		{ "TOP 3 1", "\r\nfirst\r\n.\r\n" },
		{ "TOP 4 5", "A: b\r\n\r\nno lf\r\n.\r\n" },
		{ "TOP 5 5", ".\r\n" },
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		for (int mode = SPLIT_WHOLE; mode <= SPLIT_ASYNC; mode++) {
			struct fake f;
			fake_init(&f);
			f.chunk = 1 + i % 4;
			add_str(&f, m);
			add_str(&f, "Subject: only\nX: y\n");
			add_str(&f, "\nfirst\nsecond\n");
			add_str(&f, "A: b\n\nno lf");
			add_str(&f, "");
			struct pop3_server_settings set = default_set();
			char *in = xasprintf(LOGIN "%s\r\nNOOP\r\n", cases[i].cmd);
			char *got = run(&f, &set, in, (enum split)mode);
			char *want = xasprintf(HELLO "+OK Logged in: maildrop has 5 messages "
						     "(%lu octets)\r\n+OK Top of message follows\r\n"
						     "%s+OK\r\n",
					       (unsigned long)(wire_size(m, strlen(m)) + 21 + 17 +
							       13),
					       cases[i].want);
			assert_string_equal(got, want);
			assert_int_equal(f.msg_opens, 1);
			assert_int_equal(f.msg_closes, 1);
			free(in);
			free(got);
			free(want);
			fake_free(&f);
		}
	}
}

/* A message stored with CRLF line ends (written by another Maildir tool):
 * TOP must still find the end of the header, a line holding just a CR, even
 * when that CR and its LF arrive in different chunks. The conversion itself
 * keeps the stored CR (the listed size is physical size + LFs). */
static void test_top_crlf_stored(void **state)
{
	(void)state;
	const char *m = "Subject: c\r\nX: .y\r\n\r\nb1\r\n.b2\r\nb3\r\n";
	struct {
		const char *cmd;
		const char *want;
	} cases[] = {
		{ "TOP 1 0", "Subject: c\r\r\nX: .y\r\r\n\r\r\n.\r\n" },
		{ "TOP 1 1", "Subject: c\r\r\nX: .y\r\r\n\r\r\nb1\r\r\n.\r\n" },
		{ "TOP 1 2", "Subject: c\r\r\nX: .y\r\r\n\r\r\nb1\r\r\n..b2\r\r\n.\r\n" },
		/* a lone CR inside the header is not the end of the header */
		{ "TOP 2 0", "A: b\r\r\n\r\r\r\n\r\r\n.\r\n" },
		{ "TOP 2 1", "A: b\r\r\n\r\r\r\n\r\r\nbody\r\r\n.\r\n" },
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		for (size_t chunk = 1; chunk <= 7; chunk++) {
			for (int mode = SPLIT_WHOLE; mode <= SPLIT_ASYNC; mode++) {
				struct fake f;
				fake_init(&f);
				f.chunk = chunk;
				add_str(&f, m);
				add_str(&f, "A: b\r\n\r\r\n\r\nbody\r\nmore\r\n");
				struct pop3_server_settings set = default_set();
				char *in = xasprintf(LOGIN "%s\r\nNOOP\r\n", cases[i].cmd);
				char *got = run(&f, &set, in, (enum split)mode);
				const char *m2 = "A: b\r\n\r\r\n\r\nbody\r\nmore\r\n";
				char *want = xasprintf(
					HELLO "+OK Logged in: maildrop has 2 messages "
					      "(%lu octets)\r\n+OK Top of message follows\r\n%s+OK\r\n",
					(unsigned long)(wire_size(m, strlen(m)) +
							wire_size(m2, strlen(m2))),
					cases[i].want);
				assert_string_equal(got, want);
				free(in);
				free(got);
				free(want);
				fake_free(&f);
			}
		}
	}
}

/* RETR streams: the engine's output never holds much more than its
 * high-water mark plus one converted chunk. */
static void test_retr_streaming(void **state)
{
	(void)state;
	size_t big = 3 * 1024 * 1024;
	char *m = xmalloc(big);
	for (size_t i = 0; i < big; i++)
		m[i] = (i % 61 == 60) ? '\n' : (i % 61 == 0 ? '.' : 'a');
	for (int mode = SPLIT_WHOLE; mode <= SPLIT_ASYNC; mode += 3) {
		struct fake f;
		fake_init(&f);
		f.chunk = 16384;
		add_msg(&f, m, big);
		struct pop3_server_settings set = default_set();
		set.out_hiwat = 32768;
		char *got = run(&f, &set, LOGIN "RETR 1\r\nQUIT\r\n", (enum split)mode);
		struct buf want = BUF_INIT(0);
		buf_xprintf(&want, HELLO "+OK Logged in: maildrop has 1 message (%lu octets)\r\n"
					 "+OK %lu octets\r\n",
			    (unsigned long)wire_size(m, big), (unsigned long)wire_size(m, big));
		wire_of(&want, m, big);
		buf_xprintf(&want, "+OK dbc.mtview.ca.us POP3 server signing off (1 message "
				   "left)\r\n");
		assert_int_equal(strlen(got), want.len);
		assert_memory_equal(got, want.data, want.len);
		assert_true(f.max_out <= 32768 + 3 * 16384);
		buf_deinit(&want);
		free(got);
		fake_free(&f);
	}
	free(m);
}

static void test_list_streaming(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	for (int i = 0; i < 500; i++)
		add_str(&f, "x\n");
	struct pop3_server_settings set = default_set();
	set.out_hiwat = 100;
	char *got = run(&f, &set, LOGIN "LIST\r\nUIDL\r\nSTAT\r\n", SPLIT_WHOLE);
	assert_non_null(strstr(got, "\r\n500 3\r\n.\r\n"));
	assert_non_null(strstr(got, "\r\n500 1700000000.M499P1.host\r\n.\r\n+OK 500 1500\r\n"));
	assert_true(f.max_out < 200);
	free(got);
	fake_free(&f);
}

static void setup_vanished(struct fake *f, struct pop3_server_settings *set)
{
	setup_three(f, set);
	f->vanished[1] = true;
}

static void test_msg_errors(void **state)
{
	(void)state;
	check_all_modes(setup_vanished, LOGIN "RETR 2\r\nTOP 2 1\r\nNOOP\r\n",
			HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
			      "-ERR [SYS/TEMP] Message vanished\r\n"
			      "-ERR [SYS/TEMP] Message vanished\r\n+OK\r\n",
			NULL);
	/* a read error mid-message cuts the connection: no terminating dot */
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_three(&f, &set);
	f.read_fails = true;
	char *got = run(&f, &set, LOGIN "RETR 1\r\nNOOP\r\n", SPLIT_WHOLE);
	assert_string_equal(got, HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
				       "+OK 41 octets\r\nSubject");
	assert_int_equal(f.msg_closes, 1);
	assert_int_equal(f.md_closes, 1);
	assert_int_equal(f.commits, 0);
	free(got);
	fake_free(&f);
}

/* ---- QUIT / UPDATE ---- */

static void setup_commit_fails(struct fake *f, struct pop3_server_settings *set)
{
	setup_three(f, set);
	f->commit_fails = true;
}

static void check_commit_2_3(struct fake *f)
{
	assert_int_equal(f->commits, 1);
	assert_int_equal(f->ncommitted, 2);
	assert_int_equal(f->committed[0], 1);
	assert_int_equal(f->committed[1], 2);
}

static void check_no_commit(struct fake *f)
{
	assert_int_equal(f->commits, 0);
	assert_int_equal(f->md_closes, 1);
}

static void test_quit_update(void **state)
{
	(void)state;
	check_all_modes(setup_three, LOGIN "DELE 3\r\nDELE 2\r\nQUIT\r\nNOOP\r\n",
			HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
			      "+OK Message 3 deleted\r\n+OK Message 2 deleted\r\n"
			      "+OK dbc.mtview.ca.us POP3 server signing off (1 message left)\r\n",
			check_commit_2_3);
	check_all_modes(setup_commit_fails, LOGIN "DELE 2\r\nDELE 3\r\nQUIT\r\n",
			HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
			      "+OK Message 2 deleted\r\n+OK Message 3 deleted\r\n"
			      "-ERR [SYS/TEMP] Some deleted messages not removed\r\n",
			check_commit_2_3);
	/* the connection just ends: nothing is deleted */
	check_all_modes(setup_three, LOGIN "DELE 1\r\nDELE 2\r\n",
			HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
			      "+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n",
			check_no_commit);
}

static void test_timeout_shutdown(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_three(&f, &set);
	struct drv d;
	drv_start(&d, &f, &set);
	drv_feed(&d, LOGIN "DELE 1\r\n", strlen(LOGIN "DELE 1\r\n"));
	pop3_server_timeout(d.s);
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_CLOSE);
	drv_feed(&d, "QUIT\r\n", 6);
	char *got = drv_end(&d);
	assert_string_equal(got, HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
				       "+OK Message 1 deleted\r\n-ERR Disconnected for inactivity\r\n");
	assert_int_equal(f.commits, 0);
	assert_int_equal(f.md_closes, 1);
	free(got);

	/* shutdown while a RETR is streaming: finish it, then close */
	f.body_async = true;
	f.chunk = 5;
	drv_start(&d, &f, &set);
	buf_xappend(&d.in, LOGIN "RETR 1\r\nNOOP\r\n", strlen(LOGIN "RETR 1\r\nNOOP\r\n"));
	for (int i = 0; i < 4; i++) {
		size_t used = pop3_server_feed(d.s, d.in.data, d.in.len);
		buf_consume(&d.in, used);
		drain(&d);
	}
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_PENDING);
	assert_true(f.read_pending);
	pop3_server_shutdown(d.s);
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_PENDING);
	/* a stalled stream survives one timeout if it progressed, not two */
	f.read_pending = false;
	supply(&f);
	drain(&d);
	pop3_server_timeout(d.s);
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_PENDING);
	pump(&d);
	got = drv_end(&d);
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want, HELLO "+OK Logged in: maildrop has 3 messages (77 octets)\r\n"
				 "+OK 41 octets\r\n");
	wire_of(&want, f.content[0], f.len[0]);
	buf_xprintf(&want, "-ERR [SYS/TEMP] Server shutting down\r\n");
	assert_string_equal(got, buf_cstr(&want));
	buf_deinit(&want);
	free(got);
	assert_int_equal(f.msg_closes, 1);

	/* stalled: two timeouts with no progress close without a goodbye */
	drv_start(&d, &f, &set);
	buf_xappend(&d.in, LOGIN "RETR 1\r\n", strlen(LOGIN "RETR 1\r\n"));
	for (int i = 0; i < 4; i++) {
		size_t used = pop3_server_feed(d.s, d.in.data, d.in.len);
		buf_consume(&d.in, used);
		drain(&d);
	}
	assert_true(f.read_pending);
	pop3_server_timeout(d.s);
	pop3_server_timeout(d.s);
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_CLOSE);
	assert_int_equal(f.msg_closes, 2);
	got = drv_end(&d);
	assert_null(strstr(got, "-ERR"));
	free(got);

	/* idle shutdown */
	drv_start(&d, &f, &set);
	pop3_server_shutdown(d.s);
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_CLOSE);
	got = drv_end(&d);
	assert_string_equal(got, "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
				 "-ERR [SYS/TEMP] Server shutting down\r\n");
	free(got);
	assert_int_equal(f.md_opens, f.md_closes);
	fake_free(&f);
}

/* A verdict still pending when the session times out: the late OK is given back. */
static void test_resume_after_close(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_three(&f, &set);
	struct drv d;
	drv_start(&d, &f, &set);
	f.async = true;
	buf_xappend(&d.in, LOGIN, strlen(LOGIN));
	size_t used = pop3_server_feed(d.s, d.in.data, d.in.len);
	buf_consume(&d.in, used);
	pop3_server_resume(d.s, POP3_OK); /* login */
	f.has_pend = false;
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_PENDING); /* maildrop_open */
	pop3_server_timeout(d.s);
	assert_int_equal(pop3_server_want(d.s), PROTO_WANT_CLOSE);
	pop3_server_resume(d.s, POP3_OK);
	assert_int_equal(f.md_opens, 1);
	assert_int_equal(f.md_closes, 1);
	char *got = drv_end(&d);
	assert_string_equal(got, HELLO "-ERR Disconnected for inactivity\r\n");
	free(got);
	fake_free(&f);
}

/* ---- CAPA, STLS ---- */

static void setup_tls_offered(struct fake *f, struct pop3_server_settings *set)
{
	setup_seed(f, set);
	set->stls_offered = true;
	set->plaintext_auth = false;
}

static void test_capa_stls(void **state)
{
	(void)state;
	const char *capa_plain = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n"
				 "SASL PLAIN LOGIN SCRAM-SHA-256\r\nRESP-CODES\r\n"
				 "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n"
				 "IMPLEMENTATION Tern\r\n.\r\n";
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want, HELLO "+OK Logged in: maildrop has 2 messages (320 octets)\r\n%s",
		    capa_plain);
	check_all_modes(setup_seed, LOGIN "CAPA\r\n", buf_cstr(&want), NULL);
	buf_deinit(&want);

	/* no TLS yet, plaintext not allowed: no USER, no PLAIN/LOGIN, STLS */
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_tls_offered(&f, &set);
	struct drv d;
	drv_start(&d, &f, &set);
	const char *in1 = "CAPA\r\nUSER mrose\r\nAUTH PLAIN\r\nAUTH LOGIN\r\nAUTH\r\n"
			  "STLS\r\nUSER evil\r\nPASS evil\r\n";
	drv_feed(&d, in1, strlen(in1));
	assert_true(d.tls_started);
	assert_true(pop3_server_is_tls(d.s));
	const char *in2 = "CAPA\r\nSTLS\r\nUSER mrose\r\nPASS secret\r\nQUIT\r\n";
	drv_feed(&d, in2, strlen(in2));
	char *got = drv_end(&d);
	assert_string_equal(
		got,
		"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
		"+OK Capability list follows\r\nTOP\r\nUIDL\r\nSASL SCRAM-SHA-256\r\nSTLS\r\n"
		"RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n"
		"IMPLEMENTATION Tern\r\n.\r\n"
		"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
		"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
		"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
		"+OK Supported mechanisms follow\r\nSCRAM-SHA-256\r\n.\r\n"
		"+OK Begin TLS negotiation\r\n"
		/* the pipelined USER/PASS were dropped; after TLS: */
		"+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n"
		"SASL PLAIN LOGIN SCRAM-SHA-256\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
		"PIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION Tern\r\n.\r\n"
		"-ERR Command not permitted when TLS active\r\n"
		"+OK Send your password\r\n"
		"+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
		"+OK dbc.mtview.ca.us POP3 server signing off (2 messages left)\r\n");
	assert_int_equal(f.logins, 1);
	free(got);

	/* STLS is AUTHORIZATION only, and refused when not offered */
	check_all_modes(setup_seed, "STLS\r\n" LOGIN "STLS\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"-ERR TLS not available\r\n+OK Send your password\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			"-ERR Command not valid in this state\r\n",
			NULL);
	/* implicit TLS: no STLS in CAPA */
	set = default_set();
	set.tls_active = true;
	set.stls_offered = true;
	set.plaintext_auth = false;
	set.implementation = "Tern-test";
	char *g2 = run(&f, &set, "CAPA\r\n", SPLIT_WHOLE);
	assert_null(strstr(g2, "STLS"));
	assert_non_null(strstr(g2, "USER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n"));
	assert_non_null(strstr(g2, "IMPLEMENTATION Tern-test\r\n"));
	free(g2);
	fake_free(&f);
}

/* ---- AUTH ---- */

static char *b64(const char *s, size_t n)
{
	return base64_encode(s, n);
}

static void test_auth_plain_login(void **state)
{
	(void)state;
	char *ir = b64("\0mrose\0secret", 13);
	char *ir_bad = b64("\0mrose\0wrong", 12);
	char *ir_authz = b64("other\0mrose\0secret", 18);
	char *u = b64("mrose", 5), *p = b64("secret", 6);
	char *in = xasprintf("AUTH PLAIN %s\r\nAUTH PLAIN %s\r\nAUTH PLAIN\r\n%s\r\n"
			     "AUTH PLAIN %s\r\nQUIT\r\n",
			     ir_bad, ir_authz, ir, ir);
	check_all_modes(setup_seed, in,
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"-ERR [AUTH] Authentication failed\r\n"
			"-ERR [AUTH] Authentication failed\r\n"
			"+ \r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			"-ERR Command not valid in this state\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off (2 messages left)\r\n",
			NULL);
	free(in);
	/* LOGIN with and without an initial response; mechanism names ignore case */
	in = xasprintf("auth login\r\n%s\r\n%s\r\nQUIT\r\n", u, p);
	check_all_modes(setup_seed, in,
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off (2 messages left)\r\n",
			NULL);
	free(in);
	in = xasprintf("AUTH LOGIN %s\r\n%s\r\nSTAT\r\n", u, p);
	check_all_modes(setup_seed, in,
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+ UGFzc3dvcmQ6\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n+OK 2 320\r\n",
			NULL);
	free(in);
	/* cancel, bad base64, "=" (empty), unknown mechanism, listing */
	in = xasprintf("AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n!!!!\r\nAUTH PLAIN =\r\n"
		       "AUTH PLAIN %%%%\r\nAUTH CRAM-MD5\r\nAUTH PLAIN a b c\r\nAUTH\r\n"
		       "AUTH LOGIN\r\n%s\r\n*\r\nQUIT\r\n",
		       u);
	check_all_modes(setup_seed, in,
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+ \r\n-ERR Authentication cancelled\r\n"
			"+ \r\n-ERR Invalid base64 data\r\n"
			"-ERR Invalid authentication exchange\r\n"
			"-ERR Invalid base64 data\r\n"
			"-ERR Unsupported authentication mechanism\r\n"
			"-ERR Too many arguments\r\n"
			"+OK Supported mechanisms follow\r\nPLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n"
			".\r\n"
			"+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n-ERR Authentication cancelled\r\n"
			"+OK dbc.mtview.ca.us POP3 server signing off\r\n",
			NULL);
	free(in);
	free(ir);
	free(ir_bad);
	free(ir_authz);
	free(u);
	free(p);
}

static void hmac256(const void *key, size_t klen, const void *d, size_t n, uint8_t out[32])
{
	unsigned l = 0;
	HMAC(EVP_sha256(), key, (int)klen, d, n, out, &l);
}

/* Extract the base64 payload of the last "+ " line of got, decoded. */
static char *last_challenge(const struct buf *got)
{
	const char *s = (const char *)got->data;
	const char *p = NULL;
	for (size_t i = 0; i + 1 < got->len; i++)
		if ((i == 0 || s[i - 1] == '\n') && s[i] == '+' && s[i + 1] == ' ')
			p = s + i + 2;
	assert_non_null(p);
	const char *e = strstr(p, "\r\n");
	uint8_t *dec = NULL;
	size_t n = 0;
	assert_int_equal(base64_decode(p, (size_t)(e - p), &dec, &n), 0);
	return (char *)dec;
}

static char *attr(const char *msg, char a)
{
	for (const char *p = msg; p && *p;) {
		if (p[0] == a && p[1] == '=') {
			const char *e = strchr(p, ',');
			return e ? xstrndup(p + 2, (size_t)(e - p - 2)) : xstrdup(p + 2);
		}
		p = strchr(p, ',');
		if (p)
			p++;
	}
	fail_msg("no %c= in %s", a, msg);
	return NULL;
}

static void scram_session(bool async, bool good_password)
{
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	set.plaintext_auth = false; /* SCRAM sends no plaintext password */
	setup_seed(&f, &set);
	f.async = async;
	struct drv d;
	drv_start(&d, &f, &set);
	const char *first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
	char *cf = xasprintf("n,,%s", first_bare);
	char *cf64 = b64(cf, strlen(cf));
	char *line = xasprintf("AUTH SCRAM-SHA-256 %s\r\n", cf64);
	drv_feed(&d, line, strlen(line));
	char *sf = last_challenge(&d.got);
	char *nonce = attr(sf, 'r'), *salt64 = attr(sf, 's'), *iter = attr(sf, 'i');
	assert_true(strncmp(nonce, "rOprNGfwEbeRWgbNEkqO", 20) == 0);
	assert_string_equal(salt64, rfc_salt_b64);
	uint8_t *salt = NULL;
	size_t saltlen = 0;
	assert_int_equal(base64_decode(salt64, strlen(salt64), &salt, &saltlen), 0);
	const char *pw = good_password ? "pencil" : "pencils";
	uint8_t salted[32], ckey[32], skey[32], stored[32], csig[32], ssig[32], proof[32];
	assert_int_equal(PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, (int)saltlen, atoi(iter),
					   EVP_sha256(), 32, salted),
			 1);
	hmac256(salted, 32, "Client Key", 10, ckey);
	hmac256(salted, 32, "Server Key", 10, skey);
	unsigned l = 0;
	EVP_Digest(ckey, 32, stored, &l, EVP_sha256(), NULL);
	char *wp = xasprintf("c=biws,r=%s", nonce);
	char *am = xasprintf("%s,%s,%s", first_bare, sf, wp);
	hmac256(stored, 32, am, strlen(am), csig);
	hmac256(skey, 32, am, strlen(am), ssig);
	for (int i = 0; i < 32; i++)
		proof[i] = ckey[i] ^ csig[i];
	char *p64 = base64_encode(proof, 32);
	char *final = xasprintf("%s,p=%s", wp, p64);
	char *final64 = b64(final, strlen(final));
	char *l2 = xasprintf("%s\r\n", final64);
	size_t before = d.got.len;
	drv_feed(&d, l2, strlen(l2));
	if (good_password) {
		/* RFC 5034 4: the server-final is a challenge, answered by "" */
		char *v = last_challenge(&d.got);
		char *v64 = base64_encode(ssig, 32);
		char *wantv = xasprintf("v=%s", v64);
		assert_string_equal(v, wantv);
		free(v64);
		free(wantv);
		free(v);
		drv_feed(&d, "\r\nSTAT\r\n", 8);
		assert_non_null(strstr((const char *)d.got.data + before,
				       "\r\n+OK Logged in: maildrop has 2 messages (320 octets)\r\n"
				       "+OK 2 320\r\n"));
		assert_int_equal(f.logins, 0); /* SCRAM needs no password check */
		assert_int_equal(f.prepares, 1);
		assert_string_equal(f.prep_user, "user");
		assert_string_equal(f.last_user, "user");
	} else {
		assert_string_equal((const char *)d.got.data + before,
				    "-ERR [AUTH] Authentication failed\r\n");
	}
	char *got = drv_end(&d);
	free(got);
	free(cf);
	free(cf64);
	free(line);
	free(sf);
	free(nonce);
	free(salt64);
	free(iter);
	free(salt);
	free(wp);
	free(am);
	free(p64);
	free(final);
	free(final64);
	free(l2);
	fake_free(&f);
}

static void test_auth_scram(void **state)
{
	(void)state;
	scram_session(false, true);
	scram_session(true, true);
	scram_session(false, false);
	/* a non-empty answer to the server-final, and an unknown user */
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	char *cf64 = b64("n,,n=nobody,r=abc", 17);
	char *in = xasprintf("AUTH SCRAM-SHA-256 %s\r\n*\r\nAUTH SCRAM-SHA-256 =\r\n", cf64);
	char *got = run(&f, &set, in, SPLIT_WHOLE);
	assert_non_null(strstr(got, "\r\n+ cj1hYm")); /* "r=abc" + our nonce */
	assert_non_null(strstr(got, "-ERR Authentication cancelled\r\n"
				    "-ERR Invalid authentication exchange\r\n"));
	free(got);
	free(in);
	free(cf64);
	fake_free(&f);
}

static void test_auth_scram_prepare(void **state)
{
	(void)state;
	/* the username reaches scram_prepare decoded (RFC 5802 5.1: =2C, =3D) */
	for (int mode = SPLIT_WHOLE; mode <= SPLIT_ASYNC; mode++) {
		struct fake f;
		fake_init(&f);
		struct pop3_server_settings set = default_set();
		char *a = b64("n,,n=a=2Cb=3Dc,r=abc", 20);
		char *b = b64("n,,n=broken,r=abc", 17);
		char *c = b64("n,a=x,n=,r=abc", 14);
		char *in = xasprintf("AUTH SCRAM-SHA-256 %s\r\n*\r\nAUTH SCRAM-SHA-256 %s\r\n"
				     "AUTH SCRAM-SHA-256\r\n%s\r\nQUIT\r\n",
				     a, b, c);
		char *got = run(&f, &set, in, (enum split)mode);
		assert_int_equal(f.prepares, 2);
		assert_string_equal(f.prep_user, "broken");
		/* a REJECTED with a reply ends AUTH with it; a malformed
		 * client-first never reaches scram_prepare */
		assert_non_null(strstr(got, "-ERR Authentication cancelled\r\n"
					    "-ERR [SYS/TEMP] Account lookup failed\r\n+ \r\n"
					    "-ERR Invalid authentication exchange\r\n+OK "));
		free(a);
		free(b);
		free(c);
		free(in);
		free(got);
		fake_free(&f);
	}
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	char *a = b64("n,,n=a=2Cb=3Dc,r=abc", 20);
	char *in = xasprintf("AUTH SCRAM-SHA-256 %s\r\n", a);
	char *got = run(&f, &set, in, SPLIT_WHOLE);
	assert_string_equal(f.prep_user, "a,b=c");
	free(a);
	free(in);
	free(got);
	fake_free(&f);
}

/* A flood of pipelined commands: output is produced in bounded steps. */
static void test_output_bound(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	set.out_hiwat = 100;
	struct buf in = BUF_INIT(0);
	for (int i = 0; i < 300; i++)
		buf_xappend(&in, "CAPA\r\n", 6);
	char *got = run(&f, &set, buf_cstr(&in), SPLIT_WHOLE);
	assert_true(f.max_out < 100 + 200);
	size_t count = 0;
	for (const char *p = got; (p = strstr(p, "IMPLEMENTATION Tern\r\n.\r\n")); p++)
		count++;
	assert_int_equal(count, 300);
	free(got);
	buf_deinit(&in);
	fake_free(&f);
}

/* ---- limits ---- */

static void test_limits(void **state)
{
	(void)state;
	/* RFC 2449 4: 255 octets including CRLF; longer is -ERR, the session goes on */
	char l253[300], l254[300];
	memset(l253, 'a', 253);
	l253[253] = '\0';
	memcpy(l253, "USER ", 5);
	memset(l254, 'a', 254);
	l254[254] = '\0';
	memcpy(l254, "USER ", 5);
	char *in = xasprintf("%s\r\n%s\r\nNOOP\r\n%s\n", l253, l254, l254);
	check_all_modes(setup_seed, in,
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Send your password\r\n-ERR Line too long\r\n"
			"-ERR Command not valid in this state\r\n+OK Send your password\r\n",
			NULL);
	free(in);
	/* a very long line without LF is refused once */
	struct buf big = BUF_INIT(0);
	for (int i = 0; i < 10000; i++)
		buf_xappend(&big, "x", 1);
	buf_xappend(&big, "\r\nQUIT\r\n", 8);
	check_all_modes(setup_seed, buf_cstr(&big),
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"-ERR Line too long\r\n+OK dbc.mtview.ca.us POP3 server signing off\r\n",
			NULL);
	buf_deinit(&big);
	/* NUL in a command */
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	struct drv d;
	drv_start(&d, &f, &set);
	drv_feed(&d, "NO\0OP\r\nQUIT\r\n", 13);
	char *got = drv_end(&d);
	assert_string_equal(got, "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
				 "-ERR NUL character in command\r\n"
				 "+OK dbc.mtview.ca.us POP3 server signing off\r\n");
	free(got);
	/* max_errors: the 10th error closes the session */
	struct buf e = BUF_INIT(0);
	for (int i = 0; i < 12; i++)
		buf_xappend(&e, "BAD\r\n", 5);
	got = run(&f, &set, buf_cstr(&e), SPLIT_BYTES);
	struct buf want = BUF_INIT(0);
	buf_xprintf(&want, "+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n");
	for (int i = 0; i < 10; i++)
		buf_xprintf(&want, "-ERR Unknown command\r\n");
	assert_string_equal(got, buf_cstr(&want));
	free(got);
	buf_deinit(&e);
	buf_deinit(&want);
	/* max_auth_failures: 3 failed logins close */
	check_all_modes(setup_seed,
			"USER a\r\nPASS b\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fc\r\n"
			"AUTH PLAIN AGEAYg==\r\nUSER mrose\r\nPASS secret\r\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Send your password\r\n-ERR [AUTH] Authentication failed\r\n"
			"-ERR [AUTH] Authentication failed\r\n-ERR [AUTH] Authentication failed\r\n",
			NULL);
	fake_free(&f);
}

/* ---- pipelining ---- */

static void test_pipelining(void **state)
{
	(void)state;
	/* every command in one write, answered in order, whatever the split */
	struct fake f;
	fake_init(&f);
	struct pop3_server_settings set = default_set();
	setup_three(&f, &set);
	char *want = run(&f, &set,
			 "CAPA\r\nUSER mrose\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n"
			 "TOP 2 0\r\nDELE 3\r\nLIST 3\r\nRSET\r\nNOOP\r\nQUIT\r\n",
			 SPLIT_BYTES);
	fake_free(&f);
	/* byte-by-byte equals line-by-line fed and answered one at a time */
	fake_init(&f);
	setup_three(&f, &set);
	struct drv d;
	drv_start(&d, &f, &set);
	const char *lines[] = { "CAPA", "USER mrose", "PASS secret", "STAT", "LIST", "UIDL",
				"RETR 1", "TOP 2 0", "DELE 3", "LIST 3", "RSET", "NOOP", "QUIT" };
	for (size_t i = 0; i < N_ELEMENTS(lines); i++) {
		char *l = xasprintf("%s\r\n", lines[i]);
		drv_feed(&d, l, strlen(l));
		free(l);
	}
	char *got = drv_end(&d);
	assert_string_equal(got, want);
	assert_int_equal(f.commits, 0);
	free(got);
	fake_free(&f);
	free(want);
	/* a bare-LF client is understood too */
	check_all_modes(setup_seed, "USER mrose\nPASS secret\nSTAT\n",
			"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
			"+OK Send your password\r\n"
			"+OK Logged in: maildrop has 2 messages (320 octets)\r\n+OK 2 320\r\n",
			NULL);
}

static void test_parse_number(void **state)
{
	(void)state;
	struct {
		const char *in;
		uint64_t max;
		int rc;
		uint64_t v;
	} cases[] = {
		{ "1", 10, 0, 1 },       { "0", 10, 0, 0 },    { "10", 10, 0, 10 },
		{ "11", 10, -1, 0 },     { "", 10, -1, 0 },    { "+1", 10, -1, 0 },
		{ "-1", 10, -1, 0 },     { "1a", 10, -1, 0 },  { " 1", 10, -1, 0 },
		{ "0001", 10, 0, 1 },    { "18446744073709551615", UINT64_MAX, -1, 0 },
		{ "9999999999999999999", UINT64_MAX, 0, 9999999999999999999ull },
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		uint64_t v = 0;
		int rc = pop3_parse_number(cases[i].in, strlen(cases[i].in), cases[i].max, &v);
		assert_int_equal(rc, cases[i].rc);
		if (rc == 0)
			assert_int_equal(v, cases[i].v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_transcript),
		cmocka_unit_test(test_apop_rfc1939),
		cmocka_unit_test(test_apop_off),
		cmocka_unit_test(test_user_pass),
		cmocka_unit_test(test_user_names),
		cmocka_unit_test(test_maildrop_open_fails),
		cmocka_unit_test(test_transaction),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_top_crlf_stored),
		cmocka_unit_test(test_retr_streaming),
		cmocka_unit_test(test_list_streaming),
		cmocka_unit_test(test_msg_errors),
		cmocka_unit_test(test_quit_update),
		cmocka_unit_test(test_timeout_shutdown),
		cmocka_unit_test(test_resume_after_close),
		cmocka_unit_test(test_capa_stls),
		cmocka_unit_test(test_auth_plain_login),
		cmocka_unit_test(test_auth_scram),
		cmocka_unit_test(test_auth_scram_prepare),
		cmocka_unit_test(test_output_bound),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_parse_number),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
