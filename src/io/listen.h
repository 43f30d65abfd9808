/* SPDX-License-Identifier: MIT */
/* Listening sockets. Binding happens before privileges are dropped; accepting
 * happens in the loop. The accept callback gets the new fd and peer address
 * and decides (per-address connection limits live in the caller). */
#ifndef TERN_IO_LISTEN_H
#define TERN_IO_LISTEN_H

#include <sys/socket.h>

#include "base/err.h"

struct evloop;
struct listener;

typedef void listen_accept_cb(struct listener *l, int fd, const struct sockaddr_storage *peer,
			      socklen_t peerlen, void *ctx);

/* Bind and listen on "addr:port" ("127.0.0.1:2525", "[::1]:2525", "*:25";
 * port 0 = ephemeral). Returns NULL and sets *err_r (malloc'd, names the
 * address) on failure. */
struct listener *listener_bind(const char *addrport, char **err_r);
/* Start accepting in ev. */
int listener_start(struct listener *l, struct evloop *ev, listen_accept_cb *cb, void *ctx) ATTR_WARN_UNUSED;
/* Stop accepting and close the socket. NULLs *l. */
void listener_free(struct listener **l);
/* The bound address as "ip:port" (useful with port 0). */
const char *listener_name(const struct listener *l);
int listener_port(const struct listener *l);

/* Peer address to text; out must hold 64 bytes. */
void sockaddr_to_text(const struct sockaddr_storage *sa, char out[64], int *port_r);

#endif
