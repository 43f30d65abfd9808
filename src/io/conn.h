/* SPDX-License-Identifier: MIT */
/* A connection: a non-blocking socket, optional TLS, an input buffer, and an
 * I/O-free protocol session driven through struct proto_session_ops.
 *
 * conn reads into its input buffer (capped), calls ops->feed() until the
 * session stops consuming, writes ops->output(), and acts on ops->want():
 * PENDING stops reading until conn_kick(); STARTTLS flushes, discards any
 * unread plaintext (no command injection), handshakes and calls tls_started();
 * CLOSE flushes and closes. Reading pauses while unsent output is above a
 * high-water mark (backpressure). Idle timeout: ops->timeout() after
 * idle_ms without input. When the conn goes away, ops->closed() is called
 * exactly once and the session must free itself there. */
#ifndef TERN_IO_CONN_H
#define TERN_IO_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/proto.h"

struct evloop;
struct tls_ctx;
struct conn;

struct conn_settings {
	unsigned idle_ms;      /* idle timeout; 0 = none */
	size_t max_input;      /* input buffer cap (bytes buffered but not consumed); 0 = 64 KiB */
	struct tls_ctx *tls;   /* for STARTTLS / implicit TLS; may be NULL */
	bool implicit_tls;     /* handshake before the session sees anything */
	unsigned tls_handshake_ms; /* handshake timeout; 0 = 30 s */
	/* Client side (conn_connect): the TLS handshake is SSL_connect, with
	 * this name as SNI and as the name checked by the (logged, never
	 * enforced) certificate verification. NULL: no SNI. */
	const char *tls_server_name;
};

/* Takes ownership of fd (made non-blocking here). Returns NULL on failure (fd
 * closed, ops->closed() NOT called: the caller still owns sess). Nothing is
 * written or read before the loop runs, so output queued before or right after
 * conn_new (a banner) goes out on the first iteration. The first conn_new sets
 * SIGPIPE to SIG_IGN if it is still SIG_DFL (OpenSSL writes with write(2)). */
struct conn *conn_new(struct evloop *ev, int fd, const struct conn_settings *set,
		      const struct proto_session_ops *ops, void *sess);
/* Client mode: a non-blocking connect to sa (IPv4 or IPv6), then the same
 * contract as conn_new (set->tls is then a client context, tls_ctx_client_new).
 * Nothing is read or fed until the connection is established; a failed or
 * timed-out connect (connect_ms, 0 = 30 s) ends in ops->closed() with a
 * reason such as "connect: Connection refused" or "connect timeout", later,
 * from the loop. Returns NULL with *err_r (malloc'd) when the socket cannot
 * even be created or connect(2) fails at once; ops->closed() is then NOT
 * called. */
struct conn *conn_connect(struct evloop *ev, const struct sockaddr *sa, socklen_t salen,
			  unsigned connect_ms, const struct conn_settings *set,
			  const struct proto_session_ops *ops, void *sess, char **err_r);
/* Change the idle timeout (ms, 0 = none) from now on: a client session waits
 * for different replies with different timeouts (RFC 5321 4.5.3.2). */
void conn_set_idle_timeout(struct conn *c, unsigned ms);
/* True once a client connection is established (always true for accepted ones). */
bool conn_is_connected(const struct conn *c);
/* Client TLS: the certificate verification result as text ("ok" or
 * OpenSSL's reason), for logs; NULL without TLS. Verification never aborts
 * the connection (opportunistic TLS, RFC 3207 4.1 / RFC 7435). */
const char *conn_tls_verify_result(const struct conn *c);
/* The session has new output or finished a PENDING step: write and resume feeding.
 * Runs at once (or, from inside this conn's own callbacks, right after them), so
 * it may end in ops->closed(): do not touch the session after calling it. */
void conn_kick(struct conn *c);
/* Close now (after a best-effort flush of pending output). ops->closed() follows;
 * when called from inside this conn's session callbacks, both happen right
 * after the callback returns, so the session stays valid until then. */
void conn_close(struct conn *c, const char *reason);
/* Ask the session to shut down (ops->shutdown) — used on SIGTERM. Like
 * conn_kick, may end in ops->closed() before it returns. */
void conn_shutdown(struct conn *c);
bool conn_is_tls(const struct conn *c);
/* Peer address as text ("127.0.0.1") and port. */
const char *conn_peer_addr(const struct conn *c);
int conn_peer_port(const struct conn *c);
/* Number of live connections (for shutdown and limits). */
unsigned conn_count(void);
/* Walk all live connections (for shutdown). cb must not free other conns. */
void conn_foreach(void (*cb)(struct conn *c, void *ctx), void *ctx);

#endif
