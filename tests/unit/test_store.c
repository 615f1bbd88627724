/*
 * store.c and its backends: one suite, run against SQLite (a file in a
 * temporary folder, the default) and against PostgreSQL when
 * MTLS_TEST_STORE=postgres://... names an empty database (with
 * MTLS_TEST_STORE_PASSWORD_FILE for its password); tests/integration/
 * 90-store-pg.sh starts a throwaway server and runs it both ways. Cases run
 * in order on one store; the first opens a fresh store from several
 * processes at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "ca/store_int.h"	/* STORE_SWEEP */

#define RACERS	4

static char dir[256], db[300];
static const char *url, *pw_file;
static EVP_PKEY *key;

static struct store *
open_store(struct mtls_error *err)
{
	struct store *s = NULL;

	if (url != NULL)
		return store_open_url(&s, url, pw_file, NULL, NULL, err) == 0 ?
		    s : NULL;
	return store_open(&s, db, 1, err) == 0 ? s : NULL;
}

static struct store *
must_open(void)
{
	struct mtls_error err;
	struct store *s;

	error_clear(&err);
	s = open_store(&err);
	if (s == NULL)
		fail_msg("open: %s", err.msg);
	return s;
}

/* A leaf with a random serial (or <serial> when not 0), CN <cn>. */
static X509 *
mk_cert(uint64_t serial, const char *cn)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();
	uint64_t r;

	assert_non_null(x);
	if (serial == 0) {
		assert_int_equal(RAND_bytes((unsigned char *)&r, sizeof(r)), 1);
		serial = (r >> 2) | 1;
	}
	X509_set_version(x, 2);
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_NAME_free(n);
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

static void
hex_of(X509 *x, char *buf, size_t len)
{
	serial_hex(X509_get0_serialNumber(x), buf, len);
}

/* Runs <fn>(i) in RACERS (or <n>) processes released at the same moment;
 * codes[i] is each one's exit status. */
static void
race(int n, int (*fn)(int), int *codes)
{
	int go[2], i, st;
	pid_t pid[RACERS * 2];
	char c;

	assert_true(n <= RACERS * 2);
	assert_int_equal(pipe(go), 0);
	for (i = 0; i < n; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			close(go[1]);
			/* blocks until the parent closes its end */
			if (read(go[0], &c, 1) < 0)
				_exit(99);
			_exit(fn(i));
		}
	}
	close(go[0]);
	usleep(100 * 1000);	/* all forked and waiting (not a condition
				 * of correctness: a late one races less) */
	close(go[1]);
	for (i = 0; i < n; i++) {
		assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
		codes[i] = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
	}
}

/* ---- a fresh store opened by several processes at once ---- */
static int
opener(int i)
{
	struct mtls_error err;
	struct store *s;

	(void)i;
	error_clear(&err);
	if ((s = open_store(&err)) == NULL) {
		fprintf(stderr, "opener: %s\n", err.msg);
		return 1;
	}
	store_close(s);
	return 0;
}

static void
t_open_race(void **state)
{
	int codes[RACERS * 2], i;
	struct store *s;

	(void)state;
	race(RACERS * 2, opener, codes);
	for (i = 0; i < RACERS * 2; i++)
		assert_int_equal(codes[i], 0);
	/* migrations are idempotent: opening again changes nothing */
	s = must_open();
	store_close(s);
	s = must_open();
	store_close(s);
}

/* ---- add, get, each ---- */
struct seen {
	const char	*serial;
	int		 found;
	char		 kind[16];	/* r->kind lives during the call */
};

static int
each_cb(void *arg, const struct cert_rec *r)
{
	struct seen *sn = arg;

	if (strcmp(r->serial, sn->serial) == 0) {
		sn->found++;
		snprintf(sn->kind, sizeof(sn->kind), "%s", r->kind);
	}
	return 0;
}

static void
t_add_get_each(void **state)
{
	struct mtls_error err;
	struct cert_rec rec;
	struct store *s = must_open();
	X509 *x = mk_cert(0, "add"), *twin;
	char hex[48];
	struct seen sn;

	(void)state;
	error_clear(&err);
	hex_of(x, hex, sizeof(hex));
	assert_int_equal(store_add(s, x, "leaf", &err), 0);
	/* the serial is unique: the same again is "taken" */
	assert_int_equal(store_add(s, x, "leaf", &err), 1);
	assert_int_equal(store_get(s, hex, &rec, &err), 0);
	assert_string_equal(rec.kind, "leaf");
	assert_int_equal(rec.revoked, 0);
	assert_int_equal(rec.not_after, asn1_time_unix(X509_get0_notAfter(x)));
	/* its issuer (OCSP answers only the issuer named, revoke.c) */
	assert_string_equal(rec.issuer, "CN=add");
	assert_int_equal(store_get_cert(s, x, &rec, &err), 0);
	assert_string_equal(rec.issuer, "CN=add");
	/* the same serial, other bytes: not ours */
	twin = mk_cert(strtoull(hex, NULL, 16), "twin");
	assert_int_equal(store_get_cert(s, twin, &rec, &err), 2);
	assert_int_equal(store_add(s, twin, "leaf", &err), 1);
	assert_int_equal(store_get(s, "DEADBEEF00", &rec, &err), 1);
	memset(&sn, 0, sizeof(sn));
	sn.serial = hex;
	assert_int_equal(store_each(s, each_cb, &sn, &err), 0);
	assert_int_equal(sn.found, 1);
	assert_string_equal(sn.kind, "leaf");
	assert_int_equal(store_probe(s, &err), 0);
	X509_free(twin);
	X509_free(x);
	store_close(s);
}

/* ---- revoke, CRL number ---- */
static void
t_revoke_crl(void **state)
{
	struct mtls_error err;
	struct cert_rec rec;
	struct store *s = must_open();
	X509 *x = mk_cert(0, "revoke");
	char hex[48];
	int64_t n1, n2, r0, r1;
	int already;

	(void)state;
	error_clear(&err);
	hex_of(x, hex, sizeof(hex));
	assert_int_equal(store_add(s, x, "leaf", &err), 0);
	assert_int_equal(store_revocations(s, &r0, &err), 0);
	assert_int_equal(store_revoke(s, hex, 1, 1000, &already, &err), 0);
	assert_int_equal(already, 0);
	assert_int_equal(store_revoke(s, hex, 4, 2000, &already, &err), 0);
	assert_int_equal(already, 1);
	/* one revocation: the mark moved by one, and not for "already" */
	assert_int_equal(store_revocations(s, &r1, &err), 0);
	assert_int_equal(r1, r0 + 1);
	assert_int_equal(store_get(s, hex, &rec, &err), 0);
	assert_int_equal(rec.revoked, 1);
	assert_int_equal(rec.revoked_at, 1000);
	assert_int_equal(rec.reason, 1);
	assert_int_equal(store_revoke(s, "0BADC0DE", 1, 1, &already, &err), -1);
	assert_non_null(strstr(err.msg, "not issued by this CA"));
	assert_int_equal(store_next_crl_number(s, &n1, &err), 0);
	assert_int_equal(store_next_crl_number(s, &n2, &err), 0);
	assert_true(n1 >= 1);
	assert_int_equal(n2, n1 + 1);
	X509_free(x);
	store_close(s);
}

/* ---- tokens ---- */
static void
t_tokens(void **state)
{
	struct mtls_error err;
	struct cert_rec rec;
	struct store *s = must_open();
	X509 *a = mk_cert(0, "tok-a"), *b = mk_cert(0, "tok-b");
	char id[300], hex[48];
	int64_t now = (int64_t)time(NULL);

	(void)state;
	error_clear(&err);
	assert_int_equal(store_token_add(s, "h-good", "spiffe://example.org/a",
	    now + 600, &err), 0);
	assert_int_equal(store_token_get(s, "h-good", id, sizeof(id), &err), 0);
	assert_string_equal(id, "spiffe://example.org/a");
	assert_int_equal(store_add_burn(s, a, "leaf", "h-good", &err), 0);
	assert_int_equal(store_token_get(s, "h-good", id, sizeof(id), &err),
	    -1);
	assert_non_null(strstr(err.msg, "used already"));
	/* a burned token pays for nothing more (2: the token, not an error),
	 * and nothing is half-written */
	assert_int_equal(store_add_burn(s, b, "leaf", "h-good", &err), 2);
	assert_non_null(strstr(err.msg, "token"));
	hex_of(b, hex, sizeof(hex));
	assert_int_equal(store_get(s, hex, &rec, &err), 1);
	/* expired */
	assert_int_equal(store_token_add(s, "h-old", "spiffe://example.org/o",
	    now - 1, &err), 0);
	assert_int_equal(store_token_get(s, "h-old", id, sizeof(id), &err), -1);
	assert_non_null(strstr(err.msg, "expired"));
	assert_int_equal(store_add_burn(s, b, "leaf", "h-old", &err), 2);
	assert_int_equal(store_get(s, hex, &rec, &err), 1);
	/* unknown */
	assert_int_equal(store_token_get(s, "h-none", id, sizeof(id), &err),
	    -1);
	assert_non_null(strstr(err.msg, "unknown token"));
	assert_int_equal(store_add_burn(s, b, "leaf", "h-none", &err), 2);
	assert_int_equal(store_get(s, hex, &rec, &err), 1);
	X509_free(a);
	X509_free(b);
	store_close(s);
}

/* ---- one token, several connections burning it at once ---- */
static X509 *racer_cert[RACERS * 2];

static int
burner(int i)
{
	struct mtls_error err;
	struct store *s;
	int rc;

	error_clear(&err);
	if ((s = open_store(&err)) == NULL)
		return 3;
	rc = store_add_burn(s, racer_cert[i], "leaf", "h-race", &err);
	store_close(s);
	if (rc == 0)
		return 0;
	if (rc == 2 && strstr(err.msg, "used already") != NULL)
		return 1;
	fprintf(stderr, "burner %d: %d %s\n", i, rc, err.msg);
	return 2;
}

static void
t_burn_race(void **state)
{
	struct mtls_error err;
	struct cert_rec rec;
	struct store *s = must_open();
	int codes[RACERS], i, won = 0, recorded = 0;
	char hex[48];

	(void)state;
	error_clear(&err);
	for (i = 0; i < RACERS; i++)
		racer_cert[i] = mk_cert(0, "racer");
	assert_int_equal(store_token_add(s, "h-race", "spiffe://example.org/r",
	    (int64_t)time(NULL) + 600, &err), 0);
	race(RACERS, burner, codes);
	for (i = 0; i < RACERS; i++) {
		assert_true(codes[i] == 0 || codes[i] == 1);
		won += codes[i] == 0;
		hex_of(racer_cert[i], hex, sizeof(hex));
		assert_int_equal(store_get(s, hex, &rec, &err) == 0,
		    codes[i] == 0);
		recorded += store_get(s, hex, &rec, &err) == 0;
	}
	assert_int_equal(won, 1);
	assert_int_equal(recorded, 1);
	for (i = 0; i < RACERS; i++)
		X509_free(racer_cert[i]);
	store_close(s);
}

/* ---- one serial added by several connections at once ---- */
static X509 *same;

static int
adder(int i)
{
	struct mtls_error err;
	struct store *s;
	int rc;

	(void)i;
	error_clear(&err);
	if ((s = open_store(&err)) == NULL)
		return 3;
	rc = store_add(s, same, "leaf", &err);
	store_close(s);
	return rc == 0 ? 0 : rc == 1 ? 1 : 2;
}

static void
t_serial_race(void **state)
{
	int codes[RACERS], i, won = 0;

	(void)state;
	same = mk_cert(0, "same");
	race(RACERS, adder, codes);
	for (i = 0; i < RACERS; i++) {
		assert_true(codes[i] == 0 || codes[i] == 1);
		won += codes[i] == 0;
	}
	assert_int_equal(won, 1);
	X509_free(same);
}

/* ---- group commit: concurrent adds in one process share commits ---- */
#define GC_N	32
static struct store *gc_store;
static X509 *gc_cert[GC_N];
static int gc_rc[GC_N];
static pthread_barrier_t gc_go;

static void *
gc_adder(void *arg)
{
	struct mtls_error err;
	int i = (int)(intptr_t)arg;

	error_clear(&err);
	pthread_barrier_wait(&gc_go);
	/* every 8th burns the one token "h-gc"; the last repeats a serial */
	gc_rc[i] = store_add_burn(gc_store, gc_cert[i], "leaf", i % 8 == 0 ?
	    "h-gc" : NULL, &err);
	return NULL;
}

static void
t_group_commit(void **state)
{
	struct mtls_error err;
	struct cert_rec rec;
	pthread_t th[GC_N];
	uint64_t c0, i0, c1, i1;
	uint64_t dup;
	int i, ok = 0, burned = 0, taken = 0;
	char hex[48];

	(void)state;
	error_clear(&err);
	gc_store = must_open();
	assert_int_equal(store_token_add(gc_store, "h-gc",
	    "spiffe://example.org/gc", (int64_t)time(NULL) + 600, &err), 0);
	for (i = 0; i < GC_N - 1; i++)
		gc_cert[i] = mk_cert(0, "gc");
	assert_int_equal(ASN1_INTEGER_get_uint64(&dup,
	    X509_get0_serialNumber(gc_cert[GC_N - 2])), 1);
	gc_cert[GC_N - 1] = mk_cert(dup, "gc-dup");
	store_stats(gc_store, &c0, &i0);
	pthread_barrier_init(&gc_go, NULL, GC_N);
	for (i = 0; i < GC_N; i++)
		assert_int_equal(pthread_create(&th[i], NULL, gc_adder,
		    (void *)(intptr_t)i), 0);
	for (i = 0; i < GC_N; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&gc_go);
	store_stats(gc_store, &c1, &i1);
	for (i = 0; i < GC_N; i++) {
		assert_true(gc_rc[i] >= 0 && gc_rc[i] <= 2);
		ok += gc_rc[i] == 0;
		burned += i % 8 == 0 && gc_rc[i] == 0;
		taken += gc_rc[i] == 1;
	}
	print_message("group commit: %d adds at once, %llu commits\n", GC_N,
	    (unsigned long long)(c1 - c0));
	assert_int_equal(burned, 1);		/* one token, spent once */
	assert_int_equal(taken, 1);		/* one serial, recorded once */
	assert_int_equal(ok, GC_N - 1 - (GC_N / 8 - 1));
	assert_int_equal(i1 - i0, (uint64_t)ok);
	assert_true(c1 - c0 < (uint64_t)ok);	/* shared commits */
	store_close(gc_store);
	/* durable: a new connection finds every row acknowledged, and none
	 * of the refused ones */
	gc_store = must_open();
	for (i = 0; i < GC_N - 1; i++) {
		hex_of(gc_cert[i], hex, sizeof(hex));
		if (i == GC_N - 2 && gc_rc[GC_N - 1] == 0)
			continue;	/* the duplicate won that serial */
		assert_int_equal(store_get(gc_store, hex, &rec, &err),
		    gc_rc[i] == 0 ? 0 : 1);
	}
	for (i = 0; i < GC_N; i++)
		X509_free(gc_cert[i]);
	store_close(gc_store);
}

/* ---- a batch of renewals, every item good: each row, token burn and
 * bundle report written, shared commits (PostgreSQL: in one pipeline,
 * store_pg.c's tx_batch) ---- */
static void agents_since(struct store *, const int64_t[3], int64_t,
    const char *, int64_t, int64_t);
static X509 *gr_cert[GC_N];
static char gr_prev[GC_N][48], gr_gen[65];

static void *
gr_renewer(void *arg)
{
	struct mtls_error err;
	char tok[32];
	int i = (int)(intptr_t)arg;

	error_clear(&err);
	snprintf(tok, sizeof(tok), "h-gr-%d", i);
	pthread_barrier_wait(&gc_go);
	gc_rc[i] = store_add_issued(gc_store, gr_cert[i], "leaf", tok,
	    gr_prev[i], gr_gen, &err);
	if (gc_rc[i] != 0)
		print_message("renewer %d: %d %s\n", i, gc_rc[i], err.msg);
	return NULL;
}

static void
t_group_reports(void **state)
{
	struct mtls_error err;
	struct cert_rec rec;
	pthread_t th[GC_N];
	X509 *prev;
	uint64_t c0, i0, c1, i1;
	int64_t base[3], now = (int64_t)time(NULL);
	char gold[65], tok[32], id[300], hex[48];
	int i;

	(void)state;
	error_clear(&err);
	memset(gold, 'c', 64);
	gold[64] = '\0';
	memset(gr_gen, 'f', 64);
	gr_gen[64] = '\0';
	gc_store = must_open();
	assert_int_equal(store_rotation_count(gc_store, "CN=none", "-", gr_gen,
	    gr_gen, now, base, &err), 0);
	/* GC_N agents enrolled, each reported the old bundle */
	for (i = 0; i < GC_N; i++) {
		prev = mk_cert(0, "gr");
		hex_of(prev, gr_prev[i], sizeof(gr_prev[i]));
		assert_int_equal(store_add_issued(gc_store, prev, "leaf", NULL,
		    NULL, gold, &err), 0);
		X509_free(prev);
		gr_cert[i] = mk_cert(0, "gr");
		snprintf(tok, sizeof(tok), "h-gr-%d", i);
		assert_int_equal(store_token_add(gc_store, tok,
		    "spiffe://example.org/gr", now + 600, &err), 0);
	}
	agents_since(gc_store, base, now, gr_gen, GC_N, GC_N);
	/* all renew at once, each with its token, reporting the new one */
	store_stats(gc_store, &c0, &i0);
	pthread_barrier_init(&gc_go, NULL, GC_N);
	for (i = 0; i < GC_N; i++)
		assert_int_equal(pthread_create(&th[i], NULL, gr_renewer,
		    (void *)(intptr_t)i), 0);
	for (i = 0; i < GC_N; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&gc_go);
	store_stats(gc_store, &c1, &i1);
	for (i = 0; i < GC_N; i++)
		assert_int_equal(gc_rc[i], 0);
	assert_int_equal(i1 - i0, GC_N);
	assert_true(c1 - c0 < GC_N);		/* shared commits */
	print_message("group renewals: %d at once, %llu commits\n", GC_N,
	    (unsigned long long)(c1 - c0));
	store_close(gc_store);
	/* durable, each part: a new connection finds every row, every
	 * token spent, each old report replaced by the new one */
	gc_store = must_open();
	agents_since(gc_store, base, now, gr_gen, GC_N, 0);
	for (i = 0; i < GC_N; i++) {
		hex_of(gr_cert[i], hex, sizeof(hex));
		assert_int_equal(store_get(gc_store, hex, &rec, &err), 0);
		snprintf(tok, sizeof(tok), "h-gr-%d", i);
		assert_int_equal(store_token_get(gc_store, tok, id, sizeof(id),
		    &err), -1);
		assert_non_null(strstr(err.msg, "used already"));
		X509_free(gr_cert[i]);
	}
	store_close(gc_store);
}

/* ---- the reports of expired certificates go, a bounded few per batch
 * that writes reports ---- */

/* Rows in bundle_reports, read with the backend's own client. */
static long long
reports_count(void)
{
	long long n = -1;
	char pw[256] = "";
	FILE *f;

	if (url == NULL) {
		sqlite3 *d;
		sqlite3_stmt *st;

		assert_int_equal(sqlite3_open(db, &d), SQLITE_OK);
		assert_int_equal(sqlite3_prepare_v2(d, "SELECT count(*) FROM "
		    "bundle_reports", -1, &st, NULL), SQLITE_OK);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		sqlite3_close(d);
	} else {
		const char *k[] = { "dbname", "password", NULL }, *v[3];
		PGconn *c;
		PGresult *r;

		if (pw_file != NULL && (f = fopen(pw_file, "r")) != NULL) {
			if (fgets(pw, sizeof(pw), f) != NULL)
				pw[strcspn(pw, "\r\n")] = '\0';
			fclose(f);
		}
		v[0] = url, v[1] = pw, v[2] = NULL;
		c = PQconnectdbParams(k, v, 1);
		r = PQexec(c, "SELECT count(*) FROM bundle_reports");
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
			n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		PQfinish(c);
	}
	assert_true(n >= 0);
	return n;
}

static void
t_sweep_reports(void **state)
{
	struct mtls_error err;
	struct store *s = must_open();
	X509 *x;
	char g[65], serial[48];
	int64_t now = (int64_t)time(NULL);
	long long base;
	int i;

	(void)state;
	error_clear(&err);
	memset(g, '9', 64);
	g[64] = '\0';
	base = reports_count();
	/* STORE_SWEEP + 6 reports of certificates expired, one not */
	for (i = 0; i < STORE_SWEEP + 6; i++) {
		snprintf(serial, sizeof(serial), "5EE9%04X", i);
		assert_int_equal(store_agent_bundle(s, serial, NULL, g,
		    now - 100 - i, &err), 0);
	}
	assert_int_equal(store_agent_bundle(s, "5EE9FFFF", NULL, g, now + 3600,
	    &err), 0);
	assert_int_equal(reports_count(), base + STORE_SWEEP + 7);
	/* a renewal's batch: its report in, STORE_SWEEP expired ones out */
	x = mk_cert(0, "sweep");
	assert_int_equal(store_add_issued(s, x, "leaf", NULL, NULL, g, &err),
	    0);
	X509_free(x);
	assert_int_equal(reports_count(), base + 8);
	/* a certificate without a report sweeps nothing */
	x = mk_cert(0, "sweep");
	assert_int_equal(store_add(s, x, "leaf", &err), 0);
	X509_free(x);
	assert_int_equal(reports_count(), base + 8);
	/* the next renewal: the last 6; the unexpired one stays */
	x = mk_cert(0, "sweep");
	assert_int_equal(store_add_issued(s, x, "leaf", NULL, NULL, g, &err),
	    0);
	X509_free(x);
	assert_int_equal(reports_count(), base + 3);
	store_close(s);
}

static int
setup(void **state)
{
	(void)state;
	url = getenv("MTLS_TEST_STORE");
	if (url != NULL && url[0] == '\0')
		url = NULL;
	pw_file = getenv("MTLS_TEST_STORE_PASSWORD_FILE");
	snprintf(dir, sizeof(dir), "/tmp/mtls-test-store.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(db, sizeof(db), "%s/inventory.db", dir);
	key = EVP_EC_gen("P-256");
	return key == NULL ? -1 : 0;
}

/* rotation (rotation.c): what blocks a step is counted right, on every
 * backend; a bundle's generation ignores order; a reported generation is
 * exactly 64 lower-case hex digits */
static void
t_rotation(void **state)
{
	static const struct { const char *gen; int want; } gens[] = {
		{ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 1 },
		{ "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", 0 },
		{ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", 0 },
		{ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", 0 },
		{ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 0 },
		{ "", 0 },
	};
	char ga[65], gb[65], sa[48], sb[48], stale[65], sg[4][48];
	struct mtls_error err;
	struct store *s = must_open();
	STACK_OF(X509) *sk = sk_X509_new_null();
	X509 *a = mk_cert(0, "rotold"), *b = mk_cert(0, "rotold"), *ag[4];
	int64_t n[3], now = (int64_t)time(NULL);
	size_t i;
	int already;

	(void)state;
	error_clear(&err);
	for (i = 0; i < sizeof(gens) / sizeof(gens[0]); i++)
		assert_int_equal(rotation_gen_valid(gens[i].gen), gens[i].want);
	assert_int_equal(store_add(s, a, "leaf", &err), 0);
	assert_int_equal(store_add(s, b, "leaf", &err), 0);
	hex_of(a, sa, sizeof(sa));
	hex_of(b, sb, sizeof(sb));
	sk_X509_push(sk, a);
	sk_X509_push(sk, b);
	assert_int_equal(rotation_generation(sk, ga), 0);
	(void)sk_X509_set(sk, 0, b);
	(void)sk_X509_set(sk, 1, a);
	assert_int_equal(rotation_generation(sk, gb), 0);
	assert_string_equal(ga, gb);	/* order does not matter */
	(void)sk_X509_pop(sk);
	assert_int_equal(rotation_generation(sk, gb), 0);
	assert_string_not_equal(ga, gb);
	memset(stale, 'c', 64);
	stale[64] = '\0';
	assert_int_equal(store_rotation_count(s, "CN=rotold", "-", ga, gb,
	    now, n, &err), 0);
	assert_int_equal(n[0], 2);
	assert_int_equal(store_rotation_count(s, "CN=rotold", sa, ga, gb,
	    now, n, &err), 0);
	assert_int_equal(n[0], 1);	/* the cross-certificate aside */
	assert_int_equal(store_revoke(s, sb, 4, now, &already, &err), 0);
	assert_int_equal(store_rotation_count(s, "CN=rotold", "-", ga, gb,
	    now, n, &err), 0);
	assert_int_equal(n[0], 1);	/* revoked: no longer blocks */
	assert_int_equal(store_rotation_count(s, "CN=rotold", "-", ga, gb,
	    now + 7200, n, &err), 0);
	assert_int_equal(n[0], 0);	/* expired */
	for (i = 0; i < 4; i++) {	/* the agents' certificates */
		ag[i] = mk_cert(0, "rotagent");
		assert_int_equal(store_add(s, ag[i], "leaf", &err), 0);
		hex_of(ag[i], sg[i], sizeof(sg[i]));
	}
	assert_int_equal(store_agent_bundle(s, sg[0], NULL, ga, now + 60,
	    &err), 0);
	assert_int_equal(store_agent_bundle(s, sg[1], NULL, stale,
	    now + 60, &err), 0);
	assert_int_equal(store_agent_bundle(s, sg[2], NULL, stale,
	    now - 1, &err), 0);	/* its certificate expired: gone */
	assert_int_equal(store_rotation_count(s, "CN=rotold", "-", ga, gb,
	    now, n, &err), 0);
	assert_int_equal(n[1], 2);
	assert_int_equal(n[2], 1);
	assert_int_equal(store_agent_bundle(s, sg[3], sg[1], gb, now + 60,
	    &err), 0);	/* the renewal of 1 reports the new bundle */
	assert_int_equal(store_rotation_count(s, "CN=rotold", "-", ga, gb,
	    now, n, &err), 0);
	assert_int_equal(n[1], 2);
	assert_int_equal(n[2], 0);
	for (i = 0; i < 4; i++)
		X509_free(ag[i]);
	sk_X509_free(sk);
	X509_free(a);
	X509_free(b);
	store_close(s);
}

/* ---- an agent's bundle report rides with its certificate's row ---- */
static void
t_bundle_with_row(void **state)
{
	struct mtls_error err;
	struct store *s = must_open();
	X509 *x = mk_cert(0, "bnd"), *y = mk_cert(0, "bnd"), *dup;
	char g[65], other[65], sx[48];
	int64_t n0[3], n1[3], now = (int64_t)time(NULL);
	uint64_t c0, i0, c1, i1, sn;

	(void)state;
	error_clear(&err);
	memset(g, 'd', 64);
	g[64] = '\0';
	memset(other, 'e', 64);
	other[64] = '\0';
	assert_int_equal(ASN1_INTEGER_get_uint64(&sn,
	    X509_get0_serialNumber(x)), 1);
	dup = mk_cert(sn, "bnd-dup");
	assert_int_equal(store_rotation_count(s, "CN=bnd", "-", other, other,
	    now, n0, &err), 0);
	store_stats(s, &c0, &i0);
	assert_int_equal(store_add_issued(s, x, "leaf", NULL, NULL, g, &err),
	    0);
	store_stats(s, &c1, &i1);
	assert_int_equal(c1 - c0, 1);	/* the row and the report: one commit */
	assert_int_equal(i1 - i0, 1);
	assert_int_equal(store_rotation_count(s, "CN=bnd", "-", other, other,
	    now, n1, &err), 0);
	assert_int_equal(n1[0], n0[0] + 1);
	assert_int_equal(n1[1], n0[1] + 1);	/* recorded, not after x's end */
	assert_int_equal(n1[2], n0[2] + 1);	/* g is neither "other" */
	/* an item refused (token, serial) records no report either */
	assert_int_equal(store_add_issued(s, y, "leaf", "h-none", NULL, g,
	    &err), 2);
	assert_int_equal(store_add_issued(s, dup, "leaf", NULL, NULL, g,
	    &err), 1);
	assert_int_equal(store_rotation_count(s, "CN=bnd", "-", other, other,
	    now, n0, &err), 0);
	assert_int_equal(n0[1], n1[1]);
	/* the renewal's report replaces that of the certificate renewed */
	X509_free(y);
	y = mk_cert(0, "bnd");
	hex_of(x, sx, sizeof(sx));
	assert_int_equal(store_add_issued(s, y, "leaf", NULL, sx, other,
	    &err), 0);
	assert_int_equal(store_rotation_count(s, "CN=bnd", "-", other, other,
	    now, n0, &err), 0);
	assert_int_equal(n0[1], n1[1]);
	assert_int_equal(n0[2], n1[2] - 1);
	X509_free(x);
	X509_free(y);
	X509_free(dup);
	store_close(s);
}

/* ---- the count is per certificate, not per identity (issue 16) ---- */

/* the change of store_rotation_count's agents (out[1], out[2]) since
 * <base>, at <at> */
static void
agents_since(struct store *s, const int64_t base[3], int64_t at,
    const char *gen, int64_t total, int64_t old)
{
	struct mtls_error err;
	int64_t n[3];

	error_clear(&err);
	assert_int_equal(store_rotation_count(s, "CN=none", "-", gen, gen, at,
	    n, &err), 0);
	assert_int_equal(n[1] - base[1], total);
	assert_int_equal(n[2] - base[2], old);
}

/* Two replicas of one SPIFFE ID (two certificates of one identity): the
 * first reports the old bundle, the second the new one. They are two
 * agents, one on the old bundle (the report per identity counted 0 of
 * 1: the last renewal won). A renewal replaces its own certificate's
 * report, no other's; a revoked or expired certificate's drops out. */
static void
t_agents_per_cert(void **state)
{
	struct mtls_error err;
	struct store *s = must_open();
	X509 *w[4];
	char sw[4][48], gold[65], gnew[65];
	int64_t base[3], later[3], now = (int64_t)time(NULL);
	int i, already;

	(void)state;
	error_clear(&err);
	memset(gold, 'a', 64);
	gold[64] = '\0';
	memset(gnew, 'b', 64);
	gnew[64] = '\0';
	for (i = 0; i < 4; i++) {
		w[i] = mk_cert(0, "web-replica");	/* one identity */
		hex_of(w[i], sw[i], sizeof(sw[i]));
	}
	assert_int_equal(store_rotation_count(s, "CN=none", "-", gnew, gnew,
	    now, base, &err), 0);
	assert_int_equal(store_rotation_count(s, "CN=none", "-", gnew, gnew,
	    now + 7200, later, &err), 0);
	/* two enrollments of the same identity */
	assert_int_equal(store_add_issued(s, w[0], "leaf", NULL, NULL, gold,
	    &err), 0);
	assert_int_equal(store_add_issued(s, w[1], "leaf", NULL, NULL, gnew,
	    &err), 0);
	agents_since(s, base, now, gnew, 2, 1);
	/* replica 0 renews with w[0], now holding the new bundle: w[2] */
	assert_int_equal(store_add_issued(s, w[2], "leaf", NULL, sw[0], gnew,
	    &err), 0);
	agents_since(s, base, now, gnew, 2, 0);
	/* replica 1 renews with w[1] reporting the old one: w[3]; w[2]'s
	 * report stays */
	assert_int_equal(store_add_issued(s, w[3], "leaf", NULL, sw[1], gold,
	    &err), 0);
	agents_since(s, base, now, gnew, 2, 1);
	/* a renewal with a certificate already renewed (w[0]'s report is
	 * gone) adds its own and replaces nothing else */
	X509_free(w[0]);
	w[0] = mk_cert(0, "web-replica");
	assert_int_equal(store_add_issued(s, w[0], "leaf", NULL, sw[0], gnew,
	    &err), 0);
	hex_of(w[0], sw[0], sizeof(sw[0]));
	agents_since(s, base, now, gnew, 3, 1);
	/* revoked: its report no longer counts */
	assert_int_equal(store_revoke(s, sw[3], 1, now, &already, &err), 0);
	agents_since(s, base, now, gnew, 2, 0);
	assert_int_equal(store_revoke(s, sw[2], 1, now, &already, &err), 0);
	agents_since(s, base, now, gnew, 1, 0);
	/* expired (mk_cert: an hour): neither */
	agents_since(s, later, now + 7200, gnew, 0, 0);
	for (i = 0; i < 4; i++)
		X509_free(w[i]);
	store_close(s);
}

static int
teardown(void **state)
{
	char p[400];

	(void)state;
	EVP_PKEY_free(key);
	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	return system(p) == 0 ? 0 : -1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_open_race),
		cmocka_unit_test(t_add_get_each),
		cmocka_unit_test(t_revoke_crl),
		cmocka_unit_test(t_tokens),
		cmocka_unit_test(t_burn_race),
		cmocka_unit_test(t_serial_race),
		cmocka_unit_test(t_group_commit),
		cmocka_unit_test(t_rotation),
		cmocka_unit_test(t_bundle_with_row),
		cmocka_unit_test(t_agents_per_cert),
		cmocka_unit_test(t_group_reports),
		cmocka_unit_test(t_sweep_reports),
	};

	return cmocka_run_group_tests_name(getenv("MTLS_TEST_STORE") &&
	    getenv("MTLS_TEST_STORE")[0] ? "store-postgres" : "store-sqlite",
	    tests, setup, teardown);
}
