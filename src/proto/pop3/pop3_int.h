/* SPDX-License-Identifier: MIT */
/* Private to src/proto/pop3/: the POP3 engine's state and the calls shared by
 * pop3_server.c (framing, verdicts, streaming, session events) and
 * pop3_cmds.c (the command table and handlers).
 *
 * Invariants:
 *  - at most one verdict is outstanding (pend != P3_PEND_NONE) and at most
 *    one multi-line response is being produced (stream != P3_STREAM_NONE);
 *    while either is true, feed() consumes nothing, so responses go out in
 *    command order (RFC 2449 6.6);
 *  - msg_open/maildrop_open successes are paired with exactly one
 *    msg_close/maildrop_close (msg_is_open / md_open track that). */
#ifndef TERN_PROTO_POP3_INT_H
#define TERN_PROTO_POP3_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "proto/pop3/pop3_server.h"

#define P3_SASL_MAX_LINE (16 * 1024)

enum pop3_state {
	P3_ST_AUTH,      /* AUTHORIZATION */
	P3_ST_TRANS,     /* TRANSACTION */
	P3_ST_UPDATE,    /* after QUIT, waiting for the commit */
	P3_ST_TLS_WAIT,  /* after +OK to STLS: discard input, want STARTTLS */
	P3_ST_CLOSED,    /* final response queued: discard input, want CLOSE */
};

/* What pop3_server_resume() completes. */
enum pop3_pend {
	P3_PEND_NONE,
	P3_PEND_LOGIN,  /* login() or apop() */
	P3_PEND_OPEN,   /* maildrop_open() */
	P3_PEND_MSG,    /* msg_open() */
	P3_PEND_COMMIT, /* commit() */
	P3_PEND_SCRAM,  /* scram_prepare() */
};

enum pop3_stream { P3_STREAM_NONE, P3_STREAM_LIST, P3_STREAM_UIDL, P3_STREAM_BODY };

struct pop3_server {
	struct pop3_server_settings set;
	const struct pop3_server_ops *ops;
	void *ctx;

	struct buf out;  /* responses for the I/O layer */
	struct buf line; /* the line being assembled (no LF) */
	bool line_skip;  /* discarding the rest of an overlong line up to LF */
	enum pop3_state state;
	enum pop3_pend pend;
	struct buf reply; /* -ERR line set by pop3_server_reply() */
	bool reply_set;

	char timestamp[160]; /* APOP "<...>", "" when off */
	bool tls;
	bool shutdown_req;
	unsigned errors;
	unsigned auth_failures;

	char *user;        /* USER argument (AUTHORIZATION) or authenticated user */
	bool user_given;   /* USER was the previous command */
	char *login_user;  /* whose credentials are being checked */
	bool login_denied; /* P3_PEND_LOGIN for a failed SASL exchange: never OK */

	/* AUTH exchange (RFC 5034). */
	struct sasl *sasl;
	bool in_sasl;        /* the next line is a SASL response */
	bool sasl_final;     /* SCRAM: sent the server-final as a challenge, want "" */
	char *sasl_mech;     /* "PLAIN", "LOGIN", "SCRAM-SHA-256" */
	char *sasl_pass;     /* PLAIN/LOGIN password, checked after the exchange */
	char *sasl_user;
	char *sasl_claimed; /* the user a SCRAM client-first names (for sasl_done) */
	bool sasl_had_input; /* the first client message has been seen */
	struct buf sasl_in;  /* SCRAM client-first kept while scram_prepare is pending */

	/* Maildrop. */
	bool md_open;
	unsigned nmsgs;
	uint64_t *sizes;
	uint8_t *deleted;

	/* Multi-line response in progress. */
	enum pop3_stream stream;
	unsigned cursor;    /* LIST/UIDL: next message */
	bool filling;       /* inside fill(): no recursion */
	/* RETR/TOP */
	unsigned msg_idx;
	bool msg_is_open;
	bool body_wait;     /* msg_read() asked, no body_data() yet */
	bool body_done;     /* eof seen or TOP has its lines */
	bool body_failed;   /* the app cannot read on: close at the next fill */
	bool body_top;
	bool body_in_header;
	bool body_bol;      /* at the beginning of a line */
	bool body_line_cr;  /* the current line so far is exactly one CR (stored CRLF) */
	uint64_t top_left;  /* TOP body lines still to send */
	uint64_t produced;  /* body octets produced (timeout progress check) */
	uint64_t timeout_mark;
};

/* pop3_server.c */
void pop3_ok(struct pop3_server *s, const char *fmt, ...) ATTR_FORMAT(2, 3);
/* -ERR [code] text; logged; counts one protocol error if count (close at max). */
void pop3_refuse(struct pop3_server *s, const char *cmd, bool count, const char *code,
		 const char *fmt, ...) ATTR_FORMAT(5, 6);
void pop3_verdict(struct pop3_server *s, enum pop3_pend kind, enum pop3_verdict v);
/* Close after the queued output: releases message and maildrop, commits nothing. */
void pop3_close(struct pop3_server *s);
void pop3_stream_begin(struct pop3_server *s, enum pop3_stream kind);
void pop3_fill(struct pop3_server *s);
/* An authentication attempt failed (reply already queued). */
void pop3_auth_failed(struct pop3_server *s);
/* Credentials accepted for user: open the maildrop. */
void pop3_auth_ok(struct pop3_server *s, const char *user);
/* Message counts and octets, deleted ones excluded. */
void pop3_maildrop_stat(const struct pop3_server *s, unsigned *n_r, uint64_t *octets_r);
bool pop3_plaintext_ok(const struct pop3_server *s);

/* pop3_cmds.c */
/* Run one command line (no CRLF, no NUL). */
void pop3_cmd_dispatch(struct pop3_server *s, const char *line, size_t len);
/* End an AUTH exchange (frees the SASL state, wipes secrets). */
void pop3_sasl_end(struct pop3_server *s);
/* One SASL response line (RFC 5034 4) while in_sasl. */
void pop3_sasl_line(struct pop3_server *s, const char *l, size_t len);
/* scram_prepare() completed: step the SASL exchange with the kept client-first. */
void pop3_sasl_continue(struct pop3_server *s);
/* Exposed for tests: the username of a SCRAM client-first message (RFC 5802 7),
 * malloc'd, or NULL if it has none. */
char *pop3_scram_username(const uint8_t *p, size_t n);

#endif
