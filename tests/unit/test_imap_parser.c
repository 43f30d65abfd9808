/* SPDX-License-Identifier: MIT */
/* The IMAP command reader (proto/imap/imap_parser): a table of client
 * inputs and the event transcript each must give. Every input is fed whole
 * (from a copy that ends at a PROT_NONE page, so over-reads fault), one
 * byte at a time, and split in two at every position; all must give the
 * same transcript. The driver answers continuations like an engine would:
 * accept, or refuse literals above a size, and can abort streamed APPENDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "proto/imap/imap_parser.h"

/* ---- driver ------------------------------------------------------------- */

struct opts {
	struct imap_parser_settings set;
	uint64_t refuse_over;  /* refuse sync literals larger than this (0: never) */
	bool abort_at_begin;   /* abort streamed APPENDs at LITERAL_BEGIN */
};

struct drv {
	const struct opts *o;
	struct imap_parser *p;
	struct buf out;
	bool in_data;
};

static void esc(struct buf *b, const void *pv, size_t n)
{
	const uint8_t *p = pv;
	for (size_t i = 0; i < n; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			buf_xappend(b, p + i, 1);
		else
			buf_xprintf(b, "\\x%02x", p[i]);
	}
}

static void dump_args(struct buf *b, const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		buf_xappend(b, " ", 1);
		const struct imap_arg *x = &a[i];
		switch (x->type) {
		case IMAP_ARG_ATOM:
			buf_xappend(b, "a:", 2);
			esc(b, x->str, x->len);
			break;
		case IMAP_ARG_NIL:
			buf_xprintf(b, "nil:%s", x->str);
			break;
		case IMAP_ARG_NUMBER:
			buf_xprintf(b, "n:%llu", (unsigned long long)x->num);
			break;
		case IMAP_ARG_QUOTED:
			buf_xappend(b, "q\"", 2);
			esc(b, x->str, x->len);
			buf_xappend(b, "\"", 1);
			break;
		case IMAP_ARG_LITERAL:
			buf_xprintf(b, "l%s%s%s{", x->flags & IMAP_ARGF_LITERAL8 ? "8" : "",
				    x->flags & IMAP_ARGF_NONSYNC ? "+" : "",
				    x->flags & IMAP_ARGF_NUL ? "0" : "");
			esc(b, x->str, x->len);
			buf_xappend(b, "}", 1);
			break;
		case IMAP_ARG_LIST:
			buf_xappend(b, " (", 2);
			dump_args(b, x->list, x->list_n);
			buf_xappend(b, " )", 2);
			assert_int_equal(x->list[x->list_n].type, IMAP_ARG_EOL);
			break;
		case IMAP_ARG_EOL:
			fail_msg("EOL inside the arguments");
		}
		if (x->type != IMAP_ARG_LIST)
			assert_int_equal(x->str[x->len], 0);
	}
}

static void end_data(struct drv *d)
{
	if (d->in_data)
		buf_xappend(&d->out, "\n", 1);
	d->in_data = false;
}

/* Handles one event; returns false when it is MORE. */
static bool on_event(struct drv *d, const struct imap_parse_event *ev)
{
	struct buf *b = &d->out;
	if (ev->type != IMAP_PARSE_LITERAL_DATA && ev->type != IMAP_PARSE_MORE)
		end_data(d);
	switch (ev->type) {
	case IMAP_PARSE_MORE:
		return false;
	case IMAP_PARSE_COMMAND:
		buf_xprintf(b, "CMD %s %s%s", ev->tag, ev->uid ? "UID " : "", ev->name);
		dump_args(b, ev->args, ev->n_args);
		buf_xappend(b, "\n", 1);
		assert_int_equal(ev->args[ev->n_args].type, IMAP_ARG_EOL);
		if (strcmp(ev->name, "AUTHENTICATE") == 0 || strcmp(ev->name, "IDLE") == 0) {
			char *tag = strdup(ev->tag);
			imap_parser_read_line(d->p);
			assert_string_equal(ev->tag, tag); /* still readable */
			free(tag);
		}
		return true;
	case IMAP_PARSE_CONTINUATION:
		buf_xprintf(b, "CONT %s %llu%s%s", ev->tag, (unsigned long long)ev->literal_size,
			    ev->literal8 ? " lit8" : "", ev->streamed ? " stream" : "");
		dump_args(b, ev->args, ev->n_args);
		if (d->o->refuse_over && ev->literal_size > d->o->refuse_over) {
			buf_xappend(b, " -> refuse\n", 11);
			imap_parser_literal_refuse(d->p);
		} else {
			buf_xappend(b, "\n", 1);
			imap_parser_literal_accept(d->p);
		}
		return true;
	case IMAP_PARSE_LITERAL_BEGIN:
		buf_xprintf(b, "BEGIN %s #%u %llu%s%s", ev->tag, ev->literal_index,
			    (unsigned long long)ev->literal_size, ev->literal8 ? " lit8" : "",
			    ev->nonsync ? " nonsync" : "");
		dump_args(b, ev->args, ev->n_args);
		if (d->o->abort_at_begin) {
			buf_xappend(b, " -> abort", 9);
			imap_parser_abort_command(d->p);
		}
		buf_xappend(b, "\n", 1);
		return true;
	case IMAP_PARSE_LITERAL_DATA:
		if (!d->in_data)
			buf_xappend(b, "DATA ", 5);
		d->in_data = true;
		assert_true(ev->len > 0);
		esc(b, ev->data, ev->len);
		return true;
	case IMAP_PARSE_LITERAL_END:
		buf_xprintf(b, "END #%u%s\n", ev->literal_index, ev->nul ? " nul" : "");
		return true;
	case IMAP_PARSE_LINE:
		buf_xappend(b, "LINE ", 5);
		esc(b, ev->data, ev->len);
		buf_xappend(b, "\n", 1);
		assert_int_equal(ev->data[ev->len], 0);
		return true;
	case IMAP_PARSE_ERROR:
		buf_xprintf(b, "ERR %d %s %s%s%s\n", (int)ev->error, ev->tag ? ev->tag : "*",
			    ev->msg, ev->nonsync ? " (nonsync)" : "", ev->fatal ? " FATAL" : "");
		assert_non_null(ev->msg);
		return true;
	}
	return false;
}

static void drv_chunk(struct drv *d, struct buf *pending, const void *p, size_t n)
{
	buf_xappend(pending, p, n);
	for (;;) {
		struct imap_parse_event ev;
		size_t used = imap_parser_feed(d->p, pending->data, pending->len, &ev);
		assert_true(used <= pending->len);
		bool more = on_event(d, &ev);
		if (!more)
			assert_int_equal(used, pending->len);
		buf_consume(pending, used);
		if (!more)
			break;
	}
}

struct guarded {
	uint8_t *map;
	size_t maplen;
	uint8_t *p;
};

static void guard(struct guarded *g, const void *s, size_t n)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (n + pg - 1) / pg + 1;
	g->maplen = pages * pg;
	g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(g->map != MAP_FAILED);
	assert_int_equal(mprotect(g->map + g->maplen - pg, pg, PROT_NONE), 0);
	g->p = g->map + g->maplen - pg - n;
	memcpy(g->p, s, n);
}

/* Whole input straight from guarded memory (consumed bytes are not
 * re-buffered: the rest is offered again from the same memory). */
static char *run_whole(const struct opts *o, const char *in, size_t len)
{
	struct drv d = { .o = o };
	d.p = imap_parser_new(&o->set);
	struct guarded g;
	guard(&g, in, len);
	size_t off = 0;
	for (;;) {
		struct imap_parse_event ev;
		size_t used = imap_parser_feed(d.p, g.p + off, len - off, &ev);
		assert_true(used <= len - off);
		off += used;
		if (!on_event(&d, &ev)) {
			assert_int_equal(off, len);
			break;
		}
	}
	munmap(g.map, g.maplen);
	end_data(&d);
	imap_parser_free(&d.p);
	assert_null(d.p);
	buf_xappend(&d.out, "", 1);
	return (char *)d.out.data;
}

/* split == 0: one byte at a time; else two chunks [0, split), [split, len) */
static char *run_split(const struct opts *o, const char *in, size_t len, size_t split)
{
	struct drv d = { .o = o };
	d.p = imap_parser_new(&o->set);
	struct buf pending = BUF_INIT(0);
	if (split == 0) {
		for (size_t i = 0; i < len; i++)
			drv_chunk(&d, &pending, in + i, 1);
	} else {
		drv_chunk(&d, &pending, in, split);
		drv_chunk(&d, &pending, in + split, len - split);
	}
	assert_int_equal(pending.len, 0);
	buf_deinit(&pending);
	end_data(&d);
	imap_parser_free(&d.p);
	buf_xappend(&d.out, "", 1);
	return (char *)d.out.data;
}

static void check_all_splits(const struct opts *o, const char *in, size_t len, const char *want)
{
	char *got = run_whole(o, in, len);
	if (strcmp(got, want) != 0)
		fail_msg("input:\n%.*s\ngot:\n%s\nwant:\n%s", (int)len, in, got, want);
	free(got);
	got = run_split(o, in, len, 0);
	if (strcmp(got, want) != 0)
		fail_msg("byte by byte, input:\n%.*s\ngot:\n%s\nwant:\n%s", (int)len, in, got, want);
	free(got);
	for (size_t i = 1; i < len; i++) {
		got = run_split(o, in, len, i);
		if (strcmp(got, want) != 0)
			fail_msg("split at %zu, input:\n%.*s\ngot:\n%s\nwant:\n%s", i, (int)len, in,
				 got, want);
		free(got);
	}
}

struct tcase {
	const char *in;
	const char *want;
	size_t len; /* 0: strlen(in) */
};
/* Most cases leave len out (strlen); a case whose input holds NUL: */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define NC(in, want) { in, want, sizeof(in) - 1 }

static void run_table(const struct opts *o, const struct tcase *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_all_splits(o, t[i].in, t[i].len ? t[i].len : strlen(t[i].in), t[i].want);
}

/* ---- commands as clients send them -------------------------------------- */

static void test_clients(void **state)
{
	(void)state;
	static const struct tcase t[] = {
		{ "a1 NOOP\r\n", "CMD a1 NOOP\n" },
		{ "1 capability\r\n2 Logout\r\n", "CMD 1 CAPABILITY\nCMD 2 LOGOUT\n" },
		/* Thunderbird: LOGIN with quoted strings, escapes */
		{ "3 login \"fred\" \"p\\\"w\\\\d\"\r\n",
		  "CMD 3 LOGIN q\"fred\" q\"p\"w\\x5cd\"\n" },
		/* synchronising literals (RFC 9051 4.3) */
		{ "a001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n",
		  "CONT a001 11\nCONT a001 7 l{FRED FOOBAR}\nCMD a001 LOGIN l{FRED FOOBAR} "
		  "l{fat man}\n" },
		/* RFC 7888 3 example, LITERAL+ */
		{ "A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n",
		  "CMD A001 LOGIN l+{FRED FOOBAR} l+{fat man}\n" },
		{ "s SELECT INBOX\r\n", "CMD s SELECT a:INBOX\n" },
		{ "s2 select \"Entw&APw-rfe\"\r\n", "CMD s2 SELECT q\"Entw&APw-rfe\"\n" },
		/* Thunderbird/mbsync fetches */
		{ "5 UID fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n",
		  "CMD 5 UID FETCH a:1:*  ( a:FLAGS a:BODY.PEEK[HEADER.FIELDS (From Subject)] )\n" },
		{ "6 UID FETCH 100:200 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
		  "(\"From\" \"To\" \"Date\")]<0.2048>)\r\n",
		  "CMD 6 UID FETCH a:100:200  ( a:UID a:RFC822.SIZE a:FLAGS "
		  "a:BODY.PEEK[HEADER.FIELDS (\"From\" \"To\" \"Date\")]<0.2048> )\n" },
		{ "7 FETCH 1 (BODY[] BINARY.PEEK[1.2]<0.10> BODYSTRUCTURE)\r\n",
		  "CMD 7 FETCH n:1  ( a:BODY[] a:BINARY.PEEK[1.2]<0.10> a:BODYSTRUCTURE )\n" },
		{ "8 FETCH 1:4 ALL\r\n", "CMD 8 FETCH a:1:4 a:ALL\n" },
		{ "9 UID STORE 5 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n",
		  "CMD 9 UID STORE n:5 a:+FLAGS.SILENT  ( a:\\x5cSeen a:\\x5cDeleted a:$Junk )\n" },
		/* ID with nested list and NIL (RFC 2971) */
		{ "10 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\" \"x\" NIL)\r\n",
		  "CMD 10 ID  ( q\"name\" q\"Thunderbird\" q\"version\" q\"115.0\" q\"x\" nil:NIL )\n" },
		{ "11 ID NIL\r\n", "CMD 11 ID nil:NIL\n" },
		/* LIST-EXTENDED with selection and return options (RFC 5258) */
		{ "12 LIST (SUBSCRIBED) \"\" (\"INBOX\" \"Sent\") RETURN (CHILDREN STATUS "
		  "(MESSAGES UNSEEN))\r\n",
		  "CMD 12 LIST  ( a:SUBSCRIBED ) q\"\"  ( q\"INBOX\" q\"Sent\" ) a:RETURN  ( "
		  "a:CHILDREN a:STATUS  ( a:MESSAGES a:UNSEEN ) )\n" },
		{ "13 LIST \"\" %\r\n14 LSUB \"\" *\r\n",
		  "CMD 13 LIST q\"\" a:%\nCMD 14 LSUB q\"\" a:*\n" },
		/* SEARCH with CHARSET and a literal holding UTF-8 */
		{ "15 UID SEARCH CHARSET UTF-8 SUBJECT {4}\r\nb\xc3\xa4r UNDELETED\r\n",
		  "CONT 15 4 a:CHARSET a:UTF-8 a:SUBJECT\nCMD 15 UID SEARCH a:CHARSET a:UTF-8 "
		  "a:SUBJECT l{b\\xc3\\xa4r} a:UNDELETED\n" },
		{ "16 SEARCH OR (FROM \"a\" TO \"b\") NOT SEEN 1:5,7\r\n",
		  "CMD 16 SEARCH a:OR  ( a:FROM q\"a\" a:TO q\"b\" ) a:NOT a:SEEN a:1:5,7\n" },
		/* UTF-8 in a quoted string (IMAP4rev2) */
		{ "17 SELECT \"Entw\xc3\xbcrfe\"\r\n", "CMD 17 SELECT q\"Entw\\xc3\\xbcrfe\"\n" },
		{ "18 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
		  "CMD 18 STATUS a:blurdybloop  ( a:UIDNEXT a:MESSAGES )\n" },
		{ "19 ENABLE IMAP4rev2 UTF8=ACCEPT\r\n", "CMD 19 ENABLE a:IMAP4rev2 a:UTF8=ACCEPT\n" },
		/* AUTHENTICATE with the responses as raw lines */
		{ "20 AUTHENTICATE PLAIN\r\nAGZyZWQAc2VjcmV0\r\n21 NOOP\r\n",
		  "CMD 20 AUTHENTICATE a:PLAIN\nLINE AGZyZWQAc2VjcmV0\nCMD 21 NOOP\n" },
		{ "22 AUTHENTICATE PLAIN AGZyZWQAc2VjcmV0\r\n*\r\n",
		  "CMD 22 AUTHENTICATE a:PLAIN a:AGZyZWQAc2VjcmV0\nLINE *\n" },
		{ "23 IDLE\r\nDONE\r\n", "CMD 23 IDLE\nLINE DONE\n" },
		/* tags may hold "]" and "."; names are upper-cased */
		{ "a]1.2 noop\r\n", "CMD a]1.2 NOOP\n" },
		/* numbers and NIL */
		{ "n x 0 18446744073709551615 18446744073709551616 nIl\r\n",
		  "CMD n X n:0 n:18446744073709551615 a:18446744073709551616 nil:nIl\n" },
		/* empty strings and lists, zero-length literals */
		{ "e X \"\" () {0}\r\n {0+}\r\n\r\n",
		  "CONT e 0 q\"\"  ( )\nCMD e X q\"\"  ( ) l{} l+{}\n" },
		/* literal8 (RFC 3516) may hold NUL */
		NC("b X ~{3+}\r\na\0b\r\n", "CMD b X l8+0{a\\x00b}\n"),
		/* literal inside a list, then more */
		{ "c X (a {2}\r\nbc d) e\r\n", "CONT c 2  ( a:a )\nCMD c X  ( a:a l{bc} a:d ) a:e\n" },
		/* bare LF line ends (accepted, like Dovecot) */
		{ "d1 NOOP\nd2 LOGIN {1+}\nx y\n", "CMD d1 NOOP\nCMD d2 LOGIN l+{x} a:y\n" },
		/* liberal spacing */
		{ "f  X  ( a  b )  c \r\n", "CMD f X  ( a:a a:b ) a:c\n" },
		/* special-use names and wildcards as atoms */
		{ "g CREATE [Gmail]/Sent\r\n", "CMD g CREATE a:[Gmail]/Sent\n" },
		{ "h APPEND \"~{x}\" bod[y\r\n", "CMD h APPEND q\"~{x}\" a:bod[y\n" },
	};
	struct opts o = { .set = { .nonsync = IMAP_NONSYNC_PLUS } };
	run_table(&o, t, N_ELEMENTS(t));
}

/* ---- APPEND streaming --------------------------------------------------- */

static void test_append_stream(void **state)
{
	(void)state;
	static const struct tcase t[] = {
		/* Apple Mail: flags, date, synchronising literal */
		{ "A3 APPEND Drafts (\\Seen \\Draft) \"05-Jan-2024 10:00:00 +0100\" {12}\r\n"
		  "Subject: x\r\n\r\n",
		  "CONT A3 12 stream a:Drafts  ( a:\\x5cSeen a:\\x5cDraft ) q\"05-Jan-2024 "
		  "10:00:00 +0100\"\nBEGIN A3 #0 12 a:Drafts  ( a:\\x5cSeen a:\\x5cDraft ) "
		  "q\"05-Jan-2024 10:00:00 +0100\"\nDATA Subject: x\\x0d\\x0a\nEND #0\nCMD A3 "
		  "APPEND\n" },
		/* MULTIAPPEND (RFC 3502) with LITERAL+ and a literal8 message */
		NC("m APPEND {5+}\r\nSaved {3+}\r\nabc (\\Seen) ~{2+}\r\nd\0 {0+}\r\n\r\n",
		   "BEGIN m #0 3 nonsync l+{Saved}\nDATA abc\nEND #0\nBEGIN m #1 2 lit8 nonsync  ( "
		   "a:\\x5cSeen )\nDATA d\\x00\nEND #1 nul\nBEGIN m #2 0 nonsync\nEND #2\nCMD m "
		   "APPEND\n"),
		/* the message literal is the data: a command inside it is not one */
		{ "x APPEND INBOX {16+}\r\ny DELETE INBOX\r\n\r\nz NOOP\r\n",
		  "BEGIN x #0 16 nonsync a:INBOX\nDATA y DELETE INBOX\\x0d\\x0a\nEND #0\nCMD x "
		  "APPEND\nCMD z NOOP\n" },
		/* a syntax error after the message: the engine drops what it got */
		{ "y APPEND INBOX {1+}\r\nq(\r\nz NOOP\r\n",
		  "BEGIN y #0 1 nonsync a:INBOX\nDATA q\nEND #0\nERR 1 y Missing space between "
		  "arguments\nCMD z NOOP\n" },
		/* UID APPEND is not streamed; a list literal is not either */
		{ "u UID APPEND INBOX {1+}\r\nq\r\n", "CMD u UID APPEND a:INBOX l+{q}\n" },
		{ "c APPEND INBOX CATENATE (TEXT {1+}\r\nq)\r\n",
		  "CMD c APPEND a:INBOX a:CATENATE  ( a:TEXT l+{q} )\n" },
	};
	struct opts o = { .set = { .nonsync = IMAP_NONSYNC_PLUS, .stream_append = true } };
	run_table(&o, t, N_ELEMENTS(t));

	/* The engine refuses the message (NO [TRYCREATE], APPENDLIMIT...):
	 * nothing is read, the next command follows. */
	static const struct tcase refused[] = {
		{ "r APPEND Nope {5000}\r\ns NOOP\r\n",
		  "CONT r 5000 stream a:Nope -> refuse\nCMD s NOOP\n" },
	};
	struct opts o2 = o;
	o2.refuse_over = 100;
	run_table(&o2, refused, N_ELEMENTS(refused));

	/* The engine aborts at LITERAL_BEGIN: the data and the rest of the
	 * command (including a further non-synchronising literal) go. */
	static const struct tcase aborted[] = {
		{ "a APPEND INBOX {3+}\r\nabc (\\Seen) {4+}\r\n1234\r\nb NOOP\r\n",
		  "BEGIN a #0 3 nonsync a:INBOX -> abort\nCMD b NOOP\n" },
		{ "a APPEND INBOX {3}\r\nabc\r\nb NOOP\r\n",
		  "CONT a 3 stream a:INBOX\nBEGIN a #0 3 a:INBOX -> abort\nCMD b NOOP\n" },
	};
	struct opts o3 = o;
	o3.abort_at_begin = true;
	run_table(&o3, aborted, N_ELEMENTS(aborted));
}

/* ---- errors and resynchronisation --------------------------------------- */

static void test_errors(void **state)
{
	(void)state;
	static const struct tcase t[] = {
		{ "\r\na NOOP\r\n", "ERR 2 * Empty command line\nCMD a NOOP\n" },
		{ "+ x\r\n", "ERR 1 * Invalid tag\n" },
		{ "a*b NOOP\r\n", "ERR 1 * Invalid tag\n" },
		{ "abc\r\n", "ERR 1 abc Missing command\n" },
		{ "abc \r\n", "ERR 1 abc Missing command\n" },
		{ "a NO(OP\r\n", "ERR 1 a Invalid command name\n" },
		{ "a UID\r\n", "ERR 1 a Missing or invalid command after UID\n" },
		{ "a X \"abc\r\nb NOOP\r\n", "ERR 1 a Unterminated quoted string\nCMD b NOOP\n" },
		{ "a X \"a\\b\"\r\n", "ERR 1 a Invalid escape in quoted string\n" },
		{ "a X (b\r\n", "ERR 1 a Missing )\n" },
		{ "a X b)\r\n", "ERR 1 a Unexpected )\n" },
		{ "a X \"b\"c\r\n", "ERR 1 a Missing space between arguments\n" },
		{ "a X b\"c\"\r\n", "ERR 1 a Missing space between arguments\n" },
		NC("a X b\0c\r\nb NOOP\r\n", "ERR 1 a NUL in command line\nCMD b NOOP\n"),
		NC("a X \"b\0\"\r\n", "ERR 1 a NUL in command line\n"),
		{ "a X b\xc3\xa4\r\n", "ERR 1 a 8-bit character in atom\n" },
		{ "a X b\tc\r\n", "ERR 1 a Control character in command line\n" },
		{ "a X b\rc\r\n", "ERR 1 a Control character in command line\n" },
		{ "a X {x}\r\n", "ERR 1 a Invalid literal\n" },
		{ "a X {}\r\n", "ERR 1 a Invalid literal\n" },
		{ "a X {5}x\r\n", "ERR 1 a Literal must end the line\n" },
		{ "a FETCH 1 BODY[HEADER\r\n", "ERR 1 a Missing ] in fetch attribute\n" },
		{ "a FETCH 1 BODY[{3}]\r\n", "ERR 1 a Invalid character in fetch section\n" },
		/* A literal with NUL: the rest of it is still data, then the
		 * line; the next command is parsed. */
		NC("a X {3}\r\n\0ab\r\nb NOOP\r\n", "CONT a 3\nERR 1 a NUL in literal\nCMD b NOOP\n"),
		NC("a X {3}\r\n\0\r\nb NOOP\r\n", "CONT a 3\nERR 1 a NUL in literal\n"),
		NC("a X {4+}\r\nx\0y\n z\r\nb NOOP\r\n", "ERR 1 a NUL in literal\nCMD b NOOP\n"),
		/* An error early in a line that ends with a non-synchronising
		 * literal: the literal (holding a fake command) is skipped too,
		 * RFC 7888 3. Also through several lines. */
		{ "a X ( {17+}\r\nz DELETE INBOX\r\n\r\nb NOOP\r\n",
		  "ERR 1 a Missing )\nCMD b NOOP\n" },
		{ "a X \"q {6+}\r\nc LIST {4+}\r\nd xx x\r\nb NOOP\r\n",
		  "ERR 1 a Unterminated quoted string\nCMD b NOOP\n" },
		/* ...but a synchronising one gets no "+", so the client has
		 * given up: what follows is the next command. */
		{ "a X \"q {5}\r\nb NOOP\r\n", "ERR 1 a Unterminated quoted string\nCMD b NOOP\n" },
		/* non-synchronising size out of range: cannot resynchronise */
		{ "a X {99999999999999999999+}\r\nb NOOP\r\n",
		  "ERR 5 a Literal size out of range (nonsync) FATAL\n" },
		{ "a X {99999999999999999999}\r\nb NOOP\r\n",
		  "ERR 5 a Literal too large\nCMD b NOOP\n" },
		{ "a X ~{5}\r\nabcde\r\n", "CONT a 5 lit8\nCMD a X l8{abcde}\n" },
		{ "~ X ~ ~a\r\n", "CMD ~ X a:~ a:~a\n" },
	};
	struct opts o = { .set = { .nonsync = IMAP_NONSYNC_PLUS } };
	run_table(&o, t, N_ELEMENTS(t));
}

/* ---- limits ------------------------------------------------------------- */

static void test_limits(void **state)
{
	(void)state;
	static const struct tcase t[] = {
		/* max_line 16: a 16-octet line passes, 17 do not; CR is not counted */
		{ "a X 123456789012\r\n", "CMD a X n:123456789012\n" },
		{ "a X 1234567890123\r\nb NOOP\r\n", "ERR 3 a Line too long\nCMD b NOOP\n" },
		{ "a X 123456789012345678901234567890\r\nb NOOP\r\n",
		  "ERR 3 a Line too long\nCMD b NOOP\n" },
		{ "abcdefghijklmnopqrstuvwxyz\r\nb NOOP\n", "ERR 3 * Line too long\nCMD b NOOP\n" },
		/* an over-long line that ends with {n+}: its data is skipped */
		{ "a X aaaaaaaaaaaaaaaaaaaaaaa {6+}\r\nc X y\r\nb NOOP\r\n",
		  "ERR 3 a Line too long\nCMD b NOOP\n" },
		/* literal limits: sync refused before any data (NO [TOOBIG]) */
		{ "a X {33}\r\nb NOOP\r\n", "ERR 5 a Literal too large\nCMD b NOOP\n" },
		{ "a X {32}\r\n12345678901234567890123456789012\r\n",
		  "CONT a 32\nCMD a X l{12345678901234567890123456789012}\n" },
		/* non-synchronising over the limit: read and dropped (BAD [TOOBIG]) */
		{ "a X {33+}\r\n123456789012345678901234567890123\r\nb NOOP\r\n",
		  "ERR 5 a Literal too large (nonsync)\nCMD b NOOP\n" },
		/* command total: 16 + 32 + 32 > 64 */
		{ "a X {32}\r\n12345678901234567890123456789012 {32}\r\nb NOOP\r\n",
		  "CONT a 32\nERR 5 a Command too large\nCMD b NOOP\n" },
		/* argument count and nesting */
		{ "a X 1 2 3 4 5 6\r\n", "ERR 4 a Too many arguments\n" },
		{ "a X 1 2 3 4 5\r\n", "CMD a X n:1 n:2 n:3 n:4 n:5\n" },
		{ "a X (((\r\n", "ERR 4 a Lists nested too deeply\n" },
		{ "a X ((x))\r\n", "CMD a X  (  ( a:x ) )\n" },
		/* raw lines */
		{ "a IDLE\r\n12345678901234567\r\nDONE\r\n",
		  "CMD a IDLE\nERR 3 * Line too long\nERR 1 DONE Missing command\n" },
		NC("a IDLE\r\nDO\0NE\r\nb NOOP\r\n", "CMD a IDLE\nERR 1 * NUL in line\nCMD b NOOP\n"),
	};
	struct opts o = { .set = { .nonsync = IMAP_NONSYNC_PLUS,
				   .max_line = 16,
				   .max_literal = 32,
				   .max_command = 64,
				   .max_args = 5,
				   .max_depth = 2 } };
	run_table(&o, t, N_ELEMENTS(t));
}

static void test_nonsync_modes(void **state)
{
	(void)state;
	char big[5000 + 64];
	int k = snprintf(big, sizeof big, "a X {4097+}\r\n");
	memset(big + k, 'x', 4097);
	k += 4097;
	k += snprintf(big + k, sizeof big - (size_t)k, "\r\nb NOOP\r\n");
	/* LITERAL- (and IMAP4rev2): over 4096 octets is TOOBIG, data dropped */
	struct opts minus = { .set = { .nonsync = IMAP_NONSYNC_MINUS } };
	char *got = run_whole(&minus, big, (size_t)k);
	assert_string_equal(got,
			    "ERR 5 a Non-synchronizing literal over 4096 octets (LITERAL-) "
			    "(nonsync)\nCMD b NOOP\n");
	free(got);
	got = run_split(&minus, big, (size_t)k, 0);
	assert_string_equal(got,
			    "ERR 5 a Non-synchronizing literal over 4096 octets (LITERAL-) "
			    "(nonsync)\nCMD b NOOP\n");
	free(got);
	/* LITERAL+: accepted (limit 64 KiB by default) */
	struct opts plus = { .set = { .nonsync = IMAP_NONSYNC_PLUS } };
	got = run_whole(&plus, big, (size_t)k);
	assert_true(strncmp(got, "CMD a X l+{xxxx", 15) == 0);
	assert_non_null(strstr(got, "}\nCMD b NOOP\n"));
	free(got);
	/* neither: an error, but the data is still not read as commands */
	static const struct tcase none[] = {
		{ "a X {8+}\r\nb NOOP\r\n\r\nc NOOP\r\n",
		  "ERR 1 a Non-synchronizing literals are not supported (nonsync)\nCMD c NOOP\n" },
		{ "a X {4}\r\nb NO\r\n", "CONT a 4\nCMD a X l{b NO}\n" },
	};
	struct opts nonsync_none = { .set = { .nonsync = IMAP_NONSYNC_NONE } };
	run_table(&nonsync_none, none, N_ELEMENTS(none));
	/* a small literal under LITERAL- */
	static const struct tcase small[] = {
		{ "a X {3+}\r\nabc\r\n", "CMD a X l+{abc}\n" },
	};
	run_table(&minus, small, N_ELEMENTS(small));
}

/* Settings change between commands (e.g. bigger literals after LOGIN);
 * imap_parser_idle() tells whether a command is half read. */
static void test_settings_idle(void **state)
{
	(void)state;
	struct imap_parser_settings set = { .max_literal = 10 };
	struct imap_parser *p = imap_parser_new(&set);
	struct imap_parse_event ev;
	assert_true(imap_parser_idle(p));
	const char *a = "a X {20}\r\n";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)a, strlen(a), &ev), strlen(a));
	assert_int_equal(ev.type, IMAP_PARSE_ERROR);
	assert_int_equal(ev.error, IMAP_PERR_TOOBIG);
	assert_false(ev.nonsync);
	assert_int_equal(ev.literal_size, 20);
	set.max_literal = 100;
	imap_parser_set_settings(p, &set);
	const char *b = "b X {20}\r\n";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)b, strlen(b), &ev), strlen(b));
	assert_int_equal(ev.type, IMAP_PARSE_CONTINUATION);
	assert_false(imap_parser_idle(p));
	imap_parser_literal_accept(p);
	const char *c = "01234567890123456789";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)c, strlen(c), &ev), strlen(c));
	assert_int_equal(ev.type, IMAP_PARSE_MORE);
	assert_false(imap_parser_idle(p)); /* the line end is still to come */
	const char *d = " (x";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)d, strlen(d), &ev), strlen(d));
	assert_false(imap_parser_idle(p));
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)")\n", 2, &ev), 2);
	assert_int_equal(ev.type, IMAP_PARSE_COMMAND);
	assert_int_equal(ev.n_args, 2);
	assert_true(imap_parser_idle(p));
	/* an error that leaves a non-synchronising literal to skip */
	const char *e = "c X ( {5+}\r\n";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)e, strlen(e), &ev), strlen(e));
	assert_int_equal(ev.type, IMAP_PARSE_MORE); /* LITERAL- allows 5 octets */
	assert_false(imap_parser_idle(p));
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)"12345\r\n", 7, &ev), 7);
	assert_int_equal(ev.type, IMAP_PARSE_ERROR); /* Missing ) */
	assert_true(imap_parser_idle(p));
	imap_parser_free(&p);
	imap_parser_free(&p); /* NULL is fine */
}

/* A streamed message larger than the buffered limits, chunked. */
static void test_append_big(void **state)
{
	(void)state;
	size_t n = 200000;
	char *in = malloc(n + 128);
	int k = snprintf(in, 128, "A APPEND INBOX {%zu+}\r\n", n);
	for (size_t i = 0; i < n; i++)
		in[(size_t)k + i] = (char)('a' + i % 26);
	size_t len = (size_t)k + n;
	memcpy(in + len, "\r\n", 2);
	len += 2;
	struct imap_parser_settings set = { .nonsync = IMAP_NONSYNC_PLUS, .stream_append = true,
					    .max_line = 64, .max_command = 256 };
	struct imap_parser *p = imap_parser_new(&set);
	size_t off = 0, got = 0, chunk = 4093;
	bool ended = false, done = false;
	while (!done) {
		size_t end = off + chunk < len ? off + chunk : len;
		struct imap_parse_event ev;
		size_t used = imap_parser_feed(p, (const uint8_t *)in + off, end - off, &ev);
		off += used;
		switch (ev.type) {
		case IMAP_PARSE_LITERAL_DATA:
			assert_memory_equal(ev.data, in + k + got, ev.len);
			got += ev.len;
			break;
		case IMAP_PARSE_LITERAL_BEGIN:
			assert_int_equal(ev.literal_size, n);
			break;
		case IMAP_PARSE_LITERAL_END:
			ended = true;
			break;
		case IMAP_PARSE_COMMAND:
			done = true;
			break;
		case IMAP_PARSE_MORE:
			assert_true(off < len);
			break;
		default:
			fail_msg("unexpected event %d", (int)ev.type);
		}
	}
	assert_true(ended);
	assert_int_equal(got, n);
	assert_int_equal(off, len);
	assert_true(imap_parser_idle(p));
	imap_parser_free(&p);
	free(in);
}

/* ---- accessors and FETCH attribute split -------------------------------- */

static void test_accessors(void **state)
{
	(void)state;
	struct imap_parser *p = imap_parser_new(NULL);
	const char *in = "t X atom NIL 42 \"q\" {1+}\r\nl ~{1+}\r\nm (x)\r\n";
	struct imap_parse_event ev;
	size_t used = imap_parser_feed(p, (const uint8_t *)in, strlen(in), &ev);
	/* LITERAL+ is not on by default (LITERAL-): 1 octet is fine anyway */
	assert_int_equal(ev.type, IMAP_PARSE_COMMAND);
	assert_int_equal(used, strlen(in));
	assert_int_equal(ev.n_args, 7);
	const struct imap_arg *a = ev.args;
	const char *s;
	size_t n;
	uint64_t num;
	const struct imap_arg *l;
	assert_true(imap_arg_get_atom(&a[0], &s, &n) && n == 4 && memcmp(s, "atom", 4) == 0);
	assert_false(imap_arg_get_string(&a[0], &s, &n));
	assert_true(imap_arg_get_astring(&a[0], &s, &n));
	assert_false(imap_arg_get_nstring(&a[0], &s, &n));
	assert_true(imap_arg_atom_equals(&a[0], "ATOM"));
	assert_false(imap_arg_atom_equals(&a[0], "ATO"));
	assert_true(imap_arg_get_nstring(&a[1], &s, &n) && s == NULL && n == 0);
	assert_true(imap_arg_get_astring(&a[1], &s, &n) && n == 3);
	assert_true(imap_arg_get_number(&a[2], &num) && num == 42);
	assert_true(imap_arg_get_astring(&a[2], &s, &n) && strcmp(s, "42") == 0);
	assert_false(imap_arg_get_number(&a[0], &num));
	assert_true(imap_arg_get_string(&a[3], &s, &n) && strcmp(s, "q") == 0);
	assert_true(imap_arg_get_nstring(&a[3], &s, &n) && strcmp(s, "q") == 0);
	assert_true(imap_arg_get_string(&a[4], &s, &n) && strcmp(s, "l") == 0);
	assert_false(imap_arg_get_string(&a[5], &s, &n)); /* literal8 is not a string */
	assert_false(imap_arg_get_astring(&a[5], &s, &n));
	assert_int_equal(a[5].type, IMAP_ARG_LITERAL);
	assert_true(imap_arg_get_list(&a[6], &l, &n) && n == 1 && imap_arg_atom_equals(&l[0], "x"));
	assert_int_equal(l[1].type, IMAP_ARG_EOL);
	assert_false(imap_arg_get_list(&a[0], &l, &n));
	assert_false(imap_arg_get_atom(&a[7], &s, &n)); /* EOL */
	assert_false(imap_arg_get_atom(NULL, &s, &n));
	imap_parser_free(&p);
}

static void test_fetch_att(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int ok;
		const char *name, *section;
		bool part;
		uint64_t off, len;
	} t[] = {
		{ "FLAGS", 1, "FLAGS", NULL, false, 0, 0 },
		{ "BODY[]", 1, "BODY", "", false, 0, 0 },
		{ "BODY.PEEK[HEADER.FIELDS (From \"a]b\")]<0.100>", 1, "BODY.PEEK",
		  "HEADER.FIELDS (From \"a]b\")", true, 0, 100 },
		{ "BINARY.PEEK[1.2]<5.7>", 1, "BINARY.PEEK", "1.2", true, 5, 7 },
		{ "BODY[1]<0.0>", 0, NULL, NULL, false, 0, 0 },
		{ "BODY[1]<0>", 0, NULL, NULL, false, 0, 0 },
		{ "BODY[1]<0.5>x", 0, NULL, NULL, false, 0, 0 },
		{ "BODY[1", 0, NULL, NULL, false, 0, 0 },
		{ "BODY[1]x", 0, NULL, NULL, false, 0, 0 },
		{ "[1]", 0, NULL, NULL, false, 0, 0 },
		{ "BODY<1.2>", 1, "BODY", NULL, true, 1, 2 },
		{ "BODY[]<99999999999999999999.1>", 0, NULL, NULL, false, 0, 0 },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct imap_fetch_att r;
		int got = imap_fetch_att_split(t[i].in, strlen(t[i].in), &r);
		if (!t[i].ok) {
			if (got != -1)
				fail_msg("%s: accepted", t[i].in);
			continue;
		}
		if (got != 0)
			fail_msg("%s: refused", t[i].in);
		assert_int_equal(r.name_len, strlen(t[i].name));
		assert_memory_equal(r.name, t[i].name, r.name_len);
		assert_int_equal(r.has_section, t[i].section != NULL);
		if (t[i].section) {
			assert_int_equal(r.section_len, strlen(t[i].section));
			assert_memory_equal(r.section, t[i].section, r.section_len);
		}
		assert_int_equal(r.has_partial, t[i].part);
		assert_int_equal(r.partial_off, t[i].off);
		assert_int_equal(r.partial_len, t[i].len);
	}
}

/* Misuse of the API is our bug: ASSERT fires (checked in a child). */
static void test_fatal_misuse(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct imap_parser *p = imap_parser_new(NULL);
		const char *in = "a X {3}\r\nabc\r\n";
		struct imap_parse_event ev;
		size_t used = imap_parser_feed(p, (const uint8_t *)in, strlen(in), &ev);
		if (ev.type != IMAP_PARSE_CONTINUATION)
			_exit(1);
		/* feeding without accept/refuse */
		fclose(stderr);
		imap_parser_feed(p, (const uint8_t *)in + used, strlen(in) - used, &ev);
		_exit(2);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
}

/* SASL: raw line after raw line (SCRAM's final challenge is asked for
 * while the previous client line is still the current event). */
static void test_raw_lines_in_a_row(void **state)
{
	(void)state;
	struct imap_parser_settings ps;
	memset(&ps, 0, sizeof ps);
	struct imap_parser *p = imap_parser_new(&ps);
	static const char *const in[] = { "a AUTHENTICATE X\r\n", "abc\r\n", "\r\n", "b NOOP\r\n" };
	struct imap_parse_event ev;
	for (size_t i = 0; i < 4; i++) {
		memset(&ev, 0, sizeof ev);
		size_t used = imap_parser_feed(p, (const uint8_t *)in[i], strlen(in[i]), &ev);
		if (ev.type == IMAP_PARSE_MORE)
			used += imap_parser_feed(p, (const uint8_t *)in[i] + used,
						 strlen(in[i]) - used, &ev);
		assert_int_equal(used, strlen(in[i]));
		if (i == 0 || i == 3) {
			assert_int_equal(ev.type, IMAP_PARSE_COMMAND);
			assert_string_equal(ev.name, i == 0 ? "AUTHENTICATE" : "NOOP");
		} else {
			assert_int_equal(ev.type, IMAP_PARSE_LINE);
			assert_int_equal(ev.len, i == 1 ? 3 : 0);
			if (i == 1)
				assert_memory_equal(ev.data, "abc", 3);
		}
		if (i < 2)
			imap_parser_read_line(p);
	}
	imap_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clients),     cmocka_unit_test(test_append_stream),
		cmocka_unit_test(test_errors),      cmocka_unit_test(test_limits),
		cmocka_unit_test(test_nonsync_modes), cmocka_unit_test(test_append_big),
		cmocka_unit_test(test_accessors),   cmocka_unit_test(test_fetch_att),
		cmocka_unit_test(test_fatal_misuse), cmocka_unit_test(test_settings_idle),
		cmocka_unit_test(test_raw_lines_in_a_row),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
