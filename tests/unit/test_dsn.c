/* SPDX-License-Identifier: MIT */
/* The DSN builder: every RET choice and original kind (whole, too big,
 * truncated, lost, 8-bit, SMTPUTF8), null sender, delay warnings, ORCPT and
 * ENVID present or not, Status derivation, Diagnostic-Code folding and
 * injection attempts, xtext. Each output is parsed back with src/mime/ and
 * its message/delivery-status body checked against RFC 3464's ABNF. The
 * NOTIFY rules (RFC 3461 5.2) are checked through the queue, which applies
 * them, for every NOTIFY value and outcome. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "mime/message.h"
#include "queue/dsn.h"
#include "queue/queue.h"

#define T0 1700000000LL

static const char orig_ascii[] = "From: Alice <a@example.org>\n"
				 "To: b@example.net\n"
				 "Subject: lunch\n"
				 "Message-ID: <orig-1@example.org>\n"
				 "\n"
				 "See you at noon.\n"
				 "--=_tern_0000000000000000\n";

static const char orig_utf8[] = "From: J\xc3\xb6rg <j\xc3\xb6rg@example.org>\n"
				"To: b@example.net\n"
				"Subject: gr\xc3\xbc\xc3\x9f"
				"e\n"
				"\n"
				"Hall\xc3\xb6\n";

static const char orig_8bit[] = "From: a@example.org\n"
				"Subject: x\n"
				"Content-Type: text/plain; charset=iso-8859-1\n"
				"Content-Transfer-Encoding: 8bit\n"
				"\n"
				"caf\xe9\n";

/* ---- helpers: RFC 3464 ABNF checks ---- */

struct field {
	char name[64];
	char value[2048];
};

struct group {
	struct field f[32];
	size_t n;
};

/* Splits a delivery-status body into groups of unfolded fields. */
static size_t split_groups(const uint8_t *p, size_t n, struct group *g, size_t max)
{
	size_t ng = 0;
	bool in_group = false;
	size_t i = 0;
	while (i < n) {
		const uint8_t *nl = memchr(p + i, '\n', n - i);
		size_t len = nl != NULL ? (size_t)(nl - (p + i)) : n - i;
		const char *line = (const char *)p + i;
		i += len + 1;
		if (len == 0) {
			in_group = false;
			continue;
		}
		if (line[0] == ' ' || line[0] == '\t') {
			assert_true(in_group && g[ng - 1].n > 0); /* continuation */
			struct field *f = &g[ng - 1].f[g[ng - 1].n - 1];
			size_t vl = strlen(f->value);
			assert_true(vl + len + 1 < sizeof f->value);
			memcpy(f->value + vl, line, len);
			f->value[vl + len] = '\0';
			continue;
		}
		if (!in_group) {
			assert_true(ng < max);
			memset(&g[ng], 0, sizeof g[ng]);
			ng++;
			in_group = true;
		}
		struct group *cg = &g[ng - 1];
		assert_true(cg->n < N_ELEMENTS(cg->f));
		const char *colon = memchr(line, ':', len);
		assert_non_null(colon);
		size_t nlen = (size_t)(colon - line);
		assert_true(nlen > 0 && nlen < sizeof cg->f[0].name);
		memcpy(cg->f[cg->n].name, line, nlen);
		const char *v = colon + 1;
		size_t vlen = len - nlen - 1;
		while (vlen > 0 && *v == ' ') {
			v++;
			vlen--;
		}
		assert_true(vlen < sizeof cg->f[0].value);
		memcpy(cg->f[cg->n].value, v, vlen);
		cg->n++;
	}
	return ng;
}

/* address-type / mta-name-type / diagnostic-type: atom ";" *text */
static void check_typed(const char *v)
{
	const char *semi = strchr(v, ';');
	assert_non_null(semi);
	assert_true(semi > v);
	for (const char *c = v; c < semi; c++)
		assert_true((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			    (*c >= '0' && *c <= '9') || *c == '-');
}

static bool status_code_ok(const char *s)
{
	if (!(s[0] >= '2' && s[0] <= '5') || s[1] != '.')
		return false;
	const char *p = s + 2;
	for (int k = 0; k < 2; k++) {
		size_t n = 0;
		while (p[n] >= '0' && p[n] <= '9')
			n++;
		if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
			return false;
		p += n;
		if (k == 0 && *p++ != '.')
			return false;
	}
	return *p == '\0' || *p == ' ';
}

static void check_date(const char *v)
{
	struct mime_date d;
	assert_int_equal(mime_date_parse((const uint8_t *)v, strlen(v), &d), 0);
	assert_true(d.tz_known);
	size_t n = strlen(v); /* numeric zone: [+-]HHMM (RFC 3464 2.2.5) */
	assert_true(n > 5 && (v[n - 5] == '+' || v[n - 5] == '-'));
}

static int rank_of(const char *name, const char *const *order, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_strcasecmp(name, order[i]) == 0)
			return (int)i;
	assert_true(ascii_strncasecmp(name, "X-", 2) == 0); /* only extension fields otherwise */
	return (int)n;
}

/* RFC 3464 2.1-2.3: per-message fields, then per-recipient groups, in ABNF order. */
static void check_delivery_status(const uint8_t *p, size_t n, size_t want_rcpts, bool global)
{
	if (!global)
		for (size_t i = 0; i < n; i++)
			assert_true(p[i] < 0x80); /* 2.1: 7bit */
	static struct group g[64];
	size_t ng = split_groups(p, n, g, N_ELEMENTS(g));
	assert_int_equal(ng, 1 + want_rcpts);
	static const char *const msg_order[] = {"Original-Envelope-Id", "Reporting-MTA",
						"DSN-Gateway", "Received-From-MTA", "Arrival-Date"};
	static const char *const rcpt_order[] = {"Original-Recipient",
						 "Final-Recipient",
						 "Action",
						 "Status",
						 "Remote-MTA",
						 "Diagnostic-Code",
						 "Last-Attempt-Date",
						 "Final-Log-ID",
						 "Will-Retry-Until"};
	int last = -1;
	bool have_rmta = false;
	for (size_t i = 0; i < g[0].n; i++) {
		int r = rank_of(g[0].f[i].name, msg_order, N_ELEMENTS(msg_order));
		assert_true(r > last || r == (int)N_ELEMENTS(msg_order));
		last = r;
		if (r == 1) {
			have_rmta = true;
			check_typed(g[0].f[i].value);
		}
		if (r == 4)
			check_date(g[0].f[i].value);
	}
	assert_true(have_rmta);
	for (size_t k = 1; k < ng; k++) {
		last = -1;
		bool fr = false, action = false, status = false, delayed = false, wru = false;
		for (size_t i = 0; i < g[k].n; i++) {
			const struct field *f = &g[k].f[i];
			int r = rank_of(f->name, rcpt_order, N_ELEMENTS(rcpt_order));
			assert_true(r > last || r == (int)N_ELEMENTS(rcpt_order));
			last = r;
			switch (r) {
			case 0:
			case 1:
			case 4:
			case 5:
				check_typed(f->value);
				fr |= r == 1;
				break;
			case 2:
				action = true;
				assert_true(
				    !strcmp(f->value, "failed") || !strcmp(f->value, "delayed") ||
				    !strcmp(f->value, "delivered") ||
				    !strcmp(f->value, "relayed") || !strcmp(f->value, "expanded"));
				delayed = !strcmp(f->value, "delayed");
				break;
			case 3:
				status = true;
				assert_true(status_code_ok(f->value));
				break;
			case 6:
				check_date(f->value);
				break;
			case 8:
				check_date(f->value);
				wru = true;
				break;
			default:
				break;
			}
		}
		assert_true(fr && action && status);
		assert_true(!wru || delayed); /* 2.3.9: only in "delayed" DSNs */
	}
}

/* ---- helpers: building and structure ---- */

struct built {
	struct buf out;
	struct dsn_result res;
	struct mime_message *m;
};

static void build(const struct dsn_input *in, struct built *b)
{
	memset(b, 0, sizeof *b);
	buf_init(&b->out, 0);
	assert_int_equal(dsn_build(in, &b->out, &b->res), 1);
	b->m = mime_parse(b->out.data, b->out.len, NULL);
	assert_non_null(b->m);
	assert_int_equal(b->m->flags & (MIME_MSG_BROKEN | MIME_MSG_NUL), 0);
}

static void built_free(struct built *b)
{
	mime_message_free(&b->m);
	buf_deinit(&b->out);
}

static bool str_is(const struct mime_message *m, struct mime_str s, const char *want)
{
	size_t l;
	const char *p = mime_str_ptr(m, s, &l);
	return p != NULL && ascii_strcasecmp(p, want) == 0;
}

static const struct mime_part *child(const struct mime_message *m, uint32_t parent, size_t k)
{
	uint32_t c = m->parts[parent].first_child;
	while (k-- > 0 && c != MIME_NIL)
		c = m->parts[c].next;
	assert_int_not_equal(c, MIME_NIL);
	return &m->parts[c];
}

/* Value of a top-level header field (unfolded) or NULL. */
static char *top_header(const struct built *b, const char *name)
{
	const struct mime_part *root = &b->m->parts[0];
	const uint8_t *h = b->out.data + root->header.off;
	size_t pos = 0, nl, vl;
	const uint8_t *np, *vp;
	while (mime_header_next(h, root->header.len, &pos, &np, &nl, &vp, &vl) == 1) {
		if (nl == strlen(name) && ascii_prefix_ci(np, nl, name)) {
			struct buf v = BUF_INIT(0);
			mime_unfold(vp, vl, &v);
			char *s = xstrdup(buf_cstr(&v));
			buf_deinit(&v);
			return s;
		}
	}
	return NULL;
}

/* The common structure of every DSN; returns the number of parts (2 or 3). */
static size_t check_structure(const struct built *b, const char *sender, size_t rcpts, bool global)
{
	const struct mime_message *m = b->m;
	const struct mime_part *root = &m->parts[0];
	assert_true(str_is(m, root->type, "multipart"));
	assert_true(str_is(m, root->subtype, "report"));
	const struct mime_param *rt =
	    mime_param_find(m, root->params, root->n_params, "report-type");
	assert_non_null(rt);
	assert_true(str_is(m, rt->value, "delivery-status"));
	const struct mime_param *bd = mime_param_find(m, root->params, root->n_params, "boundary");
	assert_non_null(bd);
	assert_true(root->n_children == 2 || root->n_children == 3);
	assert_int_equal(root->flags & MIME_PART_NO_END_BOUNDARY, 0);

	char *v = top_header(b, "From");
	assert_string_equal(v, "Mail Delivery System <MAILER-DAEMON@mx.example.org>");
	free(v);
	v = top_header(b, "To");
	char *want_to = xasprintf("<%s>", sender);
	assert_string_equal(v, want_to);
	free(want_to);
	free(v);
	v = top_header(b, "Auto-Submitted");
	assert_string_equal(v, "auto-replied");
	free(v);
	v = top_header(b, "MIME-Version");
	assert_string_equal(v, "1.0");
	free(v);
	v = top_header(b, "Message-ID");
	assert_non_null(v);
	assert_true(v[0] == '<' && strchr(v, '@') != NULL && v[strlen(v) - 1] == '>');
	free(v);
	v = top_header(b, "Date");
	check_date(v);
	free(v);
	v = top_header(b, "Subject");
	assert_non_null(v);
	free(v);

	const struct mime_part *p1 = child(m, 0, 0);
	assert_true(str_is(m, p1->type, "text"));
	assert_true(str_is(m, p1->subtype, "plain"));
	const struct mime_part *p2 = child(m, 0, 1);
	assert_true(str_is(m, p2->type, "message"));
	assert_true(str_is(m, p2->subtype, global ? "global-delivery-status" : "delivery-status"));
	check_delivery_status(b->out.data + p2->body.off, p2->body.len, rcpts, global);
	return root->n_children;
}

static const struct mime_part *third(const struct built *b)
{
	return child(b->m, 0, 2);
}

static struct dsn_rcpt failed_rcpt(void)
{
	return (struct dsn_rcpt){
	    .addr = "b@example.net",
	    .action = QUEUE_ACTION_FAILED,
	    .code = 550,
	    .enhanced = "5.1.1",
	    .text = "550 5.1.1 <b@example.net>: no such user",
	    .remote = "mx.example.net",
	    .last_attempt = T0 + 60,
	};
}

static struct dsn_input base_input(const struct dsn_rcpt *r, size_t n, const char *orig)
{
	return (struct dsn_input){
	    .hostname = "mx.example.org",
	    .sender = "a@example.org",
	    .queue_id = "0123456789abcdef",
	    .arrival = T0,
	    .now = T0 + 120,
	    .rcpts = r,
	    .n_rcpts = n,
	    .orig = (const uint8_t *)orig,
	    .orig_len = orig != NULL ? strlen(orig) : 0,
	};
}

static bool contains(const struct buf *b, const char *s)
{
	return memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* ---- tests ---- */

/* RET and the kind of original decide part 3 (RFC 3461 4.3, 6.2; RFC 6533). */
static void test_ret_table(void **state)
{
	(void)state;
	static const struct {
		enum queue_ret ret;
		enum queue_action action;
		const char *orig;
		bool smtputf8, truncated;
		uint64_t max_return;
		const char *want_type, *want_sub; /* NULL: no third part */
		bool want_8bit;
	} cases[] = {
	    {QUEUE_RET_UNSPEC, QUEUE_ACTION_FAILED, orig_ascii, false, false, 0, "message",
	     "rfc822", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_FAILED, orig_ascii, false, false, 0, "message", "rfc822",
	     false},
	    {QUEUE_RET_HDRS, QUEUE_ACTION_FAILED, orig_ascii, false, false, 0, "text",
	     "rfc822-headers", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_DELAYED, orig_ascii, false, false, 0, "text",
	     "rfc822-headers", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_DELIVERED, orig_ascii, false, false, 0, "text",
	     "rfc822-headers", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_RELAYED, orig_ascii, false, false, 0, "text",
	     "rfc822-headers", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_FAILED, orig_ascii, false, false, 20, "text",
	     "rfc822-headers", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_FAILED, orig_ascii, false, true, 0, "text",
	     "rfc822-headers", false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_FAILED, NULL, false, false, 0, NULL, NULL, false},
	    {QUEUE_RET_FULL, QUEUE_ACTION_FAILED, orig_utf8, true, false, 0, "message", "global",
	     true},
	    {QUEUE_RET_HDRS, QUEUE_ACTION_FAILED, orig_utf8, true, false, 0, "message",
	     "global-headers", true},
	    {QUEUE_RET_FULL, QUEUE_ACTION_FAILED, orig_8bit, false, false, 0, "message", "rfc822",
	     true},
	    {QUEUE_RET_HDRS, QUEUE_ACTION_FAILED, orig_8bit, false, false, 0, "text",
	     "rfc822-headers", false},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct dsn_rcpt r = failed_rcpt();
		r.action = cases[i].action;
		if (r.action != QUEUE_ACTION_FAILED) {
			r.code = r.action == QUEUE_ACTION_DELAYED ? 450 : 250;
			r.enhanced = NULL;
			r.text = r.action == QUEUE_ACTION_DELAYED ? "450 busy" : "250 ok";
		}
		if (r.action == QUEUE_ACTION_DELAYED)
			r.will_retry_until = T0 + 5 * 86400;
		struct dsn_input in = base_input(&r, 1, cases[i].orig);
		in.ret = cases[i].ret;
		in.smtputf8 = cases[i].smtputf8;
		in.eightbit = cases[i].orig == orig_8bit;
		in.orig_truncated = cases[i].truncated;
		in.max_return = cases[i].max_return;
		struct built b;
		build(&in, &b);
		size_t parts = check_structure(&b, "a@example.org", 1, false);
		if (cases[i].want_type == NULL) {
			assert_int_equal(parts, 2);
		} else {
			assert_int_equal(parts, 3);
			const struct mime_part *p3 = third(&b);
			assert_true(str_is(b.m, p3->type, cases[i].want_type));
			assert_true(str_is(b.m, p3->subtype, cases[i].want_sub));
			const uint8_t *body = b.out.data + p3->body.off;
			bool whole = !strcmp(cases[i].want_sub, "rfc822") ||
				     !strcmp(cases[i].want_sub, "global");
			const char *o = cases[i].orig;
			size_t hl = (size_t)(strstr(o, "\n\n") - o) + 1;
			if (whole) {
				/* the original, byte for byte, parsed as an embedded message */
				assert_int_equal(p3->body.len, strlen(o));
				assert_memory_equal(body, o, strlen(o));
				assert_true(p3->flags & MIME_PART_MESSAGE);
			} else {
				assert_int_equal(p3->body.len, hl);
				assert_memory_equal(body, o, hl);
			}
		}
		assert_int_equal(b.res.eightbit, cases[i].want_8bit);
		assert_false(b.res.smtputf8);
		assert_int_equal(b.res.has_failed, cases[i].action == QUEUE_ACTION_FAILED);
		/* Will-Retry-Until only for delay warnings */
		assert_int_equal(contains(&b.out, "Will-Retry-Until:"),
				 cases[i].action == QUEUE_ACTION_DELAYED);
		built_free(&b);
	}
}

static void test_null_sender_and_nothing(void **state)
{
	(void)state;
	struct dsn_rcpt r = failed_rcpt();
	struct dsn_input in = base_input(&r, 1, orig_ascii);
	struct buf out = BUF_INIT(0);
	struct dsn_result res;
	in.sender = "";
	assert_int_equal(dsn_build(&in, &out, &res), 0);
	in.sender = NULL;
	assert_int_equal(dsn_build(&in, &out, &res), 0);
	in.sender = "a@example.org";
	r.action = QUEUE_ACTION_NONE;
	assert_int_equal(dsn_build(&in, &out, &res), 0);
	in.n_rcpts = 0;
	assert_int_equal(dsn_build(&in, &out, &res), 0);
	assert_int_equal(out.len, 0);
	buf_deinit(&out);
}

static void test_envid_orcpt(void **state)
{
	(void)state;
	for (int mask = 0; mask < 4; mask++) {
		struct dsn_rcpt r[2] = {failed_rcpt(), failed_rcpt()};
		r[1].addr = "c@example.net";
		if (mask & 1)
			r[0].orcpt = "rfc822;B@Example.NET";
		struct dsn_input in = base_input(r, 2, orig_ascii);
		if (mask & 2)
			in.envid = "QQ314159";
		struct built b;
		build(&in, &b);
		check_structure(&b, "a@example.org", 2, false);
		/* RFC 3461 6.3 (a), (d): present exactly when given, value kept */
		assert_int_equal(contains(&b.out, "Original-Envelope-Id: QQ314159\n"),
				 (mask & 2) != 0);
		assert_int_equal(contains(&b.out, "Original-Envelope-Id"), (mask & 2) != 0);
		assert_int_equal(contains(&b.out, "Original-Recipient: rfc822; B@Example.NET\n"),
				 (mask & 1) != 0);
		/* only on the recipient that had it */
		const char *o = memmem(b.out.data, b.out.len, "Original-Recipient", 18);
		if (o != NULL)
			assert_null(memmem(o + 1, b.out.len - (size_t)(o + 1 - (char *)b.out.data),
					   "Original-Recipient", 18));
		assert_true(contains(&b.out, "Final-Recipient: rfc822; b@example.net\n"));
		assert_true(contains(&b.out, "Final-Recipient: rfc822; c@example.net\n"));
		assert_true(contains(&b.out, "Reporting-MTA: dns; mx.example.org\n"));
		assert_true(contains(&b.out, "Remote-MTA: dns; mx.example.net\n"));
		assert_true(contains(&b.out, "X-Tern-Queue-ID: 0123456789abcdef\n"));
		/* the original's Message-ID is echoed (RFC 3834 3.1.5) */
		char *irt = top_header(&b, "In-Reply-To");
		assert_string_equal(irt, "<orig-1@example.org>");
		free(irt);
		built_free(&b);
	}
}

static void test_delay_warning(void **state)
{
	(void)state;
	struct dsn_rcpt r = {
	    .addr = "b@example.net",
	    .action = QUEUE_ACTION_DELAYED,
	    .code = 451,
	    .enhanced = "4.4.2",
	    .text = "451 4.4.2 timeout",
	    .remote = "mx.example.net",
	    .last_attempt = T0 + 4 * 3600,
	    .will_retry_until = T0 + 5 * 86400,
	};
	struct dsn_input in = base_input(&r, 1, orig_ascii);
	in.ret = QUEUE_RET_FULL;
	struct built b;
	build(&in, &b);
	assert_int_equal(check_structure(&b, "a@example.org", 1, false), 3);
	assert_true(contains(&b.out, "Action: delayed\nStatus: 4.4.2\n"));
	assert_true(contains(&b.out, "Will-Retry-Until: "));
	assert_true(contains(&b.out, "Last-Attempt-Date: "));
	char *subj = top_header(&b, "Subject");
	assert_non_null(strstr(subj, "Delayed"));
	free(subj);
	/* the human part says it is still being tried */
	const struct mime_part *p1 = child(b.m, 0, 0);
	assert_non_null(
	    memmem(b.out.data + p1->body.off, p1->body.len, "still being attempted", 21));
	built_free(&b);
}

/* Status: recorded enhanced code when it fits the action, else derived. */
static void test_status(void **state)
{
	(void)state;
	static const struct {
		enum queue_action a;
		int code;
		const char *enh, *want;
	} cases[] = {
	    {QUEUE_ACTION_FAILED, 550, "5.1.1", "5.1.1"},
	    {QUEUE_ACTION_FAILED, 550, NULL, "5.0.0"},
	    {QUEUE_ACTION_FAILED, 451, NULL, "4.0.0"}, /* lifetime expired on a 4xx */
	    {QUEUE_ACTION_FAILED, 451, "4.4.7", "4.4.7"},
	    {QUEUE_ACTION_FAILED, 0, NULL, "5.0.0"},
	    {QUEUE_ACTION_FAILED, 0, "5.1.10", "5.1.10"}, /* null MX, RFC 7505 */
	    {QUEUE_ACTION_FAILED, 550, "2.0.0", "5.0.0"},
	    {QUEUE_ACTION_FAILED, 550, "5.01.1", "5.0.0"}, /* leading zero */
	    {QUEUE_ACTION_FAILED, 550, "5.1.1000", "5.0.0"},
	    {QUEUE_ACTION_FAILED, 550, "5.1.1 x", "5.0.0"},
	    {QUEUE_ACTION_FAILED, 550, "3.1.1", "5.0.0"},
	    {QUEUE_ACTION_DELAYED, 450, "5.1.1", "4.0.0"},
	    {QUEUE_ACTION_DELAYED, 450, "4.2.1", "4.2.1"},
	    {QUEUE_ACTION_DELIVERED, 250, "2.6.0", "2.6.0"},
	    {QUEUE_ACTION_DELIVERED, 250, NULL, "2.0.0"},
	    {QUEUE_ACTION_RELAYED, 250, "4.0.0", "2.0.0"},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct dsn_rcpt r = failed_rcpt();
		r.action = cases[i].a;
		r.code = cases[i].code;
		r.enhanced = cases[i].enh;
		struct dsn_input in = base_input(&r, 1, orig_ascii);
		struct built b;
		build(&in, &b);
		check_structure(&b, "a@example.org", 1, false);
		char *want = xasprintf("\nStatus: %s\n", cases[i].want);
		assert_true(contains(&b.out, want));
		free(want);
		built_free(&b);
	}
}

/* Diagnostic-Code: multi-line replies folded (RFC 3461 9.2); hostile reply
 * text cannot add fields, parts or lines of its own. */
static void test_diagnostic(void **state)
{
	(void)state;
	struct dsn_rcpt r = failed_rcpt();
	r.text = "550-5.1.1 first line\n550-5.1.1 second line\n550 5.1.1 last line";
	struct dsn_input in = base_input(&r, 1, orig_ascii);
	struct built b;
	build(&in, &b);
	check_structure(&b, "a@example.org", 1, false);
	assert_true(contains(&b.out, "Diagnostic-Code: smtp; 550-5.1.1 first line\n"
				     " 550-5.1.1 second line\n 550 5.1.1 last line\n"));
	built_free(&b);

	/* a local failure: our own type, one line */
	r.code = 0;
	r.enhanced = "4.4.1";
	r.text = "connect to mx.example.net[192.0.2.1]:25: Connection refused";
	r.remote = NULL;
	build(&in, &b);
	check_structure(&b, "a@example.org", 1, false);
	assert_true(contains(&b.out, "Diagnostic-Code: X-Tern; connect to mx.example.net"));
	assert_false(contains(&b.out, "Remote-MTA"));
	built_free(&b);

	/* injection attempts: CR, bare LF followed by a field, boundary-like lines, 8-bit */
	static const char *const evil[] = {
	    "550 no\r\nX-Evil: 1",
	    "550 no\n\nX-Evil: 1",
	    "550 no\n--=_tern_0123\n\n",
	    "550 no\x01\x7f\xff\xfe",
	    "550 no\nFinal-Recipient: rfc822; evil@example.com",
	};
	for (size_t i = 0; i < N_ELEMENTS(evil); i++) {
		r = failed_rcpt();
		r.text = evil[i];
		r.addr = "b@example.net\r\nX-Evil: 2";
		build(&in, &b);
		check_structure(&b, "a@example.org", 1, false);
		assert_false(contains(&b.out, "\nX-Evil"));
		assert_false(contains(&b.out, "\nFinal-Recipient: rfc822; evil"));
		assert_false(contains(&b.out, "\r"));
		built_free(&b);
	}
}

/* Internationalised addresses: message/global-delivery-status, utf-8 type. */
static void test_smtputf8(void **state)
{
	(void)state;
	struct dsn_rcpt r = failed_rcpt();
	r.addr = "j\xc3\xb6rg@b\xc3\xbc\x63her.example";
	r.orcpt = "utf-8;j\xc3\xb6rg@b\xc3\xbc\x63her.example";
	struct dsn_input in = base_input(&r, 1, orig_utf8);
	in.smtputf8 = true;
	in.sender = "\xc3\xa9lise@example.org";
	struct built b;
	build(&in, &b);
	check_structure(&b, "\xc3\xa9lise@example.org", 1, true);
	assert_true(contains(&b.out, "Final-Recipient: utf-8; j\xc3\xb6rg@"));
	assert_true(contains(&b.out, "Original-Recipient: utf-8; j\xc3\xb6rg@"));
	assert_true(b.res.eightbit);
	assert_true(b.res.smtputf8);
	const struct mime_part *p3 = third(&b);
	assert_true(str_is(b.m, p3->subtype, "global"));
	built_free(&b);
	/* an ASCII report stays 7-bit even when the original was 8-bit */
	struct dsn_rcpt r2 = failed_rcpt();
	in = base_input(&r2, 1, orig_8bit);
	in.ret = QUEUE_RET_HDRS;
	build(&in, &b);
	check_structure(&b, "a@example.org", 1, false);
	assert_false(b.res.eightbit);
	built_free(&b);
}

/* Several recipients and actions in one report. */
static void test_mixed(void **state)
{
	(void)state;
	struct dsn_rcpt r[4] = {failed_rcpt(), failed_rcpt(), failed_rcpt(), failed_rcpt()};
	r[1].addr = "d@example.net";
	r[1].action = QUEUE_ACTION_DELIVERED;
	r[1].code = 250;
	r[1].enhanced = NULL;
	r[2].addr = "skip@example.net";
	r[2].action = QUEUE_ACTION_NONE;
	r[3].addr = "w@example.net";
	r[3].action = QUEUE_ACTION_DELAYED;
	r[3].code = 421;
	r[3].will_retry_until = T0 + 86400;
	struct dsn_input in = base_input(r, 4, orig_ascii);
	struct built b;
	build(&in, &b);
	check_structure(&b, "a@example.org", 3, false);
	assert_false(contains(&b.out, "skip@"));
	char *subj = top_header(&b, "Subject");
	assert_string_equal(subj, "Undelivered Mail Returned to Sender");
	free(subj);
	/* with a failure, RET unspecified returns the whole message */
	assert_true(str_is(b.m, third(&b)->subtype, "rfc822"));
	built_free(&b);
}

static void test_xtext(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want; /* want NULL: malformed */
	} cases[] = {
	    {"abc", "abc"},   {"a+2Bb", "a+b"}, {"a+3Db", "a=b"},      {"+20x+7E", " x~"},
	    {"a+2bb", "a+b"}, /* lowercase hex accepted on input */
	    {"", ""},	      {"a+2", NULL},	{"a+", NULL},	       {"a+G0", NULL},
	    {"a b", NULL},    {"a=b", NULL},	{"caf\xc3\xa9", NULL},
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct buf out = BUF_INIT(0);
		int r = dsn_xtext_decode(cases[i].in, strlen(cases[i].in), &out);
		if (cases[i].want == NULL) {
			assert_int_equal(r, -1);
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(out.len, strlen(cases[i].want));
			assert_memory_equal(out.data, cases[i].want, out.len);
		}
		buf_deinit(&out);
	}
	/* encode -> decode round trip over every byte */
	char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (char)i;
	struct buf enc = BUF_INIT(0), dec = BUF_INIT(0);
	dsn_xtext_encode(all, sizeof all, &enc);
	for (size_t i = 0; i < enc.len; i++)
		assert_true(enc.data[i] >= '!' && enc.data[i] <= '~' && enc.data[i] != '=');
	assert_int_equal(dsn_xtext_decode((const char *)enc.data, enc.len, &dec), 0);
	assert_int_equal(dec.len, sizeof all);
	assert_memory_equal(dec.data, all, sizeof all);
	buf_deinit(&enc);
	buf_deinit(&dec);
	/* the decoder respects the buffer cap */
	struct buf small = BUF_INIT(2);
	assert_int_equal(dsn_xtext_decode("abc", 3, &small), -1);
	buf_deinit(&small);
}

/* NOTIFY (RFC 3461 5.2) x outcome, through the queue that applies it, and
 * the DSN it then queues. */
static void test_notify_matrix(void **state)
{
	(void)state;
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/tern-dsn.XXXXXX");
	assert_non_null(mkdtemp(dir));
	char *err = NULL;
	struct queue *q = queue_open(dir, QUEUE_OPEN_SERVER, &err);
	assert_non_null(q);
	struct queue_policy pol = {.hostname = "mx.example.org"};
	queue_set_policy(q, &pol);
	static const unsigned notifies[] = {
	    0,
	    QUEUE_NOTIFY_NEVER,
	    QUEUE_NOTIFY_SUCCESS,
	    QUEUE_NOTIFY_FAILURE,
	    QUEUE_NOTIFY_DELAY,
	    QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE,
	    QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY,
	    QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY,
	};
	static const enum queue_outcome outcomes[] = {QUEUE_OUT_DELIVERED, QUEUE_OUT_RELAYED,
						      QUEUE_OUT_PASSED, QUEUE_OUT_PERMFAIL,
						      QUEUE_OUT_TEMPFAIL};
	struct queue_rcpt_spec specs[N_ELEMENTS(notifies) * N_ELEMENTS(outcomes)];
	char addrs[N_ELEMENTS(specs)][32];
	struct queue_result res[N_ELEMENTS(specs)];
	for (size_t i = 0; i < N_ELEMENTS(notifies); i++)
		for (size_t j = 0; j < N_ELEMENTS(outcomes); j++) {
			size_t k = i * N_ELEMENTS(outcomes) + j;
			snprintf(addrs[k], sizeof addrs[k], "r%zu@example.net", k);
			specs[k] = (struct queue_rcpt_spec){addrs[k], NULL, notifies[i]};
			res[k] = (struct queue_result){
			    (uint32_t)k, outcomes[j], {250, NULL, "250 ok", "mx.example.net"}};
			if (outcomes[j] >= QUEUE_OUT_TEMPFAIL)
				res[k].err = (struct queue_error){
				    outcomes[j] == QUEUE_OUT_TEMPFAIL ? 451 : 550, NULL, "5xx/4xx",
				    "mx.example.net"};
		}
	struct queue_envelope env = {
	    .sender = "a@example.org", .arrival = T0, .rcpts = specs, .n_rcpts = N_ELEMENTS(specs)};
	char id[17];
	assert_int_equal(queue_enqueue(q, &env, orig_ascii, strlen(orig_ascii), id, &err), 0);
	struct queue_due d;
	assert_int_equal(queue_due(q, T0, 1000, &d, &err), 0);
	queue_due_free(&d);
	assert_int_equal(queue_record(q, id, res, N_ELEMENTS(res), T0, &err), 0);
	/* 4h later: the deferred ones are due a delay warning */
	int64_t now = T0 + 4 * 3600;
	struct queue_msg *m = NULL;
	assert_int_equal(queue_get(q, id, now, &m, &err), 1);
	size_t reported = 0;
	for (size_t i = 0; i < N_ELEMENTS(notifies); i++)
		for (size_t j = 0; j < N_ELEMENTS(outcomes); j++) {
			size_t k = i * N_ELEMENTS(outcomes) + j;
			unsigned nt = notifies[i];
			bool never = nt & QUEUE_NOTIFY_NEVER;
			enum queue_action want = QUEUE_ACTION_NONE;
			switch (outcomes[j]) {
			case QUEUE_OUT_DELIVERED:
				if (!never && (nt & QUEUE_NOTIFY_SUCCESS))
					want = QUEUE_ACTION_DELIVERED;
				break;
			case QUEUE_OUT_RELAYED:
				if (!never && (nt & QUEUE_NOTIFY_SUCCESS))
					want = QUEUE_ACTION_RELAYED;
				break;
			case QUEUE_OUT_PASSED:
				break;
			case QUEUE_OUT_PERMFAIL:
				if (!never && (nt == 0 || (nt & QUEUE_NOTIFY_FAILURE)))
					want = QUEUE_ACTION_FAILED;
				break;
			case QUEUE_OUT_TEMPFAIL:
				if (!never && (nt == 0 || (nt & QUEUE_NOTIFY_DELAY)))
					want = QUEUE_ACTION_DELAYED;
				break;
			}
			assert_int_equal(m->rcpts[k].action, want);
			reported += want != QUEUE_ACTION_NONE;
		}
	queue_msg_free(&m);
	char dsn[17];
	assert_int_equal(queue_notify(q, id, now, dsn, &err), 0);
	assert_true(queue_id_valid(dsn));
	assert_int_equal(queue_get(q, dsn, now, &m, &err), 1);
	struct buf b = BUF_INIT(0);
	bool trunc;
	assert_int_equal(queue_read(q, m, 1 << 20, &b, &trunc, &err), 0);
	struct built bt = {.out = b};
	bt.m = mime_parse(b.data, b.len, NULL);
	check_structure(&bt, "a@example.org", reported, false);
	built_free(&bt);
	queue_msg_free(&m);
	queue_close(&q);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ret_table),	cmocka_unit_test(test_null_sender_and_nothing),
	    cmocka_unit_test(test_envid_orcpt), cmocka_unit_test(test_delay_warning),
	    cmocka_unit_test(test_status),	cmocka_unit_test(test_diagnostic),
	    cmocka_unit_test(test_smtputf8),	cmocka_unit_test(test_mixed),
	    cmocka_unit_test(test_xtext),	cmocka_unit_test(test_notify_matrix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
