/* SPDX-License-Identifier: MIT */
/* Mailbox name encodings: modified UTF-7 (RFC 3501 5.1.3), which IMAP4rev1
 * clients use on the wire, and the UTF-8 names of IMAP4rev2 / UTF8=ACCEPT
 * (RFC 9051 5.1, RFC 6855 3).
 *
 * Both converters are strict, so that every name has exactly one wire form
 * and decode(encode(x)) == x, encode(decode(y)) == y hold:
 *   - mUTF-7: printable US-ASCII (0x20-0x7e) stands for itself except "&",
 *     written "&-"; everything else is "&" + modified base64 (RFC 3501
 *     5.1.3: "," instead of "/", no padding) of UTF-16BE + "-". Refused:
 *     raw 8-bit or control bytes, "&" not followed by "-" or base64, an
 *     unterminated shift, a shift that encodes printable ASCII, two shifts
 *     back to back ("&AOk-&AOk-": one shift is the canonical form), leftover
 *     bits that are non-zero or make a whole base64 character, unpaired
 *     surrogates, U+0000.
 *   - UTF-8: shortest form only, no surrogates (U+D800-DFFF), nothing above
 *     U+10FFFF, no U+0000.
 * Wire data is (ptr, len); nothing here relies on NUL termination. */
#ifndef TERN_PROTO_IMAP_UTF7_H
#define TERN_PROTO_IMAP_UTF7_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/err.h"

/* Appends the UTF-8 form of the mUTF-7 name s[0..n) to out. Returns 0, or
 * -1 if s is not canonical mUTF-7 or out's cap is reached; on -1, out is
 * left as it was. */
int imap_utf7_to_utf8(const char *s, size_t n, struct buf *out) ATTR_WARN_UNUSED;
/* Appends the mUTF-7 form of the UTF-8 name s[0..n) to out. Returns 0, or
 * -1 if s is not valid UTF-8 (as above) or out's cap is reached; on -1, out
 * is left as it was. */
int imap_utf8_to_utf7(const char *s, size_t n, struct buf *out) ATTR_WARN_UNUSED;

/* True if s[0..n) is canonical mUTF-7 (imap_utf7_to_utf8 would succeed). */
bool imap_utf7_valid(const char *s, size_t n);
/* True if s[0..n) is strict UTF-8 as above (the empty string is valid). */
bool imap_utf8_valid(const void *s, size_t n);
/* True if p[0..n) is acceptable as a UTF-8 mailbox name (IMAP4rev2,
 * UTF8=ACCEPT): non-empty, strict UTF-8, and free of the characters
 * Net-Unicode (RFC 5198 2) rules out: C0 controls, DEL, C1 controls,
 * U+2028/U+2029 and the noncharacters U+FFFE/U+FFFF. NFC normalisation is
 * not checked (no Unicode tables here). Policy beyond this (hierarchy
 * separator, "..", leading "/") is the store's business. */
bool imap_mailbox_name_utf8_ok(const void *p, size_t n);

#endif
