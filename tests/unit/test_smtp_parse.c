/* SPDX-License-Identifier: MIT */
/* smtp_parse_path (RFC 5321 4.1.2, RFC 6531 3.3): a table of valid and
 * invalid paths. Each input is parsed from a copy that ends just before a
 * PROT_NONE page, so an over-read faults even without ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto/smtp/smtp_server.h"

struct guarded {
	uint8_t *map;
	size_t maplen;
	char *p;
};

/* Copy n bytes so that they end exactly at a PROT_NONE page. */
static void guard(struct guarded *g, const char *s, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (n + pg - 1) / pg + 1;
	g->maplen = pages * pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + g->maplen - pg, pg, PROT_NONE), 0);
	g->p = (char *)g->map + g->maplen - pg - n;
	memcpy(g->p, s, n);
}

static void unguard(struct guarded *g)
{
	munmap(g->map, g->maplen);
}

struct pcase {
	const char *in;
	bool allow_null, utf8;
	const char *want; /* NULL: must fail */
	size_t used;      /* 0: strlen(in) */
};

static void run_cases(const struct pcase *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct guarded g;
		size_t len = strlen(t[i].in);
		guard(&g, t[i].in, len);
		char *addr = (char *)0x1;
		size_t used = 99;
		int r = smtp_parse_path(g.p, len, t[i].allow_null, t[i].utf8, &addr, &used);
		if (!t[i].want) {
			if (r != -1)
				fail_msg("%s: parsed as \"%s\", want failure", t[i].in, addr);
			assert_null(addr);
		} else {
			if (r != 0)
				fail_msg("%s: failed, want \"%s\"", t[i].in, t[i].want);
			assert_string_equal(addr, t[i].want);
			assert_int_equal(used, t[i].used ? t[i].used : len);
			free(addr);
		}
		unguard(&g);
	}
}

static void test_valid(void **state)
{
	(void)state;
	static const struct pcase t[] = {
		{ "<a@b>", false, false, "a@b", 0 },
		{ "<mrose@dbc.mtview.ca.us>", false, false, "mrose@dbc.mtview.ca.us", 0 },
		{ "<First.Last@Example.COM>", false, false, "First.Last@Example.COM", 0 },
		{ "<a@b> SIZE=10", false, false, "a@b", 5 },
		{ "<>", true, false, "", 0 },
		{ "<> BODY=8BITMIME", true, false, "", 2 },
		/* source routes are dropped (RFC 5321 4.1.1.3, appendix C) */
		{ "<@a.test:u@h.test>", false, false, "u@h.test", 0 },
		{ "<@a.test,@b.test,@c.test:u@h.test>", false, false, "u@h.test", 0 },
		/* quoted local parts are kept as given */
		{ "<\"a b\"@c.test>", false, false, "\"a b\"@c.test", 0 },
		{ "<\"a\\\"b\\\\c\"@c.test>", false, false, "\"a\\\"b\\\\c\"@c.test", 0 },
		{ "<\"a>b\"@c.test>", false, false, "\"a>b\"@c.test", 0 },
		{ "<\"\"@c.test>", false, false, "\"\"@c.test", 0 },
		/* % and ! are atext: kept, never interpreted as routing */
		{ "<a%b@c.test>", false, false, "a%b@c.test", 0 },
		{ "<b!a@c.test>", false, false, "b!a@c.test", 0 },
		{ "<a+tag=x/y{z}~@c.test>", false, false, "a+tag=x/y{z}~@c.test", 0 },
		/* address literals */
		{ "<u@[127.0.0.1]>", false, false, "u@[127.0.0.1]", 0 },
		{ "<u@[255.255.255.255]>", false, false, "u@[255.255.255.255]", 0 },
		{ "<u@[IPv6:::1]>", false, false, "u@[IPv6:::1]", 0 },
		{ "<u@[IPv6:2001:db8::1]>", false, false, "u@[IPv6:2001:db8::1]", 0 },
		{ "<u@[ipv6:2001:db8:0:0:0:0:0:1]>", false, false, "u@[ipv6:2001:db8:0:0:0:0:0:1]", 0 },
		{ "<u@[IPv6:::ffff:192.0.2.1]>", false, false, "u@[IPv6:::ffff:192.0.2.1]", 0 },
		{ "<u@a-b.c-d.test>", false, false, "u@a-b.c-d.test", 0 },
		{ "<u@1.2.3>", false, false, "u@1.2.3", 0 },
		/* RFC 6531 UTF-8, only when asked */
		{ "<j\xc3\xb6rg@b\xc3\xbc.test>", false, true, "j\xc3\xb6rg@b\xc3\xbc.test", 0 },
		{ "<\"\xe2\x82\xac\"@x.test>", false, true, "\"\xe2\x82\xac\"@x.test", 0 },
		{ "<\xf0\x9f\x98\x80@x.test>", false, true, "\xf0\x9f\x98\x80@x.test", 0 },
	};
	run_cases(t, sizeof t / sizeof t[0]);
}

static void test_invalid(void **state)
{
	(void)state;
	static const struct pcase t[] = {
		{ "", false, false, NULL, 0 },
		{ "a@b", false, false, NULL, 0 },
		{ "<a@b", false, false, NULL, 0 },
		{ "<>", false, false, NULL, 0 },         /* null path not allowed here */
		{ "< a@b>", false, false, NULL, 0 },
		{ "<a@b >", false, false, NULL, 0 },
		{ "<a>", false, false, NULL, 0 },
		{ "<Postmaster>", false, false, NULL, 0 }, /* the engine handles this one */
		{ "<@b>", false, false, NULL, 0 },
		{ "<a@>", false, false, NULL, 0 },
		{ "<a@@b>", false, false, NULL, 0 },
		{ "<a\xc2\x9b@b>", false, true, NULL, 0 },  /* C1 control (CSI), even with SMTPUTF8 */
		{ "<a@b\xc2\x85" "c>", false, true, NULL, 0 }, /* NEL */
		{ "<a@b@c>", false, false, NULL, 0 },
		{ "<.a@b>", false, false, NULL, 0 },
		{ "<a.@b>", false, false, NULL, 0 },
		{ "<a..b@c>", false, false, NULL, 0 },
		{ "<a(b)@c>", false, false, NULL, 0 },
		{ "<a,b@c>", false, false, NULL, 0 },
		{ "<a@b..c>", false, false, NULL, 0 },
		{ "<a@b.>", false, false, NULL, 0 },
		{ "<a@.b>", false, false, NULL, 0 },
		{ "<a@-b.c>", false, false, NULL, 0 },
		{ "<a@b-.c>", false, false, NULL, 0 },
		{ "<a@b_c.d>", false, false, NULL, 0 },
		{ "<\"a@b>", false, false, NULL, 0 },
		{ "<\"a\\\x01\"@b>", false, false, NULL, 0 },
		{ "<\"a\x01\"@b>", false, false, NULL, 0 },
		{ "<a@[127.0.0.256]>", false, false, NULL, 0 },
		{ "<a@[127.0.0]>", false, false, NULL, 0 },
		{ "<a@[127.0.0.1.2]>", false, false, NULL, 0 },
		{ "<a@[1234.0.0.1]>", false, false, NULL, 0 },
		{ "<a@[IPv6:zz::1]>", false, false, NULL, 0 },
		{ "<a@[IPv6:]>", false, false, NULL, 0 },
		{ "<a@[x-tag:foo]>", false, false, NULL, 0 },
		{ "<a@[127.0.0.1>", false, false, NULL, 0 },
		{ "<@a.test u@h.test>", false, false, NULL, 0 },
		{ "<@a.test,u@h.test>", false, false, NULL, 0 },
		{ "<@:u@h.test>", false, false, NULL, 0 },
		{ "<@a.test,:u@h.test>", false, false, NULL, 0 },
		/* UTF-8 without SMTPUTF8, and malformed UTF-8 with it */
		{ "<j\xc3\xb6rg@b.test>", false, false, NULL, 0 },
		{ "<a@b\xc3\xbc.test>", false, false, NULL, 0 },
		{ "<\"\xe2\x82\xac\"@x.test>", false, false, NULL, 0 },
		{ "<\xff@x.test>", false, true, NULL, 0 },
		{ "<\xc0\xaf@x.test>", false, true, NULL, 0 },     /* overlong */
		{ "<\xed\xa0\x80@x.test>", false, true, NULL, 0 }, /* surrogate */
		{ "<\xf4\x90\x80\x80@x.test>", false, true, NULL, 0 },
		{ "<\xe2\x82@x.test>", false, true, NULL, 0 },     /* truncated */
		{ "<a@b\xe2\x82", false, true, NULL, 0 },
	};
	run_cases(t, sizeof t / sizeof t[0]);
}

/* Labels over 63 octets and domains over 255 are refused; NUL never passes. */
static void test_limits(void **state)
{
	(void)state;
	char in[400];
	memset(in, 0, sizeof in);
	strcpy(in, "<a@");
	memset(in + 3, 'x', 63);
	strcat(in, ">");
	struct pcase ok[] = { { in, false, false, NULL, 0 } };
	char want[80];
	memcpy(want, in + 1, 65);
	want[65] = '\0';
	ok[0].want = want;
	run_cases(ok, 1);
	in[3 + 63] = 'x';
	in[3 + 64] = '>';
	struct pcase bad[] = { { in, false, false, NULL, 0 } };
	run_cases(bad, 1);
	/* 300-octet domain of short labels */
	memset(in, 0, sizeof in);
	strcpy(in, "<a@");
	for (int i = 0; i < 75; i++)
		strcat(in, "abc.");
	strcat(in, "d>");
	run_cases(bad, 1);

	const char nul[] = "<a\0b@c>";
	char *addr;
	size_t used;
	assert_int_equal(smtp_parse_path(nul, sizeof nul - 1, false, true, &addr, &used), -1);
	assert_null(addr);
}

/* The parser never looks past n, whatever n is. */
static void test_every_prefix(void **state)
{
	(void)state;
	const char *s = "<@a.test,@b.test:\"q\\\" x\"@[IPv6:2001:db8::1]>";
	size_t len = strlen(s);
	for (size_t n = 0; n <= len; n++) {
		struct guarded g;
		guard(&g, s, n);
		char *addr;
		size_t used;
		int r = smtp_parse_path(g.p, n, true, false, &addr, &used);
		if (n < len) {
			assert_int_equal(r, -1);
		} else {
			assert_int_equal(r, 0);
			assert_string_equal(addr, "\"q\\\" x\"@[IPv6:2001:db8::1]");
			free(addr);
		}
		unguard(&g);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_every_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
