/* SPDX-License-Identifier: MIT */
/* LOGOUT (RFC 9051 6.1.3): untagged BYE, tagged OK, close. */
#include "proto/imap/imap_int.h"

void imap_cmd_logout(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "LOGOUT takes no arguments");
		return;
	}
	imap_untagged(s, "BYE Logging out");
	imap_deselect(s);
	imap_tagged(s, "OK", NULL, "Logout completed");
	imap_logout(s, NULL);
}
