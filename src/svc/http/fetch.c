/* HTTP requests with libcurl for what the data path pulls: a CRL (GET,
 * https), an OCSP response (POST; plain http allowed, it is signed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "http/http.h"
#include "internal.h"

struct sink {
	uint8_t	*p;
	size_t	 len, max;
};

static size_t
on_data(char *p, size_t sz, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t add = sz * n;
	uint8_t *np;

	if (s->len + add > s->max || (np = realloc(s->p, s->len + add + 1)) ==
	    NULL)
		return 0;
	memcpy(np + s->len, p, add);
	s->len += add;
	s->p = np;
	return add;
}

static int
do_request(const char *url, const char *cainfo, const char *ctype,
    const uint8_t *body, size_t body_len, long timeout_s, size_t max,
    uint8_t **out, size_t *out_len, char *err, size_t err_len)
{
	struct curl_slist *hdr = NULL;
	struct sink s = { NULL, 0, max };
	char ebuf[CURL_ERROR_SIZE] = "";
	struct curl_blob blob;
	struct mtls_error e;
	uint8_t *ca = NULL;
	size_t ca_len;
	CURL *h;
	long status = 0;
	CURLcode rc;

	*out = NULL;
	/* the bundle through fs_read, as every file input: curl would open a
	 * FIFO put in its place and wait on it forever (issue 18) */
	if (fs_read(cainfo, MTLS_MAX_FILE, &ca, &ca_len, &e) != 0) {
		snprintf(err, err_len, "%s", e.msg);
		return -1;
	}
	if ((h = curl_easy_init()) == NULL) {
		free(ca);
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, ctype ? "http,https" :
	    "https");
	if (ctype != NULL) {
		char line[128];

		snprintf(line, sizeof(line), "Content-Type: %s", ctype);
		hdr = curl_slist_append(NULL, line);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body_len);
	}
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, timeout_s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
	/* only the given bundle: Debian's libcurl would also trust the system
	 * store (/etc/ssl/certs) through its default CA path */
	blob.data = ca;
	blob.len = ca_len;
	blob.flags = CURL_BLOB_COPY;
	curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
	curl_easy_setopt(h, CURLOPT_CAINFO, NULL);	/* not also the default */
	curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdr);
	free(ca);
	if (rc != CURLE_OK || status != 200) {
		const char *m = ctype ? "POST" : "GET";

		if (rc != CURLE_OK)
			snprintf(err, err_len, "%s %s: %s", m, url, ebuf[0] ?
			    ebuf : curl_easy_strerror(rc));
		else
			snprintf(err, err_len, "%s %s: HTTP %ld", m, url, status);
		free(s.p);
		return -1;
	}
	*out = s.p;
	*out_len = s.len;
	return 0;
}

int
http_fetch(const char *url, const char *cainfo, long timeout_s, size_t max,
    uint8_t **out, size_t *out_len, char *err, size_t err_len)
{
	return do_request(url, cainfo, NULL, NULL, 0, timeout_s, max, out,
	    out_len, err, err_len);
}

int
http_post(const char *url, const char *cainfo, const char *ctype,
    const uint8_t *body, size_t body_len, long timeout_s, size_t max,
    uint8_t **out, size_t *out_len, char *err, size_t err_len)
{
	return do_request(url, cainfo, ctype, body, body_len, timeout_s, max,
	    out, out_len, err, err_len);
}
