/* SPDX-License-Identifier: MIT */
/* The IMAP engine against a fake in-memory mailbox application
 * (imap_fake.h): the seed's first session without FETCH/STORE, capability
 * variants, LOGIN/AUTHENTICATE (PLAIN with SASL-IR through auth/sasl),
 * literals (synchronising, LITERAL+, TOOBIG before data), APPEND streaming
 * and MULTIAPPEND, LIST variants, STATUS, SELECT rev1 vs rev2, COPY/MOVE
 * with COPYUID, IDLE with a pushed update, STARTTLS injection, EXAMINE
 * refusing writes, the error bound. Transcripts are replayed whole, byte by
 * byte, in random splits and with every verdict PENDING, with identical
 * output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "proto/imap/imap_int.h"
#include "imap_fake.h"

enum mode { M_WHOLE, M_BYTE, M_RANDOM, M_ASYNC, M_COUNT };

struct run_opts {
	bool plaintext;
	bool starttls;
	bool literal_plus;
	uint64_t append_limit;
	void (*poke)(struct fake *f, struct imap_server *s, size_t off); /* after each feed */
};

static unsigned rnd_state = 12345;
static unsigned rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 16) & 0x7fff;
}

/* Runs a client transcript; returns the server output (malloc'd). */
static char *run_n(const struct run_opts *o, const char *in, size_t len, enum mode m,
		   struct fake *f)
{
	struct imap_server_settings set = { 0 };
	set.plaintext_auth = o->plaintext;
	set.starttls_offered = o->starttls;
	set.literal_plus = o->literal_plus;
	set.append_limit = o->append_limit;
	fk_init(f);
	f->async = m == M_ASYNC;
	struct imap_server *s = imap_server_new(&set, &fk_ops, f);
	f->s = s;
	imap_server_start(s);
	size_t off = 0, avail = 0;
	struct buf out;
	buf_init(&out, 0);
	for (int guard = 0; guard < 1000000; guard++) {
		struct buf *ob = imap_server_output(s);
		buf_xappend(&out, ob->data, ob->len);
		buf_consume(ob, ob->len);
		if (f->has_pend) {
			f->has_pend = false;
			if (f->pend_work) { /* an offloaded SEARCH/FETCH batch */
				void (*work)(struct imap_server *) = f->pend_work;
				f->pend_work = NULL;
				work(s);
			}
			imap_server_resume(s, f->pend_v);
			continue;
		}
		enum proto_want w = imap_server_want(s);
		if (w == PROTO_WANT_CLOSE)
			break;
		if (w == PROTO_WANT_STARTTLS) {
			off = avail; /* unread plaintext is dropped */
			imap_server_tls_started(s);
			continue;
		}
		if (off == avail) {
			if (avail == len)
				break;
			size_t step = m == M_WHOLE || m == M_ASYNC ? len
				      : m == M_BYTE		  ? 1
								  : 1 + rnd() % 17;
			avail = avail + step > len ? len : avail + step;
		}
		size_t used = imap_server_feed(s, (const uint8_t *)in + off, avail - off);
		off += used;
		if (o->poke)
			o->poke(f, s, off);
		if (used == 0 && !f->has_pend && imap_server_want(s) == PROTO_WANT_READ) {
			if (avail == len)
				break;
			avail++;
		}
	}
	struct buf *ob = imap_server_output(s);
	buf_xappend(&out, ob->data, ob->len);
	imap_server_free(&s);
	char *r = xstrndup((const char *)out.data, out.len);
	buf_deinit(&out);
	return r;
}

static char *run(const struct run_opts *o, const char *in, enum mode m, struct fake *f)
{
	return run_n(o, in, strlen(in), m, f);
}

/* Same output in every mode; returns the whole-mode output. */
static char *run_all_n(const struct run_opts *o, const char *in, size_t len, struct fake *f)
{
	char *ref = run_n(o, in, len, M_WHOLE, f);
	for (int m = M_BYTE; m < M_COUNT; m++) {
		struct fake g;
		for (int rep = 0; rep < (m == M_RANDOM ? 20 : 1); rep++) {
			char *x = run_n(o, in, len, (enum mode)m, &g);
			if (strcmp(ref, x) != 0)
				fprintf(stderr, "mode %d differs:\n--- whole\n%s--- this\n%s", m, ref, x);
			assert_string_equal(ref, x);
			free(x);
		}
	}
	return ref;
}

static char *run_all(const struct run_opts *o, const char *in, struct fake *f)
{
	return run_all_n(o, in, strlen(in), f);
}

static const struct run_opts plain = { .plaintext = true };

#define CAPS_PRE "CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN AUTH=LOGIN AUTH=SCRAM-SHA-256 SASL-IR LITERAL- ID ENABLE IDLE"
#define CAPS_POST                                                                                  \
	"CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL- ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT "  \
	"CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS MULTIAPPEND STATUS=SIZE "                  \
	"APPENDLIMIT=67108864 UTF8=ACCEPT ESEARCH BINARY"

static const char seed_in[] = "a001 LOGIN fred secret\r\n"
			      "a002 SELECT INBOX\r\n"
			      "a003 EXPUNGE\r\n"
			      "a004 LOGOUT\r\n";
static const char seed_out[] =
	"* OK [" CAPS_PRE "] Tern IMAP server ready\r\n"
	"a001 OK [" CAPS_POST "] Logged in\r\n"
	"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded Work)\r\n"
	"* 19 EXISTS\r\n"
	"* 2 RECENT\r\n"
	"* OK [UNSEEN 17] First unseen\r\n"
	"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded Work \\*)] Flags permitted\r\n"
	"* OK [UIDVALIDITY 1000] UIDs valid\r\n"
	"* OK [UIDNEXT 20] Predicted next UID\r\n"
	"a002 OK [READ-WRITE] SELECT completed\r\n"
	"* 8 EXPUNGE\r\n"
	"a003 OK EXPUNGE completed\r\n"
	"* BYE Logging out\r\n"
	"a004 OK Logout completed\r\n";

static void test_seed_session(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain, seed_in, &f);
	assert_string_equal(out, seed_out);
	assert_int_equal(f.box[0].n, 18);
	assert_int_equal(f.unselects, 1);
	free(out);
}

static void test_table_sorted(void **state)
{
	(void)state;
	size_t n;
	const struct imap_cmd *t = imap_cmd_table(&n);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(t[i - 1].name, t[i].name) < 0);
	assert_non_null(imap_cmd_find("IDLE"));
	assert_non_null(imap_cmd_find("FETCH"));
	assert_non_null(imap_cmd_find("STORE"));
	assert_non_null(imap_cmd_find("SEARCH"));
}

static bool has(const char *out, const char *needle)
{
	if (!strstr(out, needle)) {
		fprintf(stderr, "missing: %s\nin:\n%s", needle, out);
		return false;
	}
	return true;
}

static void test_capabilities(void **state)
{
	(void)state;
	struct fake f;
	struct run_opts o = { .starttls = true };
	char *out = run_all(&o, "a CAPABILITY\r\nb LOGIN fred secret\r\n", &f);
	assert_true(has(out, "* CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED "
			     "AUTH=SCRAM-SHA-256 SASL-IR LITERAL- ID ENABLE IDLE\r\n"));
	assert_true(has(out, "b NO [PRIVACYREQUIRED]"));
	assert_null(strstr(out, "AUTH=PLAIN"));
	free(out);
	o.literal_plus = true;
	o.plaintext = true;
	o.starttls = false;
	o.append_limit = 1000;
	out = run_all(&o, "a LOGIN fred secret\r\nb CAPABILITY\r\n", &f);
	assert_true(has(out, "LITERAL+"));
	assert_true(has(out, "APPENDLIMIT=1000"));
	assert_null(strstr(out, "STARTTLS"));
	free(out);
}

static void test_login_failures(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred wrong\r\nb LOGIN fred wrong\r\nc LOGIN fred wrong\r\n"
			    "d LOGIN fred secret\r\n",
			    &f);
	assert_true(has(out, "a NO [AUTHENTICATIONFAILED]"));
	assert_true(has(out, "* BYE Too many authentication failures\r\n"));
	assert_null(strstr(out, "d OK"));
	free(out);
}

static void test_authenticate_plain(void **state)
{
	(void)state;
	struct fake f;
	/* "\0fred\0secret" */
	char *out = run_all(&plain,
			    "a AUTHENTICATE PLAIN AGZyZWQAc2VjcmV0\r\n"
			    "b SELECT INBOX\r\n",
			    &f);
	assert_true(has(out, "a OK [CAPABILITY"));
	assert_true(has(out, "b OK [READ-WRITE]"));
	free(out);
	out = run_all(&plain, "a AUTHENTICATE PLAIN\r\nAGZyZWQAc2VjcmV0\r\nb NOOP\r\n", &f);
	assert_true(has(out, "+ \r\n"));
	assert_true(has(out, "a OK [CAPABILITY"));
	assert_true(has(out, "b OK NOOP"));
	free(out);
	out = run_all(&plain, "a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE X\r\n", &f);
	assert_true(has(out, "a BAD Authentication cancelled"));
	assert_true(has(out, "b NO [CANNOT]"));
	free(out);
	out = run_all(&plain, "a AUTHENTICATE PLAIN AGZyZWQAd3Jvbmc=\r\n", &f);
	assert_true(has(out, "a NO [AUTHENTICATIONFAILED]"));
	free(out);
	/* SCRAM: the server-first challenge comes back, a bad proof fails */
	out = run(&plain,
		      "a AUTHENTICATE SCRAM-SHA-256 biwsbj1mcmVkLHI9ck9wck5HZndFYmVSV2diTkVrcU8=\r\n"
		      "Yz1iaXdzLHI9ck9wck5HZndFYmVSV2diTkVrcU8scD1kSHpiWmFwV0lrNGpVaE4rVXRlOXl0YWc5empmTUhnc3FtbWl6N0FuZFZRPQ==\r\n",
		      M_WHOLE, &f);
	assert_true(has(out, "+ cj1yT3By"));
	assert_true(has(out, "a NO [AUTHENTICATIONFAILED]"));
	free(out);
}

static void test_literals(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain, "a LOGIN {4}\r\nfred {6}\r\nsecret\r\n", &f);
	assert_true(has(out, "+ Ready for literal data\r\n+ Ready for literal data\r\na OK"));
	free(out);
	/* LITERAL-: {n+} up to 4096 */
	out = run_all(&plain, "a LOGIN {4+}\r\nfred secret\r\nb LOGIN {5000+}\r\n", &f);
	assert_true(has(out, "a OK"));
	assert_true(has(out, "TOOBIG"));
	free(out);
	/* TOOBIG before any data for a synchronising literal over the limit */
	out = run_all(&plain, "a LOGIN fred secret\r\nb LOGIN {999999}\r\nc NOOP\r\n", &f);
	assert_true(has(out, "b NO [TOOBIG]"));
	assert_true(has(out, "c OK"));
	assert_null(strstr(out, "+ Ready"));
	free(out);
}

static void test_append(void **state)
{
	(void)state;
	struct fake f;
	static const char ap_in[] = "a LOGIN fred secret\r\n"
			    "b APPEND Sent (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {11}\r\nHello world\r\n"
			    "c APPEND Sent {3}\r\nabc (\\Draft) {2}\r\nxy\r\n"
			    "d APPEND Nope {5}\r\n"
			    "e APPEND Sent ~{3}\r\na\0b\r\n"
			    "f APPEND Sent {2}\r\na\0\r\n"
			    "g NOOP\r\n";
	char *out = run_all_n(&plain, ap_in, sizeof ap_in - 1, &f);
	assert_true(has(out, "+ Ready for literal data\r\nb OK [APPENDUID 1001 1] APPEND completed"));
	assert_true(has(out, "c OK [APPENDUID 1001 2:3] APPEND completed"));
	assert_true(has(out, "d NO [TRYCREATE]"));
	assert_true(has(out, "e OK [APPENDUID 1001 4]"));
	assert_true(has(out, "f BAD"));
	assert_true(has(out, "g OK"));
	free(out);
	assert_int_equal(f.box[1].n, 4);
	/* APPENDLIMIT: TOOBIG before the data; the selected mailbox sees EXISTS */
	struct run_opts o = { .plaintext = true, .append_limit = 10, .literal_plus = true };
	out = run_all(&o,
		      "a LOGIN fred secret\r\nb APPEND INBOX {11}\r\nc SELECT INBOX\r\n"
		      "d APPEND INBOX {3+}\r\nabc\r\n",
		      &f);
	assert_true(has(out, "b NO [TOOBIG]"));
	assert_true(has(out, "* 20 EXISTS\r\n* 1 RECENT\r\nd OK [APPENDUID 1000 20]"));
	free(out);
}

/* RFC 3502: MULTIAPPEND is all or nothing. Table: a MULTIAPPEND whose
 * later part fails, the expected answer, and how many messages the
 * mailbox must still hold (none of the command's). */
static void test_multiappend_atomic(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} t[] = {
		/* 3rd literal too big (synchronising): NO [TOOBIG] before data */
		{ "b APPEND Sent {3}\r\nabc {2}\r\nxy {50}\r\n", "b NO [TOOBIG]" },
		/* 3rd message with a bad date */
		{ "b APPEND Sent {3}\r\nabc {2}\r\nxy \"bad date\" {2}\r\nzz\r\n", "b BAD" },
		/* 3rd message with bad flags */
		{ "b APPEND Sent {3}\r\nabc {2}\r\nxy (\\Recent) {2}\r\nzz\r\n", "b BAD" },
		/* junk after the last message */
		{ "b APPEND Sent {3}\r\nabc {2}\r\nxy junk\r\n", "b BAD" },
		/* LITERAL+ and 3rd too big: the data is already on its way */
		{ "b APPEND Sent {3+}\r\nabc {2+}\r\nxy {50+}\r\n", "BAD [TOOBIG]" },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		struct run_opts o = { .plaintext = true, .append_limit = 20, .literal_plus = true };
		char in[512];
		int len = snprintf(in, sizeof in, "a LOGIN fred secret\r\n%sc NOOP\r\n", t[i].in);
		assert_true(len > 0 && (size_t)len < sizeof in);
		struct fake f;
		char *out = run_all(&o, in, &f);
		if (!strstr(out, t[i].want))
			fprintf(stderr, "case %zu:\n%s", i, out);
		assert_non_null(strstr(out, t[i].want));
		assert_null(strstr(out, "APPENDUID"));
		assert_int_equal(f.box[1].n, 0);
		assert_int_equal(f.appends, 0);
		assert_true(f.aborts >= 1);
		free(out);
	}
	/* 2nd literal with a NUL (literal8 needed): BAD, none stored */
	static const char nul_in[] = "a LOGIN fred secret\r\n"
				     "b APPEND Sent {3}\r\nabc {2}\r\nx\0\r\nc NOOP\r\n";
	struct fake g;
	char *o2 = run_all_n(&plain, nul_in, sizeof nul_in - 1, &g);
	assert_non_null(strstr(o2, "b BAD"));
	assert_non_null(strstr(o2, "c OK"));
	assert_int_equal(g.box[1].n, 0);
	assert_int_equal(g.aborts, 1);
	free(o2);
	/* success: one commit, a uid-set for all three */
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b APPEND Sent {1}\r\na (\\Seen) {1}\r\nb {1}\r\nc\r\n"
			    "c STATUS Sent (MESSAGES)\r\n",
			    &f);
	assert_non_null(strstr(out, "b OK [APPENDUID 1001 1:3] APPEND completed"));
	assert_int_equal(f.box[1].n, 3);
	assert_int_equal(f.box[1].flags[1], IMAP_F_SEEN);
	assert_int_equal(f.aborts, 0);
	free(out);
}

static void test_list(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b LIST \"\" \"\"\r\n"
			    "c LIST \"\" %\r\n"
			    "d LIST \"\" Lists/%\r\n"
			    "e LIST (SUBSCRIBED) \"\" *\r\n"
			    "f LIST (SPECIAL-USE) \"\" *\r\n"
			    "g LIST \"\" (INBOX Sent) RETURN (STATUS (MESSAGES UNSEEN))\r\n"
			    "h LSUB \"\" *\r\n"
			    "i LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %\r\n"
			    "j LIST (RECURSIVEMATCH) \"\" %\r\n"
			    "k LIST \"\" inbox\r\n",
			    &f);
	assert_true(has(out, "* LIST (\\Noselect) \"/\" \"\"\r\nb OK"));
	assert_true(has(out, "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
			     "* LIST (\\Noselect \\HasChildren) \"/\" Lists\r\n"
			     "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			     "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\nc OK"));
	assert_true(has(out, "* LIST (\\HasNoChildren) \"/\" Lists/a\r\n"
			     "* LIST (\\HasNoChildren) \"/\" Lists/b\r\nd OK"));
	assert_true(has(out, "* LIST (\\HasNoChildren \\Subscribed) \"/\" Lists/a\r\n"
			     "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" Sent\r\n"));
	assert_null(strstr(out, "\\Subscribed) \"/\" Lists/b"));
	assert_true(has(out, "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			     "* LIST (\\HasNoChildren \\Trash) \"/\" Trash\r\nf OK"));
	assert_true(has(out, "* STATUS INBOX (MESSAGES 19 UNSEEN 3)\r\n"));
	assert_true(has(out, "* STATUS Sent (MESSAGES 0 UNSEEN 0)\r\ng OK"));
	assert_true(has(out, "* LSUB () \"/\" Lists/a\r\n"));
	assert_true(has(out, "* LIST (\\Noselect \\HasChildren) \"/\" Lists (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"));
	assert_true(has(out, "j BAD"));
	assert_true(has(out, "* LIST (\\HasNoChildren) \"/\" INBOX\r\nk OK"));
	free(out);
}

static void test_mailbox_names(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b CREATE Entw&APw-rfe\r\n"
			    "c LIST \"\" Entw*\r\n"
			    "d ENABLE UTF8=ACCEPT\r\n"
			    "e LIST \"\" Entw*\r\n"
			    "f CREATE ../etc\r\n"
			    "g CREATE /abs\r\n"
			    "h CREATE Sent\r\n"
			    "i RENAME \"Entwürfe\" Drafts\r\n"
			    "j DELETE Drafts\r\n"
			    "k DELETE INBOX\r\n"
			    "l SUBSCRIBE Nope\r\n",
			    &f);
	assert_true(has(out, "b OK CREATE"));
	assert_true(has(out, "* LIST (\\HasNoChildren) \"/\" Entw&APw-rfe\r\nc OK"));
	assert_true(has(out, "* ENABLED UTF8=ACCEPT\r\n"));
	assert_true(has(out, "* LIST (\\HasNoChildren) \"/\" \"Entwürfe\"\r\ne OK"));
	assert_true(has(out, "f NO [CANNOT]"));
	assert_true(has(out, "g NO [CANNOT]"));
	assert_true(has(out, "h NO [ALREADYEXISTS]"));
	assert_true(has(out, "i OK RENAME"));
	assert_true(has(out, "j OK DELETE"));
	assert_true(has(out, "k NO [CANNOT]"));
	assert_true(has(out, "l NO [NONEXISTENT]"));
	free(out);
	char *n = imap_mailbox_from_wire("inbox/x", 7, false);
	assert_string_equal(n, "INBOX/x");
	free(n);
	assert_null(imap_mailbox_from_wire("a//b", 4, false));
	assert_null(imap_mailbox_from_wire("a/..", 4, true));
	assert_null(imap_mailbox_from_wire("a\x01", 2, true));
}

static void test_status(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT)\r\n"
			    "c STATUS Nope (MESSAGES)\r\n"
			    "d STATUS INBOX (BOGUS)\r\n",
			    &f);
	assert_true(has(out, "* STATUS INBOX (MESSAGES 19 RECENT 0 UIDNEXT 20 UIDVALIDITY 1000 "
			     "UNSEEN 3 DELETED 1 SIZE 1900)\r\nb OK"));
	assert_true(has(out, "c NO [NONEXISTENT]"));
	assert_true(has(out, "d BAD"));
	free(out);
}

static void test_select_rev2(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b ENABLE IMAP4rev2\r\n"
			    "c SELECT Sent\r\n"
			    "d EXAMINE INBOX\r\n"
			    "e EXPUNGE\r\n"
			    "f MOVE 1 Trash\r\n"
			    "g SELECT Nope\r\n"
			    "h CLOSE\r\n",
			    &f);
	assert_true(has(out, "* ENABLED IMAP4rev2\r\n"));
	assert_true(has(out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded Work)\r\n"
			     "* 0 EXISTS\r\n"
			     "* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"
			     "* OK [PERMANENTFLAGS"));
	assert_null(strstr(out, "RECENT"));
	assert_true(has(out, "* OK [CLOSED]"));
	assert_true(has(out, "* OK [PERMANENTFLAGS ()] Flags permitted\r\n"));
	assert_true(has(out, "d OK [READ-ONLY] EXAMINE completed"));
	assert_true(has(out, "e NO [READ-ONLY]"));
	assert_true(has(out, "f NO [READ-ONLY]"));
	assert_true(has(out, "g NO [NONEXISTENT]"));
	assert_true(has(out, "h BAD No mailbox selected"));
	free(out);
	assert_int_equal(f.box[0].n, 19);
}

static void test_copy_move(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b SELECT INBOX\r\n"
			    "c COPY 2:4 Trash\r\n"
			    "d UID COPY 5,7 Nope\r\n"
			    "e MOVE 1,3 Trash\r\n"
			    "f UID MOVE 19 Sent\r\n"
			    "g COPY 99 Trash\r\n"
			    "h UID EXPUNGE 1:7\r\n"
			    "i UID EXPUNGE 8\r\n"
			    "j NOOP\r\n",
			    &f);
	assert_true(has(out, "c OK [COPYUID 1002 2:4 1:3] COPY completed"));
	assert_true(has(out, "d NO [TRYCREATE]"));
	assert_true(has(out, "* OK [COPYUID 1002 1,3 4:5] Moved\r\n* 3 EXPUNGE\r\n* 1 EXPUNGE\r\ne OK MOVE"));
	assert_true(has(out, "* OK [COPYUID 1001 19 1] Moved\r\n* 17 EXPUNGE\r\nf OK"));
	assert_true(has(out, "g BAD"));
	assert_true(has(out, "h OK EXPUNGE"));
	assert_true(has(out, "* 6 EXPUNGE\r\ni OK"));
	free(out);
}

static size_t count(const char *out, const char *needle)
{
	size_t k = 0;
	for (const char *p = out; (p = strstr(p, needle)) != NULL; p++)
		k++;
	return k;
}

/* The seed's first session whole: FETCH ALL, RFC822.TEXT, STORE, EXPUNGE,
 * SEARCH RECENT (19 messages, 18 and 19 recent, 8 already \Deleted). */
static void test_seed_fetch_store_search(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a001 LOGIN fred secret\r\n"
			    "a002 SELECT INBOX\r\n"
			    "a003 FETCH 1:19 ALL\r\n"
			    "a004 FETCH 8 RFC822.TEXT\r\n"
			    "a005 STORE 8 +FLAGS (\\Deleted)\r\n"
			    "a006 EXPUNGE\r\n"
			    "a007 SEARCH RECENT\r\n"
			    "a008 LOGOUT\r\n",
			    &f);
	assert_int_equal(count(out, " FETCH (FLAGS ("), 19 + 1); /* FETCH ALL + STORE */
	assert_true(has(out, "* 1 FETCH (FLAGS (\\Seen) INTERNALDATE \"07-Feb-1994 22:32:25 -0800\" "
			     "RFC822.SIZE "));
	assert_true(has(out, "ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"message 1\" "
			     "((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\"))"));
	assert_true(has(out, "* 19 FETCH (FLAGS (\\Recent) "));
	assert_true(has(out, "a003 OK FETCH completed\r\n"));
	assert_true(has(out, "* 8 FETCH (RFC822.TEXT {31}\r\nHello Joe, this is message 8.\r\n)\r\n"
			     "a004 OK FETCH completed\r\n"));
	assert_true(has(out, "* 8 FETCH (FLAGS (\\Deleted \\Seen))\r\na005 OK STORE completed\r\n"));
	assert_true(has(out, "* 8 EXPUNGE\r\na006 OK EXPUNGE completed\r\n"));
	assert_true(has(out, "* SEARCH 17 18\r\na007 OK SEARCH completed\r\n"));
	assert_true(has(out, "a008 OK Logout completed\r\n"));
	assert_int_equal(f.box[0].n, 18);
	assert_int_equal(f.gets, f.puts);
	free(out);
}

/* Implicit \Seen on a read-write mailbox only; UID forms; STORE variants;
 * STORE refused on EXAMINE; bad arguments. */
static void test_fetch_seen_uid_store(void **state)
{
	(void)state;
	struct fake f;
	char *out = run_all(&plain,
			    "a LOGIN fred secret\r\n"
			    "b EXAMINE INBOX\r\n"
			    "c FETCH 17 BODY[TEXT]\r\n"
			    "d STORE 1 +FLAGS (\\Flagged)\r\n"
			    "e SELECT INBOX\r\n"
			    "f FETCH 17 (BODY[TEXT] UID)\r\n"
			    "g FETCH 18 BODY.PEEK[HEADER.FIELDS (Subject)]\r\n"
			    "h UID FETCH 2:3 FLAGS\r\n"
			    "i UID STORE 2 FLAGS.SILENT (\\Answered)\r\n"
			    "j STORE 3 -FLAGS (\\Seen)\r\n"
			    "k UID SEARCH UNSEEN\r\n"
			    "l SEARCH ANSWERED SUBJECT \"message 2\"\r\n"
			    "m SEARCH RETURN (COUNT) ALL\r\n"
			    "n FETCH 1 (FOO)\r\n"
			    "o STORE 1 +FLAGS (\\Recent)\r\n"
			    "p SEARCH BLAH\r\n"
			    "q UID FETCH 100 FLAGS\r\n"
			    "r STORE 1 +FLAGS (Refused)\r\n",
			    &f);
	assert_true(has(out, "r NO [LIMIT] Keyword refused"));
	assert_true(has(out, "* 17 FETCH (BODY[TEXT] {32}\r\nHello Joe, this is message 17.\r\n)\r\nc OK"));
	assert_true(has(out, "d NO [READ-ONLY]"));
	assert_true(has(out, "* 17 FETCH (BODY[TEXT] {32}\r\nHello Joe, this is message 17.\r\n UID 17 FLAGS (\\Seen))\r\nf OK"));
	assert_true(has(out, "* 18 FETCH (BODY[HEADER.FIELDS (Subject)] {23}\r\nSubject: message 18\r\n\r\n)\r\ng OK"));
	assert_true(has(out, "* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n* 3 FETCH (UID 3 FLAGS (\\Seen))\r\nh OK"));
	assert_true(has(out, "\r\ni OK STORE completed"));
	assert_null(strstr(out, "* 2 FETCH (UID 2 FLAGS (\\Answered))"));
	assert_true(has(out, "* 3 FETCH (FLAGS ())\r\nj OK"));
	assert_true(has(out, "* SEARCH 2 3 18 19\r\nk OK"));
	assert_true(has(out, "* SEARCH 2\r\nl OK"));
	assert_true(has(out, "* ESEARCH (TAG \"m\") COUNT 19\r\nm OK"));
	assert_true(has(out, "n BAD"));
	assert_true(has(out, "o BAD"));
	assert_true(has(out, "p BAD"));
	assert_true(has(out, "q OK FETCH completed"));
	assert_true(f.box[0].flags[16] & IMAP_F_SEEN);
	assert_true(f.box[0].flags[1] & IMAP_F_ANSWERED);
	assert_int_equal(f.gets, f.puts);
	/* bodies (c, f, g), SEARCH SUBJECT (l) and the STOREs that reach the
	 * app (i, j, r) go through ops->offload; UID FETCH 2:3 FLAGS and SEARCH
	 * UNSEEN on 19 messages do not */
	assert_int_equal(f.offloads, 7);
	free(out);
}

/* An offloaded FETCH (the app answers PENDING and runs the work later, as
 * a job thread does): batches stay near the high-water mark, the output is
 * only written on the resume, and the whole answer equals the inline one. */
static void test_fetch_offloaded_streaming(void **state)
{
	(void)state;
	struct fake f;
	fk_big_body = 300 * 1024;
	struct imap_server_settings set = { .plaintext_auth = true };
	fk_init(&f);
	f.async = true;
	struct imap_server *s = imap_server_new(&set, &fk_ops, &f);
	imap_server_start(s);
	const char *in = "a LOGIN fred secret\r\nb SELECT INBOX\r\nc FETCH 1:3 BODY.PEEK[]\r\n";
	size_t used = 0, total = 0;
	unsigned rounds = 0;
	bool done = false;
	while (!done && rounds < 10000) {
		rounds++;
		struct buf *o = imap_server_output(s);
		assert_true(o->len <= 2 * IMAP_FETCH_HIWAT + 3 * IMAP_FETCH_CHUNK);
		total += o->len;
		done = o->len && memmem(o->data, o->len, "c OK FETCH", 10) != NULL;
		buf_consume(o, o->len);
		if (f.has_pend) {
			f.has_pend = false;
			if (f.pend_work) {
				/* while the work is out, nothing is written */
				size_t before = imap_server_output(s)->len;
				assert_int_equal(imap_server_want(s), PROTO_WANT_PENDING);
				void (*work)(struct imap_server *) = f.pend_work;
				f.pend_work = NULL;
				work(s);
				assert_int_equal(s->out.len, before);
			}
			imap_server_resume(s, f.pend_v);
			continue;
		}
		if (used < strlen(in) && imap_server_want(s) == PROTO_WANT_READ)
			used += imap_server_feed(s, (const uint8_t *)in + used, strlen(in) - used);
	}
	assert_true(done);
	assert_true(f.offloads > 3);
	assert_true(total > 3 * 300 * 1024);
	imap_server_free(&s);
	assert_int_equal(f.gets, f.puts);
	fk_big_body = 0;
}

/* FETCH streams: output stops near the high-water mark with want() PENDING
 * and continues as the connection drains it. */
static void test_fetch_streaming(void **state)
{
	(void)state;
	struct fake f;
	fk_big_body = 300 * 1024;
	struct imap_server_settings set = { .plaintext_auth = true };
	fk_init(&f);
	struct imap_server *s = imap_server_new(&set, &fk_ops, &f);
	imap_server_start(s);
	const char *in = "a LOGIN fred secret\r\nb SELECT INBOX\r\nc FETCH 1:3 BODY.PEEK[]\r\nd NOOP\r\n";
	size_t used = imap_server_feed(s, (const uint8_t *)in, strlen(in));
	assert_true(used < strlen(in)); /* NOOP waits */
	assert_int_equal(imap_server_want(s), PROTO_WANT_PENDING);
	size_t total = 0, rounds = 0;
	bool done = false;
	while (!done && rounds < 1000) {
		struct buf *o = imap_server_output(s);
		assert_true(o->len <= IMAP_FETCH_HIWAT + 3 * IMAP_FETCH_CHUNK);
		total += o->len;
		done = memmem(o->data, o->len, "c OK FETCH", 10) != NULL;
		buf_consume(o, o->len);
		rounds++;
	}
	assert_true(done);
	assert_true(rounds > 3);
	assert_true(total > 3 * 300 * 1024);
	assert_int_equal(imap_server_want(s), PROTO_WANT_READ);
	used += imap_server_feed(s, (const uint8_t *)in + used, strlen(in) - used);
	assert_int_equal(used, strlen(in));
	struct buf *ob = imap_server_output(s);
	assert_non_null(memmem(ob->data, ob->len, "d OK", 4));
	/* a timeout in the middle of a FETCH drops it cleanly */
	const char *in2 = "e FETCH 1:* BODY.PEEK[]\r\n";
	imap_server_feed(s, (const uint8_t *)in2, strlen(in2));
	assert_int_equal(imap_server_want(s), PROTO_WANT_PENDING);
	imap_server_timeout(s);
	assert_int_equal(imap_server_want(s), PROTO_WANT_CLOSE);
	imap_server_free(&s);
	assert_int_equal(f.gets, f.puts);
	fk_big_body = 0;
}

/* IDLE: a delivery while idling is pushed at once. */
static void poke_deliver(struct fake *f, struct imap_server *s, size_t off)
{
	(void)off;
	if (f->sel >= 0 && s->idle && f->box[0].n == 19 && !f->has_pend) {
		fk_msg(&f->box[0], 0);
		imap_server_mailbox_changed(s);
	}
}

static void test_idle(void **state)
{
	(void)state;
	struct fake f;
	struct run_opts o = { .plaintext = true, .poke = poke_deliver };
	/* byte by byte, so the delivery lands while idling */
	char *out = run(&o,
			"a LOGIN fred secret\r\nb SELECT INBOX\r\nc IDLE\r\nDONE\r\n"
			"d IDLE\r\nnope\r\ne NOOP\r\n",
			M_BYTE, &f);
	assert_true(has(out, "+ idling\r\n* 20 EXISTS\r\n* 1 RECENT\r\nc OK IDLE terminated\r\n"));
	assert_true(has(out, "d BAD Expected DONE"));
	assert_true(has(out, "e OK NOOP"));
	free(out);
}

/* The selected mailbox deleted by another session: the next sync ends the
 * session with BYE and no tagged answer (Dovecot's behaviour), in IDLE at
 * once. The poke deletes it as soon as it is selected (byte by byte). */
static bool poke_in_idle;
static void poke_delete(struct fake *f, struct imap_server *s, size_t off)
{
	(void)off;
	if (f->sel >= 0 && f->box[f->sel].exists && !f->has_pend && (!poke_in_idle || s->idle)) {
		f->box[f->sel].exists = false;
		imap_server_mailbox_changed(s);
	}
}

static void test_selected_mailbox_gone(void **state)
{
	(void)state;
	struct fake f;
	struct run_opts o = { .plaintext = true, .poke = poke_delete };
	{
		enum mode m = M_BYTE; /* the poke needs a feed between SELECT and NOOP */
		poke_in_idle = false;
		char *out = run(&o, "a LOGIN fred secret\r\nb SELECT Sent\r\nc NOOP\r\nd NOOP\r\n",
				m, &f);
		assert_true(has(out, "b OK"));
		assert_true(has(out, "* BYE Selected mailbox was deleted"));
		assert_null(strstr(out, "c OK"));
		assert_null(strstr(out, "ALERT"));
		assert_null(strstr(out, "\r\nd "));
		assert_true(f.unselects >= 1);
		free(out);
	}
	poke_in_idle = true;
	char *out = run(&o, "a LOGIN fred secret\r\nb SELECT Sent\r\nc IDLE\r\nDONE\r\nd NOOP\r\n",
			M_BYTE, &f);
	assert_true(has(out, "+ idling\r\n* BYE Selected mailbox was deleted"));
	assert_null(strstr(out, "c OK"));
	assert_null(strstr(out, "d OK"));
	free(out);
	/* our own DELETE of the selected mailbox deselects (no BYE) */
	out = run_all(&plain, "a LOGIN fred secret\r\nb SELECT Sent\r\nc DELETE Sent\r\nd NOOP\r\n",
		      &f);
	assert_true(has(out, "c OK"));
	assert_true(has(out, "d OK"));
	assert_null(strstr(out, "BYE"));
	free(out);
}

/* Runs every PENDING verdict of the async fake (and offloaded work). */
static void drain_pending(struct fake *f, struct imap_server *s)
{
	while (f->has_pend) {
		f->has_pend = false;
		if (f->pend_work) {
			void (*work)(struct imap_server *) = f->pend_work;
			f->pend_work = NULL;
			work(s);
		}
		imap_server_resume(s, f->pend_v);
	}
}

static void feed_str(struct fake *f, struct imap_server *s, const char *in)
{
	size_t n = strlen(in), off = 0;
	while (off < n) {
		off += imap_server_feed(s, (const uint8_t *)in + off, n - off);
		drain_pending(f, s);
	}
}

/* A shutdown that arrives while IDLE's sync is PENDING (the daemon's job
 * thread) ends the session when the sync returns, as it does for an IDLE
 * that is not syncing; it must not wait for the client's DONE. */
static void test_idle_shutdown_during_sync(void **state)
{
	(void)state;
	struct fake f;
	struct imap_server_settings set = { .plaintext_auth = true };
	fk_init(&f);
	f.async = true;
	struct imap_server *s = imap_server_new(&set, &fk_ops, &f);
	f.s = s;
	imap_server_start(s);
	feed_str(&f, s, "a LOGIN fred secret\r\nb SELECT INBOX\r\n");
	const char *idle = "c IDLE\r\n";
	assert_int_equal(imap_server_feed(s, (const uint8_t *)idle, strlen(idle)), strlen(idle));
	assert_true(f.has_pend); /* the sync at IDLE's start */
	imap_server_shutdown(s);
	drain_pending(&f, s);
	struct buf *ob = imap_server_output(s);
	assert_non_null(memmem(ob->data, ob->len, "+ idling", 8));
	assert_non_null(memmem(ob->data, ob->len, "* BYE Server shutting down", 26));
	assert_int_equal(imap_server_want(s), PROTO_WANT_CLOSE);
	imap_server_free(&s);
	/* the same with a change pushed while idling */
	fk_init(&f);
	f.async = true;
	s = imap_server_new(&set, &fk_ops, &f);
	f.s = s;
	imap_server_start(s);
	feed_str(&f, s, "a LOGIN fred secret\r\nb SELECT INBOX\r\nc IDLE\r\n");
	assert_int_equal(imap_server_want(s), PROTO_WANT_READ);
	fk_msg(&f.box[0], 0);
	imap_server_mailbox_changed(s);
	assert_true(f.has_pend);
	imap_server_shutdown(s);
	drain_pending(&f, s);
	ob = imap_server_output(s);
	assert_non_null(memmem(ob->data, ob->len, "* 20 EXISTS", 11));
	assert_non_null(memmem(ob->data, ob->len, "* BYE Server shutting down", 26));
	assert_int_equal(imap_server_want(s), PROTO_WANT_CLOSE);
	imap_server_free(&s);
}

/* COPY/MOVE whose messages all went meanwhile (another session expunged
 * them; this one has not synced): the app copies nothing and says so with
 * n = 0. The answer is a plain OK without COPYUID (RFC 4315 3 has nothing
 * to report), and building it must not read a NULL buffer (UBSan). */
static enum imap_verdict copy_none(void *ctx, struct imap_server *s, const uint32_t *uids,
				   size_t n, const char *dest, bool move,
				   struct imap_copy_result *r)
{
	(void)ctx;
	(void)s;
	(void)uids;
	(void)n;
	(void)dest;
	(void)move;
	r->uidvalidity = 7;
	r->n = 0;
	return IMAP_OK;
}

static void test_copy_nothing_left(void **state)
{
	(void)state;
	struct fake f;
	struct imap_server_ops ops = fk_ops;
	ops.copy = copy_none;
	struct imap_server_settings set = { .plaintext_auth = true };
	fk_init(&f);
	struct imap_server *s = imap_server_new(&set, &ops, &f);
	f.s = s;
	imap_server_start(s);
	feed_str(&f, s, "a LOGIN fred secret\r\nb SELECT INBOX\r\nc COPY 1 Sent\r\n"
			"d UID MOVE 2 Sent\r\n");
	struct buf *ob = imap_server_output(s);
	char *out = xstrndup((const char *)ob->data, ob->len);
	assert_true(has(out, "c OK COPY completed"));
	assert_null(strstr(out, "COPYUID"));
	assert_true(has(out, "d OK MOVE completed"));
	free(out);
	imap_server_free(&s);
}

static void test_starttls_injection(void **state)
{
	(void)state;
	struct fake f;
	struct run_opts o = { .starttls = true };
	char *out = run(&o, "a STARTTLS\r\nb LOGIN fred secret\r\n", M_WHOLE, &f);
	assert_true(has(out, "a OK Begin TLS"));
	assert_null(strstr(out, "b "));
	free(out);
	out = run(&o, "a STARTTLS\r\n", M_WHOLE, &f);
	free(out);
	out = run_all(&o, "a CAPABILITY\r\nb STARTTLS extra\r\n", &f);
	assert_true(has(out, "b BAD"));
	free(out);
}

static void test_error_bound(void **state)
{
	(void)state;
	struct fake f;
	struct buf in;
	buf_init(&in, 0);
	for (int i = 0; i < 30; i++)
		buf_xprintf(&in, "x%d FROB\r\n", i);
	char *out = run_all(&plain, buf_cstr(&in), &f);
	assert_true(has(out, "x19 BAD Unknown command\r\n* BYE Too many invalid commands\r\n"));
	assert_null(strstr(out, "x20"));
	free(out);
	buf_deinit(&in);
	out = run_all(&plain, "a FETCH 1 FLAGS\r\nb LOGIN fred secret\r\nc NOOP\r\n"
			      "d ID (\"name\" \"x\")\r\ne NAMESPACE\r\nf LOGOUT x\r\n",
		      &f);
	assert_true(has(out, "a BAD Log in first"));
	assert_true(has(out, "* ID (\"name\" \"Tern\")\r\nd OK"));
	assert_true(has(out, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\ne OK"));
	assert_true(has(out, "f BAD"));
	free(out);
}

static void test_helpers(void **state)
{
	(void)state;
	assert_true(imap_list_match("*", 1, "a/b", 3));
	assert_true(imap_list_match("%", 1, "ab", 2));
	assert_false(imap_list_match("%", 1, "a/b", 3));
	assert_true(imap_list_match("a/%", 3, "a/b", 3));
	assert_true(imap_list_match("*b", 2, "a/b", 3));
	assert_false(imap_list_match("a", 1, "ab", 2));
	int64_t t;
	int tz;
	assert_int_equal(imap_parse_datetime(" 7-Feb-1994 21:52:25 -0800", 26, &t, &tz), 0);
	assert_int_equal(t, 760686745);
	assert_int_equal(tz, -480);
	assert_int_equal(imap_parse_datetime("07-Foo-1994 21:52:25 -0800", 26, &t, &tz), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_session),   cmocka_unit_test(test_table_sorted),
		cmocka_unit_test(test_capabilities),   cmocka_unit_test(test_login_failures),
		cmocka_unit_test(test_authenticate_plain), cmocka_unit_test(test_literals),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_multiappend_atomic),         cmocka_unit_test(test_list),
		cmocka_unit_test(test_mailbox_names),  cmocka_unit_test(test_status),
		cmocka_unit_test(test_select_rev2),    cmocka_unit_test(test_copy_move),
		cmocka_unit_test(test_copy_nothing_left),
		cmocka_unit_test(test_fetch_offloaded_streaming),
		cmocka_unit_test(test_idle),
		cmocka_unit_test(test_idle_shutdown_during_sync),
		cmocka_unit_test(test_selected_mailbox_gone),           cmocka_unit_test(test_starttls_injection),
		cmocka_unit_test(test_seed_fetch_store_search),
		cmocka_unit_test(test_fetch_seen_uid_store),
		cmocka_unit_test(test_fetch_streaming),
		cmocka_unit_test(test_error_bound),    cmocka_unit_test(test_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
