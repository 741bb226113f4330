"""The fetch room alone (api/fhir/fetch.py), against a real local HTTP FHIR-like server: every failure kind.

No mock of the HTTP client: the server in tests/api/fhir/localfhir.py listens on 127.0.0.1 and
answers each base path with one behaviour (good, 401, 403, 404, 500, slow, dripping, HTML, not JSON,
redirect, too large, paged, paged off-site).
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from mscc_triage_api.fhir import fetch as ff

_spec = importlib.util.spec_from_file_location("localfhir", Path(__file__).with_name("fhir") / "localfhir.py")
localfhir = importlib.util.module_from_spec(_spec)
sys.modules["localfhir"] = localfhir
_spec.loader.exec_module(localfhir)

QUERIES = {"patient": "Patient/mscc-1", "conditions": "Condition?patient=mscc-1",
           "observations": "Observation?patient=mscc-1"}


@pytest.fixture
def fhir():
    with localfhir.LocalFhir(localfhir.load()) as server:
        yield server


def settings(server, **change) -> ff.FetchSettings:
    modes = ("fhir", "open", "forbidden", "gone", "broken", "slow", "drip", "html", "notjson", "redirect", "huge",
             "paged", "offsite")
    values = dict(servers=ff.parse_servers([server.base(m) for m in modes]), request_timeout_s=0.25, budget_s=0.35)
    values.update(change)
    return ff.FetchSettings(**values)


def token(value: str = localfhir.TOKEN):
    return ff.token_of({"access_token": value, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read",
                        "subject": "cds-service"})


def test_a_good_server_gives_every_resource_concurrently_with_the_token_as_a_header_only(fhir):
    found = ff.fetch_all(fhir.base(), token(), QUERIES, settings(fhir))
    assert found["patient"]["resourceType"] == "Patient" and found["patient"]["birthDate"] == "1951-06-02"
    assert {e["resource"]["id"] for e in found["conditions"]["entry"]} == {"cond-prostate", "cond-bone-mets"}
    assert len(found["observations"]["entry"]) == 7
    assert sorted(r[1].split("?")[0] for r in fhir.requests) == ["/fhir/Condition", "/fhir/Observation", "/fhir/Patient/mscc-1"]
    assert {r[2] for r in fhir.requests} == {f"Bearer {localfhir.TOKEN}"}


def test_queries_run_concurrently_inside_the_budget(fhir, monkeypatch):
    monkeypatch.setattr(localfhir, "SLOW_S", 0.12)   # three queries of 0.12 s: 0.36 s one after the other
    started = time.monotonic()
    found = ff.fetch_all(fhir.base("slow"), None, QUERIES, settings(fhir, request_timeout_s=0.3, budget_s=0.3))
    assert set(found) == set(QUERIES) and time.monotonic() - started < 0.3


@pytest.mark.parametrize("mode, bearer, error, words", [
    ("fhir", "wrong-token", ff.AuthorizationFailed, "401"),
    ("fhir", None, ff.AuthorizationFailed, "401"),
    ("forbidden", localfhir.TOKEN, ff.AuthorizationFailed, "403"),
    ("gone", localfhir.TOKEN, ff.NotFound, "404"),
    ("broken", localfhir.TOKEN, ff.Unreachable, "500"),
    ("slow", localfhir.TOKEN, ff.FetchTimeout, "no answer within"),
    ("drip", localfhir.TOKEN, ff.FetchTimeout, "no answer within"),
    ("html", localfhir.TOKEN, ff.NotFhir, "text/html"),
    ("notjson", localfhir.TOKEN, ff.NotFhir, "not JSON"),
    ("redirect", localfhir.TOKEN, ff.NotFhir, "redirect"),
    ("huge", localfhir.TOKEN, ff.NotFhir, "larger than"),
])
def test_every_failure_kind_is_typed_and_inside_the_budget(fhir, mode, bearer, error, words, caplog):
    # reading past 2 MiB takes longer than 0.25 s on a loaded 2-core machine: the size check, not the
    # clock, must be what refuses the huge answer
    s = settings(fhir, request_timeout_s=1.5, budget_s=1.8) if mode == "huge" else settings(fhir)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="mscc_triage"):
        with pytest.raises(ff.FetchFailed) as failed:
            ff.fetch_all(fhir.base(mode), token(bearer) if bearer else None, QUERIES, s)
    elapsed = time.monotonic() - started
    assert elapsed < s.budget_s + 0.1
    assert {type(e) for e in failed.value.errors} == {error}
    assert {e.key for e in failed.value.errors} == set(QUERIES)
    assert all(words in e.reason for e in failed.value.errors)
    assert localfhir.TOKEN not in caplog.text and localfhir.TOKEN not in str(failed.value.errors)
    assert "mscc-1" not in caplog.text   # the queries hold the patient id: never logged
    if mode == "redirect":
        assert not [r for r in fhir.requests if r[0] == "fhir"]   # the redirect was not followed


def test_a_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/fhir"
    with pytest.raises(ff.FetchFailed) as failed:
        ff.fetch_all(base, None, {"patient": "Patient/1"}, ff.FetchSettings(servers=(base,)))
    assert isinstance(failed.value.errors[0], ff.Unreachable)


def test_partial_failure_keeps_what_was_had():
    with localfhir.LocalFhir(localfhir.load("patient")) as server:
        with pytest.raises(ff.FetchFailed) as failed:
            ff.fetch_all(server.base("open"), None, {"patient": "Patient/mscc-1", "other": "Patient/nobody"},
                         settings(server))
    assert [e.key for e in failed.value.errors] == ["other"] and isinstance(failed.value.errors[0], ff.NotFound)
    assert failed.value.found["patient"]["id"] == "mscc-1"


def test_search_pages_are_followed_on_the_same_server_only(fhir):
    found = ff.fetch_all(fhir.base("paged"), None, {"conditions": "Condition?patient=mscc-1"}, settings(fhir))
    assert {e["resource"]["id"] for e in found["conditions"]["entry"]} == {"cond-prostate", "cond-bone-mets"}
    with pytest.raises(ff.FetchFailed) as failed:   # the next page is on another host: not followed, and
        ff.fetch_all(fhir.base("offsite"), None, {"conditions": "Condition?patient=mscc-1"}, settings(fhir))
    assert isinstance(failed.value.errors[0], ff.Incomplete)   # a record read in part is never triaged
    assert "not all read" in failed.value.errors[0].reason
    assert len([r for r in fhir.requests if r[0] == "offsite"]) == 1


def test_pages_past_the_cap_are_a_record_not_all_read_never_a_part_of_it(fhir):
    """Audit (issue 26 session): 3 pages were read and the 4th, holding today's weakness, dropped in silence."""
    with pytest.raises(ff.FetchFailed) as failed:
        ff.fetch_all(fhir.base("paged"), None, {"observations": "Observation?patient=mscc-1"},
                     settings(fhir, max_pages=3))
    assert isinstance(failed.value.errors[0], ff.Incomplete) and failed.value.errors[0].code == "fhir-incomplete"
    assert "more than 3 search pages" in failed.value.errors[0].reason
    found = ff.fetch_all(fhir.base("paged"), None, {"observations": "Observation?patient=mscc-1"}, settings(fhir))
    assert len(found["observations"]["entry"]) > 3   # the default cap reads them all


@pytest.mark.parametrize("server", ["http://fhir.example.org.evil.example/fhir", "http://fhir.example.org/fhir/../x",
                                    "https://fhir.example.org/fhir", "http://fhir.example.org/fhir2",
                                    "http://user@fhir.example.org/fhir", "ftp://fhir.example.org/fhir", None, 5])
def test_only_listed_servers_are_allowed(server):
    s = ff.FetchSettings(servers=ff.parse_servers("http://fhir.example.org/fhir, https://other.example/r4/"))
    with pytest.raises(ff.ServerNotAllowed):
        ff.allowed_base(s, server)


def test_listed_servers_match_after_normalising():
    s = ff.FetchSettings(servers=ff.parse_servers("http://FHIR.example.org:80/fhir/,https://other.example/r4"))
    assert ff.allowed_base(s, "http://fhir.example.org/fhir") == "http://fhir.example.org/fhir"
    assert ff.allowed_base(s, "https://other.example:443/r4/") == "https://other.example/r4"
    with pytest.raises(ff.ServerNotAllowed, match="not set"):
        ff.allowed_base(ff.FetchSettings(), "http://fhir.example.org/fhir")


@pytest.mark.parametrize("value", ["fhir.example.org", "http://x.example/fhir?a=1", "https://u:p@x.example/", "http://"])
def test_a_bad_allow_list_entry_is_refused_by_name(value):
    with pytest.raises(ValueError, match="MSCC_TRIAGE_FHIR_SERVERS"):
        ff.parse_servers(f"http://good.example/fhir,{value}")


@pytest.mark.parametrize("auth", [{"access_token": "x", "token_type": "MAC"}, {"access_token": ""}, {"token_type": "Bearer"},
                                  "Bearer x", {"access_token": "x\r\nX-Evil: 1"}])
def test_unusable_authorizations_are_refused(auth):
    with pytest.raises(ff.AuthorizationFailed):
        ff.token_of(auth)


def test_the_token_never_shows_in_a_repr():
    t = token()
    assert localfhir.TOKEN not in repr(t) and localfhir.TOKEN not in repr({"t": t})


# ------------------------------------------------------------------------------ next links (issue 19)

class LinkServer:
    """A FHIR server at ``/r4`` whose first search page links to ``next`` (any text, relative or not);
    every other path answers a page with another entry and no link. It records each path requested,
    as sent, so that a test sees which page was fetched and under what path."""

    def __init__(self, next_url: str):
        from http.server import BaseHTTPRequestHandler

        outer = self
        self.paths: list[str] = []
        self.next_url = next_url

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:   # noqa: N802
                outer.paths.append(self.path)
                first = self.path == "/r4/Observation?patient=p1"
                page = {"resourceType": "Bundle", "type": "searchset",
                        "entry": [{"resource": {"resourceType": "Observation", "id": "first" if first else "second"}}]}
                if first:
                    page["link"] = [{"relation": "self", "url": "/r4/Observation?patient=p1"},
                                    {"relation": "next", "url": outer.next_url.replace("{root}", outer.root)}]
                localfhir.LocalFhir.send(self, 200, page)

        self.httpd = localfhir.QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base = self.root + "/r4"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "LinkServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def fetch(self) -> list[str]:
        """The ids fetched for one search, all pages joined."""
        s = ff.FetchSettings(servers=ff.parse_servers([self.base]), request_timeout_s=1.0, budget_s=1.5)
        found = ff.fetch_all(self.base, None, {"observations": "Observation?patient=p1"}, s)
        return [e["resource"]["id"] for e in found["observations"]["entry"]]


@pytest.mark.parametrize("link, requested", [
    ("{root}/r4/Observation?patient=p1&_page=2", "/r4/Observation?patient=p1&_page=2"),
    ("/r4/./Observation?_page=2", "/r4/Observation?_page=2"),
    ("/r4/x/../Observation?_page=2", "/r4/Observation?_page=2"),
    ("{root}/r4/%4Fbservation?_page=2", "/r4/Observation?_page=2"),             # %4F is O (RFC 3986 6.2.2.2)
    ("/%72%34/Observation?_page=2", "/r4/Observation?_page=2"),
    ("Observation?_page=2", "/r4/Observation?_page=2"),                          # relative to the base
    ("./Observation?_page=2#top", "/r4/Observation?_page=2"),                    # no fragment is sent
    ("{root}/r4/Observation?_page=%2e%2e", "/r4/Observation?_page=%2e%2e"),      # the query is left as it is
])
def test_a_next_link_under_the_base_is_followed_normalised(link, requested):
    with LinkServer(link) as server:
        assert server.fetch() == ["first", "second"]
    assert server.paths == ["/r4/Observation?patient=p1", requested]


@pytest.mark.parametrize("link", [
    "/r4/../admin/Observation",                      # dot segments out of the base path
    "{root}/r4/Observation/../../admin/Observation",
    "../admin/Observation",
    "/r4/%2e%2e/admin/Observation",                  # percent-encoded dots
    "/r4/%2E%2e/admin/Observation",
    "/r4/.%2e/admin/Observation",
    "/%72%34/../admin/Observation",
    "/r4/..%2Fadmin/Observation",                    # an encoded slash or backslash: no telling what it means
    "/r4/..%5Cadmin/Observation",
    "/r4/..\\admin/Observation",
    "/r4/..;x/admin/Observation",                    # a dot segment with parameters
    "/r4/%zz/Observation",                           # a malformed escape
    "/r4-other/Observation",                         # a sibling path sharing the prefix
    "/R4/Observation",                               # paths are case-sensitive
    "/admin/Observation",
    "//fhir.elsewhere.example/r4/Observation",       # another host, scheme-relative
    "https://{host}/r4/Observation",                 # another scheme (and port)
    "http://user@{host}/r4/Observation",             # a user name
    "http://127.0.0.1:1/r4/Observation",             # another port
    "http://127.0.0.1:port/r4/Observation",          # a port that is not a number
])
def test_a_next_link_outside_the_base_path_is_never_followed(link, caplog):
    with LinkServer(link) as server:
        server.next_url = link.replace("{host}", server.root.split("//", 1)[1])
        with caplog.at_level(logging.WARNING, logger="mscc_triage"), pytest.raises(ff.FetchFailed) as failed:
            server.fetch()
    assert isinstance(failed.value.errors[0], ff.Incomplete)   # never the first page alone, as if it were all
    assert server.paths == ["/r4/Observation?patient=p1"]
    assert "next link leaves" in caplog.text and "admin" not in caplog.text   # the base is named, not the link


def test_the_base_path_check_is_segment_wise_and_normalises_both_sides():
    base = "http://fhir.example.org/r4"
    assert ff.within_base("http://FHIR.example.org:80/r4/Observation", base) == "http://fhir.example.org/r4/Observation"
    assert ff.within_base("http://fhir.example.org/r4", base) == "http://fhir.example.org/r4"
    assert ff.within_base("http://fhir.example.org/r4x/Observation", base) is None
    assert ff.within_base("/anything/at/all", "http://fhir.example.org") == "http://fhir.example.org/anything/at/all"
    assert ff.normal_path("/a/b/./c/../d%7e%41%2a") == "/a/b/d~A%2A"
    assert ff.normal_path("/a/%2f") is None and ff.normal_path("/a/%5c") is None and ff.normal_path("/a/%4") is None


class RawServer(LinkServer):
    """Answers every GET with the same raw bytes as application/fhir+json."""

    def __init__(self, body: bytes):
        super().__init__("")
        outer = self
        handler = self.httpd.RequestHandlerClass

        def do_get(h) -> None:
            outer.paths.append(h.path)
            h.send_response(200)
            h.send_header("Content-Type", "application/fhir+json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        handler.do_GET = do_get


@pytest.mark.parametrize("body, outcome", [
    (b'{"resourceType": "Bundle", "total": ' + b"9" * 4301 + b"}", "fhir-not-fhir"),          # Python's digit limit
    (b'{"resourceType": "Bundle", "total": 1' + b"0" * 400 + b"}", "fhir-incomplete"),          # JSON, but more than sent
    (b'{"resourceType": "Bundle", "total": 0}', "ok"),
    (b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "id": "\\ud800"}}]}', "ok"),
    (b'{"resourceType": "\\ud800"}', "ok"),
    (b'{"resourceType": "Bundle", "link": [{"relation": "next", "url": "\\ud800"}]}', "fhir-not-fhir"),
    (b'{"resourceType": "Bundle", "link": [{"relation": "next", "url": 1' + b"0" * 400 + b"}]}", "ok"),
    (b"\xff\xfe{}", "fhir-not-fhir"),
    (b"[" * 5000 + b"]" * 5000, "fhir-not-fhir"),
    (b'{"resourceType": "Bundle", "total": NaN}', "fhir-not-fhir"),
])
def test_a_hostile_answer_is_a_typed_error_or_data(body, outcome):
    """What the mapping does with hostile data is the CDS fuzz tests' business; here: no untyped error."""
    with RawServer(body) as server:
        s = ff.FetchSettings(servers=ff.parse_servers([server.base]), request_timeout_s=1.0, budget_s=1.5)
        try:
            ff.fetch_all(server.base, None, {"observations": "Observation?patient=p1"}, s)
            got = "ok"
        except ff.FetchFailed as failed:
            got = failed.errors[0].code
    assert got == outcome
