/*
 * mtls cert: the work of `mtls cert inspect|verify|export` on files, so that
 * src/cmd/cmd_cert.c only parses flags and prints. Certificate files may be
 * PEM, DER, PKCS#12 or (for roots) a SPIFFE bundle, as certs_parse reads
 * them; a password is the first line of a file (secret_load_pass).
 */
#ifndef MTLS_CERT_H
#define MTLS_CERT_H

#include <stdint.h>

#include <jansson.h>

#include "internal.h"

/* The facts of every certificate in <file> (certinfo_json at <now>), and
 * for each but the last "signed_by_next": whether the next one issued it
 * and its key verifies the signature. <pass_file> (or NULL) opens a
 * PKCS#12 file. Returns the array (the caller's), or NULL with the reason
 * (naming the file) in <err>. */
json_t	*cert_inspect_file(const char *file, const char *pass_file,
	    int64_t now, struct mtls_error *err);

/* Verifies <leaf> (leaf first, then intermediates; any form, PKCS#12 with
 * <pass_file>) with the configured <m>: 0 valid, 1 refused (the reason and
 * taxonomy code on <m>), -1 the file could not be read (<err>). */
int	 cert_verify_file(struct mtls *m, const char *leaf,
	    const char *pass_file, struct mtls_error *err);

struct cert_export_opts {
	int		 fmt;		/* EXPORT_P12, _PEM, _DER, _K8S */
	const char	*cert;		/* the leaf, then its chain */
	const char	*key;		/* NULL only for EXPORT_DER */
	const char	*key_pass_file;	/* decrypts <key>, or NULL */
	const char	*password_file;	/* the PKCS#12 password, or NULL */
	const char	*ca;		/* roots for ca.crt (k8s), or NULL */
	const char	*name;		/* PKCS#12 friendly name or Secret
					 * name; NULL: "mtls", "mtls-tls" */
	const char	*out;		/* NULL: the bytes go to the caller */
	int		 force;		/* replace an existing <out> */
};
/* The rules on <o> that hold whoever asks: a key for every format but
 * DER; p12 needs a password (Java and .NET refuse an empty one) and <out>;
 * pem holds the key, so it goes to a file (0600), never to the caller. 0,
 * or -1 with MTLS_ERR_ARG and the flag to fix in <err>. */
int	 cert_export_check(const struct cert_export_opts *o,
	    struct mtls_error *err) MTLS_MUST_CHECK;
/*
 * Converts per <o> (checked by cert_export_check first). With <o>->out the
 * result is written atomically (0600 when it holds the key, 0644 for DER)
 * and *buf stays NULL; without, *buf and *len hold it for the caller to
 * print, cleanse and free. *ncerts: the certificates in <o>->cert. <out> is
 * checked writable before anything is read. 0, or -1 with the reason in
 * <err>; nothing is written then.
 */
int	 cert_export_file(const struct cert_export_opts *o, uint8_t **buf,
	    size_t *len, int *ncerts, struct mtls_error *err) MTLS_MUST_CHECK;

#endif
