/* SPDX-License-Identifier: MIT */
/* Client-mode connections (conn_connect): both ends run in one event loop,
 * the server end is an accepted socket under conn_new with a line-echo
 * session, the client end a scripted session. Covered: IPv4 and IPv6
 * connect, output queued before the connect completes, a refused connect
 * (closed() with the reason, later, never inside conn_connect), a connect
 * timeout, client STARTTLS (SSL_connect) against a self-signed server with
 * the verification result reported but not enforced, and the server side
 * unchanged next to it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "io/conn.h"
#include "io/evloop.h"
#include "io/tls.h"

/* ---- one scripted session type for both ends ---- */

struct end {
	struct buf out;
	enum proto_want want;
	struct conn *conn;
	bool server;
	char got[4096];
	size_t ngot;
	int closed;
	char reason[256];
	int tls_started;
	char verify[128];
	bool closed_inside_connect;
};

static bool in_connect;

static size_t end_feed(void *p, const uint8_t *d, size_t n)
{
	struct end *e = p;
	size_t off = 0;
	while (off < n && e->want == PROTO_WANT_READ) {
		const uint8_t *lf = memchr(d + off, '\n', n - off);
		if (!lf)
			break;
		size_t len = (size_t)(lf - (d + off)) + 1;
		if (e->ngot + len < sizeof e->got) {
			memcpy(e->got + e->ngot, d + off, len);
			e->ngot += len;
			e->got[e->ngot] = 0;
		}
		const char *line = (const char *)d + off;
		off += len;
		if (e->server) {
			if (!strncmp(line, "STARTTLS", 8)) {
				buf_xappend(&e->out, "220 go\r\n", 8);
				e->want = PROTO_WANT_STARTTLS;
			} else if (!strncmp(line, "QUIT", 4)) {
				buf_xappend(&e->out, "221 bye\r\n", 9);
				e->want = PROTO_WANT_CLOSE;
			} else {
				buf_xappend(&e->out, "echo ", 5);
				buf_xappend(&e->out, line, len);
			}
		} else {
			if (!strncmp(line, "220 go", 6))
				e->want = PROTO_WANT_STARTTLS;
			else if (!strncmp(line, "221", 3))
				e->want = PROTO_WANT_CLOSE;
		}
	}
	return off;
}

static enum proto_want end_want(void *p)
{
	return ((struct end *)p)->want;
}

static struct buf *end_output(void *p)
{
	return &((struct end *)p)->out;
}

static void end_tls_started(void *p, const char *version, const char *cipher)
{
	struct end *e = p;
	(void)version;
	(void)cipher;
	e->tls_started++;
	e->want = PROTO_WANT_READ;
	if (!e->server) {
		const char *v = conn_tls_verify_result(e->conn);
		snprintf(e->verify, sizeof e->verify, "%s", v ? v : "(null)");
		buf_xappend(&e->out, "over tls\r\nQUIT\r\n", 16);
	}
}

static void end_timeout(void *p)
{
	((struct end *)p)->want = PROTO_WANT_CLOSE;
}

static void end_shutdown(void *p)
{
	((struct end *)p)->want = PROTO_WANT_CLOSE;
}

static void end_closed(void *p, const char *reason)
{
	struct end *e = p;
	e->closed++;
	e->closed_inside_connect = in_connect;
	snprintf(e->reason, sizeof e->reason, "%s", reason ? reason : "");
	e->conn = NULL;
}

static const struct proto_session_ops end_ops = {
	.feed = end_feed,
	.want = end_want,
	.output = end_output,
	.tls_started = end_tls_started,
	.timeout = end_timeout,
	.shutdown = end_shutdown,
	.closed = end_closed,
};

static void end_init(struct end *e, bool server)
{
	memset(e, 0, sizeof *e);
	buf_init(&e->out, 0);
	e->want = PROTO_WANT_READ;
	e->server = server;
}

/* ---- a listener that wraps accepted sockets in conn_new ---- */

struct srv {
	int lfd;
	struct evloop *ev;
	struct tls_ctx *tls;
	struct end end;
	bool accepted;
};

static void on_accept(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	struct srv *s = ctx;
	int c = accept(fd, NULL, NULL);
	if (c < 0)
		return;
	s->accepted = true;
	struct conn_settings cs = { .idle_ms = 5000, .tls = s->tls };
	s->end.conn = conn_new(ev, c, &cs, &end_ops, &s->end);
	assert_non_null(s->end.conn);
}

static void srv_start(struct srv *s, struct evloop *ev, int family, struct sockaddr_storage *ss,
		      socklen_t *sl)
{
	memset(ss, 0, sizeof *ss);
	s->ev = ev;
	end_init(&s->end, true);
	s->lfd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		*sl = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*sl = sizeof *a;
	}
	assert_int_equal(bind(s->lfd, (struct sockaddr *)ss, *sl), 0);
	assert_int_equal(listen(s->lfd, 8), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)ss, sl), 0);
	assert_int_equal(ev_add_fd(ev, s->lfd, EV_READ, on_accept, s), 0);
}

static void srv_stop(struct srv *s)
{
	ev_del_fd(s->ev, s->lfd);
	close(s->lfd);
	buf_deinit(&s->end.out);
}

/* ---- loop pumping ---- */

typedef bool cond_fn(void *arg);
static cond_fn *pcond;
static void *parg;

static void tick(struct evloop *ev, void *ctx)
{
	(void)ctx;
	if (pcond(parg)) {
		evloop_stop(ev);
		return;
	}
	ev_timer_add(ev, 1, tick, NULL);
}

static void guard_cb(struct evloop *ev, void *ctx)
{
	*(struct ev_timer **)ctx = NULL;
	evloop_stop(ev);
}

static bool pump_until(struct evloop *ev, cond_fn *cond, void *arg, unsigned max_ms)
{
	pcond = cond;
	parg = arg;
	struct ev_timer *guard = NULL;
	guard = ev_timer_add(ev, max_ms, guard_cb, &guard);
	ev_timer_add(ev, 1, tick, NULL);
	assert_int_equal(evloop_run(ev), 0);
	ev_timer_del(ev, &guard);
	return cond(arg);
}

static bool is_closed(void *arg)
{
	return ((struct end *)arg)->closed > 0;
}

/* ---- tests ---- */

static void echo_over(int family)
{
	struct evloop *ev = evloop_new();
	struct srv s = { 0 };
	struct sockaddr_storage ss;
	socklen_t sl;
	srv_start(&s, ev, family, &ss, &sl);
	struct end cl;
	end_init(&cl, false);
	/* queued before the connection exists: goes out once connected */
	buf_xappend(&cl.out, "hello\r\nQUIT\r\n", 13);
	char *err = NULL;
	in_connect = true;
	cl.conn = conn_connect(ev, (struct sockaddr *)&ss, sl, 2000, &(struct conn_settings){ 0 },
			       &end_ops, &cl, &err);
	in_connect = false;
	assert_non_null(cl.conn);
	assert_null(err);
	assert_true(pump_until(ev, is_closed, &cl, 3000));
	assert_string_equal(cl.got, "echo hello\r\n221 bye\r\n");
	assert_string_equal(s.end.got, "hello\r\nQUIT\r\n");
	assert_false(cl.closed_inside_connect);
	assert_int_equal(cl.closed, 1);
	srv_stop(&s);
	buf_deinit(&cl.out);
	evloop_free(&ev);
}

static void test_connect_ipv4(void **state)
{
	(void)state;
	echo_over(AF_INET);
}

static void test_connect_ipv6(void **state)
{
	(void)state;
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
	bool v6 = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	if (!v6)
		skip(); /* no IPv6 loopback in this sandbox */
	echo_over(AF_INET6);
}

static void test_connect_refused(void **state)
{
	(void)state;
	struct evloop *ev = evloop_new();
	/* a port nobody listens on: bind, read the port, close */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sl), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	close(fd);
	struct end cl;
	end_init(&cl, false);
	buf_xappend(&cl.out, "never sent\r\n", 12);
	char *err = NULL;
	in_connect = true;
	cl.conn = conn_connect(ev, (struct sockaddr *)&a, sl, 2000, &(struct conn_settings){ 0 },
			       &end_ops, &cl, &err);
	in_connect = false;
	if (!cl.conn) {
		/* connect(2) may fail at once on loopback */
		assert_non_null(err);
		assert_non_null(strstr(err, "refused"));
		free(err);
	} else {
		assert_int_equal(cl.closed, 0);
		assert_true(pump_until(ev, is_closed, &cl, 3000));
		assert_false(cl.closed_inside_connect);
		assert_string_equal(cl.reason, "connect: Connection refused");
		assert_int_equal(cl.ngot, 0);
	}
	buf_deinit(&cl.out);
	evloop_free(&ev);
}

static void test_connect_timeout(void **state)
{
	(void)state;
	struct evloop *ev = evloop_new();
	/* a listener whose backlog is full never completes a handshake for
	 * the next SYN (Linux drops it), so the connect hangs */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof a;
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sl), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &sl), 0);
	int fill[4];
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		(void)!connect(fill[i], (struct sockaddr *)&a, sl);
	}
	struct end cl;
	end_init(&cl, false);
	char *err = NULL;
	cl.conn = conn_connect(ev, (struct sockaddr *)&a, sl, 200, &(struct conn_settings){ 0 },
			       &end_ops, &cl, &err);
	assert_non_null(cl.conn);
	assert_true(pump_until(ev, is_closed, &cl, 3000));
	assert_string_equal(cl.reason, "connect timeout");
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
	buf_deinit(&cl.out);
	evloop_free(&ev);
}

static void test_client_starttls(void **state)
{
	(void)state;
	char dir[] = "/tmp/tern-connclient-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cert[128], key[128];
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	char *err = NULL;
	assert_int_equal(tls_make_self_signed(cert, key, "mx.test", &err), 0);
	struct evloop *ev = evloop_new();
	struct srv s = { 0 };
	struct sockaddr_storage ss;
	socklen_t sl;
	s.tls = tls_ctx_new(cert, key, &err);
	assert_non_null(s.tls);
	srv_start(&s, ev, AF_INET, &ss, &sl);
	struct tls_ctx *ctls = tls_ctx_client_new(NULL, &err);
	assert_non_null(ctls);
	struct end cl;
	end_init(&cl, false);
	buf_xappend(&cl.out, "plain\r\nSTARTTLS\r\n", 17);
	struct conn_settings cs = { .tls = ctls, .tls_server_name = "mx.test" };
	cl.conn = conn_connect(ev, (struct sockaddr *)&ss, sl, 2000, &cs, &end_ops, &cl, &err);
	assert_non_null(cl.conn);
	assert_true(pump_until(ev, is_closed, &cl, 5000));
	assert_int_equal(cl.tls_started, 1);
	assert_int_equal(s.end.tls_started, 1);
	/* self-signed: the handshake went on, the result says why it is not trusted */
	assert_string_not_equal(cl.verify, "ok");
	assert_string_not_equal(cl.verify, "(null)");
	assert_string_equal(s.end.got, "plain\r\nSTARTTLS\r\nover tls\r\nQUIT\r\n");
	assert_string_equal(cl.got, "echo plain\r\n220 go\r\necho over tls\r\n221 bye\r\n");
	tls_ctx_unref(&ctls);
	tls_ctx_unref(&s.tls);
	srv_stop(&s);
	buf_deinit(&cl.out);
	evloop_free(&ev);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

static void test_client_tls_trusted_ca(void **state)
{
	(void)state;
	/* the server's own certificate as the client's CA: verified "ok" */
	char dir[] = "/tmp/tern-connclient-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cert[128], key[128];
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	char *err = NULL;
	assert_int_equal(tls_make_self_signed(cert, key, "mx.test", &err), 0);
	struct evloop *ev = evloop_new();
	struct srv s = { 0 };
	struct sockaddr_storage ss;
	socklen_t sl;
	s.tls = tls_ctx_new(cert, key, &err);
	srv_start(&s, ev, AF_INET, &ss, &sl);
	struct tls_ctx *ctls = tls_ctx_client_new(cert, &err);
	assert_non_null(ctls);
	struct end cl;
	end_init(&cl, false);
	buf_xappend(&cl.out, "STARTTLS\r\n", 10);
	struct conn_settings cs = { .tls = ctls, .tls_server_name = "mx.test" };
	cl.conn = conn_connect(ev, (struct sockaddr *)&ss, sl, 2000, &cs, &end_ops, &cl, &err);
	assert_true(pump_until(ev, is_closed, &cl, 5000));
	/* a self-signed leaf used as its own trust anchor verifies; the name matches */
	assert_string_equal(cl.verify, "ok");
	tls_ctx_unref(&ctls);
	/* a bad CA file is an error with the file named */
	assert_null(tls_ctx_client_new("/nonexistent/ca.pem", &err));
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	free(err);
	tls_ctx_unref(&s.tls);
	srv_stop(&s);
	buf_deinit(&cl.out);
	evloop_free(&ev);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_ipv4),
		cmocka_unit_test(test_connect_ipv6),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_timeout),
		cmocka_unit_test(test_client_starttls),
		cmocka_unit_test(test_client_tls_trusted_ca),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
