/* mtls ca: the offline private PKI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/pem.h>

#include "ca/ca.h"
#include "cmd.h"

enum {
	O_TD = 256, O_KEYTYPE, O_TTL, O_PASS, O_NAME, O_PARENT, O_PPASS,
	O_PSPIFFE, O_PDNS, O_CA, O_SPIFFE, O_DNS, O_IP, O_CSR, O_ROLE, O_OUT,
	O_FORCE, O_REASON, O_EXPIRING, O_REVOKED, O_JSON, O_FORMAT, O_KEYURI,
	O_EXISTING, O_NEWROOT, O_PREVIOUS
};

static const struct option all_opts[] = {
	{ "trust-domain", required_argument, NULL, O_TD },
	{ "key-type", required_argument, NULL, O_KEYTYPE },
	{ "ttl", required_argument, NULL, O_TTL },
	{ "pass-file", required_argument, NULL, O_PASS },
	{ "name", required_argument, NULL, O_NAME },
	{ "parent", required_argument, NULL, O_PARENT },
	{ "parent-pass-file", required_argument, NULL, O_PPASS },
	{ "permit-spiffe", required_argument, NULL, O_PSPIFFE },
	{ "permit-dns", required_argument, NULL, O_PDNS },
	{ "ca", required_argument, NULL, O_CA },
	{ "spiffe-id", required_argument, NULL, O_SPIFFE },
	{ "dns", required_argument, NULL, O_DNS },
	{ "ip", required_argument, NULL, O_IP },
	{ "csr", required_argument, NULL, O_CSR },
	{ "role", required_argument, NULL, O_ROLE },
	{ "out", required_argument, NULL, O_OUT },
	{ "force", no_argument, NULL, O_FORCE },
	{ "reason", required_argument, NULL, O_REASON },
	{ "expiring", required_argument, NULL, O_EXPIRING },
	{ "revoked", no_argument, NULL, O_REVOKED },
	{ "json", no_argument, NULL, O_JSON },
	{ "format", required_argument, NULL, O_FORMAT },
	{ "key-uri", required_argument, NULL, O_KEYURI },
	{ "existing-key", no_argument, NULL, O_EXISTING },
	{ "new-root", no_argument, NULL, O_NEWROOT },
	{ "previous", no_argument, NULL, O_PREVIOUS },
	{ NULL, 0, NULL, 0 },
};

/* Everything any `mtls ca` subcommand accepts; each checks its own. */
struct ca_args {
	const char	*td, *pass, *name, *parent, *ppass, *ca, *csr, *role;
	const char	*out, *reason, *pos, *format, *key_uri;
	char		**pspiffe, **pdns;
	size_t		 n_pspiffe, n_pdns;
	struct ids	 ids;
	int64_t		 ttl, expiring;
	int		 key_type, force, revoked, json, has_expiring;
	int		 existing, new_root, previous;
	unsigned	 seen;	/* bit per option, to reject foreign flags */
};

static void
args_free(struct ca_args *a)
{
	strv_free(a->pspiffe, a->n_pspiffe);
	strv_free(a->pdns, a->n_pdns);
	ids_free(&a->ids);
}

/* Parses argv for subcommand <cmd>, accepting only the options in <allowed>
 * (bits of O_* - O_TD) and at most one positional argument. */
static int
parse(const char *cmd, int argc, char **argv, unsigned allowed,
    struct ca_args *a)
{
	char canon[64];
	int c;

	memset(a, 0, sizeof(*a));
	a->key_type = -1;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", all_opts, NULL)) != -1) {
		if (c == '?') {
			cmd_usage(cmd, "unknown or incomplete option '%s'",
			    argv[optind - 1]);
			return -1;
		}
		if (!(allowed & (1u << (c - O_TD)))) {
			cmd_usage(cmd, "option '%s' does not apply here",
			    argv[optind - 1]);
			return -1;
		}
		a->seen |= 1u << (c - O_TD);
		switch (c) {
		case O_TD: a->td = optarg; break;
		case O_KEYTYPE:
			if (cmd_key_type(cmd, optarg, &a->key_type) != 0)
				return -1;
			break;
		case O_TTL:
			if (cmd_duration(cmd, "--ttl", optarg, MTLS_MAX_TTL,
			    &a->ttl) != 0)
				return -1;
			break;
		case O_PASS: a->pass = optarg; break;
		case O_NAME: a->name = optarg; break;
		case O_PARENT: a->parent = optarg; break;
		case O_PPASS: a->ppass = optarg; break;
		case O_NEWROOT: a->new_root = 1; break;
		case O_PREVIOUS: a->previous = 1; break;
		case O_PSPIFFE:
			if (strv_add(&a->pspiffe, &a->n_pspiffe, optarg))
				return -1;
			break;
		case O_PDNS:
			if (strv_add(&a->pdns, &a->n_pdns, optarg))
				return -1;
			break;
		case O_CA: a->ca = optarg; break;
		case O_SPIFFE:
			if (strncmp(optarg, "spiffe://", 9) != 0) {
				cmd_usage(cmd, "--spiffe-id '%s' must start "
				    "with spiffe://", optarg);
				return -1;
			}
			if (ids_add(&a->ids, "", optarg, strlen(optarg)))
				goto toolong;
			break;
		case O_DNS:
			if (ids_add(&a->ids, "dns:", optarg, strlen(optarg)))
				goto toolong;
			break;
		case O_IP:
			if (ip_canon(optarg, canon, sizeof(canon)) != 0) {
				cmd_usage(cmd, "--ip '%s' is not an IP address",
				    optarg);
				return -1;
			}
			if (ids_add(&a->ids, "ip:", canon, strlen(canon)))
				goto toolong;
			break;
		case O_CSR: a->csr = optarg; break;
		case O_ROLE: a->role = optarg; break;
		case O_OUT: a->out = optarg; break;
		case O_FORCE: a->force = 1; break;
		case O_REASON: a->reason = optarg; break;
		case O_EXPIRING:
			if (cmd_duration(cmd, "--expiring", optarg,
			    MTLS_MAX_TTL, &a->expiring) != 0)
				return -1;
			a->has_expiring = 1;
			break;
		case O_REVOKED: a->revoked = 1; break;
		case O_JSON: a->json = 1; break;
		case O_FORMAT: a->format = optarg; break;
		case O_KEYURI: a->key_uri = optarg; break;
		case O_EXISTING: a->existing = 1; break;
		}
	}
	if (optind < argc)
		a->pos = argv[optind++];
	if (optind < argc) {
		cmd_usage(cmd, "unexpected argument '%s'", argv[optind]);
		return -1;
	}
	return 0;
 toolong:
	cmd_usage(cmd, "identity too long");
	return -1;
}

#define BIT(o)	(1u << ((o) - O_TD))

/* --key-uri's companions: the key is in the token, so no --pass-file;
 * --existing-key only with it, and then no --key-type. */
static int
key_uri_args(const char *cmd, const struct ca_args *a)
{
	const char *why = NULL;

	if (a->key_uri != NULL && a->pass != NULL)
		why = "--pass-file does not apply with --key-uri (the key "
		    "stays in its token)";
	else if (a->existing && a->key_uri == NULL)
		why = "--existing-key needs --key-uri";
	else if (a->existing && a->key_type >= 0)
		why = "--key-type does not apply with --existing-key (the key "
		    "exists)";
	if (why == NULL)
		return 0;
	cmd_usage(cmd, "%s", why);
	return -1;
}

static const char init_help[] =
"usage: mtls ca init DIR --trust-domain TD [--key-type T] [--ttl D]\n"
"                    [--pass-file F] [--name CN]\n"
"                    [--key-uri URI [--existing-key]]\n"
"Creates an offline root CA in DIR (which must not exist or be empty):\n"
"ca.pem, ca.key (0600; encrypted with the first line of --pass-file),\n"
"bundle.pem, inventory.db (SQLite) and ca.conf (roles, URLs).\n"
"  --key-type  ec-p256 (default), ec-p384, ed25519, rsa-2048, rsa-3072\n"
"  --ttl       lifetime (default 3650d)\n"
"  --key-uri   the root's key in a PKCS#11 token, e.g.\n"
"              'pkcs11:token=ca;object=root?pin-source=file:/etc/mtls/pin'\n"
"              generated there (--key-type; not ed25519); no ca.key is\n"
"              written, DIR/ca.keyuri holds the URI\n"
"  --existing-key  use the key the token already holds under that URI\n"
"              (without it, an existing key is refused)\n";

static int
ca_init_cmd(int argc, char **argv)
{
	struct ca_init_req r;
	struct ca_result res;
	struct mtls_error err;
	struct ca_args a;
	int rv = 2;

	if (cmd_wants_help(argc, argv, init_help))
		return 0;
	if (parse("ca init", argc, argv, BIT(O_TD) | BIT(O_KEYTYPE) |
	    BIT(O_TTL) | BIT(O_PASS) | BIT(O_NAME) | BIT(O_KEYURI) |
	    BIT(O_EXISTING), &a) != 0 || key_uri_args("ca init", &a) != 0)
		goto out;
	if (a.pos == NULL) {
		rv = cmd_usage("ca init", "missing DIR");
		goto out;
	}
	if (a.td == NULL) {
		rv = cmd_usage("ca init", "--trust-domain is required");
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.dir = a.pos;
	r.trust_domain = a.td;
	r.name = a.name;
	r.key_type = a.key_type < 0 ? KEY_EC_P256 : a.key_type;
	r.ttl = a.ttl;
	r.pass_file = a.pass;
	r.key_uri = a.key_uri;
	r.key_existing = a.existing;
	error_clear(&err);
	if (ca_init(&r, &res, &err) != 0) {
		rv = cmd_fail("ca init", &err);
		goto out;
	}
	printf("created root CA in %s (trust domain %s, serial %s)\n", a.pos,
	    a.td, res.serial);
	printf("  trust bundle for workloads: %s/bundle.pem\n", a.pos);
	rv = 0;
 out:
	args_free(&a);
	return rv;
}

static const char int_help[] =
"usage: mtls ca intermediate DIR --parent PDIR --name N\n"
"                    [--permit-spiffe URI]... [--permit-dns SUFFIX]...\n"
"                    [--ttl D] [--key-type T] [--parent-pass-file F]\n"
"                    [--pass-file F] [--key-uri URI [--existing-key]]\n"
"Creates an intermediate CA (pathlen 0) signed by the CA in PDIR and\n"
"recorded in PDIR's inventory. With --permit-*, it is scoped: a critical\n"
"nameConstraints extension permits the trust domain (URI) and each DNS\n"
"suffix and closes the rest (no other DNS name, no IP, no e-mail);\n"
"SPIFFE path prefixes (spiffe://td/ns/prod/) are enforced by mtls at\n"
"issuance and in verification (OpenSSL and Go check the trust domain,\n"
"GnuTLS does not). The scope extension's OID is ca.conf scope_oid of PDIR\n"
"(default 1.3.6.1.4.1.32473.6857.1). --ttl default 365d, clamped to the\n"
"parent's lifetime. --key-uri: its key in a PKCS#11 token, as for\n"
"mtls ca init.\n";

static int
ca_intermediate_cmd(int argc, char **argv)
{
	struct ca_int_req r;
	struct ca_result res;
	struct mtls_error err;
	struct ca_args a;
	int rv = 2;

	if (cmd_wants_help(argc, argv, int_help))
		return 0;
	if (parse("ca intermediate", argc, argv, BIT(O_PARENT) | BIT(O_NAME) |
	    BIT(O_PSPIFFE) | BIT(O_PDNS) | BIT(O_TTL) | BIT(O_KEYTYPE) |
	    BIT(O_PPASS) | BIT(O_PASS) | BIT(O_KEYURI) | BIT(O_EXISTING),
	    &a) != 0 || key_uri_args("ca intermediate", &a) != 0)
		goto out;
	if (a.pos == NULL || a.parent == NULL || a.name == NULL) {
		rv = cmd_usage("ca intermediate", "DIR, --parent and --name "
		    "are required");
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.dir = a.pos;
	r.parent_dir = a.parent;
	r.parent_pass_file = a.ppass;
	r.name = a.name;
	r.permit_spiffe = a.pspiffe;
	r.n_permit_spiffe = a.n_pspiffe;
	r.permit_dns = a.pdns;
	r.n_permit_dns = a.n_pdns;
	r.key_type = a.key_type < 0 ? KEY_EC_P256 : a.key_type;
	r.ttl = a.ttl;
	r.pass_file = a.pass;
	r.key_uri = a.key_uri;
	r.key_existing = a.existing;
	error_clear(&err);
	if (ca_intermediate(&r, &res, &err) != 0) {
		rv = cmd_fail("ca intermediate", &err);
		goto out;
	}
	if (res.warning[0])
		fprintf(stderr, "mtls ca intermediate: warning: %s\n",
		    res.warning);
	printf("created intermediate CA in %s (serial %s, signed by %s)\n",
	    a.pos, res.serial, a.parent);
	rv = 0;
 out:
	args_free(&a);
	return rv;
}

static const char issue_help[] =
"usage: mtls ca issue --ca DIR (--spiffe-id URI | --dns N | --ip A)...\n"
"                    [--ttl D] [--key-type T] [--csr F] [--role R]\n"
"                    [--pass-file F] [--force] --out PREFIX\n"
"Issues a workload certificate: PREFIX.pem (leaf, then intermediates) and\n"
"PREFIX.key (0600; not written with --csr, whose key stays with its owner).\n"
"The role in DIR/ca.conf (default \"default\") limits identities, TTL and\n"
"key types. Existing files are kept unless --force. Prints 'serial HEX'.\n";

static int
ca_issue_cmd(int argc, char **argv)
{
	struct ca_issue_req r;
	struct ca_result res;
	struct mtls_error err;
	struct ca_args a;
	struct ca *ca = NULL;
	char d[64];
	int rv = 2;

	if (cmd_wants_help(argc, argv, issue_help))
		return 0;
	if (parse("ca issue", argc, argv, BIT(O_CA) | BIT(O_SPIFFE) |
	    BIT(O_DNS) | BIT(O_IP) | BIT(O_TTL) | BIT(O_KEYTYPE) | BIT(O_CSR) |
	    BIT(O_ROLE) | BIT(O_PASS) | BIT(O_FORCE) | BIT(O_OUT), &a) != 0)
		goto out;
	if (a.pos != NULL) {
		rv = cmd_usage("ca issue", "unexpected argument '%s'", a.pos);
		goto out;
	}
	if (a.ca == NULL || a.out == NULL) {
		rv = cmd_usage("ca issue", "--ca and --out are required");
		goto out;
	}
	if (a.csr != NULL && a.key_type >= 0) {
		rv = cmd_usage("ca issue", "--key-type does not apply with "
		    "--csr (the CSR has the key)");
		goto out;
	}
	error_clear(&err);
	if (ca_open(&ca, a.ca, a.pass, &err) != 0) {
		rv = cmd_fail("ca issue", &err);
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.ids = a.ids;
	r.role = a.role;
	r.ttl = a.ttl;
	r.key_type = a.key_type;
	r.csr_file = a.csr;
	r.out_prefix = a.out;
	r.force = a.force;
	if (ca_issue(ca, &r, &res, &err) != 0) {
		rv = cmd_fail("ca issue", &err);
		goto out;
	}
	if (res.warning[0])
		fprintf(stderr, "mtls ca issue: warning: %s\n", res.warning);
	human_duration(res.not_after - (int64_t)time(NULL), d, sizeof(d));
	printf("serial %s\n", res.serial);
	printf("wrote %s.pem%s%s.key (expires in %s)\n", a.out,
	    a.csr ? "" : " and ", a.csr ? "" : a.out, d);
	rv = 0;
 out:
	ca_close(ca);
	args_free(&a);
	return rv;
}

static const char revoke_help[] =
"usage: mtls ca revoke --ca DIR SERIAL [--reason R] [--pass-file F]\n"
"Marks SERIAL (hex, colons optional) revoked in the inventory; it is\n"
"committed before this command returns. Publish with mtls ca crl.\n"
"  --reason  unspecified, keyCompromise, cACompromise, affiliationChanged,\n"
"            superseded, cessationOfOperation, certificateHold,\n"
"            privilegeWithdrawn, aACompromise\n";

static int
ca_revoke_cmd(int argc, char **argv)
{
	struct ca_result res;
	struct mtls_error err;
	struct ca_args a;
	struct ca *ca = NULL;
	int rv = 2, reason = 0, already = 0;

	if (cmd_wants_help(argc, argv, revoke_help))
		return 0;
	if (parse("ca revoke", argc, argv, BIT(O_CA) | BIT(O_REASON) |
	    BIT(O_PASS), &a) != 0)
		goto out;
	if (a.ca == NULL || a.pos == NULL) {
		rv = cmd_usage("ca revoke", "--ca and SERIAL are required");
		goto out;
	}
	if (a.reason != NULL && (reason = crl_reason_parse(a.reason)) < 0) {
		rv = cmd_usage("ca revoke", "--reason '%s' is unknown",
		    a.reason);
		goto out;
	}
	error_clear(&err);
	/* Revocation only writes the inventory: the key is not needed. */
	if (ca_open_readonly(&ca, a.ca, &err) != 0 ||
	    ca_revoke(ca, a.pos, reason, &res, &already, &err) != 0) {
		rv = cmd_fail("ca revoke", &err);
		goto out;
	}
	if (already)
		printf("serial %s was already revoked; nothing changed\n",
		    res.serial);
	else
		printf("revoked serial %s (%s); publish it with: mtls ca crl "
		    "--ca %s --out crl.pem\n", res.serial,
		    crl_reason_name(reason), a.ca);
	rv = 0;
 out:
	ca_close(ca);
	args_free(&a);
	return rv;
}

static const char crl_help[] =
"usage: mtls ca crl --ca DIR --out F [--ttl D] [--pass-file F] [--previous]\n"
"                   [--force]\n"
"Writes a signed CRL (PEM) of every revocation in DIR's inventory, with\n"
"an increasing CRL number; nextUpdate is now + --ttl (default 7d).\n"
"--previous: during a rotation (phase switched, until retire), the old\n"
"issuer's CRL instead: its revoked leaves, signed by its key\n"
"(DIR/rotation/old.keyuri or old.key, with --pass-file as for ca.key), as\n"
"ca serve answers at /v1/crl/previous. Publish both until retire.\n";

static int
ca_crl_cmd(int argc, char **argv)
{
	struct mtls_error err;
	struct ca_args a;
	struct ca *ca = NULL;
	X509_CRL *crl = NULL;
	BIO *bio = NULL;
	BUF_MEM *mem;
	int rv = 2, n;

	if (cmd_wants_help(argc, argv, crl_help))
		return 0;
	if (parse("ca crl", argc, argv, BIT(O_CA) | BIT(O_OUT) | BIT(O_TTL) |
	    BIT(O_PASS) | BIT(O_FORCE) | BIT(O_PREVIOUS), &a) != 0)
		goto out;
	if (a.ca == NULL || a.out == NULL || a.pos != NULL) {
		rv = cmd_usage("ca crl", "--ca and --out are required");
		goto out;
	}
	error_clear(&err);
	if (fs_check_writable(a.out, a.force, &err) != 0 ||
	    ca_open(&ca, a.ca, a.pass, &err) != 0 ||
	    (a.previous && ca_prev_key_load(ca, a.pass, &err) != 0) ||
	    (a.previous ? ca_crl_previous(ca, a.ttl, &crl, &err) :
	    ca_crl(ca, a.ttl, &crl, &err)) != 0) {
		rv = cmd_fail("ca crl", &err);
		goto out;
	}
	if ((bio = BIO_new(BIO_s_mem())) == NULL ||
	    !PEM_write_bio_X509_CRL(bio, crl)) {
		fprintf(stderr, "mtls ca crl: out of memory\n");
		goto out;
	}
	BIO_get_mem_ptr(bio, &mem);
	if (fs_write_atomic(a.out, mem->data, mem->length, 0644, a.force,
	    &err) != 0) {
		rv = cmd_fail("ca crl", &err);
		goto out;
	}
	/* a CRL with no entries has no list: sk_num(NULL) is -1 */
	n = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
	if (a.previous) {
		char iss[256];

		name_oneline(X509_CRL_get_issuer(crl), iss, sizeof(iss));
		printf("wrote %s (%d revoked; the previous issuer's, %s)\n",
		    a.out, n < 0 ? 0 : n, iss);
	} else
		printf("wrote %s (%d revoked)\n", a.out, n < 0 ? 0 : n);
	rv = 0;
 out:
	BIO_free(bio);
	X509_CRL_free(crl);
	ca_close(ca);
	args_free(&a);
	return rv;
}

static const char list_help[] =
"usage: mtls ca list --ca DIR [--expiring D] [--revoked] [--json]\n"
"Lists the inventory, newest first. --expiring 7d shows only valid\n"
"certificates that expire within 7 days, each flagged by the 7d/3d/1d\n"
"threshold it has crossed, and exits 1 when there is any (for cron and\n"
"monitoring). --revoked shows only revoked ones.\n";

struct list_state {
	struct ca_args	*a;
	int64_t		 now;
	json_t		*arr;
	int		 shown;
};

static const char *
rec_status(const struct cert_rec *r, int64_t now)
{
	if (r->revoked)
		return "revoked";
	if (r->not_after < now)
		return "expired";
	return "valid";
}

static const char *
threshold(int64_t left)
{
	if (left <= 86400)
		return "1d";
	if (left <= 3 * 86400)
		return "3d";
	if (left <= 7 * 86400)
		return "7d";
	return "";
}

static int
list_one(void *arg, const struct cert_rec *r)
{
	struct list_state *ls = arg;
	const char *status = rec_status(r, ls->now);
	int64_t left = r->not_after - ls->now;
	char rel[64], ids[512], *p;

	if (ls->a->revoked && !r->revoked)
		return 0;
	if (ls->a->has_expiring &&
	    (strcmp(status, "valid") != 0 || left > ls->a->expiring))
		return 0;
	ls->shown++;
	if (ls->arr != NULL) {
		json_t *o = json_object(), *idv = json_array();
		char *s = strdup(r->identities), *tok, *save = NULL;

		for (tok = s ? strtok_r(s, "\n", &save) : NULL; tok;
		    tok = strtok_r(NULL, "\n", &save))
			json_array_append_new(idv, esc_jstr(tok));
		free(s);
		json_object_set_new(o, "serial", esc_jstr(r->serial));
		json_object_set_new(o, "kind", esc_jstr(r->kind));
		json_object_set_new(o, "subject", esc_jstr(r->subject));
		json_object_set_new(o, "issuer", esc_jstr(r->issuer));
		json_object_set_new(o, "identities", idv);
		json_object_set_new(o, "not_before", json_integer(r->not_before));
		json_object_set_new(o, "not_after", json_integer(r->not_after));
		json_object_set_new(o, "status", esc_jstr(status));
		json_object_set_new(o, "expires_in_seconds", json_integer(left));
		if (strcmp(status, "valid") == 0 && threshold(left)[0])
			json_object_set_new(o, "threshold",
			    esc_jstr(threshold(left)));
		if (r->revoked) {
			json_object_set_new(o, "revoked_at",
			    json_integer(r->revoked_at));
			json_object_set_new(o, "reason",
			    esc_jstr(crl_reason_name(r->reason)));
		}
		json_array_append_new(ls->arr, o);
		return 0;
	}
	snprintf(ids, sizeof(ids), "%s", r->identities[0] ? r->identities :
	    r->subject);
	for (p = ids; (p = strchr(p, '\n')) != NULL;)
		*p = ',';
	if (left >= 0) {
		human_duration(left, rel, sizeof(rel));
		printf("%-34s %-12s %-8s in %-9s %-4s %s\n", r->serial, r->kind,
		    status, rel, strcmp(status, "valid") == 0 ?
		    (threshold(left)[0] ? threshold(left) : "-") : "-", ids);
	} else {
		human_duration(-left, rel, sizeof(rel));
		printf("%-34s %-12s %-8s %-6s ago %-4s %s\n", r->serial,
		    r->kind, status, rel, "-", ids);
	}
	return 0;
}

static int
ca_list_cmd(int argc, char **argv)
{
	struct list_state ls;
	struct mtls_error err;
	struct ca_args a;
	struct ca *ca = NULL;
	int rv = 2;

	memset(&ls, 0, sizeof(ls));
	if (cmd_wants_help(argc, argv, list_help))
		return 0;
	if (parse("ca list", argc, argv, BIT(O_CA) | BIT(O_EXPIRING) |
	    BIT(O_REVOKED) | BIT(O_JSON), &a) != 0)
		goto out;
	if (a.ca == NULL || a.pos != NULL) {
		rv = cmd_usage("ca list", "--ca DIR is required");
		goto out;
	}
	ls.a = &a;
	ls.now = (int64_t)time(NULL);
	error_clear(&err);
	if (ca_open_readonly(&ca, a.ca, &err) != 0) {
		rv = cmd_fail("ca list", &err);
		goto out;
	}
	if (a.json && (ls.arr = json_array()) == NULL)
		goto out;
	if (!a.json)
		printf("%-34s %-12s %-8s %-12s %-4s %s\n", "SERIAL", "KIND",
		    "STATUS", "EXPIRES", "FLAG", "IDENTITIES");
	if (store_each(ca->store, list_one, &ls, &err) != 0) {
		rv = cmd_fail("ca list", &err);
		goto out;
	}
	if (a.json) {
		char *s = json_dumps(ls.arr, JSON_INDENT(2));

		if (s != NULL)
			printf("%s\n", s);
		free(s);
	}
	rv = (a.has_expiring && ls.shown > 0) ? 1 : 0;
 out:
	json_decref(ls.arr);
	ca_close(ca);
	args_free(&a);
	return rv;
}

static const char bundle_help[] =
"usage: mtls ca bundle --ca DIR [--format pem|spiffe] [--out F [--force]]\n"
"Prints (or writes to F) the trust bundle of the CA in DIR: the roots of\n"
"bundle.pem as PEM, or with --format spiffe as a SPIFFE trust bundle (a\n"
"JWK Set, what SPIRE and go-spiffe read). --ca, cert verify and doctor\n"
"accept either form.\n";

static int
ca_bundle_cmd(int argc, char **argv)
{
	struct mtls_error err;
	struct ca_args a;
	struct ca *ca = NULL;
	char *doc = NULL;
	size_t len = 0;
	int rv = 2, spiffe;

	if (cmd_wants_help(argc, argv, bundle_help))
		return 0;
	if (parse("ca bundle", argc, argv, BIT(O_CA) | BIT(O_OUT) |
	    BIT(O_FORMAT) | BIT(O_FORCE), &a) != 0)
		goto out;
	if (a.ca == NULL || a.pos != NULL) {
		rv = cmd_usage("ca bundle", "--ca DIR is required");
		goto out;
	}
	spiffe = a.format != NULL && strcmp(a.format, "spiffe") == 0;
	if (a.format != NULL && !spiffe && strcmp(a.format, "pem") != 0) {
		rv = cmd_usage("ca bundle", "--format must be pem or spiffe");
		goto out;
	}
	error_clear(&err);
	if ((a.out != NULL && fs_check_writable(a.out, a.force, &err) != 0) ||
	    ca_open_readonly(&ca, a.ca, &err) != 0 ||
	    (spiffe ? ca_bundle_jwks(ca, &doc, &err) :
	    ca_bundle_pem(ca, &doc, &len, &err)) != 0) {
		rv = cmd_fail("ca bundle", &err);
		goto out;
	}
	if (spiffe) {
		len = strlen(doc);
		doc[len++] = '\n';	/* over json_dumps's NUL */
	}
	if (a.out == NULL)
		rv = fwrite(doc, 1, len, stdout) == len ? 0 : 1;
	else if (fs_write_atomic(a.out, doc, len, 0644, a.force, &err) != 0)
		rv = cmd_fail("ca bundle", &err);
	else {
		printf("wrote %s (%s)\n", a.out, spiffe ? "SPIFFE bundle" :
		    "PEM");
		rv = 0;
	}
 out:
	free(doc);
	ca_close(ca);
	args_free(&a);
	return rv;
}

static const char rotation_help[] =
"usage: mtls ca rotation STEP --ca DIR [--pass-file F] [--key-type T]\n"
"                        [--ttl D] [--force] [--json]\n"
"                        [--parent PDIR [--parent-pass-file F] [--new-root]\n"
"                        [--key-uri URI]]\n"
"Replaces the root that DIR issues from, with an overlap during which\n"
"both are trusted (docs/rotation.md). With --parent, DIR is an\n"
"intermediate under the offline root in PDIR: prepare makes a new\n"
"intermediate (same scope) signed by it, or with --new-root a new root\n"
"in PDIR/rotation/ (cross-signed by the old one) and a new intermediate\n"
"under it; switch (--new-root) and retire (a new intermediate: the old\n"
"one is revoked at PDIR) need --parent too, and switch --new-root the\n"
"--parent-pass-file of PDIR's keys if encrypted. --key-uri: the new\n"
"intermediate's key is made in a PKCS#11 token (as for ca intermediate);\n"
"an intermediate whose key is in a token needs it (the old key's URI is\n"
"kept as DIR/rotation/old.keyuri until retire).\n"
"STEP, in order:\n"
"  prepare   a new root key and certificate, cross-signed by the old root\n"
"            (--pass-file encrypts the new key as ca.key is; --key-type,\n"
"            --ttl as for ca init)\n"
"  publish   bundle.pem holds both roots and the cross-certificate\n"
"  switch    ca serve issues under the new root (renewals with the old\n"
"            root's certificates still work); needs --pass-file if any\n"
"  retire    bundle.pem holds the new root only\n"
"  status    the phase, and what blocks the next step, with counts\n"
"After publish, switch and retire, reload ca serve (kill -HUP PID).\n"
"A step that status says is blocked is refused unless --force.\n"
"Exit: 0 done (status: the next step is safe), 1 blocked, 2 usage or\n"
"an unreadable CA directory.\n";

static void
rotation_print(const struct rot_status *rs, int json)
{
	char *txt;
	json_t *o;

	if (json) {
		o = rotation_status_json(rs);
		if ((txt = json_dumps(o, JSON_INDENT(2))) != NULL)
			printf("%s\n", txt);
		free(txt);
		json_decref(o);
		return;
	}
	printf("phase: %s\n", rot_phase_names[rs->st.phase]);
	if (rs->st.phase != ROT_NONE)
		printf("kind: %s\nold root: sha256:%s\nnew root: sha256:%s\n",
		    rot_kind_names[rs->st.kind], rs->st.old_root,
		    rs->st.new_root);
	if (rs->st.phase != ROT_NONE && rs->st.kind != ROT_KIND_ROOT)
		printf("old intermediate: sha256:%s\nnew intermediate: "
		    "sha256:%s\n", rs->st.old_ca, rs->st.new_ca);
	printf("certificates %s (unexpired, unrevoked): %lld\n",
	    rs->st.kind == ROT_KIND_INT ? "of the old intermediate" :
	    "chaining to the old root", (long long)rs->blocking_certs);
	printf("agents on a bundle without the new %s: %lld of %lld\n",
	    rs->st.kind == ROT_KIND_INT ? "intermediate" : "root",
	    (long long)rs->agents_old, (long long)rs->agents_total);
	printf("next: %s\n", rs->next);
}

static int
ca_rotation_cmd(int argc, char **argv)
{
	static const char *const steps[] = { "status", "prepare", "publish",
	    "switch", "retire" };
	struct rot_status rs;
	struct mtls_error err;
	struct rot_req r;
	struct ca_args a;
	struct ca *ca = NULL;
	char kp[4200];
	int rv = 2, step = -1, i, rc, old_uri;

	if (cmd_wants_help(argc, argv, rotation_help))
		return 0;
	if (parse("ca rotation", argc, argv, BIT(O_CA) | BIT(O_PASS) |
	    BIT(O_KEYTYPE) | BIT(O_TTL) | BIT(O_FORCE) | BIT(O_JSON) |
	    BIT(O_PARENT) | BIT(O_PPASS) | BIT(O_NEWROOT) | BIT(O_KEYURI),
	    &a) != 0)
		goto out;
	for (i = 0; a.pos != NULL && i < 5; i++)
		if (strcmp(a.pos, steps[i]) == 0)
			step = i;
	if (step < 0 || a.ca == NULL) {
		rv = cmd_usage("ca rotation", "give a STEP (prepare, publish, "
		    "switch, retire, status) and --ca DIR");
		goto out;
	}
	error_clear(&err);
	if (step == 0) {
		if (ca_open_readonly(&ca, a.ca, &err) != 0 ||
		    rotation_status(ca, &rs, &err) != 0) {
			rv = cmd_fail("ca rotation status", &err);
			goto out;
		}
		rotation_print(&rs, a.json);
		rv = rs.blocked ? 1 : 0;
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.dir = a.ca;
	r.pass_file = a.pass;
	r.step = step;		/* steps[] is in phase order */
	r.key_type = a.key_type;
	r.ttl = a.ttl;
	r.force = a.force;
	r.parent_dir = a.parent;
	r.parent_pass_file = a.ppass;
	r.new_root = a.new_root;
	r.key_uri = a.key_uri;
	if ((rc = rotation_step(&r, &rs, &err)) != 0) {
		if (rc == 1) {
			fprintf(stderr, "mtls ca rotation %s: %s\n", a.pos,
			    err.msg);
			rv = 1;
		} else
			rv = cmd_fail("ca rotation", &err);
		goto out;
	}
	if (a.json)
		rotation_print(&rs, 1);
	else {
		int root = rs.st.kind != ROT_KIND_INT;

		printf("rotation %s: now %s (old %s sha256:%.16s..., new "
		    "%s sha256:%.16s...)\n", a.pos,
		    rot_phase_names[rs.st.phase], root ? "root" :
		    "intermediate", root ? rs.st.old_root : rs.st.old_ca,
		    root ? "root" : "intermediate", root ? rs.st.new_root :
		    rs.st.new_ca);
		if (rs.parent_others > 0)
			fprintf(stderr, "mtls ca rotation: warning: %lld other "
			    "unexpired, unrevoked certificates of the old root "
			    "(%s's inventory) are not counted by status; they "
			    "stop verifying when it is retired: issue them "
			    "again under the new root first\n",
			    (long long)rs.parent_others, a.parent);
		if (step != ROT_PREPARED)
			printf("reload ca serve to take it: kill -HUP PID "
			    "(systemctl reload mtls-ca)\n");
		snprintf(kp, sizeof(kp), "%s/rotation/old.keyuri", a.ca);
		old_uri = access(kp, F_OK) == 0;
		if (step == ROT_RETIRED && rs.st.kind == ROT_KIND_INT)
			printf("the old intermediate is revoked in %s's "
			    "inventory: publish its CRL (mtls ca crl --ca %s); "
			    "its key is %s %s/rotation/old.key%s: destroy it%s\n",
			    a.parent, a.parent, old_uri ? "in the token" :
			    "in", a.ca, old_uri ? "uri names" : "", old_uri ?
			    " (pkcs11-tool --delete-object)" : "");
		else if (step == ROT_RETIRED)
			printf("the old %s key is in %s/rotation/old.key: "
			    "archive it offline or destroy it\n",
			    rs.st.kind == ROT_KIND_ROOT ? "root's" :
			    "intermediate's", a.ca);
	}
	rv = 0;
 out:
	ca_close(ca);
	args_free(&a);
	return rv;
}

static const struct subcmd ca_cmds[] = {
	{ "init", ca_init_cmd, "create an offline root CA" },
	{ "intermediate", ca_intermediate_cmd, "create a (scoped) intermediate CA" },
	{ "issue", ca_issue_cmd, "issue a workload certificate (or sign a CSR)" },
	{ "revoke", ca_revoke_cmd, "revoke a certificate by serial" },
	{ "crl", ca_crl_cmd, "write a signed CRL" },
	{ "bundle", ca_bundle_cmd, "print the trust bundle (PEM or SPIFFE JWK Set)" },
	{ "list", ca_list_cmd, "list the inventory; --expiring for monitoring" },
	{ "token", ca_token_cmd, "one-time join tokens for mtls agent" },
	{ "serve", ca_serve_cmd, "the online CA: enroll, renew, revoke, CRL, OCSP" },
	{ "store", ca_store_cmd, "the inventory's backend: migrate to PostgreSQL" },
	{ "rotation", ca_rotation_cmd, "replace the root: prepare, publish, switch, retire, status" },
	{ NULL, NULL, NULL },
};

int
cmd_ca(int argc, char **argv)
{
	return subcmd_dispatch("mtls ca", ca_cmds, argc, argv);
}
