/*
 * The small INI-style format of ca.conf:
 *     # comment
 *     [section]          or   [role "name"]  (passed to the callback as "role name")
 *     key = value        (value to end of line, surrounding blanks trimmed;
 *                         "double quotes" may wrap a value)
 * Hand-written because it is a few dozen lines and a library for it would
 * be bigger than the parser; fuzzed by fuzz/fuzz_conf.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CONF_LINE_MAX	4096

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
ident(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' ||
		    *s == '.'))
			return 0;
	return 1;
}

int
conf_parse(const char *text, size_t len, const char *name, conf_cb cb,
    void *arg, struct mtls_error *err)
{
	char line[CONF_LINE_MAX], section[CONF_LINE_MAX];
	size_t pos = 0;
	int lineno = 0;

	section[0] = '\0';
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *s, *eq, *key, *val;

		lineno++;
		if (n >= sizeof(line))
			return error_set(err, MTLS_ERR_PARSE,
			    "%s:%d: line longer than %d bytes", name, lineno,
			    CONF_LINE_MAX - 1);
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + (nl ? 1 : 0);
		if (memchr(line, '\0', n) != NULL)
			return error_set(err, MTLS_ERR_PARSE,
			    "%s:%d: NUL byte", name, lineno);
		s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *e = strchr(s, ']'), *q1, *q2;

			if (e == NULL || *trim(e + 1) != '\0')
				return error_set(err, MTLS_ERR_PARSE,
				    "%s:%d: section header needs a closing ']'",
				    name, lineno);
			*e = '\0';
			s = trim(s + 1);
			if ((q1 = strchr(s, '"')) != NULL) {
				q2 = strrchr(s, '"');
				if (q2 == q1 || q2[1] != '\0' ||
				    memchr(q1 + 1, '"', (size_t)(q2 - q1 - 1)))
					return error_set(err, MTLS_ERR_PARSE,
					    "%s:%d: section name needs matching "
					    "quotes: [role \"name\"]", name,
					    lineno);
				*q2 = '\0';
				*q1 = '\0';
				key = trim(s);
				if (!ident(key) || !ident(q1 + 1))
					return error_set(err, MTLS_ERR_PARSE,
					    "%s:%d: bad section name", name,
					    lineno);
				snprintf(section, sizeof(section), "%s %s", key,
				    q1 + 1);
			} else {
				if (!ident(s))
					return error_set(err, MTLS_ERR_PARSE,
					    "%s:%d: bad section name", name,
					    lineno);
				snprintf(section, sizeof(section), "%s", s);
			}
			continue;
		}
		if ((eq = strchr(s, '=')) == NULL)
			return error_set(err, MTLS_ERR_PARSE,
			    "%s:%d: expected 'key = value'", name, lineno);
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		if (!ident(key))
			return error_set(err, MTLS_ERR_PARSE,
			    "%s:%d: bad key '%.64s'", name, lineno, key);
		n = strlen(val);
		if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
			val[n - 1] = '\0';
			val++;
		}
		if (cb(arg, section, key, val, lineno, err) != 0)
			return -1;
	}
	return 0;
}

int
conf_number(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t v = 0;
	size_t n = strlen(s), i;

	if (n == 0 || n > 18 || (s[0] == '0' && n > 1))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}
