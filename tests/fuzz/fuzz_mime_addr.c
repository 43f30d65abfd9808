/* SPDX-License-Identifier: MIT */
/* Fuzz the address-list parser: every entry must be well formed (group
 * markers balanced, strings inside the private storage). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_addr_list l;
	mime_addr_parse(data, size, 0, &l);
	int depth = 0;
	size_t total = 0;
	for (size_t i = 0; i < l.n; i++) {
		const struct mime_addr *a = &l.v[i];
		if (a->is_group_start)
			depth++;
		if (a->is_group_end)
			depth--;
		if (depth < 0 || depth > 1)
			abort();
		const char *s[4] = { a->name, a->route, a->mailbox, a->host };
		for (int k = 0; k < 4; k++)
			if (s[k])
				total += strlen(s[k]);
	}
	if (depth != 0 || total > 2 * size + 64 * l.n)
		abort();
	mime_addr_list_free(&l);
	mime_addr_parse(data, size, 3, &l);
	if (l.n > 3)
		abort();
	mime_addr_list_free(&l);
	return 0;
}
