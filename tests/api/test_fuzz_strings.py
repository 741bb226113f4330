"""Issue 19's fuzz generators: huge integers, non-Latin-1 text and lone surrogates in every string field,
malformed chunked bodies; for the JSON API, CDS Hooks (service calls with fhirAuthorization, prefetch
resources, feedback) and the form. Every answer is a 2xx or a 4xx problem naming the data (a 412
naming the prefetch for CDS), never a 5xx or a traceback.

Two kinds of tests: sweeps, in which every string (and number) leaf of a full request is replaced in
turn by each hostile value (deterministic: every field is hit), and bounded hypothesis runs that put
hostile values, keys and huge integers in several places at once. The chunked corpus goes to a real
server (gunicorn's body reader is not the test client's), whose worker pids must not change.
A lone surrogate is sent as a JSON escape (``"\\ud800"``), as a client would; in the form, as the
bytes a client could send (``%ED%A0%80``, invalid UTF-8). A 4,301-digit number is written into the
JSON text (Python will not print one).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mscc_triage_api import create_app
from triage._case import FIELDS

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "/cds-services/mscc-triage"
FEEDBACK = SERVICE + "/feedback"
BIG_DIGITS = "@4301-digits@"          # written into the JSON text as a 4,301-digit number
LONE = ["\ud800", "a\udfff", "\ud83d"]  # lone surrogates (json.dumps escapes them: "\ud800")
WIDE = ["€ü中\u2028", "\x00", "\u202e\ufeff"]   # not Latin-1, NUL, bidi control and BOM
HUGE = [10 ** 400, -(10 ** 400), 2 ** 1100, 1e308]
HOSTILE_STRINGS = LONE + WIDE
HOSTILE_VALUES = HOSTILE_STRINGS + HUGE + [BIG_DIGITS]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


shapes = _load("record_shapes_probe", ROOT / "scripts" / "record_shapes_probe.py")
localfhir = _load("localfhir", Path(__file__).with_name("fhir") / "localfhir.py")


def dumps(value: Any) -> bytes:
    """JSON text (ASCII, lone surrogates escaped), with BIG_DIGITS written as a 4,301-digit number."""
    return json.dumps(value).replace(json.dumps(BIG_DIGITS), "9" * 4301).encode("ascii")


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


def hostile_for(value: Any) -> list[Any]:
    """What replaces one leaf in a sweep: a string gets every hostile string and a huge integer; a
    number every huge one."""
    if isinstance(value, bool) or value is None:
        return [LONE[0], 10 ** 400]
    if isinstance(value, (int, float)):
        return HUGE[:2] + [BIG_DIGITS]
    return HOSTILE_STRINGS + [10 ** 400]


def assert_clean(response, what: str) -> dict | None:
    """A 2xx, or a 4xx problem document without internals; the problem's body, if any."""
    status = response.status_code
    text = response.get_data(as_text=True)
    assert status < 500 and (200 <= status < 300 or 400 <= status < 500), (what, status, text[:300])
    assert "Traceback" not in text and 'File "' not in text, what
    if status >= 400 and response.mimetype == "application/problem+json":
        body = json.loads(text)
        assert body["status"] == status and body.get("title"), what
        return body
    return None


@pytest.fixture(scope="module")
def fhir_server():
    with localfhir.LocalFhir(localfhir.load()) as server:
        yield server


@pytest.fixture(scope="module")
def app(tmp_path_factory, fhir_server):
    folder = tmp_path_factory.mktemp("fuzz-strings")
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(folder / "cds.sqlite3"),
                       "RECORD_PATH": str(folder / "records.sqlite3"), "CDS_ALLOW_UNAUTHENTICATED": True,
                       "FHIR_SERVERS": [fhir_server.base("open")], "FHIR_FETCH_TIMEOUT_S": 1.0,
                       "FHIR_FETCH_BUDGET_S": 1.5})


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def full_cds_call() -> dict[str, Any]:
    """Every prefetch resource of the test records (conditions, observations, labs, medications, ...)."""
    prefetch = shapes.good_prefetch()
    return {"hook": "patient-view", "hookInstance": "h", "context": {"userId": "Practitioner/1",
                                                                     "patientId": prefetch["patient"]["id"]},
            "prefetch": prefetch}


def fetching_cds_call(fhir_server) -> dict[str, Any]:
    """A call that makes the service fetch (observations not prefetched) with a bearer token."""
    call = full_cds_call()
    del call["prefetch"]["observations"]
    call["fhirServer"] = fhir_server.base("open")
    call["fhirAuthorization"] = {"access_token": localfhir.TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds-service"}
    return call


def post_cds(client, call: dict[str, Any], path: tuple, value: Any):
    body = replaced(call, path, value)
    if path != ("hookInstance",):
        body["hookInstance"] = str(uuid.uuid4())
    return client.post(SERVICE, data=dumps(body), content_type="application/json")


def check_cds(response, what: str) -> None:
    problem = assert_clean(response, what)
    if response.status_code == 412:   # names the data that could not be had, and why
        assert problem is not None and (problem.get("errors") or "prefetch" in problem.get("detail", "")), what
    elif response.status_code == 200:
        card = response.get_json()["cards"][0]
        assert card["summary"] and card["indicator"] in ("info", "warning", "critical"), what


# ------------------------------------------------------------------------------ sweeps: every field, in turn

STRUCTURAL = ("resourceType", "reference", "system", "code", "id", "birthDate", "status", "value", "unit")
TYPED = ("resourceType", "reference", "id", "birthDate")   # also a huge integer where the string should be


def test_every_prefetch_string_and_number_hostile_in_turn(client):
    call = full_cds_call()
    sent = 0
    for path, value in leaves(call):
        if isinstance(value, str) and path[-1] in STRUCTURAL:   # each kind on its own
            kinds = [LONE[0], WIDE[0]] + ([10 ** 400] if path[-1] in TYPED else [])
        elif isinstance(value, str):   # free text (display, text, ...): both kinds in one value keeps this quick
            kinds = [WIDE[0] + LONE[0]]
        else:
            kinds = hostile_for(value)
        for hostile in kinds:
            check_cds(post_cds(client, call, path, hostile), f"{path} = {hostile!r}"[:120])
            sent += 1
    assert sent > 500


def test_a_fetching_call_with_hostile_context_server_and_token(client, fhir_server):
    call = fetching_cds_call(fhir_server)
    assert client.post(SERVICE, json={**call, "hookInstance": "first"}).status_code == 200   # it fetches
    for path, value in leaves(call):
        if path[0] == "prefetch":
            continue   # the sweep above
        for hostile in hostile_for(value):
            response = post_cds(client, call, path, hostile)
            check_cds(response, f"{path} = {hostile!r}")
            if path[:2] == ("fhirAuthorization", "access_token") and isinstance(hostile, str):
                problem = response.get_json()
                assert response.status_code == 412 and problem["errors"][0]["code"] == "fhir-authorization"
                assert problem["errors"][0]["prefetch"] == "observations"


def test_every_feedback_field_hostile_names_the_item(app, client):
    item = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-27T07:00:00Z",
            "overrideReason": {"reason": {"code": "patient-declined", "system": "urn:mscc-triage:override-reason",
                                          "display": "Patient declined"}, "userComment": "because"},
            "acceptedSuggestions": [{"id": "s1"}]}
    good = {"card": "c0", "outcome": "accepted"}
    for path, value in leaves({"feedback": [good, item]}):
        for hostile in hostile_for(value):
            body = replaced({"feedback": [good, item]}, path, hostile)
            response = client.post(FEEDBACK, data=dumps(body), content_type="application/json")
            problem = assert_clean(response, f"{path} = {hostile!r}")
            if response.status_code == 400 and hostile is not BIG_DIGITS:
                assert f"feedback[{path[1]}]" in problem["detail"], (path, hostile, problem)


def test_every_case_field_hostile_is_a_422_naming_it(client):
    case = json.loads((ROOT / "examples" / "emergency.json").read_text())
    case["case_id"] = "c-1"
    for path, value in leaves(case):
        for hostile in hostile_for(value):
            for accept in ("application/json", "application/fhir+json"):
                response = client.post("/v1/triage", data=dumps(replaced(case, path, hostile)),
                                       content_type="application/json", headers={"Accept": accept})
                problem = assert_clean(response, f"{path} = {hostile!r}")
                if hostile is BIG_DIGITS:   # Python's int-digits limit: malformed JSON, said so
                    assert response.status_code == 400 and "digits" in problem["detail"]
                elif response.status_code != 200:
                    dotted = ".".join(map(str, path))
                    assert response.status_code == 422, (path, hostile)
                    assert any(e["path"] == dotted or dotted.startswith(e["path"] + ".") or e["path"] == ""
                               for e in problem["errors"]), (dotted, problem["errors"])


FORM_VALUES = {"lone surrogate": b"%ED%A0%80", "invalid UTF-8": b"%FF%FE", "not Latin-1": b"%E2%82%AC%E4%B8%AD",
               "NUL": b"%00", "4,301 digits": b"9" * 4301, "1e400": b"1e400", "huge decimal": b"9" * 400 + b".5"}


@pytest.mark.parametrize("kind", FORM_VALUES)
def test_every_form_field_hostile_is_a_field_error_or_ignored(client, kind):
    raw = FORM_VALUES[kind]
    for path, spec in FIELDS.items():
        url = "/fr/" if len(path) % 2 else "/"
        response = client.post(url, data=quote(path).encode() + b"=" + raw + b"&_triaged=1",
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code in (200, 422), (path, kind, response.status_code)
        page = response.get_data(as_text=True)
        assert "Traceback" not in page
        if response.status_code == 422:
            assert f"f-{path.replace('.', '-')}-err" in page, (path, kind)   # shown next to its field
        if spec.kind in ("integer", "number"):
            assert response.status_code == 422, (path, kind)   # no number here is readable


# ------------------------------------------------------------------------------ hypothesis: several at once

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HOSTILE_TEXT = st.sampled_from(HOSTILE_STRINGS) | st.text(st.characters(min_codepoint=0x100, max_codepoint=0xFFFF),
                                                          min_size=1, max_size=8)
HOSTILE = HOSTILE_TEXT | st.sampled_from(HUGE + [BIG_DIGITS])


def mutated(template: dict[str, Any]) -> st.SearchStrategy:
    """The template with 1 to 4 leaves replaced by hostile values, and sometimes a hostile key added."""
    places = [path for path, _ in leaves(template)]

    @st.composite
    def build(draw) -> dict[str, Any]:
        out = copy.deepcopy(template)
        for path in draw(st.lists(st.sampled_from(places), min_size=1, max_size=4, unique=True)):
            out = replaced(out, path, draw(HOSTILE))
        if draw(st.booleans()):
            parent = draw(st.sampled_from([p[:-1] for p in places if p and isinstance(p[-1], str)]))
            node = out
            for step in parent:
                node = node[step] if isinstance(node, (dict, list)) else node
            if isinstance(node, dict):
                node[draw(HOSTILE_TEXT)] = draw(HOSTILE | st.just("x"))
        return out

    return build()


def test_hypothesis_cds_calls(client, fhir_server):
    @FUZZ
    @given(call=mutated(fetching_cds_call(fhir_server)) | mutated(full_cds_call()))
    def run(call):
        call["hookInstance"] = call["hookInstance"] if call.get("hookInstance") != "h" else str(uuid.uuid4())
        check_cds(client.post(SERVICE, data=dumps(call), content_type="application/json"), repr(call)[:200])

    run()


def test_hypothesis_feedback_and_cases(client):
    item = {"card": "c1", "outcome": "overridden", "overrideReason": {"reason": {"code": "x"}, "userComment": "u"},
            "acceptedSuggestions": [{"id": "s1"}], "outcomeTimestamp": "2026-11-27T07:00:00Z"}
    case = json.loads((ROOT / "examples" / "emergency.json").read_text())

    @FUZZ
    @given(feedback=mutated({"feedback": [item, dict(item, card="c2")]}), case=mutated(case))
    def run(feedback, case):
        assert_clean(client.post(FEEDBACK, data=dumps(feedback), content_type="application/json"), repr(feedback)[:200])
        assert_clean(client.post("/v1/triage", data=dumps(case), content_type="application/json"), repr(case)[:200])

    run()


# ------------------------------------------------------------------------------ malformed chunking, real server

CHUNKED = {
    "size not hex": b"zz\r\n{}\r\n0\r\n\r\n",
    "negative size": b"-2\r\n{}\r\n0\r\n\r\n",
    "0x prefix": b"0x2\r\n{}\r\n0\r\n\r\n",
    "plus sign": b"+2\r\n{}\r\n0\r\n\r\n",
    "size with a space": b"2 \r\n{}\r\n0\r\n\r\n",
    "size in full-width digits": "２\r\n{}\r\n0\r\n\r\n".encode(),
    "NUL in the size": b"2\x00\r\n{}\r\n0\r\n\r\n",
    "20-digit size": b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "chunk without CRLF": b"2\r\n{}XX0\r\n\r\n",
    "chunk shorter than its size": b"5\r\n{}\r\n0\r\n\r\n",
    "malformed trailer": b"2\r\n{}\r\n0\r\nbad trailer\r\n\r\n",
    "oversized trailer": b"2\r\n{}\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 1000) for i in range(60)) + b"\r\n",
    "4,301-digit chunk of JSON": b"%x\r\n%s\r\n0\r\n\r\n" % (4301 + 15, b'{"patient": ' + b"9" * 4301 + b"}  "),
    "lone surrogate in a chunk": b"%x\r\n%s\r\n0\r\n\r\n" % (len(b'{"case_id": "\\ud800"}'), b'{"case_id": "\\ud800"}'),
}
ENDPOINTS = {"/v1/triage": b"application/json", SERVICE: b"application/json", FEEDBACK: b"application/json",
             "/": b"application/x-www-form-urlencoded", "/fr/new": b"application/x-www-form-urlencoded"}


def _status(port: int, raw: bytes) -> int | str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        try:
            while b"\r\n" not in data:
                part = sock.recv(4096)
                if not part:
                    return "closed without an answer"
                data += part
        except ConnectionResetError:
            return "reset without an answer"
    fields = data.split(b"\r\n", 1)[0].split(b" ")
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else repr(data[:40])


def _workers(master: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                found.add(int(entry))
    return found


@pytest.fixture(scope="module")
def real_server():
    from serverctl import server_log, start_server, stop_server

    proc, url = start_server("--workers", "2", "--threads", "2", "--allow-unauthenticated-cds",
                             env={"MSCC_REQUEST_READ_TIMEOUT": "2", "MSCC_CDS_STORE_PATH": ""})
    assert proc.poll() is None, server_log(proc)
    deadline = time.monotonic() + 60      # both workers booted: a worker that boots late is not one reborn
    while len(_workers(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_workers(proc.pid)) == 2, server_log(proc)
    yield proc, int(url.rsplit(":", 1)[1])
    stop_server(proc)


def test_malformed_chunked_bodies_are_4xx_and_kill_no_worker(real_server):
    from serverctl import server_log

    proc, port = real_server
    workers = _workers(proc.pid)
    answers = {}
    for path, ctype in ENDPOINTS.items():
        for kind, body in CHUNKED.items():
            for coding in (b"chunked", b"gzip, chunked"):
                raw = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype
                       + b"\r\nTransfer-Encoding: " + coding + b"\r\n\r\n" + body)
                answers[(path, kind, coding)] = _status(port, raw)
    # well-framed chunks of hostile JSON: a 4xx from the JSON endpoints; the form reads no JSON (200).
    # A coding besides chunked (gzip) is refused before the body is read: 501 (RFC 9112, 6.1).
    framed = ("4,301-digit chunk of JSON", "lone surrogate in a chunk")
    wrong = {k: v for k, v in answers.items()
             if not (isinstance(v, int) and (v == 501 if k[2] == b"gzip, chunked" else
                                             (400 <= v < 500 or (k[1] in framed and k[0] in ("/", "/fr/new")
                                                                 and 200 <= v < 300))))}
    assert not wrong, wrong
    assert _workers(proc.pid) == workers, server_log(proc)[-2000:]
    log = server_log(proc)
    assert "Traceback" not in log and "exited with code" not in log and "form page failed" not in log


@pytest.mark.parametrize("where", ["path", "query", "header", "authorization", "content type", "host"])
def test_non_latin1_bytes_in_the_request_head_are_never_5xx(real_server, where):
    proc, port = real_server
    workers = _workers(proc.pid)
    for odd in (b"\xff\xfe", "€中".encode(), b"\xed\xa0\x80", b"%ED%A0%80", b"%00"):
        for path, ctype in ENDPOINTS.items():
            target, head, content = path.encode(), b"Host: x\r\n", ctype
            if where == "path":
                target += odd
            elif where == "query":
                target += b"?from=" + odd + b"&" + odd + b"=1"
            elif where == "header":
                head += b"X-Odd: " + odd + b"\r\n"
            elif where == "authorization":
                head += b"Authorization: Bearer " + odd + b"\r\n"
            elif where == "content type":
                content += b"; charset=" + odd
            else:
                head = b"Host: " + odd + b"\r\n"
            raw = (b"POST " + target + b" HTTP/1.1\r\n" + head + b"Content-Type: " + content
                   + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            status = _status(port, raw)
            assert isinstance(status, int) and status < 500, (where, odd, path, status)
    assert _workers(proc.pid) == workers


# ------------------------------------------------------------------------------ the JWT

@pytest.mark.parametrize("claims", ['"exp": 1' + "0" * 400, '"iat": -1' + "0" * 400 + ', "exp": 1'])
def test_a_huge_exp_or_iat_in_a_jwt_is_a_401(tmp_path, claims):
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                         "RECORD_PATH": str(tmp_path / "records.sqlite3"), "PUBLIC_BASE_URL": "http://localhost/",
                         "CDS_TRUSTED_ISSUERS": {"https://ehr.example.org": {"keys": [jwk]}}}).test_client()
    token = ".".join([b64(b'{"alg": "ES256", "kid": "k1"}'),
                      b64(('{"iss": "https://ehr.example.org", ' + claims + "}").encode()), b64(b"signature")])
    for path in (SERVICE, FEEDBACK):
        response = client.post(path, json={}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.get_data(as_text=True)
