/* SPDX-License-Identifier: MIT */
/* Asynchronous DNS for outbound mail: where to deliver a domain's mail
 * (RFC 5321 5.1). Built on c-ares, driven entirely by the evloop (fd watches
 * from c-ares' socket-state callback, one timer for its retransmissions): no
 * blocking calls, no threads. Only the loop's thread may use it.
 *
 * Invariants:
 * - A request's callback runs exactly once, later, from the loop (never from
 *   inside dns_mx_targets() or dns_host_addrs()), unless the request is
 *   cancelled or the resolver is freed first; then it never runs.
 * - Queries go to the configured servers as given (no search list, no
 *   /etc/hosts), so the answer is the DNS's answer for exactly that name.
 * - Names are ASCII only (IDN A-labels pass; UTF-8 U-labels are refused). */
#ifndef TERN_IO_DNS_H
#define TERN_IO_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct evloop;
struct dns;
struct dns_req;

/* Limits: the best DNS_MAX_HOSTS MX hosts are kept (after sorting); each host
 * keeps at most DNS_MAX_ADDRS addresses of each family (the first ones). */
enum { DNS_MAX_HOSTS = 10, DNS_MAX_ADDRS = 10, DNS_MAX_NAME = 253 };

struct dns_settings {
	/* "host[:port] ..." (space or comma separated; host is an IPv4 or IPv6
	 * address, "[v6]:port" for a port with IPv6), or NULL/"" for the
	 * nameservers of /etc/resolv.conf. Port 53 when not given. */
	const char *servers;
	/* 0 = the resolv.conf options or c-ares' defaults (5 s, 4 tries; the
	 * timeout doubles per round, so up to 75 s per server for each of the
	 * two lookup stages). The daemon should set something like 2000 ms, 3. */
	unsigned timeout_ms; /* first try's timeout per server */
	unsigned tries;	     /* attempts per server */
};

enum dns_status {
	DNS_OK,
	DNS_TEMPFAIL, /* SERVFAIL, timeout, refused...: queue and retry */
	DNS_PERMFAIL, /* NXDOMAIN, null MX, no usable MX host, bad name: bounce */
};

struct dns_addr {
	int family; /* AF_INET or AF_INET6 */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} u;
};

struct dns_host {
	char *name;	 /* MX exchange (lowercase, no trailing dot), or the literal */
	uint16_t pref;	 /* MX preference; 0 for the implicit MX and literals */
	size_t naddrs;	 /* >= 1 */
	struct dns_addr *addrs; /* in the order to try (IPv6 and IPv4 interleaved) */
};

struct dns_result {
	enum dns_status status;
	/* Suggested RFC 3463 enhanced status for a DSN, e.g. "5.1.10", "4.4.3". */
	const char *esc;
	/* Human text for logs and DSN diagnostics (NUL-terminated; escaped, never
	 * raw DNS bytes); NULL when status is DNS_OK and no host was skipped. When
	 * DNS_OK it may note skipped MX hosts. */
	char *msg;
	bool implicit_mx; /* no MX records: the domain itself, preference 0 */
	bool literal;	  /* domain literal "[1.2.3.4]" / "[IPv6:...]": no DNS used */
	/* DNS_OK: hosts in the order to try (by preference, equal preferences in
	 * random order), each with at least one address. Empty otherwise. */
	size_t nhosts;
	struct dns_host *hosts;
};

/* Owns res: free it with dns_result_free (it may be kept past the callback). */
typedef void dns_mx_cb(struct dns_result *res, void *ctx);

/* Address families to resolve for each host. */
enum { DNS_F_NO_IPV4 = 1, DNS_F_NO_IPV6 = 2 };

/* Create a resolver on ev. NULL on error with *err_r set (malloc'd, caller
 * frees): a bad servers string, or c-ares failing to initialise. */
struct dns *dns_new(struct evloop *ev, const struct dns_settings *s, char **err_r);
/* Cancel every request (no callbacks run), close sockets, free. NULLs *d; safe
 * on NULL; may be called from inside a dns callback. */
void dns_free(struct dns **d);

/* Resolve the delivery targets of the domain (p,n) (wire bytes, no NUL needed;
 * one trailing dot allowed): MX records by preference, each host resolved to
 * A/AAAA; no MX -> the domain as implicit MX; null MX (RFC 7505) -> permanent
 * failure; a domain literal -> its address without DNS. flags: DNS_F_*.
 * Returns a handle for dns_cancel, valid until cb has started. Never NULL. */
struct dns_req *dns_mx_targets(struct dns *d, const char *p, size_t n, unsigned flags,
			       dns_mx_cb *cb, void *ctx);
/* Resolve one host name (p,n) to its A/AAAA addresses, without MX (a
 * configured relay_host, say). A bare IPv4/IPv6 address or an address literal
 * is returned as is (literal set). Same result shape and rules as
 * dns_mx_targets: one host, preference 0; a host that does not exist is
 * DNS_PERMFAIL "5.1.2", one without addresses DNS_PERMFAIL "5.4.4" (for a
 * smarthost the caller may prefer to treat both as temporary). */
struct dns_req *dns_host_addrs(struct dns *d, const char *p, size_t n, unsigned flags,
			       dns_mx_cb *cb, void *ctx);
/* Forget a pending request: its callback will not run. NULLs *r; safe on NULL.
 * Must not be called once the callback has started. */
void dns_cancel(struct dns_req **r);

void dns_result_free(struct dns_result **res);

/* RFC 5321 5.1: if this host is one of the MX hosts (by name, ASCII case
 * ignored, or by any of its addresses), drop it and every host of the same or
 * a worse preference. names: our host names; addrs: our addresses (either may
 * be empty). Returns the number of hosts left; 0 when some were there before
 * means the mail would loop back to us: an error (bounce, 5.4.6). */
size_t dns_result_cut_self(struct dns_result *res, const char *const *names, size_t nnames,
			   const struct dns_addr *addrs, size_t naddrs);

/* ---- helpers, exported for tests and fuzzing ---- */

/* Parse a servers string into at most max entries (address + port) in out.
 * Returns the count (>= 1), or -1 with a static message in *why. */
struct dns_server_addr {
	struct dns_addr addr;
	uint16_t port;
};
int dns_parse_servers(const char *s, struct dns_server_addr *out, size_t max,
		      const char **why) ATTR_WARN_UNUSED;

/* Check a domain name (p,n) for lookup (RFC 5321 4.1.2 Domain, letters digits
 * hyphens and underscores, labels 1..63, total <= DNS_MAX_NAME without the one
 * optional trailing dot). On success writes the lowercase name without the
 * trailing dot to out (NUL-terminated, DNS_MAX_NAME + 1 bytes) and returns 0;
 * otherwise -1 with a static reason in *why. */
int dns_check_name(const char *p, size_t n, char out[DNS_MAX_NAME + 1],
		   const char **why) ATTR_WARN_UNUSED;

/* Parse an RFC 5321 4.1.3 address literal "[a.b.c.d]" or "[IPv6:...]" (p,n).
 * 1 = parsed into *a, 0 = not a literal (no leading '['), -1 = a malformed or
 * unsupported literal with a static reason in *why. */
int dns_parse_literal(const char *p, size_t n, struct dns_addr *a, const char **why);

/* Format an address ("192.0.2.1", "2001:db8::1") into out (INET6_ADDRSTRLEN). */
void dns_addr_str(const struct dns_addr *a, char *out, size_t outsz);

#endif
