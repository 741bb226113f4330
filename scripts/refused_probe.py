#!/usr/bin/env python3
"""Probe: do refused requests (413, 431, 408, a malformed chunk size) kill workers or slow the service?

Starts the real server (``triage serve``, gunicorn with the buffering worker; 2 workers, 2 threads,
a 1 s request read timeout) unless ``--url`` names one already running on 127.0.0.1, then:

1. baseline: legitimate ``POST /v1/triage`` clients for ``--seconds``: requests/s;
2. attack: the same clients for the same time while the refused corpus is sent, ``--repeat`` of each
   kind, spread over the window (the 408 kind: ``--repeat`` slow connections opened at once).

It prints the answers of each kind, then ``N worker deaths, M 5xx`` (``0 worker deaths, 0 5xx`` when
all is well) and the legitimate requests/s without and during the attack. Exit status 0 when no
worker died, nothing answered 5xx and every refused request got its status; 1 otherwise.

Worker deaths: the gunicorn master's children are watched in /proc (pids seen minus pids at the
end; with ``--url`` the master is found by the listening port, or given by ``--master-pid``), and,
when this script started the server, its log is searched for crashed workers too.

Loopback only: any host other than 127.0.0.1 is refused. Bounded: ``--repeat`` (at most 1000) of
each kind and 2 x ``--seconds`` (at most 60) of legitimate traffic.

    .venv/bin/python scripts/refused_probe.py
    .venv/bin/python scripts/refused_probe.py --url http://127.0.0.1:8000 --read-timeout 10
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CASE = json.dumps({"patient": {"cancer": {"history": "current"}}, "presentation": {"weakness": {"present": True}}})
HEAD = b"POST /v1/triage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
CORPUS = {   # kind: (expected status, request)
    "413 body too large": (413, HEAD + b"Content-Length: 70000\r\n\r\n"),
    "431 headers too large": (431, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                              + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(10)) + b"\r\n"),
    "400 bad chunk size": (400, HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
}
SLOW = ("408 request timeout", 408, HEAD + b"Content-Length: 10\r\n\r\n{")


# ---------------------------------------------------------------------------------------- processes

def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def children(master: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = _stat(int(entry))
            except OSError:
                continue
            if int(fields[1]) == master and fields[0] != "Z":
                found.add(int(entry))
    return found


def master_of_port(port: int) -> int | None:
    """The gunicorn master listening on 127.0.0.1:port: the holder of the socket whose parent is not one."""
    inodes = set()
    try:
        with open("/proc/net/tcp") as f:
            for line in list(f)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:   # LISTEN
                    inodes.add(fields[9])
    except OSError:
        return None
    holders = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    holders.add(int(entry))
                    break
        except OSError:
            continue
    for pid in holders:
        try:
            if int(_stat(pid)[1]) not in holders:
                return pid
        except OSError:
            continue
    return None


class WorkerWatch(threading.Thread):
    """Every pid the master had as a child, polled every 50 ms."""

    def __init__(self, master: int):
        super().__init__(daemon=True)
        self.master = master
        self.seen: set[int] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.seen |= children(self.master)
            self.done.wait(0.05)

    def deaths(self) -> int:
        self.done.set()
        self.join()
        time.sleep(0.5)                      # a worker crashing on the last request: let it go
        final = children(self.master)
        self.seen |= final
        return len(self.seen - final)


# ---------------------------------------------------------------------------------------- traffic

def read_status(sock: socket.socket) -> int | str:
    data = b""
    try:
        while b"\r\n" not in data:
            part = sock.recv(4096)
            if not part:
                return "closed without an answer"
            data += part
    except ConnectionResetError:
        return "reset without an answer"
    except socket.timeout:
        return "no answer in time"
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else f"bad status line {data[:60]!r}"


def refused(port: int, data: bytes, timeout: float) -> int | str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(data)
            return read_status(s)
    except OSError as exc:
        return f"{type(exc).__name__}"


def legit_clients(port: int, clients: int, seconds: float) -> collections.Counter:
    """``clients`` threads posting a case over kept-alive connections for ``seconds``: answers counted."""
    answers: collections.Counter = collections.Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < end:
            try:
                conn.request("POST", "/v1/triage", body=CASE, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status: int | str = response.status
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
            with lock:
                answers[status] += 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def attack(port: int, repeat: int, seconds: float, attackers: int, read_timeout: float) -> dict[str, collections.Counter]:
    """The refused corpus, ``repeat`` of each kind, paced over ``seconds``; the slow kind at once."""
    results: dict[str, collections.Counter] = {kind: collections.Counter() for kind in [*CORPUS, SLOW[0]]}
    lock = threading.Lock()
    plan = [kind for _ in range(repeat) for kind in CORPUS]
    interval = seconds * 0.9 / len(plan)
    start = time.monotonic()
    index = iter(range(len(plan)))

    def attacker() -> None:
        for i in index:        # the iterator is shared: each request is sent once
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            kind = plan[i]
            answer = refused(port, CORPUS[kind][1], timeout=10)
            with lock:
                results[kind][answer] += 1

    def slow() -> None:
        sockets = []
        for _ in range(repeat):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout + 5)
                s.sendall(SLOW[2])
                sockets.append(s)
            except OSError as exc:
                results[SLOW[0]][type(exc).__name__] += 1
        for s in sockets:
            answer = read_status(s)
            s.close()
            with lock:
                results[SLOW[0]][answer] += 1

    threads = [threading.Thread(target=attacker) for _ in range(attackers)] + [threading.Thread(target=slow)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ---------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server on 127.0.0.1 (default: start one)")
    parser.add_argument("--master-pid", type=int, help="its gunicorn master (default: found by its port)")
    parser.add_argument("--read-timeout", type=float, default=1.0,
                        help="MSCC_REQUEST_READ_TIMEOUT: given to a started server; with --url, the server's")
    parser.add_argument("--repeat", type=int, default=200, help="requests of each refused kind (at most 1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each window, baseline and attack (at most 30)")
    parser.add_argument("--clients", type=int, default=4, help="legitimate client threads")
    parser.add_argument("--attackers", type=int, default=4, help="threads sending the refused corpus")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 1000 or not 0.5 <= args.seconds <= 30 or not 1 <= args.clients <= 32 \
            or not 1 <= args.attackers <= 32:
        parser.error("--repeat 1..1000, --seconds 0.5..30, --clients and --attackers 1..32")

    proc = None
    if args.url:
        parts = urlsplit(args.url)
        if parts.hostname != "127.0.0.1" or not parts.port:
            parser.error("--url must be http://127.0.0.1:PORT (loopback only)")
        port = parts.port
        master = args.master_pid or master_of_port(port)
    else:
        sys.path.insert(0, str(ROOT / "tests" / "api"))
        from serverctl import start_server  # the tests' own way of starting the real server

        proc, url = start_server("--workers", "2", "--threads", "2",
                                 env={"MSCC_REQUEST_READ_TIMEOUT": f"{args.read_timeout:g}", "MSCC_CDS_STORE_PATH": ""})
        if proc.poll() is not None:
            from serverctl import server_log
            print(server_log(proc), file=sys.stderr)
            print("the server did not start", file=sys.stderr)
            return 2
        port, master = int(url.rsplit(":", 1)[1]), proc.pid
    try:
        return probe(args, port, master, proc)
    finally:
        if proc is not None:
            from serverctl import stop_server
            stop_server(proc)


def probe(args: argparse.Namespace, port: int, master: int | None, proc) -> int:
    watch = WorkerWatch(master) if master else None
    if watch:
        time.sleep(0.5)
        watch.start()
        print(f"server 127.0.0.1:{port}, master pid {master}, workers {sorted(children(master))}")
    else:
        print(f"server 127.0.0.1:{port}; its master was not found: worker deaths are not counted", file=sys.stderr)

    baseline = legit_clients(port, args.clients, args.seconds)
    during: collections.Counter = collections.Counter()
    legit = threading.Thread(target=lambda: during.update(legit_clients(port, args.clients, args.seconds)))
    legit.start()
    results = attack(port, args.repeat, args.seconds, args.attackers, args.read_timeout)
    legit.join()

    deaths = watch.deaths() if watch else 0
    if proc is not None:
        from serverctl import server_log
        log = server_log(proc)
        deaths = max(deaths, log.count("exited with code"), log.count("Exception in worker process"))

    expected = {kind: status for kind, (status, _) in CORPUS.items()} | {SLOW[0]: SLOW[1]}
    unexpected = 0
    for kind, answers in results.items():
        wrong = sum(n for answer, n in answers.items() if answer != expected[kind])
        unexpected += wrong
        shown = ", ".join(f"{answer}: {n}" for answer, n in sorted(answers.items(), key=str))
        print(f"{kind:24} {shown}" + (f"  ({wrong} not {expected[kind]})" if wrong else ""))
    five = sum(n for answers in [*results.values(), baseline, during] for answer, n in answers.items()
               if isinstance(answer, int) and answer >= 500)
    print(f"{deaths if watch or proc else 'unknown'} worker deaths, {five} 5xx")
    base_ok, during_ok = baseline.get(200, 0), during.get(200, 0)
    print(f"legitimate POST /v1/triage, {args.clients} clients: {base_ok / args.seconds:.1f} req/s without attack, "
          f"{during_ok / args.seconds:.1f} req/s during it "
          f"({(during_ok / base_ok - 1) * 100 if base_ok else float('nan'):+.0f}%)")
    for name, answers in (("without attack", baseline), ("during attack", during)):
        other = {a: n for a, n in answers.items() if a != 200}
        if other:
            print(f"  legitimate answers other than 200 {name}: {other}")
    legit_failed = sum(n for answers in (baseline, during) for a, n in answers.items() if a != 200)
    return 0 if deaths == 0 and five == 0 and unexpected == 0 and legit_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
