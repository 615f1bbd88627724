/* mtls cert: inspect and verify certificates and chains. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cert/cert.h"
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
	struct mtls_error err;
	json_t *arr = NULL;
	const char *file = NULL, *pw = NULL;
	int json = 0, c, rv = 2;
	size_t i, n;

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
	if ((arr = cert_inspect_file(file, pw, (int64_t)time(NULL),
	    &err)) == NULL)
		return cmd_fail("cert inspect", &err);
	n = json_array_size(arr);
	if (json) {
		char *s = json_dumps(arr, JSON_INDENT(2) |
		    JSON_ENSURE_ASCII);

		if (s == NULL)
			goto out;
		printf("%s\n", s);
		free(s);
	} else {
		for (i = 0; i < n; i++) {
			json_t *o = json_array_get(arr, i);
			json_t *sb = json_object_get(o, "signed_by_next");

			/* text: every string escaped (names from the
			 * certificate, unverified: no control byte reaches the
			 * terminal) */
			json_t *t = esc_text_tree(o);

			if (t == NULL)
				goto out;
			if (i)
				printf("\n");
			print_cert((int)i, (int)n, t);
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
	json_decref(arr);
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
	struct mtls_error err;
	const char *ca = NULL, *leaf, *pw = NULL, *crls[64];
	char rule[2200], ipc[64], *msg = NULL;
	int64_t at;
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
			if (conf_number(optarg, 0, INT64_C(999999999999999999),
			    &at) != 0) {
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
	error_clear(&err);
	if ((r = cert_verify_file(m, leaf, pw, &err)) < 0) {
		rv = cmd_fail("cert verify", &err);
		goto out;
	}
	/* the reason quotes names from the file: escaped for the terminal
	 * (the names it quotes were escaped where it was made) */
	if (r == 0) {
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
	struct cert_export_opts o;
	struct mtls_error err;
	const char *fname = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int c, rv = 2, i, ncerts;

	if (cmd_wants_help(argc, argv, export_help))
		return 0;
	memset(&o, 0, sizeof(o));
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'f': fname = optarg; break;
		case 'o': o.out = optarg; break;
		case 'F': o.force = 1; break;
		case 'w': o.password_file = optarg; break;
		case 'p': o.key_pass_file = optarg; break;
		case 'a': o.ca = optarg; break;
		case 'n': o.name = optarg; break;
		default:
			return cmd_usage("cert export", "unknown or incomplete "
			    "option '%s'", argv[optind - 1]);
		}
	}
	for (i = 1; fname != NULL && i < 5; i++)
		if (strcmp(fname, fmts[i]) == 0)
			o.fmt = i;
	if (optind != argc)
		return cmd_usage("cert export", "give --cert and --format "
		    "p12|pem|der|k8s");
	error_clear(&err);
	if (cert_export_check(&o, &err) != 0)
		return cmd_usage("cert export", "%s", err.msg);
	if (cert_export_file(&o, &buf, &len, &ncerts, &err) != 0)
		rv = cmd_fail("cert export", &err);
	else if (o.out == NULL)
		rv = fwrite(buf, 1, len, stdout) == len ? 0 : 1;
	else {
		fprintf(stderr, "wrote %s (%s, %d certificate%s%s)\n", o.out,
		    fname, o.fmt == EXPORT_DER ? 1 : ncerts,
		    o.fmt != EXPORT_DER && ncerts != 1 ? "s" : "",
		    o.fmt == EXPORT_DER ? "" : " and the key");
		rv = 0;
	}
	if (buf != NULL)
		OPENSSL_cleanse(buf, len);
	free(buf);
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
