/*
 * Identities: SPIFFE IDs, DNS names, IP addresses; allow rules and their
 * matching; Go-style durations. Hand-written because they are small, on
 * the hot path (matching runs per handshake) and central to our policy;
 * every parser here has a fuzz target (fuzz/).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "internal.h"

static int
why(char *buf, size_t len, const char *fmt, ...) MTLS_PRINTF(3, 4);

static int
why(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (buf != NULL && len > 0) {
		va_start(ap, fmt);
		vsnprintf(buf, len, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int
td_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
	    c == '-' || c == '_';
}

static int
path_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/* Checks the trust domain in [p, p+n). */
static int
td_check(const char *p, size_t n, char *w, size_t wl)
{
	size_t i;

	if (n == 0)
		return why(w, wl, "empty trust domain");
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c >= 'A' && c <= 'Z')
			return why(w, wl, "trust domain must be lowercase");
		if (c == ':')
			return why(w, wl, "trust domain must not have a port");
		if (c == '@')
			return why(w, wl,
			    "trust domain must not have user info");
		if (!td_char(c))
			return why(w, wl,
			    "character '%c' not allowed in trust domain "
			    "(a-z 0-9 . - _)", isprint(c) ? c : '?');
	}
	return 0;
}

/* Checks a trust domain and an optional path of [s, end). <need_path>:
 * a workload ID must have one. */
static int
spiffe_check(const char *id, size_t len, int need_path, char *w, size_t wl)
{
	const char *p, *end, *seg;
	size_t tdlen;

	if (len > SPIFFE_MAX)
		return why(w, wl, "longer than %d bytes", SPIFFE_MAX);
	if (len < 9 || memcmp(id, "spiffe://", 9) != 0)
		return why(w, wl, "must start with spiffe://");
	if (memchr(id, '\0', len) != NULL)
		return why(w, wl, "contains a NUL byte");
	p = id + 9;
	end = id + len;
	seg = memchr(p, '/', (size_t)(end - p));
	tdlen = seg ? (size_t)(seg - p) : (size_t)(end - p);
	if (td_check(p, tdlen, w, wl) != 0)
		return -1;
	if (seg == NULL) {
		if (need_path)
			return why(w, wl,
			    "no path: a workload ID looks like "
			    "spiffe://%.*s/ns/NAME", (int)(tdlen > 64 ? 64 : tdlen), p);
		return 0;
	}
	p = seg;
	while (p < end) {
		const char *s = p + 1, *q = s;

		while (q < end && *q != '/')
			q++;
		if (q == s)
			return why(w, wl, "empty path segment (// or a "
			    "trailing /)");
		if ((q - s == 1 && s[0] == '.') ||
		    (q - s == 2 && s[0] == '.' && s[1] == '.'))
			return why(w, wl, "'.' and '..' segments are not "
			    "allowed");
		for (; s < q; s++) {
			unsigned char c = (unsigned char)*s;

			if (c == '?' || c == '#')
				return why(w, wl, "query and fragment are not "
				    "allowed");
			if (c == '%')
				return why(w, wl, "percent-encoding is not "
				    "allowed");
			if (!path_char(c))
				return why(w, wl, "character '%c' not allowed "
				    "in path (A-Z a-z 0-9 . - _)",
				    isprint(c) ? c : '?');
		}
		p = q;
	}
	return 0;
}

int
mtls_spiffe_id_check(const char *id, char *w, size_t wl)
{
	if (id == NULL)
		return why(w, wl, "missing");
	return spiffe_check(id, strlen(id), 1, w, wl);
}

int
spiffe_trust_domain(const char *id, char *td, size_t td_len)
{
	const char *p, *slash;
	size_t n;

	if (spiffe_check(id, strlen(id), 0, NULL, 0) != 0)
		return -1;
	p = id + 9;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (n + 1 > td_len)
		return -1;
	memcpy(td, p, n);
	td[n] = '\0';
	return 0;
}

int
trust_domain_check(const char *td, char *w, size_t wl)
{
	size_t n = td != NULL ? strlen(td) : 0;

	if (n > TD_MAX)
		return why(w, wl, "trust domain longer than %d bytes", TD_MAX);
	return td_check(td != NULL ? td : "", n, w, wl);
}

int
dns_name_check(const char *name, int wildcard)
{
	size_t len = strlen(name), lab = 0, i;

	if (wildcard && len > 2 && name[0] == '*' && name[1] == '.') {
		name += 2;
		len -= 2;
	}
	if (len == 0 || len > 253)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '.') {
			if (lab == 0 || name[i - 1] == '-')
				return -1;
			lab = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || (c == '_' )))
			return -1;
		if (c == '-' && lab == 0)
			return -1;
		if (++lab > 63)
			return -1;
	}
	return (lab == 0 || name[len - 1] == '-') ? -1 : 0;
}

int
ip_canon(const char *in, char *out, size_t out_len)
{
	unsigned char a[16];

	if (strchr(in, ':') != NULL) {
		if (inet_pton(AF_INET6, in, a) != 1)
			return -1;
		return inet_ntop(AF_INET6, a, out, (socklen_t)out_len) ? 0 : -1;
	}
	if (inet_pton(AF_INET, in, a) != 1)
		return -1;
	return inet_ntop(AF_INET, a, out, (socklen_t)out_len) ? 0 : -1;
}

int
mtls_rule_check(const char *rule, char *w, size_t wl)
{
	size_t len;
	char ip[64];

	if (rule == NULL || *rule == '\0')
		return why(w, wl, "empty rule");
	len = strlen(rule);
	if (strncmp(rule, "spiffe://", 9) == 0) {
		if (len >= 2 && strcmp(rule + len - 2, "/*") == 0)
			return spiffe_check(rule, len - 2, 0, w, wl);
		if (strchr(rule, '*') != NULL)
			return why(w, wl, "'*' is only allowed as a final /* "
			    "segment");
		return spiffe_check(rule, len, 1, w, wl);
	}
	if (strncmp(rule, "dns:", 4) == 0) {
		if (dns_name_check(rule + 4, 1) != 0)
			return why(w, wl, "'%.100s' is not a DNS name (or "
			    "*.suffix)", rule + 4);
		return 0;
	}
	if (strncmp(rule, "ip:", 3) == 0) {
		if (ip_canon(rule + 3, ip, sizeof(ip)) != 0)
			return why(w, wl, "'%.64s' is not an IP address",
			    rule + 3);
		return 0;
	}
	if (strncmp(rule, "cn:", 3) == 0) {
		if (rule[3] == '\0')
			return why(w, wl, "empty cn:");
		return 0;
	}
	return why(w, wl, "'%.100s' is not a rule: use spiffe://TD/PATH, "
	    "spiffe://TD/PREFIX/*, dns:NAME, dns:*.SUFFIX, ip:ADDR or cn:NAME",
	    rule);
}

int
mtls_rule_match(const char *rule, const char *id)
{
	size_t rl, il;
	char a[64], b[64];

	if (rule == NULL || id == NULL)
		return 0;
	rl = strlen(rule);
	il = strlen(id);
	if (strncmp(rule, "spiffe://", 9) == 0) {
		if (strncmp(id, "spiffe://", 9) != 0)
			return 0;
		/* a rule ending in "/" then "*": anything strictly below that path */
		if (rl >= 2 && rule[rl - 1] == '*' && rule[rl - 2] == '/')
			return il > rl - 1 && memcmp(id, rule, rl - 1) == 0;
		return strcmp(rule, id) == 0;
	}
	if (strncmp(rule, "dns:", 4) == 0) {
		if (strncmp(id, "dns:", 4) != 0)
			return 0;
		if (rule[4] == '*' && rule[5] == '.') {
			/* "*.suffix": one or more labels before .suffix */
			size_t sl = rl - 5;

			return il - 4 > sl &&
			    strcasecmp(id + il - sl, rule + 5) == 0 &&
			    id[il - sl - 1] != '.';
		}
		return strcasecmp(rule + 4, id + 4) == 0;
	}
	if (strncmp(rule, "ip:", 3) == 0) {
		if (strncmp(id, "ip:", 3) != 0)
			return 0;
		if (ip_canon(rule + 3, a, sizeof(a)) != 0 ||
		    ip_canon(id + 3, b, sizeof(b)) != 0)
			return 0;
		return strcmp(a, b) == 0;
	}
	if (strncmp(rule, "cn:", 3) == 0)
		return strcmp(rule, id) == 0;
	return 0;
}

/*
 * RFC 6125 section 6.4.3: does the presented DNS SAN <pat> ("*.example.com")
 * name the reference host <ref> ("api.example.com")? Our choices, which are
 * those of the CA/Browser Forum and Go's crypto/x509:
 * - "*" only as the whole leftmost label: "f*.example.com", "*oo.example.com"
 *   and "a.*.example.com" are no wildcards and match nothing but themselves;
 * - it stands for exactly one non-empty label, never several ("*.example.com"
 *   does not match "a.b.example.com" nor "example.com");
 * - at least two labels after it: "*.com" and "*" match nothing (we do not
 *   consult the public suffix list: "*.co.uk" still matches "a.co.uk");
 * - a reference whose leftmost label is an IDNA A-label ("xn--...") is never
 *   matched by a wildcard (RFC 6125 lets a client refuse it; a U-label
 *   behind the "*" is not something a CA can have checked);
 * - ASCII case-insensitive; the reference must be a valid host name.
 */
int
dns_wildcard_match(const char *pat, const char *ref)
{
	const char *rest = pat + 1, *dot;

	if (pat[0] != '*' || pat[1] != '.' || strchr(rest, '*') != NULL ||
	    dns_name_check(pat, 1) != 0 || strchr(rest + 1, '.') == NULL)
		return 0;
	if (dns_name_check(ref, 0) != 0 || strncasecmp(ref, "xn--", 4) == 0)
		return 0;
	if ((dot = strchr(ref, '.')) == NULL || dot == ref)
		return 0;
	return strcasecmp(dot, rest) == 0;
}

/*
 * An expected identity (--dns, --expect, the name a client connects to)
 * against one of the peer's: a rule match, or a DNS reference name matched
 * by a wildcard DNS SAN. Only here: an allow rule "dns:api.example.com" is
 * not met by a client certificate for "*.example.com".
 */
int
ids_expect_match(const char *rule, const char *id)
{
	if (mtls_rule_match(rule, id))
		return 1;
	return rule != NULL && id != NULL && strncmp(rule, "dns:", 4) == 0 &&
	    rule[4] != '*' && strncmp(id, "dns:*.", 6) == 0 &&
	    dns_wildcard_match(id + 4, rule + 4);
}

/* One rule against one identity, as <flags> say. */
static int
rule_match(const char *rule, const char *id, unsigned flags)
{
	if (rule == NULL || id == NULL)
		return 0;
	if ((flags & RULE_ROLE) && ((strcmp(rule, "dns:*") == 0 &&
	    strncmp(id, "dns:", 4) == 0) || (strcmp(rule, "ip:*") == 0 &&
	    strncmp(id, "ip:", 3) == 0)))
		return 1;
	return (flags & RULE_EXPECT) ? ids_expect_match(rule, id) :
	    mtls_rule_match(rule, id);
}

long
rules_match(char * const *rules, size_t n_rules, const char * const *ids,
    size_t n_ids, unsigned flags)
{
	size_t i, j;

	for (i = 0; i < n_rules; i++)
		for (j = 0; j < n_ids; j++)
			if (rule_match(rules[i], ids[j], flags))
				return (long)i;
	return -1;
}

long
rules_match_ids(char * const *rules, size_t n_rules, const struct ids *ids,
    unsigned flags)
{
	return rules_match(rules, n_rules, (const char * const *)ids->v,
	    ids->n, flags);
}

int
mtls_duration_parse(const char *s, int64_t *out)
{
	int64_t total = 0, n, mul;
	int digits;

	if (s == NULL || *s == '\0')
		return -1;
	while (*s != '\0') {
		n = 0;
		digits = 0;
		while (*s >= '0' && *s <= '9') {
			if (n > (INT64_MAX - 9) / 10)
				return -1;
			n = n * 10 + (*s - '0');
			s++;
			digits++;
		}
		if (digits == 0)
			return -1;
		switch (*s) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		case 'w': mul = 7 * 86400; break;
		default: return -1;	/* a unit is required */
		}
		s++;
		if (n > INT64_MAX / mul || total > INT64_MAX - n * mul)
			return -1;
		total += n * mul;
	}
	if (total <= 0)
		return -1;
	*out = total;
	return 0;
}

void
ids_free(struct ids *ids)
{
	strv_free(ids->v, ids->n);
	ids->v = NULL;
	ids->n = 0;
	ids->n_uri = 0;
	ids->bad_uri = 0;
	ids->bad_other = 0;
	free(ids->bad);
	ids->bad = NULL;
}

int
strv_add(char ***v, size_t *n, const char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(*nv));

	if (nv == NULL)
		return -1;
	*v = nv;
	if ((nv[*n] = strdup(s)) == NULL)
		return -1;
	(*n)++;
	return 0;
}

void
strv_free(char **v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
ids_add(struct ids *ids, const char *prefix, const char *val, size_t len)
{
	char **nv, *s;
	size_t pl = strlen(prefix);

	if (len > SPIFFE_MAX + 64)
		return -1;
	if ((s = malloc(pl + len + 1)) == NULL)
		return -1;
	memcpy(s, prefix, pl);
	memcpy(s + pl, val, len);
	s[pl + len] = '\0';
	if ((nv = realloc(ids->v, (ids->n + 1) * sizeof(*nv))) == NULL) {
		free(s);
		return -1;
	}
	ids->v = nv;
	ids->v[ids->n++] = s;
	return 0;
}

int
ids_copy(struct ids *dst, const struct ids *src)
{
	size_t i;

	memset(dst, 0, sizeof(*dst));
	for (i = 0; i < src->n; i++)
		if (ids_add(dst, "", src->v[i], strlen(src->v[i])) != 0) {
			ids_free(dst);
			return -1;
		}
	dst->n_uri = src->n_uri;
	return 0;
}

/* 0 when every byte of a name is printable ASCII without space. */
static int
name_bytes_ok(const unsigned char *d, int l)
{
	int i;

	for (i = 0; i < l; i++)
		if (d[i] < 0x21 || d[i] >= 0x7f)
			return -1;
	return 0;
}

/* Records the first refused name of <ids>, escaped, for the reason. */
static void
ids_refuse(struct ids *ids, const char *what, const unsigned char *d, int l)
{
	char e[320];

	if (ids->bad != NULL || (ids->bad = malloc(sizeof(e) + 32)) == NULL)
		return;
	esc_text(e, sizeof(e), d, (size_t)(l < 0 ? 0 : l), SIZE_MAX,
	    ESC_SQUOTE | ESC_DQUOTE | ESC_SPACE);
	snprintf(ids->bad, sizeof(e) + 32, "%s '%s'", what, e);
}

/*
 * A name becomes an identity (a peer_id, a log field, a header value, the
 * input of a rule) only if every byte is printable ASCII other than space:
 * "spiffe://td/a\r\nX-Injected: 1" must never reach an upstream. A URI or
 * DNS SAN with any other byte is counted in bad_uri / bad_other, and the
 * verifier refuses the chain (check_svid). A subject CN with a control byte
 * is refused likewise; a CN with a space or non-ASCII letters ("CN=Jane
 * Doe") is ordinary in X.500 names of people, so it is only not an
 * identity: refusing it would refuse every such client certificate.
 */
int
ids_from_cert(X509 *x, struct ids *ids, struct mtls_error *err)
{
	GENERAL_NAMES *gens;
	X509_NAME *subj;
	char ip[64];
	int i, idx;

	memset(ids, 0, sizeof(*ids));
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		int l, r = 0;

		switch (g->type) {
		case GEN_URI:
			d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
			l = ASN1_STRING_length(g->d.uniformResourceIdentifier);
			ids->n_uri++;
			/* An embedded NUL would let "spiffe://td/admin\0x"
			 * pass as "spiffe://td/admin": never take such a name. */
			if (l > SPIFFE_MAX || name_bytes_ok(d, l) != 0) {
				ids->bad_uri++;
				ids_refuse(ids, "URI SAN", d, l > 300 ? 300 : l);
				break;
			}
			r = ids_add(ids, "", (const char *)d, (size_t)l);
			break;
		case GEN_DNS:
			d = ASN1_STRING_get0_data(g->d.dNSName);
			l = ASN1_STRING_length(g->d.dNSName);
			if (l > 255 || name_bytes_ok(d, l) != 0) {
				ids->bad_other++;
				ids_refuse(ids, "DNS SAN", d, l > 300 ? 300 : l);
				break;
			}
			r = ids_add(ids, "dns:", (const char *)d, (size_t)l);
			break;
		case GEN_IPADD:
			d = ASN1_STRING_get0_data(g->d.iPAddress);
			l = ASN1_STRING_length(g->d.iPAddress);
			if ((l == 4 && inet_ntop(AF_INET, d, ip, sizeof(ip))) ||
			    (l == 16 && inet_ntop(AF_INET6, d, ip, sizeof(ip))))
				r = ids_add(ids, "ip:", ip, strlen(ip));
			break;
		default:
			break;
		}
		if (r != 0) {
			GENERAL_NAMES_free(gens);
			ids_free(ids);
			return error_set(err, MTLS_ERR_NOMEM,
			    "certificate: identity too long or out of memory");
		}
	}
	GENERAL_NAMES_free(gens);
	subj = X509_get_subject_name(x);
	idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx >= 0) {
		ASN1_STRING *cn = X509_NAME_ENTRY_get_data(
		    X509_NAME_get_entry(subj, idx));
		unsigned char *u = NULL;
		int l = ASN1_STRING_to_UTF8(&u, cn), j, ctl = 0, odd = 0;

		for (j = 0; j < l; j++) {
			ctl |= u[j] < 0x20 || u[j] == 0x7f;
			odd |= u[j] == ' ' || u[j] >= 0x80;
		}
		if (l >= 0 && (l > 1024 || ctl)) {
			ids->bad_other++;
			ids_refuse(ids, "subject CN", u, l > 300 ? 300 : l);
			l = -1;
		}
		if (l >= 0 && !odd &&
		    ids_add(ids, "cn:", (char *)u, (size_t)l) != 0) {
			OPENSSL_free(u);
			ids_free(ids);
			return error_set(err, MTLS_ERR_NOMEM,
			    "certificate: out of memory");
		}
		OPENSSL_free(u);
	}
	return 0;
}

const char *
ids_primary(const struct ids *ids)
{
	static const char *order[] = { "spiffe://", "dns:", "ip:", "cn:" };
	size_t i, k;

	for (k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		for (i = 0; i < ids->n; i++)
			if (strncmp(ids->v[i], order[k], strlen(order[k])) == 0)
				return ids->v[i];
	return NULL;
}
