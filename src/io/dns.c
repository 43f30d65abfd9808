/* SPDX-License-Identifier: MIT */
/* Delivery targets of a mail domain (RFC 5321 5.1) over c-ares, on the evloop.
 *
 * c-ares tells us which sockets it wants watched through its socket-state
 * callback; we mirror that into evloop fd watches, feed readiness back with
 * ares_process_fd(), and keep one evloop timer at ares_timeout() so that
 * retransmissions and timeouts happen. Every query is ares_query() (never
 * ares_search/ares_getaddrinfo): no search list, no /etc/hosts, the exact name.
 *
 * A request walks: MX query -> (null MX | NXDOMAIN | temp error: done) ->
 * A and AAAA queries for every kept MX host (or the domain itself when there
 * is no MX) in parallel -> result. c-ares callbacks only update request state;
 * finished requests go on a done list and their user callbacks run from
 * dispatch(), after c-ares has returned, so a user callback may start new
 * requests, cancel others or free the resolver without re-entering c-ares.
 *
 * c-ares cannot cancel one query, so a cancelled request stays allocated
 * (without its callback) until its outstanding queries have come back. */
#include "io/dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "base/log.h"
#include "base/util.h"
#include "io/evloop.h"

#define MAX_SERVERS 8
#define MAX_MX_RECORDS 100 /* MX records examined per answer */
#define NOTE_MAX 512	   /* bytes of notes about skipped hosts */

struct watch {
	int fd;
	unsigned mask;
};

/* Per-family state of one host's address lookup. */
enum fam_state { FAM_SKIP, FAM_PENDING, FAM_OK, FAM_NONE /* NXDOMAIN/NODATA */, FAM_TEMP };

struct mxhost {
	char *name;
	uint16_t pref;
	uint32_t rnd; /* tie-break among equal preferences (RFC 5321 5.1) */
	struct dns_addr v4[DNS_MAX_ADDRS], v6[DNS_MAX_ADDRS];
	size_t n4, n6;
	enum fam_state st4, st6;
	int err4, err6; /* ares status of a failed lookup */
};

struct dns_req {
	struct dns *d;
	struct dns_req *prev, *next; /* every live request */
	struct dns_req *next_done;   /* done list link */
	dns_mx_cb *cb;
	void *ctx;
	unsigned flags;
	char name[DNS_MAX_NAME + 1];
	unsigned outstanding; /* c-ares queries in flight */
	bool cancelled, done;
	struct dns_result *res; /* set when done */
	bool implicit;
	bool direct; /* dns_host_addrs: no MX step */
	struct mxhost *hosts;
	size_t nhosts;
	char note[NOTE_MAX]; /* skipped MX records, for the message */
};

/* One c-ares query's argument. */
struct query {
	struct dns_req *req;
	size_t host; /* index in req->hosts (address queries) */
	int family;  /* AF_INET, AF_INET6, or 0 for the MX query */
};

struct dns {
	struct evloop *ev;
	ares_channel ch;
	struct watch *w;
	size_t nw, capw;
	struct ev_timer *timer; /* at ares_timeout() */
	struct ev_timer *kick;	/* 0 ms: run callbacks of requests done outside c-ares */
	struct dns_req *reqs;
	struct dns_req *done_head, *done_tail;
	unsigned depth; /* > 0 while user callbacks run */
	bool dying;
};

/* ---- small helpers ---- */

void dns_addr_str(const struct dns_addr *a, char *out, size_t outsz)
{
	if (!inet_ntop(a->family, a->family == AF_INET ? (const void *)&a->u.v4
						    : (const void *)&a->u.v6,
		       out, (socklen_t)outsz))
		snprintf(out, outsz, "?");
}

static bool is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

int dns_check_name(const char *p, size_t n, char out[DNS_MAX_NAME + 1], const char **why)
{
	if (n > 1 && p[n - 1] == '.')
		n--; /* the root label of an absolute name */
	if (n == 0) {
		*why = "empty domain name";
		return -1;
	}
	if (n > DNS_MAX_NAME) {
		*why = "domain name too long";
		return -1;
	}
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '.') {
			if (label == 0) {
				*why = "empty label in domain name";
				return -1;
			}
			label = 0;
		} else if (is_ldh(c)) {
			if (++label > 63) { /* RFC 1035 2.3.4 */
				*why = "label longer than 63 octets in domain name";
				return -1;
			}
		} else if (c >= 0x80) {
			*why = "non-ASCII domain name (IDN is not supported)";
			return -1;
		} else {
			*why = "invalid character in domain name";
			return -1;
		}
		out[i] = ascii_tolower((char)c);
	}
	if (label == 0) {
		*why = "empty label in domain name";
		return -1;
	}
	out[n] = '\0';
	return 0;
}

/* A name that is really an IPv4/IPv6 address written without brackets. */
static bool looks_like_ip(const char *s)
{
	struct in6_addr a6;
	if (inet_pton(AF_INET6, s, &a6) == 1)
		return true;
	/* All digits and dots: not a host name (no TLD is numeric). */
	return s[0] != '\0' && strspn(s, "0123456789.") == strlen(s);
}

int dns_parse_literal(const char *p, size_t n, struct dns_addr *a, const char **why)
{
	if (n == 0 || p[0] != '[')
		return 0;
	if (n < 2 || p[n - 1] != ']') {
		*why = "unterminated address literal";
		return -1;
	}
	const char *in = p + 1;
	size_t len = n - 2;
	char buf[INET6_ADDRSTRLEN + 1];
	memset(a, 0, sizeof *a);
	if (memchr(in, '\0', len)) {
		*why = "NUL in address literal";
		return -1;
	}
	/* RFC 5321 4.1.3: IPv6-address-literal = "IPv6:" IPv6-addr */
	if (len >= 5 && ascii_prefix_ci(in, len, "IPv6:")) {
		in += 5;
		len -= 5;
		if (len == 0 || len >= sizeof buf) {
			*why = "malformed IPv6 address literal";
			return -1;
		}
		memcpy(buf, in, len);
		buf[len] = '\0';
		if (inet_pton(AF_INET6, buf, &a->u.v6) != 1) {
			*why = "malformed IPv6 address literal";
			return -1;
		}
		a->family = AF_INET6;
		return 1;
	}
	if (memchr(in, ':', len)) {
		/* General-address-literal: a tag we do not know. */
		*why = "unsupported address literal";
		return -1;
	}
	if (len == 0 || len > 15) {
		*why = "malformed IPv4 address literal";
		return -1;
	}
	memcpy(buf, in, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a->u.v4) != 1) {
		*why = "malformed IPv4 address literal";
		return -1;
	}
	a->family = AF_INET;
	return 1;
}

static int parse_port(const char *s, size_t n, uint16_t *port)
{
	if (n == 0 || n > 5)
		return -1;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* One "host[:port]" token. */
static int parse_server(const char *s, size_t n, struct dns_server_addr *o, const char **why)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *h = s, *port = NULL;
	size_t hn = n, pn = 0;
	o->port = 53;
	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close) {
			*why = "unterminated '[' in DNS server";
			return -1;
		}
		h = s + 1;
		hn = (size_t)(close - h);
		size_t rest = n - (size_t)(close + 1 - s);
		if (rest > 0) {
			if (close[1] != ':') {
				*why = "junk after ']' in DNS server";
				return -1;
			}
			port = close + 2;
			pn = rest - 1;
		}
	} else {
		const char *c = memchr(s, ':', n);
		if (c && !memchr(c + 1, ':', n - (size_t)(c + 1 - s))) {
			hn = (size_t)(c - s); /* exactly one colon: IPv4:port */
			port = c + 1;
			pn = n - hn - 1;
		}
	}
	if (port && parse_port(port, pn, &o->port) < 0) {
		*why = "bad port in DNS server (1-65535)";
		return -1;
	}
	if (hn == 0 || hn >= sizeof host) {
		*why = "DNS server must be an IPv4 or IPv6 address";
		return -1;
	}
	memcpy(host, h, hn);
	host[hn] = '\0';
	memset(&o->addr, 0, sizeof o->addr);
	if (inet_pton(AF_INET, host, &o->addr.u.v4) == 1)
		o->addr.family = AF_INET;
	else if (inet_pton(AF_INET6, host, &o->addr.u.v6) == 1)
		o->addr.family = AF_INET6;
	else {
		*why = "DNS server must be an IPv4 or IPv6 address";
		return -1;
	}
	return 0;
}

int dns_parse_servers(const char *s, struct dns_server_addr *out, size_t max, const char **why)
{
	size_t count = 0, i = 0, n = strlen(s);
	while (i < n) {
		if (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && s[j] != ' ' && s[j] != '\t' && s[j] != ',')
			j++;
		if (count == max) {
			*why = "too many DNS servers";
			return -1;
		}
		if (parse_server(s + i, j - i, &out[count], why) < 0)
			return -1;
		count++;
		i = j;
	}
	if (count == 0) {
		*why = "no DNS server given";
		return -1;
	}
	return (int)count;
}

static void note_add(struct dns_req *r, const char *fmt, ...) ATTR_FORMAT(2, 3);
static void note_add(struct dns_req *r, const char *fmt, ...)
{
	size_t len = strlen(r->note);
	if (len + 4 >= sizeof r->note)
		return;
	if (len > 0) {
		memcpy(r->note + len, "; ", 3);
		len += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(r->note + len, sizeof r->note - len, fmt, ap);
	va_end(ap);
	if (k < 0)
		r->note[len] = '\0';
}

/* ---- evloop glue ---- */

static void rearm(struct dns *d);
static bool dispatch(struct dns *d);

static void on_fd(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)ev;
	struct dns *d = ctx;
	ares_process_fd(d->ch, (events & EV_READ) ? fd : ARES_SOCKET_BAD,
			(events & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	rearm(d);
	dispatch(d);
}

static void on_timer(struct evloop *ev, void *ctx)
{
	(void)ev;
	struct dns *d = ctx;
	d->timer = NULL; /* freed by the loop after we return */
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm(d);
	dispatch(d);
}

static void on_kick(struct evloop *ev, void *ctx)
{
	(void)ev;
	struct dns *d = ctx;
	d->kick = NULL;
	dispatch(d);
}

static void rearm(struct dns *d)
{
	ev_timer_del(d->ev, &d->timer);
	struct timeval tv;
	if (!ares_timeout(d->ch, NULL, &tv))
		return; /* nothing in flight */
	uint64_t ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
	d->timer = ev_timer_add(d->ev, ms, on_timer, d);
}

/* c-ares: which sockets to watch for what (ARES_OPT_SOCK_STATE_CB). */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	unsigned mask = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
	size_t i;
	for (i = 0; i < d->nw && d->w[i].fd != fd; i++)
		;
	if (mask == 0) {
		if (i < d->nw) {
			ev_del_fd(d->ev, fd);
			d->w[i] = d->w[--d->nw];
		}
		return;
	}
	if (i < d->nw) {
		d->w[i].mask = mask;
		ev_mod_fd(d->ev, fd, mask);
		return;
	}
	if (ev_add_fd(d->ev, fd, mask, on_fd, d) < 0) {
		/* c-ares times the query out on this server. */
		log_warn("dns: ev_add_fd(%d)", fd);
		return;
	}
	if (d->nw == d->capw) {
		d->capw = d->capw ? d->capw * 2 : 8;
		d->w = xrealloc(d->w, d->capw * sizeof *d->w);
	}
	d->w[d->nw++] = (struct watch){ fd, mask };
}

/* ---- requests ---- */

static void req_unlink(struct dns_req *r)
{
	struct dns *d = r->d;
	if (r->prev)
		r->prev->next = r->next;
	else
		d->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

static void req_free(struct dns_req *r)
{
	req_unlink(r);
	for (size_t i = 0; i < r->nhosts; i++)
		free(r->hosts[i].name);
	free(r->hosts);
	dns_result_free(&r->res);
	free(r);
}

void dns_result_free(struct dns_result **resp)
{
	struct dns_result *res = *resp;
	if (!res)
		return;
	*resp = NULL;
	for (size_t i = 0; i < res->nhosts; i++) {
		free(res->hosts[i].name);
		free(res->hosts[i].addrs);
	}
	free(res->hosts);
	free(res->msg);
	free(res);
}

static bool addr_eq(const struct dns_addr *a, const struct dns_addr *b)
{
	if (a->family != b->family)
		return false;
	return a->family == AF_INET ? a->u.v4.s_addr == b->u.v4.s_addr
				    : memcmp(&a->u.v6, &b->u.v6, sizeof a->u.v6) == 0;
}

static bool host_is_self(const struct dns_host *h, const char *const *names, size_t nnames,
			 const struct dns_addr *addrs, size_t naddrs)
{
	for (size_t i = 0; i < nnames; i++)
		if (ascii_strcasecmp(h->name, names[i]) == 0)
			return true;
	for (size_t i = 0; i < h->naddrs; i++)
		for (size_t j = 0; j < naddrs; j++)
			if (addr_eq(&h->addrs[i], &addrs[j]))
				return true;
	return false;
}

size_t dns_result_cut_self(struct dns_result *res, const char *const *names, size_t nnames,
			   const struct dns_addr *addrs, size_t naddrs)
{
	size_t cut = res->nhosts;
	for (size_t i = 0; i < res->nhosts; i++) {
		if (host_is_self(&res->hosts[i], names, nnames, addrs, naddrs)) {
			cut = i;
			break;
		}
	}
	/* Hosts are sorted by preference: back up to the first of our level. */
	while (cut > 0 && cut < res->nhosts && res->hosts[cut - 1].pref == res->hosts[cut].pref)
		cut--;
	for (size_t i = cut; i < res->nhosts; i++) {
		free(res->hosts[i].name);
		free(res->hosts[i].addrs);
	}
	res->nhosts = cut;
	return cut;
}

static void schedule_kick(struct dns *d)
{
	if (!d->kick && d->depth == 0)
		d->kick = ev_timer_add(d->ev, 0, on_kick, d);
}

/* The request is finished with res; queue its callback. */
static void req_done(struct dns_req *r, struct dns_result *res)
{
	struct dns *d = r->d;
	ASSERT(!r->done && r->outstanding == 0);
	r->done = true;
	r->res = res;
	r->next_done = NULL;
	if (d->done_tail)
		d->done_tail->next_done = r;
	else
		d->done_head = r;
	d->done_tail = r;
}

static struct dns_result *result_new(enum dns_status st, const char *esc)
{
	struct dns_result *res = xcalloc(1, sizeof *res);
	res->status = st;
	res->esc = esc;
	return res;
}

static void fail(struct dns_req *r, enum dns_status st, const char *esc, char *msg)
{
	struct dns_result *res = result_new(st, esc);
	res->msg = msg;
	req_done(r, res);
}

/* Run the callbacks of finished requests. True if the resolver was freed
 * (by a callback) and must not be touched. */
static bool dispatch(struct dns *d)
{
	if (d->depth > 0)
		return false; /* the outer dispatch loop picks new ones up */
	d->depth++;
	while (d->done_head && !d->dying) {
		struct dns_req *r = d->done_head;
		d->done_head = r->next_done;
		if (!d->done_head)
			d->done_tail = NULL;
		struct dns_result *res = r->res;
		dns_mx_cb *cb = r->cb;
		void *ctx = r->ctx;
		r->res = NULL;
		req_free(r);
		cb(res, ctx);
	}
	d->depth--;
	if (d->dying) {
		struct dns *dd = d;
		dns_free(&dd);
		return true;
	}
	return false;
}

static bool ares_temp(int status)
{
	return status != ARES_ENODATA && status != ARES_ENOTFOUND && status != ARES_EBADNAME;
}

static void addr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen);
static void mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

/* c-ares may call back before ares_query() returns (immediate errors). */
static void start_query(struct dns_req *r, const char *name, int type, size_t host, int family)
{
	struct query *q = xmalloc(sizeof *q);
	*q = (struct query){ r, host, family };
	r->outstanding++;
	ares_query(r->d->ch, name, 1 /* C_IN */, type, family ? addr_cb : mx_cb, q);
}

/* Build the result once every address lookup has answered. */
static void finish(struct dns_req *r)
{
	size_t usable = 0;
	bool temp = false;
	char why[160];
	for (size_t i = 0; i < r->nhosts; i++) {
		struct mxhost *h = &r->hosts[i];
		if (h->n4 + h->n6 > 0) {
			usable++;
			continue;
		}
		if (h->st4 == FAM_TEMP || h->st6 == FAM_TEMP) {
			temp = true;
			int e = h->st6 == FAM_TEMP ? h->err6 : h->err4;
			snprintf(why, sizeof why, "%s: address lookup failed (%s)", h->name,
				 ares_strerror(e));
		} else {
			snprintf(why, sizeof why, "%s: no address record", h->name);
		}
		if (!r->implicit && !r->direct)
			note_add(r, "%s", why);
	}
	if (usable == 0 && r->direct) {
		const struct mxhost *h = &r->hosts[0];
		bool nx = (h->st4 == FAM_SKIP || h->err4 == ARES_ENOTFOUND) &&
			  (h->st6 == FAM_SKIP || h->err6 == ARES_ENOTFOUND);
		if (temp)
			fail(r, DNS_TEMPFAIL, "4.4.3", xasprintf("%s", why));
		else
			fail(r, DNS_PERMFAIL, nx ? "5.1.2" : "5.4.4",
			     nx ? xasprintf("host %s does not exist", r->name)
				: xasprintf("%s: no A/AAAA record", r->name));
		return;
	}
	if (usable == 0) {
		char *msg;
		if (r->implicit)
			msg = temp ? xasprintf("%s: no MX, and %s", r->name, why)
				   : xasprintf("%s: no MX and no A/AAAA record", r->name);
		else
			msg = xasprintf("no usable MX host for %s (%s)", r->name, r->note);
		/* RFC 5321 5.1: unusable MX hosts or implicit MX are an error;
		 * a temporary DNS failure among them means try again later. */
		fail(r, temp ? DNS_TEMPFAIL : DNS_PERMFAIL, temp ? "4.4.3" : "5.4.4", msg);
		return;
	}
	struct dns_result *res = result_new(DNS_OK, NULL);
	res->implicit_mx = r->implicit;
	res->hosts = xcalloc(usable, sizeof *res->hosts);
	for (size_t i = 0; i < r->nhosts; i++) {
		struct mxhost *h = &r->hosts[i];
		size_t n = h->n4 + h->n6;
		if (n == 0)
			continue;
		struct dns_host *o = &res->hosts[res->nhosts++];
		o->name = h->name;
		h->name = NULL;
		o->pref = h->pref;
		o->addrs = xcalloc(n, sizeof *o->addrs);
		/* Interleave families, IPv6 first (RFC 8305 4); each family keeps
		 * the resolver's order (RFC 5321 5.1). */
		size_t a = 0, b = 0;
		while (a < h->n6 || b < h->n4) {
			if (a < h->n6)
				o->addrs[o->naddrs++] = h->v6[a++];
			if (b < h->n4)
				o->addrs[o->naddrs++] = h->v4[b++];
		}
	}
	if (r->note[0])
		res->msg = xasprintf("%s: skipped %s", r->name, r->note);
	req_done(r, res);
}

/* Arguments of a c-ares callback: the query is consumed; false if the request
 * no longer wants results (then it may have been freed). */
static bool query_back(struct query *q, int status)
{
	struct dns_req *r = q->req;
	free(q);
	ASSERT(r->outstanding > 0);
	r->outstanding--;
	if (r->cancelled || status == ARES_EDESTRUCTION || r->d->dying) {
		r->cancelled = true;
		if (r->outstanding == 0)
			req_free(r);
		return false;
	}
	return true;
}

static void addr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct query *q = arg;
	struct dns_req *r = q->req;
	size_t hi = q->host;
	int family = q->family;
	if (!query_back(q, status))
		return;
	struct mxhost *h = &r->hosts[hi];
	enum fam_state *st = family == AF_INET ? &h->st4 : &h->st6;
	int *err = family == AF_INET ? &h->err4 : &h->err6;
	if (status == ARES_SUCCESS) {
		int n = DNS_MAX_ADDRS;
		if (family == AF_INET) {
			struct ares_addrttl t[DNS_MAX_ADDRS];
			status = ares_parse_a_reply(abuf, alen, NULL, t, &n);
			for (int i = 0; status == ARES_SUCCESS && i < n; i++) {
				h->v4[h->n4].family = AF_INET;
				h->v4[h->n4++].u.v4 = t[i].ipaddr;
			}
		} else {
			struct ares_addr6ttl t[DNS_MAX_ADDRS];
			status = ares_parse_aaaa_reply(abuf, alen, NULL, t, &n);
			for (int i = 0; status == ARES_SUCCESS && i < n; i++) {
				h->v6[h->n6].family = AF_INET6;
				memcpy(&h->v6[h->n6++].u.v6, &t[i].ip6addr, 16);
			}
		}
		if (status == ARES_SUCCESS && n == 0)
			status = ARES_ENODATA;
	}
	*err = status;
	*st = status == ARES_SUCCESS ? FAM_OK : ares_temp(status) ? FAM_TEMP : FAM_NONE;
	if (r->outstanding == 0)
		finish(r);
}

static int host_cmp(const void *a, const void *b)
{
	const struct mxhost *x = a, *y = b;
	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return x->rnd < y->rnd ? -1 : x->rnd > y->rnd;
}

static void add_host(struct dns_req *r, const char *name, uint16_t pref, size_t cap)
{
	for (size_t i = 0; i < r->nhosts; i++) {
		if (strcmp(r->hosts[i].name, name) == 0) {
			if (pref < r->hosts[i].pref)
				r->hosts[i].pref = pref;
			return;
		}
	}
	ASSERT(r->nhosts < cap);
	struct mxhost *h = &r->hosts[r->nhosts++];
	memset(h, 0, sizeof *h);
	h->name = xstrdup(name);
	h->pref = pref;
	random_bytes(&h->rnd, sizeof h->rnd);
}

static void resolve_hosts(struct dns_req *r)
{
	for (size_t i = 0; i < r->nhosts; i++) {
		struct mxhost *h = &r->hosts[i];
		h->st4 = (r->flags & DNS_F_NO_IPV4) ? FAM_SKIP : FAM_PENDING;
		h->st6 = (r->flags & DNS_F_NO_IPV6) ? FAM_SKIP : FAM_PENDING;
	}
	/* Start every query before any can complete synchronously (c-ares calls
	 * back inline on some immediate errors), so finish() runs once. */
	r->outstanding++;
	for (size_t i = 0; i < r->nhosts; i++) {
		char *name = r->hosts[i].name;
		if (r->hosts[i].st6 == FAM_PENDING)
			start_query(r, name, 28 /* T_AAAA */, i, AF_INET6);
		if (r->hosts[i].st4 == FAM_PENDING)
			start_query(r, name, 1 /* T_A */, i, AF_INET);
	}
	if (--r->outstanding == 0)
		finish(r);
}

/* RFC 5321 5.1: no MX records: the domain is its own MX, preference 0. */
static void implicit_mx(struct dns_req *r)
{
	r->implicit = true;
	r->hosts = xcalloc(1, sizeof *r->hosts);
	add_host(r, r->name, 0, 1);
	resolve_hosts(r);
}

static void mx_answer(struct dns_req *r, unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL;
	int status = ares_parse_mx_reply(abuf, alen, &mx);
	if (status == ARES_ENODATA) {
		implicit_mx(r); /* an answer with only a CNAME, say */
		return;
	}
	if (status != ARES_SUCCESS) {
		fail(r, DNS_TEMPFAIL, "4.4.3",
		     xasprintf("MX lookup for %s: %s", r->name, ares_strerror(status)));
		return;
	}
	size_t nmx = 0;
	for (struct ares_mx_reply *m = mx; m && nmx < MAX_MX_RECORDS; m = m->next)
		nmx++;
	r->hosts = xcalloc(nmx, sizeof *r->hosts);
	size_t seen = 0, nnull = 0;
	for (struct ares_mx_reply *m = mx; m && seen < nmx; m = m->next, seen++) {
		char name[DNS_MAX_NAME + 1];
		const char *why;
		size_t len = strlen(m->host);
		if (len == 0 || (len == 1 && m->host[0] == '.')) {
			nnull++; /* RFC 7505 null MX: "0 ." */
			continue;
		}
		if (dns_check_name(m->host, len, name, &why) < 0) {
			char esc[80];
			log_escape(m->host, len, esc, sizeof esc);
			note_add(r, "MX \"%s\": %s", esc, why);
			continue;
		}
		if (looks_like_ip(name)) {
			/* RFC 5321 5.1: the MX data MUST be a domain name. */
			note_add(r, "MX %s: an IP address, not a host name", name);
			continue;
		}
		add_host(r, name, m->priority, nmx);
	}
	ares_free_data(mx);
	if (r->nhosts == 0) {
		if (nnull > 0 && r->note[0] == '\0')
			/* RFC 7505 4.1: fail at once, no retries. */
			fail(r, DNS_PERMFAIL, "5.1.10",
			     xasprintf("%s does not accept mail (null MX, RFC 7505)", r->name));
		else
			fail(r, DNS_PERMFAIL, "5.4.4",
			     xasprintf("no usable MX host for %s (%s)", r->name, r->note));
		return;
	}
	/* RFC 7505 3 forbids other MX records next to a null MX; if there are
	 * some, they are the only thing we can use, so we use them. */
	qsort(r->hosts, r->nhosts, sizeof *r->hosts, host_cmp);
	while (r->nhosts > DNS_MAX_HOSTS)
		free(r->hosts[--r->nhosts].name);
	resolve_hosts(r);
}

static void mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct query *q = arg;
	struct dns_req *r = q->req;
	if (!query_back(q, status))
		return;
	if (status == ARES_SUCCESS) {
		mx_answer(r, abuf, alen);
	} else if (status == ARES_ENODATA) {
		implicit_mx(r); /* NOERROR without answers */
	} else if (status == ARES_ENOTFOUND) {
		/* RFC 5321 5.1: a non-existent domain MUST be reported as an error. */
		fail(r, DNS_PERMFAIL, "5.1.2", xasprintf("domain %s does not exist", r->name));
	} else {
		fail(r, DNS_TEMPFAIL, "4.4.3",
		     xasprintf("MX lookup for %s: %s", r->name, ares_strerror(status)));
	}
}

static struct dns_req *req_new(struct dns *d, unsigned flags, dns_mx_cb *cb, void *ctx)
{
	ASSERT(!d->dying && cb);
	ASSERT((flags & (DNS_F_NO_IPV4 | DNS_F_NO_IPV6)) != (DNS_F_NO_IPV4 | DNS_F_NO_IPV6));
	struct dns_req *r = xcalloc(1, sizeof *r);
	r->d = d;
	r->cb = cb;
	r->ctx = ctx;
	r->flags = flags;
	r->next = d->reqs;
	if (r->next)
		r->next->prev = r;
	d->reqs = r;
	return r;
}

/* Finish r with a single address and no DNS. */
static void literal_done(struct dns_req *r, const struct dns_addr *lit)
{
	if ((lit->family == AF_INET && (r->flags & DNS_F_NO_IPV4)) ||
	    (lit->family == AF_INET6 && (r->flags & DNS_F_NO_IPV6))) {
		fail(r, DNS_PERMFAIL, "5.4.4", xasprintf("address of a disabled address family"));
		return;
	}
	struct dns_result *res = result_new(DNS_OK, NULL);
	res->literal = true;
	res->nhosts = 1;
	res->hosts = xcalloc(1, sizeof *res->hosts);
	char s[INET6_ADDRSTRLEN];
	dns_addr_str(lit, s, sizeof s);
	res->hosts[0].name = xstrdup(s);
	res->hosts[0].naddrs = 1;
	res->hosts[0].addrs = xmalloc(sizeof *lit);
	res->hosts[0].addrs[0] = *lit;
	req_done(r, res);
}

/* Common tail: callbacks of requests already done run from the loop. */
static struct dns_req *req_started(struct dns_req *r)
{
	struct dns *d = r->d;
	if (d->done_head)
		schedule_kick(d);
	rearm(d);
	return r;
}

struct dns_req *dns_mx_targets(struct dns *d, const char *p, size_t n, unsigned flags,
			       dns_mx_cb *cb, void *ctx)
{
	struct dns_req *r = req_new(d, flags, cb, ctx);
	const char *why;
	struct dns_addr lit;
	int k = dns_parse_literal(p, n, &lit, &why);
	if (k > 0)
		literal_done(r, &lit);
	else if (k < 0)
		fail(r, DNS_PERMFAIL, "5.1.2", xasprintf("%s", why));
	else if (dns_check_name(p, n, r->name, &why) < 0)
		fail(r, DNS_PERMFAIL, "5.1.2", xasprintf("%s", why));
	else if (looks_like_ip(r->name))
		fail(r, DNS_PERMFAIL, "5.1.2",
		     xasprintf("%s: an IP address must be written as [literal]", r->name));
	else
		start_query(r, r->name, 15 /* T_MX */, 0, 0);
	return req_started(r);
}

struct dns_req *dns_host_addrs(struct dns *d, const char *p, size_t n, unsigned flags,
			       dns_mx_cb *cb, void *ctx)
{
	struct dns_req *r = req_new(d, flags, cb, ctx);
	r->direct = true;
	const char *why;
	struct dns_addr lit;
	char ip[INET6_ADDRSTRLEN + 1];
	int k = dns_parse_literal(p, n, &lit, &why);
	if (k == 0 && n < sizeof ip && !memchr(p, '\0', n)) {
		/* A bare address is fine here (a configured host, not an address). */
		memcpy(ip, p, n);
		ip[n] = '\0';
		memset(&lit, 0, sizeof lit);
		if (inet_pton(AF_INET, ip, &lit.u.v4) == 1)
			lit.family = AF_INET;
		else if (inet_pton(AF_INET6, ip, &lit.u.v6) == 1)
			lit.family = AF_INET6;
		k = lit.family ? 1 : 0;
	}
	if (k > 0) {
		literal_done(r, &lit);
	} else if (k < 0) {
		fail(r, DNS_PERMFAIL, "5.1.2", xasprintf("%s", why));
	} else if (dns_check_name(p, n, r->name, &why) < 0) {
		fail(r, DNS_PERMFAIL, "5.1.2", xasprintf("%s", why));
	} else {
		r->hosts = xcalloc(1, sizeof *r->hosts);
		add_host(r, r->name, 0, 1);
		resolve_hosts(r);
	}
	return req_started(r);
}

void dns_cancel(struct dns_req **rp)
{
	struct dns_req *r = *rp;
	if (!r)
		return;
	*rp = NULL;
	struct dns *d = r->d;
	r->cb = NULL;
	r->ctx = NULL;
	if (r->done) {
		/* Unlink from the done list; its callback has not started. */
		struct dns_req **pp = &d->done_head, *prev = NULL;
		while (*pp && *pp != r) {
			prev = *pp;
			pp = &(*pp)->next_done;
		}
		ASSERT(*pp == r);
		*pp = r->next_done;
		if (d->done_tail == r)
			d->done_tail = prev;
		req_free(r);
		return;
	}
	r->cancelled = true;
	if (r->outstanding == 0)
		req_free(r);
}

/* ---- lifetime ---- */

struct dns *dns_new(struct evloop *ev, const struct dns_settings *s, char **err_r)
{
	struct dns_server_addr sv[MAX_SERVERS];
	int nsv = 0;
	*err_r = NULL;
	if (s->servers && s->servers[strspn(s->servers, " \t,")] != '\0') {
		const char *why;
		nsv = dns_parse_servers(s->servers, sv, MAX_SERVERS, &why);
		if (nsv < 0) {
			*err_r = xasprintf("dns_servers: %s", why);
			return NULL;
		}
	}
	int rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		*err_r = xasprintf("ares_library_init: %s", ares_strerror(rc));
		return NULL;
	}
	struct dns *d = xcalloc(1, sizeof *d);
	d->ev = ev;
	struct ares_options o;
	memset(&o, 0, sizeof o);
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS;
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = d;
	/* RFC 5321 5.1: relays MUST NOT complete partial names: no search list. */
	o.flags = ARES_FLAG_NOSEARCH;
	if (s->timeout_ms) {
		o.timeout = (int)s->timeout_ms;
		mask |= ARES_OPT_TIMEOUTMS;
	}
	if (s->tries) {
		o.tries = (int)s->tries;
		mask |= ARES_OPT_TRIES;
	}
	rc = ares_init_options(&d->ch, &o, mask);
	if (rc != ARES_SUCCESS) {
		*err_r = xasprintf("ares_init_options: %s", ares_strerror(rc));
		free(d);
		ares_library_cleanup();
		return NULL;
	}
	if (nsv > 0) {
		struct ares_addr_port_node nodes[MAX_SERVERS];
		memset(nodes, 0, sizeof nodes);
		for (int i = 0; i < nsv; i++) {
			nodes[i].next = i + 1 < nsv ? &nodes[i + 1] : NULL;
			nodes[i].family = sv[i].addr.family;
			if (sv[i].addr.family == AF_INET)
				nodes[i].addr.addr4 = sv[i].addr.u.v4;
			else
				memcpy(&nodes[i].addr.addr6, &sv[i].addr.u.v6, 16);
			nodes[i].udp_port = sv[i].port;
			nodes[i].tcp_port = sv[i].port;
		}
		rc = ares_set_servers_ports(d->ch, nodes);
		if (rc != ARES_SUCCESS) {
			*err_r = xasprintf("ares_set_servers_ports: %s", ares_strerror(rc));
			ares_destroy(d->ch);
			free(d);
			ares_library_cleanup();
			return NULL;
		}
	}
	return d;
}

void dns_free(struct dns **dp)
{
	struct dns *d = *dp;
	if (!d)
		return;
	*dp = NULL;
	d->dying = true;
	if (d->depth > 0)
		return; /* dispatch() finishes the job once the callback returns */
	/* Pending queries come back with ARES_EDESTRUCTION and free their
	 * requests; sockets are closed (the state callback drops the watches). */
	ares_destroy(d->ch);
	while (d->reqs)
		req_free(d->reqs); /* done, or never sent */
	for (size_t i = 0; i < d->nw; i++)
		ev_del_fd(d->ev, d->w[i].fd);
	free(d->w);
	ev_timer_del(d->ev, &d->timer);
	ev_timer_del(d->ev, &d->kick);
	free(d);
	ares_library_cleanup();
}
