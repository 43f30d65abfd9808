/* SPDX-License-Identifier: MIT */
/* CAPABILITY (RFC 9051 6.1.1): the list depends on the state and settings
 * (imap_capability_list in imap_server.c). */
#include "proto/imap/imap_int.h"

void imap_cmd_capability(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "CAPABILITY takes no arguments");
		return;
	}
	buf_xappend(&s->out, "* ", 2);
	imap_capability_list(s, &s->out);
	buf_xappend(&s->out, "\r\n", 2);
	imap_tagged(s, "OK", NULL, "Capability completed");
}
