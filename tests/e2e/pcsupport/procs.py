"""Processes, ports and waits for the e2e suite and the benchmarks (no pytest here).

Every process started through Proc is registered; an atexit hook (kill_all) kills
whatever is still running, children get SIGKILL if the Python process dies
(PR_SET_PDEATHSIG), and each child runs in its own process group so that its
descendants (PostgreSQL backends) are killed with it.  Every wait is bounded.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

_LIVE: set = set()
_LIVE_LOCK = threading.Lock()


def _register(proc) -> None:
    with _LIVE_LOCK:
        _LIVE.add(proc)


def _unregister(proc) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(proc)


@atexit.register
def kill_all() -> None:
    """Kill every process this module started and that is still running."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def build_dir() -> Path:
    return Path(os.environ.get("PORTCULLIS_BUILD", str(REPO / "build")))


def binary(name: str) -> Path:
    return build_dir() / name


_HANDED_OUT: set = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same twice per run)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port")


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll pred() until it returns a truthy value or timeout passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def wait_port(port: int, timeout: float = 10.0, proc=None, what="port"):
    """Until something accepts on 127.0.0.1:port; fails at once if proc exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: nothing listens on 127.0.0.1:{port} after {timeout}s")
        time.sleep(0.02)


def tail(path, n: int = 4000) -> str:
    """The last n bytes of a file as text ('' when it cannot be read)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Child processes

_libc = None


def _preexec_pdeathsig():
    """In the child: die with SIGKILL when the parent (this Python) dies."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Proc:
    """A child process in its own process group, stopped by PID with bounded waits."""

    def __init__(self, argv, *, env=None, cwd=None, stdout=None, stderr=None,
                 user=None, group=None, name=None):
        self.name = name or Path(argv[0]).name
        self.argv = [str(a) for a in argv]
        kw = {}
        if user is not None:
            kw["user"] = user
            kw["group"] = group
            kw["extra_groups"] = []
        self._out = open(stdout, "ab") if stdout else subprocess.DEVNULL
        self._err = open(stderr, "ab") if stderr else subprocess.DEVNULL
        self.stdout_path, self.stderr_path = stdout, stderr
        try:
            self.popen = subprocess.Popen(
                self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=self._out, stderr=self._err, start_new_session=True,
                preexec_fn=_preexec_pdeathsig, close_fds=True, **kw)
        except Exception:
            self._close_files()
            raise
        self.pid = self.popen.pid
        self.forced = False         # True when stop() had to escalate to SIGKILL
        _register(self)

    def _close_files(self):
        for f in (self._out, self._err):
            if hasattr(f, "close"):
                try:
                    f.close()
                except OSError:
                    pass

    def poll(self):
        rc = self.popen.poll()
        if rc is not None:
            self._reap_group()
        return rc

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.returncode

    def send_signal(self, sig) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _reap_group(self):
        # The group id is our child's pid; kill any leftover descendants.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float):
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return rc

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0):
        """Send sig, wait up to timeout, then SIGKILL (bounded).  Returns the exit code."""
        rc = self.popen.poll()
        if rc is None:
            self.send_signal(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.forced = True
                self.send_signal(signal.SIGKILL)
                rc = self.wait(10.0)
        self._reap_group()
        self._close_files()
        _unregister(self)
        return rc

    def kill(self):
        """SIGKILL the process and its whole group (bounded)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.send_signal(signal.SIGKILL)
            self.wait(10.0)
        self._reap_group()
        self._close_files()
        _unregister(self)
        return self.popen.returncode


def run_bounded(argv, *, env=None, timeout: float = 60.0, user=None, group=None, cwd=None,
                input_bytes=None):
    """Run a command to completion with a hard time bound; returns CompletedProcess.

    On timeout the whole process group is killed and subprocess.TimeoutExpired
    is raised (with whatever output was captured)."""
    kw = {}
    if user is not None:
        kw.update(user=user, group=group, extra_groups=[])
    p = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd,
                         stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, preexec_fn=_preexec_pdeathsig, **kw)
    try:
        out, err = p.communicate(input=input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate(timeout=10)
        raise subprocess.TimeoutExpired(p.args, timeout, output=out, stderr=err)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)
