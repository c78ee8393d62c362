#!/bin/bash
# portcullis-healthcheck: exit 0 when GET /live (or $HEALTHCHECK_PATH) on this
# container's server answers 200, else 1. Plain bash (/dev/tcp), so the image
# needs no curl. Which server: $HEALTHCHECK_ADDR (host:port) if set, else the
# listen address of the program running as PID 1 ($HEALTHCHECK_PROGRAM names
# it instead): the gateway's GATEWAY_LISTEN, authsvc's AUTHSVC_LISTEN (the
# image sets both), demo-upstream's 9000; for any other program
# GATEWAY_LISTEN, else AUTHSVC_LISTEN. A wildcard host (0.0.0.0, [::], empty)
# means loopback.
set -u
addr=${HEALTHCHECK_ADDR:-}
if [ -z "$addr" ]; then
    prog=${HEALTHCHECK_PROGRAM:-$(tr '\0' ' ' </proc/1/cmdline 2>/dev/null)}
    case "$prog" in
        *gateway*) addr=${GATEWAY_LISTEN:-127.0.0.1:8080} ;;
        *authsvc*) addr=${AUTHSVC_LISTEN:-127.0.0.1:3000} ;;
        *demo-upstream*) addr=127.0.0.1:9000 ;;
        *) addr=${GATEWAY_LISTEN:-${AUTHSVC_LISTEN:-127.0.0.1:3000}} ;;
    esac
fi
port=${addr##*:}
host=${addr%:*}
case "$host" in "" | 0.0.0.0 | "*" | "[::]" | "::") host=127.0.0.1 ;; esac
host=${host#[}
host=${host%]}
path=${HEALTHCHECK_PATH:-/live}
exec 3<>"/dev/tcp/$host/$port" 2>/dev/null || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&3
IFS= read -r -t 5 status <&3 || exit 1
case "$status" in
    "HTTP/1."?" 200 "*) exit 0 ;;
esac
exit 1
