/* SPDX-License-Identifier: MIT */
/* LOGIN (RFC 9051 6.2.3): refused under LOGINDISABLED (no TLS and no
 * plaintext allowed); the password check is the app's login() op, which
 * may run on a job thread (PENDING). */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"

void imap_login_verdict(struct imap_server *s, enum imap_verdict v)
{
	if (v == IMAP_OK && !s->login_denied) {
		imap_login_ok(s);
		/* RFC 9051 7.1: CAPABILITY code with the tagged OK, as the
		 * list changes after login */
		struct buf b;
		buf_init(&b, 0);
		imap_capability_list(s, &b);
		char *caps = xstrndup((const char *)b.data, b.len);
		buf_deinit(&b);
		imap_tagged(s, "OK", caps, "Logged in");
		free(caps);
		return;
	}
	s->login_denied = false;
	free(s->login_user);
	s->login_user = NULL;
	imap_no_app(s, "AUTHENTICATIONFAILED", "Authentication failed");
	imap_auth_failed(s);
}

void imap_cmd_login(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	const char *u, *p;
	size_t ul, pl;
	if (n != 2 || !imap_arg_get_astring(&args[0], &u, &ul) ||
	    !imap_arg_get_astring(&args[1], &p, &pl)) {
		imap_bad(s, "LOGIN needs user name and password");
		return;
	}
	if (!imap_plaintext_ok(s)) {
		imap_tagged(s, "NO", "PRIVACYREQUIRED", "Plaintext authentication disallowed");
		return;
	}
	if (memchr(u, '\0', ul) || memchr(p, '\0', pl) || ul == 0) {
		imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		imap_auth_failed(s);
		return;
	}
	free(s->login_user);
	s->login_user = xstrndup(u, ul);
	s->login_denied = false;
	char *pw = xstrndup(p, pl);
	enum imap_verdict v = s->ops->login(s->ctx, s, "LOGIN", s->login_user, pw);
	memset(pw, 0, pl);
	free(pw);
	imap_verdict(s, v, imap_login_verdict);
}
