/* SPDX-License-Identifier: MIT */
/* Fuzz the mailbox name rules (store/mbox_name.c). A name the client sends
 * is either refused or canonical; its Maildir++ folder is one path
 * component (no '/', no "..", no control characters) that maps back to
 * the same name. A folder name found on disk is either ignored or read as a
 * name whose folder is exactly that folder (no two folders alias). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/mailbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_dir(const char *d)
{
	if (strchr(d, '/') != NULL || strstr(d, "..") != NULL)
		abort();
	for (const char *p = d; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || (unsigned char)*p >= 0x80)
			abort();
	if (d[0] != '\0' && (d[0] != '.' || d[1] == '\0'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *c = mbox_name_canon((const char *)data, size);
	if (c != NULL) {
		size_t n = strlen(c);
		if (n != size || n == 0 || c[0] == '/' || c[n - 1] == '/' || strstr(c, "//"))
			abort();
		char *d = mbox_name_to_dir(c);
		check_dir(d);
		char *back = mbox_dir_to_name(d);
		if (back == NULL || strcmp(back, c) != 0)
			abort();
		free(back);
		free(d);
		free(c);
	}
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	char *name = mbox_dir_to_name(s);
	if (name != NULL) {
		char *d = mbox_name_to_dir(name);
		if (strcmp(d, s) != 0)
			abort();
		free(d);
		free(name);
	}
	free(s);
	return 0;
}
