/*
 * verify_peer: the smallest libmtls program. Loads a trust bundle, allows
 * one SPIFFE ID prefix, and verifies a peer chain file with mtls's policy.
 *
 *   cc verify_peer.c $(pkg-config --cflags --libs mtls) -o verify_peer
 *   ./verify_peer bundle.pem spiffe://example.org/ns/prod/\* peer.pem
 *
 * Exit 0 when the peer is valid and allowed; 1 with the taxonomy code and
 * reason when not; 2 when an input cannot be used.
 */
#include <inttypes.h>
#include <stdio.h>

#include <mtls.h>

int
main(int argc, char **argv)
{
	struct mtls_config *cfg = NULL;
	struct mtls *ctx = NULL;
	int rv = 2;

	if (argc != 4) {
		fprintf(stderr, "usage: verify_peer BUNDLE ALLOW_RULE PEER_CHAIN\n");
		return 2;
	}
	if ((cfg = mtls_config_new()) == NULL || (ctx = mtls_new()) == NULL)
		goto out;
	if (mtls_config_set_trust_file(cfg, argv[1]) != 0 ||
	    mtls_config_add_allow(cfg, argv[2]) != 0 ||
	    mtls_config_set_purpose(cfg, MTLS_PURPOSE_CLIENT) != 0) {
		fprintf(stderr, "verify_peer: %s\n", mtls_config_error(cfg));
		goto out;
	}
	if (mtls_configure(ctx, cfg) != 0) {
		fprintf(stderr, "verify_peer: %s\n", mtls_error(ctx));
		goto out;
	}
	if (mtls_verify_file(ctx, argv[3]) == 0) {
		int64_t not_before, not_after;
		size_t i;

		printf("allowed: %s\n", mtls_peer_id(ctx));
		for (i = 0; i < mtls_peer_identity_count(ctx); i++)
			printf("identity: %s\n", mtls_peer_identity(ctx, i));
		if (mtls_peer_validity(ctx, &not_before, &not_after) == 0)
			printf("valid: %" PRId64 " to %" PRId64 "\n", not_before,
			    not_after);
		printf("chain: %zu certificate(s)\n",
		    mtls_peer_chain_count(ctx));
		rv = 0;
	} else if (mtls_fail_code(ctx) != MTLS_FAIL_NONE) {
		printf("refused: %s: %s\n", mtls_fail_name(mtls_fail_code(ctx)),
		    mtls_error(ctx));
		rv = 1;
	} else
		fprintf(stderr, "verify_peer: %s\n", mtls_error(ctx));
 out:
	mtls_free(ctx);
	mtls_config_free(cfg);	/* ctx held its own reference */
	return rv;
}
