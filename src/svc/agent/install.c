/*
 * Installing an answer: what it must pass first (issued_ok: the key, the
 * CA that served, the identities, our clock, a chain to the trust as it
 * is), then bundle.pem, the key (with its chain) and the certificate
 * replaced in that order, the next renewal scheduled and --on-rotate run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "agent/agent_local.h"

/* A successful renewal is followed by the next one no sooner than a sixth
 * of the certificate's life as issued, within [1 s, 30 s]: with our clock
 * running just short of the certificate's end, "two thirds of what is
 * left" would otherwise be a second or less, again and again. */
#define FLOOR_MAX	30

static void
run_hook(struct agent *a)
{
	pid_t pid;
	int st = 0;
	json_t *o;

	if (a->o->on_rotate == NULL)
		return;
	if ((pid = fork()) == 0) {
		/* what to reload: the key is a file, or a token's URI
		 * (no PIN in it) when there is no key file */
		if (setenv("MTLS_CERT", a->cur_cert, 1) != 0 ||
		    setenv("MTLS_KEY", a->cur_key, 1) != 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", a->o->on_rotate, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	o = json_object();
	json_object_set_new(o, "command", esc_jstr(a->o->on_rotate));
	json_object_set_new(o, "exit", json_integer(pid < 0 ? -1 :
	    WIFEXITED(st) ? WEXITSTATUS(st) : 128));
	log_emit(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "info" :
	    "warn", "on_rotate", o);
	json_decref(o);
}

/* A refused answer: one log line with the reason's taxonomy name. */
static int
refused(struct agent *a, const char *how, const char *reason, X509 *leaf,
    struct mtls_error *err)
{
	json_t *o = json_object();
	char serial[48] = "";

	if (leaf != NULL)
		serial_hex(X509_get0_serialNumber(leaf), serial, sizeof(serial));
	json_object_set_new(o, "how", esc_jstr(how));
	json_object_set_new(o, "reason", esc_jstr(reason));
	json_object_set_new(o, "serial", esc_jstr(serial));
	json_object_set_new(o, "error", esc_jstr(err->msg));
	json_object_set_new(o, "out_dir", esc_jstr(a->o->out_dir));
	log_emit("error", "install_refused", o);
	json_decref(o);
	return -1;
}

/* <t> as 2006-01-02T15:04:05Z in <out>. */
static void
utc(int64_t t, char out[24])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, 24, "%lld", (long long)t);
}

/* The identities that must survive a renewal: every one but a CN. */
static int
same_ids(const struct ids *want, const struct ids *got)
{
	size_t i, j, nw = 0, ng = 0;

	for (i = 0; i < want->n; i++) {
		if (strncmp(want->v[i], "cn:", 3) == 0)
			continue;
		nw++;
		for (j = 0; j < got->n; j++)
			if (strcmp(want->v[i], got->v[j]) == 0)
				break;
		if (j == got->n)
			return 0;
	}
	for (j = 0; j < got->n; j++)
		ng += strncmp(got->v[j], "cn:", 3) != 0;
	return nw == ng && nw > 0;
}

/*
 * The clock_skew line, once per episode: <skew> s (> 0: our clock is ahead
 * of the CA's), measured from <source>; <installed>: the certificate was
 * installed all the same (valid here, the Date header says otherwise).
 */
void
install_skew_line(struct agent *a, int64_t skew, const char *source,
    int installed)
{
	json_t *o;

	if (a->skew_logged)
		return;
	a->skew_logged = 1;
	o = json_object();
	json_object_set_new(o, "skew_s", json_integer(skew));
	json_object_set_new(o, "source", esc_jstr(source));
	json_object_set_new(o, "ca_url", esc_jstr(a->o->ca_url));
	json_object_set_new(o, "installed", json_boolean(installed));
	json_object_set_new(o, "fix", json_string("sync this machine's clock "
	    "(timedatectl set-ntp true, or chrony/ntpd)"));
	log_emit(installed ? "warn" : "error", "clock_skew", o);
	json_decref(o);
}

/*
 * Our clock against the certificate just issued: one clock_skew line per
 * episode (the skew measured from the answer's Date header, else the least
 * the certificate proves), err set; nothing is installed. Skew > 0: this
 * clock is ahead of the CA's.
 */
static int
clock_skew(struct agent *a, X509 *leaf, int64_t now, int enroll,
    struct mtls_error *err)
{
	int64_t nb = asn1_time_unix(X509_get0_notBefore(leaf));
	int64_t na = asn1_time_unix(X509_get0_notAfter(leaf));
	int64_t skew = a->date > 0 ? a->date_at - a->date : na <= now ?
	    now - na : now - nb;
	const char *src = a->date > 0 ? "date_header" : "certificate";

	a->skewed = SKEW_ISSUED;
	install_skew_line(a, skew, src, 0);
	return error_fail(err, na <= now ? MTLS_FAIL_CERT_EXPIRED :
	    MTLS_FAIL_CERT_NOT_YET_VALID, "clock skew: this clock is %s%lld s "
	    "%s the CA's (%s): the new certificate is %s here; not installed%s;"
	    " sync the clock (timedatectl set-ntp true, or chrony)",
	    a->date > 0 ? "" : "at least ", (long long)(skew < 0 ? -skew :
	    skew), skew < 0 ? "behind" : "ahead of", src, na <= now ?
	    "already expired" : "not yet valid", enroll ? " (the token is "
	    "spent: create a new one)" : "");
}

/*
 * Whether the CA's answer <chain> may be installed with <key> (issue 18):
 * the key matches; the CA that served the answer (a->srv_ca) issued it,
 * and it ends no later than that CA (a leaf must not outlive its issuer);
 * the identities (URI, DNS, IP SANs) are those of the
 * certificate being renewed (an enrollment: the token decides, any but
 * none); it is valid by our clock (else clock skew); it verifies, for
 * client and server use, against the trust of <trust> as it is now (before
 * any bundle change), with the answer's intermediates and the
 * cross-certificates of <bundle_pem>, which passed bundle_check.
 */
static int
issued_ok(struct agent *a, EVP_PKEY *key, STACK_OF(X509) *chain,
    const char *bundle_pem, enum trust trust, const char *how,
    struct mtls_error *err)
{
	X509 *leaf = sk_X509_value(chain, 0);
	STACK_OF(X509) *cur = NULL, *fresh = NULL, *certs = NULL;
	struct mtls_config *cfg = NULL;
	struct verify_out vo;
	struct ids want, got;
	X509_STORE *st = NULL;
	int64_t now = (int64_t)time(NULL);
	const char *reason = NULL;
	int i, rv = -1;

	memset(&want, 0, sizeof(want));
	memset(&got, 0, sizeof(got));
	memset(&vo, 0, sizeof(vo));
	if (X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		error_set(err, MTLS_ERR_VERIFY, "the CA returned a certificate "
		    "for another key; not installed");
		reason = "key_mismatch";
		goto out;
	}
	if (a->srv_ca == NULL || !cert_issued_by(a->srv_ca, leaf)) {
		char is[100] = "", sv[100] = "(none)";

		X509_NAME_oneline(X509_get_issuer_name(leaf), is, sizeof(is));
		if (a->srv_ca != NULL)
			X509_NAME_oneline(X509_get_subject_name(a->srv_ca), sv,
			    sizeof(sv));
		error_fail(err, MTLS_FAIL_UNKNOWN_CA, "the CA answered a "
		    "certificate issued by %.70s, not by the CA that serves "
		    "(%.70s): not installed", is, sv);
		reason = "issuer_mismatch";
		goto out;
	}
	if (asn1_time_unix(X509_get0_notAfter(leaf)) >
	    asn1_time_unix(X509_get0_notAfter(a->srv_ca))) {
		char le[24], ce[24];

		utc(asn1_time_unix(X509_get0_notAfter(leaf)), le);
		utc(asn1_time_unix(X509_get0_notAfter(a->srv_ca)), ce);
		error_fail(err, MTLS_FAIL_UNKNOWN_CA, "the CA answered a "
		    "certificate valid until %s, after its issuer's end (%s): "
		    "a certificate must not outlive its CA; not installed", le,
		    ce);
		reason = "outlives_issuer";
		goto out;
	}
	if (trust == TRUST_BUNDLE && (a->renewing == NULL ||
	    ids_from_cert(a->renewing, &want, err) != 0)) {
		if (a->renewing == NULL)
			error_set(err, MTLS_ERR_ARG, "internal: no certificate "
			    "being renewed");
		goto out;
	}
	if (ids_from_cert(leaf, &got, err) != 0 || (trust == TRUST_BUNDLE ?
	    !same_ids(&want, &got) : !same_ids(&got, &got))) {
		error_fail(err, MTLS_FAIL_IDENTITY_MISMATCH, "the CA answered "
		    "a certificate for %.80s; %s %.80s: not installed",
		    got.n ? got.v[0] : "no identity", trust == TRUST_BUNDLE ?
		    "this agent renews" : "an enrollment needs an identity",
		    want.n ? want.v[0] : "");
		reason = "identity_mismatch";
		goto out;
	}
	if (asn1_time_unix(X509_get0_notBefore(leaf)) > now + SKEW_TOLERANCE ||
	    asn1_time_unix(X509_get0_notAfter(leaf)) <= now) {
		clock_skew(a, leaf, now, trust == TRUST_PIN, err);
		reason = "clock_skew";
		goto out;
	}
	/* a store of exactly what we trust now, a policy of any peer */
	if (bundle_current(a, trust, &cur, err) != 0 ||
	    certs_parse((const uint8_t *)bundle_pem, strlen(bundle_pem),
	    "the CA's bundle", &fresh, err) != 0)
		goto out;
	if ((st = X509_STORE_new()) == NULL || (certs = sk_X509_dup(chain)) ==
	    NULL || (cfg = mtls_config_new()) == NULL ||
	    mtls_config_set_allow_any(cfg) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < sk_X509_num(cur); i++)
		if (!X509_STORE_add_cert(st, sk_X509_value(cur, i)))
			ERR_clear_error();	/* a duplicate */
	for (i = 0; i < sk_X509_num(fresh); i++)
		if (!cert_is_self_signed(sk_X509_value(fresh, i)) &&
		    !sk_X509_push(certs, sk_X509_value(fresh, i))) {
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto out;
		}
	config_freeze(cfg);
	if (verify_chain(cfg, st, certs, MTLS_PURPOSE_CLIENT, &vo, err) != 0) {
		reason = err->fail ? mtls_fail_name(err->fail) : "unknown_ca";
		goto out;
	}
	verify_out_free(&vo);
	if (verify_chain(cfg, st, certs, MTLS_PURPOSE_SERVER, &vo, err) != 0) {
		reason = err->fail ? mtls_fail_name(err->fail) : "unknown_ca";
		goto out;
	}
	rv = 0;
 out:
	if (rv != 0 && reason != NULL)
		refused(a, how, reason, leaf, err);
	verify_out_free(&vo);
	ids_free(&want);
	ids_free(&got);
	X509_STORE_free(st);
	mtls_config_free(cfg);
	sk_X509_free(certs);
	sk_X509_pop_free(cur, X509_free);
	sk_X509_pop_free(fresh, X509_free);
	return rv;
}

/* The next renewal after a successful one: two thirds of what is left, but
 * not sooner than FLOOR_MAX's rule; a Date header within SKEW_TOLERANCE
 * ends a skew episode, one beyond it (the certificate still valid here)
 * is worth one warning. */
static void
schedule_after_issue(struct agent *a, X509 *leaf)
{
	int64_t now = (int64_t)time(NULL);
	int64_t from = a->date > 0 ? a->date : asn1_time_unix(
	    X509_get0_notBefore(leaf));
	int64_t floor = (a->not_after - from) / 6, skew;

	floor = floor < 1 ? 1 : floor > FLOOR_MAX ? FLOOR_MAX : floor;
	agent_schedule(a);
	if (a->renew_at < now + floor)
		a->renew_at = now + floor;
	skew = a->date > 0 ? a->date_at - a->date : 0;
	if (skew <= SKEW_TOLERANCE && skew >= -SKEW_TOLERANCE)
		a->skew_logged = 0;	/* the episode, if any, is over */
	else
		install_skew_line(a, skew, "date_header", 1);
}

/*
 * svid.key (0600): <key> in PEM, then its certificate chain <pem>, one
 * file replaced by one rename. Two files replaced by two renames cannot
 * keep a reader who opens one, then the other, from taking a key and a
 * certificate of two renewals (it may open the first before a renewal and
 * the second after it, whatever the order of the renames); one file read
 * once can: its key and its chain are always a pair (docs/interop.md).
 * Every PEM reader takes the key from it (the certificates are skipped).
 * Built in secure memory, cleansed on free.
 */
static int
key_chain_write(const char *path, EVP_PKEY *key, const char *pem, size_t pl,
    struct mtls_error *err)
{
	BIO *bio;
	BUF_MEM *mem = NULL;
	int rv = -1;

	if ((bio = BIO_new(BIO_s_secmem())) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
	if (!PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) ||
	    BIO_write(bio, pem, (int)pl) != (int)pl) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "%s: cannot encode key",
		    path);
		goto err;
	}
	BIO_get_mem_ptr(bio, &mem);
	rv = fs_write_atomic(path, mem->data, mem->length, 0600, 1, err);
 err:
	BIO_free(bio);
	return rv;
}

/* Checks (issued_ok) and installs an issued chain for <key>: then
 * bundle.pem (<bundle_pem>, our PEM of a verified answer that passed
 * bundle_check), svid.key (the key and the chain: key_chain_write) and
 * svid.pem (the chain: our PEM of the certificates parsed from
 * <chain_pem>, never its bytes) are replaced atomically in that order, so
 * a watcher that sees the new certificate has its roots and key.
 * A refused answer writes nothing. */
int
install_answer(struct agent *a, EVP_PKEY *key, const char *chain_pem,
    const char *bundle_pem, enum trust trust, const char *how,
    struct mtls_error *err)
{
	STACK_OF(X509) *chain = NULL;
	X509 *leaf;
	json_t *o;
	char *pem = NULL;
	size_t pl = 0;
	int rv = -1;

	if (certs_parse((const uint8_t *)chain_pem, strlen(chain_pem),
	    "the issued certificate", &chain, err) != 0)
		return -1;
	leaf = sk_X509_value(chain, 0);
	if (issued_ok(a, key, chain, bundle_pem, trust, how, err) != 0)
		goto out;
	if (certs_pem(chain, &pem, &pl) != 0) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (a->o->layout_k8s) {
		const struct kfile f[] = {
			{ "ca.crt", bundle_pem, strlen(bundle_pem), NULL },
			{ "tls.key", NULL, 0, key },
			{ "tls.crt", pem, pl, NULL },
		};

		if (files_k8s_swap(a, f, 3, 0, err) != 0)
			goto out;
	} else if (fs_write_atomic(a->bundle, bundle_pem, strlen(bundle_pem),
	    0644, 1, err) != 0 ||
	    (a->tkey == NULL &&	/* a token key stays in its token */
	    key_chain_write(a->svid_key, key, pem, pl, err) != 0) ||
	    fs_write_atomic(a->svid, pem, pl, 0644, 1, err) != 0)
		goto out;
	/* a token's new key is current from now on (its URI's id= in
	 * svid_key), the one it replaces deleted from the token */
	if (a->tkey != NULL && key != a->tkey)
		tokenkey_installed(a, key);
	a->cur_cert = a->svid;
	a->cur_key = a->svid_key;
	a->not_after = asn1_time_unix(X509_get0_notAfter(leaf));
	serial_hex(X509_get0_serialNumber(leaf), a->serial, sizeof(a->serial));
	schedule_after_issue(a, leaf);
	o = json_object();
	json_object_set_new(o, "serial", esc_jstr(a->serial));
	json_object_set_new(o, "not_after", json_integer(a->not_after));
	json_object_set_new(o, "renew_at", json_integer(a->renew_at));
	json_object_set_new(o, "out_dir", esc_jstr(a->o->out_dir));
	log_emit("info", how, o);
	json_decref(o);
	run_hook(a);
	rv = 0;
 out:
	free(pem);
	sk_X509_pop_free(chain, X509_free);
	return rv;
}
