/* SPDX-License-Identifier: MIT */
/* Private to src/proto/smtp/: ESMTP parameter and number parsing used by the
 * MAIL/RCPT/BDAT handlers. smtp_parse_path() itself is declared in
 * smtp_server.h because tests and the fuzzer call it. All input is (ptr, len). */
#ifndef TERN_PROTO_SMTP_PARSE_H
#define TERN_PROTO_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* One esmtp-param (RFC 5321 4.1.2): keyword [ "=" value ]; value NULL if absent. */
struct smtp_param {
	const char *key;
	size_t keylen;
	const char *value;
	size_t valuelen;
};

/* Parse the next parameter from *pp (< end): one or more SP, then a param.
 * Returns 1 and advances *pp, 0 at the end of input, -1 on a syntax error. */
int smtp_parse_param_next(const char **pp, const char *end, struct smtp_param *r) ATTR_WARN_UNUSED;
/* 1*20 DIGIT without overflow; 0 or -1. */
int smtp_parse_u64(const char *p, size_t n, uint64_t *r) ATTR_WARN_UNUSED;
/* True if the NUL-terminated s has no byte >= 0x80. */
bool smtp_is_ascii(const char *s);

#endif
