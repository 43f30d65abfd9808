/* SPDX-License-Identifier: MIT */
/* I/O-free SMTP client engine (RFC 5321) for outbound delivery to MX hosts
 * and smarthosts, and the reply parser it is built on.
 *
 * One engine drives one connection and may deliver several messages on it:
 *   greeting -> EHLO (HELO after a 5xx EHLO) -> [STARTTLS -> EHLO] -> [AUTH]
 *   -> ready() -> { smtp_client_send() ... msg_done() }* -> smtp_client_quit()
 * The caller feeds the server's bytes with smtp_client_feed(), writes out
 * whatever smtp_client_output() holds, and acts on smtp_client_want() exactly
 * like an engine driven through base/proto.h (READ, STARTTLS, CLOSE; the
 * client engine never wants PENDING).
 *
 * Extensions used when the peer offers them: PIPELINING (RFC 2920; MAIL,
 * every RCPT and DATA go out in one write), SIZE (RFC 1870), 8BITMIME
 * (RFC 6152), SMTPUTF8 (RFC 6531), STARTTLS (RFC 3207), AUTH PLAIN/LOGIN
 * (RFC 4954), DSN parameters (RFC 3461), enhanced status codes (RFC 2034/3463).
 * A message that needs 8BITMIME or SMTPUTF8 from a peer lacking it fails
 * permanently before any command is sent for it.
 *
 * Results: every recipient of a message gets exactly one rcpt_done() with its
 * final outcome, then the message gets one msg_done(). A connection-level
 * failure first finishes the message in flight (its open recipients fail
 * temporarily) and then calls failed(); after that the engine wants CLOSE.
 *
 * Content is supplied by the caller in storage form (LF line endings, as Tern
 * stores messages), in chunks of any size, after content_wanted(): the engine
 * converts LF (and a bare CR) to CRLF, dot-stuffs (RFC 5321 4.5.2) and ends
 * with CRLF.CRLF, never holding more than the chunk it was given (with
 * BDAT, RFC 3030, less than 64 KiB more). The caller paces it by the size of
 * smtp_client_output().
 *
 * Driving it through io/conn.c (struct proto_session_ops): feed, want and
 * output map directly; tls_started -> smtp_client_tls_started(); timeout ->
 * smtp_client_timeout() (arm the timer with smtp_client_timeout_secs());
 * shutdown -> smtp_client_quit() when ready, else smtp_client_abort();
 * closed -> smtp_client_eof() (a no-op once closed), then smtp_client_free().
 * A TLS handshake failure is smtp_client_abort(); retrying without TLS is the
 * caller's decision (a new connection).
 *
 * API misuse (send() when not ready, content when not wanted) is our bug and
 * ASSERTs; nothing the peer sends can abort the process.
 */
#ifndef TERN_PROTO_SMTP_CLIENT_H
#define TERN_PROTO_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/proto.h"

/* ---- reply parser (usable on its own) ------------------------------------ */

/* Defaults for struct smtp_reply_limits fields left 0. RFC 5321 4.5.3.1.5
 * allows 512 octets per reply line; we tolerate 2048. */
#define SMTP_REPLY_MAX_LINE  2048
#define SMTP_REPLY_MAX_SIZE  16384
#define SMTP_REPLY_MAX_LINES 100

struct smtp_reply_limits {
	size_t max_line;    /* octets per line including CRLF */
	size_t max_size;    /* octets per reply including every CRLF */
	unsigned max_lines; /* lines per reply */
};

/* One complete reply (RFC 5321 4.2). */
struct smtp_reply {
	int code;	 /* 200..599, the same on every line */
	char esc[16];	 /* RFC 3463 enhanced code from the first line ("5.1.1"), or "" */
	unsigned nlines; /* >= 1 */
	/* The text after "NNN-"/"NNN " of every line, lines joined by '\n'; control
	 * octets (and any CR) shown as '?', 8-bit octets kept. NUL-terminated. */
	const char *text;
	size_t textlen;
};

/* Incremental reader: accepts CRLF and (tolerantly) bare LF line ends. */
struct smtp_reply_reader {
	struct smtp_reply_limits lim;
	struct buf line; /* the line being assembled, with its LF */
	struct buf text;
	size_t size;
	unsigned nlines;
	int code;
	char esc[16];
	bool complete; /* reply is valid; the next feed starts a new reply */
	bool failed;
	const char *error; /* static reason after -1 */
	struct smtp_reply reply;
};

/* lim may be NULL (defaults). */
void smtp_reply_reader_init(struct smtp_reply_reader *rd, const struct smtp_reply_limits *lim);
void smtp_reply_reader_deinit(struct smtp_reply_reader *rd);
/* Consume server bytes. Returns 1 when a reply is complete: rd->reply is valid
 * until the next call, *used_r says how many of the n bytes it took (the rest
 * belongs to the next reply). Returns 0 when all n bytes were consumed and the
 * reply is still incomplete. Returns -1 on a malformed or over-limit reply
 * (rd->error says why); the reader then stays failed. */
int smtp_reply_reader_feed(struct smtp_reply_reader *rd, const uint8_t *p, size_t n,
			   size_t *used_r) ATTR_WARN_UNUSED;
/* True while part of a reply has been read but not completed. */
bool smtp_reply_reader_partial(const struct smtp_reply_reader *rd);

/* Service extensions from an EHLO reply (RFC 5321 4.1.1.1, one keyword per
 * line after the first). */
enum smtp_ext {
	SMTP_EXT_PIPELINING = 1u << 0,
	SMTP_EXT_SIZE = 1u << 1,
	SMTP_EXT_8BITMIME = 1u << 2,
	SMTP_EXT_SMTPUTF8 = 1u << 3,
	SMTP_EXT_STARTTLS = 1u << 4,
	SMTP_EXT_AUTH = 1u << 5,
	SMTP_EXT_DSN = 1u << 6,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1u << 7,
	SMTP_EXT_CHUNKING = 1u << 8,
	SMTP_EXT_BINARYMIME = 1u << 9,
};

enum smtp_auth_mech {
	SMTP_AUTH_PLAIN = 1u << 0,
	SMTP_AUTH_LOGIN = 1u << 1,
	SMTP_AUTH_CRAM_MD5 = 1u << 2,
	SMTP_AUTH_SCRAM_SHA_256 = 1u << 3,
	SMTP_AUTH_XOAUTH2 = 1u << 4,
};

struct smtp_ehlo {
	unsigned ext;	   /* enum smtp_ext bits */
	uint64_t size_max; /* SIZE value (RFC 1870); 0 when absent, invalid or 0 (no limit) */
	unsigned auth;	   /* enum smtp_auth_mech bits; "AUTH=..." (pre-RFC 4954) counts too */
};

/* Parse the keywords of an EHLO 2xx reply. Unknown keywords are ignored;
 * malformed values are tolerated ("250 SIZE" without a value: no limit). */
void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *e);

/* ---- client engine -------------------------------------------------------- */

struct smtp_client;

enum smtp_client_tls {
	SMTP_CLIENT_TLS_OPPORTUNISTIC, /* STARTTLS when offered (default) */
	SMTP_CLIENT_TLS_REQUIRE,       /* fail the connection without STARTTLS */
	SMTP_CLIENT_TLS_NEVER,	       /* never STARTTLS */
};

struct smtp_client_settings {
	const char *helo_name; /* our name in EHLO/HELO */
	enum smtp_client_tls tls;
	bool tls_active; /* the connection is already TLS (implicit TLS, port 465) */
	/* Smarthost credentials: when both are set, AUTH (PLAIN, else LOGIN) must
	 * succeed before any message; only under TLS unless auth_plaintext. */
	const char *auth_user, *auth_pass;
	bool auth_plaintext;
	bool no_pipelining; /* never pipeline even if offered */
	/* Send content with BDAT (RFC 3030) when the peer offers CHUNKING and
	 * PIPELINING: no dot-stuffing, 64 KiB chunks. Off: always DATA. */
	bool chunking;
	struct smtp_reply_limits limits; /* 0 fields: defaults */
};

enum smtp_client_status {
	SMTP_CLIENT_OK,	  /* accepted (2xx) */
	SMTP_CLIENT_TEMP, /* temporary failure: retry later */
	SMTP_CLIENT_PERM, /* permanent failure: bounce */
};

/* What produced a result: which command's reply, or what we were waiting for
 * when a local decision, the caller (EOF, timeout, abort) or a protocol error
 * ended it. SMTP_STAGE_CONTENT with code 0 means the content may have been
 * received by the peer without us seeing the final reply (RFC 1047). */
enum smtp_client_stage {
	SMTP_STAGE_CONNECT, /* greeting, EHLO/HELO, STARTTLS, AUTH */
	SMTP_STAGE_MAIL,
	SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA,    /* the reply to DATA itself */
	SMTP_STAGE_CONTENT, /* content and the final reply after "." */
	SMTP_STAGE_LOCAL,   /* refused by us before sending (8BITMIME, SMTPUTF8, SIZE, syntax) */
	SMTP_STAGE_QUIT,
};

struct smtp_client_result {
	enum smtp_client_status status;
	enum smtp_client_stage stage;
	int code;	  /* the peer's reply code; 0 when no reply produced this result */
	const char *esc;  /* enhanced status code ("" if none) */
	const char *text; /* full reply text (see struct smtp_reply) or our reason */
};

struct smtp_client_rcpt {
	const char *addr;   /* forward-path without <> */
	const char *notify; /* RFC 3461 NOTIFY value ("SUCCESS,FAILURE") or NULL */
	const char *orcpt;  /* RFC 3461 ORCPT value, already xtext ("rfc822;a@b") or NULL */
};

struct smtp_client_msg {
	const char *from; /* reverse-path without <>; "" for the null sender */
	const struct smtp_client_rcpt *rcpts;
	size_t nrcpts; /* >= 1 */
	/* SIZE= value (RFC 1870 4): octets on the wire with CRLF line ends (the
	 * storage size plus one per line is close enough); 0 if unknown */
	uint64_t size;
	bool eightbit;	   /* content has octets >= 0x80: needs 8BITMIME */
	bool smtputf8;	   /* needs SMTPUTF8 (also implied by a non-ASCII address) */
	const char *ret;   /* RFC 3461 RET ("FULL"/"HDRS") or NULL */
	const char *envid; /* RFC 3461 ENVID (xtext) or NULL */
};

/* Callbacks. Results point to memory valid only during the call. send() and
 * quit() may be called from ready() and msg_done(); nothing may free the
 * engine from inside a callback. */
struct smtp_client_ops {
	/* The session is established (greeting, EHLO, TLS, AUTH done): call
	 * smtp_client_send() or smtp_client_quit(), now or later. */
	void (*ready)(void *ctx, struct smtp_client *c);
	/* Final outcome of recipient idx (index in msg->rcpts) of the current message. */
	void (*rcpt_done)(void *ctx, struct smtp_client *c, size_t idx,
			  const struct smtp_client_result *r);
	/* DATA got its 354: supply content with smtp_client_content() and
	 * smtp_client_content_end(), now or later (watch the output size). */
	void (*content_wanted)(void *ctx, struct smtp_client *c);
	/* The message is finished (every rcpt_done() was called). status is OK if
	 * the peer took the message for at least one recipient. Afterwards the
	 * engine is ready for the next send() or quit(), unless failed() follows
	 * (check smtp_client_is_ready() before sending from here). */
	void (*msg_done)(void *ctx, struct smtp_client *c, const struct smtp_client_result *r);
	/* The connection failed (greeting refused, TLS required but missing, AUTH
	 * failed, protocol error, 421, EOF, timeout). The engine wants CLOSE. */
	void (*failed)(void *ctx, struct smtp_client *c, const struct smtp_client_result *r);
	/* Protocol trace, may be NULL: each command as written (sent = true;
	 * AUTH payloads masked as "********", content never shown) and each
	 * complete reply received ("250 text", lines joined by '\n'). */
	void (*trace)(void *ctx, struct smtp_client *c, bool sent, const char *line);
};

/* settings strings must outlive the engine. */
struct smtp_client *smtp_client_new(const struct smtp_client_settings *set,
				    const struct smtp_client_ops *ops, void *ctx);
void smtp_client_free(struct smtp_client **c);
/* Server bytes. Returns bytes consumed (always n: a partial reply is kept
 * inside; after STARTTLS's 220 or a failure the rest is discarded). */
size_t smtp_client_feed(struct smtp_client *c, const uint8_t *p, size_t n);
enum proto_want smtp_client_want(const struct smtp_client *c);
/* Commands and content for the I/O layer to write and buf_consume(). */
struct buf *smtp_client_output(struct smtp_client *c);

/* Start a message. Only when ready (after ready() or msg_done()). The engine
 * copies msg. A message the peer cannot take fails at once (callbacks run
 * inside this call). */
void smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *msg);
/* End the session: QUIT, then CLOSE after its reply (or EOF). Only when ready. */
void smtp_client_quit(struct smtp_client *c);
bool smtp_client_is_ready(const struct smtp_client *c);
/* True between content_wanted() and smtp_client_content_end(). */
bool smtp_client_wants_content(const struct smtp_client *c);
/* Content in storage form (LF line ends), any chunking. */
void smtp_client_content(struct smtp_client *c, const uint8_t *p, size_t n);
/* End of content: completes the last line if needed, then "." CRLF. */
void smtp_client_content_end(struct smtp_client *c);

/* TLS handshake finished after want() said STARTTLS: EHLO again (RFC 3207 4.2). */
void smtp_client_tls_started(struct smtp_client *c);
/* The peer closed the connection (EOF or reset). After QUIT this is normal. */
void smtp_client_eof(struct smtp_client *c);
/* The caller's reply timer fired (see smtp_client_timeout_secs()). */
void smtp_client_timeout(struct smtp_client *c);
/* Give up on the connection for a local reason (TLS handshake failed, content
 * unreadable, shutdown): temporary failure for everything in flight. */
void smtp_client_abort(struct smtp_client *c, const char *reason);
/* RFC 5321 4.5.3.2 timeout for what the engine is waiting for now, in seconds. */
unsigned smtp_client_timeout_secs(const struct smtp_client *c);

/* Session facts. */
const struct smtp_ehlo *smtp_client_ehlo(const struct smtp_client *c);
bool smtp_client_is_esmtp(const struct smtp_client *c);
bool smtp_client_is_tls(const struct smtp_client *c);
bool smtp_client_is_authenticated(const struct smtp_client *c);

#endif
