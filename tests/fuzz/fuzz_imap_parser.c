/* SPDX-License-Identifier: MIT */
/* Fuzz the IMAP command reader (proto/imap/imap_parser) with whole client
 * byte streams, answering continuations like an engine.
 *
 * Input: two control bytes, then client bytes.
 *   c0 & 3      non-synchronising literals: 0 LITERAL-, 1/3 LITERAL+, 2 none
 *   c0 & 4      APPEND streaming on
 *   c0 & 8      small limits (line 64, literal 100, stream 300, command 256,
 *               16 args, depth 4); otherwise the defaults
 *   c0 >> 4     seed of the chunk sizes for the split run
 *   c1 & 0x3f   refuse synchronising literals larger than this (0: never)
 *   c1 & 0x40   abort every second streamed literal at LITERAL_BEGIN
 *   c1 & 0x80   abort a streamed command halfway through its literal (an
 *               empty one right after LITERAL_END)
 * The stream is parsed twice: offered whole (unconsumed bytes re-offered),
 * and in pseudo-random chunks of 1..64 bytes. Both runs must give the same
 * event transcript (hashed), and every event must be well formed: bytes
 * consumed never exceed those offered, MORE consumes everything, argument
 * trees are NUL-terminated and EOL-closed, streamed data adds up to the
 * announced size unless the command was aborted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/imap/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct imap_parser *p;
	struct imap_parser_settings set;
	uint8_t c1;
	uint64_t hash;
	/* streamed literal bookkeeping */
	bool in_stream;
	uint64_t stream_size, stream_got;
	unsigned zero_events;
	bool dead;
};

static void mix(struct run *r, const void *pv, size_t n)
{
	const uint8_t *p = pv;
	for (size_t i = 0; i < n; i++) {
		r->hash ^= p[i];
		r->hash *= 1099511628211ull;
	}
}

static void mix_u64(struct run *r, uint64_t v)
{
	mix(r, &v, sizeof v);
}

static void walk(struct run *r, const struct imap_arg *a, size_t n, unsigned depth)
{
	ASSERT(depth <= r->set.max_depth + 1);
	ASSERT(a[n].type == IMAP_ARG_EOL);
	for (size_t i = 0; i < n; i++) {
		mix_u64(r, a[i].type);
		mix_u64(r, a[i].flags);
		ASSERT(a[i].type != IMAP_ARG_EOL);
		if (a[i].type == IMAP_ARG_LIST) {
			ASSERT(a[i].str == NULL);
			walk(r, a[i].list, a[i].list_n, depth + 1);
			mix(r, ")", 1);
			continue;
		}
		ASSERT(a[i].str && a[i].str[a[i].len] == 0);
		mix(r, a[i].str, a[i].len);
		if (a[i].type == IMAP_ARG_NUMBER)
			mix_u64(r, a[i].num);
		if (a[i].type == IMAP_ARG_ATOM || a[i].type == IMAP_ARG_NIL)
			ASSERT(a[i].len > 0);
	}
}

/* Returns false for MORE. */
static bool on_event(struct run *r, const struct imap_parse_event *ev, size_t used)
{
	/* DATA events are as many as the chunks: only their bytes count */
	if (ev->type != IMAP_PARSE_MORE && ev->type != IMAP_PARSE_LITERAL_DATA) {
		mix_u64(r, ev->type);
		if (ev->tag)
			mix(r, ev->tag, strlen(ev->tag) + 1);
		if (ev->name)
			mix(r, ev->name, strlen(ev->name) + 1);
	}
	if (used == 0 && ev->type != IMAP_PARSE_MORE)
		ASSERT(++r->zero_events < 8); /* zero-byte events cannot loop */
	else
		r->zero_events = 0;
	switch (ev->type) {
	case IMAP_PARSE_MORE:
		return false;
	case IMAP_PARSE_COMMAND:
		ASSERT(ev->tag && ev->name && !r->in_stream);
		walk(r, ev->args, ev->n_args, 0);
		if (strcmp(ev->name, "AUTHENTICATE") == 0 || strcmp(ev->name, "IDLE") == 0)
			imap_parser_read_line(r->p);
		break;
	case IMAP_PARSE_CONTINUATION:
		ASSERT(ev->tag && ev->name && !ev->nonsync);
		walk(r, ev->args, ev->n_args, 0);
		mix_u64(r, ev->literal_size);
		if ((r->c1 & 0x3f) && ev->literal_size > (r->c1 & 0x3f))
			imap_parser_literal_refuse(r->p);
		else
			imap_parser_literal_accept(r->p);
		break;
	case IMAP_PARSE_LITERAL_BEGIN:
		ASSERT(ev->streamed && !r->in_stream);
		ASSERT(ev->literal_size <= r->set.max_stream_literal);
		walk(r, ev->args, ev->n_args, 0);
		mix_u64(r, ev->literal_size);
		mix_u64(r, ev->literal_index);
		r->in_stream = true;
		r->stream_size = ev->literal_size;
		r->stream_got = 0;
		if ((r->c1 & 0x40) && (ev->literal_index & 1)) {
			imap_parser_abort_command(r->p);
			r->in_stream = false;
		}
		break;
	case IMAP_PARSE_LITERAL_DATA:
		ASSERT(r->in_stream && ev->len > 0);
		if (r->c1 & 0x80) {
			/* Abort in the middle: hash only the first half, so
			 * that where a chunk ends cannot change the result. */
			uint64_t half = (r->stream_size + 1) / 2;
			size_t m = ev->len;
			if (r->stream_got + m > half)
				m = (size_t)(half - r->stream_got);
			mix(r, ev->data, m);
			r->stream_got += ev->len;
			ASSERT(r->stream_got <= r->stream_size);
			if (r->stream_got >= half) {
				imap_parser_abort_command(r->p);
				r->in_stream = false;
			}
			break;
		}
		r->stream_got += ev->len;
		ASSERT(r->stream_got <= r->stream_size);
		mix(r, ev->data, ev->len);
		break;
	case IMAP_PARSE_LITERAL_END:
		ASSERT(r->in_stream && r->stream_got == r->stream_size);
		mix_u64(r, ev->nul);
		r->in_stream = false;
		if ((r->c1 & 0x80) && r->stream_size == 0) {
			imap_parser_abort_command(r->p); /* in the rest of the line */
		}
		break;
	case IMAP_PARSE_LINE:
		ASSERT(ev->data[ev->len] == 0);
		ASSERT(ev->len <= r->set.max_line);
		ASSERT(!memchr(ev->data, 0, ev->len));
		mix(r, ev->data, ev->len);
		break;
	case IMAP_PARSE_ERROR:
		ASSERT(ev->msg && ev->error != IMAP_PERR_NONE);
		mix(r, ev->msg, strlen(ev->msg));
		mix_u64(r, ev->error);
		mix_u64(r, ev->fatal);
		r->in_stream = false;
		if (ev->fatal)
			r->dead = true;
		break;
	}
	return true;
}

static void settings(struct imap_parser_settings *s, uint8_t c0)
{
	memset(s, 0, sizeof *s);
	s->nonsync = (c0 & 3) == 0 ? IMAP_NONSYNC_MINUS
		   : (c0 & 3) == 2 ? IMAP_NONSYNC_NONE
				   : IMAP_NONSYNC_PLUS;
	s->stream_append = c0 & 4;
	if (c0 & 8) {
		s->max_line = 64;
		s->max_literal = 100;
		s->max_stream_literal = 300;
		s->max_command = 256;
		s->max_args = 16;
		s->max_depth = 4;
	} else {
		s->max_line = IMAP_PARSER_DEF_MAX_LINE;
		s->max_literal = IMAP_PARSER_DEF_MAX_LITERAL;
		s->max_stream_literal = IMAP_PARSER_DEF_MAX_STREAM;
		s->max_command = IMAP_PARSER_DEF_MAX_COMMAND;
		s->max_args = IMAP_PARSER_DEF_MAX_ARGS;
		s->max_depth = IMAP_PARSER_DEF_MAX_DEPTH;
	}
}

static uint64_t run_once(uint8_t c0, uint8_t c1, const uint8_t *data, size_t size, bool split)
{
	struct run r = { .c1 = c1, .hash = 14695981039346656037ull };
	settings(&r.set, c0);
	r.p = imap_parser_new(&r.set);
	struct buf pending = BUF_INIT(0);
	unsigned seed = (unsigned)(c0 >> 4) * 2654435761u + 1;
	size_t off = 0;
	while (off < size && !r.dead) {
		size_t k = size - off;
		if (split) {
			seed = seed * 1103515245u + 12345u;
			size_t c = 1 + (seed >> 16) % 64;
			if (c < k)
				k = c;
		}
		buf_xappend(&pending, data + off, k);
		off += k;
		while (!r.dead) {
			struct imap_parse_event ev;
			size_t used = imap_parser_feed(r.p, pending.data, pending.len, &ev);
			ASSERT(used <= pending.len);
			bool more = on_event(&r, &ev, used);
			if (!more)
				ASSERT(used == pending.len);
			buf_consume(&pending, used);
			if (!more)
				break;
		}
	}
	buf_deinit(&pending);
	(void)imap_parser_idle(r.p);
	imap_parser_free(&r.p);
	return r.hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t c0 = data[0], c1 = data[1];
	data += 2;
	size -= 2;
	uint64_t whole = run_once(c0, c1, data, size, false);
	uint64_t split = run_once(c0, c1, data, size, true);
	ASSERT(whole == split);
	return 0;
}
