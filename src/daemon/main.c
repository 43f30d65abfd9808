/* SPDX-License-Identifier: MIT */
/* tern: the single binary. Dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "daemon/cli.h"
#include "daemon/server.h"

#ifndef TERN_VERSION
#define TERN_VERSION "0.1.0"
#endif

static const char usage[] =
	"usage: tern COMMAND [OPTIONS]\n"
	"\n"
	"commands:\n"
	"  serve -c FILE                      run the mail server in the foreground\n"
	"  user add|del|list|passwd -c FILE [ADDRESS]\n"
	"                                     manage accounts (password read from stdin)\n"
	"  alias add|del|list -c FILE [ALIAS [TARGET...]]\n"
	"                                     manage aliases\n"
	"  queue list|flush|delete -c FILE [ID]\n"
	"                                     show, retry now, or drop outbound mail\n"
	"  config -c FILE [--all]             print the configuration (non-defaults or all)\n"
	"  version                            print the version\n"
	"\n"
	"Run 'tern COMMAND --help' for details.\n";

static const char serve_usage[] =
	"usage: tern serve -c FILE\n"
	"\n"
	"Runs Tern in the foreground, logging to stderr. On first start it creates\n"
	"data_dir, a self-signed certificate when tls_cert/tls_key are missing, and\n"
	"(with demo_account = yes) a demo account whose password it prints once.\n"
	"\n"
	"signals: SIGTERM/SIGINT stop accepting, finish transactions in flight, exit 0;\n"
	"         SIGHUP reloads the configuration and certificate.\n";

static int serve(int argc, char **argv)
{
	const char *conf = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(serve_usage, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "-c") && i + 1 < argc)
			conf = argv[++i];
		else {
			fprintf(stderr, "tern serve: unexpected argument '%s'\n%s", argv[i],
				serve_usage);
			return 2;
		}
	}
	if (!conf) {
		fprintf(stderr, "tern serve: -c FILE is required\n%s", serve_usage);
		return 2;
	}
	return server_main(conf);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		fputs(usage, stdout);
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
			puts("usage: tern version\n\nPrints Tern's version.");
			return 0;
		}
		printf("tern %s\n", TERN_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "serve"))
		return serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "user"))
		return cli_user(argc - 1, argv + 1);
	if (!strcmp(cmd, "alias"))
		return cli_alias(argc - 1, argv + 1);
	if (!strcmp(cmd, "queue"))
		return cli_queue(argc - 1, argv + 1);
	if (!strcmp(cmd, "config"))
		return cli_config(argc - 1, argv + 1);
	fprintf(stderr, "tern: unknown command '%s'\n%s", cmd, usage);
	return 2;
}
