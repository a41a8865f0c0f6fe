#!/usr/bin/env bash
# The one test command: installs what is missing, builds netrun_pool with
# -Wall -Wextra -Werror and assertions, installs it, and runs every suite
# (pg_regress, isolation, TAP) against servers it starts itself, as an
# unprivileged user, in a fresh temp dir that it removes afterwards.
#
#   bash scripts/test.sh            all suites
#   SUITES="tap" bash scripts/test.sh     a subset: regress, isolation, tap, bench
#
# "bench" is the smoke test of bench/run.sh (bench/smoke.sh: its quick mode
# completes and reports every cell, no speed asserted).  It installs an
# optimized build over the one under test, so it runs last.
#   PROVE_TESTS="t/001_worker.pl" bash scripts/test.sh
#   KEEP=1 bash scripts/test.sh    keep the temp dir (results, logs) afterwards
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

require_root
TEST_USER=netrun_test
SUITES=${SUITES:-regress isolation tap bench}

ensure_packages sqlsmith pgbouncer strace prometheus curl
ensure_user "$TEST_USER"

start_run netrun_pool_test "$TEST_USER"
install -d -o "$TEST_USER" "$work/tmp"

echo "== build (warnings are errors, assertions on)"
build_and_install "$work/src" "$TEST_USER" ASSERT=1

passed=0 failed=0
failed_suites=()

show_failure() {
	local dir=$1
	[ -f "$dir/regression.diffs" ] && { echo "---- $dir/regression.diffs"; cat "$dir/regression.diffs"; }
	for f in "$dir"/log/*.log "$dir"/tmp_check/log/*; do
		[ -f "$f" ] || continue
		echo "---- $f (last 80 lines)"
		tail -n 80 "$f"
	done
}

for suite in $SUITES; do
	out="$work/$suite.out"
	echo "== $suite"
	# TMPDIR inside $work: the servers' socket dirs go wherever tests put
	# them, and are removed with $work even after a bail-out.
	if [ "$suite" = bench ]; then
		# as root (it starts its own servers as its own user); we hold the lock
		NETRUN_LOCK_HELD=1 bash "$work/src/bench/smoke.sh" 9>&- 2>&1 | tee "$out"
		rc=${PIPESTATUS[0]}
		grep -q ' \.\.\. FAILED' "$out" && rc=1
	else
		# the open-files limit raised to its ceiling: t/019 holds 400
		# connecting sockets in one worker
		as_user "$TEST_USER" bash -c 'ulimit -Sn "$(ulimit -Hn)"; exec "$@"' _ \
			env TMPDIR="$work/tmp" make -C "$work/src" -s "test-$suite" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} \
			2>&1 | tee "$out"
		rc=${PIPESTATUS[0]}
	fi
	count_suite "$suite" "$out" "$rc"
	passed=$((passed + suite_passed))
	failed=$((failed + suite_failed))
	if [ "$rc" != 0 ]; then
		failed_suites+=("$suite")
		show_failure "$work/src/build/$suite"
	fi
done

echo
echo "== summary"
[ ${#failed_suites[@]} -gt 0 ] && echo "failed suites: ${failed_suites[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#failed_suites[@]} -eq 0 ] && [ "$failed" -eq 0 ]
