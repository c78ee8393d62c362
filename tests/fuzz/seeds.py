#!/usr/bin/python3
"""tests/fuzz/seeds.py: writes the seed corpus (tests/fuzz/corpus/<target>/seed-*)
from the unit tests' inputs.

Each unit test file is run through the C preprocessor (so its macros, such as
test_gw.h's signed cookies, are expanded); every string literal (adjacent
literals joined) is decoded and handed to the targets whose input it can be,
with the mode byte a target reads first. Run from the repository root:

    /usr/bin/python3 tests/fuzz/seeds.py

It only adds files (named by content); inputs found by fuzzing and crashes
fixed live beside them and are kept.
"""
import hashlib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "tests", "unit")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")

LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
RUN = re.compile(r'(?:"(?:[^"\\\n]|\\.)*"\s*)+')


def c_unescape(s):
    out = bytearray()
    i = 0
    simple = {"n": 10, "r": 13, "t": 9, "0": 0, "\\": 92, '"': 34, "'": 39, "a": 7,
              "b": 8, "f": 12, "v": 11, "?": 63}
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        n = s[i + 1]
        if n == "x":
            j = i + 2
            while j < len(s) and s[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(s[i + 2:j], 16) & 0xFF)
            i = j
        elif n in "01234567":
            j = i + 1
            while j < len(s) and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(int(s[i + 1:j], 8) & 0xFF)
            i = j
        else:
            out.append(simple.get(n, ord(n)))
            i += 2
    return bytes(out)


def literals(path):
    cflags = subprocess.run(["pkg-config", "--cflags", "libevent", "yajl", "openssl", "libsodium"],
                            capture_output=True, text=True).stdout.split()
    pre = subprocess.run(["cc", "-E", "-P", "-D_GNU_SOURCE", *cflags, path],
                         capture_output=True, text=True, check=True).stdout
    # only the test file's own text, not the system headers before it
    out = []
    for m in RUN.finditer(pre):
        out.append(b"".join(c_unescape(x) for x in LIT.findall(m.group(0))))
    return out


def lits(*names):
    seen, out = set(), []
    for n in names:
        for s in literals(os.path.join(UNIT, n)):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


written = {}


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    p = os.path.join(d, name)
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
        written[target] = written.get(target, 0) + 1


def main():
    http = lits("test_http.c")
    method = re.compile(rb"^[A-Z]+ \S+ HTTP/")
    for s in http:
        if method.match(s) or s.startswith(b"\r\n") or s.startswith(b"\n"):
            put("http_request", s)
            put("gw_request", s)
        if s.startswith(b"HTTP/"):
            put("http_response", b"\0" + s)
            put("http_response", b"\1" + s)
        if re.match(rb"^[0-9a-fA-F]+[;\r\n ]", s):
            put("chunked", b"\0\0\0\0" + s)
            put("chunked", b"\x2a\0\0\0" + s)

    extract = lits("test_gw_extract.c", "test_gw_route.c", "test_gw_path.c", "test_gw_decide.c")
    targets = [s for s in extract if s.startswith(b"/")][:60]
    headers = [s for s in extract if re.match(rb"^[A-Za-z-]+: ", s)][:40]
    for t in targets:
        put("gw_request", b"GET " + t + b" HTTP/1.1\r\nHost: unit\r\n\r\n")
    for i, h in enumerate(headers):
        t = targets[i % len(targets)] if targets else b"/"
        lines = h.replace(b"\n", b"\r\n")
        put("gw_request", b"GET " + t + b" HTTP/1.1\r\nHost: unit\r\n" + lines + b"\r\n\r\n")
        if h.lower().startswith(b"cookie: "):
            put("cookie", b"better-auth.session_token\0" + h[8:])
        if h.lower().startswith(b"authorization: "):
            put("bearer", h[15:])
    # forward auth as nginx, Traefik and Envoy ask (the proxy is chosen by length)
    for extra in (b"", b"X", b"XY"):
        for fa in (b"GET /_auth HTTP/1.1\r\nHost: gw\r\nX-Original-URI: /s/a?b=1\r\n"
                   b"X-Original-Method: POST\r\nX-Original-Host: a.test\r\n",
                   b"GET /_auth HTTP/1.1\r\nHost: gw\r\nX-Forwarded-Uri: /oc/pc_k/x\r\n"
                   b"X-Forwarded-Method: GET\r\nX-Forwarded-Host: x.b.test\r\n"
                   b"X-Forwarded-Uri: /oc/pc_k/y\r\n",
                   b"POST /_auth/h/x?y=z HTTP/1.1\r\nHost: a.test\r\n"):
            put("gw_request", fa + b"X-Pad: " + extra + b"\r\n\r\n")
    for s in extract:
        if b'"prefix"' in s:
            doc = s if s.lstrip().startswith(b'{"routes"') else b'{"routes": [' + s.strip(b", ") + b"]}"
            put("gw_routes", doc)

    with open(os.path.join(ROOT, "docs", "gateway.routes.example.json"), "rb") as f:
        put("gw_routes", f.read())
    for s in (b'{"routes": [{"prefix": "/", "upstream": "http://127.0.0.1:9", "auth": ["none"]}]}',
              b'{"routes": [{"prefix": "/a/", "upstream": "https://h.test/b", "auth": ["jwt"],'
              b' "hosts": ["*.x.test"], "methods": ["GET", "POST"], "strip_prefix": true}],'
              b' "jwt_issuers": [{"issuer": "https://i.test", "jwks_uri": "https://i.test/jwks",'
              b' "audiences": ["a"]}]}'):
        put("gw_routes", s)
    # what the e2e suite sends to authsvc's routes (tests/e2e/authsvc)
    for s in (b'{"email":"a@example.com","password":"password123","name":"A"}',
              b'{"email":"a@example.com","password":"password123","rememberMe":false}',
              b'{"name":"k","expiresIn":86400,"prefix":"pc_","remaining":10,'
              b'"permissions":{"files":["read"]},"metadata":{"a":1}}',
              b'{"keyId":"x","enabled":false,"rateLimitEnabled":true,"rateLimitMax":5,'
              b'"rateLimitTimeWindow":1000,"refillAmount":1,"refillInterval":1000}',
              b'{"token":"t","newPassword":"password1234","revokeOtherSessions":true}'):
        for mode in (b"\1", b"\x09", b"\x31", b"\x51"):
            put("as_body", mode + s)
    for s in (b"email=a%40example.com&password=p%C3%A9&name=A+B", b"a=1&a=2&b", b"%ff=%fe&x=%"):
        put("as_body", b"\2" + s)
        put("as_query", s)

    for s in lits("test_cookie.c"):
        put("cookie", b"better-auth.session_token\0" + s)
        put("cookie", s)
    for s in lits("test_bearer.c"):
        put("bearer", s)
        put("bearer", b"Bearer " + s)

    jws = lits("test_jws.c", "test_ba_jwks.c")
    for s in jws:
        if s.startswith(b"eyJ"):
            put("jwt", b"\0" + s)
        if s.startswith(b"{"):
            put("jwt", b"\1" + s)
            put("jwk", b"\0" + s)
            put("jwk", b"\1" + s)
            put("jwk", b"\3" + s)

    for s in lits("test_json.c", "test_jws.c", "test_conf.c", "test_gw_route.c"):
        if s[:1] in (b"{", b"[", b'"') or s in (b"true", b"null", b"1"):
            put("json", s)
            put("as_body", b"\1" + s)
            put("as_body", b"\x19" + s)

    for s in lits("test_url.c", "test_conf_common.c"):
        put("url", s)
        put("url", s + b"\0https://*.example.com")
        put("url", b"https://app.example.com/x\0" + s)

    for s in lits("test_util.c", "test_url.c", "test_cookie.c"):
        if b"=" in s or b"%" in s:
            put("as_query", s)
            put("as_body", b"\2" + s)
            put("as_body", b"\3" + s)

    for t, n in sorted(written.items()):
        print(f"seeds: {t}: {n} new")
    for t in sorted(os.listdir(CORPUS)):
        print(f"seeds: {t}: {len(os.listdir(os.path.join(CORPUS, t)))} in all")


if __name__ == "__main__":
    sys.exit(main())
