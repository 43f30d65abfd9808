/* SPDX-License-Identifier: MIT */
/* TLS server and client contexts (OpenSSL 3, TLS 1.2+, modern ciphers) and the
 * self-signed certificate made on first run. The only module that includes
 * OpenSSL headers besides io/conn.c. A tls_ctx is reference-counted so SIGHUP
 * can swap in a new certificate while old connections keep the old one. */
#ifndef TERN_IO_TLS_H
#define TERN_IO_TLS_H

#include "base/err.h"

struct tls_ctx;

/* Load cert chain + key (PEM). On failure returns NULL and sets *err_r to a
 * malloc'd message naming the file. */
struct tls_ctx *tls_ctx_new(const char *cert_path, const char *key_path, char **err_r);
void tls_ctx_ref(struct tls_ctx *t);
void tls_ctx_unref(struct tls_ctx **t);
/* The underlying SSL_CTX * (for io/conn.c). */
void *tls_ctx_ssl_ctx(struct tls_ctx *t);

/* A client context for outbound SMTP (STARTTLS to MX hosts and smarthosts):
 * TLS 1.2+, the system's trust store loaded (ca_file too if not NULL) so the
 * verification result can be logged, but peer verification is not enforced
 * (opportunistic TLS). NULL + *err_r on failure. */
struct tls_ctx *tls_ctx_client_new(const char *ca_file, char **err_r);

/* Create a self-signed certificate for hostname (EC P-256, 10 years) at the
 * two paths (key mode 0600). 0, or -1 with *err_r malloc'd. */
int tls_make_self_signed(const char *cert_path, const char *key_path, const char *hostname,
			 char **err_r) ATTR_WARN_UNUSED;

#endif
