/* SPDX-License-Identifier: MIT */
/* Listener tests on loopback only: bind to an ephemeral port, accept a real
 * connection, address parsing errors (table-driven), "address in use" naming
 * the address, IPv6 and "*" forms, and sockaddr_to_text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/evloop.h"
#include "io/listen.h"

static int connect_to(int family, const char *ip, int port)
{
	int fd = socket(family, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
		len = sizeof *s4;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		len = sizeof *s6;
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
	return fd;
}

struct accepted {
	int n;
	int fd;
	char addr[64];
	int port;
	struct listener *expect;
};

static void on_accept(struct listener *l, int fd, const struct sockaddr_storage *peer,
		      socklen_t peerlen, void *ctx)
{
	struct accepted *a = ctx;
	assert_ptr_equal(l, a->expect);
	assert_true(peerlen > 0);
	a->n++;
	a->fd = fd;
	sockaddr_to_text(peer, a->addr, &a->port);
}

static void stop_when_accepted(struct evloop *ev, void *ctx)
{
	struct accepted *a = ctx;
	if (a->n > 0)
		evloop_stop(ev);
}

static void tick(struct evloop *ev, void *ctx)
{
	(void)ctx;
	ev_timer_add(ev, 1, tick, NULL);
}

static void guard(struct evloop *ev, void *ctx)
{
	*(bool *)ctx = true;
	evloop_stop(ev);
}

static void accept_one(struct listener *l, int family, const char *ip, struct accepted *a)
{
	struct evloop *ev = evloop_new();
	assert_non_null(ev);
	memset(a, 0, sizeof *a);
	a->fd = -1;
	a->expect = l;
	bool timed_out = false;
	assert_int_equal(listener_start(l, ev, on_accept, a), 0);
	ev_before_sleep(ev, stop_when_accepted, a);
	ev_timer_add(ev, 1, tick, NULL);
	ev_timer_add(ev, 3000, guard, &timed_out);
	int cfd = connect_to(family, ip, listener_port(l));
	assert_int_equal(evloop_run(ev), 0);
	assert_false(timed_out);
	assert_int_equal(a->n, 1);
	assert_true(a->fd >= 0);
	/* The accepted fd is a live socket connected to our client. */
	assert_int_equal(write(cfd, "hi", 2), 2);
	char buf[2];
	ssize_t n;
	do
		n = read(a->fd, buf, 2);
	while (n < 0 && errno == EAGAIN);
	assert_int_equal(n, 2);
	close(cfd);
	close(a->fd);
	listener_free(&l);
	assert_null(l);
	evloop_free(&ev);
}

static void test_bind_accept_v4(void **state)
{
	(void)state;
	char *err = NULL;
	struct listener *l = listener_bind("127.0.0.1:0", &err);
	assert_non_null(l);
	assert_null(err);
	int port = listener_port(l);
	assert_true(port > 0 && port < 65536);
	char want[64];
	snprintf(want, sizeof want, "127.0.0.1:%d", port);
	assert_string_equal(listener_name(l), want);
	struct accepted a;
	accept_one(l, AF_INET, "127.0.0.1", &a);
	assert_string_equal(a.addr, "127.0.0.1");
	assert_true(a.port > 0);
}

static bool have_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool ok = bind(fd, (struct sockaddr *)&s6, sizeof s6) == 0;
	close(fd);
	return ok;
}

static void test_bind_accept_v6(void **state)
{
	(void)state;
	if (!have_ipv6())
		skip();
	char *err = NULL;
	struct listener *l = listener_bind("[::1]:0", &err);
	assert_non_null(l);
	char want[64];
	snprintf(want, sizeof want, "[::1]:%d", listener_port(l));
	assert_string_equal(listener_name(l), want);
	struct accepted a;
	accept_one(l, AF_INET6, "::1", &a);
	assert_string_equal(a.addr, "::1");
}

static void test_bind_any(void **state)
{
	(void)state;
	char *err = NULL;
	struct listener *l = listener_bind("*:0", &err);
	assert_non_null(l);
	char want[64];
	snprintf(want, sizeof want, "*:%d", listener_port(l));
	assert_string_equal(listener_name(l), want);
	/* Dual-stack (or IPv4 fallback): an IPv4 client shows as plain IPv4. */
	struct accepted a;
	accept_one(l, AF_INET, "127.0.0.1", &a);
	assert_string_equal(a.addr, "127.0.0.1");
}

static void test_bad_addresses(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *why;
	} cases[] = {
		{ "", "expected address:port" },
		{ "127.0.0.1", "expected address:port" },
		{ "127.0.0.1:", "bad port" },
		{ "127.0.0.1:70000", "bad port" },
		{ "127.0.0.1:123456", "bad port" },
		{ "127.0.0.1:2x5", "bad port" },
		{ "127.0.0.1:-1", "bad port" },
		{ "1.2.3:25", "not a numeric IPv4 address" },
		{ "mail.example.org:25", "not a numeric IPv4 address" },
		{ ":25", "bad address" },
		{ "::1:25", "IPv6 addresses need brackets" },
		{ "[::1:25", "expected [address]:port" },
		{ "[::1]25", "expected [address]:port" },
		{ "[]:25", "bad IPv6 address" },
		{ "[1.2.3.4]:25", "bad IPv6 address" },
		{ "[::g]:25", "bad IPv6 address" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *err = NULL;
		struct listener *l = listener_bind(cases[i].in, &err);
		assert_null(l);
		assert_non_null(err);
		char want[128];
		snprintf(want, sizeof want, "%s: %s", cases[i].in, cases[i].why);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("%s: got \"%s\", want prefix \"%s\"", cases[i].in, err, want);
		free(err);
	}
}

static void test_port_in_use(void **state)
{
	(void)state;
	char *err = NULL;
	struct listener *l = listener_bind("127.0.0.1:0", &err);
	assert_non_null(l);
	char again[64];
	snprintf(again, sizeof again, "127.0.0.1:%d", listener_port(l));
	struct listener *l2 = listener_bind(again, &err);
	assert_null(l2);
	assert_non_null(err);
	char want[128];
	snprintf(want, sizeof want, "%s: %s", again, strerror(EADDRINUSE));
	assert_string_equal(err, want);
	free(err);
	listener_free(&l);
	listener_free(&l); /* safe on NULL */
}

/* Out of descriptors: accept4 fails with EMFILE, the listener pauses instead
 * of spinning, and accepts the waiting connection once fds are free again. */
static void test_emfile_pauses_then_resumes(void **state)
{
	(void)state;
	char *err = NULL;
	struct listener *l = listener_bind("127.0.0.1:0", &err);
	assert_non_null(l);
	struct evloop *ev = evloop_new();
	assert_non_null(ev);
	struct accepted a;
	memset(&a, 0, sizeof a);
	a.fd = -1;
	a.expect = l;
	assert_int_equal(listener_start(l, ev, on_accept, &a), 0);
	ev_before_sleep(ev, stop_when_accepted, &a);
	ev_timer_add(ev, 1, tick, NULL);
	int cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(cfd >= 0);

	struct rlimit old, low;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 256;
	if (old.rlim_cur < 256 || setrlimit(RLIMIT_NOFILE, &low) < 0) {
		close(cfd);
		listener_free(&l);
		evloop_free(&ev);
		skip();
	}
	int fillers[256], nfill = 0;
	while (nfill < 256) {
		int fd = dup(0);
		if (fd < 0)
			break;
		fillers[nfill++] = fd;
	}
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)listener_port(l)) };
	inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
	assert_int_equal(connect(cfd, (struct sockaddr *)&s4, sizeof s4), 0);
	bool timed_out = false;
	ev_timer_add(ev, 100, guard, &timed_out);
	assert_int_equal(evloop_run(ev), 0);
	assert_true(timed_out); /* nothing could be accepted */
	assert_int_equal(a.n, 0);

	for (int i = 0; i < nfill; i++)
		close(fillers[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	timed_out = false;
	ev_timer_add(ev, 3000, guard, &timed_out);
	assert_int_equal(evloop_run(ev), 0);
	assert_false(timed_out);
	assert_int_equal(a.n, 1);
	close(a.fd);
	close(cfd);
	listener_free(&l);
	evloop_free(&ev);
}

static void test_sockaddr_to_text(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	char out[64];
	int port = -1;

	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(2525);
	inet_pton(AF_INET, "192.0.2.7", &s4->sin_addr);
	sockaddr_to_text(&ss, out, &port);
	assert_string_equal(out, "192.0.2.7");
	assert_int_equal(port, 2525);

	memset(&ss, 0, sizeof ss);
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(993);
	inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
	sockaddr_to_text(&ss, out, &port);
	assert_string_equal(out, "2001:db8::1");
	assert_int_equal(port, 993);

	inet_pton(AF_INET6, "::ffff:198.51.100.9", &s6->sin6_addr);
	sockaddr_to_text(&ss, out, NULL);
	assert_string_equal(out, "198.51.100.9");

	memset(&ss, 0, sizeof ss);
	ss.ss_family = AF_UNIX;
	sockaddr_to_text(&ss, out, &port);
	assert_string_equal(out, "unix");
	assert_int_equal(port, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bind_accept_v4),
		cmocka_unit_test(test_bind_accept_v6),
		cmocka_unit_test(test_bind_any),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_port_in_use),
		cmocka_unit_test(test_emfile_pauses_then_resumes),
		cmocka_unit_test(test_sockaddr_to_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
