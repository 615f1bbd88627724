/* mtls cert: inspect and verify certificates and chains. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>

#include "cmd.h"

static const char inspect_help[] =
"usage: mtls cert inspect FILE [--json] [--password-file F]\n"
"Shows every certificate in FILE (PEM, DER, PKCS#12 with the password in\n"
"--password-file, or a SPIFFE bundle): subject, SANs (SPIFFE ID\n"
"first), issuer, serial, validity, key, signature, KU/EKU, basic and name\n"
"constraints, SHA-256 fingerprint; for a chain, whether each certificate\n"
"is signed by the next.\n";

static void
print_list(const char *label, json_t *a)
{
	size_t i;
	json_t *v;

	if (a == NULL || json_array_size(a) == 0)
		return;
	printf("  %-16s", label);
	json_array_foreach(a, i, v)
		printf("%s%s", i ? ", " : "", json_string_value(v));
	printf("\n");
}

static const char *
jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static void
print_cert(int idx, int n, json_t *o)
{
	json_t *nc = json_object_get(o, "name_constraints");
	json_t *pl = json_object_get(o, "pathlen");
	int isca = json_is_true(json_object_get(o, "ca"));

	printf("certificate %d of %d%s\n", idx + 1, n,
	    json_is_true(json_object_get(o, "self_signed")) ? " (self-signed)"
	    : "");
	printf("  %-16s%s\n", "subject:", jstr(o, "subject"));
	print_list("SANs:", json_object_get(o, "sans"));
	if (json_object_get(o, "name_problem") != NULL)
		printf("  %-16s%s\n", "not an identity:",
		    jstr(o, "name_problem"));
	printf("  %-16s%s\n", "issuer:", jstr(o, "issuer"));
	printf("  %-16s%s\n", "serial:", jstr(o, "serial"));
	printf("  %-16s%s .. %s (%s)\n", "validity:", jstr(o, "not_before"),
	    jstr(o, "not_after"), jstr(o, "validity_text"));
	printf("  %-16s%s\n", "key:", jstr(o, "key"));
	printf("  %-16s%s\n", "signature:", jstr(o, "signature_algorithm"));
	print_list("key usage:", json_object_get(o, "key_usage"));
	print_list("ext key usage:", json_object_get(o, "ext_key_usage"));
	if (isca && pl != NULL)
		printf("  %-16sCA:TRUE, pathlen %lld\n", "basic:",
		    (long long)json_integer_value(pl));
	else
		printf("  %-16sCA:%s\n", "basic:", isca ? "TRUE" : "FALSE");
	if (nc != NULL) {
		print_list("permitted:", json_object_get(nc, "permitted"));
		print_list("excluded:", json_object_get(nc, "excluded"));
	}
	print_list("SPIFFE scope:", json_object_get(o, "spiffe_scope"));
	if (json_object_get(o, "warning") != NULL)
		printf("  %-16s%s\n", "WARNING:", jstr(o, "warning"));
	printf("  %-16s%s\n", "SHA-256:", jstr(o, "sha256_fingerprint"));
}

static int
cert_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "password-file", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	STACK_OF(X509) *sk = NULL;
	struct mtls_secret pass = { 0 };
	struct mtls_error err;
	json_t *arr = NULL;
	const char *file = NULL, *pw = NULL;
	int json = 0, c, i, n, rv = 2;
	int64_t now = (int64_t)time(NULL);

	if (cmd_wants_help(argc, argv, inspect_help))
		return 0;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'w') {
			pw = optarg;
			continue;
		}
		if (c != 'j')
			return cmd_usage("cert inspect", "unknown option '%s'",
			    argv[optind - 1]);
		json = 1;
	}
	if (optind + 1 != argc)
		return cmd_usage("cert inspect", "give exactly one FILE");
	file = argv[optind];
	error_clear(&err);
	if ((pw != NULL && secret_load_pass(&pass, pw, &err) != 0) ||
	    certs_load_pass(file, pw ? &pass : NULL, &sk, NULL, &err) != 0) {
		secret_clear(&pass);
		return cmd_fail("cert inspect", &err);
	}
	secret_clear(&pass);
	n = sk_X509_num(sk);
	if ((arr = json_array()) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(sk, i);
		json_t *o = certinfo_json(x, now);

		if (o == NULL)
			goto out;
		if (i + 1 < n) {
			X509 *next = sk_X509_value(sk, i + 1);
			int ok = X509_check_issued(next, x) == X509_V_OK &&
			    X509_verify(x, X509_get0_pubkey(next)) == 1;

			json_object_set_new(o, "signed_by_next", json_boolean(ok));
		}
		json_array_append_new(arr, o);
	}
	if (json) {
		char *s = json_dumps(arr, JSON_INDENT(2) |
		    JSON_ENSURE_ASCII);

		if (s == NULL)
			goto out;
		printf("%s\n", s);
		free(s);
	} else {
		for (i = 0; i < n; i++) {
			json_t *o = json_array_get(arr, (size_t)i);
			json_t *sb = json_object_get(o, "signed_by_next");

			/* text: every string escaped (names from the
			 * certificate, unverified: no control byte reaches the
			 * terminal) */
			json_t *t = esc_text_tree(o);

			if (t == NULL)
				goto out;
			if (i)
				printf("\n");
			print_cert(i, n, t);
			json_decref(t);
			if (sb != NULL)
				printf("  %-16s%s\n", "chain:", json_is_true(sb) ?
				    "signed by the next certificate" :
				    "NOT signed by the next certificate (wrong "
				    "order or a foreign chain)");
		}
	}
	rv = 0;
 out:
	ERR_clear_error();
	json_decref(arr);
	sk_X509_pop_free(sk, X509_free);
	if (rv != 0)
		fprintf(stderr, "mtls cert inspect: %s: out of memory\n", file);
	return rv;
}

static const char verify_help[] =
"usage: mtls cert verify LEAF --ca ROOTS [--untrusted F] [--at UNIX_SECONDS]\n"
"                 [--dns N] [--ip A] [--spiffe-id URI]\n"
"                 [--purpose server|client] [--crl F]... [--password-file F]\n"
"Verifies LEAF (a file with the leaf first, then any intermediates; PEM,\n"
"DER or PKCS#12) against the roots in ROOTS (PEM, DER or a SPIFFE bundle)\n"
"with mtls's policy: OpenSSL's chain validation plus\n"
"X509-SVID rules, weak keys and digests, SPIFFE scopes, CRLs. --dns, --ip\n"
"and --spiffe-id must each match the leaf.\n"
"Exit 0 valid; 1 invalid (prints the failure code, the reason and a fix);\n"
"2 usage error or unreadable input.\n";

static int
cert_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "untrusted", required_argument, NULL, 'u' },
		{ "at", required_argument, NULL, 'a' },
		{ "dns", required_argument, NULL, 'd' },
		{ "ip", required_argument, NULL, 'i' },
		{ "spiffe-id", required_argument, NULL, 's' },
		{ "purpose", required_argument, NULL, 'p' },
		{ "crl", required_argument, NULL, 'r' },
		{ "password-file", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct mtls_config *cfg = NULL;
	struct mtls *m = NULL;
	struct mtls_secret pass = { 0 };
	struct mtls_error err;
	STACK_OF(X509) *sk = NULL;
	char *pem = NULL;
	size_t pem_len = 0;
	const char *ca = NULL, *leaf, *pw = NULL, *crls[64];
	char rule[2200], ipc[64], *end, *msg = NULL;
	long long at;
	size_t ncrl = 0, i;
	int c, rv = 2, r = 0;

	if (cmd_wants_help(argc, argv, verify_help))
		return 0;
	if ((cfg = mtls_config_new()) == NULL || (m = mtls_new()) == NULL) {
		fprintf(stderr, "mtls cert verify: out of memory\n");
		goto out;
	}
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			ca = optarg;
			break;
		case 'u':
			r = mtls_config_add_untrusted_file(cfg, optarg);
			break;
		case 'a':
			at = strtoll(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || at < 0) {
				rv = cmd_usage("cert verify", "--at '%s' is not "
				    "a UNIX time in seconds", optarg);
				goto out;
			}
			r = mtls_config_set_verify_time(cfg, at);
			break;
		case 'd':
			snprintf(rule, sizeof(rule), "dns:%s", optarg);
			r = mtls_config_add_expect(cfg, rule);
			break;
		case 'i':
			if (ip_canon(optarg, ipc, sizeof(ipc)) != 0) {
				rv = cmd_usage("cert verify", "--ip '%s' is not "
				    "an IP address", optarg);
				goto out;
			}
			snprintf(rule, sizeof(rule), "ip:%s", ipc);
			r = mtls_config_add_expect(cfg, rule);
			break;
		case 's':
			if (mtls_spiffe_id_check(optarg, rule,
			    sizeof(rule)) != 0) {
				rv = cmd_usage("cert verify", "--spiffe-id '%s' "
				    "is invalid: %s", optarg, rule);
				goto out;
			}
			r = mtls_config_add_expect(cfg, optarg);
			break;
		case 'p':
			if (strcmp(optarg, "server") == 0)
				r = mtls_config_set_purpose(cfg,
				    MTLS_PURPOSE_SERVER);
			else if (strcmp(optarg, "client") == 0)
				r = mtls_config_set_purpose(cfg,
				    MTLS_PURPOSE_CLIENT);
			else {
				rv = cmd_usage("cert verify", "--purpose must be "
				    "server or client");
				goto out;
			}
			break;
		case 'r':	/* added once the trust is known, below */
			if (ncrl == sizeof(crls) / sizeof(crls[0])) {
				rv = cmd_usage("cert verify", "at most %zu "
				    "--crl files", ncrl);
				goto out;
			}
			crls[ncrl++] = optarg;
			break;
		case 'w':
			pw = optarg;
			break;
		default:
			rv = cmd_usage("cert verify", "unknown or incomplete "
			    "option '%s'", argv[optind - 1]);
			goto out;
		}
		if (r != 0) {
			fprintf(stderr, "mtls cert verify: %s\n",
			    mtls_config_error(cfg));
			goto out;
		}
	}
	if (optind + 1 != argc || ca == NULL) {
		rv = cmd_usage("cert verify", "give one LEAF file and --ca ROOTS");
		goto out;
	}
	leaf = argv[optind];
	if (mtls_config_set_trust_file(cfg, ca) != 0) {
		fprintf(stderr, "mtls cert verify: %s\n", mtls_config_error(cfg));
		goto out;
	}
	/* a CRL's signature is checked against the bundle as it is added */
	for (i = 0; i < ncrl; i++)
		if (mtls_config_add_crl_file(cfg, crls[i]) != 0) {
			fprintf(stderr, "mtls cert verify: %s\n",
			    mtls_config_error(cfg));
			goto out;
		}
	if (mtls_configure(m, cfg) != 0) {
		fprintf(stderr, "mtls cert verify: %s\n", mtls_error(m));
		goto out;
	}
	/* LEAF in any form we read (PKCS#12 too), handed over as PEM */
	error_clear(&err);
	if ((pw != NULL && secret_load_pass(&pass, pw, &err) != 0) ||
	    certs_load_pass(leaf, pw ? &pass : NULL, &sk, NULL, &err) != 0 ||
	    certs_pem(sk, &pem, &pem_len) != 0) {
		if (err.msg[0] == '\0')
			error_set(&err, MTLS_ERR_NOMEM, "out of memory");
		rv = cmd_fail("cert verify", &err);
		goto out;
	}
	/* the reason quotes names from the file: escaped for the terminal
	 * (the names it quotes were escaped where it was made) */
	if (mtls_verify_pem(m, (const uint8_t *)pem, pem_len) == 0) {
		printf("ok: %s (serial %s)\n", mtls_peer_id(m) ?
		    mtls_peer_id(m) : "(no identity)", mtls_peer_serial(m));
		rv = 0;
	} else if ((msg = esc_text_dup(mtls_error(m), strlen(mtls_error(m)),
	    ESC_KEEP_BS)) == NULL) {
		fprintf(stderr, "mtls cert verify: out of memory\n");
	} else if (mtls_fail_code(m) != MTLS_FAIL_NONE) {
		printf("%s: %s\n  fix: %s\n", mtls_fail_name(mtls_fail_code(m)),
		    msg, mtls_fail_hint(mtls_fail_code(m)));
		rv = 1;
	} else {
		fprintf(stderr, "mtls cert verify: %s\n", msg);
	}
	free(msg);
 out:
	free(pem);
	sk_X509_pop_free(sk, X509_free);
	secret_clear(&pass);
	mtls_free(m);
	mtls_config_free(cfg);
	return rv;
}

static const char export_help[] =
"usage: mtls cert export --cert CERT --key KEY --format p12|pem|der|k8s\n"
"                 [--out F [--force]] [--password-file F] [--pass-file F]\n"
"                 [--ca ROOTS] [--name N]\n"
"Converts a certificate (CERT: the leaf, then its chain) and its key:\n"
"  p12  PKCS#12 for Java keytool/KeyStore and .NET (AES-256, PBKDF2,\n"
"       SHA-256 MAC); the password is the first line of --password-file\n"
"  pem  HAProxy's combined crt file: the chain, then the key\n"
"  der  the leaf certificate alone, DER (no key)\n"
"  k8s  a kubernetes.io/tls Secret named --name (default mtls-tls) with\n"
"       tls.crt, tls.key and, with --ca, ca.crt\n"
"--pass-file decrypts an encrypted KEY. Files holding a key are written\n"
"0600, atomically. Without --out, der and k8s go to standard output.\n";

static int
cert_export_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "format", required_argument, NULL, 'f' },
		{ "out", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'F' },
		{ "password-file", required_argument, NULL, 'w' },
		{ "pass-file", required_argument, NULL, 'p' },
		{ "ca", required_argument, NULL, 'a' },
		{ "name", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *fmts[] = { NULL, "p12", "pem", "der", "k8s" };
	const char *cert = NULL, *keyf = NULL, *out = NULL, *pw = NULL,
	    *kpass = NULL, *ca = NULL, *name = NULL, *fname = NULL;
	struct mtls_secret pass = { 0 }, kp = { 0 };
	struct mtls_error err;
	STACK_OF(X509) *certs = NULL, *roots = NULL;
	EVP_PKEY *key = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int c, fmt = 0, force = 0, rv = 2, i;

	if (cmd_wants_help(argc, argv, export_help))
		return 0;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': cert = optarg; break;
		case 'k': keyf = optarg; break;
		case 'f': fname = optarg; break;
		case 'o': out = optarg; break;
		case 'F': force = 1; break;
		case 'w': pw = optarg; break;
		case 'p': kpass = optarg; break;
		case 'a': ca = optarg; break;
		case 'n': name = optarg; break;
		default:
			return cmd_usage("cert export", "unknown or incomplete "
			    "option '%s'", argv[optind - 1]);
		}
	}
	for (i = 1; fname != NULL && i < 5; i++)
		if (strcmp(fname, fmts[i]) == 0)
			fmt = i;
	if (optind != argc || cert == NULL || fmt == 0)
		return cmd_usage("cert export", "give --cert and --format "
		    "p12|pem|der|k8s");
	if (fmt != EXPORT_DER && keyf == NULL)
		return cmd_usage("cert export", "--format %s needs --key",
		    fname);
	if (fmt == EXPORT_P12 && pw == NULL)
		return cmd_usage("cert export", "--format p12 needs "
		    "--password-file (Java and .NET refuse an empty password)");
	if (fmt == EXPORT_P12 && out == NULL)
		return cmd_usage("cert export", "--format p12 needs --out");
	if (fmt == EXPORT_PEM && out == NULL)
		return cmd_usage("cert export", "--format pem holds the key: "
		    "give --out (written 0600)");
	error_clear(&err);
	if ((out != NULL && fs_check_writable(out, force, &err) != 0) ||
	    certs_load(cert, &certs, &err) != 0 ||
	    (kpass != NULL && secret_load_pass(&kp, kpass, &err) != 0) ||
	    (keyf != NULL && key_load(keyf, &kp, &key, &err) != 0) ||
	    (pw != NULL && secret_load_pass(&pass, pw, &err) != 0) ||
	    (ca != NULL && certs_load(ca, &roots, &err) != 0) ||
	    cert_export(fmt, key, certs, roots, name ? name :
	    (fmt == EXPORT_K8S ? "mtls-tls" : "mtls"), &pass, &buf, &len,
	    &err) != 0) {
		rv = cmd_fail("cert export", &err);
		goto out;
	}
	if (out == NULL)
		rv = fwrite(buf, 1, len, stdout) == len ? 0 : 1;
	else if (fs_write_atomic(out, buf, len, fmt == EXPORT_DER ? 0644 :
	    0600, force, &err) != 0)
		rv = cmd_fail("cert export", &err);
	else {
		fprintf(stderr, "wrote %s (%s, %d certificate%s%s)\n", out,
		    fname, fmt == EXPORT_DER ? 1 : sk_X509_num(certs),
		    fmt != EXPORT_DER && sk_X509_num(certs) != 1 ? "s" : "",
		    fmt == EXPORT_DER ? "" : " and the key");
		rv = 0;
	}
 out:
	if (buf != NULL)
		OPENSSL_cleanse(buf, len);
	free(buf);
	EVP_PKEY_free(key);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(roots, X509_free);
	secret_clear(&pass);
	secret_clear(&kp);
	return rv;
}

static const struct subcmd cert_cmds[] = {
	{ "inspect", cert_inspect, "show every certificate in a file" },
	{ "verify", cert_verify, "verify a leaf or chain with mtls's policy" },
	{ "export", cert_export_cmd, "PKCS#12, HAProxy PEM, DER or a Kubernetes Secret" },
	{ NULL, NULL, NULL },
};

int
cmd_cert(int argc, char **argv)
{
	return subcmd_dispatch("mtls cert", cert_cmds, argc, argv);
}
