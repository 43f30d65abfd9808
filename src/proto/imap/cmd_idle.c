/* SPDX-License-Identifier: MIT */
/* IDLE (RFC 2177, RFC 9051 6.3.13): "+ idling", then changes reported by
 * the app through imap_server_mailbox_changed() are pushed at once, until
 * the client sends DONE (read raw with imap_parser_read_line). */
#include "proto/imap/imap_int.h"

void imap_cmd_idle(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "IDLE takes no arguments");
		return;
	}
	buf_xprintf(&s->out, "+ idling\r\n");
	s->idle = true;
	imap_parser_read_line(s->parser);
	if (s->shutdown_req) {
		imap_logout(s, "Server shutting down");
		return;
	}
	/* what happened before IDLE goes out now */
	s->need_sync = true;
	imap_idle_line(s, NULL, 0);
}
