#!/bin/sh
# Installs the Debian 12 packages mtls needs to build and test, when they
# are missing. As root it runs apt-get; otherwise it prints the exact line
# and fails, so `make` stops with something to copy.
#   scripts/deps.sh build     what `make` needs
#   scripts/deps.sh check     what `make check` needs on top (peers)
#   scripts/deps.sh fuzz      clang with libFuzzer
#   scripts/deps.sh coverage  gcovr, for make coverage only
set -eu
build="gcc make pkg-config libssl-dev libsqlite3-dev libjansson-dev libcmocka-dev libhttp-parser-dev libcurl4-openssl-dev libpq-dev libp11-dev"
check="openssl curl chromium libnss3-tools softhsm2 libengine-pkcs11-openssl opensc python3 nginx-light sqlite3 procps gnutls-bin golang-go openjdk-17-jdk-headless nodejs iproute2 haproxy faketime postgresql prometheus systemd man-db groff-base"
fuzz="clang libclang-rt-14-dev"
coverage="gcovr"
want=""
for set in "${@:-build}"; do
	case "$set" in
	build) want="$want $build" ;;
	check) want="$want $build $check" ;;
	fuzz) want="$want $fuzz" ;;
	coverage) want="$want $coverage" ;;
	*) echo "deps.sh: unknown set '$set' (build, check, fuzz, coverage)" >&2; exit 2 ;;
	esac
done
missing=""
for p in $want; do
	s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$s" in
	*"install ok installed"*) ;;
	*) case " $missing " in *" $p "*) ;; *) missing="$missing $p" ;; esac ;;
	esac
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "mtls: missing packages:$missing" >&2
	echo "mtls: run as root: apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
echo "mtls: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package list makes install fail on a fresh machine: update first.
apt-get update -qq >&2 || true
apt-get install -y -qq --no-install-recommends $missing >&2
