/* SPDX-License-Identifier: MIT */
/* I/O-free SMTP server engine (RFC 5321) for the MX role and, later,
 * submission (RFC 6409). Fed bytes, it appends replies to its output buffer
 * and asks the application what to do through struct smtp_server_ops.
 *
 * Extensions: SIZE (RFC 1870), 8BITMIME (RFC 6152), PIPELINING (RFC 2920),
 * ENHANCEDSTATUSCODES (RFC 2034/3463), STARTTLS (RFC 3207), SMTPUTF8
 * (RFC 6531), CHUNKING/BDAT (RFC 3030), DSN (RFC 3461: RET, ENVID, NOTIFY,
 * ORCPT, always advertised; the app decides what it honours), AUTH (RFC 4954,
 * when settings.auth_offered: the SASL mechanisms of auth/sasl.h, framed by
 * auth/sasl_wire.h; passwords are checked by the app, usually APP_PENDING).
 *
 * Message content reaches the application through data_write() in storage
 * form: dot-unstuffed (DATA), with every CRLF and every bare LF turned into a
 * single LF (the Maildir convention; a CR not followed by LF is kept). DATA
 * ends only at CRLF.CRLF: a bare-LF dot line is content (no smuggling).
 *
 * Pipelining: smtp_server_feed() processes complete commands until one needs
 * the application (APP_PENDING) or the input ends; replies go out in order.
 */
#ifndef TERN_PROTO_SMTP_SERVER_H
#define TERN_PROTO_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/proto.h"

struct buf;
struct smtp_server;

enum app_verdict {
	APP_OK,       /* go on; the engine sends its default success reply */
	APP_REJECTED, /* the app already set the reply with smtp_server_reply() */
	APP_PENDING,  /* the app will call smtp_server_resume() later */
};

enum smtp_body { SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

/* RFC 3461 4.3 RET. */
enum smtp_ret { SMTP_RET_UNSPEC = 0, SMTP_RET_FULL = 1, SMTP_RET_HDRS = 2 };

/* RFC 3461 4.1 NOTIFY bits (0 = no NOTIFY parameter). The values equal
 * queue/queue.h's enum queue_notify, so the app can store them as they are. */
enum smtp_notify {
	SMTP_NOTIFY_NEVER = 1 << 0,
	SMTP_NOTIFY_SUCCESS = 1 << 1,
	SMTP_NOTIFY_FAILURE = 1 << 2,
	SMTP_NOTIFY_DELAY = 1 << 3,
};

struct smtp_mail {
	const char *from;   /* reverse-path without <>; "" for the null sender */
	uint64_t size;      /* SIZE= parameter, 0 if absent */
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;  /* RFC 3461 RET= */
	const char *envid;  /* RFC 3461 ENVID= decoded from xtext, NULL if absent */
	const char *auth;   /* RFC 4954 5 AUTH= decoded from xtext ("<>" kept), NULL
			     * if absent; informational only (we trust no one's) */
};

struct smtp_rcpt {
	const char *to;	    /* forward-path without <> and with any source route removed */
	unsigned notify;    /* enum smtp_notify bits; 0 if no NOTIFY= */
	const char *orcpt;  /* RFC 3461 ORCPT= as "addr-type;address" with the address
			     * decoded from xtext, NULL if absent */
};

struct scram_creds;

struct smtp_server_ops {
	/* HELO/EHLO accepted (name as given). May be NULL. */
	void (*helo)(void *ctx, struct smtp_server *s, const char *name, bool ehlo);
	enum app_verdict (*mail)(void *ctx, struct smtp_server *s, const struct smtp_mail *m);
	enum app_verdict (*rcpt)(void *ctx, struct smtp_server *s, const struct smtp_rcpt *r);
	/* Content is about to start (DATA's 354 or the first BDAT). APP_REJECTED refuses it. */
	enum app_verdict (*data_begin)(void *ctx, struct smtp_server *s);
	/* Content bytes in storage form (see above); may be called many times.
	 * Returns 0, or -1 to fail the message (the app sets no reply; the engine
	 * answers 451 4.3.0 at the end of the content). */
	int (*data_write)(void *ctx, struct smtp_server *s, const uint8_t *p, size_t n);
	/* Content complete and within limits. Usually APP_PENDING (durable write),
	 * then smtp_server_resume() with the final reply. */
	enum app_verdict (*data_end)(void *ctx, struct smtp_server *s);
	/* Content refused by the engine (too big, NUL, broken BDAT): drop what was written.
	 * code/esc/text are the reply the engine is about to send (for logging). */
	void (*data_abort)(void *ctx, struct smtp_server *s, int code, const char *text);
	/* Transaction reset (RSET, HELO/EHLO, STARTTLS, or after the final reply). */
	void (*rset)(void *ctx, struct smtp_server *s);
	/* AUTH PLAIN/LOGIN (RFC 4954) completed its exchange: check the password.
	 * Usually APP_PENDING (a job thread), then smtp_server_resume() with
	 * 235 2.7.0 (authenticated) or 535 5.7.8; APP_OK means 235. Needed when
	 * settings.auth_offered. */
	enum app_verdict (*auth_password)(void *ctx, struct smtp_server *s, const char *mech,
					  const char *user, const char *password);
	/* SCRAM-SHA-256 credentials (auth/sasl.h's scram_creds contract); NULL:
	 * SCRAM is not offered. */
	bool (*scram_creds)(void *ctx, const char *user, struct scram_creds *c);
	/* An exchange the engine judged itself (SCRAM proof, or credentials the
	 * mechanism refused): for logs and throttling. APP_OK sends 235 if ok,
	 * else 535 5.7.8; APP_PENDING delays it (resume with the reply). May be NULL. */
	enum app_verdict (*auth_done)(void *ctx, struct smtp_server *s, const char *mech,
				      const char *user, bool ok);
	/* Engine-level refusals worth a log line (bad syntax, too many errors, ...). May be NULL. */
	void (*log_refusal)(void *ctx, struct smtp_server *s, const char *cmd, int code,
			    const char *text);
};

struct smtp_server_settings {
	const char *hostname;      /* banner and EHLO name */
	const char *banner;        /* text after "220 <hostname> ", e.g. "ESMTP Tern" */
	uint64_t max_message_size; /* advertised in SIZE, enforced (552 5.3.4) */
	size_t max_line;           /* command line limit incl. CRLF (500 5.5.2 beyond) */
	unsigned max_rcpts;        /* per transaction (452 4.5.3 beyond) */
	unsigned max_errors;       /* protocol errors before 421 and close */
	bool starttls_offered;     /* TLS context available and not yet TLS */
	bool tls_active;           /* session already under TLS (implicit TLS) */
	/* RFC 4954 AUTH: advertised and accepted after EHLO. PLAIN and LOGIN are
	 * only offered under TLS or when auth_plaintext (session_plaintext_ok);
	 * otherwise AUTH PLAIN gets 504 5.5.4 (RFC 4954 4; 538 is deprecated). */
	bool auth_offered;
	bool auth_plaintext;
	/* Submission (RFC 6409 4.3, RFC 4954 6): every command except EHLO,
	 * HELO, AUTH, STARTTLS, NOOP, RSET, QUIT, HELP gets 530 5.7.0 until the
	 * client has authenticated. */
	bool auth_required;
};

/* settings strings must outlive the session. */
struct smtp_server *smtp_server_new(const struct smtp_server_settings *set,
				    const struct smtp_server_ops *ops, void *ctx);
void smtp_server_free(struct smtp_server **s);
/* Queue the 220 greeting. */
void smtp_server_start(struct smtp_server *s);
/* Returns bytes consumed (<= n). Never blocks, never does I/O. */
size_t smtp_server_feed(struct smtp_server *s, const uint8_t *p, size_t n);
enum proto_want smtp_server_want(const struct smtp_server *s);
struct buf *smtp_server_output(struct smtp_server *s);

/* Set the reply for an APP_REJECTED verdict (or override a default). Multi-line
 * text: '\n' separates lines. esc may be NULL (no enhanced code). */
void smtp_server_reply(struct smtp_server *s, int code, const char *esc, const char *fmt, ...)
	ATTR_FORMAT(4, 5);
/* Complete an APP_PENDING verdict with its reply and continue processing. */
void smtp_server_resume(struct smtp_server *s, int code, const char *esc, const char *fmt, ...)
	ATTR_FORMAT(4, 5);
/* TLS is up: reset EHLO and transaction state (RFC 3207 4.2). */
void smtp_server_tls_started(struct smtp_server *s);
/* Idle timeout: 421 4.4.2 and want CLOSE. */
void smtp_server_timeout(struct smtp_server *s);
/* Server shutting down: if no transaction is in flight, 421 4.3.2 and close
 * now; otherwise finish the transaction's final reply, then 421 and close. */
void smtp_server_shutdown(struct smtp_server *s);

/* Session facts for the application. */
const char *smtp_server_helo_name(const struct smtp_server *s); /* NULL before HELO/EHLO */
bool smtp_server_is_esmtp(const struct smtp_server *s);
bool smtp_server_is_tls(const struct smtp_server *s);
bool smtp_server_in_transaction(const struct smtp_server *s);
/* The authcid of a successful AUTH (as the client gave it), NULL before. */
const char *smtp_server_auth_user(const struct smtp_server *s);
/* Bytes of content received so far in the current transaction (storage form). */
uint64_t smtp_server_data_size(const struct smtp_server *s);

/* RFC 5321 4.1.2 Mailbox / Path parsing, exposed for tests and the fuzzer.
 * Parses "<...>" at p (n bytes): strips a source route, validates local-part
 * (dot-string or quoted-string, kept as given) and domain (name or address
 * literal); UTF-8 allowed only if utf8. On success writes a malloc'd address
 * ("" for <> when allow_null) to *addr_r and the bytes consumed to *used_r.
 * Returns 0 or -1. */
int smtp_parse_path(const char *p, size_t n, bool allow_null, bool utf8, char **addr_r,
		    size_t *used_r) ATTR_WARN_UNUSED;

#endif
