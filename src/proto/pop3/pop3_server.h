/* SPDX-License-Identifier: MIT */
/* I/O-free POP3 server engine (RFC 1939) with CAPA/RESP-CODES/PIPELINING
 * (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034, mechanisms from auth/sasl.h)
 * and AUTH-RESP-CODE (RFC 3206). Same contract as the SMTP engine
 * (base/proto.h): fed bytes, it appends responses to its output buffer and
 * says through want() what the connection should do next; everything the
 * engine cannot decide alone goes through struct pop3_server_ops.
 *
 * States are RFC 1939's: AUTHORIZATION, TRANSACTION, UPDATE (entered by QUIT
 * only). Deletions are marks until QUIT; a session that ends any other way
 * (timeout, shutdown, dropped connection, free) commits nothing.
 *
 * Verdicts: an app callback returns POP3_OK (the engine sends its default
 * success), POP3_REJECTED (the engine sends the -ERR set with
 * pop3_server_reply(), or a default) or POP3_PENDING (the app calls
 * pop3_server_resume() later and then kicks the connection). While a verdict
 * is pending the engine consumes no input; pipelined commands wait.
 *
 * Message content (RETR, TOP) is streamed, never held whole: after msg_open
 * the engine calls msg_read() whenever its output is below the high-water
 * mark; the app answers with pop3_server_body_data() (storage form: LF line
 * endings), at once or later. The engine turns every LF into CRLF and
 * dot-stuffs (RFC 1939 3), so the octets before stuffing are exactly the
 * wire size the app lists (physical size + number of LFs). A message that
 * does not end in LF gets a CRLF before the terminating ".". While a
 * multi-line response is being produced, want() is PENDING; the engine
 * produces more inside pop3_server_output(), which the connection calls
 * whenever it looks at the output, so no extra "drained" event is needed.
 *
 * Limits: command lines 255 octets including CRLF (RFC 2449 4); AUTH
 * responses up to 16 KiB (RFC 5034 4: arbitrary length, bounded by the SASL
 * module's own limit). Overlong lines get -ERR and are skipped; protocol
 * errors and failed logins are counted and the session is closed at the
 * configured maximum. */
#ifndef TERN_PROTO_POP3_SERVER_H
#define TERN_PROTO_POP3_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/proto.h"

struct buf;
struct pop3_server;
struct scram_creds;

enum pop3_verdict {
	POP3_OK,       /* go on; the engine sends its default reply */
	POP3_REJECTED, /* -ERR: set with pop3_server_reply(), else a default */
	POP3_PENDING,  /* pop3_server_resume() will follow */
};

/* One message of the maildrop, as listed when it was opened. */
struct pop3_msg_info {
	uint64_t size;    /* octets RETR sends before dot-stuffing (CRLF form) */
	const char *uidl; /* RFC 1939 7: 1..70 chars 0x21-0x7E; must stay valid until the
			     next msg_info call */
};

struct pop3_server_ops {
	/* USER/PASS (mech "USER") and AUTH PLAIN / LOGIN (mech "PLAIN"/"LOGIN",
	 * after the SASL exchange itself succeeded): check the password.
	 * REJECTED without a reply: -ERR [AUTH]; set [SYS/TEMP] for lookup
	 * failures. Slow-down of failed logins is the app's (delay the resume). */
	enum pop3_verdict (*login)(void *ctx, struct pop3_server *s, const char *mech,
				   const char *user, const char *password);
	/* APOP (RFC 1939 7): digest is 32 lowercase hex digits that should equal
	 * MD5(timestamp || secret). timestamp is the greeting's "<...>". NULL
	 * disables APOP even when settings.apop is set. */
	enum pop3_verdict (*apop)(void *ctx, struct pop3_server *s, const char *user,
				  const char *timestamp, const char *digest);
	/* AUTH SCRAM-SHA-256: synchronous credential lookup, the
	 * sasl_callbacks.scram_creds contract (false: unknown user; the exchange
	 * then fails at its end). NULL disables SCRAM-SHA-256. */
	bool (*scram_creds)(void *ctx, const char *user, struct scram_creds *c);
	/* Optional, called before scram_creds for the user named in the
	 * client-first message, so the lookup can run on a job thread (PENDING)
	 * and scram_creds answer from what it cached. OK, or REJECTED without a
	 * reply (unknown user), continue the exchange; REJECTED with a reply
	 * (e.g. [SYS/TEMP]) ends the AUTH command with it. */
	enum pop3_verdict (*scram_prepare)(void *ctx, struct pop3_server *s, const char *user);

	/* Optional: a SASL exchange the engine decided itself (SCRAM-SHA-256's
	 * proof, or any mechanism failing on credentials) has ended. user is
	 * the identity the client claimed ("" if unknown). For ok, OK accepts
	 * the login; for !ok the login fails whatever the verdict (REJECTED, or
	 * PENDING to hold the -ERR back, e.g. for the failed-login delay). */
	enum pop3_verdict (*sasl_done)(void *ctx, struct pop3_server *s, const char *mech,
				       const char *user, bool ok);

	/* The user authenticated: open and lock the maildrop. REJECTED with a
	 * reply such as [IN-USE] (RFC 2449 8.1.2) or [SYS/TEMP]; the session
	 * stays in AUTHORIZATION. After OK the engine calls msg_count once and
	 * msg_info for each message. maildrop_close() follows an OK exactly once. */
	enum pop3_verdict (*maildrop_open)(void *ctx, struct pop3_server *s, const char *user);
	unsigned (*msg_count)(void *ctx, struct pop3_server *s);
	/* idx is 0-based (message number - 1). */
	void (*msg_info)(void *ctx, struct pop3_server *s, unsigned idx, struct pop3_msg_info *r);

	/* RETR/TOP: open message idx for reading. REJECTED: e.g. [SYS/TEMP]
	 * when it vanished. After OK (or resume OK) the engine calls msg_read()
	 * until the app passes eof to pop3_server_body_data(), or until it has
	 * what it needs (TOP); then msg_close() exactly once. */
	enum pop3_verdict (*msg_open)(void *ctx, struct pop3_server *s, unsigned idx);
	/* Supply the next piece with pop3_server_body_data(), now or later (then
	 * kick the connection). Never called while a previous request is open.
	 * msg_close() may arrive while a later answer is still owed (timeout,
	 * shutdown): the app must then not call body_data() for it. */
	void (*msg_read)(void *ctx, struct pop3_server *s);
	void (*msg_close)(void *ctx, struct pop3_server *s);

	/* QUIT in TRANSACTION, UPDATE state: remove these messages (0-based,
	 * ascending; n > 0). REJECTED/failure: -ERR [SYS/TEMP] and close. Not
	 * called when nothing is marked. */
	enum pop3_verdict (*commit)(void *ctx, struct pop3_server *s, const unsigned *idx,
				    size_t n);
	/* Release the maildrop (lock). Called once after an OK maildrop_open:
	 * after QUIT's commit, or when the session ends without QUIT. */
	void (*maildrop_close)(void *ctx, struct pop3_server *s);

	/* Engine-level refusals worth a log line (cmd is the verb or "-"). May be NULL. */
	void (*log_refusal)(void *ctx, struct pop3_server *s, const char *cmd, const char *text);
};

struct pop3_server_settings {
	const char *hostname;       /* greeting, QUIT text, APOP timestamp */
	const char *greeting;       /* text after "+OK ", default "Tern POP3 server ready" */
	const char *implementation; /* CAPA IMPLEMENTATION, default "Tern" */
	bool apop;                  /* offer APOP: timestamp in the greeting */
	const char *apop_timestamp; /* "<...>" to use (tests); NULL: <pid.clock@hostname> */
	bool plaintext_auth;        /* USER/PASS, AUTH PLAIN/LOGIN allowed without TLS
				       (loopback or allow_plaintext_auth); always over TLS */
	bool stls_offered;          /* a TLS context is available (STLS when not TLS) */
	bool tls_active;            /* implicit TLS (pop3s) */
	size_t max_line;            /* default 255 incl. CRLF (RFC 2449 4), min 64 */
	unsigned max_errors;        /* protocol errors before close, default 10 */
	unsigned max_auth_failures; /* failed logins before close, default 3 */
	size_t out_hiwat;           /* produce multi-line output up to this, default 64 KiB */
};

/* Strings in set must outlive the session. */
struct pop3_server *pop3_server_new(const struct pop3_server_settings *set,
				    const struct pop3_server_ops *ops, void *ctx);
/* Releases an open message and maildrop (msg_close, maildrop_close; nothing
 * is committed). Must not be called while a verdict is PENDING on another
 * thread: wait for the job, then free. NULLs *s. */
void pop3_server_free(struct pop3_server **s);
/* Queue the greeting. */
void pop3_server_start(struct pop3_server *s);
/* Returns bytes consumed (<= n). Never blocks, never does I/O. */
size_t pop3_server_feed(struct pop3_server *s, const uint8_t *p, size_t n);
enum proto_want pop3_server_want(const struct pop3_server *s);
/* The output buffer; tops up a multi-line response in progress first. */
struct buf *pop3_server_output(struct pop3_server *s);

/* -ERR text for a REJECTED verdict (now or before resume). code is an RFC
 * 2449/3206 response code without brackets ("IN-USE", "SYS/TEMP", "AUTH") or
 * NULL. CR, LF and other controls in the text become spaces. */
void pop3_server_reply(struct pop3_server *s, const char *code, const char *fmt, ...)
	ATTR_FORMAT(3, 4);
/* Complete the PENDING verdict with POP3_OK or POP3_REJECTED. After a close
 * (timeout) meanwhile, an OK open is released again (msg_close/maildrop_close). */
void pop3_server_resume(struct pop3_server *s, enum pop3_verdict v);

/* Message content for msg_read(): n bytes in storage form (LF endings); eof
 * marks the end (n may be 0). Bytes after TOP's last line are ignored. */
void pop3_server_body_data(struct pop3_server *s, const void *p, size_t n, bool eof);
/* The message cannot be read any further: the response cannot be completed,
 * so the session closes without the terminating "." (the client sees a cut).
 * The close (msg_close, maildrop_close) happens once msg_read has returned,
 * or at the next pop3_server_output() when called from elsewhere. */
void pop3_server_body_fail(struct pop3_server *s);

/* TLS is up (after STLS or implicit): forget USER (RFC 2595 4). */
void pop3_server_tls_started(struct pop3_server *s);
/* Idle timeout: -ERR and close, committing nothing. While a response is still
 * streaming and made progress since the last call, it is ignored once. */
void pop3_server_timeout(struct pop3_server *s);
/* Shutdown: finish the response in flight, then -ERR [SYS/TEMP] and close. */
void pop3_server_shutdown(struct pop3_server *s);

/* Session facts. */
bool pop3_server_is_tls(const struct pop3_server *s);
/* The authenticated user (TRANSACTION), else NULL. */
const char *pop3_server_user(const struct pop3_server *s);
/* The APOP timestamp of the greeting, "" when APOP is off. */
const char *pop3_server_timestamp(const struct pop3_server *s);

/* Exposed for tests and the fuzzer: RFC 1939 message-number / count syntax
 * (1*DIGIT, no sign, value <= max). 0 or -1. */
int pop3_parse_number(const char *p, size_t n, uint64_t max, uint64_t *out) ATTR_WARN_UNUSED;

#endif
