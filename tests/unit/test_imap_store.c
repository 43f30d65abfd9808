/* SPDX-License-Identifier: MIT */
/* STORE (proto/imap/imap_store): argument parsing (every data item, flag
 * lists with and without parentheses, keywords, \Recent and unknown system
 * flags, UNCHANGEDSINCE), flag arithmetic, and the untagged FETCH answers
 * including the seed's "STORE 8 +FLAGS (\Deleted)". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_store.h"

static struct imap_parser *g_parser;

static int parse(const char *args, const struct imap_store_opts *o, struct imap_store_req *r,
		 const char **err)
{
	if (!g_parser)
		g_parser = imap_parser_new(NULL);
	char line[2048];
	snprintf(line, sizeof line, "t STORE 1 %s\r\n", args);
	struct imap_parse_event ev;
	size_t used = imap_parser_feed(g_parser, (const uint8_t *)line, strlen(line), &ev);
	assert_int_equal(used, strlen(line));
	if (ev.type == IMAP_PARSE_ERROR) {
		memset(r, 0, sizeof *r);
		*err = ev.msg;
		return -1;
	}
	assert_int_equal(ev.type, IMAP_PARSE_COMMAND);
	return imap_store_parse(ev.args + 1, ev.n_args - 1, o, r, err);
}

static void test_parse(void **state)
{
	(void)state;
	static const struct {
		const char *args;
		int rc;
		enum imap_store_op op;
		bool silent;
		unsigned flags;
		const char *keywords; /* joined with spaces */
	} t[] = {
		{ "FLAGS (\\Seen)", 0, IMAP_STORE_REPLACE, false, IMAP_MSGF_SEEN, "" },
		{ "+FLAGS (\\Deleted)", 0, IMAP_STORE_ADD, false, IMAP_MSGF_DELETED, "" },
		{ "-FLAGS.SILENT (\\answered \\FLAGGED)", 0, IMAP_STORE_REMOVE, true,
		  IMAP_MSGF_ANSWERED | IMAP_MSGF_FLAGGED, "" },
		{ "flags.silent ()", 0, IMAP_STORE_REPLACE, true, 0, "" },
		{ "+FLAGS \\Draft $Junk", 0, IMAP_STORE_ADD, false, IMAP_MSGF_DRAFT, "$Junk" },
		{ "+FLAGS ($Forwarded Meeting $forwarded Notice)", 0, IMAP_STORE_ADD, false, 0,
		  "$Forwarded Meeting Notice" },
		{ "FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)", 0, IMAP_STORE_REPLACE,
		  false, 0x1f, "" },
		{ "FLAGS (\\Recent)", -1, 0, false, 0, NULL },
		{ "FLAGS (\\Foo)", -1, 0, false, 0, NULL },
		{ "FLAGS (\\*)", -1, 0, false, 0, NULL },
		{ "FLAGS (a%b)", -1, 0, false, 0, NULL },
		{ "FLAGS (a]b)", -1, 0, false, 0, NULL },
		{ "FLAGS (\"quoted\")", -1, 0, false, 0, NULL },
		{ "FLAGS ((\\Seen))", -1, 0, false, 0, NULL },
		{ "FLAGS (\\Seen) extra", -1, 0, false, 0, NULL },
		{ "FLAGS", -1, 0, false, 0, NULL },
		{ "*FLAGS (\\Seen)", -1, 0, false, 0, NULL },
		{ "+FLAGS.LOUD (\\Seen)", -1, 0, false, 0, NULL },
		{ "BODY (\\Seen)", -1, 0, false, 0, NULL },
		{ "", -1, 0, false, 0, NULL },
		{ "(UNCHANGEDSINCE 5) FLAGS (\\Seen)", -1, 0, false, 0, NULL }, /* no CONDSTORE */
		{ "FLAGS (aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)", -1, 0,
		  false, 0, NULL },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_store_req r;
		const char *err = NULL;
		int rc = parse(t[i].args, NULL, &r, &err);
		if (rc != t[i].rc)
			fail_msg("%s: rc %d (%s)", t[i].args, rc, err ? err : "");
		if (rc == 0) {
			assert_int_equal(r.op, t[i].op);
			assert_int_equal(r.silent, t[i].silent);
			assert_int_equal(r.flags, t[i].flags);
			char kw[512] = "";
			for (size_t k = 0; k < r.n_keywords; k++) {
				if (k)
					strcat(kw, " ");
				strcat(kw, r.keywords[k]);
			}
			assert_string_equal(kw, t[i].keywords);
			assert_false(r.has_unchangedsince);
		} else {
			assert_non_null(err);
			assert_int_equal(r.n_keywords, 0);
		}
		imap_store_req_free(&r);
	}
	/* too many keywords: NO [LIMIT] */
	struct buf b = BUF_INIT(0);
	buf_xappend(&b, "+FLAGS (", 8);
	for (int i = 0; i < IMAP_STORE_MAX_KEYWORDS + 1; i++)
		buf_xprintf(&b, "%sk%d", i ? " " : "", i);
	buf_xappend(&b, ")", 2);
	struct imap_store_req r;
	const char *err;
	assert_int_equal(parse((char *)b.data, NULL, &r, &err), -2);
	assert_true(strncmp(err, "[LIMIT]", 7) == 0);
	imap_store_req_free(&r);
	buf_deinit(&b);
	/* UNCHANGEDSINCE under CONDSTORE (0 is allowed: it fails every message) */
	struct imap_store_opts o = { .condstore = true };
	assert_int_equal(parse("(UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)", &o, &r, &err), 0);
	assert_true(r.has_unchangedsince);
	assert_int_equal(r.unchangedsince, 12121230045ull);
	assert_true(r.silent);
	assert_true(imap_store_wants_fetch(&r));
	imap_store_req_free(&r);
	assert_int_equal(parse("(unchangedsince 0) FLAGS ()", &o, &r, &err), 0);
	assert_true(r.has_unchangedsince);
	assert_int_equal(r.unchangedsince, 0);
	imap_store_req_free(&r);
	assert_int_equal(parse("(UNCHANGEDSINCE x) FLAGS ()", &o, &r, &err), -1);
	assert_int_equal(parse("(FOO 1) FLAGS ()", &o, &r, &err), -1);
	assert_int_equal(parse("(UNCHANGEDSINCE 1 FOO 2) FLAGS ()", &o, &r, &err), -1);
}

static void test_apply(void **state)
{
	(void)state;
	struct imap_store_req r = { .flags = IMAP_MSGF_SEEN | IMAP_MSGF_DELETED };
	unsigned old = IMAP_MSGF_SEEN | IMAP_MSGF_FLAGGED;
	r.op = IMAP_STORE_ADD;
	assert_int_equal(imap_store_apply(&r, old), IMAP_MSGF_SEEN | IMAP_MSGF_FLAGGED | IMAP_MSGF_DELETED);
	r.op = IMAP_STORE_REMOVE;
	assert_int_equal(imap_store_apply(&r, old), IMAP_MSGF_FLAGGED);
	r.op = IMAP_STORE_REPLACE;
	assert_int_equal(imap_store_apply(&r, old), IMAP_MSGF_SEEN | IMAP_MSGF_DELETED);
	r.silent = true;
	assert_false(imap_store_wants_fetch(&r));
	r.silent = false;
	assert_true(imap_store_wants_fetch(&r));
}

static void test_render(void **state)
{
	(void)state;
	struct imap_store_req r;
	const char *err;
	struct buf out = BUF_INIT(0);
	/* the seed: "A007 STORE 8 +FLAGS (\Deleted)" on a seen message */
	assert_int_equal(parse("+FLAGS (\\Deleted)", NULL, &r, &err), 0);
	struct imap_msg m = { .seq = 8, .uid = 108, .flags = IMAP_MSGF_SEEN };
	m.flags = imap_store_apply(&r, m.flags);
	imap_store_render(&r, &m, false, NULL, &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data, "* 8 FETCH (FLAGS (\\Deleted \\Seen))\r\n");
	buf_clear(&out);
	/* UID STORE includes UID; keywords and \Recent (rev1 only) */
	m.keywords = "$Forwarded";
	m.recent = true;
	imap_store_render(&r, &m, true, NULL, &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data,
			    "* 8 FETCH (UID 108 FLAGS (\\Deleted \\Seen \\Recent $Forwarded))\r\n");
	buf_clear(&out);
	struct imap_store_opts o = { .rev2 = true, .condstore = true };
	m.modseq = 12121230046ull;
	imap_store_render(&r, &m, true, &o, &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data, "* 8 FETCH (UID 108 FLAGS (\\Deleted \\Seen $Forwarded) "
					      "MODSEQ (12121230046))\r\n");
	buf_clear(&out);
	imap_store_req_free(&r);
	/* .SILENT with UNCHANGEDSINCE: MODSEQ only (RFC 7162 3.1.3) */
	assert_int_equal(parse("(UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Seen)", &o, &r, &err), 0);
	imap_store_render(&r, &m, false, &o, &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data, "* 8 FETCH (MODSEQ (12121230046))\r\n");
	buf_clear(&out);
	imap_store_req_free(&r);
	/* [MODIFIED] */
	static const uint32_t failed[] = { 7, 9, 10, 11, 3 };
	imap_store_write_modified(failed, 5, &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data, "[MODIFIED 3,7,9:11]");
	buf_deinit(&out);
}

static int teardown(void **state)
{
	(void)state;
	imap_parser_free(&g_parser);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
