/* SPDX-License-Identifier: MIT */
/* Mailbox names: validation, INBOX folding, and the Maildir++ folder name of
 * a mailbox (see mailbox.h: "/" -> ".", each component in modified UTF-7,
 * RFC 3501 5.1.3, with "." inside a component written as "&AC4-").
 *
 * The mapping is a bijection between valid names and the folder names we
 * write: mbox_dir_to_name() accepts only canonical encodings (it re-encodes
 * and compares), so a folder another tool named oddly is either read as the
 * name it stands for or ignored, never aliased onto another mailbox. */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "store/mailbox.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Next code point of valid UTF-8 at s[*i] (< n); -1 if invalid. */
static long utf8_next(const unsigned char *s, size_t n, size_t *i)
{
	unsigned c = s[*i];
	if (c < 0x80) {
		(*i)++;
		return c;
	}
	size_t need;
	unsigned long cp, min;
	if ((c & 0xe0) == 0xc0) {
		need = 1, cp = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		need = 2, cp = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		need = 3, cp = c & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	if (*i + need >= n)
		return -1;
	for (size_t k = 1; k <= need; k++) {
		unsigned cc = s[*i + k];
		if ((cc & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (cc & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += need + 1;
	return (long)cp;
}

static void utf8_put(struct buf *o, unsigned long cp)
{
	char t[4];
	size_t n;
	if (cp < 0x80) {
		t[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | (cp >> 6)), t[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | (cp >> 12)), t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
	} else {
		t[0] = (char)(0xf0 | (cp >> 18)), t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), t[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
	}
	buf_xappend(o, t, n);
}

char *mbox_name_canon(const char *name, size_t len)
{
	if (len == 0 || len > MBOX_NAME_MAX)
		return NULL;
	const unsigned char *s = (const unsigned char *)name;
	size_t i = 0, comp_start = 0;
	unsigned depth = 1;
	while (i < len) {
		long cp = utf8_next(s, len, &i);
		if (cp < 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == '%' ||
		    cp == '*')
			return NULL;
		if (cp == MBOX_SEP || i == len) {
			size_t end = cp == MBOX_SEP ? i - 1 : i;
			size_t cl = end - comp_start;
			if (cl == 0 || (cl == 1 && s[comp_start] == '.') ||
			    (cl == 2 && s[comp_start] == '.' && s[comp_start + 1] == '.'))
				return NULL;
			if (cp == MBOX_SEP) {
				if (i == len || ++depth > MBOX_DEPTH_MAX)
					return NULL;
				comp_start = i;
			}
		}
	}
	char *r = xstrndup(name, len);
	/* RFC 3501 5.1: INBOX is case-insensitive; fold its use as a superior too. */
	if ((len == 5 || (len > 5 && name[5] == MBOX_SEP)) && ascii_strncasecmp(name, "INBOX", 5) == 0)
		memcpy(r, "INBOX", 5);
	return r;
}

static void enc_component(struct buf *o, const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		if (s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '.' && s[i] != '&') {
			buf_xappend(o, &s[i], 1);
			i++;
			continue;
		}
		if (s[i] == '&') {
			buf_xappend(o, "&-", 2);
			i++;
			continue;
		}
		/* A run of characters that are not printable ASCII (or are '.'). */
		buf_xappend(o, "&", 1);
		uint32_t acc = 0;
		unsigned bits = 0;
		while (i < n && !(s[i] >= 0x20 && s[i] <= 0x7e && s[i] != '.')) {
			long cp = utf8_next(s, n, &i);
			ASSERT(cp >= 0); /* validated by mbox_name_canon */
			uint16_t u[2];
			int nu = 1;
			if (cp >= 0x10000) {
				unsigned long v = (unsigned long)cp - 0x10000;
				u[0] = (uint16_t)(0xd800 | (v >> 10)), u[1] = (uint16_t)(0xdc00 | (v & 0x3ff));
				nu = 2;
			} else {
				u[0] = (uint16_t)cp;
			}
			for (int k = 0; k < nu; k++) {
				acc = (acc << 16) | u[k];
				bits += 16;
				while (bits >= 6) {
					bits -= 6;
					buf_xappend(o, &b64[(acc >> bits) & 0x3f], 1);
				}
			}
		}
		if (bits > 0)
			buf_xappend(o, &b64[(acc << (6 - bits)) & 0x3f], 1);
		buf_xappend(o, "-", 1);
	}
}

char *mbox_name_to_dir(const char *name)
{
	if (strcmp(name, "INBOX") == 0)
		return xstrdup("");
	struct buf o = BUF_INIT(0);
	const char *p = name;
	for (;;) {
		const char *e = strchr(p, MBOX_SEP);
		size_t n = e ? (size_t)(e - p) : strlen(p);
		buf_xappend(&o, ".", 1);
		enc_component(&o, (const unsigned char *)p, n);
		if (!e)
			break;
		p = e + 1;
	}
	char *r = xstrdup(buf_cstr(&o));
	buf_deinit(&o);
	return r;
}

static int b64val(char c)
{
	const char *p = memchr(b64, c, 64);
	return (p && c) ? (int)(p - b64) : -1;
}

char *mbox_dir_to_name(const char *dir)
{
	if (dir[0] == '\0')
		return xstrdup("INBOX");
	if (dir[0] != '.' || strlen(dir) > 4 * MBOX_NAME_MAX)
		return NULL;
	struct buf o = BUF_INIT(0);
	const char *p = dir + 1;
	bool ok = true;
	while (ok && *p) {
		if (*p == '.') {
			buf_xappend(&o, "/", 1);
			p++;
		} else if (*p != '&') {
			buf_xappend(&o, p, 1);
			p++;
		} else if (p[1] == '-') {
			buf_xappend(&o, "&", 1);
			p += 2;
		} else {
			p++;
			uint32_t acc = 0, hi = 0;
			unsigned bits = 0;
			while (ok && *p && *p != '-') {
				int v = b64val(*p++);
				if (v < 0) {
					ok = false;
					break;
				}
				acc = (acc << 6) | (uint32_t)v;
				bits += 6;
				if (bits >= 16) {
					bits -= 16;
					uint32_t u = (acc >> bits) & 0xffff;
					if (u >= 0xd800 && u <= 0xdbff) {
						ok = hi == 0;
						hi = u;
					} else if (u >= 0xdc00 && u <= 0xdfff) {
						ok = hi != 0;
						utf8_put(&o, 0x10000 + ((hi - 0xd800) << 10) + (u - 0xdc00));
						hi = 0;
					} else {
						ok = hi == 0;
						utf8_put(&o, u);
					}
				}
			}
			if (*p != '-' || hi != 0)
				ok = false;
			else
				p++;
		}
	}
	char *name = NULL;
	if (ok && o.len > 0) {
		char *c = mbox_name_canon((const char *)o.data, o.len);
		if (c) {
			char *back = mbox_name_to_dir(c);
			if (strcmp(back, dir) == 0)
				name = c;
			else
				free(c);
			free(back);
		}
	}
	buf_deinit(&o);
	return name;
}

const char *mbox_special_name(enum mbox_special sp)
{
	switch (sp) {
	case MBOX_SPECIAL_DRAFTS:
		return "\\Drafts";
	case MBOX_SPECIAL_SENT:
		return "\\Sent";
	case MBOX_SPECIAL_TRASH:
		return "\\Trash";
	case MBOX_SPECIAL_JUNK:
		return "\\Junk";
	case MBOX_SPECIAL_ARCHIVE:
		return "\\Archive";
	case MBOX_SPECIAL_NONE:
		break;
	}
	return NULL;
}
