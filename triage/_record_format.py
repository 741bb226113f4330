"""The decision record's values: the record format, its canonical JSON and hash, and what a store answers.

Pure functions and frozen values, no store: the format is described in :mod:`triage._record`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import platform
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import orjson

from ._case import validate_case
from ._result import Result

RECORD_FORMAT = 1
GENESIS = "0" * 64
CHANNELS = ("api", "cds", "form")


def canonical(obj: Any) -> bytes:
    """The canonical JSON form the chain hashes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


class ResultData(dict[str, Any]):
    """A result as the record keeps it, made from a :class:`Result` (its JSON dump): string keys,
    strings, integers, booleans and nulls, no float (the model has none, and no NaN). Its canonical form
    is written by orjson (:func:`canonical_member`), several times faster than ``json.dumps``.

    ``floatless``: set by :func:`decision_entry` when the result model's own schema proves that its dump
    holds no float (:func:`result_dump_is_floatless`); the text is then not scanned for one."""

    floatless = False


class CaseData(dict[str, Any]):
    """A case as the record keeps it (:func:`recorded_case`), made from a validated case's dump: string
    keys, strings, integers, booleans, lists and finite floats (the case model refuses NaN and
    infinities). Written by orjson like :class:`ResultData`; a case holding a float falls back to
    ``json.dumps``."""


# A number with a fraction or an exponent in value position: orjson and json.dumps write some floats
# differently (1e-05 / 0.00001), so a ResultData or CaseData holding one (or a string that looks like
# one) is written by json.dumps. Strings, integers and key order are the same in both (tested on every
# code point).
_FLOAT = re.compile(rb"[:,\[]-?[0-9]+[.eE]")
_ORJSON_SAFE = (ResultData, CaseData)
# What json.dumps(s, ensure_ascii=False) writes for a string (the same C function json.dumps calls).
_string = json.encoder.encode_basestring


def canonical_member(value: Any) -> bytes:
    """:func:`canonical` of one member of a record: the same bytes, faster for a string, an integer,
    a :class:`ResultData` or a :class:`CaseData`."""
    kind = type(value)
    if kind is str:
        return _string(value).encode("utf-8")   # a lone surrogate raises here, as in canonical()
    if kind is int:
        return int.__repr__(value).encode("ascii")
    if kind is dict and _strings_only(value):   # a record's ruleset, versions, CDS context: no number at all
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:   # a lone surrogate: canonical() raises as it always did
            return canonical(value)
    if kind in _ORJSON_SAFE:
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:   # not JSON as json.dumps sees it either (e.g. a lone surrogate)
            return canonical(value)
        if getattr(value, "floatless", False) or _FLOAT.search(text) is None:
            return text
    return canonical(value)


def _strings_only(value: dict[Any, Any]) -> bool:
    """Whether a dict holds only strings, by string keys (or lists of strings): orjson then writes what
    :func:`canonical` writes, byte for byte (json.dumps takes about 20 µs even for a small dict)."""
    for key, item in value.items():
        if type(key) is not str:
            return False
        if type(item) is not str and not (type(item) is list and all(type(i) is str for i in item)):
            return False
    return True


_SCHEMA_KEYWORDS = ("type", "$ref", "anyOf", "allOf", "oneOf", "enum", "const")


def _no_float(node: Any) -> bool:
    """Whether a JSON schema (pydantic's) admits no float: no ``number`` type, no untyped value."""
    if node is False:
        return True
    if not isinstance(node, dict) or not any(key in node for key in _SCHEMA_KEYWORDS):
        return False   # True, {} or a schema without a type: any value, a float included
    types = node.get("type")
    if types == "number" or (isinstance(types, list) and "number" in types):
        return False
    if any(isinstance(v, float) for v in [*node.get("enum", ()), node.get("const")]):
        return False
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        if not all(_no_float(sub) for sub in node.get(key, ())):
            return False
    if not all(_no_float(sub) for sub in node.get("properties", {}).values()):
        return False
    if types == "array":
        return _no_float(node.get("items", {}))          # no items: any value
    if types == "object" and ("additionalProperties" in node or "properties" not in node):
        return _no_float(node.get("additionalProperties", {}))   # a map without a value type: any value
    return True


@functools.lru_cache(maxsize=1)
def result_dump_is_floatless() -> bool:
    """Whether no :class:`Result` can dump to JSON with a float in it, proved from the model's serialization
    schema (every type and definition; a ``number`` or an untyped field anywhere disproves it). When it
    holds, a result's canonical form written by orjson needs no scan for floats; a model that gains one
    is scanned again, without anybody having to remember."""
    schema = Result.model_json_schema(mode="serialization")
    return _no_float(schema) and all(_no_float(sub) for sub in schema.get("$defs", {}).values())


def record_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def utc_now() -> str:
    """Now, as a record's time: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six digits of microseconds).
    ``isoformat`` writes the same text as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` in a fifth of the time
    (about 1.5 µs against 7: it runs for every record)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def time_bound(value: str | dt.date | dt.datetime) -> str:
    """A date or date-time (ISO 8601; naive means UTC) as the record's time format, for comparisons."""
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    elif isinstance(value, dt.datetime):
        parsed = value
    else:
        parsed = dt.datetime(value.year, value.month, value.day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("mscc-triage", "durable-rules", "pydantic"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # pragma: no cover - both are dependencies
            found[package] = "unknown"
    return found


def _compact(node: dict[str, Any]) -> dict[str, Any]:
    """A dump made with ``exclude_none`` without its empty groups: the case without its nulls (it
    validates back to the same case)."""
    out = {}
    for key, value in node.items():
        if type(value) is dict:
            value = _compact(value)
            if not value:
                continue
        out[key] = value
    return out


def recorded_case(case: Any) -> dict[str, Any]:
    """The case as the record keeps it: validated as sent, nulls and ``case_id`` left out.

    Not normalised: normalisation is part of the evaluation (replayed with it), and a rule may read
    what the sender left out (``as_sent``: unable to walk with gait not recorded), which the
    normalised case no longer shows."""
    sent = validate_case(case).model_dump(exclude_none=True)   # pydantic drops the nulls, in Rust
    sent.pop("case_id", None)
    return CaseData(_compact(sent))


def recorded_result(result: Result | Mapping[str, Any]) -> dict[str, Any]:
    data = result.model_dump(mode="json") if isinstance(result, Result) else dict(result)
    data.pop("case_id", None)
    return data



@dataclass(frozen=True)
class CdsContext:
    """What a CDS Hooks call adds to its record: the hook instance, the cards' uuids, the caller."""

    hook_instance: str
    cards: Sequence[str] = ()
    iss: Optional[str] = None
    sub: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hook_instance": self.hook_instance, "cards": list(self.cards)}
        if self.iss is not None:
            out["iss"] = self.iss
        if self.sub is not None:
            out["sub"] = self.sub
        return out


def _result_data(data: dict[str, Any]) -> ResultData:
    out = ResultData(data)
    out.floatless = result_dump_is_floatless()   # a Result's dump: its schema speaks for it
    return out


def decision_entry(channel: str, case: Any, result: Result, *, request_id: Optional[str] = None,
                   cds: Optional[CdsContext] = None, dumped: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The body of a decision record, before the store gives it ``seq``, ``time`` and ``prev``.

    ``dumped``: ``result.model_dump(mode="json")`` when the caller made it already (to answer with it),
    so the result is not dumped twice; it must be this result's."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    entry: dict[str, Any] = {
        "record_format": RECORD_FORMAT, "kind": "decision", "id": request_id or uuid.uuid4().hex,
        "channel": channel, "case": recorded_case(case),
        "result": _result_data(recorded_result(result if dumped is None else dumped)),
        "ruleset": {"name": result.ruleset.name, "version": result.ruleset.version, "sha256": result.ruleset.sha256},
        "versions": software_versions(),
    }
    if cds is not None:
        entry["cds"] = cds.as_dict()
    return entry


@dataclass(frozen=True)
class Record:
    """One stored record: its position, its hash, and its body (the canonical JSON, parsed)."""

    seq: int
    hash: str
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def time(self) -> str:
        return str(self.body["time"])

    def as_json_line(self) -> str:
        """The export form: the body with its hash, canonical, one line."""
        return canonical({**self.body, "hash": self.hash}).decode("utf-8")


@dataclass(frozen=True)
class Broken:
    seq: int
    id: Optional[str]
    reason: str

    def __str__(self) -> str:
        return f"record {self.seq}" + (f" ({self.id})" if self.id else "") + f": {self.reason}"


@dataclass(frozen=True)
class Verification:
    count: int
    first_seq: Optional[int]
    head_seq: int
    head_hash: str
    broken: Optional[Broken]

    @property
    def ok(self) -> bool:
        return self.broken is None


@dataclass(frozen=True)
class PruneReport:
    pruned: int
    through_seq: Optional[int]
    checkpoint: Optional[Record]
    remaining: int = 0   # records in the chain up to and including the checkpoint (the new head)

