"""A real PostgreSQL server for the decision-record tests: Debian's binaries, a temporary cluster.

Nothing is installed at test time (``./dev test`` installs Debian's ``postgresql``). The fixture runs
``initdb`` into a temporary folder and ``pg_ctl`` on a free local port (TCP on 127.0.0.1 only, trust
authentication for the one local user ``mscc``), and stops the server afterwards; a watchdog process
stops it and removes its folder if the test process dies without doing so (killed with SIGKILL, say:
a superseded CI run used to leave its server running). PostgreSQL refuses
to run as root: as root the binaries run as the ``postgres`` system user (or ``nobody``) via ``runuser``.

Other test modules import the fixtures: ``from test_record_pgserver import pg_server, pg_dsn``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

import pytest


def _bin_dir() -> Optional[Path]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Stops the cluster and removes its folder once the process that started it is gone (its pid, then
# the folder, then the stop command).
_WATCHDOG = r"""
import os, shutil, subprocess, sys, time
parent, folder, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(0.5)
subprocess.run(stop, capture_output=True, timeout=60)
shutil.rmtree(folder, ignore_errors=True)
"""


class PgServer:
    """One temporary PostgreSQL cluster; ``database()`` gives a fresh database's DSN."""

    def __init__(self) -> None:
        bindir = _bin_dir()
        if bindir is None or not (bindir / "initdb").exists():
            pytest.fail("PostgreSQL server binaries not found: install Debian's 'postgresql' "
                        "(./dev test does it); these tests use a real server, never a mock")
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="mscc-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user = "mscc"
        self.run_as: Optional[str] = None
        if os.geteuid() == 0:
            self.run_as = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-locale",
                  "--no-sync")
        self.start()
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.folder),
             *self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bindir / tool), *args]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._command(tool, *args), capture_output=True, text=True, timeout=60, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        return done

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "30",
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database} connect_timeout=3"

    def database(self) -> str:
        """A new, empty database; its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def execute(self, dsn: str, sql: str) -> None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass   # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh database on the shared server, for one test."""
    return pg_server.database()


def test_the_fixture_runs_a_real_postgresql(pg_dsn):
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    assert int(version.split(".")[0]) >= 13


def test_a_server_left_by_a_killed_test_process_is_stopped_and_removed():
    """A test process killed with SIGKILL runs no fixture teardown: the watchdog stops its server and
    removes its folder."""
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from test_record_pgserver import PgServer; "
            "s = PgServer(); print(s.port, s.folder, flush=True); os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                          timeout=120)
    port, folder = done.stdout.split()
    assert done.returncode == -9, done.stderr
    for _ in range(120):
        with socket.socket() as probe:
            listening = probe.connect_ex(("127.0.0.1", int(port))) == 0
        if not listening and not Path(folder).exists():
            break
        time.sleep(0.25)
    assert not listening, "the server of the killed process is still listening"
    assert not Path(folder).exists(), "its folder is still there"
