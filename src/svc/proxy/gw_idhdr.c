/*
 * The head the upstream gets (gw_int.h): the codec's request line and the
 * client's fields that pass (http/h1.c), then ours: the routed Host,
 * X-Forwarded-For and -Proto, and the identity headers,
 * X-Forwarded-Client-Cert (Envoy's format) and X-Client-Spiffe-Id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "proxy/gw_int.h"

/* ---- identity headers ---- */

/* Appends one XFCC element (http_xfcc_put: Envoy's quoting) to the
 * growing *buf; -1 (and *buf freed) when it cannot: an XFCC with an
 * element left out would name a different certificate. */
static int
xfcc_put(char **buf, size_t *len, size_t *cap, const char *key,
    const char *val, int force_quote)
{
	size_t need = strlen(key) + 2 * strlen(val) + 8, k;

	if (*buf == NULL || *len + need >= *cap) {
		size_t nc = (*cap + need) * 2;
		char *nb = realloc(*buf, nc);

		if (nb == NULL)
			goto fail;
		*buf = nb;
		*cap = nc;
	}
	if (*len > 0)
		(*buf)[(*len)++] = ';';
	if ((k = http_xfcc_put(*buf + *len, *cap - *len, key, val,
	    force_quote)) == 0)
		goto fail;
	*len += k;
	(*buf)[*len] = '\0';
	return 0;
 fail:
	free(*buf);
	*buf = NULL;
	*len = *cap = 0;
	return -1;
}

/* The peer's XFCC value, whole, or NULL (then the peer is refused:
 * id_bad). Its length is checked against XFCC_MAX per request. */
char *
xfcc_build(const char *by, X509 *peer, const struct ids *ids)
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65], *subj = NULL, *m;
	char *buf = NULL;
	size_t len = 0, cap = 0, i;
	long sn;
	BIO *b;
	int rv = 0;

	if (by[0] != '\0')
		rv |= xfcc_put(&buf, &len, &cap, "By", by, 0);
	if (X509_digest(peer, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
		goto fail;
	for (i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
	rv |= xfcc_put(&buf, &len, &cap, "Hash", hex, 0);
	/* RFC 2253 escapes control bytes and (ESC_MSB) non-ASCII ones: the
	 * Subject is visible ASCII and spaces; all of it (never cut) */
	if ((b = BIO_new(BIO_s_mem())) == NULL)
		goto fail;
	if (X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
	    XN_FLAG_RFC2253) < 0 || (sn = BIO_get_mem_data(b, &m)) < 0 ||
	    (subj = strndup(sn > 0 ? m : "", (size_t)sn)) == NULL) {
		BIO_free(b);
		goto fail;
	}
	BIO_free(b);
	rv |= xfcc_put(&buf, &len, &cap, "Subject", subj, 1);
	free(subj);
	for (i = 0; i < ids->n; i++)
		if (strncmp(ids->v[i], "dns:", 4) && strncmp(ids->v[i], "ip:",
		    3) && strncmp(ids->v[i], "cn:", 3))
			rv |= xfcc_put(&buf, &len, &cap, "URI", ids->v[i], 0);
	for (i = 0; i < ids->n; i++)
		if (strncmp(ids->v[i], "dns:", 4) == 0)
			rv |= xfcc_put(&buf, &len, &cap, "DNS", ids->v[i] + 4,
			    0);
	if (rv == 0)
		return buf;
 fail:
	free(buf);
	return NULL;
}

/*
 * Builds the head the upstream gets into c->uh, once, from the head that
 * was checked: the routed target and Host, the client's fields that pass,
 * then ours. Nothing here is read again from c->in (a retry resends
 * c->uh as it is). -1 when it could not be built whole.
 */
int
build_upstream_head(struct gwc *c)
{
	struct h1_buf *uh = &c->uh;

	uh->len = uh->lines = 0;
	uh->fail = 0;
	uh->max = UH_MAX;
	/* exactly the target that was routed (normalized), and its Host */
	h1_req_line(&c->rq, uh);
	if (c->rq.host[0] != '\0')
		h1_buf_line(uh, "Host", c->rq.host, strlen(c->rq.host));
	else {
		/* HTTP/1.0 without Host: the upstream's name, as nginx's
		 * proxy_set_header Host $proxy_host (an HTTP/1.1 request
		 * without Host is not valid) */
		const struct proxy_route *r = c->route->r;
		const char *h = r->up_servername ? r->up_servername :
		    strncmp(r->upstream, "unix:", 5) ? r->upstream :
		    "localhost";

		h1_buf_line(uh, "Host", h, strlen(h));
	}
	h1_req_fields(&c->rq, c->gw->l->underscores_pass, uh);
	/* the client's address replaces any claim it made ("[v6]:port":
	 * the address inside the brackets) */
	if (c->client[0] == '[')
		h1_buf_line(uh, "X-Forwarded-For", c->client + 1,
		    strcspn(c->client + 1, "]"));
	else
		h1_buf_line(uh, "X-Forwarded-For", c->client,
		    strcspn(c->client, ":"));
	h1_buf_line(uh, "X-Forwarded-Proto", "https", 5);
	if (c->verified) {
		if (c->xfcc != NULL)
			h1_buf_line(uh, "X-Forwarded-Client-Cert", c->xfcc,
			    strlen(c->xfcc));
		if (c->peer_id != NULL && strncmp(c->peer_id, "spiffe://", 9) ==
		    0)
			h1_buf_line(uh, "X-Client-Spiffe-Id", c->peer_id,
			    strlen(c->peer_id));
	}
	h1_req_framing(&c->rq, uh);
	h1_buf_put(uh, "\r\n", 2);
	return uh->fail ? -1 : 0;
}
