/* SPDX-License-Identifier: MIT */
/* Private to src/proto/smtp/: the SMTP server engine's state and the calls
 * shared by smtp_server.c (framing, content, verdicts), smtp_cmds.c (command
 * table and handlers), smtp_parse.c (paths, ESMTP parameters) and
 * smtp_reply.c (reply formatting). Nothing outside proto/smtp includes this.
 *
 * Invariants:
 *  - at most one verdict is outstanding (pend != SMTP_PEND_NONE); while it is,
 *    feed() consumes nothing and the line buffer is empty;
 *  - replies are appended to out strictly in command order;
 *  - the content of a transaction is either DATA or BDAT, never both. */
#ifndef TERN_PROTO_SMTP_INT_H
#define TERN_PROTO_SMTP_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "proto/smtp/smtp_server.h"

enum smtp_state {
	SMTP_ST_CMD,	  /* reading command lines */
	SMTP_ST_DATA,	  /* after 354: dot-stuffed content up to CRLF.CRLF */
	SMTP_ST_BDAT,	  /* reading bdat_left raw octets of a BDAT chunk */
	SMTP_ST_TLS_WAIT, /* after 220 to STARTTLS: discard input, want STARTTLS */
	SMTP_ST_CLOSED,	  /* goodbye queued: discard input, want CLOSE */
};

/* Which verdict is outstanding, i.e. what smtp_server_resume() completes. */
enum smtp_pend {
	SMTP_PEND_NONE,
	SMTP_PEND_MAIL,
	SMTP_PEND_RCPT,
	SMTP_PEND_DATA, /* data_begin for DATA (354 on success) */
	SMTP_PEND_BDAT, /* data_begin for the first BDAT chunk (no reply on success) */
	SMTP_PEND_END,	/* data_end: the transaction's final reply */
	SMTP_PEND_AUTH, /* auth_password / auth_done: 235 or a refusal */
};

enum smtp_content { SMTP_CONTENT_NONE, SMTP_CONTENT_DATA, SMTP_CONTENT_BDAT };

/* DATA decoder states (RFC 5321 4.5.2; see smtp_server.c). */
enum smtp_dstate { SMTP_DS_BOL, SMTP_DS_TEXT, SMTP_DS_CR, SMTP_DS_DOT, SMTP_DS_DOT_CR };

struct smtp_server {
	struct smtp_server_settings set;
	const struct smtp_server_ops *ops;
	void *ctx;

	struct buf out;	 /* replies for the I/O layer */
	struct buf line; /* the command line being assembled (no LF, <= max_line) */
	bool line_skip;	 /* discarding the rest of an overlong line up to LF */
	enum smtp_state state;
	enum smtp_pend pend;

	/* The reply set by smtp_server_reply()/resume(), formatted for the wire. */
	struct buf reply;
	int reply_code;
	bool reply_set;

	char *helo; /* NULL before HELO/EHLO */
	bool esmtp;
	bool tls;
	unsigned errors;
	bool shutdown_req;

	/* AUTH (RFC 4954; smtp_cmds.c). While in_sasl, command lines are SASL
	 * responses. */
	bool authed;
	char *auth_user;	/* after success */
	struct sasl *sasl;
	char *sasl_mech;	/* upper case */
	char *sasl_user;	/* PLAIN/LOGIN authcid, then the user being checked */
	char *sasl_pass;	/* PLAIN/LOGIN password until handed to the app (wiped) */
	char *sasl_claimed;	/* SCRAM username claimed, for a failure's log */
	bool in_sasl, sasl_final, sasl_had_input;

	/* Transaction. */
	bool in_tx; /* MAIL accepted */
	bool smtputf8;
	unsigned nrcpts;
	enum smtp_content content;
	char *from, *to; /* arguments of the MAIL/RCPT whose verdict is being decided */
	struct smtp_mail mail;
	struct smtp_rcpt rcpt;
	char *envid, *auth_param, *orcpt; /* decoded DSN / AUTH= values of the above */
	uint64_t data_size; /* content bytes in storage form */
	bool too_big, nul, write_failed;
	enum smtp_dstate dstate;

	/* Current BDAT chunk. */
	uint64_t bdat_len, bdat_left;
	bool bdat_last;
	bool bdat_cr;		  /* a CR ended the previous chunk's bytes (CRLF may straddle) */
	bool bdat_discard;	  /* chunk refused before it arrived: skip it, then reply */
	bool bdat_reset;	  /* ... and reset the transaction after that reply */
	int bdat_err_code;	  /* engine refusal to send after the chunk (0: app reply) */
	const char *bdat_err_esc; /* static string */
	char *bdat_err_text;
	struct buf bdat_reply; /* app refusal to send after the chunk */
};

/* smtp_reply.c */
/* Append a reply to b: text lines separated by '\n' become a multi-line reply
 * "code-esc line" ... "code esc line" (RFC 5321 4.2.1), esc omitted if NULL. */
void smtp_reply_vformat(struct buf *b, int code, const char *esc, const char *fmt, va_list ap)
	ATTR_FORMAT(4, 0);
void smtp_reply_format(struct buf *b, int code, const char *esc, const char *fmt, ...)
	ATTR_FORMAT(4, 5);

/* smtp_server.c */
/* Queue a reply. */
void smtp_emit(struct smtp_server *s, int code, const char *esc, const char *fmt, ...)
	ATTR_FORMAT(4, 5);
/* Queue an engine refusal: log_refusal(), and if count, one more protocol error
 * (421 4.7.0 and close at max_errors). */
void smtp_refuse(struct smtp_server *s, const char *cmd, bool count, int code, const char *esc,
		 const char *fmt, ...) ATTR_FORMAT(6, 7);
/* Apply an application verdict for kind (see enum smtp_pend). */
void smtp_verdict(struct smtp_server *s, enum smtp_pend kind, enum app_verdict v);
/* End the transaction; rset() is called if one was open or if force. */
void smtp_tx_reset(struct smtp_server *s, bool force);
/* Queue nothing more; want CLOSE. */
void smtp_close(struct smtp_server *s);
/* Start reading a BDAT chunk of len octets (the command was valid). */
void smtp_bdat_begin(struct smtp_server *s, uint64_t len, bool last);
/* Skip a BDAT chunk of len octets, then send this engine refusal (esc must
 * be a static string). */
void smtp_bdat_refuse(struct smtp_server *s, uint64_t len, int code, const char *esc,
		      const char *text);
/* Enter the "ready to start TLS" state. */
void smtp_starttls_begin(struct smtp_server *s);

/* smtp_cmds.c */
/* Run one command line (no line terminator, no NUL, trailing space removed). */
void smtp_cmd_dispatch(struct smtp_server *s, const char *line, size_t len);
/* One SASL response line while in_sasl (same form as a command line). */
void smtp_auth_line(struct smtp_server *s, const char *line, size_t len);
/* The response line was too long: 500 5.5.6 and end the exchange (RFC 4954 4). */
void smtp_auth_too_long(struct smtp_server *s);
/* Drop all AUTH exchange state (wiping secrets); authed is kept. */
void smtp_auth_end(struct smtp_server *s);

#endif
