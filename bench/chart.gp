# The chart of one bench/run.sh run.  Called as
#   gnuplot -e "dir='DATA_DIR'; panels='1 2 3 4 5'; out='FILE.png'; heading='TEXT'" bench/chart.gp
# panels: the scenarios that ran (one chart each, plus one of remote connections).
# DATA_DIR holds, for each scenario S1..S5 and contestant, S<n>_<contestant>.dat
# ("clients value" per line: tps, or rows/s for S4), and conns_<contestant>.dat
# (clients, peak remote connections during S1).  A missing cell is simply absent.

set datafile missing '?'

array ids[7] = ["np4", "np16", "dblink", "cpc", "fdw", "pgb", "direct"]
array names[7] = ["netrun\\_pool, pool\\_max 4", "netrun\\_pool, pool\\_max 16", \
	"dblink, persistent", "dblink, connect per call", "postgres\\_fdw", \
	"dblink via pgbouncer (pool 4)", "pgbench direct to remote"]
array colors[7] = ["#d62728", "#ff7f0e", "#1f77b4", "#7f7f7f", "#2ca02c", "#9467bd", "#000000"]
array dashes[7] = [1, 1, 1, 3, 1, 1, 2]

npanels = words(panels) + 1
nrows = npanels <= 3 ? 1 : 2
ncols = int(ceil(npanels / real(nrows)))
set terminal pngcairo size 540 * ncols, 500 * nrows font "sans,10"
set output out
set multiplot layout nrows, ncols title heading font "sans,13"
set logscale x 2
set xtics (1, 2, 8, 32, 128)
set xrange [0.8:160]
set logscale y
set grid
set format y "%.0s%c"
set key bottom right Left reverse font "sans,8" samplen 2 spacing 0.9 opaque
set xlabel "pgbench clients (c)"

array stitles[5] = ["S1: SELECT 1", "S2: one row by primary key", "S3: 100 rows", \
	"S4: a 100,000-row result", "S5: an INSERT of one row"]
do for [k = 1:words(panels)] {
	s = int(word(panels, k))
	t = s == 4 ? "rows/s" : "transactions/s"
	set title stitles[s]
	set ylabel t
	if (k == 1) { set key } else { unset key }
	plot for [i = 1:7] sprintf("%s/S%d_%s.dat", dir, s, ids[i]) using 1:2 \
		with linespoints lw 2 pt 7 ps 0.8 dt dashes[i] lc rgb colors[i] title names[i]
}

set title "Remote connections held (peak, sampled every 100 ms) during S1"
set ylabel "connections on the remote"
set yrange [0.8:200]
set ytics (1, 2, 4, 8, 16, 32, 64, 128)
unset key
plot for [i = 1:7] sprintf("%s/conns_%s.dat", dir, ids[i]) using 1:2 \
	with linespoints lw 2 pt 7 ps 0.8 dt dashes[i] lc rgb colors[i] title names[i]
unset multiplot
