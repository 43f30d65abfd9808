/* SPDX-License-Identifier: MIT */
/* SMTP reply formatting (RFC 5321 4.2) with enhanced status codes
 * (RFC 2034, RFC 3463). Kept apart so the client engine can share it later.
 * The text comes from us or the application, never raw from the client, but
 * we still never let a CR or LF inside a line reach the wire: '\n' separates
 * the lines of a multi-line reply, other control bytes become '?'. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/smtp/smtp_int.h"

void smtp_reply_vformat(struct buf *b, int code, const char *esc, const char *fmt, va_list ap)
{
	/* RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39 */
	ASSERT(code >= 200 && code <= 599);
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	ASSERT(n >= 0);
	char *text = xmalloc((size_t)n + 1);
	vsnprintf(text, (size_t)n + 1, fmt, ap);

	const char *p = text, *end = text + n;
	for (;;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		buf_xprintf(b, "%03d%c", code, nl ? '-' : ' ');
		if (esc && *esc)
			buf_xprintf(b, "%s%s", esc, le > p ? " " : "");
		for (const char *q = p; q < le; q++) {
			char c = *q;
			if (c == '\r')
				continue;
			if ((unsigned char)c < 0x20 || c == 0x7f)
				c = '?';
			buf_xappend(b, &c, 1);
		}
		buf_xappend(b, "\r\n", 2);
		if (!nl)
			break;
		p = nl + 1;
	}
	free(text);
}

void smtp_reply_format(struct buf *b, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	smtp_reply_vformat(b, code, esc, fmt, ap);
	va_end(ap);
}
