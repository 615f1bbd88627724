/*
 * The request head's grammar and normal forms (http.h, "norm.c"): no I/O,
 * so each rule is unit-tested (tests/unit/test_norm.c) and fuzzed
 * (fuzz_gateway) byte by byte.
 *
 * A gateway that routes on one spelling of a request and an upstream that
 * acts on another is an authorization bypass ("/app/%61dmin" routed as
 * "/app", decoded by the upstream to "/app/admin"). So the target and the
 * Host are normalized once, routed on, and forwarded exactly as routed;
 * anything outside the grammar is refused rather than guessed at.
 */
#include <string.h>

#include "internal.h"
#include "http/http.h"

/* Byte classes, one table lookup each (a strchr per byte cost more than
 * the rest of the head check). GNU range designators. */
#define C_TCHAR		1	/* RFC 9110 5.6.2 tchar */
#define C_UNRES		2	/* RFC 3986 2.3 unreserved */
#define C_TARGET	4	/* RFC 3986 3.3 pchar without pct-encoded, '/',
				 * '%' (checked by the caller) */
#define C_HOST		8	/* letters, digits, '-', '.', '_' */

static const unsigned char cls[256] = {
	['a' ... 'z'] = C_TCHAR | C_UNRES | C_TARGET | C_HOST,
	['A' ... 'Z'] = C_TCHAR | C_UNRES | C_TARGET | C_HOST,
	['0' ... '9'] = C_TCHAR | C_UNRES | C_TARGET | C_HOST,
	['-'] = C_TCHAR | C_UNRES | C_TARGET | C_HOST,
	['.'] = C_TCHAR | C_UNRES | C_TARGET | C_HOST,
	['_'] = C_TCHAR | C_UNRES | C_TARGET | C_HOST,
	['~'] = C_TCHAR | C_UNRES | C_TARGET,
	['!'] = C_TCHAR | C_TARGET, ['$'] = C_TCHAR | C_TARGET,
	['&'] = C_TCHAR | C_TARGET, ['\''] = C_TCHAR | C_TARGET,
	['*'] = C_TCHAR | C_TARGET, ['+'] = C_TCHAR | C_TARGET,
	['%'] = C_TCHAR | C_TARGET,
	['#'] = C_TCHAR, ['^'] = C_TCHAR, ['`'] = C_TCHAR, ['|'] = C_TCHAR,
	['('] = C_TARGET, [')'] = C_TARGET, [','] = C_TARGET,
	[';'] = C_TARGET, ['='] = C_TARGET, [':'] = C_TARGET,
	['@'] = C_TARGET, ['/'] = C_TARGET,
};

static int
is_tchar(unsigned char c)
{
	return cls[c] & C_TCHAR;
}

static int
is_unreserved(unsigned char c)
{
	return cls[c] & C_UNRES;
}

static int
is_target_char(unsigned char c, int query)
{
	return (cls[c] & C_TARGET) || (query && c == '?');
}

int
http_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 9112 3: method SP request-target SP HTTP-version, exactly. */
static const char *
request_line_check(const char *p, size_t n)
{
	size_t i = 0, t0;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ' ')
		return "malformed request line (want METHOD SP target SP "
		    "HTTP/1.1)";
	t0 = ++i;
	while (i < n && p[i] != ' ') {
		if (!is_target_char((unsigned char)p[i], 1))
			return "byte outside the request-target grammar "
			    "(whitespace, control, non-ASCII or a delimiter)";
		i++;
	}
	if (i == t0 || i == n)
		return "malformed request line (want METHOD SP target SP "
		    "HTTP/1.1)";
	i++;
	if (n - i != 8 || memcmp(p + i, "HTTP/", 5) != 0 ||
	    p[i + 5] < '0' || p[i + 5] > '9' || p[i + 6] != '.' ||
	    p[i + 7] < '0' || p[i + 7] > '9')
		return "malformed HTTP version in the request line";
	return NULL;
}

/* RFC 9112 5.1: field-name ":" with no whitespace before the colon. */
static const char *
field_line_check(const char *p, size_t n)
{
	size_t i = 0;

	if (n > 0 && (p[0] == ' ' || p[0] == '\t'))
		return "folded header line (obs-fold)";
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i < n && p[i] == ':' && i > 0)
		return NULL;
	if (i < n && (p[i] == ' ' || p[i] == '\t'))
		return "whitespace between a header field name and the colon";
	return "malformed header field name";
}

const char *
http_head_check(const char *h, size_t n)
{
	size_t i = 0;
	int line = 0;

	while (i < n) {
		size_t e = i, len;
		const char *why;

		for (; e < n && h[e] != '\r' && h[e] != '\n'; e++) {
			unsigned char ch = (unsigned char)h[e];

			if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
				return "control character in the request head";
		}
		if (e == n)
			return NULL;	/* a line still coming */
		if (h[e] == '\n')
			return "bare LF in the request head";
		if (e + 1 == n)
			return NULL;	/* its LF still coming */
		if (h[e + 1] != '\n')
			return "bare CR in the request head";
		len = e - i;
		if (len == 0) {
			/* RFC 9112 2.2: empty lines before the request line
			 * are ignored; after it, the head ends */
			if (line > 0)
				return NULL;
		} else {
			why = line == 0 ? request_line_check(h + i, len) :
			    field_line_check(h + i, len);
			if (why != NULL)
				return why;
			line++;
		}
		i = e + 2;
	}
	return NULL;
}

/*
 * RFC 3986 5.2.4 on <p> (a decoded path starting with '/'), in place:
 * "." and ".." segments removed. -1 when ".." would climb above the root
 * or when a segment is empty ("//" anywhere but a trailing slash, after
 * the removal too): the gateway does not merge slashes, and an upstream
 * that does would see another path than the one routed.
 */
static int
remove_dots(char *p, size_t *plen, const char **why)
{
	size_t n = *plen, i = 1, o = 0;
	int trailing = 0;

	/* p[0] == '/'; segments are p[i..j) between slashes; output is
	 * built at p[0..o) as "/seg/seg" (o never passes i) */
	for (;;) {
		size_t j = i;

		while (j < n && p[j] != '/')
			j++;
		trailing = 0;
		if (j - i == 0) {
			if (j < n) {
				*why = "empty path segment ('//')";
				return -1;
			}
			trailing = 1;
		} else if (j - i == 1 && p[i] == '.') {
			trailing = 1;
		} else if (j - i == 2 && p[i] == '.' && p[i + 1] == '.') {
			if (o == 0) {
				*why = "'..' above the root of the path";
				return -1;
			}
			while (o > 0 && p[o - 1] != '/')
				o--;
			o--;	/* the '/' before the popped segment */
			trailing = 1;
		} else {
			p[o++] = '/';
			memmove(p + o, p + i, j - i);
			o += j - i;
		}
		if (j >= n)
			break;
		i = j + 1;
	}
	if (trailing || o == 0)
		p[o++] = '/';
	p[o] = '\0';
	*plen = o;
	return 0;
}

int
http_target_normalize(const char *t, size_t n, char *out, size_t outsz,
    size_t *path_len, const char **why)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0, q;

	*path_len = 0;
	if (outsz > 0)
		out[0] = '\0';
	if (n == 0 || t[0] != '/') {
		*why = "the request target must be a path (origin-form; "
		    "absolute-form, authority-form and '*' are refused)";
		return 400;
	}
	if (n >= outsz) {
		*why = "the request target is too long";
		return 414;
	}
	q = 0;
	while (q < n && t[q] != '?')
		q++;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t[i];

		if (c == '\\') {
			*why = "backslash in the request target";
			return 400;
		}
		if (!is_target_char(c, i >= q)) {
			*why = "byte outside the request-target grammar "
			    "(whitespace, control, non-ASCII or a delimiter)";
			return 400;
		}
		if (c == '%' && (i + 2 >= n || http_hexval((unsigned char)
		    t[i + 1]) < 0 || http_hexval((unsigned char)t[i + 2]) < 0)) {
			*why = "bad percent-encoding in the request target";
			return 400;
		}
	}
	/* the path: RFC 3986 6.2.2.1 and 6.2.2.2 */
	for (i = 0; i < q; i++) {
		int v;

		if (t[i] != '%') {
			out[o++] = t[i];
			continue;
		}
		v = http_hexval((unsigned char)t[i + 1]) * 16 +
		    http_hexval((unsigned char)t[i + 2]);
		i += 2;
		if (v == '/' || v == '\\' || v == 0) {
			/* decoding would change the path's structure (or end
			 * it): Envoy keeps %2F by default, we refuse */
			*why = "encoded '/', '\\' or NUL in the path";
			return 400;
		}
		if (is_unreserved((unsigned char)v)) {
			out[o++] = (char)v;
		} else {
			out[o++] = '%';
			out[o++] = hex[v >> 4];
			out[o++] = hex[v & 15];
		}
	}
	out[o] = '\0';
	/* RFC 3986 6.2.2.3 */
	if (remove_dots(out, &o, why) != 0)
		return 400;
	*path_len = o;
	/* the query as received (its bytes are checked above) */
	memcpy(out + o, t + q, n - q);
	out[o + n - q] = '\0';
	return 0;
}

int
http_host_normalize(const char *h, size_t n, char *out, size_t outsz,
    size_t *host_len, const char **why)
{
	size_t i = 0, o = 0, hend;

	*host_len = 0;
	if (outsz > 0)
		out[0] = '\0';
	if (n >= outsz || n > 261) {
		*why = "Host is too long";
		return -1;
	}
	if (n == 0)
		return 0;
	if (h[0] == '[') {
		/* IP-literal: hex, ':' and '.' (no zone, no IPvFuture) */
		out[o++] = '[';
		for (i = 1; i < n && h[i] != ']'; i++) {
			unsigned char c = (unsigned char)h[i];

			if (http_hexval(c) < 0 && c != ':' && c != '.') {
				*why = c == '%' ? "percent-escape in Host" :
				    "invalid character in the Host IP literal";
				return -1;
			}
			out[o++] = (char)(c >= 'A' && c <= 'F' ? c + 32 : c);
		}
		if (i == n || i == 1) {
			*why = "unterminated or empty IP literal in Host";
			return -1;
		}
		out[o++] = ']';
		i++;
		hend = o;
	} else {
		for (; i < n && h[i] != ':'; i++) {
			unsigned char c = (unsigned char)h[i];

			if (c == '%') {
				*why = "percent-escape in Host";
				return -1;
			}
			if (!(cls[c] & C_HOST)) {
				*why = "invalid character in Host";
				return -1;
			}
			out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		/* one trailing dot: "example.org." names example.org */
		if (o > 0 && out[o - 1] == '.')
			o--;
		if (o == 0 || out[0] == '.' || out[o - 1] == '.' ||
		    memmem(out, o, "..", 2) != NULL) {
			*why = "empty label in Host";
			return -1;
		}
		hend = o;
	}
	if (i < n) {
		size_t d = 0;
		long port = 0;

		if (h[i] != ':') {
			*why = "invalid character after the Host IP literal";
			return -1;
		}
		out[o++] = ':';
		for (i++; i < n; i++, d++) {
			if (h[i] < '0' || h[i] > '9' || d == 5) {
				*why = "invalid port in Host";
				return -1;
			}
			port = port * 10 + (h[i] - '0');
			out[o++] = h[i];
		}
		if (d == 0 || port > 65535) {
			*why = "invalid port in Host";
			return -1;
		}
	}
	out[o] = '\0';
	*host_len = hend;
	return 0;
}

int
http_name_folded_eq(const char *name, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (lit[i] == '\0')
			return 0;
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		else if (c == '_')
			c = '-';
		if (c != (unsigned char)lit[i])
			return 0;
	}
	return lit[n] == '\0';
}

size_t
http_esc(char *dst, size_t dstsz, const char *p, size_t n, size_t max)
{
	return esc_text(dst, dstsz, p, n, max, ESC_SQUOTE | ESC_DQUOTE);
}

int
http_value_visible(const char *s, int allow_sp)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x21 || c > 0x7e) {
			if (!(allow_sp && c == ' '))
				return 0;
		}
	}
	return 1;
}

size_t
http_xfcc_put(char *dst, size_t dstsz, const char *key, const char *val,
    int force_quote)
{
	size_t o = 0, need = strlen(key) + 4;
	int q = force_quote || strpbrk(val, ",;=\" ") != NULL;
	const char *v;

	for (v = val; *v; v++)
		need += *v == '"' || *v == '\\' ? 2 : 1;
	if (need >= dstsz)
		return 0;
	memcpy(dst, key, strlen(key));
	o = strlen(key);
	dst[o++] = '=';
	if (q)
		dst[o++] = '"';
	for (v = val; *v; v++) {
		if (q && (*v == '"' || *v == '\\'))
			dst[o++] = '\\';
		dst[o++] = *v;
	}
	if (q)
		dst[o++] = '"';
	dst[o] = '\0';
	return o;
}
