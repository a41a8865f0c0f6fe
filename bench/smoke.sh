#!/usr/bin/env bash
# bench/smoke.sh: the benchmark's smoke test, run by scripts/test.sh as its
# last suite ("bench").  It runs the quick mode (QUICK=1 bench/run.sh) with
# 1 s cells and checks that the instrument works: the run completes, the
# results file has its summary and a tps for every cell, the chart is drawn,
# and no problem was reported (a pgbench client aborted, a netrun_pool call
# failed, the worker restarted).  It asserts no speed at all: CI machines
# are shared and noisy, and the figures are the full run's business.
# The results go to this tree's bench/results/<date>-quick.* (scripts/test.sh
# runs it in its own copy of the tree).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

out=$(mktemp)
QUICK=1 DURATION=${DURATION:-1} bash "$here/bench/run.sh" >"$out" 2>&1
rc=$?
cat "$out"
report=$(sed -n 's/^results: //p' "$out" | tail -1)
chart=$(sed -n 's/^chart: *//p' "$out" | tail -1)
rm -f "$out"

check() { # check NAME OK(0 = ok) [WHY]
	if [ "$2" = 0 ]; then echo "test $1 ... ok"; else echo "test $1 ... FAILED${3:+ ($3)}"; fi
}
check bench_quick_completes "$rc" "exit status $rc"
ok=1
[ -n "$report" ] && [ -f "$report" ] && grep -q '<!-- bench:summary:start -->' "$report" &&
	grep -q '<!-- bench:summary:end -->' "$report" && ok=0
check bench_quick_report "$ok" "no results file with its summary"
ok=1
# every cell of the raw table has a number in its tps column
if [ "$ok" = 1 ] && [ -n "$report" ] && [ -f "$report" ]; then
	cells=$(sed -n '/^## Raw cells/,$p' "$report" | awk 'NR > 3 && $1 ~ /^(np4|np16|npg|np4s0|dblink|cpc|fdw|pgb|direct)$/' )
	if [ -n "$cells" ] && ! printf '%s\n' "$cells" | awk '$4 !~ /^[0-9.]+$/ {bad = 1} END {exit !bad}'; then ok=0; fi
fi
check bench_quick_every_cell_has_tps "$ok" "a cell without tps"
ok=1
[ -n "$chart" ] && [ -s "$chart" ] && ok=0
check bench_quick_chart "$ok" "no chart"
ok=1
[ -n "$report" ] && [ -f "$report" ] && sed -n '/^## Problems seen/,/^## /p' "$report" | grep -q '^None:' && ok=0
check bench_quick_no_problems "$ok" "see Problems seen in the results file"
