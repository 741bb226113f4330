"""Start and stop the real server (``triage serve``: gunicorn) for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    triage_exe = ROOT / ".venv" / "bin" / "triage"
    command = [str(triage_exe) if triage_exe.exists() else "triage", "serve", "--port", str(port), *args]
    log = tempfile.TemporaryFile(mode="w+")
    records = tempfile.mkdtemp(prefix="mscc-test-records-")   # never the user's own record
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True,
                            env={**os.environ, "MSCC_RECORD_PATH": os.path.join(records, "records.sqlite3"),
                                 **(env or {})}, start_new_session=True)
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            return proc, url
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except urllib.error.HTTPError as err:
            err.close()
            return proc, url          # it answers (e.g. 503 "degraded" from /healthz): it is up
        except OSError:
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError("the server did not start in 20 s")


def server_log(proc: subprocess.Popen) -> str:
    proc.log.seek(0)  # type: ignore[attr-defined]
    return proc.log.read()  # type: ignore[attr-defined]


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    proc.log.close()  # type: ignore[attr-defined]


def children(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (gunicorn's workers, when ``pid`` is its master), from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_for_workers(master: int, count: int, seconds: float = 10) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        workers = children(master)
        if len(workers) == count:
            return workers
        time.sleep(0.05)
    return set()
