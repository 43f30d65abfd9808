/* SPDX-License-Identifier: MIT */
/* The IMAP command reader (see imap_parser.h for the contract and the
 * events). How it works:
 *
 * A command is a sequence of line segments: the first line, and after each
 * literal the rest of the line that follows the literal's data. Segments
 * are collected whole into `line` (bounded by max_line) and tokenised when
 * their line end arrives; a segment always ends either the command or with
 * a literal header "{n}" / "{n+}" / "~{n}" (RFC 9051 4.3, RFC 7888 3),
 * because nothing else can span a line end. Token text (atoms, unescaped
 * quoted strings, literal data) is copied to `store`; tokens are kept as a
 * flat preorder array with parent links and offsets, and laid out as the
 * pointer tree of struct imap_arg (children contiguous, EOL-terminated)
 * only when an event hands them out, so `store` may move while growing.
 *
 * Error recovery never looks inside accepted literal data: after an error
 * the rest of the current line is skipped, and if the line ends with a
 * non-synchronising literal header, its octets and the line after them are
 * skipped too (RFC 7888 3: "check the end of every received line"). A
 * synchronising literal at the end of a bad line gets no "+", so the client
 * abandons the command there (RFC 9051 2.2.1). */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "proto/imap/imap_parser.h"

#define NUMBER64_MAX ((uint64_t)INT64_MAX) /* RFC 9051 9: number64 */

enum state {
	ST_LINE,         /* collecting a line segment of a command */
	ST_WAIT,         /* CONTINUATION given; waiting for accept/refuse */
	ST_LITERAL,      /* reading buffered literal data */
	ST_STREAM_BEGIN, /* to emit LITERAL_BEGIN */
	ST_STREAM_DATA,  /* handing out streamed literal data */
	ST_STREAM_END,   /* to emit LITERAL_END */
	ST_DISCARD_LIT,  /* dropping literal data, then ST_SKIP */
	ST_SKIP,         /* dropping the rest of a line, watching its end */
	ST_RAWLINE,      /* imap_parser_read_line() */
	ST_RAWSKIP,      /* dropping the rest of an over-long raw line */
	ST_DEAD,         /* after a fatal error: swallow everything */
};

enum reset { RESET_NONE, RESET_ARGS, RESET_CMD };

/* A token while the command is being read. */
struct ptok {
	uint8_t type, flags;
	int32_t parent; /* index of the enclosing list, -1 at top level */
	uint32_t nchild;
	size_t blk, fill; /* layout scratch */
	size_t off, len;  /* text in store */
	uint64_t num;
};

/* Watches the end of a line for a literal header while bytes are skipped. */
enum tail_state { T_NONE, T_BRACE, T_DIGITS, T_PLUS, T_CLOSED, T_CLOSED_CR };
struct tail {
	enum tail_state st;
	bool plus, ovf;
	uint64_t n;
};

struct imap_parser {
	struct imap_parser_settings set;
	enum state st;
	enum reset reset;

	struct buf line;  /* current segment, line end removed */
	struct buf store; /* token text */
	struct buf head;  /* tag NUL name NUL */
	size_t name_off;
	bool have_tag, have_name, uid;

	struct ptok *tok;
	size_t ntok, tokcap;
	int32_t *open; /* indices of the open lists */
	unsigned depth;
	struct imap_arg *view;
	size_t viewcap;

	bool in_cmd;     /* the first segment has been seen */
	bool need_delim; /* a token just ended: SP or ")" must follow */
	unsigned top_count;
	unsigned literal_index;
	uint64_t cmd_bytes;

	/* the current literal */
	uint64_t lit_size, lit_left;
	bool lit8, lit_nonsync, lit_streamed;
	bool lit_nul; /* a streamed literal held NUL */
	size_t lit_tok;

	struct tail tail;

	/* set by the tokeniser */
	enum imap_parse_error err;
	const char *err_msg;
};

/* ---- settings ----------------------------------------------------------- */

static void apply_settings(struct imap_parser *p, const struct imap_parser_settings *s)
{
	p->set = s ? *s : (struct imap_parser_settings){ 0 };
	if (!p->set.max_line)
		p->set.max_line = IMAP_PARSER_DEF_MAX_LINE;
	if (!p->set.max_literal)
		p->set.max_literal = IMAP_PARSER_DEF_MAX_LITERAL;
	if (!p->set.max_stream_literal)
		p->set.max_stream_literal = IMAP_PARSER_DEF_MAX_STREAM;
	if (!p->set.max_command)
		p->set.max_command = IMAP_PARSER_DEF_MAX_COMMAND;
	if (!p->set.max_args)
		p->set.max_args = IMAP_PARSER_DEF_MAX_ARGS;
	if (!p->set.max_depth)
		p->set.max_depth = IMAP_PARSER_DEF_MAX_DEPTH;
	p->open = xrealloc(p->open, p->set.max_depth * sizeof *p->open);
	if (p->depth > p->set.max_depth)
		p->depth = p->set.max_depth; /* only between commands, where depth is 0 */
}

struct imap_parser *imap_parser_new(const struct imap_parser_settings *set)
{
	struct imap_parser *p = xcalloc(1, sizeof *p);
	buf_init(&p->line, 0);
	buf_init(&p->store, 0);
	buf_init(&p->head, 0);
	apply_settings(p, set);
	p->st = ST_LINE;
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (!p)
		return;
	buf_deinit(&p->line);
	buf_deinit(&p->store);
	buf_deinit(&p->head);
	free(p->tok);
	free(p->open);
	free(p->view);
	free(p);
	*pp = NULL;
}

void imap_parser_set_settings(struct imap_parser *p, const struct imap_parser_settings *set)
{
	ASSERT(p->depth == 0);
	apply_settings(p, set);
}

/* ---- resets ------------------------------------------------------------- */

static void reset_args(struct imap_parser *p)
{
	p->ntok = 0;
	buf_clear(&p->store);
	/* Give big arrays back so that idle connections stay small. */
	if (p->tokcap > 256) {
		free(p->tok);
		p->tok = NULL;
		p->tokcap = 0;
	}
	if (p->viewcap > 256) {
		free(p->view);
		p->view = NULL;
		p->viewcap = 0;
	}
}

static void reset_cmd(struct imap_parser *p)
{
	reset_args(p);
	buf_clear(&p->line);
	buf_clear(&p->head);
	p->have_tag = p->have_name = p->uid = false;
	p->name_off = 0;
	p->depth = 0;
	p->in_cmd = false;
	p->need_delim = false;
	p->top_count = 0;
	p->literal_index = 0;
	p->cmd_bytes = 0;
	p->lit_size = p->lit_left = 0;
	p->lit8 = p->lit_nonsync = p->lit_streamed = false;
}

static void apply_reset(struct imap_parser *p)
{
	if (p->reset == RESET_CMD)
		reset_cmd(p);
	else if (p->reset == RESET_ARGS)
		reset_args(p);
	p->reset = RESET_NONE;
}

/* The command is over (complete, refused or skipped). When an event that
 * points into our buffers is being returned, the reset waits for the next
 * feed. */
static void end_command(struct imap_parser *p, bool deferred)
{
	p->st = ST_LINE;
	if (deferred) {
		p->reset = RESET_CMD;
		p->in_cmd = false;
	} else {
		reset_cmd(p);
	}
}

/* ---- literal-header detection for skipped lines ------------------------- */

static void tail_reset(struct tail *t)
{
	memset(t, 0, sizeof *t);
}

static void tail_byte(struct tail *t, uint8_t c)
{
	if (c == '{') {
		t->st = T_BRACE;
		t->n = 0;
		t->plus = t->ovf = false;
	} else if (c >= '0' && c <= '9' && (t->st == T_BRACE || t->st == T_DIGITS)) {
		unsigned d = (unsigned)(c - '0');
		if (t->n > (NUMBER64_MAX - d) / 10)
			t->ovf = true;
		else
			t->n = t->n * 10 + d;
		t->st = T_DIGITS;
	} else if (c == '+' && t->st == T_DIGITS) {
		t->st = T_PLUS;
	} else if (c == '}' && (t->st == T_DIGITS || t->st == T_PLUS)) {
		t->plus = t->st == T_PLUS;
		t->st = T_CLOSED;
	} else if (c == '\r' && t->st == T_CLOSED) {
		t->st = T_CLOSED_CR;
	} else {
		t->st = T_NONE;
	}
}

static bool tail_literal(const struct tail *t)
{
	return t->st == T_CLOSED || t->st == T_CLOSED_CR;
}

/* ---- events ------------------------------------------------------------- */

static void fill_ids(struct imap_parser *p, struct imap_parse_event *ev)
{
	ev->tag = p->have_tag ? (const char *)p->head.data : NULL;
	ev->name = p->have_name ? (const char *)p->head.data + p->name_off : NULL;
	ev->uid = p->uid;
	ev->literal_index = p->literal_index;
}

static void fill_literal(struct imap_parser *p, struct imap_parse_event *ev)
{
	ev->literal_size = p->lit_size;
	ev->literal8 = p->lit8;
	ev->nonsync = p->lit_nonsync;
	ev->streamed = p->lit_streamed;
}

/* Lays the tokens out as the imap_arg tree (see the file comment). */
static void build_view(struct imap_parser *p, struct imap_parse_event *ev)
{
	size_t lists = 0, top = 0;
	for (size_t t = 0; t < p->ntok; t++) {
		if (p->tok[t].type == IMAP_ARG_LIST)
			lists++;
		if (p->tok[t].parent < 0)
			top++;
	}
	size_t total = p->ntok + lists + 1;
	if (total > p->viewcap) {
		p->view = xrealloc(p->view, total * sizeof *p->view);
		p->viewcap = total;
	}
	struct imap_arg *v = p->view;
	memset(&v[top], 0, sizeof v[top]);
	size_t next = top + 1, fill_top = 0;
	for (size_t t = 0; t < p->ntok; t++) {
		struct ptok *k = &p->tok[t];
		size_t pos;
		if (k->parent < 0) {
			pos = fill_top++;
		} else {
			struct ptok *par = &p->tok[k->parent];
			pos = par->blk + par->fill++;
		}
		struct imap_arg *a = &v[pos];
		memset(a, 0, sizeof *a);
		a->type = (enum imap_arg_type)k->type;
		a->flags = k->flags;
		if (k->type == IMAP_ARG_LIST) {
			k->blk = next;
			k->fill = 0;
			a->list = &v[next];
			a->list_n = k->nchild;
			memset(&v[next + k->nchild], 0, sizeof v[0]);
			next += k->nchild + 1;
		} else {
			a->str = (const char *)p->store.data + k->off;
			a->len = k->len;
			a->num = k->num;
		}
	}
	ASSERT(next == total && fill_top == top);
	ev->args = v;
	ev->n_args = top;
}

static void set_error(struct imap_parser *p, struct imap_parse_event *ev, enum imap_parse_error e,
		      const char *msg)
{
	ev->type = IMAP_PARSE_ERROR;
	ev->error = e;
	ev->msg = msg;
	fill_ids(p, ev);
}

/* ---- head: tag, command name -------------------------------------------- */

/* RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+"> */
static bool tag_char(uint8_t c)
{
	return c > 0x20 && c < 0x7f && !memchr("(){%*\"\\+", c, 8);
}

/* ATOM-CHAR (no "]") for command names */
static bool atom_char(uint8_t c)
{
	return c > 0x20 && c < 0x7f && !memchr("(){%*\"\\]", c, 8);
}

/* Reads the tag from s[0..n) if it is followed by SP (or, when at_end_ok,
 * by the end of s). */
static size_t read_tag(struct imap_parser *p, const uint8_t *s, size_t n, bool at_end_ok)
{
	size_t i = 0;
	while (i < n && tag_char(s[i]))
		i++;
	if (i == 0 || (i < n && s[i] != ' ') || (i == n && !at_end_ok))
		return 0;
	buf_clear(&p->head);
	buf_xappend(&p->head, s, i);
	buf_xappend(&p->head, "", 1);
	p->have_tag = true;
	return i;
}

static size_t read_name(struct imap_parser *p, const uint8_t *s, size_t n, size_t i)
{
	size_t st = i;
	while (i < n && atom_char(s[i]))
		i++;
	if (i == st || (i < n && s[i] != ' '))
		return 0;
	p->name_off = p->head.len;
	for (size_t k = st; k < i; k++) {
		char c = ascii_toupper((char)s[k]);
		buf_xappend(&p->head, &c, 1);
	}
	buf_xappend(&p->head, "", 1);
	p->have_name = true;
	return i;
}

static int parse_head(struct imap_parser *p, const uint8_t *s, size_t n, size_t *i_r)
{
	size_t i = read_tag(p, s, n, true);
	p->err = IMAP_PERR_SYNTAX;
	if (i == 0) {
		p->err_msg = "Invalid tag";
		return -1;
	}
	while (i < n && s[i] == ' ')
		i++;
	if (i == n) {
		p->err_msg = "Missing command";
		return -1;
	}
	size_t e = read_name(p, s, n, i);
	if (e == 0) {
		p->err_msg = "Invalid command name";
		return -1;
	}
	i = e;
	if (strcmp((const char *)p->head.data + p->name_off, "UID") == 0) {
		while (i < n && s[i] == ' ')
			i++;
		p->head.len = p->name_off;
		p->have_name = false;
		p->uid = true;
		e = i < n ? read_name(p, s, n, i) : 0;
		if (e == 0) {
			p->err_msg = "Missing or invalid command after UID";
			return -1;
		}
		i = e;
	}
	*i_r = i;
	return 0;
}

/* ---- tokens ------------------------------------------------------------- */

static struct ptok *add_tok(struct imap_parser *p, enum imap_arg_type type)
{
	if (p->ntok >= p->set.max_args) {
		p->err = IMAP_PERR_COMMAND_TOO_LONG;
		p->err_msg = "Too many arguments";
		return NULL;
	}
	if (p->ntok == p->tokcap) {
		p->tokcap = p->tokcap ? p->tokcap * 2 : 16;
		p->tok = xrealloc(p->tok, p->tokcap * sizeof *p->tok);
	}
	struct ptok *k = &p->tok[p->ntok++];
	memset(k, 0, sizeof *k);
	k->type = (uint8_t)type;
	k->parent = p->depth ? p->open[p->depth - 1] : -1;
	if (k->parent >= 0)
		p->tok[k->parent].nchild++;
	else
		p->top_count++;
	k->off = p->store.len;
	return k;
}

static void finish_text(struct imap_parser *p, struct ptok *k)
{
	k->len = p->store.len - k->off;
	buf_xappend(&p->store, "", 1);
}

/* Atoms that carry a FETCH section: the brackets may contain SP, lists and
 * quoted strings (see imap_parser.h). */
static bool section_prefix(const uint8_t *s, size_t n)
{
	static const char *const names[] = { "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK",
					     "BINARY.SIZE" };
	for (size_t i = 0; i < N_ELEMENTS(names); i++)
		if (strlen(names[i]) == n && ascii_prefix_ci(s, n, names[i]))
			return true;
	return false;
}

static int bad_char(struct imap_parser *p, uint8_t c, const char *what)
{
	p->err = IMAP_PERR_SYNTAX;
	if (c == 0)
		p->err_msg = "NUL in command line";
	else if (c >= 0x80)
		p->err_msg = "8-bit character in atom";
	else if (c < 0x20 || c == 0x7f)
		p->err_msg = "Control character in command line";
	else
		p->err_msg = what;
	return -1;
}

static int read_atom(struct imap_parser *p, const uint8_t *s, size_t n, size_t *ip)
{
	size_t i = *ip, st = i;
	struct ptok *k = add_tok(p, IMAP_ARG_ATOM);
	if (!k)
		return -1;
	while (i < n) {
		uint8_t c = s[i];
		if (c == '[' && section_prefix(s + st, i - st)) {
			/* "[" section "]": up to the matching "]" */
			i++;
			bool q = false;
			for (;;) {
				if (i == n) {
					p->err = IMAP_PERR_SYNTAX;
					p->err_msg = "Missing ] in fetch attribute";
					return -1;
				}
				c = s[i];
				if (c < 0x20 || c >= 0x7f)
					return bad_char(p, c, "");
				if (q) {
					if (c == '\\' && i + 1 < n)
						i++;
					else if (c == '"')
						q = false;
				} else if (c == '"') {
					q = true;
				} else if (c == ']') {
					break;
				} else if (c == '[' || c == '{') {
					p->err = IMAP_PERR_SYNTAX;
					p->err_msg = "Invalid character in fetch section";
					return -1;
				}
				i++;
			}
			i++;
			continue;
		}
		if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' || c == '"' || c == '{')
			break;
		i++;
	}
	if (i < n && (s[i] < 0x20 || s[i] >= 0x7f))
		return bad_char(p, s[i], "");
	buf_xappend(&p->store, s + st, i - st);
	finish_text(p, k);
	const uint8_t *t = s + st;
	size_t len = i - st;
	if (len == 3 && ascii_prefix_ci(t, 3, "NIL")) {
		k->type = IMAP_ARG_NIL;
	} else if (len <= 20) {
		uint64_t v = 0;
		size_t d = 0;
		while (d < len && t[d] >= '0' && t[d] <= '9') {
			unsigned x = (unsigned)(t[d] - '0');
			if (v > (UINT64_MAX - x) / 10)
				break;
			v = v * 10 + x;
			d++;
		}
		if (d == len) {
			k->type = IMAP_ARG_NUMBER;
			k->num = v;
		}
	}
	*ip = i;
	return 0;
}

static int read_quoted(struct imap_parser *p, const uint8_t *s, size_t n, size_t *ip)
{
	size_t i = *ip + 1;
	struct ptok *k = add_tok(p, IMAP_ARG_QUOTED);
	if (!k)
		return -1;
	for (;;) {
		size_t st = i;
		/* copy a run of plain characters at once */
		while (i < n && s[i] != '"' && s[i] != '\\' && s[i] != 0 && s[i] != '\r') {
			if (s[i] >= 0x80)
				k->flags |= IMAP_ARGF_8BIT;
			i++;
		}
		buf_xappend(&p->store, s + st, i - st);
		if (i == n) {
			p->err = IMAP_PERR_SYNTAX;
			p->err_msg = "Unterminated quoted string";
			return -1;
		}
		uint8_t c = s[i];
		if (c == '"')
			break;
		if (c == 0 || c == '\r') /* QUOTED-CHAR is TEXT-CHAR: no CR, LF, NUL */
			return bad_char(p, c, "");
		/* RFC 9051 9: "\" quoted-specials only */
		if (i + 1 == n || (s[i + 1] != '"' && s[i + 1] != '\\')) {
			p->err = IMAP_PERR_SYNTAX;
			p->err_msg = "Invalid escape in quoted string";
			return -1;
		}
		buf_xappend(&p->store, s + i + 1, 1);
		i += 2;
	}
	finish_text(p, k);
	*ip = i + 1;
	return 0;
}

struct lithdr {
	uint64_t n;
	bool nonsync, lit8, ovf;
};

/* "{" number64 ["+"] "}" or "~{" number64 ["+"] "}" at s[*ip], which must
 * end the segment. */
static int read_lithdr(struct imap_parser *p, const uint8_t *s, size_t n, size_t i,
		       struct lithdr *lh)
{
	memset(lh, 0, sizeof *lh);
	if (s[i] == '~') {
		lh->lit8 = true;
		i++;
	}
	i++; /* "{" */
	size_t st = i;
	while (i < n && s[i] >= '0' && s[i] <= '9') {
		unsigned d = (unsigned)(s[i] - '0');
		if (lh->n > (NUMBER64_MAX - d) / 10)
			lh->ovf = true;
		else
			lh->n = lh->n * 10 + d;
		i++;
	}
	if (i > st && i < n && s[i] == '+') {
		lh->nonsync = true;
		i++;
	}
	p->err = IMAP_PERR_SYNTAX;
	if (i == st || i == n || s[i] != '}') {
		p->err_msg = "Invalid literal";
		return -1;
	}
	if (i + 1 != n) {
		p->err_msg = "Literal must end the line";
		return -1;
	}
	return 0;
}

/* Tokenises s[i..n): 0 = segment done, 1 = ends with a literal header
 * (*lh), -1 = error (p->err, p->err_msg). */
static int tokenize(struct imap_parser *p, const uint8_t *s, size_t n, size_t i, struct lithdr *lh)
{
	while (i < n) {
		uint8_t c = s[i];
		if (c == ' ') {
			i++;
			p->need_delim = false;
			continue;
		}
		if (c == ')') {
			if (p->depth == 0) {
				p->err = IMAP_PERR_SYNTAX;
				p->err_msg = "Unexpected )";
				return -1;
			}
			p->depth--;
			i++;
			p->need_delim = true;
			continue;
		}
		if (p->need_delim) {
			if (c < 0x20 || c >= 0x7f)
				return bad_char(p, c, "");
			p->err = IMAP_PERR_SYNTAX;
			p->err_msg = "Missing space between arguments";
			return -1;
		}
		if (c == '(') {
			if (p->depth >= p->set.max_depth) {
				p->err = IMAP_PERR_COMMAND_TOO_LONG;
				p->err_msg = "Lists nested too deeply";
				return -1;
			}
			if (!add_tok(p, IMAP_ARG_LIST))
				return -1;
			p->open[p->depth++] = (int32_t)(p->ntok - 1);
			i++;
			continue;
		}
		if (c == '"') {
			if (read_quoted(p, s, n, &i) < 0)
				return -1;
		} else if (c == '{' || (c == '~' && i + 1 < n && s[i + 1] == '{')) {
			if (read_lithdr(p, s, n, i, lh) < 0)
				return -1;
			return 1;
		} else {
			if (c < 0x20 || c >= 0x7f)
				return bad_char(p, c, "");
			if (read_atom(p, s, n, &i) < 0)
				return -1;
		}
		p->need_delim = true;
	}
	return 0;
}

/* ---- segments ----------------------------------------------------------- */

/* An error in the segment held in `line`: report it, then skip according to
 * the line's end (RFC 7888 3). Returns true (an event is set). */
static bool seg_error(struct imap_parser *p, struct imap_parse_event *ev, enum imap_parse_error e,
		      const char *msg)
{
	struct tail t;
	tail_reset(&t);
	for (size_t i = 0; i < p->line.len; i++)
		tail_byte(&t, p->line.data[i]);
	set_error(p, ev, e, msg);
	buf_clear(&p->line);
	if (tail_literal(&t) && t.plus) {
		if (t.ovf) {
			ev->fatal = true;
			ev->msg = "Literal size out of range";
			p->st = ST_DEAD;
			p->reset = RESET_CMD;
			return true;
		}
		p->lit_left = t.n;
		p->st = ST_DISCARD_LIT;
		return true;
	}
	end_command(p, true);
	return true;
}

static bool streamed_here(const struct imap_parser *p)
{
	return p->set.stream_append && !p->uid && p->depth == 0 && p->top_count >= 1 &&
	       strcmp((const char *)p->head.data + p->name_off, "APPEND") == 0;
}

static void start_literal(struct imap_parser *p)
{
	p->lit_left = p->lit_size;
	p->lit_nul = false;
	if (p->lit_streamed) {
		p->st = ST_STREAM_BEGIN;
		return;
	}
	struct ptok *k = add_tok(p, IMAP_ARG_LITERAL);
	ASSERT(k); /* checked in literal_header */
	k->flags = (uint8_t)((p->lit8 ? IMAP_ARGF_LITERAL8 : 0) |
			     (p->lit_nonsync ? IMAP_ARGF_NONSYNC : 0));
	p->lit_tok = p->ntok - 1;
	p->st = ST_LITERAL;
}

static bool literal_header(struct imap_parser *p, struct imap_parse_event *ev,
			   const struct lithdr *lh)
{
	p->lit_size = lh->n;
	p->lit8 = lh->lit8;
	p->lit_nonsync = lh->nonsync;
	p->lit_streamed = streamed_here(p);
	fill_literal(p, ev);
	if (lh->ovf)
		return seg_error(p, ev, IMAP_PERR_TOOBIG, "Literal too large");
	if (lh->nonsync) {
		if (p->set.nonsync == IMAP_NONSYNC_NONE)
			return seg_error(p, ev, IMAP_PERR_SYNTAX,
					 "Non-synchronizing literals are not supported");
		if (p->set.nonsync == IMAP_NONSYNC_MINUS && lh->n > IMAP_PARSER_LITERAL_MINUS_MAX)
			return seg_error(p, ev, IMAP_PERR_TOOBIG,
					 "Non-synchronizing literal over 4096 octets (LITERAL-)");
	}
	if (lh->n > (p->lit_streamed ? p->set.max_stream_literal : p->set.max_literal))
		return seg_error(p, ev, IMAP_PERR_TOOBIG, "Literal too large");
	if (!p->lit_streamed) {
		if (p->cmd_bytes + lh->n > p->set.max_command)
			return seg_error(p, ev, IMAP_PERR_TOOBIG, "Command too large");
		if (p->ntok >= p->set.max_args)
			return seg_error(p, ev, IMAP_PERR_COMMAND_TOO_LONG, "Too many arguments");
	}
	buf_clear(&p->line);
	if (!lh->nonsync) {
		p->st = ST_WAIT;
		ev->type = IMAP_PARSE_CONTINUATION;
		fill_ids(p, ev);
		build_view(p, ev);
		return true;
	}
	memset(ev, 0, sizeof *ev);
	start_literal(p);
	return false;
}

/* A complete segment is in `line`. Returns true if *ev was set. */
static bool segment_done(struct imap_parser *p, struct imap_parse_event *ev)
{
	const uint8_t *s = p->line.data;
	size_t n = p->line.len;
	if (!p->in_cmd) {
		if (n == 0) {
			set_error(p, ev, IMAP_PERR_EMPTY_LINE, "Empty command line");
			end_command(p, true);
			return true;
		}
		p->in_cmd = true;
	}
	if (n > p->set.max_line) {
		if (!p->have_tag)
			read_tag(p, s, n, false);
		return seg_error(p, ev, IMAP_PERR_LINE_TOO_LONG, "Line too long");
	}
	p->cmd_bytes += n;
	if (p->cmd_bytes > p->set.max_command)
		return seg_error(p, ev, IMAP_PERR_COMMAND_TOO_LONG, "Command too long");
	size_t i = 0;
	if (!p->have_tag && parse_head(p, s, n, &i) < 0)
		return seg_error(p, ev, p->err, p->err_msg);
	struct lithdr lh;
	int r = tokenize(p, s, n, i, &lh);
	if (r < 0)
		return seg_error(p, ev, p->err, p->err_msg);
	if (r == 1)
		return literal_header(p, ev, &lh);
	if (p->depth > 0)
		return seg_error(p, ev, IMAP_PERR_SYNTAX, "Missing )");
	buf_clear(&p->line);
	ev->type = IMAP_PARSE_COMMAND;
	fill_ids(p, ev);
	build_view(p, ev);
	end_command(p, true);
	return true;
}

/* ---- feeding ------------------------------------------------------------ */

/* Collects line bytes into `line`. Returns 1 when the line is complete
 * (line end consumed and removed), 0 when all input is used, -1 when the
 * line is longer than max_line (+1 for a CR); `line` then holds its first
 * max_line + 1 octets. */
static int collect_line(struct imap_parser *p, const uint8_t *data, size_t n, size_t *off)
{
	const uint8_t *s = data + *off;
	size_t avail = n - *off;
	const uint8_t *lf = memchr(s, '\n', avail);
	size_t take = lf ? (size_t)(lf - s) : avail;
	if (p->line.len + take > p->set.max_line + 1) {
		/* keep max_line + 1 octets: the tag and the skip state come
		 * from them, whatever the split of the input */
		size_t room = p->set.max_line + 1 - p->line.len;
		buf_xappend(&p->line, s, room);
		*off += room;
		return -1;
	}
	buf_xappend(&p->line, s, take);
	*off += take;
	if (!lf)
		return 0;
	(*off)++;
	/* CRLF, or a bare LF (accepted as a line end, like Dovecot) */
	if (p->line.len && p->line.data[p->line.len - 1] == '\r')
		p->line.data[--p->line.len] = 0;
	return 1;
}

/* Sets *done when an event is set or all input is used. */
static void feed_line(struct imap_parser *p, const uint8_t *data, size_t n, size_t *off,
		      struct imap_parse_event *ev, bool *done)
{
	int r = collect_line(p, data, n, off);
	if (r == 0) {
		*done = true;
		return;
	}
	if (r < 0) {
		/* Over-long line: report now, skip the rest watching its end. */
		if (!p->in_cmd && !p->have_tag)
			read_tag(p, p->line.data, p->line.len, false);
		tail_reset(&p->tail);
		for (size_t i = 0; i < p->line.len; i++)
			tail_byte(&p->tail, p->line.data[i]);
		buf_clear(&p->line);
		p->in_cmd = true;
		p->st = ST_SKIP;
		set_error(p, ev, IMAP_PERR_LINE_TOO_LONG, "Line too long");
		*done = true;
		return;
	}
	*done = segment_done(p, ev);
}

size_t imap_parser_feed(struct imap_parser *p, const uint8_t *data, size_t n,
			struct imap_parse_event *ev)
{
	memset(ev, 0, sizeof *ev);
	apply_reset(p);
	size_t off = 0;
	for (;;) {
		switch (p->st) {
		case ST_LINE: {
			if (off == n)
				return off;
			bool done = false;
			feed_line(p, data, n, &off, ev, &done);
			if (done)
				return off;
			break;
		}
		case ST_WAIT:
			panic("imap_parser_feed() before accept/refuse of a literal");
		case ST_LITERAL: {
			struct ptok *k = &p->tok[p->lit_tok];
			if (p->lit_left == 0) {
				finish_text(p, k);
				p->need_delim = true;
				p->st = ST_LINE;
				if (off == n)
					return off; /* the rest of the line may still come */
				break;
			}
			if (off == n)
				return off;
			size_t m = n - off < p->lit_left ? n - off : (size_t)p->lit_left;
			const uint8_t *s = data + off;
			const uint8_t *z = memchr(s, 0, m);
			if (z && !p->lit8) {
				/* CHAR8 excludes NUL (RFC 9051 9): the rest is dropped. */
				size_t used = (size_t)(z - s) + 1;
				off += used;
				p->lit_left -= used;
				p->st = ST_DISCARD_LIT;
				set_error(p, ev, IMAP_PERR_SYNTAX, "NUL in literal");
				return off;
			}
			if (z)
				k->flags |= IMAP_ARGF_NUL;
			for (size_t i = 0; i < m && !(k->flags & IMAP_ARGF_8BIT); i++)
				if (s[i] >= 0x80)
					k->flags |= IMAP_ARGF_8BIT;
			buf_xappend(&p->store, s, m);
			p->cmd_bytes += m;
			off += m;
			p->lit_left -= m;
			break;
		}
		case ST_STREAM_BEGIN:
			ev->type = IMAP_PARSE_LITERAL_BEGIN;
			fill_ids(p, ev);
			fill_literal(p, ev);
			build_view(p, ev);
			p->reset = RESET_ARGS;
			p->st = ST_STREAM_DATA;
			return off;
		case ST_STREAM_DATA: {
			if (p->lit_left == 0) {
				p->st = ST_STREAM_END;
				break;
			}
			if (off == n)
				return off;
			size_t m = n - off < p->lit_left ? n - off : (size_t)p->lit_left;
			ev->type = IMAP_PARSE_LITERAL_DATA;
			fill_ids(p, ev);
			fill_literal(p, ev);
			ev->data = data + off;
			ev->len = m;
			if (!p->lit_nul && memchr(ev->data, 0, m))
				p->lit_nul = true;
			off += m;
			p->lit_left -= m;
			return off;
		}
		case ST_STREAM_END:
			ev->type = IMAP_PARSE_LITERAL_END;
			fill_ids(p, ev);
			fill_literal(p, ev);
			ev->nul = p->lit_nul;
			p->literal_index++;
			p->top_count++;
			p->need_delim = true;
			p->st = ST_LINE;
			return off;
		case ST_DISCARD_LIT: {
			if (p->lit_left == 0) {
				tail_reset(&p->tail);
				p->st = ST_SKIP;
				break;
			}
			if (off == n)
				return off;
			size_t m = n - off < p->lit_left ? n - off : (size_t)p->lit_left;
			off += m;
			p->lit_left -= m;
			break;
		}
		case ST_SKIP: {
			if (off == n)
				return off;
			bool eol = false;
			while (off < n) {
				uint8_t c = data[off++];
				if (c == '\n') {
					eol = true;
					break;
				}
				tail_byte(&p->tail, c);
			}
			if (!eol)
				return off;
			if (tail_literal(&p->tail) && p->tail.plus) {
				if (p->tail.ovf) {
					set_error(p, ev, IMAP_PERR_TOOBIG, "Literal size out of range");
					ev->fatal = true;
					p->st = ST_DEAD;
					p->reset = RESET_CMD;
					return off;
				}
				p->lit_left = p->tail.n;
				p->st = ST_DISCARD_LIT;
				break;
			}
			end_command(p, false);
			break;
		}
		case ST_RAWLINE: {
			if (off == n)
				return off;
			int r = collect_line(p, data, n, &off);
			if (r == 0)
				return off;
			if (r < 0) {
				buf_clear(&p->line);
				p->st = ST_RAWSKIP;
				set_error(p, ev, IMAP_PERR_LINE_TOO_LONG, "Line too long");
				ev->tag = ev->name = NULL;
				return off;
			}
			p->st = ST_LINE;
			p->reset = RESET_CMD;
			if (p->line.len > p->set.max_line) {
				set_error(p, ev, IMAP_PERR_LINE_TOO_LONG, "Line too long");
			} else if (memchr(p->line.data, 0, p->line.len)) {
				set_error(p, ev, IMAP_PERR_SYNTAX, "NUL in line");
			} else {
				ev->type = IMAP_PARSE_LINE;
				ev->data = p->line.data ? p->line.data : (const uint8_t *)"";
				ev->len = p->line.len;
			}
			ev->tag = ev->name = NULL;
			return off;
		}
		case ST_RAWSKIP: {
			const uint8_t *lf = memchr(data + off, '\n', n - off);
			if (!lf)
				return n;
			off = (size_t)(lf - data) + 1;
			end_command(p, false);
			break;
		}
		case ST_DEAD:
			return n;
		}
	}
}

/* ---- engine decisions --------------------------------------------------- */

void imap_parser_literal_accept(struct imap_parser *p)
{
	ASSERT(p->st == ST_WAIT);
	start_literal(p);
}

void imap_parser_literal_refuse(struct imap_parser *p)
{
	ASSERT(p->st == ST_WAIT);
	end_command(p, true);
}

void imap_parser_abort_command(struct imap_parser *p)
{
	switch (p->st) {
	case ST_WAIT:
		end_command(p, true);
		return;
	case ST_LITERAL:
	case ST_STREAM_BEGIN:
	case ST_STREAM_DATA:
		p->st = ST_DISCARD_LIT;
		break;
	case ST_STREAM_END:
		tail_reset(&p->tail);
		p->st = ST_SKIP;
		break;
	case ST_LINE:
		if (!p->in_cmd)
			return; /* between commands: nothing to drop */
		tail_reset(&p->tail);
		for (size_t i = 0; i < p->line.len; i++)
			tail_byte(&p->tail, p->line.data[i]);
		buf_clear(&p->line);
		p->st = ST_SKIP;
		break;
	default:
		return; /* already discarding, raw line, dead */
	}
	/* The arguments handed out last stay readable until the next feed. */
	p->reset = RESET_ARGS;
	p->depth = 0;
}

void imap_parser_read_line(struct imap_parser *p)
{
	/* after a command, or right after the previous raw line (its data is
	 * still in p->line, cleared by the pending RESET_CMD): SASL exchanges
	 * ask for one line after another */
	ASSERT(p->st == ST_LINE &&
	       (p->reset == RESET_CMD || (!p->in_cmd && p->line.len == 0)));
	/* the pending reset (if any) is applied by the next feed, so the
	 * event that led here stays readable until then */
	p->st = ST_RAWLINE;
}

bool imap_parser_idle(const struct imap_parser *p)
{
	return p->st == ST_LINE && !p->in_cmd && p->line.len == 0;
}

/* ---- argument accessors ------------------------------------------------- */

bool imap_arg_get_atom(const struct imap_arg *a, const char **s_r, size_t *len_r)
{
	if (!a || (a->type != IMAP_ARG_ATOM && a->type != IMAP_ARG_NIL &&
		   a->type != IMAP_ARG_NUMBER))
		return false;
	*s_r = a->str;
	*len_r = a->len;
	return true;
}

bool imap_arg_get_string(const struct imap_arg *a, const char **s_r, size_t *len_r)
{
	if (!a || (a->type != IMAP_ARG_QUOTED && a->type != IMAP_ARG_LITERAL) ||
	    (a->flags & IMAP_ARGF_LITERAL8))
		return false;
	*s_r = a->str;
	*len_r = a->len;
	return true;
}

bool imap_arg_get_astring(const struct imap_arg *a, const char **s_r, size_t *len_r)
{
	return imap_arg_get_atom(a, s_r, len_r) || imap_arg_get_string(a, s_r, len_r);
}

bool imap_arg_get_nstring(const struct imap_arg *a, const char **s_r, size_t *len_r)
{
	if (a && a->type == IMAP_ARG_NIL) {
		*s_r = NULL;
		*len_r = 0;
		return true;
	}
	return imap_arg_get_string(a, s_r, len_r);
}

bool imap_arg_get_number(const struct imap_arg *a, uint64_t *n_r)
{
	if (!a || a->type != IMAP_ARG_NUMBER)
		return false;
	*n_r = a->num;
	return true;
}

bool imap_arg_get_list(const struct imap_arg *a, const struct imap_arg **list_r, size_t *n_r)
{
	if (!a || a->type != IMAP_ARG_LIST)
		return false;
	*list_r = a->list;
	*n_r = a->list_n;
	return true;
}

bool imap_arg_atom_equals(const struct imap_arg *a, const char *word)
{
	const char *s;
	size_t n;
	if (!imap_arg_get_atom(a, &s, &n))
		return false;
	return strlen(word) == n && ascii_prefix_ci(s, n, word);
}

/* ---- FETCH attribute atoms ---------------------------------------------- */

static int number64(const char *s, size_t n, size_t *i, uint64_t *v_r)
{
	size_t st = *i;
	uint64_t v = 0;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
		unsigned d = (unsigned)(s[*i] - '0');
		if (v > (NUMBER64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		(*i)++;
	}
	if (*i == st)
		return -1;
	*v_r = v;
	return 0;
}

int imap_fetch_att_split(const char *s, size_t n, struct imap_fetch_att *r)
{
	memset(r, 0, sizeof *r);
	size_t i = 0;
	while (i < n && s[i] != '[' && s[i] != '<')
		i++;
	if (i == 0)
		return -1;
	r->name = s;
	r->name_len = i;
	if (i < n && s[i] == '[') {
		size_t st = ++i;
		bool q = false;
		for (;; i++) {
			if (i == n)
				return -1;
			if (q) {
				if (s[i] == '\\' && i + 1 < n)
					i++;
				else if (s[i] == '"')
					q = false;
			} else if (s[i] == '"') {
				q = true;
			} else if (s[i] == ']') {
				break;
			}
		}
		r->has_section = true;
		r->section = s + st;
		r->section_len = i - st;
		i++;
	}
	if (i < n && s[i] == '<') {
		/* RFC 9051 9: partial = "<" number64 "." nz-number64 ">" */
		i++;
		if (number64(s, n, &i, &r->partial_off) < 0 || i >= n || s[i] != '.')
			return -1;
		i++;
		if (number64(s, n, &i, &r->partial_len) < 0 || r->partial_len == 0 || i >= n ||
		    s[i] != '>')
			return -1;
		i++;
		r->has_partial = true;
	}
	return i == n ? 0 : -1;
}
