"""Size and time limits of the HTTP service, shared by the app and the gunicorn worker (no Flask here)."""

import os


def _body_limit() -> int:
    """``MSCC_MAX_BODY_BYTES`` (1 KiB to 16 MiB), default 64 KiB; anything else stops the start."""
    raw = os.environ.get("MSCC_MAX_BODY_BYTES", "").strip()
    if not raw:
        return 64 * 1024
    if not raw.isdigit() or not 1024 <= int(raw) <= 16 * 1024 * 1024:
        raise ValueError(f"MSCC_MAX_BODY_BYTES must be a number of bytes from 1024 to 16777216, not {raw!r}")
    return int(raw)


MAX_BODY_BYTES = _body_limit()  # a case is a few hundred bytes; a CDS Hooks prefetch a few kB
MAX_HEAD_BYTES = 32 * 1024      # request line and headers together (a bearer token is a few kB)
MAX_JSON_DEPTH = 64             # nesting of arrays and objects in a request body
