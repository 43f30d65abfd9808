/* SPDX-License-Identifier: MIT */
/* tern user / tern alias / tern config: account administration against the
 * same SQLite store the server reads (WAL mode, so it is safe while the
 * server runs). Passwords come from stdin, never from the command line
 * (where ps would show them); on a terminal they are read without echo. */
#include "daemon/cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "base/util.h"
#include "conf/config.h"
#include "daemon/privdrop.h"
#include "store/maildir.h"

static const char user_usage[] =
	"usage: tern user add    -c FILE ADDRESS   create an account (password on stdin)\n"
	"       tern user passwd -c FILE ADDRESS   change its password (password on stdin)\n"
	"       tern user del    -c FILE ADDRESS   delete the account (its mail is kept)\n"
	"       tern user list   -c FILE           list accounts\n"
	"       tern user apop   -c FILE ADDRESS   set the POP3 APOP secret (stdin);\n"
	"                                          --remove drops it\n"
	"       tern user add    -c FILE ADDRESS --hash\n"
	"                                          import an existing crypt hash ($y$, $6$,\n"
	"                                          $2b$) read from stdin instead of a password\n"
	"\n"
	"The password is read from standard input: typed twice without echo on a\n"
	"terminal, or the first line of piped input (echo 'secret' | tern user add ...).\n"
	"Addresses must be in one of the configured domains.\n";

static const char alias_usage[] =
	"usage: tern alias add  -c FILE ALIAS TARGET...   ALIAS delivers to the TARGETs\n"
	"       tern alias del  -c FILE ALIAS [TARGET...]  remove targets, or the whole alias\n"
	"       tern alias list -c FILE                    list aliases\n"
	"\n"
	"Targets are local accounts or other aliases. postmaster@DOMAIN goes to the first\n"
	"account unless an alias says otherwise.\n";

static const char config_usage[] = "usage: tern config -c FILE [--all]\n"
				   "       tern config --reference\n"
				   "\n"
				   "Prints the settings FILE changes from the defaults, or with --all\n"
				   "every effective setting. Exits 1 naming file and line on errors.\n"
				   "--reference prints the table of every key (as in README.md).\n";

struct args {
	const char *conf;
	bool all;
	bool hash;
	bool remove;
	int npos;
	char *pos[64];
};

/* Parse "-c FILE", "--all", "--help" and positional arguments. Returns 0, 1 for
 * --help (usage printed), -1 on error (message printed). */
static int parse_args(int argc, char **argv, int first, const char *usage, struct args *a)
{
	memset(a, 0, sizeof *a);
	for (int i = first; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 1;
		}
		if (!strcmp(argv[i], "-c")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tern: -c needs a FILE\n%s", usage);
				return -1;
			}
			a->conf = argv[++i];
		} else if (!strcmp(argv[i], "--all")) {
			a->all = true;
		} else if (!strcmp(argv[i], "--hash")) {
			a->hash = true;
		} else if (!strcmp(argv[i], "--remove")) {
			a->remove = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "tern: unknown option '%s'\n%s", argv[i], usage);
			return -1;
		} else if (a->npos < 64) {
			a->pos[a->npos++] = argv[i];
		} else {
			fprintf(stderr, "tern: too many arguments\n");
			return -1;
		}
	}
	if (!a->conf) {
		fprintf(stderr, "tern: -c FILE is required\n%s", usage);
		return -1;
	}
	return 0;
}

static struct config *load(const char *path)
{
	char *err = NULL;
	struct config *c = config_load(path, &err);
	if (!c) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
	}
	return c;
}

static struct accounts *open_accounts(const struct config *c)
{
	char *err = NULL;
	/* Run as the server's user, so what we create in data_dir is its own
	 * (and root never writes into a directory that user controls). */
	if (privdrop_prepare(c) < 0 || privdrop_now(c) < 0)
		return NULL;
	if (mkdir_p(c->data_dir, 0700) < 0) {
		fprintf(stderr, "tern: cannot create %s: %s\n", c->data_dir, strerror(errno));
		return NULL;
	}
	struct accounts *a = accounts_open(c->data_dir, &err);
	if (!a) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
	}
	return a;
}

static bool domain_ok(const struct config *c, const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (at && config_is_local_domain(c, at + 1))
		return true;
	fprintf(stderr, "tern: %s is not in a local domain (domains =", addr);
	for (size_t i = 0; i < c->domains.n; i++)
		fprintf(stderr, " %s", c->domains.v[i]);
	fprintf(stderr, ")\n");
	return false;
}

/* Read one line from fd 0 into a malloc'd string, without its line end. */
static char *read_line_stdin(void)
{
	size_t cap = 256, n = 0;
	char *s = xmalloc(cap);
	for (;;) {
		char ch;
		ssize_t r = read(0, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || ch == '\n')
			break;
		if (n + 1 >= cap) {
			if (cap > 4096)
				break;
			cap *= 2;
			s = xrealloc(s, cap);
		}
		s[n++] = ch;
	}
	if (n > 0 && s[n - 1] == '\r')
		n--;
	s[n] = 0;
	return s;
}

static char *prompt_noecho(const char *prompt)
{
	struct termios old, quiet;
	fputs(prompt, stderr);
	fflush(stderr);
	bool tty = tcgetattr(0, &old) == 0;
	if (tty) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(0, TCSAFLUSH, &quiet);
	}
	char *s = read_line_stdin();
	if (tty) {
		tcsetattr(0, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	return s;
}

static char *read_password(void)
{
	char *pw;
	if (isatty(0)) {
		pw = prompt_noecho("New password: ");
		char *again = prompt_noecho("Repeat password: ");
		bool same = !strcmp(pw, again);
		free(again);
		if (!same) {
			fprintf(stderr, "tern: passwords do not match\n");
			free(pw);
			return NULL;
		}
	} else {
		pw = read_line_stdin();
	}
	if (!*pw) {
		fprintf(stderr, "tern: empty password refused\n");
		free(pw);
		return NULL;
	}
	return pw;
}

static void print_user(const char *address, void *ctx)
{
	(void)ctx;
	printf("%s\n", address);
}

static void print_alias(const char *alias, const char *target, void *ctx)
{
	(void)ctx;
	printf("%s -> %s\n", alias, target);
}

/* A new account's Maildir, so it exists before the first delivery. */
static int make_maildir(const struct config *c, const char *addr, const char *how, char **err_r)
{
	char *root = maildir_account_path(c->data_dir, addr);
	int r = root ? maildir_create(root, err_r) : -1;
	if (!root)
		*err_r = xasprintf("%s cannot be a mailbox path", addr);
	else if (r == 0)
		printf("added %s%s%s (mail in %s)\n", addr, *how ? " " : "", how, root);
	free(root);
	return r;
}

int cli_user(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-') {
		bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
		fputs(user_usage, help ? stdout : stderr);
		return help ? 0 : 2;
	}
	const char *sub = argv[1];
	struct args a;
	int r = parse_args(argc, argv, 2, user_usage, &a);
	if (r)
		return r > 0 ? 0 : 2;
	bool list = !strcmp(sub, "list");
	if (!list && strcmp(sub, "add") && strcmp(sub, "del") && strcmp(sub, "passwd") &&
	    strcmp(sub, "apop")) {
		fprintf(stderr, "tern user: unknown subcommand '%s'\n%s", sub, user_usage);
		return 2;
	}
	if ((list && a.npos != 0) || (!list && a.npos != 1)) {
		fprintf(stderr, "tern user %s: wrong number of arguments\n%s", sub, user_usage);
		return 2;
	}
	struct config *c = load(a.conf);
	if (!c)
		return 1;
	struct accounts *acc = open_accounts(c);
	if (!acc) {
		config_free(&c);
		return 1;
	}
	char *err = NULL;
	int rc = 0;
	const char *addr = a.npos ? a.pos[0] : NULL;
	if (list) {
		if (accounts_user_list(acc, print_user, NULL, &err) < 0)
			rc = 1;
	} else if (!strcmp(sub, "del")) {
		char *canon = NULL;
		bool exists = accounts_user_exists(acc, addr, &canon);
		if (accounts_user_del(acc, addr, &err) < 0) {
			rc = 1;
		} else {
			char *root = maildir_account_path(c->data_dir, exists ? canon : addr);
			printf("deleted %s; its mail is kept in %s\n", exists ? canon : addr,
			       root ? root : "(none)");
			free(root);
		}
		free(canon);
	} else if (!strcmp(sub, "apop")) {
		/* APOP needs the secret itself, not a hash (RFC 1939 7): stored apart */
		char *secret = a.remove ? NULL : read_password();
		if (!a.remove && !secret)
			rc = 1;
		else if (accounts_apop_set(acc, addr, secret, &err) < 0)
			rc = 1;
		else
			printf("APOP secret %s for %s\n", a.remove ? "removed" : "set", addr);
		if (secret) {
			explicit_bzero(secret, strlen(secret));
			free(secret);
		}
	} else if (!domain_ok(c, addr)) {
		rc = 1;
	} else if (a.hash && strcmp(sub, "add") != 0) {
		fprintf(stderr, "tern user %s: --hash only works with add\n", sub);
		rc = 2;
	} else if (a.hash) {
		char *hash = read_line_stdin();
		if (accounts_user_add_hash(acc, addr, hash, &err) < 0 ||
		    make_maildir(c, addr, "with an imported hash", &err) < 0)
			rc = 1;
		free(hash);
	} else {
		char *pw = read_password();
		if (!pw) {
			rc = 1;
		} else if (!strcmp(sub, "add")) {
			if (accounts_user_add(acc, addr, pw, &err) < 0 ||
			    make_maildir(c, addr, "", &err) < 0)
				rc = 1;
		} else {
			if (accounts_user_passwd(acc, addr, pw, &err) < 0)
				rc = 1;
			else
				printf("password changed for %s\n", addr);
		}
		if (pw) {
			explicit_bzero(pw, strlen(pw));
			free(pw);
		}
	}
	if (err) {
		fprintf(stderr, "tern user %s: %s\n", sub, err);
		free(err);
		rc = 1;
	}
	accounts_close(&acc);
	config_free(&c);
	return rc;
}

int cli_alias(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-') {
		bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
		fputs(alias_usage, help ? stdout : stderr);
		return help ? 0 : 2;
	}
	const char *sub = argv[1];
	struct args a;
	int r = parse_args(argc, argv, 2, alias_usage, &a);
	if (r)
		return r > 0 ? 0 : 2;
	bool ok = (!strcmp(sub, "list") && a.npos == 0) || (!strcmp(sub, "add") && a.npos >= 2) ||
		  (!strcmp(sub, "del") && a.npos >= 1);
	if (!ok) {
		fprintf(stderr, "tern alias %s: wrong subcommand or arguments\n%s", sub,
			alias_usage);
		return 2;
	}
	struct config *c = load(a.conf);
	if (!c)
		return 1;
	struct accounts *acc = open_accounts(c);
	if (!acc) {
		config_free(&c);
		return 1;
	}
	char *err = NULL;
	int rc = 0;
	if (!strcmp(sub, "list")) {
		if (accounts_alias_list(acc, print_alias, NULL, &err) < 0)
			rc = 1;
	} else if (!strcmp(sub, "add")) {
		if (!domain_ok(c, a.pos[0]))
			rc = 1;
		else if (accounts_alias_add(acc, a.pos[0], (const char *const *)&a.pos[1],
					    (size_t)a.npos - 1, &err) < 0)
			rc = 1;
		else
			printf("alias %s -> %d target(s)\n", a.pos[0], a.npos - 1);
	} else {
		if (accounts_alias_del(acc, a.pos[0], (const char *const *)&a.pos[1],
				       (size_t)a.npos - 1, &err) < 0)
			rc = 1;
		else
			printf("alias %s updated\n", a.pos[0]);
	}
	if (err) {
		fprintf(stderr, "tern alias %s: %s\n", sub, err);
		free(err);
		rc = 1;
	}
	accounts_close(&acc);
	config_free(&c);
	return rc;
}

int cli_config(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--reference")) {
		config_doc_table(stdout);
		return 0;
	}
	struct args a;
	int r = parse_args(argc, argv, 1, config_usage, &a);
	if (r)
		return r > 0 ? 0 : 2;
	struct config *c = load(a.conf);
	if (!c)
		return 1;
	config_dump(c, a.all, stdout);
	config_free(&c);
	return 0;
}
