"""A gunicorn worker that slow clients cannot stall: a request reaches a thread only when complete.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its first bytes arrive; the
thread then blocks reading the rest of the headers and the body. A handful of clients trickling a
body (one byte a second) hold every thread of every worker, and the service answers nothing.

:class:`BufferingWorker` is ``gthread`` with one change: the worker's event loop reads each
connection without blocking into a buffer until the request is complete (headers, then the body by
``Content-Length`` or to the last chunk), and only then gives it to a thread, with the bytes
already in the parser. A slow connection costs a buffer and a poller entry, not a thread. Limits,
all answered as problem details (RFC 9457) from the event loop, without a thread:

- a request not complete within ``REQUEST_READ_TIMEOUT`` seconds (10; ``MSCC_REQUEST_READ_TIMEOUT``):
  408, then the connection is closed (an idle connection that sent nothing is just closed);
- a body over ``MAX_BODY_BYTES`` (declared by ``Content-Length`` or counted over the chunks of a
  chunked body): 413 at once, without reading the rest;
- a header section over ``MAX_HEAD_BYTES``: 431;
- a header section with a line ending in a bare LF, or an HTTP/1.1 request without exactly one
  ``Host`` (RFC 9112, 3.2): 400 at once (a bare LF used to wait for the read timeout);
- a transfer coding other than ``chunked`` (``gzip, chunked``): 501 (RFC 9112, 6.1); it used to be
  passed on undecoded.

A refused connection is closed gracefully ("lingering close", RFC 9112 section 9.6): the answer is
sent, the sending side shut, and what the client still sends is read and discarded for at most
``LINGER_SECONDS`` (and ``LINGER_BYTES``) before the socket is closed, so that the client reads the
answer instead of a reset. Any connection the worker ends after an answer ("Connection: close") is
closed the same way, from the poller: gthread's own lingering close blocked its event loop. Each
connection leaves the poller exactly once, and an unexpected error while buffering costs that
connection only, never the worker process.

gunicorn's own error pages (a header field over ``limit_request_field_size``, a malformed request
line, ...) are answered as problem details too, with gunicorn's status. TLS or HTTP/2 prior
knowledge, which this worker does not buffer, fall back to the ``gthread`` behaviour.
"""

from __future__ import annotations

import errno
import json
import re
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any, Optional

from gunicorn import http, util
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

from triage.settings import load_settings

from .. import SECURITY_HEADERS
from ..limits import MAX_HEAD_BYTES, max_body_bytes
LINGER_SECONDS = 2.0          # a refused connection: how long its unread bytes are discarded
LINGER_BYTES = 1024 * 1024    # ... and how many at most, before the socket is closed anyway
PROBLEM = "application/problem+json"

INCOMPLETE, COMPLETE, BODY_TOO_LARGE, HEAD_TOO_LARGE, HAND_OVER, BAD_REQUEST, NOT_IMPLEMENTED = (
    "incomplete", "complete", "body_too_large", "head_too_large", "hand_over", "bad_request", "not_implemented")
_BARE_LF = re.compile(rb"(?<!\r)\n")


class RequestBuffer:
    """The bytes of one HTTP/1.1 request as they arrive, and whether the request is complete.

    Incremental: each :meth:`feed` scans only what is new, so a body trickled one byte (or one
    one-byte chunk) at a time costs linear time. It decides only *when* to hand the request on;
    gunicorn's parser still parses it (``HAND_OVER`` means "malformed, let gunicorn answer").
    """

    def __init__(self, max_body: Optional[int] = None, max_head: int = MAX_HEAD_BYTES):
        self.data = bytearray()
        self.max_body = max_body if max_body is not None else max_body_bytes()
        self.max_head = max_head
        self.body_start: Optional[int] = None
        self.content_length: Optional[int] = None
        self.chunked = False
        self.expects_continue = False
        self.continue_sent = False
        self._chunk_pos = 0      # offset (in data) of the next chunk-size line
        self._chunk_total = 0    # body bytes counted so far
        self._in_trailers = False
        self.problem = ""        # with BAD_REQUEST: why, in a sentence for the client

    def feed(self, data: bytes) -> str:
        searched_to = max(0, len(self.data) - 3)
        self.data += data
        if self.body_start is None:
            end = self.data.find(b"\r\n\r\n", searched_to)
            if _BARE_LF.search(self.data, max(0, searched_to), end if end >= 0 else len(self.data)):
                # never the end of a head we read: answered now, not after REQUEST_READ_TIMEOUT
                self.problem = "A line of the request ends in a bare LF; HTTP/1.1 lines end in CRLF (RFC 9112, 2.2)."
                return BAD_REQUEST
            if end < 0:
                return HEAD_TOO_LARGE if len(self.data) > self.max_head else INCOMPLETE
            if end + 4 > self.max_head:
                return HEAD_TOO_LARGE
            verdict = self._read_head(bytes(self.data[:end]))
            self.body_start = end + 4
            self._chunk_pos = self.body_start
            if verdict is not None:
                return verdict
        if self.chunked:
            return self._scan_chunks()
        if self.content_length is None:
            return COMPLETE
        return COMPLETE if len(self.data) - self.body_start >= self.content_length else INCOMPLETE

    def _read_head(self, head: bytes) -> Optional[str]:
        lengths: list[str] = []
        codings: list[str] = []
        lines = head.split(b"\r\n")
        hosts = 0
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                return HAND_OVER
            key = name.strip().lower()
            text = value.strip().decode("latin-1")
            if key == b"host":
                hosts += 1
            elif key == b"content-length":
                lengths.append(text)
            elif key == b"transfer-encoding":
                codings.append(text.lower())
            elif key == b"expect" and text.lower() == "100-continue":
                self.expects_continue = True
        if hosts > 1 or (hosts == 0 and lines[0].endswith(b" HTTP/1.1")):   # RFC 9112, 3.2: a 400
            self.problem = ("An HTTP/1.1 request names its Host in one Host header field (RFC 9112, 3.2); "
                            f"this one has {hosts}.")
            return BAD_REQUEST
        if codings:
            if lengths or codings[-1].split(",")[-1].strip() != "chunked":
                return HAND_OVER          # gunicorn refuses these
            other = [c.strip() for line in codings for c in line.split(",") if c.strip() not in ("chunked", "")]
            if other:   # gzip, deflate...: gunicorn would pass the coded bytes on as the body
                self.problem = (f"Transfer-Encoding {other[0][:40]!r} is not supported: send the body chunked "
                                "or with a Content-Length, without another coding (RFC 9112, 6.1).")
                return NOT_IMPLEMENTED
            self.chunked = True
            return None
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                return HAND_OVER
            self.content_length = int(lengths[0])
            if self.content_length > self.max_body:
                return BODY_TOO_LARGE
        return None

    def _scan_chunks(self) -> str:
        data = self.data
        while True:
            if self._in_trailers:
                if data[self._chunk_pos:self._chunk_pos + 2] == b"\r\n":
                    return COMPLETE
                if data.find(b"\r\n\r\n", self._chunk_pos) >= 0:
                    return COMPLETE
                return HEAD_TOO_LARGE if len(data) - self._chunk_pos > self.max_head else INCOMPLETE
            eol = data.find(b"\r\n", self._chunk_pos)
            if eol < 0:
                return HAND_OVER if len(data) - self._chunk_pos > 1024 else INCOMPLETE
            size_text = bytes(data[self._chunk_pos:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return HAND_OVER
            if size == 0:
                self._in_trailers = True
                self._chunk_pos = eol + 2
                continue
            self._chunk_total += size
            if self._chunk_total > self.max_body:
                return BODY_TOO_LARGE
            next_pos = eol + 2 + size + 2
            if len(data) < next_pos:
                return INCOMPLETE
            self._chunk_pos = next_pos


def problem_bytes(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response carrying a problem document; the connection is closed after it."""
    body = json.dumps({"type": "about:blank", "title": reason, "status": status, "detail": detail}).encode()
    # the same security headers as every answer of the app (README: "every answer carries ...")
    security = "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS.items())
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {PROBLEM}\r\n"
            f"Content-Length: {len(body)}\r\n{security}Cache-Control: no-store\r\n\r\n")
    return head.encode("latin-1") + body


class _Captured:
    """Stands in for a client socket to catch the HTML error page gunicorn writes."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


class _RequestBlindLog:
    """gunicorn's logger, without the request's own bytes: gunicorn's "Invalid request" warning quotes the
    request line or a header, and its "Error handling request" the URI, so a name or a record number typed
    into a URL would reach the log. They name the kind of error instead (the guide: no patient identifiers
    in logs). Everything else goes to gunicorn's logger as it is."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._local = threading.local()

    def about(self, exc: Optional[BaseException]) -> None:
        self._local.exc = exc     # the error this thread is reporting (handle_error runs in many threads)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith("Invalid request from ip="):
            head, _, _ = msg.partition(": ")     # "Invalid request from ip=<address>" (no ": " in an address)
            msg = f"{head}: {type(getattr(self._local, 'exc', None)).__name__} (the request's text is not logged)"
            args = ()
        self._log.warning(msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and msg.startswith("Error handling request"):
            msg, args = "Error handling request (its URI is not logged)", ()
        self._log.exception(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class BufferingWorker(ThreadWorker):
    """gthread, but a connection gets a thread only once its request is complete in memory."""

    def init_process(self) -> None:
        settings = load_settings()           # read once, in the worker, at its start
        self.log = _RequestBlindLog(self.log)
        self.read_timeout = float(settings.request_read_timeout)
        self.max_body = int(settings.max_body_bytes)
        self.buffering: dict[TConn, tuple[float, RequestBuffer]] = {}
        self.lingering: dict[TConn, list[float]] = {}   # refused, answered: [deadline, bytes discarded]
        super().init_process()

    # -------------------------------------------------------------- a listening socket of its own
    #
    # With ``reuse_port`` (gunicorn_conf.py) each worker listens on a socket of its own (SO_REUSEPORT)
    # and the kernel spreads new connections over them. A stopping worker takes in what is queued on
    # its socket and closes it at once, rather than at the end of its graceful stop: the kernel then
    # sends new connections to the other workers' sockets instead of queueing them on one that no
    # longer accepts (and resets them when it closes).

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive and self.cfg.reuse_port:
            self._drain_and_close_listeners()

    def _drain_and_close_listeners(self) -> None:
        for listener in self.sockets:
            if getattr(listener, "sock", listener) is None:
                continue               # closed already (gunicorn's socket wrapper)
            try:
                listener.setblocking(False)
                for _ in range(max(1, self.cfg.backlog)):   # what is queued now, never more
                    if not self._accept_one(listener):
                        break
            except Exception:
                self.log.exception("Error while taking in the queued connections of a stopping worker")
            finally:
                try:
                    listener.close()
                except OSError:
                    pass

    # -------------------------------------------------------------- where connections come in

    def accept(self, listener: socket.socket) -> None:
        self._accept_one(listener)

    def _accept_one(self, listener: socket.socket) -> bool:
        """Accept one connection and start buffering its request; False if none was waiting."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno == errno.ECONNABORTED:
                return True            # that one is gone; others may be waiting
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            return False
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        if self.cfg.is_ssl or negotiation.prior_knowledge_allowed(self.cfg, client_addr):
            client_sock.setblocking(True)
            self.enqueue_req(conn)
            return True
        self._start_buffering(conn)
        return True

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection has a new request coming: buffer it too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if conn.is_http2 or self.cfg.is_ssl:
            self.enqueue_req(conn)
        else:
            self._start_buffering(conn)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """As gthread, but bytes read ahead (a pipelined request) are buffered, not handed on, and a
        connection to close lingers on the poller, not in this loop.

        gthread closes such a connection ("Connection: close", an error) with a lingering close that
        blocks the event loop until the client closes too, up to 2 s a connection: a client that
        reads its answer but keeps its socket open stalled every other connection of the worker
        (64 such clients at once: a worker timeout, and its connections reset).
        """
        try:
            result = fs.result() if not fs.cancelled() else False
        except Exception:
            result = False
        if (result and result is not _DEFER and self.alive and conn.parser is not None
                and not conn.is_http2 and not self.cfg.is_ssl and conn.parser.unreader.buf.getvalue()):
            self._start_buffering(conn, conn.parser.unreader.take_buffered())
            return
        if not result and not self.cfg.is_ssl:
            self._linger(conn)
            return
        super().finish_request(conn, fs)

    # -------------------------------------------------------------- buffering

    def _start_buffering(self, conn: TConn, first: bytes = b"") -> None:
        try:
            conn.sock.setblocking(False)
            buf = RequestBuffer(self.max_body)
            self.buffering[conn] = (time.monotonic() + self.read_timeout, buf)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            if first:
                self._advance(conn, buf, first)
        except Exception:
            self.log.exception("Error while buffering a request; its connection is closed")
            self._close(conn)

    def _on_readable(self, conn: TConn, client: socket.socket) -> None:
        """Bytes of a request being buffered. Never raises: an error closes this connection only."""
        entry = self.buffering.get(conn)
        if entry is None:              # no longer buffering: make sure the poller forgets it
            self._unwatch(conn)
            return
        try:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            self._advance(conn, entry[1], data)
        except Exception:
            self.log.exception("Error while buffering a request; its connection is closed")
            self._close(conn)

    def _advance(self, conn: TConn, buf: RequestBuffer, data: bytes) -> bool:
        """Feed bytes; True when the connection left the buffering stage (handed on, or answered).

        The connection leaves the poller here, whichever way it goes (callers never unregister it).
        """
        verdict = buf.feed(data)
        if verdict == INCOMPLETE:
            if buf.expects_continue and not buf.continue_sent and buf.body_start is not None:
                buf.continue_sent = True
                self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        del self.buffering[conn]
        if verdict == BODY_TOO_LARGE:
            self._answer(conn, 413, "Content Too Large", f"The body is larger than {buf.max_body} bytes.")
            return True
        if verdict == HEAD_TOO_LARGE:
            self._answer(conn, 431, "Request Header Fields Too Large",
                         f"The request's header section is larger than {buf.max_head} bytes.")
            return True
        if verdict == BAD_REQUEST:
            self._answer(conn, 400, "Bad Request", buf.problem)
            return True
        if verdict == NOT_IMPLEMENTED:
            self._answer(conn, 501, "Not Implemented", buf.problem)
            return True
        # complete (or malformed: gunicorn's parser answers it); no read will block from here
        self._unwatch(conn)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.initialized = True
        conn.parser.unreader.unread(bytes(buf.data))
        conn.data_ready = True
        conn.sock.setblocking(True)
        self.enqueue_req(conn)
        return True

    def _send(self, conn: TConn, data: bytes) -> None:
        try:
            conn.sock.send(data)   # small: fits in the socket buffer of a connection that is reading
        except OSError:
            pass

    def _answer(self, conn: TConn, status: int, reason: str, detail: str) -> None:
        """Send a problem answer, then close gracefully: shut our side, discard what still comes."""
        self.log.warning("Refused request from ip=%s: %s %s", (conn.client or ("",))[0], status, reason)
        self.buffering.pop(conn, None)
        self._send(conn, problem_bytes(status, reason, detail))
        self._linger(conn)

    def _linger(self, conn: TConn) -> None:
        """Close gracefully without blocking: shut our side, discard what still comes, then close."""
        if conn.sock.fileno() < 0:     # closed already (by the request's thread): count it out
            self.buffering.pop(conn, None)
            self.nr_conns -= 1
            return
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:                # the client is gone already
            self._close(conn)
            return
        self.lingering[conn] = [time.monotonic() + LINGER_SECONDS, 0.0]
        self._unwatch(conn)
        try:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn))
        except (OSError, KeyError, ValueError):
            self._close(conn)

    def _on_lingering_readable(self, conn: TConn, client: socket.socket) -> None:
        """A closing connection: discard what the client still sends, until it closes or time is up."""
        entry = self.lingering.get(conn)
        if entry is None:
            self._unwatch(conn)
            return
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except Exception:
            data = b""
        entry[1] += len(data)
        if not data or entry[1] > LINGER_BYTES:
            self._close(conn)

    def _unwatch(self, conn: TConn) -> None:
        """Take the connection off the poller if it is there; a no-op otherwise (never raises)."""
        if conn.sock.fileno() < 0:
            return
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def _close(self, conn: TConn) -> None:
        """Close a connection that is being buffered or lingering; at most once per connection."""
        was_buffering = self.buffering.pop(conn, None) is not None
        was_lingering = self.lingering.pop(conn, None) is not None
        if conn.sock.fileno() < 0 and not (was_buffering or was_lingering):
            return                     # closed already: do not count it twice
        self._unwatch(conn)
        self.nr_conns -= 1
        try:
            conn.close()
        except OSError:
            pass

    def murder_pending(self) -> None:
        """gthread's pending connections, requests not complete in time (408), lingering ones done."""
        super().murder_pending()
        now = time.monotonic()
        for conn, (deadline, buf) in list(self.buffering.items()):
            if deadline > now:
                break            # insertion order is deadline order
            if buf.data:
                self._answer(conn, 408, "Request Timeout",
                             f"The request was not complete within {self.read_timeout:g} seconds.")
            else:
                self._close(conn)
        for conn, (deadline, _) in list(self.lingering.items()):
            if deadline > now:
                break            # insertion order is deadline order
            self._close(conn)

    # -------------------------------------------------------------- gunicorn's own errors

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's status and log line, but a problem document instead of its HTML page."""
        captured = _Captured()
        self.log.about(exc)   # init_process made self.log a _RequestBlindLog
        try:
            super().handle_error(req, captured, addr, exc)
        finally:
            self.log.about(None)
        status_line = captured.data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 3 or not parts[1].isdigit():
            return
        status, reason = int(parts[1]), parts[2]
        if status == 501:   # an unknown transfer coding: RFC 9112 6.1 asks for 501; gunicorn says "Bad Request"
            reason = "Not Implemented"
        detail = {400: "The request is not valid HTTP/1.1.", 414: "The request line is too long.",
                  501: "The request's Transfer-Encoding is not one this server implements (chunked only).",
                  431: "A header field is too large (a bearer token, say), or there are too many.",
                  500: "The request could not be processed; no result was produced."}.get(
            status, "The request could not be processed.")
        try:
            util.write_nonblock(client, problem_bytes(status, reason, detail))
        except Exception:
            self.log.debug("Failed to send error message.")
