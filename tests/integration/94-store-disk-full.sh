#!/usr/bin/env bash
# Issue 15 §1: the store's disk full during issuance. The CA directory
# (SQLite inventory) lives on a 2 MiB tmpfs; a file fills it. Enroll and
# renew are then 503 naming "disk full" (the request log line and
# not_ready say so), nothing is recorded or acknowledged, the token is not
# spent; the file removed, ca serve (not restarted) is ready again by
# itself and the same token enrolls; the inventory passes integrity_check
# and holds no row without its certificate.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || { not_ok "94 mounts a tmpfs: run as root"; exit 0; }
MNT=$T_DIR/mnt
SERVE_PID=
_fs_stop() {
	if [ -n "$SERVE_PID" ]; then
		kill "$SERVE_PID" 2>/dev/null
		wait_for 10 gone "$SERVE_PID" || kill -9 "$SERVE_PID" 2>/dev/null
		wait "$SERVE_PID" 2>/dev/null
	fi
	mountpoint -q "$MNT" && umount "$MNT"
	_cleanup
}
trap _fs_stop EXIT
mkdir -p "$MNT"
mount -t tmpfs -o size=2m,mode=0700 tmpfs "$MNT" || { not_ok "mount a 2 MiB tmpfs"; exit 0; }
cd "$MNT" || exit 1
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/renewer --out r
tok=$("$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/full)
cd "$T_DIR" || exit 1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout w.key -subj /CN=w -out w.csr 2>/dev/null
python3 -c 'import json,sys; print(json.dumps({"token": sys.argv[1], "csr": open(sys.argv[2]).read()}))' "$tok" w.csr > enroll.json
python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' w.csr > renew.json

port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca "$MNT/int" --listen "127.0.0.1:$port" --url "$URL"
SERVE_PID=$BG_PID
LOG=$T_DIR/caserve.log
wait_for 20 grep -q '"event":"start"' "$LOG" || { not_ok "ca serve starts" "$(tail -3 "$LOG")"; exit 0; }
post() {	# post PATH BODY [curl args]: prints the status, body in resp.json
	local p=$1 b=$2
	shift 2
	curl -sS --max-time 15 --cacert "$MNT/root/bundle.pem" -o resp.json -w '%{http_code}' "$@" \
	    -H 'Content-Type: application/json' --data-binary @"$b" "$URL$p"
}
rows() { sqlite3 "$MNT/int/inventory.db" "SELECT count(*) FROM certs"; }
[ "$(post /v1/renew renew.json --cert "$MNT/r.pem" --key "$MNT/r.key")" = 200 ] && ok "renew works while the disk has room" \
    || not_ok "renew before" "$(head -c 300 resp.json)"
before=$(rows)

# fill the file system
dd if=/dev/zero of="$MNT/fill" bs=4k 2> /dev/null
[ "$(df --output=avail -k "$MNT" | tail -1 | tr -d ' ')" = 0 ] && ok "the CA directory's file system is full" \
    || not_ok "full" "$(df -k "$MNT")"
st=$(post /v1/enroll enroll.json)
[ "$st" = 503 ] && grep -q '"error": *"unavailable"' resp.json && grep -q 'disk full' resp.json \
    && ok "enroll on a full disk: 503 unavailable naming 'disk full'" || not_ok "enroll when full: $st" "$(head -c 300 resp.json)"
st=$(post /v1/renew renew.json --cert "$MNT/r.pem" --key "$MNT/r.key")
[ "$st" = 503 ] && grep -q 'disk full' resp.json && ok "renew on a full disk: 503 naming 'disk full'" \
    || not_ok "renew when full: $st" "$(head -c 300 resp.json)"
! grep -qF -e "$MNT" -e inventory.db resp.json && ok "the 503 body names the kind, not the inventory's path" \
    || not_ok "503 body leaks the store's path" "$(head -c 300 resp.json)"
expect_grep '"event":"request".*"path":"/v1/enroll","status":503.*disk full' "$LOG" "the request log line names the cause"
expect_grep '"event":"not_ready".*inventory' "$LOG" "the not_ready log line keeps the detail (the inventory's path)"
expect_grep '"event":"not_ready".*disk full' "$LOG" "a not_ready line says disk full"
st=$(curl -sS --max-time 5 --cacert "$MNT/root/bundle.pem" -o ready.json -w '%{http_code}' "$URL/readyz")
[ "$st" = 503 ] && grep -q 'disk full' ready.json && ok "/readyz 503 'disk full'" || not_ok "readyz when full: $st" "$(cat ready.json)"

# space back: ready again by itself, the same token enrolls
rm -f "$MNT/fill"
ready() { [ "$(curl -sS --max-time 5 --cacert "$MNT/root/bundle.pem" -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ]; }
t0=$(ms)
wait_for 10 ready && ok "space back: ready again by itself after $(( $(ms) - t0 )) ms (no restart)" || not_ok "ready again"
[ "$(rows)" = "$before" ] && ok "nothing was recorded while full" || not_ok "rows while full" "$before → $(rows)"
[ "$(sqlite3 "$MNT/int/inventory.db" "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL AND spiffe_id LIKE '%/full'")" = 0 ] \
    && ok "the token was not spent" || not_ok "token spent while full"
st=$(post /v1/enroll enroll.json)
[ "$st" = 200 ] && ok "the same token enrolls once space is back" || not_ok "enroll after: $st" "$(head -c 300 resp.json)"
[ "$(post /v1/renew renew.json --cert "$MNT/r.pem" --key "$MNT/r.key")" = 200 ] && ok "renew works again" \
    || not_ok "renew after" "$(head -c 300 resp.json)"
[ "$(rows)" = $((before + 2)) ] && ok "two rows more, the two answered" || not_ok "rows after" "$before → $(rows)"
[ "$(sqlite3 "$MNT/int/inventory.db" "PRAGMA integrity_check")" = ok ] && ok "integrity_check: ok" \
    || not_ok "integrity_check" "$(sqlite3 "$MNT/int/inventory.db" "PRAGMA integrity_check" | head -5)"
[ "$(sqlite3 "$MNT/int/inventory.db" "SELECT count(*) FROM certs WHERE der IS NULL OR length(der) < 100")" = 0 ] \
    && [ "$(sqlite3 "$MNT/int/inventory.db" "SELECT count(*) FROM tokens t WHERE used_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM certs c WHERE c.serial = t.serial)")" = 0 ] \
    && ok "no row without its certificate, no spent token without one" || not_ok "partial rows"
kill -0 "$SERVE_PID" && ok "ca serve ran throughout" || not_ok "ca serve alive"
