/* SPDX-License-Identifier: MIT */
/* IMAP role: binds the I/O-free IMAP engine to the account store
 * (passwords checked on job threads, failed logins slowed down), the
 * per-account mailbox store (store/mailbox.h) and the connection; keeps the
 * registry of sessions with a mailbox selected so that a change made by one
 * session, or an SMTP delivery, reaches the others. */
#ifndef TERN_DAEMON_ROLE_IMAP_H
#define TERN_DAEMON_ROLE_IMAP_H

struct server;
struct server_listener;

void role_imap_accept(struct server *srv, const struct server_listener *sl, int fd,
		      const char *peer, int port);
/* A message was delivered into account's INBOX (SMTP commit): sessions with
 * that INBOX selected sync at their next allowed point (at once in IDLE).
 * Loop thread only. */
void role_imap_delivered(const char *account);
/* The loop has stopped (after the stop deadline sessions may still exist):
 * wait for IMAP jobs still running and join the workers, so that none
 * outlives the event loop it wakes. Loop thread, before evloop_free(). */
void role_imap_stop(void);

#endif
