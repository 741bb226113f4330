"""Fetch what the EHR did not prefetch (CDS Hooks 2.0, "FHIR resource access"): FHIR R4 reads.

Only servers on the allow-list (``MSCC_TRIAGE_FHIR_SERVERS``, comma-separated base URLs, matched
exactly after normalising scheme, host and port) are ever contacted; no list, no fetch. Every query
of a call runs concurrently, each with its own timeout, all inside one total budget; redirects are
never followed; a response larger than the cap is dropped; search results follow ``next`` links for up
to ``max_pages`` pages (more, or a link off the server: :class:`Incomplete`, never a partial record),
only under the server's base path once the link is normalised (:func:`within_base`: dot
segments resolved, percent-encoding normalised, same scheme, host and port). The access token
(``fhirAuthorization.access_token``) is sent as ``Authorization: Bearer`` and nowhere else: never
logged, stored or put in an error.

The error tree (each error has a stable ``code``; the CDS service answers every one with 412
Precondition Failed naming the data that could not be had and why)::

    FhirFetchError                       code
    ├── CannotFetch                      fhir-cannot-fetch         no fhirServer, or no usable context.patientId
    ├── ServerNotAllowed                 fhir-server-not-allowed   not on the allow-list: nothing contacted
    ├── AuthorizationFailed              fhir-authorization        401 or 403, or a token type other than Bearer
    ├── NotFound                         fhir-not-found            404 or 410
    ├── FetchTimeout                     fhir-timeout              the request's timeout or the call's budget ran out
    ├── NotFhir                          fhir-not-fhir             not FHIR JSON (a key twice too), too large, a redirect,
    │                                                              another status
    ├── Incomplete                       fhir-incomplete           search pages left unread: past the page cap, a
    │                                                              next link off the server, or a Bundle inside
    │                                                              the Bundle, a total above the entries read, a
    │                                                              warning OperationOutcome entry (never a
    │                                                              partial record)
    └── Unreachable                      fhir-unreachable          connection refused or reset, TLS failure, 5xx

Nothing here imports Flask: :func:`fetch_all` is testable against any HTTP server.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union

from triage import no_duplicate_keys as strict_object

from .. import outbound

log = logging.getLogger("mscc_triage.api.fhir")
ENV = "MSCC_TRIAGE_FHIR_SERVERS"
FHIR_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


# ------------------------------------------------------------------------------------ errors

class FhirFetchError(Exception):
    """A FHIR query failed; ``key`` names the prefetch key, ``reason`` says why in words."""

    code = "fhir-fetch"
    title = "FHIR data could not be fetched"

    def __init__(self, reason: str, key: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.key = key


class CannotFetch(FhirFetchError):
    code = "fhir-cannot-fetch"
    title = "Nothing to fetch from"


class ServerNotAllowed(FhirFetchError):
    code = "fhir-server-not-allowed"
    title = "FHIR server not allowed"


class AuthorizationFailed(FhirFetchError):
    code = "fhir-authorization"
    title = "FHIR server refused access"


class NotFound(FhirFetchError):
    code = "fhir-not-found"
    title = "FHIR resource not found"


class FetchTimeout(FhirFetchError):
    code = "fhir-timeout"
    title = "FHIR server too slow"


class NotFhir(FhirFetchError):
    code = "fhir-not-fhir"
    title = "FHIR server answer is not FHIR"


class Incomplete(FhirFetchError):
    code = "fhir-incomplete"


class Unreachable(FhirFetchError):
    code = "fhir-unreachable"
    title = "FHIR server unreachable"


class FetchFailed(Exception):
    """One or more queries of a call failed: ``errors`` in the order of the queries; ``found``: the others."""

    def __init__(self, errors: list[FhirFetchError], found: Optional[dict[str, Any]] = None):
        super().__init__("; ".join(f"{e.key}: {e.code}" for e in errors))
        self.errors = errors
        self.found = found or {}


# ------------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class FetchSettings:
    """Outbound FHIR settings. ``servers`` empty: nothing is ever fetched."""

    servers: tuple[str, ...] = ()
    request_timeout_s: float = 0.25    # one HTTP exchange (connect, send, every read)
    budget_s: float = 0.35             # every query of one CDS call, pages included
    max_bytes: int = 2 * 1024 * 1024   # one response body
    max_pages: int = 10                # search pages followed through Bundle.link 'next'; more: Incomplete


def normalise_base(url: str) -> Optional[str]:
    """``scheme://host[:port]/path`` lower-cased where URLs are case-blind, no trailing slash; None if not a base URL."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username is not None or parts.password is not None:
        return None
    default = 443 if parts.scheme == "https" else 80
    netloc = parts.hostname.lower() + (f":{port}" if port not in (None, default) else "")
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def parse_servers(value: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """The allow-list from the setting (a comma-separated string or a list); ValueError names a bad entry."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    servers = []
    for item in items:
        if not str(item).strip():
            continue
        base = normalise_base(str(item))
        if base is None:
            raise ValueError(f"{ENV}: {str(item).strip()!r} is not an http(s) base URL "
                             "(e.g. https://fhir.example.org/r4; no query, fragment or user name)")
        servers.append(base)
    return tuple(dict.fromkeys(servers))


def allowed_base(settings: FetchSettings, fhir_server: Any) -> str:
    """The normalised base of ``fhir_server`` when it is on the allow-list; else ServerNotAllowed."""
    if not settings.servers:
        raise ServerNotAllowed(f"this service fetches from no FHIR server ({ENV} is not set)")
    base = normalise_base(fhir_server) if isinstance(fhir_server, str) else None
    if base is None or base not in settings.servers:
        raise ServerNotAllowed("the request's fhirServer is not on this service's list of FHIR servers "
                               f"({ENV}); it was not contacted")
    return base


class _Token:
    """The bearer token: its repr never shows it (no accidental log line, traceback or error text)."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def header(self) -> str:
        return f"Bearer {self._value}"

    def __repr__(self) -> str:
        return "<token hidden>"


def token_of(authorization: Any) -> Optional[_Token]:
    """The token of a CDS Hooks ``fhirAuthorization``; None when absent; AuthorizationFailed when unusable."""
    if authorization is None:
        return None
    if not isinstance(authorization, dict):
        raise AuthorizationFailed("fhirAuthorization must be an object with an access_token")
    value, kind = authorization.get("access_token"), authorization.get("token_type", "Bearer")
    if not isinstance(value, str) or not value or not all("!" <= c <= "~" for c in value):
        # RFC 6750: a bearer token is visible ASCII; anything else cannot go in a header (nor be sent at all)
        raise AuthorizationFailed("fhirAuthorization has no usable access_token (visible ASCII characters only)")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise AuthorizationFailed("fhirAuthorization.token_type must be Bearer")
    return _Token(value)


# ------------------------------------------------------------------------------------ one query

def _get(url: str, token: Optional[_Token], deadline: float, settings: FetchSettings) -> dict[str, Any]:
    """GET one FHIR URL before ``deadline`` (time.monotonic); the parsed resource, or a typed error."""
    if not _sendable(url):
        raise NotFhir("a URL to fetch is not plain ASCII without spaces (not followed)")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port   # noqa: B018 - a port that is not a number raises here, not in the connection
    except ValueError:
        raise NotFhir("a URL to fetch is not a valid URL (not followed)") from None
    deadline = min(deadline, time.monotonic() + settings.request_timeout_s)

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchTimeout(f"no answer within {settings.request_timeout_s * 1000:.0f} ms")
        return remaining

    headers = {"Accept": "application/fhir+json", "User-Agent": "mscc-triage"}
    if token is not None:
        headers["Authorization"] = token.header()
    conn = outbound.connection(parts, left)
    try:
        response, sock = outbound.get(conn, parts, headers, left)
        status = response.status
        if status in (401, 403):
            raise AuthorizationFailed(f"the FHIR server answered {status} (the access token was refused)")
        if status in (404, 410):
            raise NotFound(f"the FHIR server answered {status} (no such resource)")
        if 300 <= status < 400:
            raise NotFhir(f"the FHIR server answered a redirect ({status}), which is not followed")
        if status >= 500:
            raise Unreachable(f"the FHIR server failed ({status})")
        if status != 200:
            raise NotFhir(f"the FHIR server answered {status}")
        ctype = outbound.content_type(response)
        if ctype not in FHIR_TYPES:
            raise NotFhir(f"the answer is {ctype or 'untyped'}, not FHIR JSON")
        body = outbound.read_capped(sock, response, left, settings.max_bytes)
        if body is None:
            raise NotFhir(f"the answer is larger than {settings.max_bytes} bytes")
    except (socket.timeout, TimeoutError):
        raise FetchTimeout(f"no answer within {settings.request_timeout_s * 1000:.0f} ms") from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise Unreachable(f"TLS failed ({type(exc).__name__})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise Unreachable(f"the connection failed ({type(exc).__name__})") from None
    except (UnicodeError, ValueError):   # a header or URL that cannot be sent: never a crash of the call
        raise NotFhir("the request could not be sent (a URL or header that is not ASCII)") from None
    finally:
        conn.close()
    return _resource(body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class DuplicateKey(ValueError):
    """A key given twice in one object of a FHIR server's answer."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    try:
        return strict_object(pairs)
    except ValueError as exc:
        raise DuplicateKey(str(exc)) from None


def _resource(body: bytes) -> dict[str, Any]:
    """The parsed answer. A key given twice in one object is refused like any answer that is not FHIR
    JSON (as the service's own request bodies are): read as its last copy, ``{"entry": [present],
    "entry": [absent]}`` would drop a finding, and which one would depend on the key order."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys)
    except DuplicateKey as exc:
        raise NotFhir(f"the answer is not FHIR JSON: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotFhir("the answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise NotFhir("the answer is JSON but not a FHIR resource (no resourceType)")
    if data["resourceType"] == "OperationOutcome":
        raise NotFhir("the FHIR server answered an OperationOutcome instead of the data")
    return data


def _sendable(url: str) -> bool:
    """Plain visible ASCII (an IRI or a URL with spaces or controls is not sent as it is)."""
    return bool(url) and all("!" <= c <= "~" for c in url)


def _next_link(bundle: dict[str, Any], base: str) -> Optional[str]:
    """The bundle's ``next`` link, normalised, when it stays under ``base``; None when there is none or
    when it leads elsewhere (never followed); NotFhir when it is not a plain ASCII URL."""
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url = link["url"]
            if not _sendable(url):
                raise NotFhir("a search page's next link is not a plain ASCII URL; the pages after it were "
                              "not fetched")
            inside = within_base(url, base)
            if inside is None:   # another server, or a path outside the base: never followed
                log.warning("a search page's next link leaves %s; the pages after it were not fetched", base)
                raise Incomplete("a search page's next link leaves the FHIR server; the pages after it were not "
                                 "fetched, so the record was not all read")
            return inside
    return None


UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
HEX = frozenset("0123456789abcdefABCDEF")


def normal_path(path: str) -> Optional[str]:
    """A URL path normalised as RFC 3986 section 6.2.2 says: percent-encoded unreserved characters
    decoded (``%2e`` is ``.``, ``%41`` is ``A``), other escapes in upper case, dot segments removed.

    None when the path could mean something else to another server: an encoded ``/`` or ``\\``, a
    backslash, a malformed escape, or a dot segment with parameters (``..;x``, which some servers
    read as ``..``).
    """
    out: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%":
            digits = path[i + 1:i + 3]
            if len(digits) != 2 or not set(digits) <= HEX:
                return None
            decoded = chr(int(digits, 16))
            if decoded in "/\\":
                return None
            out.append(decoded if decoded in UNRESERVED else "%" + digits.upper())
            i += 3
        elif char == "\\":
            return None
        else:
            out.append(char)
            i += 1
    segments = "".join(out).split("/")
    if any(";" in seg and seg.split(";", 1)[0] in (".", "..") for seg in segments):
        return None
    kept: list[str] = []
    for n, seg in enumerate(segments):   # RFC 3986 section 5.2.4, segment by segment
        last = n == len(segments) - 1
        if seg in (".", ".."):
            if seg == ".." and len(kept) > 1:
                kept.pop()               # never the leading "" of an absolute path
            if last:
                kept.append("")
            continue
        kept.append(seg)
    return "/".join(kept)


def within_base(url: str, base: str) -> Optional[str]:
    """``url`` (absolute, or relative to ``base``) normalised, when it is on ``base``'s server (same
    scheme, host and port, no user name) and its path, dot segments resolved and percent-encoding
    normalised, is ``base``'s path or under it; else None. The fragment is dropped."""
    try:
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(base + "/", url))
        here = urllib.parse.urlsplit(base)
        same_server = (parts.scheme.lower() == here.scheme and (parts.hostname or "").lower() == here.hostname
                       and (parts.port or (443 if parts.scheme.lower() == "https" else 80))
                       == (here.port or (443 if here.scheme == "https" else 80)))
    except ValueError:   # a port that is not a number, a malformed IPv6 host
        return None
    if not same_server or parts.username is not None or parts.password is not None:
        return None
    path, root = normal_path(parts.path or "/"), normal_path(here.path)
    if path is None or root is None or not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    return f"{here.scheme}://{here.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def _query(base: str, query: str, token: Optional[_Token], deadline: float,
           settings: FetchSettings) -> dict[str, Any]:
    """One prefetch query, its search pages joined into one Bundle."""
    first = _get(f"{base}/{query}", token, deadline, settings)
    if first.get("resourceType") != "Bundle":
        return first
    entries = list(first.get("entry") or []) if isinstance(first.get("entry"), list) else []
    page, url = 1, _next_link(first, base)
    while url and page < settings.max_pages:
        more = _get(url, token, deadline, settings)
        if more.get("resourceType") != "Bundle":
            raise NotFhir("a search page is not a Bundle")
        if isinstance(more.get("entry"), list):
            entries += more["entry"]
        page, url = page + 1, _next_link(more, base)
    if url:   # a record read in part could miss today's finding: no triage on it (clinical safety)
        raise Incomplete(f"more than {settings.max_pages} search pages; the record was not all read")
    if any(isinstance(e, dict) and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Bundle"
           for e in entries):   # never skipped: a finding inside it would be lost
        raise Incomplete("a search page holds a Bundle inside the Bundle, which is not read; the record was not "
                         "all read")
    unread = unread_matches(first, entries)
    if unread is not None:   # the server says it answered in part: as a page left unread
        raise Incomplete(f"{unread}; the record was not all read")
    joined = {**first, "entry": entries}   # every page in one: their links no longer describe it
    joined.pop("link", None)
    return joined


def unread_matches(bundle: dict[str, Any], entries: list[Any]) -> Optional[str]:
    """Why a search Bundle says it holds more than ``entries`` (every page read), or None.

    ``total`` (the number of matches of the whole search) larger than the match entries read (those
    not marked ``include`` or ``outcome``), or an OperationOutcome entry with an issue above
    ``information`` (a server's "too-costly, results truncated"): the search was answered in part.
    The server's own words are never echoed."""
    matches = 0
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        search = entry.get("search") if isinstance(entry, dict) else None
        mode = search.get("mode") if isinstance(search, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            issues = resource.get("issue")
            if not isinstance(issues, list) or any(not isinstance(i, dict) or i.get("severity") != "information"
                                                   for i in issues):
                return "the search answered with a warning or an error (an OperationOutcome entry): its results " \
                       "may be incomplete"
        elif mode not in ("include", "outcome"):
            matches += 1
    total = bundle.get("total")
    if total is None:
        return None
    if isinstance(total, bool) or not isinstance(total, int):
        return "the search's total is not a whole number"
    if total > matches:
        said = f"{total} results" if total < 10 ** 9 else "more results"
        return f"the search says it has {said} and {matches} were returned"
    return None


# ------------------------------------------------------------------------------------ a call

def fetch_all(base: str, token: Optional[_Token], queries: dict[str, str], settings: FetchSettings) -> dict[str, Any]:
    """Run every query (``{key: 'Condition?patient=1'}``) concurrently on ``base``, inside the budget.

    Returns ``{key: resource}``; raises :class:`FetchFailed` listing every query that failed.
    ``base`` must come from :func:`allowed_base`.
    """
    if not queries:
        return {}
    started = time.monotonic()
    deadline = started + settings.budget_s
    pool = ThreadPoolExecutor(max_workers=len(queries), thread_name_prefix="fhir-fetch")
    try:
        futures = {key: pool.submit(_query, base, query, token, deadline, settings) for key, query in queries.items()}
        wait(futures.values(), timeout=settings.budget_s + 0.05)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    found: dict[str, Any] = {}
    errors: list[FhirFetchError] = []
    for key, future in futures.items():
        if not future.done():
            errors.append(FetchTimeout(f"no answer within the {settings.budget_s * 1000:.0f} ms budget", key))
            continue
        exc = future.exception()
        if exc is None:
            found[key] = future.result()
        elif isinstance(exc, FhirFetchError):
            exc.key = key
            errors.append(exc)
        else:
            raise exc
    elapsed = (time.monotonic() - started) * 1000
    for error in errors:   # never the token, never the query (it holds the patient id)
        log.warning("FHIR fetch of %s from %s failed: %s (%s)", error.key, base, error.code, error.reason)
    log.info("FHIR fetch of %d queries from %s in %.0f ms", len(queries), base, elapsed)
    if errors:
        raise FetchFailed(errors, found)
    return found
