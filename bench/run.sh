#!/bin/sh
# Portcullis - MIT licence. See LICENSE.
#
# bench/run.sh: the measurements of bench/README.md. `make bench` runs this
# after building; it can also be run directly from the repository root.
#
#   sh bench/run.sh                     # every bench, about 5 minutes
#   BENCH_ONLY=signin sh bench/run.sh   # or gateway, revocation, peer, scale, plot
#   PEER_BENCH_ARGS="--rounds 5" sh bench/run.sh          # Better Auth peer bench options
#   SCALE_BENCH_ARGS="--counts 1,10000,100000" sh bench/run.sh   # scale bench options
#   BENCH_ARGS="--duration 5" sh bench/run.sh             # sign-in storm options
#   GATEWAY_BENCH_ARGS="--rounds 5" sh bench/run.sh       # gateway bench options
#   REVOCATION_BENCH_ARGS="--count 500" sh bench/run.sh   # revocation bench options
#   BENCH_RESULTS=/tmp/try sh bench/run.sh                # reports elsewhere (a trial run)
#
# Builds build/bench/scrypt_rate from bench/scrypt_rate.c and the library
# objects of the normal build (build/obj/lib), installs wrk and nginx if they
# are missing, runs bench/signin_storm.py, bench/gateway_bench.py and
# bench/revocation_bench.py and writes their reports to
# bench/results/<date>-signin.md, <date>-gateway.md and <date>-revocation.md
# (also printed). PORTCULLIS_BUILD selects the binaries under test (default build/);
# BENCH_RESULTS the directory of the reports (default bench/results).
set -eu
cd "$(dirname "$0")/.."

ONLY="${BENCH_ONLY:-all}"
case "$ONLY" in
    all|signin|gateway|revocation|peer|scale|plot) ;;
    *) echo "bench: BENCH_ONLY must be signin, gateway, revocation, peer, scale, plot or empty" >&2; exit 2 ;;
esac
want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }

if [ ! -x build/authsvc ] || [ ! -x build/gateway ] || [ ! -x build/demo-upstream ] ||
    ! ls build/obj/lib/*.o >/dev/null 2>&1; then
    make --no-print-directory all
fi

# install_pkg COMMAND PACKAGE: apt-get install PACKAGE unless COMMAND exists.
install_pkg() {
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    echo "bench: installing $2"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 ||
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}
install_pkg wrk wrk
if want plot; then install_pkg gnuplot gnuplot-nox; fi
# nginx is only the gateway bench's comparison, started by the bench with its
# own config on 127.0.0.1. Its package would start the Debian default site (on
# port 80, every address) at install: a policy-rc.d that refuses service starts
# stops that, unless the machine already has one.
if want gateway && ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        install_pkg nginx nginx || true
        rm -f /usr/sbin/policy-rc.d
    else
        install_pkg nginx nginx
    fi
fi

# scrypt_rate: the project's pc_password_hash, linked against the library
# objects with the Makefile's flags (no Makefile rule on purpose).
if want signin; then
    # the Makefile's PKGS: every library object is linked, jws.o included
    PKGS="libevent libevent_pthreads libpq hiredis yajl openssl libsodium libcurl"
    mkdir -p build/bench
    SCRYPT_RATE_BUILD="${CC:-cc} -std=c11 -D_GNU_SOURCE -pthread -O2 -g -Wall -Wextra -Ilib \
$(pkg-config --cflags $PKGS) -o build/bench/scrypt_rate bench/scrypt_rate.c \
build/obj/lib/*.o $(pkg-config --libs $PKGS) -lunistring -pthread"
    echo "  CC    bench/scrypt_rate.c"
    $SCRYPT_RATE_BUILD
    export SCRYPT_RATE_BUILD
fi

RES="${BENCH_RESULTS:-bench/results}"
mkdir -p "$RES"
DAY="$(date +%Y-%m-%d)"
# Bounded twice: the scripts bound every step; timeout(1) bounds each whole.
if want signin; then
    OUT="$RES/$DAY-signin.md"
    # shellcheck disable=SC2086
    timeout -k 10 300 /usr/bin/python3 bench/signin_storm.py \
        --scrypt-bin build/bench/scrypt_rate --out "$OUT" ${BENCH_ARGS:-}
    echo
    echo "bench: report written to $OUT"
fi
if want gateway; then
    OUT="$RES/$DAY-gateway.md"
    # shellcheck disable=SC2086
    timeout -k 10 720 /usr/bin/python3 bench/gateway_bench.py --out "$OUT" \
        --dat "$RES/$DAY-gateway.dat" ${GATEWAY_BENCH_ARGS:-}
    echo
    echo "bench: report written to $OUT"
fi
if want revocation; then
    OUT="$RES/$DAY-revocation.md"
    # shellcheck disable=SC2086
    timeout -k 10 300 /usr/bin/python3 bench/revocation_bench.py --out "$OUT" ${REVOCATION_BENCH_ARGS:-}
    echo
    echo "bench: report written to $OUT"
fi
# The peer bench: Better Auth (Node, npm install via tests/e2e/interop/install.sh)
# beside authsvc and the gateway on one database.
if want peer; then
    OUT="$RES/$DAY-peer.md"
    # shellcheck disable=SC2086
    timeout -k 10 900 /usr/bin/python3 bench/peer_bench.py --out "$OUT" \
        --dat "$RES/$DAY-peer.dat" ${PEER_BENCH_ARGS:-}
    echo
    echo "bench: report written to $OUT"
fi
# The scale bench: 1000 connections need more open files than the usual 1024.
if want scale; then
    OUT="$RES/$DAY-scale.md"
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # shellcheck disable=SC2086
    timeout -k 10 1800 /usr/bin/python3 bench/scale_bench.py --out "$OUT" \
        --dat "$RES/$DAY-scale.dat" ${SCALE_BENCH_ARGS:-}
    echo
    echo "bench: report written to $OUT"
fi
# The chart: requests/s and p99 of every scenario the benches above wrote a
# data file for today (bench/plot.gp): peer first (Better Auth, authsvc), then
# the gateway beside nginx, then scale.
if want plot; then
    DAT="$RES/$DAY-bench.dat"
    for f in peer gateway scale; do
        if [ -f "$RES/$DAY-$f.dat" ]; then cat "$RES/$DAY-$f.dat"; fi
    done >"$DAT"
    if [ -s "$DAT" ]; then
        gnuplot -e "datafile='$DAT'; outfile='$RES/$DAY-bench.png'; title='Portcullis bench, $DAY'" \
            bench/plot.gp
        echo "bench: chart written to $RES/$DAY-bench.png"
    else
        echo "bench: no data files for a chart (run BENCH_ONLY=peer, gateway or scale first)" >&2
    fi
fi
