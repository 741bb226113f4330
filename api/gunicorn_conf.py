"""gunicorn settings for ``triage serve``; every value can be set through the environment.

The app is loaded in the master (rules parsed and checked once, so a broken rule file stops the
start), then the workers fork; durable-rules state is created lazily in each worker on its first
evaluation, so the master evaluates nothing and workers share no engine state.

Slow clients: the worker class is :class:`mscc_triage_api.gunicorn_worker.BufferingWorker` (gthread that gives a
connection to a thread only once its request is complete; 408 after ``MSCC_REQUEST_READ_TIMEOUT``
seconds, 413/431 past the limits), so clients trickling bytes cost a buffer each, not a thread.
Control socket: ``MSCC_CONTROL_SOCKET`` (``triage serve`` gives each instance its own, beside its CDS
store); without it, none, so two servers on one host never share gunicorn's default socket.
"""

import logging
import multiprocessing
import sys

from triage.settings import load_settings

settings = load_settings()   # every setting, read once, when gunicorn starts
bind = f"{settings.host}:{settings.port}"
workers = settings.workers or multiprocessing.cpu_count()
threads = settings.threads
worker_class = "mscc_triage_api.gunicorn_worker.BufferingWorker"
worker_connections = settings.worker_connections   # open connections per worker
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
