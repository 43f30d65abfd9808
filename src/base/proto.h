/* SPDX-License-Identifier: MIT */
/* The contract between an I/O-free protocol engine and the I/O layer.
 * An engine is fed bytes, appends its replies to an output buffer, and says
 * through enum proto_want what the connection should do next. io/conn.c drives
 * any engine through struct proto_session_ops, so SMTP, POP3 and IMAP share it. */
#ifndef TERN_BASE_PROTO_H
#define TERN_BASE_PROTO_H

#include <stddef.h>
#include <stdint.h>

struct buf;

enum proto_want {
	PROTO_WANT_READ,     /* feed me more bytes */
	PROTO_WANT_PENDING,  /* waiting for the application; the app will kick the conn */
	PROTO_WANT_STARTTLS, /* flush output, drop unread input, then run the TLS handshake */
	PROTO_WANT_CLOSE,    /* flush output, then close */
};

/* What io/conn.c calls on the session object it was given. */
struct proto_session_ops {
	/* Consume bytes; returns how many were consumed (<= n). Unconsumed bytes are
	 * offered again with more input appended. Never blocks. */
	size_t (*feed)(void *sess, const uint8_t *p, size_t n);
	enum proto_want (*want)(void *sess);
	/* The engine's pending output; the connection writes and buf_consume()s it. */
	struct buf *(*output)(void *sess);
	/* The TLS handshake finished (STARTTLS or implicit TLS). */
	void (*tls_started)(void *sess, const char *version, const char *cipher);
	/* The idle timer fired: queue a goodbye and want CLOSE. */
	void (*timeout)(void *sess);
	/* The server is shutting down: finish what is in flight, then want CLOSE. */
	void (*shutdown)(void *sess);
	/* The connection is gone (closed, reset or freed). Free the session. */
	void (*closed)(void *sess, const char *reason);
};

#endif
