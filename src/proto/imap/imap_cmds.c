/* SPDX-License-Identifier: MIT */
/* The IMAP command table (design.md 2.4): sorted by name (bsearch; a unit
 * test checks the order), with the rules that can be written as data
 * applied before the handler runs: allowed states, the UID variant, and
 * WRITES refused on a mailbox opened with EXAMINE.
*/
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "proto/imap/imap_int.h"

#define AS (ICF_STATE_AUTH | ICF_STATE_SELECTED)

static const struct imap_cmd imap_cmds[] = {
	{ "APPEND", imap_cmd_append, AS },
	{ "AUTHENTICATE", imap_cmd_authenticate, ICF_STATE_NOAUTH },
	{ "CAPABILITY", imap_cmd_capability, ICF_STATE_ANY },
	{ "CHECK", imap_cmd_check, ICF_STATE_SELECTED | ICF_SYNC },
	{ "CLOSE", imap_cmd_close, ICF_STATE_SELECTED },
	{ "COPY", imap_cmd_copy, ICF_STATE_SELECTED | ICF_USES_SEQS | ICF_UID_VARIANT },
	{ "CREATE", imap_cmd_create, AS },
	{ "DELETE", imap_cmd_delete, AS },
	{ "ENABLE", imap_cmd_enable, AS },
	{ "EXAMINE", imap_cmd_examine, AS },
	{ "EXPUNGE", imap_cmd_expunge,
	  ICF_STATE_SELECTED | ICF_BREAKS_SEQS | ICF_WRITES | ICF_UID_VARIANT },
	{ "FETCH", imap_cmd_fetch, ICF_STATE_SELECTED | ICF_USES_SEQS | ICF_UID_VARIANT },
	{ "ID", imap_cmd_id, ICF_STATE_ANY },
	{ "IDLE", imap_cmd_idle, AS | ICF_SYNC },
	{ "LIST", imap_cmd_list, AS },
	{ "LOGIN", imap_cmd_login, ICF_STATE_NOAUTH },
	{ "LOGOUT", imap_cmd_logout, ICF_STATE_ANY },
	{ "LSUB", imap_cmd_lsub, AS },
	{ "MOVE", imap_cmd_move,
	  ICF_STATE_SELECTED | ICF_USES_SEQS | ICF_BREAKS_SEQS | ICF_WRITES | ICF_UID_VARIANT },
	{ "NAMESPACE", imap_cmd_namespace, AS },
	{ "NOOP", imap_cmd_noop, ICF_STATE_ANY | ICF_SYNC },
	{ "RENAME", imap_cmd_rename, AS },
	{ "SEARCH", imap_cmd_search, ICF_STATE_SELECTED | ICF_USES_SEQS | ICF_UID_VARIANT },
	{ "SELECT", imap_cmd_select, AS },
	{ "STARTTLS", imap_cmd_starttls, ICF_STATE_NOAUTH },
	{ "STATUS", imap_cmd_status, AS },
	{ "STORE", imap_cmd_store,
	  ICF_STATE_SELECTED | ICF_USES_SEQS | ICF_WRITES | ICF_UID_VARIANT },
	{ "SUBSCRIBE", imap_cmd_subscribe, AS },
	{ "UNSELECT", imap_cmd_unselect, ICF_STATE_SELECTED },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, AS },
};

const struct imap_cmd *imap_cmd_table(size_t *n_r)
{
	*n_r = sizeof imap_cmds / sizeof imap_cmds[0];
	return imap_cmds;
}

static int cmp_name(const void *key, const void *elem)
{
	return strcmp(key, ((const struct imap_cmd *)elem)->name);
}

const struct imap_cmd *imap_cmd_find(const char *name)
{
	return bsearch(name, imap_cmds, sizeof imap_cmds / sizeof imap_cmds[0],
		       sizeof imap_cmds[0], cmp_name);
}

static unsigned state_flag(enum imap_state st)
{
	switch (st) {
	case IS_NOAUTH:
		return ICF_STATE_NOAUTH;
	case IS_AUTH:
		return ICF_STATE_AUTH;
	case IS_SELECTED:
		return ICF_STATE_SELECTED;
	default:
		return 0;
	}
}

void imap_cmd_dispatch(struct imap_server *s, const struct imap_parse_event *ev)
{
	free(s->tag);
	s->tag = xstrdup(ev->tag);
	s->in_cmd = true;
	const struct imap_cmd *c = imap_cmd_find(ev->name);
	s->cmd = c;
	if (!c) {
		imap_bad(s, "Unknown command");
		return;
	}
	s->cmd_uid = ev->uid;
	if (ev->uid && !(c->flags & ICF_UID_VARIANT)) {
		imap_bad(s, "Unknown UID command");
		return;
	}
	if (!(c->flags & state_flag(s->state))) {
		if (s->state == IS_NOAUTH)
			imap_bad(s, "Log in first");
		else if (c->flags & ICF_STATE_NOAUTH && !(c->flags & ICF_STATE_AUTH))
			imap_bad(s, "Already authenticated");
		else
			imap_bad(s, "No mailbox selected");
		return;
	}
	if (c->flags & ICF_WRITES && s->state == IS_SELECTED && s->readonly) {
		/* RFC 9051 6.3.3: EXAMINE is read-only; MOVE and EXPUNGE would
		 * change it */
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	c->fn(s, ev->args, ev->n_args);
}
