/* SPDX-License-Identifier: MIT */
/* Writing astrings, strings and literal headers in responses; the non-UTF-8
 * string rules are mime_imap_string()'s, so FETCH ENVELOPE strings and ours
 * agree byte for byte. */
#include <inttypes.h>
#include <string.h>

#include "base/util.h"
#include "mime/imap_view.h"
#include "proto/imap/imap_quote.h"
#include "proto/imap/imap_utf7.h"

/* RFC 9051 9: ATOM-CHAR is any CHAR except atom-specials ("(" ")" "{" SP
 * CTL "%" "*" DQUOTE "\" "]"); ASTRING-CHAR adds "]". */
static bool astring_char(uint8_t c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return !memchr("(){%*\"\\", c, 7);
}

bool imap_quote_is_astring_atom(const void *pv, size_t n)
{
	const uint8_t *p = pv;
	if (n == 0)
		return false;
	if (n == 3 && ascii_prefix_ci(p, n, "NIL"))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!astring_char(p[i]))
			return false;
	return true;
}

void imap_quote_string(struct buf *out, const void *pv, size_t n, unsigned flags)
{
	const uint8_t *p = pv ? pv : (const void *)"";
	if (!(flags & IMAP_QUOTE_UTF8)) {
		mime_imap_string(out, p, n);
		return;
	}
	bool quoted = imap_utf8_valid(p, n); /* also refuses NUL */
	unsigned esc = 0;
	for (size_t i = 0; i < n && quoted; i++) {
		if (p[i] == '\r' || p[i] == '\n')
			quoted = false;
		else if ((p[i] == '"' || p[i] == '\\') && ++esc > 4)
			quoted = false;
	}
	if (!quoted) {
		imap_quote_literal_header(out, n, false);
		buf_xappend(out, p, n);
		return;
	}
	buf_xappend(out, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '"' || p[i] == '\\')
			buf_xappend(out, "\\", 1);
		buf_xappend(out, p + i, 1);
	}
	buf_xappend(out, "\"", 1);
}

void imap_quote_astring(struct buf *out, const void *p, size_t n, unsigned flags)
{
	if (imap_quote_is_astring_atom(p, n))
		buf_xappend(out, p, n);
	else
		imap_quote_string(out, p, n, flags);
}

void imap_quote_nstring(struct buf *out, const void *p, size_t n, unsigned flags)
{
	if (!p)
		buf_xappend(out, "NIL", 3);
	else
		imap_quote_string(out, p, n, flags);
}

void imap_quote_literal_header(struct buf *out, uint64_t n, bool literal8)
{
	buf_xprintf(out, "%s{%" PRIu64 "}\r\n", literal8 ? "~" : "", n);
}
