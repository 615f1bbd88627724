/*
 * ca serve's own TLS certificate: issued by this CA with the CA-server
 * extended key usage, kept in DIR/serve/, reused across restarts while it
 * is good, renewed at two thirds of its life (serve.c's renewer).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>

#include "ca/serve.h"

/* <x> is ca serve's certificate by <ca>'s previous issuer for the key of
 * <leaf>: issued by it (name, key), the CA-server EKU, valid now. */
static int
own_twin(struct ca *ca, X509 *x, X509 *leaf)
{
	int ok = profile_is_ca_server(x) && EVP_PKEY_eq(X509_get0_pubkey(x),
	    X509_get0_pubkey(leaf)) == 1 &&
	    cert_issued_by(ca->prev, x) &&
	    X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
	    X509_cmp_current_time(X509_get0_notAfter(x)) > 0;

	ERR_clear_error();
	return ok;
}

/*
 * In phase switched, what ca serve presents after its chain until retire
 * (docs/security/rotserve.md), as PEM: the cross-certificate
 * (DIR/rotation/cross.pem: the new root's name and key, signed by the old
 * root), so that a client trusting only the old root (a proxy on the old
 * bundle fetching its OCSP staple, an agent enrolling with a join token
 * made before the switch) verifies us; and while it is good the server
 * certificate the old root issued for the same key (DIR/serve/previous.pem,
 * kept at the switch), the old root's own word that this key is its CA
 * server, which such an agent's CA pin asks for. NULL otherwise.
 */
static char *
own_rotation_pem(struct ca *ca, X509 *leaf, size_t *len)
{
	STACK_OF(X509) *sk = NULL, *tw = NULL;
	struct mtls_error e;
	char p[4300], *pem = NULL;
	X509 *x;

	if (ca->rot_phase != ROT_SWITCHED || ca->prev == NULL)
		return NULL;
	snprintf(p, sizeof(p), "%s/rotation/cross.pem", ca->dir);
	if (certs_load(p, &sk, &e) != 0 || sk_X509_num(sk) != 1 ||
	    (x = sk_X509_value(sk, 0)) == NULL ||
	    X509_NAME_cmp(X509_get_subject_name(x),
	    X509_get_subject_name(ca->cert)) != 0 ||
	    EVP_PKEY_eq(X509_get0_pubkey(x), X509_get0_pubkey(ca->cert)) != 1 ||
	    !cert_issued_by(ca->prev, x))
		goto out;
	snprintf(p, sizeof(p), "%s/serve/previous.pem", ca->dir);
	if (leaf != NULL && access(p, F_OK) == 0 && certs_load(p, &tw,
	    &e) == 0 && sk_X509_num(tw) >= 1 && own_twin(ca,
	    sk_X509_value(tw, 0), leaf) && X509_up_ref(sk_X509_value(tw, 0)) &&
	    !sk_X509_push(sk, sk_X509_value(tw, 0)))
		X509_free(sk_X509_value(tw, 0));
	if (certs_pem(sk, &pem, len) != 0)
		pem = NULL;
 out:
	sk_X509_pop_free(sk, X509_free);
	sk_X509_pop_free(tw, X509_free);
	ERR_clear_error();
	return pem;
}

/* The identity of <pem_path> and <key_path> (whose leaf is <cert>), with
 * what a rotation adds after the chain (own_rotation_pem). */
static int
own_identity(struct server *s, struct mtls_config *cfg, const char *pem_path,
    const char *key_path, X509 *cert)
{
	struct mtls_error e;
	uint8_t *c = NULL, *k = NULL, *both;
	size_t cl = 0, kl = 0, xl = 0;
	char *x = own_rotation_pem(s->ca, cert, &xl);
	int rv = -1;

	if (x == NULL)
		return mtls_config_set_identity_file(cfg, pem_path, key_path);
	if (fs_read(pem_path, 1 << 20, &c, &cl, &e) == 0 &&
	    fs_read(key_path, 1 << 20, &k, &kl, &e) == 0 &&
	    (both = realloc(c, cl + xl)) != NULL) {
		c = both;
		memcpy(c + cl, x, xl);
		rv = mtls_config_set_identity_mem(cfg, c, cl + xl, k, kl);
	} else
		rv = mtls_config_set_identity_file(cfg, pem_path, key_path);
	if (k != NULL)
		OPENSSL_cleanse(k, kl);
	free(k);
	free(c);
	free(x);
	return rv;
}

/* Makes the TLS context serve <pem_path>/<key_path>, whose leaf is
 * <cert>. */
static int
own_install(struct server *s, const char *pem_path, const char *key_path,
    X509 *cert, struct mtls_error *err)
{
	struct mtls_config *cfg;
	int rv = -1;

	if ((cfg = mtls_config_new()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (own_identity(s, cfg, pem_path, key_path, cert) != 0 ||
	    mtls_config_set_trust_file(cfg, s->o->bundle_path) != 0 ||
	    mtls_config_set_allow_any(cfg) != 0 ||
	    mtls_config_set_peer_optional(cfg) != 0 ||
	    mtls_config_set_purpose(cfg, MTLS_PURPOSE_CLIENT) != 0) {
		error_set(err, MTLS_ERR_ARG, "%s", mtls_config_error(cfg));
		goto out;
	}
	pthread_mutex_lock(&s->tls_mu);
	rv = mtls_configure(s->tls, cfg);
	if (rv != 0)
		error_set(err, MTLS_ERR_ARG, "%s", mtls_error(s->tls));
	pthread_mutex_unlock(&s->tls_mu);
	if (rv == 0) {
		serial_hex(X509_get0_serialNumber(cert), s->own_serial,
		    sizeof(s->own_serial));
		s->own_not_before = asn1_time_unix(X509_get0_notBefore(cert));
		s->own_not_after = asn1_time_unix(X509_get0_notAfter(cert));
	}
 out:
	mtls_config_free(cfg);
	return rv;
}

/* Whether <leaf> names exactly <want> (a subject CN aside: ours copies the
 * first DNS name). */
static int
same_names(X509 *leaf, const struct ids *want)
{
	struct mtls_error e;
	struct ids got;
	size_t i, j, n = 0;
	int same = 1;

	if (ids_from_cert(leaf, &got, &e) != 0)
		return 0;
	for (i = 0; i < got.n && same; i++) {
		if (strncmp(got.v[i], "cn:", 3) == 0)
			continue;
		n++;
		for (j = 0; j < want->n; j++)
			if (strcmp(got.v[i], want->v[j]) == 0)
				break;
		same = j < want->n;
	}
	ids_free(&got);
	return same && n == want->n;
}

/*
 * At start: the certificate a previous run left in DIR/serve/, when it can
 * serve on (issue 18: 17 restarts made 17 inventory rows). 1 and *out (the
 * leaf) when it was issued by this CA's current key, is recorded and not
 * revoked, carries the CA-server EKU and exactly our names, matches its
 * key, is no longer-lived than --server-ttl asks, and has more than a third
 * of its life left (the renewer would replace it at two thirds anyway);
 * 0 otherwise, with the reason in <why>; 2 when there is none yet; 3 and
 * *out when all but the inventory's word holds and the store cannot be
 * read (<down> says why): served until the store answers, then checked
 * again (serve_own_recheck).
 */
static int
own_reusable(struct server *s, const char *pem_path, const char *key_path,
    X509 **out, char *why, size_t why_len, struct mtls_error *down)
{
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	struct mtls_error e;
	struct cert_rec rec;
	X509 *leaf;
	int64_t nb, na, now = (int64_t)time(NULL);
	int rc, ok = 0;

	*out = NULL;
	if (access(pem_path, F_OK) != 0 || access(key_path, F_OK) != 0)
		return 2;
	if (certs_load(pem_path, &chain, &e) != 0 ||
	    key_load(key_path, NULL, &key, &e) != 0) {
		snprintf(why, why_len, "%s", e.msg);
		goto out;
	}
	leaf = sk_X509_value(chain, 0);
	nb = asn1_time_unix(X509_get0_notBefore(leaf));
	na = asn1_time_unix(X509_get0_notAfter(leaf));
	pthread_mutex_lock(&s->mu);
	rc = ca_issued(s->ca, leaf, &rec, why, why_len, &e);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0 && ca_fault_of(&e) == CA_FAULT_STORAGE) {
		error_copy(down, &e);
		rc = 0;		/* the other checks still hold */
		rec.revoked = 0;
	}
	if (rc < 0)
		snprintf(why, why_len, "%s", e.msg);
	else if (rc > 0)
		;	/* why says it */
	else if (rec.revoked)
		snprintf(why, why_len, "revoked");
	else if (!profile_is_ca_server(leaf))
		snprintf(why, why_len, "no CA-server extended key usage");
	else if (!same_names(leaf, &s->o->names))
		snprintf(why, why_len, "other names than --dns/--ip ask");
	else if (X509_check_private_key(leaf, key) != 1)
		snprintf(why, why_len, "the key does not match");
	else if (na - nb > s->o->server_ttl + 600)
		snprintf(why, why_len, "longer-lived than --server-ttl");
	else if (now < nb || now >= nb + (na - nb) * 2 / 3)
		snprintf(why, why_len, "a third of its life or less left");
	else {
		*out = X509_dup(leaf);
		ok = *out == NULL ? 0 : down->code != MTLS_ERR_NONE ? 3 : 1;
	}
	if (ok == 0 && down->code != MTLS_ERR_NONE)
		snprintf(why, why_len, "%s", down->msg);
 out:
	ERR_clear_error();
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	return ok;
}

/*
 * A rotation's switch: the certificate in <pem_path> was issued by the
 * issuer just replaced. Its key is kept for the new certificate, and it
 * becomes DIR/serve/previous.pem (own_rotation_pem presents it while it
 * is good): 0 and *key. -1 otherwise (a new key is made).
 */
static int
own_keep_key(struct server *s, const char *pem_path, const char *key_path,
    EVP_PKEY **key)
{
	STACK_OF(X509) *chain = NULL;
	struct mtls_error e;
	uint8_t *pem = NULL;
	size_t len = 0;
	char p[4300];
	int rv = -1;

	*key = NULL;
	if (s->ca->rot_phase != ROT_SWITCHED || s->ca->prev == NULL ||
	    certs_load(pem_path, &chain, &e) != 0 ||
	    key_load(key_path, NULL, key, &e) != 0)
		goto out;
	if (!own_twin(s->ca, sk_X509_value(chain, 0), sk_X509_value(chain, 0)) ||
	    X509_check_private_key(sk_X509_value(chain, 0), *key) != 1)
		goto out;
	snprintf(p, sizeof(p), "%s/serve/previous.pem", s->ca->dir);
	if (fs_read(pem_path, 1 << 20, &pem, &len, &e) == 0 &&
	    fs_write_atomic(p, pem, len, 0644, 1, &e) == 0)
		rv = 0;
 out:
	if (rv != 0) {
		EVP_PKEY_free(*key);
		*key = NULL;
	}
	free(pem);
	sk_X509_pop_free(chain, X509_free);
	ERR_clear_error();
	return rv;
}

int
serve_own_identity(struct server *s, int reuse, struct mtls_error *err)
{
	char dir[4200], pem_path[4300], key_path[4300], why[300];
	struct mtls_error down;
	struct ca_result res;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char *pem = NULL;
	json_t *lg;
	size_t len;
	int r, rv = -1;

	snprintf(dir, sizeof(dir), "%s/serve", s->ca->dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return error_set_errno(err, MTLS_ERR_IO, "%s", dir);
	snprintf(pem_path, sizeof(pem_path), "%s/server.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/server.key", dir);
	if (reuse) {
		why[0] = '\0';
		error_clear(&down);
		r = own_reusable(s, pem_path, key_path, &cert, why,
		    sizeof(why), &down);
		if ((r == 1 || r == 3) && own_install(s, pem_path, key_path,
		    cert, err) == 0) {
			serial_hex(X509_get0_serialNumber(cert), res.serial,
			    sizeof(res.serial));
			lg = json_object();
			json_object_set_new(lg, "serial",
			    esc_jstr(res.serial));
			json_object_set_new(lg, "not_after",
			    json_integer(s->own_not_after));
			/* the store is down (ca serve started before it):
			 * served, not ready, checked when it answers */
			if (r == 3)
				json_object_set_new(lg, "unchecked",
				    esc_jstr(down.msg));
			log_emit(r == 3 ? "warn" : "info",
			    "server_cert_reused", lg);
			json_decref(lg);
			X509_free(cert);
			s->own_unchecked = r == 3;
			if (r == 3)
				serve_set_ready(s, &down);
			return 0;
		}
		X509_free(cert);
		cert = NULL;
		if (r == 1 || r == 3)	/* it would do, but could not be
					 * installed */
			snprintf(why, sizeof(why), "%s", err->msg);
		if (r != 2) {
			lg = json_object();
			json_object_set_new(lg, "why", esc_jstr(why));
			log_emit("info", "server_cert_not_reused", lg);
			json_decref(lg);
		}
	}
	if (own_keep_key(s, pem_path, key_path, &key) != 0 &&
	    key_generate(KEY_EC_P256, &key, err) != 0)
		return -1;
	/* no lock: issuance only reads the prepared CA (serve_api.c) */
	rv = ca_issue_server(s->ca, &s->o->names, s->o->server_ttl, key, &cert,
	    &res, err);
	if (rv != 0 && reuse && s->own_not_after == 0 &&
	    ca_fault_of(err) == CA_FAULT_STORAGE) {
		/* a first start, or nothing to reuse: there is no certificate
		 * to serve with until the store records one */
		snprintf(why, sizeof(why), "%s", err->msg);
		error_set(err, MTLS_ERR_IO, "%s/server.pem: nothing to reuse, "
		    "and no certificate can be issued while the store is "
		    "down (start ca serve once with its store up): %.200s",
		    dir, why);
		err->sys = EIO;
		err->kind = STORE_KIND_IO;
	}
	if (rv == 0)
		rv = ca_chain_pem(s->ca, cert, &pem, &len, err);
	if (rv != 0)
		goto out;
	rv = -1;
	if (key_write(key_path, key, NULL, 1, err) != 0 ||
	    fs_write_atomic(pem_path, pem, len, 0644, 1, err) != 0)
		goto out;
	rv = own_install(s, pem_path, key_path, cert, err);
	if (rv == 0)
		s->own_unchecked = 0;
 out:
	if (pem)
		OPENSSL_cleanse(pem, len);
	free(pem);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rv;
}

/*
 * ca serve started with its store down on the certificate of an earlier
 * run, unchecked against the inventory: once the store answers (ready),
 * the start's check runs again, and a certificate that is not recorded,
 * or revoked, is replaced at once (renewer thread).
 */
void
serve_own_recheck(struct server *s)
{
	struct mtls_error err;
	json_t *o;
	int ready;

	if (!s->own_unchecked)
		return;
	pthread_mutex_lock(&s->ready_mu);
	ready = s->not_ready[0] == '\0';
	pthread_mutex_unlock(&s->ready_mu);
	if (!ready)
		return;
	error_clear(&err);
	if (serve_own_identity(s, 1, &err) == 0)
		return;		/* own_unchecked says whether it could */
	o = json_object();
	json_object_set_new(o, "error", esc_jstr(err.msg));
	log_emit("error", "server_cert_renew_failed", o);
	json_decref(o);
	if (serve_storage_fault(&err))
		serve_set_ready(s, &err);
}
