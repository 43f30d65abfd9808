/* SPDX-License-Identifier: MIT */
/* POP3 role (RFC 1939): the application side of the I/O-free POP3 engine.
 *
 * Password and APOP checks go through daemon/login.c (job threads, the
 * shared failed-login throttle and its delay). The maildrop (one
 * account's Maildir, locked for the session) is read synchronously: listing
 * uses the W= sizes in the file names, and RETR reads 64 KiB at a time only
 * when the engine's output has room.
 *
 * Lifetime: a session is freed when its connection closes; a login check
 * still running is cancelled (it finishes on its own). */
#include "daemon/role_pop3.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/login.h"
#include "daemon/server.h"
#include "daemon/session.h"
#include "io/conn.h"
#include "io/evloop.h"
#include "proto/pop3/pop3_server.h"
#include "store/maildir.h"
#include "store/maildrop.h"

#define READ_CHUNK 65536

struct pop3_sess {
	struct session base;
	struct pop3_server *eng;
	struct pop3_server_settings set;
	struct maildrop *md;
	int msg_fd;
	char *user;               /* canonical address after login */
	struct login_req *login;  /* password/APOP check in flight */
	struct ev_timer *delay;   /* throttle delay before a failed SCRAM's answer */
	bool tls;
	unsigned retrieved, deleted;
};

static void delay_done(struct evloop *ev, void *ctx)
{
	struct pop3_sess *s = ctx;
	(void)ev;
	s->delay = NULL;
	pop3_server_resume(s->eng, POP3_REJECTED);
	conn_kick(s->base.conn);
}

static void login_done(struct session *base, bool ok, char *canon)
{
	struct pop3_sess *s = (struct pop3_sess *)base;
	s->login = NULL;
	free(s->user);
	s->user = ok ? canon : NULL;
	if (!ok)
		free(canon);
	pop3_server_resume(s->eng, ok ? POP3_OK : POP3_REJECTED);
	conn_kick(s->base.conn);
}

static enum pop3_verdict op_login(void *ctx, struct pop3_server *eng, const char *mech,
				  const char *user, const char *password)
{
	struct pop3_sess *s = ctx;
	(void)eng;
	(void)mech; /* USER/PASS, AUTH PLAIN, AUTH LOGIN: all a password check */
	s->login = login_start(&s->base, "pop3", LOGIN_PASSWORD, "password", user, password, NULL,
			       login_done);
	return POP3_PENDING;
}

static enum pop3_verdict op_apop(void *ctx, struct pop3_server *eng, const char *user,
				 const char *timestamp, const char *digest)
{
	struct pop3_sess *s = ctx;
	(void)eng;
	s->login = login_start(&s->base, "pop3", LOGIN_APOP, "apop", user, digest, timestamp,
			       login_done);
	return POP3_PENDING;
}

static bool op_scram_creds(void *ctx, const char *user, struct scram_creds *c)
{
	struct pop3_sess *s = ctx;
	return accounts_scram_creds(s->base.srv->accounts, user, c);
}

/* The engine judged a SCRAM proof (or a SASL exchange failed on its
 * credentials): log it and hold a failure back like a wrong password. */
static enum pop3_verdict op_sasl_done(void *ctx, struct pop3_server *eng, const char *mech,
				      const char *user, bool ok)
{
	struct pop3_sess *s = ctx;
	(void)eng;
	unsigned delay = login_record(&s->base, "pop3", mech, user, ok);
	if (ok) {
		free(s->user);
		if (!accounts_user_exists(s->base.srv->accounts, user, &s->user))
			s->user = xstrdup(user);
		return POP3_OK;
	}
	if (!delay)
		return POP3_REJECTED;
	s->delay = ev_timer_add(s->base.srv->ev, delay, delay_done, s);
	return POP3_PENDING;
}

static enum pop3_verdict op_maildrop_open(void *ctx, struct pop3_server *eng, const char *user)
{
	struct pop3_sess *s = ctx;
	char *err = NULL;
	const char *who = s->user ? s->user : user;
	char *root = maildir_account_path(s->base.cfg->data_dir, who);
	if (!root) {
		pop3_server_reply(eng, "SYS/PERM", "Mailbox unavailable");
		return POP3_REJECTED;
	}
	int r = maildrop_open(root, &s->md, &err);
	free(root);
	if (r == 1) {
		pop3_server_reply(eng, "IN-USE", "Maildrop is locked by another session");
		log_info("%s pop3 in-use user=%s", s->base.id, who);
		return POP3_REJECTED;
	}
	if (r < 0) {
		log_warnx("%s pop3 maildrop_open(%s) failed: %s", s->base.id, who, err ? err : "?");
		free(err);
		pop3_server_reply(eng, "SYS/TEMP", "Internal error, try again later (session %s)",
				  s->base.id);
		return POP3_REJECTED;
	}
	return POP3_OK;
}

static unsigned op_msg_count(void *ctx, struct pop3_server *eng)
{
	(void)eng;
	return maildrop_count(((struct pop3_sess *)ctx)->md);
}

static void op_msg_info(void *ctx, struct pop3_server *eng, unsigned idx, struct pop3_msg_info *r)
{
	struct pop3_sess *s = ctx;
	(void)eng;
	r->size = maildrop_wire_size(s->md, idx);
	r->uidl = maildrop_uidl(s->md, idx);
}

static enum pop3_verdict op_msg_open(void *ctx, struct pop3_server *eng, unsigned idx)
{
	struct pop3_sess *s = ctx;
	char *err = NULL;
	if (maildrop_msg_open(s->md, idx, &s->msg_fd, &err) < 0) {
		bool gone = errno == ENOENT;
		log_warnx("%s pop3 cannot open message %u: %s", s->base.id, idx + 1,
			  err ? err : "?");
		free(err);
		s->msg_fd = -1;
		if (gone)
			pop3_server_reply(eng, NULL, "Message %u was removed by another session",
					  idx + 1);
		else
			pop3_server_reply(eng, "SYS/TEMP", "Cannot read message %u (session %s)",
					  idx + 1, s->base.id);
		return POP3_REJECTED;
	}
	s->retrieved++;
	return POP3_OK;
}

static void op_msg_read(void *ctx, struct pop3_server *eng)
{
	struct pop3_sess *s = ctx;
	uint8_t chunk[READ_CHUNK];
	ssize_t n;
	do
		n = read(s->msg_fd, chunk, sizeof chunk);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		log_warn("%s pop3 read", s->base.id);
		pop3_server_body_fail(eng);
		return;
	}
	pop3_server_body_data(eng, chunk, (size_t)n, n == 0);
}

static void op_msg_close(void *ctx, struct pop3_server *eng)
{
	struct pop3_sess *s = ctx;
	(void)eng;
	if (s->msg_fd >= 0)
		close(s->msg_fd);
	s->msg_fd = -1;
}

static enum pop3_verdict op_commit(void *ctx, struct pop3_server *eng, const unsigned *idx,
				   size_t n)
{
	struct pop3_sess *s = ctx;
	char *err = NULL;
	unsigned removed = 0;
	if (maildrop_commit(s->md, idx, n, &removed, &err) < 0) {
		log_warnx("%s pop3 commit failed: %s", s->base.id, err ? err : "?");
		free(err);
		pop3_server_reply(eng, "SYS/TEMP", "Some messages were not removed (session %s)",
				  s->base.id);
		return POP3_REJECTED;
	}
	s->deleted += (unsigned)n;
	log_info("%s pop3 update user=%s deleted=%zu", s->base.id, s->user ? s->user : "?", n);
	return POP3_OK;
}

static void op_maildrop_close(void *ctx, struct pop3_server *eng)
{
	(void)eng;
	maildrop_close(&((struct pop3_sess *)ctx)->md);
}

static void op_log_refusal(void *ctx, struct pop3_server *eng, const char *cmd, const char *text)
{
	struct pop3_sess *s = ctx;
	(void)eng;
	char c[64], t[300];
	log_escape(cmd, strlen(cmd), c, sizeof c);
	log_escape(text, strlen(text), t, sizeof t);
	log_info("%s pop3 error client=%s command=\"%s\" result=\"%s\"", s->base.id, s->base.peer,
		 c, t);
}

static const struct pop3_server_ops pop3_ops = {
	.login = op_login,
	.apop = op_apop,
	.scram_creds = op_scram_creds,
	.sasl_done = op_sasl_done,
	.maildrop_open = op_maildrop_open,
	.msg_count = op_msg_count,
	.msg_info = op_msg_info,
	.msg_open = op_msg_open,
	.msg_read = op_msg_read,
	.msg_close = op_msg_close,
	.commit = op_commit,
	.maildrop_close = op_maildrop_close,
	.log_refusal = op_log_refusal,
};

static size_t sess_feed(void *p, const uint8_t *data, size_t n)
{
	return pop3_server_feed(((struct pop3_sess *)p)->eng, data, n);
}
static enum proto_want sess_want(void *p)
{
	return pop3_server_want(((struct pop3_sess *)p)->eng);
}
static struct buf *sess_output(void *p)
{
	return pop3_server_output(((struct pop3_sess *)p)->eng);
}
static void sess_tls_started(void *p, const char *version, const char *cipher)
{
	struct pop3_sess *s = p;
	s->tls = true;
	log_info("%s pop3 tls version=%s cipher=%s", s->base.id, version, cipher);
	pop3_server_tls_started(s->eng);
}
static void sess_timeout(void *p)
{
	struct pop3_sess *s = p;
	log_info("%s pop3 timeout client=%s", s->base.id, s->base.peer);
	pop3_server_timeout(s->eng);
}
static void sess_shutdown(void *p)
{
	pop3_server_shutdown(((struct pop3_sess *)p)->eng);
}
static void sess_closed(void *p, const char *reason)
{
	struct pop3_sess *s = p;
	log_info("%s pop3 disconnect client=%s user=%s reason=%s retrieved=%u deleted=%u",
		 s->base.id, s->base.peer, s->user ? s->user : "-", reason ? reason : "close",
		 s->retrieved, s->deleted);
	s->base.conn = NULL;
	session_destroy(&s->base);
}

static void pop3_sess_free(struct session *base)
{
	struct pop3_sess *s = (struct pop3_sess *)base;
	/* a check still running on a job thread finishes without us */
	login_cancel(&s->login);
	if (s->delay)
		ev_timer_del(s->base.srv->ev, &s->delay);
	/* releases an open message and the maildrop lock; commits nothing */
	pop3_server_free(&s->eng);
	if (s->msg_fd >= 0)
		close(s->msg_fd);
	maildrop_close(&s->md);
	free(s->user);
}

static const struct proto_session_ops conn_ops = {
	.feed = sess_feed,
	.want = sess_want,
	.output = sess_output,
	.tls_started = sess_tls_started,
	.timeout = sess_timeout,
	.shutdown = sess_shutdown,
	.closed = sess_closed,
};

void role_pop3_accept(struct server *srv, const struct server_listener *sl, int fd,
		      const char *peer, int port)
{
	struct pop3_sess *s = xcalloc(1, sizeof *s);
	session_init(&s->base, srv, "pop3", peer, port, pop3_sess_free);
	s->msg_fd = -1;
	const struct config *cfg = s->base.cfg;
	bool implicit = sl->proto == LP_POP3S;
	s->set = (struct pop3_server_settings){
		.hostname = cfg->hostname,
		.apop = cfg->pop3_apop,
		.plaintext_auth = session_plaintext_ok(&s->base),
		.stls_offered = s->base.tls != NULL,
		.tls_active = implicit,
	};
	s->eng = pop3_server_new(&s->set, &pop3_ops, s);
	log_info("%s pop3 connect client=%s port=%d listener=%s", s->base.id, peer, port,
		 listener_proto_name(sl->proto));
	pop3_server_start(s->eng);
	struct conn_settings cs = {
		.idle_ms = (unsigned)(cfg->pop3_timeout * 1000),
		.max_input = 64 * 1024,
		.tls = s->base.tls,
		.implicit_tls = implicit,
		.tls_handshake_ms = 30000,
	};
	s->base.conn = conn_new(srv->ev, fd, &cs, &conn_ops, s);
	if (!s->base.conn)
		session_destroy(&s->base);
}
