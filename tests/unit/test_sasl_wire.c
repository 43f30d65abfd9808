/* SPDX-License-Identifier: MIT */
/* auth/sasl_wire: client response decoding (initial and continuation forms,
 * "*", "=", bad base64, the line limit), challenge encoding, and the SCRAM
 * username used for logging and throttling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth/sasl_wire.h"
#include "base/buf.h"
#include "base/util.h"

static void test_decode(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		bool initial;
		enum sasl_wire_kind want;
		const char *data; /* decoded, for DATA */
		size_t datalen;
	} t[] = {
		{ "*", false, SASL_WIRE_CANCEL, NULL, 0 },
		{ "*", true, SASL_WIRE_BAD, NULL, 0 },
		{ "=", true, SASL_WIRE_DATA, "", 0 },
		{ "=", false, SASL_WIRE_BAD, NULL, 0 },
		{ "", false, SASL_WIRE_DATA, "", 0 },
		{ "", true, SASL_WIRE_BAD, NULL, 0 },
		{ "AHVAeC50ZXN0AHB3", true, SASL_WIRE_DATA, "\0u@x.test\0pw", 12 },
		{ "AHVAeC50ZXN0AHB3", false, SASL_WIRE_DATA, "\0u@x.test\0pw", 12 },
		{ "cHc=", false, SASL_WIRE_DATA, "pw", 2 },
		{ "cA==", false, SASL_WIRE_DATA, "p", 1 },
		{ "cHc", false, SASL_WIRE_BAD, NULL, 0 },
		{ "=AAA", false, SASL_WIRE_BAD, NULL, 0 },	 /* RFC 4954 4's examples */
		{ "AAA=BBBB", false, SASL_WIRE_BAD, NULL, 0 },
		{ "cHc=\x01", false, SASL_WIRE_BAD, NULL, 0 },
		{ "cH c", false, SASL_WIRE_BAD, NULL, 0 },
		{ "**", false, SASL_WIRE_BAD, NULL, 0 },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		uint8_t *out = (uint8_t *)"x";
		size_t outlen = 99;
		enum sasl_wire_kind k =
			sasl_wire_decode(t[i].in, strlen(t[i].in), t[i].initial, &out, &outlen);
		if (k != t[i].want)
			fail_msg("%zu %s: got %d want %d", i, t[i].in, (int)k, (int)t[i].want);
		if (k == SASL_WIRE_DATA) {
			assert_non_null(out);
			assert_int_equal(outlen, t[i].datalen);
			assert_memory_equal(out, t[i].data, outlen);
		} else {
			assert_null(out);
			assert_int_equal(outlen, 0);
		}
		sasl_wire_free(out, outlen);
	}
	/* the line limit of RFC 4954 4 */
	size_t n = SASL_WIRE_MAX_LINE + 4;
	char *big = xmalloc(n);
	memset(big, 'A', n);
	uint8_t *out;
	size_t outlen;
	assert_int_equal(sasl_wire_decode(big, n, false, &out, &outlen), SASL_WIRE_TOO_LONG);
	assert_int_equal(sasl_wire_decode(big, SASL_WIRE_MAX_LINE, false, &out, &outlen),
			 SASL_WIRE_DATA);
	assert_int_equal(outlen, SASL_WIRE_MAX_LINE / 4 * 3);
	sasl_wire_free(out, outlen);
	free(big);
	sasl_wire_free(NULL, 0);
}

static void test_challenge(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(0);
	sasl_wire_challenge(&b, "334 ", NULL, 0);
	sasl_wire_challenge(&b, "+ ", (const uint8_t *)"Username:", 9);
	assert_string_equal(buf_cstr(&b), "334 \r\n+ VXNlcm5hbWU6\r\n");
	buf_deinit(&b);
}

static void test_scram_username(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} t[] = {
		{ "n,,n=user,r=abc", "user" },
		{ "y,,n=bob@example.org,r=x", "bob@example.org" },
		{ "n,a=x,n=u=2Cv=3Dw,r=1", "u,v=w" },
		{ "n,,n=u=2X,r=1", NULL },
		{ "n,,n=,r=1", NULL },
		{ "n,,n=user", NULL },
		{ "n,,u=user,r=1", NULL },
		{ "n,n=user,r=1", NULL },
		{ "", NULL },
		{ "n", NULL },
	};
	for (size_t i = 0; i < N_ELEMENTS(t); i++) {
		char *u = sasl_wire_scram_username((const uint8_t *)t[i].in, strlen(t[i].in));
		if (t[i].want) {
			assert_non_null(u);
			assert_string_equal(u, t[i].want);
		} else {
			assert_null(u);
		}
		free(u);
	}
	/* a NUL inside the name */
	static const uint8_t nul[] = { 'n', ',', ',', 'n', '=', 'a', 0, 'b', ',', 'r', '=', '1' };
	assert_null(sasl_wire_scram_username(nul, sizeof nul));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_challenge),
		cmocka_unit_test(test_scram_username),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
