/* SPDX-License-Identifier: MIT */
/* Compiler attributes, assertions and the panic used for our own bugs.
 * Client input must never reach ASSERT: that is what replies are for. */
#ifndef TERN_BASE_ERR_H
#define TERN_BASE_ERR_H

#define ATTR_FORMAT(f, a) __attribute__((format(printf, f, a)))
#define ATTR_WARN_UNUSED __attribute__((warn_unused_result))
#define ATTR_NORETURN __attribute__((noreturn))
#define ATTR_UNUSED __attribute__((unused))

void panic_at(const char *file, int line, const char *fmt, ...) ATTR_FORMAT(3, 4) ATTR_NORETURN;

#define panic(...) panic_at(__FILE__, __LINE__, __VA_ARGS__)
#define ASSERT(x)                                                                                  \
	do {                                                                                       \
		if (!(x))                                                                          \
			panic_at(__FILE__, __LINE__, "assertion failed: %s", #x);                 \
	} while (0)
#define UNREACHABLE() panic_at(__FILE__, __LINE__, "unreachable")

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

#endif
