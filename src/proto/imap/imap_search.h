/* SPDX-License-Identifier: MIT */
/* SEARCH (RFC 9051 6.4.4, RFC 3501 6.4.4), ESEARCH return options (RFC
 * 4731, folded into IMAP4rev2), SEARCHRES "$"/SAVE (RFC 5182) and the
 * CONDSTORE MODSEQ key (RFC 7162 3.1.5) as engine-independent library
 * code: the arguments are compiled once into a program, evaluated per
 * message on a struct imap_msg (imap_msg.h), and the hits rendered as
 * "* SEARCH ..." (IMAP4rev1 without RETURN) or "* ESEARCH ...".
 *
 * Engine sequence for "[UID] SEARCH ...":
 *
 *   rc = imap_search_parse(args, n, uid, &opts, &prog, &err);
 *   rc == -1: "<tag> BAD <err>";  rc == -2: "<tag> NO <err>" (BADCHARSET)
 *   struct imap_search_result res; imap_search_result_init(&res);
 *   for each message in ascending order (narrowed to imap_search_uid_hint()
 *   when it is set): fill struct imap_msg m;
 *           if (imap_search_match(prog, &m) > 0) imap_search_result_add(prog, &res, &m);
 *           imap_msg_release(&m);
 *   imap_search_render(prog, &res, tag, out);
 *   if (imap_search_saves(prog)) replace the session's "$" with
 *           imap_search_saved_set(prog, &res)  (RFC 5182 2.1)
 *
 * Evaluation order: AND children are sorted by cost (flags, sizes, dates,
 * sequence sets first; then header keys, which read only the header; then
 * BODY/TEXT, which decode the text parts), so cheap keys short-circuit
 * before any file read, and each message's header/body text is built at
 * most once per evaluation.
 *
 * Matching (RFC 9051 6.4.4: "substring match, case-insensitive"): the
 * key string and the message text (RFC 2047 / transfer-decoded, converted
 * to UTF-8) are folded with mime_search_fold() and compared as substrings.
 * BEFORE/ON/SINCE use the INTERNALDATE's own zone, SENT* the Date field's
 * own zone ("disregarding time and timezone"); a message without a
 * readable Date field never matches SENT* keys. In IMAP4rev2 \Recent does
 * not exist: the engine passes recent = false and RECENT/NEW never match,
 * OLD always does (RFC 9051 appendix E item 12 deprecates them; we keep
 * accepting them like Dovecot). */
#ifndef TERN_PROTO_IMAP_SEARCH_H
#define TERN_PROTO_IMAP_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/imap/imap_msg.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_seqset.h"

#define IMAP_SEARCH_MAX_DEPTH 64       /* nested NOT/OR/parentheses */
#define IMAP_SEARCH_MAX_KEYS 1024      /* keys in one program */
#define IMAP_SEARCH_MAX_READ (32u << 20) /* message bytes read for BODY/TEXT */

struct imap_search_opts {
	bool rev2;         /* IMAP4rev2 session: ESEARCH is the default answer */
	bool condstore;    /* MODSEQ key accepted */
	uint32_t n_msgs;   /* "*" in message sequence sets */
	uint32_t max_uid;  /* "*" in UID sets (highest UID, or UIDNEXT - 1) */
	/* "$" (RFC 5182): the saved result as sequence numbers (for a bare
	 * "$") and as UIDs (for "UID $"); NULL when nothing is saved, which
	 * makes "$" the empty set (RFC 5182 2.1). */
	const struct imap_seqset *saved_seq, *saved_uid;
};

struct imap_search;

/* Compiles the SEARCH arguments (everything after "SEARCH"). 0 with
 * *prog_r set; -1 with *error_r for "<tag> BAD <error>"; -2 with *error_r
 * for "<tag> NO <error>" (an unsupported CHARSET: "[BADCHARSET (UTF-8
 * US-ASCII)] ..."). */
int imap_search_parse(const struct imap_arg *args, size_t n_args, bool uid,
		      const struct imap_search_opts *opts, struct imap_search **prog_r,
		      const char **error_r) ATTR_WARN_UNUSED;
void imap_search_free(struct imap_search **prog);

/* 1 if msg matches, 0 if not. A message whose file cannot be read matches
 * only through keys that do not need it. */
int imap_search_match(const struct imap_search *prog, struct imap_msg *msg);
/* True if evaluating needs the part tree / file (BODY, TEXT, HEADER...):
 * the engine loads msg.mime only then. */
bool imap_search_needs_file(const struct imap_search *prog);

struct imap_search_result {
	struct imap_seqset hits; /* UIDs for UID SEARCH, else sequence numbers */
	uint64_t max_modseq;     /* for the MODSEQ answer (RFC 7162 3.1.5) */
};
void imap_search_result_init(struct imap_search_result *r);
void imap_search_result_free(struct imap_search_result *r);
void imap_search_result_add(const struct imap_search *prog, struct imap_search_result *r,
			    const struct imap_msg *msg);

/* Appends the untagged answer: "* SEARCH 2 5 7\r\n" (rev1, no RETURN),
 * "* ESEARCH (TAG "x") UID MIN 2 MAX 7 ALL 2,5,7 COUNT 3\r\n", or nothing
 * for RETURN (SAVE) alone (RFC 5182 2.1). tag is the command's tag. */
void imap_search_render(const struct imap_search *prog, const struct imap_search_result *r,
			const char *tag, struct buf *out);
/* RETURN (SAVE ...): the engine replaces "$" with imap_search_saved_set(). */
bool imap_search_saves(const struct imap_search *prog);
/* The set to save: MIN and/or MAX only when those are the only other
 * options, else every hit (RFC 5182 2.1). Caller frees with
 * imap_seqset_free. */
void imap_search_saved_set(const struct imap_search *prog, const struct imap_search_result *r,
			   struct imap_seqset *out);

#endif
