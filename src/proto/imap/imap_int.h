/* SPDX-License-Identifier: MIT */
/* Private to src/proto/imap/: the IMAP engine's session state and the calls
 * shared by imap_server.c (framing, verdicts, untagged updates, session
 * events), imap_cmds.c (the command table and dispatch) and the cmd_*.c
 * handlers.
 *
 * Command lifecycle: dispatch checks state/UID/WRITES from the table, then
 * calls the handler with the parser's arguments (valid until the next feed,
 * and feed is not called while a verdict is pending). A handler ends the
 * command with imap_tagged() (OK/NO, after the untagged updates allowed at
 * that point) or imap_bad(); or it asks the app and passes the verdict to
 * imap_verdict() with the function that continues once it is known. */
#ifndef TERN_PROTO_IMAP_INT_H
#define TERN_PROTO_IMAP_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "proto/imap/imap_fetch.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_server.h"

#define IMAP_SASL_MAX_LINE (16 * 1024)
#define IMAP_DEF_MAX_ERRORS 20
#define IMAP_DEF_MAX_AUTH_FAILURES 3
#define IMAP_DEF_APPEND_LIMIT (64u << 20)
#define IMAP_PREAUTH_LITERAL 8192u
/* FETCH renders until the output holds this much, then waits for the
 * connection to drain it. */
#define IMAP_FETCH_HIWAT (128u * 1024)

enum imap_state {
	IS_NOAUTH,
	IS_AUTH,
	IS_SELECTED,
	IS_TLS_WAIT, /* after OK to STARTTLS: discard input, want STARTTLS */
	IS_LOGOUT,   /* final response queued: discard input, want CLOSE */
};

enum imap_cmd_flags {
	ICF_STATE_NOAUTH = 1 << 0,
	ICF_STATE_AUTH = 1 << 1,
	ICF_STATE_SELECTED = 1 << 2,
	ICF_STATE_ANY = ICF_STATE_NOAUTH | ICF_STATE_AUTH | ICF_STATE_SELECTED,
	ICF_USES_SEQS = 1 << 4,   /* sequence numbers in args: no EXPUNGE around it */
	ICF_BREAKS_SEQS = 1 << 5, /* may itself send EXPUNGE */
	ICF_WRITES = 1 << 6,      /* refused on an EXAMINEd mailbox */
	ICF_UID_VARIANT = 1 << 7, /* "UID <cmd>" accepted */
	ICF_SYNC = 1 << 8,        /* always ask the app for changes at its end */
};

typedef void imap_cmd_fn(struct imap_server *s, const struct imap_arg *args, size_t n);
typedef void imap_resume_fn(struct imap_server *s, enum imap_verdict v);

struct imap_cmd {
	const char *name;
	imap_cmd_fn *fn;
	unsigned flags;
};

struct imap_list_item {
	char *name;
	unsigned attrs;
	enum imap_special special;
};

struct imap_server {
	struct imap_server_settings set;
	const struct imap_server_ops *ops;
	void *ctx;
	struct imap_parser *parser;

	struct buf out;
	struct buf reply; /* NO text set by imap_server_reply(): "[CODE] text" */
	bool reply_set;
	struct buf tagged; /* the tagged line waiting for untagged updates */

	enum imap_state state;
	bool tls, rev2, utf8;
	bool shutdown_req;
	unsigned errors, auth_failures;
	char *user;

	/* The command in progress. */
	char *tag;
	const struct imap_cmd *cmd;
	bool cmd_uid;
	bool in_cmd;
	bool pending;
	imap_resume_fn *resume_fn;

	/* Results handed to the app (live across PENDING). */
	struct imap_select_info sel_res;
	struct imap_status st_res;
	struct imap_copy_result copy_res;
	struct imap_expunge_result exp_res;
	struct imap_changes ch_res;
	struct imap_append_result ap_res;
	struct imap_list_item *list;
	size_t n_list, cap_list;

	/* Command scratch kept across PENDING. */
	char *arg_name, *arg_name2;
	bool arg_flag;
	unsigned cmd_step;
	uint32_t *arg_uids;
	size_t n_arg_uids;
	void *cmd_state; /* LIST/STATUS state, freed by cmd_free */
	void (*cmd_free)(void *);

	/* Selected mailbox. */
	char *mbox;
	bool readonly;
	bool need_sync;
	uint32_t uidvalidity, uidnext;
	uint32_t *uids; /* the sequence map, ascending */
	size_t n_uids, cap_uids;
	bool closing; /* CLOSE: unselect after its expunge, send nothing */
	bool mbox_gone; /* sync found the mailbox deleted: BYE */

	/* IDLE */
	bool idle;
	bool idle_sync_running;

	/* STARTTLS/AUTHENTICATE */
	struct sasl *sasl;
	bool in_sasl, sasl_final, sasl_had_input;
	char *sasl_mech, *sasl_pass, *sasl_user, *sasl_claimed;
	struct buf sasl_in;
	char *login_user;
	bool login_denied;

	/* APPEND streaming */
	bool ap_active;      /* an APPEND command is being streamed */
	bool ap_open;        /* a begin said OK, no commit/abort yet */
	bool ap_failed;      /* reply queued, rest being discarded */
	bool ap_wait_accept; /* begin done for a sync literal: accept on OK */
	int ap_begun;        /* literal_index begun, -1 */
	struct imap_append_info ap_info;
	char *ap_mailbox;
	char **ap_kw;
	size_t ap_n_kw;
	size_t ap_n_msgs;    /* messages ended (append_end OK) */

	struct buf alert;

	/* FETCH streaming (cmd_fetch.c): the UIDs are arg_uids */
	bool fetch_active;  /* a FETCH is rendering; want() is PENDING */
	bool fetch_in_msg;  /* fetch_r/fetch_m hold a message */
	struct imap_fetch_plan *fetch_plan;
	size_t fetch_i;
	const char *fetch_err; /* NO text for the end, or NULL */
	struct imap_fetch_render fetch_r;
	struct imap_msg fetch_m;
	bool fetch_offload;     /* render batches through ops->offload */
	bool fetch_fatal;       /* a promised literal failed: close */
	struct buf fetch_buf;   /* an offloaded batch, appended at resume */
};

/* SEARCH/FETCH go through ops->offload above this many messages, or when
 * they read message files. */
#define IMAP_OFFLOAD_MIN_MSGS 256

/* imap_server.c */
void imap_untagged(struct imap_server *s, const char *fmt, ...) ATTR_FORMAT(2, 3);
/* End the command: queue "<tag> status [code] text" after the untagged
 * updates allowed now (sync). status "OK" or "NO". */
void imap_tagged(struct imap_server *s, const char *status, const char *code, const char *fmt,
		 ...) ATTR_FORMAT(4, 5);
/* End the command with NO: the app's reply if it set one, else this. */
void imap_no_app(struct imap_server *s, const char *code, const char *dflt);
/* BAD (counts towards max_errors). */
void imap_bad(struct imap_server *s, const char *fmt, ...) ATTR_FORMAT(2, 3);
void imap_verdict(struct imap_server *s, enum imap_verdict v, imap_resume_fn *fn);
void imap_logout(struct imap_server *s, const char *bye);
bool imap_plaintext_ok(const struct imap_server *s);
void imap_capability_list(const struct imap_server *s, struct buf *b);
void imap_auth_failed(struct imap_server *s);
void imap_login_ok(struct imap_server *s);
void imap_reset_parser_limits(struct imap_server *s);
/* Mailbox names on the wire (client form), for responses. */
void imap_write_mailbox(struct imap_server *s, struct buf *b, const char *utf8name);
/* Reads a mailbox astring argument as canonical UTF-8; NO [CANNOT] or BAD
 * queued and NULL returned if it is refused. */
char *imap_arg_mailbox(struct imap_server *s, const struct imap_arg *a);
void imap_deselect(struct imap_server *s);
void imap_map_set(struct imap_server *s, const uint32_t *uids, size_t n);
void imap_map_remove_uid(struct imap_server *s, uint32_t uid, bool send);
void imap_write_flags(struct buf *b, unsigned flags, const char *keywords);
/* Parses a sequence set argument into sorted UIDs in view. BAD and false
 * if bad. */
bool imap_arg_uids(struct imap_server *s, const struct imap_arg *a, bool uid,
		   uint32_t **uids_r, size_t *n_r);
void imap_idle_line(struct imap_server *s, const uint8_t *p, size_t n);

/* imap_cmds.c */
const struct imap_cmd *imap_cmd_find(const char *name);
void imap_cmd_dispatch(struct imap_server *s, const struct imap_parse_event *ev);
/* Exposed for the table test. */
const struct imap_cmd *imap_cmd_table(size_t *n_r);

/* Handlers (cmd_*.c). */
imap_cmd_fn imap_cmd_capability, imap_cmd_noop, imap_cmd_logout, imap_cmd_starttls,
	imap_cmd_authenticate, imap_cmd_login, imap_cmd_enable, imap_cmd_id, imap_cmd_select,
	imap_cmd_examine, imap_cmd_create, imap_cmd_delete, imap_cmd_rename, imap_cmd_subscribe,
	imap_cmd_unsubscribe, imap_cmd_list, imap_cmd_lsub, imap_cmd_namespace, imap_cmd_status,
	imap_cmd_append, imap_cmd_check, imap_cmd_close, imap_cmd_unselect, imap_cmd_expunge,
	imap_cmd_copy, imap_cmd_move, imap_cmd_idle, imap_cmd_fetch, imap_cmd_store,
	imap_cmd_search;

/* cmd_fetch.c: render more of a FETCH in flight (from output()); drop it
 * (logout, free). */
void imap_fetch_pump(struct imap_server *s);
void imap_fetch_cleanup(struct imap_server *s);

/* cmd_authenticate.c */
void imap_sasl_end(struct imap_server *s);
void imap_sasl_line(struct imap_server *s, const uint8_t *p, size_t n);
void imap_sasl_continue(struct imap_server *s, enum imap_verdict v);
void imap_login_verdict(struct imap_server *s, enum imap_verdict v);

/* cmd_append.c: parser events of a streamed APPEND. */
void imap_append_event(struct imap_server *s, const struct imap_parse_event *ev);
void imap_append_cleanup(struct imap_server *s);

/* cmd_status.c: "(MESSAGES 3 ...)" for STATUS and LIST-STATUS; items are
 * MBOX_ST-like bits (IMAP_SI_*). */
enum {
	IMAP_SI_MESSAGES = 1 << 0,
	IMAP_SI_UIDNEXT = 1 << 1,
	IMAP_SI_UIDVALIDITY = 1 << 2,
	IMAP_SI_UNSEEN = 1 << 3,
	IMAP_SI_DELETED = 1 << 4,
	IMAP_SI_SIZE = 1 << 5,
	IMAP_SI_RECENT = 1 << 6,
};
bool imap_status_items(const struct imap_arg *list, size_t n, unsigned *items_r);
void imap_status_write(struct buf *b, unsigned items, const struct imap_status *st);

#endif
