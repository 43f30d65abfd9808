/* SPDX-License-Identifier: MIT */
/* Configuration parser: defaults, every value type, and errors naming file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"

static struct config *parse(const char *text, char **err)
{
	return config_parse("t.conf", "/base", text, strlen(text), err);
}

static void test_defaults(void **state)
{
	(void)state;
	char *err = NULL;
	struct config *c = parse("hostname = mx.example.org\n", &err);
	assert_non_null(c);
	assert_null(err);
	assert_string_equal(c->hostname, "mx.example.org");
	assert_int_equal(c->domains.n, 1);
	assert_string_equal(c->domains.v[0], "mx.example.org");
	assert_string_equal(c->data_dir, "/var/lib/tern");
	assert_string_equal(c->tls_cert, "/var/lib/tern/tls/cert.pem");
	assert_string_equal(c->tls_key, "/var/lib/tern/tls/key.pem");
	assert_int_equal(c->max_message_size, 50 * 1024 * 1024);
	assert_int_equal(c->smtp_listen.n, 0);
	assert_int_equal(c->smtp_timeout, 300);
	assert_false(c->demo_account);
	assert_int_equal(config_line(c, "hostname"), 1);
	assert_int_equal(config_line(c, "data_dir"), 0);
	config_free(&c);
	assert_null(c);
}

static void test_values(void **state)
{
	(void)state;
	char *err = NULL;
	const char *text = "# a comment\n"
			   "  hostname = MX.Example.ORG   # trailing comment\n"
			   "domains = example.org, Example.NET  other.test\r\n"
			   "\n"
			   "data_dir = ./var\n"
			   "tls_cert = /etc/ssl/c.pem\n"
			   "max_message_size = 10M\n"
			   "smtp_listen = 127.0.0.1:2525 [::1]:2525 *:25\n"
			   "imap_listen =\n"
			   "demo_account = yes\n"
			   "smtp_timeout = 10m\n"
			   "log_level = debug\n";
	struct config *c = parse(text, &err);
	assert_non_null(c);
	assert_string_equal(c->hostname, "mx.example.org");
	assert_int_equal(c->domains.n, 3);
	assert_string_equal(c->domains.v[1], "example.net");
	assert_true(config_is_local_domain(c, "EXAMPLE.org"));
	assert_false(config_is_local_domain(c, "example.com"));
	assert_string_equal(c->data_dir, "/base/var");
	assert_string_equal(c->tls_cert, "/etc/ssl/c.pem");
	assert_string_equal(c->tls_key, "/base/var/tls/key.pem");
	assert_int_equal(c->max_message_size, 10 * 1024 * 1024);
	assert_int_equal(c->smtp_listen.n, 3);
	assert_string_equal(c->smtp_listen.v[1], "[::1]:2525");
	assert_int_equal(c->imap_listen.n, 0);
	assert_true(c->demo_account);
	assert_int_equal(c->smtp_timeout, 600);
	assert_string_equal(c->log_level, "debug");
	assert_int_equal(config_line(c, "smtp_listen"), 8);
	config_free(&c);
}

static const struct {
	const char *text;
	const char *want; /* expected error text */
} bad[] = {
	{ "nonsense = 1\n", "t.conf:1: unknown key \"nonsense\"" },
	{ "\n\nhostname\n", "t.conf:3: expected \"key = value\"" },
	{ "= x\n", "t.conf:1: missing key before '='" },
	{ "max_message_size = ten\n", "t.conf:1: max_message_size: bad value \"ten\": expected a "
				      "size in bytes (suffix K, M or G allowed)" },
	{ "max_message_size = 10X\n", "t.conf:1: max_message_size: bad value \"10X\"" },
	{ "max_message_size = 12\n", "t.conf:1: max_message_size: bad value \"12\": value out of range" },
	{ "smtp_listen = localhost\n", "t.conf:1: smtp_listen: bad value \"localhost\": expected addr:port" },
	{ "smtp_listen = 1.2.3.4:99999\n", "t.conf:1: smtp_listen: bad value" },
	{ "smtp_listen = [::1:25\n", "t.conf:1: smtp_listen: bad value" },
	{ "hostname = bad_name!\n", "t.conf:1: hostname: bad value \"bad_name!\": expected a host name" },
	{ "hostname =\n", "t.conf:1: hostname: bad value \"\"" },
	{ "domains = a..b\n", "t.conf:1: domains: bad value" },
	{ "demo_account = maybe\n", "t.conf:1: demo_account: bad value \"maybe\": expected yes or no" },
	{ "smtp_timeout = 0\n", "t.conf:1: smtp_timeout: bad value \"0\": value out of range" },
	{ "log_level = loud\n", "t.conf:1: log_level: bad value" },
	{ "hostname = a.b\nhostname = c.d\n", "t.conf:2: hostname is already set on line 1" },
	{ "max_recipients = 99999999999999999999999\n", "t.conf:1: max_recipients: bad value" },
};

static void test_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *err = NULL;
		struct config *c = parse(bad[i].text, &err);
		assert_null(c);
		assert_non_null(err);
		if (strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
			fail_msg("case %zu: got \"%s\", want prefix \"%s\"", i, err, bad[i].want);
		free(err);
	}
}

static void test_nul_and_long_line(void **state)
{
	(void)state;
	char *err = NULL;
	const char text[] = "hostname = a\0b\n";
	struct config *c = config_parse("t.conf", "/", text, sizeof text - 1, &err);
	assert_null(c);
	assert_string_equal(err, "t.conf:1: NUL character");
	free(err);
	char *big = malloc(10000);
	memset(big, 'x', 9999);
	big[9999] = 0;
	c = parse(big, &err);
	assert_null(c);
	assert_string_equal(err, "t.conf:1: line too long");
	free(err);
	free(big);
}

static void test_every_key_documented(void **state)
{
	(void)state;
	assert_true(config_nkeys() >= 14);
	for (size_t i = 0; i < config_nkeys(); i++) {
		assert_non_null(config_key_name(i));
		assert_non_null(config_key_doc(i));
		assert_true(strlen(config_key_doc(i)) > 10);
	}
	/* the keys issue 2 names, spelled exactly */
	const char *keys[] = { "hostname", "domains", "data_dir", "tls_cert", "tls_key",
			       "max_message_size", "smtp_listen", "submission_listen",
			       "submissions_listen", "imap_listen", "imaps_listen", "pop3_listen",
			       "pop3s_listen", "user" };
	for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
		bool found = false;
		for (size_t i = 0; i < config_nkeys(); i++)
			if (!strcmp(config_key_name(i), keys[k]))
				found = true;
		if (!found)
			fail_msg("missing key %s", keys[k]);
	}
}

static void test_path_normalisation(void **state)
{
	(void)state;
	static const char *cases[][2] = {
		{ "/a/b/../c", "/a/c" },       { "/a/./b//c/", "/a/b/c" }, { "/../a", "/a" },
		{ "/a/..", "/" },              { "/", "/" },               { "./var", "/base/var" },
		{ "../var", "/var" },          { "/x/../../y", "/y" },     { "a/../../b", "/b" },
		{ "/a/b/../../..", "/" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[300], *err = NULL;
		snprintf(text, sizeof text, "data_dir = %s\n", cases[i][0]);
		struct config *c = parse(text, &err);
		assert_non_null(c);
		if (strcmp(c->data_dir, cases[i][1]) != 0)
			fail_msg("%s: got %s, want %s", cases[i][0], c->data_dir, cases[i][1]);
		config_free(&c);
	}
}

static void test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/tern-conf-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof path, "%s/tern.conf", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("hostname = h.test\ndata_dir = ../data\n", f);
	fclose(f);
	char *err = NULL;
	struct config *c = config_load(path, &err);
	assert_non_null(c);
	char want[300];
	snprintf(want, sizeof want, "%s/data", "/tmp");
	assert_string_equal(c->data_dir, want);
	config_free(&c);
	unlink(path);
	c = config_load(path, &err);
	assert_null(c);
	assert_non_null(strstr(err, "No such file"));
	assert_non_null(strstr(err, path));
	free(err);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nul_and_long_line),
		cmocka_unit_test(test_every_key_documented),
		cmocka_unit_test(test_path_normalisation),
		cmocka_unit_test(test_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
