"""The production server: gunicorn's settings (``gunicorn_conf``) and its worker class (``worker``:
gthread that hands a request to a thread only once it has fully arrived). ``triage serve`` runs
``gunicorn -c python:mscc_triage_api.server.gunicorn_conf mscc_triage_api.wsgi:app``."""
