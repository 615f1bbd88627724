/*
 * X.509 objects as bytes: PEM/DER (and PKCS#12) loading of certificates
 * and CRLs; small X.509 helpers shared by issuance, verification and
 * inspection (serials, names, times, fingerprints). All parsing is
 * OpenSSL's; we add the checks around it (trailing garbage, empty files)
 * and messages that name the file. Keys are in key.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <openssl/pkcs12.h>

#include "internal.h"

/* Only blanks may follow the last PEM block. */
static int
only_space(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isspace(p[i]))
			return 0;
	return 1;
}

int
certs_parse(const uint8_t *buf, size_t len, const char *name,
    STACK_OF(X509) **out, struct mtls_error *err)
{
	STACK_OF(X509) *sk;
	BIO *bio = NULL;
	PKCS12 *p12;
	X509 *x;
	size_t i;
	int rv = -1;

	*out = NULL;
	if (len == 0 || only_space(buf, len))
		return error_set(err, MTLS_ERR_PARSE,
		    "%s: empty: expected a PEM or DER certificate", name);
	if (len > INT32_MAX)
		return error_set(err, MTLS_ERR_PARSE, "%s: too large", name);
	for (i = 0; i < len && isspace(buf[i]); i++)
		;
	if (buf[i] == '{')	/* a SPIFFE trust bundle */
		return jwks_parse(buf, len, name, out, err);
	if ((sk = sk_X509_new_null()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", name);
	if ((bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", name);
		goto err;
	}
	if (memmem(buf, len, "-----BEGIN", 10) == NULL) {
		/* DER: exactly one certificate, nothing after it. */
		const unsigned char *p = buf;

		x = d2i_X509(NULL, &p, (long)len);
		if (x == NULL) {
			p = buf;
			if ((p12 = d2i_PKCS12(NULL, &p, (long)len)) != NULL) {
				PKCS12_free(p12);
				ERR_clear_error();
				BIO_free(bio);
				sk_X509_free(sk);
				return pkcs12_parse(buf, len, name, NULL, NULL,
				    out, err);
			}
			error_set_ossl(err, MTLS_ERR_PARSE,
			    "%s: not a certificate (neither PEM, DER, PKCS#12 "
			    "nor a SPIFFE bundle)", name);
			goto err;
		}
		if (p != buf + len) {
			X509_free(x);
			error_set(err, MTLS_ERR_PARSE,
			    "%s: %zu bytes of garbage after the DER certificate",
			    name, (size_t)(buf + len - p));
			goto err;
		}
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", name);
			goto err;
		}
	} else {
		for (;;) {
			char *pname = NULL, *header = NULL;
			unsigned char *data = NULL;
			long dlen = 0;
			const unsigned char *p;

			if (!PEM_read_bio(bio, &pname, &header, &data, &dlen)) {
				unsigned long e = ERR_peek_last_error();

				if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE &&
				    sk_X509_num(sk) > 0) {
					ERR_clear_error();
					break;
				}
				error_set_ossl(err, MTLS_ERR_PARSE,
				    "%s: PEM block %d is truncated or damaged",
				    name, sk_X509_num(sk) + 1);
				goto err;
			}
			x = NULL;
			if (strcmp(pname, "CERTIFICATE") == 0 ||
			    strcmp(pname, "TRUSTED CERTIFICATE") == 0 ||
			    strcmp(pname, "X509 CERTIFICATE") == 0) {
				p = data;
				x = d2i_X509(NULL, &p, dlen);
				if (x == NULL || p != data + dlen) {
					X509_free(x);
					x = NULL;
					error_set_ossl(err, MTLS_ERR_PARSE,
					    "%s: certificate %d is not valid DER",
					    name, sk_X509_num(sk) + 1);
				}
			}
			OPENSSL_free(pname);
			OPENSSL_free(header);
			OPENSSL_free(data);
			if (x == NULL && err->code != MTLS_ERR_NONE)
				goto err;
			/* Other blocks (a key in a combined file) are skipped. */
			if (x != NULL && !sk_X509_push(sk, x)) {
				X509_free(x);
				error_set(err, MTLS_ERR_NOMEM, "%s: out of memory",
				    name);
				goto err;
			}
		}
		if (sk_X509_num(sk) == 0) {
			error_set(err, MTLS_ERR_PARSE,
			    "%s: no CERTIFICATE block found", name);
			goto err;
		}
	}
	*out = sk;
	sk = NULL;
	rv = 0;
 err:
	BIO_free(bio);
	sk_X509_pop_free(sk, X509_free);
	return rv;
}

int
certs_load(const char *path, STACK_OF(X509) **out, struct mtls_error *err)
{
	uint8_t *buf;
	size_t len;
	int rv;

	error_clear(err);
	if (fs_read(path, MTLS_MAX_FILE, &buf, &len, err) != 0)
		return -1;
	rv = certs_parse(buf, len, path, out, err);
	free(buf);
	return rv;
}

int
certs_load_pass(const char *path, const struct mtls_secret *pass,
    STACK_OF(X509) **out, EVP_PKEY **key, struct mtls_error *err)
{
	const unsigned char *p;
	PKCS12 *p12;
	uint8_t *buf;
	size_t len;
	int rv;

	error_clear(err);
	if (key != NULL)
		*key = NULL;
	if (fs_read(path, MTLS_MAX_FILE, &buf, &len, err) != 0)
		return -1;
	p = buf;
	if (len < INT32_MAX && (p12 = d2i_PKCS12(NULL, &p, (long)len)) != NULL) {
		PKCS12_free(p12);
		rv = pkcs12_parse(buf, len, path, pass, key, out, err);
	} else {
		ERR_clear_error();
		rv = certs_parse(buf, len, path, out, err);
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}

int
certs_pem(STACK_OF(X509) *sk, char **pem, size_t *len)
{
	BIO *bio;
	BUF_MEM *mem;
	int i;

	*pem = NULL;
	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	for (i = 0; i < sk_X509_num(sk); i++)
		if (!PEM_write_bio_X509(bio, sk_X509_value(sk, i))) {
			BIO_free(bio);
			return -1;
		}
	BIO_get_mem_ptr(bio, &mem);
	if ((*pem = malloc(mem->length + 1)) == NULL) {
		BIO_free(bio);
		return -1;
	}
	if (mem->length > 0)	/* an empty stack: no data pointer */
		memcpy(*pem, mem->data, mem->length);
	(*pem)[mem->length] = '\0';
	*len = mem->length;
	BIO_free(bio);
	return 0;
}

int
crls_load(const char *path, STACK_OF(X509_CRL) **out, struct mtls_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv;

	if (fs_read(path, MTLS_MAX_FILE, &buf, &len, err) != 0)
		return -1;
	rv = crls_parse(buf, len, path, out, err);
	free(buf);
	return rv;
}

int
crls_parse(const uint8_t *buf, size_t len, const char *path,
    STACK_OF(X509_CRL) **out, struct mtls_error *err)
{
	STACK_OF(X509_CRL) *sk = NULL;
	BIO *bio = NULL;
	X509_CRL *c;
	int rv = -1;

	if (len > MTLS_MAX_FILE)
		return error_set(err, MTLS_ERR_PARSE, "%s: too large", path);
	if ((sk = sk_X509_CRL_new_null()) == NULL ||
	    (bio = BIO_new_mem_buf(buf, (int)len)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
		goto err;
	}
	if (memmem(buf, len, "-----BEGIN", 10) != NULL) {
		while ((c = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL)
			if (!sk_X509_CRL_push(sk, c)) {
				X509_CRL_free(c);
				error_set(err, MTLS_ERR_NOMEM, "%s: out of memory",
				    path);
				goto err;
			}
		if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE ||
		    sk_X509_CRL_num(sk) == 0) {
			error_set_ossl(err, MTLS_ERR_PARSE,
			    "%s: not a CRL, or a damaged one", path);
			goto err;
		}
		ERR_clear_error();
	} else {
		const unsigned char *p = buf;

		c = d2i_X509_CRL(NULL, &p, (long)len);
		if (c == NULL || p != buf + len) {
			X509_CRL_free(c);
			error_set_ossl(err, MTLS_ERR_PARSE,
			    "%s: not a CRL (neither PEM nor DER)", path);
			goto err;
		}
		if (!sk_X509_CRL_push(sk, c)) {
			X509_CRL_free(c);
			error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
			goto err;
		}
	}
	*out = sk;
	sk = NULL;
	rv = 0;
 err:
	BIO_free(bio);
	sk_X509_CRL_pop_free(sk, X509_CRL_free);
	return rv;
}

void
serial_hex(const ASN1_INTEGER *ai, char *buf, size_t len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
	char *h = bn ? BN_bn2hex(bn) : NULL;
	const char *p = h;

	/* Same form as serial_canon(): no leading zeros. */
	while (p != NULL && p[0] == '0' && p[1] != '\0')
		p++;
	snprintf(buf, len, "%s", p ? p : "?");
	OPENSSL_free(h);
	BN_free(bn);
}

int
serial_canon(const char *in, char *out, size_t len)
{
	size_t n = 0;
	const char *p = in;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		p += 2;
	for (; *p; p++) {
		if (*p == ':')
			continue;
		if (!isxdigit((unsigned char)*p))
			return -1;
		/* leading zeros are not part of the number */
		if (n == 0 && *p == '0')
			continue;
		if (n + 1 >= len)
			return -1;
		out[n++] = (char)toupper((unsigned char)*p);
	}
	if (n == 0) {
		if (len < 2)
			return -1;
		out[n++] = '0';
	}
	out[n] = '\0';
	return 0;
}

void
name_oneline(const X509_NAME *nm, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	size_t i;
	int n;

	buf[0] = '\0';
	if (bio == NULL)
		return;
	X509_NAME_print_ex(bio, nm, 0,
	    (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT);
	n = BIO_read(bio, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
	/* RFC 2253 escaping covers C0 controls and DEL; a C1 control (U+0080
	 * to U+009F, UTF-8 C2 80..C2 9F, e.g. CSI) would still reach a
	 * terminal or log line raw: make it '?' */
	for (i = 0; i + 1 < (size_t)(n > 0 ? n : 0); i++)
		if ((unsigned char)buf[i] == 0xc2 &&
		    (unsigned char)buf[i + 1] >= 0x80 &&
		    (unsigned char)buf[i + 1] <= 0x9f) {
			buf[i] = '?';
			memmove(buf + i + 1, buf + i + 2, (size_t)n - i - 1);
			n--;
		}
	if (buf[0] == '\0')
		snprintf(buf, len, "(empty subject)");
}

int64_t
asn1_time_unix(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

void
cert_fingerprint(X509 *x, char *buf, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;
	size_t off = 0;

	buf[0] = '\0';
	if (!X509_digest(x, EVP_sha256(), md, &n))
		return;
	for (i = 0; i < n && off + 4 <= len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%02X",
		    i ? ":" : "", md[i]);
}

void
cert_label(X509 *x, char *buf, size_t len)
{
	struct mtls_error e;
	struct ids ids;
	const char *id = NULL;
	char subj[160], serial[48];

	/* A workload is known by its identity; a CA by its subject. */
	if (!(X509_get_extension_flags(x) & EXFLAG_CA) &&
	    ids_from_cert(x, &ids, &e) == 0) {
		id = ids_primary(&ids);
		if (id != NULL && strncmp(id, "cn:", 3) != 0)
			snprintf(subj, sizeof(subj), "%s", id);
		else
			id = NULL;
		ids_free(&ids);
	}
	if (id == NULL)
		name_oneline(X509_get_subject_name(x), subj, sizeof(subj));
	serial_hex(X509_get0_serialNumber(x), serial, sizeof(serial));
	snprintf(buf, len, "'%s' (serial %s)", subj, serial);
}

int
cert_is_self_signed(X509 *x)
{
	return X509_check_issued(x, x) == X509_V_OK;
}

/*
 * <ca> issued <x>: <ca> is a CA, its subject is <x>'s issuer and key
 * identifiers and key usage agree (X509_check_issued), and its key
 * verifies <x>'s signature. A name alone never decides.
 */
int
cert_issued_by(X509 *ca, X509 *x)
{
	EVP_PKEY *pk = X509_get0_pubkey(ca);
	int ok = pk != NULL && X509_check_ca(ca) > 0 &&
	    X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, pk) == 1;

	ERR_clear_error();
	return ok;
}
