/* SPDX-License-Identifier: MIT */
/* The SMTP client's reply parser: multi-line replies (RFC 5321 4.2), enhanced
 * status codes (RFC 2034, RFC 3463) and EHLO keyword parsing (RFC 5321
 * 4.1.1.1). Kept apart from the engine so it can be fuzzed and tested on its
 * own. Everything here reads remote input: every line, every reply and every
 * line count is bounded, and malformed input is an error, never an abort. */
#include <string.h>

#include "base/util.h"
#include "proto/smtp/smtp_client.h"

void smtp_reply_reader_init(struct smtp_reply_reader *rd, const struct smtp_reply_limits *lim)
{
	memset(rd, 0, sizeof *rd);
	if (lim)
		rd->lim = *lim;
	if (!rd->lim.max_line)
		rd->lim.max_line = SMTP_REPLY_MAX_LINE;
	if (!rd->lim.max_size)
		rd->lim.max_size = SMTP_REPLY_MAX_SIZE;
	if (!rd->lim.max_lines)
		rd->lim.max_lines = SMTP_REPLY_MAX_LINES;
	buf_init(&rd->line, 0);
	buf_init(&rd->text, 0);
}

void smtp_reply_reader_deinit(struct smtp_reply_reader *rd)
{
	buf_deinit(&rd->line);
	buf_deinit(&rd->text);
}

bool smtp_reply_reader_partial(const struct smtp_reply_reader *rd)
{
	return !rd->complete && (rd->line.len > 0 || rd->nlines > 0);
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* RFC 3463 2: status-code = class "." subject "." detail, class "2"/"4"/"5",
 * subject and detail 1*3 digits; RFC 2034 puts it first in the text, followed
 * by SP. The class must agree with the reply code's first digit. */
static void extract_esc(const uint8_t *p, size_t n, int code, char out[16])
{
	out[0] = '\0';
	if (n < 5 || p[0] != (uint8_t)('0' + code / 100) || p[1] != '.')
		return;
	if (p[0] != '2' && p[0] != '4' && p[0] != '5')
		return;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (i < n && is_digit(p[i]) && d < 4) {
			i++;
			d++;
		}
		if (d == 0 || d > 3)
			return;
		if (part == 0) {
			if (i >= n || p[i] != '.')
				return;
			i++;
		}
	}
	if (i < n && p[i] != ' ')
		return;
	memcpy(out, p, i); /* i <= 1 + 1 + 3 + 1 + 3 = 9 */
	out[i] = '\0';
}

/* One complete line in rd->line (ends with LF). Returns 1 if it was the last
 * line of the reply, 0 if more lines follow, -1 if malformed. */
static int process_line(struct smtp_reply_reader *rd)
{
	const uint8_t *p = rd->line.data;
	size_t n = rd->line.len - 1; /* drop LF */
	if (n > 0 && p[n - 1] == '\r')
		n--;
	/* RFC 5321 4.2: Reply-code = %x32-35 %x30-35 %x30-39; we accept any
	 * second digit but insist on a 2..5 class. */
	if (n < 3 || p[0] < '2' || p[0] > '5' || !is_digit(p[1]) || !is_digit(p[2])) {
		rd->error = "malformed reply code";
		return -1;
	}
	int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	bool last;
	if (n == 3)
		last = true; /* "250" CRLF: last line without text */
	else if (p[3] == ' ')
		last = true;
	else if (p[3] == '-')
		last = false;
	else {
		rd->error = "malformed reply line";
		return -1;
	}
	if (rd->nlines == 0) {
		rd->code = code;
	} else if (code != rd->code) {
		/* RFC 5321 4.2.1: every line of a multiline reply has the same code */
		rd->error = "reply code changes within a multiline reply";
		return -1;
	}
	if (++rd->nlines > rd->lim.max_lines) {
		rd->error = "too many reply lines";
		return -1;
	}
	const uint8_t *t = n > 4 ? p + 4 : p + n;
	size_t tn = n > 4 ? n - 4 : 0;
	if (rd->nlines == 1)
		extract_esc(t, tn, code, rd->esc);
	else
		buf_xappend(&rd->text, "\n", 1);
	uint8_t *dst = buf_reserve(&rd->text, tn);
	ASSERT(dst != NULL); /* text has no max */
	for (size_t i = 0; i < tn; i++)
		dst[i] = (t[i] < 0x20 || t[i] == 0x7f) ? '?' : t[i];
	buf_commit(&rd->text, tn);
	return last ? 1 : 0;
}

int smtp_reply_reader_feed(struct smtp_reply_reader *rd, const uint8_t *p, size_t n, size_t *used_r)
{
	*used_r = 0;
	if (rd->failed)
		return -1;
	if (rd->complete) {
		rd->complete = false;
		rd->nlines = 0;
		rd->size = 0;
		rd->code = 0;
		rd->esc[0] = '\0';
		buf_clear(&rd->text);
	}
	size_t i = 0;
	while (i < n) {
		const uint8_t *lf = memchr(p + i, '\n', n - i);
		size_t take = lf ? (size_t)(lf - (p + i)) + 1 : n - i;
		if (rd->line.len + take > rd->lim.max_line) {
			rd->error = "reply line too long";
			rd->failed = true;
			*used_r = i;
			return -1;
		}
		if (rd->size + take > rd->lim.max_size) {
			rd->error = "reply too long";
			rd->failed = true;
			*used_r = i;
			return -1;
		}
		buf_xappend(&rd->line, p + i, take);
		rd->size += take;
		i += take;
		if (!lf)
			break;
		int r = process_line(rd);
		buf_clear(&rd->line);
		if (r < 0) {
			rd->failed = true;
			*used_r = i;
			return -1;
		}
		if (r == 1) {
			rd->complete = true;
			rd->reply.code = rd->code;
			memcpy(rd->reply.esc, rd->esc, sizeof rd->esc);
			rd->reply.nlines = rd->nlines;
			rd->reply.text = buf_cstr(&rd->text);
			rd->reply.textlen = rd->text.len;
			*used_r = i;
			return 1;
		}
	}
	*used_r = i;
	return 0;
}

/* ---- EHLO keywords -------------------------------------------------------- */

static bool word_is(const char *p, size_t n, const char *w)
{
	return strlen(w) == n && ascii_strncasecmp(p, w, n) == 0;
}

static void parse_auth_mechs(const char *p, size_t n, struct smtp_ehlo *e)
{
	static const struct {
		const char *name;
		unsigned bit;
	} mechs[] = {
	    {"PLAIN", SMTP_AUTH_PLAIN},	      {"LOGIN", SMTP_AUTH_LOGIN},
	    {"CRAM-MD5", SMTP_AUTH_CRAM_MD5}, {"SCRAM-SHA-256", SMTP_AUTH_SCRAM_SHA_256},
	    {"XOAUTH2", SMTP_AUTH_XOAUTH2},
	};
	size_t i = 0;
	while (i < n) {
		while (i < n && (p[i] == ' ' || p[i] == '\t'))
			i++;
		size_t s = i;
		while (i < n && p[i] != ' ' && p[i] != '\t')
			i++;
		for (size_t k = 0; k < N_ELEMENTS(mechs); k++)
			if (i > s && word_is(p + s, i - s, mechs[k].name))
				e->auth |= mechs[k].bit;
	}
}

/* RFC 1870 4: "SIZE" [SP 1*20DIGIT]; anything else means no known limit. */
static uint64_t parse_size(const char *p, size_t n)
{
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0 || n > 20)
		return 0;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit((uint8_t)p[i]))
			return 0;
		uint64_t d = (uint64_t)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return v;
}

static void parse_keyword_line(const char *p, size_t n, struct smtp_ehlo *e)
{
	static const struct {
		const char *name;
		unsigned bit;
	} exts[] = {
	    {"PIPELINING", SMTP_EXT_PIPELINING},
	    {"8BITMIME", SMTP_EXT_8BITMIME},
	    {"SMTPUTF8", SMTP_EXT_SMTPUTF8},
	    {"STARTTLS", SMTP_EXT_STARTTLS},
	    {"DSN", SMTP_EXT_DSN},
	    {"ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES},
	    {"CHUNKING", SMTP_EXT_CHUNKING},
	    {"BINARYMIME", SMTP_EXT_BINARYMIME},
	};
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	size_t k = 0;
	while (k < n && p[k] != ' ' && p[k] != '\t' && p[k] != '=')
		k++;
	if (k == 0)
		return;
	if (word_is(p, k, "SIZE")) {
		e->ext |= SMTP_EXT_SIZE;
		e->size_max = parse_size(p + k, n - k);
		return;
	}
	if (word_is(p, k, "AUTH")) {
		/* "AUTH PLAIN LOGIN" (RFC 4954) or the old "AUTH=PLAIN LOGIN" */
		e->ext |= SMTP_EXT_AUTH;
		if (k < n)
			parse_auth_mechs(p + k + 1, n - k - 1, e);
		return;
	}
	if (k < n && p[k] == '=')
		return;
	for (size_t i = 0; i < N_ELEMENTS(exts); i++)
		if (word_is(p, k, exts[i].name))
			e->ext |= exts[i].bit;
}

void smtp_ehlo_parse(const struct smtp_reply *r, struct smtp_ehlo *e)
{
	memset(e, 0, sizeof *e);
	const char *p = r->text, *end = r->text + r->textlen;
	/* the first line is the server's name and greeting, not a keyword */
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		return;
	p = nl + 1;
	while (p <= end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		parse_keyword_line(p, (size_t)(le - p), e);
		if (!nl)
			break;
		p = nl + 1;
	}
}
