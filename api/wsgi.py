"""The WSGI entry point: ``mscc_triage_api.wsgi:app`` (rules loaded and checked here, at start-up).

A configuration that cannot work stops the start with one line naming the setting and the reason,
not a traceback through gunicorn: exit status 2, as ``triage serve`` exits for a bad setting it finds
before starting gunicorn (a broken rule file is 3, found by ``triage serve`` before this).
"""

import sys

from . import ApiConfigError, create_app
from .record_hook import store_of

try:
    app = create_app()
except ApiConfigError as exc:
    print(f"mscc-triage: cannot start: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
# Loaded once in gunicorn's master (preload_app), before the workers fork: the record is settled here, so
# a worker that starts after its file was removed answers 503 instead of beginning a new chain unseen.
store_of(app).claim()
