/* SPDX-License-Identifier: MIT */
/* Logging. Lines go to stderr as "<time> <level>: <message>". Session lines
 * are "<16-hex session id> <proto> <event> key=value ...". The x suffix means
 * "no errno appended" (log_warnx), the plain form appends ": strerror(errno)".
 * Raw client bytes must go through log_escape() first; AUTH data never. */
#ifndef TERN_BASE_LOG_H
#define TERN_BASE_LOG_H

#include "base/err.h"

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_CRIT };

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
/* Name of the program for fatal messages ("tern"). */
void log_set_ident(const char *ident);

void log_debug(const char *fmt, ...) ATTR_FORMAT(1, 2);
void log_info(const char *fmt, ...) ATTR_FORMAT(1, 2);
void log_warn(const char *fmt, ...) ATTR_FORMAT(1, 2);  /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) ATTR_FORMAT(1, 2);
void log_crit(const char *fmt, ...) ATTR_FORMAT(1, 2);
/* Startup/config errors: print "tern: <message>" and exit(1). */
void fatal(const char *fmt, ...) ATTR_FORMAT(1, 2) ATTR_NORETURN;  /* appends strerror */
void fatalx(const char *fmt, ...) ATTR_FORMAT(1, 2) ATTR_NORETURN;

#endif
