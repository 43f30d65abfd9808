/* SPDX-License-Identifier: MIT */
/* Sequence sets (proto/imap/imap_seqset): parsing against a table (with
 * "*" resolution, RFC 9051 9 examples, "$" of RFC 5182 and errors), and
 * the set operations checked against a plain bitmap under random inserts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proto/imap/imap_seqset.h"

static char *show(const struct imap_seqset *s)
{
	struct buf b = BUF_INIT(0);
	imap_seqset_write(s, &b);
	buf_xappend(&b, "", 1);
	return (char *)b.data;
}

static void test_parse(void **state)
{
	(void)state;
	struct imap_seqset saved = { 0 };
	imap_seqset_add_range(&saved, 20, 22);
	static const struct {
		const char *in;
		uint32_t star;
		unsigned flags;
		const char *want; /* NULL: error */
	} t[] = {
		/* RFC 9051 9 examples */
		{ "2,4:7,9,12:*", 15, IMAP_SEQSET_SEQ, "2,4:7,9,12:15" },
		{ "*:4,5:7", 10, IMAP_SEQSET_SEQ, "4:10" },
		{ "2:4", 10, IMAP_SEQSET_SEQ, "2:4" },
		{ "4:2", 10, IMAP_SEQSET_SEQ, "2:4" },
		/* UID 3291:* includes the last UID even below 3291 */
		{ "3291:*", 100, 0, "100:3291" },
		{ "1:*", 1, IMAP_SEQSET_SEQ, "1" },
		{ "*", 7, IMAP_SEQSET_SEQ, "7" },
		{ "5,3,1,2,4", 9, IMAP_SEQSET_SEQ, "1:5" },
		{ "1,1,1", 9, IMAP_SEQSET_SEQ, "1" },
		{ "1:3,7:9,4:6", 9, IMAP_SEQSET_SEQ, "1:9" },
		{ "4294967295", 1, 0, "4294967295" },
		{ "1:4294967295", 1, 0, "1:4294967295" },
		{ "007", 9, IMAP_SEQSET_SEQ, "7" },
		{ "$", 1, 0, "20:22" },
		{ "1,$", 1, 0, "1,20:22" },
		{ "21:30,$", 1, 0, "20:30" },
		{ "$:1", 1, 0, NULL },
		/* errors */
		{ "", 5, 0, NULL },
		{ "0", 5, 0, NULL },
		{ "0:3", 5, 0, NULL },
		{ "1:", 5, 0, NULL },
		{ ":1", 5, 0, NULL },
		{ "1,", 5, 0, NULL },
		{ ",1", 5, 0, NULL },
		{ "1,,2", 5, 0, NULL },
		{ "1:2:3", 5, 0, NULL },
		{ "a", 5, 0, NULL },
		{ "1 2", 5, 0, NULL },
		{ "-1", 5, 0, NULL },
		{ "4294967296", 5, 0, NULL },
		{ "99999999999999999999", 5, 0, NULL },
		{ "**", 5, 0, NULL },
		{ "*", 0, 0, NULL },                /* "*" in an empty mailbox */
		{ "1:*", 0, IMAP_SEQSET_SEQ, NULL },
		{ "6", 5, IMAP_SEQSET_SEQ, NULL },  /* above the message count */
		{ "6", 5, 0, "6" },                 /* a UID may be */
		{ "1:6", 5, IMAP_SEQSET_SEQ, NULL },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct imap_seqset s = { 0 };
		imap_seqset_add(&s, 99); /* parse clears */
		const char *err = NULL;
		int r = imap_seqset_parse(&s, t[i].in, strlen(t[i].in), t[i].star, t[i].flags, &saved,
					  0, &err);
		if (!t[i].want) {
			if (r != -1)
				fail_msg("%s: accepted", t[i].in);
			assert_non_null(err);
			assert_int_equal(s.n, 0);
		} else {
			if (r != 0)
				fail_msg("%s: refused (%s)", t[i].in, err);
			char *got = show(&s);
			if (strcmp(got, t[i].want) != 0)
				fail_msg("%s: got %s want %s", t[i].in, got, t[i].want);
			free(got);
		}
		imap_seqset_free(&s);
	}
	/* "$" without a saved result */
	struct imap_seqset s = { 0 };
	const char *err;
	assert_int_equal(imap_seqset_parse(&s, "$", 1, 5, 0, NULL, 0, &err), -1);
	/* the range bound */
	assert_int_equal(imap_seqset_parse(&s, "1,2,3", 5, 5, 0, NULL, 3, &err), 0);
	assert_int_equal(imap_seqset_parse(&s, "1,2,3,4", 7, 5, 0, NULL, 3, &err), -1);
	assert_string_equal(err, "Too many ranges in sequence set");
	/* not NUL-terminated: only n bytes count */
	assert_int_equal(imap_seqset_parse(&s, "12:9x", 4, 5, 0, NULL, 0, &err), 0);
	assert_int_equal(imap_seqset_min(&s), 9);
	assert_int_equal(imap_seqset_max(&s), 12);
	imap_seqset_free(&s);
	imap_seqset_free(&saved);

	assert_true(imap_seqset_syntax_ok("1:*,$", 5));
	assert_true(imap_seqset_syntax_ok("4294967295", 10));
	assert_false(imap_seqset_syntax_ok("ALL", 3));
	assert_false(imap_seqset_syntax_ok("0", 1));
}

/* Random adds against a bitmap: normalisation, contains, count,
 * iteration, min/max and the written form. */
static void test_ops(void **state)
{
	(void)state;
	enum { MAXV = 300 };
	unsigned seed = 12345;
	for (int round = 0; round < 300; round++) {
		bool bit[MAXV + 2] = { 0 };
		struct imap_seqset s;
		imap_seqset_init(&s);
		int adds = 1 + round % 20;
		for (int k = 0; k < adds; k++) {
			seed = seed * 1103515245 + 12345;
			uint32_t a = (seed >> 8) % MAXV + (round & 1 ? 0 : 1);
			seed = seed * 1103515245 + 12345;
			uint32_t b = a + (seed >> 8) % 12;
			if (b > MAXV)
				b = MAXV;
			if (k & 1)
				imap_seqset_add_range(&s, b, a); /* either order */
			else
				imap_seqset_add_range(&s, a, b);
			for (uint32_t v = a ? a : 1; v <= b; v++)
				bit[v] = true;
		}
		/* normalised: sorted, disjoint, not adjacent */
		for (size_t i = 0; i < s.n; i++) {
			assert_true(s.r[i].lo >= 1 && s.r[i].lo <= s.r[i].hi);
			if (i)
				assert_true((uint64_t)s.r[i - 1].hi + 1 < s.r[i].lo);
		}
		uint64_t count = 0;
		uint32_t mn = 0, mx = 0;
		for (uint32_t v = 0; v <= MAXV + 1; v++) {
			assert_int_equal(imap_seqset_contains(&s, v), bit[v]);
			if (bit[v]) {
				count++;
				if (!mn)
					mn = v;
				mx = v;
			}
		}
		assert_int_equal(imap_seqset_count(&s), count);
		assert_int_equal(imap_seqset_min(&s), mn);
		assert_int_equal(imap_seqset_max(&s), mx);
		struct imap_seqset_iter it;
		imap_seqset_iter_init(&it, &s);
		uint32_t v, prev = 0;
		uint64_t seen = 0;
		while (imap_seqset_iter_next(&it, &v)) {
			assert_true(v > prev && bit[v]);
			prev = v;
			seen++;
		}
		assert_int_equal(seen, count);
		/* written form parses back to the same set */
		char *w = show(&s);
		struct imap_seqset back = { 0 };
		const char *err;
		assert_int_equal(imap_seqset_parse(&back, w, strlen(w), MAXV, 0, NULL, 0, &err), 0);
		assert_int_equal(back.n, s.n);
		assert_memory_equal(back.r, s.r, s.n * sizeof *s.r);
		free(w);
		imap_seqset_free(&back);
		imap_seqset_free(&s);
		assert_null(s.r);
	}
	/* edges: 0 is never a member, UINT32_MAX works */
	struct imap_seqset s = { 0 };
	imap_seqset_add_range(&s, 0, 0);
	assert_int_equal(s.n, 0);
	imap_seqset_add_range(&s, 0, 2);
	imap_seqset_add_range(&s, UINT32_MAX - 1, UINT32_MAX);
	imap_seqset_add(&s, UINT32_MAX);
	char *w = show(&s);
	assert_string_equal(w, "1:2,4294967294:4294967295");
	free(w);
	assert_int_equal(imap_seqset_count(&s), 4);
	struct imap_seqset_iter it;
	imap_seqset_iter_init(&it, &s);
	uint32_t v, last = 0;
	int n = 0;
	while (imap_seqset_iter_next(&it, &v)) {
		last = v;
		n++;
	}
	assert_int_equal(n, 4);
	assert_int_equal(last, UINT32_MAX);
	imap_seqset_free(&s);
	/* empty set */
	imap_seqset_iter_init(&it, &s);
	assert_false(imap_seqset_iter_next(&it, &v));
	assert_false(imap_seqset_contains(&s, 1));
}

static void test_uidlist(void **state)
{
	(void)state;
	static const struct {
		uint32_t v[8];
		size_t n;
		const char *want;
	} t[] = {
		{ { 0 }, 0, "" },
		{ { 5 }, 1, "5" },
		{ { 1, 2, 3, 5, 7, 8 }, 6, "1:3,5,7:8" },
		{ { 9, 3, 4, 1 }, 4, "9,3:4,1" }, /* order kept (COPYUID) */
		{ { 4294967294u, 4294967295u }, 2, "4294967294:4294967295" },
		{ { 4294967295u, 1 }, 2, "4294967295,1" },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct buf b = BUF_INIT(0);
		imap_uidlist_write(t[i].v, t[i].n, &b);
		assert_string_equal(buf_cstr(&b), t[i].want);
		buf_deinit(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_uidlist),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
