/* SPDX-License-Identifier: MIT */
/* TLS context tests: the self-signed certificate (X.509 v3, CN and SAN,
 * EC P-256, ~10 years, key mode 0600), error messages that name the file,
 * cert/key mismatch, the protocol/cipher policy checked with in-memory
 * handshakes (TLS 1.1 and non-ECDHE suites refused), and refcounting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "io/tls.h"

static char dir[64];
static char cert1[128], key1[128], cert2[128], key2[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/tern-test-tls.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cert1, sizeof cert1, "%s/c1.pem", dir);
	snprintf(key1, sizeof key1, "%s/k1.pem", dir);
	snprintf(cert2, sizeof cert2, "%s/c2.pem", dir);
	snprintf(key2, sizeof key2, "%s/k2.pem", dir);
	char *err = NULL;
	if (tls_make_self_signed(cert1, key1, "mail.example.test", &err) < 0 ||
	    tls_make_self_signed(cert2, key2, "other.test", &err) < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(cert1);
	unlink(key1);
	unlink(cert2);
	unlink(key2);
	rmdir(dir);
	return 0;
}

static void test_self_signed_cert(void **state)
{
	(void)state;
	FILE *f = fopen(cert1, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_check_host(x, "mail.example.test", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "other.test", 0, 0, NULL), 0);
	/* The name is in subjectAltName (not just the CN). */
	GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(san);
	assert_int_equal(sk_GENERAL_NAME_num(san), 1);
	GENERAL_NAME *g = sk_GENERAL_NAME_value(san, 0);
	assert_int_equal(g->type, GEN_DNS);
	assert_int_equal(ASN1_STRING_length(g->d.dNSName), (int)strlen("mail.example.test"));
	assert_memory_equal(ASN1_STRING_get0_data(g->d.dNSName), "mail.example.test", 17);
	GENERAL_NAMES_free(san);
	char cn[128];
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					      sizeof cn) > 0);
	assert_string_equal(cn, "mail.example.test");
	/* Self-signed: issuer = subject, signature verifies with its own key. */
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
	EVP_PKEY *pub = X509_get0_pubkey(x);
	assert_non_null(pub);
	assert_true(EVP_PKEY_is_a(pub, "EC"));
	char group[32];
	size_t glen = 0;
	assert_int_equal(EVP_PKEY_get_utf8_string_param(pub, "group", group, sizeof group, &glen),
			 1);
	assert_string_equal(group, "prime256v1");
	assert_int_equal(X509_verify(x, pub), 1);
	/* About ten years: valid in 9 years, expired in 11. */
	time_t now = time(NULL);
	time_t in9 = now + 9 * 365 * 86400L, in11 = now + 11 * 365 * 86400L;
	assert_true(X509_cmp_time(X509_get0_notAfter(x), &in9) > 0);
	assert_true(X509_cmp_time(X509_get0_notAfter(x), &in11) < 0);
	assert_true(X509_cmp_time(X509_get0_notBefore(x), &now) < 0);
	X509_free(x);

	struct stat st;
	assert_int_equal(stat(key1, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* No temp files left behind. */
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp.", key1);
	assert_int_equal(access(tmp, F_OK), -1);
}

static void test_self_signed_bad_hostname(void **state)
{
	(void)state;
	static const char *bad[] = { "", "a,DNS:evil.test", "has space", "-lead.test",
				     "x\ny.test", ".dot.test" };
	char c[160], k[160];
	snprintf(c, sizeof c, "%s/bad-c.pem", dir);
	snprintf(k, sizeof k, "%s/bad-k.pem", dir);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *err = NULL;
		assert_int_equal(tls_make_self_signed(c, k, bad[i], &err), -1);
		assert_non_null(err);
		free(err);
		assert_int_equal(access(k, F_OK), -1);
	}
	/* Unwritable destination: the error names the file. */
	char *err = NULL;
	assert_int_equal(tls_make_self_signed("/nonexistent-dir/c.pem", "/nonexistent-dir/k.pem",
					      "mail.test", &err),
			 -1);
	assert_non_null(err);
	assert_non_null(strstr(err, "/nonexistent-dir/k.pem"));
	free(err);
}

static void test_ctx_ok_and_policy(void **state)
{
	(void)state;
	char *err = NULL;
	struct tls_ctx *t = tls_ctx_new(cert1, key1, &err);
	assert_non_null(t);
	assert_null(err);
	SSL_CTX *ctx = tls_ctx_ssl_ctx(t);
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	uint64_t opts = SSL_CTX_get_options(ctx);
	assert_true(opts & SSL_OP_NO_COMPRESSION);
	assert_true(opts & SSL_OP_NO_RENEGOTIATION);
	assert_false(opts & SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	tls_ctx_ref(t);
	struct tls_ctx *t2 = t;
	tls_ctx_unref(&t2);
	assert_null(t2);
	assert_int_equal(SSL_CTX_get_min_proto_version(tls_ctx_ssl_ctx(t)), TLS1_2_VERSION);
	tls_ctx_unref(&t);
	assert_null(t);
	tls_ctx_unref(&t); /* safe on NULL */
}

static void expect_error(const char *cert, const char *key, const char *want)
{
	char *err = NULL;
	struct tls_ctx *t = tls_ctx_new(cert, key, &err);
	assert_null(t);
	assert_non_null(err);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("got \"%s\", want prefix \"%s\"", err, want);
	free(err);
}

static void test_ctx_errors(void **state)
{
	(void)state;
	char missing[160], want[512], junk[160];
	snprintf(missing, sizeof missing, "%s/missing.pem", dir);
	snprintf(want, sizeof want, "tls_cert %s: cannot read: No such file", missing);
	expect_error(missing, key1, want);
	snprintf(want, sizeof want, "tls_key %s: cannot read: No such file", missing);
	expect_error(cert1, missing, want);
	/* A file that is not PEM. */
	snprintf(junk, sizeof junk, "%s/junk.pem", dir);
	FILE *f = fopen(junk, "w");
	assert_non_null(f);
	fputs("not a certificate\n", f);
	fclose(f);
	snprintf(want, sizeof want, "tls_cert %s: cannot load certificate: ", junk);
	expect_error(junk, key1, want);
	snprintf(want, sizeof want, "tls_key %s: cannot load private key: ", junk);
	expect_error(cert1, junk, want);
	/* The key of another certificate. */
	snprintf(want, sizeof want, "tls_key %s: does not match the certificate in %s", key2,
		 cert1);
	expect_error(cert1, key2, want);
	unlink(junk);
	ERR_clear_error();
}

/* In-memory handshake between our server ctx and a client configured by the
 * caller. Returns 1 when both sides finished, 0 when either failed. */
static int handshake_pair(SSL_CTX *sctx, SSL_CTX *cctx, char *version_r, size_t vsz)
{
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	assert_non_null(s);
	assert_non_null(c);
	BIO *bs, *bc;
	assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
	SSL_set_bio(s, bs, bs);
	SSL_set_bio(c, bc, bc);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	int ok = 0;
	for (int i = 0; i < 50; i++) {
		int rc = SSL_do_handshake(c);
		int rs = SSL_do_handshake(s);
		if (rc == 1 && rs == 1) {
			ok = 1;
			snprintf(version_r, vsz, "%s", SSL_get_version(s));
			break;
		}
		int ec = SSL_get_error(c, rc), es = SSL_get_error(s, rs);
		if ((rc != 1 && ec != SSL_ERROR_WANT_READ && ec != SSL_ERROR_WANT_WRITE) ||
		    (rs != 1 && es != SSL_ERROR_WANT_READ && es != SSL_ERROR_WANT_WRITE))
			break;
	}
	SSL_free(s);
	SSL_free(c);
	ERR_clear_error();
	return ok;
}

static void test_protocol_policy(void **state)
{
	(void)state;
	char *err = NULL;
	struct tls_ctx *t = tls_ctx_new(cert1, key1, &err);
	assert_non_null(t);
	SSL_CTX *sctx = tls_ctx_ssl_ctx(t);
	char ver[32];

	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	assert_int_equal(handshake_pair(sctx, c, ver, sizeof ver), 1);
	assert_string_equal(ver, "TLSv1.3");
	SSL_CTX_free(c);

	/* TLS 1.2 with a modern suite works. */
	c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_set_cipher_list(c, "ECDHE-ECDSA-AES128-GCM-SHA256"), 1);
	assert_int_equal(handshake_pair(sctx, c, ver, sizeof ver), 1);
	assert_string_equal(ver, "TLSv1.2");
	SSL_CTX_free(c);

	/* TLS 1.2 without forward secrecy / AEAD is refused. */
	c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_set_cipher_list(c, "ECDHE-ECDSA-AES128-SHA:AES128-SHA"), 1);
	assert_int_equal(handshake_pair(sctx, c, ver, sizeof ver), 0);
	SSL_CTX_free(c);

	/* TLS 1.1 is refused. */
	c = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_security_level(c, 0);
	SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION);
	SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0");
	assert_int_equal(handshake_pair(sctx, c, ver, sizeof ver), 0);
	SSL_CTX_free(c);

	tls_ctx_unref(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_self_signed_cert),
		cmocka_unit_test(test_self_signed_bad_hostname),
		cmocka_unit_test(test_ctx_ok_and_policy),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_protocol_policy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
