/* SPDX-License-Identifier: MIT */
/* Fuzz the resolver's own parsers (DNS wire data is c-ares' job): domain
 * names as they come from recipient addresses, RFC 5321 address literals, and
 * the dns_servers config string. Accepted inputs must round-trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "io/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const char *p, size_t n)
{
	char out[DNS_MAX_NAME + 1], again[DNS_MAX_NAME + 1];
	const char *why = NULL;
	if (dns_check_name(p, n, out, &why) < 0) {
		if (!why)
			abort();
		return;
	}
	size_t len = strlen(out);
	if (len == 0 || len > DNS_MAX_NAME || out[0] == '.' || out[len - 1] == '.' ||
	    strstr(out, ".."))
		abort();
	for (size_t i = 0; i < len; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", out[i]))
			abort();
	if (dns_check_name(out, len, again, &why) < 0 || strcmp(out, again) != 0)
		abort();
}

static void check_literal(const char *p, size_t n)
{
	struct dns_addr a, b;
	const char *why = NULL;
	int rc = dns_parse_literal(p, n, &a, &why);
	if (rc == 0 && n > 0 && p[0] == '[')
		abort();
	if (rc < 0 && !why)
		abort();
	if (rc != 1)
		return;
	if (a.family != AF_INET && a.family != AF_INET6)
		abort();
	char s[INET6_ADDRSTRLEN], lit[INET6_ADDRSTRLEN + 8];
	dns_addr_str(&a, s, sizeof s);
	int k = snprintf(lit, sizeof lit, a.family == AF_INET ? "[%s]" : "[IPv6:%s]", s);
	if (dns_parse_literal(lit, (size_t)k, &b, &why) != 1 || b.family != a.family ||
	    memcmp(&a.u, &b.u, a.family == AF_INET ? 4 : 16) != 0)
		abort();
}

static void check_servers(const uint8_t *data, size_t size)
{
	char s[512];
	if (size >= sizeof s || memchr(data, '\0', size))
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	struct dns_server_addr sv[4], again[1];
	const char *why = NULL;
	int n = dns_parse_servers(s, sv, 4, &why);
	if (n < 0) {
		if (!why)
			abort();
		return;
	}
	if (n == 0 || n > 4)
		abort();
	for (int i = 0; i < n; i++) {
		char a[INET6_ADDRSTRLEN], tok[INET6_ADDRSTRLEN + 16];
		if (sv[i].port == 0)
			abort();
		dns_addr_str(&sv[i].addr, a, sizeof a);
		snprintf(tok, sizeof tok, sv[i].addr.family == AF_INET ? "%s:%u" : "[%s]:%u", a,
			 sv[i].port);
		if (dns_parse_servers(tok, again, 1, &why) != 1 || again[0].port != sv[i].port ||
		    again[0].addr.family != sv[i].addr.family)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_name((const char *)data, size);
	check_literal((const char *)data, size);
	check_servers(data, size);
	return 0;
}
