/*
 * The inventory in SQLite (WAL, synchronous=FULL), the default backend: a
 * file in the CA directory, one process at a time writes (BEGIN
 * IMMEDIATE, busy timeout 10 s). Its schema is versioned: the table
 * schema_version lists the migrations applied, each applied at open in one
 * transaction with its version row.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_int.h"

/* meta.schema, checked by every mtls since the first: stays 1 */
#define LEGACY_SCHEMA	1

/* The statements of every issuance, prepared once per connection (issue
 * 15: preparing one is a parse and a plan each time) and reset after each
 * use, which ends its read; the store's lock is held around every call. */
enum { SQ_INSERT, SQ_GET, SQ_BURN, SQ_AGENT, SQ_AGENT_DEL, SQ_SWEEP,
    SQ__COUNT };
static const char *const sq_sql[SQ__COUNT] = {
	[SQ_INSERT] = "INSERT INTO certs (serial, kind, subject, issuer, "
	    "identities, not_before, not_after, created_at, der) VALUES "
	    "(?,?,?,?,?,?,?,?,?)",
	[SQ_GET] = "SELECT kind, status, revoked_at, reason, not_after, der, "
	    "issuer FROM certs WHERE serial = ?",
	[SQ_BURN] = "UPDATE tokens SET used_at = ?, serial = ? WHERE hash = ? "
	    "AND used_at IS NULL AND expires_at > ?",
	/* once per renewal (rotation's count): the new certificate's
	 * report, after the renewed one's is deleted */
	[SQ_AGENT] = "INSERT INTO bundle_reports (serial, gen, not_after, "
	    "seen_at) VALUES (?,?,?,?) ON CONFLICT(serial) DO UPDATE SET "
	    "gen = excluded.gen, not_after = excluded.not_after, seen_at = "
	    "excluded.seen_at",
	[SQ_AGENT_DEL] = "DELETE FROM bundle_reports WHERE serial = ?",
	/* a batch's sweep (bundle_reports_na, migration 6) */
	[SQ_SWEEP] = "DELETE FROM bundle_reports WHERE serial IN (SELECT "
	    "serial FROM bundle_reports WHERE not_after < ?1 ORDER BY "
	    "not_after LIMIT ?2)",
};

struct sq {
	struct store	 base;
	sqlite3		*db;
	char		 path[4096];
	sqlite3_stmt	*stmt[SQ__COUNT];	/* sq_stmt; closing ends them */
};
#define SQ(s)	((struct sq *)(s))

/* Migration N is migrations[N - 1]; append, never edit one released. */
static const char *const migrations[] = {
    /* 1: the inventory of the first mtls, tokens included (they were
     * added to schema 1 without a version bump: IF NOT EXISTS) */
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS certs ("
    " serial TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " issuer TEXT NOT NULL,"
    " identities TEXT NOT NULL,"
    " not_before INTEGER NOT NULL,"
    " not_after INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'valid',"
    " revoked_at INTEGER,"
    " reason INTEGER,"
    " created_at INTEGER NOT NULL,"
    " der BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS certs_not_after ON certs(not_after);"
    "INSERT OR IGNORE INTO meta VALUES ('schema', '1');"
    "INSERT OR IGNORE INTO meta VALUES ('crl_number', '0');"
    "CREATE TABLE IF NOT EXISTS tokens ("
    " hash TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL,"
    " expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " used_at INTEGER, serial TEXT);",
    /* 2: the inventory's views (store_inv.h), each read from an index
     * alone: pages in (not_after, serial) order, by status too; counts
     * and expiry by (status, not_after); issuance by time; renewals and
     * searches by identities */
    "CREATE INDEX IF NOT EXISTS certs_na_serial ON certs(not_after, serial);"
    "CREATE INDEX IF NOT EXISTS certs_status_na ON certs(status, not_after,"
    " serial);"
    "CREATE INDEX IF NOT EXISTS certs_created ON certs(created_at, kind);"
    "CREATE INDEX IF NOT EXISTS certs_ids ON certs(identities, created_at,"
    " kind, serial);",
    /* 3: the bundle generation each agent last reported (rotation) */
    "CREATE TABLE IF NOT EXISTS agent_bundles ("
    " identity TEXT PRIMARY KEY, gen TEXT NOT NULL,"
    " not_after INTEGER NOT NULL, seen_at INTEGER NOT NULL);",
    /* 4: the report per certificate (its serial), not per identity:
     * replicas sharing a SPIFFE ID each count. A row of 3 is mapped to
     * the leaf it was recorded for: same first identity, same notAfter
     * (the certificate returned with the report); none found: dropped.
     * Applied again (an inventory without schema_version), 3 made an
     * empty agent_bundles: nothing to map */
    "CREATE TABLE IF NOT EXISTS bundle_reports ("
    " serial TEXT PRIMARY KEY, gen TEXT NOT NULL,"
    " not_after INTEGER NOT NULL, seen_at INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO bundle_reports SELECT c.serial, a.gen,"
    " a.not_after, a.seen_at FROM agent_bundles a JOIN certs c ON"
    " c.not_after = a.not_after AND c.kind = 'leaf' AND"
    " (c.identities = a.identity OR substr(c.identities, 1,"
    " length(a.identity) + 1) = a.identity || char(10));"
    "DROP TABLE IF EXISTS agent_bundles;",
    /* 5: certs_not_after is certs_na_serial's first column: one index
     * less to write per certificate (issue 15) */
    "DROP INDEX IF EXISTS certs_not_after;",
    /* 6: the reports of expired certificates, found by a batch's sweep
     * (tx_sweep) without a scan */
    "CREATE INDEX IF NOT EXISTS bundle_reports_na ON"
    " bundle_reports(not_after);",
};
#define N_MIGRATIONS	((int)(sizeof(migrations) / sizeof(migrations[0])))

static int
db_error(struct sq *s, struct mtls_error *err, const char *what)
{
	int ec = sqlite3_errcode(s->db), se = sqlite3_system_errno(s->db);

	if (ec == SQLITE_NOTADB || ec == SQLITE_CORRUPT)
		return error_set(err, MTLS_ERR_PARSE,
		    "%s: inventory is damaged (%s); restore it from a backup",
		    s->path, sqlite3_errmsg(s->db));
	error_set(err, MTLS_ERR_IO, "%s: %s: %s", s->path, what,
	    sqlite3_errmsg(s->db));
	/* the kind, for ca serve to answer 503 and say it cannot issue:
	 * SQLITE_FULL is ENOSPC from a write (or a page limit). The system
	 * errno is only a hint (it may be left from an earlier call, e.g.
	 * ENOENT probing a journal): a storage kind is always kept. */
	if (ec == SQLITE_FULL)
		err->sys = se == EDQUOT ? EDQUOT : ENOSPC;
	else if (ec == SQLITE_IOERR || ec == SQLITE_READONLY)
		err->sys = se == ENOSPC || se == EDQUOT || se == EROFS ? se :
		    EIO;
	if (err->sys != 0)
		err->kind = err->sys == EROFS ? STORE_KIND_READ_ONLY :
		    err->sys == EIO ? STORE_KIND_IO : STORE_KIND_DISK_FULL;
	return -1;
}

/* Text column <i>, "" for NULL. */
static const char *
col_text(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);

	return t != NULL ? t : "";
}

/* Statement <which>, prepared at its first use: NULL on error. */
static sqlite3_stmt *
sq_stmt(struct sq *s, int which)
{
	if (s->stmt[which] == NULL && sqlite3_prepare_v2(s->db,
	    sq_sql[which], -1, &s->stmt[which], NULL) != SQLITE_OK)
		s->stmt[which] = NULL;
	return s->stmt[which];
}

/* Done with a statement of sq_stmt: its read ends, its bindings go. */
static void
sq_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static void
sq_close(struct store *st)
{
	struct sq *s = SQ(st);
	int i;

	for (i = 0; i < SQ__COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	free(s);
}

/* The highest migration applied (0: none, or no schema_version table). */
static int
version(struct sq *s, int *v, struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*v = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master "
	    "WHERE type = 'table' AND name = 'schema_version'", -1, &st,
	    NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return db_error(s, err, "cannot read the schema version");
	}
	rc = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc == 0)
		return 0;
	if (sqlite3_prepare_v2(s->db, "SELECT coalesce(max(version), 0) FROM "
	    "schema_version", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return db_error(s, err, "cannot read the schema version");
	}
	*v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return 0;
}

/* Applies the missing migrations, all in one transaction (BEGIN
 * IMMEDIATE: a second process opening at once waits, then finds them
 * applied). A newer inventory than this mtls knows is refused. */
static int
migrate(struct sq *s, struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	int v, i;

	if (version(s, &v, err) != 0)
		return -1;
	if (v == N_MIGRATIONS)
		return 0;	/* the common case: no write lock taken */
	if (v > N_MIGRATIONS)
		goto newer;
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS "
	    "schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER "
	    "NOT NULL);", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot begin the schema migration");
		goto rollback;
	}
	if (version(s, &v, err) != 0)
		goto rollback;
	if (v > N_MIGRATIONS) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		goto newer;
	}
	for (i = v; i < N_MIGRATIONS; i++) {
		if (sqlite3_exec(s->db, migrations[i], NULL, NULL, NULL) !=
		    SQLITE_OK) {
			db_error(s, err, "cannot apply a schema migration");
			goto rollback;
		}
		if (sqlite3_prepare_v2(s->db, "INSERT INTO schema_version "
		    "VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK) {
			db_error(s, err, "cannot record a schema migration");
			goto rollback;
		}
		sqlite3_bind_int(st, 1, i + 1);
		sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_error(s, err, "cannot record a schema migration");
			goto rollback;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot commit the schema migration");
		goto rollback;
	}
	return 0;
 newer:
	return error_set(err, MTLS_ERR_PARSE, "%s: inventory schema version "
	    "%d; this mtls knows up to %d (use a newer mtls)", s->path, v,
	    N_MIGRATIONS);
 rollback:
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static const struct store_ops sq_ops;
static const struct store_inv_ops sq_inv_ops;
static int inv_rows(struct sq *, sqlite3_stmt *,
    int (*)(void *, const struct cert_rec *), void *, struct mtls_error *);

int
store_sqlite_open(struct store **out, const char *path, int create,
    struct mtls_error *err)
{
	struct sq *s;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, rc, tries;

	*out = NULL;
	if (!create && stat(path, &sb) == -1)
		return error_set_errno(err, MTLS_ERR_IO,
		    "%s: no inventory (is this a CA directory made by mtls ca "
		    "init?)", path);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	s->base.ops = &sq_ops;
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot open");
		goto err;
	}
	sqlite3_busy_timeout(s->db, 10000);
	/* switching a fresh file to WAL does not wait on the busy handler:
	 * two processes creating it at once see SQLITE_BUSY; retry, bounded
	 * (10 s, like the busy timeout) */
	for (tries = 0; (rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=FULL;", NULL, NULL, NULL)) == SQLITE_BUSY &&
	    tries < 1000; tries++)
		usleep(10 * 1000);
	if (rc != SQLITE_OK) {
		db_error(s, err, "cannot set WAL mode");
		goto err;
	}
	/* an existing file must be an inventory before anything is written
	 * to it */
	if (!create && (sqlite3_prepare_v2(s->db,
	    "SELECT value FROM meta WHERE key = 'schema'", -1, &st, NULL) !=
	    SQLITE_OK || sqlite3_step(st) != SQLITE_ROW)) {
		if (sqlite3_errcode(s->db) == SQLITE_NOTADB ||
		    sqlite3_errcode(s->db) == SQLITE_CORRUPT)
			db_error(s, err, "");
		else
			error_set(err, MTLS_ERR_PARSE,
			    "%s: not an mtls inventory (no schema version)",
			    path);
		goto err;
	}
	if (!create && sqlite3_column_int(st, 0) != LEGACY_SCHEMA) {
		error_set(err, MTLS_ERR_PARSE,
		    "%s: inventory schema %d; this mtls reads %d", path,
		    sqlite3_column_int(st, 0), LEGACY_SCHEMA);
		goto err;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (migrate(s, err) != 0)
		goto err;
	*out = &s->base;
	return 0;
 err:
	sqlite3_finalize(st);
	sq_close(&s->base);
	return -1;
}

/* Burns <hash> for <serial> inside the open transaction: 0, 1 when the
 * token is unknown, used or expired, -1 on error (err says which). */
static int
burn(struct sq *s, const char *hash, const char *serial,
    struct mtls_error *err)
{
	sqlite3_stmt *st;
	int64_t now = (int64_t)time(NULL);
	int rv = -1;

	if ((st = sq_stmt(s, SQ_BURN)) == NULL)
		return db_error(s, err, "cannot prepare token burn");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_text(st, 2, serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 3, hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 4, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(s, err, "cannot burn the token");
	else if (sqlite3_changes(s->db) != 1) {
		error_set(err, MTLS_ERR_ARG, "the token was used already or "
		    "has expired");
		rv = 1;
	} else
		rv = 0;
	sq_done(st);
	return rv;
}

/* ---- a batch (store.c's group commit): one transaction ---- */

static int
sq_tx_begin(struct store *base, struct mtls_error *err)
{
	struct sq *s = SQ(base);

	/* durable (synchronous=FULL) when COMMIT returns */
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return db_error(s, err, "cannot begin");
	return 0;
}

static int
sq_tx_insert(struct store *base, const struct store_row *r,
    struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st;
	int rc, rv = -1;

	if ((st = sq_stmt(s, SQ_INSERT)) == NULL)
		return db_error(s, err, "cannot prepare insert");
	sqlite3_bind_text(st, 1, r->serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, r->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->subject, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, r->issuer, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 5, r->identities, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 6, r->not_before);
	sqlite3_bind_int64(st, 7, r->not_after);
	sqlite3_bind_int64(st, 8, r->created_at);
	sqlite3_bind_blob(st, 9, r->der, (int)r->der_len, SQLITE_TRANSIENT);
	/* a constraint aborts this statement only, not the transaction */
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		rv = 0;
	else if (rc == SQLITE_CONSTRAINT)
		rv = 1;
	else
		db_error(s, err, "cannot record certificate");
	sq_done(st);
	return rv;
}

static int
sq_tx_burn(struct store *base, const char *hash, const char *serial,
    struct mtls_error *err)
{
	return burn(SQ(base), hash, serial, err);
}

static int
sq_tx_uninsert(struct store *base, const char *serial,
    struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	if (sqlite3_prepare_v2(s->db, "DELETE FROM certs WHERE serial = ?",
	    -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot prepare delete");
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(s, err, "cannot take the certificate back");
	else
		rv = 0;
	sqlite3_finalize(st);
	return rv;
}

static int
sq_tx_sweep(struct store *base, int64_t now, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st;
	int rv = 0;

	if ((st = sq_stmt(s, SQ_SWEEP)) == NULL)
		return db_error(s, err, "cannot prepare the reports' sweep");
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int(st, 2, STORE_SWEEP);
	if (sqlite3_step(st) != SQLITE_DONE)
		rv = db_error(s, err, "cannot delete expired bundle reports");
	sq_done(st);
	return rv;
}

static int
sq_tx_end(struct store *base, int commit, struct mtls_error *err)
{
	struct sq *s = SQ(base);

	if (commit && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) ==
	    SQLITE_OK)
		return 0;
	if (commit)
		db_error(s, err, "cannot commit the certificate");
	/* a failed COMMIT (disk full) may leave the transaction open */
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return commit ? -1 : 0;
}

static int
sq_probe(struct store *base, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	if (sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO meta VALUES "
	    "('write_probe', ?)", -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot prepare the write probe");
	sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(s, err, "cannot write");
	else
		rv = 0;
	sqlite3_finalize(st);
	return rv;
}

static int
sq_token_add(struct store *base, const char *hash, const char *spiffe_id,
    int64_t expires_at, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	if (sqlite3_prepare_v2(s->db, "INSERT INTO tokens (hash, spiffe_id, "
	    "expires_at, created_at) VALUES (?,?,?,?)", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_error(s, err, "cannot prepare token insert");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, spiffe_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, expires_at);
	sqlite3_bind_int64(st, 4, (int64_t)time(NULL));
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(s, err, "cannot record the token");
	else
		rv = 0;
	sqlite3_finalize(st);
	return rv;
}

static int
sq_token_get(struct store *base, const char *hash, char *spiffe_id,
    size_t id_len, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1, rc;

	if (sqlite3_prepare_v2(s->db, "SELECT spiffe_id, expires_at, used_at "
	    "FROM tokens WHERE hash = ?", -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot prepare token lookup");
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		error_set(err, MTLS_ERR_ARG, "unknown token (not made by "
		    "mtls ca token create for this CA)");
	else if (rc != SQLITE_ROW)
		db_error(s, err, "cannot look up the token");
	else if (sqlite3_column_type(st, 2) != SQLITE_NULL)
		error_set(err, MTLS_ERR_ARG, "the token was used already (one "
		    "enrollment per token)");
	else if (sqlite3_column_int64(st, 1) <= (int64_t)time(NULL))
		error_set(err, MTLS_ERR_ARG, "the token has expired (make a "
		    "new one with mtls ca token create)");
	else {
		snprintf(spiffe_id, id_len, "%s", col_text(st, 0));
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

static int
sq_get(struct store *base, const char *serial, const uint8_t *der,
    size_t der_len, struct cert_rec *r, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st;
	const void *blob;
	const char *t;
	int rc, rv = -1;

	memset(r, 0, sizeof(*r));
	if ((st = sq_stmt(s, SQ_GET)) == NULL)
		return db_error(s, err, "cannot prepare lookup");
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		rv = 1;
	else if (rc != SQLITE_ROW)
		db_error(s, err, "cannot look up a serial");
	else {
		snprintf(r->serial, sizeof(r->serial), "%s", serial);
		t = (const char *)sqlite3_column_text(st, 0);
		r->kind = store_kind(t);
		t = (const char *)sqlite3_column_text(st, 1);
		r->revoked = t != NULL && strcmp(t, "revoked") == 0;
		r->revoked_at = sqlite3_column_int64(st, 2);
		r->reason = sqlite3_column_int(st, 3);
		r->not_after = sqlite3_column_int64(st, 4);
		t = (const char *)sqlite3_column_text(st, 6);
		snprintf(r->issuer, sizeof(r->issuer), "%s", t ? t : "");
		rv = 0;
		if (der != NULL) {
			/* column_blob before column_bytes (SQLite's rule) */
			blob = sqlite3_column_blob(st, 5);
			if (blob == NULL ||
			    (size_t)sqlite3_column_bytes(st, 5) != der_len ||
			    memcmp(blob, der, der_len) != 0)
				rv = 2;
		}
	}
	sq_done(st);
	return rv;
}

static int
sq_revoke(struct store *base, const char *serial, int reason, int64_t at,
    int *already, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	*already = 0;
	if (sqlite3_prepare_v2(s->db, "UPDATE certs SET status = 'revoked', "
	    "revoked_at = ?, reason = ? WHERE serial = ? AND status != "
	    "'revoked'", -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot prepare revoke");
	sqlite3_bind_int64(st, 1, at);
	sqlite3_bind_int(st, 2, reason);
	sqlite3_bind_text(st, 3, serial, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_error(s, err, "cannot record revocation");
		goto out;
	}
	if (sqlite3_changes(s->db) == 1) {
		rv = 0;
		goto out;
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "SELECT status FROM certs WHERE "
	    "serial = ?", -1, &st, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot prepare lookup");
		st = NULL;
		goto out;
	}
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*already = 1;
		rv = 0;
	} else
		error_set(err, MTLS_ERR_ARG, "serial %s: not issued by this CA "
		    "(see mtls ca list)", serial);
 out:
	sqlite3_finalize(st);
	return rv;
}

static int
sq_each(struct store *base, int (*cb)(void *, const struct cert_rec *),
    void *arg, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(s->db, "SELECT serial, kind, subject, issuer, "
	    "identities, not_before, not_after, status, revoked_at, reason, "
	    "created_at FROM certs ORDER BY created_at DESC, serial", -1, &st,
	    NULL) != SQLITE_OK)
		return db_error(s, err, "cannot list");
	return inv_rows(s, st, cb, arg, err);
}

static int
sq_next_crl_number(struct store *base, int64_t *n, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE; UPDATE meta SET value = "
	    "CAST(value AS INTEGER) + 1 WHERE key = 'crl_number';", NULL, NULL,
	    NULL) != SQLITE_OK) {
		db_error(s, err, "cannot bump the CRL number");
		goto out;
	}
	if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = "
	    "'crl_number'", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		db_error(s, err, "cannot read the CRL number");
		goto out;
	}
	*n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot commit the CRL number");
		goto out;
	}
	return 0;
 out:
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rv;
}

/* Every row with its DER, every token, the CRL number: the source of
 * mtls ca store migrate (read in one transaction: a consistent copy). */
static int
sq_dump(struct store *base, int (*row)(void *, const struct store_row *),
    int (*tok)(void *, const struct store_token *),
    int (*rep)(void *, const struct store_report *), void *arg,
    int64_t *crl_number, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	struct store_row r;
	struct store_token t;
	struct store_report b;
	int rc, rv = -1;

	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot begin");
	if (sqlite3_prepare_v2(s->db, "SELECT serial, kind, subject, issuer, "
	    "identities, not_before, not_after, status, revoked_at, reason, "
	    "created_at, der FROM certs ORDER BY created_at, serial", -1, &st,
	    NULL) != SQLITE_OK) {
		db_error(s, err, "cannot read the certificates");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		snprintf(r.serial, sizeof(r.serial), "%s", col_text(st, 0));
		r.kind = store_kind(col_text(st, 1));
		snprintf(r.subject, sizeof(r.subject), "%s", col_text(st, 2));
		snprintf(r.issuer, sizeof(r.issuer), "%s", col_text(st, 3));
		r.identities = col_text(st, 4);
		r.not_before = sqlite3_column_int64(st, 5);
		r.not_after = sqlite3_column_int64(st, 6);
		r.revoked = strcmp(col_text(st, 7), "revoked") == 0;
		r.revoked_at = sqlite3_column_int64(st, 8);
		r.reason = sqlite3_column_int(st, 9);
		r.created_at = sqlite3_column_int64(st, 10);
		r.der = sqlite3_column_blob(st, 11);
		r.der_len = (size_t)sqlite3_column_bytes(st, 11);
		if (r.der == NULL || r.der_len == 0) {
			error_set(err, MTLS_ERR_PARSE, "%s: serial %s has no "
			    "certificate bytes", s->path, r.serial);
			goto out;
		}
		if (row(arg, &r) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		db_error(s, err, "cannot read the certificates");
		goto out;
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "SELECT hash, spiffe_id, expires_at, "
	    "created_at, used_at, serial FROM tokens ORDER BY created_at, hash",
	    -1, &st, NULL) != SQLITE_OK) {
		st = NULL;
		db_error(s, err, "cannot read the tokens");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&t, 0, sizeof(t));
		t.hash = col_text(st, 0);
		t.spiffe_id = col_text(st, 1);
		t.expires_at = sqlite3_column_int64(st, 2);
		t.created_at = sqlite3_column_int64(st, 3);
		t.used = sqlite3_column_type(st, 4) != SQLITE_NULL;
		t.used_at = sqlite3_column_int64(st, 4);
		t.serial = sqlite3_column_type(st, 5) != SQLITE_NULL ?
		    col_text(st, 5) : NULL;
		if (tok(arg, &t) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		db_error(s, err, "cannot read the tokens");
		goto out;
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "SELECT serial, gen, not_after, seen_at "
	    "FROM bundle_reports ORDER BY serial", -1, &st, NULL) !=
	    SQLITE_OK) {
		st = NULL;
		db_error(s, err, "cannot read the agents' bundle reports");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		b.serial = col_text(st, 0);
		b.gen = col_text(st, 1);
		b.not_after = sqlite3_column_int64(st, 2);
		b.seen_at = sqlite3_column_int64(st, 3);
		if (rep(arg, &b) != 0)
			goto out;
	}
	if (rc != SQLITE_DONE) {
		db_error(s, err, "cannot read the agents' bundle reports");
		goto out;
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(s->db, "SELECT CAST(value AS INTEGER) FROM meta "
	    "WHERE key = 'crl_number'", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		db_error(s, err, "cannot read the CRL number");
		goto out;
	}
	*crl_number = sqlite3_column_int64(st, 0);
	rv = 0;
 out:
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	return rv;
}

static int
sq_revocations(struct store *base, int64_t *n, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM certs WHERE "
	    "status = 'revoked'", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		db_error(s, err, "cannot count revocations");
	else {
		*n = sqlite3_column_int64(st, 0);
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

static int sq_agent_bundle(struct store *, const char *, const char *,
    const char *,
    int64_t, int64_t, struct mtls_error *);
static int sq_rotation_count(struct store *, const char *, const char *,
    const char *, const char *, int64_t, int64_t[3], struct mtls_error *);

static const struct store_ops sq_ops = {
	.name = "sqlite",
	.close = sq_close,
	.tx_begin = sq_tx_begin,
	.tx_insert = sq_tx_insert,
	.tx_burn = sq_tx_burn,
	.tx_uninsert = sq_tx_uninsert,
	.tx_end = sq_tx_end,
	.tx_sweep = sq_tx_sweep,
	.probe = sq_probe,
	.token_add = sq_token_add,
	.token_get = sq_token_get,
	.get = sq_get,
	.revoke = sq_revoke,
	.each = sq_each,
	.next_crl_number = sq_next_crl_number,
	.revocations = sq_revocations,
	.dump = sq_dump,
	.inv = &sq_inv_ops,
	.tx_bundle = sq_agent_bundle,	/* the write connection's tx */
	.rotation_count = sq_rotation_count,
};

/* ---- the inventory's views (store_inv.h): aggregates in SQL ---- */

#define INV_COLS "serial, kind, subject, issuer, identities, not_before, " \
	"not_after, status, revoked_at, reason, created_at"
/* the serials whose identities hold :q, read from the index certs_ids
 * (a tenth of the table's pages) */
#define SQ_IDS_HAS "SELECT serial FROM certs INDEXED BY certs_ids WHERE " \
	"instr(identities, :q) > 0"

/* Binds the named parameter <name> when the statement has it. */
static void
bind_i64(sqlite3_stmt *st, const char *name, int64_t v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_int64(st, i, v);
}

static void
bind_txt(sqlite3_stmt *st, const char *name, const char *v)
{
	int i = sqlite3_bind_parameter_index(st, name);

	if (i > 0)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
}

/* Steps <st> (INV_COLS) and calls <cb> per row (sq_each too: a NULL, a
 * file written by another tool, is "", not printf's "(null)");
 * finalizes it. */
static int
inv_rows(struct sq *s, sqlite3_stmt *st,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	struct cert_rec r;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		snprintf(r.serial, sizeof(r.serial), "%s", col_text(st, 0));
		r.kind = store_kind(col_text(st, 1));
		snprintf(r.subject, sizeof(r.subject), "%s", col_text(st, 2));
		snprintf(r.issuer, sizeof(r.issuer), "%s", col_text(st, 3));
		r.identities = (char *)col_text(st, 4);
		r.not_before = sqlite3_column_int64(st, 5);
		r.not_after = sqlite3_column_int64(st, 6);
		r.revoked = strcmp(col_text(st, 7), "revoked") == 0;
		r.revoked_at = sqlite3_column_int64(st, 8);
		r.reason = sqlite3_column_int(st, 9);
		r.created_at = sqlite3_column_int64(st, 10);
		if (cb(arg, &r) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_error(s, err, "cannot read the inventory");
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return 0;
}

static int
sq_inv_list(struct store *base, const struct inv_query *q,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	static const char *const state_sql[] = {
		[INV_ANY] = "",
		[INV_VALID] = " AND status = 'valid' AND not_after > :now",
		[INV_EXPIRING] = " AND status = 'valid' AND not_after > :now"
		    " AND not_after <= :until",
		[INV_REVOKED] = " AND status = 'revoked'",
		[INV_EXPIRED] = " AND status = 'valid' AND not_after <= :now",
	};
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	char sql[1024];

	/* the text is ours alone: every value is a bound parameter */
	snprintf(sql, sizeof(sql), "SELECT " INV_COLS " FROM certs WHERE 1%s%s"
	    "%s ORDER BY not_after, serial LIMIT :lim", state_sql[q->state],
	    q->q[0] == '\0' ? "" : q->q_serial[0] == '\0' ?
	    " AND serial IN (" SQ_IDS_HAS ")" :
	    " AND (serial IN (" SQ_IDS_HAS ") OR substr(serial, 1, "
	    "length(:qs)) = :qs)",
	    q->has_cursor ? " AND (not_after, serial) > (:cna, :cs)" : "");
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot list the inventory");
	bind_i64(st, ":now", q->now);
	bind_i64(st, ":until", q->now + q->within);
	bind_txt(st, ":q", q->q);
	bind_txt(st, ":qs", q->q_serial);
	bind_i64(st, ":cna", q->c_not_after);
	bind_txt(st, ":cs", q->c_serial);
	bind_i64(st, ":lim", q->limit);
	return inv_rows(s, st, cb, arg, err);
}

/* Runs <sql>, whose rows are (hour, day, week, count): each count is
 * added to the bucket of each array it names (-1 or out of range: none).
 * :now, and the spans :h (48 h), :d (30 d), :w (12 weeks) are bound. */
static int
inv_buckets(struct sq *s, const char *sql, int64_t now, int64_t *hours,
    int64_t *days, int64_t *weeks, struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot sum the inventory");
	bind_i64(st, ":now", now);
	bind_i64(st, ":h", INV_SPAN_H);
	bind_i64(st, ":d", INV_SPAN_D);
	bind_i64(st, ":w", INV_SPAN_W);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t v[3], n = sqlite3_column_int64(st, 3);
		int i;

		for (i = 0; i < 3; i++)
			v[i] = sqlite3_column_int64(st, i);
		store_inv_add(hours, days, weeks, v, n);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_error(s, err, "cannot sum the inventory");
	return 0;
}

/* Expiry ahead, a range of the index certs_status_na per span (three
 * simple GROUP BYs cost less than one of three CASEs): bucket i holds
 * (now + i w, now + (i + 1) w]. */
#define SQ_EXPIRY(cols, span) "SELECT " cols ", count(*) FROM certs " \
	"WHERE status = 'valid' AND not_after > :now AND not_after <= :now " \
	"+ " span " GROUP BY 1, 2, 3"
#define SQ_EXP_H SQ_EXPIRY("(not_after - :now - 1) / 3600, -1, -1", ":h")
#define SQ_EXP_D SQ_EXPIRY("-1, (not_after - :now - 1) / 86400, -1", ":d")
#define SQ_EXP_W SQ_EXPIRY("-1, -1, (not_after - :now - 1) / 604800", ":w")
/* Leaves made behind (the last bucket ends at now): SQ_MADE counts them
 * (a range of the index certs_created per span), SQ_FIRST the first leaf
 * of each set of identities (one pass over the index certs_ids in its
 * order); the others are renewals. */
#define SQ_VALID "SELECT count(*) FROM certs WHERE status = 'valid' AND "
#define SQ_MADE(cols, span) "SELECT " cols ", -1, count(*) FROM certs " \
	"WHERE kind = 'leaf' AND created_at > :now - " span " AND " \
	"created_at <= :now GROUP BY 1, 2, 3"
#define SQ_MADE_H SQ_MADE("(created_at - (:now - :h + 1)) / 3600, -1", ":h")
#define SQ_MADE_D SQ_MADE("-1, (created_at - (:now - :d + 1)) / 86400", ":d")
#define SQ_FIRST "SELECT CASE WHEN t > :now - :h THEN (t - (:now - :h + " \
	"1)) / 3600 ELSE -1 END, (t - (:now - :d + 1)) / 86400, -1, " \
	"count(*) FROM (SELECT min(created_at) AS t FROM certs WHERE kind = " \
	"'leaf' GROUP BY identities) WHERE t > :now - :d AND t <= :now " \
	"GROUP BY 1, 2"

static int
sq_inv_summary(struct store *base, struct inv_summary *sum,
    struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int64_t now = sum->now, fh[INV_RATE_HOURS] = { 0 },
	    fd[INV_RATE_DAYS] = { 0 };
	int i, rc;

	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot begin");
	/* one read transaction: every figure of one snapshot */
	/* counts of index ranges, not sums of expressions over rows */
	if (sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM certs), "
	    "(SELECT count(*) FROM certs WHERE status = 'revoked'), "
	    "(" SQ_VALID "not_after <= :now), "
	    "(" SQ_VALID "not_after > :now), "
	    "(" SQ_VALID "not_after > :now AND not_after <= :now + 86400), "
	    "(" SQ_VALID "not_after > :now AND not_after <= :now + 259200), "
	    "(" SQ_VALID "not_after > :now AND not_after <= :now + 604800)",
	    -1, &st, NULL) != SQLITE_OK)
		goto fail;
	bind_i64(st, ":now", now);
	if (sqlite3_step(st) != SQLITE_ROW)
		goto fail;
	sum->total = sqlite3_column_int64(st, 0);
	sum->revoked = sqlite3_column_int64(st, 1);
	sum->expired = sqlite3_column_int64(st, 2);
	sum->valid = sqlite3_column_int64(st, 3);
	for (i = 0; i < 3; i++)
		sum->within[i] = sqlite3_column_int64(st, 4 + i);
	sqlite3_finalize(st);
	st = NULL;
	if (inv_buckets(s, SQ_EXP_H, now, sum->exp_hours, NULL, NULL,
	    err) != 0 ||
	    inv_buckets(s, SQ_EXP_D, now, NULL, sum->exp_days, NULL,
	    err) != 0 ||
	    inv_buckets(s, SQ_EXP_W, now, NULL, NULL, sum->exp_weeks,
	    err) != 0 ||
	    inv_buckets(s, SQ_MADE_H, now, sum->iss_hours, NULL, NULL,
	    err) != 0 ||
	    inv_buckets(s, SQ_MADE_D, now, NULL, sum->iss_days, NULL,
	    err) != 0 ||
	    inv_buckets(s, SQ_FIRST, now, fh, fd, NULL, err) != 0)
		goto out;
	/* revocations by CRLReason (0..10) */
	if (sqlite3_prepare_v2(s->db, "SELECT coalesce(reason, 0), count(*) "
	    "FROM certs WHERE status = 'revoked' GROUP BY 1", -1, &st, NULL) !=
	    SQLITE_OK)
		goto fail;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t r = sqlite3_column_int64(st, 0);

		if (r >= 0 && r < INV_REASONS)
			sum->by_reason[r] = sqlite3_column_int64(st, 1);
	}
	if (rc != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	store_inv_renewals(sum, fh, fd);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	return 0;
 fail:
	db_error(s, err, "cannot sum the inventory");
 out:
	rc = -1;
	sqlite3_finalize(st);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int
sq_inv_identity(struct store *base, const char *id, int limit,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	char *needle;

	/* one whole line of identities: "\n" id "\n" in "\n" ids "\n" */
	if (asprintf(&needle, "\n%s\n", id) < 0)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (sqlite3_prepare_v2(s->db, "SELECT " INV_COLS " FROM certs WHERE "
	    "serial IN (SELECT serial FROM certs INDEXED BY certs_ids WHERE "
	    "instr(char(10) || identities || char(10), :id) > 0) ORDER BY "
	    "created_at DESC, serial LIMIT :lim", -1, &st, NULL) != SQLITE_OK) {
		free(needle);
		return db_error(s, err, "cannot list the identity");
	}
	bind_txt(st, ":id", needle);
	bind_i64(st, ":lim", limit);
	free(needle);
	return inv_rows(s, st, cb, arg, err);
}

static const struct store_inv_ops sq_inv_ops = {
	.list = sq_inv_list,
	.summary = sq_inv_summary,
	.identity = sq_inv_identity,
};

/* ---- rotation: agents' bundle generations, what blocks a step ---- */

static int
sq_agent_bundle(struct store *base, const char *serial, const char *replaces,
    const char *gen, int64_t not_after, int64_t now, struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1;

	if (replaces != NULL) {
		if ((st = sq_stmt(s, SQ_AGENT_DEL)) == NULL)
			return db_error(s, err, "cannot prepare the agent's "
			    "bundle");
		sqlite3_bind_text(st, 1, replaces, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_error(s, err, "cannot replace the agent's bundle");
			sq_done(st);
			return -1;
		}
		sq_done(st);
	}
	if ((st = sq_stmt(s, SQ_AGENT)) == NULL)
		return db_error(s, err, "cannot prepare the agent's bundle");
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, gen, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, not_after);
	sqlite3_bind_int64(st, 4, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(s, err, "cannot record the agent's bundle");
	else
		rv = 0;
	sq_done(st);
	return rv;
}

static int
sq_rotation_count(struct store *base, const char *issuer,
    const char *except_serial, const char *gen_a, const char *gen_b,
    int64_t now, int64_t out[3], struct mtls_error *err)
{
	struct sq *s = SQ(base);
	sqlite3_stmt *st = NULL;
	int rv = -1, i;

	/* agents: the reports of unexpired, unrevoked certificates */
	if (sqlite3_prepare_v2(s->db, "SELECT (SELECT count(*) FROM certs "
	    "WHERE issuer = ?1 AND status = 'valid' AND not_after > ?3 AND "
	    "kind <> 'root' AND serial <> ?2), (SELECT count(*) FROM "
	    "bundle_reports b JOIN certs c ON c.serial = b.serial WHERE "
	    "b.not_after > ?3 AND c.status = 'valid'), (SELECT count(*) FROM "
	    "bundle_reports b JOIN certs c ON c.serial = b.serial WHERE "
	    "b.not_after > ?3 AND c.status = 'valid' AND b.gen <> ?4 AND "
	    "b.gen <> ?5)",
	    -1, &st, NULL) != SQLITE_OK)
		return db_error(s, err, "cannot prepare the rotation counts");
	sqlite3_bind_text(st, 1, issuer, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, except_serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_text(st, 4, gen_a, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 5, gen_b, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_ROW)
		db_error(s, err, "cannot count for the rotation");
	else {
		for (i = 0; i < 3; i++)
			out[i] = sqlite3_column_int64(st, i);
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}
