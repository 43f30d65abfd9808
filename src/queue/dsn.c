/* SPDX-License-Identifier: MIT */
/* DSN builder (RFC 3464 multipart/report, RFC 3461 rules, RFC 6533 for
 * internationalised originals) and xtext coding (RFC 3461 4). See dsn.h.
 *
 * Everything we copy into header-like places (addresses, replies from
 * remote servers, ENVID, ORCPT) is cleaned first: control characters
 * become '?', 8-bit bytes too unless the report is the global
 * (RFC 6533) kind, lines are capped well below RFC 5322's 998 octets, so
 * no input can add a field, end a part early or forge a boundary. The
 * boundary is random and checked against the returned content. */
#include "queue/dsn.h"

#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "mime/message.h"

#define FIELD_MAX      900 /* longest value we copy into one line */
#define DIAG_LINES_MAX 30  /* reply lines kept in Diagnostic-Code */
#define MSGID_MAX      250

static bool is_ascii(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Appends up to max bytes of s (n bytes), control characters (and 8-bit
 * bytes unless utf8) replaced by '?'. */
static void put_clean(struct buf *b, const char *s, size_t n, size_t max, bool utf8)
{
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			c = '?';
		buf_xappend(b, &c, 1);
	}
}

static void put_cstr(struct buf *b, const char *s, bool utf8)
{
	put_clean(b, s, strlen(s), FIELD_MAX, utf8);
}

static void put_date(struct buf *b, const char *name, int64_t t)
{
	char d[64];
	time_rfc5322(t, d);
	buf_xprintf(b, "%s: %s\n", name, d);
}

/* RFC 3464 2.3.4: DIGIT "." 1*3DIGIT "." 1*3DIGIT, no leading zeros, and
 * a class RFC 3463 defines (2, 4, 5). */
static bool status_valid(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	const char *p = s + 2;
	for (int field = 0; field < 2; field++) {
		size_t n = 0;
		while (p[n] >= '0' && p[n] <= '9')
			n++;
		if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
			return false;
		p += n;
		if (field == 0) {
			if (*p != '.')
				return false;
			p++;
		}
	}
	return *p == '\0';
}

/* The Status code: the recorded enhanced code when it fits the action,
 * else a generic one (RFC 3461 6.3 (g): 4.0.0 / 5.0.0). */
static const char *status_for(const struct dsn_rcpt *r)
{
	const char *e = r->enhanced;
	bool ok = status_valid(e);
	switch (r->action) {
	case QUEUE_ACTION_FAILED:
		if (ok && e[0] != '2')
			return e;
		return r->code / 100 == 4 ? "4.0.0" : "5.0.0";
	case QUEUE_ACTION_DELAYED:
		return ok && e[0] == '4' ? e : "4.0.0";
	default:
		return ok && e[0] == '2' ? e : "2.0.0";
	}
}

static const char *action_name(enum queue_action a)
{
	switch (a) {
	case QUEUE_ACTION_FAILED:
		return "failed";
	case QUEUE_ACTION_DELAYED:
		return "delayed";
	case QUEUE_ACTION_DELIVERED:
		return "delivered";
	case QUEUE_ACTION_RELAYED:
		return "relayed";
	case QUEUE_ACTION_NONE:
		break;
	}
	return NULL;
}

/* "type;address" -> "type; address" (type cleaned to an atom-ish word). */
static void put_typed(struct buf *b, const char *v, bool utf8)
{
	const char *semi = strchr(v, ';');
	if (semi == NULL) {
		buf_xprintf(b, "unknown; ");
		put_cstr(b, v, utf8);
		return;
	}
	put_clean(b, v, (size_t)(semi - v), 64, false);
	buf_xappend(b, "; ", 2);
	const char *a = semi + 1;
	while (*a == ' ')
		a++;
	put_cstr(b, a, utf8);
}

/* Diagnostic-Code (RFC 3461 9.2): the reply, continuation lines indented. */
static void put_diagnostic(struct buf *b, const struct dsn_rcpt *r, bool utf8)
{
	if (r->code == 0 && (r->text == NULL || r->text[0] == '\0'))
		return;
	if (r->code == 0) {
		/* A local failure: our text, one line, experimental type. */
		buf_xprintf(b, "Diagnostic-Code: X-Tern; ");
		size_t n = strlen(r->text);
		if (n > FIELD_MAX)
			n = FIELD_MAX;
		for (size_t i = 0; i < n; i++) {
			char c = r->text[i] == '\n' ? ' ' : r->text[i];
			put_clean(b, &c, 1, 1, utf8);
		}
		buf_xappend(b, "\n", 1);
		return;
	}
	buf_xprintf(b, "Diagnostic-Code: smtp; ");
	if (r->text == NULL || r->text[0] == '\0') {
		buf_xprintf(b, "%d\n", r->code);
		return;
	}
	const char *p = r->text, *end = p + strlen(p);
	int lines = 0;
	while (p < end && lines < DIAG_LINES_MAX) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > 0) { /* an empty continuation line would be obs-FWS */
			if (lines++ > 0)
				buf_xappend(b, "\n ", 2);
			put_clean(b, p, n, FIELD_MAX, utf8);
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (lines == 0)
		buf_xprintf(b, "%d", r->code);
	buf_xappend(b, "\n", 1);
}

/* The first few reply lines joined, for the human-readable part. */
static void put_reason(struct buf *b, const struct dsn_rcpt *r, bool utf8)
{
	if (r->text == NULL || r->text[0] == '\0') {
		if (r->code != 0)
			buf_xprintf(b, "    reply code %d\n", r->code);
		return;
	}
	if (r->remote != NULL && r->code != 0) {
		buf_xprintf(b, "    ");
		put_cstr(b, r->remote, false);
		buf_xprintf(b, " said:\n");
	}
	const char *p = r->text, *end = p + strlen(p);
	for (int lines = 0; p < end && lines < 5;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > 0) {
			buf_xprintf(b, "    ");
			put_clean(b, p, n, 200, utf8);
			buf_xappend(b, "\n", 1);
			lines++;
		}
		p = nl != NULL ? nl + 1 : end;
	}
}

/* Length of the header block of m (without the empty line that ends it).
 * For a prefix (truncated), only complete lines count. */
static size_t header_len(const uint8_t *m, size_t n, bool truncated)
{
	size_t i = 0;
	while (i < n) {
		const uint8_t *nl = memchr(m + i, '\n', n - i);
		if (nl == NULL)
			return truncated ? i : n;
		size_t len = (size_t)(nl - (m + i));
		if (len == 0 || (len == 1 && m[i] == '\r'))
			return i;
		i += len + 1;
	}
	return n;
}

/* The original's Message-ID, if sane enough to echo (RFC 3834 3.1.5). */
static void find_msgid(const uint8_t *h, size_t n, struct buf *out)
{
	size_t pos = 0;
	const uint8_t *name, *value;
	size_t nl, vl;
	while (mime_header_next(h, n, &pos, &name, &nl, &value, &vl) == 1) {
		if (nl != 10 || !ascii_prefix_ci(name, nl, "message-id"))
			continue;
		struct buf v = BUF_INIT(0);
		mime_unfold(value, vl, &v);
		size_t s = 0, e = v.len;
		while (s < e && (v.data[s] == ' ' || v.data[s] == '\t'))
			s++;
		while (e > s && (v.data[e - 1] == ' ' || v.data[e - 1] == '\t'))
			e--;
		bool ok =
		    e - s >= 3 && e - s <= MSGID_MAX && v.data[s] == '<' && v.data[e - 1] == '>';
		for (size_t i = s; ok && i < e; i++)
			ok = v.data[i] > 0x20 && v.data[i] < 0x7f;
		buf_clear(out);
		if (ok)
			buf_xappend(out, v.data + s, e - s);
		buf_deinit(&v);
	}
}

static bool has_8bit(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 0x80)
			return true;
	return false;
}

static void put_human(struct buf *b, const struct dsn_input *in, bool utf8, bool returned_full,
		      bool returned_hdrs)
{
	buf_xprintf(b, "This is the mail system at %s.\n", in->hostname);
	static const struct {
		enum queue_action a;
		const char *intro;
	} groups[] = {
	    {QUEUE_ACTION_FAILED, "Your message could not be delivered to the following "
				  "recipients.\nNo further attempts will be made."},
	    {QUEUE_ACTION_DELAYED, "Your message has not been delivered yet to the following "
				   "recipients.\nDelivery is still being attempted; you do "
				   "not need to send it again."},
	    {QUEUE_ACTION_DELIVERED, "Your message was delivered to the following "
				     "recipients."},
	    {QUEUE_ACTION_RELAYED, "Your message was passed on to the mail systems of the "
				   "following recipients,\nwhich will not send further "
				   "notifications."},
	};
	for (size_t g = 0; g < N_ELEMENTS(groups); g++) {
		bool any = false;
		for (size_t i = 0; i < in->n_rcpts; i++) {
			const struct dsn_rcpt *r = &in->rcpts[i];
			if (r->action != groups[g].a)
				continue;
			if (!any)
				buf_xprintf(b, "\n%s\n\n", groups[g].intro);
			any = true;
			buf_xprintf(b, "  <");
			put_cstr(b, r->addr, utf8);
			buf_xprintf(b, ">\n");
			if (r->action == QUEUE_ACTION_FAILED || r->action == QUEUE_ACTION_DELAYED)
				put_reason(b, r, utf8);
			if (r->action == QUEUE_ACTION_DELAYED && r->will_retry_until > 0) {
				char d[64];
				time_rfc5322(r->will_retry_until, d);
				buf_xprintf(b, "    (will retry until %s)\n", d);
			}
		}
	}
	if (returned_full)
		buf_xprintf(b, "\nYour original message is attached.\n");
	else if (returned_hdrs)
		buf_xprintf(b, "\nThe header of your original message is attached.\n");
}

int dsn_build(const struct dsn_input *in, struct buf *out, struct dsn_result *res_r)
{
	memset(res_r, 0, sizeof *res_r);
	/* RFC 5321 6.1 / RFC 3461 6.1: never a notification about a notification. */
	if (in->sender == NULL || in->sender[0] == '\0')
		return 0;
	size_t reported = 0;
	bool has_failed = false, has_delayed = false,
	     global = !is_ascii(in->sender) || !is_ascii(in->envid);
	for (size_t i = 0; i < in->n_rcpts; i++) {
		const struct dsn_rcpt *r = &in->rcpts[i];
		if (action_name(r->action) == NULL)
			continue;
		reported++;
		has_failed |= r->action == QUEUE_ACTION_FAILED;
		has_delayed |= r->action == QUEUE_ACTION_DELAYED;
		global |= !is_ascii(r->addr) || !is_ascii(r->orcpt);
	}
	if (reported == 0)
		return 0;
	res_r->has_failed = has_failed;
	const char *host =
	    in->hostname != NULL && in->hostname[0] != '\0' ? in->hostname : "localhost";

	/* What to return (RFC 3461 4.3, 6.2). */
	bool have = in->orig != NULL;
	bool full = have && has_failed && in->ret != QUEUE_RET_HDRS && !in->orig_truncated &&
		    (in->max_return == 0 || in->orig_len <= in->max_return);
	size_t hlen = have ? header_len(in->orig, in->orig_len, in->orig_truncated) : 0;
	const uint8_t *ret_p = have ? in->orig : NULL;
	size_t ret_n = full ? in->orig_len : hlen;
	bool hdrs = have && !full;

	/* Boundary: random, and never inside what we embed. */
	char rnd[17], boundary[64];
	do {
		random_id(rnd);
		snprintf(boundary, sizeof boundary, "=_tern_%s", rnd);
	} while (have && memmem(ret_p, ret_n, boundary, strlen(boundary)) != NULL);

	struct buf msgid = BUF_INIT(0);
	if (have)
		find_msgid(in->orig, hlen, &msgid);

	size_t start = out->len;
	struct buf *b = out;
	/* Header (RFC 3464 2: From is a responsible human's mailbox; RFC 3834). */
	char date[64];
	time_rfc5322(in->now, date);
	buf_xprintf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\n", host);
	buf_xprintf(b, "To: <");
	put_cstr(b, in->sender, true);
	buf_xprintf(b, ">\n");
	buf_xprintf(b, "Subject: %s\n",
		    has_failed	  ? "Undelivered Mail Returned to Sender"
		    : has_delayed ? "Delayed Mail (still being retried)"
				  : "Successful Mail Delivery Report");
	buf_xprintf(b, "Date: %s\n", date);
	random_id(rnd);
	buf_xprintf(b, "Message-ID: <dsn.%s.%s@%s>\n", in->queue_id != NULL ? in->queue_id : "x",
		    rnd, host);
	if (msgid.len > 0) {
		buf_xprintf(b, "In-Reply-To: %s\n", buf_cstr(&msgid));
		buf_xprintf(b, "References: %s\n", buf_cstr(&msgid));
	}
	buf_xprintf(b, "Auto-Submitted: auto-replied\n");
	buf_xprintf(b, "MIME-Version: 1.0\n");
	buf_xprintf(b,
		    "Content-Type: multipart/report; report-type=delivery-status;\n"
		    "\tboundary=\"%s\"\n",
		    boundary);
	buf_xprintf(b, "\nThis is a MIME-formatted delivery status notification.\n");

	/* 1. for humans */
	struct buf human = BUF_INIT(0);
	put_human(&human, in, global, full, hdrs);
	bool human8 = has_8bit(human.data, human.len);
	buf_xprintf(b, "\n--%s\n", boundary);
	buf_xprintf(b, "Content-Type: text/plain; charset=%s\n", human8 ? "utf-8" : "us-ascii");
	if (human8)
		buf_xprintf(b, "Content-Transfer-Encoding: 8bit\n");
	buf_xprintf(b, "Content-Description: Notification\n\n");
	buf_xappend(b, human.data, human.len);
	buf_deinit(&human);

	/* 2. machine-readable (RFC 3464 2.2, 2.3; order of the ABNF) */
	buf_xprintf(b, "\n--%s\n", boundary);
	if (global)
		buf_xprintf(b, "Content-Type: message/global-delivery-status\n"
			       "Content-Transfer-Encoding: 8bit\n");
	else
		buf_xprintf(b, "Content-Type: message/delivery-status\n");
	buf_xprintf(b, "Content-Description: Delivery report\n\n");
	if (in->envid != NULL) {
		buf_xprintf(b, "Original-Envelope-Id: ");
		put_cstr(b, in->envid, global);
		buf_xappend(b, "\n", 1);
	}
	/* RFC 3461 6.3 (b): "dns" only for a fully-qualified name. */
	buf_xprintf(b, "Reporting-MTA: %s; ", strchr(host, '.') ? "dns" : "x-local-hostname");
	put_cstr(b, host, false);
	buf_xappend(b, "\n", 1);
	if (in->arrival > 0)
		put_date(b, "Arrival-Date", in->arrival);
	if (in->queue_id != NULL) {
		buf_xprintf(b, "X-Tern-Queue-ID: ");
		put_cstr(b, in->queue_id, false);
		buf_xappend(b, "\n", 1);
	}
	for (size_t i = 0; i < in->n_rcpts; i++) {
		const struct dsn_rcpt *r = &in->rcpts[i];
		const char *action = action_name(r->action);
		if (action == NULL)
			continue;
		buf_xappend(b, "\n", 1);
		if (r->orcpt != NULL) {
			buf_xprintf(b, "Original-Recipient: ");
			put_typed(b, r->orcpt, global);
			buf_xappend(b, "\n", 1);
		}
		/* RFC 6533 3: "utf-8" for an internationalised address. */
		buf_xprintf(b, "Final-Recipient: %s; ", is_ascii(r->addr) ? "rfc822" : "utf-8");
		put_cstr(b, r->addr, global);
		buf_xprintf(b, "\nAction: %s\nStatus: %s\n", action, status_for(r));
		if (r->remote != NULL && r->remote[0] != '\0') {
			buf_xprintf(b, "Remote-MTA: dns; ");
			put_cstr(b, r->remote, false);
			buf_xappend(b, "\n", 1);
		}
		put_diagnostic(b, r, global);
		if (r->last_attempt > 0)
			put_date(b, "Last-Attempt-Date", r->last_attempt);
		/* RFC 3464 2.3.9: only in "delayed" DSNs. */
		if (r->action == QUEUE_ACTION_DELAYED && r->will_retry_until > 0)
			put_date(b, "Will-Retry-Until", r->will_retry_until);
	}

	/* 3. the original or its header (RFC 6533 types for SMTPUTF8) */
	if (have) {
		bool eight = has_8bit(ret_p, ret_n);
		buf_xprintf(b, "\n--%s\n", boundary);
		if (full)
			buf_xprintf(b, "Content-Type: %s\n",
				    in->smtputf8 ? "message/global" : "message/rfc822");
		else
			buf_xprintf(b, "Content-Type: %s\n",
				    in->smtputf8 ? "message/global-headers"
						 : "text/rfc822-headers");
		if (eight)
			buf_xprintf(b, "Content-Transfer-Encoding: 8bit\n");
		buf_xprintf(b, "Content-Description: %s\n\n",
			    full ? "Original message" : "Original message header");
		buf_xappend(b, ret_p, ret_n);
	}
	buf_xprintf(b, "\n--%s--\n", boundary);
	buf_deinit(&msgid);

	res_r->eightbit = has_8bit(out->data + start, out->len - start);
	res_r->smtputf8 = !is_ascii(in->sender);
	if (out->max != 0 && out->len > out->max)
		return -1;
	return 1;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)ascii_toupper((char)c);
	return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int dsn_xtext_decode(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '+') {
			/* hexchar = "+" 2HEXDIG (uppercase on the wire; we also take lowercase) */
			int hi = i + 2 < n ? hexval((unsigned char)p[i + 1]) : -1;
			int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		} else if (c < '!' || c > '~' || c == '=') {
			return -1;
		}
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	return 0;
}

void dsn_xtext_encode(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < '!' || c > '~' || c == '+' || c == '=')
			buf_xprintf(out, "+%02X", c);
		else
			buf_xappend(out, &c, 1);
	}
}
