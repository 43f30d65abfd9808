/* SPDX-License-Identifier: MIT */
/* Parse-throughput benchmark: Tern's one-pass MIME parser against GMime 3
 * (Debian's libgmime-3.0-dev) on the same in-memory corpus, in the same run.
 * GMime is linked only into this tool, never into Tern. Built and run by
 * tools/bench_mime.sh; prints MB/s for both and the ratio.
 *   bench_mime DIR [ROUNDS]   every file in DIR is one message */
#include <dirent.h>
#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime/imap_view.h"
#include "mime/message.h"

struct msg {
	uint8_t *p;
	size_t n;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t load(const char *dir, struct msg **out)
{
	DIR *d = opendir(dir);
	if (!d) {
		perror(dir);
		exit(1);
	}
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "rb");
		if (!f)
			continue;
		fseek(f, 0, SEEK_END);
		long l = ftell(f);
		fseek(f, 0, SEEK_SET);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			*out = realloc(*out, cap * sizeof **out);
		}
		(*out)[n].p = malloc((size_t)l + 1);
		(*out)[n].n = fread((*out)[n].p, 1, (size_t)l, f);
		fclose(f);
		n++;
	}
	closedir(d);
	return n;
}

/* A touch of each result so neither side can skip work. */
static size_t tern_parse(const struct msg *m)
{
	struct mime_message *mm = mime_parse(m->p, m->n, NULL);
	size_t r = mm->n_parts;
	mime_message_free(&mm);
	return r;
}

static size_t tern_parse_views(const struct msg *m)
{
	struct mime_message *mm = mime_parse(m->p, m->n, NULL);
	struct buf b = BUF_INIT(0);
	if (mime_imap_bodystructure(mm, 0, true, &b) < 0 || mime_imap_envelope(mm, 0, &b) < 0)
		exit(1);
	size_t r = b.len;
	buf_deinit(&b);
	mime_message_free(&mm);
	return r;
}

static size_t count_parts(GMimeObject *o)
{
	if (GMIME_IS_MULTIPART(o)) {
		size_t r = 1;
		int n = g_mime_multipart_get_count(GMIME_MULTIPART(o));
		for (int i = 0; i < n; i++)
			r += count_parts(g_mime_multipart_get_part(GMIME_MULTIPART(o), i));
		return r;
	}
	if (GMIME_IS_MESSAGE_PART(o)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(o));
		return 1 + (inner ? count_parts(g_mime_message_get_mime_part(inner)) : 0);
	}
	return 1;
}

static size_t gmime_parse(const struct msg *m)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)m->p, m->n);
	GMimeParser *p = g_mime_parser_new_with_stream(s);
	GMimeMessage *msg = g_mime_parser_construct_message(p, NULL);
	size_t r = 0;
	if (msg) {
		GMimeObject *root = g_mime_message_get_mime_part(msg);
		r = root ? count_parts(root) : 0;
		g_object_unref(msg);
	}
	g_object_unref(p);
	g_object_unref(s);
	return r;
}

static double run(const char *name, size_t (*fn)(const struct msg *), const struct msg *v, size_t n,
		  int rounds, double total)
{
	size_t sink = 0;
	double best = 1e30;
	for (int r = 0; r < rounds; r++) {
		double t0 = now();
		for (size_t i = 0; i < n; i++)
			sink += fn(&v[i]);
		double dt = now() - t0;
		if (dt < best)
			best = dt;
	}
	double mbs = total / best / 1e6;
	printf("%-28s %8.1f MB/s  (best of %d rounds, %.3f s/round, sink %zu)\n", name, mbs, rounds,
	       best, sink);
	return mbs;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [ROUNDS]\n", argv[0]);
		return 2;
	}
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	struct msg *v = NULL;
	size_t n = load(argv[1], &v);
	double total = 0;
	for (size_t i = 0; i < n; i++)
		total += (double)v[i].n;
	g_mime_init();
	printf("corpus: %zu messages, %.1f MB\n", n, total / 1e6);
	double g = run("gmime 3 (construct_message)", gmime_parse, v, n, rounds, total);
	double t = run("tern mime_parse", tern_parse, v, n, rounds, total);
	double tv = run("tern parse+BODYSTRUCTURE+ENV", tern_parse_views, v, n, rounds, total);
	printf("ratio tern/gmime: %.2fx (parse), %.2fx (parse+views)\n", t / g, tv / g);
	g_mime_shutdown();
	for (size_t i = 0; i < n; i++)
		free(v[i].p);
	free(v);
	return 0;
}
