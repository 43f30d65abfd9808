/* SPDX-License-Identifier: MIT */
/* POP3 role: binds the I/O-free POP3 engine to the account store (passwords
 * checked on job threads, failed logins slowed down), the Maildir maildrop
 * and the connection. */
#ifndef TERN_DAEMON_ROLE_POP3_H
#define TERN_DAEMON_ROLE_POP3_H

struct server;
struct server_listener;

void role_pop3_accept(struct server *srv, const struct server_listener *sl, int fd,
		      const char *peer, int port);

#endif
