#!/bin/sh
# Fails when an #include points the wrong way (run by `make test`):
#   lib/          includes only lib/ (it knows no program)
#   authsvc/      includes lib/ and itself, never gateway/; a file that
#                 defines a route handler includes job.h, and only the loop
#                 (server.c, routes.c, main.c) includes server.h or routes.h
#   gateway/      includes lib/ and itself, never authsvc/; a stage never
#                 includes the front (client.h, server.h)
#   tools/, tests/unit/   include lib/ only
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
check "unit tests use lib only" '^\.\./\.\./lib/[a-z0-9_]+\.[ch]$' tests/unit/*.c

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
