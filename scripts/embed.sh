#!/bin/sh
# Writes a C file holding FILEs as byte arrays (src/svc/ca/ui_assets.h):
#   scripts/embed.sh FILE... > ui_assets.c
# Each is named by its base name. od(1) only: no xxd, no network.
set -eu
printf '/* made by scripts/embed.sh from %s: do not edit */\n' "$*"
printf '#include "ca/ui_assets.h"\n\n'
i=0
for f in "$@"; do
	[ -f "$f" ] || { echo "embed.sh: $f: not a file" >&2; exit 1; }
	printf 'static const unsigned char a%d[] = {\n' "$i"
	od -An -v -tx1 "$f" | sed -e 's/  */ /g' -e 's/^ //' -e '/^$/d' \
	    -e 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'
	printf '0x00 };\n\n'
	i=$((i + 1))
done
printf 'const struct ui_asset ui_assets[] = {\n'
i=0
for f in "$@"; do
	# the array's final 0x00 is not part of the file
	printf '\t{ "%s", a%d, sizeof(a%d) - 1 },\n' "$(basename "$f")" "$i" "$i"
	i=$((i + 1))
done
printf '};\nconst size_t ui_assets_n = %d;\n' "$i"
