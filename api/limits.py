"""Size and time limits of the HTTP service, shared by the app and the gunicorn worker (no Flask here)."""

MAX_BODY_BYTES = 64 * 1024      # a case is a few hundred bytes; a CDS Hooks prefetch a few kB
MAX_HEAD_BYTES = 32 * 1024      # request line and headers together (a bearer token is a few kB)
MAX_JSON_DEPTH = 64             # nesting of arrays and objects in a request body
