/* SPDX-License-Identifier: MIT */
/* Administrative subcommands: tern user ..., tern alias ..., tern config. */
#ifndef TERN_DAEMON_CLI_H
#define TERN_DAEMON_CLI_H

int cli_user(int argc, char **argv);
int cli_alias(int argc, char **argv);
int cli_config(int argc, char **argv);

#endif
