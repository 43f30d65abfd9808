/* SPDX-License-Identifier: MIT */
/* SASL server mechanisms as small state machines over decoded client
 * messages: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login-00) and
 * SCRAM-SHA-256 (RFC 5802, RFC 7677). No I/O and no base64 framing here; the
 * protocol engines do that and call the credential callbacks on a job thread.
 *
 * Results: SASL_BAD is a grammar or sequencing error, SASL_FAIL a credential
 * (or identity) mismatch. Every client message is limited to SASL_MAX_INPUT
 * octets. Secrets (passwords, keys) are wiped before their memory is freed.
 *
 * SCRAM notes:
 *  - We offer no SCRAM-SHA-256-PLUS, so a client-first with "p=" channel
 *    binding is SASL_BAD; "n" and "y" are accepted (RFC 5802 6).
 *  - The c= of client-final must be the base64 of the gs2 header the client
 *    sent ("biws" for "n,,", "eSws" for "y,,"), and r= the full nonce; a
 *    mismatch is SASL_FAIL.
 *  - An unknown user (or one without SCRAM keys) still gets a server-first
 *    whose salt is HMAC(per-process random key, username), so salts do not
 *    reveal which users exist; the exchange then fails after client-final.
 *  - Usernames and passwords are not SASLprep'd (RFC 4013): they are compared
 *    as UTF-8 octets. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/accounts.h"
#include "auth/sasl.h"
#include "base/buf.h"
#include "base/util.h"

#define SASL_MAX_INPUT 8192
#define SCRAM_NONCE_RAW 24   /* random octets in our nonce part (32 base64 chars) */
#define SCRAM_FAKE_SALT 16
#define SCRAM_FAKE_ITER 4096

const char *const sasl_mechanisms[] = { "PLAIN", "LOGIN", "SCRAM-SHA-256", NULL };

enum sasl_mech { MECH_PLAIN, MECH_LOGIN, MECH_SCRAM };

enum sasl_state {
	ST_START,       /* nothing received yet */
	ST_WAIT_FIRST,  /* sent an empty challenge: the next message is the first */
	ST_LOGIN_USER,  /* sent "Username:" */
	ST_LOGIN_PASS,  /* sent "Password:" */
	ST_SCRAM_FINAL, /* sent server-first, waiting for client-final */
	ST_DONE,        /* OK, FAIL or BAD returned */
};

struct sasl {
	enum sasl_mech mech;
	enum sasl_state state;
	struct sasl_callbacks cb;
	void *ctx;
	struct buf out;
	char *authcid;
	bool ok;
	/* SCRAM */
	char *fixed_nonce; /* test hook */
	char *gs2_header;
	size_t gs2_len;
	char *first_bare;   /* client-first-message-bare */
	char *server_first; /* server-first-message */
	char *nonce;        /* client nonce + server nonce */
	struct scram_creds creds;
	bool creds_real;
};

bool sasl_mech_supported(const char *name)
{
	for (size_t i = 0; sasl_mechanisms[i]; i++)
		if (ascii_strcasecmp(name, sasl_mechanisms[i]) == 0)
			return true;
	return false;
}

struct sasl *sasl_new(const char *mech, const struct sasl_callbacks *cb, void *ctx)
{
	ASSERT(cb != NULL);
	enum sasl_mech m;
	if (ascii_strcasecmp(mech, "PLAIN") == 0 && cb->verify_password)
		m = MECH_PLAIN;
	else if (ascii_strcasecmp(mech, "LOGIN") == 0 && cb->verify_password)
		m = MECH_LOGIN;
	else if (ascii_strcasecmp(mech, "SCRAM-SHA-256") == 0 && cb->scram_creds)
		m = MECH_SCRAM;
	else
		return NULL;
	struct sasl *s = xcalloc(1, sizeof(*s));
	s->mech = m;
	s->state = ST_START;
	s->cb = *cb;
	s->ctx = ctx;
	buf_init(&s->out, 0); /* only server-generated data goes there */
	return s;
}

static void free_secret(char *p)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, strlen(p));
	free(p);
}

void sasl_free(struct sasl **sp)
{
	struct sasl *s = *sp;
	if (!s)
		return;
	if (s->out.data)
		OPENSSL_cleanse(s->out.data, s->out.len);
	buf_deinit(&s->out);
	free(s->authcid);
	free(s->fixed_nonce);
	free(s->gs2_header);
	free(s->first_bare);
	free(s->server_first);
	free(s->nonce);
	OPENSSL_cleanse(&s->creds, sizeof(s->creds));
	free(s);
	*sp = NULL;
}

const char *sasl_authcid(const struct sasl *s)
{
	return s->ok ? s->authcid : NULL;
}

void sasl_scram_set_nonce_for_test(struct sasl *s, const char *server_nonce)
{
	ASSERT(s->mech == MECH_SCRAM && s->state == ST_START);
	for (const char *p = server_nonce; *p; p++)
		ASSERT(*p >= 0x21 && *p <= 0x7e && *p != ',');
	free(s->fixed_nonce);
	s->fixed_nonce = xstrdup(server_nonce);
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static void set_out(struct sasl *s, const void *p, size_t n)
{
	if (s->out.data)
		OPENSSL_cleanse(s->out.data, s->out.len);
	buf_clear(&s->out);
	buf_xappend(&s->out, p, n);
}

static enum sasl_result finish(struct sasl *s, enum sasl_result r)
{
	s->state = ST_DONE;
	s->ok = r == SASL_OK;
	if (r != SASL_OK)
		set_out(s, "", 0);
	return r;
}

static bool check_password(struct sasl *s, const uint8_t *pw, size_t pwlen)
{
	char *pass = xstrndup((const char *)pw, pwlen);
	bool ok = s->cb.verify_password(s->ctx, s->authcid, pass);
	free_secret(pass);
	return ok;
}

/* ---- PLAIN (RFC 4616 2): message = [authzid] UTF8NUL authcid UTF8NUL passwd ---- */

static enum sasl_result plain_step(struct sasl *s, const uint8_t *in, size_t n)
{
	const uint8_t *nul1 = memchr(in, 0, n);
	if (!nul1)
		return finish(s, SASL_BAD);
	const uint8_t *id = nul1 + 1;
	const uint8_t *nul2 = memchr(id, 0, n - (size_t)(id - in));
	if (!nul2)
		return finish(s, SASL_BAD);
	const uint8_t *pw = nul2 + 1;
	size_t zlen = (size_t)(nul1 - in), idlen = (size_t)(nul2 - id);
	size_t pwlen = n - (size_t)(pw - in);
	/* authcid and passwd are 1*SAFE: non-empty, no further NUL, valid UTF-8 */
	if (idlen == 0 || pwlen == 0 || memchr(pw, 0, pwlen) || !utf8_valid(in, zlen) ||
	    !utf8_valid(id, idlen) || !utf8_valid(pw, pwlen))
		return finish(s, SASL_BAD);
	s->authcid = xstrndup((const char *)id, idlen);
	/* We only let users act as themselves (addresses ignore ASCII case). */
	if (zlen > 0 && (zlen != idlen || ascii_strncasecmp((const char *)in, s->authcid, zlen)))
		return finish(s, SASL_FAIL);
	return finish(s, check_password(s, pw, pwlen) ? SASL_OK : SASL_FAIL);
}

/* ---- LOGIN: "Username:" / "Password:" challenges, the username may come as the
 * initial response. Not UTF-8-checked (old clients send legacy charsets). ---- */

static enum sasl_result login_step(struct sasl *s, const uint8_t *in, size_t n)
{
	if (s->state == ST_LOGIN_PASS) {
		if (memchr(in, 0, n))
			return finish(s, SASL_BAD);
		if (n == 0) /* no account has an empty password */
			return finish(s, SASL_FAIL);
		return finish(s, check_password(s, in, n) ? SASL_OK : SASL_FAIL);
	}
	/* ST_START with an initial response, or ST_LOGIN_USER */
	if (n == 0 || memchr(in, 0, n))
		return finish(s, SASL_BAD);
	s->authcid = xstrndup((const char *)in, n);
	s->state = ST_LOGIN_PASS;
	set_out(s, "Password:", 9);
	return SASL_CONTINUE;
}

/* ---- SCRAM-SHA-256 (RFC 5802 5 and 7, RFC 7677) ---- */

static uint8_t fake_key[32];
static pthread_once_t fake_once = PTHREAD_ONCE_INIT;

static void fake_key_init(void)
{
	random_bytes(fake_key, sizeof(fake_key));
}

static void hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len,
			uint8_t out[32])
{
	unsigned outlen = 0;
	if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) || outlen != 32)
		panic("HMAC-SHA-256 failed");
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned outlen = 0;
	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1 || outlen != 32)
		panic("SHA-256 failed");
}

/* saslname = 1*(value-safe-char / "=2C" / "=3D") (RFC 5802 7). Decodes
 * [p, end) into a malloc'd string; NULL if malformed (bad escape, empty). */
static char *saslname_decode(const char *p, size_t n)
{
	if (n == 0)
		return NULL;
	char *out = xmalloc(n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '=') {
			if (n - i >= 3 && p[i + 1] == '2' && p[i + 2] == 'C')
				out[o++] = ',';
			else if (n - i >= 3 && p[i + 1] == '3' && p[i + 2] == 'D')
				out[o++] = '=';
			else
				goto bad;
			i += 2;
		} else if (p[i] == ',' || p[i] == '\0') {
			goto bad;
		} else {
			out[o++] = p[i];
		}
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* Length of the attribute value starting at p (up to ',' or end). */
static size_t attr_len(const char *p, const char *end)
{
	const char *c = memchr(p, ',', (size_t)(end - p));
	return c ? (size_t)(c - p) : (size_t)(end - p);
}

/* extensions = attr-val *("," attr-val); attr-val = ALPHA "=" value (RFC 5802 7).
 * [p, end) is the text after a ',' separator, or empty. */
static bool extensions_valid(const char *p, const char *end)
{
	while (p < end) {
		size_t l = attr_len(p, end);
		char a = p[0];
		if (l < 3 || !((a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z')) || p[1] != '=')
			return false;
		p += l;
		if (p < end) {
			p++; /* ',' */
			if (p == end)
				return false; /* trailing comma */
		}
	}
	return true;
}

static bool nonce_valid(const char *p, size_t n)
{
	/* printable = %x21-2B / %x2D-7E */
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
			return false;
	return true;
}

static enum sasl_result scram_first(struct sasl *s, const uint8_t *in, size_t n)
{
	const char *p = (const char *)in, *end = p + n;
	if (memchr(in, 0, n) || !utf8_valid(in, n) || n < 3)
		return finish(s, SASL_BAD);
	/* gs2-cbind-flag: "p=" means the client wants channel binding, which
	 * only -PLUS mechanisms (that we don't offer) provide. */
	if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',')
		return finish(s, SASL_BAD);
	const char *q = p + 2;
	char *authzid = NULL;
	if (q < end && *q != ',') {
		size_t l = attr_len(q, end);
		if (l < 2 || q[0] != 'a' || q[1] != '=' || q + l == end)
			return finish(s, SASL_BAD);
		authzid = saslname_decode(q + 2, l - 2);
		if (!authzid)
			return finish(s, SASL_BAD);
		q += l;
	}
	if (q == end || *q != ',') {
		free(authzid);
		return finish(s, SASL_BAD);
	}
	q++;
	s->gs2_len = (size_t)(q - p);
	s->gs2_header = xstrndup(p, s->gs2_len);
	const char *bare = q;
	/* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions];
	 * RFC 5802 5.1: an "m" extension we don't understand MUST fail. */
	size_t l = attr_len(q, end);
	if (l < 2 || q[0] != 'n' || q[1] != '=')
		goto bad;
	char *user = saslname_decode(q + 2, l - 2);
	if (!user)
		goto bad;
	s->authcid = user;
	q += l;
	if (end - q < 3 || q[0] != ',' || q[1] != 'r' || q[2] != '=')
		goto bad;
	q += 3;
	const char *cnonce = q;
	size_t cnlen = attr_len(q, end);
	if (!nonce_valid(cnonce, cnlen))
		goto bad;
	q += cnlen;
	if (q < end && (q + 1 == end || !extensions_valid(q + 1, end)))
		goto bad;
	if (authzid && ascii_strcasecmp(authzid, s->authcid) != 0) {
		free(authzid);
		return finish(s, SASL_FAIL);
	}
	free(authzid);
	authzid = NULL;
	s->first_bare = xstrndup(bare, (size_t)(end - bare));

	/* Credentials, or a plausible fake for unknown users. */
	memset(&s->creds, 0, sizeof(s->creds));
	s->creds_real = s->cb.scram_creds(s->ctx, s->authcid, &s->creds) &&
			s->creds.salt_len > 0 && s->creds.salt_len <= sizeof(s->creds.salt) &&
			s->creds.iterations >= 1;
	if (!s->creds_real) {
		pthread_once(&fake_once, fake_key_init);
		uint8_t mac[32];
		hmac_sha256(fake_key, sizeof(fake_key), s->authcid, strlen(s->authcid), mac);
		memcpy(s->creds.salt, mac, SCRAM_FAKE_SALT);
		s->creds.salt_len = SCRAM_FAKE_SALT;
		s->creds.iterations = SCRAM_FAKE_ITER;
		random_bytes(s->creds.stored_key, sizeof(s->creds.stored_key));
		random_bytes(s->creds.server_key, sizeof(s->creds.server_key));
	}

	char *snonce;
	if (s->fixed_nonce) {
		snonce = xstrdup(s->fixed_nonce);
	} else {
		uint8_t raw[SCRAM_NONCE_RAW];
		random_bytes(raw, sizeof(raw));
		snonce = base64_encode(raw, sizeof(raw));
	}
	s->nonce = xasprintf("%.*s%s", (int)cnlen, cnonce, snonce);
	free(snonce);
	char *salt64 = base64_encode(s->creds.salt, s->creds.salt_len);
	s->server_first = xasprintf("r=%s,s=%s,i=%u", s->nonce, salt64, s->creds.iterations);
	free(salt64);
	set_out(s, s->server_first, strlen(s->server_first));
	s->state = ST_SCRAM_FINAL;
	return SASL_CONTINUE;
bad:
	free(authzid);
	return finish(s, SASL_BAD);
}

static enum sasl_result scram_final(struct sasl *s, const uint8_t *in, size_t n)
{
	const char *p = (const char *)in, *end = p + n;
	if (memchr(in, 0, n) || !utf8_valid(in, n))
		return finish(s, SASL_BAD);
	/* client-final-message = client-final-message-without-proof "," proof;
	 * the proof is base64, so the last ',' separates it. */
	const char *comma = memrchr(p, ',', n);
	if (!comma || end - comma < 3 || comma[1] != 'p' || comma[2] != '=')
		return finish(s, SASL_BAD);
	size_t wplen = (size_t)(comma - p);
	/* channel-binding "," nonce ["," extensions] */
	size_t l = attr_len(p, comma);
	if (l < 2 || p[0] != 'c' || p[1] != '=')
		return finish(s, SASL_BAD);
	uint8_t *cb = NULL, *proof = NULL;
	size_t cblen = 0, prooflen = 0;
	if (base64_decode(p + 2, l - 2, &cb, &cblen) < 0)
		return finish(s, SASL_BAD);
	bool cb_ok = cblen == s->gs2_len && memcmp(cb, s->gs2_header, cblen) == 0;
	free(cb);
	const char *q = p + l;
	if (comma - q < 3 || q[0] != ',' || q[1] != 'r' || q[2] != '=')
		return finish(s, SASL_BAD);
	q += 3;
	size_t nlen = attr_len(q, comma);
	bool nonce_ok = nlen == strlen(s->nonce) && memcmp(q, s->nonce, nlen) == 0;
	q += nlen;
	if (q < comma && (q + 1 == comma || !extensions_valid(q + 1, comma)))
		return finish(s, SASL_BAD);
	if (base64_decode(comma + 3, (size_t)(end - comma - 3), &proof, &prooflen) < 0)
		return finish(s, SASL_BAD);
	if (prooflen != 32) {
		free(proof);
		return finish(s, SASL_BAD);
	}

	/* AuthMessage = client-first-message-bare "," server-first-message ","
	 *               client-final-message-without-proof  (RFC 5802 3) */
	struct buf am = BUF_INIT(0);
	buf_xprintf(&am, "%s,%s,%.*s", s->first_bare, s->server_first, (int)wplen, p);
	uint8_t sig[32], client_key[32], stored[32];
	hmac_sha256(s->creds.stored_key, 32, am.data, am.len, sig);
	for (size_t i = 0; i < 32; i++)
		client_key[i] = proof[i] ^ sig[i];
	free(proof);
	sha256(client_key, sizeof(client_key), stored);
	bool key_ok = CRYPTO_memcmp(stored, s->creds.stored_key, 32) == 0;
	enum sasl_result r = SASL_FAIL;
	if (key_ok && s->creds_real && cb_ok && nonce_ok) {
		uint8_t ssig[32];
		hmac_sha256(s->creds.server_key, 32, am.data, am.len, ssig);
		char *v = base64_encode(ssig, sizeof(ssig));
		set_out(s, "v=", 2);
		buf_xappend(&s->out, v, strlen(v));
		free(v);
		r = SASL_OK;
	}
	OPENSSL_cleanse(client_key, sizeof(client_key));
	buf_deinit(&am);
	return finish(s, r);
}

enum sasl_result sasl_step(struct sasl *s, const uint8_t *in, size_t inlen, bool has_input,
			   const uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (s->state == ST_DONE)
		return SASL_BAD;
	if (!has_input) {
		if (s->state == ST_START) {
			/* RFC 4422 5: no initial response, send an empty (or LOGIN's) challenge */
			if (s->mech == MECH_LOGIN) {
				s->state = ST_LOGIN_USER;
				set_out(s, "Username:", 9);
			} else {
				s->state = ST_WAIT_FIRST;
				set_out(s, "", 0);
			}
			*out = s->out.data ? s->out.data : (const uint8_t *)"";
			*outlen = s->out.len;
			return SASL_CONTINUE;
		}
		inlen = 0;
	}
	if (!in || inlen == 0) {
		in = (const uint8_t *)""; /* an empty message (e.g. "=" on the wire) */
		inlen = 0;
	}
	if (inlen > SASL_MAX_INPUT)
		return finish(s, SASL_BAD);
	enum sasl_result r;
	switch (s->mech) {
	case MECH_PLAIN:
		r = plain_step(s, in, inlen);
		break;
	case MECH_LOGIN:
		r = login_step(s, in, inlen);
		break;
	case MECH_SCRAM:
		r = s->state == ST_SCRAM_FINAL ? scram_final(s, in, inlen)
					       : scram_first(s, in, inlen);
		break;
	default:
		UNREACHABLE();
	}
	if (r == SASL_CONTINUE || r == SASL_OK) {
		*out = s->out.data ? s->out.data : (const uint8_t *)"";
		*outlen = s->out.len;
	}
	return r;
}
