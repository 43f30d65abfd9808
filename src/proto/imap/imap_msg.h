/* SPDX-License-Identifier: MIT */
/* The message accessor FETCH, SEARCH and STORE work on. The IMAP engine
 * fills one struct imap_msg per message from the mailbox store (mbox_meta
 * in store/mailbox.h: proto/ code does not include store headers, so the
 * fields are plain copies) and hands it to imap_fetch_render(),
 * imap_search_match() and imap_store_render(). Everything is borrowed:
 * strings and blobs stay owned by the engine for as long as the message is
 * in use; the only thing this module owns is the part tree it may build
 * (imap_msg_tree), released by imap_msg_release().
 *
 * Message bytes are never held here: the read callback preads the physical
 * (LF) file, and wire (CRLF) offsets are derived through the part tree
 * (mime/message.h explains physical vs wire). */
#ifndef TERN_PROTO_IMAP_MSG_H
#define TERN_PROTO_IMAP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mime/message.h"

/* Stored system flags; the values equal store/mailbox.h's enum mbox_flag so
 * the engine can copy the bit set as it is. \Recent is session state and
 * travels separately (struct imap_msg.recent; RFC 9051 2.3.2 deprecates it). */
enum imap_msg_flag {
	IMAP_MSGF_SEEN = 1 << 0,
	IMAP_MSGF_ANSWERED = 1 << 1,
	IMAP_MSGF_FLAGGED = 1 << 2,
	IMAP_MSGF_DELETED = 1 << 3,
	IMAP_MSGF_DRAFT = 1 << 4,
};
#define IMAP_MSGF_ALL 0x1fu

/* Reads up to len physical bytes at off into buf. Returns the number of
 * bytes read (0 only at end of file), or -1 on an I/O error (the message
 * file vanished...). Short reads are allowed: callers loop. */
typedef long imap_msg_read_fn(void *ctx, uint64_t off, size_t len, void *buf);

struct imap_msg {
	uint32_t seq, uid;
	unsigned flags;        /* enum imap_msg_flag */
	bool recent;           /* session's \Recent (IMAP4rev1 only) */
	const char *keywords;  /* space separated; NULL or "" for none */
	int64_t internaldate;  /* seconds since the epoch */
	int tz_min;            /* INTERNALDATE zone, minutes east of UTC */
	uint64_t size;         /* physical (file) bytes */
	uint64_t wire_size;    /* RFC822.SIZE */
	uint64_t modseq;       /* CONDSTORE MODSEQ (0 = unknown) */
	/* Cached IMAP strings (NUL-terminated) or NULL: computed from the tree. */
	const char *envelope, *body, *bodystructure;
	/* Serialised part tree (mime_message_serialize) or NULL/0: then the
	 * tree is built by parsing the file through read. */
	const void *mime;
	size_t mime_len;
	imap_msg_read_fn *read;
	void *read_ctx;

	struct mime_message *tree_; /* private: built on demand */
};

/* The part tree: deserialised from mime/mime_len, or parsed from the file
 * if that is absent, corrupt or describes a file of another size than
 * msg->size (when that is set). NULL if the file cannot be read. Owned by
 * msg until imap_msg_release(). */
const struct mime_message *imap_msg_tree(struct imap_msg *msg);
/* Reads exactly len bytes at off into buf (looping over short reads).
 * 0, or -1 on an error or an early end of file. */
int imap_msg_pread(struct imap_msg *msg, uint64_t off, size_t len, void *buf);
/* True if the message carries keyword kw (ASCII case-insensitive, RFC 9051
 * 2.3.2 says keywords are case-insensitive). */
bool imap_msg_has_keyword(const struct imap_msg *msg, const char *kw, size_t n);
/* Frees what the accessor built (the tree); msg can be reused. */
void imap_msg_release(struct imap_msg *msg);

#endif
