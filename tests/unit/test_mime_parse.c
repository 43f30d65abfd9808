/* SPDX-License-Identifier: MIT */
/* The MIME tree: exact physical and wire ranges for LF and CRLF input,
 * line counts, defaults, the limits (100,000 nested parts, a 50 MB header,
 * 10000+ parts) with bounded time and memory, BODY[section] parsing and
 * resolution, the LF->CRLF partial window, and the cache format against
 * truncation and corruption. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime/imap_view.h"
#include "mime/message.h"

static const char seed[] = "To: Reviewers: ;\n"
			   "Subject: Want to review a book?\n"
			   "Date: Sun, 12 Apr 1992 11:50:40 -0700\n"
			   "Message-ID: <18597.703104640@dbc.mtview.ca.us>\n"
			   "From: Marshall Rose <mrose@dbc.mtview.ca.us>\n"
			   "\n"
			   "As you may have heard, I am undertaking the ....\n"
			   "/mtr\n";

static char *to_crlf(const char *s, size_t *n)
{
	size_t l = strlen(s);
	char *o = malloc(2 * l + 1), *q = o;
	for (size_t i = 0; i < l; i++) {
		if (s[i] == '\n')
			*q++ = '\r';
		*q++ = s[i];
	}
	*n = (size_t)(q - o);
	return o;
}

static void test_seed_envelope(void **state)
{
	(void)state;
	struct mime_message *m = mime_parse(seed, sizeof seed - 1, NULL);
	struct buf out = BUF_INIT(0);
	assert_int_equal(mime_imap_envelope(m, 0, &out), 0);
	assert_string_equal(buf_cstr(&out),
			    "(\"Sun, 12 Apr 1992 11:50:40 -0700\" \"Want to review a book?\" "
			    "((\"Marshall Rose\" NIL \"mrose\" \"dbc.mtview.ca.us\")) "
			    "((\"Marshall Rose\" NIL \"mrose\" \"dbc.mtview.ca.us\")) "
			    "((\"Marshall Rose\" NIL \"mrose\" \"dbc.mtview.ca.us\")) "
			    "((NIL NIL \"Reviewers\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL "
			    "\"<18597.703104640@dbc.mtview.ca.us>\")");
	buf_clear(&out);
	assert_int_equal(mime_imap_bodystructure(m, 0, false, &out), 0);
	/* body: 2 lines, 54 bytes + 2 CRs on the wire */
	assert_string_equal(buf_cstr(&out),
			    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 56 2)");
	assert_int_equal(m->wire_size, sizeof seed - 1 + 8);
	assert_true(m->flags & MIME_MSG_BARE_LF);
	buf_deinit(&out);
	mime_message_free(&m);
}

/* LF and CRLF forms of the same message have the same wire ranges. */
static void test_lf_crlf_same_wire(void **state)
{
	(void)state;
	static const char mp[] = "From: a@b.c\nContent-Type: multipart/mixed; boundary=X\n\npre\n--X\n"
				 "Content-Type: text/plain\n\none\ntwo\n--X\n\n\n--X--\nepi\n";
	size_t cn;
	char *crlf = to_crlf(mp, &cn);
	struct mime_message *a = mime_parse(mp, sizeof mp - 1, NULL);
	struct mime_message *b = mime_parse(crlf, cn, NULL);
	assert_int_equal(a->n_parts, 3);
	assert_int_equal(b->n_parts, 3);
	assert_int_equal(a->wire_size, cn);
	assert_int_equal(b->wire_size, cn);
	for (uint32_t i = 0; i < a->n_parts; i++) {
		assert_int_equal(a->parts[i].header.woff, b->parts[i].header.woff);
		assert_int_equal(a->parts[i].header.wlen, b->parts[i].header.wlen);
		assert_int_equal(a->parts[i].body.woff, b->parts[i].body.woff);
		assert_int_equal(a->parts[i].body.wlen, b->parts[i].body.wlen);
		assert_int_equal(a->parts[i].body_lines, b->parts[i].body_lines);
		assert_int_equal(b->parts[i].body.off, b->parts[i].body.woff);
	}
	/* part 1: "one\ntwo" (the last LF belongs to the boundary) */
	const struct mime_part *p1 = &a->parts[1];
	assert_int_equal(p1->body.len, 7);
	assert_int_equal(p1->body.wlen, 8);
	assert_int_equal(p1->body_lines, 1);
	assert_memory_equal(mp + p1->body.off, "one\ntwo", 7);
	/* part 2 has no header and an empty body line */
	assert_int_equal(a->parts[2].header.len, 1);
	assert_int_equal(a->parts[2].body.len, 0);
	mime_message_free(&a);
	mime_message_free(&b);
	free(crlf);
}

static void test_defaults(void **state)
{
	(void)state;
	static const char dg[] = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: x\n\nb\n"
				 "--d\nContent-Type: text/plain\n\nt\n--d--\n";
	struct mime_message *m = mime_parse(dg, sizeof dg - 1, NULL);
	size_t l;
	assert_int_equal(m->n_parts, 4);
	assert_string_equal(mime_str_ptr(m, m->parts[1].type, &l), "message");
	assert_string_equal(mime_str_ptr(m, m->parts[1].subtype, &l), "rfc822");
	assert_true(m->parts[1].flags & MIME_PART_MESSAGE);
	assert_true(m->parts[2].flags & MIME_PART_IS_MSG_ROOT);
	assert_string_equal(mime_str_ptr(m, m->parts[2].type, &l), "text");
	assert_int_equal(m->parts[3].cte, MIME_CTE_7BIT);
	assert_true(mime_str_nil(m->parts[3].encoding));
	mime_message_free(&m);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_limit_nesting(void **state)
{
	(void)state;
	/* 100,000 nested multiparts, then all their end boundaries */
	struct buf in = BUF_INIT(0);
	buf_xprintf(&in, "Content-Type: multipart/mixed; boundary=b0\n\n");
	for (int i = 0; i < 100000; i++)
		buf_xprintf(&in, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i, i + 1);
	for (int i = 100000; i >= 0; i--)
		buf_xprintf(&in, "--b%d--\n", i);
	double t0 = now();
	struct mime_message *m = mime_parse(in.data, in.len, NULL);
	double dt = now() - t0;
	assert_true(m->flags & MIME_MSG_DEPTH_LIMIT);
	/* "--b1" is a prefix of "--b10...": boundaries match as prefixes
	 * (Dovecot), so more parts than levels appear, within the limits */
	assert_true(m->n_parts <= 10000);
	for (uint32_t i = 0; i < m->n_parts; i++)
		assert_true(m->parts[i].depth < 100);
	assert_true(dt < 5.0);
	struct buf bs = BUF_INIT(0);
	assert_int_equal(mime_imap_bodystructure(m, 0, true, &bs), 0);
	buf_deinit(&bs);
	mime_message_free(&m);
	/* 100,000 nested message/rfc822 */
	buf_clear(&in);
	for (int i = 0; i < 100000; i++)
		buf_xappend(&in, "Content-Type: message/rfc822\n\n", 30);
	m = mime_parse(in.data, in.len, NULL);
	assert_true(m->n_parts <= 100);
	/* the innermost message/rfc822 is not parsed, but BODYSTRUCTURE
	 * still has the body-type-msg shape */
	struct buf b2 = BUF_INIT(0);
	assert_int_equal(mime_imap_bodystructure(m, 0, false, &b2), 0);
	assert_non_null(strstr(buf_cstr(&b2), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
						 "(\"text\" \"plain\" (\"charset\" \"us-ascii\") "
						 "NIL NIL \"7bit\" 0 0) "));
	buf_deinit(&b2);
	mime_message_free(&m);
	buf_deinit(&in);
}

static void test_limit_parts(void **state)
{
	(void)state;
	struct buf in = BUF_INIT(0);
	buf_xprintf(&in, "Content-Type: multipart/mixed; boundary=p\n\n");
	for (int i = 0; i < 20000; i++)
		buf_xappend(&in, "--p\n\nx\n", 7);
	buf_xappend(&in, "--p--\n", 6);
	struct mime_message *m = mime_parse(in.data, in.len, NULL);
	assert_int_equal(m->n_parts, 10000);
	assert_true(m->flags & MIME_MSG_PART_LIMIT);
	mime_message_free(&m);
	buf_deinit(&in);
}

static void test_limit_header(void **state)
{
	(void)state;
	/* 50 MB of header, fed in 64 KiB chunks, with folded To: lines */
	struct mime_parser *p = mime_parser_new(NULL);
	static char chunk[65536];
	for (size_t i = 0; i < sizeof chunk; i += 16)
		memcpy(chunk + i, i == 0 ? "To: a@b.c,     \n" : " x@y.z,        \n", 16);
	double t0 = now();
	for (int i = 0; i < 800; i++)
		mime_parser_feed(p, chunk, sizeof chunk);
	mime_parser_feed(p, "\nbody\n", 6);
	struct mime_message *m = mime_parser_finish(&p);
	double dt = now() - t0;
	assert_true(m->flags & MIME_MSG_HDR_LIMIT);
	assert_true(m->parts[0].flags & MIME_PART_HDR_TRUNCATED);
	assert_int_equal(m->parts[0].body.len, 5);
	assert_true(m->pool_len < 4 * 1024 * 1024);
	assert_true(dt < 5.0);
	mime_message_free(&m);
	/* one 50 MB line without any LF */
	p = mime_parser_new(NULL);
	memset(chunk, 'A', sizeof chunk);
	for (int i = 0; i < 800; i++)
		mime_parser_feed(p, chunk, sizeof chunk);
	m = mime_parser_finish(&p);
	assert_int_equal(m->size, 800u * sizeof chunk);
	mime_message_free(&m);
}

static const struct {
	const char *s;
	int ok;
	enum mime_section_kind kind;
	unsigned n_num, n_fields;
} sections[] = {
	{ "", 0, MIME_SECT_BODY, 0, 0 },
	{ "1.2.3", 0, MIME_SECT_BODY, 3, 0 },
	{ "HEADER", 0, MIME_SECT_HEADER, 0, 0 },
	{ "text", 0, MIME_SECT_TEXT, 0, 0 },
	{ "2.MIME", 0, MIME_SECT_MIME, 1, 0 },
	{ "1.HEADER.FIELDS (From To \"X-Y\")", 0, MIME_SECT_FIELDS, 1, 3 },
	{ "HEADER.FIELDS.NOT (Received)", 0, MIME_SECT_FIELDS_NOT, 0, 1 },
	{ "MIME", -1, 0, 0, 0 },
	{ "0", -1, 0, 0, 0 },
	{ "1.", -1, 0, 0, 0 },
	{ "1..2", -1, 0, 0, 0 },
	{ "HEADER.FIELDS ()", -1, 0, 0, 0 },
	{ "HEADER.FIELDS (a", -1, 0, 0, 0 },
	{ "HEADERX", -1, 0, 0, 0 },
	{ "99999999999", -1, 0, 0, 0 },
};

static void test_sections(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
		struct mime_section sec;
		int r = mime_section_parse(sections[i].s, strlen(sections[i].s), &sec);
		assert_int_equal(r, sections[i].ok);
		if (r < 0)
			continue;
		assert_int_equal(sec.kind, sections[i].kind);
		assert_int_equal(sec.n_num, sections[i].n_num);
		assert_int_equal(sec.n_fields, sections[i].n_fields);
	}
}

/* The partial window over LF input, fed at every split point, equals the
 * same window cut from the CRLF form. */
static void test_wire_window(void **state)
{
	(void)state;
	static const char lf[] = "ab\ncd\r\nef\n\ngh";
	size_t cn;
	char *crlf = to_crlf("ab\ncd\nef\n\ngh", &cn);
	for (uint64_t o = 0; o <= cn + 1; o++)
		for (uint64_t len = 0; len <= cn + 1 - o; len++)
			for (size_t split = 0; split <= sizeof lf - 1; split++) {
				struct buf out = BUF_INIT(0);
				struct mime_wire w;
				mime_wire_init(&w, 0, o, len);
				assert_true(mime_wire_feed(&w, lf, split, &out) >= 0);
				assert_true(mime_wire_feed(&w, lf + split, sizeof lf - 1 - split, &out) >= 0);
				size_t want = o >= cn ? 0 : (o + len > cn ? cn - o : len);
				assert_int_equal(out.len, want);
				if (want)
					assert_memory_equal(out.data, crlf + o, want);
				buf_deinit(&out);
			}
	free(crlf);
}

static void test_serial_corruption(void **state)
{
	(void)state;
	static const char mp[] = "From: A <a@b.c>\nSubject: s\nContent-Type: multipart/mixed; boundary=X\n\n--X\n"
				 "Content-Type: text/plain; charset=utf-8; name*0=a; name*1=b\n"
				 "Content-Language: en, fr\nContent-Disposition: inline\n\none\n--X\n"
				 "Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n--X--\n";
	struct mime_message *m = mime_parse(mp, sizeof mp - 1, NULL);
	struct buf s = BUF_INIT(0);
	assert_int_equal(mime_message_serialize(m, &s), 0);
	assert_true(s.len < 600);
	/* every truncation is rejected */
	for (size_t n = 0; n < s.len; n++) {
		struct mime_message *t = mime_message_deserialize(s.data, n);
		assert_null(t);
	}
	/* byte flips never crash; what is accepted renders */
	srand(1);
	for (int k = 0; k < 20000; k++) {
		uint8_t *c = malloc(s.len);
		memcpy(c, s.data, s.len);
		c[(size_t)rand() % s.len] ^= (uint8_t)(1u << (rand() % 8));
		struct mime_message *t = mime_message_deserialize(c, s.len);
		if (t) {
			struct buf o = BUF_INIT(0);
			int r1 = mime_imap_bodystructure(t, 0, true, &o);
			int r2 = mime_imap_envelope(t, 0, &o);
			assert_true(r1 == 0 && r2 >= -1);
			buf_deinit(&o);
			mime_message_free(&t);
		}
		free(c);
	}
	buf_deinit(&s);
	mime_message_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_envelope),  cmocka_unit_test(test_lf_crlf_same_wire),
		cmocka_unit_test(test_defaults),       cmocka_unit_test(test_limit_nesting),
		cmocka_unit_test(test_limit_parts),    cmocka_unit_test(test_limit_header),
		cmocka_unit_test(test_sections),       cmocka_unit_test(test_wire_window),
		cmocka_unit_test(test_serial_corruption),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
