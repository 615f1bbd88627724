/*
 * Config generations: the main thread builds and checks a complete new
 * config for a listener (or the admin endpoint's mTLS) from its files and
 * what the fetcher admitted, and swaps one pointer under proxy mu; the
 * workers take it at their next event (an eventfd wakes them) for new
 * connections, while open ones keep the state they started with. A bad
 * set is logged (reload failed) and the old one keeps serving.
 *
 * Triggers: SIGHUP, the files' folders (inotify; only events naming a
 * watched file or a Kubernetes "..data" entry count; debounced 200 ms),
 * and a changed fetched CRL or staple. The main thread's loop here also
 * rotates ticket keys and trims the heap after bursts; it returns at
 * SIGTERM/SIGINT.
 */
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "proxy/proxy_int.h"
#include "proxy/x509memo.h"
#include "net/notify.h"

/*
 * Our certificate does not chain to --ca. --ca is the trust for peers, not
 * for us: a publicly issued server certificate with a private client CA is
 * a common setup, so this is a warning (<warn>) as long as the leaf is
 * within its validity window; outside it we refuse to start as before.
 */
static int
own_window_ok(const struct proxy_listener *l, const struct mtls_config *cfg,
    const char *why, char *serial, size_t slen, char *warn, size_t wlen,
    struct mtls_error *err)
{
	X509 *leaf = config_leaf(cfg);

	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0)
		return error_fail(err, MTLS_FAIL_CERT_EXPIRED, "%s: own "
		    "certificate has expired", l->cert);
	if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
		return error_fail(err, MTLS_FAIL_CERT_NOT_YET_VALID, "%s: own "
		    "certificate is not valid yet: it starts in %lld s (clock "
		    "skew? sync this machine's clock)", l->cert, (long long)
		    (asn1_time_unix(X509_get0_notBefore(leaf)) - time(NULL)));
	serial_hex(X509_get0_serialNumber(leaf), serial, slen);
	snprintf(warn, wlen, "%s does not chain to --ca %s (%s; --ca is the "
	    "trust for peers): fine for a public server certificate with a "
	    "private client CA; otherwise peers will refuse it: send the "
	    "intermediates in %s or issue it from a CA in --ca", l->cert,
	    l->ca, why, l->cert);
	return 0;
}

/*
 * Builds and checks a complete config from the files: the key matches the
 * certificate, the certificate is valid now and chains to the bundle (in
 * mTLS both sides trust the same CAs; one that does not is only a warning
 * in <warn>, see own_window_ok), CRLs parse and are signed by their CA
 * (crl_admit has checked them before). Nothing is swapped unless all of
 * this passes.
 */
static struct mtls_config *
config_build(const struct proxy_listener *l, const struct crlsrc *fcrl,
    const struct crlsrc *fbundle,
    const uint8_t *crl, size_t crl_len, const uint8_t *staple,
    size_t staple_len, char *serial, size_t slen, char *warn, size_t wlen,
    struct mtls_error *err)
{
	struct mtls_config *cfg = mtls_config_new();
	struct mtls *v = NULL;
	size_t i;

	if (cfg == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		return NULL;
	}
	if (mtls_config_set_identity_file(cfg, l->cert, l->key) != 0 ||
	    (l->n_ca == 0 && mtls_config_set_trust_file(cfg, l->ca) != 0) ||
	    (l->min_tls && mtls_config_set_min_tls(cfg, l->min_tls) != 0))
		goto cfgerr;
	/* ca = BUNDLE, TD:BUNDLE...: each federated trust domain's roots
	 * vouch for that domain's SPIFFE IDs only (libmtls checks it) */
	for (i = 0; i < l->n_ca; i++)
		if ((ca_is_url(l->ca_path[i]) ?
		    mtls_config_add_trust_domain_mem(cfg, l->ca_td[i],
		    fbundle[i].der, fbundle[i].len) :
		    l->ca_td[i][0] == '\0' ?
		    mtls_config_set_trust_file(cfg, l->ca_path[i]) :
		    mtls_config_add_trust_domain_file(cfg, l->ca_td[i],
		    l->ca_path[i])) != 0)
			goto cfgerr;
	/* the CRLs admitted from the files (crl_files_admit), not the files
	 * as they are now: a rejected new file leaves the previous CRL */
	for (i = 0; i < l->n_crls; i++)
		if (mtls_config_add_crl_mem(cfg, fcrl[i].der, fcrl[i].len,
		    l->crls[i]) != 0)
			goto cfgerr;
	if (crl != NULL && mtls_config_add_crl_mem(cfg, crl, crl_len,
	    l->crl_url) != 0)
		goto cfgerr;
	/* http mode: the handshake takes any certificate that chains to the
	 * bundle (none at all when a route is public); routes authorize */
	for (i = 0; l->http && i < l->n_routes; i++)
		if (l->routes[i]->optional &&
		    mtls_config_set_peer_optional(cfg) != 0)
			goto cfgerr;
	if (l->http && (mtls_config_set_allow_any(cfg) != 0 ||
	    mtls_config_set_alpn(cfg, "http/1.1") != 0))
		goto cfgerr;
	for (i = 0; !l->http && i < l->n_allow; i++)
		if (mtls_config_add_allow(cfg, l->allow[i]) != 0)
			goto cfgerr;
	for (i = 0; i < l->n_expect; i++)
		if (mtls_config_add_expect(cfg, l->expect[i]) != 0)
			goto cfgerr;
	if (l->allow_any && mtls_config_set_allow_any(cfg) != 0)
		goto cfgerr;
	if (l->ticket_key_file != NULL &&
	    mtls_config_set_ticket_key_file(cfg, l->ticket_key_file) != 0)
		goto cfgerr;
	if (l->outbound && l->require_staple &&
	    mtls_config_set_require_staple(cfg) != 0)
		goto cfgerr;
	/* our own chain, checked by a plain verifier on the same bundle */
	{
		struct mtls_config *own = mtls_config_new();
		struct verify_out out;
		int r, elsewhere;

		if (own == NULL || (v = mtls_new()) == NULL) {
			mtls_config_free(own);
			error_set(err, MTLS_ERR_NOMEM, "out of memory");
			goto err;
		}
		config_borrow_trust(own, config_trust(cfg));
		r = mtls_configure(v, own);
		config_borrow_trust(own, NULL);
		if (r == 0) {
			r = ctx_verify_chain(v, config_chain(cfg),
			    MTLS_PURPOSE_ANY, &out);
			if (out.serial[0])
				snprintf(serial, slen, "%s", out.serial);
			verify_out_free(&out);
		}
		/* a staple fetched for the previous certificate is dropped
		 * here; the fetcher gets one for this one */
		if (r == 0 && staple != NULL && !l->outbound &&
		    ocsp_matches(staple, staple_len, config_leaf(cfg),
		    config_chain(cfg), ctx_store(v)) &&
		    mtls_config_set_ocsp_staple(cfg, staple, staple_len) != 0) {
			mtls_config_free(own);
			goto cfgerr;
		}
		mtls_config_free(own);
		/* not ours to judge: --ca is the peers' trust */
		elsewhere = r != 0 && (mtls_fail_code(v) ==
		    MTLS_FAIL_UNKNOWN_CA || mtls_fail_code(v) ==
		    MTLS_FAIL_CHAIN_INCOMPLETE);
		if (elsewhere && own_window_ok(l, cfg, mtls_fail_name(
		    mtls_fail_code(v)), serial, slen, warn, wlen, err) != 0)
			goto err;
		if (r != 0 && !elsewhere) {
			error_set(err, MTLS_ERR_VERIFY, "%s: own certificate "
			    "does not verify against %s: %s: %s", l->cert,
			    l->ca, mtls_fail_name(mtls_fail_code(v)),
			    mtls_error(v));
			goto err;
		}
	}
	mtls_free(v);
	config_freeze(cfg);
	return cfg;
 cfgerr:
	error_copy(err, config_error(cfg));
 err:
	mtls_free(v);
	mtls_config_free(cfg);
	return NULL;
}


/* The files a listener is built from. */
static size_t
listener_files(const struct proxy_listener *l, const char **files, size_t max)
{
	size_t n = 0, i;

	files[n++] = l->cert;
	/* a key in a token: its PIN file (a reload checks a new PIN) */
	files[n++] = keystore_pin_file(l->key) != NULL ?
	    keystore_pin_file(l->key) : l->key;
	files[n++] = l->ca;
	for (i = 0; i < l->n_ca && n < max - 1; i++)
		if (l->ca_path[i] != l->ca && !ca_is_url(l->ca_path[i]))
			files[n++] = l->ca_path[i];
	for (i = 0; i < l->n_crls && n < max - 1; i++)
		files[n++] = l->crls[i];
	if (l->ticket_key_file != NULL)
		files[n++] = l->ticket_key_file;
	return n;
}

/* SHA-256 over the listener's files as they are now (a reload that changes
 * nothing keeps the running config, and so its sessions). */
static void
files_hash(const struct proxy_listener *l, uint8_t out[32])
{
	const char *files[64];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	struct mtls_error e;
	unsigned int n;
	uint8_t *buf;
	size_t len, i, nf = listener_files(l, files, 64);

	memset(out, 0, 32);
	if (md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return;
	}
	for (i = 0; i < nf; i++) {
		struct stat st;

		if (i == 1 && keystore_is_uri(l->key)) {
			/* the PIN file's identity, never a digest of the PIN */
			if (stat(files[i], &st) == 0) {
				EVP_DigestUpdate(md, &st.st_ino, sizeof(st.st_ino));
				EVP_DigestUpdate(md, &st.st_size,
				    sizeof(st.st_size));
				EVP_DigestUpdate(md, &st.st_mtim,
				    sizeof(st.st_mtim));
				EVP_DigestUpdate(md, &st.st_ctim,
				    sizeof(st.st_ctim));
			}
			continue;
		}
		if (fs_read(files[i], MTLS_MAX_FILE, &buf, &len, &e) != 0) {
			EVP_DigestUpdate(md, "missing", 7);
			continue;
		}
		EVP_DigestUpdate(md, &len, sizeof(len));
		EVP_DigestUpdate(md, buf, len);
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	EVP_DigestFinal_ex(md, out, &n);
	EVP_MD_CTX_free(md);
}

/* Whether an inotify event's name is one of the watched files, or one of
 * the "..data"-style entries of a Kubernetes secret volume swap. */
static int
relevant_name(const struct proxy *p, const char *name)
{
	const char *files[64], *base;
	size_t k, i, n;

	if (name[0] == '.' && name[1] == '.')
		return 1;
	for (k = 0; k <= p->nls; k++) {
		if (k == p->nls && p->admin_ls.l == NULL)
			break;
		n = listener_files(k < p->nls ? p->ls[k].l : p->admin_ls.l,
		    files, 64);
		for (i = 0; i < n; i++) {
			base = strrchr(files[i], '/');
			base = base ? base + 1 : files[i];
			if (strcmp(base, name) == 0)
				return 1;
		}
	}
	return 0;
}

/* The folders holding <l>'s files, each once. */
void
reload_watch(struct proxy *p, const struct proxy_listener *l)
{
	int ifd = p->ifd;
	const char *files[64];
	char dir[PATH_MAX], seen[8][PATH_MAX];
	size_t n, i, j, ns = 0;

	if (ifd < 0)
		return;
	n = listener_files(l, files, 64);
	for (i = 0; i < n; i++) {
		char *slash;

		snprintf(dir, sizeof(dir), "%s", files[i]);
		slash = strrchr(dir, '/');
		if (slash == NULL)
			snprintf(dir, sizeof(dir), ".");
		else if (slash == dir)
			dir[1] = '\0';
		else
			*slash = '\0';
		for (j = 0; j < ns; j++)
			if (strcmp(seen[j], dir) == 0)
				break;
		if (j < ns || ns == 8)
			continue;
		snprintf(seen[ns++], PATH_MAX, "%s", dir);
		/* renames and symlink swaps (Kubernetes ..data, mtls agent)
		 * show up as moves and creates in the folder */
		inotify_add_watch(ifd, dir, IN_CLOSE_WRITE | IN_MOVED_TO |
		    IN_CREATE | IN_DELETE | IN_ATTRIB);
	}
}


/* The hash of the files in use also covers what was fetched (a CRL, a
 * staple); under proxy mu. */
static void
mix_hash(uint8_t h[32], const uint8_t add[32])
{
	static const uint8_t zero[32];
	uint8_t buf[64];

	if (memcmp(add, zero, 32) == 0)
		return;
	memcpy(buf, h, 32);
	memcpy(buf + 32, add, 32);
	SHA256(buf, sizeof(buf), h);
}

static void
mix_fetched(struct lstate *ls, uint8_t h[32])
{
	size_t i;

	mix_hash(h, (ls->crl_src ? ls->crl_src : ls)->crl_hash);
	mix_hash(h, ls->staple_hash);
	for (i = 0; i < PROXY_MAX_CA; i++)
		mix_hash(h, ls->fbundle[i].hash);
}

/* The hash of <ls>'s files and fetched state, as in use now. */
void
reload_mark(struct proxy *p, struct lstate *ls)
{
	files_hash(ls->l, ls->files_hash);
	pthread_mutex_lock(&p->mu);
	mix_fetched(ls, ls->files_hash);
	pthread_mutex_unlock(&p->mu);
}


struct mtls_config *
reload_build(struct proxy *p, struct lstate *ls, char *serial, size_t slen,
    struct mtls_error *err)
{
	struct mtls_config *cfg = NULL;
	struct crlsrc *fcrl, fb[PROXY_MAX_CA];
	uint8_t *crl, *staple;
	size_t len, slen2, i, nf = ls->l->n_crls;
	char warn[sizeof(ls->own_warn)] = "";
	const struct lstate *cs = ls->crl_src ? ls->crl_src : ls;
	int oom;

	fcrl = calloc(nf + 1, sizeof(*fcrl));
	pthread_mutex_lock(&p->mu);
	crl = bytes_dup(cs->crl, len = cs->crl_len);
	staple = bytes_dup(ls->staple, slen2 = ls->staple_len);
	oom = fcrl == NULL || (cs->crl != NULL && crl == NULL) ||
	    (ls->staple != NULL && staple == NULL);
	for (i = 0; !oom && i < nf; i++) {
		fcrl[i].der = bytes_dup(ls->fcrl[i].der,
		    fcrl[i].len = ls->fcrl[i].len);
		oom = fcrl[i].der == NULL;
	}
	/* the last good bundle of each partner endpoint */
	for (i = 0; i < PROXY_MAX_CA; i++) {
		fb[i].der = bytes_dup(ls->fbundle[i].der,
		    fb[i].len = ls->fbundle[i].len);
		oom |= ls->fbundle[i].der != NULL && fb[i].der == NULL;
	}
	pthread_mutex_unlock(&p->mu);
	if (oom)
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
	else
		cfg = config_build(ls->l, fcrl, fb, crl, len, staple, slen2, serial,
		    slen, warn, sizeof(warn), err);
	for (i = 0; fcrl != NULL && i < nf; i++)
		free(fcrl[i].der);
	free(fcrl);
	for (i = 0; i < PROXY_MAX_CA; i++)
		free(fb[i].der);
	free(crl);
	free(staple);
	/* one line per change of the warning, not per rebuild */
	if (cfg != NULL && strcmp(warn, ls->own_warn) != 0) {
		if (warn[0] != '\0') {
			json_t *o = json_object();

			json_object_set_new(o, "listener",
			    esc_jstr(ls->l->name));
			json_object_set_new(o, "warning", esc_jstr(warn));
			log_emit("warn", "own_chain", o);
			json_decref(o);
		}
		snprintf(ls->own_warn, sizeof(ls->own_warn), "%s", warn);
	}
	return cfg;
}


/* ---- admin: /metrics, /healthz, /readyz ---- */

void
reload_identity(struct proxy *p, struct lstate *ls, const struct mtls_config *cfg)
{
	X509 *leaf = config_leaf(cfg);
	struct mtls_error e;
	struct ids ids;
	STACK_OF(X509) *sk[2] = { config_chain(cfg), config_trust(cfg) };
	int64_t ca_na = INT64_MAX, v;
	int k, i;

	__atomic_store_n(&ls->own_not_after,
	    asn1_time_unix(X509_get0_notAfter(leaf)), __ATOMIC_RELAXED);
	__atomic_store_n(&ls->own_not_before,
	    asn1_time_unix(X509_get0_notBefore(leaf)), __ATOMIC_RELAXED);
	/* for the alert rules: the CA certificates (chain beyond the leaf,
	 * trust bundle) that expire first */
	for (k = 0; k < 2; k++)
		for (i = k == 0 ? 1 : 0; i < sk_X509_num(sk[k]); i++) {
			v = asn1_time_unix(X509_get0_notAfter(
			    sk_X509_value(sk[k], i)));
			if (v < ca_na)
				ca_na = v;
		}
	__atomic_store_n(&ls->ca_not_after, ca_na == INT64_MAX ? 0 : ca_na,
	    __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->mu);
	serial_hex(X509_get0_serialNumber(leaf), ls->own_serial,
	    sizeof(ls->own_serial));
	ls->own_id[0] = '\0';
	if (ids_from_cert(leaf, &ids, &e) == 0) {
		if (ids_primary(&ids) != NULL)
			snprintf(ls->own_id, sizeof(ls->own_id), "%s",
			    ids_primary(&ids));
		ids_free(&ids);
	}
	pthread_mutex_unlock(&p->mu);
}

/* Rebuilds <ls>'s config when its files (or what was fetched for it)
 * changed: 1 when a new one was swapped in, 0 when unchanged or refused
 * (the old one keeps serving). */
static int
reload_one(struct proxy *p, struct lstate *ls, const char *why)
{
	struct mtls_config *cfg;
	struct mtls_error err;
	char serial[64] = "";
	uint8_t h[32];
	json_t *o;

	files_hash(ls->l, h);
	pthread_mutex_lock(&p->mu);
	mix_fetched(ls, h);
	pthread_mutex_unlock(&p->mu);
	o = json_object();
	json_object_set_new(o, "listener", esc_jstr(ls->l->name));
	json_object_set_new(o, "trigger", esc_jstr(why));
	if (memcmp(h, ls->files_hash, 32) == 0) {
		/* nothing changed: keep the config and its sessions */
		json_object_set_new(o, "result", json_string("unchanged"));
		log_emit("info", "reload", o);
		json_decref(o);
		return 0;
	}
	/* a refused CRL file is logged and the previous one kept */
	(void)revfetch_crl_files(p, ls, 0, &err);
	cfg = reload_build(p, ls, serial, sizeof(serial), &err);
	if (cfg == NULL) {
		__atomic_add_fetch(&p->m_reload_failed, 1, __ATOMIC_RELAXED);
		json_object_set_new(o, "result", json_string("failed"));
		json_object_set_new(o, "error", esc_jstr(err.msg));
		log_emit("error", "reload", o);
		json_decref(o);
		return 0;
	}
	/* ticket keys carry over (they rotate on their timer, not on
	 * reload); with the same generation the verification cache
	 * does too, so sessions survive e.g. our own cert rotating */
	config_inherit(cfg, ls->cfg, ls->l->ticket_key_file == NULL);
	pthread_mutex_lock(&p->mu);
	mtls_config_free(ls->cfg);
	ls->cfg = cfg;
	ls->cfg_seq++;
	memcpy(ls->files_hash, h, 32);
	pthread_mutex_unlock(&p->mu);
	if (ls != &p->admin_ls)
		reload_identity(p, ls, cfg);
	if (ls->l->ticket_key_file != NULL)
		x509memo_rotate();	/* the key file may be new */
	__atomic_add_fetch(&p->m_reload_ok, 1, __ATOMIC_RELAXED);
	json_object_set_new(o, "result", json_string("ok"));
	json_object_set_new(o, "serial", esc_jstr(serial));
	log_emit("info", "reload", o);
	json_decref(o);
	return 1;
}

/* Every listener, then the admin endpoint's mTLS (it takes the new config
 * at its next connection); the workers are told when one changed. */
static void
reload_all(struct proxy *p, const char *why)
{
	uint64_t one = 1;
	size_t k;
	int i, changed = 0;

	for (k = 0; k < p->nls; k++)
		changed |= reload_one(p, &p->ls[k], why);
	if (p->admin_ls.l != NULL)
		(void)reload_one(p, &p->admin_ls, why);
	for (i = 0; changed && i < p->nworkers; i++)
		if (write(p->w[i].evfd, &one, sizeof(one)) < 0)
			continue;
}


/* Timed rotation of session ticket keys for listeners without a shared key
 * file: new tickets get a new key, the previous key still opens. */
static void
rotate_tickets(struct proxy *p)
{
	json_t *o;
	size_t k;
	int n = 0;

	for (k = 0; k < p->nls; k++) {
		if (p->ls[k].l->ticket_key_file != NULL)
			continue;
		pthread_mutex_lock(&p->mu);
		if (config_rotate_ticket_keys(p->ls[k].cfg) == 0)
			n++;
		pthread_mutex_unlock(&p->mu);
	}
	/* the admin endpoint's tickets (--admin-allow) age the same way */
	pthread_mutex_lock(&p->mu);
	if (p->admin_ls.cfg != NULL &&
	    config_rotate_ticket_keys(p->admin_ls.cfg) != 0)
		log_emit("warn", "ticket_rotate_admin_failed", NULL);
	pthread_mutex_unlock(&p->mu);
	/* the memo keeps nothing made under the previous keys (also with
	 * key files only: the timer then bounds the entries' age) */
	x509memo_rotate();
	o = json_object();
	json_object_set_new(o, "listeners", json_integer(n));
	log_emit("info", "ticket_rotate", o);
	json_decref(o);
}


/*
 * After a burst of handshakes, the first quiet second hands the heap's
 * free pages back (malloc_trim): parsing certificates and building
 * handshakes leaves free memory between the connections that stay, and
 * without this an idle proxy keeps the RSS of its busiest second. Never
 * under steady load (it would only make pages fault back in).
 */
static void
quiet_trim(struct proxy *p)
{
	static uint64_t last;
	static int busy;
	uint64_t n = 0;
	int i, a, b, c;

	for (i = 0; i < p->nworkers; i++)
		for (a = 0; a < 2; a++)
			for (b = 0; b < MTLS_FAIL_COUNT; b++)
				for (c = 0; c < 2; c++)
					n += __atomic_load_n(&p->w[i].m_hs[a][b][c],
					    __ATOMIC_RELAXED);
	if (n != last)
		busy = 1;
	else if (busy) {
		busy = 0;
		malloc_trim(0);
	}
	last = n;
}


int
reload_watch_start(struct proxy *p, struct mtls_error *err)
{
	sigset_t mask;
	size_t li;

	/* signals go to the main thread's signalfd, never to workers */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if ((p->sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0)
		return error_set_errno(err, MTLS_ERR_IO, "signalfd");
	if ((p->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) >= 0)
		for (li = 0; li < p->nls; li++)
			reload_watch(p, p->ls[li].l);
	return 0;
}

/* Whether the inotify events pending on p->ifd name a watched file. */
static int
watch_hit(struct proxy *p)
{
	char ibuf[8192] __attribute__((aligned(8)));
	ssize_t got;
	int hit = 0;

	while ((got = read(p->ifd, ibuf, sizeof(ibuf))) > 0) {
		char *q = ibuf;

		while (q + sizeof(struct inotify_event) <= ibuf + got) {
			struct inotify_event *ie = (void *)q;

			if (ie->len > 0 && q + sizeof(*ie) + ie->len <=
			    ibuf + got && relevant_name(p, ie->name))
				hit = 1;
			q += sizeof(*ie) + ie->len;
		}
	}
	return hit;
}

/* SIGTERM or SIGINT: one drain line; 1 to stop. SIGHUP: reload. */
static int
on_signal(struct proxy *p)
{
	struct signalfd_siginfo si;
	json_t *so;

	if (read(p->sfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (si.ssi_signo == SIGHUP) {
		notify_reloading();
		reload_all(p, "SIGHUP");
		notify_send("READY=1");
		return 0;
	}
	if (si.ssi_signo != SIGTERM && si.ssi_signo != SIGINT)
		return 0;
	so = json_object();
	json_object_set_new(so, "signal", esc_jstr(si.ssi_signo == SIGTERM ?
	    "SIGTERM" : "SIGINT"));
	json_object_set_new(so, "open", json_integer(__atomic_load_n(
	    &p->active, __ATOMIC_RELAXED)));
	notify_send("STOPPING=1");
	log_emit("info", "drain", so);
	json_decref(so);
	return 1;
}

void
reload_loop(struct proxy *p)
{
	const struct proxy_opts *o = p->o;
	int64_t reload_at = 0, rotate_at = 0, trim_at = 0;

	if (o->ticket_rotate_ms > 0)
		rotate_at = net_now_ms() + o->ticket_rotate_ms;
	for (;;) {
		struct pollfd pf[3] = { { p->sfd, POLLIN, 0 },
		    { p->ifd, POLLIN, 0 }, { p->fetch_evfd, POLLIN, 0 } };
		int64_t now = net_now_ms(), next = reload_at;
		int timeout;

		if (rotate_at && (next == 0 || rotate_at < next))
			next = rotate_at;
		if (now >= trim_at) {
			quiet_trim(p);
			x509memo_sweep();
			trim_at = now + 1000;
		}
		if (next == 0 || trim_at < next)
			next = trim_at;
		timeout = next ? (int)(next - now) : -1;
		if (rotate_at && now >= rotate_at) {
			rotate_tickets(p);
			rotate_at = now + o->ticket_rotate_ms;
			continue;
		}
		if (reload_at && timeout <= 0) {
			reload_at = 0;
			reload_all(p, "file change");
			continue;
		}
		if (poll(pf, 3, timeout) < 0)
			continue;
		if (pf[2].revents & POLLIN) {
			uint64_t n;

			if (read(p->fetch_evfd, &n, sizeof(n)) == sizeof(n))
				reload_all(p, "fetched");
		}
		/* writers replace several files: wait for quiet */
		if ((pf[1].revents & POLLIN) && watch_hit(p))
			reload_at = net_now_ms() + 200;
		if ((pf[0].revents & POLLIN) && on_signal(p))
			return;
	}
}
