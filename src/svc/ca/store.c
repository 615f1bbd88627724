/*
 * The CA inventory in SQLite (WAL, synchronous=FULL): every issued
 * certificate, its revocation, the CRL number. Invariants (DESIGN.md
 * "Persistence"): a certificate is committed before anyone receives it; a
 * revocation is committed before it is acknowledged; a serial is unique
 * (PRIMARY KEY), so a collision is caught and retried, never issued twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ca.h"

#define SCHEMA_VERSION	1

struct store {
	sqlite3	*db;
	char	 path[4096];
};

static const char schema[] =
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
    "INSERT OR IGNORE INTO meta VALUES ('crl_number', '0');";

static int
db_error(struct store *s, struct mtls_error *err, const char *what)
{
	int ec = sqlite3_errcode(s->db), se = sqlite3_system_errno(s->db);

	if (ec == SQLITE_NOTADB || ec == SQLITE_CORRUPT)
		return error_set(err, MTLS_ERR_PARSE,
		    "%s: inventory is damaged (%s); restore it from a backup",
		    s->path, sqlite3_errmsg(s->db));
	error_set(err, MTLS_ERR_IO, "%s: %s: %s", s->path, what,
	    sqlite3_errmsg(s->db));
	/* the kind, for ca serve to answer 503 and say it cannot issue:
	 * SQLITE_FULL is ENOSPC from a write (or a page limit) */
	if (ec == SQLITE_FULL)
		err->sys = se ? se : ENOSPC;
	else if (ec == SQLITE_IOERR || ec == SQLITE_READONLY)
		err->sys = se ? se : EIO;
	return -1;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	sqlite3_close(s->db);
	free(s);
}

int
store_open(struct store **out, const char *path, int create,
    struct mtls_error *err)
{
	struct store *s;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;

	*out = NULL;
	if (!create && stat(path, &sb) == -1)
		return error_set_errno(err, MTLS_ERR_IO,
		    "%s: no inventory (is this a CA directory made by mtls ca "
		    "init?)", path);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot open");
		goto err;
	}
	sqlite3_busy_timeout(s->db, 10000);
	if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=FULL;", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot set WAL mode");
		goto err;
	}
	if (create && sqlite3_exec(s->db, schema, NULL, NULL, NULL) !=
	    SQLITE_OK) {
		db_error(s, err, "cannot create schema");
		goto err;
	}
	/* one-time join tokens, stored as SHA-256 of their secret; added to
	 * schema 1 without a version bump (older inventories gain it here) */
	if (sqlite3_exec(s->db, "CREATE TABLE IF NOT EXISTS tokens ("
	    " hash TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL,"
	    " expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL,"
	    " used_at INTEGER, serial TEXT);", NULL, NULL, NULL) != SQLITE_OK &&
	    sqlite3_errcode(s->db) != SQLITE_READONLY) {
		db_error(s, err, "cannot create the token table");
		goto err;
	}
	if (sqlite3_prepare_v2(s->db,
	    "SELECT value FROM meta WHERE key = 'schema'", -1, &st, NULL) !=
	    SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
		if (sqlite3_errcode(s->db) == SQLITE_NOTADB ||
		    sqlite3_errcode(s->db) == SQLITE_CORRUPT)
			db_error(s, err, "");
		else
			error_set(err, MTLS_ERR_PARSE,
			    "%s: not an mtls inventory (no schema version)",
			    path);
		goto err;
	}
	if (sqlite3_column_int(st, 0) != SCHEMA_VERSION) {
		error_set(err, MTLS_ERR_PARSE,
		    "%s: inventory schema %d; this mtls reads %d", path,
		    sqlite3_column_int(st, 0), SCHEMA_VERSION);
		goto err;
	}
	sqlite3_finalize(st);
	*out = s;
	return 0;
 err:
	sqlite3_finalize(st);
	store_close(s);
	return -1;
}

static char *
ids_text(X509 *x)
{
	struct mtls_error e;
	struct ids ids;
	size_t i, len = 1;
	char *s;

	if (ids_from_cert(x, &ids, &e) != 0)
		return NULL;
	for (i = 0; i < ids.n; i++)
		len += strlen(ids.v[i]) + 1;
	if ((s = calloc(1, len)) != NULL)
		for (i = 0; i < ids.n; i++) {
			if (i)
				strcat(s, "\n");
			strcat(s, ids.v[i]);
		}
	ids_free(&ids);
	return s;
}

int
store_add(struct store *s, X509 *x, const char *kind, struct mtls_error *err)
{
	return store_add_burn(s, x, kind, NULL, err);
}

/* Burns <hash> for <serial> inside the open transaction: 0, 1 when the
 * token is unknown, used or expired, -1 on error (err says which). */
static int
burn(struct store *s, const char *hash, const char *serial,
    struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	int64_t now = (int64_t)time(NULL);
	int rv = -1;

	if (sqlite3_prepare_v2(s->db, "UPDATE tokens SET used_at = ?, serial "
	    "= ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?", -1,
	    &st, NULL) != SQLITE_OK)
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
	sqlite3_finalize(st);
	return rv;
}

int
store_add_burn(struct store *s, X509 *x, const char *kind,
    const char *token_hash, struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	unsigned char *der = NULL;
	char serial[48], subj[256], iss[256], *ids = NULL;
	int der_len, rc, rv = -1;

	serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	name_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	name_oneline(X509_get_issuer_name(x), iss, sizeof(iss));
	if ((der_len = i2d_X509(x, &der)) <= 0 || (ids = ids_text(x)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (sqlite3_prepare_v2(s->db, "INSERT INTO certs (serial, kind, "
	    "subject, issuer, identities, not_before, not_after, created_at, "
	    "der) VALUES (?,?,?,?,?,?,?,?,?)", -1, &st, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot prepare insert");
		goto out;
	}
	sqlite3_bind_text(st, 1, serial, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, subj, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, iss, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 5, ids, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 6, asn1_time_unix(X509_get0_notBefore(x)));
	sqlite3_bind_int64(st, 7, asn1_time_unix(X509_get0_notAfter(x)));
	sqlite3_bind_int64(st, 8, (int64_t)time(NULL));
	sqlite3_bind_blob(st, 9, der, der_len, SQLITE_TRANSIENT);
	/* one transaction: the certificate and the token that pays for it;
	 * durable (synchronous=FULL) when COMMIT returns */
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		db_error(s, err, "cannot begin");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_CONSTRAINT) {
		rv = 1;
		goto rollback;
	}
	if (rc != SQLITE_DONE) {
		db_error(s, err, "cannot record certificate");
		goto rollback;
	}
	if (token_hash != NULL &&
	    (rc = burn(s, token_hash, serial, err)) != 0) {
		rv = rc == 1 ? 2 : -1;
		goto rollback;
	}
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(s, err, "cannot commit the certificate");
		goto rollback;
	}
	rv = 0;
	goto out;
 rollback:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
 out:
	sqlite3_finalize(st);
	OPENSSL_free(der);
	free(ids);
	return rv;
}

int
store_probe(struct store *s, struct mtls_error *err)
{
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

int
store_token_add(struct store *s, const char *hash, const char *spiffe_id,
    int64_t expires_at, struct mtls_error *err)
{
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

int
store_token_get(struct store *s, const char *hash, char *spiffe_id,
    size_t id_len, struct mtls_error *err)
{
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
		snprintf(spiffe_id, id_len, "%s",
		    (const char *)sqlite3_column_text(st, 0));
		rv = 0;
	}
	sqlite3_finalize(st);
	return rv;
}

/* The record of <serial> into <r>; with <der>, also whether the row holds
 * exactly those bytes. 0 found (and the same), 1 no such serial, 2 the
 * serial is ours but <der> is another certificate, -1 error. */
static int
get_rec(struct store *s, const char *serial, const uint8_t *der,
    size_t der_len, struct cert_rec *r, struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	const void *blob;
	const char *t;
	int rc, rv = -1;

	memset(r, 0, sizeof(*r));
	if (sqlite3_prepare_v2(s->db, "SELECT kind, status, revoked_at, "
	    "reason, not_after, der FROM certs WHERE serial = ?", -1, &st,
	    NULL) != SQLITE_OK)
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
		r->kind = t && strcmp(t, "root") == 0 ? "root" : t &&
		    strcmp(t, "intermediate") == 0 ? "intermediate" : "leaf";
		t = (const char *)sqlite3_column_text(st, 1);
		r->revoked = t != NULL && strcmp(t, "revoked") == 0;
		r->revoked_at = sqlite3_column_int64(st, 2);
		r->reason = sqlite3_column_int(st, 3);
		r->not_after = sqlite3_column_int64(st, 4);
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
	sqlite3_finalize(st);
	return rv;
}

int
store_get(struct store *s, const char *serial, struct cert_rec *r,
    struct mtls_error *err)
{
	return get_rec(s, serial, NULL, 0, r, err);
}

int
store_get_cert(struct store *s, X509 *x, struct cert_rec *r,
    struct mtls_error *err)
{
	unsigned char *der = NULL;
	char serial[48];
	int der_len, rv;

	memset(r, 0, sizeof(*r));
	serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	if ((der_len = i2d_X509(x, &der)) <= 0)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	rv = get_rec(s, serial, der, (size_t)der_len, r, err);
	OPENSSL_free(der);
	return rv;
}

int
store_revoke(struct store *s, const char *serial, int reason, int64_t at,
    int *already, struct mtls_error *err)
{
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

int
store_each(struct store *s, int (*cb)(void *, const struct cert_rec *),
    void *arg, struct mtls_error *err)
{
	sqlite3_stmt *st = NULL;
	struct cert_rec r;
	int rc, rv = -1;

	if (sqlite3_prepare_v2(s->db, "SELECT serial, kind, subject, issuer, "
	    "identities, not_before, not_after, status, revoked_at, reason, "
	    "created_at FROM certs ORDER BY created_at DESC, serial", -1, &st,
	    NULL) != SQLITE_OK)
		return db_error(s, err, "cannot list");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t;

		memset(&r, 0, sizeof(r));
		snprintf(r.serial, sizeof(r.serial), "%s",
		    (const char *)sqlite3_column_text(st, 0));
		r.kind = (const char *)sqlite3_column_text(st, 1);
		snprintf(r.subject, sizeof(r.subject), "%s",
		    (const char *)sqlite3_column_text(st, 2));
		snprintf(r.issuer, sizeof(r.issuer), "%s",
		    (const char *)sqlite3_column_text(st, 3));
		t = (const char *)sqlite3_column_text(st, 4);
		r.identities = (char *)(t ? t : "");
		r.not_before = sqlite3_column_int64(st, 5);
		r.not_after = sqlite3_column_int64(st, 6);
		t = (const char *)sqlite3_column_text(st, 7);
		r.revoked = t != NULL && strcmp(t, "revoked") == 0;
		r.revoked_at = sqlite3_column_int64(st, 8);
		r.reason = sqlite3_column_int(st, 9);
		r.created_at = sqlite3_column_int64(st, 10);
		if (r.kind == NULL)
			r.kind = "?";
		if (cb(arg, &r) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_error(s, err, "cannot list");
		goto out;
	}
	rv = 0;
 out:
	sqlite3_finalize(st);
	return rv;
}

int
store_next_crl_number(struct store *s, int64_t *n, struct mtls_error *err)
{
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
