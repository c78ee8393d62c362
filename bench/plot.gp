# Portcullis - MIT licence. See LICENSE.
#
# bench/plot.gp: requests/s and p99 per scenario, one PNG.
#
#   gnuplot -e "datafile='bench/results/DAY-bench.dat'; outfile='bench/results/DAY-bench.png'; \
#               title='...'" bench/plot.gp
#
# datafile: one line per scenario, tab-separated: label, requests/s, p99 (ms),
# as bench/peer_bench.py, bench/gateway_bench.py and bench/scale_bench.py write
# with --dat (run.sh concatenates them: peer, gateway, scale). Labels longer
# than about 32 characters run into the left edge. Two horizontal bar charts
# side by side, one bar per line, in file order from the top; both x axes are
# logarithmic because the scenarios span two orders of magnitude.
if (!exists("datafile")) datafile = 'bench.dat'
if (!exists("outfile")) outfile = 'bench.png'
if (!exists("title")) title = 'Portcullis bench'

set datafile separator "\t"
stats datafile using 2 nooutput
N = STATS_records

set terminal pngcairo size 1400, (200 + 34 * N) font "DejaVu Sans,11" noenhanced
set output outfile
set multiplot layout 1, 2 title title font ",14"

set style fill solid 0.85 border -1
set yrange [N - 0.4 : -0.6]
set ytics scale 0
set grid xtics mxtics lc rgb "#dddddd"
set logscale x 10
set format x "%.0s%c"
set boxwidth 0.7
unset key

set lmargin 34
set title "requests/s (higher is better)"
set xrange [10:*]
set rmargin 6
plot datafile using (0):0:(0):2:($0 - 0.35):($0 + 0.35):ytic(1) with boxxyerror lc rgb "#3b78b0", \
     '' using 2:0:(sprintf(" %.0f", $2)) with labels left font ",9"

set lmargin 2
set title "p99 latency, ms (lower is better)"
set xrange [0.1:*]
set rmargin 8
set format x "%g"
set ytics format ""
plot datafile using (0):0:(0):3:($0 - 0.35):($0 + 0.35):ytic("") with boxxyerror lc rgb "#c0504d", \
     '' using 3:0:(sprintf(" %.2f", $3)) with labels left font ",9"

unset multiplot
