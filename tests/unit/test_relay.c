/* SPDX-License-Identifier: MIT */
/* The scheduler's decisions that need no sockets: smtp_client results to
 * queue outcomes, next-host fallback, the outcome when every host failed,
 * connection limits, the reply text kept for DSNs and `tern queue list`,
 * xtext and NOTIFY for the DSN parameters, and relay_host / relay_auth
 * validation at config load (with file:line). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "conf/config.h"
#include "daemon/relay.h"

static void test_outcome(void **state)
{
	(void)state;
	static const struct {
		enum smtp_client_status st;
		bool dsn;
		enum queue_outcome want;
	} t[] = {
		{ SMTP_CLIENT_OK, false, QUEUE_OUT_RELAYED },
		{ SMTP_CLIENT_OK, true, QUEUE_OUT_PASSED },
		{ SMTP_CLIENT_TEMP, false, QUEUE_OUT_TEMPFAIL },
		{ SMTP_CLIENT_TEMP, true, QUEUE_OUT_TEMPFAIL },
		{ SMTP_CLIENT_PERM, false, QUEUE_OUT_PERMFAIL },
		{ SMTP_CLIENT_PERM, true, QUEUE_OUT_PERMFAIL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct smtp_client_result r = { t[i].st, SMTP_STAGE_RCPT, 250, "", "" };
		assert_int_equal(relay_outcome(&r, t[i].dsn), t[i].want);
	}
	/* timeouts, refused connections, EOF: temporary (code 0 from the engine) */
	struct smtp_client_result eof = { SMTP_CLIENT_TEMP, SMTP_STAGE_CONTENT, 0, "4.4.2",
					  "Connection closed" };
	assert_int_equal(relay_outcome(&eof, true), QUEUE_OUT_TEMPFAIL);
}

static void test_fallback(void **state)
{
	(void)state;
	struct smtp_client_result greet4 = { SMTP_CLIENT_TEMP, SMTP_STAGE_CONNECT, 421, "4.3.2",
					     "busy" };
	struct smtp_client_result greet5 = { SMTP_CLIENT_PERM, SMTP_STAGE_CONNECT, 554, "5.7.1",
					     "go away" };
	struct smtp_client_result refused = { SMTP_CLIENT_TEMP, SMTP_STAGE_CONNECT, 0, "4.4.1",
					      "connect: Connection refused" };
	/* before the session is ready: the next address / MX */
	assert_true(relay_next_host_on_failure(&greet4, false));
	assert_true(relay_next_host_on_failure(&greet5, false));
	assert_true(relay_next_host_on_failure(&refused, false));
	/* after: results belong to the messages already tried */
	assert_false(relay_next_host_on_failure(&greet4, true));
}

static struct dns_addr v4(const char *s)
{
	struct dns_addr a = { .family = AF_INET };
	assert_int_equal(inet_pton(AF_INET, s, &a.u.v4), 1);
	return a;
}

static struct dns_addr v6(const char *s)
{
	struct dns_addr a = { .family = AF_INET6 };
	assert_int_equal(inet_pton(AF_INET6, s, &a.u.v6), 1);
	return a;
}

static void test_targets_order_and_fallback(void **state)
{
	(void)state;
	/* as the resolver hands it over: mx1 (pref 10, v6 + v4), mx2 (pref 20) */
	struct dns_addr a1[] = { v6("2001:db8::1"), v4("192.0.2.1") };
	struct dns_addr a2[] = { v4("192.0.2.2") };
	struct dns_host hosts[] = {
		{ .name = "mx1.example.net", .pref = 10, .naddrs = 2, .addrs = a1 },
		{ .name = "mx2.example.net", .pref = 20, .naddrs = 1, .addrs = a2 },
	};
	struct dns_result res = { .status = DNS_OK, .nhosts = 2, .hosts = hosts };
	struct relay_target *t = NULL;
	size_t n = relay_targets_build(&res, NULL, &t);
	assert_int_equal(n, 3);
	static const char *const want_host[] = { "mx1.example.net", "mx1.example.net",
						  "mx2.example.net" };
	static const char *const want_addr[] = { "2001:db8::1", "192.0.2.1", "192.0.2.2" };
	for (size_t i = 0; i < n; i++) {
		char buf[64];
		dns_addr_str(&t[i].addr, buf, sizeof buf);
		assert_string_equal(t[i].host, want_host[i]);
		assert_string_equal(buf, want_addr[i]);
		assert_false(t[i].dead);
	}
	/* each failure before ready moves to the next address, then the next MX */
	assert_int_equal(relay_first_alive(t, n), 0);
	t[0].dead = true;
	assert_int_equal(relay_first_alive(t, n), 1);
	t[1].dead = true;
	assert_int_equal(relay_first_alive(t, n), 2);
	t[2].dead = true;
	assert_int_equal(relay_first_alive(t, n), SIZE_MAX);
	/* a dead address that comes back (TLS retried in plaintext) is first again */
	t[1].dead = false;
	assert_int_equal(relay_first_alive(t, n), 1);
	free(t);
	/* smarthost: every target carries its name */
	n = relay_targets_build(&res, "smart.example.com", &t);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(t[i].host, "smart.example.com");
	free(t);
	/* nothing resolved: nothing to try */
	struct dns_result none = { .status = DNS_TEMPFAIL };
	assert_int_equal(relay_targets_build(&none, NULL, &t), 0);
	assert_null(t);
	assert_int_equal(relay_first_alive(NULL, 0), SIZE_MAX);
}

static void test_exhausted(void **state)
{
	(void)state;
	static const struct {
		unsigned nperm, nfailed;
		enum queue_outcome want;
	} t[] = {
		{ 0, 0, QUEUE_OUT_TEMPFAIL }, /* nothing tried (no address) */
		{ 0, 3, QUEUE_OUT_TEMPFAIL }, /* refused everywhere */
		{ 2, 3, QUEUE_OUT_TEMPFAIL }, /* one host may come back */
		{ 3, 3, QUEUE_OUT_PERMFAIL }, /* every MX refuses us with 5xx */
		{ 1, 1, QUEUE_OUT_PERMFAIL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		assert_int_equal(relay_exhausted_outcome(t[i].nperm, t[i].nfailed), t[i].want);
}

static void test_limits(void **state)
{
	(void)state;
	static const struct {
		unsigned total, max_total, dom, max_dom;
		bool want;
	} t[] = {
		{ 0, 100, 0, 10, true },   { 99, 100, 0, 10, true },  { 100, 100, 0, 10, false },
		{ 5, 100, 9, 10, true },   { 5, 100, 10, 10, false }, { 5, 100, 11, 10, false },
		{ 1000, 0, 3, 0, true },   { 1, 1, 0, 10, false },    { 0, 1, 0, 1, true },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		assert_int_equal(relay_may_connect(t[i].total, t[i].max_total, t[i].dom,
						   t[i].max_dom),
				 t[i].want);
}

static void test_format_reply(void **state)
{
	(void)state;
	static const struct {
		int code;
		const char *text, *want;
	} t[] = {
		{ 550, "5.1.1 no such user", "550 5.1.1 no such user" },
		{ 451, "first\nsecond\nthird", "451-first\n451-second\n451 third" },
		{ 250, "", "250 " },
		{ 0, "connect: Connection refused", "connect: Connection refused" },
		{ 0, NULL, "" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct buf b = BUF_INIT(0);
		relay_format_reply(&b, t[i].code, t[i].text);
		assert_string_equal(buf_cstr(&b), t[i].want);
		buf_deinit(&b);
	}
}

static void test_xtext_notify(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} t[] = {
		{ "bob@example.org", "bob@example.org" },
		{ "a+b=c", "a+2Bb+3Dc" },
		{ "sp ace", "sp+20ace" },
		{ "\xc3\xa9", "+C3+A9" },
		{ "", "" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct buf b = BUF_INIT(0);
		relay_xtext(&b, t[i].in);
		assert_string_equal(buf_cstr(&b), t[i].want);
		buf_deinit(&b);
	}
	char n[40];
	assert_null(relay_notify_str(0, n));
	assert_string_equal(relay_notify_str(QUEUE_NOTIFY_NEVER, n), "NEVER");
	assert_string_equal(relay_notify_str(QUEUE_NOTIFY_SUCCESS, n), "SUCCESS");
	assert_string_equal(relay_notify_str(QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE |
						     QUEUE_NOTIFY_DELAY,
					     n),
			    "SUCCESS,FAILURE,DELAY");
	assert_string_equal(relay_notify_str(QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, n),
			    "FAILURE,DELAY");
}

static void test_hostport(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		const char *host;
		unsigned port;
	} t[] = {
		{ "smtp.example.com:587", 0, "smtp.example.com", 587 },
		{ "smtp.example.com", 0, "smtp.example.com", 25 },
		{ "127.0.0.1:2525", 0, "127.0.0.1", 2525 },
		{ "[::1]:2525", 0, "::1", 2525 },
		{ "[192.0.2.1]", 0, "192.0.2.1", 25 },
		{ "::1:25", -1, NULL, 0 },
		{ "host:0", -1, NULL, 0 },
		{ "host:65536", -1, NULL, 0 },
		{ "host:", -1, NULL, 0 },
		{ ":25", -1, NULL, 0 },
		{ "ho st:25", -1, NULL, 0 },
		{ "[::1", -1, NULL, 0 },
		{ "[::1]x", -1, NULL, 0 },
		{ "host:25x", -1, NULL, 0 },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char host[256];
		uint16_t port = 0;
		const char *why = NULL;
		int rc = config_parse_hostport(t[i].in, host, sizeof host, &port, &why);
		if (rc != t[i].rc)
			fail_msg("%s: rc %d", t[i].in, rc);
		if (rc == 0) {
			assert_string_equal(host, t[i].host);
			assert_int_equal(port, t[i].port);
		} else {
			assert_non_null(why);
		}
	}
}

static void test_config_validation(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		const char *err; /* substring, NULL = loads */
	} t[] = {
		{ "relay_host = smtp.example.com:587\n", NULL },
		{ "relay_host = smtp.example.com:587\nrelay_auth = u:p:w\n", NULL },
		{ "\nrelay_host = bad host:25\n", "t.conf:2: relay_host: bad value" },
		{ "relay_host = h:99999\n", "t.conf:1: relay_host" },
		{ "relay_host = h\n\n\nrelay_auth = nopassword\n",
		  "t.conf:4: relay_auth: bad value: expected user:password" },
		{ "relay_auth = u:p\n", "t.conf:1: relay_auth: needs relay_host" },
		{ "relay_mx_port = 0\n", "t.conf:1: relay_mx_port" },
		{ "relay_mx_port = 2525\nrelay_connect_timeout = 5s\n", NULL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *err = NULL;
		struct config *c = config_parse("t.conf", "/tmp", t[i].text, strlen(t[i].text), &err);
		if (!t[i].err) {
			if (!c)
				fail_msg("%s: %s", t[i].text, err);
			config_free(&c);
		} else {
			assert_null(c);
			if (!strstr(err, t[i].err))
				fail_msg("%s: got %s", t[i].text, err);
			free(err);
		}
	}
	char *err = NULL;
	struct config *c = config_parse("t.conf", "/tmp", "", 0, &err);
	assert_non_null(c);
	assert_int_equal(c->relay_mx_port, 25);
	assert_int_equal(c->relay_connect_timeout, 30);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcome),		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_exhausted),	cmocka_unit_test(test_limits),
		cmocka_unit_test(test_targets_order_and_fallback),
		cmocka_unit_test(test_format_reply),	cmocka_unit_test(test_xtext_notify),
		cmocka_unit_test(test_hostport),	cmocka_unit_test(test_config_validation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
