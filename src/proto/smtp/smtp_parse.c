/* SPDX-License-Identifier: MIT */
/* RFC 5321 4.1.2 path syntax and ESMTP parameters, as a pure (ptr, len)
 * parser with no allocation beyond the result. Kept strict: what it accepts
 * is what the grammar says (plus RFC 6531 UTF-8 when asked), so the rest of
 * Tern can trust addresses it receives from here.
 *
 *   Path      = "<" [ A-d-l ":" ] Mailbox ">"
 *   A-d-l     = At-domain *( "," At-domain )     ; source route, dropped
 *   Mailbox   = Local-part "@" ( Domain / address-literal )
 *   Local-part = Dot-string / Quoted-string      ; kept as given
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/smtp/smtp_parse.h"
#include "proto/smtp/smtp_server.h"

/* RFC 5321 4.5.3.1.2: 255 octets for a domain; 4.5.3.1.3: 256 for a path.
 * Real-world local parts exceed 64 octets (SRS, VERP), so we only bound the
 * whole path, generously. */
#define SMTP_MAX_DOMAIN 255
#define SMTP_MAX_LABEL 63
#define SMTP_MAX_PATH 1024

struct cur {
	const unsigned char *p;
	size_t n, i;
	bool utf8;
};

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 3.2.3 atext */
static bool is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Length of one well-formed non-ASCII UTF-8 sequence at p (RFC 3629 4),
 * or 0. No overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c == 0xc2)
		/* U+0080..U+009F are C1 controls (CSI and friends): never in an
		 * address (RFC 6531 3.3 excludes controls), as accounts.c agrees */
		len = 2, lo = 0xa0;
	else if (c >= 0xc3 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len)
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/* Consume one UTF8-non-ascii character if allowed (RFC 6531 3.3). */
static bool take_utf8(struct cur *c)
{
	if (!c->utf8 || c->i >= c->n || c->p[c->i] < 0x80)
		return false;
	size_t l = utf8_len(c->p + c->i, c->n - c->i);
	if (!l)
		return false;
	c->i += l;
	return true;
}

static int peek(const struct cur *c)
{
	return c->i < c->n ? c->p[c->i] : -1;
}

/* Dot-string = Atom *("." Atom); Atom = 1*atext */
static int parse_dot_string(struct cur *c)
{
	for (;;) {
		size_t start = c->i;
		for (;;) {
			int ch = peek(c);
			if (ch >= 0 && ch < 0x80 && is_atext((unsigned char)ch))
				c->i++;
			else if (!take_utf8(c))
				break;
		}
		if (c->i == start)
			return -1;
		if (peek(c) != '.')
			return 0;
		c->i++;
	}
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE
 * qtextSMTP = %d32-33 / %d35-91 / %d93-126; quoted-pairSMTP = "\" %d32-126 */
static int parse_quoted(struct cur *c)
{
	c->i++; /* DQUOTE */
	for (;;) {
		int ch = peek(c);
		if (ch < 0)
			return -1;
		if (ch == '"') {
			c->i++;
			return 0;
		}
		if (ch == '\\') {
			c->i++;
			ch = peek(c);
			if (ch < 32 || ch > 126)
				return -1;
			c->i++;
		} else if (ch >= 32 && ch <= 126) {
			c->i++;
		} else if (!take_utf8(c)) {
			return -1;
		}
	}
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
 * (RFC 6531: or a U-label, approximated as UTF-8 letters). */
static int parse_domain(struct cur *c)
{
	size_t start = c->i;
	for (;;) {
		size_t lstart = c->i;
		bool last_hyphen = false;
		for (;;) {
			int ch = peek(c);
			if (ch >= 0 &&
			    (is_alpha((unsigned char)ch) || is_digit((unsigned char)ch))) {
				c->i++;
				last_hyphen = false;
			} else if (ch == '-' && c->i > lstart) {
				c->i++;
				last_hyphen = true;
			} else if (take_utf8(c)) {
				last_hyphen = false;
			} else {
				break;
			}
		}
		if (c->i == lstart || last_hyphen || c->i - lstart > SMTP_MAX_LABEL)
			return -1;
		if (peek(c) != '.')
			break;
		c->i++;
	}
	return c->i - start <= SMTP_MAX_DOMAIN ? 0 : -1;
}

/* Snum = 1*3DIGIT, 0..255; IPv4-address-literal = Snum 3("." Snum) */
static bool valid_ipv4(const unsigned char *p, size_t n)
{
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
		unsigned v = 0, digits = 0;
		while (i < n && is_digit(p[i]) && digits < 3) {
			v = v * 10 + (unsigned)(p[i] - '0');
			i++;
			digits++;
		}
		if (!digits || v > 255)
			return false;
	}
	return i == n;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6-addr / General ) "]".
 * No General-address-literal tag other than IPv6 is registered, so we
 * refuse the general form. */
static int parse_addr_literal(struct cur *c)
{
	c->i++; /* [ */
	const unsigned char *close = memchr(c->p + c->i, ']', c->n - c->i);
	if (!close)
		return -1;
	const unsigned char *lit = c->p + c->i;
	size_t len = (size_t)(close - lit);
	bool ok;
	if (ascii_prefix_ci(lit, len, "IPv6:")) {
		char tmp[64];
		struct in6_addr a6;
		size_t l6 = len - 5;
		if (l6 == 0 || l6 >= sizeof tmp || memchr(lit + 5, 0, l6))
			return -1;
		memcpy(tmp, lit + 5, l6);
		tmp[l6] = '\0';
		ok = inet_pton(AF_INET6, tmp, &a6) == 1;
	} else {
		ok = valid_ipv4(lit, len);
	}
	if (!ok)
		return -1;
	c->i += len + 1;
	return 0;
}

/* A-d-l = At-domain *( "," At-domain ) ":" ; At-domain = "@" Domain */
static int parse_source_route(struct cur *c)
{
	for (;;) {
		if (peek(c) != '@')
			return -1;
		c->i++;
		if (parse_domain(c) < 0)
			return -1;
		int ch = peek(c);
		if (ch == ':') {
			c->i++;
			return 0;
		}
		if (ch != ',')
			return -1;
		c->i++;
	}
}

int smtp_parse_path(const char *p, size_t n, bool allow_null, bool utf8, char **addr_r,
		    size_t *used_r)
{
	struct cur c = { (const unsigned char *)p, n, 0, utf8 };
	*addr_r = NULL;
	*used_r = 0;
	if (n > SMTP_MAX_PATH)
		c.n = SMTP_MAX_PATH;
	if (peek(&c) != '<')
		return -1;
	c.i++;
	if (peek(&c) == '>') {
		if (!allow_null)
			return -1;
		*addr_r = xstrdup("");
		*used_r = 2;
		return 0;
	}
	/* RFC 5321 4.1.1.3 and appendix C: accept and ignore a source route. */
	if (peek(&c) == '@' && parse_source_route(&c) < 0)
		return -1;
	size_t mstart = c.i;
	int r = peek(&c) == '"' ? parse_quoted(&c) : parse_dot_string(&c);
	if (r < 0 || peek(&c) != '@')
		return -1;
	c.i++;
	r = peek(&c) == '[' ? parse_addr_literal(&c) : parse_domain(&c);
	if (r < 0 || peek(&c) != '>')
		return -1;
	*addr_r = xstrndup(p + mstart, c.i - mstart);
	*used_r = c.i + 1;
	return 0;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 * esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under RFC 6531 3.3
 * (we accept any byte >= 0x80 there; the keywords we know reject it). */
int smtp_parse_param_next(const char **pp, const char *end, struct smtp_param *r)
{
	const char *p = *pp;
	if (p == end)
		return 0;
	if (*p != ' ')
		return -1;
	while (p < end && *p == ' ')
		p++;
	if (p == end) {
		*pp = p;
		return 0;
	}
	const char *k = p;
	if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p))
		return -1;
	while (p < end && (is_alpha((unsigned char)*p) || is_digit((unsigned char)*p) || *p == '-'))
		p++;
	r->key = k;
	r->keylen = (size_t)(p - k);
	r->value = NULL;
	r->valuelen = 0;
	if (p < end && *p == '=') {
		p++;
		const char *v = p;
		while (p < end) {
			unsigned char ch = (unsigned char)*p;
			if (ch >= 0x80 || (ch >= 33 && ch <= 126 && ch != '='))
				p++;
			else
				break;
		}
		if (p == v)
			return -1;
		r->value = v;
		r->valuelen = (size_t)(p - v);
	}
	if (p < end && *p != ' ')
		return -1;
	*pp = p;
	return 1;
}

int smtp_parse_u64(const char *p, size_t n, uint64_t *r)
{
	uint64_t v = 0;
	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit((unsigned char)p[i]))
			return -1;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*r = v;
	return 0;
}

bool smtp_is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}
