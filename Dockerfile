# Portcullis images, all on debian:bookworm-slim (the distribution CI builds on).
#
#   build    the -dev packages, then `make all`
#   haproxy  Debian's haproxy (the package `make cluster` runs) with deploy/haproxy.cfg
#   runtime  (the default target) authsvc, gateway and demo-upstream, their shared
#            libraries and nothing else, run as a non-root user
#
#   docker build -t portcullis .                      # runtime; CMD is the gateway
#   docker run --rm portcullis authsvc --help
#   docker compose up --build                         # the whole cluster (docker-compose.yml)
#
# The binaries read their configuration from the environment (README.md,
# docs/gateway.md). The runtime image sets AUTHSVC_LISTEN=0.0.0.0:3000 and
# GATEWAY_LISTEN=0.0.0.0:8080 (inside a container a server must listen on
# every address to be reached); the healthcheck asks the one PID 1 runs.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---- build ------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential pkg-config \
        libevent-dev libhiredis-dev libpq-dev libyajl-dev libssl-dev libunistring-dev \
        libsodium-dev libcurl4-openssl-dev libnghttp2-dev libjwt-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile VERSION ./
COPY scripts/embed-sql.sh scripts/
COPY db db
COPY lib lib
COPY authsvc authsvc
COPY gateway gateway
COPY tools tools
RUN make -j"$(nproc)" all

# ---- haproxy ----------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS haproxy
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/haproxy.cfg /etc/haproxy/haproxy.cfg
COPY deploy/healthcheck.sh /usr/local/bin/portcullis-healthcheck
RUN chmod 755 /usr/local/bin/portcullis-healthcheck
USER haproxy
EXPOSE 8080 8404
# SIGUSR1: soft stop - stop accepting, let open requests finish (hard-stop-after 15s)
STOPSIGNAL SIGUSR1
ENV HEALTHCHECK_ADDR=127.0.0.1:8404
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["portcullis-healthcheck"]
CMD ["haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"]

# ---- runtime ----------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-pthreads-2.1-7 libpq5 libhiredis0.14 libyajl2 libssl3 libunistring2 \
        libsodium23 libcurl4 libnghttp2-14 libjwt0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin portcullis
COPY --from=build /src/build/authsvc /src/build/gateway /src/build/demo-upstream /usr/local/bin/
COPY deploy/healthcheck.sh /usr/local/bin/portcullis-healthcheck
RUN chmod 755 /usr/local/bin/portcullis-healthcheck
USER portcullis
ENV AUTHSVC_LISTEN=0.0.0.0:3000 GATEWAY_LISTEN=0.0.0.0:8080
EXPOSE 3000 8080 9000
# GET /live on the server this container runs (GATEWAY_LISTEN or AUTHSVC_LISTEN)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["portcullis-healthcheck"]
# SIGTERM (docker stop's default): the gateway finishes its requests (10 s at
# most) and writes back its counters; authsvc drains. Give them that long.
CMD ["gateway"]
