"""Fixtures for the cluster e2e tests (issue 6): a cluster of the module's own -
PostgreSQL, Redis, authsvc, the demo upstream, three gateway replicas and haproxy
from deploy/haproxy.cfg in front of them - that the tests may break on purpose
(kill Redis, PostgreSQL, a replica, restart authsvc).  Nothing here touches the
parent suite's shared PostgreSQL/Redis/authsvc.

  cluster     pcsupport.cluster.Cluster, module scope; stopped and checked (sanitizer
              reports, hung shutdowns) after the module
  c           pcsupport.ApiClient on the cluster's authsvc

Needs haproxy (`make deps` installs it); without it the tests fail, they do not skip.
"""

from __future__ import annotations

import pytest

from pcsupport import cluster as C

# Revocations must be seen because of the feed (or the flush when it comes back),
# never because an entry simply aged out: L1_TTL is 300 s (pcsupport.gw_base_env), and entries stay
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
