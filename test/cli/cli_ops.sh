#!/usr/bin/env bash
# cli_ops.sh: the operator's comforts (issue 14): bvault-agent's usage
# errors (exit 2, a message), container images refused by the agent and
# by mkstream with the qemu-nbd hint, the agent's progress bar on a
# terminal and its -v summary, stats --prometheus checked line by line,
# the live counters of a running bvaultd moving after a backup, and the
# systemd unit verified.
. "$(dirname "$0")/lib.sh"

TOOLS=$(dirname "$BV")
BVA=$TOOLS/bvault-agent
BVD=$TOOLS/bvaultd
CHECK="$(dirname "$0")/prom_check.py"
# The exposition-format check is a python3 script; without python3 each
# check passes with a note (the rest of the test still runs).
command -v python3 >/dev/null 2>&1 || {
	diag "no python3: the exposition format goes unchecked"
	CHECK=/dev/null
	python3() { true; }
}

# agent_usage DESC RE ARGS...: bvault-agent exits 2, stderr matching RE
# and pointing to --help.
agent_usage() {
	local desc=$1 re=$2 rc
	shift 2
	"$BVA" "$@" >"$T/out" 2>"$T/err" </dev/null
	rc=$?
	if [ $rc -eq 2 ] && grep -Eq -- "^bvault-agent: .*$re" "$T/err" &&
	   grep -q -- "--help" "$T/err"; then
		ok 0 "$desc"
	else
		ok 1 "$desc"
		diag "exit $rc; stderr:"; sed 's/^/#   /' "$T/err"
	fi
}

head -c 1048576 /dev/zero >"$T/raw.img"
: >"$T/key"
BASE=(--unix "$T/nosock" --name a --secret-file "$T/key")
agent_usage "--disk without NAME= is a usage error" \
	'--disk x: not NAME=SOURCE' --disk x
agent_usage "--full and --compare together" 'give one of --full' \
	--full --compare
agent_usage "--bandwidth 10X" '--bandwidth 10X: not a rate' \
	--bandwidth 10X
agent_usage "--extents without --base" '--extents need --base N' \
	"${BASE[@]}" --disk a="$T/raw.img" --extents "$T/key"
agent_usage "--extents --base latest is refused" \
	"--extents needs --base N.*not 'latest'" \
	"${BASE[@]}" --disk a="$T/raw.img" --extents "$T/key" --base latest
agent_usage "--base x" "--base x: a number or 'latest'" \
	"${BASE[@]}" --disk a="$T/raw.img" --full --base x
agent_usage "--consistency maybe" '--consistency maybe: app or crash' \
	--consistency maybe
agent_usage "--nbd-timeout 0" '--nbd-timeout 0: seconds' --nbd-timeout 0
agent_usage "a missing value" '--name needs a value' --name
agent_usage "no --disk" 'at least one --disk' "${BASE[@]}" --full
agent_usage "no --server nor --unix" '--server HOST:PORT or --unix' \
	--name a --secret-file "$T/key" --disk a="$T/raw.img" --full
agent_usage "--server and --unix together" 'not both' \
	"${BASE[@]}" --server 127.0.0.1:1 --disk a="$T/raw.img" --full
agent_usage "an unknown option" "unknown argument '--frobnicate'" \
	--frobnicate

# Container images: refused before any connection, with the qemu-nbd
# command that serves their disk raw.
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img create -q -f qcow2 "$T/d.qcow2" 64M &&
		(for f in vmdk vhdx vdi vpc; do
			qemu-img convert -O $f "$T/raw.img" "$T/d.$f" || exit 1
		done)
	ok $? "qemu-img made a qcow2, a vmdk, a vhdx, a vdi and a vpc (VHD)"
	for f in qcow2 vmdk vhdx vdi vpc; do
		"$BVA" "${BASE[@]}" --disk vm="$T/d.$f" --full \
			>"$T/out" 2>"$T/err"
		r=$?
		[ $r -eq 1 ] && grep -q "is a $f image, not a raw disk" "$T/err" &&
			grep -q "qemu-nbd --read-only --persistent --format=$f" \
				"$T/err" && grep -q "nbd+unix://" "$T/err"
		ok $? "bvault-agent refuses the $f file with the qemu-nbd hint (exit $r)"
		[ $? -eq 0 ] || sed 's/^/# /' "$T/err"
		run_fail "mkstream refuses the $f file with the qemu-nbd hint" 1 \
			"is a $f image, not a raw disk.*qemu-img convert" \
			"$BV" mkstream "$T/d.$f" --replica vm --out "$T/s"
		grep -q -- "qemu-nbd --read-only --format=$f --connect=" "$T/err"
		ok $? "mkstream's hint gives the qemu-nbd command ($f)"
		[ ! -e "$T/s" ]
		ok $? "mkstream left no stream behind ($f)"
	done
else
	for i in $(seq 1 21); do skip "container images $i" "no qemu-img"; done
fi
# A raw image that starts with another format's magic further in is raw.
printf 'xxxxQFI\373' | dd of="$T/raw.img" conv=notrunc status=none
run_ok "mkstream takes a raw image" "$BV" mkstream "$T/raw.img" \
	--replica vm --out "$T/s"

# The live part: a store, a bvaultd, an agent's backup.
S=$T/st'"q\x'
SOCK=$T/sock
run_ok "init a store whose path needs escaping" "$BV" init "$S" ||
	done_testing
"$BV" agent add "$S" h --group vm1 --secret-file "$T/h.key" >/dev/null
ok $? "agent add"
"$BV" stats "$S" --prometheus >"$T/p0" 2>"$T/err"
ok $? "stats --prometheus with no bvaultd"
python3 "$CHECK" "$T/p0" | sed 's/^/# /'
ok "${PIPESTATUS[0]}" "its output is valid exposition format"
grep -q '^# no bvaultd runs on this store: its live counters are left out$' \
	"$T/p0" && grep -q '^bvaultd_up{.*} 0$' "$T/p0" &&
	! grep -q '^bvaultd_commits_total' "$T/p0"
ok $? "with no bvaultd, a comment says its counters are left out"
grep -qF "bvault_store_chunks{store=\"$T/st\\\"q\\\\x\"} 0" "$T/p0"
ok $? "the store label is escaped (\\\" and \\\\)"

"$BVD" "$S" --unix "$SOCK" 2>"$T/d.log" &
SRV=$!
for _ in $(seq 1 300); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ]
ok $? "bvaultd started"
"$BV" stats "$S" --prometheus --quick >"$T/p1" 2>"$T/err"
ok $? "stats --prometheus --quick beside bvaultd"
python3 "$CHECK" "$T/p1" | sed 's/^/# /'
ok "${PIPESTATUS[0]}" "valid exposition format with the live counters"
grep -q '^bvaultd_up{.*} 1$' "$T/p1" &&
	grep -q '^bvaultd_commits_total{.*} 0$' "$T/p1"
ok $? "bvaultd_up 1, no commits yet"

mkimg "$T/disk.img" 8
# -v and the progress bar, on a pseudo-terminal (script, util-linux).
if command -v script >/dev/null 2>&1; then
	script -qec "'$BVA' --unix '$SOCK' --name h --secret-file '$T/h.key' \
		--disk vm1='$T/disk.img' --full -v" /dev/null >"$T/tty" 2>&1
	r=$?
	ok $r "the agent's full backup on a terminal (exit $r)"
	tr '\r' '\n' <"$T/tty" | grep -Eq '^vm1 \[#{30}\] 100% 8\.0 MiB / 8\.0 MiB'
	ok $? "it drew a progress bar to 100%"
	[ $r -eq 0 ] || sed 's/^/# /' "$T/tty"
else
	"$BVA" --unix "$SOCK" --name h --secret-file "$T/h.key" \
		--disk vm1="$T/disk.img" --full -v >"$T/tty" 2>&1
	ok $? "the agent's full backup"
	skip "the progress bar" "no script (util-linux)"
fi
grep -Eq '^bvault-agent: disk vm1: [0-9]+ extents?, [0-9]+ bytes of data, [0-9]+ bytes of zeros, 0 chunks skipped as unchanged' "$T/tty"
ok $? "-v prints what was sent of the disk"
"$BVA" --unix "$SOCK" --name h --secret-file "$T/h.key" \
	--disk vm1="$T/disk.img" --full >"$T/out" 2>"$T/err"
! grep -q '\[#' "$T/err"
ok $? "no progress bar when stderr is not a terminal"
"$BVA" --unix "$SOCK" --name h --secret-file "$T/h.key" \
	--disk vm1="$T/disk.img" --compare -v >"$T/out" 2>"$T/err"
grep -Eq 'disk vm1: 0 extents, 0 bytes of data, 0 bytes of zeros, 128 chunks skipped as unchanged' "$T/err"
ok $? "-v with --compare counts the chunks skipped as unchanged"
[ $? -eq 0 ] || sed 's/^/# /' "$T/err"
head -c 64 /dev/urandom >"$T/bad.key"
"$BVA" --unix "$SOCK" --name h --secret-file "$T/h.key" \
	--disk vm1="$T/disk.img" --extents /dev/null --base 1 >/dev/null 2>&1
"$BV" stats "$S" --prometheus >"$T/p2" 2>"$T/err"
python3 "$CHECK" "$T/p2" | sed 's/^/# /'
ok "${PIPESTATUS[0]}" "valid exposition format after the backups"
val() { sed -n "s/^$1{[^}]*} //p" "$T/p2"; }
[ "$(val bvaultd_commits_total)" = 3 ] &&
	[ "$(val bvaultd_sessions_total)" = 4 ] &&
	[ "$(val bvaultd_sessions_open)" = 0 ] &&
	[ "$(val bvaultd_data_bytes_total)" -gt 0 ] &&
	grep -q '^bvaultd_refusals_total{.*,reason="base"} 1$' "$T/p2"
ok $? "the counters moved: 3 commits, 4 sessions, data bytes, 1 base refusal"
[ $? -eq 0 ] || grep '^bvaultd' "$T/p2" | sed 's/^/# /'
grep -q '^bvault_group_rps{store=".*",group="vm1"} 3$' "$T/p2" &&
	grep -q '^bvault_replica_logical_bytes{store=".*",group="vm1",replica="vm1"} 8388608$' "$T/p2"
ok $? "per-group and per-replica gauges carry group and replica labels"
kill -TERM $SRV; wait $SRV
ok $? "bvaultd exits 0"

# The systemd unit, as meson configured it.
UNIT=${BV_BUILD_DIR:-}/contrib/systemd/bvaultd@.service
if [ -f "$UNIT" ] && command -v systemd-analyze >/dev/null 2>&1; then
	mkdir "$T/sd"
	sed "s#^ExecStart=[^ ]*#ExecStart=$BVD#" "$UNIT" >"$T/sd/bvaultd@vault.service"
	systemd-analyze verify "$T/sd/bvaultd@vault.service" >"$T/out" 2>&1
	ok $? "systemd-analyze verify passes the unit"
	[ -s "$T/out" ] && sed 's/^/# /' "$T/out"
	for o in ProtectSystem=strict 'ReadWritePaths=/var/lib/bvault/%i' \
		 NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes \
		 PrivateDevices=yes UMask=0077 \
		 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
		 'EnvironmentFile=-/etc/bvault/%i.conf'; do
		grep -qxF "$o" "$UNIT" || { diag "missing: $o"; false; }
	done
	ok $? "the unit has its sandboxing options"
else
	skip "systemd-analyze verify" "no systemd-analyze or no unit"
	skip "the unit's sandboxing options" "no systemd-analyze or no unit"
fi

done_testing
