/*
 * The CA inventory: every issued certificate, its revocation, the one-time
 * join tokens, the CRL number. This file is the store_* API of ca.h over
 * a backend's ops table: SQLite (store_sqlite.c, the default, a file in
 * the CA directory) or PostgreSQL (store_pg.c, shared by several ca serve
 * replicas; ca.conf "store = postgres://..."). Invariants (DESIGN.md
 * "Persistence"), kept by both backends: a certificate is committed before
 * anyone receives it; a revocation is committed before it is acknowledged;
 * a serial is unique (a constraint), so a collision is caught and retried,
 * never issued twice; a token is burned in the transaction that records
 * its certificate, exactly once.
 *
 * Group commit: concurrent store_add_burn() calls share one transaction
 * and one commit (one fsync on SQLite, WAL + synchronous=FULL; one COMMIT
 * on PostgreSQL). A caller queues its item; the first that finds no batch
 * committing leads: it takes the whole queue, runs it through the
 * backend's tx_* ops and wakes every item's caller after the commit
 * returned, never before. An item whose serial is taken or whose token is
 * refused fails alone (its row is taken back inside the transaction); an
 * error of the store fails the whole batch (rolled back: nothing of it is
 * recorded). Every backend call holds the store's own lock (one
 * connection); callers hold no other lock around their adds (ca serve
 * signs without one), so that other requests sign while a batch commits
 * and join the next one.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_int.h"

const char *
store_kind(const char *t)
{
	if (t != NULL && strcmp(t, "root") == 0)
		return "root";
	if (t != NULL && strcmp(t, "intermediate") == 0)
		return "intermediate";
	return "leaf";
}

int
store_url_is_pg(const char *url)
{
	return strncmp(url, "postgres://", 11) == 0 ||
	    strncmp(url, "postgresql://", 13) == 0;
}

/* ---- the store's lock and the group commit queue ---- */
struct gc_item {
	const struct store_row	*r;
	const char		*token_hash;
	const char		*replaces, *gen;	/* a bundle report */
	int			 rc, done;
	struct mtls_error	*err;
	struct gc_item		*next;
	/* its caller waits here: woken when its batch ended, or to lead
	 * the next (the head of the queue), never by another's batch */
	pthread_cond_t		 cv;
};

struct store_gc {
	pthread_mutex_t	 io;		/* the backend (one connection) */
	/* a CA directory's store (store_open_ca): a second connection for
	 * the reads of every issuance (the client certificate's row, a
	 * token), so that they do not wait on io through a batch's commit
	 * (fsync): it sees the last commit (SQLite WAL; PostgreSQL's read
	 * committed) and never waits for the writer. NULL: reads use io's. */
	struct store	*rd;
	pthread_mutex_t	 rio;
	/* the inventory's views (store_inv.h): a third connection, opened
	 * at the first view, so that a summary's scans never hold rd's lock
	 * while an issuance waits to read; dir: the CA directory */
	char		*dir;
	struct store	*inv;
	pthread_mutex_t	 iio;
	pthread_mutex_t	 mu;		/* the queue, leading, items' done */
	struct gc_item	*head, **tail;
	int		 leading;
	uint64_t	 commits, items;
};

/* Gives a freshly opened backend handle its lock and queue: 0, or -1 (and
 * the handle closed). */
static int
store_init(struct store **out, int rv, struct mtls_error *err)
{
	struct store_gc *g;

	if (rv != 0)
		return rv;
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		(*out)->ops->close(*out);
		*out = NULL;
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	}
	pthread_mutex_init(&g->io, NULL);
	pthread_mutex_init(&g->rio, NULL);
	pthread_mutex_init(&g->iio, NULL);
	pthread_mutex_init(&g->mu, NULL);
	g->tail = &g->head;
	(*out)->gc = g;
	return 0;
}

static void
io_lock(struct store *s)
{
	if (s->gc != NULL)
		pthread_mutex_lock(&s->gc->io);
}

static void
io_unlock(struct store *s)
{
	if (s->gc != NULL)
		pthread_mutex_unlock(&s->gc->io);
}

/* The handle for a read of committed rows, locked: the reader when there
 * is one, else the store itself (io). rd_unlock(s) after. */
static struct store *
rd_lock(struct store *s)
{
	if (s->gc != NULL && s->gc->rd != NULL) {
		pthread_mutex_lock(&s->gc->rio);
		return s->gc->rd;
	}
	io_lock(s);
	return s;
}

static void
rd_unlock(struct store *s)
{
	if (s->gc != NULL && s->gc->rd != NULL)
		pthread_mutex_unlock(&s->gc->rio);
	else
		io_unlock(s);
}

void
store_stats(struct store *s, uint64_t *commits, uint64_t *items)
{
	*commits = s->gc ? __atomic_load_n(&s->gc->commits, __ATOMIC_RELAXED) :
	    0;
	*items = s->gc ? __atomic_load_n(&s->gc->items, __ATOMIC_RELAXED) : 0;
}

/* The backend's tx_batch over the items of <b> (see store_int.h): 0, 1
 * (also when out of memory: item by item then), -1. */
static int
batch_at_once(struct store *s, struct gc_item *b, struct mtls_error *e)
{
	struct store_item *v;
	struct gc_item *it;
	size_t n = 0;
	int rv;

	for (it = b; it != NULL; it = it->next)
		n++;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return 1;
	for (n = 0, it = b; it != NULL; it = it->next, n++) {
		v[n].r = it->r;
		v[n].token_hash = it->token_hash;
		v[n].replaces = it->replaces;
		v[n].gen = it->gen;
	}
	rv = s->ops->tx_batch(s, v, n, e);
	free(v);
	return rv;
}

/* One batch in one transaction (the leader, holding io). Each item's rc
 * and err are set; a store error sets every item's to it. */
static void
run_batch(struct store *s, struct gc_item *b)
{
	const struct store_ops *o = s->ops;
	struct mtls_error e;
	struct gc_item *it;
	int rc, n = 0, reports = 0;

	error_clear(&e);
	if (o->tx_batch != NULL) {
		switch (batch_at_once(s, b, &e)) {
		case 0:
			for (it = b; it != NULL; it = it->next, n++)
				it->rc = 0;
			goto commit;
		case -1:
			goto failed;
		}	/* 1: item by item, which tells whose was refused */
		error_clear(&e);
	}
	if (o->tx_begin(s, &e) != 0)
		goto failed;
	for (it = b; it != NULL; it = it->next) {
		if ((rc = o->tx_insert(s, it->r, &e)) < 0)
			goto failed;
		if (rc == 1) {			/* serial taken */
			it->rc = 1;
			continue;
		}
		if (it->token_hash != NULL && (rc = o->tx_burn(s,
		    it->token_hash, it->r->serial, it->err)) != 0) {
			if (rc < 0) {
				error_copy(&e, it->err);
				goto failed;
			}
			/* refused: this item alone, its row taken back */
			if (o->tx_uninsert(s, it->r->serial, &e) != 0)
				goto failed;
			it->rc = 2;
			continue;
		}
		/* the agent's bundle report rides with its certificate: one
		 * commit per renewal (rotation.c counts these rows), keyed
		 * by this certificate's serial; a renewal's replaces the
		 * report of the certificate it was authenticated with */
		if (it->gen != NULL && o->tx_bundle(s, it->r->serial,
		    it->replaces, it->gen, it->r->not_after,
		    it->r->created_at, &e) != 0)
			goto failed;
		reports += it->gen != NULL;
		it->rc = 0;
		n++;
	}
	/* the reports of certificates that expired unrenewed, a few per
	 * batch that writes reports (tx_batch sweeps itself) */
	if (reports > 0 && o->tx_sweep != NULL && o->tx_sweep(s,
	    b->r->created_at, &e) != 0)
		goto failed;
 commit:
	if (o->tx_end(s, 1, &e) != 0)
		goto failed_ended;
	if (s->gc != NULL) {
		__atomic_add_fetch(&s->gc->commits, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->gc->items, (uint64_t)n,
		    __ATOMIC_RELAXED);
	}
	return;
 failed:
	o->tx_end(s, 0, NULL);
 failed_ended:
	for (it = b; it != NULL; it = it->next) {
		it->rc = -1;
		error_copy(it->err, &e);
	}
}

/* Queues <it> and returns once its batch has committed (or failed). A
 * leader wakes the callers of its batch and the head of the queue (the
 * next leader) only: a broadcast woke every waiter at every commit, and
 * those of later batches went back to sleep (issue 15: a third of the
 * commit phase's CPU at 64 clients was these wake-ups). */
static int
add_batched(struct store *s, struct gc_item *it)
{
	struct store_gc *g = s->gc;
	struct gc_item *b, *x;

	if (g == NULL) {	/* a handle store.c did not open: alone */
		run_batch(s, it);
		return it->rc;
	}
	pthread_cond_init(&it->cv, NULL);
	pthread_mutex_lock(&g->mu);
	*g->tail = it;
	g->tail = &it->next;
	while (!it->done) {
		if (g->leading) {
			pthread_cond_wait(&it->cv, &g->mu);
			continue;
		}
		g->leading = 1;
		b = g->head;
		g->head = NULL;
		g->tail = &g->head;
		pthread_mutex_unlock(&g->mu);
		pthread_mutex_lock(&g->io);
		run_batch(s, b);
		pthread_mutex_unlock(&g->io);
		pthread_mutex_lock(&g->mu);
		/* under mu: a caller returns (its item on its stack gone)
		 * only after it took mu again, so x is alive here */
		for (x = b; x != NULL; x = x->next) {
			x->done = 1;
			if (x != it)
				pthread_cond_signal(&x->cv);
		}
		g->leading = 0;
		if (g->head != NULL)
			pthread_cond_signal(&g->head->cv);
	}
	pthread_mutex_unlock(&g->mu);
	pthread_cond_destroy(&it->cv);
	return it->rc;
}

int
store_open(struct store **out, const char *path, int create,
    struct mtls_error *err)
{
	return store_init(out, store_sqlite_open(out, path, create, err), err);
}

int
store_open_url(struct store **out, const char *url, const char *password_file,
    const char *sslmode, const char *sslrootcert, struct mtls_error *err)
{
	struct store_conf c;
	int rv;

	*out = NULL;
	if (!store_url_is_pg(url))
		return error_set(err, MTLS_ERR_ARG, "the store must be a "
		    "postgres://host/db URL (its password in a file)");
	memset(&c, 0, sizeof(c));
	if (snprintf(c.url, sizeof(c.url), "%s", url) >= (int)sizeof(c.url) ||
	    snprintf(c.password_file, sizeof(c.password_file), "%s",
	    password_file ? password_file : "") >= (int)sizeof(c.password_file)
	    || snprintf(c.sslmode, sizeof(c.sslmode), "%s", sslmode ? sslmode :
	    "") >= (int)sizeof(c.sslmode) || snprintf(c.sslrootcert,
	    sizeof(c.sslrootcert), "%s", sslrootcert ? sslrootcert : "") >=
	    (int)sizeof(c.sslrootcert))
		rv = error_set(err, MTLS_ERR_ARG, "store URL or one of its "
		    "settings is too long");
	else
		rv = store_init(out, store_pg_open(out, &c, err), err);
	OPENSSL_cleanse(&c, sizeof(c));
	return rv;
}

/* ---- ca.conf: [ca] store, store_password_file, store_sslmode,
 * store_sslrootcert (ca.c's parser leaves these keys to us) ---- */
struct conf_arg {
	struct store_conf	*c;
	const char		*dir, *path;
};

static int
store_conf_cb(void *arg, const char *section, const char *key, const char *val,
    int line, struct mtls_error *err)
{
	struct conf_arg *a = arg;
	char *dst;
	size_t len;

	if (strcmp(section, "ca") != 0 || strncmp(key, "store", 5) != 0)
		return 0;
	if (strcmp(key, "store") == 0) {
		dst = a->c->url;
		len = sizeof(a->c->url);
		/* never echo the value: it may carry a password */
		if (strcmp(val, "sqlite") != 0 && !store_url_is_pg(val))
			return error_set(err, MTLS_ERR_PARSE, "%s:%d: store "
			    "must be sqlite or postgres://host/db", a->path,
			    line);
	} else if (strcmp(key, "store_password_file") == 0) {
		dst = a->c->password_file;
		len = sizeof(a->c->password_file);
		if (val[0] != '/') {	/* relative to the CA directory */
			if (snprintf(dst, len, "%s/%s", a->dir, val) >=
			    (int)len)
				goto long_;
			return 0;
		}
	} else if (strcmp(key, "store_sslmode") == 0) {
		dst = a->c->sslmode;
		len = sizeof(a->c->sslmode);
	} else if (strcmp(key, "store_sslrootcert") == 0) {
		dst = a->c->sslrootcert;
		len = sizeof(a->c->sslrootcert);
	} else
		return error_set(err, MTLS_ERR_PARSE, "%s:%d: unknown key "
		    "'%.40s' in [ca] (store, store_password_file, "
		    "store_sslmode, store_sslrootcert)", a->path, line, key);
	if (snprintf(dst, len, "%s", val) < (int)len)
		return 0;
 long_:
	return error_set(err, MTLS_ERR_PARSE, "%s:%d: %s is too long",
	    a->path, line, key);
}

/* The store settings of DIR/ca.conf into <c> (url "" when none). */
static int
conf_load(const char *dir, struct store_conf *c, struct mtls_error *err)
{
	struct conf_arg a;
	char p[PATH_MAX];
	uint8_t *buf = NULL;
	size_t len;
	int rv;

	memset(c, 0, sizeof(*c));
	snprintf(p, sizeof(p), "%s/ca.conf", dir);
	if (fs_read(p, 1 << 20, &buf, &len, err) != 0)
		return -1;
	a.c = c;
	a.dir = dir;
	a.path = p;
	rv = conf_parse((const char *)buf, len, p, store_conf_cb, &a, err);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}

static int open_down_ok;	/* store_open_down_ok: set before threads */

void
store_open_down_ok(void)
{
	open_down_ok = 1;
}

int
store_open_ca(struct store **out, const char *dir, struct mtls_error *err)
{
	struct store_conf c;
	char p[PATH_MAX];
	int rv;

	*out = NULL;
	if (conf_load(dir, &c, err) != 0)
		rv = -1;
	else if (c.url[0] == '\0' || strcmp(c.url, "sqlite") == 0) {
		snprintf(p, sizeof(p), "%s/inventory.db", dir);
		rv = store_init(out, store_sqlite_open(out, p, 0, err), err);
		if (rv == 0)
			rv = store_sqlite_open(&(*out)->gc->rd, p, 0, err);
	} else {
		c.down_ok = open_down_ok;
		rv = store_init(out, store_pg_open(out, &c, err), err);
		if (rv == 0)
			rv = store_pg_open(&(*out)->gc->rd, &c, err);
	}
	if (rv == 0 && ((*out)->gc->dir = strdup(dir)) == NULL)
		rv = error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (rv != 0 && *out != NULL) {	/* the read connection failed */
		store_close(*out);
		*out = NULL;
	}
	OPENSSL_cleanse(&c, sizeof(c));
	return rv;
}

void
store_close(struct store *s)
{
	struct store_gc *g;

	if (s == NULL)
		return;
	if ((g = s->gc) != NULL) {
		if (g->rd != NULL)
			g->rd->ops->close(g->rd);
		if (g->inv != NULL)
			g->inv->ops->close(g->inv);
		free(g->dir);
		pthread_mutex_destroy(&g->iio);
		pthread_mutex_destroy(&g->rio);
		pthread_mutex_destroy(&g->io);
		pthread_mutex_destroy(&g->mu);
		free(g);
	}
	s->ops->close(s);
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

int
store_add_burn(struct store *s, X509 *x, const char *kind,
    const char *token_hash, struct mtls_error *err)
{
	return store_add_issued(s, x, kind, token_hash, NULL, NULL, err);
}

int
store_add_issued(struct store *s, X509 *x, const char *kind,
    const char *token_hash, const char *replaces, const char *gen,
    struct mtls_error *err)
{
	struct store_row r;
	struct gc_item it;
	unsigned char *der = NULL;
	char *ids = NULL;
	int der_len, rv = -1;

	memset(&r, 0, sizeof(r));
	serial_hex(X509_get0_serialNumber(x), r.serial, sizeof(r.serial));
	name_oneline(X509_get_subject_name(x), r.subject, sizeof(r.subject));
	name_oneline(X509_get_issuer_name(x), r.issuer, sizeof(r.issuer));
	if ((der_len = i2d_X509(x, &der)) <= 0 || (ids = ids_text(x)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	r.kind = kind;
	r.identities = ids;
	r.not_before = asn1_time_unix(X509_get0_notBefore(x));
	r.not_after = asn1_time_unix(X509_get0_notAfter(x));
	r.created_at = (int64_t)time(NULL);
	r.der = der;
	r.der_len = (size_t)der_len;
	memset(&it, 0, sizeof(it));
	it.r = &r;
	it.token_hash = token_hash;
	it.replaces = gen != NULL ? replaces : NULL;
	it.gen = gen;
	it.err = err;
	rv = add_batched(s, &it);
 out:
	OPENSSL_free(der);
	free(ids);
	return rv;
}

int
store_probe(struct store *s, struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->probe(s, err);
	io_unlock(s);
	return rv;
}

int
store_token_add(struct store *s, const char *hash, const char *spiffe_id,
    int64_t expires_at, struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->token_add(s, hash, spiffe_id, expires_at, err);
	io_unlock(s);
	return rv;
}

int
store_token_get(struct store *s, const char *hash, char *spiffe_id,
    size_t id_len, struct mtls_error *err)
{
	struct store *r = rd_lock(s);
	int rv;

	rv = r->ops->token_get(r, hash, spiffe_id, id_len, err);
	rd_unlock(s);
	return rv;
}

int
store_get(struct store *s, const char *serial, struct cert_rec *r,
    struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->get(s, serial, NULL, 0, r, err);
	io_unlock(s);
	return rv;
}

int
store_get_cert(struct store *s, X509 *x, struct cert_rec *r,
    struct mtls_error *err)
{
	unsigned char *der = NULL;
	struct store *rd;
	char serial[48];
	int der_len, rv;

	memset(r, 0, sizeof(*r));
	serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	if ((der_len = i2d_X509(x, &der)) <= 0)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	rd = rd_lock(s);
	rv = rd->ops->get(rd, serial, der, (size_t)der_len, r, err);
	rd_unlock(s);
	OPENSSL_free(der);
	return rv;
}

int
store_revoke(struct store *s, const char *serial, int reason, int64_t at,
    int *already, struct mtls_error *err)
{
	int rv;

	*already = 0;
	io_lock(s);
	rv = s->ops->revoke(s, serial, reason, at, already, err);
	io_unlock(s);
	return rv;
}

int
store_each(struct store *s, int (*cb)(void *, const struct cert_rec *),
    void *arg, struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->each(s, cb, arg, err);
	io_unlock(s);
	return rv;
}

int
store_revocations(struct store *s, int64_t *n, struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->revocations(s, n, err);
	io_unlock(s);
	return rv;
}

int
store_next_crl_number(struct store *s, int64_t *n, struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->next_crl_number(s, n, err);
	io_unlock(s);
	return rv;
}

/* ---- mtls ca store migrate ---- */
struct mig {
	struct store		*dst;
	struct mtls_error	*err;
	int64_t			 n_certs, n_tokens, n_reports;
};

static int
mig_row(void *arg, const struct store_row *r)
{
	struct mig *m = arg;

	m->n_certs++;
	return m->dst->ops->load_row(m->dst, r, m->err);
}

static int
mig_tok(void *arg, const struct store_token *t)
{
	struct mig *m = arg;

	m->n_tokens++;
	return m->dst->ops->load_token(m->dst, t, m->err);
}

/* a rotation under way keeps counting the agents that reported: without
 * their reports the count of agents on the old bundle would drop to 0,
 * the unsafe direction (switch would pass) */
static int
mig_rep(void *arg, const struct store_report *r)
{
	struct mig *m = arg;

	m->n_reports++;
	return m->dst->ops->load_report(m->dst, r, m->err);
}

int
store_migrate(const char *dir, const char *url, const char *password_file,
    const char *sslmode, const char *sslrootcert, int64_t *n_certs,
    int64_t *n_tokens, int64_t *n_reports, struct mtls_error *err)
{
	struct store *src = NULL, *dst = NULL;
	struct mig m;
	char p[PATH_MAX];
	int64_t crl = 0;
	int rv = -1, ok;

	if (fs_check_private(dir, "", " (whoever can write a CA directory "
	    "decides what it issues)", err) != 0)
		return -1;
	snprintf(p, sizeof(p), "%s/inventory.db", dir);
	if (store_sqlite_open(&src, p, 0, err) != 0)
		return -1;
	if (store_open_url(&dst, url, password_file, sslmode, sslrootcert,
	    err) != 0)
		goto out;
	if (src->ops->dump == NULL || dst->ops->load_begin == NULL) {
		error_set(err, MTLS_ERR_ARG, "cannot migrate from %s to %s",
		    src->ops->name, dst->ops->name);
		goto out;
	}
	memset(&m, 0, sizeof(m));
	m.dst = dst;
	m.err = err;
	if (dst->ops->load_begin(dst, err) != 0)
		goto out;
	ok = src->ops->dump(src, mig_row, mig_tok, mig_rep, &m, &crl,
	    err) == 0;
	if (dst->ops->load_end(dst, ok, crl, err) != 0 || !ok)
		goto out;
	*n_certs = m.n_certs;
	*n_tokens = m.n_tokens;
	*n_reports = m.n_reports;
	rv = 0;
 out:
	store_close(src);
	store_close(dst);
	return rv;
}

/* ---- the inventory's views (store_inv.h): their own connection ---- */
/* The handle for a view, locked (inv_unlock after): a CA directory's
 * store opens its views' connection at the first; another store (tests,
 * migrate) reads on rd. NULL with err when that connection cannot open. */
static struct store *
inv_lock(struct store *s, struct mtls_error *err)
{
	struct store_gc *g = s->gc;
	struct store_conf c;
	char p[PATH_MAX];
	int rv = 0;

	if (g == NULL || g->dir == NULL)
		return rd_lock(s);
	pthread_mutex_lock(&g->iio);
	if (g->inv == NULL) {
		if (conf_load(g->dir, &c, err) != 0)
			rv = -1;
		else if (c.url[0] == '\0' || strcmp(c.url, "sqlite") == 0) {
			snprintf(p, sizeof(p), "%s/inventory.db", g->dir);
			rv = store_sqlite_open(&g->inv, p, 0, err);
		} else
			rv = store_pg_open(&g->inv, &c, err);
		OPENSSL_cleanse(&c, sizeof(c));
	}
	if (rv != 0) {
		pthread_mutex_unlock(&g->iio);
		return NULL;
	}
	return g->inv;
}

static void
inv_unlock(struct store *s)
{
	if (s->gc == NULL || s->gc->dir == NULL)
		rd_unlock(s);
	else
		pthread_mutex_unlock(&s->gc->iio);
}

/* one set of spans for expiry ahead and issuance behind */
_Static_assert(INV_RATE_HOURS == INV_EXP_HOURS &&
    INV_RATE_DAYS == INV_EXP_DAYS, "store_inv_add's spans");

void
store_inv_add(int64_t *hours, int64_t *days, int64_t *weeks,
    const int64_t *v, int64_t n)
{
	if (hours != NULL && v[0] >= 0 && v[0] < INV_EXP_HOURS)
		hours[v[0]] += n;
	if (days != NULL && v[1] >= 0 && v[1] < INV_EXP_DAYS)
		days[v[1]] += n;
	if (weeks != NULL && v[2] >= 0 && v[2] < INV_EXP_WEEKS)
		weeks[v[2]] += n;
}

void
store_inv_renewals(struct inv_summary *sum, const int64_t *first_h,
    const int64_t *first_d)
{
	int i;

	/* made - first = renewals; a first leaf is one that was made */
	for (i = 0; i < INV_RATE_HOURS; i++)
		sum->ren_hours[i] = sum->iss_hours[i] > first_h[i] ?
		    sum->iss_hours[i] - first_h[i] : 0;
	for (i = 0; i < INV_RATE_DAYS; i++)
		sum->ren_days[i] = sum->iss_days[i] > first_d[i] ?
		    sum->iss_days[i] - first_d[i] : 0;
}

#define INV_CALL(s, op, ...)						\
	do {								\
		struct store *v_ = inv_lock(s, err);			\
		int rv_;						\
									\
		if (v_ == NULL)						\
			return -1;					\
		rv_ = v_->ops->inv != NULL ?				\
		    v_->ops->inv->op(v_, __VA_ARGS__) :			\
		    error_set(err, MTLS_ERR_ARG, "this store has no "	\
		    "inventory views");					\
		inv_unlock(s);						\
		return rv_;						\
	} while (0)

int
store_inv_list(struct store *s, const struct inv_query *q,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	INV_CALL(s, list, q, cb, arg, err);
}

int
store_inv_summary(struct store *s, struct inv_summary *sum,
    struct mtls_error *err)
{
	INV_CALL(s, summary, sum, err);
}

int
store_inv_identity(struct store *s, const char *id, int limit,
    int (*cb)(void *, const struct cert_rec *), void *arg,
    struct mtls_error *err)
{
	INV_CALL(s, identity, id, limit, cb, arg, err);
}

/* ---- rotation (rotation.c) ---- */

int
store_agent_bundle(struct store *s, const char *serial, const char *replaces,
    const char *gen, int64_t not_after, struct mtls_error *err)
{
	const struct store_ops *o = s->ops;
	int rv;

	/* the delete and the insert in one transaction, as in a batch */
	io_lock(s);
	if ((rv = o->tx_begin(s, err)) == 0) {
		rv = o->tx_bundle(s, serial, replaces, gen, not_after,
		    (int64_t)time(NULL), err);
		if (o->tx_end(s, rv == 0, err) != 0)
			rv = -1;
	}
	io_unlock(s);
	return rv;
}

int
store_rotation_count(struct store *s, const char *issuer,
    const char *except_serial, const char *gen_a, const char *gen_b,
    int64_t now, int64_t out[3], struct mtls_error *err)
{
	int rv;

	io_lock(s);
	rv = s->ops->rotation_count(s, issuer, except_serial, gen_a, gen_b,
	    now, out, err);
	io_unlock(s);
	return rv;
}
