/*
 * mtls ca store migrate: the CA's SQLite inventory into PostgreSQL, for
 * several ca serve replicas to share (store_migrate() in store.c).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/ca.h"
#include "cmd.h"

static const char migrate_help[] =
"usage: mtls ca store migrate --ca DIR --to postgres://[user@]host[:port]/db\n"
"           [--password-file F] [--sslmode M] [--sslrootcert F]\n"
"Copies DIR/inventory.db (certificates, revocations, tokens, the CRL\n"
"number) into an empty PostgreSQL database in one transaction; a database\n"
"that holds any certificate or token is refused and left unchanged. Then\n"
"set in DIR/ca.conf, under [ca]:\n"
"  store = postgres://...\n"
"  store_password_file = F        (0600; never in the URL)\n"
"  store_sslmode = verify-full    store_sslrootcert = F   (optional)\n";

static int
store_migrate_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' },
		{ "to", required_argument, NULL, 't' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "sslmode", required_argument, NULL, 'm' },
		{ "sslrootcert", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *to = NULL, *pw = NULL, *mode = NULL;
	const char *root = NULL;
	struct mtls_error err;
	int64_t nc = 0, nt = 0, nr = 0;
	int c;

	if (cmd_wants_help(argc, argv, migrate_help))
		return 0;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c': dir = optarg; break;
		case 't': to = optarg; break;
		case 'p': pw = optarg; break;
		case 'm': mode = optarg; break;
		case 'r': root = optarg; break;
		default:
			/* never echo an option's value: --to may hold a
			 * password */
			return cmd_usage("ca store migrate", "unknown or "
			    "incomplete option");
		}
	}
	if (optind != argc || dir == NULL || to == NULL)
		return cmd_usage("ca store migrate", "give --ca DIR and --to "
		    "postgres://...");
	error_clear(&err);
	if (store_migrate(dir, to, pw, mode, root, &nc, &nt, &nr, &err) != 0)
		return cmd_fail("ca store migrate", &err);
	printf("copied %" PRId64 " certificates, %" PRId64 " tokens and %"
	    PRId64 " bundle reports; now set store = <the URL> in %s/ca.conf\n",
	    nc, nt, nr, dir);
	return 0;
}

static const struct subcmd store_cmds[] = {
	{ "migrate", store_migrate_cmd, "copy the SQLite inventory into "
	    "PostgreSQL" },
	{ NULL, NULL, NULL },
};

int
ca_store_cmd(int argc, char **argv)
{
	return subcmd_dispatch("mtls ca store", store_cmds, argc, argv);
}
