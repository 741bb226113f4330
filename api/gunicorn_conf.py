"""gunicorn settings for ``triage serve``; every value can be set through the environment.

The app is loaded in the master (rules parsed and checked once, so a broken rule file stops the
start), then the workers fork; durable-rules state is created lazily in each worker on its first
evaluation, so the master evaluates nothing and workers share no engine state.
"""

import multiprocessing
import os

bind = f"{os.environ.get('MSCC_HOST', '127.0.0.1')}:{os.environ.get('MSCC_PORT', '8000')}"
workers = int(os.environ.get("MSCC_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("MSCC_THREADS", "2"))
worker_class = "gthread"
preload_app = True
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None          # no access log by default: URLs and timings only, never bodies
errorlog = "-"
loglevel = os.environ.get("MSCC_LOG_LEVEL", "info")
