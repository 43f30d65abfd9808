/* SPDX-License-Identifier: MIT */
/* Implementation of the small helpers declared in util.h. */
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void panic_at(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tern: panic at %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		panic("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		panic("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		panic("out of memory (%zu bytes)", n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		panic("out of memory in xasprintf");
	return s;
}

uint64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t time_unix(void)
{
	return (int64_t)time(NULL);
}

void time_rfc5322(int64_t t, char out[64])
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *mons[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	snprintf(out, 64, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday],
		 tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 sign, off / 60, off % 60);
}

void random_bytes(void *p, size_t n)
{
	uint8_t *d = p;
	while (n > 0) {
		ssize_t r = getrandom(d, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			panic("getrandom: %s", strerror(errno));
		}
		d += r;
		n -= (size_t)r;
	}
}

void random_id(char out[17])
{
	uint8_t b[8];
	random_bytes(b, sizeof b);
	hex_encode(b, sizeof b, out);
}

void ascii_lower(char *s)
{
	for (; *s; s++)
		*s = ascii_tolower(*s);
}

int ascii_strcasecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		char x = ascii_tolower(*a), y = ascii_tolower(*b);
		if (x != y || !x)
			return (unsigned char)x - (unsigned char)y;
	}
}

int ascii_strncasecmp(const char *a, const char *b, size_t n)
{
	for (; n > 0; a++, b++, n--) {
		char x = ascii_tolower(*a), y = ascii_tolower(*b);
		if (x != y || !x)
			return (unsigned char)x - (unsigned char)y;
	}
	return 0;
}

bool ascii_prefix_ci(const void *p, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	if (n < pl)
		return false;
	const char *s = p;
	for (size_t i = 0; i < pl; i++)
		if (ascii_tolower(s[i]) != ascii_tolower(prefix[i]))
			return false;
	return true;
}

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *base64_encode(const void *p, size_t n)
{
	const uint8_t *s = p;
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = b64chars[(v >> 6) & 63];
		*o++ = b64chars[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*o++ = b64chars[v >> 18];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = 0;
	return out;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	if (n % 4 != 0)
		return -1;
	uint8_t *d = xmalloc(n / 4 * 3 + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)s[i + k];
			if (c == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad) /* data after '=' */
				goto bad;
			v[k] = b64val(c);
			if (v[k] < 0)
				goto bad;
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		d[o++] = (uint8_t)(x >> 16);
		if (pad < 2)
			d[o++] = (uint8_t)(x >> 8);
		if (pad < 1)
			d[o++] = (uint8_t)x;
	}
	d[o] = 0;
	*out = d;
	*outlen = o;
	return 0;
bad:
	free(d);
	return -1;
}

void hex_encode(const void *p, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[s[i] >> 4];
		out[2 * i + 1] = hx[s[i] & 15];
	}
	out[2 * n] = 0;
}

void log_escape(const void *p, size_t n, char *out, size_t outsz)
{
	const uint8_t *s = p;
	size_t o = 0;
	if (outsz == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char tmp[5];
		size_t tl;
		uint8_t c = s[i];
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			tl = 2;
		} else if (c >= 0x20 && c < 0x7f) {
			tmp[0] = (char)c;
			tl = 1;
		} else {
			snprintf(tmp, sizeof tmp, "\\x%02x", c);
			tl = 4;
		}
		if (o + tl >= outsz)
			break;
		memcpy(out + o, tmp, tl);
		o += tl;
	}
	out[o] = 0;
}

int write_full(int fd, const void *p, size_t n)
{
	const uint8_t *s = p;
	while (n > 0) {
		ssize_t r = write(fd, s, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += r;
		n -= (size_t)r;
	}
	return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	char *tmp = xstrdup(path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST) {
			free(tmp);
			return -1;
		}
		*p = '/';
	}
	int r = mkdir(tmp, mode);
	free(tmp);
	if (r < 0 && errno != EEXIST)
		return -1;
	return 0;
}

int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}
