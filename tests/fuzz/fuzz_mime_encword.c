/* SPDX-License-Identifier: MIT */
/* Fuzz RFC 2047 decoding, RFC 2231 values, charset conversion (charset name
 * taken from the input) and the streaming base64/QP decoders, which must
 * give the same output whole and split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime/imap_view.h"
#include "mime/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out = BUF_INIT(0), o2 = BUF_INIT(0);
	if (mime_decode_words(data, size, &out) < 0)
		abort();
	buf_clear(&out);
	if (mime_param_decode(data, size, &out) < 0)
		abort();
	if (size > 1) {
		static const char *const cs[] = { "utf-8", "iso-8859-1", "windows-1252",
						  "iso-2022-jp", "shift_jis", "x-unknown", "utf-16",
						  "koi8-r" };
		buf_clear(&out);
		if (mime_charset_to_utf8(cs[data[0] % 8], data + 1, size - 1, &out) < 0)
			abort();
	}
	for (int c = 0; c < 2; c++) {
		enum mime_cte cte = c ? MIME_CTE_QP : MIME_CTE_BASE64;
		struct mime_decoder d;
		buf_clear(&out);
		buf_clear(&o2);
		mime_decoder_init(&d, cte);
		if (mime_decoder_feed(&d, data, size, &out) < 0 || mime_decoder_finish(&d, &out) < 0)
			abort();
		size_t split = size ? data[size - 1] % (size + 1) : 0;
		mime_decoder_init(&d, cte);
		if (mime_decoder_feed(&d, data, split, &o2) < 0 ||
		    mime_decoder_feed(&d, data + split, size - split, &o2) < 0 ||
		    mime_decoder_finish(&d, &o2) < 0)
			abort();
		if (out.len != o2.len || (out.len && memcmp(out.data, o2.data, out.len) != 0))
			abort();
	}
	buf_clear(&out);
	mime_search_fold(data, size, &out);
	buf_deinit(&out);
	buf_deinit(&o2);
	return 0;
}
