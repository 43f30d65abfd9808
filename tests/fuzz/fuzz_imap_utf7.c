/* SPDX-License-Identifier: MIT */
/* Fuzz the mailbox name encodings (proto/imap/imap_utf7) and the string
 * writers (imap_quote) with round-trip properties:
 *   - input as UTF-8: if valid, encode() succeeds, the result is canonical
 *     mUTF-7 and decode(encode(x)) == x; if not, encode() refuses it;
 *   - input as mUTF-7: if decode() accepts it, the result is valid UTF-8
 *     and encode(decode(y)) == y (canonical form is unique);
 *   - a refusal leaves the output buffer as it was;
 *   - imap_mailbox_name_utf8_ok() implies imap_utf8_valid();
 *   - imap_quote_astring() writes an atom only for ASTRING-CHARs, else a
 *     quoted string whose unescaped content is the input, or a literal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/imap/imap_quote.h"
#include "proto/imap/imap_utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_quote(const uint8_t *data, size_t size, unsigned flags)
{
	struct buf q = BUF_INIT(0);
	imap_quote_astring(&q, data, size, flags);
	if (imap_quote_is_astring_atom(data, size)) {
		ASSERT(q.len == size && memcmp(q.data, data, size) == 0);
	} else if (q.len && q.data[0] == '"') {
		/* unescape and compare */
		struct buf u = BUF_INIT(0);
		ASSERT(q.len >= 2 && q.data[q.len - 1] == '"');
		for (size_t i = 1; i + 1 < q.len; i++) {
			uint8_t c = q.data[i];
			ASSERT(c != '\r' && c != '\n' && c != 0);
			if (c == '\\') {
				i++;
				ASSERT(i + 1 < q.len && (q.data[i] == '"' || q.data[i] == '\\'));
				c = q.data[i];
			} else {
				ASSERT(c != '"');
			}
			if (!(flags & IMAP_QUOTE_UTF8))
				ASSERT(c < 0x80);
			buf_xappend(&u, &c, 1);
		}
		ASSERT(u.len == size && (size == 0 || memcmp(u.data, data, size) == 0));
		buf_deinit(&u);
	} else {
		ASSERT(q.len > 0 && q.data[0] == '{');
		const uint8_t *crlf = memchr(q.data, '\n', q.len);
		ASSERT(crlf);
		size_t hdr = (size_t)(crlf - q.data) + 1;
		ASSERT(q.len - hdr == size && memcmp(q.data + hdr, data, size) == 0);
		ASSERT(strtoull((const char *)q.data + 1, NULL, 10) == size);
	}
	buf_deinit(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct buf a = BUF_INIT(0), b = BUF_INIT(0);

	/* as UTF-8 */
	buf_xappend(&a, "pre", 3);
	bool valid8 = imap_utf8_valid(data, size);
	int r = imap_utf8_to_utf7(s, size, &a);
	ASSERT((r == 0) == valid8);
	if (r == 0) {
		const char *enc = (const char *)a.data + 3;
		size_t elen = a.len - 3;
		for (size_t i = 0; i < elen; i++)
			ASSERT(enc[i] >= 0x20 && enc[i] <= 0x7e);
		ASSERT(imap_utf7_valid(enc, elen));
		ASSERT(imap_utf7_to_utf8(enc, elen, &b) == 0);
		ASSERT(b.len == size && (size == 0 || memcmp(b.data, data, size) == 0));
	} else {
		ASSERT(a.len == 3 && memcmp(a.data, "pre", 3) == 0);
	}
	if (imap_mailbox_name_utf8_ok(data, size))
		ASSERT(valid8 && size > 0);

	/* as mUTF-7 */
	buf_clear(&a);
	buf_clear(&b);
	buf_xappend(&a, "pre", 3);
	r = imap_utf7_to_utf8(s, size, &a);
	ASSERT((r == 0) == imap_utf7_valid(s, size));
	if (r == 0) {
		const char *dec = (const char *)a.data + 3;
		size_t dlen = a.len - 3;
		ASSERT(imap_utf8_valid(dec, dlen));
		ASSERT(imap_utf8_to_utf7(dec, dlen, &b) == 0);
		ASSERT(b.len == size && (size == 0 || memcmp(b.data, data, size) == 0));
	} else {
		ASSERT(a.len == 3 && memcmp(a.data, "pre", 3) == 0);
	}
	buf_deinit(&a);
	buf_deinit(&b);

	check_quote(data, size, 0);
	check_quote(data, size, IMAP_QUOTE_UTF8);
	return 0;
}
