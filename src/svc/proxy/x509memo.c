/*
 * x509memo.c - libssl's certificate and session-ticket parses, memoized by
 * their exact bytes.
 *
 * Why this exists: on OpenSSL 3.0 parsing one certificate costs about as
 * much as the whole ECDHE and signature work of a handshake, because
 * d2i_X509 decodes the public key through OSSL_DECODER_CTX_new_for_pkey,
 * which walks every decoder and key manager of every provider on each call.
 * Profiles of the proxy showed the parses of the client's chain, and of the
 * session inside a ticket (it holds the client certificate), as a large
 * share of a handshake's CPU (figures: bench/RESULTS.md, "Figures moved
 * from code comments (proxy)").
 * A sidecar sees the same few client chains all day, and OpenSSL sends no
 * new ticket on a resumption, so clients present the same ticket again:
 * the same bytes are parsed over and over. OpenSSL 3.0 has no hook to avoid
 * it (no certificate cache, no certificate compression, no raw keys).
 *
 * How: the mtls binary defines d2i_X509 and d2i_SSL_SESSION. libssl calls
 * both through its PLT, which the dynamic linker resolves to the
 * executable's definitions first. Calls that come from libssl's own code
 * (the Certificate message in either direction; the session inside a
 * ticket) are answered from small tables keyed by the exact DER bytes;
 * every other caller (libcrypto's PEM and X509_AUX readers, our own code)
 * goes straight to the real function, so no object that someone may modify
 * (trust settings, aux data) is ever shared.
 *
 * Soundness: a hit requires the same length and byte-identical DER, and
 * the input pointer is advanced by exactly the bytes the real parse
 * consumed (only whole-input parses are remembered; failures never are).
 * A certificate hit is the object the real parse of those bytes produced,
 * shared by reference as OpenSSL's own X509_STORE shares certificates (its
 * lazily computed fields are locked; libssl only reads peer certificates).
 * A session hit is a fresh SSL_SESSION_dup() of the remembered parse, since
 * libssl modifies the session it gets. Nothing here decides trust: chains
 * are verified, and validity, revocation and authorization checked on
 * every handshake and every resumption exactly as before. Session entries
 * hold resumption secrets, as a session cache does: their bytes are
 * cleansed when replaced or dropped, and SSL_SESSION_free (3.0) cleanses
 * the session's master key.
 *
 * Lifetime (forward secrecy): a session entry must not outlive the ticket
 * key that could open its ticket. Ticket keys are per listener, but every
 * listener without a key file rotates on the same timer, so the memo keeps
 * one global epoch instead of a key per entry: each rotation (and each
 * reload of a listener whose key file may have changed) advances it and
 * cleanses every entry, of both tables. That drops entries whose key still
 * opens for one more period too; they cost one parse again, twice a day by
 * default. A parse that began before a rotation is not stored after it
 * (the entry carries the epoch read before the parse). Entries are also
 * dropped once older than the rotation interval (x509memo_sweep), so a
 * listener with a key file and no rotation keeps nothing longer either.
 *
 * Scope: nothing happens unless the proxy asked for it: x509memo_enable()
 * decides once per process (build option, MTLS_PARSE_MEMO, the OpenSSL
 * version it was tested with), and only threads that called
 * x509memo_thread() (the proxy's workers) use the tables. ca serve, the
 * agent, doctor, unit tests and fuzz targets parse as if this file did not
 * exist. Built with -DMTLS_NO_PARSE_MEMO (make MEMO=0), it defines no libssl
 * symbol at all.
 *
 * Bounds: direct-mapped tables (a collision replaces the entry) of
 * MEMO_SLOTS entries, inputs up to MEMO_MAX_DER bytes; a flood of distinct
 * certificates or tickets costs what it cost before (a parse) plus a store.
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/net.h"
#include "proxy/x509memo.h"

/* what this file was measured and tested with: libssl's parse paths
 * (construct_stateless_ticket, tls_process_*_certificate) of 3.0.x */
#define MEMO_TESTED_MAJOR 3
#define MEMO_TESTED_MINOR 0
#define MEMO_DEFAULT_AGE_MS (12LL * 3600 * 1000)

static int memo_on;			/* x509memo_enable() decided: on */
static int memo_decided;
static const char *memo_why = "not enabled by the proxy";
static int64_t memo_max_age_ms = MEMO_DEFAULT_AGE_MS;
static __thread int memo_thread_on;	/* x509memo_thread() */
static pthread_mutex_t decide_mu = PTHREAD_MUTEX_INITIALIZER;

#ifndef MTLS_NO_PARSE_MEMO
#define MEMO_SLOTS 256
#define MEMO_MAX_DER 16384

struct memo_slot {
	uint64_t hash;
	long len;
	unsigned char *der;
	void *obj;
	uint64_t epoch;		/* memo_epoch when the parse began */
	int64_t made_ms;	/* monotonic */
};

struct memo {
	/* the real d2i, called through a wrapper of this exact type */
	void *(*real)(void **, const unsigned char **, long);
	void (*obj_free)(void *);
	/* another reference (certificates) or a private copy (sessions,
	 * which libssl modifies): what the table keeps and what a hit gets */
	void *(*obj_share)(void *);
	pthread_mutex_t mu;
	struct memo_slot slot[MEMO_SLOTS];
	uint64_t hits, misses, cleansed;
};

static uint64_t memo_epoch;	/* advanced by x509memo_rotate() */

static X509 *(*real_d2i_x509)(X509 **, const unsigned char **, long);
static SSL_SESSION *(*real_d2i_sess)(SSL_SESSION **, const unsigned char **,
    long);

static void *
x509_parse(void **a, const unsigned char **in, long len)
{
	X509 *x = a != NULL ? *a : NULL, *r;

	r = real_d2i_x509(a != NULL ? &x : NULL, in, len);
	if (a != NULL)
		*a = x;
	return r;
}
static void *
sess_parse(void **a, const unsigned char **in, long len)
{
	SSL_SESSION *x = a != NULL ? *a : NULL, *r;

	r = real_d2i_sess(a != NULL ? &x : NULL, in, len);
	if (a != NULL)
		*a = x;
	return r;
}
static void
x509_free_v(void *o)
{
	X509_free(o);
}
static void *
x509_share(void *o)
{
	return X509_up_ref(o) ? o : NULL;
}
static void
sess_free_v(void *o)
{
	SSL_SESSION_free(o);
}
static void *
sess_share(void *o)
{
	return SSL_SESSION_dup(o);
}

static struct memo memo_cert = { x509_parse, x509_free_v, x509_share,
	PTHREAD_MUTEX_INITIALIZER, { { 0, 0, NULL, NULL, 0, 0 } }, 0, 0, 0 };
static struct memo memo_sess = { sess_parse, sess_free_v,
	sess_share, PTHREAD_MUTEX_INITIALIZER, { { 0, 0, NULL, NULL, 0, 0 } },
	0, 0, 0 };

static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static uintptr_t ssl_lo, ssl_hi; /* libssl's executable mapping */

static int
find_libssl(struct dl_phdr_info *info, size_t size, void *arg)
{
	int i;

	(void)size;
	(void)arg;
	if (info->dlpi_name == NULL ||
	    strstr(info->dlpi_name, "/libssl.so") == NULL)
		return 0;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo, hi;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		lo = info->dlpi_addr + ph->p_vaddr;
		hi = lo + ph->p_memsz;
		if (ssl_lo == 0 || lo < ssl_lo)
			ssl_lo = lo;
		if (hi > ssl_hi)
			ssl_hi = hi;
	}
	return 1;
}

static void
memo_init(void)
{
	*(void **)&real_d2i_x509 = dlsym(RTLD_NEXT, "d2i_X509");
	*(void **)&real_d2i_sess = dlsym(RTLD_NEXT, "d2i_SSL_SESSION");
	if (real_d2i_x509 == NULL || real_d2i_sess == NULL)
		abort(); /* libcrypto/libssl not below us: cannot link so */
	dl_iterate_phdr(find_libssl, NULL);
}

/* FNV-1a: picks the slot only; a hit also compares every byte */
static uint64_t
memo_hash(const unsigned char *p, long n)
{
	uint64_t h = 14695981039346656037ULL;
	long i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* Cleanses and frees what <old> held (called without the lock). */
static void
slot_drop(struct memo *m, struct memo_slot *old)
{
	if (old->der != NULL)
		OPENSSL_clear_free(old->der, (size_t)old->len);
	if (old->obj != NULL)
		m->obj_free(old->obj);
}

/* Empties slot <s> of <m> into <out> (for slot_drop after the unlock);
 * called with the lock held. */
static void
slot_take(struct memo *m, struct memo_slot *s, struct memo_slot *out)
{
	*out = *s;
	if (s->obj != NULL)
		m->cleansed++;
	memset(s, 0, sizeof(*s));
}

static int
slot_live(const struct memo_slot *s, uint64_t epoch, int64_t now)
{
	return s->obj != NULL && s->epoch == epoch &&
	    now - s->made_ms < __atomic_load_n(&memo_max_age_ms,
	    __ATOMIC_RELAXED);
}

/* Puts <o>'s shareable form under <h>/<start,len> in <m>, replacing what
 * the slot held, unless the epoch moved past <epoch> since the parse began
 * (its ticket key may be gone). Best effort: out of memory only means no
 * entry. */
static void
memo_store(struct memo *m, struct memo_slot *s, uint64_t h,
    const unsigned char *start, long len, void *o, uint64_t epoch)
{
	struct memo_slot old, mine;

	memset(&mine, 0, sizeof(mine));
	if ((mine.obj = m->obj_share(o)) == NULL)
		return;
	if ((mine.der = malloc((size_t)len)) == NULL) {
		m->obj_free(mine.obj);
		return;
	}
	memcpy(mine.der, start, (size_t)len);
	mine.hash = h;
	mine.len = len;
	mine.epoch = epoch;
	mine.made_ms = net_now_ms();
	pthread_mutex_lock(&m->mu);
	if (epoch != __atomic_load_n(&memo_epoch, __ATOMIC_ACQUIRE)) {
		old = mine;	/* made under a rotated-away key: drop */
	} else {
		old = *s;
		*s = mine;
	}
	pthread_mutex_unlock(&m->mu);
	slot_drop(m, &old);
}

static int
from_libssl(uintptr_t caller)
{
	return caller >= ssl_lo && caller < ssl_hi;
}

static int
active(void)
{
	return memo_thread_on && __atomic_load_n(&memo_on, __ATOMIC_ACQUIRE);
}

/* The d2i for <m>: <pre>, when given, may produce the object for these
 * exact bytes without parsing (see rec_take); what it produces is handed
 * to the caller only, never stored. */
static void *
memo_d2i(struct memo *m, uintptr_t caller, void **a, const unsigned char **in,
    long len, void *(*pre)(const unsigned char *, long))
{
	const unsigned char *start;
	struct memo_slot *s, stale;
	void *o = NULL;
	uint64_t h, epoch;
	int64_t now;

	pthread_once(&memo_once, memo_init);
	if (!active() || !from_libssl(caller) || in == NULL || *in == NULL ||
	    len <= 0 || len > MEMO_MAX_DER)
		return m->real(a, in, len);
	start = *in;
	epoch = __atomic_load_n(&memo_epoch, __ATOMIC_ACQUIRE);
	if (pre != NULL && (o = pre(start, len)) != NULL) {
		pthread_mutex_lock(&m->mu);
		m->hits++;
		pthread_mutex_unlock(&m->mu);
		goto answer;
	}
	h = memo_hash(start, len);
	s = &m->slot[h % MEMO_SLOTS];
	now = net_now_ms();
	memset(&stale, 0, sizeof(stale));
	pthread_mutex_lock(&m->mu);
	if (s->obj != NULL && !slot_live(s, epoch, now))
		slot_take(m, s, &stale);
	else if (s->obj != NULL && s->hash == h && s->len == len &&
	    memcmp(s->der, start, (size_t)len) == 0)
		o = m->obj_share(s->obj);
	if (o == NULL)
		m->misses++;
	else
		m->hits++;
	pthread_mutex_unlock(&m->mu);
	slot_drop(m, &stale);
	if (o == NULL) {
		if ((o = m->real(a, in, len)) != NULL && *in == start + len)
			memo_store(m, s, h, start, len, o, epoch);
		return o; /* a failure, or trailing bytes, is the caller's to
			   * judge, as before */
	}
 answer:
	if (a != NULL) {
		m->obj_free(*a);
		*a = o;
	}
	*in = start + len;
	return o;
}

X509 *
d2i_X509(X509 **a, const unsigned char **in, long len)
{
	return memo_d2i(&memo_cert, (uintptr_t)__builtin_return_address(0),
	    (void **)a, in, len, NULL);
}

/*
 * To make a ticket, libssl 3.0 serializes the session (bytes B), parses B
 * back into a private copy, and serializes the copy into the ticket
 * (construct_stateless_ticket; its only use of i2d_SSL_SESSION). The parse
 * costs as much as the client certificate's (bench/RESULTS.md). So
 * i2d_SSL_SESSION, called from libssl, remembers on its thread the
 * session and B, and the next d2i_SSL_SESSION on that thread, handed exactly
 * B, answers with SSL_SESSION_dup() of that session. The copy holds more
 * than B does (the peer's chain, for one), but its only use is to be
 * serialized and freed, and i2d writes the same fields dup copied, so the
 * ticket holds B as before; the next i2d checks that it does, and turns the
 * shortcut off for good if not (x509memo_stats: ticket_mismatch). The copy
 * is never stored in the memo: the session tables hold real parses of
 * ticket bytes only, so a resumption gets exactly what parsing its ticket
 * gives.
 */
struct rec {
	SSL_SESSION *sess;	/* referenced; NULL: nothing armed */
	const SSL_SESSION *our_dup;	/* the copy we answered last */
	unsigned char *buf;	/* B: the session's serialization */
	long len;
	size_t cap;
};
static pthread_key_t rec_key;
static int (*real_i2d_sess)(const SSL_SESSION *, unsigned char **);
static int shortcut_off;	/* a ticket differed from B once */
static uint64_t shortcut_mismatch;

static void
rec_clear(struct rec *r)
{
	SSL_SESSION_free(r->sess);
	r->sess = NULL;
	r->our_dup = NULL;
	if (r->buf != NULL)
		OPENSSL_cleanse(r->buf, (size_t)r->len);
	r->len = 0;
}

static void
rec_free(void *p)
{
	struct rec *r = p;

	rec_clear(r);
	free(r->buf);
	free(r);
}

static void
rec_init(void)
{
	*(void **)&real_i2d_sess = dlsym(RTLD_NEXT, "i2d_SSL_SESSION");
	if (real_i2d_sess == NULL || pthread_key_create(&rec_key, rec_free))
		abort();
}
static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

static void *
rec_take(const unsigned char *p, long len)
{
	struct rec *r;
	SSL_SESSION *o = NULL;

	pthread_once(&rec_once, rec_init);
	if ((r = pthread_getspecific(rec_key)) == NULL || r->sess == NULL)
		return NULL;
	/* d2i substitutes a time of 0 by now and a timeout of 0 by 3 s:
	 * there a parse differs from the session, so parse */
	if (r->len == len && memcmp(r->buf, p, (size_t)len) == 0 &&
	    SSL_SESSION_get_time(r->sess) != 0 &&
	    SSL_SESSION_get_timeout(r->sess) != 0)
		o = SSL_SESSION_dup(r->sess);
	SSL_SESSION_free(r->sess);
	r->sess = NULL;
	r->our_dup = o;
	if (o == NULL)
		rec_clear(r);	/* else B is kept for the check in i2d */
	return o;
}

int
i2d_SSL_SESSION(const SSL_SESSION *in, unsigned char **pp)
{
	uintptr_t caller = (uintptr_t)__builtin_return_address(0);
	unsigned char *start = pp != NULL ? *pp : NULL;
	struct rec *r;
	int n;

	pthread_once(&rec_once, rec_init);
	pthread_once(&memo_once, memo_init);
	n = real_i2d_sess(in, pp);
	if (n <= 0 || start == NULL || in == NULL || !active() ||
	    !from_libssl(caller))
		return n;
	if ((r = pthread_getspecific(rec_key)) == NULL) {
		if (n > MEMO_MAX_DER ||
		    __atomic_load_n(&shortcut_off, __ATOMIC_RELAXED) ||
		    (r = calloc(1, sizeof(*r))) == NULL)
			return n;
		if (pthread_setspecific(rec_key, r) != 0) {
			free(r);
			return n;
		}
	}
	if (in == r->our_dup) {	/* the ticket: must be B */
		if (r->len != n || memcmp(r->buf, start, (size_t)n) != 0) {
			__atomic_store_n(&shortcut_off, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&shortcut_mismatch, 1,
			    __ATOMIC_RELAXED);
		}
		rec_clear(r);
		return n;
	}
	rec_clear(r);
	if (n > MEMO_MAX_DER || __atomic_load_n(&shortcut_off,
	    __ATOMIC_RELAXED))
		return n;
	if ((size_t)n > r->cap) {
		unsigned char *nb = malloc((size_t)n);

		if (nb == NULL)
			return n;
		free(r->buf);
		r->buf = nb;
		r->cap = (size_t)n;
	}
	memcpy(r->buf, start, (size_t)n);
	r->len = n;
	if (SSL_SESSION_up_ref((SSL_SESSION *)in))
		r->sess = (SSL_SESSION *)in;
	return n;
}

SSL_SESSION *
d2i_SSL_SESSION(SSL_SESSION **a, const unsigned char **in, long len)
{
	return memo_d2i(&memo_sess, (uintptr_t)__builtin_return_address(0),
	    (void **)a, in, len, rec_take);
}

/* Empties every slot of <m> for which <all> or the slot is not live. */
static void
memo_flush(struct memo *m, int all)
{
	struct memo_slot *drop;
	uint64_t epoch;
	int64_t now = net_now_ms();
	size_t i, n = 0;

	/* slots are dropped after the unlock: freeing many sessions under
	 * the lock would stall the workers */
	if ((drop = calloc(MEMO_SLOTS, sizeof(*drop))) == NULL)
		return;
	pthread_mutex_lock(&m->mu);
	epoch = __atomic_load_n(&memo_epoch, __ATOMIC_ACQUIRE);
	for (i = 0; i < MEMO_SLOTS; i++)
		if (m->slot[i].obj != NULL &&
		    (all || !slot_live(&m->slot[i], epoch, now)))
			slot_take(m, &m->slot[i], &drop[n++]);
	pthread_mutex_unlock(&m->mu);
	for (i = 0; i < n; i++)
		slot_drop(m, &drop[i]);
	free(drop);
}

static size_t
memo_count(struct memo *m)
{
	size_t i, n = 0;

	for (i = 0; i < MEMO_SLOTS; i++)
		n += m->slot[i].obj != NULL;
	return n;
}
#endif /* MTLS_NO_PARSE_MEMO */

int
x509memo_tested(unsigned int major, unsigned int minor)
{
	return major == MEMO_TESTED_MAJOR && minor == MEMO_TESTED_MINOR;
}

int
x509memo_enable(int64_t max_age_ms, const char **why)
{
	pthread_mutex_lock(&decide_mu);
	if (max_age_ms > 0)
		__atomic_store_n(&memo_max_age_ms, max_age_ms,
		    __ATOMIC_RELAXED);
	if (!memo_decided) {
		const char *env = getenv("MTLS_PARSE_MEMO");

		memo_decided = 1;
#ifdef MTLS_NO_PARSE_MEMO
		(void)env;
		memo_why = "built without it (MEMO=0)";
#else
		if (env != NULL && strcmp(env, "0") == 0)
			memo_why = "MTLS_PARSE_MEMO=0";
		else if (env != NULL && strcmp(env, "1") != 0)
			memo_why = "MTLS_PARSE_MEMO is neither 0 nor 1";
		else if (!x509memo_tested(OPENSSL_version_major(),
		    OPENSSL_version_minor()))
			memo_why = "tested with OpenSSL 3.0 only";
		else {
			memo_why = "on";
			__atomic_store_n(&memo_on, 1, __ATOMIC_RELEASE);
		}
#endif
	}
	if (why != NULL)
		*why = memo_why;
	pthread_mutex_unlock(&decide_mu);
	return __atomic_load_n(&memo_on, __ATOMIC_ACQUIRE);
}

void
x509memo_thread(int on)
{
	memo_thread_on = on;
}

void
x509memo_rotate(void)
{
#ifndef MTLS_NO_PARSE_MEMO
	/* first the epoch, so a parse under way is not stored after the
	 * flush (memo_store compares under the table's lock) */
	__atomic_add_fetch(&memo_epoch, 1, __ATOMIC_ACQ_REL);
	memo_flush(&memo_cert, 1);
	memo_flush(&memo_sess, 1);
#endif
}

void
x509memo_sweep(void)
{
#ifndef MTLS_NO_PARSE_MEMO
	if (!__atomic_load_n(&memo_on, __ATOMIC_ACQUIRE))
		return;
	memo_flush(&memo_cert, 0);
	memo_flush(&memo_sess, 0);
#endif
}

void
x509memo_stats(struct x509memo_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->enabled = __atomic_load_n(&memo_on, __ATOMIC_ACQUIRE);
#ifndef MTLS_NO_PARSE_MEMO
	pthread_mutex_lock(&memo_cert.mu);
	st->cert_hits = memo_cert.hits;
	st->cert_misses = memo_cert.misses;
	st->cert_entries = memo_count(&memo_cert);
	st->cleansed = memo_cert.cleansed;
	pthread_mutex_unlock(&memo_cert.mu);
	pthread_mutex_lock(&memo_sess.mu);
	st->session_hits = memo_sess.hits;
	st->session_misses = memo_sess.misses;
	st->session_entries = memo_count(&memo_sess);
	st->cleansed += memo_sess.cleansed;
	pthread_mutex_unlock(&memo_sess.mu);
	st->ticket_mismatch = __atomic_load_n(&shortcut_mismatch,
	    __ATOMIC_RELAXED);
#endif
}
