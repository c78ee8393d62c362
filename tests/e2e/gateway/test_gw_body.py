"""Request bodies through the gateway: method, query and body forwarded and framed
(Content-Length or chunked) for every method; 2 MiB bodies intact in both directions;
no request smuggling through an unframed body.

Each method gets a gateway of its own: a body sent upstream unframed leaves bytes on a
pooled upstream connection, which would poison the next test's requests."""

import hashlib
import json
import os

import pytest

import pcsupport as G

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SMUGGLED = (b"GET /s/smuggled HTTP/1.1\r\nHost: up\r\nX-User-Id: admin\r\n"
            b"X-Auth-Method: session\r\n\r\n")


@pytest.mark.parametrize("method", METHODS)
def test_method_query_and_body_forwarded(gateway_factory, mod_user, method):
    g = gateway_factory(name=f"gateway-body-{method.lower()}")
    payload = json.dumps({"n": os.urandom(8).hex(), "text": "h\u00e9llo"})
    r = g.request(method, "/m/items/42?q=a%20b&x=1&x=2&empty=", data=payload.encode(),
                  headers={"Content-Type": "application/json", **G.cookie(mod_user),
                           **G.same_origin(g)})
    body = G.echo(r)
    assert body["method"] == method
    assert body["path"] == "/m/items/42"
    assert body["query"] == "q=a%20b&x=1&x=2&empty="
    assert body["headers"].get("content-type") == "application/json"
    assert body["body"] == payload, f"{method} body not forwarded: {body}"
    assert body["headers"].get("content-length") == str(len(payload.encode())), body["headers"]


@pytest.mark.parametrize("method", METHODS)
def test_request_body_is_framed_no_smuggling(gateway_factory, method):
    """If the gateway sends a body upstream without its length, the upstream parses it
    as a second request on the pooled connection: an unauthenticated client smuggles a
    request with forged identity headers to any path, and its answer is delivered to the
    next request on that upstream connection (another client's)."""
    g = gateway_factory(name=f"gateway-smuggle-{method.lower()}")
    r = g.request(method, "/pub/carrier", data=SMUGGLED)
    assert r.status_code == 200, r.text[:300]
    first = r.json()
    for i in range(3):     # same client connection: same worker, same upstream pool
        b = G.echo(g.get(f"/pub/probe{i}"))
        assert b["path"] == f"/pub/probe{i}", \
            f"{method}: the answer of a smuggled request was delivered to /pub/probe{i}: {b}"
        assert b["headers"].get("x-user-id") is None, b
    assert first["method"] == method and first["path"] == "/pub/carrier"
    assert first["body"] == SMUGGLED.decode(), f"{method} body not forwarded: {first}"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_head_with_a_body_refused(gateway_factory, framing):
    """libevent servers (the demo upstream, authsvc) read no body after a HEAD: one
    forwarded would be parsed as the next request on the pooled upstream connection,
    with headers the client chose. The gateway refuses it and closes (RFC 9110 9.3.2)."""
    g = gateway_factory(name=f"gateway-head-body-{framing}")
    body = b"GET /pub/smuggled HTTP/1.1\r\nHost: x\r\nX-User-Id: victim\r\n\r\n"
    if framing == "length":
        head = f"Content-Length: {len(body)}\r\n".encode()
        payload = body
    else:
        head = b"Transfer-Encoding: chunked\r\n"
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    st, hdrs, _, raw = G.raw_http(g.port, b"HEAD /pub/carrier HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                                  head + b"\r\n" + payload)
    assert st == 400 and hdrs.get("connection") == "close", raw[:300]
    # an empty body is no body
    st, _, _, raw = G.raw_http(g.port, b"HEAD /pub/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    assert st == 200, raw[:300]
    for i in range(3):
        b = G.echo(g.get(f"/pub/probe{i}"))
        assert b["path"] == f"/pub/probe{i}" and b["headers"].get("x-user-id") is None, b


def test_head_then_more_requests(gateway_factory, mod_user):
    """HEAD is answered without a body, and the requests after it (same client
    connection, so the same pooled upstream connection) still work.  (The demo
    upstream, like libevent servers, writes a body after a HEAD answer anyway: a
    connection with unread bytes must not be reused as if it were clean.)"""
    g = gateway_factory(name="gateway-head")
    r = g.request("HEAD", "/m/x", headers=G.cookie(mod_user))
    assert r.status_code == 200 and r.content == b""
    for i in range(3):
        assert G.echo(g.get(f"/m/after-head{i}", headers=G.cookie(mod_user)))["path"] == f"/m/after-head{i}"


@pytest.fixture(scope="module")
def bgw(module_gateway):
    return module_gateway


def test_two_mib_request_body_intact(bgw, mod_user):
    data = os.urandom(1024 * 1024 * 2 // 2).hex().encode()   # 2 MiB of text
    r = bgw.post("/m/upload", data=data, headers={"Content-Type": "application/octet-stream",
                                                   **G.cookie(mod_user), **G.same_origin(bgw)},
                 timeout=20)
    body = G.echo(r)
    got = body["body"].encode()
    assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_chunked_request_body_intact(bgw, mod_user):
    parts = [os.urandom(50_000).hex().encode() for _ in range(8)]     # 800 KB, chunked
    r = bgw.post("/m/upload", data=iter(parts), headers={**G.cookie(mod_user), **G.same_origin(bgw)},
                 timeout=20)
    body = G.echo(r)
    assert body["body"].encode() == b"".join(parts)


def test_two_mib_response_body_streams_intact(bgw):
    with bgw.get("/big?kb=2048", stream=True, timeout=20) as r:
        assert r.status_code == 200, r.status_code
        n = 0
        for chunk in r.iter_content(65536):
            assert chunk.strip(b"x") == b"", "unexpected bytes in /big"
            n += len(chunk)
    assert n == 2048 * 1024
