/* SPDX-License-Identifier: MIT */
/* Sequence sets (RFC 9051 9, RFC 5182): parsing with "*" resolved, the
 * normalised range list every FETCH/STORE/SEARCH/COPY walks, and the wire
 * form of sets in ESEARCH, COPYUID and APPENDUID responses. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_seqset.h"

void imap_seqset_init(struct imap_seqset *s)
{
	memset(s, 0, sizeof *s);
}

void imap_seqset_free(struct imap_seqset *s)
{
	free(s->r);
	memset(s, 0, sizeof *s);
}

void imap_seqset_clear(struct imap_seqset *s)
{
	s->n = 0;
}

static void reserve(struct imap_seqset *s, size_t need)
{
	if (need <= s->cap)
		return;
	size_t ncap = s->cap ? s->cap : 8;
	while (ncap < need)
		ncap *= 2;
	s->r = xrealloc(s->r, ncap * sizeof *s->r);
	s->cap = ncap;
}

static int cmp_range(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

/* Sorts and merges overlapping or adjacent ranges in place. */
static void normalise(struct imap_seqset *s)
{
	if (s->n < 2)
		return;
	qsort(s->r, s->n, sizeof *s->r, cmp_range);
	size_t w = 0;
	for (size_t i = 1; i < s->n; i++) {
		struct imap_seq_range *last = &s->r[w];
		if ((uint64_t)s->r[i].lo <= (uint64_t)last->hi + 1) {
			if (s->r[i].hi > last->hi)
				last->hi = s->r[i].hi;
		} else {
			s->r[++w] = s->r[i];
		}
	}
	s->n = w + 1;
}

void imap_seqset_add_range(struct imap_seqset *s, uint32_t lo, uint32_t hi)
{
	if (lo > hi) {
		uint32_t t = lo;
		lo = hi;
		hi = t;
	}
	if (hi == 0)
		return;
	if (lo == 0)
		lo = 1;
	if (s->n == 0 || lo > (uint64_t)s->r[s->n - 1].hi + 1) {
		reserve(s, s->n + 1);
		s->r[s->n++] = (struct imap_seq_range){ lo, hi };
		return;
	}
	/* i: the first range that reaches lo (touching counts) */
	size_t a = 0, b = s->n;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if ((uint64_t)s->r[mid].hi + 1 < lo)
			a = mid + 1;
		else
			b = mid;
	}
	size_t i = a, j = a;
	/* [i, j): the ranges that overlap or touch lo..hi */
	while (j < s->n && s->r[j].lo <= (uint64_t)hi + 1)
		j++;
	if (i == j) {
		reserve(s, s->n + 1);
		memmove(s->r + i + 1, s->r + i, (s->n - i) * sizeof *s->r);
		s->r[i] = (struct imap_seq_range){ lo, hi };
		s->n++;
		return;
	}
	if (s->r[i].lo < lo)
		lo = s->r[i].lo;
	if (s->r[j - 1].hi > hi)
		hi = s->r[j - 1].hi;
	s->r[i] = (struct imap_seq_range){ lo, hi };
	memmove(s->r + i + 1, s->r + j, (s->n - j) * sizeof *s->r);
	s->n -= j - i - 1;
}

/* One seq-number: nz-number or "*" (or 0 on a syntax error). */
static int parse_num(const char *s, size_t n, size_t *i, uint32_t star, bool *is_star,
		     uint32_t *v_r, const char **error_r)
{
	*is_star = false;
	if (*i < n && s[*i] == '*') {
		(*i)++;
		*is_star = true;
		*v_r = star;
		return 0;
	}
	if (*i >= n || s[*i] < '0' || s[*i] > '9') {
		*error_r = "Invalid sequence set";
		return -1;
	}
	uint64_t v = 0;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		v = v * 10 + (uint64_t)(s[*i] - '0');
		if (v > UINT32_MAX) {
			*error_r = "Number out of range in sequence set";
			return -1;
		}
		(*i)++;
	}
	if (v == 0) {
		*error_r = "Zero in sequence set";
		return -1;
	}
	*v_r = (uint32_t)v;
	return 0;
}

int imap_seqset_parse(struct imap_seqset *set, const char *s, size_t n, uint32_t star,
		      unsigned flags, const struct imap_seqset *saved, unsigned max_ranges,
		      const char **error_r)
{
	bool seq = flags & IMAP_SEQSET_SEQ;
	if (max_ranges == 0)
		max_ranges = IMAP_SEQSET_MAX_RANGES;
	imap_seqset_clear(set);
	if (n == 0) {
		*error_r = "Empty sequence set";
		return -1;
	}
	size_t i = 0;
	unsigned elems = 0;
	for (;;) {
		if (++elems > max_ranges) {
			*error_r = "Too many ranges in sequence set";
			goto fail;
		}
		if (s[i] == '$') {
			/* RFC 5182 2.1: the saved result of the last SEARCH */
			if (!saved) {
				*error_r = "No saved search result ($)";
				goto fail;
			}
			i++;
			if (saved->n) {
				reserve(set, set->n + saved->n);
				memcpy(set->r + set->n, saved->r, saved->n * sizeof *saved->r);
				set->n += saved->n;
			}
		} else {
			uint32_t a, b;
			bool sa, sb;
			if (parse_num(s, n, &i, star, &sa, &a, error_r) < 0)
				goto fail;
			b = a;
			sb = sa;
			if (i < n && s[i] == ':') {
				i++;
				if (parse_num(s, n, &i, star, &sb, &b, error_r) < 0)
					goto fail;
			}
			if ((sa || sb) && star == 0) {
				/* RFC 9051 9: "*" in an empty mailbox is BAD */
				*error_r = "No messages (* in an empty mailbox)";
				goto fail;
			}
			if (seq && (a > star || b > star)) {
				*error_r = "Invalid message sequence number";
				goto fail;
			}
			if (a > b) {
				uint32_t t = a;
				a = b;
				b = t;
			}
			reserve(set, set->n + 1);
			set->r[set->n++] = (struct imap_seq_range){ a, b };
		}
		if (i == n)
			break;
		if (s[i] != ',' || i + 1 == n) {
			*error_r = "Invalid sequence set";
			goto fail;
		}
		i++;
	}
	normalise(set);
	return 0;
fail:
	imap_seqset_clear(set);
	return -1;
}

bool imap_seqset_syntax_ok(const char *s, size_t n)
{
	static const struct imap_seqset empty;
	struct imap_seqset tmp = { 0 };
	const char *err;
	/* star 1 and an empty saved set make every syntactically valid set
	 * resolvable, so only syntax can fail. */
	int r = imap_seqset_parse(&tmp, s, n, 1, 0, &empty, UINT32_MAX, &err);
	imap_seqset_free(&tmp);
	return r == 0;
}

bool imap_seqset_contains(const struct imap_seqset *s, uint32_t v)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v < s->r[mid].lo)
			hi = mid;
		else if (v > s->r[mid].hi)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

uint64_t imap_seqset_count(const struct imap_seqset *s)
{
	uint64_t c = 0;
	for (size_t i = 0; i < s->n; i++)
		c += (uint64_t)s->r[i].hi - s->r[i].lo + 1;
	return c;
}

uint32_t imap_seqset_min(const struct imap_seqset *s)
{
	return s->n ? s->r[0].lo : 0;
}

uint32_t imap_seqset_max(const struct imap_seqset *s)
{
	return s->n ? s->r[s->n - 1].hi : 0;
}

void imap_seqset_iter_init(struct imap_seqset_iter *it, const struct imap_seqset *s)
{
	it->s = s;
	it->i = 0;
	it->next = s->n ? s->r[0].lo : 0;
}

bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *v_r)
{
	const struct imap_seqset *s = it->s;
	while (it->i < s->n) {
		if (it->next <= s->r[it->i].hi) {
			*v_r = (uint32_t)it->next++;
			return true;
		}
		if (++it->i < s->n)
			it->next = s->r[it->i].lo;
	}
	return false;
}

void imap_seqset_write(const struct imap_seqset *s, struct buf *out)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->r[i].lo == s->r[i].hi)
			buf_xprintf(out, "%s%u", i ? "," : "", s->r[i].lo);
		else
			buf_xprintf(out, "%s%u:%u", i ? "," : "", s->r[i].lo, s->r[i].hi);
	}
}

void imap_uidlist_write(const uint32_t *v, size_t n, struct buf *out)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j + 1 < n && v[j] != UINT32_MAX && v[j + 1] == v[j] + 1)
			j++;
		if (j == i)
			buf_xprintf(out, "%s%u", i ? "," : "", v[i]);
		else
			buf_xprintf(out, "%s%u:%u", i ? "," : "", v[i], v[j]);
		i = j + 1;
	}
}
