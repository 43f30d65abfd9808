/* SPDX-License-Identifier: MIT */
/* What every protocol session shares: identity for logs, the client address
 * (for per-address limits), and references to the configuration and TLS
 * context it started with, so SIGHUP can swap both while old sessions finish
 * with what they had. */
#ifndef TERN_DAEMON_SESSION_H
#define TERN_DAEMON_SESSION_H

#include "daemon/server.h"

struct session {
	struct server *srv;
	struct conn *conn;
	const struct config *cfg;   /* referenced; valid for the session's life */
	struct cfg_holder *cfg_ref;
	struct tls_ctx *tls;        /* referenced; NULL when no certificate */
	char id[17];
	char peer[64];
	int port;
	const char *proto;
	void (*free_fn)(struct session *s); /* protocol part; then the struct is freed */
};

void session_init(struct session *s, struct server *srv, const char *proto, const char *peer,
		  int port, void (*free_fn)(struct session *s));
/* Calls free_fn, drops the references, releases the connection slot, frees s. */
void session_destroy(struct session *s);

/* The one rule for passwords in the clear (POP3 USER/PASS, AUTH PLAIN/LOGIN,
 * IMAP LOGIN, later SMTP AUTH): allowed from loopback clients, where nothing
 * crosses a network, or everywhere with allow_plaintext_auth = yes. TLS is
 * checked by the engines themselves. */
bool session_plaintext_ok(const struct session *s);

const char *listener_proto_name(enum listener_proto p);

#endif
