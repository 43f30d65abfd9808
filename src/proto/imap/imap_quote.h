/* SPDX-License-Identifier: MIT */
/* Writing IMAP strings in responses (RFC 9051 4.1-4.3, 9): atom, quoted or
 * literal, and literal8 (RFC 3516). nstring/string output without UTF-8 is
 * mime_imap_string() from mime/imap_view.h (Dovecot's rules: quoted unless
 * 8-bit, CR, LF, NUL or more than 4 escapes make it a literal); this file
 * adds what that does not cover:
 *   - astrings (mailbox names in LIST/LSUB/STATUS, flag-free keywords),
 *     written as an atom when every byte is an ASTRING-CHAR and the text is
 *     not NIL;
 *   - the UTF-8 rule of IMAP4rev2 / UTF8=ACCEPT (RFC 9051 4.3.1, RFC 6855
 *     3): valid UTF-8 may go in a quoted string;
 *   - literal and literal8 headers for data streamed by the caller.
 * Servers never send non-synchronising literals (RFC 7888 3). */
#ifndef TERN_PROTO_IMAP_QUOTE_H
#define TERN_PROTO_IMAP_QUOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

enum imap_quote_flags {
	IMAP_QUOTE_UTF8 = 1 << 0, /* the session is IMAP4rev2 or enabled UTF8=ACCEPT */
};

/* True if p[0..n) can be sent as an atom: non-empty, only ASTRING-CHARs
 * (ATOM-CHAR or "]"), and not "NIL" in any case (which would read as NIL). */
bool imap_quote_is_astring_atom(const void *p, size_t n);
/* Appends p[0..n) as an astring: atom if possible, else as
 * imap_quote_string. */
void imap_quote_astring(struct buf *out, const void *p, size_t n, unsigned flags);
/* Appends p[0..n) as a string: quoted if every byte is TEXT-CHAR 7-bit
 * (or, with IMAP_QUOTE_UTF8, valid UTF-8) without NUL and with at most 4
 * characters to escape; a literal otherwise. p may be NULL when n is 0. */
void imap_quote_string(struct buf *out, const void *p, size_t n, unsigned flags);
/* Appends an nstring: NIL when p is NULL, else imap_quote_string. */
void imap_quote_nstring(struct buf *out, const void *p, size_t n, unsigned flags);
/* Appends "{n}\r\n" (or "~{n}\r\n" for literal8); the caller sends the n
 * bytes itself. */
void imap_quote_literal_header(struct buf *out, uint64_t n, bool literal8);

#endif
