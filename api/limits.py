"""Size limits of the HTTP service, shared by the app and the gunicorn worker (no Flask here).

The body limit is a setting (``MSCC_MAX_BODY_BYTES``, read with every other one by
:func:`triage.settings.load_settings` at start); the others are fixed.
"""

from triage.settings import load_settings


def max_body_bytes() -> int:
    """``MSCC_MAX_BODY_BYTES`` (1 KiB to 16 MiB), default 64 KiB; a bad value stops the start."""
    return int(load_settings().max_body_bytes)


MAX_HEAD_BYTES = 32 * 1024      # request line and headers together (a bearer token is a few kB)
MAX_JSON_DEPTH = 64             # nesting of arrays and objects in a request body
