/* SPDX-License-Identifier: MIT */
/* NAMESPACE (RFC 2342, RFC 9051 6.3.10): one personal namespace "" with
 * separator "/", no other users' or shared namespaces. */
#include "proto/imap/imap_int.h"

void imap_cmd_namespace(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	(void)args;
	if (n) {
		imap_bad(s, "NAMESPACE takes no arguments");
		return;
	}
	imap_untagged(s, "NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_tagged(s, "OK", NULL, "NAMESPACE completed");
}
