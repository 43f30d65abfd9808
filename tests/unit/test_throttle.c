/* SPDX-License-Identifier: MIT */
/* Failed-login throttling: the delay schedule, reset on success, decay after
 * 15 quiet minutes, independence of addresses and bounded eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "auth/throttle.h"
#include "base/err.h"

#define MIN_MS (60u * 1000u)

static void test_schedule(void **state)
{
	(void)state;
	/* want[k] = delay after k consecutive failures */
	static const unsigned want[] = { 0,    0,    250,   500,   1000,  2000,
					 4000, 8000, 15000, 15000, 15000, 15000 };
	struct throttle *t = throttle_new(64);
	uint64_t now = 1000;
	for (size_t k = 0; k < N_ELEMENTS(want); k++) {
		assert_int_equal(throttle_delay_ms(t, "192.0.2.1", now), want[k]);
		throttle_failure(t, "192.0.2.1", now);
		now += 100;
	}
	/* many more failures stay at the cap */
	for (int i = 0; i < 2000; i++)
		throttle_failure(t, "192.0.2.1", now);
	assert_int_equal(throttle_delay_ms(t, "192.0.2.1", now), 15000);
	throttle_free(&t);
	assert_null(t);
}

static void test_success_resets(void **state)
{
	(void)state;
	struct throttle *t = throttle_new(64);
	for (int i = 0; i < 5; i++)
		throttle_failure(t, "2001:db8::1", 10);
	assert_int_equal(throttle_delay_ms(t, "2001:db8::1", 10), 2000);
	throttle_success(t, "2001:db8::1");
	assert_int_equal(throttle_delay_ms(t, "2001:db8::1", 10), 0);
	throttle_failure(t, "2001:db8::1", 20);
	throttle_failure(t, "2001:db8::1", 20);
	assert_int_equal(throttle_delay_ms(t, "2001:db8::1", 20), 250);
	/* success for an unknown address is harmless */
	throttle_success(t, "198.51.100.7");
	throttle_free(&t);
}

static void test_decay(void **state)
{
	(void)state;
	struct throttle *t = throttle_new(64);
	uint64_t t0 = 5 * MIN_MS;
	for (int i = 0; i < 4; i++)
		throttle_failure(t, "192.0.2.9", t0);
	assert_int_equal(throttle_delay_ms(t, "192.0.2.9", t0 + 15 * MIN_MS - 1), 1000);
	assert_int_equal(throttle_delay_ms(t, "192.0.2.9", t0 + 15 * MIN_MS), 0);
	/* after the quiet period a failure counts as the first again */
	throttle_failure(t, "192.0.2.9", t0 + 16 * MIN_MS);
	assert_int_equal(throttle_delay_ms(t, "192.0.2.9", t0 + 16 * MIN_MS), 0);
	throttle_failure(t, "192.0.2.9", t0 + 16 * MIN_MS);
	assert_int_equal(throttle_delay_ms(t, "192.0.2.9", t0 + 16 * MIN_MS), 250);
	/* failures keep the entry alive: the clock restarts with each */
	for (int i = 1; i <= 4; i++)
		throttle_failure(t, "192.0.2.9", t0 + 16 * MIN_MS + (uint64_t)i * 10 * MIN_MS);
	assert_int_equal(throttle_delay_ms(t, "192.0.2.9", t0 + 66 * MIN_MS), 4000);
	/* a clock that goes backwards does not expire or crash anything */
	assert_int_equal(throttle_delay_ms(t, "192.0.2.9", 0), 4000);
	throttle_free(&t);
}

static void test_independent_and_bounded(void **state)
{
	(void)state;
	struct throttle *t = throttle_new(8);
	throttle_failure(t, "a", 1);
	throttle_failure(t, "a", 1);
	throttle_failure(t, "b", 1);
	assert_int_equal(throttle_delay_ms(t, "a", 1), 250);
	assert_int_equal(throttle_delay_ms(t, "b", 1), 0);
	assert_int_equal(throttle_delay_ms(t, "c", 1), 0);
	/* flood with many addresses: memory is fixed, nothing breaks, and the
	 * newest entries are kept (the oldest are evicted) */
	char addr[32];
	for (unsigned i = 0; i < 10000; i++) {
		snprintf(addr, sizeof(addr), "10.0.%u.%u", i / 256, i % 256);
		throttle_failure(t, addr, 100 + i);
		throttle_failure(t, addr, 100 + i);
	}
	assert_int_equal(throttle_delay_ms(t, addr, 100 + 10000), 250);
	throttle_free(&t);
	/* long keys are accepted (compared on a bounded prefix) */
	t = throttle_new(0);
	char lng[300];
	for (size_t i = 0; i < sizeof(lng) - 1; i++)
		lng[i] = (char)('a' + i % 26);
	lng[sizeof(lng) - 1] = '\0';
	throttle_failure(t, lng, 1);
	throttle_failure(t, lng, 1);
	assert_int_equal(throttle_delay_ms(t, lng, 1), 250);
	throttle_free(&t);
	throttle_free(&t); /* NULL is fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schedule),
		cmocka_unit_test(test_success_resets),
		cmocka_unit_test(test_decay),
		cmocka_unit_test(test_independent_and_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
