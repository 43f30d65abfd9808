/* SPDX-License-Identifier: MIT */
/* The outbound delivery scheduler (the relay role): takes due recipients
 * from the queue (queue_due, grouped by domain), finds where they go
 * (relay_host, or MX records through io/dns.h), delivers over io/conn.h
 * client connections driven by the smtp_client engine, or into local
 * Maildirs for local domains, and records every outcome (queue_record,
 * queue_notify). Everything runs on the event loop's thread.
 *
 * The pure decisions (result mapping, fallback, limits, reply formatting)
 * are exported for unit tests. */
#ifndef TERN_DAEMON_RELAY_H
#define TERN_DAEMON_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "io/dns.h"
#include "proto/smtp/smtp_client.h"
#include "queue/queue.h"

struct server;
struct relay;

/* Start the scheduler on srv (srv->ev, srv->queue, srv->cfg). Wakes at once
 * (crash leftovers, delay warnings, due mail). NULL + *err_r (malloc'd) when
 * the resolver cannot be set up. */
struct relay *relay_new(struct server *srv, char **err_r);
/* Something was queued: look at the queue soon (from any loop callback). */
void relay_kick(struct relay *r);
/* SIGTERM: start nothing new; connections QUIT after their current message;
 * unstarted claimed recipients are released. */
void relay_stop(struct relay *r);
/* No outbound connection and no local delivery in flight. True for NULL. */
bool relay_idle(const struct relay *r);
/* Close what is left (claims released), free. Call after committer_free()
 * (local deliveries report through the committer) and before queue_close(). */
void relay_free(struct relay **r);

/* ---- decisions, exported for tests ---- */

/* One address to try, in order. */
struct relay_target {
	const char *host; /* MX host name (into the dns_result), or the smarthost */
	struct dns_addr addr;
	bool dead;  /* failed before a session was ready: not tried again by this job */
	bool notls; /* its TLS handshake failed: plaintext next time (RFC 7435) */
};
/* Flatten a resolved result into the order of attempts: hosts as the
 * resolver sorted them (preference, random among equals), each host's
 * addresses in its order. host_override (a smarthost) names every target.
 * Returns the count; *out is malloc'd (NULL when 0). */
size_t relay_targets_build(const struct dns_result *res, const char *host_override,
			   struct relay_target **out);
/* Index of the first target not dead, SIZE_MAX when all are. */
size_t relay_first_alive(const struct relay_target *t, size_t n);

/* Queue outcome of one recipient's smtp_client result. peer_dsn: the peer
 * offered DSN (RFC 3461), so an accepted recipient is PASSED, not RELAYED. */
enum queue_outcome relay_outcome(const struct smtp_client_result *res, bool peer_dsn);
/* After a connection ended before the session was ready (connect failure,
 * greeting or EHLO refused, TLS failure): try the next MX address? Always,
 * RFC 5321 5.1 ("try the next"); kept as a function for the tests and for
 * the exhausted case below. */
bool relay_next_host_on_failure(const struct smtp_client_result *res, bool was_ready);
/* When every target failed before a session was ready: permanent only if
 * every one of them refused permanently (5xx greeting/EHLO); else temporary. */
enum queue_outcome relay_exhausted_outcome(unsigned nperm, unsigned nfailed);
/* May another connection be opened? total/max overall, dom/max_dom for this
 * destination (0 max = no limit). */
bool relay_may_connect(unsigned total, unsigned max_total, unsigned dom, unsigned max_dom);
/* Reply as kept for DSNs and `tern queue list`: every line of text
 * (lines joined by '\n') prefixed with "code-" and the last one with
 * "code "; code 0: text as is. Appends to out. */
void relay_format_reply(struct buf *out, int code, const char *text);
/* RFC 3461 4 xtext encoding of s, appended to out. */
void relay_xtext(struct buf *out, const char *s);
/* RFC 3461 4.1 NOTIFY value for enum queue_notify bits; NULL for 0. */
const char *relay_notify_str(unsigned bits, char out[40]);

#endif
