/* SPDX-License-Identifier: MIT */
/* STORE / UID STORE (RFC 9051 6.4.6, RFC 3501 6.4.6) with the CONDSTORE
 * UNCHANGEDSINCE modifier (RFC 7162 3.1.3): argument parsing into a
 * request the engine hands to the store (mbox_store), and the untagged
 * "* n FETCH (FLAGS (...))" answers.
 *
 * Engine sequence for "[UID] STORE set [(UNCHANGEDSINCE n)] item flags":
 *   rc = imap_store_parse(args_after_set, n, &opts, &req, &err);
 *   rc == -1: "<tag> BAD <err>"; rc == -2: "<tag> NO <err>" ([LIMIT])
 *   mbox_store(..., req.op, req.flags, req.keywords, req.n_keywords,
 *              req.unchangedsince (0 = none; a requested 0 fails every
 *              message, RFC 7162 3.1.3), ...);
 *   for each stored message, if imap_store_wants_fetch(&req):
 *           imap_store_render(&req, &msg_with_new_flags, uid, &opts, out);
 *   failed UNCHANGEDSINCE messages: "<tag> OK [MODIFIED <set>] ..." with
 *   imap_store_write_modified();
 *   imap_store_req_free(&req);
 *
 * Flags (RFC 9051 9 flag): \Answered \Flagged \Deleted \Seen \Draft, and
 * keywords (atoms without "\", "%", "*", "]"). \Recent cannot be set or
 * cleared by a client (RFC 3501 2.3.2) and other "\" names are not flags
 * this server has: both are BAD, as Dovecot answers. Keywords are kept
 * as sent, duplicates (case-insensitive) dropped. */
#ifndef TERN_PROTO_IMAP_STORE_H
#define TERN_PROTO_IMAP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/imap/imap_msg.h"
#include "proto/imap/imap_parser.h"

#define IMAP_STORE_MAX_KEYWORD 64  /* bytes, as store/mailbox.h's MBOX_KEYWORD_MAX */
#define IMAP_STORE_MAX_KEYWORDS 64 /* per command, as MBOX_KEYWORDS_MAX */

/* Same values as store/mailbox.h's enum mbox_flag_op. */
enum imap_store_op { IMAP_STORE_REPLACE = 0, IMAP_STORE_ADD, IMAP_STORE_REMOVE };

struct imap_store_opts {
	bool rev2;      /* no \Recent in FLAGS answers */
	bool condstore; /* UNCHANGEDSINCE accepted; answers carry MODSEQ */
};

struct imap_store_req {
	enum imap_store_op op;
	bool silent;
	unsigned flags;   /* enum imap_msg_flag */
	char **keywords;  /* malloc'd */
	size_t n_keywords;
	bool has_unchangedsince;
	uint64_t unchangedsince;
	bool condstore;
};

/* Parses the STORE arguments after the sequence set. 0, or -1 with
 * *error_r for BAD, or -2 for "NO [LIMIT]" (too many keywords). req is
 * always safe to free. */
int imap_store_parse(const struct imap_arg *args, size_t n_args, const struct imap_store_opts *opts,
		     struct imap_store_req *req, const char **error_r) ATTR_WARN_UNUSED;
void imap_store_req_free(struct imap_store_req *req);
/* The new system flags of a message whose flags were old. */
unsigned imap_store_apply(const struct imap_store_req *req, unsigned old);
/* True if an untagged FETCH goes out for each stored message: not .SILENT,
 * or UNCHANGEDSINCE given (RFC 7162 3.1.3: sent even with .SILENT, with
 * MODSEQ and without FLAGS). */
bool imap_store_wants_fetch(const struct imap_store_req *req);
/* Appends "* seq FETCH ([UID u ]FLAGS (...)[ MODSEQ (m)])\r\n" for msg
 * (after the store: its new flags, keywords and modseq). uid: UID STORE
 * (RFC 9051 6.4.9: the answer includes UID). */
void imap_store_render(const struct imap_store_req *req, const struct imap_msg *msg, bool uid,
		       const struct imap_store_opts *opts, struct buf *out);
/* Appends "[MODIFIED 7,9:11]" for the numbers that failed UNCHANGEDSINCE
 * (UIDs for UID STORE, sequence numbers for STORE; RFC 7162 3.1.3). */
void imap_store_write_modified(const uint32_t *v, size_t n, struct buf *out);

#endif
