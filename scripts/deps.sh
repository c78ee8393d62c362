#!/bin/sh
# Installs the Debian packages Portcullis builds, tests and runs with.
# Idempotent and quick when everything is present (one dpkg-query).
set -eu
PKGS="build-essential pkg-config
libevent-dev libhiredis-dev libpq-dev libyajl-dev libcurl4-openssl-dev libssl-dev
libsodium-dev libunistring-dev libcmocka-dev libnghttp2-dev libjwt-dev
clang libclang-rt-dev
postgresql-15 postgresql-client-15 redis-server redis-sentinel pgbouncer
python3 python3-pytest python3-requests python3-jwt python3-psycopg2 python3-yaml python3-h11
python3-cryptography python3-websockets python3-h2 python3-aiosmtpd python3-pyotp
haproxy nginx
curl ca-certificates openssl"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
# Node.js (for the Better Auth interoperability test): any node >= 18 on PATH
# will do; install Debian's when there is none.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi
if [ -n "$missing" ]; then
    echo "deps: installing:$missing"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # Debian's packages start their services at install (nginx's default
    # site on port 80 of every address, a system PostgreSQL and Redis). We
    # run our own on loopback ports, so refuse those starts with a
    # policy-rc.d while installing, unless the machine already has one.
    policy=""
    if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy=/usr/sbin/policy-rc.d
    fi
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
        [ -z "$policy" ] || rm -f "$policy"
        exit 1
    }
    [ -z "$policy" ] || rm -f "$policy"
fi
echo "deps: ok"
