/* SPDX-License-Identifier: MIT */
/* Tern's configuration: "key = value" lines, "#" comments. One typed table
 * (config.c) defines every key with its type, default, bounds and a doc line;
 * parsing, validation, defaults and `tern config` are generic code over it.
 * Errors name "file:line" and the key. Relative paths are resolved against
 * the directory of the configuration file. */
#ifndef TERN_CONF_CONFIG_H
#define TERN_CONF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

struct cfg_list {
	char **v;
	size_t n;
};

struct config {
	char *path;            /* the file this came from */
	char *hostname;        /* FQDN used in banners and Received */
	struct cfg_list domains; /* local domains, lowercased */
	char *data_dir;        /* absolute */
	char *tls_cert;        /* absolute */
	char *tls_key;         /* absolute */
	uint64_t max_message_size;
	struct cfg_list smtp_listen;
	struct cfg_list submission_listen;
	struct cfg_list submissions_listen;
	struct cfg_list imap_listen;
	struct cfg_list imaps_listen;
	struct cfg_list pop3_listen;
	struct cfg_list pop3s_listen;
	char *user;            /* drop privileges to this user when started as root; "" = no */
	bool demo_account;     /* create demo@<first domain> when there are no accounts */
	char *log_level;       /* debug | info | warning */
	uint64_t smtp_timeout; /* seconds */
	uint64_t max_recipients;
	uint64_t max_connections;
	uint64_t max_connections_per_ip;
	bool allow_plaintext_auth; /* passwords over unencrypted non-loopback connections */
	bool pop3_apop;            /* offer APOP (timestamp in the POP3 greeting) */
	uint64_t pop3_timeout;     /* seconds */
	uint64_t imap_timeout;     /* seconds, at least 30 minutes (RFC 9051 5.4) */
	uint64_t queue_retry;         /* seconds: first retry delay, doubled per attempt */
	uint64_t queue_lifetime;      /* seconds in the queue before a bounce */
	uint64_t queue_delay_warning; /* seconds before a "delayed" DSN */
	struct cfg_list dns_servers;  /* addr:port; empty = /etc/resolv.conf */
	char *relay_host;             /* smarthost host:port, "" = MX delivery */
	char *relay_auth;             /* user:password for the smarthost, "" = none */
	uint64_t relay_max_connections;
	uint64_t relay_max_per_domain;
	uint64_t relay_mx_port;         /* 25 except in tests */
	uint64_t relay_connect_timeout; /* seconds */
	uint64_t relay_timeout;         /* seconds per reply; 0 = RFC 5321 4.5.3.2 values */

	/* Line where each key was set (0 = default), in table order. */
	unsigned *lines;
};

/* Parse the file. On error returns NULL and *err_r is a malloc'd message
 * ("FILE:LINE: ..."). */
struct config *config_load(const char *path, char **err_r);
/* Parse text (for tests and the fuzzer); name is used in messages and base_dir
 * for relative paths. */
struct config *config_parse(const char *name, const char *base_dir, const char *text, size_t len,
			    char **err_r);
void config_free(struct config **c);
/* Line on which key was set, 0 if defaulted or unknown key. */
unsigned config_line(const struct config *c, const char *key);
/* True if addr's domain (after '@', any case) is one of the local domains. */
bool config_is_local_domain(const struct config *c, const char *domain);
/* Parse "host[:port]" or "[v6-or-v4]:port" (relay_host). Port 25 when absent.
 * 0, or -1 with a static reason in *why. */
int config_parse_hostport(const char *s, char *host, size_t hostsz, uint16_t *port,
			  const char **why) ATTR_WARN_UNUSED;
/* Write "key = value" lines: only values that differ from defaults unless all. */
void config_dump(const struct config *c, bool all, FILE *out);
/* Write a Markdown table of every key (name, default, doc) — the README reference. */
void config_doc_table(FILE *out);
/* Number of keys and whether each has a doc line (unit test). */
size_t config_nkeys(void);
const char *config_key_name(size_t i);
const char *config_key_doc(size_t i);

#endif
