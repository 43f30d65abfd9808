/* SPDX-License-Identifier: MIT */
/* The running server: configuration, event loop, listeners, shared services
 * (accounts, committer, TLS) and the glue that starts a protocol session per
 * accepted connection. Only daemon/ sees all modules at once. */
#ifndef TERN_DAEMON_SERVER_H
#define TERN_DAEMON_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct evloop;
struct accounts;
struct committer;
struct tls_ctx;
struct listener;
struct conn;
struct ev_async;
struct jobs;
struct throttle;
struct queue;
struct relay;

enum listener_proto {
	LP_SMTP,
	LP_SUBMISSION,
	LP_SUBMISSIONS,
	LP_IMAP,
	LP_IMAPS,
	LP_POP3,
	LP_POP3S,
};

struct server {
	struct config *cfg;
	struct evloop *ev;
	struct accounts *accounts; /* loop-thread handle */
	struct committer *committer;
	struct jobs *jobs;         /* password checks and other slow work */
	struct throttle *throttle; /* failed logins per client address */
	struct queue *queue;       /* outbound queue, server handle (loop thread) */
	struct relay *relay;       /* outbound delivery scheduler, NULL until started */
	struct ev_async *commit_async;
	struct tls_ctx *tls; /* current certificate; sessions take a reference */
	struct server_listener *listeners;
	size_t nlisteners;
	bool stopping;
	uint64_t stop_deadline_ms;
	/* per-client-address connection counts */
	struct ipcount *ipcounts;
	size_t nipcounts, ipcounts_cap;
	unsigned nconns;
};

struct server_listener {
	enum listener_proto proto;
	struct listener *l;
	const char *key; /* config key it came from */
	struct server *srv;
};

/* `tern serve -c FILE`: returns the process exit status. */
int server_main(const char *config_path);

/* Release a connection slot of addr (called when a session ends). */
void server_conn_released(struct server *srv, const char *addr);

/* Something was added to the queue (submission, a DSN): let the outbound
 * scheduler look at it now rather than at its next timer. */
void server_queue_changed(struct server *srv);

#endif
