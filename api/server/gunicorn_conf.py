"""gunicorn settings for ``triage serve``; every value can be set through the environment.

The app is loaded in the master (rules parsed and checked once, so a broken rule file stops the
start), then the workers fork; durable-rules state is created lazily in each worker on its first
evaluation, so the master evaluates nothing and workers share no engine state.

Load: each worker has a listening socket of its own (``reuse_port``), so the kernel spreads new
connections over the workers instead of the busiest one taking nearly all of them (issue 26).

Slow clients: the worker class is :class:`mscc_triage_api.server.worker.BufferingWorker` (gthread that gives a
connection to a thread only once its request is complete; 408 after ``MSCC_REQUEST_READ_TIMEOUT``
seconds, 413/431 past the limits), so clients trickling bytes cost a buffer each, not a thread.
Control socket: ``MSCC_CONTROL_SOCKET`` (``triage serve`` gives each instance its own, beside its CDS
store); without it, none, so two servers on one host never share gunicorn's default socket.
"""

import errno
import logging
import multiprocessing
import socket
import sys
from typing import Any

from triage.settings import load_settings

settings = load_settings()   # every setting, read once, when gunicorn starts
bind = f"{settings.host}:{settings.port}"
workers = settings.workers or multiprocessing.cpu_count()
threads = settings.server_threads
worker_class = "mscc_triage_api.server.worker.BufferingWorker"
worker_connections = settings.worker_connections   # open connections per worker
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new connections
# over them. With one socket shared by all workers, the worker that wins the first accepts keeps
# winning (its loop is awake, the others wait for a CPU), and kept-alive connections stay where they
# were accepted: one process served nearly everything while the other idled (issue 26).
reuse_port = True
preload_app = True
timeout = 30
graceful_timeout = 10
keepalive = 5
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190    # a bearer token over 8 kB: 431 problem
accesslog = None          # no access log by default: URLs and timings only, never bodies
errorlog = "-"
loglevel = settings.log_level

if settings.control_socket:
    control_socket = settings.control_socket
    control_socket_mode = 0o600
else:
    control_socket_disable = True


def on_starting(server: Any) -> None:
    """Refuse to start on an address in use, as gunicorn does without ``reuse_port``.

    With ``reuse_port`` the master binds nothing (each worker binds its own socket), so a busy port
    would only show as workers failing to boot, over and over; and another server of the same user
    listening with SO_REUSEPORT would silently share the port. A plain bind (no SO_REUSEPORT)
    fails in both cases. Skipped when gunicorn re-executes itself (USR2), whose old workers listen.
    """
    if server.master_pid:
        return
    for address in server.cfg.address:
        if not isinstance(address, tuple):
            continue                       # a unix socket path: gunicorn's own checks apply
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address[:2])
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise RuntimeError(f"Connection in use: {address[0]}:{address[1]}") from None
                raise RuntimeError(f"Cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from None


def when_ready(server: Any) -> None:
    """gunicorn's "Listening at:" names no address with ``reuse_port`` (the master listens on none)."""
    server.log.info("Workers listen at: http://%s, each on a socket of its own (SO_REUSEPORT)", bind)


def on_reload(server: Any) -> None:
    """SIGHUP restarts the workers, but the app (its ruleset, its settings) was loaded once in the master
    (``preload_app``): say so, so that no one believes edited rules are now in use (operator audit)."""
    server.log.warning("SIGHUP: the workers restart with the ruleset and settings loaded at start; "
                       "restart the service to load changed rules (GET /healthz names the ruleset in use)")


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn's own logs each request's path at debug level; a path may hold a patient's identifier
    (a misdirected EHR link), so only the method is logged (operator audit)."""
    worker.log.debug("%s request", req.method)


def _app_logging() -> None:
    """The app's log lines (``mscc_triage.*``) on stderr with a timestamp and the pid, as gunicorn's own.

    Set up here, in the master, before the app is loaded; the forked workers inherit it.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                                           "[%Y-%m-%d %H:%M:%S %z]"))
    logger = logging.getLogger("mscc_triage")
    logger.handlers[:] = [handler]
    logger.setLevel(loglevel.upper() if loglevel.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")
    logger.propagate = False


_app_logging()
