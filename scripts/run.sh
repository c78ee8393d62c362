#!/bin/sh
# `make run`: the whole stack on this machine, in the foreground.
#
# Without DATABASE_URL it starts a private PostgreSQL under .run/pg (as the
# unprivileged `postgres` user: PostgreSQL refuses to run as root); without
# REDIS_URL a private Redis. Then it applies migrations and starts authsvc and
# the gateway. Ctrl-C stops everything it started, and only that.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/.run"
BUILD="${PORTCULLIS_BUILD:-$ROOT/build}"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
mkdir -p "$RUN"

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PIDS=""
PG_STARTED=""
cleanup() {
    # Children started with & in a script ignore SIGINT, so Ctrl-C reaches
    # only this shell: stop them here, and let no second signal cut it short.
    trap '' INT TERM HUP
    trap - EXIT
    echo
    echo "run: stopping"
    [ -n "$PIDS" ] && kill $PIDS 2>/dev/null
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ -n "$PG_STARTED" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    exit 0
}
trap cleanup INT TERM EXIT

if [ -z "${DATABASE_URL:-}" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    PGPORT=${PGPORT:-$(free_port)}
    if [ ! -f "$RUN/pg/data/PG_VERSION" ]; then
        mkdir -p "$RUN/pg"
        chown postgres "$RUN/pg"
        runuser -u postgres -- "$PGBIN/initdb" -D "$RUN/pg/data" -A trust -U postgres >/dev/null
    fi
    chown postgres "$RUN/pg"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN/pg/data" -l "$RUN/pg/log" -w \
        -o "-p $PGPORT -k $RUN/pg -c listen_addresses=127.0.0.1" start >/dev/null
    PG_STARTED=1
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
fi

if [ -z "${REDIS_URL:-}" ]; then
    RPORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no \
        --logfile "$RUN/redis.log" &
    PIDS="$PIDS $!"
    export REDIS_URL="redis://127.0.0.1:$RPORT"
    i=0
    until redis-cli -p "$RPORT" ping >/dev/null 2>&1 || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
fi

# Without SMTP_URL a local mail sink keeps every mail authsvc sends (email
# verification, password reset) as a file under .run/mail
MAIL_NOTE="SMTP_URL given: mails go there"
if [ -z "${SMTP_URL:-}" ]; then
    MPORT=$(free_port)
    mkdir -p "$RUN/mail"
    /usr/bin/python3 "$ROOT/tools/mail_sink.py" --port "$MPORT" --dir "$RUN/mail" \
        >/dev/null 2>"$RUN/mail.log" &
    PIDS="$PIDS $!"
    export SMTP_URL="smtp://127.0.0.1:$MPORT"
    MAIL_NOTE="mail sink, every mail a file: ls $RUN/mail/*.eml"
fi

if [ -z "${BETTER_AUTH_SECRET:-}" ]; then
    [ -f "$RUN/secret" ] || head -c 32 /dev/urandom | base64 > "$RUN/secret"
    BETTER_AUTH_SECRET=$(cat "$RUN/secret")
    export BETTER_AUTH_SECRET
fi
export AUTHSVC_LISTEN="${AUTHSVC_LISTEN:-127.0.0.1:3000}"
export BETTER_AUTH_URL="${BETTER_AUTH_URL:-http://${AUTHSVC_LISTEN}}"
# TLS at the gateway with a self-signed certificate made at the first start
# (RUN_TLS=0: plain HTTP on 8080 instead): https on 8443, and 8080 redirects
if [ "${RUN_TLS:-1}" != 0 ] && [ -z "${GATEWAY_TLS_CERT:-}" ]; then
    mkdir -p "$RUN/tls"
    if [ ! -f "$RUN/tls/gateway.crt" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
            -subj "/CN=portcullis make run" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            -keyout "$RUN/tls/gateway.key" -out "$RUN/tls/gateway.crt" 2>/dev/null
    fi
    export GATEWAY_TLS_CERT="$RUN/tls/gateway.crt" GATEWAY_TLS_KEY="$RUN/tls/gateway.key"
    export GATEWAY_LISTEN="${GATEWAY_LISTEN:-127.0.0.1:8443}"
    export GATEWAY_HTTP_LISTEN="${GATEWAY_HTTP_LISTEN:-127.0.0.1:8080}"
    GW="https://$GATEWAY_LISTEN"
    CA="--cacert $GATEWAY_TLS_CERT "
else
    export GATEWAY_LISTEN="${GATEWAY_LISTEN:-127.0.0.1:8080}"
    GW="http://$GATEWAY_LISTEN"
    CA=""
fi
DEMO_LISTEN="${DEMO_LISTEN:-127.0.0.1:9000}"
export UPSTREAM_URL="${UPSTREAM_URL:-http://$DEMO_LISTEN}"

"$BUILD/authsvc" migrate
"$BUILD/authsvc" &
PIDS="$PIDS $!"
"$BUILD/demo-upstream" "$DEMO_LISTEN" 2 >/dev/null &
PIDS="$PIDS $!"
"$BUILD/gateway" &
PIDS="$PIDS $!"

i=0
until curl -fs "http://$AUTHSVC_LISTEN/live" >/dev/null 2>&1 || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done

A="http://$AUTHSVC_LISTEN"
cat <<MSG

Portcullis is running. Ctrl-C stops it.

  authsvc     $A          (health: $A/ready)
  gateway     $GW   (in front of $UPSTREAM_URL)
  demo        http://$DEMO_LISTEN          (echoes what it receives)
  PostgreSQL  $DATABASE_URL
  Redis       $REDIS_URL
  Mail        $SMTP_URL   ($MAIL_NOTE)

Try it:

  # sign up (answers the user and a session; -c keeps the cookie)
  curl -c /tmp/pc.jar -H 'Content-Type: application/json' \\
       -d '{"name":"Ada","email":"ada@example.com","password":"correct-horse-1"}' \\
       $A/api/auth/sign-up/email

  # sign in (the set-auth-token header is a bearer token for scripts)
  curl -i -c /tmp/pc.jar -H 'Content-Type: application/json' \\
       -d '{"email":"ada@example.com","password":"correct-horse-1"}' \\
       $A/api/auth/sign-in/email

  # who am I?
  curl -b /tmp/pc.jar $A/api/auth/get-session

  # forgot the password? the reset link arrives as a mail (see Mail above)
  curl -H 'Content-Type: application/json' -d '{"email":"ada@example.com"}' \\
       $A/api/auth/request-password-reset

  # through the gateway: the demo upstream echoes the identity headers
  # (x-user-id, x-user-email, x-auth-method, x-session-id) it received
  curl ${CA}-b /tmp/pc.jar $GW/hello

  # a JWT for the session, checked by the gateway against authsvc's JWKS
  # ($A/api/auth/jwks), which any JOSE library can use the same way
  T=\$(curl -s -b /tmp/pc.jar $A/api/auth/token | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
  curl ${CA}-H "Authorization: Bearer \$T" $GW/hello

  # without a credential the gateway answers 401
  curl -i ${CA}$GW/hello

  # sign out (a cookie-bearing POST needs a trusted Origin)
  curl -b /tmp/pc.jar -X POST -H 'Origin: $BETTER_AUTH_URL' $A/api/auth/sign-out

  # ... and the gateway refuses the cookie at once (revocation via Redis),
  # and the session's JWT too (JWT_REVOKED), long before it expires
  curl -i ${CA}-b /tmp/pc.jar $GW/hello
  curl -i ${CA}-H "Authorization: Bearer \$T" $GW/hello

MSG
wait
