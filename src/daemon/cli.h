/* SPDX-License-Identifier: MIT */
/* Administrative subcommands: tern user ..., tern alias ..., tern config,
 * tern queue .... */
#ifndef TERN_DAEMON_CLI_H
#define TERN_DAEMON_CLI_H

int cli_user(int argc, char **argv);
int cli_alias(int argc, char **argv);
int cli_config(int argc, char **argv);
/* tern queue list|flush|delete (cli_queue.c) */
int cli_queue(int argc, char **argv);

#endif
