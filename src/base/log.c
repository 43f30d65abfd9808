/* SPDX-License-Identifier: MIT */
/* stderr logger. One write() per line so lines from threads never interleave. */
#include "base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level level = LOG_LVL_INFO;
static const char *ident = "tern";

void log_set_level(enum log_level l)
{
	level = l;
}

enum log_level log_get_level(void)
{
	return level;
}

void log_set_ident(const char *s)
{
	ident = s;
}

static void emit(enum log_level l, const char *tag, int err, const char *fmt, va_list ap)
	ATTR_FORMAT(4, 0);
static void emit(enum log_level l, const char *tag, int err, const char *fmt, va_list ap)
{
	if (l < level)
		return;
	char line[4096];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, tag);
	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	if (m < 0)
		return;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	if (err) {
		int k = snprintf(line + len, sizeof line - len, ": %s", strerror(err));
		if (k > 0)
			len += (size_t)k;
		if (len > sizeof line - 2)
			len = sizeof line - 2;
	}
	line[len++] = '\n';
	ssize_t w = write(2, line, len);
	(void)w;
}

#define DEFINE_LOG(name, lvl, tag, witherr)                                                        \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		int e = errno;                                                                     \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		emit(lvl, tag, witherr ? e : 0, fmt, ap);                                          \
		va_end(ap);                                                                        \
		errno = e;                                                                         \
	}

DEFINE_LOG(log_debug, LOG_LVL_DEBUG, "debug", 0)
DEFINE_LOG(log_info, LOG_LVL_INFO, "info", 0)
DEFINE_LOG(log_warn, LOG_LVL_WARN, "warning", 1)
DEFINE_LOG(log_warnx, LOG_LVL_WARN, "warning", 0)
DEFINE_LOG(log_crit, LOG_LVL_CRIT, "critical", 0)

static void die(int err, const char *fmt, va_list ap) ATTR_NORETURN ATTR_FORMAT(2, 0);
static void die(int err, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", ident);
	vfprintf(stderr, fmt, ap);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
	exit(1);
}

void fatal(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	die(e, fmt, ap);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	die(0, fmt, ap);
}
