#!/usr/bin/env bash
# The rules the commands held before issue 14 moved them into src/svc
# (doctor connect's --ca, cert export's format rules, the agent's options):
# each refusal is exit 2 with the flag to fix named, before anything is
# read, written or connected to. Passes on the code before the move too.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair

# refused ARGS...: exit 2, and stderr has $want
refused() {
	local name=$1 want=$2
	shift 2
	expect_exit 2 "$name: exit 2" "$MTLS" "$@"
	expect_grep "$want" "$T_DIR/err" "$name: names the fix"
}

port=$(free_port)
refused "doctor connect: an unreadable --ca" "--ca /nonexistent/roots.pem: cannot read it" \
    doctor connect --ca /nonexistent/roots.pem --json "127.0.0.1:$port"
[ ! -s "$T_DIR/out" ] && ok "doctor connect --json: no report for a usage error" ||
    not_ok "doctor connect --json: no report for a usage error" "$(head -c 300 "$T_DIR/out")"

refused "cert export pem without --out" "holds the key: give --out" \
    cert export --cert client.pem --key client.key --format pem
[ ! -s "$T_DIR/out" ] && ok "cert export pem: no key on standard output" ||
    not_ok "cert export pem: no key on standard output"
refused "cert export p12 without a password" "needs --password-file" \
    cert export --cert client.pem --key client.key --format p12 --out c.p12
[ ! -e c.p12 ] && ok "cert export p12: nothing written" || not_ok "cert export p12: nothing written"
refused "cert export k8s without --key" "--format k8s needs --key" \
    cert export --cert client.pem --format k8s
refused "cert export: an unknown format" "p12[|]pem[|]der[|]k8s" \
    cert export --cert client.pem --key client.key --format jks
echo keep > kept.der
refused "cert export der over a file" "kept.der" \
    cert export --cert client.pem --format der --out kept.der
[ "$(cat kept.der)" = keep ] && ok "cert export der: the file is unchanged without --force" ||
    not_ok "cert export der: the file is unchanged without --force"
"$MTLS" cert export --cert client.pem --format der --out kept.der --force 2>/dev/null &&
    openssl x509 -inform DER -in kept.der -noout 2>/dev/null &&
    ok "cert export der --force: replaced by the DER" || not_ok "cert export der --force"
refused "cert inspect: an unreadable file" "/nonexistent/c.pem" cert inspect /nonexistent/c.pem

echo token > tok
refused "agent: --ca-url over http" "--ca-url must be https://" \
    agent --ca-url "http://127.0.0.1:$port" --out-dir out1 --token-file tok --once
[ ! -e out1 ] && ok "agent: no --out-dir created for a refused URL" ||
    not_ok "agent: no --out-dir created for a refused URL"
refused "agent: a token and a certificate" "give --token-file, or --cert and --key" \
    agent --ca-url "https://127.0.0.1:$port" --out-dir out2 --token-file tok \
    --cert client.pem --key client.key --once
refused "agent: --cert without --key" "give --token-file, or --cert and --key" \
    agent --ca-url "https://127.0.0.1:$port" --out-dir out2 --cert client.pem --once
refused "agent: no --out-dir" "give --ca-url and --out-dir" \
    agent --ca-url "https://127.0.0.1:$port" --token-file tok --once
