#!/bin/sh
# `make cluster`: the cluster topology on this machine, in the foreground -
# PostgreSQL, Redis, authsvc, three gateway replicas, the demo upstream and
# haproxy in front of the replicas (health checks on /ready). The same
# services, ports and variables as docker-compose.yml and deploy/haproxy.cfg
# (tests/e2e/cluster/test_cluster_config.py checks that they agree).
#
# Without DATABASE_URL it starts a private PostgreSQL under .run/cluster/pg
# (as the `postgres` user: PostgreSQL refuses to run as root); without
# REDIS_URL a private Redis. Everything listens on 127.0.0.1 only. Ctrl-C or
# SIGTERM stops everything it started, by PID, in reverse order: haproxy,
# the gateways (which finish their requests, at most 10 s), the rest.
#
# Overrides: the *_PORT variables below, CLUSTER_RUN_DIR (state and logs,
# default .run/cluster), PORTCULLIS_BUILD (binaries, default build/).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="${CLUSTER_RUN_DIR:-$ROOT/.run/cluster}"
BUILD="${PORTCULLIS_BUILD:-$ROOT/build}"
# shellcheck disable=SC2012
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
HOST=127.0.0.1

# ---- topology: service and host port (docker-compose.yml publishes the same)
: "${HAPROXY_PORT:=8080}"         # haproxy: the entry point
: "${HAPROXY_STATS_PORT:=8404}"   # haproxy: stats page
: "${GATEWAY1_PORT:=8081}"        # gateway1
: "${GATEWAY2_PORT:=8082}"        # gateway2
: "${GATEWAY3_PORT:=8083}"        # gateway3
: "${AUTHSVC_PORT:=3000}"         # authsvc
: "${AUTHSVC_ADMIN_PORT:=9100}"   # authsvc: admin listener (/metrics)
: "${GATEWAY1_ADMIN_PORT:=9101}"  # gateway1: admin listener (/metrics, /_stats)
: "${GATEWAY2_ADMIN_PORT:=9102}"  # gateway2: admin listener
: "${GATEWAY3_ADMIN_PORT:=9103}"  # gateway3: admin listener
: "${DEMO_UPSTREAM_PORT:=9000}"   # demo-upstream

mkdir -p "$RUN"
PIDFILE="$RUN/pids"               # "<service> <pid>" per line, while running
: > "$PIDFILE"

for exe in authsvc gateway demo-upstream; do
    [ -x "$BUILD/$exe" ] || { echo "cluster: $BUILD/$exe not found: run make first" >&2; exit 1; }
done
command -v haproxy >/dev/null 2>&1 || { echo "cluster: haproxy not found: run make deps" >&2; exit 1; }

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_is_free() {
    /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
for v in HAPROXY_PORT HAPROXY_STATS_PORT GATEWAY1_PORT GATEWAY2_PORT GATEWAY3_PORT AUTHSVC_PORT DEMO_UPSTREAM_PORT \
         AUTHSVC_ADMIN_PORT GATEWAY1_ADMIN_PORT GATEWAY2_ADMIN_PORT GATEWAY3_ADMIN_PORT; do
    eval "p=\$$v"
    if ! port_is_free "$p"; then
        echo "cluster: port $p is in use (is \`make run\` or another cluster running?); set $v to another port" >&2
        exit 1
    fi
done

# ---- process bookkeeping: everything started is stopped by PID
PG_PID=""
stopping=""

pid_of() { sed -n "s/^$1 //p" "$PIDFILE" | tail -n 1; }

stop_pids() {                     # stop_pids SIGNAL SECONDS pid...: signal, wait, then SIGKILL
    sig=$1; secs=$2; shift 2
    for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done
    for p in "$@"; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt $((secs * 10)) ]; do sleep 0.1; i=$((i + 1)); done
        if kill -0 "$p" 2>/dev/null; then
            echo "cluster: pid $p did not stop within ${secs}s; killing it" >&2
            kill -9 "$p" 2>/dev/null || true
        fi
    done
}

cleanup() {
    # bounded below; a second Ctrl-C must not leave half of it running
    trap '' INT TERM
    trap - EXIT
    [ -n "$stopping" ] && return
    stopping=1
    echo
    echo "cluster: stopping"
    if [ -n "${MONITOR_PID:-}" ]; then kill "$MONITOR_PID" 2>/dev/null || true; fi
    # haproxy first (soft stop: no new connections, open requests finish)
    p=$(pid_of haproxy); [ -n "$p" ] && stop_pids USR1 16 "$p"
    # the replicas together: each finishes its requests (10 s) and flushes counters
    gws=""
    for s in gateway1 gateway2 gateway3; do p=$(pid_of $s); [ -n "$p" ] && gws="$gws $p"; done
    # shellcheck disable=SC2086
    [ -n "$gws" ] && stop_pids TERM 12 $gws
    for s in demo-upstream authsvc redis; do
        p=$(pid_of $s); [ -n "$p" ] && stop_pids TERM 12 "$p"
    done
    if [ -n "$PG_PID" ]; then
        stop_pids INT 30 "$PG_PID"          # SIGINT: PostgreSQL's fast shutdown
    fi
    : > "$PIDFILE"
    echo "cluster: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_svc NAME LOGFILE COMMAND...: in the background, PID recorded
start_svc() {
    name=$1; log=$2; shift 2
    "$@" >>"$log" 2>&1 &
    echo "$name $!" >> "$PIDFILE"
}

wait_http() {                     # wait_http URL NAME [SECONDS]: until URL answers 200
    i=0; n=$(( ${3:-20} * 10 ))
    until curl -fs -o /dev/null --max-time 1 "$1" 2>/dev/null; do
        p=$(pid_of "$2")
        if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then
            echo "cluster: $2 exited during start; its log: $RUN/$2.log" >&2
            tail -n 20 "$RUN/$2.log" >&2 || true
            exit 1
        fi
        i=$((i + 1))
        [ $i -ge $n ] && { echo "cluster: $2 not ready after ${3:-20}s ($1); log: $RUN/$2.log" >&2; exit 1; }
        sleep 0.1
    done
}

# ---- PostgreSQL and Redis (private unless given)
if [ -z "${DATABASE_URL:-}" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    PGPORT=$(free_port)
    if [ ! -f "$RUN/pg/data/PG_VERSION" ]; then
        mkdir -p "$RUN/pg"
        chown postgres "$RUN/pg"
        runuser -u postgres -- "$PGBIN/initdb" -D "$RUN/pg/data" -A trust -U postgres >/dev/null
    fi
    chown postgres "$RUN/pg"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$RUN/pg/data" -l "$RUN/pg/log" -w \
        -o "-p $PGPORT -k $RUN/pg -c listen_addresses=127.0.0.1" start >/dev/null
    PG_PID=$(head -n 1 "$RUN/pg/data/postmaster.pid")
    echo "postgres $PG_PID" >> "$PIDFILE"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
fi

if [ -z "${REDIS_URL:-}" ]; then
    RPORT=$(free_port)
    start_svc redis "$RUN/redis.log" redis-server --bind 127.0.0.1 --port "$RPORT" --save '' \
        --appendonly no --protected-mode no --dir "$RUN"
    export REDIS_URL="redis://127.0.0.1:$RPORT"
    i=0
    until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -ge 100 ] && { echo "cluster: redis did not start" >&2; exit 1; }
        sleep 0.1
    done
fi

# ---- the variables authsvc and the gateways share (compose: x-portcullis-env)
if [ -z "${BETTER_AUTH_SECRET:-}" ]; then
    [ -f "$RUN/secret" ] || (umask 077 && head -c 32 /dev/urandom | base64 > "$RUN/secret")
    BETTER_AUTH_SECRET=$(cat "$RUN/secret")
fi
export BETTER_AUTH_SECRET
export BETTER_AUTH_URL="${BETTER_AUTH_URL:-http://$HOST:$AUTHSVC_PORT}"

# ---- authsvc (migrate first, as compose's `migrate` service)
AUTHSVC_LISTEN="$HOST:$AUTHSVC_PORT" "$BUILD/authsvc" migrate
start_svc authsvc "$RUN/authsvc.log" env AUTHSVC_LISTEN="$HOST:$AUTHSVC_PORT" AUTHSVC_ADMIN_LISTEN="$HOST:$AUTHSVC_ADMIN_PORT" "$BUILD/authsvc"
wait_http "http://$HOST:$AUTHSVC_PORT/live" authsvc

# ---- the demo upstream and three gateway replicas in front of it
start_svc demo-upstream "$RUN/demo-upstream.log" "$BUILD/demo-upstream" "$HOST:$DEMO_UPSTREAM_PORT" 2
UPSTREAM="http://$HOST:$DEMO_UPSTREAM_PORT"
JWKS="http://$HOST:$AUTHSVC_PORT/api/auth/jwks"   # authsvc's, as compose names it
start_svc gateway1 "$RUN/gateway1.log" env GATEWAY_LISTEN="$HOST:$GATEWAY1_PORT" GATEWAY_ADMIN_LISTEN="$HOST:$GATEWAY1_ADMIN_PORT" UPSTREAM_URL="$UPSTREAM" JWT_JWKS_URL="$JWKS" "$BUILD/gateway"
start_svc gateway2 "$RUN/gateway2.log" env GATEWAY_LISTEN="$HOST:$GATEWAY2_PORT" GATEWAY_ADMIN_LISTEN="$HOST:$GATEWAY2_ADMIN_PORT" UPSTREAM_URL="$UPSTREAM" JWT_JWKS_URL="$JWKS" "$BUILD/gateway"
start_svc gateway3 "$RUN/gateway3.log" env GATEWAY_LISTEN="$HOST:$GATEWAY3_PORT" GATEWAY_ADMIN_LISTEN="$HOST:$GATEWAY3_ADMIN_PORT" UPSTREAM_URL="$UPSTREAM" JWT_JWKS_URL="$JWKS" "$BUILD/gateway"
wait_http "http://$HOST:$DEMO_UPSTREAM_PORT/live" demo-upstream
wait_http "http://$HOST:$GATEWAY1_PORT/ready" gateway1
wait_http "http://$HOST:$GATEWAY2_PORT/ready" gateway2
wait_http "http://$HOST:$GATEWAY3_PORT/ready" gateway3

# ---- haproxy in front of the replicas (deploy/haproxy.cfg, addresses from here)
start_svc haproxy "$RUN/haproxy.log" env \
    HAPROXY_BIND="$HOST:$HAPROXY_PORT" HAPROXY_STATS_BIND="$HOST:$HAPROXY_STATS_PORT" \
    GATEWAY1_ADDR="$HOST:$GATEWAY1_PORT" GATEWAY2_ADDR="$HOST:$GATEWAY2_PORT" \
    GATEWAY3_ADDR="$HOST:$GATEWAY3_PORT" \
    haproxy -db -f "$ROOT/deploy/haproxy.cfg"
wait_http "http://$HOST:$HAPROXY_STATS_PORT/live" haproxy
# until haproxy's own checks see all three replicas up
i=0
until [ "$(curl -fs --max-time 1 "http://$HOST:$HAPROXY_STATS_PORT/;csv" 2>/dev/null |
          grep -c '^gateways,gateway[123],.*,UP,')" = 3 ]; do
    i=$((i + 1)); [ $i -ge 100 ] && { echo "cluster: haproxy does not see three replicas up" >&2; exit 1; }
    sleep 0.1
done

A="http://$HOST:$AUTHSVC_PORT"
G="http://$HOST:$HAPROXY_PORT"
cat <<MSG

Portcullis cluster is running. Ctrl-C stops it.

  haproxy        $G   (stats: http://$HOST:$HAPROXY_STATS_PORT/)
  gateway1       http://$HOST:$GATEWAY1_PORT   (admin: http://$HOST:$GATEWAY1_ADMIN_PORT/metrics)
  gateway2       http://$HOST:$GATEWAY2_PORT   (admin: http://$HOST:$GATEWAY2_ADMIN_PORT/metrics)
  gateway3       http://$HOST:$GATEWAY3_PORT   (admin: http://$HOST:$GATEWAY3_ADMIN_PORT/metrics)
  authsvc        $A   (admin: http://$HOST:$AUTHSVC_ADMIN_PORT/metrics)
  demo-upstream  http://$HOST:$DEMO_UPSTREAM_PORT
  PostgreSQL     $DATABASE_URL
  Redis          $REDIS_URL
  logs, pids     $RUN/

Try it:

  curl -c /tmp/pc.jar -H 'Content-Type: application/json' \\
       -d '{"name":"Ada","email":"ada@example.com","password":"correct-horse-1"}' \\
       $A/api/auth/sign-up/email
  # through haproxy: the demo upstream echoes the identity headers it received
  curl -b /tmp/pc.jar $G/hello
  # round robin over the replicas; x-portcullis-replica says which one answered
  for i in 1 2 3; do curl -s -o /dev/null -D - -b /tmp/pc.jar $G/hello | grep -i x-portcullis-replica; done
  # sign out, and every replica refuses the cookie at once
  curl -b /tmp/pc.jar -X POST -H 'Origin: $BETTER_AUTH_URL' $A/api/auth/sign-out
  for p in $GATEWAY1_PORT $GATEWAY2_PORT $GATEWAY3_PORT; do curl -s -o /dev/null -w '%{http_code}\\n' -b /tmp/pc.jar http://$HOST:\$p/hello; done

MSG

# Until a signal: say so when a service stops by itself (but keep the rest up).
reported=""
while :; do
    sleep 1 &
    MONITOR_PID=$!
    wait "$MONITOR_PID" || true
    while read -r name pid; do
        case " $reported " in *" $name "*) continue ;; esac
        if ! kill -0 "$pid" 2>/dev/null; then
            log="$RUN/$name.log"; [ "$name" = postgres ] && log="$RUN/pg/log"
            echo "cluster: $name (pid $pid) has stopped; its log: $log" >&2
            reported="$reported $name"
        fi
    done < "$PIDFILE"
done
