# Sourced by the 98-pkcs11* tests after lib.sh, in $T_DIR: a SoftHSM2 of
# this test's own (its tokens in $T_DIR/tokens, never the user's), the
# module path, and helpers on it.
#   softhsm_setup               SoftHSM2 and pkcs11-tool present, $MOD, the
#                               config exported (else one not_ok, exit 0)
#   softhsm_token LABEL PIN [SO]  a token initialized with that user PIN
#   pinfile NAME PIN            NAME holds PIN, mode 0600 (replaced by rename)
#   p11 LABEL PIN ARGS...       pkcs11-tool logged in to token LABEL
#   softhsm_keypair LABEL PIN OBJ ID  an EC P-256 pair made in the token
#   p11_labels LABEL PIN OBJ    how many objects are labelled OBJ
#   p11_pub LABEL OBJ, cert_pub FILE  SHA-256 of a public key (token, certificate)
softhsm_setup() {
	peers_need softhsm2-util pkcs11-tool
	MOD=${MTLS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
	[ -f "$MOD" ] || { not_ok "SoftHSM2 module $MOD (scripts/deps.sh check)"; exit 0; }
	mkdir -p "$T_DIR/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T_DIR" \
	    > "$T_DIR/softhsm2.conf"
	export SOFTHSM2_CONF=$T_DIR/softhsm2.conf
}
softhsm_token() {
	q softhsm2-util --init-token --free --label "$1" --pin "$2" --so-pin "${3:-5678}"
}
pinfile() {
	printf '%s\n' "$2" > "$1.new" && chmod 600 "$1.new" && mv "$1.new" "$1"
}
p11() {
	local t=$1 p=$2
	shift 2
	pkcs11-tool --module "$MOD" --token-label "$t" --login --pin "$p" "$@"
}
softhsm_keypair() {
	q p11 "$1" "$2" --keypairgen --key-type EC:prime256v1 --label "$3" --id "$4"
}
p11_labels() {
	p11 "$1" "$2" --list-objects 2>/dev/null | grep -c "label: *$3\$"
}
# the SHA-256 of the DER public key the token holds under OBJ / in a certificate
# (p11_pub LABEL --id HEX: by CKA_ID)
p11_pub() {
	local t=$1
	shift
	[ $# = 1 ] && set -- --label "$1"
	pkcs11-tool --module "$MOD" --token-label "$t" --read-object --type pubkey "$@" 2>/dev/null \
	    | openssl pkey -pubin -inform DER -outform DER 2>/dev/null | sha256sum
}
cert_pub() {
	openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum
}
