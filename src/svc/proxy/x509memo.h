/* x509memo.h - counters of the memoized libssl parses (see x509memo.c). */
#ifndef MTLS_X509MEMO_H
#define MTLS_X509MEMO_H
#include <stdint.h>

struct x509memo_stats {
	uint64_t cert_hits, cert_misses;
	uint64_t session_hits, session_misses;
};
void x509memo_stats(struct x509memo_stats *);
#endif
