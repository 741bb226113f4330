#!/usr/bin/env python3
"""Probe (issue 19): how many silent connections the server holds before a legitimate request waits.

Each gunicorn worker keeps at most ``worker_connections`` open connections (``MSCC_WORKER_CONNECTIONS``,
500) and stops accepting past it; a connection that sends nothing, or part of a request, holds its slot
until ``MSCC_REQUEST_READ_TIMEOUT`` (10 s) ends it. So the server holds ``worker_connections x workers``
(1,000 with 2 workers) such connections and still answers at once; past that, a new client waits in the
kernel's backlog until the read timeout frees slots.

Starts ``triage serve`` (2 workers, 2 threads, the default limits) unless ``--url`` names a running
one on 127.0.0.1; for each count, opens that many connections that send half a request line and
headers, then times ``--requests`` legitimate ``POST /v1/triage`` on new connections, then closes
them all. Loopback only; at most 3,000 connections.

    .venv/bin/python scripts/connection_limit_probe.py                # 0 500 900 980 1020 1100
    .venv/bin/python scripts/connection_limit_probe.py --counts 0 1500
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CASE = json.dumps({"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}})
PARTIAL = b"POST /v1/triage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def legit(port: int, timeout: float) -> float | str:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/triage", body=CASE, headers={"Content-Type": "application/json",
                                                               "Connection": "close"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            return f"status {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()
    return time.monotonic() - started


def trial(port: int, count: int, requests: int, timeout: float) -> str:
    held = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            held.append(sock)
        time.sleep(0.3)
        for sock in held:
            try:
                sock.send(PARTIAL)
            except OSError:
                pass               # still in the backlog (not accepted): it holds a backlog place only
        time.sleep(0.5)            # let the workers accept what they will
        times = [legit(port, timeout) for _ in range(requests)]
    finally:
        for sock in held:
            sock.close()
    time.sleep(1.5)                # the workers see the closes and free the slots
    waits = [t for t in times if isinstance(t, float)]
    failed = [t for t in times if not isinstance(t, float)]
    shown = f"median {sorted(waits)[len(waits) // 2] * 1000:8.1f} ms, max {max(waits) * 1000:8.1f} ms" if waits else ""
    return f"{count:5d} held connections: {len(waits)}/{requests} answered, {shown}" + (f"  failed: {failed}" if failed else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server on 127.0.0.1 (default: start one)")
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 500, 900, 980, 1020, 1100])
    parser.add_argument("--requests", type=int, default=5, help="legitimate requests timed at each count")
    parser.add_argument("--timeout", type=float, default=20.0, help="the legitimate client's timeout (s)")
    args = parser.parse_args(argv)
    if any(not 0 <= c <= 3000 for c in args.counts) or not 1 <= args.requests <= 50:
        parser.error("--counts 0..3000 each, --requests 1..50")
    proc = None
    if args.url:
        parts = urlsplit(args.url)
        if parts.hostname != "127.0.0.1" or not parts.port:
            parser.error("--url must be http://127.0.0.1:PORT (loopback only)")
        port = parts.port
    else:
        sys.path.insert(0, str(ROOT / "tests" / "api"))
        from serverctl import server_log, start_server

        proc, url = start_server("--workers", "2", "--threads", "2", env={"MSCC_CDS_STORE_PATH": ""})
        if proc.poll() is not None:
            print(server_log(proc), file=sys.stderr)
            return 2
        port = int(url.rsplit(":", 1)[1])
        print(f"server 127.0.0.1:{port}: 2 workers x 2 threads, worker_connections 500 (default), "
              "read timeout 10 s (default)")
    try:
        for count in args.counts:
            print(trial(port, count, args.requests, args.timeout), flush=True)
    finally:
        if proc is not None:
            from serverctl import stop_server

            stop_server(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
