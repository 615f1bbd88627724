/*
 * The inventory in PostgreSQL (libpq), shared by several ca serve
 * replicas. The same tables as store_sqlite.c; what SQLite got from one
 * writer at a time, this gets from the database:
 *  - a serial is unique by its PRIMARY KEY: INSERT ... ON CONFLICT DO
 *    NOTHING RETURNING says "taken" (a concurrent insert of the same
 *    serial waits for the other's commit, then finds it);
 *  - a token is burned by one UPDATE ... WHERE used_at IS NULL RETURNING,
 *    in the transaction that inserts its certificate: of two replicas
 *    burning it at once, the second waits on the row lock, re-reads it
 *    used, burns nothing and rolls its certificate back;
 *  - migrations run under pg_advisory_xact_lock, so replicas starting at
 *    once apply them one after the other, and the later finds them done.
 * Every answer is checked (count, NULLs, numbers): a hostile or broken
 * server is an error, never a crash. The URL and password never appear in
 * a message; a lost connection is err->sys = EIO ("store unavailable",
 * 503 in ca serve) and the next call reconnects.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "store_int.h"

/* pg_advisory_xact_lock key of the migrations: "mtlsmig" */
#define MIGRATION_LOCK	"7867093431413095"

#define PG_PREPARED	16
struct pg {
	struct store	 base;
	PGconn		*conn;
	int		 fresh;	/* opened while the server was down: set up
				 * and migrated by the first ensure() that
				 * connects */
	/* the statements prepared on this connection (PQprepare "s<i>",
	 * issue 15: no parse and plan per renewal), forgotten when the
	 * connection is reset */
	char		*prepared[PG_PREPARED];
};
#define PG(s)	((struct pg *)(s))

/* Migration N is migrations[N - 1]; append, never edit one released. */
static const char *const migrations[] = {
    /* 1: the inventory of schema 1 of store_sqlite.c */
    "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY,"
    " value text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS certs ("
    " serial text PRIMARY KEY,"
    " kind text NOT NULL,"
    " subject text NOT NULL,"
    " issuer text NOT NULL,"
    " identities text NOT NULL,"
    " not_before bigint NOT NULL,"
    " not_after bigint NOT NULL,"
    " status text NOT NULL DEFAULT 'valid',"
    " revoked_at bigint,"
    " reason integer,"
    " created_at bigint NOT NULL,"
    " der bytea NOT NULL);"
    "CREATE INDEX IF NOT EXISTS certs_not_after ON certs(not_after);"
    "CREATE TABLE IF NOT EXISTS tokens ("
    " hash text PRIMARY KEY, spiffe_id text NOT NULL,"
    " expires_at bigint NOT NULL, created_at bigint NOT NULL,"
    " used_at bigint, serial text);"
    "INSERT INTO meta VALUES ('schema', '1'), ('crl_number', '0')"
    " ON CONFLICT DO NOTHING;",
    /* 2: the inventory's views (store_inv.h), as store_sqlite.c's 2 but
     * identities (an index entry is at most 2.7 kB here: first leaves
     * are a hash aggregate of a scan) */
    "CREATE INDEX IF NOT EXISTS certs_na_serial ON certs(not_after, serial);"
    "CREATE INDEX IF NOT EXISTS certs_status_na ON certs(status, not_after,"
    " serial);"
    "CREATE INDEX IF NOT EXISTS certs_created ON certs(created_at, kind);",
    /* 3: the bundle generation each agent last reported (rotation) */
    "CREATE TABLE IF NOT EXISTS agent_bundles ("
    " identity text PRIMARY KEY, gen text NOT NULL,"
    " not_after bigint NOT NULL, seen_at bigint NOT NULL);",
    /* 4: as store_sqlite.c's 4: the report per certificate (its serial),
     * a row of 3 mapped to the leaf it was recorded for (same first
     * identity, same notAfter), dropped when there is none */
    "CREATE TABLE IF NOT EXISTS bundle_reports ("
    " serial text PRIMARY KEY, gen text NOT NULL,"
    " not_after bigint NOT NULL, seen_at bigint NOT NULL);"
    "INSERT INTO bundle_reports SELECT c.serial, a.gen, a.not_after,"
    " a.seen_at FROM agent_bundles a JOIN certs c ON"
    " c.not_after = a.not_after AND c.kind = 'leaf' AND"
    " (c.identities = a.identity OR left(c.identities,"
    " length(a.identity) + 1) = a.identity || E'\\n')"
    " ON CONFLICT DO NOTHING;"
    "DROP TABLE IF EXISTS agent_bundles;",
    /* 5: as store_sqlite.c's 5: certs_not_after is certs_na_serial's
     * first column, one index less to write per certificate */
    "DROP INDEX IF EXISTS certs_not_after;",
    /* 6: as store_sqlite.c's 6: the reports of expired certificates,
     * found by a batch's sweep without a scan */
    "CREATE INDEX IF NOT EXISTS bundle_reports_na ON"
    " bundle_reports(not_after);",
};
#define N_MIGRATIONS	((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The first line of libpq's last message, at most 200 bytes: it names
 * the server and the failure, never the password. */
static void
conn_msg(struct pg *s, char *buf, size_t len)
{
	const char *m = s->conn ? PQerrorMessage(s->conn) : "out of memory";
	size_t n = strcspn(m, "\n");

	if (n > 200)
		n = 200;
	if (n >= len)
		n = len - 1;
	memcpy(buf, m, n);
	buf[n] = '\0';
}

/* The server cannot be reached: EIO for ca serve to answer 503. */
static int
unavailable(struct pg *s, const char *what, struct mtls_error *err)
{
	char m[256];

	conn_msg(s, m, sizeof(m));
	error_set(err, MTLS_ERR_IO, "store unavailable (PostgreSQL): %s: %s",
	    what, m[0] ? m : "connection lost");
	err->sys = EIO;
	err->kind = STORE_KIND_PG_DOWN;
	return -1;
}

int
store_pg_classify(const char *st, int *sys, const char **kind)
{
	*sys = EIO;
	*kind = STORE_KIND_PG_DOWN;
	/* no SQLSTATE: no answer; 08: connection exception; 57P01
	 * admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
	 * 57P04 database_dropped, 57P05 idle session timeout; 53300
	 * too_many_connections: the server cannot serve us now */
	if (st == NULL || strlen(st) != 5 || strncmp(st, "08", 2) == 0 ||
	    strncmp(st, "57P", 3) == 0 || strcmp(st, "53300") == 0)
		return 1;
	if (strcmp(st, "53100") == 0) {		/* disk_full */
		*sys = ENOSPC;
		*kind = STORE_KIND_PG_FULL;
	} else if (strcmp(st, "53200") == 0)	/* out_of_memory */
		*kind = STORE_KIND_PG_MEMORY;
	else if (strncmp(st, "53", 2) == 0)	/* insufficient resources */
		*kind = STORE_KIND_PG_LIMIT;
	else if (strcmp(st, "25006") == 0) {	/* read-only transaction: a
						 * standby */
		*sys = EROFS;
		*kind = STORE_KIND_PG_READ_ONLY;
	} else if (strcmp(st, "57014") == 0 ||	/* statement_timeout */
	    strcmp(st, "55P03") == 0 ||		/* lock_timeout */
	    strcmp(st, "40001") == 0 ||		/* serialization failure */
	    strcmp(st, "40P01") == 0)		/* deadlock */
		*kind = STORE_KIND_PG_BUSY;	/* 503, the client retries */
	else {
		*sys = 0;			/* the request's, or ours */
		*kind = NULL;
	}
	return 0;
}

/* After a failed connect: whether the server was down (unreachable,
 * refusing, starting up, TLS) rather than refusing our credentials (it
 * asked for a password, or took ours and said no): only the first is
 * waited for (store_open_down_ok). */
static int
pg_down_at_open(PGconn *conn)
{
	return !PQconnectionNeedsPassword(conn) &&
	    !PQconnectionUsedPassword(conn);
}

/* A failed statement: its SQLSTATE decides the kind of error. */
static int
failed(struct pg *s, PGresult *res, const char *what, struct mtls_error *err)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) :
	    NULL;
	const char *kind;
	int sys;

	if (PQstatus(s->conn) != CONNECTION_OK ||
	    store_pg_classify(st, &sys, &kind) == 1)
		return unavailable(s, what, err);
	error_set(err, MTLS_ERR_IO, "PostgreSQL store: %s: %.200s (SQLSTATE "
	    "%.5s)", what, m ? m : "error", st);
	err->sys = sys;
	err->kind = kind;
	return -1;
}

/* A new connection has no prepared statement. */
static void
forget_prepared(struct pg *s)
{
	int i;

	for (i = 0; i < PG_PREPARED; i++) {
		free(s->prepared[i]);
		s->prepared[i] = NULL;
	}
}

static void
reset(struct pg *s)
{
	forget_prepared(s);
	PQreset(s->conn);
}

/* <sql> as a statement prepared on this connection (the first time it
 * runs here), then executed; PQexecParams when the table is full or the
 * preparation fails (the failure is then the execution's to report). */
/* The name of <sql> prepared on this connection, prepared now the first
 * time: 0, or -1 when the table is full or the preparation failed. */
static int
prepared_name(struct pg *s, const char *sql, int n, char name[8])
{
	PGresult *res;
	int i;

	for (i = 0; i < PG_PREPARED && s->prepared[i] != NULL; i++)
		if (strcmp(s->prepared[i], sql) == 0)
			break;
	if (i == PG_PREPARED)
		return -1;
	snprintf(name, 8, "s%d", i);
	if (s->prepared[i] == NULL) {
		res = PQprepare(s->conn, name, sql, n, NULL);
		if (res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK)
			s->prepared[i] = strdup(sql);
		PQclear(res);
	}
	return s->prepared[i] != NULL ? 0 : -1;
}

static PGresult *
exec_prepared(struct pg *s, const char *sql, int n, const char *const *v,
    const int *lens, const int *fmts)
{
	char name[8];
	PGresult *res;

	if (prepared_name(s, sql, n, name) != 0)
		return PQexecParams(s->conn, sql, n, NULL, v, lens, fmts, 0);
	res = PQexecPrepared(s->conn, name, n, v, lens, fmts, 0);
	/* gone from the session (a pooler in transaction mode, DISCARD ALL):
	 * prepared again next time; outside a transaction, run as it is */
	if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR &&
	    strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : "", "26000") == 0) {
		forget_prepared(s);
		if (PQtransactionStatus(s->conn) == PQTRANS_IDLE) {
			PQclear(res);
			res = PQexecParams(s->conn, sql, n, NULL, v, lens,
			    fmts, 0);
		}
	}
	return res;
}

/* Runs <sql> with <n> text parameters <v> (parameter <bin>, if >= 0, is
 * binary of <bin_len> bytes). The result when its status is <want>, else
 * NULL with err set. */
static PGresult *
run(struct pg *s, const char *sql, int n, const char *const *v, int bin,
    int bin_len, ExecStatusType want, const char *what,
    struct mtls_error *err)
{
	PGresult *res;
	int lens[16] = { 0 }, fmts[16] = { 0 }, idle;

	if (bin >= 0 && bin < 16) {
		lens[bin] = bin_len;
		fmts[bin] = 1;
	}
	idle = PQtransactionStatus(s->conn) == PQTRANS_IDLE;
	res = exec_prepared(s, sql, n, v, lens, fmts);
	if (res != NULL && PQresultStatus(res) == want)
		return res;
	/* the connection died under a statement outside any transaction
	 * (the server restarted, or closed it while ensure() looked): once,
	 * reconnect and run it again. Every such statement of this file is
	 * a read, a BEGIN, or a write whose repetition is harmless (revoke:
	 * "already"; CRL number: one skipped; token: "exists") */
	if (idle && PQstatus(s->conn) == CONNECTION_BAD) {
		PQclear(res);
		reset(s);
		if (PQstatus(s->conn) != CONNECTION_OK) {
			unavailable(s, what, err);
			return NULL;
		}
		res = exec_prepared(s, sql, n, v, lens, fmts);
		if (res != NULL && PQresultStatus(res) == want)
			return res;
	}
	failed(s, res, what, err);
	PQclear(res);
	return NULL;
}

/* A statement without parameters or rows (several for a migration). */
static int
exec_simple(struct pg *s, const char *sql, const char *what,
    struct mtls_error *err)
{
	PGresult *res = PQexec(s->conn, sql);
	int rv = 0;

	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		rv = failed(s, res, what, err);
	PQclear(res);
	return rv;
}

static void
rollback(struct pg *s)
{
	PQclear(PQexec(s->conn, "ROLLBACK"));
}

static int setup(struct pg *, struct mtls_error *);

/* Before each call: a working connection outside any transaction;
 * reconnects after a loss. A server that closed our idle connection
 * (restart, pg_terminate_backend) has sent its goodbye already: reading
 * what is there (libpq's socket never blocks) finds it, and we reconnect
 * before the call instead of failing it. */
static int
ensure(struct pg *s, struct mtls_error *err)
{
	if (PQstatus(s->conn) == CONNECTION_OK &&
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		rollback(s);
	if (PQstatus(s->conn) != CONNECTION_OK ||
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE ||
	    PQconsumeInput(s->conn) != 1 ||
	    PQstatus(s->conn) != CONNECTION_OK) {
		reset(s);
		if (PQstatus(s->conn) != CONNECTION_OK)
			return unavailable(s, "cannot reconnect", err);
	}
	/* opened while the server was down: set up once it answers (a
	 * failed migration is tried again by the next call) */
	if (s->fresh && setup(s, err) != 0)
		return -1;
	s->fresh = 0;
	return 0;
}

/* ---- reading answers: every field checked ---- */

/* Whether <res> has at least <rows> rows of exactly <cols> fields. */
static int
shape(struct pg *s, PGresult *res, int rows, int cols, struct mtls_error *err)
{
	(void)s;
	if (PQntuples(res) >= rows && PQnfields(res) == cols)
		return 0;
	return error_set(err, MTLS_ERR_PARSE, "PostgreSQL store: unexpected "
	    "answer (%d rows of %d fields)", PQntuples(res), PQnfields(res));
}

/* Field <c> of row <r> as an integer; NULL is 0 when <nullable>. */
static int
col_i64(PGresult *res, int r, int c, int nullable, int64_t *out,
    struct mtls_error *err)
{
	const char *t;
	char *end;
	long long v;

	*out = 0;
	if (PQgetisnull(res, r, c)) {
		if (nullable)
			return 0;
		return error_set(err, MTLS_ERR_PARSE, "PostgreSQL store: "
		    "unexpected NULL in column %d", c + 1);
	}
	t = PQgetvalue(res, r, c);
	errno = 0;
	v = strtoll(t, &end, 10);
	if (t[0] == '\0' || *end != '\0' || errno != 0)
		return error_set(err, MTLS_ERR_PARSE, "PostgreSQL store: "
		    "column %d is not an integer", c + 1);
	*out = v;
	return 0;
}

/* Field <c> of row <r> as text (never NULL). */
static int
col_text(PGresult *res, int r, int c, const char **out,
    struct mtls_error *err)
{
	*out = "";
	if (PQgetisnull(res, r, c))
		return error_set(err, MTLS_ERR_PARSE, "PostgreSQL store: "
		    "unexpected NULL in column %d", c + 1);
	*out = PQgetvalue(res, r, c);
	return 0;
}

/* ---- open, migrations ---- */

static void
pg_close(struct store *base)
{
	struct pg *s = PG(base);

	PQfinish(s->conn);
	forget_prepared(s);
	free(s);
}

static int
migrate(struct pg *s, struct mtls_error *err)
{
	PGresult *res = NULL;
	const char *v[2];
	char ver[16], now[24];
	int64_t cur;
	int i;

	if (exec_simple(s, "BEGIN", "cannot begin the schema migration",
	    err) != 0)
		return -1;
	if ((res = run(s, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")",
	    0, NULL, -1, 0, PGRES_TUPLES_OK, "cannot lock the schema", err)) ==
	    NULL)
		goto fail;
	PQclear(res);
	if (exec_simple(s, "CREATE TABLE IF NOT EXISTS schema_version ("
	    "version integer PRIMARY KEY, applied_at bigint NOT NULL)",
	    "cannot create schema_version", err) != 0)
		goto fail;
	if ((res = run(s, "SELECT coalesce(max(version), 0) FROM "
	    "schema_version", 0, NULL, -1, 0, PGRES_TUPLES_OK,
	    "cannot read the schema version", err)) == NULL ||
	    shape(s, res, 1, 1, err) != 0 ||
	    col_i64(res, 0, 0, 0, &cur, err) != 0)
		goto fail;
	PQclear(res);
	res = NULL;
	if (cur > N_MIGRATIONS || cur < 0) {
		error_set(err, MTLS_ERR_PARSE, "PostgreSQL store: schema "
		    "version %" PRId64 "; this mtls knows up to %d (use a "
		    "newer mtls)", cur, N_MIGRATIONS);
		goto fail;
	}
	for (i = (int)cur; i < N_MIGRATIONS; i++) {
		if (exec_simple(s, migrations[i], "cannot apply a schema "
		    "migration", err) != 0)
			goto fail;
		snprintf(ver, sizeof(ver), "%d", i + 1);
		snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
		v[0] = ver;
		v[1] = now;
		if ((res = run(s, "INSERT INTO schema_version VALUES ($1, $2)",
		    2, v, -1, 0, PGRES_COMMAND_OK, "cannot record a schema "
		    "migration", err)) == NULL)
			goto fail;
		PQclear(res);
		res = NULL;
	}
	if (exec_simple(s, "COMMIT", "cannot commit the schema migration",
	    err) != 0)
		goto fail;
	return 0;
 fail:
	PQclear(res);
	rollback(s);
	return -1;
}

static const struct store_ops pg_ops;
static const struct store_inv_ops pg_inv_ops;
static int rows_each(struct pg *, PGresult *,
    int (*)(void *, const struct cert_rec *), void *, struct mtls_error *);

/* The server's notices (NOTICE, WARNING) are not ours to print: libpq's
 * default writes them to stderr, unformatted, whatever the server says. */
static void
no_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

/* Whether the URL carries a password (refused: it belongs in a file). */
static int
url_check(const char *url, struct mtls_error *err)
{
	PQconninfoOption *o, *opts;
	char *msg = NULL;
	int rv = 0;

	if ((opts = PQconninfoParse(url, &msg)) == NULL) {
		/* libpq's message may quote the URL: not repeated */
		PQfreemem(msg);
		return error_set(err, MTLS_ERR_ARG, "store: not a valid "
		    "PostgreSQL URL (postgres://[user@]host[:port]/dbname"
		    "[?sslmode=verify-full])");
	}
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    o->val[0] != '\0')
			rv = error_set(err, MTLS_ERR_ARG, "store: the URL "
			    "carries a password; put it in a file named by "
			    "store_password_file (mode 0600) instead");
	for (o = opts; o->keyword != NULL; o++)
		if (o->val != NULL)
			OPENSSL_cleanse(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return rv;
}

/* A new session: quiet notices, then the migrations. */
static int
setup(struct pg *s, struct mtls_error *err)
{
	if (exec_simple(s, "SET client_min_messages = warning", "cannot set "
	    "up the session", err) != 0)
		return -1;
	return migrate(s, err);
}

int
store_pg_open(struct store **out, const struct store_conf *c,
    struct mtls_error *err)
{
	struct mtls_secret pass = { NULL, 0 };
	const char *k[16], *v[16];
	char *pw = NULL;
	struct pg *s = NULL;
	int n = 0;

	*out = NULL;
	if (url_check(c->url, err) != 0)
		return -1;
	if (c->password_file[0] != '\0') {
		if (secret_load_private(&pass, c->password_file,
		    "store_password_file ", NULL, err) != 0)
			goto err;
		if ((pw = calloc(1, pass.len + 1)) == NULL) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto err;
		}
		memcpy(pw, pass.p, pass.len);
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto err;
	}
	s->base.ops = &pg_ops;
	/* defaults first: the URL may override them; then ca.conf's */
	k[n] = "connect_timeout", v[n++] = "10";
	k[n] = "application_name", v[n++] = "mtls-ca";
	/* a database that stops answering must not hold the CA's mutex for
	 * ever: the server ends a statement, a lock wait or an abandoned
	 * transaction after 10/10/30 s (kept by PQreset, unlike a SET), and
	 * TCP gives up on a peer that went silent after 15 s */
	k[n] = "options", v[n++] = "-c statement_timeout=10000 "
	    "-c lock_timeout=10000 -c idle_in_transaction_session_timeout=30000";
	k[n] = "keepalives", v[n++] = "1";
	k[n] = "keepalives_idle", v[n++] = "10";
	k[n] = "keepalives_interval", v[n++] = "5";
	k[n] = "keepalives_count", v[n++] = "3";
	k[n] = "tcp_user_timeout", v[n++] = "15000";
	k[n] = "dbname", v[n++] = c->url;
	if (pw != NULL)
		k[n] = "password", v[n++] = pw;
	if (c->sslmode[0] != '\0')
		k[n] = "sslmode", v[n++] = c->sslmode;
	if (c->sslrootcert[0] != '\0')
		k[n] = "sslrootcert", v[n++] = c->sslrootcert;
	k[n] = NULL, v[n] = NULL;
	s->conn = PQconnectdbParams(k, v, 1);
	if (s->conn != NULL)
		PQsetNoticeProcessor(s->conn, no_notice, NULL);
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		unavailable(s, "cannot connect", err);
		/* down, not refused (a password, a certificate, the URL's
		 * database: those are SQLSTATEs of an answer): ca serve
		 * starts and waits for it; libpq keeps the settings for
		 * PQreset */
		if (!c->down_ok || s->conn == NULL ||
		    !pg_down_at_open(s->conn))
			goto err;
		s->fresh = 1;
	} else if (setup(s, err) != 0)
		goto err;
	*out = &s->base;
	s = NULL;
 err:
	if (pw != NULL) {
		OPENSSL_cleanse(pw, pass.len);
		free(pw);
	}
	secret_clear(&pass);
	if (s != NULL)
		pg_close(&s->base);
	return *out != NULL ? 0 : -1;
}

/* ---- the operations ---- */

/* ---- a batch (store.c's group commit): one transaction ---- */

/* the statements of a batch, item by item (pg_tx_*) or pipelined
 * (pg_tx_batch) */
static const char SQL_INSERT[] = "INSERT INTO certs (serial, kind, subject, "
    "issuer, identities, not_before, not_after, created_at, der) VALUES ($1, "
    "$2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (serial) DO NOTHING "
    "RETURNING serial";
static const char SQL_BURN[] = "UPDATE tokens SET used_at = $1, serial = $2 "
    "WHERE hash = $3 AND used_at IS NULL AND expires_at > $1 RETURNING hash";
static const char SQL_REPORT_DEL[] = "DELETE FROM bundle_reports WHERE "
    "serial = $1";
static const char SQL_SWEEP[] = "DELETE FROM bundle_reports WHERE serial "
    "IN (SELECT serial FROM bundle_reports WHERE not_after < $1 ORDER BY "
    "not_after LIMIT $2)";
static const char SQL_REPORT[] = "INSERT INTO bundle_reports (serial, gen, "
    "not_after, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (serial) DO "
    "UPDATE SET gen = excluded.gen, not_after = excluded.not_after, "
    "seen_at = excluded.seen_at";

/* SQL_INSERT's parameters for <r> (the numbers as text in <nb>, <na>,
 * <ca>; the DER, $9, binary of r->der_len bytes) */
static void
row_params(const struct store_row *r, char nb[24], char na[24], char ca[24],
    const char *v[9])
{
	snprintf(nb, 24, "%lld", (long long)r->not_before);
	snprintf(na, 24, "%lld", (long long)r->not_after);
	snprintf(ca, 24, "%lld", (long long)r->created_at);
	v[0] = r->serial, v[1] = r->kind, v[2] = r->subject;
	v[3] = r->issuer, v[4] = r->identities, v[5] = nb, v[6] = na;
	v[7] = ca, v[8] = (const char *)r->der;
}

static int
pg_tx_begin(struct store *base, struct mtls_error *err)
{
	struct pg *s = PG(base);

	if (ensure(s, err) != 0)
		return -1;
	return exec_simple(s, "BEGIN", "cannot begin", err);
}

static int
pg_tx_insert(struct store *base, const struct store_row *r,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char nb[24], na[24], ca[24];
	const char *v[9];
	int rv;

	row_params(r, nb, na, ca, v);
	/* a taken serial is no row back, not an error (which would abort
	 * the whole transaction) */
	if ((res = run(s, SQL_INSERT, 9, v, 8, (int)r->der_len, PGRES_TUPLES_OK,
	    "cannot record certificate", err)) == NULL)
		return -1;
	rv = PQntuples(res) == 0 ? 1 : 0;
	PQclear(res);
	return rv;
}

static int
pg_tx_burn(struct store *base, const char *token_hash, const char *serial,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char now[24];
	const char *v[3];
	int n;

	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	v[0] = now, v[1] = serial, v[2] = token_hash;
	/* of two replicas burning one token, the second waits on the row,
	 * then finds it used */
	if ((res = run(s, SQL_BURN, 3, v, -1, 0, PGRES_TUPLES_OK,
	    "cannot burn the token", err)) == NULL)
		return -1;
	n = PQntuples(res);
	PQclear(res);
	if (n == 1)
		return 0;
	error_set(err, MTLS_ERR_ARG, "the token was used already or has "
	    "expired");
	return 1;
}

static int
pg_tx_uninsert(struct store *base, const char *serial,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	const char *v[1] = { serial };

	if ((res = run(s, "DELETE FROM certs WHERE serial = $1", 1, v, -1, 0,
	    PGRES_COMMAND_OK, "cannot take the certificate back", err)) ==
	    NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_tx_sweep(struct store *base, int64_t now, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char at[24], lim[12];
	const char *v[2] = { at, lim };

	snprintf(at, sizeof(at), "%lld", (long long)now);
	snprintf(lim, sizeof(lim), "%d", STORE_SWEEP);
	if ((res = run(s, SQL_SWEEP, 2, v, -1, 0, PGRES_COMMAND_OK,
	    "cannot delete expired bundle reports", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_tx_end(struct store *base, int commit, struct mtls_error *err)
{
	struct pg *s = PG(base);

	/* durable when COMMIT returns */
	if (commit && exec_simple(s, "COMMIT", "cannot commit the "
	    "certificate", err) == 0)
		return 0;
	if (PQstatus(s->conn) == CONNECTION_OK &&
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		rollback(s);
	return commit ? -1 : 0;
}

/* ---- a batch in one round trip (libpq's pipeline mode) ---- */

/* items per pipeline: their results (a few bytes each) are read before
 * the next is sent, so that neither side's socket buffer fills while the
 * other waits (libpq's blocking mode) */
#define PIPE_ITEMS	64
enum { Q_BEGIN, Q_INSERT, Q_BURN, Q_REPORT_DEL, Q_REPORT, Q_SWEEP };

struct pipe {
	char	 name[5][8];	/* Q_INSERT.. prepared statements */
	char	 now[24];
	int	 q[2 + 4 * PIPE_ITEMS], nq;	/* what was sent, in order */
};

/* Sends item <it>'s statements into the pipeline: 0, or -1. */
static int
pipe_item(struct pg *s, struct pipe *p, const struct store_item *it)
{
	const struct store_row *r = it->r;
	char nb[24], na[24], ca[24];
	const char *v[9];
	int lens[9] = { 0 }, fmts[9] = { 0 };

	row_params(r, nb, na, ca, v);
	lens[8] = (int)r->der_len, fmts[8] = 1;
	if (PQsendQueryPrepared(s->conn, p->name[0], 9, v, lens, fmts, 0) !=
	    1)
		return -1;
	p->q[p->nq++] = Q_INSERT;
	if (it->token_hash != NULL) {
		v[0] = p->now, v[1] = r->serial, v[2] = it->token_hash;
		if (PQsendQueryPrepared(s->conn, p->name[1], 3, v, NULL, NULL,
		    0) != 1)
			return -1;
		p->q[p->nq++] = Q_BURN;
	}
	if (it->gen == NULL)
		return 0;
	if (it->replaces != NULL) {
		if (PQsendQueryPrepared(s->conn, p->name[2], 1, &it->replaces,
		    NULL, NULL, 0) != 1)
			return -1;
		p->q[p->nq++] = Q_REPORT_DEL;
	}
	v[0] = r->serial, v[1] = it->gen, v[2] = na, v[3] = ca;
	if (PQsendQueryPrepared(s->conn, p->name[3], 4, v, NULL, NULL, 0) != 1)
		return -1;
	p->q[p->nq++] = Q_REPORT;
	return 0;
}

/* Reads the results of what <p> sent, then the sync: 0 all as expected,
 * 1 a serial taken, a token refused or a prepared statement gone, -1 an
 * error (err set). */
static int
pipe_read(struct pg *s, struct pipe *p, struct mtls_error *err)
{
	static const char *const what[] = { "cannot begin",
	    "cannot record certificate", "cannot burn the token",
	    "cannot replace the agent's bundle",
	    "cannot record the agent's bundle",
	    "cannot delete expired bundle reports" };
	PGresult *res;
	ExecStatusType want, st;
	int i, rv = 0;

	for (i = 0; i < p->nq; i++) {
		if ((res = PQgetResult(s->conn)) == NULL) {
			/* nothing more: the connection is gone */
			return rv < 0 ? rv : failed(s, NULL, what[p->q[i]],
			    err);
		}
		st = PQresultStatus(res);
		want = p->q[i] == Q_INSERT || p->q[i] == Q_BURN ?
		    PGRES_TUPLES_OK : PGRES_COMMAND_OK;
		if (st == PGRES_PIPELINE_ABORTED)	/* after an error */
			;
		else if (st != want && rv >= 0 && strcmp(
		    PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL ?
		    PQresultErrorField(res, PG_DIAG_SQLSTATE) : "",
		    "26000") == 0) {
			/* a statement gone from the session (as in
			 * exec_prepared): item by item, prepared again */
			forget_prepared(s);
			rv = 1;
		} else if (st != want) {
			if (rv >= 0)
				rv = failed(s, res, what[p->q[i]], err);
		} else if ((p->q[i] == Q_INSERT || p->q[i] == Q_BURN) &&
		    PQntuples(res) != 1 && rv == 0)
			rv = 1;
		PQclear(res);
		/* each statement's results end with a NULL */
		if ((res = PQgetResult(s->conn)) != NULL) {
			PQclear(res);
			return rv < 0 ? rv : failed(s, NULL, what[p->q[i]],
			    err);
		}
	}
	p->nq = 0;
	res = PQgetResult(s->conn);
	st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	PQclear(res);
	if (st != PGRES_PIPELINE_SYNC && rv >= 0)
		rv = failed(s, NULL, "cannot record certificate", err);
	return rv;
}

/* store_int.h's tx_batch: BEGIN and every item's statements (the same
 * as pg_tx_insert, pg_tx_burn, pg_tx_bundle) sent at once, their results
 * read after: one round trip for up to PIPE_ITEMS items, where item by
 * item took three per renewal and postgres woke for each (issue 15). */
static int
pg_tx_batch(struct store *base, const struct store_item *items, size_t n,
    struct mtls_error *err)
{
	static const char *const sql[5] = { SQL_INSERT, SQL_BURN,
	    SQL_REPORT_DEL, SQL_REPORT, SQL_SWEEP };
	static const int nparams[5] = { 9, 3, 1, 4, 2 };
	struct pg *s = PG(base);
	struct pipe p;
	const char *v[2];
	char lim[12];
	size_t i = 0, end;
	int k, rv = 0, reports = 0;

	if (ensure(s, err) != 0)
		return -1;
	/* a statement that cannot be prepared: item by item, which runs it
	 * unprepared or says why it fails */
	for (k = 0; k < 5; k++)
		if (prepared_name(s, sql[k], nparams[k], p.name[k]) != 0)
			return 1;
	if (PQenterPipelineMode(s->conn) != 1)
		return 1;
	snprintf(p.now, sizeof(p.now), "%lld", (long long)time(NULL));
	p.nq = 0;
	if (PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL,
	    0) != 1)
		rv = unavailable(s, "cannot begin", err);
	else
		p.q[p.nq++] = Q_BEGIN;
	while (rv == 0 && i < n) {
		end = n - i > PIPE_ITEMS ? i + PIPE_ITEMS : n;
		for (; rv == 0 && i < end; i++) {
			if (pipe_item(s, &p, &items[i]) != 0)
				rv = unavailable(s, "cannot record "
				    "certificate", err);
			reports += items[i].gen != NULL;
		}
		/* last: the sweep of a batch with reports (store.c's) */
		snprintf(lim, sizeof(lim), "%d", STORE_SWEEP);
		v[0] = p.now, v[1] = lim;
		if (rv == 0 && i == n && reports > 0) {
			if (PQsendQueryPrepared(s->conn, p.name[4], 2, v,
			    NULL, NULL, 0) != 1)
				rv = unavailable(s, "cannot delete expired "
				    "bundle reports", err);
			else
				p.q[p.nq++] = Q_SWEEP;
		}
		if (rv == 0 && PQpipelineSync(s->conn) != 1)
			rv = unavailable(s, "cannot record certificate", err);
		if (rv == 0)
			rv = pipe_read(s, &p, err);
	}
	if (PQexitPipelineMode(s->conn) != 1) {
		/* results left unread (an error above): the transaction
		 * goes with the connection, a new one next time */
		reset(s);
		return rv < 0 ? rv : unavailable(s, "cannot record "
		    "certificate", err);
	}
	if (rv != 0 && PQstatus(s->conn) == CONNECTION_OK &&
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		rollback(s);
	return rv;
}

static int
pg_probe(struct store *base, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char now[24];
	const char *v[1] = { now };

	if (ensure(s, err) != 0)
		return -1;
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	if ((res = run(s, "INSERT INTO meta VALUES ('write_probe', $1) ON "
	    "CONFLICT (key) DO UPDATE SET value = excluded.value", 1, v, -1, 0,
	    PGRES_COMMAND_OK, "cannot write", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_token_add(struct store *base, const char *hash, const char *spiffe_id,
    int64_t expires_at, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char ex[24], now[24];
	const char *v[4] = { hash, spiffe_id, ex, now };

	if (ensure(s, err) != 0)
		return -1;
	snprintf(ex, sizeof(ex), "%lld", (long long)expires_at);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	if ((res = run(s, "INSERT INTO tokens (hash, spiffe_id, expires_at, "
	    "created_at) VALUES ($1, $2, $3, $4)", 4, v, -1, 0,
	    PGRES_COMMAND_OK, "cannot record the token", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_token_get(struct store *base, const char *hash, char *spiffe_id,
    size_t id_len, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	const char *v[1] = { hash }, *id;
	int64_t exp, used;
	int rv = -1;

	if (ensure(s, err) != 0)
		return -1;
	if ((res = run(s, "SELECT spiffe_id, expires_at, used_at FROM tokens "
	    "WHERE hash = $1", 1, v, -1, 0, PGRES_TUPLES_OK,
	    "cannot look up the token", err)) == NULL)
		return -1;
	if (shape(s, res, 0, 3, err) != 0)
		;
	else if (PQntuples(res) == 0)
		error_set(err, MTLS_ERR_ARG, "unknown token (not made by "
		    "mtls ca token create for this CA)");
	else if (col_text(res, 0, 0, &id, err) != 0 ||
	    col_i64(res, 0, 1, 0, &exp, err) != 0 ||
	    col_i64(res, 0, 2, 1, &used, err) != 0)
		;
	else if (!PQgetisnull(res, 0, 2))
		error_set(err, MTLS_ERR_ARG, "the token was used already (one "
		    "enrollment per token)");
	else if (exp <= (int64_t)time(NULL))
		error_set(err, MTLS_ERR_ARG, "the token has expired (make a "
		    "new one with mtls ca token create)");
	else if (strlen(id) >= id_len)
		error_set(err, MTLS_ERR_PARSE, "PostgreSQL store: the token's "
		    "SPIFFE ID is too long");
	else {
		snprintf(spiffe_id, id_len, "%s", id);
		rv = 0;
	}
	PQclear(res);
	return rv;
}

static int
pg_get(struct store *base, const char *serial, const uint8_t *der,
    size_t der_len, struct cert_rec *r, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	const char *v[2] = { serial, (const char *)der }, *t;
	int64_t reason;
	int rv = -1;

	memset(r, 0, sizeof(*r));
	if (ensure(s, err) != 0)
		return -1;
	if ((res = run(s, der != NULL ? "SELECT kind, status, revoked_at, "
	    "reason, not_after, der = $2, issuer FROM certs WHERE serial = $1"
	    : "SELECT kind, status, revoked_at, reason, not_after, true, "
	    "issuer FROM certs WHERE serial = $1", der != NULL ? 2 : 1, v, 1,
	    (int)der_len, PGRES_TUPLES_OK, "cannot look up a serial",
	    err)) == NULL)
		return -1;
	if (shape(s, res, 0, 7, err) != 0)
		goto out;
	if (PQntuples(res) == 0) {
		rv = 1;
		goto out;
	}
	if (col_text(res, 0, 6, &t, err) != 0)
		goto out;
	snprintf(r->issuer, sizeof(r->issuer), "%s", t);
	snprintf(r->serial, sizeof(r->serial), "%s", serial);
	if (col_text(res, 0, 0, &t, err) != 0)
		goto out;
	r->kind = store_kind(t);
	if (col_text(res, 0, 1, &t, err) != 0)
		goto out;
	r->revoked = strcmp(t, "revoked") == 0;
	if (col_i64(res, 0, 2, 1, &r->revoked_at, err) != 0 ||
	    col_i64(res, 0, 3, 1, &reason, err) != 0 ||
	    col_i64(res, 0, 4, 0, &r->not_after, err) != 0 ||
	    col_text(res, 0, 5, &t, err) != 0)
		goto out;
	r->reason = (int)reason;
	rv = strcmp(t, "t") == 0 ? 0 : 2;
 out:
	PQclear(res);
	return rv;
}

static int
pg_revoke(struct store *base, const char *serial, int reason, int64_t at,
    int *already, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char a[24], rs[16];
	const char *v[3] = { a, rs, serial };
	int rv = -1;

	*already = 0;
	if (ensure(s, err) != 0)
		return -1;
	snprintf(a, sizeof(a), "%lld", (long long)at);
	snprintf(rs, sizeof(rs), "%d", reason);
	if ((res = run(s, "UPDATE certs SET status = 'revoked', revoked_at = "
	    "$1, reason = $2 WHERE serial = $3 AND status <> 'revoked' "
	    "RETURNING serial", 3, v, -1, 0, PGRES_TUPLES_OK,
	    "cannot record revocation", err)) == NULL)
		return -1;
	if (PQntuples(res) == 1) {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	if ((res = run(s, "SELECT 1 FROM certs WHERE serial = $1", 1, v + 2,
	    -1, 0, PGRES_TUPLES_OK, "cannot look up a serial", err)) == NULL)
		return -1;
	if (PQntuples(res) >= 1) {
		*already = 1;
		rv = 0;
	} else
		error_set(err, MTLS_ERR_ARG, "serial %s: not issued by this CA "
		    "(see mtls ca list)", serial);
	PQclear(res);
	return rv;
}

static int
pg_each(struct store *base, int (*cb)(void *, const struct cert_rec *),
    void *arg, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	int rv;

	if (ensure(s, err) != 0)
		return -1;
	if ((res = run(s, "SELECT serial, kind, subject, issuer, identities, "
	    "not_before, not_after, status, revoked_at, reason, created_at "
	    "FROM certs ORDER BY created_at DESC, serial", 0, NULL, -1, 0,
	    PGRES_TUPLES_OK, "cannot list", err)) == NULL)
		return -1;
	rv = rows_each(s, res, cb, arg, err);
	PQclear(res);
	return rv;
}

static int
pg_next_crl_number(struct store *base, int64_t *n, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	int rv = -1;

	if (ensure(s, err) != 0)
		return -1;
	/* one statement: atomic across replicas */
	if ((res = run(s, "UPDATE meta SET value = (value::bigint + 1)::text "
	    "WHERE key = 'crl_number' RETURNING value::bigint", 0, NULL, -1, 0,
	    PGRES_TUPLES_OK, "cannot bump the CRL number", err)) == NULL)
		return -1;
	if (shape(s, res, 1, 1, err) == 0 && col_i64(res, 0, 0, 0, n, err) ==
	    0)
		rv = 0;
	PQclear(res);
	return rv;
}

static int
pg_revocations(struct store *base, int64_t *n, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	int rv = -1;

	if (ensure(s, err) != 0)
		return -1;
	if ((res = run(s, "SELECT count(*) FROM certs WHERE status = "
	    "'revoked'", 0, NULL, -1, 0, PGRES_TUPLES_OK,
	    "cannot count revocations", err)) == NULL)
		return -1;
	if (shape(s, res, 1, 1, err) == 0 && col_i64(res, 0, 0, 0, n, err) ==
	    0)
		rv = 0;
	PQclear(res);
	return rv;
}

/* ---- migration target (mtls ca store migrate) ---- */

static int
pg_load_begin(struct store *base, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res = NULL;
	int64_t n;

	if (ensure(s, err) != 0 || exec_simple(s, "BEGIN", "cannot begin",
	    err) != 0)
		return -1;
	/* no replica writes while we copy */
	if (exec_simple(s, "LOCK TABLE certs, tokens, meta, bundle_reports IN "
	    "EXCLUSIVE MODE",
	    "cannot lock the tables", err) != 0)
		goto fail;
	if ((res = run(s, "SELECT (SELECT count(*) FROM certs) + (SELECT "
	    "count(*) FROM tokens)", 0, NULL, -1, 0, PGRES_TUPLES_OK,
	    "cannot count the rows", err)) == NULL ||
	    shape(s, res, 1, 1, err) != 0 ||
	    col_i64(res, 0, 0, 0, &n, err) != 0)
		goto fail;
	if (n != 0) {
		error_set(err, MTLS_ERR_ARG, "the target store is not empty "
		    "(%" PRId64 " certificates and tokens): migrate into an "
		    "empty database; nothing was copied", n);
		goto fail;
	}
	PQclear(res);
	return 0;
 fail:
	PQclear(res);
	rollback(s);
	return -1;
}

static int
pg_load_row(struct store *base, const struct store_row *r,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char nb[24], na[24], ca[24], ra[24], rs[16];
	const char *v[12];

	snprintf(nb, sizeof(nb), "%lld", (long long)r->not_before);
	snprintf(na, sizeof(na), "%lld", (long long)r->not_after);
	snprintf(ca, sizeof(ca), "%lld", (long long)r->created_at);
	snprintf(ra, sizeof(ra), "%lld", (long long)r->revoked_at);
	snprintf(rs, sizeof(rs), "%d", r->reason);
	v[0] = r->serial, v[1] = r->kind, v[2] = r->subject;
	v[3] = r->issuer, v[4] = r->identities, v[5] = nb, v[6] = na;
	v[7] = r->revoked ? "revoked" : "valid";
	v[8] = r->revoked ? ra : NULL, v[9] = r->revoked ? rs : NULL;
	v[10] = ca, v[11] = (const char *)r->der;
	if ((res = run(s, "INSERT INTO certs (serial, kind, subject, issuer, "
	    "identities, not_before, not_after, status, revoked_at, reason, "
	    "created_at, der) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
	    "$11, $12)", 12, v, 11, (int)r->der_len, PGRES_COMMAND_OK,
	    "cannot copy a certificate", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_load_token(struct store *base, const struct store_token *t,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char ex[24], ca[24], ua[24];
	const char *v[6];

	snprintf(ex, sizeof(ex), "%lld", (long long)t->expires_at);
	snprintf(ca, sizeof(ca), "%lld", (long long)t->created_at);
	snprintf(ua, sizeof(ua), "%lld", (long long)t->used_at);
	v[0] = t->hash, v[1] = t->spiffe_id, v[2] = ex, v[3] = ca;
	v[4] = t->used ? ua : NULL, v[5] = t->serial;
	if ((res = run(s, "INSERT INTO tokens (hash, spiffe_id, expires_at, "
	    "created_at, used_at, serial) VALUES ($1, $2, $3, $4, $5, $6)", 6,
	    v, -1, 0, PGRES_COMMAND_OK, "cannot copy a token", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_load_report(struct store *base, const struct store_report *r,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char na[24], at[24];
	const char *v[4] = { r->serial, r->gen, na, at };

	snprintf(na, sizeof(na), "%lld", (long long)r->not_after);
	snprintf(at, sizeof(at), "%lld", (long long)r->seen_at);
	if ((res = run(s, "INSERT INTO bundle_reports (serial, gen, not_after, "
	    "seen_at) VALUES ($1, $2, $3, $4)", 4, v, -1, 0, PGRES_COMMAND_OK,
	    "cannot copy an agent's bundle report", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_load_end(struct store *base, int ok, int64_t crl_number,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char n[24];
	const char *v[1] = { n };

	if (!ok) {
		rollback(s);
		return 0;
	}
	snprintf(n, sizeof(n), "%lld", (long long)crl_number);
	if ((res = run(s, "UPDATE meta SET value = $1 WHERE key = "
	    "'crl_number'", 1, v, -1, 0, PGRES_COMMAND_OK,
	    "cannot copy the CRL number", err)) == NULL)
		goto fail;
	PQclear(res);
	if (exec_simple(s, "COMMIT", "cannot commit the copy", err) != 0)
		goto fail;
	return 0;
 fail:
	rollback(s);
	return -1;
}

static int pg_tx_bundle(struct store *, const char *, const char *,
    const char *,
    int64_t, int64_t, struct mtls_error *);
static int pg_rotation_count(struct store *, const char *, const char *,
    const char *, const char *, int64_t, int64_t[3], struct mtls_error *);

static const struct store_ops pg_ops = {
	.name = "postgres",
	.close = pg_close,
	.tx_begin = pg_tx_begin,
	.tx_insert = pg_tx_insert,
	.tx_burn = pg_tx_burn,
	.tx_uninsert = pg_tx_uninsert,
	.tx_end = pg_tx_end,
	.tx_batch = pg_tx_batch,
	.tx_sweep = pg_tx_sweep,
	.probe = pg_probe,
	.token_add = pg_token_add,
	.token_get = pg_token_get,
	.get = pg_get,
	.revoke = pg_revoke,
	.each = pg_each,
	.next_crl_number = pg_next_crl_number,
	.revocations = pg_revocations,
	.load_begin = pg_load_begin,
	.load_row = pg_load_row,
	.load_token = pg_load_token,
	.load_report = pg_load_report,
	.load_end = pg_load_end,
	.inv = &pg_inv_ops,
	.tx_bundle = pg_tx_bundle,
	.rotation_count = pg_rotation_count,
};

/* ---- the inventory's views (store_inv.h): aggregates in SQL ---- */

#define INV_COLS "serial, kind, subject, issuer, identities, not_before, " \
	"not_after, status, revoked_at, reason, created_at"

/* <cb> for each row of <res> (INV_COLS), every field checked. */
static int
rows_each(struct pg *s, PGresult *res,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	struct cert_rec r;
	const char *t;
	int64_t reason;
	int i;

	if (shape(s, res, 0, 11, err) != 0)
		return -1;
	for (i = 0; i < PQntuples(res); i++) {
		memset(&r, 0, sizeof(r));
		if (col_text(res, i, 0, &t, err) != 0)
			return -1;
		snprintf(r.serial, sizeof(r.serial), "%s", t);
		if (col_text(res, i, 1, &t, err) != 0)
			return -1;
		r.kind = store_kind(t);
		if (col_text(res, i, 2, &t, err) != 0)
			return -1;
		snprintf(r.subject, sizeof(r.subject), "%s", t);
		if (col_text(res, i, 3, &t, err) != 0)
			return -1;
		snprintf(r.issuer, sizeof(r.issuer), "%s", t);
		if (col_text(res, i, 4, &t, err) != 0)
			return -1;
		r.identities = (char *)t;
		if (col_i64(res, i, 5, 0, &r.not_before, err) != 0 ||
		    col_i64(res, i, 6, 0, &r.not_after, err) != 0 ||
		    col_text(res, i, 7, &t, err) != 0)
			return -1;
		r.revoked = strcmp(t, "revoked") == 0;
		if (col_i64(res, i, 8, 1, &r.revoked_at, err) != 0 ||
		    col_i64(res, i, 9, 1, &reason, err) != 0 ||
		    col_i64(res, i, 10, 0, &r.created_at, err) != 0)
			return -1;
		r.reason = (int)reason;
		if (cb(arg, &r) != 0)
			break;
	}
	return 0;
}

/* A statement being built: its text ours, every value a parameter. */
struct pq {
	char		 sql[1024];
	size_t		 len;
	const char	*v[12];
	char		 buf[12][48];
	int		 n;
};

/* Appends <frag>, its "%s" the next parameter's "$N" for the value <val>
 * (lent; NULL: <frag> has no parameter). */
static void
pq_add(struct pq *p, const char *frag, const char *val)
{
	char num[8] = "";
	int k;

	if (val != NULL && p->n < 12) {
		p->v[p->n] = val;
		snprintf(num, sizeof(num), "$%d", ++p->n);
	}
	k = snprintf(p->sql + p->len, sizeof(p->sql) - p->len, frag, num);
	if (k > 0 && (size_t)k < sizeof(p->sql) - p->len)
		p->len += (size_t)k;
}

/* The decimal text of <v> as the next parameter. */
static const char *
pq_int(struct pq *p, int64_t v)
{
	char *b = p->buf[p->n < 12 ? p->n : 11];

	snprintf(b, sizeof(p->buf[0]), "%lld", (long long)v);
	return b;
}

static int
pg_inv_list(struct store *base, const struct inv_query *q,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	struct pq p;
	PGresult *res;
	int rv;

	memset(&p, 0, sizeof(p));
	pq_add(&p, "SELECT " INV_COLS " FROM certs WHERE true", NULL);
	if (q->state == INV_VALID || q->state == INV_EXPIRING)
		pq_add(&p, " AND status = 'valid' AND not_after > %s::bigint",
		    pq_int(&p, q->now));
	if (q->state == INV_EXPIRING)
		pq_add(&p, " AND not_after <= %s::bigint",
		    pq_int(&p, q->now + q->within));
	if (q->state == INV_REVOKED)
		pq_add(&p, " AND status = 'revoked'", NULL);
	if (q->state == INV_EXPIRED)
		pq_add(&p, " AND status = 'valid' AND not_after <= "
		    "%s::bigint", pq_int(&p, q->now));
	if (q->q[0] != '\0') {
		pq_add(&p, " AND (strpos(identities, %s) > 0", q->q);
		if (q->q_serial[0] != '\0')
			pq_add(&p, " OR left(serial, length(%s)) = ",
			    q->q_serial);
		if (q->q_serial[0] != '\0')
			pq_add(&p, "%s", q->q_serial);
		pq_add(&p, ")", NULL);
	}
	if (q->has_cursor) {
		pq_add(&p, " AND (not_after, serial) > (%s::bigint, ",
		    pq_int(&p, q->c_not_after));
		pq_add(&p, "%s)", q->c_serial);
	}
	pq_add(&p, " ORDER BY not_after, serial LIMIT %s::bigint",
	    pq_int(&p, q->limit));
	if (ensure(s, err) != 0)
		return -1;
	if ((res = run(s, p.sql, p.n, p.v, -1, 0, PGRES_TUPLES_OK,
	    "cannot list the inventory", err)) == NULL)
		return -1;
	rv = rows_each(s, res, cb, arg, err);
	PQclear(res);
	return rv;
}

/* Runs <sql> ($1 now, $2 48 h, $3 30 d, $4 12 weeks in seconds), whose
 * rows are (hour, day, week, count), into the arrays (store_inv_add). */
static int
pg_buckets(struct pg *s, const char *sql, int64_t now, int64_t *hours,
    int64_t *days, int64_t *weeks, struct mtls_error *err)
{
	char t[4][24];
	const char *v[4] = { t[0], t[1], t[2], t[3] };
	PGresult *res;
	int64_t b[3], n;
	int r, i, rv = -1;

	snprintf(t[0], sizeof(t[0]), "%lld", (long long)now);
	snprintf(t[1], sizeof(t[1]), "%lld", (long long)INV_SPAN_H);
	snprintf(t[2], sizeof(t[2]), "%lld", (long long)INV_SPAN_D);
	snprintf(t[3], sizeof(t[3]), "%lld", (long long)INV_SPAN_W);
	if ((res = run(s, sql, 4, v, -1, 0, PGRES_TUPLES_OK,
	    "cannot sum the inventory", err)) == NULL)
		return -1;
	if (shape(s, res, 0, 4, err) != 0)
		goto out;
	for (r = 0; r < PQntuples(res); r++) {
		for (i = 0; i < 3; i++)
			if (col_i64(res, r, i, 0, &b[i], err) != 0)
				goto out;
		if (col_i64(res, r, 3, 0, &n, err) != 0)
			goto out;
		store_inv_add(hours, days, weeks, b, n);
	}
	rv = 0;
 out:
	PQclear(res);
	return rv;
}

/* as store_sqlite.c's SQ_EXPIRY, SQ_MADE, SQ_FIRST */
#define PG_EXPIRY "SELECT CASE WHEN not_after <= $1::bigint + $2::bigint " \
	"THEN (not_after - $1::bigint - 1) / 3600 ELSE -1 END, CASE WHEN " \
	"not_after <= $1::bigint + $3::bigint THEN (not_after - $1::bigint - " \
	"1) / 86400 ELSE -1 END, (not_after - $1::bigint - 1) / 604800, " \
	"count(*) FROM certs WHERE status = 'valid' AND not_after > " \
	"$1::bigint AND not_after <= $1::bigint + $4::bigint GROUP BY 1, 2, 3"
#define PG_RATE(from) "SELECT CASE WHEN t > $1::bigint - " \
	"$2::bigint THEN (t - ($1::bigint - $2::bigint + 1)) / 3600 ELSE -1 " \
	"END, (t - ($1::bigint - $3::bigint + 1)) / 86400, -1 + 0 * " \
	"$4::bigint, count(*) FROM (" from ") f WHERE t > $1::bigint - " \
	"$3::bigint AND t <= $1::bigint GROUP BY 1, 2, 3"
#define PG_MADE PG_RATE("SELECT created_at AS t FROM certs WHERE kind = " \
	"'leaf'")
#define PG_FIRST PG_RATE("SELECT min(created_at) AS t FROM certs WHERE " \
	"kind = 'leaf' GROUP BY identities")

static int
pg_inv_summary(struct store *base, struct inv_summary *sum,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res = NULL;
	int64_t now = sum->now, fh[INV_RATE_HOURS] = { 0 },
	    fd[INV_RATE_DAYS] = { 0 };
	char t[24];
	const char *v[1] = { t };
	int i, rv = -1;

	if (ensure(s, err) != 0)
		return -1;
	/* one snapshot for every figure */
	if (exec_simple(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    "cannot begin", err) != 0)
		return -1;
	snprintf(t, sizeof(t), "%lld", (long long)now);
	if ((res = run(s, "SELECT count(*), "
	    "count(*) FILTER (WHERE status = 'revoked'), "
	    "count(*) FILTER (WHERE status = 'valid' AND not_after <= $1), "
	    "count(*) FILTER (WHERE status = 'valid' AND not_after > $1), "
	    "count(*) FILTER (WHERE status = 'valid' AND not_after > $1 AND "
	    "not_after <= $1 + 86400), "
	    "count(*) FILTER (WHERE status = 'valid' AND not_after > $1 AND "
	    "not_after <= $1 + 259200), "
	    "count(*) FILTER (WHERE status = 'valid' AND not_after > $1 AND "
	    "not_after <= $1 + 604800) FROM certs", 1, v, -1, 0,
	    PGRES_TUPLES_OK, "cannot sum the inventory", err)) == NULL ||
	    shape(s, res, 1, 7, err) != 0 ||
	    col_i64(res, 0, 0, 0, &sum->total, err) != 0 ||
	    col_i64(res, 0, 1, 0, &sum->revoked, err) != 0 ||
	    col_i64(res, 0, 2, 0, &sum->expired, err) != 0 ||
	    col_i64(res, 0, 3, 0, &sum->valid, err) != 0)
		goto out;
	for (i = 0; i < 3; i++)
		if (col_i64(res, 0, 4 + i, 0, &sum->within[i], err) != 0)
			goto out;
	PQclear(res);
	res = NULL;
	if (pg_buckets(s, PG_EXPIRY, now, sum->exp_hours, sum->exp_days,
	    sum->exp_weeks, err) != 0 ||
	    pg_buckets(s, PG_MADE, now, sum->iss_hours, sum->iss_days, NULL,
	    err) != 0 ||
	    pg_buckets(s, PG_FIRST, now, fh, fd, NULL, err) != 0)
		goto out;
	store_inv_renewals(sum, fh, fd);
	/* revocations by CRLReason (0..10) */
	if ((res = run(s, "SELECT coalesce(reason, 0), count(*) FROM certs "
	    "WHERE status = 'revoked' GROUP BY 1", 0, NULL, -1, 0,
	    PGRES_TUPLES_OK, "cannot sum the inventory", err)) == NULL ||
	    shape(s, res, 0, 2, err) != 0)
		goto out;
	for (i = 0; i < PQntuples(res); i++) {
		int64_t r, n;

		if (col_i64(res, i, 0, 0, &r, err) != 0 ||
		    col_i64(res, i, 1, 0, &n, err) != 0)
			goto out;
		if (r >= 0 && r < INV_REASONS)
			sum->by_reason[r] = n;
	}
	rv = 0;
 out:
	PQclear(res);
	rollback(s);	/* read only: nothing to keep */
	return rv;
}

static int
pg_inv_identity(struct store *base, const char *id, int limit,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char lim[24], *needle;
	const char *v[2];
	int rv;

	if (asprintf(&needle, "\n%s\n", id) < 0)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	snprintf(lim, sizeof(lim), "%d", limit);
	v[0] = needle;
	v[1] = lim;
	if (ensure(s, err) != 0) {
		free(needle);
		return -1;
	}
	res = run(s, "SELECT " INV_COLS " FROM certs WHERE strpos(chr(10) || "
	    "identities || chr(10), $1) > 0 ORDER BY created_at DESC, serial "
	    "LIMIT $2::bigint", 2, v, -1, 0, PGRES_TUPLES_OK,
	    "cannot list the identity", err);
	free(needle);
	if (res == NULL)
		return -1;
	rv = rows_each(s, res, cb, arg, err);
	PQclear(res);
	return rv;
}

static const struct store_inv_ops pg_inv_ops = {
	.list = pg_inv_list,
	.summary = pg_inv_summary,
	.identity = pg_inv_identity,
};

/* ---- rotation: agents' bundle generations, what blocks a step ---- */

/* The statement alone: inside a batch's transaction (ensure would roll
 * it back), or store_agent_bundle's. */
static int
pg_tx_bundle(struct store *base, const char *serial, const char *replaces,
    const char *gen, int64_t not_after, int64_t now, struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char na[24], at[24];
	const char *v[4] = { serial, gen, na, at };

	/* a renewal: the renewed certificate's report goes */
	if (replaces != NULL) {
		if ((res = run(s, SQL_REPORT_DEL, 1, &replaces, -1, 0,
		    PGRES_COMMAND_OK, "cannot replace the agent's bundle",
		    err)) == NULL)
			return -1;
		PQclear(res);
	}
	snprintf(na, sizeof(na), "%lld", (long long)not_after);
	snprintf(at, sizeof(at), "%lld", (long long)now);
	if ((res = run(s, SQL_REPORT, 4, v, -1, 0, PGRES_COMMAND_OK,
	    "cannot record the agent's bundle", err)) == NULL)
		return -1;
	PQclear(res);
	return 0;
}

static int
pg_rotation_count(struct store *base, const char *issuer,
    const char *except_serial, const char *gen_a, const char *gen_b,
    int64_t now, int64_t out[3], struct mtls_error *err)
{
	struct pg *s = PG(base);
	PGresult *res;
	char at[24];
	const char *v[5] = { issuer, except_serial, at, gen_a, gen_b };
	int rv = -1;

	if (ensure(s, err) != 0)
		return -1;
	snprintf(at, sizeof(at), "%lld", (long long)now);
	if ((res = run(s, "SELECT (SELECT count(*) FROM certs WHERE issuer = "
	    "$1 AND status = 'valid' AND not_after > $3 AND kind <> 'root' "
	    "AND serial <> $2), (SELECT count(*) FROM bundle_reports b JOIN "
	    "certs c ON c.serial = b.serial WHERE b.not_after > $3 AND "
	    "c.status = 'valid'), (SELECT count(*) FROM bundle_reports b JOIN "
	    "certs c ON c.serial = b.serial WHERE b.not_after > $3 AND "
	    "c.status = 'valid' AND b.gen <> $4 AND b.gen <> $5)", 5, v, -1,
	    0,
	    PGRES_TUPLES_OK, "cannot count for the rotation", err)) == NULL)
		return -1;
	if (shape(s, res, 1, 3, err) == 0 &&
	    col_i64(res, 0, 0, 0, &out[0], err) == 0 &&
	    col_i64(res, 0, 1, 0, &out[1], err) == 0 &&
	    col_i64(res, 0, 2, 0, &out[2], err) == 0)
		rv = 0;
	PQclear(res);
	return rv;
}
