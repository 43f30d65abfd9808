/* SPDX-License-Identifier: MIT */
/* Fuzz the configuration parser: any bytes give a config or an error message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *err = NULL;
	struct config *c = config_parse("fuzz.conf", "/base", (const char *)data, size, &err);
	if (c) {
		FILE *devnull = fopen("/dev/null", "w");
		if (devnull) {
			config_dump(c, true, devnull);
			fclose(devnull);
		}
		config_free(&c);
	} else if (!err) {
		abort(); /* an error must always be explained */
	}
	free(err);
	return 0;
}
