/* SPDX-License-Identifier: MIT */
/* The message model: RFC 5322 + MIME (RFC 2045-2049) parsed in one pass into a
 * small, flat, position-independent part tree that the index can cache.
 *
 * Everything that reads a message (IMAP FETCH/SEARCH, POP3 TOP, bounces) goes
 * through this module. It does no I/O: the caller feeds the message bytes
 * (whole, or in chunks as they are written to disk) and gets back a
 * struct mime_message. The bytes themselves are NOT kept; views that need
 * them (BODY[...], BINARY, SEARCH BODY) take the bytes again from the caller.
 *
 * Offsets: physical and wire.
 *   Tern stores messages with LF line ends; IMAP talks CRLF. The parser
 *   accepts LF, CRLF or a mix. Every range below is recorded twice: "off/len"
 *   are physical byte offsets into what was fed (what pread() needs), and
 *   "woff/wlen" are offsets in the wire form, where every bare LF (one not
 *   preceded by CR) becomes CRLF and everything else is unchanged. For an
 *   LF-only file, wire size = file size + number of LFs. IMAP sizes, line
 *   counts and partial <o.n> offsets are always wire values. We store both
 *   rather than converting on demand because the conversion needs to count
 *   LFs from the start of the file, which is exactly what the single parse
 *   pass already does for free; a range's wire form is then streamed with
 *   struct mime_wire (imap_view.h), which also skips/limits in wire bytes.
 *
 * Memory: a mime_message is a handful of heap arrays (parts, params,
 * envelopes) plus one string pool; strings are (offset, length) pairs into
 * the pool (struct mime_str), so the whole thing serialises with memcpy-like
 * cost and deserialises after validation without pointer fix-ups.
 *
 * Limits (design 2.1 rule 2, Dovecot's defaults): depth 100, parts 10000,
 * header bytes per part 1 MiB kept (bigger headers are scanned, the excess is
 * not kept), parameters per part 256. Beyond a limit the parser degrades
 * (nested multiparts become opaque leaves, extra fields are dropped) and
 * sets a MIME_MSG_* flag; it never fails and never allocates beyond the
 * limits, so memory is O(limits), not O(input).
 */
#ifndef TERN_MIME_MESSAGE_H
#define TERN_MIME_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"

#define MIME_NIL UINT32_MAX /* "absent" for mime_str.off and part indexes */

/* A string in the message's pool. off == MIME_NIL means absent (IMAP NIL);
 * len == 0 with a valid off is the empty string (IMAP ""). Pool strings
 * are NUL-terminated (not counted) for convenience, but may contain NULs. */
struct mime_str {
	uint32_t off, len;
};

/* A byte range of the message, physical and wire (see above). */
struct mime_range {
	uint64_t off, len;   /* physical: bytes as fed */
	uint64_t woff, wlen; /* wire: bare LF counted as CRLF */
};

struct mime_limits {
	unsigned max_depth;      /* nesting of multipart/message parts (100) */
	unsigned max_parts;      /* parts in one message (10000) */
	size_t max_header_bytes; /* header bytes kept per part (1 MiB) */
	unsigned max_params;     /* parameters kept per header field (256) */
};

/* Content-Transfer-Encoding (RFC 2045 6). */
enum mime_cte {
	MIME_CTE_7BIT, /* also the default when absent */
	MIME_CTE_8BIT,
	MIME_CTE_BINARY,
	MIME_CTE_QP,
	MIME_CTE_BASE64,
	MIME_CTE_OTHER, /* x-token or garbage: BINARY[] answers UNKNOWN-CTE */
};

enum mime_part_flags {
	MIME_PART_MULTIPART = 1 << 0,     /* multipart/... with a boundary: children = body parts */
	MIME_PART_MESSAGE = 1 << 1,       /* message/rfc822 or message/global: one child, the
					   * embedded message (header + body) */
	MIME_PART_TEXT = 1 << 2,          /* text/... (BODYSTRUCTURE carries a line count) */
	MIME_PART_HAS_CT = 1 << 3,        /* had a Content-Type field (else the default applies) */
	MIME_PART_NO_END_BOUNDARY = 1 << 4, /* multipart closed by EOF or an outer boundary */
	MIME_PART_HDR_TRUNCATED = 1 << 5, /* header longer than max_header_bytes */
	MIME_PART_IS_MSG_ROOT = 1 << 6,   /* an RFC 5322 message: has an envelope */
	MIME_PART_8BIT_HDR = 1 << 7,      /* raw 8-bit bytes in the header */
	MIME_PART_DEPTH_LIMIT = 1 << 8,   /* would have nested deeper: kept as a leaf */
};

/* One parameter (Content-Type / Content-Disposition) or one language tag
 * (value only). RFC 2231 continuations are joined as Dovecot does: name*0,
 * name*1... become "name"; name*0*, name*1*... become "name*" whose value is
 * the joined extended form charset'lang'%XX... (mime_param_decode() turns it
 * into UTF-8). Names keep their case; lookups are case-insensitive. */
struct mime_param {
	struct mime_str name, value;
};

/* The header fields an IMAP ENVELOPE is made of, as raw field bodies (leading
 * WSP dropped, folding and CRs kept: the ENVELOPE writer cleans them up the
 * way Dovecot does). Like Dovecot, the last occurrence of a string field
 * wins, and repeated address fields are concatenated, separated by a NUL
 * byte (which mime_addr_parse treats as a list separator). Address fields
 * are parsed when the envelope is written, keeping the cache small. */
struct mime_envelope {
	struct mime_str date, subject, from, sender, reply_to, to, cc, bcc, in_reply_to,
		message_id;
};

struct mime_part {
	uint32_t parent;       /* MIME_NIL for the root */
	uint32_t first_child;  /* MIME_NIL if none */
	uint32_t next;         /* next sibling, MIME_NIL if last */
	uint32_t n_children;
	uint16_t depth;        /* root = 0 */
	uint16_t flags;        /* enum mime_part_flags */
	uint8_t cte;           /* enum mime_cte */
	uint8_t pad_[3];

	/* The header block including the blank line that ends it (BODY[x.MIME],
	 * BODY[HEADER]); the body that follows (BODY[x], BODY[TEXT]). A part
	 * whose header is cut short by a boundary or EOF has an empty body. The
	 * line ending before a boundary belongs to the boundary (RFC 2046 5.1.1). */
	struct mime_range header, body;
	uint64_t body_lines;   /* lines in the body, IMAP's "size in text lines" */
	uint64_t header_lines;

	/* Content-Type, as written; defaults "text"/"plain" (RFC 2045 5.2) or
	 * "message"/"rfc822" inside multipart/digest (RFC 2046 5.1.5). */
	struct mime_str type, subtype;
	uint32_t params, n_params; /* index into mime_message.params */
	struct mime_str encoding;  /* Content-Transfer-Encoding token as written, or absent */
	struct mime_str id, description, md5, location; /* raw field bodies, unfolded */
	struct mime_str disposition;                      /* RFC 2183 type, or absent */
	uint32_t disp_params, n_disp_params;
	uint32_t languages, n_languages; /* Content-Language tags (values only) */
	uint32_t envelope;               /* index into envelopes if IS_MSG_ROOT, else MIME_NIL */
};

enum mime_message_flags {
	MIME_MSG_PART_LIMIT = 1 << 0,  /* max_parts reached: later parts folded into bodies */
	MIME_MSG_DEPTH_LIMIT = 1 << 1, /* max_depth reached somewhere */
	MIME_MSG_HDR_LIMIT = 1 << 2,   /* some header exceeded max_header_bytes */
	MIME_MSG_BROKEN = 1 << 3,      /* missing final boundary, header without end... */
	MIME_MSG_BARE_LF = 1 << 4,     /* input had LF line ends (wire form differs) */
	MIME_MSG_NUL = 1 << 5,         /* input contained NUL bytes */
};

struct mime_message {
	struct mime_part *parts; /* parts[0] is the message itself, in pre-order */
	uint32_t n_parts;
	struct mime_param *params;
	uint32_t n_params;
	struct mime_envelope *envelopes;
	uint32_t n_envelopes;
	uint8_t *pool;
	uint32_t pool_len;
	uint32_t flags; /* enum mime_message_flags */
	uint64_t size;  /* physical bytes fed */
	uint64_t wire_size;
	uint64_t lines; /* LF count of the whole message */
};

/* ---- Parsing ------------------------------------------------------------ */

/* Limits with Dovecot's defaults. */
void mime_limits_default(struct mime_limits *l);

struct mime_parser;

/* A parser for one message; limits NULL means defaults. */
struct mime_parser *mime_parser_new(const struct mime_limits *limits);
/* Feed the next n bytes. Consumes them all (a partial last line is kept
 * internally, bounded). Never fails: malformed input only sets flags. */
void mime_parser_feed(struct mime_parser *p, const void *data, size_t n);
/* End of input: closes open parts and returns the result (caller frees it
 * with mime_message_free). Frees the parser and NULLs *p. */
struct mime_message *mime_parser_finish(struct mime_parser **p);
/* Convenience: parse a whole message in one call. */
struct mime_message *mime_parse(const void *data, size_t n, const struct mime_limits *limits);
void mime_message_free(struct mime_message **m);

/* ---- Accessors ---------------------------------------------------------- */

/* Pointer to the string's bytes (NUL-terminated, len in *len_r), or NULL if
 * absent (len 0). Valid while the message lives. */
const char *mime_str_ptr(const struct mime_message *m, struct mime_str s, size_t *len_r);
static inline bool mime_str_nil(struct mime_str s)
{
	return s.off == MIME_NIL;
}
/* Case-insensitive lookup of a parameter in [first, first+n); NULL if none. */
const struct mime_param *mime_param_find(const struct mime_message *m, uint32_t first,
					 uint32_t n, const char *name);
/* A Content-Type parameter of part, e.g. "charset", "boundary", "name" (the
 * RFC 2231 "name*" form is decoded to UTF-8 into out when present). Returns
 * 0 and appends the UTF-8 value to out, or -1 if absent. */
int mime_part_param_utf8(const struct mime_message *m, const struct mime_part *part,
			 const char *name, struct buf *out) ATTR_WARN_UNUSED;

/* ---- Cache serialisation (for the index, issue 5) ----------------------- */

/* Appends a compact, versioned, position-independent image of m to out.
 * Typically 60-120 bytes per part plus the strings. Returns 0 or -1 if out
 * is over its cap. */
int mime_message_serialize(const struct mime_message *m, struct buf *out) ATTR_WARN_UNUSED;
/* Rebuilds a message from mime_message_serialize() output. Every index and
 * string reference is validated: corrupt or truncated input returns NULL. */
struct mime_message *mime_message_deserialize(const void *p, size_t n);

/* ---- Header-level helpers (also used by the views and by SMTP/bounces) -- */

/* Iterate over the header fields of a raw header block (the bytes of
 * part->header). *pos starts at 0. Returns 1 with name/value set (value is
 * raw: folding CRLF/LF kept, leading WSP after the colon removed), 0 at the
 * end of the block. Lines without a colon are skipped, as are obs-fws names
 * (RFC 5322 4.5: "Subject  :" is accepted, the name is trimmed). */
int mime_header_next(const uint8_t *hdr, size_t n, size_t *pos, const uint8_t **name_r,
		     size_t *name_len_r, const uint8_t **value_r, size_t *value_len_r);
/* Appends value with every CRLF/LF that is followed by WSP removed (RFC
 * 5322 2.2.3 unfolding) and trailing CR/LF dropped. */
void mime_unfold(const uint8_t *v, size_t n, struct buf *out);

/* One address from an address list (RFC 5322 3.4, obsolete syntax 4.4).
 * Groups are reported as a start entry (is_group_start, name = display name)
 * and an end entry (is_group_end), like IMAP's ENVELOPE. Strings are raw
 * bytes with quoting and comments removed; name is not RFC 2047-decoded (use
 * mime_decode_words). A field that is pure garbage yields entries with an
 * empty mailbox or host rather than failing; the rest of the list survives. */
struct mime_addr {
	const char *name;   /* display name or group name; NULL if none */
	const char *route;  /* obs-route "@a,@b" (without ':'); NULL if none */
	const char *mailbox; /* local part; NULL only for group markers */
	const char *host;   /* domain; NULL if the address had none */
	bool is_group_start, is_group_end;
	bool syntax_error; /* e.g. "<a@b" without '>': Dovecot reports host SYNTAX_ERROR */
};
struct mime_addr_list {
	struct mime_addr *v;
	size_t n;
	char *strings_; /* private storage */
	size_t strings_len_, strings_cap_;
	size_t cap_;
};
/* Parses an address-list field body (raw or unfolded; NUL separates lists).
 * max_addrs bounds the output (0 = 10000). Never fails; free with
 * mime_addr_list_free. */
void mime_addr_parse(const uint8_t *v, size_t n, size_t max_addrs, struct mime_addr_list *out);
void mime_addr_list_free(struct mime_addr_list *l);

/* A parsed date (RFC 5322 3.3, obsolete 4.3). */
struct mime_date {
	int64_t t;      /* seconds since the epoch, UTC */
	int tz_minutes; /* zone offset east of UTC, e.g. -420 for -0700 */
	bool tz_known;  /* false for "-0000" and unknown zone names (RFC 5322 3.3/4.3) */
};
/* 0 and *d set, or -1 if the value is not a date we can read with certainty
 * (we never guess). Accepts a missing weekday, 2- and 3-digit years (4.3),
 * named zones (UT/GMT/EST..PDT) and military letters (treated as -0000 per
 * RFC 5322 4.3), missing seconds, comments and odd spacing. */
int mime_date_parse(const uint8_t *v, size_t n, struct mime_date *d) ATTR_WARN_UNUSED;

/* ---- Decoding ----------------------------------------------------------- */

/* Decodes RFC 2047 encoded words in an unstructured header value (or a
 * display name) and converts everything to UTF-8, appending to out. Raw 8-bit
 * bytes that are not valid UTF-8 are taken as ISO-8859-1. Whitespace between
 * adjacent encoded words is dropped (RFC 2047 6.2). Returns 0 or -1 if out is
 * over its cap. */
int mime_decode_words(const uint8_t *v, size_t n, struct buf *out) ATTR_WARN_UNUSED;

/* Converts n bytes in charset (any name iconv knows; NULL/"" = us-ascii) to
 * UTF-8, appending to out. Invalid sequences become U+FFFD; an unknown
 * charset is treated as ISO-8859-1 if the bytes are not UTF-8. 0 or -1 on cap. */
int mime_charset_to_utf8(const char *charset, const uint8_t *p, size_t n,
			 struct buf *out) ATTR_WARN_UNUSED;

/* Streaming transfer decoders: state is carried between calls, so input may
 * be split anywhere. They tolerate the usual damage: base64 skips non-
 * alphabet bytes and stops at '='; QP keeps malformed '=' sequences literally
 * and strips trailing whitespace before a line break (RFC 2045 6.7 rule 3).
 * Output is appended to out; returns 0 or -1 if out is over its cap. */
struct mime_decoder {
	enum mime_cte cte;
	uint32_t acc;   /* base64 bits / QP pending bytes */
	uint8_t nacc;
	uint8_t pend[80]; /* QP: "=X" or trailing whitespace held back */
	uint8_t npend;
	bool done;      /* base64 padding seen */
	bool invalid;   /* any damage seen (for BINARY) */
};
void mime_decoder_init(struct mime_decoder *d, enum mime_cte cte);
int mime_decoder_feed(struct mime_decoder *d, const void *p, size_t n,
		      struct buf *out) ATTR_WARN_UNUSED;
int mime_decoder_finish(struct mime_decoder *d, struct buf *out) ATTR_WARN_UNUSED;

/* Decodes an RFC 2231 extended value "charset'lang'%XX..." to UTF-8. */
int mime_param_decode(const uint8_t *v, size_t n, struct buf *out) ATTR_WARN_UNUSED;

#endif
