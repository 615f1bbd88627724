#!/usr/bin/env bash
# Running it as a service (issue 17 §3): `make install DESTDIR=…` puts the
# binary, one generated man page per command, the systemd units (naming
# $PREFIX/bin/mtls), the sysusers file, the alert rules, the dashboard and
# docs/operations.md in place. The units pass `systemd-analyze verify`
# (binary path swapped for the build's, no systemd as PID 1 needed), carry
# the hardening options and score "OK" or better in `systemd-analyze
# security --offline`. Each man page renders with no warning from man or
# groff -ww, and names every flag its command's --help prints.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
INST="$T_DIR/inst"
PFX=/usr/local
make -s -C "$_root" BUILD="$BUILD" PREFIX="$PFX" DESTDIR="$INST" install > install.log 2>&1 \
    && ok "make install DESTDIR=… PREFIX=$PFX" || { not_ok "make install" "$(tail -n 20 install.log)"; exit 0; }
pages="mtls mtls-ca mtls-agent mtls-proxy mtls-cert mtls-doctor"
miss=""
for f in bin/mtls lib/sysusers.d/mtls.conf share/mtls/mtls.rules.yml share/mtls/mtls.json \
    share/doc/mtls/operations.md lib/systemd/system/mtls-ca.service lib/systemd/system/mtls-proxy@.service \
    lib/systemd/system/mtls-agent@.service; do
	[ -s "$INST$PFX/$f" ] || miss="$miss $f"
done
for p in $pages; do [ -s "$INST$PFX/share/man/man1/$p.1" ] || miss="$miss $p.1"; done
[ -z "$miss" ] && ok "installed: binary, 6 man pages, 3 units, sysusers, rules, dashboard, operations.md" \
    || not_ok "not installed:$miss" "$(find "$INST" -type f)"

# ---- units ----
U="$INST$PFX/lib/systemd/system"
bad=""
for u in "$U"/*.service; do
	grep -q "^ExecStart=$PFX/bin/mtls " "$u" || bad="$bad $(basename "$u")"
	grep -q '@bindir@\|@docdir@' "$u" && bad="$bad $(basename "$u"):placeholder"
done
[ -z "$bad" ] && ok "each unit runs $PFX/bin/mtls (the make install path)" || not_ok "ExecStart:$bad"
bad=""
for u in "$U"/*.service; do
	for o in 'Type=notify' 'User=mtls' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'ProtectHome=yes' \
	    'PrivateTmp=yes' 'CapabilityBoundingSet=$' 'AmbientCapabilities=$' 'RestrictAddressFamilies=' \
	    'SystemCallFilter=@system-service' 'StateDirectory=' 'UMask=0077'; do
		grep -q "^$o" "$u" || bad="$bad $(basename "$u"):$o"
	done
done
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID' "$U/mtls-proxy@.service" || bad="$bad proxy:ExecReload"
grep -q '^RuntimeDirectory=' "$U/mtls-proxy@.service" || bad="$bad proxy:RuntimeDirectory"
[ -z "$bad" ] && ok "hardening, Type=notify, state/runtime directories and SIGHUP reload in the units" \
    || not_ok "unit options missing:$bad"
command -v systemd-analyze > /dev/null || { not_ok "systemd-analyze is installed (scripts/deps.sh check)"; exit 0; }
mkdir v
for u in "$U"/*.service; do sed "s|$PFX/bin/mtls|$MTLS|g" "$u" > "v/$(basename "$u")"; done
mv v/mtls-proxy@.service v/mtls-proxy@edge.service
mv v/mtls-agent@.service v/mtls-agent@web.service
(cd v && MANPATH="$INST$PFX/share/man" systemd-analyze verify ./mtls-ca.service ./mtls-proxy@edge.service \
    ./mtls-agent@web.service) > verify.txt 2>&1
[ $? = 0 ] && [ ! -s verify.txt ] && ok "systemd-analyze verify: the three units, no message (PID 1: $(ps -p 1 -o comm=))" \
    || not_ok "systemd-analyze verify" "$(cat verify.txt)"
bad=""
for u in v/*.service; do
	s=$(systemd-analyze security --offline=yes "$u" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
	[ -n "$s" ] && python3 -c "import sys; sys.exit(0 if float('$s') <= 2.0 else 1)" || bad="$bad $(basename "$u")=${s:-none}"
	scores="${scores:-} $(basename "$u" .service)=$s"
done
[ -z "$bad" ] && ok "systemd-analyze security --offline: exposure <= 2.0 (${scores# })" || not_ok "security exposure:$bad"

# ---- man pages ----
M="$INST$PFX/share/man/man1"
bad=""
for p in $pages; do
	w=$(MANWIDTH=80 man --warnings -l "$M/$p.1" 2>&1 > /dev/null)
	g=$(groff -ww -man -Tutf8 "$M/$p.1" 2>&1 > /dev/null)
	[ -z "$w$g" ] || bad="$bad $p: $w $g"
	MANWIDTH=80 man -l "$M/$p.1" 2>/dev/null | grep -q 'SYNOPSIS' || bad="$bad $p:no-SYNOPSIS"
done
[ -z "$bad" ] && ok "the 6 man pages render with no warning (man --warnings, groff -ww)" || not_ok "man warnings" "$bad"
# every flag of `mtls CMD [SUB] --help` is in CMD's page
bad=""
flags_of() { "$MTLS" "$@" --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }
subs_of() { "$MTLS" "$@" --help 2>&1 | awk '/^commands:/{c=1; next} c && /^  [a-z]/{print $1}'; }
for c in ca agent proxy cert doctor; do
	sed 's/\\-/-/g' "$M/mtls-$c.1" > page.txt
	for f in $(flags_of "$c"; for s in $(subs_of "$c"); do flags_of "$c" "$s"; done); do
		grep -qF -- "$f" page.txt || bad="$bad mtls-$c:$f"
	done
	# the SYNOPSIS holds the usage lines of --help
	u=$("$MTLS" "$c" --help 2>&1 | sed -n 's/^usage: //p' | head -n 1)
	grep -qF -- "$u" page.txt || bad="$bad mtls-$c:usage"
done
[ -z "$bad" ] && ok "each page names every flag of its command's --help, and its usage line" || not_ok "man vs --help" "$bad"
