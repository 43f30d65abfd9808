/* SPDX-License-Identifier: MIT */
/* Failed-login throttling per client address.
 *
 * Policy, with k = consecutive failures from one address:
 *   k = 0 or 1   no delay (a single typo costs nothing)
 *   k >= 2       min(250 ms * 2^(k-2), 15000 ms): 250, 500, 1000, ... 8000, 15000
 * A success resets the address; 15 minutes without a failure forget it.
 *
 * Storage is a fixed array of slots allocated once. An address hashes to a
 * window of THROTTLE_PROBE consecutive slots; it takes its own slot, else a
 * free or expired one, else evicts the one with the oldest failure. So memory
 * is bounded whatever the number of addresses, and an attacker who floods the
 * table only forgets failures, never blocks anyone else. The hash is keyed
 * with a per-table random seed. Not thread-safe: one table per event loop. */
#include <stdlib.h>
#include <string.h>

#include "auth/throttle.h"
#include "base/util.h"

#define THROTTLE_PROBE 4
#define THROTTLE_KEY_MAX 64       /* IPv6 text is at most 45 octets; longer keys are cut */
#define THROTTLE_BASE_MS 250u
#define THROTTLE_CAP_MS 15000u
#define THROTTLE_FORGET_MS (15u * 60u * 1000u)
#define THROTTLE_MAX_SLOTS (1u << 24)

struct throttle_slot {
	uint64_t hash;
	uint64_t last_ms; /* time of the last failure */
	unsigned failures; /* 0 = free slot */
	char key[THROTTLE_KEY_MAX];
};

struct throttle {
	struct throttle_slot *slots;
	unsigned nslots;
	uint64_t seed;
};

struct throttle *throttle_new(unsigned slots)
{
	if (slots < THROTTLE_PROBE)
		slots = THROTTLE_PROBE;
	if (slots > THROTTLE_MAX_SLOTS)
		slots = THROTTLE_MAX_SLOTS;
	struct throttle *t = xcalloc(1, sizeof(*t));
	t->slots = xcalloc(slots, sizeof(*t->slots));
	t->nslots = slots;
	random_bytes(&t->seed, sizeof(t->seed));
	return t;
}

void throttle_free(struct throttle **tp)
{
	struct throttle *t = *tp;
	if (!t)
		return;
	free(t->slots);
	free(t);
	*tp = NULL;
}

/* FNV-1a over the seed and the key, then a final avalanche (splitmix64). */
static uint64_t key_hash(const struct throttle *t, const char *addr)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
	for (const unsigned char *p = (const unsigned char *)addr; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

static bool slot_matches(const struct throttle_slot *s, uint64_t h, const char *addr)
{
	return s->failures > 0 && s->hash == h &&
	       strncmp(s->key, addr, THROTTLE_KEY_MAX - 1) == 0;
}

static bool slot_expired(const struct throttle_slot *s, uint64_t now_ms)
{
	return now_ms >= s->last_ms && now_ms - s->last_ms >= THROTTLE_FORGET_MS;
}

static struct throttle_slot *slot_find(struct throttle *t, const char *addr, uint64_t h)
{
	for (unsigned i = 0; i < THROTTLE_PROBE; i++) {
		struct throttle_slot *s = &t->slots[(h + i) % t->nslots];
		if (slot_matches(s, h, addr))
			return s;
	}
	return NULL;
}

static unsigned delay_for(unsigned failures)
{
	if (failures <= 1)
		return 0;
	unsigned k = failures - 2;
	if (k >= 6) /* 250 << 6 = 16000 > cap */
		return THROTTLE_CAP_MS;
	unsigned d = THROTTLE_BASE_MS << k;
	return d < THROTTLE_CAP_MS ? d : THROTTLE_CAP_MS;
}

unsigned throttle_delay_ms(struct throttle *t, const char *addr, uint64_t now_ms)
{
	uint64_t h = key_hash(t, addr);
	struct throttle_slot *s = slot_find(t, addr, h);
	if (!s)
		return 0;
	if (slot_expired(s, now_ms)) {
		s->failures = 0;
		return 0;
	}
	return delay_for(s->failures);
}

void throttle_failure(struct throttle *t, const char *addr, uint64_t now_ms)
{
	uint64_t h = key_hash(t, addr);
	struct throttle_slot *s = slot_find(t, addr, h);
	if (s && slot_expired(s, now_ms))
		s->failures = 0; /* quiet for long enough: start over */
	if (!s) {
		/* a free or expired slot in the window, else the oldest failure */
		struct throttle_slot *victim = NULL;
		for (unsigned i = 0; i < THROTTLE_PROBE; i++) {
			struct throttle_slot *c = &t->slots[(h + i) % t->nslots];
			if (c->failures == 0 || slot_expired(c, now_ms)) {
				victim = c;
				break;
			}
			if (!victim || c->last_ms < victim->last_ms)
				victim = c;
		}
		s = victim;
		memset(s, 0, sizeof(*s));
		s->hash = h;
		size_t n = strnlen(addr, sizeof(s->key) - 1);
		memcpy(s->key, addr, n); /* NUL from the memset */
	}
	if (s->failures < 1000) /* the delay is capped long before */
		s->failures++;
	if (now_ms > s->last_ms)
		s->last_ms = now_ms;
}

void throttle_success(struct throttle *t, const char *addr)
{
	uint64_t h = key_hash(t, addr);
	struct throttle_slot *s = slot_find(t, addr, h);
	if (s)
		memset(s, 0, sizeof(*s));
}
