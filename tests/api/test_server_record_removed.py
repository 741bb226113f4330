"""A record file removed under a running server: no worker begins a new record in silence.

Operator audit: a worker of the server that started after ``rm records.sqlite3*`` (gunicorn restarts a
worker that died, or on SIGHUP) made a new empty file and answered 200, beginning another hash chain
while the removed record's answers were lost from view; the workers already running refused (503).
The real server (gunicorn, 2 workers), a worker killed after the removal and restarted by gunicorn.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request

from serverctl import children, server_log, start_server, stop_server, wait_for_workers  # tests/api is on sys.path

CASE = json.dumps({"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}})


def post(url: str) -> int:
    request = urllib.request.Request(url + "/v1/triage", data=CASE.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on ``port`` (each worker binds its own: SO_REUSEPORT)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:   # 0A: LISTEN
                inodes.add(fields[9])
    try:
        links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    return any(f"socket:[{inode}]" in links for inode in inodes)


def test_a_worker_started_after_the_record_was_removed_refuses_and_makes_no_new_file(tmp_path):
    record = tmp_path / "data" / "records.sqlite3"
    proc, url = start_server("--workers", "2", "--threads", "2", env={
        "MSCC_RECORD_PATH": str(record), "MSCC_CDS_STORE_PATH": str(tmp_path / "cds.sqlite3")})
    try:
        assert proc.poll() is None, server_log(proc)
        workers = wait_for_workers(proc.pid, 2)
        assert workers, server_log(proc)
        assert record.exists()   # settled by the master before the workers forked
        assert post(url) == 200
        for suffix in ("", "-wal", "-shm"):
            record.with_name(record.name + suffix).unlink(missing_ok=True)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20   # the killed worker gone (not only signalled), its successor up
        while time.monotonic() < deadline and not ((after := children(proc.pid)) and len(after) == 2
                                                   and victim not in after):
            time.sleep(0.05)
        assert len(after) == 2 and victim not in after, server_log(proc)
        port = int(url.rsplit(":", 1)[1])
        while time.monotonic() < deadline and not all(listening(pid, port) for pid in after):
            time.sleep(0.05)   # the new worker listens: requests reach it, not only the old one
        assert all(listening(pid, port) for pid in after), server_log(proc)
        # 2 workers, each with a socket of its own: 20 requests reach both, the new one among them
        answers = [post(url) for _ in range(20)]
        assert set(answers) == {503}, (answers, server_log(proc)[-3000:])
        assert not record.exists()   # no new chain begun behind the operator's back
    finally:
        stop_server(proc)
