"""Issue 26: new connections are spread over the worker processes, not taken by one of them.

The real server (``triage serve``, 2 workers) with an access log of one line per request holding
the pid of the worker that served it. Many connections are opened at once, as a load generator
does (wrk opens all its keep-alive connections first), each then sends one request (and keeps its
socket open until it has read the answer); each worker must have served a fair part of them. Each worker listens on a socket of its own (SO_REUSEPORT):
the kernel picks one by a hash of the connection's addresses, so each of the 64 connections goes
to either worker with probability 1/2, and a worker gets fewer than 12 of them about once in ten
million runs. No timing is asserted.
"""

from __future__ import annotations

import collections
import socket
import time

from serverctl import server_log, start_server, stop_server

CONNECTIONS = 64
REQUEST = b"GET /healthz?balance HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _pids(log_path) -> list[str]:
    """The pid of the worker of each request of this test (start_server's health checks left out)."""
    return [line.split()[0] for line in log_path.read_text().splitlines() if line.strip().endswith(" balance")]


def _read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _wait_for_both_workers(port: int, access_log) -> None:
    """Short requests (marked ``warm``) until two worker pids have answered, or 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(REQUEST.replace(b"?balance", b"?warm"))
            _read_to_close(sock)
        time.sleep(0.02)
        lines = access_log.read_text().splitlines()
        if len({line.split()[0] for line in lines if line.strip().endswith(" warm")}) == 2:
            return
    raise AssertionError("the second worker never answered")


def test_connections_opened_at_once_are_spread_over_the_workers(tmp_path):
    access_log = tmp_path / "access.log"
    access_log.touch()
    proc, url = start_server("--workers", "2", "--threads", "2", env={
        "GUNICORN_CMD_ARGS": f"--access-logfile {access_log} --access-logformat '%(p)s %(q)s'"})
    try:
        assert proc.poll() is None, server_log(proc)
        port = int(url.rsplit(":", 1)[1])
        _wait_for_both_workers(port, access_log)   # a worker still booting would leave all to the other
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(CONNECTIONS)]
        try:
            for client in clients:
                client.sendall(REQUEST)
            answers = [_read_to_close(client) for client in clients]
        finally:
            for client in clients:
                client.close()
        assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), answers
        deadline = time.monotonic() + 10      # each line is written once its response is sent
        while len(_pids(access_log)) < CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.05)
        served = collections.Counter(_pids(access_log))
        log = server_log(proc)
    finally:
        stop_server(proc)
    assert sum(served.values()) == CONNECTIONS, (served, log)
    assert len(served) == 2, f"one worker served every connection: {dict(served)}"
    assert min(served.values()) >= 12, f"the connections were not spread over the workers: {dict(served)}"


def test_a_closing_connection_does_not_hold_up_the_others():
    """Answers with "Connection: close" to clients that keep their socket open after reading.

    The worker closes such a connection gracefully (its side shut, the client's last bytes read)
    while serving the others: gthread did that in its event loop, blocking it up to 2 s a
    connection, so 24 of these clients on one worker took 48 s to be answered, past the 30 s
    the clients (and gunicorn's worker timeout) allow.
    """
    proc, url = start_server("--workers", "1", "--threads", "2")
    try:
        assert proc.poll() is None, server_log(proc)
        port = int(url.rsplit(":", 1)[1])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(24)]
        try:
            for client in clients:
                client.sendall(REQUEST)
            answers = [_read_to_close(client) for client in clients]   # each socket stays open meanwhile
        finally:
            for client in clients:
                client.close()
        log = server_log(proc)
    finally:
        stop_server(proc)
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), answers
    assert "WORKER TIMEOUT" not in log, log
