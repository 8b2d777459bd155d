#!/usr/bin/env bash
# cli_version.sh: the version is defined once, in meson.build's project()
# (passed here as $BV_VERSION), and every tool's --version prints it.
. "$(dirname "$0")/lib.sh"

: "${BV_VERSION:?meson passes the project version}"
TOOLS=$(dirname "$BV")
for t in bvault bvaultd bvault-agent; do
	run_ok "$t --version" "$TOOLS/$t" --version
	[ "$(cat "$T/out")" = "$t $BV_VERSION" ]
	ok $? "$t --version prints '$t $BV_VERSION' ($(head -c 80 "$T/out"))"
done
"$BV" --help >"$T/out" 2>&1
grep -q -- '--version' "$T/out"
ok $? "bvault --help lists --version"
! grep -rqE '"[0-9]+\.[0-9]+\.[0-9]+"' "$BV_SOURCE_DIR/engine" \
	"$BV_SOURCE_DIR/tools" --include='*.c' --include='*.h'
ok $? "no version string is written into the C sources"

done_testing
