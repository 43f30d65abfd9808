/* SPDX-License-Identifier: MIT */
/* Configuration parser over one typed settings table (design.md 2.7).
 * Adding a key = one row in cfg_defs[] plus its field in struct config. */
#include "conf/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"

enum cfg_type {
	T_STR,      /* free text, may be empty */
	T_NAME,     /* a host name, not empty */
	T_DOMAINS,  /* list of domain names, lowercased */
	T_PATH,     /* file system path; relative to the config file's directory */
	T_SIZE,     /* bytes with optional K/M/G suffix (binary multiples) */
	T_DURATION, /* seconds with optional s/m/h/d suffix */
	T_UINT,     /* plain number */
	T_BOOL,     /* yes/no/true/false/on/off/1/0 */
	T_LISTEN,   /* list of addr:port */
	T_LOGLEVEL, /* debug | info | warning */
};

struct cfg_def {
	const char *name;
	enum cfg_type type;
	size_t off;
	const char *def; /* textual default, parsed like a config value; NULL = computed */
	uint64_t min, max;
	const char *doc;
};

#define OFF(f) offsetof(struct config, f)
static const struct cfg_def cfg_defs[] = {
	{ "hostname", T_NAME, OFF(hostname), NULL, 0, 0,
	  "Fully qualified name of this server, used in greetings and Received headers "
	  "(default: the system host name)." },
	{ "domains", T_DOMAINS, OFF(domains), NULL, 0, 0,
	  "Local mail domains, space or comma separated (default: the hostname)." },
	{ "data_dir", T_PATH, OFF(data_dir), "/var/lib/tern", 0, 0,
	  "Directory for accounts, mail and generated keys." },
	{ "tls_cert", T_PATH, OFF(tls_cert), NULL, 0, 0,
	  "PEM certificate chain (default: data_dir/tls/cert.pem; a self-signed one is "
	  "generated when the file is missing)." },
	{ "tls_key", T_PATH, OFF(tls_key), NULL, 0, 0,
	  "PEM private key (default: data_dir/tls/key.pem; generated with the certificate)." },
	{ "max_message_size", T_SIZE, OFF(max_message_size), "50M", 1024, (uint64_t)1 << 40,
	  "Largest message accepted, in bytes (K, M, G suffixes); advertised in EHLO SIZE." },
	{ "smtp_listen", T_LISTEN, OFF(smtp_listen), "", 0, 0,
	  "SMTP (MX) listeners, addr:port list, e.g. \"0.0.0.0:25 [::]:25\"; empty = off." },
	{ "submission_listen", T_LISTEN, OFF(submission_listen), "", 0, 0,
	  "Submission (STARTTLS) listeners, usually port 587; empty = off." },
	{ "submissions_listen", T_LISTEN, OFF(submissions_listen), "", 0, 0,
	  "Submission over implicit TLS listeners, usually port 465; empty = off." },
	{ "imap_listen", T_LISTEN, OFF(imap_listen), "", 0, 0,
	  "IMAP (STARTTLS) listeners, usually port 143; empty = off." },
	{ "imaps_listen", T_LISTEN, OFF(imaps_listen), "", 0, 0,
	  "IMAP over implicit TLS listeners, usually port 993; empty = off." },
	{ "pop3_listen", T_LISTEN, OFF(pop3_listen), "", 0, 0,
	  "POP3 (STLS) listeners, usually port 110; empty = off." },
	{ "pop3s_listen", T_LISTEN, OFF(pop3s_listen), "", 0, 0,
	  "POP3 over implicit TLS listeners, usually port 995; empty = off." },
	{ "user", T_STR, OFF(user), "", 0, 0,
	  "When started as root: bind ports and read keys, then run as this user. "
	  "Empty = keep the starting user." },
	{ "demo_account", T_BOOL, OFF(demo_account), "no", 0, 0,
	  "Create demo@<first domain> with a random password (printed once) when no "
	  "account exists. For trying Tern out; keep it off in production." },
	{ "log_level", T_LOGLEVEL, OFF(log_level), "info", 0, 0,
	  "Least severe log level written to stderr: debug, info or warning." },
	{ "smtp_timeout", T_DURATION, OFF(smtp_timeout), "5m", 1, 86400,
	  "Idle time after which an SMTP session is closed (RFC 5321 4.5.3.2.7: at least 5m)." },
	{ "max_recipients", T_UINT, OFF(max_recipients), "1000", 1, 100000,
	  "Recipients accepted per SMTP transaction (RFC 5321 4.5.3.1.8: at least 100)." },
	{ "max_connections", T_UINT, OFF(max_connections), "20000", 1, 1000000,
	  "Concurrent client connections, all listeners together." },
	{ "max_connections_per_ip", T_UINT, OFF(max_connections_per_ip), "50", 1, 1000000,
	  "Concurrent connections from one client address." },
	{ "allow_plaintext_auth", T_BOOL, OFF(allow_plaintext_auth), "no", 0, 0,
	  "Accept passwords (POP3 USER/PASS, AUTH PLAIN/LOGIN, IMAP LOGIN) on unencrypted "
	  "connections from non-loopback addresses. Loopback and TLS are always allowed." },
	{ "pop3_apop", T_BOOL, OFF(pop3_apop), "no", 0, 0,
	  "Offer APOP (RFC 1939 7): a timestamp in the POP3 greeting. Works only for accounts "
	  "given a secret with `tern user apop`." },
	{ "pop3_timeout", T_DURATION, OFF(pop3_timeout), "10m", 1, 86400,
	  "Idle time after which a POP3 session is closed (RFC 1939 3: at least 10m)." },
	{ "imap_timeout", T_DURATION, OFF(imap_timeout), "30m", 1, 86400,
	  "Idle time after which an IMAP session is closed (RFC 9051 5.4: at least 30m). "
	  "IDLE sessions count as idle too; clients renew IDLE well within it." },
	{ "queue_retry", T_DURATION, OFF(queue_retry), "5m", 1, 86400,
	  "First retry delay after a temporary delivery failure (s/m/h/d suffixes); "
	  "doubled after each failed attempt, at most 4h." },
	{ "queue_lifetime", T_DURATION, OFF(queue_lifetime), "5d", 1, 60 * 86400,
	  "How long a message may stay queued before it is returned to the sender as "
	  "undeliverable." },
	{ "queue_delay_warning", T_DURATION, OFF(queue_delay_warning), "4h", 1, 60 * 86400,
	  "Age of a queued message at which its sender gets a \"delayed\" notice (RFC 3464)." },
	{ "dns_servers", T_LISTEN, OFF(dns_servers), "", 0, 0,
	  "DNS resolvers for outbound mail, addr:port list, e.g. \"127.0.0.1:53\"; "
	  "empty = those of /etc/resolv.conf." },
	{ "relay_host", T_STR, OFF(relay_host), "", 0, 0,
	  "Smarthost: send all outbound mail to this host:port instead of looking up MX "
	  "records; empty = deliver directly." },
	{ "relay_auth", T_STR, OFF(relay_auth), "", 0, 0,
	  "user:password for AUTH to relay_host (only over TLS); empty = no AUTH." },
	{ "relay_max_connections", T_UINT, OFF(relay_max_connections), "100", 1, 100000,
	  "Concurrent outbound SMTP connections, all destinations together." },
	{ "relay_max_per_domain", T_UINT, OFF(relay_max_per_domain), "10", 1, 10000,
	  "Concurrent outbound SMTP connections to one destination domain." },
	{ "relay_mx_port", T_UINT, OFF(relay_mx_port), "25", 1, 65535,
	  "TCP port of MX hosts for direct delivery (RFC 5321: 25; another value is only "
	  "useful for tests)." },
	{ "relay_connect_timeout", T_DURATION, OFF(relay_connect_timeout), "30s", 1, 600,
	  "How long an outbound connection attempt may take before the next MX host is "
	  "tried." },
	{ "relay_timeout", T_DURATION, OFF(relay_timeout), "0", 0, 3600,
	  "How long to wait for each reply of a remote SMTP server; 0 = the RFC 5321 "
	  "4.5.3.2 values (5m for most replies, 10m after the message content)." },
};
#define NKEYS N_ELEMENTS(cfg_defs)

size_t config_nkeys(void)
{
	return NKEYS;
}
const char *config_key_name(size_t i)
{
	return i < NKEYS ? cfg_defs[i].name : NULL;
}
const char *config_key_doc(size_t i)
{
	return i < NKEYS ? cfg_defs[i].doc : NULL;
}

static void set_err(char **err_r, const char *fmt, ...) ATTR_FORMAT(2, 3);
static void set_err(char **err_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(*err_r);
	*err_r = s;
}

static void list_free(struct cfg_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static bool valid_hostname(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* "addr:port", "[v6]:port", "*:port"; port 0..65535. */
static bool valid_listen(const char *s)
{
	const char *colon;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb == s + 1 || rb[1] != ':')
			return false;
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
			return false;
	}
	const char *port = colon + 1;
	if (!*port || strlen(port) > 5)
		return false;
	unsigned long v = 0;
	for (const char *p = port; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	return v <= 65535;
}

static int split_list(const char *v, struct cfg_list *out)
{
	const char *p = v;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		const char *e = p;
		while (*e && *e != ' ' && *e != '\t' && *e != ',')
			e++;
		out->v = xrealloc(out->v, (out->n + 1) * sizeof *out->v);
		out->v[out->n++] = xstrndup(p, (size_t)(e - p));
		p = e;
	}
	return 0;
}

static int parse_number(const char *v, uint64_t *out, const char *suffixes, const uint64_t *mult)
{
	if (*v < '0' || *v > '9')
		return -1;
	uint64_t n = 0;
	const char *p = v;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (n > (UINT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	if (*p) {
		const char *s = suffixes ? strchr(suffixes, ascii_tolower(*p)) : NULL;
		if (!s || p[1])
			return -1;
		uint64_t m = mult[s - suffixes];
		if (n > UINT64_MAX / m)
			return -1;
		n *= m;
	}
	*out = n;
	return 0;
}

/* Collapse "//", "/./" and "dir/.." lexically (no symlink resolution: the
 * path is shown to the admin in messages and must stay the one they wrote). */
static void normalize_path(char *p)
{
	bool abs = p[0] == '/';
	char *out = p, *seg = p;
	size_t depth = 0; /* segments in out that ".." may remove */
	while (*seg) {
		while (*seg == '/')
			seg++;
		if (!*seg)
			break;
		char *end = seg;
		while (*end && *end != '/')
			end++;
		size_t len = (size_t)(end - seg);
		if (len == 1 && seg[0] == '.') {
			seg = end;
			continue;
		}
		if (len == 2 && seg[0] == '.' && seg[1] == '.' && depth == 0 && abs) {
			seg = end; /* "/.." is "/" */
			continue;
		}
		if (len == 2 && seg[0] == '.' && seg[1] == '.' && depth > 0) {
			while (out > p && out[-1] != '/')
				out--;
			if (out > p + (abs ? 1 : 0))
				out--; /* the separator before the removed segment */
			depth--;
			seg = end;
			continue;
		}
		if (out > p + (abs ? 1 : 0) || (!abs && out > p))
			*out++ = '/';
		else if (abs && out == p)
			*out++ = '/';
		memmove(out, seg, len);
		out += len;
		if (!(len == 2 && seg[0] == '.' && seg[1] == '.'))
			depth++;
		seg = end;
	}
	if (out == p)
		*out++ = abs ? '/' : '.';
	*out = 0;
}

static char *resolve_path(const char *base_dir, const char *v)
{
	char *p = (v[0] == '/' || !base_dir) ? xstrdup(v) : xasprintf("%s/%s", base_dir, v);
	normalize_path(p);
	return p;
}

int config_parse_hostport(const char *s, char *host, size_t hostsz, uint16_t *port,
			  const char **why)
{
	const char *h = s, *he, *colon = NULL;
	if (*s == '[') {
		he = strchr(s, ']');
		if (!he) {
			*why = "unterminated [";
			return -1;
		}
		h = s + 1;
		if (he[1] == ':')
			colon = he + 1;
		else if (he[1]) {
			*why = "expected [address]:port";
			return -1;
		}
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon) {
			*why = "IPv6 addresses need brackets: [addr]:port";
			return -1;
		}
		he = colon ? colon : s + strlen(s);
	}
	size_t hl = (size_t)(he - h);
	if (hl == 0 || hl >= hostsz) {
		*why = hl ? "host name too long" : "expected host:port";
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = 0;
	if (*s != '[' && !valid_hostname(host)) {
		*why = "expected a host name or address";
		return -1;
	}
	for (size_t i = 0; i < hl; i++)
		if ((unsigned char)host[i] <= ' ' || host[i] == '/' || host[i] == ']') {
			*why = "bad character in host";
			return -1;
		}
	*port = 25;
	if (colon) {
		uint64_t n;
		if (!colon[1] || parse_number(colon + 1, &n, NULL, NULL) < 0 || n == 0 ||
		    n > 65535) {
			*why = "expected a port number 1-65535";
			return -1;
		}
		*port = (uint16_t)n;
	}
	return 0;
}

/* relay_host and relay_auth are free strings in the table; their syntax is
 * checked here, once every key is known, with the line they came from. */
static int validate_relay(struct config *c, const char *name, char **err_r)
{
	char host[256];
	uint16_t port;
	const char *why = NULL;
	if (*c->relay_host &&
	    config_parse_hostport(c->relay_host, host, sizeof host, &port, &why) < 0) {
		set_err(err_r, "%s:%u: relay_host: bad value: %s", name,
			config_line(c, "relay_host"), why);
		return -1;
	}
	if (*c->relay_auth) {
		const char *colon = strchr(c->relay_auth, ':');
		if (!colon || colon == c->relay_auth) {
			set_err(err_r, "%s:%u: relay_auth: bad value: expected user:password", name,
				config_line(c, "relay_auth"));
			return -1;
		}
		if (!*c->relay_host) {
			set_err(err_r, "%s:%u: relay_auth: needs relay_host", name,
				config_line(c, "relay_auth"));
			return -1;
		}
	}
	return 0;
}

/* Parse one value into its field. Returns 0, or -1 with *why a static reason. */
static int set_value(struct config *c, const struct cfg_def *d, const char *v, const char *base_dir,
		     const char **why)
{
	void *field = (char *)c + d->off;
	uint64_t n;
	static const uint64_t size_mult[] = { 1024, 1024 * 1024, 1024ull * 1024 * 1024 };
	static const uint64_t dur_mult[] = { 1, 60, 3600, 86400 };

	switch (d->type) {
	case T_STR:
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return 0;
	case T_NAME:
		if (!valid_hostname(v)) {
			*why = "expected a host name";
			return -1;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		ascii_lower(*(char **)field);
		return 0;
	case T_PATH:
		if (!*v) {
			*why = "expected a path";
			return -1;
		}
		free(*(char **)field);
		*(char **)field = resolve_path(base_dir, v);
		return 0;
	case T_DOMAINS:
	case T_LISTEN: {
		struct cfg_list l = { NULL, 0 };
		split_list(v, &l);
		for (size_t i = 0; i < l.n; i++) {
			bool ok = d->type == T_LISTEN ? valid_listen(l.v[i]) : valid_hostname(l.v[i]);
			if (!ok) {
				*why = d->type == T_LISTEN ? "expected addr:port entries "
							     "(e.g. 127.0.0.1:25 or [::1]:25)"
							   : "expected domain names";
				list_free(&l);
				return -1;
			}
			if (d->type == T_DOMAINS)
				ascii_lower(l.v[i]);
		}
		list_free((struct cfg_list *)field);
		*(struct cfg_list *)field = l;
		return 0;
	}
	case T_SIZE:
		if (parse_number(v, &n, "kmg", size_mult) < 0) {
			*why = "expected a size in bytes (suffix K, M or G allowed)";
			return -1;
		}
		goto bounds;
	case T_DURATION:
		if (parse_number(v, &n, "smhd", dur_mult) < 0) {
			*why = "expected a duration (seconds, or suffix s, m, h or d)";
			return -1;
		}
		goto bounds;
	case T_UINT:
		if (parse_number(v, &n, NULL, NULL) < 0) {
			*why = "expected a number";
			return -1;
		}
	bounds:
		if (n < d->min || (d->max && n > d->max)) {
			*why = "value out of range";
			return -1;
		}
		*(uint64_t *)field = n;
		return 0;
	case T_BOOL:
		if (!ascii_strcasecmp(v, "yes") || !ascii_strcasecmp(v, "true") ||
		    !ascii_strcasecmp(v, "on") || !strcmp(v, "1"))
			*(bool *)field = true;
		else if (!ascii_strcasecmp(v, "no") || !ascii_strcasecmp(v, "false") ||
			 !ascii_strcasecmp(v, "off") || !strcmp(v, "0"))
			*(bool *)field = false;
		else {
			*why = "expected yes or no";
			return -1;
		}
		return 0;
	case T_LOGLEVEL:
		if (strcmp(v, "debug") && strcmp(v, "info") && strcmp(v, "warning")) {
			*why = "expected debug, info or warning";
			return -1;
		}
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return 0;
	}
	UNREACHABLE();
}

static const struct cfg_def *find_def(const char *key, size_t *idx)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!strcmp(cfg_defs[i].name, key)) {
			*idx = i;
			return &cfg_defs[i];
		}
	return NULL;
}

static char *system_hostname(void)
{
	char h[256];
	if (gethostname(h, sizeof h) < 0 || !h[0])
		return xstrdup("localhost");
	h[sizeof h - 1] = 0;
	ascii_lower(h);
	return xstrdup(h);
}

static void apply_defaults(struct config *c, const char *base_dir)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const char *why;
		if (c->lines[i] || !cfg_defs[i].def)
			continue;
		if (set_value(c, &cfg_defs[i], cfg_defs[i].def, base_dir, &why) < 0)
			panic("bad default for %s", cfg_defs[i].name);
	}
	if (!c->hostname)
		c->hostname = system_hostname();
	if (c->domains.n == 0) {
		c->domains.v = xmalloc(sizeof *c->domains.v);
		c->domains.v[0] = xstrdup(c->hostname);
		c->domains.n = 1;
	}
	if (!c->tls_cert)
		c->tls_cert = xasprintf("%s/tls/cert.pem", c->data_dir);
	if (!c->tls_key)
		c->tls_key = xasprintf("%s/tls/key.pem", c->data_dir);
}

struct config *config_parse(const char *name, const char *base_dir, const char *text, size_t len,
			    char **err_r)
{
	struct config *c = xcalloc(1, sizeof *c);
	c->path = xstrdup(name);
	c->lines = xcalloc(NKEYS, sizeof *c->lines);
	*err_r = NULL;
	unsigned lineno = 0;
	size_t pos = 0;
	char *line = NULL;

	while (pos < len) {
		lineno++;
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - start) : len - pos;
		pos += ll + (nl ? 1 : 0);
		if (ll > 4096) {
			set_err(err_r, "%s:%u: line too long", name, lineno);
			goto fail;
		}
		if (memchr(start, 0, ll)) {
			set_err(err_r, "%s:%u: NUL character", name, lineno);
			goto fail;
		}
		free(line);
		line = xstrndup(start, ll);
		/* comments: '#' at the start or after white space */
		for (char *p = line; *p; p++)
			if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
				*p = 0;
				break;
			}
		char *s = line;
		while (*s == ' ' || *s == '\t')
			s++;
		char *e = s + strlen(s);
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = 0;
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			set_err(err_r, "%s:%u: expected \"key = value\"", name, lineno);
			goto fail;
		}
		char *ke = eq;
		while (ke > s && (ke[-1] == ' ' || ke[-1] == '\t'))
			ke--;
		*ke = 0;
		char *v = eq + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!*s) {
			set_err(err_r, "%s:%u: missing key before '='", name, lineno);
			goto fail;
		}
		size_t idx;
		const struct cfg_def *d = find_def(s, &idx);
		if (!d) {
			char esc[128];
			log_escape(s, strlen(s), esc, sizeof esc);
			set_err(err_r, "%s:%u: unknown key \"%s\"", name, lineno, esc);
			goto fail;
		}
		if (c->lines[idx]) {
			set_err(err_r, "%s:%u: %s is already set on line %u", name, lineno, d->name,
				c->lines[idx]);
			goto fail;
		}
		const char *why = NULL;
		if (set_value(c, d, v, base_dir, &why) < 0) {
			char esc[128];
			log_escape(v, strlen(v), esc, sizeof esc);
			set_err(err_r, "%s:%u: %s: bad value \"%s\": %s", name, lineno, d->name, esc,
				why);
			goto fail;
		}
		c->lines[idx] = lineno;
	}
	free(line);
	line = NULL;
	apply_defaults(c, base_dir);
	if (validate_relay(c, name, err_r) < 0)
		goto fail;
	return c;
fail:
	free(line);
	config_free(&c);
	return NULL;
}

struct config *config_load(const char *path, char **err_r)
{
	*err_r = NULL;
	FILE *f = fopen(path, "re");
	if (!f) {
		set_err(err_r, "%s: %s", path, strerror(errno));
		return NULL;
	}
	struct buf_s {
		char *p;
		size_t n, cap;
	} b = { NULL, 0, 0 };
	char chunk[8192];
	size_t r;
	while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (b.n + r > (1 << 20)) {
			fclose(f);
			free(b.p);
			set_err(err_r, "%s: file too large", path);
			return NULL;
		}
		if (b.n + r > b.cap) {
			b.cap = (b.n + r) * 2;
			b.p = xrealloc(b.p, b.cap);
		}
		memcpy(b.p + b.n, chunk, r);
		b.n += r;
	}
	bool err = ferror(f);
	fclose(f);
	if (err) {
		free(b.p);
		set_err(err_r, "%s: read error", path);
		return NULL;
	}
	/* Base directory for relative paths: the file's own directory, made absolute. */
	char *dir;
	const char *slash = strrchr(path, '/');
	char *rel = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
	if (!*rel) {
		free(rel);
		rel = xstrdup("/");
	}
	char *abs = realpath(rel, NULL);
	dir = abs ? abs : xstrdup(rel);
	free(rel);
	struct config *c = config_parse(path, dir, b.p ? b.p : "", b.n, err_r);
	free(dir);
	free(b.p);
	return c;
}

void config_free(struct config **cp)
{
	struct config *c = *cp;
	if (!c)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		void *field = (char *)c + cfg_defs[i].off;
		switch (cfg_defs[i].type) {
		case T_STR:
		case T_NAME:
		case T_PATH:
		case T_LOGLEVEL:
			free(*(char **)field);
			break;
		case T_DOMAINS:
		case T_LISTEN:
			list_free(field);
			break;
		default:
			break;
		}
	}
	free(c->lines);
	free(c->path);
	free(c);
	*cp = NULL;
}

unsigned config_line(const struct config *c, const char *key)
{
	size_t idx;
	return find_def(key, &idx) ? c->lines[idx] : 0;
}

bool config_is_local_domain(const struct config *c, const char *domain)
{
	for (size_t i = 0; i < c->domains.n; i++)
		if (!ascii_strcasecmp(c->domains.v[i], domain))
			return true;
	return false;
}

static void print_value(const struct config *c, const struct cfg_def *d, FILE *out)
{
	const void *field = (const char *)c + d->off;
	switch (d->type) {
	case T_STR:
	case T_NAME:
	case T_PATH:
	case T_LOGLEVEL:
		fputs(*(char *const *)field ? *(char *const *)field : "", out);
		break;
	case T_DOMAINS:
	case T_LISTEN: {
		const struct cfg_list *l = field;
		for (size_t i = 0; i < l->n; i++)
			fprintf(out, "%s%s", i ? " " : "", l->v[i]);
		break;
	}
	case T_SIZE:
	case T_DURATION:
	case T_UINT:
		fprintf(out, "%llu", (unsigned long long)*(const uint64_t *)field);
		break;
	case T_BOOL:
		fputs(*(const bool *)field ? "yes" : "no", out);
		break;
	}
}

void config_dump(const struct config *c, bool all, FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (!all && !c->lines[i])
			continue;
		fprintf(out, "%s = ", cfg_defs[i].name);
		print_value(c, &cfg_defs[i], out);
		fputc('\n', out);
	}
}

void config_doc_table(FILE *out)
{
	fputs("| key | default | meaning |\n|---|---|---|\n", out);
	for (size_t i = 0; i < NKEYS; i++) {
		const char *def = cfg_defs[i].def;
		fprintf(out, "| `%s` | %s%s%s | %s |\n", cfg_defs[i].name, def && *def ? "`" : "",
			def ? (*def ? def : "(empty)") : "(see meaning)", def && *def ? "`" : "",
			cfg_defs[i].doc);
	}
}
