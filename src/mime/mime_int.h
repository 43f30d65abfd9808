/* SPDX-License-Identifier: MIT */
/* Private helpers shared by the files of src/mime/ (not for other modules):
 * RFC 822 lexical scanning and the message string pool. */
#ifndef TERN_MIME_INT_H
#define TERN_MIME_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "mime/message.h"

static inline bool mime_is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}
static inline bool mime_is_fws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
/* RFC 2045 5.1 tspecials, plus CTLs and space: not allowed in a token. */
bool mime_is_tspecial(uint8_t c);
/* Skips FWS and (nested) comments from *i; returns the new index. If comment
 * is non-NULL, the text of the last comment is appended to it. */
size_t mime_skip_cfws(const uint8_t *p, size_t n, size_t i, struct buf *comment);
bool mime_eq_ci(const uint8_t *p, size_t n, const char *s);

struct mime_builder {
	struct mime_message *m;
	uint32_t parts_cap, params_cap, env_cap, pool_cap;
	unsigned max_params;
};
struct mime_str mime_pool_add(struct mime_builder *b, const void *p, size_t n);
/* Index of the new parameter, or MIME_NIL past the per-message cap. */
uint32_t mime_param_add(struct mime_builder *b, struct mime_str name, struct mime_str value);
/* Parameters of a Content-Type/Disposition value starting at index i of v.
 * Returns 0, or -1 on a syntax error (Dovecot then drops all parameters). */
int mime_params_parse(struct mime_builder *b, const uint8_t *v, size_t n, size_t i,
		      uint32_t *first_r, uint32_t *count_r);
int mime_hexval(uint8_t c);

#endif
