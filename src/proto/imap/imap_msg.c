/* SPDX-License-Identifier: MIT */
/* The message accessor (imap_msg.h): lazy part tree and exact reads. */
#include "proto/imap/imap_msg.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define MSG_READ_CHUNK 65536

int imap_msg_pread(struct imap_msg *msg, uint64_t off, size_t len, void *buf)
{
	uint8_t *p = buf;
	if (!msg->read)
		return len ? -1 : 0;
	while (len) {
		long r = msg->read(msg->read_ctx, off, len, p);
		if (r <= 0 || (size_t)r > len)
			return -1;
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

const struct mime_message *imap_msg_tree(struct imap_msg *msg)
{
	if (msg->tree_)
		return msg->tree_;
	if (msg->mime && msg->mime_len) {
		msg->tree_ = mime_message_deserialize(msg->mime, msg->mime_len);
		/* a cached tree for a file of another size is stale: reparse */
		if (msg->tree_ && msg->size && msg->tree_->size != msg->size)
			mime_message_free(&msg->tree_);
		if (msg->tree_)
			return msg->tree_;
	}
	if (!msg->read)
		return NULL;
	struct mime_parser *p = mime_parser_new(NULL);
	uint8_t *chunk = xmalloc(MSG_READ_CHUNK);
	uint64_t off = 0;
	for (;;) {
		long r = msg->read(msg->read_ctx, off, MSG_READ_CHUNK, chunk);
		if (r < 0 || r > MSG_READ_CHUNK) {
			struct mime_message *m = mime_parser_finish(&p);
			mime_message_free(&m);
			free(chunk);
			return NULL;
		}
		if (r == 0)
			break;
		mime_parser_feed(p, chunk, (size_t)r);
		off += (uint64_t)r;
	}
	free(chunk);
	msg->tree_ = mime_parser_finish(&p);
	return msg->tree_;
}

bool imap_msg_has_keyword(const struct imap_msg *msg, const char *kw, size_t n)
{
	const char *s = msg->keywords;
	if (!s || !n)
		return false;
	size_t len = strlen(s), i = 0;
	while (i < len) {
		while (i < len && s[i] == ' ')
			i++;
		size_t j = i;
		while (j < len && s[j] != ' ')
			j++;
		if (j - i == n && ascii_strncasecmp(s + i, kw, n) == 0)
			return true;
		i = j;
	}
	return false;
}

void imap_msg_release(struct imap_msg *msg)
{
	mime_message_free(&msg->tree_);
}
