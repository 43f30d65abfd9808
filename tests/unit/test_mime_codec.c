/* SPDX-License-Identifier: MIT */
/* Transfer decoders (base64, QP: whole, byte by byte and at every split
 * point), RFC 2047 encoded words, RFC 2231 values, charset conversion and
 * the SEARCH folding. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mime/imap_view.h"
#include "mime/message.h"

static const struct {
	enum mime_cte cte;
	const char *in, *want;
	bool invalid;
} dec_cases[] = {
	{ MIME_CTE_BASE64, "SGVsbG8sIHdvcmxkIQ==", "Hello, world!", false },
	{ MIME_CTE_BASE64, "SGVs\nbG8s\r\nIHdv cmxk\tIQ==\n", "Hello, world!", false },
	{ MIME_CTE_BASE64, "SGVsbG8", "Hello", false },           /* missing padding */
	{ MIME_CTE_BASE64, "AAEC*AwQF", "\x00\x01\x02\x03\x04\x05", true }, /* junk skipped */
	{ MIME_CTE_BASE64, "SGk=IGlnbm9yZWQ=", "Hi", false },    /* stops at padding */
	{ MIME_CTE_BASE64, "", "", false },
	{ MIME_CTE_QP, "Caf=E9 cr=e8me", "Caf\xe9 cr\xe8me", false },
	{ MIME_CTE_QP, "soft=\nbreak\n", "softbreak\r\n", false },
	{ MIME_CTE_QP, "soft=  \r\nbreak", "softbreak", false },
	{ MIME_CTE_QP, "trailing   \nws", "trailing\r\nws", false },
	{ MIME_CTE_QP, "keep=20\n", "keep \r\n", false },
	{ MIME_CTE_QP, "bad =ZZ and =4", "bad =ZZ and =4", true },
	{ MIME_CTE_QP, "a=\r\n", "a", false },
	{ MIME_CTE_QP, "end ws   ", "end ws", false },
	{ MIME_CTE_7BIT, "plain\ntext", "plain\ntext", false },
};

static void decode_split(size_t ci, size_t split, size_t step, struct buf *out, bool *inv)
{
	const char *in = dec_cases[ci].in;
	size_t n = strlen(in);
	struct mime_decoder d;
	mime_decoder_init(&d, dec_cases[ci].cte);
	if (step) {
		for (size_t i = 0; i < n; i += step)
			assert_int_equal(mime_decoder_feed(&d, in + i, n - i < step ? n - i : step, out), 0);
	} else {
		assert_int_equal(mime_decoder_feed(&d, in, split, out), 0);
		assert_int_equal(mime_decoder_feed(&d, in + split, n - split, out), 0);
	}
	assert_int_equal(mime_decoder_finish(&d, out), 0);
	*inv = d.invalid;
}

static void test_decoders(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof dec_cases / sizeof dec_cases[0]; i++) {
		const char *want = dec_cases[i].want;
		size_t wl = strlen(want);
		if (dec_cases[i].cte == MIME_CTE_BASE64 && strncmp(dec_cases[i].in, "AAEC", 4) == 0)
			wl = 6;
		size_t n = strlen(dec_cases[i].in);
		/* whole, byte by byte, and every two-chunk split */
		for (size_t s = 0; s <= n + 1; s++) {
			struct buf out = BUF_INIT(0);
			bool inv;
			if (s == n + 1)
				decode_split(i, 0, 1, &out, &inv);
			else
				decode_split(i, s, 0, &out, &inv);
			if (out.len != wl || (wl && memcmp(out.data, want, wl) != 0))
				print_message("case %zu split %zu: got '%.*s'\n", i, s, (int)out.len,
					      out.data);
			assert_int_equal(out.len, wl);
			if (wl)
				assert_memory_equal(out.data, want, wl);
			assert_int_equal(inv, dec_cases[i].invalid);
			buf_deinit(&out);
		}
	}
}

static void test_decoder_cap(void **state)
{
	(void)state;
	struct buf out = BUF_INIT(4);
	struct mime_decoder d;
	mime_decoder_init(&d, MIME_CTE_BASE64);
	assert_int_equal(mime_decoder_feed(&d, "SGVsbG8sIHdvcmxkIQ==", 20, &out), -1);
	buf_deinit(&out);
}

static const struct {
	const char *in, *want;
} words[] = {
	{ "=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard" },
	{ "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\n =?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
	  "If you can read this you understand the example." },
	{ "=?utf-8?q?a_b?= =?utf-8?q?c?=", "a bc" },
	{ "(=?ISO-8859-1?Q?a?= b)", "(a b)" },
	{ "=?UTF-8*en?Q?lang?=", "lang" },
	{ "=?bogus?x?zz?= plain", "=?bogus?x?zz?= plain" },
	{ "=?utf-8?b?invalid!!?=", "=?utf-8?b?invalid!!?=" },
	{ "no words here", "no words here" },
	{ "caf\xe9", "caf\xc3\xa9" },             /* raw Latin-1 */
	{ "caf\xc3\xa9", "caf\xc3\xa9" },         /* raw UTF-8 */
	{ "=?x-unknown?q?caf=E9?=", "caf\xc3\xa9" }, /* unknown charset: Latin-1 */
	{ "=?utf-8?q?bad=FF?=", "bad\xef\xbf\xbd" },
	{ "=?iso-2022-jp?b?GyRCJUYlOSVIGyhC?=", "\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88" },
	{ "a =?utf-8?q?x?=b", "a xb" },
	{ "=?utf-8?q?", "=?utf-8?q?" },
};

static void test_rfc2047(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
		struct buf out = BUF_INIT(0);
		assert_int_equal(mime_decode_words((const uint8_t *)words[i].in, strlen(words[i].in), &out), 0);
		const char *g = out.data ? buf_cstr(&out) : "";
		if (strcmp(g, words[i].want) != 0)
			print_message("word case %zu: got '%s'\n", i, g);
		assert_string_equal(g, words[i].want);
		buf_deinit(&out);
	}
}

static void test_rfc2231(void **state)
{
	(void)state;
	static const char msg[] =
		"Content-Type: application/x-stuff;\n"
		" title*0*=us-ascii'en'This%20is%20even%20more%20;\n"
		" title*1*=%2A%2A%2Afun%2A%2A%2A%20;\n"
		" title*2=\"isn't it!\";\n"
		" name*=iso-8859-1''caf%E9.txt\n\nx\n";
	struct mime_message *m = mime_parse(msg, sizeof msg - 1, NULL);
	struct buf out = BUF_INIT(0);
	assert_int_equal(mime_part_param_utf8(m, &m->parts[0], "title", &out), 0);
	assert_string_equal(buf_cstr(&out), "This is even more ***fun*** isn't it!");
	buf_clear(&out);
	assert_int_equal(mime_part_param_utf8(m, &m->parts[0], "name", &out), 0);
	assert_string_equal(buf_cstr(&out), "caf\xc3\xa9.txt");
	assert_int_equal(mime_part_param_utf8(m, &m->parts[0], "nope", &out), -1);
	buf_deinit(&out);
	mime_message_free(&m);
}

static void test_search(void **state)
{
	(void)state;
	struct buf out = BUF_INIT(0);
	assert_int_equal(mime_search_header((const uint8_t *)"=?utf-8?q?GR=C3=9CSSE_=C3=84=C3=96?= ABC", 40, &out), 0);
	assert_string_equal(buf_cstr(&out), "gr\xc3\xbcsse \xc3\xa4\xc3\xb6 abc");
	buf_clear(&out);
	/* Greek and Cyrillic capitals */
	mime_search_fold((const uint8_t *)"\xce\x91\xd0\x96", 4, &out);
	assert_string_equal(buf_cstr(&out), "\xce\xb1\xd0\xb6");
	buf_clear(&out);
	static const char msg[] =
		"Content-Type: multipart/mixed; boundary=b\n\n--b\n"
		"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
		"Caf=C9 CR=C8ME\n--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\nAAAA\n"
		"--b\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPEI+SGk8L0I+\n--b--\n";
	struct mime_message *m = mime_parse(msg, sizeof msg - 1, NULL);
	assert_int_equal(mime_search_body(m, (const uint8_t *)msg, sizeof msg - 1, &out), 0);
	assert_string_equal(buf_cstr(&out), "caf\xc3\xa9 cr\xc3\xa8me\n<b>hi</b>\n");
	mime_message_free(&m);
	buf_deinit(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decoders),
		cmocka_unit_test(test_decoder_cap),
		cmocka_unit_test(test_rfc2047),
		cmocka_unit_test(test_rfc2231),
		cmocka_unit_test(test_search),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
