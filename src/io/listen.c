/* SPDX-License-Identifier: MIT */
/* Listening sockets: "addr:port" parsing, bind (before privileges are
 * dropped), and accepting in the event loop.
 *
 * Accepting is bounded per wakeup so one busy listener cannot starve the
 * loop (level-triggered epoll brings us back). When the process runs out of
 * descriptors (EMFILE/ENFILE) the pending connection stays in the kernel
 * backlog; we stop watching the socket for a second instead of spinning on a
 * readiness we cannot act on, and log once per pause. */
#include "io/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "io/evloop.h"

#define LISTEN_BACKLOG 511
#define ACCEPT_PER_WAKEUP 64
#define EMFILE_PAUSE_MS 1000

struct listener {
	int fd;
	int port;
	struct evloop *ev;
	listen_accept_cb *cb;
	void *ctx;
	struct ev_timer *resume;
	bool accepting; /* inside the accept loop: listener_free is deferred */
	bool dead;
	char name[72];
};

void sockaddr_to_text(const struct sockaddr_storage *sa, char out[64], int *port_r)
{
	int port = 0;
	out[0] = 0;
	switch (sa->ss_family) {
	case AF_INET: {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, out, 64);
		port = ntohs(s4->sin_port);
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		/* Dual-stack sockets see IPv4 peers as ::ffff:a.b.c.d; log them as IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, 64);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, out, 64);
		port = ntohs(s6->sin6_port);
		break;
	}
	case AF_UNIX:
		snprintf(out, 64, "unix");
		break;
	default:
		snprintf(out, 64, "unknown");
		break;
	}
	if (port_r)
		*port_r = port;
}

static int parse_port(const char *s, int *port_r)
{
	if (*s == 0 || strlen(s) > 5)
		return -1;
	int p = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		p = p * 10 + (*s - '0');
	}
	if (p > 65535)
		return -1;
	*port_r = p;
	return 0;
}

/* Fills ss/len from "a.b.c.d:port", "[v6]:port" or "*:port". *any_r is set for
 * "*", which binds dual-stack [::] (falling back to 0.0.0.0). */
static int parse_addrport(const char *ap, struct sockaddr_storage *ss, socklen_t *len_r,
			  bool *any_r, const char **why_r)
{
	char host[64];
	const char *portstr;
	int port;
	memset(ss, 0, sizeof *ss);
	*any_r = false;
	if (ap[0] == '[') {
		const char *end = strchr(ap, ']');
		if (!end || end[1] != ':') {
			*why_r = "expected [address]:port";
			return -1;
		}
		size_t n = (size_t)(end - ap - 1);
		if (n == 0 || n >= sizeof host) {
			*why_r = "bad IPv6 address";
			return -1;
		}
		memcpy(host, ap + 1, n);
		host[n] = 0;
		portstr = end + 2;
	} else {
		const char *colon = strrchr(ap, ':');
		if (!colon) {
			*why_r = "expected address:port";
			return -1;
		}
		if (memchr(ap, ':', (size_t)(colon - ap))) {
			*why_r = "IPv6 addresses need brackets: [address]:port";
			return -1;
		}
		size_t n = (size_t)(colon - ap);
		if (n == 0 || n >= sizeof host) {
			*why_r = "bad address";
			return -1;
		}
		memcpy(host, ap, n);
		host[n] = 0;
		portstr = colon + 1;
	}
	if (parse_port(portstr, &port) < 0) {
		*why_r = "bad port (expected 0-65535)";
		return -1;
	}
	if (strcmp(host, "*") == 0) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof *s6;
		*any_r = true;
		return 0;
	}
	if (ap[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			*why_r = "bad IPv6 address";
			return -1;
		}
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof *s6;
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
		*why_r = "not a numeric IPv4 address";
		return -1;
	}
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	*len_r = sizeof *s4;
	return 0;
}

static int open_socket(const struct sockaddr_storage *ss, socklen_t len, bool v6only)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1, v6 = v6only ? 1 : 0;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		goto fail;
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)ss, len) < 0)
		goto fail;
	if (listen(fd, LISTEN_BACKLOG) < 0)
		goto fail;
	return fd;
fail:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

struct listener *listener_bind(const char *addrport, char **err_r)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	bool any;
	const char *why = NULL;
	*err_r = NULL;
	if (parse_addrport(addrport, &ss, &len, &any, &why) < 0) {
		*err_r = xasprintf("%s: %s", addrport, why);
		return NULL;
	}
	int fd = open_socket(&ss, len, !any);
	if (fd < 0 && any && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
		/* No IPv6 in this kernel or container: plain IPv4 any. */
		int port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		memset(&ss, 0, sizeof ss);
		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
		s4->sin_port = htons((uint16_t)port);
		fd = open_socket(&ss, sizeof *s4, false);
	}
	if (fd < 0) {
		*err_r = xasprintf("%s: %s", addrport, strerror(errno));
		return NULL;
	}
	struct listener *l = xcalloc(1, sizeof *l);
	l->fd = fd;
	struct sockaddr_storage got;
	socklen_t glen = sizeof got;
	char host[64];
	if (getsockname(fd, (struct sockaddr *)&got, &glen) < 0)
		got = ss;
	sockaddr_to_text(&got, host, &l->port);
	if (got.ss_family == AF_INET6 && !any)
		snprintf(l->name, sizeof l->name, "[%s]:%d", host, l->port);
	else if (any)
		snprintf(l->name, sizeof l->name, "*:%d", l->port);
	else
		snprintf(l->name, sizeof l->name, "%s:%d", host, l->port);
	return l;
}

static void resume_accept(struct evloop *ev, void *ctx)
{
	struct listener *l = ctx;
	l->resume = NULL;
	ev_mod_fd(ev, l->fd, EV_READ);
}

static void really_free(struct listener *l)
{
	if (l->ev) {
		ev_timer_del(l->ev, &l->resume);
		ev_del_fd(l->ev, l->fd);
	}
	close(l->fd);
	free(l);
}

static void accept_ready(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)events;
	struct listener *l = ctx;
	l->accepting = true;
	for (int i = 0; i < ACCEPT_PER_WAKEUP && !l->dead; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof peer;
		int c = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO ||
			    errno == EPERM)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				log_warnx("accept(%s): %s; not accepting for %d ms", l->name,
					  strerror(errno), EMFILE_PAUSE_MS);
				ev_mod_fd(ev, fd, 0);
				if (!l->resume)
					l->resume = ev_timer_add(ev, EMFILE_PAUSE_MS,
								 resume_accept, l);
				break;
			}
			log_warn("accept(%s)", l->name);
			break;
		}
		l->cb(l, c, &peer, plen, l->ctx);
	}
	l->accepting = false;
	if (l->dead)
		really_free(l);
}

int listener_start(struct listener *l, struct evloop *ev, listen_accept_cb *cb, void *ctx)
{
	ASSERT(!l->ev);
	l->cb = cb;
	l->ctx = ctx;
	if (ev_add_fd(ev, l->fd, EV_READ, accept_ready, l) < 0)
		return -1;
	l->ev = ev;
	return 0;
}

void listener_free(struct listener **lp)
{
	struct listener *l = *lp;
	if (!l)
		return;
	*lp = NULL;
	if (l->accepting) {
		l->dead = true;
		return;
	}
	really_free(l);
}

const char *listener_name(const struct listener *l)
{
	return l->name;
}

int listener_port(const struct listener *l)
{
	return l->port;
}
