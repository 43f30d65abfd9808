/* SPDX-License-Identifier: MIT */
/* SEARCH (proto/imap/imap_search): every key of RFC 3501/9051 6.4.4 with a
 * positive and a negative case on an in-memory message, BAD/NO cases,
 * cost ordering (cheap keys answer without reading the file), the
 * "* SEARCH" and ESEARCH answers (RFC 4731 / rev2 default, SAVE), and the
 * seed's "SEARCH RECENT". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime/message.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_search.h"

struct mem {
	const uint8_t *p;
	size_t n;
	unsigned reads;
};

static long mem_read(void *ctx, uint64_t off, size_t len, void *buf)
{
	struct mem *m = ctx;
	m->reads++;
	if (off >= m->n)
		return 0;
	size_t k = m->n - (size_t)off < len ? m->n - (size_t)off : len;
	memcpy(buf, m->p + off, k);
	return (long)k;
}

static const char msg_a[] =
	"From: Alice Example <alice@example.org>\n"
	"To: Bob <bob@example.net>\n"
	"Cc: carol@example.com\n"
	"Bcc: dave@example.com\n"
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from the team\n"
	"Date: Wed, 25 Nov 2026 23:30:00 -0500\n"
	"X-Custom: Hello\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"The body says =C3=BCber and MEETING notes\n";

struct fixture {
	struct imap_msg msg;
	struct mem mem;
	struct buf ser;
};

static void fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof *f);
	f->mem.p = (const uint8_t *)msg_a;
	f->mem.n = strlen(msg_a);
	struct mime_message *m = mime_parse(msg_a, strlen(msg_a), NULL);
	assert_non_null(m);
	assert_int_equal(mime_message_serialize(m, &f->ser), 0);
	f->msg.wire_size = m->wire_size;
	mime_message_free(&m);
	f->msg.seq = 3;
	f->msg.uid = 30;
	f->msg.flags = IMAP_MSGF_SEEN | IMAP_MSGF_FLAGGED;
	f->msg.keywords = "$Work Project";
	f->msg.recent = true;
	f->msg.internaldate = 1795687200; /* 26-Nov-2026 10:00:00 UTC */
	f->msg.size = strlen(msg_a);
	f->msg.modseq = 50;
	f->msg.mime = f->ser.data;
	f->msg.mime_len = f->ser.len;
	f->msg.read = mem_read;
	f->msg.read_ctx = &f->mem;
}

static struct imap_parser *g_parser;

static const struct imap_arg *cmd_args(const char *args, size_t *n_r)
{
	if (!g_parser)
		g_parser = imap_parser_new(NULL);
	char line[4096];
	snprintf(line, sizeof line, "t SEARCH %s\r\n", args);
	struct imap_parse_event ev;
	size_t off = 0, len = strlen(line);
	for (;;) {
		off += imap_parser_feed(g_parser, (const uint8_t *)line + off, len - off, &ev);
		if (ev.type != IMAP_PARSE_CONTINUATION)
			break;
		imap_parser_literal_accept(g_parser);
	}
	assert_int_equal(off, len);
	if (ev.type == IMAP_PARSE_ERROR)
		return NULL;
	assert_int_equal(ev.type, IMAP_PARSE_COMMAND);
	*n_r = ev.n_args;
	return ev.args;
}

static int compile(const char *args, bool uid, const struct imap_search_opts *o,
		   struct imap_search **prog, const char **err)
{
	size_t n = 0;
	const struct imap_arg *a = cmd_args(args, &n);
	if (!a) {
		*prog = NULL;
		*err = "reader";
		return -1;
	}
	return imap_search_parse(a, n, uid, o, prog, err);
}

static void test_keys(void **state)
{
	(void)state;
	static const struct {
		const char *key;
		bool match;
	} t[] = {
		{ "ALL", true },
		{ "NOT ALL", false },
		{ "ANSWERED", false },
		{ "UNANSWERED", true },
		{ "BCC dave", true },
		{ "BCC alice", false },
		{ "BEFORE 27-Nov-2026", true },
		{ "BEFORE 26-Nov-2026", false },
		{ "BEFORE \"27-nov-2026\"", true },
		{ "BODY \"\xc3\xbc" "ber\"", true },
		{ "BODY meeting", true },
		{ "BODY {7}\r\nMeeTinG", true },
		{ "BODY xyz", false },
		{ "BODY alice", false },
		{ "CC carol", true },
		{ "CC bob", false },
		{ "DELETED", false },
		{ "UNDELETED", true },
		{ "DRAFT", false },
		{ "UNDRAFT", true },
		{ "FLAGGED", true },
		{ "UNFLAGGED", false },
		{ "FROM \"alice example\"", true },
		{ "FROM ALICE@EXAMPLE.ORG", true },
		{ "FROM bob", false },
		{ "HEADER X-Custom hello", true },
		{ "HEADER x-custom bye", false },
		{ "HEADER X-Custom \"\"", true },
		{ "HEADER X-Missing \"\"", false },
		{ "KEYWORD $Work", true },
		{ "KEYWORD project", true },
		{ "KEYWORD $Other", false },
		{ "KEYWORD \\Seen", true },
		{ "KEYWORD \\Draft", false },
		{ "UNKEYWORD $Work", false },
		{ "UNKEYWORD $Other", true },
		{ "LARGER 10", true },
		{ "LARGER 100000", false },
		{ "SMALLER 100000", true },
		{ "SMALLER 10", false },
		{ "NEW", false },
		{ "OLD", false },
		{ "RECENT", true },
		{ "NOT RECENT", false },
		{ "NOT SEEN", false },
		{ "NOT NOT SEEN", true },
		{ "ON 26-Nov-2026", true },
		{ "ON 25-Nov-2026", false },
		{ "OR ANSWERED FLAGGED", true },
		{ "OR ANSWERED DELETED", false },
		{ "OR (ANSWERED) OR DRAFT BODY team", false },
		{ "OR (ANSWERED) OR DRAFT SUBJECT team", true },
		{ "SEEN", true },
		{ "UNSEEN", false },
		{ "SENTBEFORE 26-Nov-2026", true },
		{ "SENTBEFORE 25-Nov-2026", false },
		{ "SENTON 25-Nov-2026", true },
		{ "SENTON 26-Nov-2026", false },
		{ "SENTSINCE 25-Nov-2026", true },
		{ "SENTSINCE 26-Nov-2026", false },
		{ "SINCE 26-Nov-2026", true },
		{ "SINCE 27-Nov-2026", false },
		{ "SUBJECT \"gr\xc3\xbc\xc3\x9f" "e\"", true },
		{ "SUBJECT \"GR\xc3\x9c\xc3\x9f" "E\"", true },
		{ "SUBJECT TEAM", true },
		{ "SUBJECT nope", false },
		{ "TEXT \"x-custom: hello\"", true },
		{ "TEXT \"\xc3\xbc" "ber\"", true },
		{ "TEXT zzz", false },
		{ "TO bob", true },
		{ "TO carol", false },
		{ "UID 30", true },
		{ "UID 1:29", false },
		{ "UID 25:*", true },
		{ "UID $", true },
		{ "3", true },
		{ "1:2", false },
		{ "2:*", true },
		{ "$", false },
		{ "(FLAGGED SEEN)", true },
		{ "(FLAGGED DRAFT)", false },
		{ "NOT (DRAFT)", true },
		{ "FLAGGED SEEN UID 30 3 LARGER 1", true },
		{ "FLAGGED SEEN UID 30 3 LARGER 1 DRAFT", false },
		{ "CHARSET UTF-8 ALL", true },
		{ "CHARSET us-ascii UNSEEN", false },
		{ "RETURN (COUNT) CHARSET \"UTF-8\" SEEN", true },
		{ "MODSEQ 50", true },
		{ "MODSEQ 51", false },
		{ "MODSEQ \"/flags/\\\\seen\" all 40", true },
		{ "MODSEQ \"/flags/\\\\seen\" priv 60", false },
	};
	struct fixture f;
	fixture_init(&f);
	struct imap_seqset saved = { 0 };
	imap_seqset_add_range(&saved, 29, 31);
	struct imap_search_opts o = { .n_msgs = 5, .max_uid = 40, .condstore = true,
				      .saved_uid = &saved };
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct imap_search *p;
		const char *err;
		if (compile(t[i].key, false, &o, &p, &err) != 0)
			fail_msg("%s: %s", t[i].key, err);
		int r = imap_search_match(p, &f.msg);
		if (r != (t[i].match ? 1 : 0))
			fail_msg("%s: got %d", t[i].key, r);
		imap_search_free(&p);
		imap_msg_release(&f.msg);
	}
	imap_seqset_free(&saved);
	buf_deinit(&f.ser);
}

static void test_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"FOO", "BEFORE", "BEFORE 32-Nov-2026", "BEFORE 1-Foo-2026", "BEFORE 1-Nov-26",
		"LARGER x", "LARGER", "NOT", "OR SEEN", "()", "UID", "UID abc", "KEYWORD",
		"HEADER", "HEADER X", "HEADER \"\" x", "RETURN (FOO) ALL", "RETURN ALL", "CHARSET",
		"CHARSET UTF-8", "0", "6", "1:6", "MODSEQ x", "SUBJECT", "(SEEN (DRAFT) FOO)",
		"RETURN (MIN)", "ALL ALL )",
	};
	struct imap_search_opts o = { .n_msgs = 5, .max_uid = 40 };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct imap_search *p = NULL;
		const char *err = NULL;
		if (compile(bad[i], false, &o, &p, &err) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_null(p);
		assert_non_null(err);
	}
	/* MODSEQ only with CONDSTORE */
	struct imap_search *p = NULL;
	const char *err = NULL;
	assert_int_equal(compile("MODSEQ 5", false, &o, &p, &err), -1);
	/* deep nesting is bounded */
	struct buf deep = BUF_INIT(0);
	for (int i = 0; i < 200; i++)
		buf_xappend(&deep, "NOT ", 4);
	buf_xappend(&deep, "SEEN", 4);
	buf_xappend(&deep, "", 1);
	assert_int_equal(compile((char *)deep.data, false, &o, &p, &err), -1);
	buf_deinit(&deep);
	/* unknown charsets: NO [BADCHARSET] */
	assert_int_equal(compile("CHARSET KOI8-R ALL", false, &o, &p, &err), -2);
	assert_string_equal(err, "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
	assert_null(p);
	/* "*" in an empty mailbox matches nothing */
	o.n_msgs = 0;
	o.max_uid = 0;
	assert_int_equal(compile("1:*", false, &o, &p, &err), 0);
	struct fixture f;
	fixture_init(&f);
	assert_int_equal(imap_search_match(p, &f.msg), 0);
	imap_search_free(&p);
	buf_deinit(&f.ser);
}

/* Flag and size keys answer first; the file is read only when needed, and
 * at most once per message for header and body. */
static void test_cost_order(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f);
	struct imap_search_opts o = { .n_msgs = 5, .max_uid = 40 };
	struct imap_search *p;
	const char *err;
	assert_int_equal(compile("BODY meeting SUBJECT team UNSEEN", false, &o, &p, &err), 0);
	assert_true(imap_search_needs_file(p));
	f.mem.reads = 0;
	assert_int_equal(imap_search_match(p, &f.msg), 0);
	assert_int_equal(f.mem.reads, 0);
	imap_search_free(&p);
	imap_msg_release(&f.msg);
	assert_int_equal(compile("BODY meeting SUBJECT team SEEN FROM alice TEXT notes", false, &o,
				 &p, &err), 0);
	f.mem.reads = 0;
	assert_int_equal(imap_search_match(p, &f.msg), 1);
	assert_int_equal(f.mem.reads, 2); /* header once, whole message once */
	imap_search_free(&p);
	imap_msg_release(&f.msg);
	assert_int_equal(compile("SEEN FLAGGED", false, &o, &p, &err), 0);
	assert_false(imap_search_needs_file(p));
	imap_search_free(&p);
	buf_deinit(&f.ser);
}

static char *render(const char *args, bool uid, bool rev2, const uint32_t *hits, size_t n,
		    struct imap_seqset *saved_out)
{
	struct imap_search_opts o = { .n_msgs = 100, .max_uid = 100, .rev2 = rev2 };
	struct imap_search *p;
	const char *err;
	assert_int_equal(compile(args, uid, &o, &p, &err), 0);
	struct imap_search_result r;
	imap_search_result_init(&r);
	for (size_t i = 0; i < n; i++) {
		struct imap_msg m = { .seq = hits[i], .uid = hits[i] };
		imap_search_result_add(p, &r, &m);
	}
	struct buf out = BUF_INIT(0);
	imap_search_render(p, &r, "A282", &out);
	if (saved_out) {
		assert_true(imap_search_saves(p));
		imap_search_saved_set(p, &r, saved_out);
	}
	buf_xappend(&out, "", 1);
	imap_search_result_free(&r);
	imap_search_free(&p);
	return (char *)out.data;
}

static void test_render(void **state)
{
	(void)state;
	static const uint32_t h[] = { 2, 10, 11, 12, 40 };
	static const struct {
		const char *args;
		bool uid, rev2;
		size_t n;
		const char *want;
	} t[] = {
		{ "ALL", false, false, 5, "* SEARCH 2 10 11 12 40\r\n" },
		{ "ALL", true, false, 0, "* SEARCH\r\n" },
		{ "ALL", false, true, 5, "* ESEARCH (TAG \"A282\") ALL 2,10:12,40\r\n" },
		{ "ALL", true, true, 5, "* ESEARCH (TAG \"A282\") UID ALL 2,10:12,40\r\n" },
		{ "ALL", false, true, 0, "* ESEARCH (TAG \"A282\")\r\n" },
		{ "RETURN () ALL", false, false, 3, "* ESEARCH (TAG \"A282\") ALL 2,10:11\r\n" },
		{ "RETURN (MIN COUNT) ALL", false, false, 5, "* ESEARCH (TAG \"A282\") MIN 2 COUNT 5\r\n" },
		{ "RETURN (MIN MAX ALL COUNT) ALL", true, false, 5,
		  "* ESEARCH (TAG \"A282\") UID MIN 2 MAX 40 ALL 2,10:12,40 COUNT 5\r\n" },
		{ "RETURN (COUNT MIN) ALL", false, true, 0, "* ESEARCH (TAG \"A282\") COUNT 0\r\n" },
		{ "RETURN (SAVE) ALL", false, true, 5, "" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char *s = render(t[i].args, t[i].uid, t[i].rev2, h, t[i].n, NULL);
		if (strcmp(s, t[i].want) != 0)
			fail_msg("%s: got %s", t[i].args, s);
		free(s);
	}
	struct imap_seqset saved = { 0 };
	char *s = render("RETURN (SAVE MIN MAX) ALL", false, false, h, 5, &saved);
	assert_string_equal(s, "* ESEARCH (TAG \"A282\") MIN 2 MAX 40\r\n");
	free(s);
	assert_int_equal(imap_seqset_count(&saved), 2);
	assert_true(imap_seqset_contains(&saved, 2) && imap_seqset_contains(&saved, 40));
	s = render("RETURN (SAVE COUNT) ALL", false, false, h, 5, &saved);
	free(s);
	assert_int_equal(imap_seqset_count(&saved), 5);
	imap_seqset_free(&saved);
	/* MODSEQ key: the highest modseq is reported (RFC 7162 3.1.5) */
	struct imap_search_opts o = { .n_msgs = 9, .max_uid = 9, .condstore = true };
	struct imap_search *p;
	const char *err;
	assert_int_equal(compile("MODSEQ 5", false, &o, &p, &err), 0);
	struct imap_search_result r;
	imap_search_result_init(&r);
	struct imap_msg m1 = { .seq = 1, .modseq = 7 }, m2 = { .seq = 4, .modseq = 9 };
	assert_int_equal(imap_search_match(p, &m1), 1);
	imap_search_result_add(p, &r, &m1);
	imap_search_result_add(p, &r, &m2);
	struct buf out = BUF_INIT(0);
	imap_search_render(p, &r, "x", &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data, "* SEARCH 1 4 (MODSEQ 9)\r\n");
	buf_deinit(&out);
	imap_search_result_free(&r);
	imap_search_free(&p);
}

/* The seed's second session: "SEARCH RECENT" over 19 messages, 18 and 19
 * recent, answers "* SEARCH 18 19". */
static void test_seed(void **state)
{
	(void)state;
	struct imap_search_opts o = { .n_msgs = 19, .max_uid = 19 };
	struct imap_search *p;
	const char *err;
	assert_int_equal(compile("RECENT", false, &o, &p, &err), 0);
	struct imap_search_result r;
	imap_search_result_init(&r);
	for (uint32_t i = 1; i <= 19; i++) {
		struct imap_msg m = { .seq = i, .uid = 100 + i, .recent = i >= 18 };
		if (imap_search_match(p, &m))
			imap_search_result_add(p, &r, &m);
	}
	struct buf out = BUF_INIT(0);
	imap_search_render(p, &r, "A005", &out);
	buf_xappend(&out, "", 1);
	assert_string_equal((char *)out.data, "* SEARCH 18 19\r\n");
	buf_deinit(&out);
	imap_search_result_free(&r);
	imap_search_free(&p);
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
		cmocka_unit_test(test_keys),   cmocka_unit_test(test_errors),
		cmocka_unit_test(test_cost_order), cmocka_unit_test(test_render),
		cmocka_unit_test(test_seed),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
