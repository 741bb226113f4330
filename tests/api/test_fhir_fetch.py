"""The fetch room alone (api/fhir_fetch.py), against a real local HTTP FHIR-like server: every failure kind.

No mock of the HTTP client: the server in tests/api/fhir/localfhir.py listens on 127.0.0.1 and
answers each base path with one behaviour (good, 401, 403, 404, 500, slow, dripping, HTML, not JSON,
redirect, too large, paged, paged off-site).
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import time
from pathlib import Path

import pytest

from mscc_triage_api import fhir_fetch as ff

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
    found = ff.fetch_all(fhir.base("offsite"), None, {"conditions": "Condition?patient=mscc-1"}, settings(fhir))
    assert len(found["conditions"]["entry"]) == 1   # the next page is on another host: not followed
    assert len([r for r in fhir.requests if r[0] == "offsite"]) == 1


def test_pages_stop_at_the_cap(fhir):
    found = ff.fetch_all(fhir.base("paged"), None, {"observations": "Observation?patient=mscc-1"},
                         settings(fhir, max_pages=3))
    assert len(found["observations"]["entry"]) == 3


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
