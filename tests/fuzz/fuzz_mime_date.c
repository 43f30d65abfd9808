/* SPDX-License-Identifier: MIT */
/* Fuzz the RFC 5322 date parser: accepted dates have sane fields. */
#include <stdint.h>
#include <stdlib.h>

#include "mime/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_date d;
	if (mime_date_parse(data, size, &d) == 0) {
		if (d.tz_minutes < -99 * 60 - 59 || d.tz_minutes > 99 * 60 + 59)
			abort();
		/* years 1900..9999 only */
		if (d.t < -2300000000LL || d.t > 253402400000LL)
			abort();
	}
	return 0;
}
