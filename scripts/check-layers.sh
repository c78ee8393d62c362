#!/bin/sh
# Fails when an #include points the wrong way (run by `make test`):
#   lib/          includes only lib/ (it knows no program)
#   authsvc/      includes lib/ and itself, never gateway/
#   gateway/      includes lib/ and itself, never authsvc/; a stage never
#                 includes the front (client.h, server.h)
#   tools/, tests/unit/   include lib/ only, except that the gateway's unit
#                 tests (test_gw_*.c) include test_gw.h, the one file there
#                 that names gateway headers
# Only quoted includes count; <system> headers are free.
set -u
cd "$(dirname "$0")/.." || exit 2
bad=0
say() { echo "layers: $1"; bad=$((bad + 1)); }

# prints "file:line:target" for every quoted include of the files given
includes() {
    grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$@" 2>/dev/null |
        sed 's/^\([^:]*:[0-9]*\):.*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1:\2/'
}

check() {   # check <label> <allowed-regex> files...
    label=$1 allowed=$2
    shift 2
    for hit in $(includes "$@"); do
        target=${hit##*:}
        echo "$target" | grep -Eq "$allowed" || say "$label: ${hit%:*} includes \"$target\""
    done
}

check "lib knows no program" '^[a-z0-9_]+\.h$' lib/*.c lib/*.h
check "authsvc never sees the gateway" '^(\.\./lib/)?[a-z0-9_]+\.h$' authsvc/*.c authsvc/*.h
check "the gateway never sees authsvc" '^(\.\./lib/)?[a-z0-9_]+\.h$' gateway/*.c gateway/*.h
check "tools use lib only" '^\.\./lib/[a-z0-9_]+\.h$' tools/*.c
for f in tests/unit/*.c; do
    case "$f" in
        tests/unit/test_gw_*.c) check "gateway unit tests go through test_gw.h" '^test_gw\.h$' "$f" ;;
        *) check "unit tests use lib only" '^\.\./\.\./lib/[a-z0-9_]+\.[ch]$' "$f" ;;
    esac
done
check "test_gw.h sees gateway and lib headers only" '^\.\./\.\./(lib|gateway)/[a-z0-9_]+\.h$' \
    tests/unit/test_gw.h

# a lib header is the only kind of ../lib/ include, and it must exist
for hit in $(includes authsvc/*.c authsvc/*.h gateway/*.c gateway/*.h tools/*.c); do
    target=${hit##*:}
    case "$target" in
        ../lib/*) [ -f "lib/${target#../lib/}" ] || say "${hit%:*} includes missing \"$target\"" ;;
    esac
done

# stages never include the front
for f in gateway/*.c gateway/*.h; do
    case "$f" in gateway/client.*|gateway/server.*|gateway/main.c) continue ;; esac
    for hit in $(includes "$f"); do
        case "${hit##*:}" in
            client.h|server.h) say "a stage includes the front: ${hit%:*} includes \"${hit##*:}\"" ;;
        esac
    done
done

if [ "$bad" -gt 0 ]; then
    echo "layers: $bad include(s) point the wrong way"
    exit 1
fi
echo "layers: ok"
