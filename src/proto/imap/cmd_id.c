/* SPDX-License-Identifier: MIT */
/* ID (RFC 2971): the client's parameters go to the app's log hook; we
 * answer with our name only (section 7: no version, no OS). */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_quote.h"

void imap_cmd_id(struct imap_server *s, const struct imap_arg *args, size_t n)
{
	if (n != 1) {
		imap_bad(s, "ID takes one argument");
		return;
	}
	const struct imap_arg *l;
	size_t ln = 0;
	if (args[0].type == IMAP_ARG_LIST) {
		if (!imap_arg_get_list(&args[0], &l, &ln) || ln % 2 || ln > 60) {
			imap_bad(s, "Invalid ID parameter list");
			return;
		}
		const char **kv = xcalloc(ln ? ln : 1, sizeof *kv);
		for (size_t i = 0; i < ln; i++) {
			const char *p;
			size_t len;
			if (i % 2 == 0 ? !imap_arg_get_string(&l[i], &p, &len)
				       : !imap_arg_get_nstring(&l[i], &p, &len)) {
				free(kv);
				imap_bad(s, "Invalid ID parameter list");
				return;
			}
			kv[i] = p;
		}
		if (s->ops->client_id)
			s->ops->client_id(s->ctx, s, kv, ln);
		free(kv);
	} else if (args[0].type != IMAP_ARG_NIL) {
		imap_bad(s, "ID takes a list or NIL");
		return;
	}
	buf_xprintf(&s->out, "* ID (\"name\" ");
	imap_quote_string(&s->out, s->set.id_name, strlen(s->set.id_name), 0);
	buf_xprintf(&s->out, ")\r\n");
	imap_tagged(s, "OK", NULL, "ID completed");
}
