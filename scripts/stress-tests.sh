#!/usr/bin/env bash
# stress-tests.sh runs the README's test command (go test -race ./...) N
# times with K CPU hogs running beside it, to show the tests hold on a
# loaded machine. It stops at the first failing run, keeps that run's log
# and prints the tests that failed.
#
# Usage: scripts/stress-tests.sh [-n N] [-k K] [packages...] [-- go-test-flags...]
#   -n N   runs (default 10)
#   -k K   CPU hogs beside each run (default 2)
#   packages default to ./...; everything after -- goes to `go test`
#   (e.g. -- -run 'TestX|TestY').
#
# The last line is always "stress: P passed, F failed".
set -uo pipefail

runs=10
hogs=2
flags=()
pkgs=()
while [ $# -gt 0 ]; do
	case "$1" in
	-n) runs="$2"; shift 2 ;;
	-k) hogs="$2"; shift 2 ;;
	-h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	--) shift; flags=("$@"); break ;;
	*) pkgs+=("$1"); shift ;;
	esac
done
[ ${#pkgs[@]} -eq 0 ] && pkgs=(./...)
if ! [[ "$runs" =~ ^[0-9]+$ && "$hogs" =~ ^[0-9]+$ ]]; then
	echo "stress: -n and -k take numbers" >&2
	exit 2
fi

cd "$(dirname "$0")/.." || exit 2
logdir=$(mktemp -d "${TMPDIR:-/tmp}/rayhost-stress.XXXXXX")
hog_pids=()
test_pid=

stop_hogs() {
	for p in "${hog_pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${hog_pids[@]}"; do
		wait "$p" 2>/dev/null
	done
	hog_pids=()
}
interrupted() {
	# go test runs in its own process group: stop it and its test binaries.
	[ -n "$test_pid" ] && kill -TERM -- "-$test_pid" 2>/dev/null
	stop_hogs
	echo "stress: interrupted; logs in $logdir"
	exit 130
}
trap stop_hogs EXIT
trap interrupted INT TERM

for ((i = 0; i < hogs; i++)); do
	# A pure busy loop: one core each, no I/O.
	bash -c 'while :; do :; done' &
	hog_pids+=($!)
done

echo "stress: $runs runs of go test -race -count=1 ${flags[*]} ${pkgs[*]} with $hogs CPU hogs; logs in $logdir"
passed=0
failed=0
for ((r = 1; r <= runs; r++)); do
	log="$logdir/run-$r.log"
	start=$(date +%s)
	setsid go test -race -count=1 "${flags[@]}" "${pkgs[@]}" >"$log" 2>&1 &
	test_pid=$!
	wait "$test_pid"
	rc=$?
	test_pid=
	took=$(($(date +%s) - start))
	if [ $rc -eq 0 ]; then
		passed=$((passed + 1))
		echo "run $r: ok in ${took}s"
		rm -f "$log"
		continue
	fi
	failed=$((failed + 1))
	echo "run $r: FAILED (exit $rc) in ${took}s; log: $log"
	echo "failing tests:"
	grep -E '^\s*--- FAIL|^FAIL|^panic:|race detected' "$log" | sed 's/^/  /' | head -50
	break
done
[ $failed -eq 0 ] && rmdir "$logdir" 2>/dev/null
echo "stress: $passed passed, $failed failed"
[ $failed -eq 0 ]
