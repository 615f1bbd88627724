/*
 * The head the upstream gets (gw_int.h): which of the client's fields pass
 * (hop-by-hop, claims about the client, Connection-listed names), the
 * routed target and Host, X-Forwarded-For and -Proto, and the identity
 * headers: X-Forwarded-Client-Cert (Envoy's format) and
 * X-Client-Spiffe-Id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "proxy/gw_int.h"

/* The fuzz targets' check of each head built (NULL outside them). */
void (*fz_head_check)(const struct gwc *);

static void
uh_put(struct gwc *c, const void *p, size_t n)
{
	if (c->uh_fail)
		return;
	if (c->uh_len + n > UH_MAX) {
		c->uh_fail = 1;
		return;
	}
	if (c->uh_len + n > c->uh_cap) {
		size_t nc = c->uh_cap ? c->uh_cap : 4096;
		char *nb;

		while (nc < c->uh_len + n)
			nc *= 2;
		if ((nb = realloc(c->uh, nc)) == NULL) {
			c->uh_fail = 1;
			return;
		}
		c->uh = nb;
		c->uh_cap = nc;
	}
	memcpy(c->uh + c->uh_len, p, n);
	c->uh_len += n;
}

/* One line "<name>: <value>\r\n" of the upstream head. */
static void
uh_line(struct gwc *c, const char *name, const char *v, size_t vn)
{
	uh_put(c, name, strlen(name));
	uh_put(c, ": ", 2);
	uh_put(c, v, vn);
	uh_put(c, "\r\n", 2);
	c->uh_lines++;
}

/* ---- which fields pass (the grammar: http_head_check, norm.c) ---- */

int
span_eq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* A value trimmed of surrounding blanks. */
void
trim(const char **p, size_t *n)
{
	while (*n > 0 && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* 1 when <name> is listed in a Connection header value <v>. */
int
conn_lists(const char *v, size_t vn, const char *name, size_t nn)
{
	while (vn > 0) {
		const char *e = memchr(v, ',', vn);
		size_t k = e ? (size_t)(e - v) : vn;
		const char *t = v;
		size_t tn = k;

		trim(&t, &tn);
		if (tn == nn && strncasecmp(t, name, nn) == 0)
			return 1;
		v += e ? k + 1 : k;
		vn -= e ? k + 1 : k;
	}
	return 0;
}

/*
 * Hop-by-hop and identity headers: never forwarded as received. Names
 * are compared after case and '-'/'_' folding: CGI, WSGI and PHP map
 * "X_Client_Spiffe_Id" and "X-Client-Spiffe-Id" to one variable, so a
 * client's underscore spelling would otherwise reach the upstream as our
 * identity header.
 */
static int
name_in(const char *const *list, const char *n, size_t len)
{
	for (; *list != NULL; list++)
		if (http_name_folded_eq(n, len, *list))
			return 1;
	return 0;
}

int
is_hop(const char *n, size_t len)
{
	static const char *const hop[] = { "connection", "keep-alive",
	    "proxy-connection", "te", "trailer", "transfer-encoding",
	    "upgrade", "content-length", "expect", "x-forwarded-client-cert",
	    "x-client-spiffe-id", "proxy-authorization", NULL };

	return name_in(hop, n, len);
}

/* What a client must not claim about itself or the request (folded as
 * is_hop): we set Host (normalized), X-Forwarded-For and -Proto; the
 * rest is dropped. */
static int
is_claim(const char *n, size_t len)
{
	static const char *const claim[] = { "host", "forwarded",
	    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
	    "x-forwarded-port", "x-real-ip", NULL };

	return name_in(claim, n, len);
}

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

const struct field *
field(const struct gwc *c, const char *name, int *count)
{
	const struct field *hit = NULL;
	size_t i;

	*count = 0;
	for (i = 0; i < c->nf; i++)
		if (span_eq(c->f[i].name, c->f[i].nlen, name)) {
			if (hit == NULL)
				hit = &c->f[i];
			(*count)++;
		}
	return hit;
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
	const struct field *conn;
	int n;
	size_t i;

	c->uh_len = c->uh_lines = 0;
	c->uh_fail = 0;
	conn = field(c, "connection", &n);
	/* exactly the target that was routed (normalized), and its Host */
	uh_put(c, c->method, strlen(c->method));
	uh_put(c, " ", 1);
	uh_put(c, c->target, strlen(c->target));
	uh_put(c, " HTTP/1.1\r\n", 11);
	if (c->host[0] != '\0')
		uh_line(c, "Host", c->host, strlen(c->host));
	else {
		/* HTTP/1.0 without Host: the upstream's name, as nginx's
		 * proxy_set_header Host $proxy_host (an HTTP/1.1 request
		 * without Host is not valid) */
		const struct proxy_route *r = c->route->r;
		const char *h = r->up_servername ? r->up_servername :
		    strncmp(r->upstream, "unix:", 5) ? r->upstream :
		    "localhost";

		uh_line(c, "Host", h, strlen(h));
	}
	for (i = 0; i < c->nf; i++) {
		const struct field *f = &c->f[i];

		if (is_hop(f->name, f->nlen) || is_claim(f->name, f->nlen) ||
		    (conn != NULL && conn_lists(conn->value, conn->vlen,
		    f->name, f->nlen)))
			continue;
		/* nginx's underscores_in_headers off: a name with '_' is
		 * dropped unless the listener passes them */
		if (!c->gw->l->underscores_pass &&
		    memchr(f->name, '_', f->nlen) != NULL)
			continue;
		uh_put(c, f->name, f->nlen);
		uh_put(c, ": ", 2);
		uh_put(c, f->value ? f->value : "", f->vlen);
		uh_put(c, "\r\n", 2);
		c->uh_lines++;
	}
	/* the client's address replaces any claim it made ("[v6]:port":
	 * the address inside the brackets) */
	if (c->client[0] == '[')
		uh_line(c, "X-Forwarded-For", c->client + 1,
		    strcspn(c->client + 1, "]"));
	else
		uh_line(c, "X-Forwarded-For", c->client,
		    strcspn(c->client, ":"));
	uh_line(c, "X-Forwarded-Proto", "https", 5);
	if (c->verified) {
		if (c->xfcc != NULL)
			uh_line(c, "X-Forwarded-Client-Cert", c->xfcc,
			    strlen(c->xfcc));
		if (c->peer_id != NULL && strncmp(c->peer_id, "spiffe://", 9) ==
		    0)
			uh_line(c, "X-Client-Spiffe-Id", c->peer_id,
			    strlen(c->peer_id));
	}
	if (c->rp.flags & F_CHUNKED) {
		c->up_chunked = 1;
		uh_line(c, "Transfer-Encoding", "chunked", 7);
	} else if (c->rp.flags & F_CONTENTLENGTH) {
		char cl[24];

		n = snprintf(cl, sizeof(cl), "%llu",
		    (unsigned long long)c->rp.content_length);
		uh_line(c, "Content-Length", cl, (size_t)n);
	}
	uh_put(c, "\r\n", 2);
	if (fz_head_check != NULL && !c->uh_fail)
		fz_head_check(c);
	return c->uh_fail ? -1 : 0;
}
