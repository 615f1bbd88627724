/* HTTP requests with libcurl for what the data path pulls: a CRL (GET,
 * https), an OCSP response (POST; plain http allowed, it is signed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/client.h"
#include "http/http.h"
#include "internal.h"

static int
do_request(const char *url, const char *cainfo, const char *ctype,
    const uint8_t *body, size_t body_len, long timeout_s, size_t max,
    uint8_t **out, size_t *out_len, char *err, size_t err_len)
{
	struct http_client_req r;
	struct http_client_resp resp;
	struct mtls_error e;
	uint8_t *ca = NULL;
	size_t ca_len;
	int rc;

	*out = NULL;
	/* the bundle through fs_read, as every file input: curl would open a
	 * FIFO put in its place and wait on it forever (issue 18) */
	if (fs_read(cainfo, MTLS_MAX_FILE, &ca, &ca_len, &e) != 0) {
		snprintf(err, err_len, "%s", e.msg);
		return -1;
	}
	memset(&r, 0, sizeof(r));
	memset(&resp, 0, sizeof(resp));
	r.method = ctype != NULL ? "POST" : "GET";
	r.url = url;
	/* an OCSP answer is signed: plain http allowed for it */
	r.protocols = ctype != NULL ? "http,https" : "https";
	r.ctype = ctype;
	r.body = body;
	r.body_len = body_len;
	r.timeout_s = timeout_s;
	r.max = max;
	r.ca_pem = ca;
	r.ca_pem_len = ca_len;
	rc = http_client_do(&r, &resp);
	free(ca);
	if (rc != 0 || resp.status != 200) {
		if (rc != 0)
			snprintf(err, err_len, "%s", resp.error);
		else
			snprintf(err, err_len, "%s %s: HTTP %ld", r.method, url,
			    resp.status);
		free(resp.body);
		return -1;
	}
	*out = (uint8_t *)resp.body;
	*out_len = resp.len;
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
