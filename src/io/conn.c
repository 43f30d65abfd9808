/* SPDX-License-Identifier: MIT */
/* A connection drives one I/O-free protocol session (base/proto.h) over a
 * non-blocking socket, in plaintext or TLS.
 *
 * Every event (readiness, timer, conn_kick, conn_shutdown) goes through
 * dispatch(), which runs step() with a "busy" flag set. Re-entrant calls from
 * inside session callbacks (a session that kicks or closes its own conn) only
 * record what happened; the outer dispatch picks it up, and the conn is freed
 * when the outermost dispatch returns. So conn_close() is safe anywhere.
 *
 * step(): write pending output, read what fits in the input buffer, feed the
 * session until it consumes nothing or wants something other than READ, write
 * again, then act on want(): READ keeps reading (unless output is above
 * OUT_HIWAT: backpressure), PENDING stops reading until conn_kick(),
 * STARTTLS flushes, discards unread plaintext and handshakes, CLOSE flushes
 * (bounded by CLOSE_FLUSH_MS) and closes.
 *
 * Client mode (conn_connect): the conn starts "connecting", watching only
 * for writability with its own deadline; SO_ERROR then says how connect(2)
 * ended. Until then the session is never fed nor asked for output, and a
 * failure reaches it as ops->closed("connect: ..."). Client TLS runs
 * SSL_connect with SNI; verification is only reported (opportunistic).
 *
 * Memory: idle connections hold no buffers. The input buffer is freed as soon
 * as it is empty and reads go through a stack buffer; one timer per conn is
 * armed lazily (it may fire early and re-arm, which is cheaper than moving it
 * in the heap on every read). */
#include "io/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "io/evloop.h"
#include "io/listen.h"
#include "io/tls.h"

#define OUT_HIWAT (256 * 1024)     /* stop reading and feeding above this much output */
#define READ_CHUNK 16384           /* one TLS record */
#define READ_ROUNDS 8              /* reads per wakeup before yielding to other conns */
#define CLOSE_FLUSH_MS 5000        /* how long a closing conn may take to drain */
#define DEFAULT_HANDSHAKE_MS 30000 /* tls_handshake_ms = 0 */
#define DEFAULT_CONNECT_MS 30000   /* conn_connect connect_ms = 0 */
#define DEFAULT_MAX_INPUT 65536    /* max_input = 0 */
#define OUT_KEEP 1024              /* an empty output buffer bigger than this is released */

/* Internal event bits next to EV_READ / EV_WRITE. */
enum { EVX_TIMER = 0x100, EVX_SHUTDOWN = 0x200, EVX_KICK = 0x400 };

struct conn {
	struct conn *prev, *next;
	struct evloop *ev;
	const struct proto_session_ops *ops;
	void *sess;
	SSL *ssl;
	struct tls_ctx *tls; /* reference held for STARTTLS / implicit TLS */
	struct ev_timer *timer;
	struct ev_timer *again; /* TLS plaintext left inside OpenSSL: read again soon */
	uint64_t timer_at;
	uint64_t last_input; /* last sign of life: input, or output the client took */
	int last_outq;       /* kernel send queue at the last idle check */
	uint64_t hs_deadline;
	uint64_t close_deadline;
	uint64_t connect_deadline; /* while connecting */
	char *server_name;         /* client TLS: SNI and verified name */
	struct buf in;
	char *reason;
	unsigned idle_ms;
	unsigned hs_ms;
	unsigned mask;    /* interest registered with the loop */
	unsigned pending; /* events waiting for the current dispatch */
	int fd;
	int peer_port;
	bool busy;
	bool dead;
	bool eof;
	bool io_error; /* do not flush or send close_notify on the way out */
	bool handshaking;
	bool connecting; /* client: connect(2) in progress */
	bool client;     /* made by conn_connect: TLS is SSL_connect */
	bool read_wants_write;
	bool write_wants_read;
	char peer[64];
};

static struct conn *conns;
static unsigned nconns;

static void dispatch(struct conn *c, unsigned events);

/* ---- small helpers ---- */

static struct buf *out_buf(struct conn *c)
{
	return c->ops->output(c->sess);
}

static size_t out_len(struct conn *c)
{
	return out_buf(c)->len;
}

static void set_interest(struct conn *c, unsigned mask)
{
	if (c->mask != mask) {
		c->mask = mask;
		ev_mod_fd(c->ev, c->fd, mask);
	}
}

/* Marks the conn dead; it is freed when the current dispatch returns. */
static void mark_dead(struct conn *c, const char *reason)
{
	if (c->dead)
		return;
	c->dead = true;
	c->reason = xstrdup(reason ? reason : "closed");
}

static void fail_errno(struct conn *c, const char *what)
{
	char r[128];
	snprintf(r, sizeof r, "%s: %s", what, strerror(errno));
	c->io_error = true;
	mark_dead(c, r);
}

static void fail_tls(struct conn *c, const char *what)
{
	char r[256], e[200];
	unsigned long code = ERR_peek_error();
	if (code)
		ERR_error_string_n(code, e, sizeof e);
	else if (errno)
		snprintf(e, sizeof e, "%s", strerror(errno));
	else
		snprintf(e, sizeof e, "connection closed by peer");
	ERR_clear_error();
	snprintf(r, sizeof r, "%s: %s", what, e);
	c->io_error = true;
	mark_dead(c, r);
}

/* ---- timer ---- */

static uint64_t deadline(const struct conn *c)
{
	if (c->dead)
		return 0;
	if (c->connecting)
		return c->connect_deadline;
	if (c->handshaking)
		return c->hs_deadline;
	if (c->close_deadline)
		return c->close_deadline;
	if (c->idle_ms)
		return c->last_input + c->idle_ms;
	return 0;
}

static void timer_fired(struct evloop *ev, void *ctx)
{
	(void)ev;
	struct conn *c = ctx;
	c->timer = NULL;
	dispatch(c, EVX_TIMER);
}

/* Arm the one timer for the nearest deadline. A timer that fires earlier than
 * needed is kept (timer_fired re-arms), so moving the idle deadline on every
 * read costs nothing. */
static void arm_timer(struct conn *c)
{
	uint64_t d = deadline(c);
	if (d == 0) {
		ev_timer_del(c->ev, &c->timer);
		return;
	}
	if (c->timer && c->timer_at <= d)
		return;
	ev_timer_del(c->ev, &c->timer);
	uint64_t now = ev_now_ms(c->ev);
	c->timer = ev_timer_add(c->ev, d > now ? d - now : 0, timer_fired, c);
	c->timer_at = d > now ? d : now;
}

static void again_fired(struct evloop *ev, void *ctx)
{
	(void)ev;
	struct conn *c = ctx;
	c->again = NULL;
	dispatch(c, EV_READ);
}

/* ---- write ---- */

/* Write as much output as the socket takes. 0, or -1 if the conn failed. */
static int flush(struct conn *c)
{
	if (c->handshaking || c->connecting)
		return 0;
	struct buf *out = out_buf(c);
	c->write_wants_read = false;
	while (out->len > 0) {
		if (c->ssl) {
			ERR_clear_error();
			errno = 0;
			/* Partial writes + moving buffer (set in tls.c): a retry after
			 * WANT_WRITE may pass the same bytes at a new address, and a
			 * longer length since the session only ever appends. */
			int n = out->len > INT_MAX ? INT_MAX : (int)out->len;
			int r = SSL_write(c->ssl, out->data, n);
			if (r > 0) {
				buf_consume(out, (size_t)r);
				c->last_input = ev_now_ms(c->ev); /* a reading client is alive */
				continue;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE)
				return 0;
			if (e == SSL_ERROR_WANT_READ) {
				c->write_wants_read = true;
				return 0;
			}
			fail_tls(c, "TLS write");
			return -1;
		}
		ssize_t r = send(c->fd, out->data, out->len, MSG_NOSIGNAL);
		if (r >= 0) {
			buf_consume(out, (size_t)r);
			c->last_input = ev_now_ms(c->ev); /* a reading client is alive */
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		fail_errno(c, "write");
		return -1;
	}
	if (out->cap > OUT_KEEP)
		buf_deinit(out); /* idle conns keep no buffers */
	return 0;
}

/* ---- read ---- */

static size_t max_input(const struct conn *c)
{
	return c->in.max;
}

static bool can_read(struct conn *c)
{
	return !c->dead && !c->eof && !c->handshaking && !c->connecting && c->in.len < max_input(c) &&
	       c->ops->want(c->sess) == PROTO_WANT_READ && out_len(c) <= OUT_HIWAT;
}

/* One read into the input buffer. 1 got data, 0 nothing now, -1 failed or EOF
 * (eof set). */
static int read_once(struct conn *c)
{
	uint8_t tmp[READ_CHUNK];
	size_t room = max_input(c) - c->in.len;
	size_t want = room < sizeof tmp ? room : sizeof tmp;
	ssize_t got;
	if (c->ssl) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_read(c->ssl, tmp, (int)want);
		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				return 0;
			if (e == SSL_ERROR_WANT_WRITE) {
				c->read_wants_write = true;
				return 0;
			}
			if (e == SSL_ERROR_ZERO_RETURN) {
				c->eof = true; /* close_notify */
				return -1;
			}
			if ((e == SSL_ERROR_SYSCALL && errno == 0) ||
			    (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) ==
							   SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
				c->eof = true; /* EOF without close_notify */
				c->io_error = true;
				ERR_clear_error();
				return -1;
			}
			fail_tls(c, "TLS read");
			return -1;
		}
		got = r;
	} else {
		do
			got = read(c->fd, tmp, want);
		while (got < 0 && errno == EINTR);
		if (got < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			fail_errno(c, "read");
			return -1;
		}
		if (got == 0) {
			c->eof = true;
			return -1;
		}
	}
	/* Cannot fail: want <= room below the cap. */
	if (buf_append(&c->in, tmp, (size_t)got) < 0)
		panic("conn input over its cap");
	c->last_input = ev_now_ms(c->ev);
	/* A short plaintext read means the socket is drained; TLS reads stop at
	 * record boundaries, so keep going until WANT_READ. */
	return c->ssl || (size_t)got == want ? 1 : 0;
}

static void do_read(struct conn *c)
{
	c->read_wants_write = false;
	for (int i = 0; i < READ_ROUNDS && can_read(c); i++)
		if (read_once(c) <= 0)
			break;
}

/* ---- feed ---- */

/* Offer buffered input until the session consumes nothing, wants something
 * other than READ, or has more output queued than OUT_HIWAT. */
static void feed_loop(struct conn *c)
{
	size_t off = 0;
	while (!c->dead && off < c->in.len) {
		if (c->ops->want(c->sess) != PROTO_WANT_READ || out_len(c) > OUT_HIWAT)
			break;
		size_t n = c->ops->feed(c->sess, c->in.data + off, c->in.len - off);
		ASSERT(n <= c->in.len - off);
		if (n == 0)
			break;
		off += n;
	}
	if (off)
		buf_consume(&c->in, off);
	if (c->in.len == 0)
		buf_deinit(&c->in); /* keeps the cap; idle conns hold no buffer */
}

/* ---- TLS ---- */

static int begin_tls(struct conn *c)
{
	SSL *ssl = SSL_new(tls_ctx_ssl_ctx(c->tls));
	if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		fail_tls(c, "SSL_new");
		return -1;
	}
	if (c->client) {
		SSL_set_connect_state(ssl);
		if (c->server_name) {
			struct in6_addr a6;
			struct in_addr a4;
			/* RFC 6066 3: no literal IP addresses in SNI */
			bool literal = inet_pton(AF_INET, c->server_name, &a4) == 1 ||
				       inet_pton(AF_INET6, c->server_name, &a6) == 1;
			/* checked into the verify result, never enforced */
			if (!literal) {
				SSL_set_tlsext_host_name(ssl, c->server_name);
				SSL_set1_host(ssl, c->server_name);
			} else {
				X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->server_name);
			}
		}
	} else {
		SSL_set_accept_state(ssl);
	}
	c->ssl = ssl;
	c->handshaking = true;
	c->hs_deadline = ev_now_ms(c->ev) + c->hs_ms;
	return 0;
}

/* 1 done (tls_started called), 0 in progress, -1 failed. */
static int handshake(struct conn *c)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->handshaking = false;
		c->hs_deadline = 0;
		c->last_input = ev_now_ms(c->ev);
		c->ops->tls_started(c->sess, SSL_get_version(c->ssl),
				    SSL_get_cipher_name(c->ssl));
		return c->dead ? -1 : 1;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		set_interest(c, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
		arm_timer(c);
		return 0;
	}
	fail_tls(c, "TLS handshake");
	return -1;
}

static void start_tls(struct conn *c)
{
	if (!c->tls || c->ssl) {
		mark_dead(c, c->ssl ? "STARTTLS on a TLS connection" : "STARTTLS without TLS");
		return;
	}
	/* RFC 3207 5 (and CVE-2011-0411): anything the client pipelined after
	 * STARTTLS arrived in plaintext and must never be treated as if it came
	 * over TLS. The session already stopped consuming; drop the rest. */
	if (c->in.len)
		log_debug("conn %s:%d: discarding %zu bytes pipelined after STARTTLS", c->peer,
			  c->peer_port, c->in.len);
	buf_deinit(&c->in);
	if (begin_tls(c) < 0)
		return;
	if (handshake(c) == 1)
		c->pending |= EVX_KICK;
}

/* ---- the state machine ---- */

static void act(struct conn *c)
{
	if (c->dead)
		return;
	if (c->connecting) {
		set_interest(c, EV_WRITE);
		arm_timer(c);
		return;
	}
	size_t olen = out_len(c);
	unsigned mask = 0;
	switch (c->ops->want(c->sess)) {
	case PROTO_WANT_READ:
		if (c->eof) {
			/* nothing more will come in: finish writing, then close */
			if (olen == 0) {
				mark_dead(c, "connection closed by peer");
				return;
			}
			break;
		}
		if (olen <= OUT_HIWAT) {
			if (c->in.len >= max_input(c)) {
				/* The engine sees a full buffer and takes nothing: it can
				 * never make progress. Engines consume overlong lines
				 * themselves; this is the safety net. */
				mark_dead(c, "input buffer full");
				return;
			}
			mask |= EV_READ;
		}
		break;
	case PROTO_WANT_PENDING:
		break;
	case PROTO_WANT_STARTTLS:
		if (olen == 0) {
			start_tls(c);
			return;
		}
		break;
	case PROTO_WANT_CLOSE:
		if (olen == 0) {
			mark_dead(c, "closed by server");
			return;
		}
		if (!c->close_deadline)
			c->close_deadline = ev_now_ms(c->ev) + CLOSE_FLUSH_MS;
		break;
	}
	if (olen > 0)
		mask |= EV_WRITE;
	if (c->write_wants_read && olen > 0)
		mask |= EV_READ;
	if (c->read_wants_write)
		mask |= EV_WRITE;
	set_interest(c, mask);
	arm_timer(c);
}

/* Timer bit: 0 to carry on, -1 when the conn died. */
static int on_timer(struct conn *c)
{
	uint64_t d = deadline(c), now = ev_now_ms(c->ev);
	if (d == 0 || now < d)
		return 0; /* fired early; act() re-arms */
	if (c->connecting) {
		c->io_error = true;
		mark_dead(c, "connect timeout");
		return -1;
	}
	if (c->handshaking) {
		c->io_error = true;
		mark_dead(c, "TLS handshake timeout");
		return -1;
	}
	if (c->close_deadline) {
		c->io_error = true;
		mark_dead(c, "timeout writing output");
		return -1;
	}
	/* A client still draining a big response from the kernel's send queue
	 * (a slow RETR or FETCH) is not idle: only a queue that did not move
	 * during a whole idle period is. */
	int outq = 0;
	if (ioctl(c->fd, SIOCOUTQ, &outq) == 0 && outq > 0 && outq != c->last_outq) {
		c->last_outq = outq;
		c->last_input = now;
		return 0;
	}
	c->last_input = now;
	c->ops->timeout(c->sess); /* queues a goodbye and wants CLOSE */
	return c->dead ? -1 : 0;
}

/* Client: connect(2) finished or failed. 0 connected, -1 dead, 1 still waiting. */
static int on_connecting(struct conn *c, unsigned events)
{
	if (!(events & (EV_READ | EV_WRITE)))
		return 1;
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		errno = err;
		fail_errno(c, "connect");
		return -1;
	}
	c->connecting = false;
	c->connect_deadline = 0;
	c->last_input = ev_now_ms(c->ev);
	return 0;
}

static void step(struct conn *c, unsigned events)
{
	if ((events & EVX_TIMER) && on_timer(c) < 0)
		return;
	if (c->connecting) {
		if (events & EVX_SHUTDOWN) {
			c->io_error = true;
			mark_dead(c, "server shutting down");
			return;
		}
		int r = on_connecting(c, events);
		if (r < 0)
			return;
		if (r > 0) {
			act(c);
			return;
		}
		events |= EV_READ | EV_WRITE; /* the greeting may already be there */
	}
	if (events & EVX_SHUTDOWN) {
		if (c->handshaking) {
			c->io_error = true;
			mark_dead(c, "server shutting down");
			return;
		}
		c->ops->shutdown(c->sess);
		if (c->dead)
			return;
	}
	bool readable = (events & EV_READ) != 0;
	if (c->handshaking) {
		if (handshake(c) <= 0)
			return;
		readable = true; /* application data may follow the Finished message */
	}
	if (c->read_wants_write && (events & EV_WRITE))
		readable = true;
	if (flush(c) < 0)
		return;
	for (int round = 0;; round++) {
		if (readable)
			do_read(c);
		if (c->dead)
			return;
		feed_loop(c);
		if (c->dead || flush(c) < 0)
			return;
		if (c->eof) {
			/* The client may half-close right after its last command
			 * (".\r\n" + FIN in one flight). If the session still owes a
			 * reply (waiting for the app, e.g. the commit behind a 250)
			 * or has output unsent, stay until that is written: a lost
			 * 250 makes the client send the message again. */
			if (c->ops->want(c->sess) != PROTO_WANT_PENDING && out_len(c) == 0) {
				mark_dead(c, "connection closed by peer");
				return;
			}
			break;
		}
		/* Decrypted bytes can wait inside OpenSSL where epoll cannot see
		 * them (we stopped reading when the input buffer was full). */
		readable = c->ssl && can_read(c) && SSL_has_pending(c->ssl);
		if (!readable)
			break;
		if (round == READ_ROUNDS) {
			if (!c->again)
				c->again = ev_timer_add(c->ev, 0, again_fired, c);
			break;
		}
	}
	act(c);
}

static void finalize(struct conn *c)
{
	ev_timer_del(c->ev, &c->timer);
	ev_timer_del(c->ev, &c->again);
	if (!c->io_error && !c->handshaking && !c->connecting)
		flush(c); /* best effort: one non-blocking attempt */
	ev_del_fd(c->ev, c->fd);
	if (c->ssl) {
		if (!c->io_error && !c->handshaking)
			SSL_shutdown(c->ssl); /* close_notify, best effort */
		ERR_clear_error();
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nconns--;
	tls_ctx_unref(&c->tls);
	buf_deinit(&c->in);
	c->ops->closed(c->sess, c->reason);
	free(c->reason);
	free(c->server_name);
	free(c);
}

static void dispatch(struct conn *c, unsigned events)
{
	if (c->dead)
		return;
	c->pending |= events;
	if (c->busy)
		return; /* re-entered from a session callback: the outer loop runs it */
	c->busy = true;
	while (c->pending && !c->dead) {
		unsigned e = c->pending;
		c->pending = 0;
		step(c, e);
	}
	c->busy = false;
	if (c->dead)
		finalize(c);
}

static void conn_io(struct evloop *ev, int fd, unsigned events, void *ctx)
{
	(void)ev;
	(void)fd;
	dispatch(ctx, events);
}

/* ---- public ---- */

static void ignore_sigpipe(void)
{
	/* OpenSSL writes with write(2), which raises SIGPIPE on a reset peer. */
	static bool done;
	if (done)
		return;
	done = true;
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

struct conn *conn_new(struct evloop *ev, int fd, const struct conn_settings *set,
		      const struct proto_session_ops *ops, void *sess)
{
	ignore_sigpipe();
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_warn("conn_new: fcntl(%d)", fd);
		close(fd);
		return NULL;
	}
	if (set->implicit_tls && !set->tls) {
		log_warnx("conn_new: implicit TLS without a TLS context");
		close(fd);
		return NULL;
	}
	struct conn *c = xcalloc(1, sizeof *c);
	c->ev = ev;
	c->fd = fd;
	c->ops = ops;
	c->sess = sess;
	c->idle_ms = set->idle_ms;
	c->hs_ms = set->tls_handshake_ms ? set->tls_handshake_ms : DEFAULT_HANDSHAKE_MS;
	buf_init(&c->in, set->max_input ? set->max_input : DEFAULT_MAX_INPUT);
	c->last_input = ev_now_ms(ev);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		sockaddr_to_text(&ss, c->peer, &c->peer_port);
	} else {
		snprintf(c->peer, sizeof c->peer, "unknown");
	}
	if (set->tls) {
		c->tls = set->tls;
		tls_ctx_ref(c->tls);
	}
	unsigned mask = EV_READ | EV_WRITE; /* the first writable event flushes any banner */
	if (set->implicit_tls) {
		if (begin_tls(c) < 0)
			goto fail;
		mask = EV_READ; /* the ClientHello comes first */
	}
	if (ev_add_fd(ev, fd, mask, conn_io, c) < 0) {
		log_warn("conn_new: ev_add_fd(%d)", fd);
		goto fail;
	}
	c->mask = mask;
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	arm_timer(c);
	return c;
fail:
	SSL_free(c->ssl);
	tls_ctx_unref(&c->tls);
	free(c->reason);
	free(c);
	close(fd);
	return NULL;
}

void conn_kick(struct conn *c)
{
	dispatch(c, EVX_KICK);
}

void conn_close(struct conn *c, const char *reason)
{
	if (c->dead)
		return;
	mark_dead(c, reason);
	if (!c->busy)
		finalize(c);
}

void conn_shutdown(struct conn *c)
{
	dispatch(c, EVX_SHUTDOWN);
}

struct conn *conn_connect(struct evloop *ev, const struct sockaddr *sa, socklen_t salen,
			  unsigned connect_ms, const struct conn_settings *set,
			  const struct proto_session_ops *ops, void *sess, char **err_r)
{
	ignore_sigpipe();
	*err_r = NULL;
	if (set->implicit_tls && !set->tls) {
		*err_r = xstrdup("implicit TLS without a TLS context");
		return NULL;
	}
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_r = xasprintf("socket: %s", strerror(errno));
		return NULL;
	}
	int r;
	do
		r = connect(fd, sa, salen);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EINPROGRESS) {
		*err_r = xasprintf("connect: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	struct conn *c = xcalloc(1, sizeof *c);
	c->ev = ev;
	c->fd = fd;
	c->ops = ops;
	c->sess = sess;
	c->client = true;
	c->connecting = true; /* even when connect(2) finished at once: one path */
	c->connect_deadline = ev_now_ms(ev) + (connect_ms ? connect_ms : DEFAULT_CONNECT_MS);
	c->idle_ms = set->idle_ms;
	c->hs_ms = set->tls_handshake_ms ? set->tls_handshake_ms : DEFAULT_HANDSHAKE_MS;
	if (set->tls_server_name)
		c->server_name = xstrdup(set->tls_server_name);
	buf_init(&c->in, set->max_input ? set->max_input : DEFAULT_MAX_INPUT);
	c->last_input = ev_now_ms(ev);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	memcpy(&ss, sa, salen < sizeof ss ? salen : sizeof ss);
	sockaddr_to_text(&ss, c->peer, &c->peer_port);
	if (set->tls) {
		c->tls = set->tls;
		tls_ctx_ref(c->tls);
	}
	if (set->implicit_tls && begin_tls(c) < 0) {
		*err_r = xstrdup(c->reason ? c->reason : "TLS setup failed");
		goto fail;
	}
	if (ev_add_fd(ev, fd, EV_WRITE, conn_io, c) < 0) {
		*err_r = xasprintf("ev_add_fd: %s", strerror(errno));
		goto fail;
	}
	c->mask = EV_WRITE;
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	arm_timer(c);
	return c;
fail:
	SSL_free(c->ssl);
	tls_ctx_unref(&c->tls);
	buf_deinit(&c->in);
	free(c->reason);
	free(c->server_name);
	free(c);
	close(fd);
	return NULL;
}

void conn_set_idle_timeout(struct conn *c, unsigned ms)
{
	if (c->idle_ms == ms)
		return;
	c->idle_ms = ms;
	if (!c->dead && !c->busy)
		arm_timer(c); /* inside a dispatch, act() re-arms */
}

bool conn_is_connected(const struct conn *c)
{
	return !c->connecting;
}

const char *conn_tls_verify_result(const struct conn *c)
{
	if (!c->ssl || c->handshaking)
		return NULL;
	long v = SSL_get_verify_result(c->ssl);
	if (v == X509_V_OK)
		return SSL_get0_peer_certificate(c->ssl) ? "ok" : "no certificate";
	return X509_verify_cert_error_string(v);
}

bool conn_is_tls(const struct conn *c)
{
	return c->ssl && !c->handshaking;
}

const char *conn_peer_addr(const struct conn *c)
{
	return c->peer;
}

int conn_peer_port(const struct conn *c)
{
	return c->peer_port;
}

unsigned conn_count(void)
{
	return nconns;
}

void conn_foreach(void (*cb)(struct conn *c, void *ctx), void *ctx)
{
	struct conn *next;
	for (struct conn *c = conns; c; c = next) {
		next = c->next;
		if (!c->dead)
			cb(c, ctx);
	}
}
