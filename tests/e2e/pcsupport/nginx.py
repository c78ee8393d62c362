"""A real nginx in front of the gateway, for the forward-auth tests: its own process
(not a daemon) on a free loopback port, its config, logs and temp files in the test's
directory, `auth_request` to the gateway's GET /_auth and proxy_pass to the demo
upstream, the way an operator sets it up.

    n = Nginx(workdir, gateway_port, upstream_port, auth_headers=NGINX_HEADERS)
    requests.get(n.url("/s/x"), headers=...)
    n.stop()

auth_headers are the proxy_set_header lines of the auth subrequest: NGINX_HEADERS
(X-Original-*, nginx's convention) or TRAEFIK_HEADERS (X-Forwarded-*, what Traefik's
ForwardAuth sends). Either way nginx passes the client's other headers to the
subrequest, as Traefik does by default, so a client can add any header it likes.
locations replaces the server's locations (the text of a recipe in docs/, say), with
{upstream_port}, {gateway_port} and {auth_headers} filled in.
The Set-Cookie of /_auth's 200 (a sliding refresh) is passed to the client with
auth_request_set and add_header, as docs/gateway.md tells operators."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pcsupport as H
import pcsupport as G

NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")

NGINX_HEADERS = {
    "X-Original-URI": "$request_uri",
    "X-Original-Method": "$request_method",
    "X-Original-Host": "$host",
}
TRAEFIK_HEADERS = {
    "X-Forwarded-Uri": "$request_uri",
    "X-Forwarded-Method": "$request_method",
    "X-Forwarded-Host": "$host",
}

LOCATIONS = """\
        location / {
            auth_request /_portcullis_auth;
            auth_request_set $pc_user_id $upstream_http_x_user_id;
            auth_request_set $pc_auth_method $upstream_http_x_auth_method;
            proxy_set_header X-User-Id $pc_user_id;
            proxy_set_header X-Auth-Method $pc_auth_method;
            # a sliding refresh's Set-Cookie from /_auth, to the client (docs/gateway.md)
            auth_request_set $pc_set_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $pc_set_cookie;
            proxy_pass http://127.0.0.1:{upstream_port};
        }
        location = /_portcullis_auth {
            internal;
            proxy_pass http://127.0.0.1:{gateway_port}/_auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
{auth_headers}
        }
"""

CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""


class Nginx:
    def __init__(self, workdir: Path, gateway_port: int, upstream_port: int, *,
                 auth_headers: dict, name: str = "nginx", locations: str | None = None):
        if not Path(NGINX).exists():
            raise FileNotFoundError(f"{NGINX} not found: run scripts/deps.sh (Debian package nginx)")
        self.port = H.free_port()
        self.dir = Path(workdir) / f"{name}-{self.port}"
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        lines = "\n".join(f"            proxy_set_header {k} {v};" for k, v in auth_headers.items())
        locs = (locations if locations is not None else LOCATIONS)
        locs = (locs.replace("{upstream_port}", str(upstream_port))
                .replace("{gateway_port}", str(gateway_port)).replace("{auth_headers}", lines))
        conf = CONF.format(dir=self.dir, port=self.port, locations=locs,
                           user="user root;" if os.geteuid() == 0 else "")
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(conf)
        self.stderr_path = self.dir / "stderr"
        self.proc = H.Proc([NGINX, "-p", str(self.dir), "-c", str(self.conf),
                            "-e", str(self.dir / "error.log")],
                           env=G.gateway_env(), stdout=self.dir / "stdout",
                           stderr=self.stderr_path, name=name)
        try:
            G.wait_port(self.port, 10, self.proc, name)
        except Exception:
            self.proc.kill()
            raise RuntimeError(f"{name} did not start:\n{H.tail(self.stderr_path)}\n"
                               f"{H.tail(self.dir / 'error.log')}") from None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        # SIGQUIT: graceful shutdown; Proc.stop escalates to SIGKILL after the timeout
        return self.proc.stop(signal.SIGQUIT, timeout=10)
