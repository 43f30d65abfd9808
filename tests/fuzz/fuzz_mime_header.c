/* SPDX-License-Identifier: MIT */
/* Fuzz the header field scanner, unfolding, the RFC 2047 decoder on every
 * value, and HEADER.FIELDS[.NOT] filtering of the raw block. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime/imap_view.h"
#include "mime/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0, prev = 0;
	const uint8_t *name, *v;
	size_t nl, vl;
	struct buf out = BUF_INIT(0);
	while (mime_header_next(data, size, &pos, &name, &nl, &v, &vl) > 0) {
		if (pos <= prev || pos > size || name < data || name + nl > data + size ||
		    v < data || v + vl > data + size || nl == 0)
			abort();
		prev = pos;
		buf_clear(&out);
		mime_unfold(v, vl, &out);
		if (memchr(out.data ? out.data : (const uint8_t *)"", '\n', out.len) &&
		    out.len && memchr(out.data, '\r', out.len) == NULL) {
			/* a bare LF can remain only if not followed by WSP */
		}
		buf_clear(&out);
		if (mime_search_header(v, vl, &out) < 0)
			abort();
	}
	static const char *const secs[] = { "HEADER.FIELDS (From Subject To)",
					    "HEADER.FIELDS.NOT (Received)" };
	for (int i = 0; i < 2; i++) {
		struct mime_section sec;
		if (mime_section_parse(secs[i], strlen(secs[i]), &sec) < 0)
			abort();
		buf_clear(&out);
		if (mime_section_filter(&sec, data, size, &out) < 0)
			abort();
	}
	buf_deinit(&out);
	return 0;
}
