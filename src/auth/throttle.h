/* SPDX-License-Identifier: MIT */
/* Slows down repeated failed logins from one client address: each failure
 * doubles the delay before the next answer (from 0 after the first to a cap),
 * and it decays after a quiet period. A fixed-size table: memory stays bounded
 * whatever the attacker does. Time is passed in, so tests need no clock. */
#ifndef TERN_AUTH_THROTTLE_H
#define TERN_AUTH_THROTTLE_H

#include <stdint.h>

struct throttle;

struct throttle *throttle_new(unsigned slots);
void throttle_free(struct throttle **t);
/* How long to wait (ms) before answering an authentication attempt from addr. */
unsigned throttle_delay_ms(struct throttle *t, const char *addr, uint64_t now_ms);
void throttle_failure(struct throttle *t, const char *addr, uint64_t now_ms);
void throttle_success(struct throttle *t, const char *addr);

#endif
