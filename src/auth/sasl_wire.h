/* SPDX-License-Identifier: MIT */
/* The text framing around a SASL exchange that SMTP AUTH (RFC 4954 4),
 * POP3 AUTH (RFC 5034 4) and IMAP AUTHENTICATE (RFC 9051 6.2.2) share:
 * base64 client responses, "*" to cancel, "=" for an empty initial
 * response, base64 challenges, and the SCRAM username a failed exchange is
 * logged and throttled under. auth/sasl.h sees only decoded bytes. */
#ifndef TERN_AUTH_SASL_WIRE_H
#define TERN_AUTH_SASL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct buf;

/* RFC 4954 4: 12288 octets is enough for every deployed mechanism. */
#define SASL_WIRE_MAX_LINE 12288

enum sasl_wire_kind {
	SASL_WIRE_DATA,	    /* out and outlen hold the decoded response (maybe empty) */
	SASL_WIRE_CANCEL,   /* "*": the client gave up (continuation lines only) */
	SASL_WIRE_BAD,	    /* not base64 (RFC 4954: 501 5.5.2) */
	SASL_WIRE_TOO_LONG, /* over SASL_WIRE_MAX_LINE (RFC 4954: 500 5.5.6) */
};

/* Decode one client response, p/n without its line end. initial: it is the
 * initial-response argument of the command (RFC 4954 "initial-response =
 * base64 / '='"): "=" is an empty response and "*" is not special; else it
 * is a continuation line: "*" cancels and an empty line is an empty
 * response. On DATA, *out is malloc'd (never NULL) and must be released with
 * sasl_wire_free(), which wipes it (it may hold a password). */
enum sasl_wire_kind sasl_wire_decode(const char *p, size_t n, bool initial, uint8_t **out,
				     size_t *outlen) ATTR_WARN_UNUSED;
void sasl_wire_free(uint8_t *p, size_t n);

/* Append prefix then the base64 of p/n (nothing for n == 0), then "\r\n":
 * "334 " for SMTP, "+ " for POP3 and IMAP. */
void sasl_wire_challenge(struct buf *b, const char *prefix, const uint8_t *p, size_t n);

/* Replace *slot (a password held during an exchange) by a copy of v, or
 * by NULL when v is NULL, wiping the old one first. */
void sasl_wire_set_secret(char **slot, const char *v);

/* The saslname of a SCRAM client-first-message (RFC 5802 7: gs2-header then
 * "n=" saslname, with "=2C" and "=3D" decoded), malloc'd, or NULL. */
char *sasl_wire_scram_username(const uint8_t *p, size_t n);

#endif
