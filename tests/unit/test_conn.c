/* SPDX-License-Identifier: MIT */
/* Connection tests. A fake line-echo session runs over a socketpair; the test
 * plays the client on the other end, pumping the event loop in between.
 * Covered: echo with split writes, PENDING + conn_kick, CLOSE flushes, peer
 * EOF, idle timeout, a stuck session with a full input buffer, backpressure,
 * conn_close from inside feed(), conn_shutdown, conn_count/foreach, STARTTLS
 * with pipelined plaintext (must be discarded), implicit TLS, handshake
 * timeout, and the heap cost of idle connections. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/buf.h"
#include "io/conn.h"
#include "io/evloop.h"
#include "io/tls.h"

/* ---- the fake session ---- */

struct fake {
	struct buf out;
	enum proto_want want;
	struct conn *conn;
	char lines[8192]; /* every fed line, each followed by '|' */
	size_t nlines;
	bool stuck; /* consume nothing, ever */
	bool in_feed;
	int closed;
	bool closed_in_feed;
	char reason[256];
	int timeouts;
	int shutdowns;
	int tls_started;
	bool tls_at_start; /* conn_is_tls() inside tls_started() */
	char version[32];
};

static bool line_is(const uint8_t *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

static size_t fake_feed(void *sess, const uint8_t *p, size_t n)
{
	struct fake *f = sess;
	assert_int_equal(f->want, PROTO_WANT_READ); /* conn feeds only a reader */
	if (f->stuck)
		return 0;
	f->in_feed = true;
	size_t off = 0;
	while (f->want == PROTO_WANT_READ && off < n) {
		const uint8_t *lf = memchr(p + off, '\n', n - off);
		if (!lf)
			break;
		const uint8_t *line = p + off;
		size_t len = (size_t)(lf - line);
		off += len + 1;
		if (len && line[len - 1] == '\r')
			len--;
		if (f->nlines + len + 1 < sizeof f->lines) {
			memcpy(f->lines + f->nlines, line, len);
			f->nlines += len;
			f->lines[f->nlines++] = '|';
		}
		if (line_is(line, len, "QUIT")) {
			buf_xappend(&f->out, "BYE\r\n", 5);
			f->want = PROTO_WANT_CLOSE;
		} else if (line_is(line, len, "PEND")) {
			f->want = PROTO_WANT_PENDING;
		} else if (line_is(line, len, "STARTTLS")) {
			buf_xappend(&f->out, "220 go\r\n", 8);
			f->want = PROTO_WANT_STARTTLS;
		} else if (line_is(line, len, "BIG")) {
			static char chunk[4096];
			memset(chunk, 'a', sizeof chunk);
			for (int i = 0; i < 256; i++) /* 1 MiB */
				buf_xappend(&f->out, chunk, sizeof chunk);
		} else if (line_is(line, len, "SELFKICK")) {
			/* An app answering inline kicks its own conn from inside feed(). */
			buf_xappend(&f->out, "kicked\r\n", 8);
			conn_kick(f->conn);
		} else if (line_is(line, len, "KILL")) {
			conn_close(f->conn, "killed");
			break;
		} else {
			buf_xappend(&f->out, line, len);
			buf_xappend(&f->out, "\r\n", 2);
		}
	}
	f->in_feed = false;
	return off;
}

static enum proto_want fake_want(void *sess)
{
	return ((struct fake *)sess)->want;
}

static struct buf *fake_output(void *sess)
{
	return &((struct fake *)sess)->out;
}

static void fake_tls_started(void *sess, const char *version, const char *cipher)
{
	struct fake *f = sess;
	assert_non_null(cipher);
	f->tls_started++;
	f->tls_at_start = f->conn && conn_is_tls(f->conn);
	snprintf(f->version, sizeof f->version, "%s", version);
	f->want = PROTO_WANT_READ;
	buf_xappend(&f->out, "TLS UP\r\n", 8);
}

static void fake_timeout(void *sess)
{
	struct fake *f = sess;
	f->timeouts++;
	buf_xappend(&f->out, "TIMEOUT\r\n", 9);
	f->want = PROTO_WANT_CLOSE;
}

static void fake_shutdown(void *sess)
{
	struct fake *f = sess;
	f->shutdowns++;
	buf_xappend(&f->out, "SHUTDOWN\r\n", 10);
	f->want = PROTO_WANT_CLOSE;
}

static void fake_closed(void *sess, const char *reason)
{
	struct fake *f = sess;
	f->closed++;
	f->closed_in_feed = f->in_feed;
	snprintf(f->reason, sizeof f->reason, "%s", reason);
	f->conn = NULL;
}

static const struct proto_session_ops fake_ops = {
	.feed = fake_feed,
	.want = fake_want,
	.output = fake_output,
	.tls_started = fake_tls_started,
	.timeout = fake_timeout,
	.shutdown = fake_shutdown,
	.closed = fake_closed,
};

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof *f);
	buf_init(&f->out, 0);
	f->want = PROTO_WANT_READ;
}

/* ---- loop pumping and the client side ---- */

struct client {
	int fd;
	struct buf got;
	bool eof;
	SSL *ssl;
	SSL_CTX *ctx;
};

typedef bool cond_fn(void *arg);

static cond_fn *pump_cond;
static void *pump_arg;
static struct ev_timer *tick_t;

static void tick_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	tick_t = NULL;
	if (pump_cond && pump_cond(pump_arg)) {
		evloop_stop(ev);
		return;
	}
	tick_t = ev_timer_add(ev, 1, tick_cb, NULL);
}

static void stop_cb(struct evloop *ev, void *ctx)
{
	*(struct ev_timer **)ctx = NULL;
	evloop_stop(ev);
}

/* Run the loop until cond(arg) holds (checked every ms) or max_ms pass.
 * Returns whether cond held. */
static bool pump_until(struct evloop *ev, cond_fn *cond, void *arg, unsigned max_ms)
{
	if (cond && cond(arg))
		return true;
	pump_cond = cond;
	pump_arg = arg;
	struct ev_timer *guard = NULL;
	guard = ev_timer_add(ev, max_ms, stop_cb, &guard);
	tick_t = ev_timer_add(ev, 1, tick_cb, NULL);
	assert_int_equal(evloop_run(ev), 0);
	ev_timer_del(ev, &guard);
	ev_timer_del(ev, &tick_t);
	pump_cond = NULL;
	return cond ? cond(arg) : true;
}

static void pump(struct evloop *ev, unsigned ms)
{
	pump_until(ev, NULL, NULL, ms);
}

/* Non-blocking read of whatever the server sent so far. */
static void client_poll(struct client *cl)
{
	char tmp[65536];
	for (;;) {
		ssize_t n;
		if (cl->ssl) {
			int r = SSL_read(cl->ssl, tmp, sizeof tmp);
			if (r <= 0) {
				int e = SSL_get_error(cl->ssl, r);
				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					cl->eof = true;
				ERR_clear_error();
				return;
			}
			n = r;
		} else {
			n = read(cl->fd, tmp, sizeof tmp);
			if (n < 0)
				return;
			if (n == 0) {
				cl->eof = true;
				return;
			}
		}
		buf_xappend(&cl->got, tmp, (size_t)n);
	}
}

static void client_send(struct client *cl, const char *s)
{
	size_t n = strlen(s);
	if (cl->ssl)
		assert_int_equal(SSL_write(cl->ssl, s, (int)n), (int)n);
	else
		assert_int_equal(write(cl->fd, s, n), (ssize_t)n);
}

static const char *want_text;

static bool got_text(void *arg)
{
	struct client *cl = arg;
	client_poll(cl);
	return cl->got.len && memmem(cl->got.data, cl->got.len, want_text, strlen(want_text));
}

static bool got_eof(void *arg)
{
	struct client *cl = arg;
	client_poll(cl);
	return cl->eof;
}

static bool is_closed(void *arg)
{
	return ((struct fake *)arg)->closed > 0;
}

static size_t bytes_target;

static bool got_bytes(void *arg)
{
	struct client *cl = arg;
	client_poll(cl);
	return cl->got.len >= bytes_target;
}

static struct evloop *ev;

static struct conn *open_conn(struct fake *f, struct client *cl, const struct conn_settings *set)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(cl, 0, sizeof *cl);
	cl->fd = sv[1];
	buf_init(&cl->got, 0);
	assert_int_equal(fcntl(cl->fd, F_SETFL, O_NONBLOCK), 0);
	f->conn = conn_new(ev, sv[0], set, &fake_ops, f);
	assert_non_null(f->conn);
	return f->conn;
}

static void client_done(struct client *cl)
{
	if (cl->ssl)
		SSL_free(cl->ssl);
	if (cl->ctx)
		SSL_CTX_free(cl->ctx);
	if (cl->fd >= 0)
		close(cl->fd);
	buf_deinit(&cl->got);
}

static bool got_is(struct client *cl, const char *s)
{
	return cl->got.len == strlen(s) && memcmp(cl->got.data, s, cl->got.len) == 0;
}

static int setup(void **state)
{
	(void)state;
	ev = evloop_new();
	return ev ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(conn_count(), 0);
	evloop_free(&ev);
	return 0;
}

static const struct conn_settings plain_set = {
	.idle_ms = 0, .max_input = 4096, .tls = NULL, .implicit_tls = false,
	.tls_handshake_ms = 0,
};

/* ---- plaintext tests ---- */

static void test_echo_split_writes(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	buf_xappend(&f.out, "220 hi\r\n", 8); /* banner queued before conn_new */
	struct conn *c = open_conn(&f, &cl, &plain_set);
	assert_int_equal(conn_count(), 1);
	assert_false(conn_is_tls(c));
	assert_string_equal(conn_peer_addr(c), "unix");
	want_text = "220 hi\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	client_send(&cl, "hel");
	pump(ev, 5);
	assert_int_equal(f.nlines, 0);
	client_send(&cl, "lo\r\nwor");
	client_send(&cl, "ld\r\n");
	want_text = "world\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "220 hi\r\nhello\r\nworld\r\n"));
	assert_memory_equal(f.lines, "hello|world|", 12);
	/* Pipelined lines in one write all get answered. */
	client_send(&cl, "a\r\nb\r\nc\r\n");
	want_text = "c\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "220 hi\r\nhello\r\nworld\r\na\r\nb\r\nc\r\n"));
	conn_close(c, "test done");
	assert_int_equal(f.closed, 1);
	assert_string_equal(f.reason, "test done");
	assert_int_equal(conn_count(), 0);
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_pending_then_kick(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	struct conn *c = open_conn(&f, &cl, &plain_set);
	client_send(&cl, "one\r\nPEND\r\nafter\r\n");
	want_text = "one\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	pump(ev, 10);
	/* "after" waits in the input buffer while the session is PENDING. */
	assert_int_equal(f.want, PROTO_WANT_PENDING);
	assert_int_equal(f.nlines, strlen("one|PEND|"));
	client_send(&cl, "more\r\n");
	pump(ev, 10);
	assert_int_equal(f.nlines, strlen("one|PEND|"));
	/* The application finishes: reply, back to READ, kick. */
	buf_xappend(&f.out, "done\r\n", 6);
	f.want = PROTO_WANT_READ;
	conn_kick(c);
	want_text = "more\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "one\r\ndone\r\nafter\r\nmore\r\n"));
	assert_memory_equal(f.lines, "one|PEND|after|more|", 20);
	conn_close(c, "test done");
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_close_flushes(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	open_conn(&f, &cl, &plain_set);
	client_send(&cl, "x\r\nQUIT\r\nnot-read\r\n");
	assert_true(pump_until(ev, got_eof, &cl, 2000));
	assert_true(got_is(&cl, "x\r\nBYE\r\n"));
	assert_int_equal(f.closed, 1);
	assert_string_equal(f.reason, "closed by server");
	assert_memory_equal(f.lines, "x|QUIT|", 7);
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_peer_eof(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	open_conn(&f, &cl, &plain_set);
	/* A last line and then EOF: the line is still fed before closing. */
	client_send(&cl, "last\r\n");
	shutdown(cl.fd, SHUT_WR);
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_int_equal(f.closed, 1);
	assert_string_equal(f.reason, "connection closed by peer");
	assert_memory_equal(f.lines, "last|", 5);
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_idle_timeout(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	struct conn_settings set = plain_set;
	set.idle_ms = 200;
	open_conn(&f, &cl, &set);
	/* Input keeps it alive (4 x 60 ms > idle_ms)... */
	for (int i = 0; i < 4; i++) {
		pump(ev, 60);
		client_send(&cl, "ping\r\n");
	}
	assert_int_equal(f.timeouts, 0);
	/* ...silence does not. */
	assert_true(pump_until(ev, got_eof, &cl, 2000));
	assert_int_equal(f.timeouts, 1);
	assert_int_equal(f.closed, 1);
	want_text = "ping\r\nTIMEOUT\r\n";
	assert_true(got_text(&cl));
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_stuck_session_closed(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	f.stuck = true;
	struct conn_settings set = plain_set;
	set.max_input = 64;
	open_conn(&f, &cl, &set);
	char junk[101];
	memset(junk, 'z', 100);
	junk[100] = 0;
	client_send(&cl, junk);
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_string_equal(f.reason, "input buffer full");
	client_done(&cl);
	buf_deinit(&f.out);

	/* Same for a line-based session fed an overlong line it never finishes. */
	fake_init(&f);
	open_conn(&f, &cl, &set);
	client_send(&cl, "short\r\n");
	client_send(&cl, junk);
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_string_equal(f.reason, "input buffer full");
	assert_memory_equal(f.lines, "short|", 6);
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_backpressure(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	open_conn(&f, &cl, &plain_set);
	/* 1 MiB of output the client does not read, then more commands. */
	client_send(&cl, "BIG\r\n");
	pump(ev, 20);
	client_send(&cl, "next\r\n");
	pump(ev, 20);
	assert_true(f.out.len > 256 * 1024);
	/* Above the high-water mark nothing more is fed. */
	assert_int_equal(f.nlines, strlen("BIG|"));
	bytes_target = 1024 * 1024 + strlen("next\r\n");
	assert_true(pump_until(ev, got_bytes, &cl, 5000));
	want_text = "aaanext\r\n";
	assert_true(got_text(&cl));
	assert_int_equal(cl.got.len, bytes_target);
	assert_memory_equal(f.lines, "BIG|next|", 9);
	/* Fully drained: the big output buffer was released (a small one for
	 * the last reply may remain). */
	assert_int_equal(f.out.len, 0);
	assert_true(f.out.cap <= 1024);
	conn_close(f.conn, "test done");
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_close_inside_feed(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	open_conn(&f, &cl, &plain_set);
	client_send(&cl, "a\r\nKILL\r\nb\r\n");
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_int_equal(f.closed, 1);
	assert_false(f.closed_in_feed); /* deferred until feed() returned */
	assert_string_equal(f.reason, "killed");
	assert_memory_equal(f.lines, "a|KILL|", 7);
	/* The reply queued before the close was still flushed. */
	assert_true(pump_until(ev, got_eof, &cl, 2000));
	assert_true(got_is(&cl, "a\r\n"));
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_kick_inside_feed(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	open_conn(&f, &cl, &plain_set);
	client_send(&cl, "SELFKICK\r\nafter\r\n");
	want_text = "after\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "kicked\r\nafter\r\n"));
	assert_int_equal(f.closed, 0);
	conn_close(f.conn, "test done");
	client_done(&cl);
	buf_deinit(&f.out);
}

static void close_each(struct conn *c, void *ctx)
{
	(*(int *)ctx)++;
	conn_close(c, "bye all"); /* frees the current conn mid-walk */
}

static void test_close_all_via_foreach(void **state)
{
	(void)state;
	enum { N = 4 };
	struct fake f[N];
	struct client cl[N];
	for (int i = 0; i < N; i++) {
		fake_init(&f[i]);
		open_conn(&f[i], &cl[i], &plain_set);
	}
	int visited = 0;
	conn_foreach(close_each, &visited);
	assert_int_equal(visited, N);
	assert_int_equal(conn_count(), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(f[i].closed, 1);
		assert_string_equal(f[i].reason, "bye all");
		assert_true(pump_until(ev, got_eof, &cl[i], 2000));
		client_done(&cl[i]);
		buf_deinit(&f[i].out);
	}
}

static void shutdown_each(struct conn *c, void *ctx)
{
	(*(int *)ctx)++;
	conn_shutdown(c);
}

static void test_shutdown_count_foreach(void **state)
{
	(void)state;
	enum { N = 3 };
	struct fake f[N];
	struct client cl[N];
	for (int i = 0; i < N; i++) {
		fake_init(&f[i]);
		open_conn(&f[i], &cl[i], &plain_set);
	}
	assert_int_equal(conn_count(), N);
	int visited = 0;
	conn_foreach(shutdown_each, &visited);
	assert_int_equal(visited, N);
	for (int i = 0; i < N; i++) {
		assert_true(pump_until(ev, got_eof, &cl[i], 2000));
		assert_int_equal(f[i].shutdowns, 1);
		assert_int_equal(f[i].closed, 1);
		assert_true(got_is(&cl[i], "SHUTDOWN\r\n"));
		client_done(&cl[i]);
		buf_deinit(&f[i].out);
	}
	assert_int_equal(conn_count(), 0);
}

/* Heap cost of idle plaintext connections: the goal is 10,000 idle conns in
 * under 100 MB, so each must stay well under 2 KiB of our heap. */
static void test_idle_memory(void **state)
{
	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	skip(); /* ASan's allocator does not report through mallinfo2 */
#endif
	enum { N = 300 };
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 2 * N + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < 2 * N + 64)
			skip();
	}
	struct fake *f = calloc(N, sizeof *f);
	struct client *cl = calloc(N, sizeof *cl);
	int (*sv)[2] = calloc(N, sizeof *sv);
	assert_non_null(f);
	assert_non_null(cl);
	assert_non_null(sv);
	for (int i = 0; i < N; i++) {
		fake_init(&f[i]);
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
	}
	pump(ev, 1); /* let the loop settle its own allocations */
	size_t before = mallinfo2().uordblks;
	for (int i = 0; i < N; i++) {
		buf_xappend(&f[i].out, "220 banner\r\n", 12);
		f[i].conn = conn_new(ev, sv[i][0], &plain_set, &fake_ops, &f[i]);
		assert_non_null(f[i].conn);
	}
	pump(ev, 20);
	/* Each did a round trip: banner out, a command in, a reply out. */
	for (int i = 0; i < N; i++)
		assert_int_equal(write(sv[i][1], "noop\r\n", 6), 6);
	pump(ev, 20);
	size_t after = mallinfo2().uordblks;
	size_t per_conn = (after - before) / N;
	print_message("heap per idle conn: %zu bytes\n", per_conn);
	assert_true(per_conn < 2048);
	for (int i = 0; i < N; i++) {
		assert_int_equal(f[i].nlines, 5);
		conn_close(f[i].conn, "test done");
		close(sv[i][1]);
		buf_deinit(&f[i].out);
	}
	free(f);
	free(cl);
	free(sv);
}

/* ---- TLS ---- */

static char tmpdir[64];
static char cert_path[128], key_path[128];
static struct tls_ctx *server_tls;

static int tls_setup(void **state)
{
	if (setup(state) != 0)
		return -1;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/tern-test-conn.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof key_path, "%s/key.pem", tmpdir);
	char *err = NULL;
	if (tls_make_self_signed(cert_path, key_path, "mail.test", &err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return -1;
	}
	server_tls = tls_ctx_new(cert_path, key_path, &err);
	if (!server_tls) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

static int tls_teardown(void **state)
{
	tls_ctx_unref(&server_tls);
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
	return teardown(state);
}

/* Client side of the handshake, verifying the self-signed cert by name. */
static bool client_tls_connect(struct client *cl)
{
	cl->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cl->ctx);
	assert_int_equal(SSL_CTX_load_verify_locations(cl->ctx, cert_path, NULL), 1);
	SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_PEER, NULL);
	cl->ssl = SSL_new(cl->ctx);
	assert_non_null(cl->ssl);
	SSL_set_fd(cl->ssl, cl->fd);
	SSL_set_tlsext_host_name(cl->ssl, "mail.test");
	assert_int_equal(SSL_set1_host(cl->ssl, "mail.test"), 1);
	for (int i = 0; i < 1000; i++) {
		int r = SSL_connect(cl->ssl);
		if (r == 1)
			return true;
		int e = SSL_get_error(cl->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			ERR_print_errors_fp(stderr);
			return false;
		}
		pump(ev, 2);
	}
	return false;
}

static bool started_tls(void *arg)
{
	return ((struct fake *)arg)->tls_started > 0;
}

static void test_starttls_discards_pipelined(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	struct conn_settings set = plain_set;
	set.tls = server_tls;
	set.tls_handshake_ms = 2000;
	struct conn *c = open_conn(&f, &cl, &set);
	/* RFC 3207 5 / CVE-2011-0411: "RSET" and "INJECT" ride in the same
	 * plaintext write as STARTTLS and must never reach the session. */
	client_send(&cl, "hello\r\nSTARTTLS\r\nINJECT\r\nRSET\r\n");
	want_text = "220 go\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "hello\r\n220 go\r\n"));
	buf_clear(&cl.got);
	assert_true(client_tls_connect(&cl));
	assert_true(pump_until(ev, started_tls, &f, 2000));
	assert_int_equal(f.tls_started, 1);
	assert_true(f.tls_at_start);
	assert_true(conn_is_tls(c));
	assert_true(strncmp(f.version, "TLSv1.", 6) == 0);
	client_send(&cl, "secret\r\n");
	want_text = "secret\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "TLS UP\r\nsecret\r\n"));
	assert_string_equal(f.lines, "hello|STARTTLS|secret|");
	/* QUIT over TLS: reply, close_notify, closed. */
	client_send(&cl, "QUIT\r\n");
	assert_true(pump_until(ev, got_eof, &cl, 2000));
	assert_int_equal(f.closed, 1);
	assert_true(got_is(&cl, "TLS UP\r\nsecret\r\nBYE\r\n"));
	assert_null(memmem(f.lines, f.nlines, "INJECT", 6));
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_implicit_tls(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	/* Output queued before the handshake must go out encrypted, after it. */
	buf_xappend(&f.out, "EARLY\r\n", 7);
	struct conn_settings set = plain_set;
	set.tls = server_tls;
	set.implicit_tls = true;
	set.tls_handshake_ms = 2000;
	struct conn *c = open_conn(&f, &cl, &set);
	assert_false(conn_is_tls(c));
	pump(ev, 5);
	client_poll(&cl);
	assert_int_equal(cl.got.len, 0); /* nothing in plaintext */
	assert_true(client_tls_connect(&cl));
	assert_true(pump_until(ev, started_tls, &f, 2000));
	assert_true(conn_is_tls(c));
	client_send(&cl, "hi\r\n");
	want_text = "hi\r\n";
	assert_true(pump_until(ev, got_text, &cl, 2000));
	assert_true(got_is(&cl, "EARLY\r\nTLS UP\r\nhi\r\n"));
	/* Server shutdown over TLS. */
	conn_shutdown(c);
	assert_true(pump_until(ev, got_eof, &cl, 2000));
	assert_true(got_is(&cl, "EARLY\r\nTLS UP\r\nhi\r\nSHUTDOWN\r\n"));
	assert_int_equal(f.closed, 1);
	client_done(&cl);
	buf_deinit(&f.out);
}

/* 1 MiB through TLS with a client that reads slowly: SSL_write returns
 * WANT_WRITE and is retried after the output buffer moved and grew. */
static void test_tls_big_output(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	struct conn_settings set = plain_set;
	set.tls = server_tls;
	set.implicit_tls = true;
	open_conn(&f, &cl, &set);
	assert_true(client_tls_connect(&cl));
	assert_true(pump_until(ev, started_tls, &f, 2000));
	client_send(&cl, "BIG\r\n");
	pump(ev, 10);
	client_send(&cl, "x1\r\n");
	for (int i = 0; i < 5; i++) {
		pump(ev, 2);
		client_poll(&cl); /* drain a little at a time */
		client_send(&cl, "y\r\n");
	}
	bytes_target = strlen("TLS UP\r\n") + 1024 * 1024 + strlen("x1\r\n") + 5 * 3;
	assert_true(pump_until(ev, got_bytes, &cl, 5000));
	assert_int_equal(cl.got.len, bytes_target);
	want_text = "aaax1\r\ny\r\ny\r\ny\r\ny\r\ny\r\n";
	assert_true(got_text(&cl));
	assert_int_equal(f.closed, 0);
	conn_close(f.conn, "test done");
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_handshake_timeout(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	struct conn_settings set = plain_set;
	set.tls = server_tls;
	set.implicit_tls = true;
	set.tls_handshake_ms = 50;
	open_conn(&f, &cl, &set);
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_string_equal(f.reason, "TLS handshake timeout");
	assert_int_equal(f.tls_started, 0);
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_handshake_garbage(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	struct conn_settings set = plain_set;
	set.tls = server_tls;
	set.implicit_tls = true;
	open_conn(&f, &cl, &set);
	client_send(&cl, "EHLO plaintext\r\n");
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_true(strncmp(f.reason, "TLS handshake: ", 15) == 0);
	assert_int_equal(f.tls_started, 0);
	assert_int_equal(f.nlines, 0);
	client_done(&cl);
	buf_deinit(&f.out);
}

static void test_starttls_without_ctx(void **state)
{
	(void)state;
	struct fake f;
	struct client cl;
	fake_init(&f);
	open_conn(&f, &cl, &plain_set);
	client_send(&cl, "STARTTLS\r\n");
	assert_true(pump_until(ev, is_closed, &f, 2000));
	assert_string_equal(f.reason, "STARTTLS without TLS");
	client_done(&cl);
	buf_deinit(&f.out);
}

int main(void)
{
	const struct CMUnitTest plain[] = {
		cmocka_unit_test(test_echo_split_writes),
		cmocka_unit_test(test_pending_then_kick),
		cmocka_unit_test(test_close_flushes),
		cmocka_unit_test(test_peer_eof),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_stuck_session_closed),
		cmocka_unit_test(test_backpressure),
		cmocka_unit_test(test_close_inside_feed),
		cmocka_unit_test(test_kick_inside_feed),
		cmocka_unit_test(test_shutdown_count_foreach),
		cmocka_unit_test(test_close_all_via_foreach),
		cmocka_unit_test(test_idle_memory),
		cmocka_unit_test(test_starttls_without_ctx),
	};
	const struct CMUnitTest tls[] = {
		cmocka_unit_test(test_starttls_discards_pipelined),
		cmocka_unit_test(test_implicit_tls),
		cmocka_unit_test(test_tls_big_output),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_handshake_garbage),
	};
	int rc = cmocka_run_group_tests_name("conn_plain", plain, setup, teardown);
	rc |= cmocka_run_group_tests_name("conn_tls", tls, tls_setup, tls_teardown);
	return rc;
}
