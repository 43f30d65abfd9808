/* SPDX-License-Identifier: MIT */
/* Delivery Status Notifications: building the RFC 3464 multipart/report
 * message our queue sends back to an envelope sender, plus the RFC 3461
 * xtext coding of ENVID and ORCPT.
 *
 * Structure of the output (storage form, LF line endings):
 *   header: From MAILER-DAEMON@<hostname>, To <sender>, Subject, Date,
 *           Message-ID, Auto-Submitted: auto-replied (RFC 3834), MIME-Version,
 *           Content-Type: multipart/report; report-type=delivery-status
 *   1. text/plain: what happened, for humans
 *   2. message/delivery-status (RFC 3464 2.1), or message/global-delivery-status
 *      (RFC 6533) when an address or the envelope id is not ASCII
 *   3. the original (RFC 3461 4.3, 6.2), only if available:
 *      - a report with a "failed" recipient and RET=FULL or no RET, when
 *        the original is complete and at most max_return bytes:
 *        message/rfc822 (message/global for an SMTPUTF8 original)
 *      - otherwise its header: text/rfc822-headers (message/global-headers
 *        for an SMTPUTF8 original)
 * The caller decides which recipients are reported (queue.c applies the
 * NOTIFY rules of RFC 3461 5.2); dsn_build() refuses a null sender. */
#ifndef TERN_QUEUE_DSN_H
#define TERN_QUEUE_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "queue/queue.h"

struct dsn_rcpt {
	const char *addr;	  /* Final-Recipient: the envelope address */
	const char *orcpt;	  /* "addr-type;address" (decoded) or NULL */
	enum queue_action action; /* FAILED, DELAYED, DELIVERED or RELAYED (NONE: skipped) */
	int code;		  /* last reply code; 0 = local failure or none */
	const char *enhanced;	  /* "x.y.z" or NULL: Status (derived if absent/unfit) */
	const char *text;	  /* reply text (queue_error.text) or NULL */
	const char *remote;	  /* Remote-MTA, or NULL */
	int64_t last_attempt;	  /* Last-Attempt-Date, 0 = none */
	int64_t will_retry_until; /* Will-Retry-Until, delayed only, 0 = none */
};

struct dsn_input {
	const char *hostname; /* Reporting-MTA; From: MAILER-DAEMON@hostname */
	const char *sender;   /* the original envelope sender (the DSN's recipient) */
	const char *envid;    /* decoded ENVID or NULL */
	const char *queue_id; /* for X-Tern-Queue-ID and the Message-ID, or NULL */
	enum queue_ret ret;
	bool smtputf8;	 /* original needed SMTPUTF8 */
	bool eightbit;	 /* original needed 8BITMIME */
	int64_t arrival; /* Arrival-Date, 0 = none */
	int64_t now;	 /* Date */
	const struct dsn_rcpt *rcpts;
	size_t n_rcpts;
	const uint8_t *orig; /* original content (storage form) or NULL if lost */
	size_t orig_len;
	bool orig_truncated; /* orig is only a prefix of the message */
	uint64_t max_return; /* 0 = no limit */
};

struct dsn_result {
	bool eightbit;	 /* the DSN needs 8BITMIME to be relayed */
	bool smtputf8;	 /* the DSN needs SMTPUTF8 */
	bool has_failed; /* at least one "failed" recipient */
};

/* Appends the DSN to out (storage form). 1 if built, 0 if nothing is to be
 * sent (null sender: RFC 3461 6.1 / RFC 5321 6.1, or no recipient with an
 * action), -1 if out is over its cap. */
int dsn_build(const struct dsn_input *in, struct buf *out,
	      struct dsn_result *res_r) ATTR_WARN_UNUSED;

/* RFC 3461 4: xtext. Decode appends to out; -1 on malformed input (bad
 * "+XX", bytes outside "!".."~", '=' unescaped is fine) or cap. */
int dsn_xtext_decode(const char *p, size_t n, struct buf *out) ATTR_WARN_UNUSED;
/* Encode appends to out ('+', '=', and bytes outside 33..126 as +XX). */
void dsn_xtext_encode(const char *p, size_t n, struct buf *out);

#endif
