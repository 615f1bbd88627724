#!/usr/bin/env bash
# The test runner of `make check`: unit programs (cmocka, TAP output),
# fuzz-corpus replays, then integration scripts. Every result is one line
# "ok - NAME" or "not ok - NAME"; the last line is "N passed, N failed".
#   BUILD=build T=verify tests/run.sh   only tests whose file name has "verify"
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
T=${T:-}
export BUILD
pass=0 fail=0 failed=()

record() {	# record ok|not NAME
	if [ "$1" = ok ]; then pass=$((pass + 1)); echo "ok - $2"
	else fail=$((fail + 1)); failed+=("$2"); echo "not ok - $2"; fi
}
selected() { [ -z "$T" ] || [[ "$1" == *"$T"* ]]; }

# Unit tests: cmocka prints TAP with CMOCKA_MESSAGE_OUTPUT=TAP.
for bin in "$BUILD"/tests/test_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	selected "$name" || continue
	out=$(CMOCKA_MESSAGE_OUTPUT=TAP timeout 120 "$bin" 2>&1)
	rc=$?
	n_ok=0 n_bad=0
	while IFS= read -r line; do
		case "$line" in
		"ok "*) record ok "$name: ${line#ok * - }"; n_ok=$((n_ok + 1)) ;;
		"not ok "*) record not "$name: ${line#not ok * - }"; n_bad=$((n_bad + 1))
			printf '%s\n' "$out" | grep -A5 -F "${line#not ok * - }" | sed 's/^/    /' | head -8 ;;
		esac
	done <<< "$out"
	if [ $rc -ne 0 ] && [ $n_bad -eq 0 ]; then
		record not "$name (exit $rc)"
		printf '%s\n' "$out" | tail -20 | sed 's/^/    /'
	elif [ $n_ok -eq 0 ] && [ $n_bad -eq 0 ]; then
		record not "$name (ran no test)"
	fi
done

# Fuzz targets built as plain programs replay their committed corpus.
for bin in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	selected "$name" || continue
	corpus=fuzz/corpus/${name#fuzz_}
	if [ ! -d "$corpus" ]; then record not "$name (no corpus at $corpus)"; continue; fi
	extra=()
	if [ -x "fuzz/gen_cert_corpus.sh" ] && [ "$name" = fuzz_cert ]; then
		gen=$(mktemp -d)
		fuzz/gen_cert_corpus.sh "$BUILD/mtls" "$gen" && extra=("$gen")
	fi
	if out=$(timeout 300 "$bin" "$corpus" "${extra[@]}" 2>&1); then
		record ok "$name replays $corpus ($(printf '%s' "$out" | tail -1))"
	else
		record not "$name replays $corpus"
		printf '%s\n' "$out" | tail -20 | sed 's/^/    /'
	fi
	[ ${#extra[@]} -gt 0 ] && rm -rf "${extra[@]}"
done

# Integration scripts print "ok - NAME" / "not ok - NAME" themselves; a
# script that dies without saying "not ok" counts as one failure.
for script in tests/integration/[0-9][0-9]-*.sh; do
	[ -f "$script" ] || continue
	name=$(basename "$script" .sh)
	selected "$name" || continue
	echo "# $name"
	n_bad=0 rc=0
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) record ok "$name: ${line#ok - }" ;;
		"not ok - "*) record not "$name: ${line#not ok - }"; n_bad=$((n_bad + 1)) ;;
		"#exit "*) rc=${line#\#exit } ;;
		*) printf '    %s\n' "$line" ;;
		esac
	done < <(timeout 900 bash "$script" 2>&1; echo "#exit $?")
	if [ "$rc" != 0 ] && [ $n_bad -eq 0 ]; then
		record not "$name (exit $rc)"
	fi
done

if [ $((pass + fail)) -eq 0 ]; then
	echo "no test ran"
	echo "0 passed, 1 failed"
	exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "failures:"
	printf '  %s\n' "${failed[@]}"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
