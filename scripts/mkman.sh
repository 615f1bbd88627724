#!/bin/sh
# Generates a man page from one source, the binary's own --help text (the
# usage lines are the SYNOPSIS, the rest the DESCRIPTION), wrapped in the
# hand-written sections of man/PAGE.in (NAME, and what --help does not
# say: FILES, SIGNALS, EXIT STATUS, SEE ALSO).
#   scripts/mkman.sh MTLS man/mtls-ca.in OUT
# In PAGE.in, a line `.\" mtls: CMD` names the command ("" for mtls
# itself); a line `@HELP@` is replaced by SYNOPSIS and DESCRIPTION, one
# subsection per subcommand listed under "commands:" in CMD --help.
set -eu
mtls=$1 src=$2 out=$3
cmd=$(sed -n 's/^\.\\" mtls: *//p' "$src" | head -n 1)
tmp="$out.tmp.$$"
trap 'rm -f "$tmp" "$tmp.h"' EXIT
# help CMD...: --help text of `mtls CMD...` (stdout or stderr; exit 0 or 2)
help() { "$mtls" "$@" --help 2>&1 || true; }
# roff-escape: backslashes, leading dots and quotes, and hyphens
esc() { sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\([.']\)/\\\\\&\1/"; }
# usage lines: from the first "usage:" up to the first line that starts
# neither with "usage:" nor with blanks
usage() { awk 'BEGIN{u=0} /^usage:/{u=1; sub(/^usage: */,""); print; next}
    u && /^[ \t]/{sub(/^[ \t]+/,"  "); print; next} u{exit}'; }
rest() { awk 'BEGIN{u=0} /^usage:/{u=1; next} u && /^[ \t]/ && !d{next} {d=1; print}'; }
# subcommands (not for mtls itself: each command has its own page)
subs() { [ -n "$cmd" ] || return 0; awk '/^commands:/{c=1; next} c && /^  [a-z]/{print $1}'; }
block() {	# block TEXT-FILE: verbatim, in no-fill mode
	printf '.nf\n'; esc < "$1"; printf '.fi\n'
}
# shellcheck disable=SC2086
help $cmd > "$tmp.h"
{
	printf '.SH SYNOPSIS\n.nf\n'
	usage < "$tmp.h" | esc
	for s in $(subs < "$tmp.h"); do
		help $cmd "$s" | usage | esc
	done
	printf '.fi\n.SH DESCRIPTION\n'
	rest < "$tmp.h" > "$tmp.r"; block "$tmp.r"; rm -f "$tmp.r"
	for s in $(subs < "$tmp.h"); do
		printf '.SS "mtls %s %s"\n' "$cmd" "$s"
		help $cmd "$s" > "$tmp.r"; block "$tmp.r"; rm -f "$tmp.r"
	done
} > "$tmp.g"
awk -v g="$tmp.g" '/^@HELP@$/{while((getline l < g) > 0) print l; next} {print}' "$src" > "$tmp"
rm -f "$tmp.g"
mv "$tmp" "$out"
