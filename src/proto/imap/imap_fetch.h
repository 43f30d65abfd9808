/* SPDX-License-Identifier: MIT */
/* FETCH (RFC 9051 6.4.5, 7.5.2; RFC 3501 6.4.5, 7.4.2; BINARY RFC 3516;
 * CONDSTORE MODSEQ/CHANGEDSINCE RFC 7162 3.1.4-3.1.5) as engine-independent
 * library code: the item list is compiled once per command into a plan,
 * then one "* n FETCH (...)" response is rendered per message from a
 * struct imap_msg (imap_msg.h).
 *
 * Engine sequence for "[UID] FETCH set items":
 *
 *   plan = NULL;
 *   if (imap_fetch_parse(args_after_set, n, uid, &opts, &plan, &err) < 0)
 *           reply "<tag> BAD <err>";
 *   want = imap_fetch_plan_wants(plan);      // which cached blobs to load
 *   for each message (skip modseq <= imap_fetch_plan_changedsince(plan)):
 *           fill struct imap_msg m;
 *           add_flags = false;
 *           if (imap_fetch_plan_sets_seen(plan) && read-write && !(m.flags & SEEN)) {
 *                   store \Seen; m.flags |= SEEN; add_flags = true;
 *           }                                 // RFC 9051 6.4.5 BODY[]: "\Seen flag is set"
 *           if (imap_fetch_render_begin(&r, plan, &m, add_flags, &err) < 0)
 *                   remember NO <err> (e.g. "[UNKNOWN-CTE] ..."); continue;
 *           while ((rc = imap_fetch_render(&r, out, HIGH_WATER)) == 1)
 *                   flush out (wait until writable), buf_clear(out) or consume;
 *           imap_fetch_render_end(&r); imap_msg_release(&m);
 *           if (rc < 0) close the connection (a promised literal cannot be
 *                   completed: the file changed or vanished mid-response).
 *
 * Streaming: BODY[...] / RFC822* bodies are read through msg->read in
 * 64 KiB pieces and converted with struct mime_wire, so a 50 MB BODY[] is
 * never held in memory; render() returns 1 as soon as out->len reaches
 * high_water and resumes exactly where it stopped. HEADER.FIELDS[.NOT] and
 * BINARY results are built in memory (bounded by IMAP_FETCH_MAX_MEM).
 *
 * Items (answer order = request order; UID FETCH adds UID first if not
 * asked for, RFC 9051 6.4.9; add_flags adds FLAGS last if not asked for):
 *   ALL FAST FULL (alone only), FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE,
 *   BODY, BODYSTRUCTURE, UID, MODSEQ, BODY[s]<o.n>, BODY.PEEK[s]<o.n>,
 *   BINARY[p]<o.n>, BINARY.PEEK[p]<o.n>, BINARY.SIZE[p], RFC822,
 *   RFC822.HEADER, RFC822.TEXT.
 * IMAP4rev2 (RFC 9051 appendix E item 18) deprecated RFC822, RFC822.HEADER
 * and RFC822.TEXT and dropped them from its grammar; like Dovecot we still
 * accept them in rev2 sessions, since a rev2 server also serves rev1
 * clients. In rev2 FLAGS never shows \Recent (RFC 9051 2.3.2).
 * Modifier list (optional, after the items): "(CHANGEDSINCE n)" (RFC 7162
 * 3.1.4; only when opts.condstore), which also implies MODSEQ. */
#ifndef TERN_PROTO_IMAP_FETCH_H
#define TERN_PROTO_IMAP_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "mime/imap_view.h"
#include "proto/imap/imap_msg.h"
#include "proto/imap/imap_parser.h"

#define IMAP_FETCH_MAX_ITEMS 256
/* Upper bound for the in-memory results (HEADER.FIELDS input header,
 * BINARY decoded part): beyond it the message answers NO [LIMIT]. */
#define IMAP_FETCH_MAX_MEM (64u << 20)
#define IMAP_FETCH_CHUNK 65536u

struct imap_fetch_opts {
	bool rev2;      /* IMAP4rev2 session: no \Recent in FLAGS */
	bool utf8;      /* rev2 or ENABLE UTF8=ACCEPT (RFC 9051 4.3.1, RFC 6855) */
	bool condstore; /* CONDSTORE enabled: MODSEQ, CHANGEDSINCE accepted */
};

/* What the engine should load from the store for each message. */
enum imap_fetch_want {
	IMAP_FETCH_W_ENVELOPE = 1 << 0,      /* msg.envelope */
	IMAP_FETCH_W_BODY = 1 << 1,          /* msg.body */
	IMAP_FETCH_W_BODYSTRUCTURE = 1 << 2, /* msg.bodystructure */
	IMAP_FETCH_W_MIME = 1 << 3,          /* msg.mime (serialised tree) */
	IMAP_FETCH_W_FILE = 1 << 4,          /* msg.read: body bytes are read */
};

struct imap_fetch_plan;

/* Compiles the FETCH arguments that follow the sequence set: args[0] is a
 * macro, one item or a list of items, args[1] (optional) the modifier
 * list. uid: the command is UID FETCH. 0 with *plan_r set, or -1 with
 * *error_r a static message for "<tag> BAD <message>". */
int imap_fetch_parse(const struct imap_arg *args, size_t n_args, bool uid,
		     const struct imap_fetch_opts *opts, struct imap_fetch_plan **plan_r,
		     const char **error_r) ATTR_WARN_UNUSED;
void imap_fetch_plan_free(struct imap_fetch_plan **plan);
/* True if the plan contains a non-PEEK BODY[...] / BINARY[...] or RFC822 /
 * RFC822.TEXT: on a read-write mailbox the engine sets \Seen first and
 * passes add_flags = true when that changed the flags. */
bool imap_fetch_plan_sets_seen(const struct imap_fetch_plan *plan);
unsigned imap_fetch_plan_wants(const struct imap_fetch_plan *plan); /* enum imap_fetch_want */
/* CHANGEDSINCE value, 0 if none: only messages with a greater modseq are
 * answered (RFC 7162 3.1.4). */
uint64_t imap_fetch_plan_changedsince(const struct imap_fetch_plan *plan);

/* Rendering state for one message. Opaque; lives on the caller's stack. */
struct imap_fetch_render {
	const struct imap_fetch_plan *plan_;
	struct imap_msg *msg_;
	bool add_flags_;
	size_t item_;      /* next item (index into the plan's answer list) */
	int phase_;        /* 0 = header not written, 1 = items, 2 = done */
	struct imap_fetch_prep_ *prep_;
	/* the body being streamed */
	bool streaming_;
	uint64_t rpos_, rend_; /* physical read position / end */
	uint64_t lit_left_;    /* literal bytes still owed */
	struct mime_wire wire_;
	uint8_t *chunk_;
};

/* Prepares one message: resolves sections, decodes BINARY parts. Writes
 * nothing. 0, or -1 with *error_r a static text for "<tag> NO <text>"
 * ("[UNKNOWN-CTE] ...", "[PARSE] ..." for damaged encodings, "[LIMIT] ...",
 * "[SERVERBUG] ..." when the message cannot be read); then there is no
 * response for this message and render_end need not be called. */
int imap_fetch_render_begin(struct imap_fetch_render *r, const struct imap_fetch_plan *plan,
			    struct imap_msg *msg, bool add_flags,
			    const char **error_r) ATTR_WARN_UNUSED;
/* Appends the response to out (out's max is not enforced; high_water
 * bounds it instead: a streamed body stops within 2 * IMAP_FETCH_CHUNK
 * bytes past it, other items - including the in-memory BINARY and
 * HEADER.FIELDS results, up to IMAP_FETCH_MAX_MEM - are appended whole
 * before the check). Returns 0 when the response is complete,
 * 1 when out->len >= high_water and more is to come (flush and call again),
 * -1 when the body could not be read after its literal size was sent: the
 * connection must be closed. */
int imap_fetch_render(struct imap_fetch_render *r, struct buf *out, size_t high_water);
void imap_fetch_render_end(struct imap_fetch_render *r);

/* Formats an INTERNALDATE as IMAP date-time "dd-Mon-yyyy hh:mm:ss +zzzz"
 * (RFC 9051 9, with a quoted string's DQUOTEs). */
void imap_fetch_write_internaldate(int64_t t, int tz_min, struct buf *out);
/* Appends "(\Answered ... keywords)" (RFC 9051 7.5.2 FLAGS). */
void imap_fetch_write_flags(const struct imap_msg *msg, bool rev2, struct buf *out);

#endif
