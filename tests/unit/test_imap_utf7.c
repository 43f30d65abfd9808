/* SPDX-License-Identifier: MIT */
/* Modified UTF-7 (RFC 3501 5.1.3) and UTF-8 mailbox names
 * (proto/imap/imap_utf7): tables of valid pairs, which must convert both
 * ways, and of non-canonical or broken inputs, which must be refused
 * without touching the output buffer. Also the string writers of
 * imap_quote, which decide between atom, quoted string and literal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/buf.h"
#include "proto/imap/imap_quote.h"
#include "proto/imap/imap_utf7.h"

static const struct {
	const char *utf8, *utf7;
} pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "&", "&-" },
	{ "a&b&&", "a&-b&-&-" },
	{ "Entw\xc3\xbc" "rfe", "Entw&APw-rfe" },
	{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-" },
	/* RFC 3501 5.1.3 example */
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "\xf0\x9f\x98\x80", "&2D3eAA-" },     /* U+1F600: a surrogate pair */
	{ "\xc3\xa9&", "&AOk-&-" },              /* a shift, then "&" */
	{ "\xc3\xa9\xc3\xa9\xc3\xa9", "&AOkA6QDp-" },
	{ "\x01", "&AAE-" },                     /* controls are encoded */
	{ "a\x7f" "b", "a&AH8-b" },
	{ "\xe2\x80\xa8", "&ICg-" },
	{ " ~-", " ~-" },
};

static void test_pairs(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_ELEMENTS(pairs); i++) {
		struct buf b = BUF_INIT(0);
		buf_xappend(&b, "x", 1); /* output is appended */
		assert_int_equal(imap_utf8_to_utf7(pairs[i].utf8, strlen(pairs[i].utf8), &b), 0);
		if (strcmp(buf_cstr(&b) + 1, pairs[i].utf7) != 0)
			fail_msg("encode %zu: got %s want %s", i, buf_cstr(&b) + 1, pairs[i].utf7);
		buf_clear(&b);
		assert_int_equal(imap_utf7_to_utf8(pairs[i].utf7, strlen(pairs[i].utf7), &b), 0);
		if (strcmp(buf_cstr(&b), pairs[i].utf8) != 0)
			fail_msg("decode %zu (%s): got %s", i, pairs[i].utf7, buf_cstr(&b));
		assert_true(imap_utf7_valid(pairs[i].utf7, strlen(pairs[i].utf7)));
		assert_true(imap_utf8_valid(pairs[i].utf8, strlen(pairs[i].utf8)));
		buf_deinit(&b);
	}
}

static void test_bad_utf7(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"&",          /* unterminated */
		"&AOk",       /* unterminated shift */
		"a&",         "&AOk-&AOk-", /* two shifts back to back */
		"&AEE-",      /* encodes "A" */
		"&ACA-",      /* encodes SP */
		"&AOl-",      /* non-zero leftover bits */
		"&AOkA-",     /* a whole extra base64 character */
		"&A-",        /* too short for one unit */
		"&2D0-",      /* 2D0 is not even one unit */
		"&2D3-",      /* unpaired high surrogate (and short) */
		"&2D0AQQ-",   /* high surrogate then "A" */
		"&3gA-",      /* lone low surrogate */
		"&AAA-",      /* U+0000 */
		"&AO=-",      /* "=" is not modified base64 */
		"&AO/-",      /* "/" is not either (RFC 3501 uses ",") */
		"&,,,-",      /* U+FFFF with leftover bits */
		"a\tb",       /* raw control */
		"\xc3\xa9",   /* raw 8-bit */
		"a\x7f",
	};
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		struct buf b = BUF_INIT(0);
		buf_xappend(&b, "keep", 4);
		if (imap_utf7_to_utf8(bad[i], strlen(bad[i]), &b) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_int_equal(b.len, 4);
		assert_string_equal(buf_cstr(&b), "keep");
		assert_false(imap_utf7_valid(bad[i], strlen(bad[i])));
		buf_deinit(&b);
	}
	/* NUL inside (not NUL-terminated input) */
	struct buf b = BUF_INIT(0);
	assert_int_equal(imap_utf7_to_utf8("a\0b", 3, &b), -1);
	buf_deinit(&b);
}

static void test_bad_utf8(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t n;
	} bad[] = {
		{ "\xc0\x80", 2 },         /* overlong NUL */
		{ "\xc1\xbf", 2 },         /* overlong */
		{ "\xe0\x80\xaf", 3 },     /* overlong "/" */
		{ "\xed\xa0\x80", 3 },     /* surrogate D800 */
		{ "\xed\xbf\xbf", 3 },     /* surrogate DFFF */
		{ "\xf4\x90\x80\x80", 4 }, /* above U+10FFFF */
		{ "\xf5\x80\x80\x80", 4 },
		{ "\xe2\x82", 2 },         /* truncated */
		{ "\x80", 1 },             /* stray continuation */
		{ "a\xc3", 2 },
		{ "\xc3\x28", 2 },
		{ "a\0b", 3 },             /* NUL */
		{ "\xff", 1 },
	};
	for (size_t i = 0; i < N_ELEMENTS(bad); i++) {
		struct buf b = BUF_INIT(0);
		buf_xappend(&b, "keep", 4);
		if (imap_utf8_to_utf7(bad[i].s, bad[i].n, &b) != -1)
			fail_msg("accepted bad utf-8 #%zu", i);
		assert_string_equal(buf_cstr(&b), "keep");
		assert_false(imap_utf8_valid(bad[i].s, bad[i].n));
		assert_false(imap_mailbox_name_utf8_ok(bad[i].s, bad[i].n));
		buf_deinit(&b);
	}
	/* boundaries that are valid */
	assert_true(imap_utf8_valid("\xf4\x8f\xbf\xbf", 4));     /* U+10FFFF */
	assert_true(imap_utf8_valid("\xee\x80\x80", 3));         /* U+E000 */
	assert_true(imap_utf8_valid("\xed\x9f\xbf", 3));         /* U+D7FF */
	assert_true(imap_utf8_valid("\xc2\x80", 2));
}

static void test_cap(void **state)
{
	(void)state;
	/* out's cap reached: -1 and out unchanged */
	struct buf b = BUF_INIT(8);
	buf_xappend(&b, "ab", 2);
	assert_int_equal(imap_utf8_to_utf7("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, &b), -1);
	assert_int_equal(b.len, 2);
	assert_int_equal(imap_utf7_to_utf8("&ZeVnLIqe-abc", 13, &b), -1);
	assert_int_equal(b.len, 2);
	assert_int_equal(imap_utf7_to_utf8("&ZeVnLIqe-", 10, &b), -1); /* 9 octets */
	assert_string_equal(buf_cstr(&b), "ab");
	buf_deinit(&b);
}

static void test_mailbox_names(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		bool ok;
	} t[] = {
		{ "INBOX", true },
		{ "Entw\xc3\xbcrfe", true },
		{ "a/b/c", true },
		{ "\xf0\x9f\x98\x80 fun", true },
		{ "", false },
		{ "a\tb", false },
		{ "a\x7f", false },
		{ "a\xc2\x85", false },     /* C1 NEL */
		{ "a\xe2\x80\xa8", false }, /* LINE SEPARATOR */
		{ "a\xe2\x80\xa9", false },
		{ "a\xef\xbf\xbe", false }, /* U+FFFE */
		{ "a\xef\xbf\xbf", false },
		{ "a\xc2\xa0" "b", true },  /* NBSP is fine */
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++)
		if (imap_mailbox_name_utf8_ok(t[i].s, strlen(t[i].s)) != t[i].ok)
			fail_msg("%zu: %s", i, t[i].s);
	assert_false(imap_mailbox_name_utf8_ok("a\0b", 3));
}

static void test_quote(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		unsigned flags;
		const char *astring, *string;
	} t[] = {
		{ "INBOX", 0, "INBOX", "\"INBOX\"" },
		{ "[Gmail]/Sent", 0, "[Gmail]/Sent", "\"[Gmail]/Sent\"" },
		{ "NIL", 0, "\"NIL\"", "\"NIL\"" },
		{ "nil", 0, "\"nil\"", "\"nil\"" },
		{ "NILS", 0, "NILS", "\"NILS\"" },
		{ "", 0, "\"\"", "\"\"" },
		{ "a b", 0, "\"a b\"", "\"a b\"" },
		{ "a%", 0, "\"a%\"", "\"a%\"" },
		{ "a*", 0, "\"a*\"", "\"a*\"" },
		{ "\\Seen", 0, "\"\\\\Seen\"", "\"\\\\Seen\"" },
		{ "q\"", 0, "\"q\\\"\"", "\"q\\\"\"" },
		{ "a{1}", 0, "\"a{1}\"", "\"a{1}\"" },
		{ "a\tb", 0, "\"a\tb\"", "\"a\tb\"" },
		{ "Entw\xc3\xbcrfe", 0, "{9}\r\nEntw\xc3\xbcrfe", "{9}\r\nEntw\xc3\xbcrfe" },
		{ "Entw\xc3\xbcrfe", IMAP_QUOTE_UTF8, "\"Entw\xc3\xbcrfe\"", "\"Entw\xc3\xbcrfe\"" },
		{ "\xc3(", IMAP_QUOTE_UTF8, "{2}\r\n\xc3(", "{2}\r\n\xc3(" },
		{ "a\r\nb", IMAP_QUOTE_UTF8, "{4}\r\na\r\nb", "{4}\r\na\r\nb" },
		{ "\"\"\"\"\"", IMAP_QUOTE_UTF8, "{5}\r\n\"\"\"\"\"", "{5}\r\n\"\"\"\"\"" },
		{ "\"\"\"\"", IMAP_QUOTE_UTF8, "\"\\\"\\\"\\\"\\\"\"", "\"\\\"\\\"\\\"\\\"\"" },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct buf b = BUF_INIT(0);
		imap_quote_astring(&b, t[i].in, strlen(t[i].in), t[i].flags);
		if (strcmp(buf_cstr(&b), t[i].astring) != 0)
			fail_msg("astring %zu: got [%s] want [%s]", i, buf_cstr(&b), t[i].astring);
		buf_clear(&b);
		imap_quote_string(&b, t[i].in, strlen(t[i].in), t[i].flags);
		if (strcmp(buf_cstr(&b), t[i].string) != 0)
			fail_msg("string %zu: got [%s] want [%s]", i, buf_cstr(&b), t[i].string);
		buf_deinit(&b);
	}
	struct buf b = BUF_INIT(0);
	imap_quote_nstring(&b, NULL, 0, 0);
	imap_quote_nstring(&b, "x", 1, IMAP_QUOTE_UTF8);
	imap_quote_literal_header(&b, 12, false);
	imap_quote_literal_header(&b, 3, true);
	imap_quote_nstring(&b, "a\0b", 3, IMAP_QUOTE_UTF8); /* NUL: literal */
	assert_memory_equal(b.data, "NIL\"x\"{12}\r\n~{3}\r\n{3}\r\na\0b", b.len);
	assert_int_equal(b.len, 26);
	buf_deinit(&b);
	assert_false(imap_quote_is_astring_atom("a)", 2));
	assert_true(imap_quote_is_astring_atom("a]", 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs),         cmocka_unit_test(test_bad_utf7),
		cmocka_unit_test(test_bad_utf8),      cmocka_unit_test(test_cap),
		cmocka_unit_test(test_mailbox_names), cmocka_unit_test(test_quote),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
