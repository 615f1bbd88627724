/* x509memo.h - the memo of libssl's certificate and ticket-session parses
 * (see x509memo.c). Off unless the proxy turns it on; only the proxy's data
 * path (its worker threads) uses it. */
#ifndef MTLS_X509MEMO_H
#define MTLS_X509MEMO_H
#include <stdint.h>

struct x509memo_stats {
	int enabled;
	uint64_t cert_hits, cert_misses;
	uint64_t session_hits, session_misses;
	uint64_t cert_entries, session_entries;	/* held now */
	uint64_t cleansed;	/* entries dropped by rotation or age */
	uint64_t ticket_mismatch;	/* see x509memo.c: 0 on 3.0 */
};

/* Decides, on the first call, whether this process may use the memo: not
 * when built with MEMO=0, not when MTLS_PARSE_MEMO is set to anything but
 * "1" (0 turns it off), not on an OpenSSL major.minor other than the one it
 * was tested with (3.0). Every call sets the longest an entry is kept to
 * <max_age_ms> (when > 0; 12 h before any call). Returns 1 when on; *<why>,
 * when given, is "on" or the reason it is off (a static string). */
int	 x509memo_enable(int64_t max_age_ms, const char **why);
/* 1 when the memo was tested with OpenSSL <major>.<minor> (3.0 only: it
 * relies on how that libssl parses certificates and builds tickets). */
int	 x509memo_tested(unsigned int major, unsigned int minor);
/* <on>: libssl's parses on the calling thread use the memo (when enabled);
 * the proxy's workers call it with 1 when they start. */
void	 x509memo_thread(int on);
/* Ticket keys rotated (or may have changed): cleanses every entry now, and
 * a parse begun before this call is not stored. */
void	 x509memo_rotate(void);
/* Cleanses the entries older than the maximum age; call every second or
 * so. */
void	 x509memo_sweep(void);
void	 x509memo_stats(struct x509memo_stats *);
#endif
