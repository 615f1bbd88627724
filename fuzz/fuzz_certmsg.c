/*
 * Fuzz target: doctor_cert_msg_count, the one byte parser mtls doctor
 * applies to what a server sends (the Certificate handshake message, in
 * both layouts). The first input byte picks the layout. Invariants: the
 * count is -1 or at most one certificate per 3 bytes; no read outside the
 * input (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doctor/doctor.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	unsigned char *p;
	int n;

	if (len < 1)
		return 0;
	/* an exact-size copy, so ASan sees any read past the end */
	if ((p = malloc(len - 1 ? len - 1 : 1)) == NULL)
		return 0;
	memcpy(p, data + 1, len - 1);
	n = doctor_cert_msg_count(p, len - 1, data[0] & 1);
	if (n < -1 || (n > 0 && (size_t)n * 3 > len))
		abort();
	free(p);
	return 0;
}
