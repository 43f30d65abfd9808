/* SPDX-License-Identifier: MIT */
/* Fuzz sequence-set parsing and the set operations (proto/imap/imap_seqset).
 *
 * Input: 4 bytes "*" value (little endian), 1 flags byte, then the set text.
 *   flags & 1   IMAP_SEQSET_SEQ (message numbers)
 *   flags & 2   a saved "$" result of {3, 10:12} is available
 *   flags & 4   also build a set from the text's bytes as (lo, hi) pairs and
 *               check it against a bitmap
 * Properties: a parsed set is normalised, every member is 1..2^32-1 (and at
 * most "*" for message numbers), its written form parses back to the same
 * set, imap_seqset_syntax_ok() agrees with parsing, contains() agrees with
 * iteration on small sets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/imap/imap_seqset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_norm(const struct imap_seqset *s)
{
	for (size_t i = 0; i < s->n; i++) {
		ASSERT(s->r[i].lo >= 1 && s->r[i].lo <= s->r[i].hi);
		if (i)
			ASSERT((uint64_t)s->r[i - 1].hi + 1 < s->r[i].lo);
	}
}

static void bitmap_check(const uint8_t *d, size_t n)
{
	bool bit[258] = { 0 };
	struct imap_seqset s = { 0 };
	for (size_t i = 0; i + 1 < n; i += 2) {
		imap_seqset_add_range(&s, d[i], d[i + 1]);
		uint32_t lo = d[i] < d[i + 1] ? d[i] : d[i + 1];
		uint32_t hi = d[i] < d[i + 1] ? d[i + 1] : d[i];
		for (uint32_t v = lo ? lo : 1; v <= hi; v++)
			bit[v] = true;
	}
	check_norm(&s);
	uint64_t c = 0;
	for (uint32_t v = 0; v < 258; v++) {
		ASSERT(imap_seqset_contains(&s, v) == bit[v]);
		c += bit[v];
	}
	ASSERT(imap_seqset_count(&s) == c);
	struct imap_seqset_iter it;
	imap_seqset_iter_init(&it, &s);
	uint32_t v, prev = 0;
	uint64_t seen = 0;
	while (imap_seqset_iter_next(&it, &v)) {
		ASSERT(v > prev && bit[v]);
		prev = v;
		seen++;
	}
	ASSERT(seen == c);
	imap_seqset_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	uint32_t star = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
			(uint32_t)data[3] << 24;
	uint8_t flags = data[4];
	const char *text = (const char *)data + 5;
	size_t n = size - 5;

	struct imap_seqset saved = { 0 };
	imap_seqset_add(&saved, 3);
	imap_seqset_add_range(&saved, 12, 10);
	struct imap_seqset s = { 0 };
	const char *err = NULL;
	unsigned f = flags & 1 ? IMAP_SEQSET_SEQ : 0;
	int r = imap_seqset_parse(&s, text, n, star, f, flags & 2 ? &saved : NULL, 64, &err);
	if (r < 0) {
		ASSERT(err && s.n == 0);
	} else {
		check_norm(&s);
		ASSERT(s.n > 0);
		if ((flags & 1) && !(flags & 2))
			ASSERT(imap_seqset_max(&s) <= star);
		ASSERT(imap_seqset_syntax_ok(text, n));
		struct buf w = BUF_INIT(0);
		imap_seqset_write(&s, &w);
		struct imap_seqset back = { 0 };
		ASSERT(imap_seqset_parse(&back, (const char *)w.data, w.len, star, 0, NULL,
					 UINT32_MAX, &err) == 0);
		ASSERT(back.n == s.n && memcmp(back.r, s.r, s.n * sizeof *s.r) == 0);
		imap_seqset_free(&back);
		buf_deinit(&w);
		for (size_t i = 0; i < s.n; i++) {
			ASSERT(imap_seqset_contains(&s, s.r[i].lo));
			ASSERT(imap_seqset_contains(&s, s.r[i].hi));
			ASSERT(!imap_seqset_contains(&s, s.r[i].lo - 1)); /* 0 or a gap */
		}
		if (imap_seqset_count(&s) < 5000) {
			struct imap_seqset_iter it;
			imap_seqset_iter_init(&it, &s);
			uint32_t v;
			uint64_t c = 0;
			while (imap_seqset_iter_next(&it, &v)) {
				ASSERT(imap_seqset_contains(&s, v));
				c++;
			}
			ASSERT(c == imap_seqset_count(&s));
		}
	}
	imap_seqset_free(&s);
	imap_seqset_free(&saved);
	if (flags & 4)
		bitmap_check(data + 5, n);
	return 0;
}
