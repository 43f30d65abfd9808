/* SPDX-License-Identifier: MIT */
/* The IMAP views of a parsed message (struct mime_message, message.h):
 * ENVELOPE, BODY and BODYSTRUCTURE strings (RFC 3501 7.4.2 / RFC 9051 7.5.2),
 * BODY[section]<o.n> addressing (RFC 3501 6.4.5), BINARY[section] decoding
 * (RFC 3516) and the decoded, case-folded text SEARCH matches against.
 *
 * Where the RFCs are ambiguous or the mail is malformed the output matches
 * Dovecot 2.3's (tests/data/mime/ holds Dovecot's answers for our corpus).
 *
 * Wire vs file bytes: every size and offset these functions report is in
 * wire (CRLF) terms. To send a range of an LF-only file, the caller reads the
 * physical range (range.off, range.len) and pushes it through a struct
 * mime_wire, which turns bare LF into CRLF and applies a partial <o.n> in
 * wire bytes, so the caller never has to translate offsets itself. A
 * partial's start usually lies inside the range; the caller may pread from
 * range.off, or from a closer line start it knows, since the converter only
 * needs the bytes from some position whose wire offset it is told.
 *
 * Strings: IMAP strings are written as NIL, quoted ("..." with \" and \\
 * escapes) when the bytes are 7-bit without CR, LF or NUL, and as literals
 * {n}\r\n... otherwise, which is what Dovecot does without UTF8=ACCEPT.
 */
#ifndef TERN_MIME_IMAP_VIEW_H
#define TERN_MIME_IMAP_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "mime/message.h"

/* ---- ENVELOPE / BODYSTRUCTURE ------------------------------------------- */

/* Appends the ENVELOPE of the message rooted at part index msg (0 for the
 * message itself; or the child of a message/rfc822 part). Sender and
 * Reply-To default to From (RFC 3501 7.4.2). 0, or -1 on out's cap or if
 * the part has no envelope. */
int mime_imap_envelope(const struct mime_message *m, uint32_t msg, struct buf *out) ATTR_WARN_UNUSED;
/* Appends BODYSTRUCTURE (extended = true) or BODY (false) for part index
 * part (0 = the whole message). 0 or -1 on out's cap. */
int mime_imap_bodystructure(const struct mime_message *m, uint32_t part, bool extended,
			    struct buf *out) ATTR_WARN_UNUSED;
/* Appends one IMAP string (NIL if p is NULL), quoted or literal as above. */
void mime_imap_string(struct buf *out, const void *p, size_t n);

/* ---- BODY[section] ------------------------------------------------------ */

#define MIME_SECTION_MAX_DEPTH 100
#define MIME_SECTION_MAX_FIELDS 64

enum mime_section_kind {
	MIME_SECT_BODY,        /* BODY[] or BODY[1.2]: whole message / part body */
	MIME_SECT_HEADER,      /* [HEADER], [1.HEADER] (1 must be message/rfc822) */
	MIME_SECT_FIELDS,      /* [HEADER.FIELDS (a b)] */
	MIME_SECT_FIELDS_NOT,  /* [HEADER.FIELDS.NOT (a b)] */
	MIME_SECT_TEXT,        /* [TEXT], [1.TEXT] */
	MIME_SECT_MIME,        /* [1.MIME]: the part's own MIME header */
};

struct mime_section {
	uint32_t num[MIME_SECTION_MAX_DEPTH];
	unsigned n_num;
	enum mime_section_kind kind;
	/* Field names for FIELDS / FIELDS_NOT, pointing into the parsed text. */
	const char *field[MIME_SECTION_MAX_FIELDS];
	size_t field_len[MIME_SECTION_MAX_FIELDS];
	unsigned n_fields;
};

/* Parses the text between the brackets of BODY[...] (e.g. "1.2.MIME",
 * "HEADER.FIELDS (From To)", ""), case-insensitively. s must outlive sec.
 * 0, or -1 on a syntax error (the IMAP engine answers BAD). */
int mime_section_parse(const char *s, size_t n, struct mime_section *sec) ATTR_WARN_UNUSED;

/* The bytes a section stands for. When filter is false they are exactly
 * range (physical and wire offsets given). When filter is true
 * (HEADER.FIELDS[.NOT]) they are the fields of the header in range selected
 * by mime_section_filter() followed by a CRLF. A part number that does not
 * exist gives an empty range (RFC 3501 leaves it open; Dovecot answers ""). */
struct mime_section_bytes {
	struct mime_range range;
	uint32_t part; /* index of the part addressed */
	bool filter;
	bool missing;  /* no such part: range is empty */
};
int mime_section_resolve(const struct mime_message *m, const struct mime_section *sec,
			 struct mime_section_bytes *r) ATTR_WARN_UNUSED;
/* Appends the HEADER.FIELDS[.NOT] selection of the raw header bytes (the
 * physical bytes of r->range) in wire form, ending with the blank line. */
int mime_section_filter(const struct mime_section *sec, const uint8_t *hdr, size_t n,
			struct buf *out) ATTR_WARN_UNUSED;

/* Streaming LF -> CRLF with a wire-offset window (the partial <o.n>).
 *   mime_wire_init(&w, start_woff, o, n): the bytes fed next begin at wire
 *   offset start_woff of the section; output is wire bytes [o, o+n) of the
 *   section (n = UINT64_MAX for no limit). Bare LF becomes CRLF; a CR at the
 *   end of one chunk followed by LF at the start of the next is handled. */
struct mime_wire {
	uint64_t pos;   /* wire offset of the next byte */
	uint64_t begin, end;
	bool prev_cr;
	bool nul_0x80;  /* NUL is sent as 0x80 in non-binary literals, as Dovecot
			 * does; set by init, clear it for BINARY/literal8 */
};
void mime_wire_init(struct mime_wire *w, uint64_t start_woff, uint64_t o, uint64_t n);
/* Appends the converted window part of p[0..n) to out. Returns 1 if more
 * input may produce output, 0 once the window is complete, -1 on out's cap. */
int mime_wire_feed(struct mime_wire *w, const void *p, size_t n, struct buf *out) ATTR_WARN_UNUSED;

/* ---- BINARY[section] (RFC 3516) ----------------------------------------- */

/* Appends the part's body (the physical bytes of part->body) with its
 * Content-Transfer-Encoding removed. Text in 7bit/8bit/binary is passed
 * through unchanged (in wire form: bare LF -> CRLF). Returns 0, -1 on out's
 * cap, -2 for an encoding we cannot decode (UNKNOWN-CTE), or -3 when the
 * base64/QP is damaged (Dovecot answers NO rather than guess). The size for
 * BINARY.SIZE is out's growth. The answer should be a literal8 (~{n}) when
 * mime_binary_is_literal8() says so. */
int mime_binary_decode(const struct mime_part *part, const uint8_t *body, size_t n,
		       struct buf *out) ATTR_WARN_UNUSED;
/* True if Dovecot sends the decoded data as literal8: the part was base64 or
 * QP encoded, or the data contains NUL. */
bool mime_binary_is_literal8(const struct mime_part *part, const uint8_t *data, size_t n);

/* ---- SEARCH ------------------------------------------------------------- */

/* Appends s, lowercased in a simple locale-independent way (ASCII, Latin-1,
 * Latin Extended-A, Greek, Cyrillic), so SEARCH can do substring matching. */
void mime_search_fold(const uint8_t *s, size_t n, struct buf *out);
/* Appends the decoded (RFC 2047), UTF-8, folded form of a header value. */
int mime_search_header(const uint8_t *v, size_t n, struct buf *out) ATTR_WARN_UNUSED;
/* Appends the decoded, UTF-8, folded text of every text leaf part of the
 * message (msg = the whole message bytes as parsed), separated by newlines.
 * Other parts are skipped. Output is capped by out->max. */
int mime_search_body(const struct mime_message *m, const uint8_t *msg, size_t n,
		     struct buf *out) ATTR_WARN_UNUSED;

#endif
