/* SPDX-License-Identifier: MIT */
/* SASL mechanisms: PLAIN, LOGIN and SCRAM-SHA-256 (RFC 7677 example exchange
 * through the nonce test hook, plus a real client written here), and the
 * failure paths (bad credentials -> FAIL, malformed messages -> BAD). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/accounts.h"
#include "auth/passwd.h"
#include "auth/sasl.h"
#include "base/util.h"

/* ---- fixture: a fake account store ---- */

static const char rfc_salt_b64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";

struct fake {
	unsigned verify_calls;
	unsigned creds_calls;
	char last_authcid[128];
};

static bool fake_verify(void *ctx, const char *authcid, const char *password)
{
	struct fake *f = ctx;
	f->verify_calls++;
	snprintf(f->last_authcid, sizeof(f->last_authcid), "%s", authcid);
	return (strcmp(authcid, "user") == 0 && strcmp(password, "pencil") == 0) ||
	       (strcmp(authcid, "bob@example.org") == 0 && strcmp(password, "hunter2") == 0);
}

static bool fake_creds(void *ctx, const char *authcid, struct scram_creds *c)
{
	struct fake *f = ctx;
	if (f) {
		f->creds_calls++;
		snprintf(f->last_authcid, sizeof(f->last_authcid), "%s", authcid);
	}
	const char *pw;
	if (strcmp(authcid, "user") == 0)
		pw = "pencil";
	else if (strcmp(authcid, "a,b=c") == 0)
		pw = "comma";
	else
		return false; /* unknown, or "old@example.org" with an imported hash */
	uint8_t *salt = NULL;
	size_t n = 0;
	assert_int_equal(base64_decode(rfc_salt_b64, strlen(rfc_salt_b64), &salt, &n), 0);
	memcpy(c->salt, salt, n);
	c->salt_len = n;
	c->iterations = 4096;
	scram_derive(pw, salt, n, 4096, c->stored_key, c->server_key);
	free(salt);
	return true;
}

static const struct sasl_callbacks cbs = { fake_verify, fake_creds };

/* One step; the server output is copied into out (NUL-terminated). */
static enum sasl_result step(struct sasl *s, const void *in, size_t n, bool has, char *out,
			     size_t outsz)
{
	const uint8_t *o = (const uint8_t *)"junk";
	size_t olen = 99;
	enum sasl_result r = sasl_step(s, in, n, has, &o, &olen);
	if (r == SASL_CONTINUE || r == SASL_OK) {
		assert_non_null(o);
		assert_true(olen < outsz);
		memcpy(out, o, olen);
		out[olen] = '\0';
	} else {
		out[0] = '\0';
	}
	return r;
}

static enum sasl_result step_str(struct sasl *s, const char *in, char *out, size_t outsz)
{
	return step(s, in, strlen(in), true, out, outsz);
}

static void test_mechanisms(void **state)
{
	(void)state;
	assert_string_equal(sasl_mechanisms[0], "PLAIN");
	assert_string_equal(sasl_mechanisms[1], "LOGIN");
	assert_string_equal(sasl_mechanisms[2], "SCRAM-SHA-256");
	assert_null(sasl_mechanisms[3]);
	assert_true(sasl_mech_supported("plain"));
	assert_true(sasl_mech_supported("Scram-Sha-256"));
	assert_false(sasl_mech_supported("CRAM-MD5"));
	assert_false(sasl_mech_supported("SCRAM-SHA-256-PLUS"));
	assert_false(sasl_mech_supported(""));
	assert_null(sasl_new("GSSAPI", &cbs, NULL));
	struct sasl *s = sasl_new("login", &cbs, NULL);
	assert_non_null(s);
	sasl_free(&s);
	assert_null(s);
	sasl_free(&s);
	/* a mechanism without its callback is not offered */
	struct sasl_callbacks only_pw = { fake_verify, NULL };
	assert_null(sasl_new("SCRAM-SHA-256", &only_pw, NULL));
	struct sasl_callbacks only_scram = { NULL, fake_creds };
	assert_null(sasl_new("PLAIN", &only_scram, NULL));
}

/* ---- PLAIN ---- */

static enum sasl_result plain_once(const void *msg, size_t n, struct fake *f, char *authcid,
				   size_t asz)
{
	struct sasl *s = sasl_new("PLAIN", &cbs, f);
	char out[64];
	enum sasl_result r = step(s, msg, n, true, out, sizeof(out));
	if (r == SASL_OK) {
		assert_int_equal(strlen(out), 0);
		snprintf(authcid, asz, "%s", sasl_authcid(s));
		/* anything after the end is a protocol error */
		assert_int_equal(step(s, "x", 1, true, out, sizeof(out)), SASL_BAD);
		assert_int_equal(step(s, NULL, 0, false, out, sizeof(out)), SASL_BAD);
	} else {
		assert_null(sasl_authcid(s));
	}
	sasl_free(&s);
	return r;
}

static void test_plain(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		size_t len;
		enum sasl_result want;
		const char *authcid;
	} cases[] = {
#define M(s) s, sizeof(s) - 1
		{ M("\0user\0pencil"), SASL_OK, "user" },
		{ M("user\0user\0pencil"), SASL_OK, "user" },
		{ M("Bob@Example.org\0bob@example.org\0hunter2"), SASL_OK, "bob@example.org" },
		{ M("\0user\0pencil2"), SASL_FAIL, NULL },
		{ M("\0nobody\0pencil"), SASL_FAIL, NULL },
		{ M("admin\0user\0pencil"), SASL_FAIL, NULL }, /* authzid != authcid */
		{ M("use\0user\0pencil"), SASL_FAIL, NULL },
		{ M(""), SASL_BAD, NULL },
		{ M("user"), SASL_BAD, NULL },
		{ M("\0user"), SASL_BAD, NULL },
		{ M("\0user\0"), SASL_BAD, NULL },   /* empty password */
		{ M("\0\0pencil"), SASL_BAD, NULL }, /* empty authcid */
		{ M("\0user\0pen\0cil"), SASL_BAD, NULL },
		{ M("\0us\xff" "er\0pencil"), SASL_BAD, NULL }, /* not UTF-8 */
		{ M("\0user\0pen\xc0\xafil"), SASL_BAD, NULL }, /* overlong */
		{ M("\xed\xa0\x80\0user\0pencil"), SASL_BAD, NULL }, /* surrogate */
#undef M
	};
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		struct fake f = { 0 };
		char authcid[128] = "";
		enum sasl_result r = plain_once(cases[i].msg, cases[i].len, &f, authcid,
						sizeof(authcid));
		if (r != cases[i].want)
			fail_msg("case %zu: got %d want %d", i, r, cases[i].want);
		if (cases[i].authcid)
			assert_string_equal(authcid, cases[i].authcid);
		/* malformed input never reaches the credential check */
		if (cases[i].want == SASL_BAD)
			assert_int_equal(f.verify_calls, 0);
	}
}

static void test_plain_no_initial_response(void **state)
{
	(void)state;
	struct fake f = { 0 };
	struct sasl *s = sasl_new("PLAIN", &cbs, &f);
	char out[64];
	assert_int_equal(step(s, NULL, 0, false, out, sizeof(out)), SASL_CONTINUE);
	assert_string_equal(out, "");
	assert_int_equal(step(s, "\0user\0pencil", 12, true, out, sizeof(out)), SASL_OK);
	assert_string_equal(sasl_authcid(s), "user");
	sasl_free(&s);

	/* an empty initial response ("=" on the wire) is a malformed message */
	s = sasl_new("PLAIN", &cbs, &f);
	assert_int_equal(step(s, "", 0, true, out, sizeof(out)), SASL_BAD);
	assert_int_equal(step(s, "\0user\0pencil", 12, true, out, sizeof(out)), SASL_BAD);
	sasl_free(&s);
	s = sasl_new("PLAIN", &cbs, &f);
	assert_int_equal(step(s, NULL, 0, true, out, sizeof(out)), SASL_BAD);
	sasl_free(&s);

	/* too long */
	s = sasl_new("PLAIN", &cbs, &f);
	size_t big = 9000;
	char *msg = calloc(1, big);
	assert_non_null(msg);
	memcpy(msg, "\0user\0", 6);
	memset(msg + 6, 'p', big - 6);
	assert_int_equal(step(s, msg, big, true, out, sizeof(out)), SASL_BAD);
	free(msg);
	sasl_free(&s);
}

/* ---- LOGIN ---- */

static void test_login(void **state)
{
	(void)state;
	struct fake f = { 0 };
	char out[64];
	/* without initial response */
	struct sasl *s = sasl_new("LOGIN", &cbs, &f);
	assert_int_equal(step(s, NULL, 0, false, out, sizeof(out)), SASL_CONTINUE);
	assert_string_equal(out, "Username:");
	assert_int_equal(step_str(s, "user", out, sizeof(out)), SASL_CONTINUE);
	assert_string_equal(out, "Password:");
	assert_null(sasl_authcid(s));
	assert_int_equal(step_str(s, "pencil", out, sizeof(out)), SASL_OK);
	assert_string_equal(sasl_authcid(s), "user");
	assert_int_equal(step_str(s, "more", out, sizeof(out)), SASL_BAD);
	sasl_free(&s);

	/* username as initial response */
	s = sasl_new("LOGIN", &cbs, &f);
	assert_int_equal(step_str(s, "bob@example.org", out, sizeof(out)), SASL_CONTINUE);
	assert_string_equal(out, "Password:");
	assert_int_equal(step_str(s, "hunter2", out, sizeof(out)), SASL_OK);
	assert_string_equal(sasl_authcid(s), "bob@example.org");
	sasl_free(&s);

	/* wrong password */
	s = sasl_new("LOGIN", &cbs, &f);
	assert_int_equal(step_str(s, "user", out, sizeof(out)), SASL_CONTINUE);
	assert_int_equal(step_str(s, "pencil ", out, sizeof(out)), SASL_FAIL);
	assert_null(sasl_authcid(s));
	assert_int_equal(step_str(s, "pencil", out, sizeof(out)), SASL_BAD);
	sasl_free(&s);

	/* empty password: FAIL without asking */
	s = sasl_new("LOGIN", &cbs, &f);
	unsigned calls = f.verify_calls;
	assert_int_equal(step_str(s, "user", out, sizeof(out)), SASL_CONTINUE);
	assert_int_equal(step_str(s, "", out, sizeof(out)), SASL_FAIL);
	assert_int_equal(f.verify_calls, calls);
	sasl_free(&s);

	/* malformed: empty username, NUL bytes */
	s = sasl_new("LOGIN", &cbs, &f);
	assert_int_equal(step(s, NULL, 0, false, out, sizeof(out)), SASL_CONTINUE);
	assert_int_equal(step_str(s, "", out, sizeof(out)), SASL_BAD);
	sasl_free(&s);
	s = sasl_new("LOGIN", &cbs, &f);
	assert_int_equal(step(s, "us\0er", 5, true, out, sizeof(out)), SASL_BAD);
	sasl_free(&s);
	s = sasl_new("LOGIN", &cbs, &f);
	assert_int_equal(step_str(s, "user", out, sizeof(out)), SASL_CONTINUE);
	assert_int_equal(step(s, "pen\0cil", 7, true, out, sizeof(out)), SASL_BAD);
	sasl_free(&s);
}

/* ---- SCRAM-SHA-256 ---- */

static void hmac256(const uint8_t *key, size_t keylen, const void *d, size_t n, uint8_t out[32])
{
	unsigned len = 0;
	assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, d, n, out, &len));
}

/* Value of attribute a (e.g. 's') in a server-first message, malloc'd. */
static char *attr(const char *msg, char a)
{
	const char *p = msg;
	while (p && *p) {
		if (p[0] == a && p[1] == '=') {
			const char *e = strchr(p, ',');
			return e ? strndup(p + 2, (size_t)(e - p - 2)) : strdup(p + 2);
		}
		p = strchr(p, ',');
		if (p)
			p++;
	}
	fail_msg("no %c= in %s", a, msg);
	return NULL;
}

/* A SCRAM client (RFC 5802 3): given the server-first, builds client-final
 * (optionally tampering with the proof) and the expected server signature. */
static char *scram_client_final(const char *password, const char *first_bare,
				const char *server_first, const char *cbind64, bool tamper,
				char *want_v, size_t vsz)
{
	char *nonce = attr(server_first, 'r');
	char *salt64 = attr(server_first, 's');
	char *iter = attr(server_first, 'i');
	uint8_t *salt = NULL;
	size_t saltlen = 0;
	assert_int_equal(base64_decode(salt64, strlen(salt64), &salt, &saltlen), 0);
	uint8_t salted[32], ckey[32], skey[32], stored[32], csig[32], ssig[32], proof[32];
	assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)saltlen,
					   atoi(iter), EVP_sha256(), 32, salted),
			 1);
	hmac256(salted, 32, "Client Key", 10, ckey);
	hmac256(salted, 32, "Server Key", 10, skey);
	unsigned l = 0;
	EVP_Digest(ckey, 32, stored, &l, EVP_sha256(), NULL);
	char *without_proof = xasprintf("c=%s,r=%s", cbind64, nonce);
	char *am = xasprintf("%s,%s,%s", first_bare, server_first, without_proof);
	hmac256(stored, 32, am, strlen(am), csig);
	hmac256(skey, 32, am, strlen(am), ssig);
	for (int i = 0; i < 32; i++)
		proof[i] = ckey[i] ^ csig[i];
	if (tamper)
		proof[7] ^= 1;
	char *p64 = base64_encode(proof, 32);
	char *v64 = base64_encode(ssig, 32);
	snprintf(want_v, vsz, "v=%s", v64);
	char *final = xasprintf("%s,p=%s", without_proof, p64);
	free(nonce);
	free(salt64);
	free(iter);
	free(salt);
	free(without_proof);
	free(am);
	free(p64);
	free(v64);
	return final;
}

static void test_scram_rfc7677(void **state)
{
	(void)state;
	struct fake f = { 0 };
	struct sasl *s = sasl_new("SCRAM-SHA-256", &cbs, &f);
	sasl_scram_set_nonce_for_test(s, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
	char out[256];
	assert_int_equal(step_str(s, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO", out, sizeof(out)),
			 SASL_CONTINUE);
	assert_string_equal(out, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
				 "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
	assert_string_equal(f.last_authcid, "user");
	assert_int_equal(step_str(s,
				  "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
				  "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
				  out, sizeof(out)),
			 SASL_OK);
	assert_string_equal(out, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
	assert_string_equal(sasl_authcid(s), "user");
	assert_int_equal(step_str(s, "", out, sizeof(out)), SASL_BAD);
	sasl_free(&s);
}

/* A full exchange with our client; returns the final result. */
static enum sasl_result scram_run(const char *client_first, const char *password,
				  const char *cbind64, bool tamper, bool initial, char *authcid,
				  size_t asz)
{
	struct fake f = { 0 };
	struct sasl *s = sasl_new("SCRAM-SHA-256", &cbs, &f);
	char out[256], want_v[128];
	if (!initial) {
		assert_int_equal(step(s, NULL, 0, false, out, sizeof(out)), SASL_CONTINUE);
		assert_string_equal(out, "");
	}
	enum sasl_result r = step_str(s, client_first, out, sizeof(out));
	if (r != SASL_CONTINUE) {
		sasl_free(&s);
		return r;
	}
	/* r= starts with the client nonce, then 32 base64 chars of ours */
	const char *bare = strstr(client_first, ",n=") + 1;
	if (strncmp(bare, "n=", 2) != 0)
		bare = client_first;
	char *cnonce = attr(bare, 'r');
	char *nonce = attr(out, 'r');
	assert_int_equal(strlen(nonce), strlen(cnonce) + 32);
	assert_memory_equal(nonce, cnonce, strlen(cnonce));
	free(cnonce);
	free(nonce);
	char *final =
		scram_client_final(password, bare, out, cbind64, tamper, want_v, sizeof(want_v));
	r = step_str(s, final, out, sizeof(out));
	free(final);
	if (r == SASL_OK) {
		assert_string_equal(out, want_v);
		snprintf(authcid, asz, "%s", sasl_authcid(s));
	} else {
		assert_null(sasl_authcid(s));
	}
	sasl_free(&s);
	return r;
}

static void test_scram_client(void **state)
{
	(void)state;
	char id[128] = "";
	assert_int_equal(scram_run("n,,n=user,r=abcdefghijkl", "pencil", "biws", false, true, id,
				   sizeof(id)),
			 SASL_OK);
	assert_string_equal(id, "user");
	/* "y": client supports channel binding, thinks we don't */
	assert_int_equal(scram_run("y,,n=user,r=x/y+z!", "pencil", "eSws", false, false, id,
				   sizeof(id)),
			 SASL_OK);
	/* authzid equal to the username; c= then carries "n,a=user," */
	char *cb = base64_encode("n,a=user,", 9);
	assert_int_equal(scram_run("n,a=user,n=user,r=nonce", "pencil", cb, false, true, id,
				   sizeof(id)),
			 SASL_OK);
	free(cb);
	/* escaped username "a,b=c", and an extension after the nonce */
	assert_int_equal(scram_run("n,,n=a=2Cb=3Dc,r=zz,x=ext", "comma", "biws", false, true,
				   id, sizeof(id)),
			 SASL_OK);
	assert_string_equal(id, "a,b=c");
}

static void test_scram_failures(void **state)
{
	(void)state;
	char id[128];
	/* wrong password */
	assert_int_equal(scram_run("n,,n=user,r=abc", "pencil2", "biws", false, true, id,
				   sizeof(id)),
			 SASL_FAIL);
	/* tampered proof */
	assert_int_equal(scram_run("n,,n=user,r=abc", "pencil", "biws", true, true, id,
				   sizeof(id)),
			 SASL_FAIL);
	/* unknown user and user without SCRAM keys: the exchange goes on, then fails */
	assert_int_equal(scram_run("n,,n=nobody,r=abc", "pencil", "biws", false, true, id,
				   sizeof(id)),
			 SASL_FAIL);
	assert_int_equal(scram_run("n,,n=old@example.org,r=abc", "pencil", "biws", false, true,
				   id, sizeof(id)),
			 SASL_FAIL);
	/* c= that does not match the gs2 header (downgrade of "y" to "n") */
	assert_int_equal(scram_run("y,,n=user,r=abc", "pencil", "biws", false, true, id,
				   sizeof(id)),
			 SASL_FAIL);
	/* authzid other than the username */
	struct fake f = { 0 };
	struct sasl *s = sasl_new("SCRAM-SHA-256", &cbs, &f);
	char out[256];
	assert_int_equal(step_str(s, "n,a=admin,n=user,r=abc", out, sizeof(out)), SASL_FAIL);
	sasl_free(&s);
}

static void test_scram_unknown_user_salt(void **state)
{
	(void)state;
	/* the fake salt is stable per username and differs between usernames */
	char out1[256], out2[256], out3[256];
	struct fake f = { 0 };
	struct sasl *s = sasl_new("SCRAM-SHA-256", &cbs, &f);
	assert_int_equal(step_str(s, "n,,n=ghost,r=a", out1, sizeof(out1)), SASL_CONTINUE);
	sasl_free(&s);
	s = sasl_new("SCRAM-SHA-256", &cbs, &f);
	assert_int_equal(step_str(s, "n,,n=ghost,r=b", out2, sizeof(out2)), SASL_CONTINUE);
	sasl_free(&s);
	s = sasl_new("SCRAM-SHA-256", &cbs, &f);
	assert_int_equal(step_str(s, "n,,n=phantom,r=b", out3, sizeof(out3)), SASL_CONTINUE);
	sasl_free(&s);
	char *s1 = attr(out1, 's'), *s2 = attr(out2, 's'), *s3 = attr(out3, 's');
	char *i1 = attr(out1, 'i');
	assert_string_equal(s1, s2);
	assert_string_not_equal(s1, s3);
	assert_int_equal(strlen(s1), 24); /* 16 octets, like real salts */
	assert_string_equal(i1, "4096");
	free(s1);
	free(s2);
	free(s3);
	free(i1);
}

static void test_scram_malformed(void **state)
{
	(void)state;
	static const char *const firsts[] = {
		"",
		"n",
		"n,",
		"n,,",
		"x,,n=user,r=abc",
		"p=tls-unique,,n=user,r=abc", /* channel binding: we offer no -PLUS */
		"p,,n=user,r=abc",
		"n,,m=ext,n=user,r=abc",      /* RFC 5802 5.1: unknown mandatory ext */
		"n,,n=,r=abc",
		"n,,n=us=2xr,r=abc",
		"n,,n=user=",
		"n,,n=user",
		"n,,n=user,r=",
		"n,,n=user,r=abc,",
		"n,,n=user,r=abc,=x",
		"n,,r=abc,n=user",
		"n,,n=user,r=a c",
		"n,a=,n=user,r=abc",
		"n,b=user,n=user,r=abc",
		"n,a=user",
		"n,,n=us\xff,r=abc",
	};
	char out[256];
	for (size_t i = 0; i < N_ELEMENTS(firsts); i++) {
		struct fake f = { 0 };
		struct sasl *s = sasl_new("SCRAM-SHA-256", &cbs, &f);
		enum sasl_result r = step_str(s, firsts[i], out, sizeof(out));
		if (r != SASL_BAD)
			fail_msg("first %zu (%s): got %d", i, firsts[i], r);
		assert_int_equal(f.creds_calls, 0);
		sasl_free(&s);
	}
	/* NUL inside client-first */
	struct sasl *s = sasl_new("SCRAM-SHA-256", &cbs, NULL);
	assert_int_equal(step(s, "n,,n=u\0x,r=abc", 14, true, out, sizeof(out)), SASL_BAD);
	sasl_free(&s);

	static const char *const finals[] = {
		"",
		"c=biws",
		"c=biws,r=NONCE",
		"c=biws,r=NONCE,p=",
		"c=biws,r=NONCE,p=AAAA",         /* proof of the wrong length */
		"c=biws,r=NONCE,p=!!!!",         /* not base64 */
		"c=bi,r=NONCE,p=" /* + proof */, /* bad base64 in c= */
		"r=NONCE,c=biws,p=",
		"c=biws,p=",
		"c=biws,r=NONCE,,p=",
		"x=biws,r=NONCE,p=",
	};
	const char *proof64 = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	for (size_t i = 0; i < N_ELEMENTS(finals); i++) {
		struct sasl *sc = sasl_new("SCRAM-SHA-256", &cbs, NULL);
		sasl_scram_set_nonce_for_test(sc, "SRV");
		assert_int_equal(step_str(sc, "n,,n=user,r=CLI", out, sizeof(out)), SASL_CONTINUE);
		/* substitute the real nonce, append a well-formed proof where the
		 * case ends with an empty p= */
		char msg[256];
		const char *src = finals[i];
		const char *nn = strstr(src, "NONCE");
		if (nn)
			snprintf(msg, sizeof(msg), "%.*sCLISRV%s", (int)(nn - src), src, nn + 5);
		else
			snprintf(msg, sizeof(msg), "%s", src);
		size_t ml = strlen(msg);
		if (ml >= 2 && strcmp(msg + ml - 2, "p=") == 0 && i != 3)
			snprintf(msg + ml, sizeof(msg) - ml, "%s", proof64);
		enum sasl_result r = step_str(sc, msg, out, sizeof(out));
		if (r != SASL_BAD)
			fail_msg("final %zu (%s): got %d", i, msg, r);
		sasl_free(&sc);
	}

	/* nonce mismatch is an authentication failure */
	struct sasl *sc = sasl_new("SCRAM-SHA-256", &cbs, NULL);
	sasl_scram_set_nonce_for_test(sc, "SRV");
	assert_int_equal(step_str(sc, "n,,n=user,r=CLI", out, sizeof(out)), SASL_CONTINUE);
	char *msg = xasprintf("c=biws,r=CLISRX,p=%s", proof64);
	assert_int_equal(step_str(sc, msg, out, sizeof(out)), SASL_FAIL);
	free(msg);
	sasl_free(&sc);
}

int main(void)
{
	const struct CMUnitTest general[] = {
		cmocka_unit_test(test_mechanisms),
	};
	const struct CMUnitTest plain[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_plain_no_initial_response),
	};
	const struct CMUnitTest login[] = {
		cmocka_unit_test(test_login),
	};
	const struct CMUnitTest scram[] = {
		cmocka_unit_test(test_scram_rfc7677),
		cmocka_unit_test(test_scram_client),
		cmocka_unit_test(test_scram_failures),
		cmocka_unit_test(test_scram_unknown_user_salt),
		cmocka_unit_test(test_scram_malformed),
	};
	int r = 0;
	r += cmocka_run_group_tests_name("general", general, NULL, NULL);
	r += cmocka_run_group_tests_name("plain", plain, NULL, NULL);
	r += cmocka_run_group_tests_name("login", login, NULL, NULL);
	r += cmocka_run_group_tests_name("scram", scram, NULL, NULL);
	return r;
}
