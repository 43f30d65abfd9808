/* SPDX-License-Identifier: MIT */
/* Fuzz the whole message pipeline: parse (whole and split at a point
 * chosen by the input, which must agree), every IMAP view of the result,
 * every BODY[section] of every part, BINARY and SEARCH, and the cache
 * round trip; the raw input is also fed to the cache deserialiser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime/imap_view.h"
#include "mime/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void views(const struct mime_message *m, const uint8_t *data, size_t size, struct buf *o)
{
	buf_clear(o);
	if (mime_imap_bodystructure(m, 0, true, o) < 0 || mime_imap_bodystructure(m, 0, false, o) < 0)
		abort();
	for (uint32_t i = 0; i < m->n_parts; i++) {
		const struct mime_part *p = &m->parts[i];
		if (p->envelope != MIME_NIL && mime_imap_envelope(m, i, o) < 0)
			abort();
		if (data && p->body.off + p->body.len <= size) {
			struct buf b = BUF_INIT(1 << 20);
			int r = mime_binary_decode(p, data + p->body.off, (size_t)p->body.len, &b);
			(void)r;
			buf_deinit(&b);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_message *m = mime_parse(data, size, NULL);
	struct buf a = BUF_INIT(0), b = BUF_INIT(0);
	views(m, data, size, &a);

	size_t split = size ? data[0] % (size + 1) : 0;
	struct mime_parser *p = mime_parser_new(NULL);
	mime_parser_feed(p, data, split);
	mime_parser_feed(p, data + split, size - split);
	struct mime_message *m2 = mime_parser_finish(&p);
	views(m2, data, size, &b);
	if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
		abort(); /* chunking must not change the result */
	mime_message_free(&m2);

	/* sections: every part number path of depth <= 2, each kind */
	static const char *const kinds[] = { "", ".MIME", ".HEADER", ".TEXT",
					     ".HEADER.FIELDS (Subject From)",
					     ".HEADER.FIELDS.NOT (Subject)" };
	for (unsigned x = 1; x <= 3; x++)
		for (unsigned y = 0; y <= 3; y++)
			for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
				char s[64];
				int l = y ? snprintf(s, sizeof s, "%u.%u%s", x, y, kinds[k])
					  : snprintf(s, sizeof s, "%u%s", x, kinds[k]);
				struct mime_section sec;
				struct mime_section_bytes r;
				if (mime_section_parse(s, (size_t)l, &sec) < 0)
					continue;
				if (mime_section_resolve(m, &sec, &r) < 0)
					abort();
				if (r.range.off + r.range.len > size)
					abort();
				struct buf o = BUF_INIT(0);
				if (r.filter) {
					if (mime_section_filter(&sec, data + r.range.off,
								(size_t)r.range.len, &o) < 0)
						abort();
				} else {
					struct mime_wire w;
					mime_wire_init(&w, 0, 1, 7);
					if (mime_wire_feed(&w, data + r.range.off, (size_t)r.range.len,
							   &o) < 0)
						abort();
				}
				buf_deinit(&o);
			}
	struct buf sb = BUF_INIT(1 << 20);
	if (mime_search_body(m, data, size, &sb) < 0) {
		/* over the cap: fine */
	}
	buf_deinit(&sb);

	struct buf ser = BUF_INIT(0);
	if (mime_message_serialize(m, &ser) < 0)
		abort();
	m2 = mime_message_deserialize(ser.data, ser.len);
	if (!m2)
		abort();
	views(m2, NULL, 0, &b);
	views(m, NULL, 0, &a);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		abort();
	mime_message_free(&m2);
	buf_deinit(&ser);

	m2 = mime_message_deserialize(data, size);
	if (m2) {
		views(m2, NULL, 0, &b);
		mime_message_free(&m2);
	}
	buf_deinit(&a);
	buf_deinit(&b);
	mime_message_free(&m);
	return 0;
}
