/* SPDX-License-Identifier: MIT */
/* NOOP (RFC 9051 6.1.2) and CHECK (RFC 3501 6.4.1; gone in rev2, kept as
 * NOOP): both ask the app for changes (ICF_SYNC) before the tagged OK. */
#include "proto/imap/imap_int.h"

void imap_cmd_noop(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "NOOP takes no arguments");
		return;
	}
	imap_tagged(s, "OK", NULL, "NOOP completed");
}

void imap_cmd_check(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "CHECK takes no arguments");
		return;
	}
	imap_tagged(s, "OK", NULL, "CHECK completed");
}
