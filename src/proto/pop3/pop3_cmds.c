/* SPDX-License-Identifier: MIT */
/* The POP3 command table and handlers (RFC 1939, 2449, 2595, 5034).
 *
 * The dispatcher applies every rule the table can express before a handler
 * runs: the state the command is valid in, the argument count, and whether
 * it keeps a preceding USER (only PASS does: RFC 1939 7 "immediately after a
 * successful USER"). Handlers do the command's own work.
 *
 * Arguments are separated by one or more spaces (RFC 1939 3 says one; being
 * lenient costs nothing). USER and PASS take the rest of the line as one
 * argument, so passwords may contain spaces (RFC 1939 7, PASS discussion). */
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "auth/sasl_wire.h"
#include "base/util.h"
#include "proto/pop3/pop3_int.h"

enum pop3_cmd_flags {
	P3F_AUTH = 1 << 0,      /* valid in AUTHORIZATION */
	P3F_TRANS = 1 << 1,     /* valid in TRANSACTION */
	P3F_RAW = 1 << 2,       /* one argument: the rest of the line */
	P3F_KEEP_USER = 1 << 3, /* does not forget a preceding USER */
};

#define P3_MAX_ARGS 2

struct pop3_args {
	unsigned n;
	const char *p[P3_MAX_ARGS];
	size_t len[P3_MAX_ARGS];
};

typedef void pop3_cmd_fn(struct pop3_server *s, const struct pop3_args *a);

struct pop3_cmd {
	const char *name;
	pop3_cmd_fn *fn;
	unsigned flags;
	unsigned min_args, max_args;
};

int pop3_parse_number(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	if (n == 0 || n > 19)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* RFC 1939 3: a message-number argument; "-ERR" and false if it does not
 * name a message that is there and not marked deleted. */
static bool msg_arg(struct pop3_server *s, const char *cmd, const char *p, size_t n,
		    unsigned *idx_r)
{
	uint64_t v;
	if (pop3_parse_number(p, n, UINT32_MAX, &v) < 0) {
		pop3_refuse(s, cmd, true, NULL, "Invalid message number");
		return false;
	}
	if (v == 0 || v > s->nmsgs) {
		pop3_refuse(s, cmd, false, NULL, "No such message");
		return false;
	}
	if (s->deleted[v - 1]) {
		pop3_refuse(s, cmd, false, NULL, "Message %llu already deleted",
			    (unsigned long long)v);
		return false;
	}
	*idx_r = (unsigned)(v - 1);
	return true;
}

static bool has_ctl(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

/* ---- AUTHORIZATION ---------------------------------------------------------- */

static bool plaintext_refused(struct pop3_server *s, const char *cmd)
{
	if (pop3_plaintext_ok(s))
		return false;
	/* RFC 5034 4 / RFC 2595 3: a configuration that permits no plaintext
	 * passwords without TLS */
	pop3_refuse(s, cmd, true, "AUTH",
		    "Plaintext authentication disallowed on non-secure connections");
	return true;
}

static void cmd_user(struct pop3_server *s, const struct pop3_args *a)
{
	if (plaintext_refused(s, "USER"))
		return;
	size_t n = a->len[0];
	while (n > 0 && a->p[0][n - 1] == ' ')
		n--; /* unlike a password, a user name has no meaningful trailing space */
	if (n == 0 || has_ctl(a->p[0], n)) {
		pop3_refuse(s, "USER", true, NULL, "Invalid user name");
		return;
	}
	free(s->user);
	s->user = xstrndup(a->p[0], n);
	s->user_given = true;
	/* RFC 1939 7 allows saying whether the mailbox exists; we never do */
	pop3_ok(s, "Send your password");
}

static void cmd_pass(struct pop3_server *s, const struct pop3_args *a)
{
	if (!s->user_given) {
		pop3_refuse(s, "PASS", true, NULL, "Send USER first");
		return;
	}
	s->user_given = false;
	if (plaintext_refused(s, "PASS"))
		return;
	char *pw = xstrndup(a->p[0], a->len[0]);
	free(s->login_user);
	s->login_user = xstrdup(s->user);
	enum pop3_verdict v = s->ops->login(s->ctx, s, "USER", s->login_user, pw);
	memset(pw, 0, a->len[0]);
	free(pw);
	pop3_verdict(s, P3_PEND_LOGIN, v);
}

static void cmd_apop(struct pop3_server *s, const struct pop3_args *a)
{
	if (!s->set.apop) {
		pop3_refuse(s, "APOP", true, NULL, "APOP not available");
		return;
	}
	char digest[33];
	if (a->len[1] != 32) {
		pop3_refuse(s, "APOP", true, NULL, "Invalid digest");
		return;
	}
	for (size_t i = 0; i < 32; i++) {
		char c = ascii_tolower(a->p[1][i]);
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			pop3_refuse(s, "APOP", true, NULL, "Invalid digest");
			return;
		}
		digest[i] = c;
	}
	digest[32] = '\0';
	if (has_ctl(a->p[0], a->len[0])) {
		pop3_refuse(s, "APOP", true, NULL, "Invalid user name");
		return;
	}
	free(s->login_user);
	s->login_user = xstrndup(a->p[0], a->len[0]);
	pop3_verdict(s, P3_PEND_LOGIN,
		     s->ops->apop(s->ctx, s, s->login_user, s->timestamp, digest));
}

/* ---- AUTH (RFC 5034) ----------------------------------------------------------- */

static bool mech_plaintext(const char *m)
{
	return ascii_strcasecmp(m, "PLAIN") == 0 || ascii_strcasecmp(m, "LOGIN") == 0;
}

static bool mech_offered(const struct pop3_server *s, const char *m)
{
	if (!sasl_mech_supported(m))
		return false;
	if (ascii_strcasecmp(m, "SCRAM-SHA-256") == 0)
		return s->ops->scram_creds != NULL;
	return true;
}

/* sasl callbacks: PLAIN/LOGIN passwords are only recorded here and checked
 * by the app's login() once the exchange is complete, so that check may be
 * PENDING (a job thread); sasl.c returns OK exactly when this returns true
 * (the authzid rule is checked before it is called). */
static bool cb_verify(void *ctx, const char *authcid, const char *password)
{
	struct pop3_server *s = ctx;
	free(s->sasl_user);
	s->sasl_user = xstrdup(authcid);
	sasl_wire_set_secret(&s->sasl_pass, password);
	return true;
}

static bool cb_scram(void *ctx, const char *authcid, struct scram_creds *c)
{
	struct pop3_server *s = ctx;
	return s->ops->scram_creds(s->ctx, authcid, c);
}

static const struct sasl_callbacks pop3_sasl_cb = { cb_verify, cb_scram };

void pop3_sasl_end(struct pop3_server *s)
{
	sasl_free(&s->sasl);
	s->in_sasl = s->sasl_final = s->sasl_had_input = false;
	if (s->sasl_in.data)
		memset(s->sasl_in.data, 0, s->sasl_in.len);
	buf_deinit(&s->sasl_in);
	free(s->sasl_mech);
	s->sasl_mech = NULL;
	free(s->sasl_user);
	s->sasl_user = NULL;
	free(s->sasl_claimed);
	s->sasl_claimed = NULL;
	sasl_wire_set_secret(&s->sasl_pass, NULL);
}

/* Let the app see the end of an exchange the engine judged itself (so it
 * can log it and slow failures down), then finish it as a login. */
static void sasl_done(struct pop3_server *s, bool ok)
{
	const char *who = ok ? s->sasl_user : (s->sasl_user ? s->sasl_user : s->sasl_claimed);
	char *user = xstrdup(who ? who : "");
	char *mech = xstrdup(s->sasl_mech);
	pop3_sasl_end(s);
	free(s->login_user);
	s->login_user = user;
	s->login_denied = !ok;
	enum pop3_verdict v = s->ops->sasl_done(s->ctx, s, mech, user, ok);
	free(mech);
	pop3_verdict(s, P3_PEND_LOGIN, v);
}

static void challenge(struct pop3_server *s, const uint8_t *p, size_t n)
{
	/* RFC 5034 4: "+" SP base64; an empty challenge is "+ " */
	sasl_wire_challenge(&s->out, "+ ", p, n);
}

/* Bad credentials count as a failed login; a malformed exchange (bad
 * base64, SASL grammar) as a protocol error. */
static void sasl_failed(struct pop3_server *s, bool credentials, const char *text)
{
	pop3_sasl_end(s);
	pop3_refuse(s, "AUTH", !credentials, credentials ? "AUTH" : NULL, "%s", text);
	if (credentials)
		pop3_auth_failed(s);
}

char *pop3_scram_username(const uint8_t *p, size_t n)
{
	return sasl_wire_scram_username(p, n);
}

static void auth_step(struct pop3_server *s, const uint8_t *in, size_t n, bool has_input)
{
	if (has_input && !s->sasl_had_input) {
		s->sasl_had_input = true;
		if (ascii_strcasecmp(s->sasl_mech, "SCRAM-SHA-256") == 0) {
			free(s->sasl_claimed);
			s->sasl_claimed = pop3_scram_username(in, n);
		}
		char *user = NULL;
		if (s->ops->scram_prepare && ascii_strcasecmp(s->sasl_mech, "SCRAM-SHA-256") == 0 &&
		    (user = pop3_scram_username(in, n)) != NULL) {
			/* look the credentials up first (maybe on a job thread);
			 * sasl_step runs when that is done */
			buf_clear(&s->sasl_in);
			buf_xappend(&s->sasl_in, in, n);
			enum pop3_verdict v = s->ops->scram_prepare(s->ctx, s, user);
			free(user);
			pop3_verdict(s, P3_PEND_SCRAM, v);
			return;
		}
	}
	const uint8_t *out = NULL;
	size_t outlen = 0;
	enum sasl_result r = sasl_step(s->sasl, in, n, has_input, &out, &outlen);
	switch (r) {
	case SASL_CONTINUE:
		challenge(s, out, outlen);
		s->in_sasl = true;
		return;
	case SASL_OK:
		if (!mech_plaintext(s->sasl_mech)) {
			/* RFC 5034 4 / RFC 4422 3.6: no data with +OK, so SCRAM's
			 * server-final goes out as a challenge answered by "" */
			free(s->sasl_user);
			s->sasl_user = xstrdup(sasl_authcid(s->sasl));
			challenge(s, out, outlen);
			s->in_sasl = true;
			s->sasl_final = true;
			return;
		}
		{
			ASSERT(s->sasl_user && s->sasl_pass);
			char *mech = xstrdup(s->sasl_mech);
			free(s->login_user);
			s->login_user = s->sasl_user;
			s->sasl_user = NULL;
			char *pw = s->sasl_pass;
			s->sasl_pass = NULL;
			pop3_sasl_end(s);
			enum pop3_verdict v = s->ops->login(s->ctx, s, mech, s->login_user, pw);
			memset(pw, 0, strlen(pw));
			free(pw);
			free(mech);
			pop3_verdict(s, P3_PEND_LOGIN, v);
		}
		return;
	case SASL_FAIL:
		if (s->ops->sasl_done) {
			sasl_done(s, false);
			return;
		}
		sasl_failed(s, true, "Authentication failed");
		return;
	case SASL_BAD:
		sasl_failed(s, false, "Invalid authentication exchange");
		return;
	}
}

void pop3_sasl_continue(struct pop3_server *s)
{
	ASSERT(s->sasl != NULL);
	struct buf in = s->sasl_in;
	buf_init(&s->sasl_in, 0);
	auth_step(s, in.data, in.len, true);
	if (in.data)
		memset(in.data, 0, in.len);
	buf_deinit(&in);
}

void pop3_sasl_line(struct pop3_server *s, const char *l, size_t len)
{
	uint8_t *dec = NULL;
	size_t declen = 0;
	enum sasl_wire_kind k = sasl_wire_decode(l, len, false, &dec, &declen);
	if (k == SASL_WIRE_CANCEL) {
		/* RFC 5034 4: the client cancels; MUST reject with -ERR */
		pop3_sasl_end(s);
		pop3_refuse(s, "AUTH", false, NULL, "Authentication cancelled");
		return;
	}
	if (s->sasl_final) {
		sasl_wire_free(dec, declen);
		if (len != 0) {
			sasl_failed(s, true, "Authentication failed");
			return;
		}
		if (s->ops->sasl_done) {
			sasl_done(s, true);
			return;
		}
		char *u = xstrdup(s->sasl_user);
		pop3_sasl_end(s);
		pop3_auth_ok(s, u);
		free(u);
		return;
	}
	if (k != SASL_WIRE_DATA) {
		sasl_failed(s, false, "Invalid base64 data");
		return;
	}
	auth_step(s, dec, declen, true);
	sasl_wire_free(dec, declen);
}

static void cmd_auth(struct pop3_server *s, const struct pop3_args *a)
{
	if (a->n == 0) {
		/* RFC 1734's listing form, still sent by some clients */
		pop3_ok(s, "Supported mechanisms follow");
		for (size_t i = 0; sasl_mechanisms[i]; i++) {
			const char *m = sasl_mechanisms[i];
			if (mech_offered(s, m) && (!mech_plaintext(m) || pop3_plaintext_ok(s)))
				buf_xprintf(&s->out, "%s\r\n", m);
		}
		buf_xappend(&s->out, ".\r\n", 3);
		return;
	}
	char *mech = xstrndup(a->p[0], a->len[0]);
	if (!mech_offered(s, mech)) {
		pop3_refuse(s, "AUTH", true, NULL, "Unsupported authentication mechanism");
		free(mech);
		return;
	}
	if (mech_plaintext(mech) && plaintext_refused(s, "AUTH")) {
		free(mech);
		return;
	}
	s->sasl = sasl_new(mech, &pop3_sasl_cb, s);
	ASSERT(s->sasl != NULL);
	s->sasl_mech = mech;
	for (char *c = s->sasl_mech; *c; c++)
		*c = ascii_toupper(*c);
	if (a->n < 2) {
		auth_step(s, NULL, 0, false);
		return;
	}
	/* RFC 5034 4: "=" is an empty initial response (sasl_wire) */
	uint8_t *dec = NULL;
	size_t declen = 0;
	if (sasl_wire_decode(a->p[1], a->len[1], true, &dec, &declen) != SASL_WIRE_DATA) {
		sasl_failed(s, false, "Invalid base64 data");
		return;
	}
	auth_step(s, dec, declen, true);
	sasl_wire_free(dec, declen);
}

static void cmd_stls(struct pop3_server *s, const struct pop3_args *a)
{
	(void)a;
	if (s->tls) {
		pop3_refuse(s, "STLS", true, NULL, "Command not permitted when TLS active");
		return;
	}
	if (!s->set.stls_offered) {
		pop3_refuse(s, "STLS", true, NULL, "TLS not available");
		return;
	}
	/* RFC 2595 4: after +OK the client starts the handshake; whatever it
	 * pipelined in plaintext is discarded (pop3_server_feed). */
	pop3_ok(s, "Begin TLS negotiation");
	free(s->user);
	s->user = NULL;
	s->user_given = false;
	s->state = P3_ST_TLS_WAIT;
}

/* ---- both states ----------------------------------------------------------- */

static void cmd_capa(struct pop3_server *s, const struct pop3_args *a)
{
	(void)a;
	/* RFC 2449 5: AUTHORIZATION capabilities are announced in both states */
	pop3_ok(s, "Capability list follows");
	buf_xappend(&s->out, "TOP\r\nUIDL\r\n", 11);
	bool plain = pop3_plaintext_ok(s);
	if (plain)
		buf_xappend(&s->out, "USER\r\n", 6);
	struct buf mechs = BUF_INIT(0);
	for (size_t i = 0; sasl_mechanisms[i]; i++) {
		const char *m = sasl_mechanisms[i];
		if (mech_offered(s, m) && (!mech_plaintext(m) || plain))
			buf_xprintf(&mechs, " %s", m);
	}
	if (mechs.len)
		buf_xprintf(&s->out, "SASL%s\r\n", buf_cstr(&mechs));
	buf_deinit(&mechs);
	if (s->set.stls_offered && !s->tls)
		buf_xappend(&s->out, "STLS\r\n", 6);
	buf_xprintf(&s->out,
		    "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n"
		    "IMPLEMENTATION %s\r\n.\r\n",
		    s->set.implementation);
}

static void cmd_quit(struct pop3_server *s, const struct pop3_args *a)
{
	(void)a;
	if (s->state == P3_ST_AUTH) {
		pop3_ok(s, "%s POP3 server signing off", s->set.hostname);
		pop3_close(s);
		return;
	}
	/* RFC 1939 6: the UPDATE state */
	s->state = P3_ST_UPDATE;
	size_t n = 0;
	for (unsigned i = 0; i < s->nmsgs; i++)
		n += s->deleted[i] ? 1 : 0;
	if (n == 0) {
		pop3_verdict(s, P3_PEND_COMMIT, POP3_OK);
		return;
	}
	unsigned *idx = xcalloc(n, sizeof *idx);
	size_t k = 0;
	for (unsigned i = 0; i < s->nmsgs; i++)
		if (s->deleted[i])
			idx[k++] = i;
	enum pop3_verdict v = s->ops->commit(s->ctx, s, idx, n);
	free(idx);
	pop3_verdict(s, P3_PEND_COMMIT, v);
}

/* ---- TRANSACTION --------------------------------------------------------------- */

static void cmd_stat(struct pop3_server *s, const struct pop3_args *a)
{
	(void)a;
	unsigned n;
	uint64_t o;
	pop3_maildrop_stat(s, &n, &o);
	pop3_ok(s, "%u %llu", n, (unsigned long long)o);
}

static void cmd_list(struct pop3_server *s, const struct pop3_args *a)
{
	unsigned idx;
	if (a->n == 1) {
		if (msg_arg(s, "LIST", a->p[0], a->len[0], &idx))
			pop3_ok(s, "%u %llu", idx + 1, (unsigned long long)s->sizes[idx]);
		return;
	}
	unsigned n;
	uint64_t o;
	pop3_maildrop_stat(s, &n, &o);
	pop3_ok(s, "%u message%s (%llu octets)", n, n == 1 ? "" : "s", (unsigned long long)o);
	pop3_stream_begin(s, P3_STREAM_LIST);
}

static void cmd_uidl(struct pop3_server *s, const struct pop3_args *a)
{
	unsigned idx;
	if (a->n == 1) {
		if (msg_arg(s, "UIDL", a->p[0], a->len[0], &idx)) {
			struct pop3_msg_info mi = { 0, NULL };
			s->ops->msg_info(s->ctx, s, idx, &mi);
			pop3_ok(s, "%u %s", idx + 1, mi.uidl ? mi.uidl : "");
		}
		return;
	}
	pop3_ok(s, "Unique-ID listing follows");
	pop3_stream_begin(s, P3_STREAM_UIDL);
}

static void start_msg(struct pop3_server *s, unsigned idx, bool top, uint64_t lines)
{
	s->msg_idx = idx;
	s->body_top = top;
	s->top_left = lines;
	pop3_verdict(s, P3_PEND_MSG, s->ops->msg_open(s->ctx, s, idx));
}

static void cmd_retr(struct pop3_server *s, const struct pop3_args *a)
{
	unsigned idx;
	if (msg_arg(s, "RETR", a->p[0], a->len[0], &idx))
		start_msg(s, idx, false, 0);
}

static void cmd_top(struct pop3_server *s, const struct pop3_args *a)
{
	unsigned idx;
	uint64_t lines;
	/* RFC 1939 7: n must be non-negative */
	if (pop3_parse_number(a->p[1], a->len[1], UINT64_MAX, &lines) < 0) {
		pop3_refuse(s, "TOP", true, NULL, "Invalid number of lines");
		return;
	}
	if (msg_arg(s, "TOP", a->p[0], a->len[0], &idx))
		start_msg(s, idx, true, lines);
}

static void cmd_dele(struct pop3_server *s, const struct pop3_args *a)
{
	unsigned idx;
	if (!msg_arg(s, "DELE", a->p[0], a->len[0], &idx))
		return;
	s->deleted[idx] = 1;
	pop3_ok(s, "Message %u deleted", idx + 1);
}

static void cmd_noop(struct pop3_server *s, const struct pop3_args *a)
{
	(void)a;
	buf_xappend(&s->out, "+OK\r\n", 5);
}

static void cmd_rset(struct pop3_server *s, const struct pop3_args *a)
{
	(void)a;
	memset(s->deleted, 0, s->nmsgs);
	unsigned n;
	uint64_t o;
	pop3_maildrop_stat(s, &n, &o);
	pop3_ok(s, "Maildrop has %u message%s (%llu octets)", n, n == 1 ? "" : "s",
		(unsigned long long)o);
}

/* RFC 1939 4-7, RFC 2449 5, RFC 2595 4, RFC 5034 4. */
static const struct pop3_cmd pop3_cmds[] = {
	/* name    handler    flags                                    args */
	{ "USER", cmd_user, P3F_AUTH | P3F_RAW, 1, 1 },
	{ "PASS", cmd_pass, P3F_AUTH | P3F_RAW | P3F_KEEP_USER, 1, 1 },
	{ "APOP", cmd_apop, P3F_AUTH, 2, 2 },
	{ "AUTH", cmd_auth, P3F_AUTH, 0, 2 },
	{ "STLS", cmd_stls, P3F_AUTH, 0, 0 },
	{ "CAPA", cmd_capa, P3F_AUTH | P3F_TRANS, 0, 0 },
	{ "QUIT", cmd_quit, P3F_AUTH | P3F_TRANS, 0, 0 },
	{ "STAT", cmd_stat, P3F_TRANS, 0, 0 },
	{ "LIST", cmd_list, P3F_TRANS, 0, 1 },
	{ "RETR", cmd_retr, P3F_TRANS, 1, 1 },
	{ "DELE", cmd_dele, P3F_TRANS, 1, 1 },
	{ "NOOP", cmd_noop, P3F_TRANS, 0, 0 },
	{ "RSET", cmd_rset, P3F_TRANS, 0, 0 },
	{ "TOP", cmd_top, P3F_TRANS, 2, 2 },
	{ "UIDL", cmd_uidl, P3F_TRANS, 0, 1 },
};

static const struct pop3_cmd *lookup(const char *p, size_t n)
{
	for (size_t i = 0; i < N_ELEMENTS(pop3_cmds); i++) {
		const char *name = pop3_cmds[i].name;
		if (strlen(name) == n && ascii_strncasecmp(p, name, n) == 0)
			return &pop3_cmds[i];
	}
	return NULL;
}

void pop3_cmd_dispatch(struct pop3_server *s, const char *l, size_t len)
{
	size_t kw = 0;
	while (kw < len && l[kw] != ' ')
		kw++;
	const struct pop3_cmd *c = lookup(l, kw);
	if (!(c && (c->flags & P3F_KEEP_USER)))
		s->user_given = false;
	if (!c) {
		pop3_refuse(s, "-", true, NULL, "Unknown command");
		return;
	}
	unsigned need = s->state == P3_ST_AUTH ? P3F_AUTH : P3F_TRANS;
	if (!(c->flags & need)) {
		pop3_refuse(s, c->name, true, NULL, "Command not valid in this state");
		return;
	}
	struct pop3_args a = { 0, { NULL, NULL }, { 0, 0 } };
	const char *p = l + kw, *end = l + len;
	if (c->flags & P3F_RAW) {
		if (p < end)
			p++; /* the one separating space */
		if (p < end) {
			a.n = 1;
			a.p[0] = p;
			a.len[0] = (size_t)(end - p);
		}
	} else {
		for (;;) {
			while (p < end && *p == ' ')
				p++;
			if (p == end)
				break;
			const char *e = memchr(p, ' ', (size_t)(end - p));
			if (!e)
				e = end;
			if (a.n == c->max_args) {
				pop3_refuse(s, c->name, true, NULL, "Too many arguments");
				return;
			}
			a.p[a.n] = p;
			a.len[a.n] = (size_t)(e - p);
			a.n++;
			p = e;
		}
	}
	if (a.n < c->min_args) {
		pop3_refuse(s, c->name, true, NULL, "Missing argument");
		return;
	}
	c->fn(s, &a);
}
