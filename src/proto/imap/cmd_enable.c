/* SPDX-License-Identifier: MIT */
/* ENABLE (RFC 5161): IMAP4rev2 (RFC 9051 6.3.1) and UTF8=ACCEPT (RFC 6855
 * 3; implied by IMAP4rev2). Unknown capabilities are ignored; the
 * untagged ENABLED lists what was newly enabled. */
#include "base/util.h"
#include "proto/imap/imap_int.h"

void imap_cmd_enable(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n == 0) {
		imap_bad(s, "ENABLE needs capabilities");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (args[i].type != IMAP_ARG_ATOM && args[i].type != IMAP_ARG_NIL &&
		    args[i].type != IMAP_ARG_NUMBER) {
			imap_bad(s, "Capability names are atoms");
			return;
		}
	}
	bool rev2 = false, utf8 = false;
	for (size_t i = 0; i < n; i++) {
		if (imap_arg_atom_equals(&args[i], "IMAP4rev2") && !s->rev2)
			rev2 = true;
		else if (imap_arg_atom_equals(&args[i], "UTF8=ACCEPT") && !s->utf8)
			utf8 = true;
	}
	buf_xprintf(&s->out, "* ENABLED");
	if (rev2) {
		s->rev2 = true;
		buf_xprintf(&s->out, " IMAP4rev2");
	}
	if (utf8 || (rev2 && !s->utf8)) {
		if (utf8)
			buf_xprintf(&s->out, " UTF8=ACCEPT");
		s->utf8 = true;
	}
	buf_xappend(&s->out, "\r\n", 2);
	imap_tagged(s, "OK", NULL, "ENABLE completed");
}
