"""Runs last (file order): the logs of every authsvc started in this run.

- No password, token, cookie value or secret used anywhere in the run appears in any
  log or stderr file (harness.SENSITIVE is filled by ApiClient and the tests).
- Every line of AUTHSVC_LOG is a JSON object; every request line has a request id,
  unique per request.
- No Redis key contains a raw token.
"""

import json
import re
import urllib.parse
from pathlib import Path

import pytest

import harness as H

REQUEST_KEYS = ("method", "path", "status", "route", "url", "uri")


def _request_id(obj):
    for k, v in obj.items():
        norm = re.sub(r"[^a-z]", "", k.lower())
        if norm in ("requestid", "reqid", "rid", "xrequestid") and v not in (None, ""):
            return v
    return None


def _variants(value):
    out = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote(value, safe="-_.!~*'()")}
    out.add(json.dumps(value)[1:-1])                       # JSON-escaped (\\uXXXX)
    out.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return {v for v in out if len(v) >= 6}


@pytest.fixture(scope="module")
def stopped_main(authsvc):
    """Stop the main server so that its log is complete (the session finalizer then
    only collects the exit status and checks for sanitizer reports)."""
    authsvc.stop(timeout=10)
    return authsvc


def _log_files():
    seen, out = set(), []
    for p in H.LOG_FILES:
        p = Path(p)
        if p in seen or not p.exists():
            continue
        seen.add(p)
        out.append(p)
    return out


def test_no_secret_in_any_log(stopped_main):
    files = _log_files()
    assert files, "no authsvc log files were produced"
    if len(H.SENSITIVE) < 20:
        pytest.skip("run the whole suite: too few credentials were used to check the logs")
    needles = {}
    for v in H.SENSITIVE:
        for variant in _variants(v):
            needles[variant.encode("utf-8", "replace")] = v
    leaks = []
    for f in files:
        data = f.read_bytes()
        for needle, original in needles.items():
            i = data.find(needle)
            if i >= 0:
                line_start = data.rfind(b"\n", 0, i) + 1
                line_end = data.find(b"\n", i)
                line = data[line_start:line_end if line_end >= 0 else None][:300]
                leaks.append(f"{f.name}: {original[:6]}... in {line.decode(errors='replace')}")
    assert not leaks, f"{len(leaks)} sensitive value(s) found in logs:\n" + "\n".join(sorted(set(leaks))[:30])


def test_log_lines_are_json_with_request_ids(stopped_main):
    logs = [Path(p) for p in H.LOG_FILES if str(p).endswith(".log.jsonl") and Path(p).exists()]
    assert stopped_main.log_path in logs, f"main log {stopped_main.log_path} missing"
    problems = []
    for f in logs:
        ids = []
        request_lines = 0
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                problems.append(f"{f.name}:{n}: not JSON: {line[:200]}")
                continue
            if not isinstance(obj, dict):
                problems.append(f"{f.name}:{n}: not an object: {line[:200]}")
                continue
            if any(k in obj for k in REQUEST_KEYS):
                request_lines += 1
                rid = _request_id(obj)
                if rid is None:
                    problems.append(f"{f.name}:{n}: request line without a request id: {line[:200]}")
                else:
                    ids.append(str(rid))
        if f == stopped_main.log_path and len(H.SENSITIVE) >= 20:
            assert request_lines >= 20, f"main log has only {request_lines} request lines"
        dups = len(ids) - len(set(ids))
        if dups:
            problems.append(f"{f.name}: {dups} duplicate request ids (one line per request)")
    assert not problems, "\n".join(problems[:30])


def test_no_raw_token_in_redis_keys(redis_srv):
    with redis_srv.client() as c:
        keys = [k.decode(errors="replace") for k in c.keys("*")]
    tokens = [v for v in H.SENSITIVE if re.fullmatch(r"[A-Za-z0-9]{32}", v)]
    if not tokens:
        pytest.skip("run the whole suite: no session tokens were issued")
    bad = [k for k in keys for t in tokens if t in k]
    assert not bad, f"raw tokens in Redis keys: {bad[:5]}"
    for k in keys:
        assert ":" in k, f"Redis key without a namespace prefix: {k}"
