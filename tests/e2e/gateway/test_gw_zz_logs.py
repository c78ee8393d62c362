"""Runs last in this directory (file order): the logs of every gateway started so far.

- No session token, signed cookie value, API key or secret used in the run appears in
  any gateway log or stderr file (harness.SENSITIVE holds them).
- Every line of GATEWAY_LOG is a JSON object.
- No sanitizer report in any gateway stderr (the stopped ones were checked at stop;
  this also covers the main gateway, which is still running).
"""

import json
import urllib.parse
from pathlib import Path

import pytest

import harness as H
import gwlib as G


def _files():
    seen, out = set(), []
    for p in G.GW_LOGS:
        p = Path(p)
        if p not in seen and p.exists():
            seen.add(p)
            out.append(p)
    return out


def test_no_credential_in_gateway_logs(gw):
    files = _files()
    if len(H.SENSITIVE) < 20:
        pytest.skip("run the whole gateway suite: too few credentials were used")
    needles = {}
    for v in H.SENSITIVE:
        for variant in {v, urllib.parse.quote(v, safe=""), urllib.parse.quote(v, safe="-_.!~*'()")}:
            if len(variant) >= 6:
                needles[variant.encode()] = v
    leaks = []
    for f in files:
        data = f.read_bytes()
        for needle, original in needles.items():
            i = data.find(needle)
            if i >= 0:
                s = data.rfind(b"\n", 0, i) + 1
                e = data.find(b"\n", i)
                leaks.append(f"{f.name}: {original[:6]}... in {data[s:e if e >= 0 else None][:200]!r}")
    assert not leaks, f"{len(leaks)} credential(s) in gateway logs:\n" + "\n".join(sorted(set(leaks))[:20])


def test_gateway_log_lines_are_json(gw):
    problems = []
    for f in _files():
        if not f.name.endswith(".log"):
            continue
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
    assert not problems, "\n".join(problems[:20])


def test_no_sanitizer_report_in_gateway_stderr(gw):
    reports = []
    for f in _files():
        if f.name.endswith(".stderr"):
            rep = H.sanitizer_report(f.read_text(errors="replace"))
            if rep:
                reports.append(f"{f}:\n{rep}")
    assert not reports, "\n\n".join(reports[:3])
