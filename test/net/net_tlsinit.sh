#!/usr/bin/env bash
# net_tlsinit.sh: `bvault tls init` (and --renew) leaves one whole key and
# certificate pair whatever fails or kills it (tools/tls.c bvt_make), shown
# three ways with strace on the real command:
#  - order: both files fdatasync'ed, then their directory, before the
#    rename (or exchange) that makes them current, then the store's
#    directory synced;
#  - an injected EIO at each of those five calls: refused with a message
#    naming the path and the error; the pair is the old one (or none, for
#    a first init) when the failure comes before the rename, and nothing
#    is left behind;
#  - SIGKILL at each of them: the pair is the old one or the new one,
#    whole (the key matches the certificate, the fingerprint is the one
#    openssl prints), and what a kill leaves behind is private.
# Usage: net_tlsinit.sh BVAULT BVAULTD BVAULT_AGENT
. "$(dirname "$0")/lib.sh"

command -v strace >/dev/null || { skip "strace is not installed"; done_testing; }
SYNCS='trace=fdatasync,fsync,renameat2'

# traced ARGS...: strace ARGS, with LeakSanitizer off (it cannot run
# under ptrace; net-tls checks tls init's leaks in the ASan build).
traced() {
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace "$@"
}

# pair_fp STORE: the fingerprint of the whole pair in STORE/tls, or
# "none" when there is no pair, or "broken: ..." when it is not whole.
pair_fp() {
	local d=$1/tls fp of
	[ -e "$d" ] || { echo none; return; }
	fp=$("$BV" tls fingerprint "$1" 2>&1) || { echo "broken: $fp"; return; }
	of=$(openssl x509 -in "$d/cert.pem" -noout -fingerprint -sha256 |
		sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
	[ "$fp" = "sha256:$of" ] || { echo "broken: $fp is not $of"; return; }
	cmp -s <(openssl x509 -in "$d/cert.pem" -noout -pubkey) \
		<(openssl pkey -in "$d/key.pem" -pubout) ||
		{ echo "broken: the key is not the certificate's"; return; }
	echo "$fp"
}

# leftovers STORE: the tls.new-* directories a run left in STORE.
leftovers() {
	find "$1" -maxdepth 1 -name 'tls.new-*' | wc -l
}

private_leftovers() {
	! find "$1" -maxdepth 2 -path '*/tls.new-*' \( -type d ! -perm 700 -o \
		-type f ! -perm 600 \) | grep -q .
}

# The calls, in order, of a first init and of a renewal.
run_ok "init" "$BV" init "$S" || done_testing
traced -y -e "$SYNCS" -o "$T/order" "$BV" tls init "$S" >/dev/null 2>&1
ok $? "tls init under strace"
sed -n 's/^\(fdatasync\|fsync\|renameat2\)(.*/\1/p' "$T/order" >"$T/calls"
grep -Eq '^fdatasync\(.*/tls\.new-[^/]*/key\.pem>' "$T/order" &&
	[ "$(sed -n 1p "$T/calls")" = fdatasync ]
ok $? "order: the key is synced first"
awk '
	/^fdatasync\(.*tls\.new-.*\/key\.pem>/ && !k { k = NR }
	/^fdatasync\(.*tls\.new-.*\/cert\.pem>/ && !c { c = NR }
	/^fsync\([0-9]*<[^>]*\/tls\.new-[^/>]*>\)/ && !d { d = NR }
	/^renameat2\(.*tls\.new-.*"[^"]*\/tls", RENAME_NOREPLACE\) = 0/ && !r { r = NR }
	/^fsync\(/ && r && NR > r && !s { s = NR }
	END { exit !(k && c && d && r && s && k < c && c < d && d < r && r < s) }
' "$T/order"
ok $? "order: key, certificate, their directory synced; then the rename; then the store's directory synced"
[ "$(wc -l <"$T/calls")" = 5 ]
ok $? "five sync and rename calls in all ($(tr '\n' ' ' <"$T/calls"))"
traced -y -e "$SYNCS" -o "$T/order2" "$BV" tls init "$S" --renew >/dev/null 2>&1
ok $? "tls init --renew under strace"
grep -Eq '^renameat2\(.*RENAME_EXCHANGE\) = 0' "$T/order2" &&
	[ "$(sed -n 's/^\(fdatasync\|fsync\|renameat2\)(.*/\1/p' "$T/order2" |
		tr '\n' ' ')" = "$(tr '\n' ' ' <"$T/calls")" ]
ok $? "order: --renew makes the same calls, the rename an exchange"

# The Nth call of the list, as strace's inject names it: SYSCALL:when=K.
nth_call() {
	local name k
	name=$(sed -n "${1}p" "$T/calls")
	k=$(head -n "$1" "$T/calls" | grep -c "^$name\$")
	echo "$name:when=$k"
}

for mode in error kill; do
	for renew in 0 1; do
		for n in 1 2 3 4 5; do
			what="$mode at call $n ($(nth_call "$n"))"
			[ $renew = 1 ] && what="--renew: $what"
			rm -rf "$S/tls" "$S"/tls.new-*
			old=none
			if [ $renew = 1 ]; then
				"$BV" tls init "$S" >/dev/null 2>&1
				old=$(pair_fp "$S")
			fi
			if [ $mode = error ]; then
				inj="$(nth_call "$n"):error=EIO"
			else
				inj="$(nth_call "$n"):signal=KILL"
			fi
			args=(tls init "$S")
			[ $renew = 1 ] && args+=(--renew)
			traced -o /dev/null -e "$SYNCS" -e inject="$inj" \
				"$BV" "${args[@]}" >"$T/out" 2>"$T/err"
			rc=$?
			now=$(pair_fp "$S")
			if [ $mode = error ]; then
				[ $rc = 1 ] &&
					grep -Eq "$S[^:]*: Input/output error" "$T/err"
				ok $? "$what: refused, naming the path ($(cat "$T/err"))"
				[ "$(leftovers "$S")" = 0 ]
				ok $? "$what: nothing left behind"
			else
				[ $rc != 0 ]
				ok $? "$what: killed"
				private_leftovers "$S"
				ok $? "$what: what it left is private"
			fi
			case $now in
			broken*) ok 1 "$what: the pair is whole ($now)" ;;
			"$old") ok 0 "$what: the pair is as before ($now)" ;;
			none) ok 1 "$what: the pair is gone" ;;
			*)
				[ "$n" = 5 ]
				ok $? "$what: the new pair, whole, only once renamed ($now)"
				;;
			esac
			if [ "$n" -lt 5 ]; then
				[ "$now" = "$old" ]
				ok $? "$what: before the rename, the store is as it was"
			fi
			run_ok "$what: tls init --renew afterwards" \
				"$BV" tls init "$S" --renew
		done
	done
done

done_testing
