/* SPDX-License-Identifier: MIT */
/* APPEND (RFC 9051 6.3.12) with MULTIAPPEND (RFC 3502), literal8 (RFC 3516)
 * and APPENDUID (RFC 4315). The message literals are streamed by the
 * reader (LITERAL_BEGIN / DATA / END) into the app's append_begin / write /
 * commit; the tagged reply comes with the COMMAND event that closes the
 * line. For a synchronising literal append_begin runs before "+" is sent,
 * so a missing mailbox is refused with NO [TRYCREATE] before any data.
 *
 * All or nothing (RFC 3502 6.3.11): each message is only ended
 * (append_end: durable but invisible) when its literal ends; the COMMAND
 * event that closes the line commits all of them at once (append_commit)
 * and answers OK [APPENDUID v uid-set] (RFC 4315 3). Any failure before
 * that (a refused begin, a write or end failure, a bad later argument, a
 * later literal refused as too big, the connection dropped) aborts every
 * message of the command, so none becomes visible. */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_seqset.h"

#define APPEND_MAX_KEYWORDS 64
/* Messages in one MULTIAPPEND (each holds its parsed cache until commit). */
#define APPEND_MAX_MESSAGES 1000

void imap_append_cleanup(struct imap_server *s)
{
	if (s->ap_open) {
		s->ap_open = false;
		if (s->ops->append_abort)
			s->ops->append_abort(s->ctx, s);
	}
	s->ap_active = s->ap_failed = s->ap_wait_accept = false;
	s->ap_begun = -1;
	free(s->ap_mailbox);
	s->ap_mailbox = NULL;
	for (size_t i = 0; i < s->ap_n_kw; i++)
		free(s->ap_kw[i]);
	free(s->ap_kw);
	s->ap_kw = NULL;
	s->ap_n_kw = 0;
	free(s->ap_res.uids);
	memset(&s->ap_res, 0, sizeof s->ap_res);
	s->ap_n_msgs = 0;
	memset(&s->ap_info, 0, sizeof s->ap_info);
}

static const struct {
	const char *name;
	unsigned f;
} sysflags[] = { { "\\Seen", IMAP_F_SEEN },       { "\\Answered", IMAP_F_ANSWERED },
		 { "\\Flagged", IMAP_F_FLAGGED }, { "\\Deleted", IMAP_F_DELETED },
		 { "\\Draft", IMAP_F_DRAFT } };

static bool parse_flags(struct imap_server *s, const struct imap_arg *a)
{
	const struct imap_arg *l;
	size_t n;
	if (!imap_arg_get_list(a, &l, &n))
		return false;
	for (size_t i = 0; i < n; i++) {
		const char *p;
		size_t len;
		if (l[i].type != IMAP_ARG_ATOM || !imap_arg_get_atom(&l[i], &p, &len))
			return false;
		if (p[0] == '\\') {
			size_t k;
			for (k = 0; k < sizeof sysflags / sizeof sysflags[0]; k++)
				if (imap_arg_atom_equals(&l[i], sysflags[k].name))
					break;
			if (k == sizeof sysflags / sizeof sysflags[0])
				return false; /* \Recent and unknown system flags */
			s->ap_info.flags |= sysflags[k].f;
			continue;
		}
		if (len > 64 || memchr(p, ']', len) || s->ap_n_kw >= APPEND_MAX_KEYWORDS)
			return false;
		s->ap_kw = xrealloc(s->ap_kw, (s->ap_n_kw + 1) * sizeof *s->ap_kw);
		s->ap_kw[s->ap_n_kw++] = xstrndup(p, len);
	}
	return true;
}

/* Fail the command: reply, drop the rest of it. */
static void ap_fail(struct imap_server *s, bool at_continuation, bool bad, const char *code,
		    const char *text)
{
	if (at_continuation)
		imap_parser_literal_refuse(s->parser);
	else
		imap_parser_abort_command(s->parser);
	bool app_reply = s->reply_set;
	char *reply = app_reply ? xstrndup((const char *)s->reply.data, s->reply.len) : NULL;
	imap_append_cleanup(s);
	if (bad)
		imap_bad(s, "%s", text);
	else if (reply)
		imap_tagged(s, "NO", NULL, "%s", reply);
	else
		imap_tagged(s, "NO", code, "%s", text);
	free(reply);
}

static void begin_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		ap_fail(s, s->ap_wait_accept, false, "TRYCREATE", "Mailbox does not exist");
		return;
	}
	s->ap_open = true;
	if (s->ap_wait_accept) {
		s->ap_wait_accept = false;
		imap_parser_literal_accept(s->parser);
		buf_xprintf(&s->out, "+ Ready for literal data\r\n");
	}
}

static void begin_message(struct imap_server *s, const struct imap_parse_event *ev, bool cont)
{
	if (!s->ap_active) {
		s->ap_active = true;
		free(s->tag);
		s->tag = xstrdup(ev->tag);
		s->in_cmd = true;
		s->cmd = imap_cmd_find("APPEND");
		s->cmd_uid = false;
		if (ev->uid || !(s->state == IS_AUTH || s->state == IS_SELECTED)) {
			ap_fail(s, cont, true, NULL, "APPEND not allowed here");
			return;
		}
	}
	s->ap_begun = (int)ev->literal_index;
	if (ev->literal_index >= APPEND_MAX_MESSAGES) {
		ap_fail(s, cont, false, "LIMIT", "Too many messages in one APPEND");
		return;
	}
	const struct imap_arg *a = ev->args;
	size_t n = ev->n_args, i = 0;
	for (size_t k = 0; k < s->ap_n_kw; k++)
		free(s->ap_kw[k]);
	s->ap_n_kw = 0;
	memset(&s->ap_info, 0, sizeof s->ap_info);
	if (ev->literal_index == 0) {
		const char *p;
		size_t len;
		if (n < 1 || !imap_arg_get_astring(&a[0], &p, &len)) {
			ap_fail(s, cont, true, NULL, "APPEND needs a mailbox name");
			return;
		}
		s->ap_mailbox = imap_mailbox_from_wire(p, len, s->utf8);
		if (!s->ap_mailbox) {
			ap_fail(s, cont, false, "CANNOT", "Invalid mailbox name");
			return;
		}
		i = 1;
	}
	if (i < n && a[i].type == IMAP_ARG_LIST) {
		if (!parse_flags(s, &a[i])) {
			ap_fail(s, cont, true, NULL, "Invalid flags");
			return;
		}
		i++;
	}
	if (i < n) {
		const char *p;
		size_t len;
		if (a[i].type != IMAP_ARG_QUOTED || !imap_arg_get_string(&a[i], &p, &len) ||
		    imap_parse_datetime(p, len, &s->ap_info.internaldate, &s->ap_info.tz_min) < 0) {
			ap_fail(s, cont, true, NULL, "Invalid date-time");
			return;
		}
		i++;
	}
	if (i != n) {
		ap_fail(s, cont, true, NULL, "Invalid APPEND arguments");
		return;
	}
	if (ev->literal_size == 0) {
		ap_fail(s, cont, false, NULL, "Empty message");
		return;
	}
	s->ap_info.mailbox = s->ap_mailbox;
	s->ap_info.size = ev->literal_size;
	s->ap_info.index = ev->literal_index;
	s->ap_info.keywords = (const char *const *)s->ap_kw;
	s->ap_info.n_keywords = s->ap_n_kw;
	s->ap_info.binary = ev->literal8;
	s->ap_wait_accept = cont;
	imap_verdict(s, s->ops->append_begin(s->ctx, s, &s->ap_info), begin_done);
}

static void end_done(struct imap_server *s, enum imap_verdict v)
{
	if (v != IMAP_OK) {
		ap_fail(s, false, false, "SERVERBUG", "Append failed");
		return;
	}
	s->ap_n_msgs++;
}

static void commit_done(struct imap_server *s, enum imap_verdict v)
{
	s->ap_open = false; /* committed, or the app dropped everything */
	if (v != IMAP_OK) {
		bool app_reply = s->reply_set;
		char *reply = app_reply ? xstrndup((const char *)s->reply.data, s->reply.len)
					: NULL;
		imap_append_cleanup(s);
		if (reply)
			imap_tagged(s, "NO", NULL, "%s", reply);
		else
			imap_tagged(s, "NO", "SERVERBUG", "Append failed");
		free(reply);
		return;
	}
	struct buf code;
	buf_init(&code, 0);
	if (s->ap_res.uidvalidity && s->ap_res.n == s->ap_n_msgs && s->ap_res.n) {
		buf_xprintf(&code, "APPENDUID %u ", s->ap_res.uidvalidity);
		imap_uidlist_write(s->ap_res.uids, s->ap_res.n, &code);
	}
	char *c = xstrdup(buf_cstr(&code)); /* data is NULL when nothing was added */
	buf_deinit(&code);
	if (s->mbox && s->ap_mailbox && strcmp(s->mbox, s->ap_mailbox) == 0)
		s->need_sync = true;
	imap_append_cleanup(s);
	imap_tagged(s, "OK", *c ? c : NULL, "APPEND completed");
	free(c);
}

void imap_append_event(struct imap_server *s, const struct imap_parse_event *ev)
{
	switch (ev->type) {
	case IMAP_PARSE_CONTINUATION:
		begin_message(s, ev, true);
		return;
	case IMAP_PARSE_LITERAL_BEGIN:
		if (s->ap_begun != (int)ev->literal_index)
			begin_message(s, ev, false);
		return;
	case IMAP_PARSE_LITERAL_DATA:
		if (s->ap_open && !s->ap_failed &&
		    !s->ops->append_write(s->ctx, s, ev->data, ev->len))
			ap_fail(s, false, false, "SERVERBUG", "Write failed");
		return;
	case IMAP_PARSE_LITERAL_END:
		if (!s->ap_open)
			return;
		if (ev->nul && !ev->literal8) {
			/* RFC 9051 9: no NUL in a plain literal; literal8 for that */
			ap_fail(s, false, true, NULL, "NUL in literal (use literal8)");
			return;
		}
		imap_verdict(s, s->ops->append_end(s->ctx, s, &s->ap_info), end_done);
		return;
	case IMAP_PARSE_COMMAND:
		if (ev->n_args != 0) {
			imap_append_cleanup(s);
			imap_bad(s, "Unexpected arguments after the message");
			return;
		}
		if (!s->ap_open || s->ap_n_msgs == 0) {
			imap_append_cleanup(s);
			imap_tagged(s, "NO", "SERVERBUG", "Append failed");
			return;
		}
		memset(&s->ap_res, 0, sizeof s->ap_res);
		imap_verdict(s, s->ops->append_commit(s->ctx, s, s->ap_mailbox, &s->ap_res),
			     commit_done);
		return;
	default:
		return;
	}
}

void imap_cmd_append(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	(void)n;
	/* streamed APPENDs never get here: a message literal was missing */
	imap_bad(s, "APPEND needs a message literal");
}
