/* SPDX-License-Identifier: MIT */
/* The IMAP command reader: an incremental, I/O-free parser that turns the
 * client's bytes into one complete command at a time (RFC 9051 2.2.1, 4, 9;
 * RFC 3501 9): tag, command name ("UID FETCH" gives name "FETCH" with uid
 * set), and the arguments as a tree of typed tokens. Literals of every kind
 * are handled here: synchronising "{n}" (the engine decides whether to send
 * "+" or refuse), non-synchronising "{n+}" (RFC 7888 LITERAL+, or LITERAL-
 * with its 4096-octet bound, which IMAP4rev2 builds in: RFC 9051 4.3) and
 * literal8 "~{n}" (RFC 3516, RFC 4466).
 *
 * Usage (the engine's feed loop):
 *
 *   struct imap_parse_event ev;
 *   size_t used = imap_parser_feed(p, data, n, &ev);   // used <= n
 *   switch (ev.type) { ... }                            // see below
 *
 * feed() stops at the first event, so it is called again (with the bytes
 * not yet consumed) until it returns IMAP_PARSE_MORE, which always means
 * that all n bytes were consumed. Some events consume no bytes; calling
 * feed() with n == 0 is fine and delivers them. Everything an event points
 * to (tag, name, args, msg, data) stays valid until the next call of
 * imap_parser_feed() or imap_parser_free(), so a
 * command that goes PENDING keeps its arguments as long as the engine does
 * not feed more input (commands run one at a time, design.md 2.4).
 *
 * What the engine must do with each event:
 *
 *   IMAP_PARSE_MORE       nothing: read more from the client and feed again.
 *   IMAP_PARSE_COMMAND    run the command (tag, name, uid, args, n_args).
 *                         For a streamed APPEND this closes the command:
 *                         args are those after the last streamed literal
 *                         (normally none) and the engine commits.
 *   IMAP_PARSE_CONTINUATION
 *                         a synchronising literal of literal_size octets
 *                         was announced (literal8, streamed tell its kind;
 *                         args are the arguments before it). Either call
 *                         imap_parser_literal_accept() and queue "+ Ready"
 *                         (RFC 9051 7.5), or call imap_parser_literal_refuse()
 *                         and queue a tagged NO/BAD (e.g. "NO [TOOBIG]",
 *                         APPEND's "NO [TRYCREATE]", "BAD" for LOGIN under
 *                         LOGINDISABLED): the client then drops the command
 *                         and the reader expects a new one. Feeding before
 *                         deciding is a bug (ASSERT). Literals over the
 *                         settings' limits never get here: they give
 *                         IMAP_PARSE_ERROR (TOOBIG) instead, before any data.
 *   IMAP_PARSE_LITERAL_BEGIN
 *                         (APPEND streaming only) a message literal of
 *                         literal_size octets starts; args are the
 *                         arguments since the command start or the previous
 *                         streamed literal (first message: mailbox, flags?,
 *                         date?; later messages of MULTIAPPEND, RFC 3502:
 *                         flags?, date?); literal_index counts from 0.
 *                         The engine opens its append_write target.
 *   IMAP_PARSE_LITERAL_DATA
 *                         data/len: the next bytes of that literal, pointing
 *                         into the caller's input (zero copy).
 *   IMAP_PARSE_LITERAL_END
 *                         the literal is complete; parsing of the rest of
 *                         the command line continues. nul is set if the
 *                         data held NUL: fine in a literal8, but in a plain
 *                         literal RFC 9051 9 (rule 3) forbids it, so the
 *                         engine fails that APPEND (BAD) when it ends.
 *                         At any point between LITERAL_BEGIN and COMMAND
 *                         the engine may give up on the command with
 *                         imap_parser_abort_command() (and reply NO at
 *                         once): the reader then discards the rest of the
 *                         literal and of the command itself.
 *   IMAP_PARSE_LINE       (after imap_parser_read_line()) data/len is one
 *                         raw line without its line end: an AUTHENTICATE
 *                         response (RFC 9051 6.2.2) or IDLE's "DONE".
 *   IMAP_PARSE_ERROR      the command is bad: reply "<tag> BAD <msg>", or
 *                         "* BAD <msg>" when tag is NULL (it could not be
 *                         read). error says why; for IMAP_PERR_TOOBIG reply
 *                         "<tag> NO [TOOBIG] <msg>" when the literal was
 *                         synchronising (nothing was read; RFC 9051 7.1,
 *                         RFC 4469) and "<tag> BAD [TOOBIG] <msg>" when it
 *                         was non-synchronising (nonsync set: RFC 7888 4-5).
 *                         IMAP_PERR_EMPTY_LINE may be ignored silently but
 *                         should count towards the session's error bound.
 *                         If fatal is set the reader cannot find the end of
 *                         the command (a non-synchronising literal size out
 *                         of range): send "* BYE <msg>" and close. Otherwise
 *                         the reader resynchronises by itself: it discards
 *                         the rest of the command up to the end of its line
 *                         - and, per RFC 7888 3, if that line ends with
 *                         "{n+}" also those n octets and the next line, and
 *                         so on - but never stops inside literal data it has
 *                         accepted. The engine just keeps feeding.
 *
 * Argument tokens (struct imap_arg). The tree is made generically, without
 * knowledge of commands:
 *   ATOM     any run of CHARs except SP ( ) " { and CTL (so flags "\Seen",
 *            sequence sets "1:*,5", LIST patterns "%" and "*", "]" and "["
 *            all arrive as atoms; 8-bit in an atom is a syntax error).
 *   NIL      an atom spelled NIL in any case (text kept: a mailbox may be
 *            called NIL; imap_arg_get_astring() accepts it).
 *   NUMBER   an atom of digits whose value fits 64 bits (num); still an
 *            atom for imap_arg_get_atom()/get_astring().
 *   QUOTED   a quoted string, unescaped (\" and \\ only; any other escape
 *            is a syntax error). 8-bit bytes are allowed and flagged
 *            IMAP_ARGF_8BIT (RFC 9051 4.3.1 UTF-8; handlers that need valid
 *            UTF-8 check with imap_utf8_valid()).
 *   LITERAL  a buffered literal; IMAP_ARGF_LITERAL8 for "~{n}" (may then
 *            contain NUL: use len), IMAP_ARGF_NONSYNC for "{n+}". A plain
 *            literal with NUL is a syntax error (CHAR8, RFC 9051 9).
 *   LIST     a parenthesised list; list/list_n are its children, and
 *            list[list_n] is an IMAP_ARG_EOL sentinel.
 * Every text token's str is NUL-terminated (the NUL is not counted in len).
 *
 * FETCH items: an atom that starts (case-insensitively) with BODY,
 * BODY.PEEK, BINARY, BINARY.PEEK or BINARY.SIZE directly followed by "["
 * is read up to the matching "]" with SP, parentheses and quoted strings
 * allowed inside, then continues as an atom ("<0.100>"). So
 *   BODY.PEEK[HEADER.FIELDS (From "Subject")]<0.2048>
 * arrives as ONE atom with exactly that text. The FETCH code splits it: the
 * name is the text before the first "[", the section is the text between it
 * and the last "]" before any "<" (mime_section_parse() in mime/imap_view.h
 * parses it, quoted field names included), and the partial is "<" number
 * "." nz-number ">" (RFC 9051 9 "partial") or "<" number ">" as it comes
 * back in responses. A literal inside the brackets (header-fld-name is an
 * astring) is not supported: it is a syntax error.
 *
 * Line ends and other liberal choices (documented deviations):
 *   - a bare LF ends a line like CRLF (Dovecot does the same); a CR that is
 *     not directly before the LF is a CTL and a syntax error;
 *   - runs of SP between arguments, after "(" and before ")" and at the end
 *     of the line are accepted (Dovecot does too); a missing SP between two
 *     arguments ("a"(b) ) is a syntax error;
 *   - NUL anywhere in a line is a syntax error (also in quoted strings);
 *   - an empty line gives IMAP_PERR_EMPTY_LINE (engine's choice).
 *
 * APPEND streaming (settings.stream_append): in a command named APPEND
 * (not UID APPEND), every literal at list depth 0 that is not the first
 * argument (the mailbox) is the message and is streamed (LITERAL_BEGIN /
 * DATA / END) instead of buffered, up to max_stream_literal octets; its
 * arguments are handed over at LITERAL_BEGIN and then dropped, so
 * MULTIAPPEND with many messages needs no more memory than one. Literals
 * inside lists (CATENATE, RFC 4469) and the mailbox literal are buffered
 * as usual. The reader does not know APPEND's grammar: the engine checks
 * the arguments it is handed at CONTINUATION / LITERAL_BEGIN (mailbox
 * first, then an optional flag list and date-time) and refuses or aborts.
 * After LITERAL_END the rest of the line is parsed normally, and a syntax
 * error there is an IMAP_PARSE_ERROR: the engine must then throw away the
 * messages it has received for this command. The line segments (not the
 * streamed data) of all messages count towards max_command, which bounds
 * the number of messages in one MULTIAPPEND (about 15000 with defaults).
 *
 * Limits: pre-authentication, the engine should lower max_literal (say to
 * 8 KiB) and raise it after login with imap_parser_set_settings(). */
#ifndef TERN_PROTO_IMAP_PARSER_H
#define TERN_PROTO_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ---- settings ----------------------------------------------------------- */

/* Defaults for zero fields of struct imap_parser_settings. */
#define IMAP_PARSER_DEF_MAX_LINE 65536u            /* Dovecot imap_max_line_length */
#define IMAP_PARSER_DEF_MAX_LITERAL 65536u         /* a buffered literal */
#define IMAP_PARSER_DEF_MAX_STREAM (64u << 20)     /* a streamed APPEND message */
#define IMAP_PARSER_DEF_MAX_COMMAND (256u << 10)   /* lines + buffered literals */
#define IMAP_PARSER_DEF_MAX_ARGS 4096u             /* tokens, lists included */
#define IMAP_PARSER_DEF_MAX_DEPTH 32u              /* list nesting */
#define IMAP_PARSER_LITERAL_MINUS_MAX 4096u        /* RFC 7888 5, RFC 9051 4.3 */

enum imap_nonsync_mode {
	IMAP_NONSYNC_MINUS = 0, /* LITERAL- / IMAP4rev2: "{n+}" up to 4096 octets */
	IMAP_NONSYNC_PLUS,      /* LITERAL+: "{n+}" up to the size limits */
	IMAP_NONSYNC_NONE,      /* neither advertised: "{n+}" is an error (its
				 * data is still discarded so it cannot be read
				 * as commands) */
};

struct imap_parser_settings {
	size_t max_line;             /* octets of one line, without CRLF and literal data */
	uint64_t max_literal;        /* one buffered literal */
	uint64_t max_stream_literal; /* one streamed APPEND literal (APPENDLIMIT) */
	size_t max_command;          /* all lines + buffered literals of one command */
	unsigned max_args;           /* tokens per command (or per streamed message) */
	unsigned max_depth;          /* nested lists */
	enum imap_nonsync_mode nonsync;
	bool stream_append;          /* stream APPEND message literals (see above) */
};

/* ---- arguments ---------------------------------------------------------- */

enum imap_arg_type {
	IMAP_ARG_EOL = 0, /* end of a list / of the arguments */
	IMAP_ARG_ATOM,
	IMAP_ARG_NIL,
	IMAP_ARG_NUMBER,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_LIST,
};

enum imap_arg_flags {
	IMAP_ARGF_LITERAL8 = 1 << 0, /* "~{n}" */
	IMAP_ARGF_NONSYNC = 1 << 1,  /* "{n+}" */
	IMAP_ARGF_8BIT = 1 << 2,     /* QUOTED/LITERAL with bytes >= 0x80 */
	IMAP_ARGF_NUL = 1 << 3,      /* LITERAL8 containing NUL */
};

struct imap_arg {
	enum imap_arg_type type;
	unsigned flags;
	const char *str; /* text tokens: bytes, NUL-terminated; NULL for LIST/EOL */
	size_t len;
	uint64_t num;                /* NUMBER */
	const struct imap_arg *list; /* LIST: children; list[list_n] is EOL */
	size_t list_n;
};

/* Accessors; all return false (and leave the outputs alone) on a type
 * mismatch or a NULL/EOL arg.
 *   get_atom:    ATOM, NIL, NUMBER (the text as sent)
 *   get_astring: ATOM, NIL, NUMBER, QUOTED, LITERAL without LITERAL8
 *   get_string:  QUOTED, LITERAL without LITERAL8
 *   get_nstring: NIL (*s_r = NULL, *len_r = 0) or get_string
 *   get_number:  NUMBER
 *   get_list:    LIST */
bool imap_arg_get_atom(const struct imap_arg *a, const char **s_r, size_t *len_r);
bool imap_arg_get_astring(const struct imap_arg *a, const char **s_r, size_t *len_r);
bool imap_arg_get_string(const struct imap_arg *a, const char **s_r, size_t *len_r);
bool imap_arg_get_nstring(const struct imap_arg *a, const char **s_r, size_t *len_r);
bool imap_arg_get_number(const struct imap_arg *a, uint64_t *n_r);
bool imap_arg_get_list(const struct imap_arg *a, const struct imap_arg **list_r, size_t *n_r);
/* True if a is an atom (ATOM/NIL/NUMBER) equal to word, ignoring ASCII case. */
bool imap_arg_atom_equals(const struct imap_arg *a, const char *word);

/* Splits a FETCH attribute atom as described above:
 *   BODY.PEEK[HEADER.FIELDS (From)]<0.100>
 *   -> name "BODY.PEEK", section "HEADER.FIELDS (From)", partial 0, 100
 * name ends at the first "[" or "<"; the section runs to the "]" that
 * matches (quoted strings skipped); the partial (RFC 9051 9) must be
 * "<" number64 "." nz-number64 ">" and end the atom. Which names may carry
 * a section or a partial is the FETCH code's business. Pointers go into
 * s. Returns 0, or -1 on a syntax error (BAD). */
struct imap_fetch_att {
	const char *name;
	size_t name_len;
	bool has_section;
	const char *section;
	size_t section_len;
	bool has_partial;
	uint64_t partial_off, partial_len;
};
int imap_fetch_att_split(const char *s, size_t n, struct imap_fetch_att *r) ATTR_WARN_UNUSED;

/* ---- the reader --------------------------------------------------------- */

enum imap_parse_event_type {
	IMAP_PARSE_MORE = 0,
	IMAP_PARSE_COMMAND,
	IMAP_PARSE_CONTINUATION,
	IMAP_PARSE_LITERAL_BEGIN,
	IMAP_PARSE_LITERAL_DATA,
	IMAP_PARSE_LITERAL_END,
	IMAP_PARSE_LINE,
	IMAP_PARSE_ERROR,
};

enum imap_parse_error {
	IMAP_PERR_NONE = 0,
	IMAP_PERR_SYNTAX,           /* BAD */
	IMAP_PERR_EMPTY_LINE,       /* a line with nothing on it */
	IMAP_PERR_LINE_TOO_LONG,    /* max_line */
	IMAP_PERR_COMMAND_TOO_LONG, /* max_command, max_args, max_depth */
	IMAP_PERR_TOOBIG,           /* a literal over its limit: [TOOBIG] */
};

struct imap_parse_event {
	enum imap_parse_event_type type;
	/* Tag and upper-cased command name, NULL until read (LINE: NULL). */
	const char *tag;
	const char *name;
	bool uid; /* "UID <name>" */
	/* COMMAND; CONTINUATION and LITERAL_BEGIN: the arguments so far. */
	const struct imap_arg *args; /* args[n_args] is EOL */
	size_t n_args;
	/* CONTINUATION, LITERAL_*, and ERROR for TOOBIG. */
	uint64_t literal_size;
	bool literal8, nonsync, streamed;
	unsigned literal_index; /* streamed literals of this command, from 0 */
	bool nul;               /* LITERAL_END: the streamed data held NUL */
	/* LITERAL_DATA, LINE (LINE: NUL-terminated, NUL not counted). */
	const uint8_t *data;
	size_t len;
	/* ERROR */
	enum imap_parse_error error;
	const char *msg; /* static text for the reply, no CRLF */
	bool fatal;
};

struct imap_parser;

/* Settings are copied; zero fields take the IMAP_PARSER_DEF_* defaults. */
struct imap_parser *imap_parser_new(const struct imap_parser_settings *set);
void imap_parser_free(struct imap_parser **p);
/* Replaces the settings (e.g. larger limits after LOGIN, APPENDLIMIT per
 * user). Takes effect from the next literal or line. */
void imap_parser_set_settings(struct imap_parser *p, const struct imap_parser_settings *set);

/* Consumes bytes from data[0..n) and stops at the first event, which is
 * stored in *ev. Returns the number of bytes consumed (<= n); IMAP_PARSE_MORE
 * means all n were consumed. Never blocks, never does I/O. */
size_t imap_parser_feed(struct imap_parser *p, const uint8_t *data, size_t n,
			struct imap_parse_event *ev);

/* After IMAP_PARSE_CONTINUATION: the engine sends "+ ..." and the reader
 * reads the literal (buffered, or as LITERAL_BEGIN/DATA/END if streamed). */
void imap_parser_literal_accept(struct imap_parser *p);
/* After IMAP_PARSE_CONTINUATION: the engine refuses the literal with a
 * tagged NO/BAD; the command is discarded and the reader expects a new
 * command (RFC 9051 2.2.1 note: the client sends no more of it). */
void imap_parser_literal_refuse(struct imap_parser *p);
/* During a streamed literal (after LITERAL_BEGIN, until COMMAND), or after
 * CONTINUATION (same as refuse): drop the command. Unread bytes of the
 * current literal and the rest of the command are discarded silently (no
 * further event for this command); the engine replies at once. */
void imap_parser_abort_command(struct imap_parser *p);
/* Between commands: the next line is delivered raw as IMAP_PARSE_LINE
 * (AUTHENTICATE responses, IDLE's DONE). A line over max_line gives
 * IMAP_PARSE_ERROR (LINE_TOO_LONG, tag NULL) and is discarded up to its
 * end; a line containing NUL gives IMAP_PERR_SYNTAX. */
void imap_parser_read_line(struct imap_parser *p);
/* True if the reader is between commands (no partial command buffered,
 * nothing being discarded). */
bool imap_parser_idle(const struct imap_parser *p);

#endif
