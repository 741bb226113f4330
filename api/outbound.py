"""One outbound GET, bounded: the service's own requests to other servers (FHIR servers, JWK Sets).

Every step runs against one deadline (``left()`` gives the time left or raises the caller's own
timeout error), a body is read in pieces up to a byte cap, and nothing here follows a redirect: the
callers read the status, the content type and the body, and map failures to their own errors.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.parse
from typing import Callable, Mapping, Optional


def connection(parts: urllib.parse.SplitResult, left: Callable[[], float]) -> http.client.HTTPConnection:
    """An unopened connection to the URL's host (TLS with the system's trust store for https)."""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=left(),
                                           context=ssl.create_default_context())
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=left())


def get(conn: http.client.HTTPConnection, parts: urllib.parse.SplitResult, headers: Mapping[str, str],
        left: Callable[[], float]) -> tuple[http.client.HTTPResponse, socket.socket]:
    """Send the GET and read the status line and headers, each step within the time left; the response
    and its socket (kept: the connection lets go of it when the answer says it will close)."""
    conn.connect()
    sock = conn.sock
    conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=dict(headers))
    sock.settimeout(left())
    return conn.getresponse(), sock


def content_type(response: http.client.HTTPResponse) -> str:
    """The media type of the answer, lower case, without parameters ('' when there is none)."""
    return (response.getheader("Content-Type") or "").split(";")[0].strip().lower()


def read_capped(sock: socket.socket, response: http.client.HTTPResponse,
                left: Callable[[], float], max_bytes: int) -> Optional[bytes]:
    """The body, or None when it is (or says it is) larger than ``max_bytes``; each read within the time left."""
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        return None
    chunks, size = [], 0
    while True:
        sock.settimeout(left())
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
