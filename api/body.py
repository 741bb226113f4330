"""Reading a request body: JSON only, within the size limit, well-formed, not too deep.

Shared by the JSON API and CDS Hooks (one room, so that neither imports the other).
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from triage import no_duplicate_keys

from .limits import MAX_JSON_DEPTH
from .problems import ApiProblem

try:  # the body's framing errors of gunicorn (a bad chunk size, a missing CRLF, an overlong trailer)
    from gunicorn.http.errors import LimitRequestHeaders, NoMoreData, ParseException
except ImportError:  # pragma: no cover - served by another WSGI server
    LimitRequestHeaders = NoMoreData = ParseException = type("_NeverRaised", (Exception,), {})  # type: ignore[misc]

JSON_TYPES = ("application/json",)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_body() -> bytes:
    """The raw body, never more than ``MAX_CONTENT_LENGTH`` bytes: 413 past it, whatever the framing.

    With ``Content-Length`` werkzeug refuses a body over the limit from the header. A chunked body
    has no length: it is read to the limit plus one byte, and refused when that byte exists (werkzeug's
    own stream stops at the limit and would hand on a truncated body).

    A body whose framing the server cannot read (a chunk size that is not hexadecimal, a chunk
    without its CRLF, a body that ends early) is a 400 problem, a trailer section over the server's
    limit a 431 problem, never a 500; the server then closes the connection.
    """
    try:
        return _read_body()
    except FRAMING_ERRORS as exc:
        raise framing_problem(exc) from None


FRAMING_ERRORS = (LimitRequestHeaders, ParseException, NoMoreData)


def framing_problem(exc: BaseException) -> ApiProblem:
    """The 4xx for a body whose framing the server could not read (one of ``FRAMING_ERRORS``).

    Also used by the form, whose body werkzeug reads: a bad chunk there is the client's error too.
    """
    if isinstance(exc, LimitRequestHeaders):
        return ApiProblem(431, "Request Header Fields Too Large",
                          "The trailer section of the chunked body is too large.")
    if isinstance(exc, NoMoreData):
        return ApiProblem(400, "Malformed body", "The body ended before its framing said it would.")
    return ApiProblem(400, "Malformed body",
                      f"The body's chunked framing is not valid HTTP/1.1 ({type(exc).__name__}).")


def _read_body() -> bytes:
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is not None or limit is None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = stream.read(min(65536, limit + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(parts)


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


MAX_INT_DIGITS = 4000   # read, then refused by the case's bounds naming the field; past it, a 400 in our words


def _whole_number(text: str) -> int:
    digits = len(text) - text.startswith("-")
    words = f"a whole number of {digits} digits (at most {MAX_INT_DIGITS} are read)"
    if digits > MAX_INT_DIGITS:
        raise ValueError(words)
    try:
        return int(text)
    except ValueError:   # Python's own limit set lower than ours (PYTHONINTMAXSTRDIGITS): still our words
        raise ValueError(words) from None


def _finite_number(text: str) -> float:
    """A JSON number with a fraction or an exponent, as a float; one too small for a float (``1e-400``,
    which would be read as 0: an age of 0, or a negative duration passing as none) is refused."""
    value = float(text)
    if value == 0 and any(digit in "123456789" for digit in text.lower().partition("e")[0]):
        raise ValueError(f"the number {text[:40]} is too small to be held (it would be read as 0)")
    return value


def read_json_body() -> Any:
    """The request body as JSON: 415 unless JSON, 413 over the limit, 400 unless well-formed."""
    mimetype = request.mimetype or ""
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise ApiProblem(415, "Unsupported Media Type",
                         f"Send the case as application/json, not {mimetype or 'no content type'}.")
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
        # JSON is UTF-8 (RFC 8259, 8.1; ASCII is a part of it): a body said to be in another charset would be read as
        # what it is not
        raise ApiProblem(415, "Unsupported Media Type",
                         f"The body is said to be in charset {charset[:40]!r}; send JSON as UTF-8 (RFC 8259).")
    refuse_content_coding()
    raw = read_body()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys,
                          parse_int=_whole_number, parse_float=_finite_number)
    except UnicodeDecodeError:
        raise ApiProblem(400, "Malformed JSON", "The body is not UTF-8 text.") from None
    except RecursionError:
        raise _too_deep_problem() from None
    except ValueError as exc:
        raise ApiProblem(400, "Malformed JSON", f"The body is not valid JSON: {exc}") from None
    if _too_deep(data):
        raise _too_deep_problem()
    return data


def refuse_content_coding() -> None:
    """415 for a body sent with a content coding (``Content-Encoding: gzip``): the server reads bodies
    as sent, and would otherwise read compressed bytes as the JSON text (RFC 9110, 15.5.16: 415, with
    ``Accept-Encoding`` naming the codings it reads)."""
    codings = [c.strip().lower() for c in request.environ.get("HTTP_CONTENT_ENCODING", "").split(",")]
    unread = [c for c in codings if c and c != "identity"]
    if unread:
        problem = ApiProblem(415, "Unsupported Media Type",
                             f"The body is sent with Content-Encoding {unread[0][:40]!r}; this server reads bodies "
                             "without a content coding: send the JSON as it is.")
        problem.response.headers["Accept-Encoding"] = "identity"
        raise problem


def _too_deep_problem() -> ApiProblem:
    return ApiProblem(400, "Malformed JSON", f"The body nests arrays or objects more than {MAX_JSON_DEPTH} deep.")
