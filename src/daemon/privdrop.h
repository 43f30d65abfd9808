/* SPDX-License-Identifier: MIT */
/* Running as the configured unprivileged user (`user = NAME`).
 *
 * Started as root, tern prepares data_dir for that user, binds ports and
 * reads existing keys, then drops to the user before reading network input.
 * Everything inside data_dir is created after the drop, by the user itself,
 * so root never follows a path the user could have replaced by a symlink. */
#ifndef TERN_DAEMON_PRIVDROP_H
#define TERN_DAEMON_PRIVDROP_H

#include <stdbool.h>

struct config;

/* True when started as root with a `user` to switch to. */
bool privdrop_wanted(const struct config *c);
/* As root: check the user exists and that data_dir belongs to it, creating
 * data_dir (owned by the user) when missing. Prints the reason and returns -1
 * on failure. A no-op (0) when privdrop_wanted() is false, except that a
 * `user` other than the current one without root is an error. */
int privdrop_prepare(const struct config *c);
/* setgroups/setgid/setuid to the user; -1 (printed) on failure. No-op when
 * privdrop_wanted() is false. */
int privdrop_now(const struct config *c);

#endif
