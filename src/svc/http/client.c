/* The one libcurl client setup (client.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http/client.h"

struct sink {
	char	*p;
	size_t	 len, max;
};

static size_t
on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t add = sz * n;
	char *np;

	if (add > s->max - s->len || (np = realloc(s->p, s->len + add + 1)) ==
	    NULL)
		return 0;	/* too large: curl fails the transfer */
	memcpy(np + s->len, p, add);
	s->len += add;
	np[s->len] = '\0';
	s->p = np;
	return add;
}

/* r->key (a token's key: no file to give curl) and r->cert_file set on
 * the SSL_CTX, then the caller's own hook. */
static CURLcode
key_ctx(CURL *h, void *sslctx, void *arg)
{
	const struct http_client_req *r = arg;

	if (SSL_CTX_use_certificate_chain_file(sslctx, r->cert_file) != 1 ||
	    SSL_CTX_use_PrivateKey(sslctx, r->key) != 1 ||
	    SSL_CTX_check_private_key(sslctx) != 1) {
		ERR_clear_error();
		return CURLE_SSL_CERTPROBLEM;
	}
	return r->ssl_ctx_fn != NULL ? r->ssl_ctx_fn(h, sslctx,
	    r->ssl_ctx_arg) : CURLE_OK;
}

int
http_client_do(const struct http_client_req *r, struct http_client_resp *resp)
{
	const char *method = r->method ? r->method : "GET";
	struct curl_slist *hdr = NULL;
	struct sink s = { NULL, 0, r->max };
	char ebuf[CURL_ERROR_SIZE] = "";
	struct curl_blob blob;
	CURLcode rc;
	CURL *h;

	memset(resp, 0, sizeof(*resp));
	if ((h = curl_easy_init()) == NULL) {
		snprintf(resp->error, sizeof(resp->error), "%s %.1000s: out of "
		    "memory", method, r->url);
		return -1;
	}
	curl_easy_setopt(h, CURLOPT_URL, r->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, r->protocols ? r->protocols :
	    "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s ?
	    r->connect_timeout_s : r->timeout_s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, r->timeout_s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	if (r->header_fn != NULL) {
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, r->header_fn);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, r->header_arg);
	}
	if (r->tls13_only)
		curl_easy_setopt(h, CURLOPT_SSLVERSION,
		    (long)CURL_SSLVERSION_TLSv1_3);
	/* only what we are given: Debian's libcurl would also trust the
	 * system store (/etc/ssl/certs) through its default CA path */
	curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	if (r->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		if (r->ca_pem != NULL) {
			blob.data = (void *)r->ca_pem;
			blob.len = r->ca_pem_len;
			blob.flags = CURL_BLOB_COPY;
			curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
			curl_easy_setopt(h, CURLOPT_CAINFO, NULL);
		} else
			curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	}
	if (r->cert_file != NULL && r->key != NULL) {
		curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, key_ctx);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, (void *)r);
	} else if (r->ssl_ctx_fn != NULL) {
		curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, r->ssl_ctx_fn);
		curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, r->ssl_ctx_arg);
	}
	if (r->cert_file != NULL && r->key == NULL) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, r->cert_file);
		curl_easy_setopt(h, CURLOPT_SSLKEY, r->key_file);
	}
	if (r->body != NULL) {
		char line[128];

		snprintf(line, sizeof(line), "Content-Type: %s", r->ctype ?
		    r->ctype : "application/octet-stream");
		if ((hdr = curl_slist_append(NULL, line)) == NULL) {
			curl_easy_cleanup(h);
			snprintf(resp->error, sizeof(resp->error), "%s %.1000s: "
			    "out of memory", method, r->url);
			return -1;
		}
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
	}
	if (r->header != NULL) {
		struct curl_slist *l = curl_slist_append(hdr, r->header);

		if (l == NULL) {
			curl_slist_free_all(hdr);
			curl_easy_cleanup(h);
			snprintf(resp->error, sizeof(resp->error), "%s %.1000s: "
			    "out of memory", method, r->url);
			return -1;
		}
		hdr = l;
	}
	if (hdr != NULL)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	if (rc != CURLE_OK) {
		snprintf(resp->error, sizeof(resp->error), "%s %.1000s: %s",
		    method, r->url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
		free(s.p);
		return -1;
	}
	resp->body = s.p;
	resp->len = s.len;
	return 0;
}
