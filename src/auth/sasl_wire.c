/* SPDX-License-Identifier: MIT */
/* SASL framing shared by the protocol engines (see sasl_wire.h). */
#include "auth/sasl_wire.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"

enum sasl_wire_kind sasl_wire_decode(const char *p, size_t n, bool initial, uint8_t **out,
				     size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (n > SASL_WIRE_MAX_LINE)
		return SASL_WIRE_TOO_LONG;
	if (!initial && n == 1 && p[0] == '*')
		return SASL_WIRE_CANCEL; /* RFC 4954 4, RFC 5034 4, RFC 9051 6.2.2 */
	if (initial && n == 1 && p[0] == '=') {
		*out = xmalloc(1);
		return SASL_WIRE_DATA;
	}
	if (initial && n == 0)
		return SASL_WIRE_BAD; /* an empty initial response is spelt "=" */
	if (n == 0) {
		*out = xmalloc(1);
		return SASL_WIRE_DATA;
	}
	/* base64_decode rejects characters outside the alphabet and misplaced
	 * padding, as RFC 4954 4 requires */
	if (base64_decode(p, n, out, outlen) < 0) {
		*out = NULL;
		*outlen = 0;
		return SASL_WIRE_BAD;
	}
	if (!*out)
		*out = xmalloc(1);
	return SASL_WIRE_DATA;
}

void sasl_wire_free(uint8_t *p, size_t n)
{
	if (!p)
		return;
	explicit_bzero(p, n);
	free(p);
}

void sasl_wire_set_secret(char **slot, const char *v)
{
	if (*slot) {
		explicit_bzero(*slot, strlen(*slot));
		free(*slot);
	}
	*slot = v ? xstrdup(v) : NULL;
}

void sasl_wire_challenge(struct buf *b, const char *prefix, const uint8_t *p, size_t n)
{
	buf_xappend(b, prefix, strlen(prefix));
	if (n) {
		char *b64 = base64_encode(p, n);
		buf_xappend(b, b64, strlen(b64));
		free(b64);
	}
	buf_xappend(b, "\r\n", 2);
}

char *sasl_wire_scram_username(const uint8_t *p, size_t n)
{
	/* gs2-header = gs2-cbind-flag "," [authzid] ","; then "n=" saslname */
	if (n == 0)
		return NULL;
	const uint8_t *c1 = memchr(p, ',', n);
	if (!c1)
		return NULL;
	const uint8_t *c2 = memchr(c1 + 1, ',', n - (size_t)(c1 + 1 - p));
	if (!c2)
		return NULL;
	const uint8_t *u = c2 + 1, *end = p + n;
	if (end - u < 3 || u[0] != 'n' || u[1] != '=')
		return NULL;
	u += 2;
	const uint8_t *e = memchr(u, ',', (size_t)(end - u));
	if (!e || e == u)
		return NULL;
	char *out = xmalloc((size_t)(e - u) + 1);
	size_t o = 0;
	for (const uint8_t *q = u; q < e; q++) {
		if (*q == '\0')
			goto bad;
		if (*q != '=') {
			out[o++] = (char)*q;
			continue;
		}
		/* RFC 5802 5.1: "=2C" is ',' and "=3D" is '=' */
		if (e - q >= 3 && q[1] == '2' && q[2] == 'C')
			out[o++] = ',';
		else if (e - q >= 3 && q[1] == '3' && q[2] == 'D')
			out[o++] = '=';
		else
			goto bad;
		q += 2;
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}
