/*
 * The fuzz targets' canary (issue 12 item 4): buffers are filled past the
 * input with a printable 4-byte pattern the input does not contain; if
 * any 4 bytes of it (any rotation) show up in what the code under test
 * produced (an answer, a log line, a parsed string), it read past what it
 * was given. Printable, so it passes JSON escaping and shows where a leak
 * would reach a person.
 */
#ifndef MTLS_FUZZ_CANARY_H
#define MTLS_FUZZ_CANARY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 1 when <s>[0..n) holds 4 bytes of the pattern <c>, in any rotation. */
static inline int
canary_in(const char *c, const void *s, size_t n)
{
	size_t r, k;

	for (r = 0; c != NULL && r < 4; r++) {
		char w[4];

		for (k = 0; k < 4; k++)
			w[k] = c[(r + k) % 4];
		if (memmem(s, n, w, 4) != NULL)
			return 1;
	}
	return 0;
}

/* A pattern that <data> does not contain, or NULL (then no check). */
static inline const char *
canary_pick(const uint8_t *data, size_t len)
{
	static const char *const cand[] = { "Kq7#", "Zx9@", "Wv3!", "Jm5$",
	    "Yp2&" };
	size_t i;

	for (i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
		if (!canary_in(cand[i], data, len))
			return cand[i];
	return NULL;
}

#endif
