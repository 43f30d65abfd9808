/* SPDX-License-Identifier: MIT */
/* IMAP mailbox store: an account's Maildir++ tree plus one SQLite index.
 *
 * This is the single header the IMAP engine needs for storage. Everything is
 * synchronous file-system and SQLite work: call it from a job thread.
 *
 * Layout (the account root is store/maildir.h's <data_dir>/mail/<dom>/<local>):
 *   <root>/{cur,new,tmp}        INBOX (shared with SMTP delivery and POP3)
 *   <root>/.<dir>/{cur,new,tmp} every other mailbox, plus an empty
 *                               "maildirfolder" file (Maildir++ convention)
 *   <root>/tern-index.db        the index (SQLite, WAL, user_version = schema)
 *   <root>/tern-trash-<hex>/    a deleted mailbox on its way out (swept on open)
 *
 * Mailbox names are UTF-8 with "/" as the IMAP hierarchy separator (the engine
 * converts modified UTF-7 for IMAP4rev1 clients). On disk each "/" becomes "."
 * (Maildir++), and every hierarchy component is written in modified UTF-7
 * (RFC 3501 5.1.3, what Courier/Dovecot Maildir++ folders use): printable ASCII
 * stays as is, "&" is "&-", non-ASCII is "&<base64 of UTF-16BE>-", and a "."
 * inside a component, which would otherwise read as a separator, is encoded
 * the same way as a non-ASCII character: "&AC4-". So "Lists/a.b" is
 * ".Lists.a&AC4-b" and "Entwürfe" is ".Entw&APw-rfe". "INBOX" (any case) is the
 * root; "INBOX/x" is the folder ".INBOX.x". Names are refused (MBOX_E_CANNOT)
 * when empty, longer than MBOX_NAME_MAX bytes or MBOX_DEPTH_MAX levels, with
 * an empty component (leading/trailing/double "/"), a component "." or "..",
 * control characters, "%" or "*" (LIST wildcards), or invalid UTF-8; and by
 * the mstore_* calls when the folder name would exceed 255 bytes (one path
 * component holds the whole hierarchy).
 *
 * Messages: identity is the Maildir base name (before the first ',' or ':'),
 * exactly as POP3 (maildrop.h) sees it. Files the index knows live in cur/
 * with ":2,<info>"; standard flags are mirrored there in ASCII order
 * (D=\Draft F=\Flagged R=\Answered S=\Seen T=\Deleted; other letters such as
 * P are kept). Keywords live only in the index. The index also caches, per
 * message, the ENVELOPE, BODY and BODYSTRUCTURE strings and the serialised
 * part tree (mime_message_serialize), so FETCH ALL/FAST/FULL, ENVELOPE,
 * BODYSTRUCTURE, RFC822.SIZE and SELECT never reparse; BODY[section] reads
 * the blob plus pread() on the fd from mbox_msg_open().
 *
 * UIDs: per mailbox, strictly ascending, never reused within a UIDVALIDITY
 * (uidnext is stored in the index and only grows). UIDVALIDITY changes only
 * when a mailbox is created again under a name (a fresh value greater than
 * any the account handed out before), or when the index lost the mailbox.
 * MODSEQ: each mailbox has highestmodseq; every append, flag change and
 * expunge gets the next value (RFC 7162 semantics, usable for CONDSTORE).
 *
 * Sync (the recovery path, design 2.3): adopting files that appeared in new/
 * or cur/ without a row (SMTP delivery, other tools, or a crash between a
 * rename and the index commit) with new UIDs in delivery order, moving them
 * from new/ to cur/, parsing each once; dropping rows whose file vanished
 * (recorded as expunged); taking flags from a file name that another program
 * changed. A sync skips the directory scan when the mtimes of new/ and cur/
 * equal those recorded by the last full scan, and a full scan records them
 * only when they are at least 2 s old (so a change in the same clock tick is
 * never missed). SELECT of an up-to-date 100,000-message mailbox is then two
 * stat() calls plus one indexed query for the UID list.
 *
 * \Recent: a per-mailbox marker "recent up to uid". A read-write session that
 * opens or syncs claims every UID above the marker as its recent messages
 * and raises the marker, so exactly one session sees a message as recent.
 * Read-only (EXAMINE) sessions never claim. STATUS RECENT counts UIDs above
 * the marker.
 *
 * Crash safety: every operation orders its steps so that a kill at any point
 * leaves a state the next sync turns consistent: files are renamed/linked
 * into place before the index commit (a file without a row is adopted),
 * removed before the commit (a row without a file is dropped, never a file
 * resurrected), and all in BEGIN IMMEDIATE transactions so concurrent
 * sessions (threads with their own mstore, or processes) allocate UIDs and
 * modseqs consistently. A MOVE interrupted by a crash leaves the message in
 * the source, the destination, or both, never neither.
 *
 * Threads: a struct mstore (one SQLite connection) and its mboxes are used
 * by one thread at a time; give each IMAP session its own mstore_open().
 *
 * What the IMAP engine calls when:
 *   after LOGIN      mstore_open(account root) (creates a new account's
 *                    mailboxes); mstore_close at LOGOUT.
 *   LIST/LSUB        mstore_list, then match the patterns (and convert names
 *                    to modified UTF-7 for rev1 clients); STATUS items of
 *                    LIST-STATUS via mstore_status.
 *   CREATE/DELETE/RENAME/SUBSCRIBE/UNSUBSCRIBE/STATUS  the mstore_* calls.
 *   SELECT/EXAMINE   mbox_open; copy mbox_uids() into the sequence map;
 *                    EXISTS = count, RECENT = mbox_is_recent() count,
 *                    UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ accessors, FLAGS and
 *                    PERMANENTFLAGS from mbox_keywords, [UNSEEN] from
 *                    mbox_first_unseen. mbox_close on CLOSE/UNSELECT/reselect.
 *   FETCH            mbox_meta / mbox_meta_range (flags, sizes, dates, cached
 *                    ENVELOPE/BODY/BODYSTRUCTURE, the part tree) and
 *                    mbox_msg_open for body sections; EXPUNGED means answer
 *                    per RFC 2180 4.1.
 *   STORE            mbox_store; then send FETCH for the UIDs (unless
 *                    .SILENT) from mbox_meta.
 *   EXPUNGE/UID EXPUNGE/CLOSE  mbox_expunge (CLOSE sends nothing).
 *   COPY/MOVE        mbox_copy (COPYUID from its arrays; for MOVE send
 *                    EXPUNGE for the source UIDs).
 *   APPEND           mstore_append_begin, mbox_append_write per literal
 *                    chunk, mbox_append_finish per message and
 *                    mbox_append_commit_all at the end of the command
 *                    (APPENDUID), or _abort.
 *   NOOP/CHECK/IDLE polling and the end of every command where untagged
 *   EXPUNGE may be sent: mbox_sync, then EXPUNGE (for UIDs still in the map,
 *   highest sequence number first or adjusting as you go), EXISTS/RECENT for
 *   `added`, FETCH FLAGS for `changed`. During FETCH/STORE/SEARCH either do
 *   not sync or keep its expunges until it is allowed. NONEXISTENT from
 *   mbox_sync means the selected mailbox was deleted or renamed (by another
 *   session or process): BYE.
 */
#ifndef TERN_STORE_MAILBOX_H
#define TERN_STORE_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define MBOX_INDEX_NAME "tern-index.db"
#define MBOX_NAME_MAX 512   /* bytes of UTF-8 */
#define MBOX_DEPTH_MAX 32   /* hierarchy levels */
#define MBOX_KEYWORD_MAX 64 /* bytes per keyword */
#define MBOX_KEYWORDS_MAX 64 /* keywords per message */
#define MBOX_SEP '/'

/* Client-safe outcome; msg is for the log only. */
enum mbox_code {
	MBOX_E_OK = 0,
	MBOX_E_NONEXISTENT,   /* [NONEXISTENT] / [TRYCREATE] for APPEND, COPY, MOVE */
	MBOX_E_ALREADYEXISTS, /* [ALREADYEXISTS] */
	MBOX_E_CANNOT,        /* [CANNOT]: bad name, INBOX rules, \Noselect... */
	MBOX_E_HASCHILDREN,   /* DELETE of a \Noselect name with inferiors: NO */
	MBOX_E_LIMIT,         /* [LIMIT]: too many keywords... */
	MBOX_E_EXPUNGED,      /* the message is gone (RFC 2180 4.1) */
	MBOX_E_SERVERBUG,     /* [SERVERBUG]: I/O or database failure (logged) */
};
struct mbox_err {
	enum mbox_code code;
	char msg[256];
};

/* Stored (permanent) system flags. \Recent is session state (mbox_is_recent). */
enum mbox_flag {
	MBOX_SEEN = 1 << 0,
	MBOX_ANSWERED = 1 << 1,
	MBOX_FLAGGED = 1 << 2,
	MBOX_DELETED = 1 << 3,
	MBOX_DRAFT = 1 << 4,
};
#define MBOX_FLAGS_ALL 0x1fu

/* RFC 6154 special use. */
enum mbox_special {
	MBOX_SPECIAL_NONE = 0,
	MBOX_SPECIAL_DRAFTS,
	MBOX_SPECIAL_SENT,
	MBOX_SPECIAL_TRASH,
	MBOX_SPECIAL_JUNK,
	MBOX_SPECIAL_ARCHIVE,
};
/* "\Drafts"... or NULL for NONE. */
const char *mbox_special_name(enum mbox_special sp);

/* ---- Account ------------------------------------------------------------- */

struct mstore;

/* Opens (creating if needed: Maildir, index, INBOX and the special-use
 * mailboxes Drafts, Sent, Trash, Junk, Archive, all subscribed) the account
 * at root. Reconciles the mailbox list with the folders on disk. 0 or -1. */
int mstore_open(const char *root, struct mstore **s_r, struct mbox_err *err) ATTR_WARN_UNUSED;
void mstore_close(struct mstore **s);
/* Closes the SQLite connection (about 100 KB per session) while the session
 * is idle, e.g. in IDLE; the next call on s or its mboxes reopens it. Not
 * inside a call. Combine with mbox_poll for cheap IDLE polling. */
void mstore_suspend(struct mstore *s);

enum mbox_attr {
	MBOX_ATTR_NOSELECT = 1 << 0,      /* a parent that is not a mailbox */
	MBOX_ATTR_HASCHILDREN = 1 << 1,
	MBOX_ATTR_HASNOCHILDREN = 1 << 2,
	MBOX_ATTR_SUBSCRIBED = 1 << 3,
	MBOX_ATTR_NONEXISTENT = 1 << 4,   /* subscribed only (LIST-EXTENDED) */
};
struct mbox_info {
	char *name; /* UTF-8, "/" separated */
	unsigned attrs;
	enum mbox_special special;
};
/* Every mailbox, every implied parent (\Noselect) and every subscription
 * without a mailbox (\NonExistent), sorted by name (INBOX first). The engine
 * matches LIST/LSUB patterns itself. Free with mbox_info_free. */
int mstore_list(struct mstore *s, struct mbox_info **v_r, size_t *n_r,
		struct mbox_err *err) ATTR_WARN_UNUSED;
void mbox_info_free(struct mbox_info *v, size_t n);

/* Canonical form of a client name (INBOX case folded), malloc'd, or NULL if
 * the name is refused (see the header comment). */
char *mbox_name_canon(const char *name, size_t len);
/* The on-disk folder for a canonical name ("" for INBOX, else ".a.b"); and
 * back (NULL if dir is not one we could have written). malloc'd. */
char *mbox_name_to_dir(const char *name);
char *mbox_dir_to_name(const char *dir);

/* CREATE (RFC 9051 6.3.4): superiors are created as needed; ALREADYEXISTS if
 * the name is a mailbox (a \Noselect parent becomes selectable). */
int mstore_create(struct mstore *s, const char *name, enum mbox_special sp,
		  struct mbox_err *err) ATTR_WARN_UNUSED;
/* DELETE (RFC 9051 6.3.5): INBOX -> CANNOT; a mailbox with inferiors loses
 * its messages and becomes \Noselect; a \Noselect name with inferiors ->
 * HASCHILDREN. Subscriptions are kept. */
int mstore_delete(struct mstore *s, const char *name, struct mbox_err *err) ATTR_WARN_UNUSED;
/* RENAME (RFC 9051 6.3.6): inferiors move too; UIDVALIDITY and UIDs are
 * kept. Renaming INBOX moves its messages into a new mailbox `to` and
 * leaves INBOX empty. Superiors of `to` are created. */
int mstore_rename(struct mstore *s, const char *from, const char *to,
		  struct mbox_err *err) ATTR_WARN_UNUSED;
int mstore_subscribe(struct mstore *s, const char *name, bool on,
		     struct mbox_err *err) ATTR_WARN_UNUSED;

enum mbox_status_item {
	MBOX_ST_MESSAGES = 1 << 0,
	MBOX_ST_UIDNEXT = 1 << 1,
	MBOX_ST_UIDVALIDITY = 1 << 2,
	MBOX_ST_UNSEEN = 1 << 3,
	MBOX_ST_DELETED = 1 << 4,
	MBOX_ST_SIZE = 1 << 5,
	MBOX_ST_RECENT = 1 << 6,
	MBOX_ST_HIGHESTMODSEQ = 1 << 7,
};
struct mbox_status {
	uint32_t messages, uidnext, uidvalidity, unseen, deleted, recent;
	uint64_t size; /* sum of wire sizes (RFC 8438) */
	uint64_t highestmodseq;
};
/* STATUS: syncs the mailbox with the disk (without claiming \Recent), then
 * fills every field (items is a hint only). */
int mstore_status(struct mstore *s, const char *name, unsigned items, struct mbox_status *r,
		  struct mbox_err *err) ATTR_WARN_UNUSED;

/* ---- APPEND (no selected mailbox needed) ---------------------------------- */

struct mbox_append;
/* Starts writing a message into mailbox name (checked at begin and again at
 * commit: NONEXISTENT means answer [TRYCREATE]). */
int mstore_append_begin(struct mstore *s, const char *name, struct mbox_append **a_r,
			struct mbox_err *err) ATTR_WARN_UNUSED;
/* Message bytes as the client sent them (CRLF); stored with LF line ends
 * (a CR directly before LF is dropped, other CRs are kept). */
int mbox_append_write(struct mbox_append *a, const void *p, size_t n,
		      struct mbox_err *err) ATTR_WARN_UNUSED;
/* Makes the message visible: fsync, rename tmp/ -> cur/ with ":2,<flags>",
 * index row. internaldate is seconds since the epoch (0 = now) and tz_min the
 * zone east of UTC in minutes. Returns APPENDUID data. Frees *a either way. */
int mbox_append_commit(struct mbox_append **a, unsigned flags, const char *const *keywords,
		       size_t n_keywords, int64_t internaldate, int tz_min,
		       uint32_t *uidvalidity_r, uint32_t *uid_r, struct mbox_err *err) ATTR_WARN_UNUSED;
void mbox_append_abort(struct mbox_append **a);
/* MULTIAPPEND (RFC 3502: all or none) in two steps. finish ends one
 * message's data and makes it durable in tmp/ (fsync) with its flags,
 * keywords and INTERNALDATE, still invisible; on failure *a stays valid
 * (abort it). commit_all makes the finished messages v[0..n), all for the
 * same mailbox, visible in one index transaction, in order: uids_r[i] (an
 * array of n) is v[i]'s UID. All or none; frees every v[i] either way.
 * mbox_append_commit is finish + commit_all of one message. */
int mbox_append_finish(struct mbox_append *a, unsigned flags, const char *const *keywords,
		       size_t n_keywords, int64_t internaldate, int tz_min,
		       struct mbox_err *err) ATTR_WARN_UNUSED;
int mbox_append_commit_all(struct mbox_append **v, size_t n, uint32_t *uidvalidity_r,
			   uint32_t *uids_r, struct mbox_err *err) ATTR_WARN_UNUSED;

/* ---- Selected mailbox ------------------------------------------------------ */

struct mbox;

/* SELECT (readonly false) / EXAMINE (true). Syncs with the disk first; a
 * read-write open claims \Recent. mbox_uids() is then the session's view. */
int mbox_open(struct mstore *s, const char *name, bool readonly, struct mbox **m_r,
	      struct mbox_err *err) ATTR_WARN_UNUSED;
void mbox_close(struct mbox **m);

const char *mbox_name(const struct mbox *m);
/* The mailbox's row in the index: kept across RENAME (even away and back),
 * new when a mailbox is deleted and created again. Sessions with the same
 * account and id have the same mailbox open whatever name each opened it
 * under (for mbox_prune_expunged's floor). */
int64_t mbox_id(const struct mbox *m);
bool mbox_readonly(const struct mbox *m);
uint32_t mbox_uidvalidity(const struct mbox *m);
/* Values as of the last open/sync. */
uint32_t mbox_uidnext(const struct mbox *m);
uint64_t mbox_highestmodseq(const struct mbox *m);
enum mbox_special mbox_special_use(const struct mbox *m);
/* The UIDs (ascending) this session knew after open: valid until the next
 * mbox_sync. The engine copies them into its sequence map. */
const uint32_t *mbox_uids(const struct mbox *m, size_t *n_r);
/* Whether uid is \Recent in this session; and how many of the session's
 * current messages are (the engine subtracts its expunged ones itself). */
bool mbox_is_recent(const struct mbox *m, uint32_t uid);
/* Every keyword ever set in this mailbox (for FLAGS / PERMANENTFLAGS),
 * malloc'd array of malloc'd strings. */
int mbox_keywords(struct mbox *m, char ***kw_r, size_t *n_r, struct mbox_err *err) ATTR_WARN_UNUSED;
void mbox_strv_free(char **v, size_t n);
/* UID of the first message without \Seen, 0 if none (SELECT's [UNSEEN n]
 * for IMAP4rev1; the engine maps it to a sequence number). */
int mbox_first_unseen(struct mbox *m, uint32_t *uid_r, struct mbox_err *err) ATTR_WARN_UNUSED;

struct mbox_flag_change {
	uint32_t uid;
	unsigned flags;
	char *keywords; /* space separated, "" if none */
	uint64_t modseq;
};
struct mbox_changes {
	uint32_t *added; /* new UIDs, ascending (send EXISTS, RECENT) */
	size_t n_added;
	uint32_t *expunged; /* UIDs of messages this session knew, now gone */
	size_t n_expunged;
	struct mbox_flag_change *changed; /* known messages whose flags changed */
	size_t n_changed;
	uint32_t n_recent_added; /* how many of `added` are \Recent here */
};
enum mbox_sync_flags {
	MBOX_SYNC_FULL = 1 << 0, /* scan the directories even if mtimes match */
};
/* NOOP/IDLE polling/CHECK and after every own change: brings the index up to
 * date with the disk and returns what changed since this session's previous
 * sync (or open). Changes made by this session itself are reported too
 * (expunged UIDs the engine already removed from its map must be ignored;
 * flag changes it already sent may be sent again, RFC 9051 7.5.2 allows it).
 * The engine must call it only where untagged EXPUNGE is allowed if it will
 * send the expunges at once (RFC 9051 7.5.1), or hold them until then. */
int mbox_sync(struct mbox *m, unsigned flags, struct mbox_changes *ch,
	      struct mbox_err *err) ATTR_WARN_UNUSED;
void mbox_changes_free(struct mbox_changes *ch);
/* CONDSTORE/QRESYNC (RFC 7162): expunged UIDs and flag changes with a modseq
 * above `since`, among the UIDs this session knows; `added` stays empty and
 * the session's sync state is not touched. Expunges are remembered until
 * mbox_prune_expunged drops them (exact above the pruning floor). */
int mbox_changes_since(struct mbox *m, uint64_t since, struct mbox_changes *ch,
		       struct mbox_err *err) ATTR_WARN_UNUSED;
/* The modseq up to which this session has seen changes: its next mbox_sync
 * needs the expunge records above it. */
uint64_t mbox_seen_modseq(const struct mbox *m);
/* Deletes this mailbox's expunge records with modseq <= floor: pass the
 * smallest mbox_seen_modseq of every session that has the mailbox open (by
 * mbox_id, not name: a session keeps its view across a rename and back; in
 * any thread or process), computed while no mbox_open of it is in flight.
 * See mailbox.c for why that is safe. */
int mbox_prune_expunged(struct mbox *m, uint64_t floor, struct mbox_err *err) ATTR_WARN_UNUSED;
/* IDLE polling without SQLite: false if neither the mailbox directories nor
 * the index changed since the last mbox_sync/mbox_open (four stat() calls).
 * True means "maybe": call mbox_sync. Within 2 s of a change it always says
 * true, so a change in the same clock tick is never missed. */
bool mbox_poll(struct mbox *m);
/* mbox_poll for one process whose sessions tell each other about index
 * changes (daemon/role_imap.c's registry): only files added, removed or
 * renamed in new/ and cur/ by other programs count, so a session's own
 * mstore_suspend (which touches the index files) does not wake it. */
bool mbox_poll_files(struct mbox *m);

/* Message metadata. `want` selects the cached blobs to load. */
enum mbox_want {
	MBOX_W_ENVELOPE = 1 << 0,
	MBOX_W_BODY = 1 << 1,
	MBOX_W_BODYSTRUCTURE = 1 << 2,
	MBOX_W_MIME = 1 << 3, /* the serialised part tree (mime_message_deserialize) */
};
struct mbox_meta {
	uint32_t uid;
	unsigned flags;
	char *keywords; /* space separated, "" if none */
	int64_t internaldate;
	int tz_min;
	uint64_t size;      /* physical (LF) bytes of the file */
	uint64_t wire_size; /* RFC822.SIZE */
	uint64_t modseq;
	char *base;         /* Maildir identity (same as POP3's) */
	/* Cached strings (NUL-terminated, malloc'd), NULL unless wanted. */
	char *envelope, *body, *bodystructure;
	void *mime;
	size_t mime_len;
};
/* One message: 0, or -1 with MBOX_E_EXPUNGED if there is no such UID. */
int mbox_meta(struct mbox *m, uint32_t uid, unsigned want, struct mbox_meta *r,
	      struct mbox_err *err) ATTR_WARN_UNUSED;
void mbox_meta_free(struct mbox_meta *r);
/* Every message with lo <= uid <= hi, ascending, in one query (FETCH 1:*).
 * cb returns 0 to go on, non-zero to stop. meta is freed after cb returns. */
typedef int mbox_meta_fn(const struct mbox_meta *meta, void *ctx);
int mbox_meta_range(struct mbox *m, uint32_t lo, uint32_t hi, unsigned want, mbox_meta_fn *cb,
		    void *ctx, struct mbox_err *err) ATTR_WARN_UNUSED;
/* Read-only fd (O_CLOEXEC) on the message file (LF line ends; wire form via
 * struct mime_wire). EXPUNGED if the file is gone. */
int mbox_msg_open(struct mbox *m, uint32_t uid, int *fd_r, struct mbox_err *err) ATTR_WARN_UNUSED;

/* STORE (RFC 9051 6.4.6, RFC 7162 3.1.3). op: replace, add or remove flags
 * and keywords. uids ascending; UIDs that no longer exist are skipped.
 * unchanged_since 0 = no condition; otherwise messages whose modseq is
 * greater are left alone and their UIDs returned in *failed_r (MODIFIED,
 * malloc'd, may be NULL). Fails read-only mailboxes with CANNOT. */
enum mbox_flag_op { MBOX_OP_REPLACE, MBOX_OP_ADD, MBOX_OP_REMOVE };
int mbox_store(struct mbox *m, const uint32_t *uids, size_t n, enum mbox_flag_op op,
	       unsigned flags, const char *const *keywords, size_t n_keywords,
	       uint64_t unchanged_since, uint32_t **failed_r, size_t *n_failed_r,
	       struct mbox_err *err) ATTR_WARN_UNUSED;
/* EXPUNGE (uids NULL: every \Deleted message) / UID EXPUNGE (only those of
 * uids that are \Deleted, RFC 4315 2.1). *expunged_r (may be NULL) gets the
 * removed UIDs, ascending, malloc'd. */
int mbox_expunge(struct mbox *m, const uint32_t *uids, size_t n, uint32_t **expunged_r,
		 size_t *n_expunged_r, struct mbox_err *err) ATTR_WARN_UNUSED;
/* COPY / MOVE (RFC 4315 COPYUID, RFC 6851) of the messages uids (ascending)
 * into mailbox dest (NONEXISTENT -> [TRYCREATE]). Flags, keywords and
 * INTERNALDATE are kept; nothing is reparsed. src_r[i] -> dst_r[i] are the
 * COPYUID sets (malloc'd), *uidvalidity_r the destination's. A move removes
 * the sources in the same index transaction (RFC 6851 3.3). */
int mbox_copy(struct mbox *m, const uint32_t *uids, size_t n, const char *dest, bool move,
	      uint32_t *uidvalidity_r, uint32_t **src_r, uint32_t **dst_r, size_t *n_r,
	      struct mbox_err *err) ATTR_WARN_UNUSED;

/* ---- Tests ---------------------------------------------------------------- */

/* Crash injection: the Nth crash point passed from now on (1-based) raises
 * SIGKILL; 0 turns it off. Crash points sit between every file-system step
 * and the index commit of append, copy, move, expunge, store and sync. */
void mbox_test_crash_at(unsigned n);
/* Crash points passed since the last mbox_test_crash_at(). */
unsigned mbox_test_crash_points(void);
/* Skip fsync/fdatasync and run SQLite with synchronous=OFF for stores
 * opened afterwards: enough for tests that kill processes (the page cache
 * survives them) and much faster on a busy disk. Never in the server. */
void mbox_test_nosync(bool on);
/* mstore_open sweeps files older than this (ctime) from the folders' tmp/;
 * 0 restores the Maildir 36 hours. A negative age sweeps everything. */
void mbox_test_tmp_max_age(int64_t secs);

#endif
