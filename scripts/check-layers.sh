#!/bin/sh
# Fails when an #include points the wrong way (run by `make test`):
#   lib/          includes only lib/ (it knows no program)
#   authsvc/      includes lib/ and itself, never gateway/; a file that
#                 defines a route handler includes job.h, and only the loop
#                 (server.c, routes.c, main.c) includes server.h or routes.h
#   gateway/      includes lib/ and itself, never authsvc/, in layers:
#                 lib <- types.h <- module headers (cache, store, jwt, limits,
#                 feed, metrics, proxy, ...) <- request.h <- stages.h <-
#                 {front, h2_front, intake, worker}. Only request.c, front.c,
#                 h2_front.c, intake.c, worker.c and main.c include front.h,
#                 h2_front.h, intake.h or worker.h; stages answer through
#                 request.h
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
# ... and every lib include is a lib header (never a gateway/ or authsvc/ one)
for hit in $(includes lib/*.c lib/*.h); do
    target=${hit##*:}
    [ -f "lib/$target" ] || say "lib knows no program: ${hit%:*} includes \"$target\" (not in lib/)"
done
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

# gateway includes of its own headers must exist
for hit in $(includes gateway/*.c gateway/*.h); do
    target=${hit##*:}
    case "$target" in
        ../*) ;;
        *) [ -f "gateway/$target" ] || say "${hit%:*} includes missing \"$target\"" ;;
    esac
done

# the top layer (the front, intake, the workers) is included only by itself
for f in gateway/*.c gateway/*.h; do
    case "$f" in
        gateway/request.c|gateway/front.[ch]|gateway/h2_front.[ch]|gateway/intake.[ch]|gateway/worker.[ch]|gateway/main.c) continue ;;
    esac
    for hit in $(includes "$f"); do
        case "${hit##*:}" in
            front.h|h2_front.h|intake.h|worker.h) say "a stage includes the front: ${hit%:*} includes \"${hit##*:}\"" ;;
        esac
    done
done

# types.h sees only lib; module headers see types.h and lib, never a request
# or a stage (so a module cannot call back into the flow)
check "types.h is the bottom" '^\.\./lib/[a-z0-9_]+\.h$' gateway/types.h
for f in gateway/cache.h gateway/store.h gateway/jwt.h gateway/limits.h gateway/feed.h \
         gateway/metrics.h gateway/proxy.h gateway/config.h gateway/loop.h gateway/pgpool.h \
         gateway/upstream.h; do
    [ -f "$f" ] || { say "$f is missing"; continue; }
    check "module headers sit on types.h" '^(types\.h|\.\./lib/[a-z0-9_]+\.h)$' "$f"
done
check "request.h sits on types.h" '^types\.h$' gateway/request.h
check "stages.h sits on request.h" '^request\.h$' gateway/stages.h
[ -f gateway/gateway.h ] && say "gateway/gateway.h is back: add to a module header instead"

# authsvc: handlers see the job API, never the server's internals
for f in authsvc/*.c; do
    case "$f" in authsvc/server.c|authsvc/routes.c|authsvc/main.c) ;;
    *)
        for hit in $(includes "$f"); do
            case "${hit##*:}" in
                server.h|routes.h) say "authsvc: ${hit%:*} includes the loop's \"${hit##*:}\"" ;;
            esac
        done ;;
    esac
    if grep -q '^bool as_route_' "$f" && ! includes "$f" | grep -q ':job\.h$'; then
        say "authsvc: $f defines a route handler but does not include \"job.h\""
    fi
done
grep -Eq '#[[:space:]]*include[[:space:]]*"(server|routes)\.h"' authsvc/authsvc.h &&
    say "authsvc: authsvc.h includes the loop's headers"

if [ "$bad" -gt 0 ]; then
    echo "layers: $bad include(s) point the wrong way"
    exit 1
fi
echo "layers: ok"
