/* SPDX-License-Identifier: MIT */
/* Address lists (RFC 5322 3.4 + obsolete 4.4) and dates (3.3 + 4.3):
 * table-driven, with the real-world damage Dovecot tolerates. Each address
 * list is rendered as "name|route|mailbox|host" entries separated by ";",
 * group markers as "<G name" and ">G", "-" for NULL and "!" for a syntax
 * error flag. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mime/message.h"

static void render(const char *in, size_t n, struct buf *out)
{
	struct mime_addr_list l;
	mime_addr_parse((const uint8_t *)in, n, 0, &l);
	for (size_t i = 0; i < l.n; i++) {
		const struct mime_addr *a = &l.v[i];
		if (i)
			buf_xappend(out, ";", 1);
		if (a->is_group_start) {
			buf_xprintf(out, "<G %s", a->mailbox);
			continue;
		}
		if (a->is_group_end) {
			buf_xappend(out, ">G", 2);
			continue;
		}
		buf_xprintf(out, "%s|%s|%s|%s%s", a->name ? a->name : "-", a->route ? a->route : "-",
			    a->mailbox ? a->mailbox : "-", a->host ? a->host : "-",
			    a->syntax_error ? "!" : "");
	}
	mime_addr_list_free(&l);
}

static const struct {
	const char *in, *want;
} addr_cases[] = {
	{ "Reviewers: ;", "<G Reviewers;>G" },
	{ "Marshall Rose <mrose@dbc.mtview.ca.us>", "Marshall Rose|-|mrose|dbc.mtview.ca.us" },
	{ "\"Doe, John\" <john@example.com>", "Doe, John|-|john|example.com" },
	{ "a@b.c, d@e.f", "-|-|a|b.c;-|-|d|e.f" },
	{ "john@example.com (John Doe)", "John Doe|-|john|example.com" },
	{ "(lead) jane@example.com", "-|-|jane|example.com" },
	{ "Jane Q. Public <jane@example.com>", "Jane Q. Public|-|jane|example.com" },
	{ "<@r1.example,@r2.example:user@dest.example>", "-|@r1.example,@r2.example|user|dest.example" },
	{ "A: a@x.org, \"B\" <b@x.org>;, c@y.org", "<G A;-|-|a|x.org;B|-|b|x.org;>G;-|-|c|y.org" },
	{ "G: ", "<G G;>G" },
	{ "undisclosed-recipients:;", "<G undisclosed-recipients;>G" },
	{ "localonly", "-|-|localonly|-" },
	{ "undisclosed recipients", "undisclosed recipients|-|-|-" },
	{ "\"Name Only\"", "Name Only|-|-|-" },
	{ "<unclosed@x.y, good@x.y", "-|-|unclosed|x.y!;-|-|good|x.y" },
	{ "a@b@c, d@e", "-|-|a|b" },
	{ "\"unbalanced <broken@x.y>", "-|-|-|-!" },
	{ "\"john doe\"@example.com", "-|-|john doe|example.com" },
	{ "\"a\\\"b\"@example.com", "-|-|a\"b|example.com" },
	{ "user@[192.0.2.1]", "-|-|user|[192.0.2.1]" },
	{ "john . doe @ example . com", "-|-|john.doe|example.com" },
	{ "=?UTF-8?B?SsO8cmdlbg==?= <j@x.de>", "=?UTF-8?B?SsO8cmdlbg==?=|-|j|x.de" },
	{ "", "" },
	{ " , ,, ", "" },
	{ "(only (nested) comment)", "" },
	{ "a@b.c\0d@e.f", "-|-|a|b.c;-|-|d|e.f" }, /* NUL: repeated fields */
};

static void test_addr_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof addr_cases / sizeof addr_cases[0]; i++) {
		const char *in = addr_cases[i].in;
		size_t n = strlen(in);
		if (strcmp(in, "a@b.c") == 0)
			n = 11; /* the embedded NUL case */
		struct buf got = BUF_INIT(0);
		render(in, n, &got);
		const char *g = got.data ? (const char *)buf_cstr(&got) : "";
		if (strcmp(g, addr_cases[i].want) != 0)
			print_message("case %zu: in=%s\n got=%s\nwant=%s\n", i, in, g, addr_cases[i].want);
		assert_string_equal(g, addr_cases[i].want);
		buf_deinit(&got);
	}
}

static void test_addr_limits(void **state)
{
	(void)state;
	/* 100k addresses: bounded by max_addrs, linear time */
	struct buf in = BUF_INIT(0);
	for (int i = 0; i < 100000; i++)
		buf_xprintf(&in, "u%d@x.y,", i);
	struct mime_addr_list l;
	mime_addr_parse(in.data, in.len, 500, &l);
	assert_int_equal(l.n, 500);
	mime_addr_list_free(&l);
	/* deep comment nesting and unbalanced brackets do not crash */
	buf_clear(&in);
	for (int i = 0; i < 50000; i++)
		buf_xappend(&in, "(<\"", 3);
	mime_addr_parse(in.data, in.len, 0, &l);
	assert_true(l.n <= 1);
	mime_addr_list_free(&l);
	buf_deinit(&in);
}

static const struct {
	const char *in;
	int64_t t;
	int tz;
	int ok; /* 1 known zone, 2 unknown zone, 0 unparseable */
} date_cases[] = {
	{ "Sun, 12 Apr 1992 11:50:40 -0700", 703104640, -420, 1 },
	{ "12 Apr 1992 11:50:40 -0700", 703104640, -420, 1 },
	{ "Sun,12 Apr 92 11:50:40 PDT", 703104640, -420, 1 },
	{ "Thu, 26 Nov 2026 10:00:00 +0000", 1795687200, 0, 1 },
	{ "26 Nov 99 10:00 EST", 943628400, -300, 1 },
	{ "1 Jan 00 00:00:00 GMT", 946684800, 0, 1 },
	{ "Fri, 21 Nov 1997 09:55:06 Z", 880106106, 0, 2 },
	{ "Fri, 21 Nov 1997 09:55:06 -0000", 880106106, 0, 2 },
	{ "  Thu,26 Nov  2026 10:00 +0100 (CET)", 1795683600, 60, 1 },
	{ "Mon, 2 Jan 2006 15:04:05 -0700", 1136239445, -420, 1 },
	{ "(c) Tue (c), 1 (c) Jan (c) 2019 (c) 00 : 00 : 00 (c) +0100 (c)", 1546297200, 60, 1 },
	{ "29 Feb 2024 00:00:00 +0000", 1709164800, 0, 1 },
	{ "yesterday at noon", 0, 0, 0 },
	{ "29 Feb 2023 00:00:00 +0000", 0, 0, 0 },
	{ "32 Jan 2020 00:00:00 +0000", 0, 0, 0 },
	{ "1 Foo 2020 00:00:00 +0000", 0, 0, 0 },
	{ "1 Jan 2020 24:00:00 +0000", 0, 0, 0 },
	{ "1 Jan 2020 10:00:00 +0000 trailing", 0, 0, 0 },
	{ "1 Jan 2020 10:00:00 XYZ", 0, 0, 0 },
	{ "", 0, 0, 0 },
	{ "Mon,", 0, 0, 0 },
	{ "Fri, 21 Nov 0998 09:55:06 Z", 0, 0, 0 }, /* before 1900 */
};

static void test_date_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof date_cases / sizeof date_cases[0]; i++) {
		struct mime_date d;
		int r = mime_date_parse((const uint8_t *)date_cases[i].in, strlen(date_cases[i].in), &d);
		if ((r == 0) != (date_cases[i].ok != 0))
			print_message("date case %zu (%s): r=%d\n", i, date_cases[i].in, r);
		assert_int_equal(r == 0, date_cases[i].ok != 0);
		if (r < 0)
			continue;
		if (d.t != date_cases[i].t)
			print_message("date case %zu: t=%lld\n", i, (long long)d.t);
		assert_int_equal(d.t, date_cases[i].t);
		assert_int_equal(d.tz_minutes, date_cases[i].tz);
		assert_int_equal(d.tz_known, date_cases[i].ok == 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_table),
		cmocka_unit_test(test_addr_limits),
		cmocka_unit_test(test_date_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
