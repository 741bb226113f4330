"""Requests the server refuses cost no worker process (issue 19, "Hold under attack").

The buffering worker answers 413 (a declared body over the limit), 431 (a header section over the
limit) and 408 (a request not complete in time) itself, from its event loop; a malformed chunk size
reaches the app and is a 400 problem. Each kind is sent 200 times to the real server (gunicorn, 2
workers) and must be answered with its status and a problem document, the connection closed after
it, and no worker may die (their pids stay the same). A legitimate triage request is answered after.

All traffic goes to 127.0.0.1; bounded in count (200 of each kind) and time (a few seconds).
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from serverctl import children, server_log, start_server, stop_server, wait_for_workers  # tests/api is on sys.path

REPEAT = 200
READ_TIMEOUT = 1          # MSCC_REQUEST_READ_TIMEOUT of the server under test: 408 after ~1-2 s
CASE = json.dumps({"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}})
HEAD = b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

CORPUS = {
    # a declared body over the 64 KiB limit, and no body at all
    "413": (413, HEAD + b"Content-Length: 70000\r\n\r\n"),
    # about 40 kB of header fields, each under gunicorn's 8 kB field limit: over the 32 KiB section limit
    "431": (431, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(10)) + b"\r\n"),
    # a chunk size that is not hexadecimal (gunicorn's InvalidChunkSize, raised while the app reads)
    "chunk": (400, HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
    # a body that never arrives in full: 408 after the read timeout
    "408": (408, HEAD + b"Content-Length: 10\r\n\r\n{"),
}


@pytest.fixture(scope="module")
def refusing_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("instance")
    proc, url = start_server("--workers", "2", "--threads", "2", env={
        "MSCC_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT), "MSCC_CDS_STORE_PATH": str(folder / "cds.sqlite3")})
    try:
        assert proc.poll() is None, server_log(proc)
        assert wait_for_workers(proc.pid, 2), server_log(proc)
        yield proc, url, int(url.rsplit(":", 1)[1])
    finally:
        stop_server(proc)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """One response: status, headers, body (by Content-Length), and whether the server closed after it.

    A reset after a complete answer counts as closed; a reset or end before the status line is an error.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            raise AssertionError(f"the connection closed before a complete answer: {data[:200]!r}")
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            raise AssertionError("the connection closed in the middle of the answer")
        body += part
    closed = False
    try:
        closed = sock.recv(1) == b""      # the server closes after a refused request: EOF at once
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    return int(status), headers, body, closed


def refused_exchange(port: int, data: bytes, expected: int) -> str:
    """Send one refused request; an empty string when answered as expected, else what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 5) as s:
            s.sendall(data)
            status, headers, body, closed = read_answer(s)
    except (OSError, AssertionError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return check_answer(expected, status, headers, body, closed)


def check_answer(expected: int, status: int, headers: dict[str, str], body: bytes, closed: bool) -> str:
    if status != expected:
        return f"status {status}, expected {expected}: {body[:200]!r}"
    if headers.get("content-type") != "application/problem+json":
        return f"content type {headers.get('content-type')}"
    document = json.loads(body)
    if document.get("status") != expected or not document.get("title"):
        return f"not a problem document for {expected}: {document}"
    if not closed:
        return "the connection was not closed after the answer"
    return ""


def post_case(url: str) -> int:
    request = urllib.request.Request(url + "/v1/triage", data=CASE.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
        return response.status


def assert_no_worker_died(proc, workers_before: set[int]) -> None:
    time.sleep(0.3)              # a worker that crashed on the last request: give the master time to see it
    log = server_log(proc)
    assert "Exception in worker process" not in log and "exited with code" not in log, log[-3000:]
    assert log.count("Booting worker") == 2, log[-3000:]
    assert children(proc.pid) == workers_before, log[-3000:]


@pytest.mark.parametrize("kind", ["413", "431", "chunk"])
def test_each_refused_request_is_answered_and_no_worker_dies(refusing_server, kind):
    proc, url, port = refusing_server
    workers = children(proc.pid)
    assert len(workers) == 2
    expected, data = CORPUS[kind]
    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = [f for f in pool.map(lambda _: refused_exchange(port, data, expected), range(REPEAT)) if f]
    assert failures == [], f"{len(failures)} of {REPEAT}: {failures[:5]}"
    assert_no_worker_died(proc, workers)
    assert post_case(url) == 200


def test_requests_not_complete_in_time_are_408_and_no_worker_dies(refusing_server):
    proc, url, port = refusing_server
    workers = children(proc.pid)
    expected, data = CORPUS["408"]
    sockets = []
    try:
        for _ in range(REPEAT):                 # all 200 at once: one read timeout for all of them
            s = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT + 5)
            sockets.append(s)
            s.sendall(data)
        assert post_case(url) == 200            # the slow ones hold no thread
        failures = []
        for s in sockets:
            try:
                failure = check_answer(expected, *read_answer(s))
            except (OSError, AssertionError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if failure:
                failures.append(failure)
    finally:
        for s in sockets:
            s.close()
    assert failures == [], f"{len(failures)} of {REPEAT}: {failures[:5]}"
    assert_no_worker_died(proc, workers)
    assert post_case(url) == 200


def test_a_refused_request_on_a_kept_alive_connection_costs_no_worker(refusing_server):
    """The 413/431 after a first request on the same connection (kept alive, or pipelined behind it)."""
    proc, url, port = refusing_server
    workers = children(proc.pid)
    failures = []
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for i in range(REPEAT):
        expected, data = CORPUS["413" if i % 2 else "431"]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                if i % 4 < 2:                   # kept alive: the first answer read, then the refused request
                    s.sendall(healthz)
                    first = read_answer_open(s)
                    s.sendall(data)
                else:                           # pipelined: both requests in one send
                    s.sendall(healthz + data)
                    first = read_answer_open(s)
                assert first == 200, first
                failure = check_answer(expected, *read_answer(s))
        except (OSError, AssertionError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if failure:
            failures.append(failure)
    assert failures == [], f"{len(failures)} of {REPEAT}: {failures[:5]}"
    assert_no_worker_died(proc, workers)
    assert post_case(url) == 200


def read_answer_open(sock: socket.socket) -> int:
    """The status of a kept-alive answer, read exactly to its end (the connection stays open)."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(1)                      # byte by byte: nothing of the next answer is read
        if not part:
            raise AssertionError("closed before the first answer")
        data += part
    head = data.decode("latin-1")
    length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:"))
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return int(head.split(" ", 2)[1])
