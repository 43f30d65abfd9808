/* SPDX-License-Identifier: MIT */
/* I/O-free IMAP server engine (RFC 3501 IMAP4rev1 and RFC 9051 IMAP4rev2 in
 * one session: rev1 until the client sends ENABLE IMAP4rev2). Same contract
 * as the SMTP and POP3 engines (base/proto.h): fed bytes, it appends
 * responses to its output buffer and says through want() what the
 * connection should do next. Commands are read by imap_parser.h; every
 * storage decision goes through struct imap_server_ops, so proto/ never
 * includes store/ (the daemon maps the ops onto mstore_* / mbox_*).
 *
 * States (RFC 9051 3): NOT AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT.
 *
 * Verdicts: an op returns IMAP_OK (the engine sends its default success),
 * IMAP_NO (the engine sends the tagged NO set with imap_server_reply(), or
 * a default) or IMAP_PENDING (the app fills the result it was handed, calls
 * imap_server_resume() later and then kicks the connection). While a
 * verdict is pending the engine consumes no input; pipelined commands wait.
 * Result structures (struct imap_select_info...) live in the engine and
 * stay valid until resume; the arrays the app puts in them are malloc'd
 * and become the engine's (it free()s them), or are copied where noted.
 *
 * Mailbox names reach the app as canonical UTF-8 with "/" as separator
 * ("INBOX" case-folded); the engine converts modified UTF-7 for rev1
 * clients (RFC 3501 5.1.3) and takes UTF-8 once IMAP4rev2 or UTF8=ACCEPT
 * is enabled (RFC 9051 5.1, RFC 6855 3). Names with an empty, "." or ".."
 * component, a leading "/", controls, or that do not convert are refused
 * with NO [CANNOT] before any op is called (the store checks again).
 *
 * Untagged updates (RFC 9051 7.5.1, RFC 3501 5.5): the engine keeps the
 * session's sequence number <-> UID map. It calls ops->sync() at the end of
 * NOOP, CHECK, IDLE start and every command without ICF_USES_SEQS while a
 * mailbox is selected and the app said something changed
 * (imap_server_mailbox_changed()), and at once during IDLE. sync reports
 * new UIDs (EXISTS, RECENT in rev1), expunged UIDs (EXPUNGE, highest first)
 * and flag changes (FETCH (UID n FLAGS (...))). A sync that finds the
 * mailbox gone ends the session (imap_server_mailbox_gone()).
 *
 * FETCH, STORE, SEARCH and their UID forms (cmd_fetch.c, cmd_store.c,
 * cmd_search.c over imap_fetch.h / imap_search.h / imap_store.h) read
 * messages through ops->msg_get / msg_put and change flags through
 * ops->store; these three ops are synchronous (no PENDING), but STORE,
 * SEARCH and a FETCH of bodies or of many messages run their message loop
 * through ops->offload (on a job thread in the daemon). FETCH streams:
 * it renders message after message into the output and, once the output
 * passes IMAP_FETCH_HIWAT, want() says PENDING until the connection has
 * drained it; imap_server_output() then renders more (the connection calls
 * it whenever it looks at the output, as POP3 does for RETR). A non-PEEK
 * body item on a read-write mailbox sets \Seen first (RFC 9051 6.4.5) and
 * the answer then carries FLAGS. ESEARCH and BINARY are advertised (set
 * settings.no_fetch_caps to hide them). CONDSTORE and SEARCHRES are not
 * offered, so "$" is always the empty set.
 *
 * Limits: the parser's line/literal/command limits (pre-authentication the
 * literal limit is 8 KiB); protocol errors (BAD) are counted and the
 * session closes with BYE at max_errors; failed logins at
 * max_auth_failures. */
#ifndef TERN_PROTO_IMAP_SERVER_H
#define TERN_PROTO_IMAP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/proto.h"

struct buf;
struct imap_msg;
struct imap_server;
struct scram_creds;

enum imap_verdict {
	IMAP_OK,      /* go on */
	IMAP_NO,      /* tagged NO: set with imap_server_reply(), else a default */
	IMAP_PENDING, /* imap_server_resume() will follow */
};

/* Stored system flags (same values as store/mailbox.h's enum mbox_flag). */
enum imap_flag {
	IMAP_F_SEEN = 1 << 0,
	IMAP_F_ANSWERED = 1 << 1,
	IMAP_F_FLAGGED = 1 << 2,
	IMAP_F_DELETED = 1 << 3,
	IMAP_F_DRAFT = 1 << 4,
};

/* LIST attributes (same values as enum mbox_attr). */
enum imap_mbox_attr {
	IMAP_MBA_NOSELECT = 1 << 0,
	IMAP_MBA_HASCHILDREN = 1 << 1,
	IMAP_MBA_HASNOCHILDREN = 1 << 2,
	IMAP_MBA_SUBSCRIBED = 1 << 3,
	IMAP_MBA_NONEXISTENT = 1 << 4,
};

/* RFC 6154 (same values as enum mbox_special). */
enum imap_special {
	IMAP_SPECIAL_NONE = 0,
	IMAP_SPECIAL_DRAFTS,
	IMAP_SPECIAL_SENT,
	IMAP_SPECIAL_TRASH,
	IMAP_SPECIAL_JUNK,
	IMAP_SPECIAL_ARCHIVE,
};

/* SELECT/EXAMINE result. uids (ascending) and keywords are copied by the
 * engine when the verdict arrives; they must stay valid until then. */
struct imap_select_info {
	uint32_t uidvalidity, uidnext;
	const uint32_t *uids;
	size_t n_uids;
	uint32_t n_recent;          /* of uids, \Recent in this session */
	uint32_t first_unseen_uid;  /* 0 if none ([UNSEEN] for rev1) */
	const char *const *keywords; /* every keyword of the mailbox */
	size_t n_keywords;
	bool readonly;              /* the app may force READ-ONLY */
	unsigned attrs;             /* enum imap_mbox_attr, for rev2's LIST reply */
	enum imap_special special;
};

/* STATUS (RFC 9051 6.3.11; SIZE: RFC 8438). */
struct imap_status {
	uint32_t messages, uidnext, uidvalidity, unseen, deleted, recent;
	uint64_t size;
};

/* One mailbox for LIST/LSUB, passed to imap_server_list_add(). */
struct imap_list_entry {
	const char *name; /* UTF-8, "/" separated */
	unsigned attrs;   /* enum imap_mbox_attr */
	enum imap_special special;
};

/* What changed in the selected mailbox since the last sync/select. Arrays
 * are malloc'd by the app and freed by the engine (free()). */
struct imap_flag_change {
	uint32_t uid;
	unsigned flags;  /* enum imap_flag */
	char *keywords;  /* space separated, "" if none; malloc'd */
};
struct imap_changes {
	uint32_t *added; /* new UIDs, ascending */
	size_t n_added;
	uint32_t n_recent_added;
	uint32_t *expunged; /* UIDs gone (unknown ones are ignored) */
	size_t n_expunged;
	struct imap_flag_change *changed;
	size_t n_changed;
};

/* COPY/MOVE result (RFC 4315 COPYUID): src[i] -> dst[i], malloc'd. */
struct imap_copy_result {
	uint32_t uidvalidity;
	uint32_t *src, *dst;
	size_t n;
};

/* EXPUNGE result: UIDs removed, ascending, malloc'd. */
struct imap_expunge_result {
	uint32_t *uids;
	size_t n;
};

/* APPEND of one message: what the client gave besides the data. */
struct imap_append_info {
	const char *mailbox;   /* canonical UTF-8 */
	uint64_t size;         /* literal size */
	unsigned index;        /* 0 for the first message of a MULTIAPPEND */
	unsigned flags;        /* enum imap_flag */
	const char *const *keywords;
	size_t n_keywords;
	int64_t internaldate;  /* 0: now */
	int tz_min;
	bool binary;           /* literal8 (RFC 3516) */
};
/* APPEND's result: the UIDs of its messages in order (malloc'd, the
 * engine frees them) for APPENDUID; uidvalidity 0 for no APPENDUID. */
struct imap_append_result {
	uint32_t uidvalidity;
	uint32_t *uids;
	size_t n;
};

struct imap_server_ops {
	/* LOGIN and AUTHENTICATE PLAIN/LOGIN (after the SASL exchange itself
	 * succeeded): check the password. NO without a reply: NO
	 * [AUTHENTICATIONFAILED]; set [UNAVAILABLE] for lookup failures. OK
	 * means the user is logged in and the account open. */
	enum imap_verdict (*login)(void *ctx, struct imap_server *s, const char *mech,
				   const char *user, const char *password);
	/* AUTHENTICATE SCRAM-SHA-256: the sasl_callbacks.scram_creds contract.
	 * NULL disables SCRAM-SHA-256. */
	bool (*scram_creds)(void *ctx, const char *user, struct scram_creds *c);
	/* Optional, as in pop3_server.h: before scram_creds, maybe PENDING. */
	enum imap_verdict (*scram_prepare)(void *ctx, struct imap_server *s, const char *user);
	/* Optional, as in pop3_server.h: an exchange the engine judged itself
	 * ended (SCRAM proof, or a failure). For ok, OK logs in (the app opens
	 * the account); for !ok the login fails whatever the verdict. */
	enum imap_verdict (*sasl_done)(void *ctx, struct imap_server *s, const char *mech,
				       const char *user, bool ok);

	/* Account. Names are canonical UTF-8. */
	enum imap_verdict (*create)(void *ctx, struct imap_server *s, const char *name,
				    enum imap_special special);
	enum imap_verdict (*delete_mbox)(void *ctx, struct imap_server *s, const char *name);
	enum imap_verdict (*rename)(void *ctx, struct imap_server *s, const char *from,
				    const char *to);
	enum imap_verdict (*subscribe)(void *ctx, struct imap_server *s, const char *name,
				       bool on);
	/* Every mailbox, implied parent and subscription (mstore_list), each
	 * passed to imap_server_list_add() before the verdict (or resume). */
	enum imap_verdict (*list)(void *ctx, struct imap_server *s);
	enum imap_verdict (*status)(void *ctx, struct imap_server *s, const char *name,
				    struct imap_status *r);

	/* SELECT (readonly false) / EXAMINE (true). unselect() closes it
	 * (CLOSE after its expunge, UNSELECT, reselect, logout, free); called
	 * once per OK select. */
	enum imap_verdict (*select)(void *ctx, struct imap_server *s, const char *name,
				    bool readonly, struct imap_select_info *r);
	void (*unselect)(void *ctx, struct imap_server *s);
	/* Changes since the last select/sync (mbox_sync). Optional. */
	enum imap_verdict (*sync)(void *ctx, struct imap_server *s, struct imap_changes *r);
	/* EXPUNGE (uids NULL: every \Deleted message), UID EXPUNGE, CLOSE. */
	enum imap_verdict (*expunge)(void *ctx, struct imap_server *s, const uint32_t *uids,
				     size_t n, struct imap_expunge_result *r);
	/* COPY/MOVE of uids (ascending) into dest. NO with [TRYCREATE] when dest
	 * does not exist. */
	enum imap_verdict (*copy)(void *ctx, struct imap_server *s, const uint32_t *uids, size_t n,
				  const char *dest, bool move, struct imap_copy_result *r);

	/* APPEND, all or nothing (RFC 3502 for MULTIAPPEND). Per message:
	 * begin (NO [TRYCREATE] if the mailbox does not exist; may be
	 * PENDING), write (synchronous; false stops the command with the reply
	 * set, default NO [SERVERBUG]), end (the data is complete: keep the
	 * message, still invisible; may be PENDING). Once the command line is
	 * complete: commit makes every message ended since the command began
	 * visible at once (may be PENDING). abort drops every message of the
	 * command (one failed, a later literal was refused, the session
	 * ended); it is called after any OK begin unless commit was. */
	enum imap_verdict (*append_begin)(void *ctx, struct imap_server *s,
					  const struct imap_append_info *info);
	bool (*append_write)(void *ctx, struct imap_server *s, const void *p, size_t n);
	enum imap_verdict (*append_end)(void *ctx, struct imap_server *s,
					const struct imap_append_info *info);
	enum imap_verdict (*append_commit)(void *ctx, struct imap_server *s, const char *mailbox,
					   struct imap_append_result *r);
	void (*append_abort)(void *ctx, struct imap_server *s);

	/* FETCH/SEARCH/STORE (synchronous). msg_get fills m for uid: flags,
	 * keywords, recent (this session's \Recent), dates, sizes, modseq and,
	 * per want (enum imap_fetch_want), the cached ENVELOPE/BODY/
	 * BODYSTRUCTURE strings, the serialised part tree and the read
	 * callback; the engine sets seq. Everything stays valid until msg_put.
	 * 0; -1 if the message is gone (FETCH leaves it out, RFC 2180 4.1.2);
	 * -2 on an error (the command ends NO [SERVERBUG]). */
	int (*msg_get)(void *ctx, struct imap_server *s, uint32_t uid, unsigned want,
		       struct imap_msg *m);
	void (*msg_put)(void *ctx, struct imap_server *s, struct imap_msg *m);
	/* STORE (and FETCH's implicit \Seen): op is an enum imap_store_op,
	 * flags enum imap_flag. UIDs that no longer exist are skipped.
	 * unchanged_since 0 = none; UIDs failing it go to *failed_r (malloc'd;
	 * failed_r may be NULL). IMAP_OK or IMAP_NO (reply set), never PENDING. */
	enum imap_verdict (*store)(void *ctx, struct imap_server *s, const uint32_t *uids, size_t n,
				   unsigned op, unsigned flags, const char *const *keywords,
				   size_t n_keywords, uint64_t unchanged_since, uint32_t **failed_r,
				   size_t *n_failed_r);

	/* Optional: run work(s) away from the caller (a job thread) and call
	 * imap_server_resume(s, IMAP_OK) back on the session's thread once it
	 * has returned; return PENDING. NULL, or IMAP_OK after calling work(s)
	 * itself, runs it inline. work is the slow part of STORE, SEARCH and
	 * FETCH (bodies, or many messages): it calls only msg_get/msg_put/store
	 * (whose imap_server_reply() it may trigger) and
	 * touches only the command's own state (never the output buffer);
	 * until the resume the engine makes no other op call. */
	enum imap_verdict (*offload)(void *ctx, struct imap_server *s,
				     void (*work)(struct imap_server *s));

	/* Optional: the client's ID parameters (RFC 2971), pairs of
	 * field/value (value may be NULL), for the log. */
	void (*client_id)(void *ctx, struct imap_server *s, const char *const *kv, size_t n);
	/* Optional: engine-level refusals worth a log line. */
	void (*log_refusal)(void *ctx, struct imap_server *s, const char *cmd, const char *text);
};

struct imap_server_settings {
	const char *hostname;
	const char *greeting;        /* after "* OK [CAPABILITY ...] ", default "Tern IMAP server ready" */
	const char *id_name;         /* ID "name", default "Tern" (no version: RFC 2971 7) */
	bool plaintext_auth;         /* LOGIN/AUTH PLAIN/LOGIN without TLS */
	bool starttls_offered;       /* a TLS context exists */
	bool tls_active;             /* implicit TLS (imaps) */
	bool literal_plus;           /* LITERAL+ instead of LITERAL- */
	bool no_fetch_caps;          /* hide ESEARCH and BINARY (FETCH/SEARCH not wired) */
	uint64_t append_limit;       /* APPENDLIMIT and max streamed literal; default 64 MiB */
	size_t max_line;             /* parser max_line, default 64 KiB */
	uint64_t max_literal;        /* buffered literal after login, default 64 KiB */
	uint64_t max_literal_preauth;/* before login, default 8 KiB */
	unsigned max_errors;         /* BADs before BYE, default 20 */
	unsigned max_auth_failures;  /* default 3 */
};

/* Strings in set must outlive the session. */
struct imap_server *imap_server_new(const struct imap_server_settings *set,
				    const struct imap_server_ops *ops, void *ctx);
/* Aborts an APPEND in flight and unselects. Not while a verdict is PENDING
 * on another thread. NULLs *s. */
void imap_server_free(struct imap_server **s);
/* Queue the greeting. */
void imap_server_start(struct imap_server *s);
size_t imap_server_feed(struct imap_server *s, const uint8_t *p, size_t n);
enum proto_want imap_server_want(const struct imap_server *s);
struct buf *imap_server_output(struct imap_server *s);

/* Tagged NO for a verdict (now or before resume). code is a response code
 * without brackets ("TRYCREATE", "NONEXISTENT", "OVERQUOTA"...) or NULL.
 * Controls in the text become spaces. */
void imap_server_reply(struct imap_server *s, const char *code, const char *fmt, ...)
	ATTR_FORMAT(3, 4);
/* Complete the PENDING verdict with IMAP_OK or IMAP_NO. */
void imap_server_resume(struct imap_server *s, enum imap_verdict v);
/* During ops->list (or before its resume). */
void imap_server_list_add(struct imap_server *s, const struct imap_list_entry *e);
/* The selected mailbox changed under the session (another session,
 * delivery): sync at the next allowed point, at once during IDLE. */
void imap_server_mailbox_changed(struct imap_server *s);
/* The selected mailbox no longer exists for this session (deleted or
 * renamed by another session or program; call it from ops->sync before
 * its NO). The engine then ends the session with "* BYE Selected mailbox
 * was deleted" and no tagged answer, as Dovecot does: a client cannot go
 * on with sequence numbers of a mailbox that is gone (RFC 9051 7.1.5). */
void imap_server_mailbox_gone(struct imap_server *s);
/* Queue "* OK [ALERT] text" (RFC 9051 7.1) with the next response. */
void imap_server_alert(struct imap_server *s, const char *text);

void imap_server_tls_started(struct imap_server *s);
/* Idle timeout: "* BYE" and close (RFC 9051 5.4). */
void imap_server_timeout(struct imap_server *s);
/* Shutdown: finish the command in flight (an IDLE ends), then BYE, close. */
void imap_server_shutdown(struct imap_server *s);
/* A struct proto_session_ops driving the engine (closed() frees it). */
extern const struct proto_session_ops imap_server_proto_ops;

/* Session facts. */
const char *imap_server_user(const struct imap_server *s);
bool imap_server_is_tls(const struct imap_server *s);
bool imap_server_rev2(const struct imap_server *s);
/* The selected mailbox (canonical UTF-8) or NULL. */
const char *imap_server_selected(const struct imap_server *s);
/* Sequence map: messages in view; seq (1-based) -> UID (0 if out of
 * range); UID -> seq (0 if not in view). */
uint32_t imap_server_exists(const struct imap_server *s);
uint32_t imap_server_seq_to_uid(const struct imap_server *s, uint32_t seq);
uint32_t imap_server_uid_to_seq(const struct imap_server *s, uint32_t uid);

/* Exposed for tests and the fuzzer: LIST pattern match (RFC 9051 6.3.9:
 * "*" matches anything, "%" anything but the separator "/"). */
bool imap_list_match(const char *pat, size_t pn, const char *name, size_t nn);
/* Client mailbox name -> canonical UTF-8 (malloc'd), or NULL if refused.
 * utf8: the session takes UTF-8 names; else modified UTF-7. */
char *imap_mailbox_from_wire(const char *p, size_t n, bool utf8);
/* RFC 9051 9 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d"). */
int imap_parse_datetime(const char *p, size_t n, int64_t *t_r, int *tz_r) ATTR_WARN_UNUSED;

#endif
