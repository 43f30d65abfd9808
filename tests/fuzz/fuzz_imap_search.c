/* SPDX-License-Identifier: MIT */
/* Fuzz SEARCH (proto/imap/imap_search): compile, evaluate, render.
 *
 * Input: 1 options byte, then the SEARCH arguments (fed to the IMAP reader
 * as "t SEARCH <input>\r\n", literals accepted).
 *   opt & 1 UID SEARCH; opt & 2 rev2; opt & 4 CONDSTORE; opt & 8 a saved
 *   "$"; opt & 16 an empty mailbox ("*" = 0)
 * Properties: no crash or leak; evaluation is deterministic; when the
 * arguments are a plain key list, "NOT (<keys>)" matches exactly the
 * messages "<keys>" does not; the answer is one line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_search.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const msgs[3] = {
	"From: Alice Example <alice@example.org>\nTo: Bob <bob@example.net>\nCc: carol@example.com\n"
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= team\nDate: Wed, 25 Nov 2026 23:30:00 -0500\n"
	"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
	"The body says =C3=BCber and MEETING notes\n",
	"From: a@b\nSubject: mp\nContent-Type: multipart/alternative; boundary=B\n\n--B\n"
	"Content-Type: text/plain\n\nplain part\n--B\nContent-Type: text/html\n\n<b>html</b>\n--B--\n",
	"Subject: no date\n\nbody\n",
};

struct mem {
	const uint8_t *p;
	size_t n;
};

static long mem_read(void *ctx, uint64_t off, size_t len, void *buf)
{
	struct mem *m = ctx;
	if (off >= m->n)
		return 0;
	size_t k = m->n - (size_t)off < len ? m->n - (size_t)off : len;
	memcpy(buf, m->p + off, k);
	return (long)k;
}

/* Parses "t SEARCH <text>"; returns the parser (caller frees) or NULL. */
static struct imap_parser *read_cmd(const uint8_t *text, size_t n, struct imap_parse_event *ev)
{
	struct buf line = BUF_INIT(0);
	buf_xappend(&line, "t SEARCH ", 9);
	buf_xappend(&line, text, n);
	buf_xappend(&line, "\r\n", 2);
	struct imap_parser *p = imap_parser_new(NULL);
	size_t off = 0;
	for (;;) {
		off += imap_parser_feed(p, line.data + off, line.len - off, ev);
		if (ev->type != IMAP_PARSE_CONTINUATION)
			break;
		imap_parser_literal_accept(p);
	}
	buf_deinit(&line);
	if (ev->type != IMAP_PARSE_COMMAND || off != line.len) {
		imap_parser_free(&p);
		return NULL;
	}
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	uint8_t opt = data[0];
	struct imap_parse_event ev;
	struct imap_parser *p = read_cmd(data + 1, size - 1, &ev);
	if (!p)
		return 0;
	struct imap_seqset saved = { 0 };
	imap_seqset_add_range(&saved, 2, 3);
	bool empty = (opt & 16) != 0;
	struct imap_search_opts o = { .rev2 = (opt & 2) != 0, .condstore = (opt & 4) != 0,
				      .n_msgs = empty ? 0 : 3, .max_uid = empty ? 0 : 30 };
	if (opt & 8)
		o.saved_seq = o.saved_uid = &saved;
	bool uid = opt & 1;
	struct imap_search *prog = NULL;
	const char *err = NULL;
	int rc = imap_search_parse(ev.args, ev.n_args, uid, &o, &prog, &err);
	if (rc < 0) {
		ASSERT(prog == NULL && err != NULL && (rc == -1 || rc == -2));
		imap_parser_free(&p);
		imap_seqset_free(&saved);
		return 0;
	}
	/* the negated program, when the input is a plain key list */
	struct imap_search *neg = NULL;
	struct imap_parser *p2 = NULL;
	struct imap_parse_event ev2;
	if (ev.n_args && !imap_arg_atom_equals(&ev.args[0], "RETURN") &&
	    !imap_arg_atom_equals(&ev.args[0], "CHARSET")) {
		struct buf t = BUF_INIT(0);
		buf_xappend(&t, "NOT (", 5);
		buf_xappend(&t, data + 1, size - 1);
		buf_xappend(&t, ")", 1);
		p2 = read_cmd(t.data, t.len, &ev2);
		if (p2 && imap_search_parse(ev2.args, ev2.n_args, uid, &o, &neg, &err) < 0)
			neg = NULL;
		buf_deinit(&t);
	}
	struct imap_search_result res;
	imap_search_result_init(&res);
	for (uint32_t i = 0; i < 3; i++) {
		struct mem mem = { (const uint8_t *)msgs[i], strlen(msgs[i]) };
		struct imap_msg msg = { .seq = i + 1, .uid = 10 * (i + 1), .flags = i,
					.keywords = i ? "$A b" : NULL, .recent = i == 2,
					.internaldate = 1795687200 + 86400 * (int64_t)i,
					.tz_min = 60 * (int)i, .size = mem.n, .wire_size = mem.n + 5,
					.modseq = 5 + i, .read = mem_read, .read_ctx = &mem };
		int m1 = imap_search_match(prog, &msg);
		imap_msg_release(&msg);
		int m2 = imap_search_match(prog, &msg);
		ASSERT(m1 == m2 && (m1 == 0 || m1 == 1));
		if (neg)
			ASSERT(imap_search_match(neg, &msg) == !m1);
		if (m1)
			imap_search_result_add(prog, &res, &msg);
		imap_msg_release(&msg);
	}
	struct buf out = BUF_INIT(0);
	imap_search_render(prog, &res, "t", &out);
	if (out.len) {
		ASSERT(out.len >= 4 && memcmp(out.data + out.len - 2, "\r\n", 2) == 0);
		ASSERT(buf_find_lf(&out, 0) == (ssize_t)out.len - 1);
	}
	struct imap_seqset sv = { 0 };
	if (imap_search_saves(prog))
		imap_search_saved_set(prog, &res, &sv);
	imap_seqset_free(&sv);
	buf_deinit(&out);
	imap_search_result_free(&res);
	imap_search_free(&neg);
	imap_search_free(&prog);
	imap_parser_free(&p2);
	imap_parser_free(&p);
	imap_seqset_free(&saved);
	return 0;
}
