/* SPDX-License-Identifier: MIT */
/* `tern serve`: start-up (config, data dir, certificate, listeners, accounts,
 * privilege drop), the accept path with connection limits, signals (SIGTERM
 * and SIGINT: graceful stop; SIGHUP: reload) and shutdown.
 *
 * Order matters for security: everything that needs root (binding ports,
 * reading the key) happens before the privilege drop, and the drop happens
 * before the loop reads any network input. */
#include "daemon/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "auth/throttle.h"
#include "daemon/role_imap.h"
#include "daemon/role_pop3.h"
#include "daemon/privdrop.h"
#include "daemon/relay.h"
#include "daemon/role_smtp.h"
#include "io/jobs.h"
#include "queue/queue.h"
#include "daemon/session.h"
#include "io/conn.h"
#include "io/evloop.h"
#include "io/listen.h"
#include "io/tls.h"
#include "store/maildir.h"

/* A configuration shared by the sessions that started under it. */
struct cfg_holder {
	struct config *cfg;
	unsigned refs;
};

struct ipcount {
	char addr[64];
	unsigned n;
};

static struct cfg_holder *current_cfg;
static const char *config_path;

static void cfg_release(struct cfg_holder **h)
{
	if (*h && --(*h)->refs == 0) {
		config_free(&(*h)->cfg);
		free(*h);
	}
	*h = NULL;
}

const char *listener_proto_name(enum listener_proto p)
{
	switch (p) {
	case LP_SMTP:
		return "smtp";
	case LP_SUBMISSION:
		return "submission";
	case LP_SUBMISSIONS:
		return "submissions";
	case LP_IMAP:
		return "imap";
	case LP_IMAPS:
		return "imaps";
	case LP_POP3:
		return "pop3";
	case LP_POP3S:
		return "pop3s";
	}
	return "?";
}

void session_init(struct session *s, struct server *srv, const char *proto, const char *peer,
		  int port, void (*free_fn)(struct session *s))
{
	s->srv = srv;
	s->cfg_ref = current_cfg;
	current_cfg->refs++;
	s->cfg = current_cfg->cfg;
	s->tls = srv->tls;
	if (s->tls)
		tls_ctx_ref(s->tls);
	random_id(s->id);
	snprintf(s->peer, sizeof s->peer, "%s", peer);
	s->port = port;
	s->proto = proto;
	s->free_fn = free_fn;
	srv->nconns++;
}

static bool is_loopback(const char *addr)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

bool session_plaintext_ok(const struct session *s)
{
	return s->cfg->allow_plaintext_auth || is_loopback(s->peer);
}

void session_destroy(struct session *s)
{
	struct server *srv = s->srv;
	if (s->free_fn)
		s->free_fn(s);
	if (s->tls)
		tls_ctx_unref(&s->tls);
	cfg_release(&s->cfg_ref);
	server_conn_released(srv, s->peer);
	srv->nconns--;
	free(s);
}

static struct ipcount *ipcount_find(struct server *srv, const char *addr)
{
	for (size_t i = 0; i < srv->nipcounts; i++)
		if (!strcmp(srv->ipcounts[i].addr, addr))
			return &srv->ipcounts[i];
	return NULL;
}

void server_conn_released(struct server *srv, const char *addr)
{
	struct ipcount *c = ipcount_find(srv, addr);
	if (!c)
		return;
	if (--c->n == 0)
		*c = srv->ipcounts[--srv->nipcounts];
}

static void on_accept(struct listener *l, int fd, const struct sockaddr_storage *peer,
		      socklen_t peerlen, void *ctx)
{
	struct server_listener *sl = ctx;
	struct server *srv = sl->srv;
	(void)l;
	(void)peerlen;
	char addr[64];
	int port;
	sockaddr_to_text(peer, addr, &port);
	const struct config *cfg = current_cfg->cfg;
	if (srv->stopping) {
		close(fd);
		return;
	}
	if (srv->nconns >= cfg->max_connections) {
		log_warnx("refusing connection from %s: max_connections (%llu) reached", addr,
			  (unsigned long long)cfg->max_connections);
		static const char msg[] = "421 4.7.0 Server busy, try again later\r\n";
		if ((sl->proto == LP_SMTP || sl->proto == LP_SUBMISSION) &&
		    write(fd, msg, sizeof msg - 1) < 0) {
			/* best effort */
		}
		close(fd);
		return;
	}
	struct ipcount *c = ipcount_find(srv, addr);
	if (c && c->n >= cfg->max_connections_per_ip) {
		log_warnx("refusing connection from %s: max_connections_per_ip (%llu) reached",
			  addr, (unsigned long long)cfg->max_connections_per_ip);
		static const char msg[] = "421 4.7.0 Too many connections from your address\r\n";
		if ((sl->proto == LP_SMTP || sl->proto == LP_SUBMISSION) &&
		    write(fd, msg, sizeof msg - 1) < 0) {
			/* best effort */
		}
		close(fd);
		return;
	}
	if (!c) {
		if (srv->nipcounts == srv->ipcounts_cap) {
			srv->ipcounts_cap = srv->ipcounts_cap ? srv->ipcounts_cap * 2 : 64;
			srv->ipcounts = xrealloc(srv->ipcounts,
						 srv->ipcounts_cap * sizeof *srv->ipcounts);
		}
		c = &srv->ipcounts[srv->nipcounts++];
		snprintf(c->addr, sizeof c->addr, "%s", addr);
		c->n = 0;
	}
	c->n++;
	switch (sl->proto) {
	case LP_SMTP:
	case LP_SUBMISSION:  /* RFC 6409, STARTTLS */
	case LP_SUBMISSIONS: /* RFC 8314, implicit TLS */
		role_smtp_accept(srv, sl, fd, addr, port);
		break;
	case LP_IMAP:
	case LP_IMAPS:
		role_imap_accept(srv, sl, fd, addr, port);
		break;
	case LP_POP3:
	case LP_POP3S:
		role_pop3_accept(srv, sl, fd, addr, port);
		break;
	default:
		UNREACHABLE();
	}
}

/* Listener keys in config order, with whether their protocol exists yet. */
static const struct {
	const char *key;
	enum listener_proto proto;
	size_t off;
} listener_keys[] = {
	{ "smtp_listen", LP_SMTP, offsetof(struct config, smtp_listen) },
	{ "submission_listen", LP_SUBMISSION, offsetof(struct config, submission_listen) },
	{ "submissions_listen", LP_SUBMISSIONS, offsetof(struct config, submissions_listen) },
	{ "imap_listen", LP_IMAP, offsetof(struct config, imap_listen) },
	{ "imaps_listen", LP_IMAPS, offsetof(struct config, imaps_listen) },
	{ "pop3_listen", LP_POP3, offsetof(struct config, pop3_listen) },
	{ "pop3s_listen", LP_POP3S, offsetof(struct config, pop3s_listen) },
};

static const struct cfg_list *listen_list(const struct config *c, size_t i)
{
	return (const struct cfg_list *)((const char *)c + listener_keys[i].off);
}

static int bind_listeners(struct server *srv)
{
	const struct config *c = srv->cfg;
	for (size_t i = 0; i < N_ELEMENTS(listener_keys); i++) {
		const struct cfg_list *l = listen_list(c, i);
		for (size_t j = 0; j < l->n; j++) {
			char *err = NULL;
			struct listener *lis = listener_bind(l->v[j], &err);
			if (!lis) {
				fprintf(stderr, "tern: %s:%u: %s: cannot listen on %s\n", c->path,
					config_line(c, listener_keys[i].key), listener_keys[i].key,
					err ? err : l->v[j]);
				free(err);
				return -1;
			}
			srv->listeners = xrealloc(srv->listeners,
						  (srv->nlisteners + 1) * sizeof *srv->listeners);
			srv->listeners[srv->nlisteners++] = (struct server_listener){
				.proto = listener_keys[i].proto,
				.l = lis,
				.key = listener_keys[i].key,
				.srv = srv,
			};
		}
	}
	return 0;
}

/* Create the directory that will hold file (mode 0700). */
static int mkdir_parent(const char *file)
{
	char *dir = xstrdup(file);
	char *slash = strrchr(dir, '/');
	int r = 0;
	if (slash && slash != dir) {
		*slash = 0;
		r = mkdir_p(dir, 0700);
		if (r < 0)
			fprintf(stderr, "tern: mkdir %s: %s\n", dir, strerror(errno));
	}
	free(dir);
	return r;
}

static int ensure_certificate(const struct config *c)
{
	struct stat st;
	bool have_cert = stat(c->tls_cert, &st) == 0;
	bool have_key = stat(c->tls_key, &st) == 0;
	if (have_cert && have_key)
		return 0;
	if (have_cert != have_key) {
		fprintf(stderr, "tern: %s exists but %s does not; give both or neither\n",
			have_cert ? c->tls_cert : c->tls_key, have_cert ? c->tls_key : c->tls_cert);
		return -1;
	}
	if (mkdir_parent(c->tls_cert) < 0 || mkdir_parent(c->tls_key) < 0)
		return -1;
	char *err = NULL;
	if (tls_make_self_signed(c->tls_cert, c->tls_key, c->hostname, &err) < 0) {
		fprintf(stderr, "tern: cannot create a self-signed certificate: %s\n",
			err ? err : "?");
		free(err);
		return -1;
	}
	log_info("created a self-signed certificate for %s in %s", c->hostname, c->tls_cert);
	return 0;
}

static int load_certificate(struct server *srv, const struct config *c)
{
	char *err = NULL;
	srv->tls = tls_ctx_new(c->tls_cert, c->tls_key, &err);
	if (!srv->tls) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

/* Maildir convention: files left in tmp/ by a crash (a kill during DATA)
 * are garbage after 36 hours. Swept once at start, off the event loop. */
static void clean_tmp_run(void *ctx)
{
	char *mail = ctx;
	DIR *dd = opendir(mail);
	struct dirent *d;
	while (dd && (d = readdir(dd))) {
		if (d->d_name[0] == '.')
			continue;
		char *domain = xasprintf("%s/%s", mail, d->d_name);
		DIR *ud = opendir(domain);
		struct dirent *u;
		while (ud && (u = readdir(ud))) {
			if (u->d_name[0] == '.')
				continue;
			char *root = xasprintf("%s/%s", domain, u->d_name);
			maildir_clean_tmp(root);
			free(root);
		}
		if (ud)
			closedir(ud);
		free(domain);
	}
	if (dd)
		closedir(dd);
}

static void clean_tmp_done(void *ctx)
{
	free(ctx);
}

static void make_demo_account(struct server *srv)
{
	const struct config *c = srv->cfg;
	if (!c->demo_account || accounts_user_count(srv->accounts) > 0)
		return;
	uint8_t raw[9];
	random_bytes(raw, sizeof raw);
	char *pw = base64_encode(raw, sizeof raw);
	for (char *p = pw; *p; p++)
		if (*p == '+' || *p == '/')
			*p = 'x';
	char *addr = xasprintf("demo@%s", c->domains.v[0]);
	char *err = NULL;
	if (accounts_user_add(srv->accounts, addr, pw, &err) < 0) {
		log_warnx("cannot create the demo account %s: %s", addr, err ? err : "?");
		free(err);
	} else {
		char *root = maildir_account_path(c->data_dir, addr);
		if (root && maildir_create(root, &err) < 0) {
			log_warnx("maildir %s: %s", root, err ? err : "?");
			free(err);
		}
		free(root);
		fprintf(stderr,
			"\n  demo account created (shown once):\n"
			"    address:  %s\n    password: %s\n"
			"  change it with: tern user passwd -c %s %s\n\n",
			addr, pw, config_path, addr);
	}
	free(addr);
	free(pw);
}

static void apply_log_level(const struct config *c)
{
	if (!strcmp(c->log_level, "debug"))
		log_set_level(LOG_LVL_DEBUG);
	else if (!strcmp(c->log_level, "warning"))
		log_set_level(LOG_LVL_WARN);
	else
		log_set_level(LOG_LVL_INFO);
}

static bool lists_equal(const struct cfg_list *a, const struct cfg_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]))
			return false;
	return true;
}

/* SIGHUP: parse and validate the whole new file first; a bad file or a change
 * that needs a restart leaves the running configuration untouched. */
static void reload(struct server *srv)
{
	char *err = NULL;
	struct config *nc = config_load(config_path, &err);
	if (!nc) {
		log_warnx("reload failed, keeping the running configuration: %s", err);
		free(err);
		return;
	}
	const struct config *oc = srv->cfg;
	const char *restart = NULL;
	for (size_t i = 0; i < N_ELEMENTS(listener_keys); i++)
		if (!lists_equal(listen_list(oc, i), listen_list(nc, i)))
			restart = listener_keys[i].key;
	if (strcmp(oc->data_dir, nc->data_dir))
		restart = "data_dir";
	if (strcmp(oc->user, nc->user))
		restart = "user";
	if (restart) {
		log_warnx("reload refused: %s changed, which needs a restart; keeping the running "
			  "configuration",
			  restart);
		config_free(&nc);
		return;
	}
	/* After the privilege drop a root-only key cannot be read again: then the
	 * rest of the configuration still applies and the running certificate
	 * stays (README: keep keys readable by `user` to renew them by SIGHUP). */
	struct tls_ctx *tls = tls_ctx_new(nc->tls_cert, nc->tls_key, &err);
	if (!tls) {
		log_warnx("reload: %s; keeping the running certificate", err);
		free(err);
	}
	struct cfg_holder *h = xcalloc(1, sizeof *h);
	h->cfg = nc;
	h->refs = 1;
	cfg_release(&current_cfg);
	current_cfg = h;
	srv->cfg = nc;
	if (tls) {
		tls_ctx_unref(&srv->tls);
		srv->tls = tls;
	}
	apply_log_level(nc);
	log_info("configuration and certificate reloaded from %s", config_path);
}

static void stop_check(struct evloop *ev, void *ctx)
{
	struct server *srv = ctx;
	/* sessions, not connections: a session whose client left may still be
	 * waiting for its message to become durable */
	if ((srv->nconns == 0 && relay_idle(srv->relay)) ||
	    time_mono_ms() >= srv->stop_deadline_ms) {
		if (srv->nconns)
			log_warnx("stopping with %u sessions still open", srv->nconns);
		evloop_stop(ev);
		return;
	}
	ev_timer_add(ev, 50, stop_check, srv);
}

static void shutdown_conn(struct conn *c, void *ctx)
{
	(void)ctx;
	conn_shutdown(c);
}

static void on_signal(struct evloop *ev, int signo, void *ctx)
{
	struct server *srv = ctx;
	if (signo == SIGHUP) {
		reload(srv);
		return;
	}
	if (srv->stopping) {
		log_info("second stop signal: exiting now");
		evloop_stop(ev);
		return;
	}
	log_info("received %s: no new connections, finishing transactions in flight",
		 signo == SIGTERM ? "SIGTERM" : "SIGINT");
	srv->stopping = true;
	relay_stop(srv->relay); /* no new deliveries; unstarted claims released */
	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_free(&srv->listeners[i].l);
	conn_foreach(shutdown_conn, NULL);
	srv->stop_deadline_ms = time_mono_ms() + 30000;
	stop_check(ev, srv);
}

static void on_commit_ready(struct evloop *ev, void *ctx)
{
	struct server *srv = ctx;
	(void)ev;
	if (srv->committer)
		committer_reap(srv->committer);
}

static void commit_notify(void *ctx)
{
	ev_async_notify(ctx);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("setrlimit(RLIMIT_NOFILE)");
	}
}

void server_queue_changed(struct server *srv)
{
	relay_kick(srv->relay);
}

int server_main(const char *path)
{
	struct server srv_s = { 0 }, *srv = &srv_s;
	char *err = NULL;
	config_path = path;

	struct config *cfg = config_load(path, &err);
	if (!cfg) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	current_cfg = xcalloc(1, sizeof *current_cfg);
	current_cfg->cfg = cfg;
	current_cfg->refs = 1;
	srv->cfg = cfg;
	apply_log_level(cfg);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	umask(077);

	/* As root: data_dir for the user, existing keys, ports. Then drop. */
	if (privdrop_prepare(cfg) < 0)
		return 1;
	bool have_cert = access(cfg->tls_cert, F_OK) == 0 || access(cfg->tls_key, F_OK) == 0;
	if (have_cert && load_certificate(srv, cfg) < 0)
		return 1;
	if (bind_listeners(srv) < 0)
		return 1;
	if (privdrop_now(cfg) < 0)
		return 1;
	if (cfg->user && *cfg->user)
		log_info("running as user %s (uid %u)", cfg->user, (unsigned)getuid());

	/* From here on everything in data_dir is created by the user we run as. */
	if (mkdir_p(cfg->data_dir, 0700) < 0) {
		fprintf(stderr, "tern: %s:%u: data_dir: cannot create %s: %s\n", cfg->path,
			config_line(cfg, "data_dir"), cfg->data_dir, strerror(errno));
		return 1;
	}
	char *mail = xasprintf("%s/mail", cfg->data_dir);
	int mr = mkdir_p(mail, 0700);
	free(mail);
	if (mr < 0) {
		fprintf(stderr, "tern: cannot create %s/mail: %s\n", cfg->data_dir, strerror(errno));
		return 1;
	}
	if (!have_cert && (ensure_certificate(cfg) < 0 || load_certificate(srv, cfg) < 0))
		return 1;
	srv->accounts = accounts_open(cfg->data_dir, &err);
	if (!srv->accounts) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	make_demo_account(srv);
	srv->queue = queue_open(cfg->data_dir, QUEUE_OPEN_SERVER, &err);
	if (!srv->queue) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	queue_set_policy(srv->queue, &(struct queue_policy){
					     .retry = (int64_t)cfg->queue_retry,
					     .lifetime = (int64_t)cfg->queue_lifetime,
					     .delay_warn = (int64_t)cfg->queue_delay_warning,
					     .hostname = cfg->hostname,
				     });

	srv->ev = evloop_new();
	/* signals first: signalfd needs them blocked before any thread starts */
	int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (size_t i = 0; i < N_ELEMENTS(sigs); i++)
		if (ev_add_signal(srv->ev, sigs[i], on_signal, srv) < 0) {
			fprintf(stderr, "tern: cannot watch signal %d\n", sigs[i]);
			return 1;
		}
	srv->jobs = jobs_new(srv->ev, 2);
	srv->throttle = throttle_new(4096);
	jobs_submit(srv->jobs, clean_tmp_run, clean_tmp_done, xasprintf("%s/mail", cfg->data_dir));
	srv->commit_async = ev_async_new(srv->ev, on_commit_ready, srv);
	srv->committer = committer_new(commit_notify, srv->commit_async);
	for (size_t i = 0; i < srv->nlisteners; i++) {
		struct server_listener *sl = &srv->listeners[i];
		if (listener_start(sl->l, srv->ev, on_accept, sl) < 0) {
			fprintf(stderr, "tern: cannot start listener %s\n", listener_name(sl->l));
			return 1;
		}
		log_info("listening %s %s", listener_proto_name(sl->proto), listener_name(sl->l));
	}
	srv->relay = relay_new(srv, &err);
	if (!srv->relay) {
		fprintf(stderr, "tern: outbound relay: %s\n", err ? err : "?");
		free(err);
		return 1;
	}
	log_info("tern started: hostname=%s domains=%zu data_dir=%s", cfg->hostname,
		 cfg->domains.n, cfg->data_dir);

	int rc = evloop_run(srv->ev) < 0 ? 1 : 0;
	role_imap_stop(); /* no IMAP worker may outlive the loop */

	for (size_t i = 0; i < srv->nlisteners; i++)
		listener_free(&srv->listeners[i].l);
	free(srv->listeners);
	/* sessions are gone (or the stop deadline passed): finish what is queued */
	uint64_t batches = 0, deliveries = 0;
	committer_stats(srv->committer, &batches, &deliveries);
	committer_free(&srv->committer);
	log_info("committer: %llu deliveries in %llu batches", (unsigned long long)deliveries,
		 (unsigned long long)batches);
	relay_free(&srv->relay); /* after the committer: local deliveries report to it */
	jobs_free(&srv->jobs);
	throttle_free(&srv->throttle);
	queue_close(&srv->queue);
	accounts_close(&srv->accounts);
	tls_ctx_unref(&srv->tls);
	ev_async_free(&srv->commit_async);
	evloop_free(&srv->ev);
	free(srv->ipcounts);
	cfg_release(&current_cfg);
	log_info("tern stopped");
	return rc;
}
