/* SPDX-License-Identifier: MIT */
/* Resolver tests against a tiny authoritative DNS server that runs on the same
 * evloop (UDP and TCP on one 127.0.0.1 port), answering from the zone table
 * below: MX order and random ties, implicit MX, null MX, NXDOMAIN, SERVFAIL,
 * a name that is never answered (timeout), truncation (TC then TCP), CNAMEs,
 * unusable MX hosts, limits, literals, cancellation and freeing from inside a
 * callback. Plus table tests of the name, literal and servers parsers.
 * Every test has a guard timer so it is bounded in time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/util.h"
#include "io/dns.h"
#include "io/evloop.h"

/* ---- the test DNS server ---- */

enum { T_A = 1, T_CNAME = 5, T_MX = 15, T_TXT = 16, T_AAAA = 28 };
enum zkind { Z_REC, Z_SERVFAIL, Z_DROP, Z_TRUNC };

struct zrec {
	const char *name;
	enum zkind kind;
	int type;
	const char *data; /* A/AAAA address, CNAME target, MX "pref host" */
};

static const struct zrec zone[] = {
	{ "order.test", Z_REC, T_MX, "20 mx2.order.test" },
	{ "order.test", Z_REC, T_MX, "10 mx1.order.test" },
	{ "order.test", Z_REC, T_MX, "30 mx3.order.test" },
	{ "mx1.order.test", Z_REC, T_A, "192.0.2.1" },
	{ "mx1.order.test", Z_REC, T_A, "192.0.2.11" },
	{ "mx1.order.test", Z_REC, T_AAAA, "2001:db8::1" },
	{ "mx2.order.test", Z_REC, T_A, "192.0.2.2" },
	{ "mx3.order.test", Z_REC, T_AAAA, "2001:db8::3" },

	{ "equal.test", Z_REC, T_MX, "10 e1.equal.test" },
	{ "equal.test", Z_REC, T_MX, "10 e2.equal.test" },
	{ "equal.test", Z_REC, T_MX, "10 e3.equal.test" },
	{ "equal.test", Z_REC, T_MX, "10 e4.equal.test" },
	{ "equal.test", Z_REC, T_MX, "5 first.equal.test" },
	{ "first.equal.test", Z_REC, T_A, "192.0.2.20" },
	{ "e1.equal.test", Z_REC, T_A, "192.0.2.21" },
	{ "e2.equal.test", Z_REC, T_A, "192.0.2.22" },
	{ "e3.equal.test", Z_REC, T_A, "192.0.2.23" },
	{ "e4.equal.test", Z_REC, T_A, "192.0.2.24" },

	{ "plain.test", Z_REC, T_A, "192.0.2.5" },
	{ "plain.test", Z_REC, T_AAAA, "2001:db8::5" },
	{ "noaddr.test", Z_REC, T_CNAME, "nowhere.test" }, /* NXDOMAIN at the end */
	{ "emptydom.test", Z_REC, T_TXT, "v=spf1 -all" },   /* exists: no MX, no A */
	{ "null.test", Z_REC, T_MX, "0 ." },
	{ "null.test", Z_REC, T_A, "192.0.2.6" }, /* must not be used */
	{ "mixednull.test", Z_REC, T_MX, "0 ." },
	{ "mixednull.test", Z_REC, T_MX, "10 mx2.order.test" },
	{ "servfail.test", Z_SERVFAIL, 0, NULL },
	{ "drop.test", Z_DROP, 0, NULL },
	{ "trunc.test", Z_TRUNC, T_MX, "10 mx2.order.test" },

	{ "cname.test", Z_REC, T_MX, "10 alias.cname.test" },
	{ "alias.cname.test", Z_REC, T_CNAME, "real.cname.test" },
	{ "real.cname.test", Z_REC, T_A, "192.0.2.7" },
	{ "cnamedom.test", Z_REC, T_CNAME, "target.test" },
	{ "target.test", Z_REC, T_MX, "5 mx.target.test" },
	{ "mx.target.test", Z_REC, T_A, "192.0.2.8" },

	{ "ipmx.test", Z_REC, T_MX, "10 192.0.2.9" },
	{ "ipmx.test", Z_REC, T_MX, "20 good.ipmx.test" },
	{ "good.ipmx.test", Z_REC, T_A, "192.0.2.10" },
	{ "onlyip.test", Z_REC, T_MX, "10 192.0.2.9" },
	{ "badmx.test", Z_REC, T_MX, "10 gone.badmx.test" },
	{ "badmx.test", Z_REC, T_MX, "20 ok.badmx.test" },
	{ "ok.badmx.test", Z_REC, T_A, "192.0.2.12" },
	{ "deadmx.test", Z_REC, T_MX, "10 gone.deadmx.test" },
	{ "deadmx.test", Z_REC, T_MX, "20 noaddr.deadmx.test" },
	{ "noaddr.deadmx.test", Z_REC, T_MX, "10 elsewhere.test" }, /* exists, no A */
	{ "tempmx.test", Z_REC, T_MX, "10 gone.tempmx.test" },
	{ "tempmx.test", Z_REC, T_MX, "20 servfail.test" },
	{ "dupmx.test", Z_REC, T_MX, "20 mx2.order.test" },
	{ "dupmx.test", Z_REC, T_MX, "10 MX2.order.test" },
	{ "weirdmx.test", Z_REC, T_MX, "10 we\"ird.test" },
	{ "halfmx.test", Z_REC, T_MX, "10 half.halfmx.test" },
	{ "half.halfmx.test", Z_REC, T_A, "192.0.2.13" },
	{ "half.halfmx.test", Z_SERVFAIL, T_AAAA, NULL },
};

/* Generated records for the limit tests: many.test has 20 MX hosts (needs
 * TCP: too big for 512 octets of UDP), manyaddr.test 15 A and 15 AAAA. */
static char gen_names[40][32], gen_data[40][40];
static struct zrec gen[40];
static size_t ngen;

static void gen_zone(void)
{
	ngen = 0;
	for (int i = 1; i <= 20; i++) {
		/* mNN with preference 21 - NN: m20 is the best. */
		size_t k = ngen++;
		snprintf(gen_data[k], sizeof gen_data[0], "%d m%02d.many.test", 21 - i, i);
		gen[k] = (struct zrec){ "many.test", Z_REC, T_MX, gen_data[k] };
		k = ngen++;
		snprintf(gen_names[k], sizeof gen_names[0], "m%02d.many.test", i);
		snprintf(gen_data[k], sizeof gen_data[0], "192.0.2.%d", 100 + i);
		gen[k] = (struct zrec){ gen_names[k], Z_REC, T_A, gen_data[k] };
	}
}

static const struct zrec *zrec_at(size_t i)
{
	if (i < N_ELEMENTS(zone))
		return &zone[i];
	i -= N_ELEMENTS(zone);
	return i < ngen ? &gen[i] : NULL;
}

static char manyaddr[30][40];

/* Called when the server sees a query for hook_name (any type). */
static const char *hook_name;
static void (*hook_fn)(void);

struct srv {
	struct evloop *ev;
	int udp, tcp;
	uint16_t port;
	int conns[8];
	uint8_t cbuf[8][600];
	size_t clen[8];
	unsigned nudp, ntcp, ndropped;
};

static size_t put_name(uint8_t *o, const char *name)
{
	size_t k = 0;
	if (strcmp(name, ".") == 0) {
		o[k++] = 0;
		return k;
	}
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		o[k++] = (uint8_t)len;
		memcpy(o + k, p, len);
		k += len;
		p += len + (dot ? 1 : 0);
	}
	o[k++] = 0;
	return k;
}

static size_t put_rr(uint8_t *o, const char *owner, int type, const char *data)
{
	size_t k = put_name(o, owner);
	o[k++] = (uint8_t)(type >> 8);
	o[k++] = (uint8_t)type;
	o[k++] = 0;
	o[k++] = 1; /* IN */
	o[k++] = 0;
	o[k++] = 0;
	o[k++] = 1;
	o[k++] = 44; /* TTL 300 */
	size_t rdlen_at = k;
	k += 2;
	size_t start = k;
	if (type == T_A) {
		assert_int_equal(inet_pton(AF_INET, data, o + k), 1);
		k += 4;
	} else if (type == T_AAAA) {
		assert_int_equal(inet_pton(AF_INET6, data, o + k), 1);
		k += 16;
	} else if (type == T_CNAME) {
		k += put_name(o + k, data);
	} else if (type == T_TXT) {
		o[k++] = (uint8_t)strlen(data);
		memcpy(o + k, data, strlen(data));
		k += strlen(data);
	} else {
		unsigned pref = (unsigned)atoi(data);
		o[k++] = (uint8_t)(pref >> 8);
		o[k++] = (uint8_t)pref;
		k += put_name(o + k, strchr(data, ' ') + 1);
	}
	o[rdlen_at] = (uint8_t)((k - start) >> 8);
	o[rdlen_at + 1] = (uint8_t)(k - start);
	return k;
}

/* Records of (name, type), following CNAMEs; returns the answer count. Sets
 * *kind from the first special entry met, *exists if the name has any record. */
static unsigned lookup(const char *name, int type, uint8_t *o, size_t *k, enum zkind *kind,
		       bool *exists)
{
	unsigned an = 0;
	char cur[256];
	snprintf(cur, sizeof cur, "%s", name);
	for (int hop = 0; hop < 8; hop++) {
		const char *cname = NULL;
		bool found = false;
		for (size_t i = 0; zrec_at(i); i++) {
			const struct zrec *z = zrec_at(i);
			if (strcasecmp(z->name, cur) != 0)
				continue;
			found = true;
			if (z->kind != Z_REC && (z->type == 0 || z->type == type)) {
				*kind = z->kind;
				if (z->kind != Z_TRUNC)
					return 0;
			}
			if (z->kind == Z_SERVFAIL || z->kind == Z_DROP)
				continue;
			if (z->type == type) {
				*k += put_rr(o + *k, cur, type, z->data);
				an++;
			} else if (z->type == T_CNAME) {
				cname = z->data;
			}
		}
		if (strcasecmp(cur, "manyaddr.test") == 0) {
			found = true;
			for (int i = 0; i < 15 && (type == T_A || type == T_AAAA); i++) {
				char *d = manyaddr[i + (type == T_AAAA ? 15 : 0)];
				if (type == T_A)
					snprintf(d, 40, "198.51.100.%d", i + 1);
				else
					snprintf(d, 40, "2001:db8:1::%x", i + 1);
				*k += put_rr(o + *k, cur, type, d);
				an++;
			}
		}
		*exists = found;
		if (an > 0 || !cname)
			return an;
		*k += put_rr(o + *k, cur, T_CNAME, cname);
		an++;
		snprintf(cur, sizeof cur, "%s", cname);
	}
	return an;
}

/* Answer query q (n bytes) into o; returns the length, 0 to drop. */
static size_t answer(const uint8_t *q, size_t n, uint8_t *o, bool tcp)
{
	if (n < 12 + 5)
		return 0;
	char name[256];
	size_t i = 12, nl = 0;
	while (i < n && q[i] != 0) {
		size_t len = q[i++];
		if (len > 63 || i + len > n || nl + len + 1 >= sizeof name)
			return 0;
		if (nl)
			name[nl++] = '.';
		memcpy(name + nl, q + i, len);
		nl += len;
		i += len;
	}
	name[nl] = '\0';
	if (i + 5 > n)
		return 0;
	size_t qend = i + 5;
	if (hook_name && strcasecmp(name, hook_name) == 0) {
		hook_name = NULL;
		hook_fn();
	}
	int type = (q[i + 1] << 8) | q[i + 2];
	memcpy(o, q, qend);
	o[2] = (uint8_t)(0x84 | (q[2] & 0x01)); /* QR AA, RD copied */
	o[3] = 0x80;				 /* RA, NOERROR */
	o[4] = 0;
	o[5] = 1;
	memset(o + 6, 0, 6);
	size_t k = qend;
	enum zkind kind = Z_REC;
	bool exists = false;
	unsigned an = lookup(name, type, o, &k, &kind, &exists);
	if (kind == Z_DROP)
		return 0;
	if (kind == Z_SERVFAIL) {
		o[3] |= 2;
		return qend;
	}
	if (!exists)
		o[3] |= 3; /* NXDOMAIN */
	o[6] = (uint8_t)(an >> 8);
	o[7] = (uint8_t)an;
	if (!tcp && (kind == Z_TRUNC || k > 512)) {
		o[2] |= 0x02; /* TC: retry over TCP (RFC 1035 4.2.1) */
		o[6] = o[7] = 0;
		return qend;
	}
	return k;
}

static void srv_udp(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)ev;
	(void)events;
	struct srv *s = ctx;
	uint8_t q[512], o[8192];
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
	if (n <= 0)
		return;
	s->nudp++;
	size_t k = answer(q, (size_t)n, o, false);
	if (k == 0) {
		s->ndropped++;
		return;
	}
	assert_int_equal(sendto(fd, o, k, 0, (struct sockaddr *)&from, fl), (ssize_t)k);
}

static void srv_conn(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	struct srv *s = ctx;
	size_t c;
	for (c = 0; c < N_ELEMENTS(s->conns) && s->conns[c] != fd; c++)
		;
	assert_true(c < N_ELEMENTS(s->conns));
	ssize_t n = read(fd, s->cbuf[c] + s->clen[c], sizeof s->cbuf[c] - s->clen[c]);
	if (n <= 0) {
		ev_del_fd(ev, fd);
		close(fd);
		s->conns[c] = -1;
		s->clen[c] = 0;
		return;
	}
	s->clen[c] += (size_t)n;
	while (s->clen[c] >= 2) {
		size_t len = ((size_t)s->cbuf[c][0] << 8) | s->cbuf[c][1];
		if (s->clen[c] < 2 + len)
			return;
		s->ntcp++;
		uint8_t o[8192];
		size_t k = answer(s->cbuf[c] + 2, len, o + 2, true);
		if (k > 0) {
			o[0] = (uint8_t)(k >> 8);
			o[1] = (uint8_t)k;
			assert_int_equal(write(fd, o, k + 2), (ssize_t)(k + 2));
		}
		memmove(s->cbuf[c], s->cbuf[c] + 2 + len, s->clen[c] - 2 - len);
		s->clen[c] -= 2 + len;
	}
}

static void srv_accept(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	struct srv *s = ctx;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	for (size_t i = 0; i < N_ELEMENTS(s->conns); i++) {
		if (s->conns[i] < 0) {
			s->conns[i] = c;
			s->clen[i] = 0;
			assert_int_equal(ev_add_fd(ev, c, EV_READ, srv_conn, s), 0);
			return;
		}
	}
	close(c);
}

static void srv_start(struct srv *s, struct evloop *ev)
{
	memset(s, 0, sizeof *s);
	s->ev = ev;
	for (size_t i = 0; i < N_ELEMENTS(s->conns); i++)
		s->conns[i] = -1;
	gen_zone();
	for (int attempt = 0; attempt < 50; attempt++) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(s->udp >= 0);
		assert_int_equal(bind(s->udp, (struct sockaddr *)&a, sizeof a), 0);
		socklen_t al = sizeof a;
		assert_int_equal(getsockname(s->udp, (struct sockaddr *)&a, &al), 0);
		s->port = ntohs(a.sin_port);
		s->tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(s->tcp >= 0);
		if (bind(s->tcp, (struct sockaddr *)&a, sizeof a) == 0) {
			assert_int_equal(listen(s->tcp, 8), 0);
			assert_int_equal(ev_add_fd(ev, s->udp, EV_READ, srv_udp, s), 0);
			assert_int_equal(ev_add_fd(ev, s->tcp, EV_READ, srv_accept, s), 0);
			return;
		}
		close(s->udp);
		close(s->tcp);
	}
	fail_msg("no free port pair");
}

static void srv_stop(struct srv *s)
{
	for (size_t i = 0; i < N_ELEMENTS(s->conns); i++) {
		if (s->conns[i] >= 0) {
			ev_del_fd(s->ev, s->conns[i]);
			close(s->conns[i]);
		}
	}
	ev_del_fd(s->ev, s->udp);
	ev_del_fd(s->ev, s->tcp);
	close(s->udp);
	close(s->tcp);
}

/* ---- fixture ---- */

struct got {
	struct dns_result *res;
	unsigned calls;
};

struct fx {
	struct evloop *ev;
	struct srv srv;
	struct dns *dns;
	struct got got[32];
	unsigned want, have;
	bool guard_hit;
	struct ev_timer *guard;
};

static struct fx *fx_now; /* for callbacks that need the fixture */

static void guard_cb(struct evloop *ev, void *ctx)
{
	struct fx *f = ctx;
	f->guard = NULL;
	f->guard_hit = true;
	evloop_stop(ev);
}

static struct fx *fx_new_opts(unsigned timeout_ms, unsigned tries, const char *servers)
{
	struct fx *f = xcalloc(1, sizeof *f);
	f->ev = evloop_new();
	assert_non_null(f->ev);
	srv_start(&f->srv, f->ev);
	char sv[128];
	if (!servers) {
		snprintf(sv, sizeof sv, "127.0.0.1:%u", f->srv.port);
		servers = sv;
	}
	struct dns_settings st = { .servers = servers, .timeout_ms = timeout_ms, .tries = tries };
	char *err = NULL;
	f->dns = dns_new(f->ev, &st, &err);
	if (!f->dns)
		fail_msg("dns_new: %s", err);
	fx_now = f;
	return f;
}

static struct fx *fx_new(void)
{
	return fx_new_opts(100, 2, NULL);
}

static void fx_free(struct fx *f)
{
	dns_free(&f->dns);
	assert_null(f->dns);
	for (size_t i = 0; i < N_ELEMENTS(f->got); i++)
		dns_result_free(&f->got[i].res);
	srv_stop(&f->srv);
	ev_timer_del(f->ev, &f->guard);
	evloop_free(&f->ev);
	free(f);
	fx_now = NULL;
}

/* Run until `want` callbacks have arrived (or the guard, 3 s, fires). */
static void fx_run(struct fx *f, unsigned want)
{
	f->want = want;
	f->guard = ev_timer_add(f->ev, 3000, guard_cb, f);
	if (f->have < f->want)
		assert_int_equal(evloop_run(f->ev), 0);
	ev_timer_del(f->ev, &f->guard);
	assert_false(f->guard_hit);
	assert_int_equal(f->have, want);
}

/* Run for ms milliseconds, whatever happens. */
static void stop_cb(struct evloop *ev, void *ctx)
{
	(void)ctx;
	evloop_stop(ev);
}

static void fx_run_for(struct fx *f, unsigned ms)
{
	ev_timer_add(f->ev, ms, stop_cb, NULL);
	assert_int_equal(evloop_run(f->ev), 0);
}

static void got_cb(struct dns_result *res, void *ctx)
{
	struct got *g = ctx;
	struct fx *f = fx_now;
	g->calls++;
	dns_result_free(&g->res);
	g->res = res;
	f->have++;
	if (f->have >= f->want)
		evloop_stop(f->ev);
}

static struct dns_req *ask(struct fx *f, const char *domain, unsigned slot)
{
	return dns_mx_targets(f->dns, domain, strlen(domain), 0, got_cb, &f->got[slot]);
}

/* "name:pref:addr,addr name:pref:addr" for comparison. */
static void render(const struct dns_result *r, char *out, size_t outsz)
{
	size_t k = 0;
	out[0] = '\0';
	for (size_t i = 0; i < r->nhosts; i++) {
		const struct dns_host *h = &r->hosts[i];
		k += (size_t)snprintf(out + k, outsz - k, "%s%s:%u:", i ? " " : "", h->name,
				      h->pref);
		for (size_t j = 0; j < h->naddrs; j++) {
			char a[INET6_ADDRSTRLEN];
			dns_addr_str(&h->addrs[j], a, sizeof a);
			k += (size_t)snprintf(out + k, outsz - k, "%s%s", j ? "," : "", a);
		}
	}
}

/* ---- lookups ---- */

struct case_ {
	const char *domain;
	enum dns_status status;
	const char *esc;    /* NULL when OK */
	const char *hosts;  /* render() of an OK result */
	const char *msgsub; /* substring of msg, or NULL for msg == NULL */
	bool implicit;
};

static const struct case_ cases[] = {
	{ "order.test", DNS_OK, NULL,
	  "mx1.order.test:10:2001:db8::1,192.0.2.1,192.0.2.11 mx2.order.test:20:192.0.2.2 "
	  "mx3.order.test:30:2001:db8::3",
	  NULL, false },
	{ "ORDER.Test.", DNS_OK, NULL,
	  "mx1.order.test:10:2001:db8::1,192.0.2.1,192.0.2.11 mx2.order.test:20:192.0.2.2 "
	  "mx3.order.test:30:2001:db8::3",
	  NULL, false },
	{ "plain.test", DNS_OK, NULL, "plain.test:0:2001:db8::5,192.0.2.5", NULL, true },
	{ "emptydom.test", DNS_PERMFAIL, "5.4.4", "", "no MX and no A/AAAA", true },
	{ "noaddr.test", DNS_PERMFAIL, "5.1.2", "", "does not exist", false },
	{ "null.test", DNS_PERMFAIL, "5.1.10", "", "null MX", false },
	{ "mixednull.test", DNS_OK, NULL, "mx2.order.test:10:192.0.2.2", NULL, false },
	{ "nosuch.test", DNS_PERMFAIL, "5.1.2", "", "does not exist", false },
	{ "servfail.test", DNS_TEMPFAIL, "4.4.3", "", "MX lookup for servfail.test", false },
	{ "trunc.test", DNS_OK, NULL, "mx2.order.test:10:192.0.2.2", NULL, false },
	{ "cname.test", DNS_OK, NULL, "alias.cname.test:10:192.0.2.7", NULL, false },
	{ "cnamedom.test", DNS_OK, NULL, "mx.target.test:5:192.0.2.8", NULL, false },
	{ "ipmx.test", DNS_OK, NULL, "good.ipmx.test:20:192.0.2.10", "192.0.2.9: an IP address",
	  false },
	{ "onlyip.test", DNS_PERMFAIL, "5.4.4", "", "an IP address", false },
	{ "badmx.test", DNS_OK, NULL, "ok.badmx.test:20:192.0.2.12", "gone.badmx.test", false },
	{ "deadmx.test", DNS_PERMFAIL, "5.4.4", "", "noaddr.deadmx.test: no address", false },
	{ "tempmx.test", DNS_TEMPFAIL, "4.4.3", "", "servfail.test: address lookup failed",
	  false },
	{ "dupmx.test", DNS_OK, NULL, "mx2.order.test:10:192.0.2.2", NULL, false },
	{ "halfmx.test", DNS_OK, NULL, "half.halfmx.test:10:192.0.2.13", NULL, false },
	{ "weirdmx.test", DNS_PERMFAIL, "5.4.4", "", "invalid character", false },
	{ "[192.0.2.77]", DNS_OK, NULL, "192.0.2.77:0:192.0.2.77", NULL, false },
	{ "[IPv6:2001:db8::77]", DNS_OK, NULL, "2001:db8::77:0:2001:db8::77", NULL, false },
	{ "[ipv6:::1]", DNS_OK, NULL, "::1:0:::1", NULL, false },
	{ "[192.0.2.777]", DNS_PERMFAIL, "5.1.2", "", "malformed IPv4", false },
	{ "[x400:foo]", DNS_PERMFAIL, "5.1.2", "", "unsupported address literal", false },
	{ "192.0.2.1", DNS_PERMFAIL, "5.1.2", "", "[literal]", false },
	{ "a..test", DNS_PERMFAIL, "5.1.2", "", "empty label", false },
	{ "b\xc3\xbc.test", DNS_PERMFAIL, "5.1.2", "", "IDN", false },
};

static void check_case(const struct case_ *c, const struct dns_result *r)
{
	char got[1024];
	assert_non_null(r);
	if (r->status != c->status)
		fail_msg("%s: status %d want %d (%s)", c->domain, r->status, c->status,
			 r->msg ? r->msg : "");
	if (c->esc)
		assert_string_equal(r->esc, c->esc);
	else
		assert_null(r->esc);
	render(r, got, sizeof got);
	if (strcmp(got, c->hosts) != 0)
		fail_msg("%s: got \"%s\" want \"%s\"", c->domain, got, c->hosts);
	if (c->msgsub) {
		assert_non_null(r->msg);
		if (!strstr(r->msg, c->msgsub))
			fail_msg("%s: msg \"%s\" lacks \"%s\"", c->domain, r->msg, c->msgsub);
	} else {
		assert_null(r->msg);
	}
	if (r->status == DNS_OK)
		assert_int_equal(r->implicit_mx, c->implicit);
	assert_int_equal(r->literal, c->domain[0] == '[' && r->status == DNS_OK);
	if (r->status != DNS_OK)
		assert_int_equal(r->nhosts, 0);
}

/* All cases at once (in parallel on one resolver), then one at a time. */
static void test_cases(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	ASSERT(N_ELEMENTS(cases) <= N_ELEMENTS(f->got));
	for (size_t i = 0; i < N_ELEMENTS(cases); i++)
		assert_non_null(ask(f, cases[i].domain, (unsigned)i));
	fx_run(f, (unsigned)N_ELEMENTS(cases));
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		assert_int_equal(f->got[i].calls, 1);
		check_case(&cases[i], f->got[i].res);
	}
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		f->have = 0;
		ask(f, cases[i].domain, 0);
		fx_run(f, 1);
		check_case(&cases[i], f->got[0].res);
	}
	assert_true(f->srv.ntcp >= 2); /* trunc.test went over TCP, twice */
	fx_free(f);
}

/* RFC 5321 5.1: preference first, equal preferences in random order. */
static void test_equal_preference_random(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	unsigned firsts[5] = { 0 };
	for (int round = 0; round < 24; round++) {
		f->have = 0;
		ask(f, "equal.test", 0);
		fx_run(f, 1);
		const struct dns_result *r = f->got[0].res;
		assert_int_equal(r->status, DNS_OK);
		assert_int_equal(r->nhosts, 5);
		assert_string_equal(r->hosts[0].name, "first.equal.test");
		assert_int_equal(r->hosts[0].pref, 5);
		unsigned seen = 0;
		for (size_t i = 1; i < 5; i++) {
			assert_int_equal(r->hosts[i].pref, 10);
			assert_int_equal(strncmp(r->hosts[i].name, "e", 1), 0);
			unsigned k = (unsigned)(r->hosts[i].name[1] - '0');
			assert_true(k >= 1 && k <= 4);
			seen |= 1u << k;
			if (i == 1)
				firsts[k]++;
		}
		assert_int_equal(seen, 0x1e); /* each once */
	}
	unsigned distinct = 0;
	for (int k = 1; k <= 4; k++)
		distinct += firsts[k] > 0;
	assert_true(distinct >= 2); /* 4^-23 chance of a false failure */
	fx_free(f);
}

static void test_limits(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	ask(f, "many.test", 0);
	ask(f, "manyaddr.test", 1);
	fx_run(f, 2);
	const struct dns_result *r = f->got[0].res;
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->nhosts, DNS_MAX_HOSTS);
	for (unsigned i = 0; i < DNS_MAX_HOSTS; i++) {
		char want[32];
		snprintf(want, sizeof want, "m%02u.many.test", 20 - i); /* best first */
		assert_string_equal(r->hosts[i].name, want);
		assert_int_equal(r->hosts[i].pref, i + 1);
		assert_int_equal(r->hosts[i].naddrs, 1);
	}
	r = f->got[1].res;
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->nhosts, 1);
	assert_int_equal(r->hosts[0].naddrs, 2 * DNS_MAX_ADDRS);
	assert_int_equal(r->hosts[0].addrs[0].family, AF_INET6);
	assert_int_equal(r->hosts[0].addrs[1].family, AF_INET);
	char a[INET6_ADDRSTRLEN];
	dns_addr_str(&r->hosts[0].addrs[1], a, sizeof a);
	assert_string_equal(a, "198.51.100.1");
	assert_true(f->srv.ntcp >= 1);
	fx_free(f);
}

static void test_families(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	dns_mx_targets(f->dns, "order.test", 10, DNS_F_NO_IPV6, got_cb, &f->got[0]);
	dns_mx_targets(f->dns, "order.test", 10, DNS_F_NO_IPV4, got_cb, &f->got[1]);
	dns_mx_targets(f->dns, "[::1]", 5, DNS_F_NO_IPV6, got_cb, &f->got[2]);
	fx_run(f, 3);
	char got[512];
	render(f->got[0].res, got, sizeof got);
	assert_string_equal(got, "mx1.order.test:10:192.0.2.1,192.0.2.11 mx2.order.test:20:192.0.2.2");
	render(f->got[1].res, got, sizeof got);
	assert_string_equal(got, "mx1.order.test:10:2001:db8::1 mx3.order.test:30:2001:db8::3");
	/* "[::1]" is not an IPv6 literal (needs the IPv6: tag): unsupported */
	assert_int_equal(f->got[2].res->status, DNS_PERMFAIL);
	fx_free(f);
}

static void test_timeout(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	uint64_t t0 = time_mono_ms();
	ask(f, "drop.test", 0);
	fx_run(f, 1);
	uint64_t dt = time_mono_ms() - t0;
	const struct dns_result *r = f->got[0].res;
	assert_int_equal(r->status, DNS_TEMPFAIL);
	assert_string_equal(r->esc, "4.4.3");
	assert_non_null(strstr(r->msg, "drop.test"));
	assert_true(dt >= 250 && dt < 2000); /* 100 ms, then 200 ms */
	assert_true(f->srv.ndropped >= 2);
	fx_free(f);
}

/* The first server never answers; c-ares moves on to the second. */
static void test_failover(void **state)
{
	(void)state;
	int dead = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(dead, (struct sockaddr *)&a, sizeof a), 0);
	socklen_t al = sizeof a;
	assert_int_equal(getsockname(dead, (struct sockaddr *)&a, &al), 0);
	/* Bind the fixture's server first to learn its port. */
	struct fx *f = fx_new();
	char sv[128];
	snprintf(sv, sizeof sv, "127.0.0.1:%u, 127.0.0.1:%u", ntohs(a.sin_port), f->srv.port);
	dns_free(&f->dns);
	struct dns_settings st = { .servers = sv, .timeout_ms = 100, .tries = 2 };
	char *err = NULL;
	f->dns = dns_new(f->ev, &st, &err);
	assert_non_null(f->dns);
	ask(f, "plain.test", 0);
	fx_run(f, 1);
	assert_int_equal(f->got[0].res->status, DNS_OK);
	uint8_t q[512];
	assert_true(recv(dead, q, sizeof q, MSG_DONTWAIT) > 12); /* it was asked first */
	fx_free(f);
	close(dead);
}

/* ---- cancellation and teardown ---- */

static void never_cb(struct dns_result *res, void *ctx)
{
	(void)ctx;
	dns_result_free(&res);
	fail_msg("callback of a cancelled request ran");
}

static struct dns_req *to_cancel;

static void cancel_now(void)
{
	dns_cancel(&to_cancel);
}

static void test_cancel(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	struct dns_req *a = dns_mx_targets(f->dns, "drop.test", 9, 0, never_cb, NULL);
	struct dns_req *b = dns_mx_targets(f->dns, "[192.0.2.1]", 11, 0, never_cb, NULL);
	struct dns_req *c = dns_mx_targets(f->dns, "bad..name", 9, 0, never_cb, NULL);
	/* Cancelled by the server when the first address query of it arrives:
	 * MX answered, address queries in flight. */
	to_cancel = dns_mx_targets(f->dns, "order.test", 10, 0, never_cb, NULL);
	hook_name = "mx1.order.test";
	hook_fn = cancel_now;
	ask(f, "plain.test", 0);
	dns_cancel(&a);
	dns_cancel(&b);
	dns_cancel(&c);
	assert_null(a);
	assert_null(b);
	dns_cancel(&a); /* safe on NULL */
	fx_run(f, 1); /* plain.test still answers */
	assert_int_equal(f->got[0].res->status, DNS_OK);
	fx_run_for(f, 500); /* drop.test times out meanwhile: no callback */
	assert_null(to_cancel);
	assert_null(hook_name);
	assert_int_equal(f->have, 1);
	fx_free(f);
}

static void stop_now(void)
{
	evloop_stop(fx_now->ev);
}

/* Free the resolver with requests in every state: literal done but not
 * delivered, MX in flight, addresses in flight, timed out pending. */
static void test_free_pending(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	dns_mx_targets(f->dns, "drop.test", 9, 0, never_cb, NULL);
	dns_mx_targets(f->dns, "order.test", 10, 0, never_cb, NULL);
	hook_name = "mx1.order.test"; /* stop the loop once order.test's MX is in */
	hook_fn = stop_now;
	fx_run_for(f, 1000);
	assert_null(hook_name);
	dns_mx_targets(f->dns, "[192.0.2.1]", 11, 0, never_cb, NULL);
	dns_mx_targets(f->dns, "equal.test", 10, 0, never_cb, NULL);
	dns_free(&f->dns);
	fx_run_for(f, 50); /* nothing fires on freed state */
	fx_free(f);
}

/* A callback that frees the resolver while other requests are pending or
 * already done in the same batch. */
static void free_cb(struct dns_result *res, void *ctx)
{
	struct fx *f = ctx;
	dns_result_free(&res);
	f->have++;
	dns_free(&f->dns);
	evloop_stop(f->ev);
}

static void test_free_in_callback(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	dns_mx_targets(f->dns, "[192.0.2.1]", 11, 0, free_cb, f);
	dns_mx_targets(f->dns, "[192.0.2.2]", 11, 0, never_cb, NULL);
	dns_mx_targets(f->dns, "drop.test", 9, 0, never_cb, NULL);
	fx_run(f, 1);
	assert_null(f->dns);
	fx_run_for(f, 20);
	fx_free(f);

	f = fx_new(); /* from an fd event */
	dns_mx_targets(f->dns, "order.test", 10, 0, free_cb, f);
	dns_mx_targets(f->dns, "drop.test", 9, 0, never_cb, NULL);
	fx_run(f, 1);
	assert_null(f->dns);
	fx_free(f);

	f = fx_new(); /* from the timeout timer */
	dns_mx_targets(f->dns, "drop.test", 9, 0, free_cb, f);
	dns_mx_targets(f->dns, "order.test", 10, 0, got_cb, &f->got[0]);
	fx_run(f, 2);
	assert_null(f->dns);
	assert_int_equal(f->got[0].calls, 1);
	fx_free(f);
}

/* A callback that cancels a finished sibling and starts a new request. */
static struct dns_req *sibling;

static void cancel_sibling_cb(struct dns_result *res, void *ctx)
{
	struct fx *f = ctx;
	dns_result_free(&res);
	dns_cancel(&sibling);
	ask(f, "[192.0.2.3]", 1);
	f->have++;
}

static void test_cancel_in_callback(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	dns_mx_targets(f->dns, "[192.0.2.1]", 11, 0, cancel_sibling_cb, f);
	sibling = dns_mx_targets(f->dns, "[192.0.2.2]", 11, 0, never_cb, NULL);
	fx_run(f, 2);
	assert_null(sibling);
	assert_int_equal(f->got[1].calls, 1);
	assert_int_equal(f->got[1].res->status, DNS_OK);
	fx_free(f);
}

/* The callback never runs inside dns_mx_targets, even for instant results. */
static void test_never_inline(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	ask(f, "[192.0.2.1]", 0);
	ask(f, "", 1);
	assert_int_equal(f->got[0].calls, 0);
	assert_int_equal(f->got[1].calls, 0);
	fx_run(f, 2);
	assert_int_equal(f->got[1].res->status, DNS_PERMFAIL);
	fx_free(f);
}

/* RFC 5321 5.1: our own MX entry and every worse one are dropped. */
static void test_cut_self(void **state)
{
	(void)state;
	struct fx *f = fx_new();
	ask(f, "order.test", 0);
	ask(f, "order.test", 1);
	ask(f, "order.test", 2);
	ask(f, "equal.test", 3);
	fx_run(f, 4);
	char got[512];
	const char *names[] = { "other.test", "MX2.Order.Test" };
	assert_int_equal(dns_result_cut_self(f->got[0].res, names, 2, NULL, 0), 1);
	render(f->got[0].res, got, sizeof got);
	assert_string_equal(got, "mx1.order.test:10:2001:db8::1,192.0.2.1,192.0.2.11");

	struct dns_addr me = { .family = AF_INET6 };
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &me.u.v6), 1);
	assert_int_equal(dns_result_cut_self(f->got[1].res, NULL, 0, &me, 1), 0); /* loop */

	me.family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "192.0.2.9", &me.u.v4), 1);
	assert_int_equal(dns_result_cut_self(f->got[2].res, names, 1, &me, 1), 3); /* not us */

	/* One of several equal-preference hosts: the whole level goes. */
	assert_int_equal(inet_pton(AF_INET, "192.0.2.23", &me.u.v4), 1);
	assert_int_equal(dns_result_cut_self(f->got[3].res, NULL, 0, &me, 1), 1);
	assert_string_equal(f->got[3].res->hosts[0].name, "first.equal.test");
	fx_free(f);
}

/* dns_host_addrs: A/AAAA of a host, no MX step. */
static void test_host_addrs(void **state)
{
	(void)state;
	static const struct {
		const char *host;
		enum dns_status status;
		const char *esc;
		const char *want;
	} t[] = {
		{ "mx1.order.test", DNS_OK, NULL, "mx1.order.test:0:2001:db8::1,192.0.2.1,192.0.2.11" },
		{ "Alias.Cname.Test.", DNS_OK, NULL, "alias.cname.test:0:192.0.2.7" },
		{ "192.0.2.1", DNS_OK, NULL, "192.0.2.1:0:192.0.2.1" },
		{ "2001:db8::9", DNS_OK, NULL, "2001:db8::9:0:2001:db8::9" },
		{ "[IPv6:::1]", DNS_OK, NULL, "::1:0:::1" },
		{ "half.halfmx.test", DNS_OK, NULL, "half.halfmx.test:0:192.0.2.13" },
		{ "order.test", DNS_PERMFAIL, "5.4.4", "" }, /* MX only */
		{ "nosuch.test", DNS_PERMFAIL, "5.1.2", "" },
		{ "servfail.test", DNS_TEMPFAIL, "4.4.3", "" },
		{ "bad..host", DNS_PERMFAIL, "5.1.2", "" },
		{ "[1.2.3]", DNS_PERMFAIL, "5.1.2", "" },
	};
	struct fx *f = fx_new();
	for (size_t i = 0; i < N_ELEMENTS(t); i++)
		dns_host_addrs(f->dns, t[i].host, strlen(t[i].host), 0, got_cb, &f->got[i]);
	fx_run(f, (unsigned)N_ELEMENTS(t));
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		const struct dns_result *r = f->got[i].res;
		char got[512];
		render(r, got, sizeof got);
		if (r->status != t[i].status || strcmp(got, t[i].want) != 0)
			fail_msg("%s: status %d \"%s\" (%s)", t[i].host, r->status, got,
				 r->msg ? r->msg : "");
		if (t[i].esc) {
			assert_string_equal(r->esc, t[i].esc);
			assert_non_null(r->msg);
		}
		assert_false(r->implicit_mx);
	}
	fx_free(f);
}

/* ---- parsers ---- */

static void test_check_name(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *want; /* NULL = rejected */
	} t[] = {
		{ "Example.COM", "example.com" },
		{ "example.com.", "example.com" },
		{ "a", "a" },
		{ "_dmarc.x-y.test", "_dmarc.x-y.test" },
		{ "", NULL },
		{ ".", NULL },
		{ "..", NULL },
		{ ".a", NULL },
		{ "a..b", NULL },
		{ "a.b..", NULL },
		{ "a b", NULL },
		{ "a\\.b", NULL },
		{ "caf\xc3\xa9.test", NULL },
		{ "a@b", NULL },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		char out[DNS_MAX_NAME + 1];
		const char *why = NULL;
		int rc = dns_check_name(t[i].in, strlen(t[i].in), out, &why);
		if (t[i].want) {
			assert_int_equal(rc, 0);
			assert_string_equal(out, t[i].want);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(why);
		}
	}
	/* Embedded NUL in wire bytes. */
	char out[DNS_MAX_NAME + 1];
	const char *why;
	assert_int_equal(dns_check_name("a\0b", 3, out, &why), -1);
	/* Label and name length limits (RFC 1035 2.3.4). */
	char name[300];
	memset(name, 'a', 63);
	assert_int_equal(dns_check_name(name, 63, out, &why), 0);
	memset(name, 'a', 64);
	assert_int_equal(dns_check_name(name, 64, out, &why), -1);
	for (size_t i = 0; i < sizeof name; i++)
		name[i] = (i % 10 == 9) ? '.' : 'a';
	assert_int_equal(dns_check_name(name, 253, out, &why), 0);
	assert_int_equal(strlen(out), 253);
	name[253] = '.';
	assert_int_equal(dns_check_name(name, 254, out, &why), 0); /* trailing dot */
	name[253] = 'a';
	assert_int_equal(dns_check_name(name, 254, out, &why), -1);
}

static void test_parse_literal(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		const char *want;
	} t[] = {
		{ "[192.0.2.1]", 1, "192.0.2.1" },
		{ "[IPv6:2001:db8::1]", 1, "2001:db8::1" },
		{ "[IPV6:::ffff:192.0.2.1]", 1, "::ffff:192.0.2.1" },
		{ "example.com", 0, NULL },
		{ "", 0, NULL },
		{ "[", -1, NULL },
		{ "[]", -1, NULL },
		{ "[192.0.2.1", -1, NULL },
		{ "[192.0.2]", -1, NULL },
		{ "[192.0.2.256]", -1, NULL },
		{ "[1.2.3.4.5]", -1, NULL },
		{ "[IPv6:]", -1, NULL },
		{ "[IPv6:192.0.2.1]", -1, NULL },
		{ "[IPv6:1:2:3:4:5:6:7:8:9]", -1, NULL },
		{ "[2001:db8::1]", -1, NULL },
		{ "[tag:anything]", -1, NULL },
		{ "[ 192.0.2.1]", -1, NULL },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct dns_addr a;
		const char *why = NULL;
		int rc = dns_parse_literal(t[i].in, strlen(t[i].in), &a, &why);
		if (rc != t[i].rc)
			fail_msg("%s: rc %d want %d", t[i].in, rc, t[i].rc);
		if (rc == 1) {
			char s[INET6_ADDRSTRLEN];
			dns_addr_str(&a, s, sizeof s);
			assert_string_equal(s, t[i].want);
		} else if (rc < 0) {
			assert_non_null(why);
		}
	}
	struct dns_addr a;
	const char *why;
	assert_int_equal(dns_parse_literal("[192.0.2.1\0]", 12, &a, &why), -1);
}

static void test_parse_servers(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int n;
		const char *want; /* "addr/port ..." */
	} t[] = {
		{ "127.0.0.1", 1, "127.0.0.1/53" },
		{ "127.0.0.1:5353", 1, "127.0.0.1/5353" },
		{ "::1", 1, "::1/53" },
		{ "[::1]:5353", 1, "::1/5353" },
		{ "[2001:db8::1]", 1, "2001:db8::1/53" },
		{ " 192.0.2.1:54,192.0.2.2 ,\t[::1]:55 ", 3, "192.0.2.1/54 192.0.2.2/53 ::1/55" },
		{ "", -1, NULL },
		{ " , ", -1, NULL },
		{ "dns.example:53", -1, NULL },
		{ "127.0.0.1:0", -1, NULL },
		{ "127.0.0.1:65536", -1, NULL },
		{ "127.0.0.1:", -1, NULL },
		{ "127.0.0.1:5x", -1, NULL },
		{ ":53", -1, NULL },
		{ "[::1", -1, NULL },
		{ "[::1]x", -1, NULL },
		{ "[::1]:", -1, NULL },
		{ "[127.0.0.1]:53", 1, "127.0.0.1/53" },
		{ "1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4 5.5.5.5", -1, NULL }, /* over max 4 */
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		struct dns_server_addr sv[4];
		const char *why = NULL;
		int n = dns_parse_servers(t[i].in, sv, 4, &why);
		if (n != t[i].n)
			fail_msg("\"%s\": %d want %d", t[i].in, n, t[i].n);
		if (n < 0) {
			assert_non_null(why);
			continue;
		}
		char got[256];
		size_t k = 0;
		for (int j = 0; j < n; j++) {
			char a[INET6_ADDRSTRLEN];
			dns_addr_str(&sv[j].addr, a, sizeof a);
			k += (size_t)snprintf(got + k, sizeof got - k, "%s%s/%u", j ? " " : "", a,
					      sv[j].port);
		}
		assert_string_equal(got, t[i].want);
	}
}

static void test_new_errors(void **state)
{
	(void)state;
	struct evloop *ev = evloop_new();
	char *err = NULL;
	struct dns_settings st = { .servers = "not-an-address" };
	assert_null(dns_new(ev, &st, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "dns_servers"));
	free(err);
	/* NULL and blank mean /etc/resolv.conf: must work without network use. */
	st.servers = NULL;
	struct dns *d = dns_new(ev, &st, &err);
	assert_non_null(d);
	assert_null(err);
	dns_free(&d);
	st.servers = "  ";
	d = dns_new(ev, &st, &err);
	assert_non_null(d);
	dns_free(&d);
	dns_free(&d); /* safe on NULL */
	evloop_free(&ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_name),
		cmocka_unit_test(test_parse_literal),
		cmocka_unit_test(test_parse_servers),
		cmocka_unit_test(test_new_errors),
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_equal_preference_random),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_families),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_free_in_callback),
		cmocka_unit_test(test_cancel_in_callback),
		cmocka_unit_test(test_never_inline),
		cmocka_unit_test(test_cut_self),
		cmocka_unit_test(test_host_addrs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
