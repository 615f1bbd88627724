#!/usr/bin/env bash
# make fuzz: builds every fuzz/fuzz_*.c with clang's libFuzzer, ASan and
# UBSan into $BUILD-fuzz/ and runs each for FUZZ_SECONDS on a scratch copy
# of its corpus (the committed corpus only grows deliberately). Exit 1 on
# any crash, naming the input.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
out="$(pwd)/$BUILD-fuzz"
mkdir -p "$out"
CC=${FUZZ_CC:-clang}
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 -D_GNU_SOURCE -Iinclude -Isrc/lib -Isrc/svc $(pkg-config --cflags openssl sqlite3 jansson)"
libs="$(pkg-config --libs openssl sqlite3 jansson libcurl libp11) -lhttp_parser -lpthread"
make --no-print-directory BUILD="$BUILD" all >/dev/null || exit 1
rc=0
# libmtls once, as the Makefile builds it: only its objects may include
# src/lib/private.h (MTLS_BUILDING_LIB)
mkdir -p "$out/lib"
for src in src/lib/*.c; do
	# shellcheck disable=SC2086
	$CC $flags -DMTLS_BUILDING_LIB -c -o "$out/lib/$(basename "$src" .c).o" "$src" ||
	    { echo "$src: build failed"; exit 1; }
done
for src in fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	# shellcheck disable=SC2086
	if ! $CC $flags -o "$out/$name" "$src" "$out"/lib/*.o src/svc/*/*.c $libs; then
		echo "$name: build failed"; rc=1; continue
	fi
	work=$(mktemp -d)
	cp -r "fuzz/corpus/${name#fuzz_}/." "$work/" 2>/dev/null
	[ "$name" = fuzz_cert ] && fuzz/gen_cert_corpus.sh "$BUILD/mtls" "$work" >/dev/null 2>&1
	log="$out/$name.log"
	if (cd "$out" && ./"$name" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 "$work" > "$log" 2>&1); then
		echo "$name: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs, ok"
	else
		echo "$name: CRASH, see $log and $out/crash-*"; rc=1
	fi
	rm -rf "$work"
done
exit $rc
