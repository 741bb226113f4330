"""Issue 20: trusted issuers by JWK Set URL (``jku``), against a real JWKS server on loopback.

The server is a real HTTP server in a thread on a free port; it counts the requests of each path, so
a test can say "nothing fetched". The service's cache gets a hand-driven clock, so that "at most once
a minute" is tested without waiting a minute. http is allowed here because the host is loopback.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mscc_triage_api import ApiConfigError, create_app
from mscc_triage_api.cds import jwks
from mscc_triage_api.cds import service as cds

ISS = "https://ehr.example.org"
AUD = "http://localhost/cds-services/mscc-triage"
SERVICE = "/cds-services/mscc-triage"
BODY = {"hook": "patient-view", "hookInstance": "jwks-test", "context": {"patientId": "p1"},
        "prefetch": {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01"},
                     "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}


class Keys:
    """An EHR's key pairs, by kid."""

    def __init__(self) -> None:
        self.private: dict[str, Any] = {}

    def make(self, kid: str) -> dict[str, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        self.private[kid] = key
        return dict(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), kid=kid, alg="ES256",
                    use="sig")

    def token(self, kid: str, **headers: Any) -> str:
        now = int(time.time())
        return jwt.encode({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
                          self.private[kid], algorithm="ES256", headers={"kid": kid, **headers})


class JwksServer:
    """A JWK Set server: ``sets[path]`` is served as JSON; ``/moved`` redirects; ``/big`` is too large."""

    def __init__(self) -> None:
        self.sets: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.hits[self.path] += 1
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/jwks.json")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in ("/big", "/big-chunked"):
                    filler = [{"kty": "oct", "kid": f"f{i}", "k": "A" * 1000} for i in range(100)]
                    body = json.dumps({"keys": filler}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if self.path == "/big":
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)   # /big-chunked: no length, the body is read until the cap
                    return
                if self.path not in owner.sets:
                    self.send_error(404)
                    return
                body = json.dumps(owner.sets[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[JwksServer]:
    running = JwksServer()
    yield running
    running.close()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service(tmp_path, clock: Clock, issuer: dict[str, Any]) -> Any:
    app = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                      "PUBLIC_BASE_URL": "http://localhost/", "CDS_TRUSTED_ISSUERS": {ISS: issuer}})
    app.extensions[cds.JWKS] = jwks.JwksCache(clock=clock)
    return app.test_client()


def call(client: Any, token: str) -> Any:
    return client.post(SERVICE, json=BODY, headers={"Authorization": f"Bearer {token}"})


def test_a_key_set_by_url_is_fetched_once_then_cached(tmp_path, server, keys, clock):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    client = service(tmp_path, clock, {"jku": f"{server.url}/jwks.json"})
    for _ in range(3):
        assert call(client, keys.token("k1")).status_code == 200
    assert server.hits["/jwks.json"] == 1
    # a token naming the same, allow-listed set in its jku header is accepted the same way
    assert call(client, keys.token("k1", jku=f"{server.url}/jwks.json")).status_code == 200
    assert server.hits["/jwks.json"] == 1
    clock.now += jwks.MAX_AGE_S   # an old set is fetched again (a key the EHR removed stops working)
    assert call(client, keys.token("k1")).status_code == 200
    assert server.hits["/jwks.json"] == 2


def test_key_rotation_refreshes_the_set_at_most_once_a_minute(tmp_path, server, keys, clock):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    client = service(tmp_path, clock, {"jku": f"{server.url}/jwks.json"})
    assert call(client, keys.token("k1")).status_code == 200
    server.sets["/jwks.json"] = {"keys": [keys.make("k2")]}          # the EHR rotates: k1 gone, k2 new
    clock.now += jwks.MIN_REFRESH_S
    assert call(client, keys.token("k2")).status_code == 200          # unknown kid: the set is fetched again
    assert server.hits["/jwks.json"] == 2
    old = call(client, keys.token("k1"))                               # k1 left the set; within the minute
    assert old.status_code == 401 and "kid" in old.get_json()["detail"]
    assert server.hits["/jwks.json"] == 2                              # no fetch: refreshed less than a minute ago
    clock.now += jwks.MIN_REFRESH_S
    assert call(client, keys.token("k1")).status_code == 401          # after a minute: fetched, still gone
    assert server.hits["/jwks.json"] == 3


def test_an_unknown_kid_is_refused_and_fetches_at_most_once_a_minute(tmp_path, server, keys, clock):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    keys.make("stranger")
    client = service(tmp_path, clock, {"jku": f"{server.url}/jwks.json"})
    assert call(client, keys.token("k1")).status_code == 200
    clock.now += jwks.MIN_REFRESH_S
    for _ in range(5):
        answer = call(client, keys.token("stranger"))
        assert answer.status_code == 401
        assert answer.get_json()["detail"] == "No key of the issuer matches the JWT's kid."
    assert server.hits["/jwks.json"] == 2   # one refresh for five made-up kids
    assert call(client, keys.token("k1")).status_code == 200          # the known key still works


def test_a_jku_not_on_the_list_is_refused_and_nothing_is_fetched(tmp_path, server, keys, clock):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    server.sets["/attacker.json"] = {"keys": [keys.make("evil")]}
    client = service(tmp_path, clock, {"jku": f"{server.url}/jwks.json"})
    for jku in (f"{server.url}/attacker.json", f"{server.url}/jwks.json?x=1", f"{server.url}/JWKS.json",
                f"{server.url}/jwks.json/", "http://localhost:1/jwks.json"):
        answer = call(client, keys.token("evil", jku=jku))
        assert answer.status_code == 401, jku
        assert "jku" in answer.get_json()["detail"]
    assert sum(server.hits.values()) == 0
    # an issuer with inline keys only: any jku header is refused, nothing fetched
    (tmp_path / "inline").mkdir()
    inline = service(tmp_path / "inline", clock, {"keys": [keys.make("k3")]})
    assert call(inline, keys.token("k3")).status_code == 200
    assert call(inline, keys.token("k3", jku=f"{server.url}/attacker.json")).status_code == 401
    assert sum(server.hits.values()) == 0


def test_a_redirect_is_not_followed(tmp_path, server, keys, clock):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    client = service(tmp_path, clock, {"jku": f"{server.url}/moved"})
    answer = call(client, keys.token("k1"))
    assert answer.status_code == 401 and "redirect (302)" in answer.get_json()["detail"]
    assert server.hits["/moved"] == 1 and server.hits["/jwks.json"] == 0


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_an_oversized_set_is_refused(tmp_path, server, keys, clock, path):
    keys.make("k1")
    client = service(tmp_path, clock, {"jku": f"{server.url}{path}"})
    answer = call(client, keys.token("k1"))
    assert answer.status_code == 401
    assert f"larger than {jwks.MAX_BYTES} bytes" in answer.get_json()["detail"]
    assert call(client, keys.token("k1")).status_code == 401   # a failed fetch is not retried within the minute
    assert server.hits[path] == 1


def test_a_set_that_cannot_be_had_says_why(tmp_path, server, keys, clock):
    keys.make("k1")
    client = service(tmp_path, clock, {"jku": f"{server.url}/missing.json"})
    answer = call(client, keys.token("k1"))
    assert answer.status_code == 401
    assert answer.get_json()["detail"] == ("The JWK Set of the JWT's issuer could not be fetched: the JWK Set URL "
                                           "answered 404 (next try in at most 60 s).")


def test_a_slow_set_times_out():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)   # accepts the connection, never answers
    try:
        started = time.monotonic()
        with pytest.raises(jwks.JwksError, match="no answer within 0.3 s"):
            jwks.fetch_jwks(f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json", timeout_s=0.3)
        assert time.monotonic() - started < 2
    finally:
        listener.close()


def test_a_failed_refresh_keeps_the_set_already_held(tmp_path, server, keys, clock):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    client = service(tmp_path, clock, {"jku": f"{server.url}/jwks.json"})
    assert call(client, keys.token("k1")).status_code == 200
    del server.sets["/jwks.json"]          # the EHR's key server is down
    clock.now += jwks.MAX_AGE_S
    assert call(client, keys.token("k1")).status_code == 200
    assert server.hits["/jwks.json"] == 2


@pytest.mark.parametrize("entry,reason", [
    ({"jku": "http://ehr.example.org/jwks.json"}, "must be https"),
    ({"jku": "ftp://127.0.0.1/jwks.json"}, "must be https"),
    ({"jku": "https://user@ehr.example.org/jwks.json"}, "no user name"),
    ({"jku": 5}, "must be a URL"),
    ({}, 'give "keys"'),
    ({"jku": "https://ehr.example.org/jwks.json", "x5u": "https://e"}, "unknown key"),
])
def test_a_bad_jku_stops_the_start(tmp_path, entry, reason):
    with pytest.raises(ApiConfigError, match=reason):
        create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "cds.sqlite3"),
                    "PUBLIC_BASE_URL": "http://localhost/", "CDS_TRUSTED_ISSUERS": {ISS: entry}})


def test_http_is_allowed_for_loopback_only():
    assert jwks.check_jku("https://ehr.example.org/jwks.json") is None
    for url in ("http://127.0.0.1:8080/jwks.json", "http://localhost/jwks.json", "http://[::1]/k"):
        assert jwks.check_jku(url) is None, url
    for url in ("http://10.0.0.1/jwks.json", "http://ehr.example.org/jwks.json", "http://127.0.0.1.example.org/"):
        assert "must be https" in (jwks.check_jku(url) or ""), url


def test_the_issuers_file_takes_a_jku(tmp_path, monkeypatch, server, keys):
    server.sets["/jwks.json"] = {"keys": [keys.make("k1")]}
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({ISS: {"jku": f"{server.url}/jwks.json"}}))
    monkeypatch.setenv("MSCC_CDS_ISSUERS_FILE", str(issuers))
    monkeypatch.setenv("MSCC_PUBLIC_BASE_URL", "http://localhost/")
    client = create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path / "c.sqlite3")}).test_client()
    assert call(client, keys.token("k1")).status_code == 200
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({ISS: {"jku": "http://ehr.example.org/jwks.json"}}))
    monkeypatch.setenv("MSCC_CDS_ISSUERS_FILE", str(bad))
    with pytest.raises(ApiConfigError, match=r"MSCC_CDS_ISSUERS_FILE .*bad.json: issuer .* must be https"):
        create_app({"TESTING": True})


def test_concurrent_calls_with_an_unknown_kid_fetch_once(clock):
    fetched = []

    def slow_set(url: str) -> list:
        fetched.append(url)
        time.sleep(0.2)
        return [{"kty": "EC", "kid": "k1", "use": "sig"}]

    cache = jwks.JwksCache(clock=clock, fetch=slow_set)
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(cache.keys("https://ehr.example.org/jwks.json", "new")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetched == ["https://ehr.example.org/jwks.json"] and answers == [[]] * 8
    assert cache.keys("https://ehr.example.org/jwks.json", "k1")[0]["kid"] == "k1"   # from the cache
    assert len(fetched) == 1
