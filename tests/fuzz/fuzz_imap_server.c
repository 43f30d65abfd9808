/* SPDX-License-Identifier: MIT */
/* Fuzz the IMAP engine with whole sessions against the fake in-memory
 * application (tests/unit/imap_fake.h): the reader, literals and APPEND
 * streaming, AUTHENTICATE (real sasl module), LIST/STATUS/SELECT/COPY/MOVE/
 * EXPUNGE/IDLE, PENDING verdicts.
 *
 * Input: one control byte, then client bytes.
 *   control & 1    plaintext auth allowed
 *   control & 2    STARTTLS offered ("succeeds" at once)
 *   control & 4    every verdict PENDING, resolved by the driver
 *   control & 8    LITERAL+
 *   control >> 4   feed chunk size - 1
 * Checks: never consumes more than offered, output bounded, selects and
 * unselects pair up, after timeout() it wants CLOSE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "../unit/imap_fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	unsigned c = data[0];
	data++;
	size--;
	static struct fake f;
	fk_init(&f);
	f.async = c & 4;
	struct imap_server_settings set = { 0 };
	set.plaintext_auth = c & 1;
	set.starttls_offered = c & 2;
	set.literal_plus = c & 8;
	set.append_limit = 4096;
	struct imap_server *s = imap_server_new(&set, &fk_ops, &f);
	f.s = s;
	imap_server_start(s);
	size_t chunk = (c >> 4) + 1, off = 0, avail = 0;
	for (unsigned guard = 0; guard < 200000; guard++) {
		struct buf *ob = imap_server_output(s);
		ASSERT(ob->len < (64u << 20));
		buf_consume(ob, ob->len);
		if (f.has_pend) {
			f.has_pend = false;
			if (f.pend_work) { /* an offloaded SEARCH/FETCH batch */
				void (*work)(struct imap_server *) = f.pend_work;
				f.pend_work = NULL;
				work(s);
			}
			imap_server_resume(s, f.pend_v);
			continue;
		}
		enum proto_want w = imap_server_want(s);
		if (w == PROTO_WANT_CLOSE)
			break;
		if (w == PROTO_WANT_STARTTLS) {
			off = avail;
			imap_server_tls_started(s);
			continue;
		}
		if (off == avail) {
			if (avail == size)
				break;
			avail = avail + chunk > size ? size : avail + chunk;
		}
		size_t used = imap_server_feed(s, data + off, avail - off);
		ASSERT(used <= avail - off);
		off += used;
		if (f.sel >= 0 && (guard & 7) == 0)
			imap_server_mailbox_changed(s);
		if (used == 0 && !f.has_pend && imap_server_want(s) == PROTO_WANT_READ) {
			if (avail == size)
				break;
			avail++;
		}
	}
	if (!f.has_pend) {
		imap_server_timeout(s);
		ASSERT(imap_server_want(s) == PROTO_WANT_CLOSE);
	}
	imap_server_free(&s);
	ASSERT(f.selects >= f.unselects);
	return 0;
}
