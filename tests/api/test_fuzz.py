"""A bounded fuzz run of the JSON API: no 5xx, and every answer matches the OpenAPI document.

Cases are drawn from the OpenAPI document's own Case schema (so most are valid, and many reach the
engine), mixed with out-of-range numbers, wrong types, unknown keys and arbitrary JSON. Each answer's
status must be documented for the operation and its body must validate against the documented schema.
Bounded: a fixed number of examples and a deadline (well under 60 s).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mscc_triage_api import create_app

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    return create_app({"TESTING": True, "CDS_STORE_PATH": str(tmp_path_factory.mktemp("fuzz") / "cds.sqlite3"),
                       "CDS_ALLOW_UNAUTHENTICATED": True})


@pytest.fixture(scope="module")
def doc(fuzz_app):
    return fuzz_app.test_client().get("/openapi.json").get_json()


JSON_LEAVES = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=20)
ANY_JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)


def from_schema(schema: dict[str, Any], defs: dict[str, Any], noisy: bool = False) -> st.SearchStrategy:
    """Values for a (pydantic-generated) JSON schema; with ``noisy``, often wrong on purpose."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, noisy)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs, noisy) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | st.just("not-a-choice") if noisy else st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        fields = st.fixed_dictionaries({}, optional={k: from_schema(v, defs, noisy) for k, v in props.items()})
        return fields | fields.map(lambda d: dict(d, unknwon_field=True)) if noisy else fields
    if kind == "boolean":
        return st.booleans() | st.sampled_from(["true", 1]) if noisy else st.booleans()
    if kind == "integer":
        lo, hi = schema.get("minimum", -1000), schema.get("maximum", 10**6)
        valid = st.integers(lo, hi)
        return valid | st.integers(hi + 1, hi + 10) | st.sampled_from([float(lo), lo - 1, 1e-05, -0.0]) if noisy else valid
    if kind == "number":
        lo, hi = schema.get("minimum", -1e6), schema.get("maximum", 1e6)
        extremes = [v for v in (1e-05, 1e-300, -0.0, lo, hi) if lo <= v <= hi]
        valid = st.floats(lo, hi, allow_nan=False) | st.sampled_from(extremes)
        return valid | st.sampled_from([1e300, hi + 1, lo - 1]) if noisy else valid
    if kind == "string":
        return st.text(max_size=30)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs, noisy), max_size=3)
    return ANY_JSON


def check(doc: dict[str, Any], path: str, response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    documented = doc["paths"][path]["post"]["responses"]
    assert str(response.status_code) in documented, (response.status_code, response.get_data(as_text=True))
    content = documented[str(response.status_code)].get("content", {})
    assert response.mimetype in content, (response.status_code, response.mimetype)
    schema = dict(content[response.mimetype]["schema"], components=doc["components"])
    jsonschema.Draft202012Validator(schema).validate(json.loads(response.get_data(as_text=True)))


def test_fuzz_triage(fuzz_app, doc):
    client = fuzz_app.test_client()
    defs = doc["components"]["schemas"]
    cases = from_schema(defs["Case"], defs) | from_schema(defs["Case"], defs, noisy=True) | ANY_JSON

    @SETTINGS
    @given(case=cases)
    def run(case):
        check(doc, "/v1/triage", client.post("/v1/triage", json=case))

    run()


def test_fuzz_cds_hooks(fuzz_app, doc):
    client = fuzz_app.test_client()
    bundle = st.fixed_dictionaries({"resourceType": st.sampled_from(["Bundle", "Patient", 5]),
                                    "entry": ANY_JSON | st.lists(st.fixed_dictionaries({"resource": ANY_JSON}))})
    prefetch = st.fixed_dictionaries({"patient": ANY_JSON | st.fixed_dictionaries(
        {"resourceType": st.just("Patient"), "birthDate": ANY_JSON | st.text("0123456789-", max_size=25)}),
        "conditions": bundle | ANY_JSON, "observations": bundle | ANY_JSON})
    body = st.fixed_dictionaries({"hook": st.sampled_from(["patient-view", "x"]), "hookInstance": st.text(max_size=5),
                                  "prefetch": prefetch | ANY_JSON})
    feedback = st.fixed_dictionaries({"feedback": st.lists(ANY_JSON | st.fixed_dictionaries({
        "card": ANY_JSON, "outcome": st.sampled_from(["accepted", "overridden", "x"]),
        "overrideReason": ANY_JSON, "acceptedSuggestions": ANY_JSON}), max_size=3)}) | ANY_JSON

    @SETTINGS
    @given(service=body | ANY_JSON, items=feedback)
    def run(service, items):
        check(doc, "/cds-services/mscc-triage", client.post("/cds-services/mscc-triage", json=service))
        check(doc, "/cds-services/mscc-triage/feedback", client.post("/cds-services/mscc-triage/feedback", json=items))

    run()


# ------------------------------------------------------------------------------ against the real server

class _Answer:
    """An HTTP answer of the real server, shaped like the test client's (for :func:`check`)."""

    def __init__(self, status: int, content_type: str, body: bytes):
        self.status_code, self.mimetype, self._body = status, content_type.split(";")[0].strip(), body

    def get_data(self, as_text: bool = False):
        return self._body.decode("utf-8", "replace") if as_text else self._body


def _post(url: str, value: Any) -> _Answer:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(value).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return _Answer(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as err:
        with err:
            return _Answer(err.code, err.headers.get("Content-Type", ""), err.read())


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    from serverctl import server_log, start_server, stop_server

    proc, url = start_server("--workers", "2", "--threads", "2", "--allow-unauthenticated-cds")
    assert proc.poll() is None, server_log(proc)
    yield url
    stop_server(proc)


def test_fuzz_the_real_server(real_server, doc):
    defs = doc["components"]["schemas"]
    cases = from_schema(defs["Case"], defs) | from_schema(defs["Case"], defs, noisy=True) | ANY_JSON
    services = st.fixed_dictionaries({"hook": st.just("patient-view"), "hookInstance": st.text(max_size=5),
                                      "prefetch": ANY_JSON}) | ANY_JSON

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=cases, service=services)
    def run(case, service):
        check(doc, "/v1/triage", _post(real_server + "/v1/triage", case))
        check(doc, "/cds-services/mscc-triage", _post(real_server + "/cds-services/mscc-triage", service))

    run()
