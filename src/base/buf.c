/* SPDX-License-Identifier: MIT */
/* Growable, capped byte buffer. See buf.h for the rules. */
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

void buf_deinit(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static void grow(struct buf *b, size_t need)
{
	/* need excludes the NUL slot */
	if (need + 1 <= b->cap)
		return;
	size_t ncap = b->cap ? b->cap : 64;
	while (ncap < need + 1) {
		if (ncap > SIZE_MAX / 2)
			panic("buffer size overflow");
		ncap *= 2;
	}
	b->data = xrealloc(b->data, ncap);
	b->cap = ncap;
}

void *buf_reserve(struct buf *b, size_t n)
{
	if (n > SIZE_MAX - b->len - 1)
		return NULL;
	if (b->max && b->len + n > b->max)
		return NULL;
	grow(b, b->len + n);
	return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	ASSERT(b->len + n < b->cap);
	b->len += n;
	b->data[b->len] = 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	void *dst = buf_reserve(b, n);
	if (!dst)
		return -1;
	memcpy(dst, p, n);
	buf_commit(b, n);
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

void buf_xappend(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	grow(b, b->len + n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -1;
	char *dst = buf_reserve(b, (size_t)n);
	if (!dst)
		return -1;
	vsnprintf(dst, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

void buf_xprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap, ap2;
	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		panic("vsnprintf failed");
	grow(b, b->len + (size_t)n);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	va_end(ap);
}

void buf_consume(struct buf *b, size_t n)
{
	ASSERT(n <= b->len);
	if (n == b->len) {
		b->len = 0;
		if (b->data)
			b->data[0] = 0;
		/* Give big buffers back so idle connections stay small. */
		if (b->cap > 16384) {
			free(b->data);
			b->data = NULL;
			b->cap = 0;
		}
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = 0;
}

void buf_clear(struct buf *b)
{
	buf_consume(b, b->len);
}

const char *buf_cstr(struct buf *b)
{
	if (!b->data)
		return "";
	return (const char *)b->data;
}

ssize_t buf_find_lf(const struct buf *b, size_t from)
{
	if (from >= b->len)
		return -1;
	const uint8_t *p = memchr(b->data + from, '\n', b->len - from);
	return p ? (ssize_t)(p - b->data) : -1;
}
