#!/usr/bin/env bash
# make coverage: runs the tests built with --coverage in $BUILD (build-cov/)
# and writes $BUILD/coverage/index.html (a page per source file) and
# summary.txt (lines per file under src/), then prints src/lib's line
# coverage. The unit tests and the fuzz-corpus replays run; with
# COV_INTEGRATION=1 the integration scripts too (slow; they need the
# packages of scripts/deps.sh check); COV_T=substring runs only the tests
# whose name has it (as make check T=). Exit 1 when a test failed (the
# report is written anyway).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build-cov}
out=$BUILD/coverage
# counts from this run only
find "$BUILD" -name '*.gcda' -delete
rm -rf "$out"
mkdir -p "$out"
rc=0
if [ -n "${COV_T:-}" ]; then
	sets=("$COV_T")
elif [ "${COV_INTEGRATION:-0}" = 1 ]; then
	sets=("")
else
	sets=(test_ fuzz_)
fi
if [ "${COV_INTEGRATION:-0}" = 1 ]; then
	scripts/deps.sh check || exit 1
fi
for t in "${sets[@]}"; do
	BUILD=$BUILD T=$t tests/run.sh >> "$out/tests.log" 2>&1 || rc=1
done
grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/tests.log" | sed 's/^/coverage: tests: /'
[ $rc -eq 0 ] || grep -E '^not ok' "$out/tests.log" | sed 's/^/coverage: /'
gcovr --root . --filter 'src/' --json "$out/coverage.json" "$BUILD/obj" ||
	{ echo "coverage: gcovr failed" >&2; exit 1; }
gcovr --root . --add-tracefile "$out/coverage.json" \
    --html-details "$out/index.html" --txt "$out/summary.txt" || exit 1
gcovr --root . --add-tracefile "$out/coverage.json" --filter 'src/lib/' \
    --txt "$out/lib.txt" || exit 1
echo "coverage: report $out/index.html, per file $out/summary.txt"
awk '/^TOTAL/ { printf "coverage: src/lib lines %s (%s of %s)\n", $4, $3, $2 }' \
    "$out/lib.txt"
awk '/^TOTAL/ { printf "coverage: src/ lines %s (%s of %s)\n", $4, $3, $2 }' \
    "$out/summary.txt"
exit $rc
