# qemu.sh: what the tests that read a qcow2 image through the real
# qemu-nbd share (net_qemu.sh, net_seed.sh); sourced after lib.sh. Skips
# the test when qemu's tools are missing.

QS=$T/q.sock
IMG=$T/disk.qcow2

for t in qemu-img qemu-io qemu-nbd; do
	if ! command -v $t >/dev/null 2>&1; then
		echo "1..0 # SKIP $t is not installed"
		exit 0
	fi
done

# Serves the image read-only on $QS (with bitmap $1 when given).
start_nbd() {
	rm -f "$QS" "$T/q.pid"
	qemu-nbd -t -r -f qcow2 ${1:+-B "$1"} -k "$QS" --pid-file="$T/q.pid" \
		"$IMG" 2>>"$T/qemu-nbd.log" &
	NBD=$!
	for _ in $(seq 1 300); do
		[ -S "$QS" ] && [ -s "$T/q.pid" ] && return 0
		kill -0 "$NBD" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

stop_nbd() {
	kill "$NBD" 2>/dev/null
	wait "$NBD" 2>/dev/null
}

agent() {
	"$BVA" --unix "$SOCK" --name host --secret-file "$T/host.key" \
		--disk "vm=nbd+unix:///?socket=$QS" "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	[ $rc -eq 0 ] || sed 's/^/# agent: /' "$T/err"
	return $rc
}

# compare_rp N DESC: export vm@N and compare it with the qcow2 image.
compare_rp() {
	"$BV" export "$S" "vm@$1" "$T/x$1.raw" >/dev/null 2>"$T/err" &&
		qemu-img compare -f raw -F qcow2 "$T/x$1.raw" "$IMG" >"$T/cmp" 2>&1
	local rc=$?
	ok $rc "$2"
	[ $rc -eq 0 ] || sed 's/^/# /' "$T/cmp" "$T/err"
}
