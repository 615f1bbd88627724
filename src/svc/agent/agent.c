/*
 * The agent's loop. HTTPS is libcurl (OpenSSL backend): the server is
 * verified against the bundle (the CA's roots) and its name; a client
 * certificate authenticates renewals. The only unauthenticated request is
 * the first GET /v1/bundle of an enrollment, and its answer is accepted
 * only if it holds the root whose SHA-256 the token carries (the bootstrap
 * step-ca uses too).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "agent/agent.h"

#define MAX_RESPONSE	(1 << 20)

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct agent {
	const struct agent_opts *o;
	char	 svid[4200], svid_key[4200], bundle[4200];
	char	 token[512];
	int64_t	 not_after, renew_at;
	char	 serial[48];
};

struct buf {
	char	*p;
	size_t	 len;
};

static size_t
on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t add = sz * n;
	char *np;

	if (b->len + add > MAX_RESPONSE || (np = realloc(b->p, b->len + add +
	    1)) == NULL)
		return 0;	/* too large: curl fails the transfer */
	memcpy(np + b->len, p, add);
	b->len += add;
	np[b->len] = '\0';
	b->p = np;
	return add;
}

/*
 * One HTTPS call. <insecure>: the bootstrap GET only. With <client>, the
 * current certificate authenticates us. Returns the HTTP status (and the
 * body in *out), or -1 with err set (connection, TLS).
 */
static int
call(struct agent *a, const char *method, const char *path,
    const char *body, int insecure, int client, struct buf *out,
    struct mtls_error *err)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdr = NULL;
	char url[1024], ebuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	if (h == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	snprintf(url, sizeof(url), "%s%s", a->o->ca_url, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
	if (insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else
		curl_easy_setopt(h, CURLOPT_CAINFO, a->bundle);
	if (client) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, a->svid);
		curl_easy_setopt(h, CURLOPT_SSLKEY, a->svid_key);
	}
	if (body != NULL) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	else
		error_set(err, MTLS_ERR_IO, "%s %s: %s", method, url,
		    ebuf[0] ? ebuf : curl_easy_strerror(rc));
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	if (rc != CURLE_OK) {
		free(out->p);
		out->p = NULL;
		return -1;
	}
	return (int)status;
}

/* "message" of a JSON error body, for logs. */
static void
api_error(struct mtls_error *err, int status, const char *what,
    const struct buf *b)
{
	json_t *o = b->p ? json_loads(b->p, 0, NULL) : NULL;
	const char *m = json_string_value(json_object_get(o, "message"));

	error_set(err, status >= 500 ? MTLS_ERR_IO : MTLS_ERR_VERIFY,
	    "%s: HTTP %d: %.180s", what, status, m ? m : "(no message)");
	json_decref(o);
}

/* Fetches the roots; with <fp_hex> (bootstrap) they must hold that root. */
static int
fetch_bundle(struct agent *a, const char *fp_hex, struct mtls_error *err)
{
	struct buf b;
	json_t *o = NULL;
	STACK_OF(X509) *roots = NULL;
	const char *pem;
	char fp[100];
	int st, i, found = fp_hex == NULL, rv = -1;

	if ((st = call(a, "GET", "/v1/bundle", NULL, fp_hex != NULL, 0, &b,
	    err)) < 0)
		return -1;
	if (st != 200) {
		api_error(err, st, "GET /v1/bundle", &b);
		goto out;
	}
	o = json_loads(b.p, 0, NULL);
	if ((pem = json_string_value(json_object_get(o, "bundle"))) == NULL ||
	    certs_parse((const uint8_t *)pem, strlen(pem), "the CA's bundle",
	    &roots, err) != 0) {
		if (pem == NULL)
			error_set(err, MTLS_ERR_PARSE, "GET /v1/bundle: no "
			    "\"bundle\" in the answer");
		goto out;
	}
	for (i = 0; !found && i < sk_X509_num(roots); i++) {
		unsigned char d[32];
		unsigned int dl = 0;
		int k;

		if (!X509_digest(sk_X509_value(roots, i), EVP_sha256(), d, &dl))
			continue;
		for (k = 0; k < 32; k++)
			snprintf(fp + 2 * k, 3, "%02x", d[k]);
		found = strcmp(fp, fp_hex) == 0;
	}
	if (!found) {
		error_set(err, MTLS_ERR_VERIFY, "the server at %s does not "
		    "hold the root %.16s... named by the token: wrong --ca-url, "
		    "or someone in between", a->o->ca_url, fp_hex);
		goto out;
	}
	if (fs_write_atomic(a->bundle, pem, strlen(pem), 0644, 1, err) != 0)
		goto out;
	rv = 0;
 out:
	sk_X509_pop_free(roots, X509_free);
	json_decref(o);
	free(b.p);
	return rv;
}

/* A new P-256 key and a CSR for it (the CA decides the identity). */
static int
new_csr(EVP_PKEY **key, char **csr, struct mtls_error *err)
{
	X509_REQ *req = X509_REQ_new();
	BIO *bio = BIO_new(BIO_s_mem());
	BUF_MEM *bm;
	int rv = -1;

	*csr = NULL;
	if (req == NULL || bio == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (key_generate(KEY_EC_P256, key, err) != 0)
		goto out;
	if (!X509_REQ_set_version(req, 0) || !X509_REQ_set_pubkey(req, *key) ||
	    X509_REQ_sign(req, *key, EVP_sha256()) <= 0 ||
	    !PEM_write_bio_X509_REQ(bio, req)) {
		error_set_ossl(err, MTLS_ERR_CRYPTO, "cannot make a CSR");
		goto out;
	}
	BIO_get_mem_ptr(bio, &bm);
	if ((*csr = strndup(bm->data, bm->length)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	rv = 0;
 out:
	BIO_free(bio);
	X509_REQ_free(req);
	return rv;
}

static void
run_hook(struct agent *a)
{
	pid_t pid;
	int st = 0;
	json_t *o;

	if (a->o->on_rotate == NULL)
		return;
	if ((pid = fork()) == 0) {
		execl("/bin/sh", "sh", "-c", a->o->on_rotate, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
	o = json_object();
	json_object_set_new(o, "command", json_string(a->o->on_rotate));
	json_object_set_new(o, "exit", json_integer(pid < 0 ? -1 :
	    WIFEXITED(st) ? WEXITSTATUS(st) : 128));
	log_emit(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "info" :
	    "warn", "on_rotate", o);
	json_decref(o);
}

/* Schedules the next renewal: two thirds of the remaining life, minus up
 * to 5 % jitter so that replicas do not renew in step. */
static void
schedule(struct agent *a)
{
	int64_t now = (int64_t)time(NULL), left = a->not_after - now;
	uint32_t r = 0;
	int64_t jit;

	RAND_bytes((unsigned char *)&r, sizeof(r));
	jit = left > 20 ? (int64_t)(r % (uint32_t)(left / 20 + 1)) : 0;
	a->renew_at = now + (left > 0 ? left * 2 / 3 - jit : 0);
}

/* Checks and installs an issued chain for <key>: the key matches, the
 * files are replaced atomically (key, then certificate). */
static int
install(struct agent *a, EVP_PKEY *key, const char *chain_pem,
    const char *how, struct mtls_error *err)
{
	STACK_OF(X509) *chain = NULL;
	X509 *leaf;
	json_t *o;
	int rv = -1;

	if (certs_parse((const uint8_t *)chain_pem, strlen(chain_pem),
	    "the issued certificate", &chain, err) != 0)
		return -1;
	leaf = sk_X509_value(chain, 0);
	if (X509_check_private_key(leaf, key) != 1) {
		ERR_clear_error();
		error_set(err, MTLS_ERR_VERIFY, "the CA returned a certificate "
		    "for another key; not installed");
		goto out;
	}
	if (key_write(a->svid_key, key, NULL, 1, err) != 0 ||
	    fs_write_atomic(a->svid, chain_pem, strlen(chain_pem), 0644, 1,
	    err) != 0)
		goto out;
	a->not_after = asn1_time_unix(X509_get0_notAfter(leaf));
	serial_hex(X509_get0_serialNumber(leaf), a->serial, sizeof(a->serial));
	schedule(a);
	o = json_object();
	json_object_set_new(o, "serial", json_string(a->serial));
	json_object_set_new(o, "not_after", json_integer(a->not_after));
	json_object_set_new(o, "renew_at", json_integer(a->renew_at));
	json_object_set_new(o, "out_dir", json_string(a->o->out_dir));
	log_emit("info", how, o);
	json_decref(o);
	run_hook(a);
	rv = 0;
 out:
	sk_X509_pop_free(chain, X509_free);
	return rv;
}

/* POST /v1/enroll or /v1/renew with a new key; installs the answer. */
static int
obtain(struct agent *a, int enroll, struct mtls_error *err)
{
	EVP_PKEY *key = NULL;
	char *csr = NULL, *body = NULL;
	const char *chain, *bundle;
	struct buf b = { 0 };
	json_t *o = NULL, *r = NULL;
	int st, rv = -1;

	if (new_csr(&key, &csr, err) != 0)
		goto out;
	o = json_object();
	if (enroll)
		json_object_set_new(o, "token", json_string(a->token));
	json_object_set_new(o, "csr", json_string(csr));
	body = json_dumps(o, JSON_COMPACT);
	if (body == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	st = call(a, "POST", enroll ? "/v1/enroll" : "/v1/renew", body, 0,
	    !enroll, &b, err);
	if (st < 0)
		goto out;
	if (st != 200) {
		api_error(err, st, enroll ? "enroll" : "renew", &b);
		goto out;
	}
	r = json_loads(b.p, 0, NULL);
	chain = json_string_value(json_object_get(r, "certificate"));
	bundle = json_string_value(json_object_get(r, "bundle"));
	if (chain == NULL || bundle == NULL) {
		error_set(err, MTLS_ERR_PARSE, "the CA's answer has no "
		    "certificate or bundle");
		goto out;
	}
	if (install(a, key, chain, enroll ? "enroll" : "renew", err) != 0)
		goto out;
	rv = 0;
 out:
	if (body)
		OPENSSL_cleanse(body, strlen(body));
	free(body);
	free(csr);
	free(b.p);
	json_decref(o);
	json_decref(r);
	EVP_PKEY_free(key);
	return rv;
}

/* The current certificate in out-dir, if any: sets not_after. */
static int
load_current(struct agent *a)
{
	STACK_OF(X509) *chain = NULL;
	struct mtls_error e;
	int ok;

	if (access(a->svid, R_OK) != 0 || access(a->svid_key, R_OK) != 0 ||
	    certs_load(a->svid, &chain, &e) != 0)
		return -1;
	a->not_after = asn1_time_unix(X509_get0_notAfter(sk_X509_value(chain,
	    0)));
	serial_hex(X509_get0_serialNumber(sk_X509_value(chain, 0)), a->serial,
	    sizeof(a->serial));
	sk_X509_pop_free(chain, X509_free);
	ok = a->not_after > (int64_t)time(NULL);
	return ok ? 0 : -1;
}

static int
read_token(struct agent *a, struct mtls_error *err)
{
	uint8_t *buf;
	size_t len;

	if (fs_read(a->o->token_file, 4096, &buf, &len, err) != 0)
		return -1;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	    buf[len - 1] == ' '))
		len--;
	if (len == 0 || len >= sizeof(a->token) || strncmp((char *)buf,
	    "mtls1.", 6) != 0 || memchr(buf, '\n', len) != NULL) {
		OPENSSL_cleanse(buf, len);
		free(buf);
		return error_set(err, MTLS_ERR_PARSE, "%s: not an mtls join "
		    "token (mtls ca token create prints one)",
		    a->o->token_file);
	}
	memcpy(a->token, buf, len);
	a->token[len] = '\0';
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (strlen(a->token) < 6 + 64 + 1 || a->token[6 + 64] != '.' ||
	    strspn(a->token + 6, "0123456789abcdef") != 64)
		return error_set(err, MTLS_ERR_PARSE, "%s: the token's root "
		    "fingerprint is malformed", a->o->token_file);
	return 0;
}

/* Copies a file (the initial --cert/--key/--ca-bundle into out-dir). */
static int
copy_file(const char *from, const char *to, int mode, struct mtls_error *err)
{
	uint8_t *buf;
	size_t len;
	int rv;

	if (fs_read(from, MTLS_MAX_FILE, &buf, &len, err) != 0)
		return -1;
	rv = fs_write_atomic(to, buf, len, mode, 1, err);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}

static int
first(struct agent *a, struct mtls_error *err)
{
	char fp[65];

	if (load_current(a) == 0)
		return 0;	/* valid files: renew them when due */
	if (a->o->cert != NULL) {
		if (copy_file(a->o->cert, a->svid, 0644, err) != 0 ||
		    copy_file(a->o->key, a->svid_key, 0600, err) != 0)
			return -1;
		if (load_current(a) != 0)
			return error_set(err, MTLS_ERR_ARG, "--cert %s has "
			    "expired: enroll again with --token-file",
			    a->o->cert);
		return 0;
	}
	if (a->o->token_file == NULL)
		return error_set(err, MTLS_ERR_ARG, "no valid certificate in "
		    "%s: give --token-file", a->o->out_dir);
	if (read_token(a, err) != 0)
		return -1;
	memcpy(fp, a->token + 6, 64);
	fp[64] = '\0';
	if (fetch_bundle(a, fp, err) != 0 || obtain(a, 1, err) != 0)
		return -1;
	return 1;
}

static void
log_error(const char *event, const struct mtls_error *err, int64_t retry_s)
{
	json_t *o = json_object();

	json_object_set_new(o, "error", json_string(err->msg));
	if (retry_s >= 0)
		json_object_set_new(o, "retry_in_s", json_integer(retry_s));
	log_emit("warn", event, o);
	json_decref(o);
}

static void
sleep_until(int64_t t)
{
	while (!stop && (int64_t)time(NULL) < t)
		poll(NULL, 0, 200);
}

static int
setup(struct agent *a, const struct agent_opts *o, struct mtls_error *err)
{
	memset(a, 0, sizeof(*a));
	a->o = o;
	snprintf(a->svid, sizeof(a->svid), "%s/svid.pem", o->out_dir);
	snprintf(a->svid_key, sizeof(a->svid_key), "%s/svid.key", o->out_dir);
	snprintf(a->bundle, sizeof(a->bundle), "%s/bundle.pem", o->out_dir);
	if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST)
		return error_set_errno(err, MTLS_ERR_IO, "--out-dir %s",
		    o->out_dir);
	if (o->ca_bundle && copy_file(o->ca_bundle, a->bundle, 0644, err) != 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return 0;
}

/* Renews when due until stopped; failures back off. */
static void
renew_loop(struct agent *a)
{
	struct mtls_error err;
	int64_t backoff = 1, now, left;

	while (!stop) {
		sleep_until(a->renew_at);
		if (stop)
			break;
		error_clear(&err);
		/* a fresh bundle first (roots rotate), then the certificate */
		if (fetch_bundle(a, NULL, &err) == 0 && obtain(a, 0, &err) == 0) {
			backoff = 1;
			continue;
		}
		now = (int64_t)time(NULL);
		left = a->not_after - now;
		log_error("renew_failed", &err, backoff);
		/* back off, but never past a quarter of what is left */
		a->renew_at = now + (backoff < left / 4 || left < 4 ? backoff :
		    left / 4);
		backoff = backoff * 2 > 60 ? 60 : backoff * 2;
	}
}

int
agent_run(const struct agent_opts *o, struct mtls_error *err)
{
	struct agent a;
	struct sigaction sa;
	int64_t backoff = 1;
	int r, rv = -1;

	if (setup(&a, o, err) != 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* enrollment: retried like renewals unless --once */
	for (;;) {
		r = first(&a, err);
		if (r >= 0)
			break;
		if (o->once || err->code == MTLS_ERR_ARG ||
		    err->code == MTLS_ERR_PARSE)
			goto out;
		log_error("enroll_failed", err, backoff);
		sleep_until((int64_t)time(NULL) + backoff);
		if (stop)
			goto out;
		backoff = backoff * 2 > 60 ? 60 : backoff * 2;
	}
	if (r == 0) {
		schedule(&a);
		if (o->once) {
			/* --once with a valid certificate: renew it now */
			if (obtain(&a, 0, err) != 0)
				goto out;
			rv = 0;
			goto out;
		}
	} else if (o->once) {
		rv = 0;
		goto out;
	}
	renew_loop(&a);
	rv = 0;
 out:
	OPENSSL_cleanse(a.token, sizeof(a.token));
	curl_global_cleanup();
	return rv;
}

static void *
renew_thread(void *arg)
{
	renew_loop(arg);
	return NULL;
}

int
agent_background(const struct agent_opts *o, struct mtls_error *err)
{
	struct agent *a = malloc(sizeof(*a));
	sigset_t all, old;
	pthread_attr_t at;
	pthread_t th;
	int r;

	if (a == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (setup(a, o, err) != 0 || (r = first(a, err)) < 0) {
		free(a);
		return -1;
	}
	OPENSSL_cleanse(a->token, sizeof(a->token));
	if (r == 0)
		schedule(a);
	/* signals belong to the host process's own handling (the proxy's
	 * signalfd): the thread, and curl's threads, start with them blocked */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&th, &at, renew_thread, a);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		free(a);
		return error_set(err, MTLS_ERR_NOMEM, "cannot start the agent "
		    "thread");
	}
	return 0;	/* <a> lives as long as the process */
}
