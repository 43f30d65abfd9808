/* SPDX-License-Identifier: MIT */
/* IMAP sequence sets (RFC 9051 9 sequence-set, RFC 5182 "$"): message
 * sequence numbers or UIDs, parsed into a normalised list of ranges
 * (sorted, disjoint, non-adjacent), with membership, counting, iteration,
 * building from UIDs one by one, and the compressed wire form
 * ("1:5,7,9:12") that ESEARCH, COPYUID and APPENDUID answers use.
 *
 * "*" is resolved at parse time against the caller's value: for sequence
 * numbers the number of messages, for UIDs the highest UID in use (or, for
 * an empty mailbox, UIDNEXT - 1 as RFC 9051 9 puts it; the caller decides).
 * Values are 32-bit (nz-number); 0 is never a member. */
#ifndef TERN_PROTO_IMAP_SEQSET_H
#define TERN_PROTO_IMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

struct imap_seq_range {
	uint32_t lo, hi; /* lo <= hi, both >= 1 */
};

/* Zero-initialise (or imap_seqset_init) before use; imap_seqset_free
 * releases the storage and leaves an empty set. Owned by the caller. */
struct imap_seqset {
	struct imap_seq_range *r;
	size_t n, cap;
};

/* Default bound on the elements of one sequence-set (before merging). */
#define IMAP_SEQSET_MAX_RANGES 10000

enum imap_seqset_flags {
	/* Message sequence numbers: a number above star, or "*" with star == 0
	 * (empty mailbox), is an error (RFC 9051 9: the server answers BAD).
	 * Without this flag (UIDs) any nz-number is accepted and "*" with
	 * star == 0 is an error too. */
	IMAP_SEQSET_SEQ = 1 << 0,
};

void imap_seqset_init(struct imap_seqset *s);
void imap_seqset_free(struct imap_seqset *s);
void imap_seqset_clear(struct imap_seqset *s);

/* Parses the sequence-set s[0..n) (RFC 9051 9: seq-number, seq-range with
 * either order, comma lists; "*" = star) into set, which is cleared first.
 * "$" (RFC 5182 SEARCHRES) stands for *saved and is accepted only when
 * saved is non-NULL, alone or as a list element. Numbers may have leading
 * zeros (Dovecot accepts them) but 0 itself is refused. max_ranges bounds
 * the number of comma-separated elements (0 = IMAP_SEQSET_MAX_RANGES).
 * Returns 0, or -1 with *error_r set to a static message for a BAD reply
 * (set is left empty). */
int imap_seqset_parse(struct imap_seqset *set, const char *s, size_t n, uint32_t star,
		      unsigned flags, const struct imap_seqset *saved, unsigned max_ranges,
		      const char **error_r) ATTR_WARN_UNUSED;
/* True if s[0..n) has the syntax of a sequence-set ("$" included), e.g. to
 * tell a SEARCH key from a set. Does not resolve anything. */
bool imap_seqset_syntax_ok(const char *s, size_t n);

/* Adds lo..hi (either order; 0 is clamped away) to the set, keeping it
 * normalised. Appending above the current maximum is O(1); other inserts
 * are a binary search and a memmove. */
void imap_seqset_add_range(struct imap_seqset *s, uint32_t lo, uint32_t hi);
static inline void imap_seqset_add(struct imap_seqset *s, uint32_t v)
{
	imap_seqset_add_range(s, v, v);
}
/* Membership in O(log ranges). */
bool imap_seqset_contains(const struct imap_seqset *s, uint32_t v);
/* Number of members. */
uint64_t imap_seqset_count(const struct imap_seqset *s);
/* Smallest / largest member, 0 if empty. */
uint32_t imap_seqset_min(const struct imap_seqset *s);
uint32_t imap_seqset_max(const struct imap_seqset *s);

/* Ascending iteration:
 *   struct imap_seqset_iter it; uint32_t v;
 *   imap_seqset_iter_init(&it, set);
 *   while (imap_seqset_iter_next(&it, &v)) ...
 * The set must not change during the iteration. */
struct imap_seqset_iter {
	const struct imap_seqset *s;
	size_t i;
	uint64_t next;
};
void imap_seqset_iter_init(struct imap_seqset_iter *it, const struct imap_seqset *s);
bool imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *v_r);

/* Appends the compressed form ("1:5,7,9:12"; nothing for an empty set). */
void imap_seqset_write(const struct imap_seqset *s, struct buf *out);
/* Appends the list v[0..n) in its own order, runs of ascending consecutive
 * values as "a:b", without building a set: COPYUID/APPENDUID source and
 * destination lists must correspond element by element (RFC 4315 3), so
 * callers pass both lists in the order of the copy. */
void imap_uidlist_write(const uint32_t *v, size_t n, struct buf *out);

#endif
