/* SPDX-License-Identifier: MIT */
/* STARTTLS (RFC 9051 6.2.1): after the tagged OK nothing the client sent in
 * plaintext is acted on (the feed discards it; tls_started makes a fresh
 * reader). */
#include "proto/imap/imap_int.h"

void imap_cmd_starttls(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "STARTTLS takes no arguments");
		return;
	}
	if (s->tls) {
		imap_bad(s, "TLS is already active");
		return;
	}
	if (!s->set.starttls_offered) {
		imap_tagged(s, "NO", "UNAVAILABLE", "TLS not available");
		return;
	}
	imap_tagged(s, "OK", NULL, "Begin TLS negotiation now");
	s->state = IS_TLS_WAIT;
}
