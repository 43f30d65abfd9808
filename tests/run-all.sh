#!/usr/bin/env bash
# Runs the whole suite after `make check-build`: unit tests, fuzz corpus replay,
# short libFuzzer runs and the integration tests, first with the normal build
# and then with the ASan/UBSan build. Ends with one line "N passed, N failed"
# that CI reads, so nothing may be printed after it.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
FUZZ_SECS=${FUZZ_SECS:-5}
FUZZ_JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
passed=0
failed=0
failures=()
log=$(mktemp -d /tmp/tern-check.XXXXXX)

record() { # name status count_pass count_fail
	passed=$((passed + $3))
	failed=$((failed + $4))
	if [ "$2" != 0 ] || [ "$4" != 0 ]; then failures+=("$1"); fi
}

run_unit() { # binary
	local b=$1 out="$log/$(echo "$1" | tr / _).out"
	ASAN_OPTIONS=detect_leaks=1 timeout 300 "$b" >"$out" 2>&1
	local rc=$?
	local p f
	p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$out" | awk '{s+=$4} END{print s+0}')
	f=$(grep -oE '^\[  FAILED  \] [0-9]+' "$out" | awk '{s+=$4} END{print s+0}')
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
	printf '%-48s %s passed, %s failed\n' "$b" "$p" "$f"
	[ "$f" != 0 ] && tail -30 "$out"
	record "$b" "$rc" "$p" "$f"
}

run_one() { # name command...
	local name=$1; shift
	local out="$log/$(echo "$name" | tr '/ ' '__').out"
	"$@" >"$out" 2>&1
	report "$name" $? "$out"
}

report() { # name status output-file: one line, the output's tail on failure
	if [ "$2" = 0 ]; then
		printf '%-48s ok\n' "$1"; record "$1" 0 1 0
	else
		printf '%-48s FAILED (rc=%s)\n' "$1" "$2"; tail -40 "$3"; record "$1" "$2" 0 1
	fi
}

run_pytest() { # label tern-binary [pytest args...]
	local out="$log/pytest_$1.out" label=$1 bin=$2
	shift 2
	TERN_BIN=$bin timeout 1800 "$PYTHON" -m pytest -q -p no:cacheprovider "$@" tests/e2e >"$out" 2>&1
	local rc=$?
	local p f
	p=$(grep -oE '[0-9]+ passed' "$out" | tail -1 | awk '{print $1+0}')
	f=$(grep -oE '[0-9]+ (failed|error|errors)' "$out" | awk '{s+=$1} END{print s+0}')
	p=${p:-0}
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
	printf '%-48s %s passed, %s failed\n' "e2e ($label)" "$p" "$f"
	[ "$f" != 0 ] && grep -E '^(FAILED|ERROR)|Error|assert' "$out" | head -40
	record "e2e ($label)" "$rc" "$p" "$f"
}

for b in build/tests/test_* build/san/tests/test_*; do
	[ -x "$b" ] && run_unit "$b"
done
for b in build/tests/replay_* build/san/tests/replay_*; do
	[ -x "$b" ] || continue
	n=${b##*/replay_}
	mkdir -p "tests/fuzz/corpus/$n"
	run_one "$b" timeout 300 "$b" "tests/fuzz/corpus/$n"
done
# libFuzzer runs are CPU-bound and independent: one per core at a time,
# reported in order once all have finished.
fuzz_one() { # target-binary name
	local f=$1 n=$2 work=$log/corpus_$2
	mkdir -p "$work"
	local dict=()
	[ -f "tests/fuzz/$n.dict" ] && dict=(-dict="tests/fuzz/$n.dict")
	"$f" -max_total_time="$FUZZ_SECS" -rss_limit_mb=2048 -timeout=10 "${dict[@]}" "$work" \
		"tests/fuzz/corpus/$n" >"$log/fuzz_$n.out" 2>&1
	echo $? >"$log/fuzz_$n.rc"
}
fuzz_names=()
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=${f##*/fuzz_}
	fuzz_names+=("$n")
	while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do wait -n; done
	fuzz_one "$f" "$n" &
done
wait
for n in "${fuzz_names[@]}"; do
	report "fuzz $n ${FUZZ_SECS}s" "$(cat "$log/fuzz_$n.rc" 2>/dev/null || echo 1)" \
		"$log/fuzz_$n.out"
done
if ls tests/e2e/test_*.py >/dev/null 2>&1; then
	run_pytest build build/tern
	# tests marked slow only wait out timeouts: once is enough
	run_pytest san build/san/tern -m "not slow"
fi
if [ ${#failures[@]} -gt 0 ]; then
	echo "failing: ${failures[*]} (logs in $log)"
else
	rm -rf "$log"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
