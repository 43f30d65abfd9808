/* SPDX-License-Identifier: MIT */
/* SMTP MX role: binds the I/O-free SMTP engine to the account store (who is
 * local), Maildir delivery (group commit) and the connection. */
#ifndef TERN_DAEMON_ROLE_SMTP_H
#define TERN_DAEMON_ROLE_SMTP_H

struct server;
struct server_listener;

/* Start an SMTP session on an accepted fd. peer is the client's address text. */
void role_smtp_accept(struct server *srv, const struct server_listener *sl, int fd,
		      const char *peer, int port);

#endif
