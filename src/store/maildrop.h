/* SPDX-License-Identifier: MIT */
/* A POP3 maildrop over one account's Maildir (see store/maildir.h for the
 * layout and the file-name convention).
 *
 * Snapshot: maildrop_open() lists new/ and cur/ once (RFC 1939 keeps the
 * message numbers of a session fixed); mail delivered later shows up in the
 * next session. Order: delivery time (the leading "<sec>.M<usec>" of the
 * name), then the base name.
 *
 * Identity: a message is its unique base name, the part of the file name
 * before the first ',' or ':'. It survives everything other programs may do
 * to a Maildir file: the new/ -> cur/ move, flag changes (":2,<flags>"),
 * added or changed ",S=" / ",W=" fields. The UIDL (RFC 1939 7: 1..70
 * characters 0x21-0x7E, unique, stable forever) is the base name itself when
 * it qualifies, which is the case for every name Tern delivers, otherwise
 * "~" plus 32 hex digits of a 128-bit hash of it. The IMAP index (issue 5)
 * should key its messages by the same base name, so both protocols derive
 * their identity from one source.
 *
 * Sizes: the wire size (CRLF form, what RETR sends before dot-stuffing) is
 * taken from ",W=" when present, else computed by reading the file: physical
 * size + number of LFs, the rule store/maildir.c uses for W=.
 *
 * Locking, and living with IMAP: the POP3 IN-USE rule (RFC 1939 8, RFC 2449
 * 8.1.2) is a lock file "<root>/tern-pop3.lock" held with
 * flock(LOCK_EX|LOCK_NB) for the session. Only POP3 takes it; delivery and
 * IMAP never do. That is safe because POP3 never relies on a file staying
 * where it was listed: at RETR and at commit it looks the message up again by
 * base name in new/ and cur/ when the remembered path is gone. POP3 creates
 * no files and removes only files whose base name it was asked to delete, so
 * a concurrent IMAP session can neither make POP3 lose a message (nothing
 * unmarked is ever unlinked, and new deliveries have new base names) nor
 * duplicate one (one base name, one UIDL, wherever the file moves). A message
 * IMAP expunged meanwhile reads as vanished; at commit it counts as deleted.
 *
 * All functions are synchronous file-system calls; listing a Maildir without
 * W= in its names reads every file, so the daemon should open on a job thread.
 * A struct maildrop is used by one thread at a time. */
#ifndef TERN_STORE_MAILDROP_H
#define TERN_STORE_MAILDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct maildrop;

#define MAILDROP_UIDL_MAX 70
#define MAILDROP_LOCK_NAME "tern-pop3.lock"

/* Open the Maildir at root (created with cur/ new/ tmp/ if missing), take the
 * POP3 lock and list the messages. Returns 0 (*md_r set), 1 when another
 * session holds the lock (IN-USE), or -1 with *err_r (malloc'd, for the log;
 * never shown to clients). */
int maildrop_open(const char *root, struct maildrop **md_r, char **err_r) ATTR_WARN_UNUSED;
/* Release the lock and free; commits nothing. NULLs *md. */
void maildrop_close(struct maildrop **md);

unsigned maildrop_count(const struct maildrop *md);
/* idx is 0-based. */
uint64_t maildrop_wire_size(const struct maildrop *md, unsigned idx);
const char *maildrop_uidl(const struct maildrop *md, unsigned idx);
/* The unique base name (identity) of message idx. */
const char *maildrop_base(const struct maildrop *md, unsigned idx);

/* Open message idx read-only (O_CLOEXEC) at its current place. 0 and *fd_r,
 * or -1 with errno (ENOENT: the message is gone) and *err_r. The content is
 * in storage form (LF line endings). */
int maildrop_msg_open(struct maildrop *md, unsigned idx, int *fd_r, char **err_r)
	ATTR_WARN_UNUSED;

/* Remove the n messages idx[] (each < count). A message already gone counts
 * as removed; nothing else is touched. new/ and cur/ are fsynced. 0, or -1
 * with *err_r if some could not be removed (the others are). *removed_r (may
 * be NULL) counts the files unlinked by this call. */
int maildrop_commit(struct maildrop *md, const unsigned *idx, size_t n, unsigned *removed_r,
		    char **err_r) ATTR_WARN_UNUSED;

/* Exposed for tests: the UIDL for a base name (out holds MAILDROP_UIDL_MAX + 1). */
void maildrop_uidl_of(const char *base, size_t len, char out[MAILDROP_UIDL_MAX + 1]);

#endif
