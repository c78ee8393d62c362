#!/bin/sh
# Portcullis - MIT licence. See LICENSE.
#
# bench/run.sh: the measurements of bench/README.md. `make bench` runs this
# after building; it can also be run directly from the repository root.
#
#   sh bench/run.sh                     # all scenarios, about a minute
#   BENCH_ARGS="--duration 5" sh bench/run.sh
#
# Builds build/bench/scrypt_rate from bench/scrypt_rate.c and the library
# objects of the normal build (build/obj/lib), installs wrk if it is missing,
# runs bench/signin_storm.py and writes its report to
# bench/results/<date>-signin.md (also printed). PORTCULLIS_BUILD selects the
# authsvc binary under test (default build/).
set -eu
cd "$(dirname "$0")/.."

if [ ! -x build/authsvc ] || ! ls build/obj/lib/*.o >/dev/null 2>&1; then
    make --no-print-directory all
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: installing wrk"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 ||
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
fi

# scrypt_rate: the project's pc_password_hash, linked against the library
# objects with the Makefile's flags (no Makefile rule on purpose).
PKGS="libevent libevent_pthreads libpq hiredis yajl openssl"
mkdir -p build/bench
SCRYPT_RATE_BUILD="${CC:-cc} -std=c11 -D_GNU_SOURCE -pthread -O2 -g -Wall -Wextra -Ilib \
$(pkg-config --cflags $PKGS) -o build/bench/scrypt_rate bench/scrypt_rate.c \
build/obj/lib/*.o $(pkg-config --libs $PKGS) -lunistring -pthread"
echo "  CC    bench/scrypt_rate.c"
$SCRYPT_RATE_BUILD
export SCRYPT_RATE_BUILD

mkdir -p bench/results
OUT="bench/results/$(date +%Y-%m-%d)-signin.md"
# Bounded twice: the script bounds every step; timeout(1) bounds the whole.
# shellcheck disable=SC2086
timeout -k 10 300 /usr/bin/python3 bench/signin_storm.py \
    --scrypt-bin build/bench/scrypt_rate --out "$OUT" ${BENCH_ARGS:-}
echo
echo "bench: report written to $OUT"
