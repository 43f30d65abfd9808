/* SPDX-License-Identifier: MIT */
/* Growable byte buffer with a hard cap. Wire data lives here as (ptr, len);
 * data[len] is always a writable NUL so buf_cstr() is free, but the NUL is
 * never counted. Appends past max fail with -1 instead of growing: the caller
 * turns that into a protocol reply, so client input can never exhaust memory. */
#ifndef TERN_BASE_BUF_H
#define TERN_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

struct buf {
	uint8_t *data; /* NULL until the first append: idle buffers cost nothing */
	size_t len;
	size_t cap;
	size_t max; /* 0 = unlimited */
};

#define BUF_INIT(maxlen) { NULL, 0, 0, (maxlen) }

void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buffer can be reused (it is empty afterwards). */
void buf_deinit(struct buf *b);
/* Returns 0, or -1 when the result would exceed max (nothing is appended). */
int buf_append(struct buf *b, const void *p, size_t n) ATTR_WARN_UNUSED;
int buf_append_str(struct buf *b, const char *s) ATTR_WARN_UNUSED;
int buf_printf(struct buf *b, const char *fmt, ...) ATTR_FORMAT(2, 3) ATTR_WARN_UNUSED;
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) ATTR_FORMAT(2, 0) ATTR_WARN_UNUSED;
/* Append that ignores max; for server-generated output whose size we control. */
void buf_xappend(struct buf *b, const void *p, size_t n);
void buf_xprintf(struct buf *b, const char *fmt, ...) ATTR_FORMAT(2, 3);
/* Room for n more bytes at data+len; NULL if over max. Caller then buf_commit(). */
void *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Drop n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
void buf_clear(struct buf *b);
const char *buf_cstr(struct buf *b);
/* Index of the first LF at or after from, or -1. Never relies on NUL. */
ssize_t buf_find_lf(const struct buf *b, size_t from);

#endif
