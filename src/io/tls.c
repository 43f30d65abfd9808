/* SPDX-License-Identifier: MIT */
/* OpenSSL 3 server contexts and the first-run self-signed certificate.
 *
 * Policy: TLS 1.2 minimum; TLS 1.2 suites limited to ECDHE with AES-GCM or
 * ChaCha20-Poly1305 (forward secrecy, AEAD only); TLS 1.3 uses OpenSSL's
 * defaults; no compression (CRIME); no renegotiation. Modes are set so that
 * io/conn.c can write partially from a buffer that moves (buf_consume), and
 * so idle TLS connections release their record buffers.
 *
 * A tls_ctx is reference-counted: SIGHUP builds a new one while live
 * connections keep theirs (SSL objects also hold their own SSL_CTX ref). */
#include "io/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/util.h"

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
#define SELF_SIGNED_DAYS 3650

struct tls_ctx {
	SSL_CTX *ctx;
	unsigned refs;
};

/* The oldest queued OpenSSL error as text, and clear the queue. */
static const char *ssl_err(char *out, size_t outsz)
{
	unsigned long e = ERR_peek_error();
	if (e == 0)
		snprintf(out, outsz, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, out, outsz);
	ERR_clear_error();
	return out;
}

static bool readable(const char *what, const char *path, char **err_r)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		*err_r = xasprintf("%s %s: cannot read: %s", what, path, strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

struct tls_ctx *tls_ctx_new(const char *cert_path, const char *key_path, char **err_r)
{
	char eb[256];
	*err_r = NULL;
	if (!readable("tls_cert", cert_path, err_r) || !readable("tls_key", key_path, err_r))
		return NULL;
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		*err_r = xasprintf("SSL_CTX_new: %s", ssl_err(eb, sizeof eb));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* OpenSSL 3 refuses client-initiated renegotiation unless
	 * SSL_OP_ALLOW_CLIENT_RENEGOTIATION is set; NO_RENEGOTIATION covers ours. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_clear_options(ctx, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	static const unsigned char sid_ctx[] = "tern";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		*err_r = xasprintf("cipher list %s: %s", TLS12_CIPHERS, ssl_err(eb, sizeof eb));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		*err_r = xasprintf("tls_cert %s: cannot load certificate: %s", cert_path,
				   ssl_err(eb, sizeof eb));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
		/* OpenSSL also lands here when the key does not match the cert. */
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			*err_r = xasprintf("tls_key %s: does not match the certificate in %s",
					   key_path, cert_path);
		} else {
			*err_r = xasprintf("tls_key %s: cannot load private key: %s", key_path,
					   ssl_err(eb, sizeof eb));
		}
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		*err_r = xasprintf("tls_key %s: does not match the certificate in %s", key_path,
				   cert_path);
		goto fail;
	}
	struct tls_ctx *t = xcalloc(1, sizeof *t);
	t->ctx = ctx;
	t->refs = 1;
	return t;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void tls_ctx_ref(struct tls_ctx *t)
{
	t->refs++;
}

void tls_ctx_unref(struct tls_ctx **tp)
{
	struct tls_ctx *t = *tp;
	if (!t)
		return;
	*tp = NULL;
	ASSERT(t->refs > 0);
	if (--t->refs > 0)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

void *tls_ctx_ssl_ctx(struct tls_ctx *t)
{
	return t->ctx;
}

/* ---- self-signed certificate ---- */

/* A DNS name we are willing to put in a certificate: LDH labels and dots. */
static bool valid_hostname(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = h[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	return true;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -1;
	int r = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return r == 1 ? 0 : -1;
}

static int add_san(X509 *x, const char *hostname)
{
	/* Built as ASN.1 directly rather than via a "DNS:..." config string, so
	 * nothing in the name is ever interpreted as extension syntax. */
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *gen = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	int rc = -1;
	if (!gens || !gen || !ia5)
		goto out;
	if (!ASN1_STRING_set(ia5, hostname, (int)strlen(hostname)))
		goto out;
	GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
	ia5 = NULL;
	if (!sk_GENERAL_NAME_push(gens, gen))
		goto out;
	gen = NULL;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
		rc = 0;
out:
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	return rc;
}

static X509 *make_cert(EVP_PKEY *pkey, const char *hostname)
{
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	if (!x)
		return NULL;
	unsigned char serial[16];
	random_bytes(serial, sizeof serial);
	serial[0] &= 0x7f; /* RFC 5280 4.1.2.2: positive, at most 20 octets */
	serial[0] |= 0x01;
	bn = BN_bin2bn(serial, sizeof serial, NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto fail;
	if (!X509_set_version(x, X509_VERSION_3))
		goto fail;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), SELF_SIGNED_DAYS, 0, NULL))
		goto fail;
	if (!X509_set_pubkey(x, pkey))
		goto fail;
	X509_NAME *name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname,
					-1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, name))
		goto fail;
	if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(x, NID_subject_key_identifier, "hash") < 0 || add_san(x, hostname) < 0)
		goto fail;
	if (X509_sign(x, pkey, EVP_sha256()) <= 0)
		goto fail;
	BN_free(bn);
	return x;
fail:
	BN_free(bn);
	X509_free(x);
	return NULL;
}

enum pem_kind { PEM_KEY, PEM_CERT };

/* Write a PEM object to path via a temp file in the same directory and
 * rename(2), so a crash never leaves a half-written key or certificate. */
static int write_pem(const char *what, const char *path, mode_t mode, enum pem_kind kind,
		     void *obj, char **err_r)
{
	char eb[256];
	char *tmp = xasprintf("%s.tmp.XXXXXX", path);
	int fd = mkstemp(tmp); /* mode 0600 */
	if (fd < 0) {
		*err_r = xasprintf("%s %s: cannot write: %s", what, path, strerror(errno));
		free(tmp);
		return -1;
	}
	if (fchmod(fd, mode) < 0) {
		*err_r = xasprintf("%s %s: chmod: %s", what, path, strerror(errno));
		close(fd);
		goto fail;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		*err_r = xasprintf("%s %s: cannot write: %s", what, path, strerror(errno));
		close(fd);
		goto fail;
	}
	ERR_clear_error();
	int ok = kind == PEM_KEY ? PEM_write_PrivateKey(f, obj, NULL, NULL, 0, NULL, NULL)
				 : PEM_write_X509(f, obj);
	if (!ok) {
		*err_r = xasprintf("%s %s: cannot write: %s", what, path, ssl_err(eb, sizeof eb));
		fclose(f);
		goto fail;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
		*err_r = xasprintf("%s %s: cannot write: %s", what, path, strerror(errno));
		fclose(f);
		goto fail;
	}
	if (fclose(f) != 0) {
		*err_r = xasprintf("%s %s: cannot write: %s", what, path, strerror(errno));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		*err_r = xasprintf("%s %s: rename: %s", what, path, strerror(errno));
		goto fail;
	}
	free(tmp);
	return 0;
fail:
	unlink(tmp);
	free(tmp);
	return -1;
}

int tls_make_self_signed(const char *cert_path, const char *key_path, const char *hostname,
			 char **err_r)
{
	char eb[256];
	*err_r = NULL;
	if (!valid_hostname(hostname)) {
		*err_r = xasprintf("self-signed certificate: invalid hostname");
		return -1;
	}
	ERR_clear_error();
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!pkey) {
		*err_r = xasprintf("tls_key %s: EC key generation failed: %s", key_path,
				   ssl_err(eb, sizeof eb));
		return -1;
	}
	int rc = -1;
	X509 *x = make_cert(pkey, hostname);
	if (!x) {
		*err_r = xasprintf("tls_cert %s: cannot build certificate: %s", cert_path,
				   ssl_err(eb, sizeof eb));
		goto out;
	}
	/* Key first: a certificate without its key is useless, the reverse is
	 * simply regenerated. */
	if (write_pem("tls_key", key_path, 0600, PEM_KEY, pkey, err_r) < 0 ||
	    write_pem("tls_cert", cert_path, 0644, PEM_CERT, x, err_r) < 0)
		goto out;
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}

/* ---- client context ---- */

struct tls_ctx *tls_ctx_client_new(const char *ca_file, char **err_r)
{
	char eb[256];
	*err_r = NULL;
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		*err_r = xasprintf("SSL_CTX_new: %s", ssl_err(eb, sizeof eb));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	/* Opportunistic (RFC 7435): the chain and name are checked so the result
	 * can be logged, but a failure never stops the handshake. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1)
		ERR_clear_error(); /* no system store: every peer logs as unverified */
	if (ca_file && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		*err_r = xasprintf("CA file %s: %s", ca_file, ssl_err(eb, sizeof eb));
		SSL_CTX_free(ctx);
		return NULL;
	}
	struct tls_ctx *t = xcalloc(1, sizeof *t);
	t->ctx = ctx;
	t->refs = 1;
	return t;
}
