#!/usr/bin/env python3
"""Probe (issue 19): the whole malformed corpus against a real server; prints worker deaths and 5xx.

Starts ``triage serve`` from the installed package (gunicorn, the buffering worker, 2 workers x 2
threads, development mode for CDS Hooks so that calls reach the record mapping, and a local FHIR
server on the allow-list so that calls fetch), and a second one trusting a CDS Hooks issuer for the
JWT corpus. Then it sends, over raw sockets (any byte can be sent), on loopback only:

- the refused kinds of ``refused_probe.py`` (413, 431, a bad chunk size; ``--repeat`` of each) and
  the slow one (408);
- JSON API cases, CDS Hooks calls and feedback whose every string leaf, in turn, is a lone surrogate
  (as a JSON escape), non-Latin-1 text or a huge integer, and whose every number is 10**400 or a
  4,301-digit literal; a CDS call that fetches, with a hostile ``fhirServer``, context and
  ``fhirAuthorization``; malformed JSON (truncated, duplicate keys, NaN, 100 deep, not UTF-8);
- every form field with a lone surrogate, invalid UTF-8, non-Latin-1 text, NUL, 4,301 digits, 1e400;
- malformed chunked bodies (14 kinds, ``chunked`` and ``gzip, chunked``) to every POST endpoint, and
  non-Latin-1 bytes in the request line and headers;
- JWTs with non-ASCII, lone surrogates, huge ``exp``/``iat`` and odd types.

It prints the answers of each group, then ``N worker deaths, M 5xx``. An unknown transfer coding
(``Transfer-Encoding: xchunked``) is answered by gunicorn with 501 Not Implemented, as RFC 9112
section 6.1 asks; those are counted and printed on their own line, not among the 5xx. Exit 0 when no
worker died and nothing else answered 5xx (or closed without an answer); 1 otherwise.

    .venv/bin/python scripts/malformed_probe.py            # about 30 s on 2 cores
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import importlib.util
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "api"))

import refused_probe as refused  # noqa: E402  (the refused kinds, the worker watch)
import record_shapes_probe as shapes  # noqa: E402  (a full prefetch of real FHIR resources)

SERVICE = "/cds-services/mscc-triage"
FEEDBACK = SERVICE + "/feedback"
BIG = "@4301-digits@"
LONE, WIDE = "\ud800", "€ü中\u2028"
JSON_CT, FORM_CT = b"application/json", b"application/x-www-form-urlencoded"
UNKNOWN_CODING = "unknown transfer coding"


def _localfhir():
    spec = importlib.util.spec_from_file_location("localfhir", ROOT / "tests" / "api" / "fhir" / "localfhir.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["localfhir"] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------- the corpus

def dumps(value: Any) -> bytes:
    return json.dumps(value).replace(json.dumps(BIG), "9" * 4301).encode("ascii")


def leaves(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))
    else:
        yield path, node


def replaced(root: Any, path: tuple, value: Any) -> Any:
    out = copy.deepcopy(root)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def hostile(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [LONE, WIDE, 10 ** 400]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [10 ** 400, BIG]
    return [LONE, 10 ** 400]


def post(path: str, body: bytes, ctype: bytes = JSON_CT, extra: bytes = b"") -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: "
            + ctype + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def sweep(path: str, template: dict[str, Any], fresh_hook: bool = False) -> Iterator[bytes]:
    for place, value in leaves(template):
        for bad in hostile(value):
            body = replaced(template, place, bad)
            if fresh_hook and place != ("hookInstance",):
                body["hookInstance"] = str(uuid.uuid4())
            yield post(path, dumps(body))


MALFORMED_JSON = [b"{", b'{"a": 1, "a": 2}', b'{"patient": NaN}', b"[" * 100 + b"]" * 100, b"\xff\xfe{}",
                  b'{"patient": "\\ud800"', b"", b"null", b'"\\udfff"', b"1" * 5000]
CHUNKED = {
    "size not hex": b"zz\r\n{}\r\n0\r\n\r\n", "negative size": b"-2\r\n{}\r\n0\r\n\r\n",
    "0x prefix": b"0x2\r\n{}\r\n0\r\n\r\n", "plus sign": b"+2\r\n{}\r\n0\r\n\r\n",
    "size with a space": b"2 \r\n{}\r\n0\r\n\r\n", "full-width digit": "２\r\n{}\r\n0\r\n\r\n".encode(),
    "NUL in the size": b"2\x00\r\n{}\r\n0\r\n\r\n", "20-digit size": b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "chunk without CRLF": b"2\r\n{}XX0\r\n\r\n", "chunk shorter than its size": b"5\r\n{}\r\n0\r\n\r\n",
    "malformed trailer": b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n",
    "oversized trailer": b"2\r\n{}\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 1000) for i in range(60)) + b"\r\n",
    "long chunk extension": b"2;" + b"e" * 5000 + b"\r\n{}\r\n0\r\n\r\n",
    "surrogate in a chunk": b"15\r\n" + b'{"case_id": "\\ud800"}' + b"\r\n0\r\n\r\n",
}
ENDPOINTS = {"/v1/triage": JSON_CT, SERVICE: JSON_CT, FEEDBACK: JSON_CT, "/": FORM_CT, "/fr/": FORM_CT,
             "/new": FORM_CT}
HEAD_BYTES = [b"\xff\xfe", "€中".encode(), b"\xed\xa0\x80", b"%ED%A0%80", b"%00"]
FORM_VALUES = [b"%ED%A0%80", b"%FF%FE", b"%E2%82%AC%E4%B8%AD", b"%00", b"9" * 4301, b"1e400", b"9" * 400 + b".5"]


def corpus(fhir_base: str, token: str) -> dict[str, list[bytes]]:
    """Every malformed request, by group."""
    from triage._case import FIELDS

    groups: dict[str, list[bytes]] = collections.defaultdict(list)
    case = json.loads((ROOT / "examples" / "emergency.json").read_text())
    case["case_id"] = "c-1"
    groups["JSON API, every field"] += sweep("/v1/triage", case)
    groups["JSON API, every field"] += [post("/v1/triage", dumps(replaced(case, p, v)), extra=b"Accept: application/fhir+json\r\n")
                                         for p, value in leaves(case) for v in hostile(value)]
    prefetch = shapes.good_prefetch()
    call = {"hook": "patient-view", "hookInstance": "h", "context": {"userId": "Practitioner/1",
                                                                     "patientId": prefetch["patient"]["id"]},
            "prefetch": prefetch}
    groups["CDS Hooks prefetch, every field"] += sweep(SERVICE, call, fresh_hook=True)
    fetching = copy.deepcopy(call)
    del fetching["prefetch"]["observations"]
    fetching.update(fhirServer=fhir_base, fhirAuthorization={"access_token": token, "token_type": "Bearer",
                                                             "expires_in": 300, "scope": "patient/*.read"})
    fetching["prefetch"] = {"patient": prefetch["patient"], "conditions": prefetch["conditions"]}
    groups["CDS Hooks call that fetches"] += sweep(SERVICE, fetching, fresh_hook=True)
    item = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-27T07:00:00Z",
            "overrideReason": {"reason": {"code": "x", "system": "http://example.org", "display": "d"},
                               "userComment": "u"}, "acceptedSuggestions": [{"id": "s1"}]}
    groups["CDS Hooks feedback"] += sweep(FEEDBACK, {"feedback": [{"card": "c0", "outcome": "accepted"}, item]})
    for path in ("/v1/triage", SERVICE, FEEDBACK):
        groups["malformed JSON"] += [post(path, body) for body in MALFORMED_JSON]
    for url in ("/", "/fr/"):
        groups["form, every field"] += [post(url, quote(field).encode() + b"=" + raw + b"&_triaged=1", FORM_CT)
                                        for field in FIELDS for raw in FORM_VALUES]
        groups["form, every field"] += [b"GET " + url.encode() + b"?from=" + raw + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n" for raw in FORM_VALUES]
    for path, ctype in ENDPOINTS.items():
        for body in CHUNKED.values():
            for coding in (b"chunked", b"gzip, chunked"):
                groups["malformed chunking"].append(
                    b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: " + ctype
                    + b"\r\nTransfer-Encoding: " + coding + b"\r\n\r\n" + body)
        groups[UNKNOWN_CODING].append(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                      b"Content-Type: " + ctype + b"\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        for odd in HEAD_BYTES:
            groups["bytes in the request head"] += [
                b"POST " + path.encode() + odd + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                post(path, b"{}", ctype, b"X-Odd: " + odd + b"\r\n"),
                post(path, b"{}", ctype, b"Authorization: Bearer " + odd + b"\r\n"),
                post(path, b"{}", ctype + b"; charset=" + odd),
                b"POST " + path.encode() + b"?" + odd + b"=" + odd + b" HTTP/1.1\r\nHost: " + odd
                + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]
    return groups


def jwt_corpus() -> list[bytes]:
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    headers = [b'{"alg":"ES256","kid":"k1"}', b'{"alg":"ES256"}', b'{"alg":"ES256","kid":"\\ud800"}',
               b'{"alg":"ES256","kid":1e400}', b'{"alg":"ES256","jku":"\\ud800"}', b'{"alg":["ES256"]}',
               b'{"alg":"ES256","kid":"\xe2\x82\xac"}']
    claims = [b'{"iss":"https://ehr.example.org"}', b'{"iss":"\\ud800"}', b'{"iss":["x"]}',
              b'{"iss":"https://ehr.example.org","exp":1' + b"0" * 400 + b"}",
              b'{"iss":"https://ehr.example.org","exp":' + b"9" * 4301 + b"}",
              b'{"iss":"https://ehr.example.org","iat":-1' + b"0" * 400 + b',"exp":1}',
              b'{"iss":"https://ehr.example.org","exp":"soon","jti":"\\ud800","aud":"\\udfff"}']
    out = []
    for header in headers:
        for claim in claims:
            token = b64(header) + b"." + b64(claim) + b"." + b64(b"signature")
            for path in (SERVICE, FEEDBACK):
                out.append(post(path, b"{}", JSON_CT, b"Authorization: Bearer " + token + b"\r\n"))
    for odd in HEAD_BYTES:
        out.append(post(SERVICE, b"{}", JSON_CT, b"Authorization: Bearer " + odd + b"." + odd + b"." + odd + b"\r\n"))
    return out


# ---------------------------------------------------------------------------------------- sending

def send(port: int, raw: bytes) -> int | str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(raw)
            return refused.read_status(sock)
    except OSError as exc:
        return type(exc).__name__


def run(port: int, requests: list[bytes], parallel: int) -> collections.Counter:
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return collections.Counter(pool.map(lambda raw: send(port, raw), requests))


def start(args: list[str], env: dict[str, str]):
    from serverctl import server_log, start_server

    proc, url = start_server("--workers", "2", "--threads", "2", *args, env=env)
    if proc.poll() is not None:
        print(server_log(proc), file=sys.stderr)
        raise SystemExit("the server did not start")
    time.sleep(0.5)
    return proc, int(url.rsplit(":", 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50, help="requests of each refused kind (1..1000)")
    parser.add_argument("--parallel", type=int, default=4, help="connections at once (1..32)")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 1000 or not 1 <= args.parallel <= 32:
        parser.error("--repeat 1..1000, --parallel 1..32")

    from serverctl import server_log, stop_server

    localfhir = _localfhir()
    folder = tempfile.mkdtemp(prefix="mscc-malformed-probe-")
    issuers = Path(folder) / "issuers.json"
    issuers.write_text(json.dumps({"https://ehr.example.org": {"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}}))
    env = {"MSCC_REQUEST_READ_TIMEOUT": "1", "MSCC_CDS_STORE_PATH": "", "XDG_DATA_HOME": folder,
           "MSCC_LOG_LEVEL": "warning"}
    results: dict[str, collections.Counter] = {}
    with localfhir.LocalFhir(localfhir.load()) as fhir:
        servers = []
        try:
            servers.append(start(["--allow-unauthenticated-cds"], {**env, "MSCC_TRIAGE_FHIR_SERVERS": fhir.base("open")}))
            servers.append(start(["--public-url", "http://127.0.0.1/"], {**env, "MSCC_CDS_ISSUERS_FILE": str(issuers)}))
            (dev, port), (_, jwt_port) = servers
            watches = [refused.WorkerWatch(proc.pid) for proc, _ in servers]
            for watch in watches:
                watch.start()
            print(f"servers 127.0.0.1:{port} (development CDS, FHIR fetch from {fhir.base('open')}) and "
                  f"127.0.0.1:{jwt_port} (a trusted issuer); workers "
                  f"{sorted(refused.children(dev.pid))} and {sorted(refused.children(servers[1][0].pid))}")
            started = time.monotonic()
            groups = corpus(fhir.base("open"), localfhir.TOKEN)
            for name, requests in groups.items():
                results[name] = run(port, requests, args.parallel)
            results["JWT (trusted issuer)"] = run(jwt_port, jwt_corpus(), args.parallel)
            attack = refused.attack(port, args.repeat, seconds=3.0, attackers=args.parallel, read_timeout=1.0)
            for kind, answers in attack.items():
                results[f"refused: {kind}"] = answers
            elapsed = time.monotonic() - started
            deaths = sum(watch.deaths() for watch in watches)
            logs = [server_log(proc) for proc, _ in servers]
        finally:
            for proc, _ in servers:
                stop_server(proc)
    deaths = max(deaths, sum(log.count("exited with code") + log.count("Exception in worker process") for log in logs))

    five, unanswered, not_implemented, total = 0, 0, 0, 0
    for name, answers in results.items():
        total += sum(answers.values())
        shown = ", ".join(f"{answer}: {n}" for answer, n in sorted(answers.items(), key=str))
        print(f"{name:40} {shown}")
        for answer, n in answers.items():
            if not isinstance(answer, int):
                unanswered += n
            elif name == UNKNOWN_CODING and answer == 501:
                not_implemented += n
            elif answer >= 500:
                five += n
    print(f"{total} requests in {elapsed:.0f} s; {unanswered} without an answer")
    if not_implemented:
        print(f"{not_implemented} x 501 Not Implemented for an unknown transfer coding (gunicorn, RFC 9112 "
              "section 6.1), not counted below")
    print(f"{deaths} worker deaths, {five} 5xx")
    tracebacks = sum(log.count("Traceback") for log in logs)
    if tracebacks:
        print(f"{tracebacks} tracebacks in the server logs")
    return 0 if deaths == 0 and five == 0 and unanswered == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
