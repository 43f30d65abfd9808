/* SPDX-License-Identifier: MIT */
/* Fuzz maildir_account_path with RCPT-like addresses: whatever it accepts
 * must be exactly "<data_dir>/mail/<domain>/<local>" with two lowercase,
 * non-empty components that cannot leave the mail directory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/maildir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_part(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.')
		abort();
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '/' || (c >= 'A' && c <= 'Z'))
			abort();
		if (i + 1 < n && s[i] == '.' && s[i + 1] == '.')
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1024)
		return 0;
	char *addr = malloc(size + 1);
	memcpy(addr, data, size);
	addr[size] = '\0'; /* an embedded NUL just ends the address early */
	char *p = maildir_account_path("/d", addr);
	if (p != NULL) {
		static const char prefix[] = "/d/mail/";
		if (strncmp(p, prefix, sizeof prefix - 1) != 0)
			abort();
		const char *dom = p + sizeof prefix - 1;
		const char *slash = strchr(dom, '/');
		if (slash == NULL || strchr(slash + 1, '/') != NULL)
			abort();
		check_part(dom, (size_t)(slash - dom));
		check_part(slash + 1, strlen(slash + 1));
		if (strlen(p) != sizeof prefix - 1 + strlen(addr))
			abort(); /* '@' became '/', nothing else added or dropped */
		free(p);
	}
	free(addr);
	return 0;
}
