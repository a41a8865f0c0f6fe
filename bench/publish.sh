#!/usr/bin/env bash
# bench/publish.sh: puts a full run's figures into the documentation.
# bench/run.sh calls it at the end of a full run; it can also be run by hand
# on a run's files.
#
#   README.md           between <!-- bench:readme:start --> and
#                       <!-- bench:readme:end -->: the headline, a few cells
#                       side by side and how many targets were met;
#   docs/benchmarks.md  between <!-- bench:latest:start --> and
#                       <!-- bench:latest:end -->: the whole summary (every
#                       contestant, every target) and the chart.
#
# Environment (all required):
#   CELLS      the run's cells, tab-separated, with a header line (run.sh's
#              $CELLS: contestant, scenario, clients, tps, ..., peak_conns, ...)
#   SUMMARY    the summary tables (run.sh's summary.md)
#   RESULT     the results file without .md, relative to the tree
#              (bench/results/2026-11-28)
#   ELAPSED    seconds the run took
#   NCPU, CPU_MODEL, PG_VERSION, DATE
# A document without its markers is left alone, with a word on stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
: "${CELLS:?}" "${SUMMARY:?}" "${RESULT:?}" "${ELAPSED:?}" "${NCPU:?}" "${CPU_MODEL:?}" "${PG_VERSION:?}" "${DATE:?}"

value() { # value CONTESTANT SCENARIO CLIENTS COLUMN
	awk -F'\t' -v w="$1" -v s="$2" -v c="$3" -v col="$4" '
		NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
		$1 == w && $2 == s && $3 == c { v = $(idx[col]); if (v != "-") print v; exit }' "$CELLS"
}
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "") print "–"; else { s = sprintf("%.0f", v); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o } }'; }

# replace_between FILE NAME BLOCKFILE: the text between NAME's markers
replace_between() {
	local file=$1 name=$2 block=$3 tmp
	if ! grep -q "<!-- $name:start -->" "$file" || ! grep -q "<!-- $name:end -->" "$file"; then
		echo "bench/publish.sh: $file has no $name markers; left alone" >&2
		return 0
	fi
	tmp=$(mktemp)
	awk -v f="$block" -v s="<!-- $name:start -->" -v e="<!-- $name:end -->" '
		BEGIN { while ((getline l < f) > 0) b = b l "\n" }
		index($0, s) { printf "%s", b; skip = 1; next }
		index($0, e) { skip = 0; next }
		!skip' "$file" >"$tmp"
	cat "$tmp" >"$file"
	rm -f "$tmp"
}

passed=$(grep -c '| \*\*PASS\*\* |$' "$SUMMARY" || true)
targets=$(grep -c '| \*\*\(PASS\|FAIL\|not run\)\*\* |$' "$SUMMARY" || true)
where="$NCPU cores ($CPU_MODEL), PostgreSQL $PG_VERSION, loopback"

# README: the cells a newcomer compares
block=$(mktemp)
{
	echo "<!-- bench:readme:start -->"
	echo "Full run of $DATE on $where; transactions per second unless said otherwise, higher is better."
	echo
	echo "| | netrun_pool (pool_max 4) | dblink, persistent | postgres_fdw | dblink via pgbouncer (pool 4) | dblink, connect per call |"
	echo "|---|---:|---:|---:|---:|---:|"
	row() { # row LABEL SCENARIO CLIENTS COLUMN
		printf '| %s' "$1"
		for who in np4 dblink fdw pgb cpc; do
			v=$(value "$who" "$2" "$3" "$4")
			if [ "$4" = tps ]; then v=$(fmt_int "$v"); fi
			printf ' | %s' "${v:-–}"
		done
		printf ' |\n'
	}
	row '`SELECT 1`, 1 client' S1 1 tps
	row '`SELECT 1`, 32 clients' S1 32 tps
	row 'one row by key, 32 clients' S2 32 tps
	row 'remote connections held, 32 clients' S1 32 peak_conns
	echo
	echo "Targets met: $passed of $targets. Every figure, the targets and the chart: [docs/benchmarks.md](docs/benchmarks.md)."
	echo "<!-- bench:readme:end -->"
} >"$block"
replace_between "$here/README.md" bench:readme "$block"

# docs/benchmarks.md: the whole summary
{
	echo "<!-- bench:latest:start -->"
	echo "Latest full run: \`$RESULT.md\`, made in $((ELAPSED / 60)) min $((ELAPSED % 60)) s on $where."
	echo
	cat "$SUMMARY"
	echo
	echo "![tps by clients, per scenario, and the remote connections held](benchmarks-latest.png)"
	echo "<!-- bench:latest:end -->"
} >"$block"
replace_between "$here/docs/benchmarks.md" bench:latest "$block"
# the chart beside the page (a link from docs/ to bench/ would leave the folder)
cp "$here/$RESULT.png" "$here/docs/benchmarks-latest.png"
rm -f "$block"
