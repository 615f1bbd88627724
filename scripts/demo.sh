#!/usr/bin/env bash
# make demo: the main job end to end, on this machine only.
# Today: a private PKI with a scoped intermediate, two workload identities,
# inspection, verification with mtls and openssl, a revocation that
# `mtls cert verify` then rejects with its taxonomy code.
set -euo pipefail
BUILD=${BUILD:-build}
MTLS=$(cd "$(dirname "$0")/.." && pwd)/$BUILD/mtls
work=$(mktemp -d "${TMPDIR:-/tmp}/mtls-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. An offline root and an intermediate scoped to spiffe://example.org/ns/prod/"
run "$MTLS" ca init root --trust-domain example.org
run "$MTLS" ca intermediate prod-ca --parent root --name "prod issuing CA" \
    --permit-spiffe spiffe://example.org/ns/prod/ --permit-dns prod.example.org

step "2. Two workload identities (24 h certificates, keys generated here, 0600)"
run "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/prod/sa/api \
    --dns api.prod.example.org --out api
run "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/prod/sa/billing --out billing
ls -l api.pem api.key billing.pem billing.key

step "3. What is in a certificate"
run "$MTLS" cert inspect api.pem

step "4. Verify: mtls policy and, for comparison, openssl"
run "$MTLS" cert verify api.pem --ca root/bundle.pem --purpose server --dns api.prod.example.org
run "$MTLS" cert verify billing.pem --ca root/bundle.pem --purpose client \
    --spiffe-id spiffe://example.org/ns/prod/sa/billing
run openssl verify -CAfile root/bundle.pem -untrusted prod-ca/ca.pem -purpose sslclient billing.pem

step "5. The intermediate refuses to issue outside its scope"
if "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/dev/sa/x --out dev; then
	echo "demo: expected a refusal" >&2; exit 1
fi

step "6. Revoke billing, publish a CRL, and verify again"
serial=$(openssl x509 -in billing.pem -noout -serial | cut -d= -f2)
run "$MTLS" ca revoke --ca prod-ca "$serial" --reason keyCompromise
run "$MTLS" ca crl --ca prod-ca --out crl.pem
set +e
run "$MTLS" cert verify billing.pem --ca root/bundle.pem --crl crl.pem
rc=$?
set -e
echo "(exit $rc: 1 means invalid, with its taxonomy code above)"
[ "$rc" = 1 ]

step "7. The inventory, and what expires within 7 days"
run "$MTLS" ca list --ca prod-ca
set +e
run "$MTLS" ca list --ca prod-ca --expiring 7d
set -e

printf '\n\033[1mdemo ok\033[0m\n'
