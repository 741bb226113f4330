"""Trusted CDS Hooks issuers and their keys: inline JWKs, or a JWK Set URL (``jku``) fetched and cached.

The issuers file (``MSCC_CDS_ISSUERS_FILE``) maps each trusted ``iss`` to its keys, given inline, by
URL, or both::

    {"https://ehr.example.org": {"jku": "https://ehr.example.org/jwks.json"},
     "https://other.example.org": {"keys": [{"kty": "EC", "kid": "k1", ...}]}}

The URL is the allow-list: a token's ``jku`` header is honoured only when it equals the issuer's URL
exactly (else 401, and nothing is fetched); without a ``jku`` header the issuer's URL is used. No URL
from a request is ever contacted. A set is fetched with a timeout and a size cap, redirects are
never followed, and it must be JSON ``{"keys": [...]}``. The URL must be ``https://``; plain
``http://`` is accepted only for a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``: a key
server on the same machine, and the tests), checked when the app starts.

Each process caches each set (:class:`JwksCache`) for :data:`MAX_AGE_S`; a token whose ``kid`` is not in
the cached set makes it fetch the set again, at most once every :data:`MIN_REFRESH_S` per URL (a
stream of made-up ``kid`` values costs one fetch a minute). When a refresh fails, the set already
held stays in use; a set never fetched means a 401 naming why. Errors: :class:`JwksError`, with a
``reason`` in words, never the key material.

Nothing here imports Flask.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from .. import outbound

log = logging.getLogger("mscc_triage.api.jwks")

TIMEOUT_S = 2.0          # one fetch of a set: connect, send, every read, all within this
MAX_BYTES = 64 * 1024    # a set larger than this is refused (a set of ten RSA-4096 keys is ~10 KB)
MAX_AGE_S = 300.0        # a cached set is fetched again after this (a key the EHR removed stops working)
MIN_REFRESH_S = 60.0     # an unknown kid refreshes a set at most once a minute per URL
JWKS_TYPES = ("application/json", "application/jwk-set+json")


class JwksError(Exception):
    """A JWK Set could not be had, or the issuers file is wrong; ``reason`` says why in words."""

    code = "cds-jwks"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Issuer:
    """One trusted issuer: its inline keys and/or its JWK Set URL."""

    iss: str
    keys: tuple[Mapping[str, Any], ...] = ()
    jku: Optional[str] = None


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_jku(url: Any) -> Optional[str]:
    """Why ``url`` cannot be a JWK Set URL, or None when it can."""
    if not isinstance(url, str) or not url or not all("!" <= c <= "~" for c in url):
        return "'jku' must be a URL (plain ASCII, no spaces)"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port   # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return f"'jku' {url!r} is not a valid URL"
    if not parts.hostname or parts.username is not None or parts.password is not None or parts.fragment:
        return f"'jku' {url!r} must be an https URL with a host (no user name, no fragment)"
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname)):
        return None
    return f"'jku' {url!r} must be https (plain http only for a loopback host such as 127.0.0.1)"


def parse_issuers(data: Any) -> dict[str, Issuer]:
    """The issuers file's content, checked; ValueError listing every problem (the caller names the file)."""
    if not isinstance(data, dict) or not data:
        raise ValueError('must be a non-empty object {issuer: {"keys": [JWK, ...]} or {"jku": URL}}')
    problems: list[str] = []
    issuers: dict[str, Issuer] = {}
    for iss, entry in data.items():
        if not iss.startswith(("https://", "http://")):
            problems.append(f"issuer {iss!r} must be a URL")
        if not isinstance(entry, dict) or not ({"keys", "jku"} & set(entry)):
            problems.append(f'issuer {iss!r}: give "keys" (a list of public JWKs) or "jku" (a JWK Set URL)')
            continue
        unknown = sorted(set(entry) - {"keys", "jku"})
        if unknown:
            problems.append(f"issuer {iss!r}: unknown key(s) {', '.join(map(repr, unknown))} (only 'keys' and 'jku')")
        keys = entry.get("keys", [])
        if "keys" in entry and (not isinstance(keys, list) or not keys
                                or not all(isinstance(k, dict) and "kty" in k for k in keys)):
            problems.append(f"issuer {iss!r}: 'keys' must be a non-empty list of public JWKs")
            keys = []
        jku = entry.get("jku")
        if "jku" in entry:
            why = check_jku(jku)
            if why:
                problems.append(f"issuer {iss!r}: {why}")
                jku = None
        issuers[iss] = Issuer(iss, tuple(keys), jku)
    if problems:
        raise ValueError("; ".join(problems))
    return issuers


# ------------------------------------------------------------------------------------ one fetch

def fetch_jwks(url: str, timeout_s: float = TIMEOUT_S, max_bytes: int = MAX_BYTES) -> list[dict[str, Any]]:
    """GET a JWK Set: its keys; JwksError when it cannot be had (timeout, redirect, too large, not a set)."""
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JwksError(f"no answer within {timeout_s:g} s")
        return remaining

    conn = outbound.connection(parts, left)
    try:
        response, sock = outbound.get(conn, parts, {"Accept": "application/jwk-set+json, application/json",
                                              "User-Agent": "mscc-triage"}, left)
        if 300 <= response.status < 400:
            raise JwksError(f"the JWK Set URL answered a redirect ({response.status}), which is not followed")
        if response.status != 200:
            raise JwksError(f"the JWK Set URL answered {response.status}")
        ctype = outbound.content_type(response)
        if ctype not in JWKS_TYPES:
            raise JwksError(f"the JWK Set URL answered {ctype or 'untyped content'}, not JSON")
        body = outbound.read_capped(sock, response, left, max_bytes)
        if body is None:
            raise JwksError(f"the JWK Set is larger than {max_bytes} bytes")
    except (socket.timeout, TimeoutError):
        raise JwksError(f"no answer within {timeout_s:g} s") from None
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise JwksError(f"TLS failed ({type(exc).__name__})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise JwksError(f"the connection failed ({type(exc).__name__})") from None
    finally:
        conn.close()
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JwksError("the JWK Set URL's answer is not JSON") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise JwksError('the JWK Set URL\'s answer is not a JWK Set ({"keys": [...]})')
    return keys


# ------------------------------------------------------------------------------------ the cache

@dataclass
class _Entry:
    keys: list[dict[str, Any]] = field(default_factory=list)
    fetched: Optional[float] = None     # when the keys were fetched (clock), None: never
    attempted: Optional[float] = None   # the last fetch attempt, good or not
    failure: Optional[str] = None       # why the last attempt failed


class JwksCache:
    """JWK Sets by URL, per process: fetched on first use, again after ``max_age_s``, and on an unknown
    ``kid`` at most once every ``min_refresh_s``. Thread-safe: one lock per URL, so a slow key server
    holds up only the calls of its own issuer, and one fetch of a URL at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, fetch: Callable[[str], list[dict[str, Any]]]
                 = fetch_jwks, max_age_s: float = MAX_AGE_S, min_refresh_s: float = MIN_REFRESH_S):
        self._clock, self._fetch = clock, fetch
        self.max_age_s, self.min_refresh_s = max_age_s, min_refresh_s
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()   # guards the two tables

    def keys(self, url: str, kid: Optional[str]) -> list[dict[str, Any]]:
        """The keys of the set at ``url`` that match ``kid`` (every key when ``kid`` is None).

        Fetches when the set was never fetched, is older than ``max_age_s``, or lacks ``kid`` and was
        not tried in the last ``min_refresh_s``. JwksError when no set could ever be had."""
        with self._lock:
            entry = self._entries.setdefault(url, _Entry())
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            now = self._clock()
            matching = _matching(entry.keys, kid)
            stale = entry.fetched is None or now - entry.fetched >= self.max_age_s
            may_try = entry.attempted is None or now - entry.attempted >= self.min_refresh_s
            if (stale or not matching) and may_try:
                entry.attempted = now
                try:
                    entry.keys, entry.fetched, entry.failure = self._fetch(url), now, None
                except JwksError as exc:
                    entry.failure = exc.reason
                    log.warning("JWK Set %s could not be fetched: %s%s", url, exc.reason,
                                " (the set fetched before stays in use)" if entry.fetched is not None else "")
                matching = _matching(entry.keys, kid)
            if entry.fetched is None:
                raise JwksError(f"{entry.failure or 'not fetched yet'} (next try in at most {self.min_refresh_s:g} s)")
            return matching


def _matching(keys: list[dict[str, Any]], kid: Optional[str]) -> list[dict[str, Any]]:
    """The signing keys (``use`` absent or ``sig``) with this ``kid`` (every one when ``kid`` is None)."""
    return [k for k in keys if isinstance(k, dict) and kid in (None, k.get("kid")) and k.get("use", "sig") == "sig"]


__all__ = ["Issuer", "JwksCache", "JwksError", "check_jku", "fetch_jwks", "parse_issuers",
           "MAX_AGE_S", "MAX_BYTES", "MIN_REFRESH_S", "TIMEOUT_S"]
