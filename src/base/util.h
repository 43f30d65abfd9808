/* SPDX-License-Identifier: MIT */
/* Small helpers with no protocol knowledge: abort-on-OOM allocators, clocks,
 * randomness, ASCII case, base64/hex, and escaping for log lines. */
#ifndef TERN_BASE_UTIL_H
#define TERN_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) ATTR_FORMAT(1, 2);

/* Monotonic milliseconds (for timers) and wall-clock seconds. */
uint64_t time_mono_ms(void);
int64_t time_unix(void);
/* RFC 5322 date-time of t in local time, e.g. "Thu, 26 Nov 2026 14:19:15 +0000". */
void time_rfc5322(int64_t t, char out[64]);

/* Cryptographically random bytes (getrandom); aborts if the kernel refuses. */
void random_bytes(void *p, size_t n);
/* 16 lowercase hex digits: session and message ids. out must hold 17 bytes. */
void random_id(char out[17]);

static inline char ascii_tolower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}
static inline char ascii_toupper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
}
void ascii_lower(char *s);
/* Locale-independent case-insensitive comparisons. */
int ascii_strcasecmp(const char *a, const char *b);
int ascii_strncasecmp(const char *a, const char *b, size_t n);
/* True if the n bytes at p start with prefix, ignoring ASCII case. */
bool ascii_prefix_ci(const void *p, size_t n, const char *prefix);

/* Standard base64 (RFC 4648 4) with padding. Encode returns a NUL-terminated
 * malloc'd string. Decode ignores nothing: any invalid character or bad
 * padding returns -1; on success *out is malloc'd (NUL-terminated, not counted). */
char *base64_encode(const void *p, size_t n);
int base64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen) ATTR_WARN_UNUSED;
void hex_encode(const void *p, size_t n, char *out /* 2n+1 */);

/* Escape bytes for a log line: printable ASCII kept, \" \\ escaped, others \xNN.
 * Output is truncated to fit outsz (always NUL-terminated). */
void log_escape(const void *p, size_t n, char *out, size_t outsz);

/* Write all of buf to fd, retrying on EINTR/short writes. 0 or -1 (errno set). */
int write_full(int fd, const void *p, size_t n) ATTR_WARN_UNUSED;
/* Make directories like mkdir -p with mode; 0 or -1 (errno set). */
int mkdir_p(const char *path, mode_t mode) ATTR_WARN_UNUSED;
/* fsync a directory by path; 0 or -1 (errno set). */
int fsync_dir(const char *path) ATTR_WARN_UNUSED;

#endif
