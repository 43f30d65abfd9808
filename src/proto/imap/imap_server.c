/* SPDX-License-Identifier: MIT */
/* The I/O-free IMAP server engine: feeding the command reader, literal
 * continuation policy, tagged/untagged output, verdict bookkeeping (OK / NO
 * / PENDING and resume), the sequence map and untagged updates, and the
 * session events (STARTTLS, timeout, shutdown). The command table is in
 * imap_cmds.c and each command in its cmd_<name>.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "base/util.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_quote.h"
#include "proto/imap/imap_seqset.h"
#include "proto/imap/imap_utf7.h"

/* ---- setup ----------------------------------------------------------------- */

static void parser_settings(const struct imap_server *s, struct imap_parser_settings *ps)
{
	memset(ps, 0, sizeof *ps);
	ps->max_line = s->set.max_line;
	ps->max_literal = s->state == IS_NOAUTH ? s->set.max_literal_preauth : s->set.max_literal;
	ps->max_stream_literal = s->set.append_limit;
	ps->nonsync = s->set.literal_plus ? IMAP_NONSYNC_PLUS : IMAP_NONSYNC_MINUS;
	ps->stream_append = s->state != IS_NOAUTH;
}

void imap_reset_parser_limits(struct imap_server *s)
{
	struct imap_parser_settings ps;
	parser_settings(s, &ps);
	imap_parser_set_settings(s->parser, &ps);
}

static void new_parser(struct imap_server *s)
{
	struct imap_parser_settings ps;
	parser_settings(s, &ps);
	imap_parser_free(&s->parser);
	s->parser = imap_parser_new(&ps);
}

struct imap_server *imap_server_new(const struct imap_server_settings *set,
				    const struct imap_server_ops *ops, void *ctx)
{
	struct imap_server *s = xcalloc(1, sizeof *s);
	s->set = *set;
	if (!s->set.hostname)
		s->set.hostname = "localhost";
	if (!s->set.greeting)
		s->set.greeting = "Tern IMAP server ready";
	if (!s->set.id_name)
		s->set.id_name = "Tern";
	if (!s->set.append_limit)
		s->set.append_limit = IMAP_DEF_APPEND_LIMIT;
	if (!s->set.max_literal)
		s->set.max_literal = IMAP_PARSER_DEF_MAX_LITERAL;
	if (!s->set.max_literal_preauth)
		s->set.max_literal_preauth = IMAP_PREAUTH_LITERAL;
	if (!s->set.max_errors)
		s->set.max_errors = IMAP_DEF_MAX_ERRORS;
	if (!s->set.max_auth_failures)
		s->set.max_auth_failures = IMAP_DEF_MAX_AUTH_FAILURES;
	s->ops = ops;
	s->ctx = ctx;
	s->tls = set->tls_active;
	if (s->tls)
		s->set.starttls_offered = false;
	buf_init(&s->out, 0);
	buf_init(&s->reply, 0);
	buf_init(&s->tagged, 0);
	buf_init(&s->alert, 0);
	buf_init(&s->fetch_buf, 0);
	s->state = IS_NOAUTH;
	s->ap_begun = -1;
	new_parser(s);
	return s;
}

static void cmd_scratch_free(struct imap_server *s)
{
	free(s->arg_name);
	free(s->arg_name2);
	s->arg_name = s->arg_name2 = NULL;
	free(s->arg_uids);
	s->arg_uids = NULL;
	s->n_arg_uids = 0;
	s->cmd_step = 0;
	s->arg_flag = false;
	if (s->cmd_free && s->cmd_state)
		s->cmd_free(s->cmd_state);
	s->cmd_state = NULL;
	s->cmd_free = NULL;
	for (size_t i = 0; i < s->n_list; i++)
		free(s->list[i].name);
	s->n_list = 0;
}

void imap_server_free(struct imap_server **sp)
{
	struct imap_server *s = *sp;
	if (!s)
		return;
	imap_fetch_cleanup(s);
	imap_append_cleanup(s);
	imap_deselect(s);
	imap_sasl_end(s);
	cmd_scratch_free(s);
	free(s->list);
	imap_parser_free(&s->parser);
	buf_deinit(&s->out);
	buf_deinit(&s->reply);
	buf_deinit(&s->tagged);
	buf_deinit(&s->alert);
	buf_deinit(&s->fetch_buf);
	free(s->tag);
	free(s->user);
	free(s->login_user);
	free(s->uids);
	free(s);
	*sp = NULL;
}

void imap_server_start(struct imap_server *s)
{
	/* RFC 9051 7.1.1: a CAPABILITY code in the greeting saves a round trip */
	buf_xappend(&s->out, "* OK [", 6);
	imap_capability_list(s, &s->out);
	buf_xprintf(&s->out, "] %s\r\n", s->set.greeting);
}

enum proto_want imap_server_want(const struct imap_server *s)
{
	if (s->state == IS_LOGOUT)
		return PROTO_WANT_CLOSE;
	if (s->state == IS_TLS_WAIT)
		return PROTO_WANT_STARTTLS;
	if (s->pending || s->fetch_active)
		return PROTO_WANT_PENDING;
	return PROTO_WANT_READ;
}

struct buf *imap_server_output(struct imap_server *s)
{
	if (s->fetch_active && !s->pending && s->out.len < IMAP_FETCH_HIWAT)
		imap_fetch_pump(s);
	return &s->out;
}

/* ---- capability ----------------------------------------------------------- */

bool imap_plaintext_ok(const struct imap_server *s)
{
	return s->tls || s->set.plaintext_auth;
}

void imap_capability_list(const struct imap_server *s, struct buf *b)
{
	buf_xprintf(b, "CAPABILITY IMAP4rev1 IMAP4rev2");
	if (s->state == IS_NOAUTH || s->state == IS_TLS_WAIT) {
		if (!s->tls && s->set.starttls_offered)
			buf_xprintf(b, " STARTTLS");
		if (imap_plaintext_ok(s))
			buf_xprintf(b, " AUTH=PLAIN AUTH=LOGIN");
		else
			buf_xprintf(b, " LOGINDISABLED");
		if (s->ops->scram_creds)
			buf_xprintf(b, " AUTH=SCRAM-SHA-256");
		buf_xprintf(b, " SASL-IR");
	}
	buf_xprintf(b, " %s ID ENABLE IDLE", s->set.literal_plus ? "LITERAL+" : "LITERAL-");
	if (s->state != IS_NOAUTH && s->state != IS_TLS_WAIT) {
		/* RFC 9051 7.2.2: after login, the capabilities of the
		 * authenticated state */
		buf_xprintf(b, " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE"
			       " LIST-EXTENDED LIST-STATUS MULTIAPPEND STATUS=SIZE"
			       " APPENDLIMIT=%llu UTF8=ACCEPT",
			    (unsigned long long)s->set.append_limit);
		if (!s->set.no_fetch_caps)
			buf_xprintf(b, " ESEARCH BINARY");
	}
}

/* ---- responses ---------------------------------------------------------------- */

static void append_text(struct buf *b, const char *text)
{
	size_t n = strlen(text);
	if (n > 900)
		n = 900;
	for (size_t i = 0; i < n; i++) {
		char c = text[i];
		if ((unsigned char)c < 0x20 || c == 0x7f)
			c = ' ';
		buf_xappend(b, &c, 1);
	}
}

static void vline(struct buf *b, const char *tag, const char *status, const char *code,
		  const char *fmt, va_list ap)
{
	char *text = NULL;
	if (vasprintf(&text, fmt, ap) < 0)
		panic("vasprintf failed");
	buf_xprintf(b, "%s %s ", tag, status);
	if (code && *code)
		buf_xprintf(b, "[%s] ", code);
	append_text(b, text);
	buf_xappend(b, "\r\n", 2);
	free(text);
}

void imap_untagged(struct imap_server *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_xappend(&s->out, "* ", 2);
	if (buf_vprintf(&s->out, fmt, ap) < 0)
		panic("output buffer over its cap");
	buf_xappend(&s->out, "\r\n", 2);
	va_end(ap);
}

void imap_server_reply(struct imap_server *s, const char *code, const char *fmt, ...)
{
	va_list ap;
	buf_clear(&s->reply);
	char *text = NULL;
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		panic("vasprintf failed");
	va_end(ap);
	if (code && *code) {
		buf_xprintf(&s->reply, "[");
		append_text(&s->reply, code);
		buf_xprintf(&s->reply, "] ");
	}
	append_text(&s->reply, text);
	free(text);
	s->reply_set = true;
}

void imap_server_alert(struct imap_server *s, const char *text)
{
	buf_xappend(&s->alert, "* OK [ALERT] ", 13);
	append_text(&s->alert, text);
	buf_xappend(&s->alert, "\r\n", 2);
}

static void flush_alert(struct imap_server *s)
{
	if (s->alert.len) {
		buf_xappend(&s->out, s->alert.data, s->alert.len);
		buf_clear(&s->alert);
	}
}

static void log_refusal(struct imap_server *s, const char *line, size_t len)
{
	if (!s->ops->log_refusal)
		return;
	char *t = xstrndup(line, len >= 2 ? len - 2 : len);
	s->ops->log_refusal(s->ctx, s, s->cmd ? s->cmd->name : "-", t);
	free(t);
}

static void check_limits(struct imap_server *s)
{
	if (s->state == IS_LOGOUT)
		return;
	if (s->errors >= s->set.max_errors)
		imap_logout(s, "Too many invalid commands");
	else if (s->auth_failures >= s->set.max_auth_failures)
		imap_logout(s, "Too many authentication failures");
}

static void cmd_clear(struct imap_server *s)
{
	free(s->tag);
	s->tag = NULL;
	s->cmd = NULL;
	s->cmd_uid = false;
	s->in_cmd = false;
	cmd_scratch_free(s);
	s->reply_set = false;
	buf_clear(&s->reply);
}

static void emit_tagged(struct imap_server *s)
{
	flush_alert(s);
	buf_xappend(&s->out, s->tagged.data, s->tagged.len);
	buf_clear(&s->tagged);
	cmd_clear(s);
	if (s->shutdown_req && s->state != IS_LOGOUT && s->state != IS_TLS_WAIT)
		imap_logout(s, "Server shutting down");
}

/* ---- untagged updates ---------------------------------------------------------- */

void imap_write_flags(struct buf *b, unsigned flags, const char *keywords)
{
	static const struct {
		unsigned f;
		const char *n;
	} names[] = { { IMAP_F_ANSWERED, "\\Answered" }, { IMAP_F_FLAGGED, "\\Flagged" },
		      { IMAP_F_DELETED, "\\Deleted" },   { IMAP_F_SEEN, "\\Seen" },
		      { IMAP_F_DRAFT, "\\Draft" } };
	bool first = true;
	buf_xappend(b, "(", 1);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (flags & names[i].f) {
			buf_xprintf(b, "%s%s", first ? "" : " ", names[i].n);
			first = false;
		}
	}
	if (keywords && *keywords) {
		/* keywords come from the store: atoms, space separated */
		buf_xprintf(b, "%s", first ? "" : " ");
		for (const char *k = keywords; *k; k++) {
			unsigned char c = (unsigned char)*k;
			if (c == ' ' || (c > 0x20 && c < 0x7f && !strchr("(){%*\"\\]", c)))
				buf_xappend(b, k, 1);
		}
	}
	buf_xappend(b, ")", 1);
}

static size_t map_find(const struct imap_server *s, uint32_t uid)
{
	size_t lo = 0, hi = s->n_uids;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t imap_server_exists(const struct imap_server *s)
{
	return (uint32_t)s->n_uids;
}

uint32_t imap_server_seq_to_uid(const struct imap_server *s, uint32_t seq)
{
	return seq >= 1 && seq <= s->n_uids ? s->uids[seq - 1] : 0;
}

uint32_t imap_server_uid_to_seq(const struct imap_server *s, uint32_t uid)
{
	size_t i = map_find(s, uid);
	return i < s->n_uids && s->uids[i] == uid ? (uint32_t)(i + 1) : 0;
}

void imap_map_set(struct imap_server *s, const uint32_t *uids, size_t n)
{
	free(s->uids);
	s->uids = xmalloc((n ? n : 1) * sizeof *uids);
	s->cap_uids = n ? n : 1;
	s->n_uids = 0;
	/* keep it strictly ascending whatever the app hands over */
	for (size_t i = 0; i < n; i++) {
		if (uids[i] && (s->n_uids == 0 || uids[i] > s->uids[s->n_uids - 1]))
			s->uids[s->n_uids++] = uids[i];
	}
}

void imap_map_remove_uid(struct imap_server *s, uint32_t uid, bool send)
{
	size_t i = map_find(s, uid);
	if (i >= s->n_uids || s->uids[i] != uid)
		return;
	memmove(s->uids + i, s->uids + i + 1, (s->n_uids - i - 1) * sizeof *s->uids);
	s->n_uids--;
	if (send)
		imap_untagged(s, "%zu EXPUNGE", i + 1);
}

static void map_add(struct imap_server *s, uint32_t uid)
{
	if (uid == 0 || (s->n_uids && uid <= s->uids[s->n_uids - 1]))
		return;
	if (s->n_uids == s->cap_uids) {
		s->cap_uids = s->cap_uids ? s->cap_uids * 2 : 16;
		s->uids = xrealloc(s->uids, s->cap_uids * sizeof *s->uids);
	}
	s->uids[s->n_uids++] = uid;
	if (uid >= s->uidnext)
		s->uidnext = uid + 1;
}

static void changes_free(struct imap_changes *c)
{
	free(c->added);
	free(c->expunged);
	for (size_t i = 0; i < c->n_changed; i++)
		free(c->changed[i].keywords);
	free(c->changed);
	memset(c, 0, sizeof *c);
}

/* RFC 9051 7.5.1 / 7.4.1: EXPUNGE (highest first so numbers stay right),
 * then EXISTS and (rev1) RECENT, then FETCH FLAGS. */
static void apply_changes(struct imap_server *s, struct imap_changes *c)
{
	if (s->state == IS_SELECTED) {
		uint32_t *ex = c->expunged;
		for (size_t i = c->n_expunged; i-- > 0;)
			imap_map_remove_uid(s, ex[i], true);
		size_t before = s->n_uids;
		for (size_t i = 0; i < c->n_added; i++)
			map_add(s, c->added[i]);
		if (s->n_uids != before || c->n_expunged) {
			if (s->n_uids != before)
				imap_untagged(s, "%zu EXISTS", s->n_uids);
			if (!s->rev2 && s->n_uids != before)
				imap_untagged(s, "%u RECENT", c->n_recent_added);
		}
		for (size_t i = 0; i < c->n_changed; i++) {
			uint32_t seq = imap_server_uid_to_seq(s, c->changed[i].uid);
			if (!seq)
				continue;
			buf_xprintf(&s->out, "* %u FETCH (UID %u FLAGS ", seq, c->changed[i].uid);
			imap_write_flags(&s->out, c->changed[i].flags, c->changed[i].keywords);
			buf_xappend(&s->out, ")\r\n", 3);
		}
	}
	changes_free(c);
}

#define GONE_BYE "Selected mailbox was deleted, have to disconnect"

/* After a sync: the app said the mailbox is gone. BYE without the tagged
 * answer (the command's own effect, if any, is done). */
static bool gone_check(struct imap_server *s)
{
	if (!s->mbox_gone)
		return false;
	s->mbox_gone = false;
	changes_free(&s->ch_res);
	buf_clear(&s->tagged);
	flush_alert(s);
	imap_logout(s, GONE_BYE);
	cmd_clear(s);
	return true;
}

static void tagged_sync_done(struct imap_server *s, enum imap_verdict v)
{
	if (gone_check(s))
		return;
	if (v == IMAP_OK)
		apply_changes(s, &s->ch_res);
	else
		changes_free(&s->ch_res);
	emit_tagged(s);
}

static bool sync_allowed(const struct imap_server *s)
{
	if (s->state != IS_SELECTED || !s->ops->sync || !s->cmd)
		return false;
	if (s->cmd->flags & ICF_USES_SEQS && !s->cmd_uid)
		return false; /* RFC 3501 5.5: no EXPUNGE after FETCH/STORE/SEARCH/COPY */
	return s->need_sync || (s->cmd->flags & ICF_SYNC);
}

static void finish(struct imap_server *s)
{
	if (sync_allowed(s)) {
		s->need_sync = false;
		memset(&s->ch_res, 0, sizeof s->ch_res);
		imap_verdict(s, s->ops->sync(s->ctx, s, &s->ch_res), tagged_sync_done);
		return;
	}
	emit_tagged(s);
}

void imap_tagged(struct imap_server *s, const char *status, const char *code, const char *fmt,
		 ...)
{
	va_list ap;
	buf_clear(&s->tagged);
	va_start(ap, fmt);
	vline(&s->tagged, s->tag ? s->tag : "*", status, code, fmt, ap);
	va_end(ap);
	if (strcmp(status, "OK") != 0)
		log_refusal(s, (const char *)s->tagged.data, s->tagged.len);
	finish(s);
}

void imap_no_app(struct imap_server *s, const char *code, const char *dflt)
{
	if (s->reply_set) {
		char *t = xstrndup((const char *)s->reply.data, s->reply.len);
		imap_tagged(s, "NO", NULL, "%s", t);
		free(t);
	} else {
		imap_tagged(s, "NO", code, "%s", dflt);
	}
}

void imap_bad(struct imap_server *s, const char *fmt, ...)
{
	va_list ap;
	flush_alert(s);
	size_t start = s->out.len;
	va_start(ap, fmt);
	vline(&s->out, s->tag ? s->tag : "*", "BAD", NULL, fmt, ap);
	va_end(ap);
	log_refusal(s, (const char *)s->out.data + start, s->out.len - start);
	cmd_clear(s);
	s->errors++;
	check_limits(s);
	if (s->shutdown_req && s->state != IS_LOGOUT)
		imap_logout(s, "Server shutting down");
}

void imap_verdict(struct imap_server *s, enum imap_verdict v, imap_resume_fn *fn)
{
	if (v == IMAP_PENDING) {
		s->pending = true;
		s->resume_fn = fn;
		return;
	}
	if (v == IMAP_OK) {
		s->reply_set = false;
		buf_clear(&s->reply);
	}
	fn(s, v);
}

void imap_server_resume(struct imap_server *s, enum imap_verdict v)
{
	ASSERT(v != IMAP_PENDING);
	ASSERT(s->pending);
	s->pending = false;
	imap_resume_fn *fn = s->resume_fn;
	s->resume_fn = NULL;
	if (s->state == IS_LOGOUT) {
		/* ended meanwhile (timeout): give back a mailbox the app just
		 * opened; drop results */
		if (v == IMAP_OK && s->cmd && s->ops->unselect &&
		    (s->cmd->fn == imap_cmd_select || s->cmd->fn == imap_cmd_examine) &&
		    s->arg_name)
			s->ops->unselect(s->ctx, s);
		changes_free(&s->ch_res);
		free(s->exp_res.uids);
		free(s->copy_res.src);
		free(s->copy_res.dst);
		free(s->ap_res.uids);
		memset(&s->ap_res, 0, sizeof s->ap_res);
		memset(&s->exp_res, 0, sizeof s->exp_res);
		memset(&s->copy_res, 0, sizeof s->copy_res);
		return;
	}
	imap_verdict(s, v, fn);
}

void imap_logout(struct imap_server *s, const char *bye)
{
	if (s->state == IS_LOGOUT)
		return;
	imap_fetch_cleanup(s);
	if (bye)
		imap_untagged(s, "BYE %s", bye);
	imap_append_cleanup(s);
	imap_deselect(s);
	imap_sasl_end(s);
	s->idle = false;
	s->state = IS_LOGOUT;
}

/* ---- account ---------------------------------------------------------------- */

void imap_auth_failed(struct imap_server *s)
{
	s->auth_failures++;
	check_limits(s);
}

void imap_login_ok(struct imap_server *s)
{
	free(s->user);
	s->user = s->login_user;
	s->login_user = NULL;
	s->state = IS_AUTH;
	imap_reset_parser_limits(s);
}

void imap_deselect(struct imap_server *s)
{
	if (s->mbox) {
		free(s->mbox);
		s->mbox = NULL;
		if (s->ops->unselect)
			s->ops->unselect(s->ctx, s);
	}
	s->n_uids = 0;
	s->need_sync = false;
	if (s->state == IS_SELECTED)
		s->state = IS_AUTH;
}

/* ---- mailbox names ------------------------------------------------------------ */

char *imap_mailbox_from_wire(const char *p, size_t n, bool utf8)
{
	struct buf b;
	buf_init(&b, 4096);
	if (utf8) {
		if (!imap_mailbox_name_utf8_ok(p, n) || buf_append(&b, p, n) < 0)
			goto bad;
	} else if (imap_utf7_to_utf8(p, n, &b) < 0) {
		goto bad;
	}
	const char *t = (const char *)b.data;
	size_t len = b.len;
	if (len == 0 || len > 512)
		goto bad;
	/* components: non-empty, not "." or "..", no controls or wildcards */
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || t[i] == '/') {
			size_t cl = i - start;
			if (cl == 0 || (cl == 1 && t[start] == '.') ||
			    (cl == 2 && t[start] == '.' && t[start + 1] == '.'))
				goto bad;
			start = i + 1;
			continue;
		}
		unsigned char c = (unsigned char)t[i];
		if (c < 0x20 || c == 0x7f || c == '%' || c == '*' || c == '\\')
			goto bad;
	}
	char *r;
	if (len >= 5 && ascii_strncasecmp(t, "INBOX", 5) == 0 && (len == 5 || t[5] == '/')) {
		r = xmalloc(len + 1);
		memcpy(r, "INBOX", 5);
		memcpy(r + 5, t + 5, len - 5);
		r[len] = '\0';
	} else {
		r = xstrndup(t, len);
	}
	buf_deinit(&b);
	return r;
bad:
	buf_deinit(&b);
	return NULL;
}

char *imap_arg_mailbox(struct imap_server *s, const struct imap_arg *a)
{
	const char *p;
	size_t n;
	if (!imap_arg_get_astring(a, &p, &n)) {
		imap_bad(s, "Mailbox name expected");
		return NULL;
	}
	char *r = imap_mailbox_from_wire(p, n, s->utf8);
	if (!r)
		imap_tagged(s, "NO", "CANNOT", "Invalid mailbox name");
	return r;
}

void imap_write_mailbox(struct imap_server *s, struct buf *b, const char *name)
{
	size_t n = strlen(name);
	if (s->utf8) {
		imap_quote_astring(b, name, n, IMAP_QUOTE_UTF8);
		return;
	}
	struct buf t;
	buf_init(&t, 0);
	if (imap_utf8_to_utf7(name, n, &t) < 0)
		buf_xappend(&t, "?", 1); /* the store only holds valid UTF-8 */
	imap_quote_astring(b, t.data, t.len, 0);
	buf_deinit(&t);
}

/* ---- sequence sets ----------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

bool imap_arg_uids(struct imap_server *s, const struct imap_arg *a, bool uid,
		   uint32_t **uids_r, size_t *n_r)
{
	const char *p;
	size_t n;
	if (!imap_arg_get_atom(a, &p, &n)) {
		imap_bad(s, "Sequence set expected");
		return false;
	}
	struct imap_seqset set = { 0 };
	const char *err = NULL;
	uint32_t star = uid ? (s->n_uids ? s->uids[s->n_uids - 1]
					 : (s->uidnext > 1 ? s->uidnext - 1 : 1))
			    : (uint32_t)s->n_uids;
	if (imap_seqset_parse(&set, p, n, star, uid ? 0 : IMAP_SEQSET_SEQ, NULL, 0, &err) < 0) {
		imap_seqset_free(&set);
		imap_bad(s, "%s", err ? err : "Invalid sequence set");
		return false;
	}
	uint32_t *v = xmalloc((s->n_uids ? s->n_uids : 1) * sizeof *v);
	size_t k = 0;
	if (uid) {
		for (size_t i = 0; i < s->n_uids; i++)
			if (imap_seqset_contains(&set, s->uids[i]))
				v[k++] = s->uids[i];
	} else {
		struct imap_seqset_iter it;
		uint32_t x;
		imap_seqset_iter_init(&it, &set);
		while (k < s->n_uids && imap_seqset_iter_next(&it, &x))
			if (x >= 1 && x <= s->n_uids)
				v[k++] = s->uids[x - 1];
		qsort(v, k, sizeof *v, cmp_u32);
	}
	imap_seqset_free(&set);
	*uids_r = v;
	*n_r = k;
	return true;
}

/* ---- LIST pattern ------------------------------------------------------------- */

bool imap_list_match(const char *pat, size_t pn, const char *name, size_t nn)
{
	/* iterative with backtracking on the last "*"; "%" backtracks within
	 * one level (bounded: the recursion depth is the number of "%") */
	size_t p = 0, n = 0;
	size_t star_p = (size_t)-1, star_n = 0;
	while (n < nn) {
		if (p < pn && pat[p] == '*') {
			star_p = p++;
			star_n = n;
		} else if (p < pn && pat[p] == '%') {
			/* try every length inside this level */
			size_t e = n;
			for (;;) {
				if (imap_list_match(pat + p + 1, pn - p - 1, name + e, nn - e))
					return true;
				if (e >= nn || name[e] == '/')
					break;
				e++;
			}
			goto backtrack;
		} else if (p < pn && pat[p] == name[n]) {
			p++;
			n++;
		} else {
		backtrack:
			if (star_p == (size_t)-1)
				return false;
			p = star_p + 1;
			n = ++star_n;
		}
	}
	while (p < pn && (pat[p] == '*' || pat[p] == '%'))
		p++;
	return p == pn;
}

/* ---- date-time --------------------------------------------------------------- */

int imap_parse_datetime(const char *p, size_t n, int64_t *t_r, int *tz_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	/* "dd-Mon-yyyy hh:mm:ss +zzzz" = 26 octets, day may be " d" */
	if (n != 26 || p[2] != '-' || p[6] != '-' || p[11] != ' ' || p[14] != ':' ||
	    p[17] != ':' || p[20] != ' ' || (p[21] != '+' && p[21] != '-'))
		return -1;
	int day;
	if (p[0] == ' ' && p[1] >= '1' && p[1] <= '9')
		day = p[1] - '0';
	else if (p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '9')
		day = (p[0] - '0') * 10 + (p[1] - '0');
	else
		return -1;
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (ascii_strncasecmp(p + 3, months + 3 * i, 3) == 0)
			mon = i;
	int v[8];
	static const int pos[8] = { 7, 9, 12, 15, 18, 22, 24, 0 };
	for (int i = 0; i < 7; i++) {
		const char *q = p + pos[i];
		if (q[0] < '0' || q[0] > '9' || q[1] < '0' || q[1] > '9')
			return -1;
		v[i] = (q[0] - '0') * 10 + (q[1] - '0');
	}
	int year = v[0] * 100 + v[1];
	if (mon < 0 || day < 1 || day > 31 || year < 1900 || v[2] > 23 || v[3] > 59 ||
	    v[4] > 60 || v[5] > 23 || v[6] > 59)
		return -1;
	/* days from civil (proleptic Gregorian) */
	int y = year - (mon < 2);
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int m = mon + 1;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + doe - 719468;
	int tz = v[5] * 60 + v[6];
	if (p[21] == '-')
		tz = -tz;
	*t_r = days * 86400 + v[2] * 3600 + v[3] * 60 + v[4] - (int64_t)tz * 60;
	*tz_r = tz;
	return 0;
}

/* ---- input ---------------------------------------------------------------------- */

static void parse_error(struct imap_server *s, const struct imap_parse_event *ev)
{
	free(s->tag);
	s->tag = ev->tag ? xstrdup(ev->tag) : NULL;
	if (s->ap_active)
		imap_append_cleanup(s);
	if (ev->fatal) {
		imap_logout(s, ev->msg ? ev->msg : "Protocol error");
		return;
	}
	if (ev->error == IMAP_PERR_EMPTY_LINE) {
		free(s->tag);
		s->tag = NULL;
		s->errors++;
		check_limits(s);
		return;
	}
	if (ev->error == IMAP_PERR_TOOBIG && s->tag && !ev->nonsync) {
		/* RFC 9051 7.1 / RFC 4469: nothing of the literal was read */
		s->cmd = NULL;
		imap_tagged(s, "NO", "TOOBIG", "%s", ev->msg ? ev->msg : "Literal too big");
		return;
	}
	imap_bad(s, "%s%s", ev->error == IMAP_PERR_TOOBIG ? "[TOOBIG] " : "",
		 ev->msg ? ev->msg : "Syntax error");
}

static void continuation(struct imap_server *s, const struct imap_parse_event *ev)
{
	if (ev->streamed) {
		imap_append_event(s, ev);
		return;
	}
	/* LOGIN's password literal under LOGINDISABLED: refuse before it is
	 * sent (RFC 9051 6.2.3) */
	if (s->state == IS_NOAUTH && ev->name && strcmp(ev->name, "LOGIN") == 0 &&
	    !imap_plaintext_ok(s)) {
		imap_parser_literal_refuse(s->parser);
		free(s->tag);
		s->tag = xstrdup(ev->tag);
		s->cmd = NULL;
		imap_tagged(s, "NO", "PRIVACYREQUIRED", "Plaintext authentication disallowed");
		return;
	}
	imap_parser_literal_accept(s->parser);
	buf_xprintf(&s->out, "+ Ready for literal data\r\n");
}

static void handle_event(struct imap_server *s, const struct imap_parse_event *ev)
{
	switch (ev->type) {
	case IMAP_PARSE_MORE:
		break;
	case IMAP_PARSE_COMMAND:
		if (s->ap_active) {
			imap_append_event(s, ev);
			break;
		}
		imap_cmd_dispatch(s, ev);
		break;
	case IMAP_PARSE_CONTINUATION:
		continuation(s, ev);
		break;
	case IMAP_PARSE_LITERAL_BEGIN:
	case IMAP_PARSE_LITERAL_DATA:
	case IMAP_PARSE_LITERAL_END:
		imap_append_event(s, ev);
		break;
	case IMAP_PARSE_LINE:
		if (s->in_sasl)
			imap_sasl_line(s, ev->data, ev->len);
		else if (s->idle)
			imap_idle_line(s, ev->data, ev->len);
		break;
	case IMAP_PARSE_ERROR:
		if (s->in_sasl || s->idle) {
			/* an overlong AUTHENTICATE/IDLE line */
			if (s->in_sasl)
				imap_sasl_end(s);
			s->idle = false;
			imap_bad(s, "%s", ev->msg ? ev->msg : "Line too long");
			break;
		}
		parse_error(s, ev);
		break;
	}
}

size_t imap_server_feed(struct imap_server *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	for (;;) {
		if (s->state == IS_LOGOUT || s->state == IS_TLS_WAIT)
			return n; /* RFC 9051 6.2.1: plaintext after STARTTLS is dropped */
		if (s->pending || s->fetch_active)
			return used;
		struct imap_parse_event ev;
		memset(&ev, 0, sizeof ev);
		used += imap_parser_feed(s->parser, p + used, n - used, &ev);
		if (ev.type == IMAP_PARSE_MORE)
			return used;
		handle_event(s, &ev);
	}
}

/* ---- session events --------------------------------------------------------------- */

void imap_server_mailbox_changed(struct imap_server *s)
{
	if (s->state != IS_SELECTED)
		return;
	s->need_sync = true;
	if (s->idle && !s->pending && s->ops->sync)
		imap_idle_line(s, NULL, 0); /* a sync during IDLE */
}

void imap_server_mailbox_gone(struct imap_server *s)
{
	if (s->state == IS_SELECTED)
		s->mbox_gone = true;
}

void imap_server_tls_started(struct imap_server *s)
{
	if (s->state == IS_LOGOUT)
		return;
	s->tls = true;
	s->set.starttls_offered = false;
	if (s->state == IS_TLS_WAIT)
		s->state = IS_NOAUTH;
	new_parser(s); /* RFC 9051 6.2.1: forget anything read before */
	if (s->shutdown_req)
		imap_logout(s, "Server shutting down");
}

void imap_server_timeout(struct imap_server *s)
{
	if (s->state == IS_LOGOUT)
		return;
	imap_logout(s, "Autologout; idle for too long");
}

void imap_server_shutdown(struct imap_server *s)
{
	s->shutdown_req = true;
	if (s->state == IS_LOGOUT || s->state == IS_TLS_WAIT || s->pending)
		return;
	/* IDLE, or a SASL exchange waiting for the client's next line */
	if (s->idle || s->in_sasl || !s->in_cmd)
		imap_logout(s, "Server shutting down");
}

const char *imap_server_user(const struct imap_server *s)
{
	return s->state == IS_AUTH || s->state == IS_SELECTED ? s->user : NULL;
}

bool imap_server_is_tls(const struct imap_server *s)
{
	return s->tls;
}

bool imap_server_rev2(const struct imap_server *s)
{
	return s->rev2;
}

const char *imap_server_selected(const struct imap_server *s)
{
	return s->state == IS_SELECTED ? s->mbox : NULL;
}

/* ---- proto_session_ops ------------------------------------------------------------ */

static size_t po_feed(void *sess, const uint8_t *p, size_t n)
{
	return imap_server_feed(sess, p, n);
}
static enum proto_want po_want(void *sess)
{
	return imap_server_want(sess);
}
static struct buf *po_output(void *sess)
{
	return imap_server_output(sess);
}
static void po_tls(void *sess, const char *version, const char *cipher)
{
	(void)version;
	(void)cipher;
	imap_server_tls_started(sess);
}
static void po_timeout(void *sess)
{
	imap_server_timeout(sess);
}
static void po_shutdown(void *sess)
{
	imap_server_shutdown(sess);
}
static void po_closed(void *sess, const char *reason)
{
	(void)reason;
	struct imap_server *s = sess;
	imap_server_free(&s);
}

const struct proto_session_ops imap_server_proto_ops = {
	po_feed, po_want, po_output, po_tls, po_timeout, po_shutdown, po_closed,
};

/* ---- IDLE (RFC 2177, RFC 9051 6.3.13) ------------------------------------------ */

static void idle_sync_done(struct imap_server *s, enum imap_verdict v)
{
	if (gone_check(s))
		return;
	if (v == IMAP_OK)
		apply_changes(s, &s->ch_res);
	else
		changes_free(&s->ch_res);
	/* a shutdown that came while the sync was pending: imap_server_shutdown
	 * left it for now, and nothing else ends an IDLE but the client */
	if (s->shutdown_req && s->idle)
		imap_logout(s, "Server shutting down");
}

/* p NULL: the app reported a change (push it now); else the line the
 * client sent while idling, which must be DONE. */
void imap_idle_line(struct imap_server *s, const uint8_t *p, size_t n)
{
	if (!p) {
		if (!s->idle || s->state != IS_SELECTED || !s->ops->sync || s->pending)
			return;
		s->need_sync = false;
		memset(&s->ch_res, 0, sizeof s->ch_res);
		imap_verdict(s, s->ops->sync(s->ctx, s, &s->ch_res), idle_sync_done);
		return;
	}
	s->idle = false;
	if (n == 4 && ascii_strncasecmp((const char *)p, "DONE", 4) == 0) {
		imap_tagged(s, "OK", NULL, "IDLE terminated");
		return;
	}
	imap_bad(s, "Expected DONE");
}
