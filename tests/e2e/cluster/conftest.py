"""Fixtures for the cluster e2e tests (issue 6): a cluster of the module's own -
PostgreSQL, Redis, authsvc, the demo upstream, three gateway replicas and haproxy
from deploy/haproxy.cfg in front of them - that the tests may break on purpose
(kill Redis, PostgreSQL, a replica, restart authsvc).  Nothing here touches the
parent suite's shared PostgreSQL/Redis/authsvc.

  cluster     clusterlib.Cluster, module scope; stopped and checked (sanitizer
              reports, hung shutdowns) after the module
  c           harness.ApiClient on the cluster's authsvc

Needs haproxy (`make deps` installs it); without it the tests fail, they do not skip.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for p in (HERE.parent, HERE.parent / "gateway", HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import clusterlib as C  # noqa: E402

# Revocations must be seen because of the feed (or the flush when it comes back),
# never because an entry simply aged out: L1_TTL is 300 s (gwlib), and entries stay
# trusted for 30 s while the feed is down.
DEGRADED_TTL = 30


@pytest.fixture(scope="module")
def cluster(tmp_root, secret, request):
    if C.haproxy_exe() is None:
        pytest.fail("haproxy not found: the cluster tests need it (make deps installs the Debian "
                    "package haproxy)", pytrace=False)
    name = request.module.__name__.rsplit(".", 1)[-1]
    cl = C.Cluster(tmp_root / name, secret, gateway_env={"L1_DEGRADED_TTL": str(DEGRADED_TTL)})
    try:
        yield cl
    finally:
        problems = cl.close()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def c(cluster):
    cl = cluster.client()
    try:
        yield cl
    finally:
        cl.close()
