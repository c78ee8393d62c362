"""What the e2e suite checks about every process it ran: one check_stopped for every
fixture that stops a daemon, and the registries the session-end log check reads
(conftest.py: no secret in any log, log lines are JSON, no sanitizer report).

Nothing here needs pytest unless check_stopped(fail=True) finds a problem."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

from .procs import tail

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
    "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer", "UndefinedBehaviorSanitizer",
)

SENSITIVE: set = set()        # every password/token/cookie/secret value of the run
AUTHSVC_CALLS = [0]           # requests ApiClient sent to an authsvc
LOG_FILES: list = []          # every authsvc AUTHSVC_LOG / stderr / stdout file of the run
GATEWAY_LOG_FILES: list = []  # every gateway GATEWAY_LOG / stderr file of the run


def sensitive(value, min_len: int = 6):
    """Remember a password/token/cookie value for the log check; returns it."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) >= min_len:
        SENSITIVE.add(value)
    return value


def sanitizer_report(text: str) -> str | None:
    for m in SANITIZER_MARKERS:
        if m in text:
            i = text.index(m)
            return text[max(0, i - 200):i + 3000]
    return None


def check_stopped(*daemons, fail: bool = True, timeout: float = 10.0) -> list:
    """Stop each daemon (SIGTERM, SIGKILL after timeout) and collect its problems: a
    sanitizer report in its stderr, a shutdown that had to be forced, and (for daemons
    whose CHECK_EXIT_CODE is true) an exit code other than 0.  All are stopped even if
    one has problems.  fail=True: pytest.fail with them (outside any test: raise);
    returns the list of problems either way."""
    problems = []
    for d in daemons:
        rc = d.stop(timeout=timeout)
        report = sanitizer_report(d.stderr_text())
        if report:
            problems.append(f"{d.name}: sanitizer report in {d.stderr_path}:\n{report}")
        if d.proc is not None and d.proc.forced:
            problems.append(f"{d.name} did not exit within {timeout:g} s of SIGTERM (rc {rc})")
        elif d.CHECK_EXIT_CODE and rc not in (0, None):
            problems.append(f"{d.name} exited with {rc} after SIGTERM:\n{tail(d.stderr_path, 2000)}")
    if fail and problems:
        import pytest
        pytest.fail("\n".join(problems), pytrace=False)
    return problems


def stop_all(made: list, pg=None):
    """A test rig's teardown: everything in `made` stopped, last first (our daemons
    through check_stopped, the rest - Redis, an upstream, pgbouncer - by their stop()),
    then pg cleaned up; pytest.fail with what check_stopped found."""
    problems = []
    for p in reversed(made):
        if hasattr(p, "CHECK_EXIT_CODE"):
            problems.extend(check_stopped(p, fail=False))
        else:
            p.stop()
    if pg is not None:
        pg.cleanup()
    if problems:
        import pytest
        pytest.fail("\n".join(problems), pytrace=False)


# ---------------------------------------------------------------------------
# Session-end checks (conftest.py runs them after every daemon has stopped, so that
# every log is complete).  Each returns a list of problems; empty means clean.

REQUEST_KEYS = ("method", "path", "status", "route", "url", "uri")


def _existing(paths) -> list:
    seen, out = set(), []
    for p in paths:
        p = Path(p)
        if p not in seen and p.exists():
            seen.add(p)
            out.append(p)
    return out


def _variants(value):
    out = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote(value, safe="-_.!~*'()")}
    out.add(json.dumps(value)[1:-1])                       # JSON-escaped (\\uXXXX)
    out.add(json.dumps(value, ensure_ascii=False)[1:-1])
    return {v for v in out if len(v) >= 6}


SHORT_NEEDLE = 12


def _find(data: bytes, needle: bytes) -> int:
    """Where needle is in data, -1 if nowhere. A short one (a 6-digit code) counts only
    as a whole word: inside a random hex request id it is a coincidence, not a leak."""
    if len(needle) >= SHORT_NEEDLE:
        return data.find(needle)
    m = re.search(rb"(?<![0-9A-Za-z])" + re.escape(needle) + rb"(?![0-9A-Za-z])", data)
    return m.start() if m else -1


def secret_leaks() -> list:
    """No password, token, cookie value, API key or secret used anywhere in the run
    (SENSITIVE) appears, plain, URL-encoded or JSON-escaped, in any log, stderr or
    stdout file of any authsvc or gateway."""
    needles = {}
    for v in list(SENSITIVE):
        for variant in _variants(v):
            needles[variant.encode("utf-8", "replace")] = v
    leaks = []
    for f in _existing(LOG_FILES + GATEWAY_LOG_FILES):
        data = f.read_bytes()
        for needle, original in needles.items():
            i = _find(data, needle)
            if i >= 0:
                line_start = data.rfind(b"\n", 0, i) + 1
                line_end = data.find(b"\n", i)
                line = data[line_start:line_end if line_end >= 0 else None][:300]
                leaks.append(f"{f.name}: {original[:6]}... in {line.decode(errors='replace')}")
    if not leaks:
        return []
    return [f"{len(leaks)} sensitive value(s) found in logs:\n" + "\n".join(sorted(set(leaks))[:30])]


def _request_id(obj):
    for k, v in obj.items():
        norm = re.sub(r"[^a-z]", "", k.lower())
        if norm in ("requestid", "reqid", "rid", "xrequestid") and v not in (None, ""):
            return v
    return None


def _json_object_problems(f: Path, lines) -> tuple:
    """(problems, objects) for the lines of a JSON-lines log."""
    problems, objs = [], []
    for n, line in enumerate(lines, 1):
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
        objs.append((n, line, obj))
    return problems, objs


def authsvc_log_problems(main_log=None) -> list:
    """Every line of every AUTHSVC_LOG is a JSON object; every request line has a
    request id, unique per request.  main_log (the session's main server, if it ran)
    must exist, and the logs together hold at least 20 request lines when the run
    sent 20 or more requests to an authsvc through ApiClient (so the leak scan read
    real traffic; a run of a few files may make its credentials in SQL)."""
    logs = [p for p in _existing(LOG_FILES) if str(p).endswith(".log.jsonl")]
    problems = []
    total_request_lines = 0
    if main_log is not None and Path(main_log) not in logs:
        problems.append(f"main log {main_log} missing")
    for f in logs:
        bad, objs = _json_object_problems(f, f.read_text(errors="replace").splitlines())
        problems.extend(bad)
        ids = []
        request_lines = 0
        for n, line, obj in objs:
            if any(k in obj for k in REQUEST_KEYS):
                request_lines += 1
                rid = _request_id(obj)
                if rid is None:
                    problems.append(f"{f.name}:{n}: request line without a request id: {line[:200]}")
                else:
                    ids.append(str(rid))
        total_request_lines += request_lines
        dups = len(ids) - len(set(ids))
        if dups:
            problems.append(f"{f.name}: {dups} duplicate request ids (one line per request)")
    if main_log is not None and AUTHSVC_CALLS[0] >= 20 and total_request_lines < 20:
        problems.append(f"the authsvc logs have only {total_request_lines} request lines")
    return problems


def gateway_log_problems() -> list:
    """Every line of every GATEWAY_LOG is a JSON object, and no gateway stderr holds a
    sanitizer report (also those of gateways no fixture stopped)."""
    problems, reports = [], []
    for f in _existing(GATEWAY_LOG_FILES):
        if f.name.endswith(".log"):
            problems.extend(_json_object_problems(f, f.read_text(errors="replace").splitlines())[0])
        elif f.name.endswith(".stderr"):
            rep = sanitizer_report(f.read_text(errors="replace"))
            if rep:
                reports.append(f"{f}:\n{rep}")
    return problems[:20] + reports[:3]


def redis_key_problems(client) -> list:
    """No Redis key contains a raw session token of the run; every key has a namespace
    prefix (holds a ':')."""
    keys = [k.decode(errors="replace") for k in client.keys("*")]
    tokens = [v for v in list(SENSITIVE) if re.fullmatch(r"[A-Za-z0-9]{32}", v)]
    problems = []
    bad = [k for k in keys for t in tokens if t in k]
    if bad:
        problems.append(f"raw tokens in Redis keys: {bad[:5]}")
    problems.extend(f"Redis key without a namespace prefix: {k}" for k in keys if ":" not in k)
    return problems[:20]
