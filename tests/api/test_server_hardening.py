"""The real server (``triage serve``: gunicorn with the buffering worker) under slow and hostile clients.

All traffic goes to 127.0.0.1, bounded in count (16 slow connections) and time (a few seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from serverctl import server_log, start_server, stop_server  # tests/api is on sys.path

SLOW_CONNECTIONS = 16
CASE = json.dumps({"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}})


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """2 workers x 2 threads: 4 threads in all, far fewer than the slow connections; 2 s to send a request."""
    folder = tmp_path_factory.mktemp("instance")
    proc, url = start_server("--workers", "2", "--threads", "2", env={
        "MSCC_REQUEST_READ_TIMEOUT": "2", "MSCC_CDS_STORE_PATH": str(folder / "cds.sqlite3")})
    assert proc.poll() is None, server_log(proc)
    yield proc, url
    stop_server(proc)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        answer = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            answer += part
    return answer


def post_case(url: str) -> int:
    request = urllib.request.Request(url + "/v1/triage", data=CASE.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=2) as response:
        response.read()
        return response.status


def test_slow_clients_do_not_stall_normal_requests(small_server):
    _, url = small_server
    port = port_of(url)
    stop = threading.Event()
    opened = []

    def trickle(kind: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            opened.append(1)
            if kind == 0:     # a body, one byte every 0.2 s
                s.sendall(b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{")
                trickled = b" "
            else:             # the headers themselves
                s.sendall(b"POST /v1/triage HTTP/1.1\r\nHost: x\r\n")
                trickled = b"X"
            try:
                while not stop.wait(0.2):
                    s.sendall(trickled)
            except OSError:
                pass           # answered 408 and closed

    threads = [threading.Thread(target=trickle, args=(i % 2,), daemon=True) for i in range(SLOW_CONNECTIONS)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    answered, started = [], time.monotonic()
    while time.monotonic() - started < 3:
        answered.append(post_case(url))          # 2 s client timeout: a stall fails the test
    stop.set()
    for t in threads:
        t.join(timeout=5)
    assert len(opened) == SLOW_CONNECTIONS
    assert set(answered) == {200} and len(answered) >= 50, len(answered)


def test_a_request_not_complete_in_time_gets_a_408_problem(small_server):
    _, url = small_server
    started = time.monotonic()
    answer = raw_exchange(port_of(url), b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
    assert answer.startswith(b"HTTP/1.1 408 ") and b"application/problem+json" in answer
    assert 1.5 < time.monotonic() - started < 5


def test_a_bare_lf_or_a_missing_host_is_a_400_at_once(small_server):
    """Audit of 5 December: a request whose lines end in a bare LF waited for the 2 s read timeout and
    got a 408; an HTTP/1.1 request without Host was answered 200 (RFC 9112, 3.2: a 400)."""
    _, url = small_server
    for data, why in ((b"GET /healthz HTTP/1.1\nHost: x\n\n", b"bare LF"),
                      (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", b"Host header field")):
        started = time.monotonic()
        answer = raw_exchange(port_of(url), data)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and b"application/problem+json" in head, answer
        assert why in body and json.loads(body)["status"] == 400
        assert time.monotonic() - started < 1.5     # not the read timeout (2 s here)
    coded = (b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    head, _, body = raw_exchange(port_of(url), coded).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 ") and b"gzip" in body, head   # it used to be triaged, undecoded
    answer = raw_exchange(port_of(url), b"GET /healthz HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200 ") or answer.startswith(b"HTTP/1.1 200 "), answer


def test_a_chunked_body_over_the_limit_is_413(small_server):
    _, url = small_server
    head = b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = CASE[:-1].encode() + b" " * 70_000 + b"}"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192]) for i in range(0, len(body), 8192))
    answer = raw_exchange(port_of(url), head + chunks + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"status": 413' in answer
    small = CASE.encode()
    answer = raw_exchange(port_of(url), head.replace(b"Host: x", b"Host: x\r\nConnection: close")
                          + b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small))
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_an_oversized_token_gets_a_431_problem_not_html(small_server):
    _, url = small_server
    answer = raw_exchange(port_of(url), b"POST /cds-services/mscc-triage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                          + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"application/problem+json" in head
    # answered by the worker before the app, with the app's security headers all the same (audit of 5 December)
    for header in (b"Content-Security-Policy: default-src 'self'; frame-ancestors 'none'", b"Referrer-Policy: no-referrer",
                   b"X-Content-Type-Options: nosniff", b"X-Frame-Options: DENY"):
        assert header in head, head
    assert json.loads(body)["status"] == 431 and b"<html" not in answer


def test_a_malformed_request_line_is_logged_without_its_text(small_server):
    """Audit of 5 December: gunicorn's "Invalid request" warning quoted the request line, so a name or a
    record number typed into a URL reached the log. The warning now names the kind of error only."""
    proc, url = small_server
    for data in (b"GET /?patient=John Smith MRN-998877 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\nX-Patient MRN-554433: 1\r\nConnection: close\r\n\r\n"):
        assert raw_exchange(port_of(url), data).startswith(b"HTTP/1.1 400 ")
    time.sleep(0.3)
    log = server_log(proc)
    warnings = [line for line in log.splitlines() if "Invalid request from ip=" in line]
    assert len(warnings) >= 2, log
    assert all("(the request's text is not logged)" in line for line in warnings), warnings
    assert "MRN-998877" not in log and "Smith" not in log and "MRN-554433" not in log
    assert post_case(url) == 200    # the worker goes on


def test_security_headers_and_app_error_logs_with_time_and_pid(small_server, tmp_path):
    proc, url = small_server
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    # make the app log an error: a store that cannot be opened (a second server, its own store)
    (tmp_path / "file").write_text("")
    broken, broken_url = start_server("--workers", "1", env={"MSCC_CDS_STORE_PATH": str(tmp_path / "file" / "x")})
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(broken_url + "/healthz", timeout=5)
        assert err.value.code == 503
        err.value.close()
        time.sleep(0.3)
        line = next(entry for entry in server_log(broken).splitlines() if "mscc_triage.api:" in entry)
        assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[ERROR\] mscc_triage\.api: CDS store ",
                        line), line
    finally:
        stop_server(broken)


def test_two_servers_on_one_host_have_their_own_store_and_control_socket():
    runtime = tempfile.mkdtemp(prefix="rt-", dir="/tmp")   # short: a unix socket path has at most 107 bytes
    env = {"MSCC_CDS_STORE_PATH": "", "MSCC_CONTROL_SOCKET": "", "XDG_RUNTIME_DIR": runtime}
    first, first_url = start_server("--workers", "1", env=env)
    second, second_url = start_server("--workers", "1", env=env)
    try:
        assert first.poll() is None and second.poll() is None
        for url in (first_url, second_url):
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                assert json.loads(response.read())["status"] == "ok"
        folder = os.path.join(runtime, "mscc-triage")
        expected = {f"{kind}-127.0.0.1-{port_of(url)}.{ext}" for url in (first_url, second_url)
                    for kind, ext in (("gunicorn", "ctl"), ("cds", "sqlite3"))}
        deadline = time.monotonic() + 5
        while not expected <= set(os.listdir(folder)) and time.monotonic() < deadline:
            time.sleep(0.1)       # gunicorn opens its control socket once the workers run
        assert expected <= set(os.listdir(folder))
        assert oct(os.stat(folder).st_mode & 0o777) == "0o700"
    finally:
        stop_server(first)
        stop_server(second)
        shutil.rmtree(runtime, ignore_errors=True)
